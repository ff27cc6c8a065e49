//! The built-in resolver against real ones: unbound (Debian package `unbound`) as a caching
//! resolver on a loopback address of the test's own, forwarding to our test server
//! (`tests/common/dns.rs`) where a case needs a misbehaviour, and glibc's getaddrinfo
//! (`getent ahosts`, package `libc-bin`) asked in the same environment. glibc reads
//! `/etc/resolv.conf` only and asks port 53 only, so `getent` runs in a mount namespace
//! (`unshare -m`, package `util-linux`) whose `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/nsswitch.conf` are the test's own, and every server listens on port 53 of an address
//! of its own in 127.53.0.0/16. The exporter reads the same files and must come to the
//! addresses glibc prints, or fail where glibc fails.
//!
//! Cases: search list and ndots, NXDOMAIN and NODATA per family, CNAME chains, truncation
//! and TCP, SERVFAIL from the first server with a good second one, unusable first servers.

mod common;

use common::dns::{DnsServer, Entry, Rec, Unbound, Zone, program};

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http_status_exporter::dns::{Resolver, Settings};
use http_status_exporter::probe_url::{Host, IpProtocol};

/// A loopback address of this test's own in 127.53.0.0/16 whose port 53 is free for UDP and
/// TCP (checked by binding both, then released). 127.53.0.1 is left to the benchmark.
fn own_address() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..1000 {
        let n = base.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed)) % 65_000 + 256;
        let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n & 0xFF) as u8);
        if ip.octets()[3] == 0 || ip.octets()[3] == 255 {
            continue;
        }
        let free = std::net::UdpSocket::bind((ip, 53)).is_ok()
            && std::net::TcpListener::bind((ip, 53)).is_ok();
        if free {
            return ip;
        }
    }
    panic!("no free port 53 on 127.53.0.0/16");
}

/// The files both resolvers read.
struct Env {
    /// Holds the files.
    _dir: tempfile::TempDir,
    /// The private resolv.conf.
    resolv: PathBuf,
    /// An empty hosts file.
    hosts: PathBuf,
    /// `hosts: files dns`.
    nsswitch: PathBuf,
}

impl Env {
    /// Name servers (port 53 each, as glibc requires) and `extra` resolv.conf lines.
    fn new(servers: &[IpAddr], extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let mut text: String = servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
        text.push_str(extra);
        std::fs::write(&resolv, text).unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let nsswitch = dir.path().join("nsswitch.conf");
        std::fs::write(&nsswitch, "hosts: files dns\n").unwrap();
        Env {
            _dir: dir,
            resolv,
            hosts,
            nsswitch,
        }
    }

    /// glibc's answer: `getent ahosts` (`ahostsv4` for IPv4 only) in a mount namespace with
    /// these files; the addresses in its order, once each, or its exit status.
    fn glibc(&self, name: &str, proto: IpProtocol) -> Result<Vec<IpAddr>, String> {
        let unshare = program("unshare", "util-linux");
        program("getent", "libc-bin");
        let database = match proto {
            IpProtocol::Ip4 => "ahostsv4",
            _ => "ahosts",
        };
        let out = std::process::Command::new(unshare)
            .args(["-m", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts && \
                 mount --bind \"$3\" /etc/nsswitch.conf && exec getent \"$4\" \"$5\"",
            )
            .arg("sh")
            .args([&self.resolv, &self.hosts, &self.nsswitch])
            .args([database, name])
            .env_remove("LOCALDOMAIN")
            .env_remove("RES_OPTIONS")
            .env_remove("HOSTALIASES")
            .output()
            .expect("unshare runs (the tests need root for a mount namespace)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("mount") && !stderr.contains("unshare"),
            "cannot make the mount namespace (run as root): {stderr}"
        );
        if !out.status.success() {
            return Err(format!("getent exit {:?}", out.status.code()));
        }
        let mut addrs = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ip: IpAddr = line.split_whitespace().next().unwrap().parse().unwrap();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        Ok(addrs)
    }

    /// The exporter's answer with the same files: the addresses it would try, in order.
    async fn ours(&self, name: &str, proto: IpProtocol) -> Result<Vec<IpAddr>, String> {
        let settings = Settings {
            resolv_conf: Some(self.resolv.clone()),
            hosts_file: Some(self.hosts.clone()),
            ..Settings::default()
        };
        let resolver = Arc::new(Resolver::load(&settings, 4096).unwrap());
        let round = resolver.round();
        round
            .resolve(&Host::Name(name.to_owned()), proto)
            .await
            .result
            .map(|a| a.to_vec())
            .map_err(|e| e.to_string())
    }

    /// Both resolvers agree on `name`: the same first address (the one probed first) and the
    /// same addresses, or both fail. Returns our addresses.
    async fn agree(&self, name: &str, proto: IpProtocol) -> Result<Vec<IpAddr>, String> {
        let theirs = tokio::task::block_in_place(|| self.glibc(name, proto));
        let ours = self.ours(name, proto).await;
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) => {
                assert_eq!(
                    t.first(),
                    o.first(),
                    "{name} {proto:?}: glibc {t:?}, ours {o:?}"
                );
                let (mut ts, mut os) = (t.clone(), o.clone());
                ts.sort();
                os.sort();
                assert_eq!(ts, os, "{name} {proto:?}: glibc {t:?}, ours {o:?}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{name} {proto:?}: glibc {theirs:?}, ours {ours:?}"),
        }
        ours
    }
}

fn v4(s: &str) -> Rec {
    Rec::A(s.parse().unwrap())
}

fn v6(s: &str) -> Rec {
    Rec::Aaaa(s.parse().unwrap())
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// Our server with `zone` behind unbound on port 53 of an address of its own.
fn behind_unbound(zone: Zone) -> (DnsServer, Unbound) {
    let dns = DnsServer::start(zone);
    let unbound = Unbound::start(&format!("{}:53", own_address()), &[dns.addr], "");
    (dns, unbound)
}

/// A name leaked for the zone table.
fn name(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_list_and_ndots_pick_the_name_glibc_picks() {
    let (_dns, unbound) = behind_unbound(Zone::new(&[
        // AAAA under the first suffix, A under the second: the first name has records.
        ("mixed.a.test", Entry::Records(vec![v6("::1")])),
        ("mixed.b.test", Entry::Records(vec![v4("127.0.0.11")])),
        // NODATA under the first suffix: the next one is asked.
        ("empty.a.test", Entry::Records(vec![])),
        ("empty.b.test", Entry::Records(vec![v4("127.0.0.12")])),
        // NXDOMAIN under the first suffix.
        (
            "later.b.test",
            Entry::Records(vec![v4("127.0.0.13"), v6("::1")]),
        ),
        // Fewer dots than ndots: the search list first.
        ("one.two.a.test", Entry::Records(vec![v4("127.0.0.21")])),
        ("one.two", Entry::Records(vec![v4("127.0.0.22")])),
        // As many dots as ndots: as written first.
        ("x.y.z", Entry::Records(vec![v4("127.0.0.23")])),
        ("x.y.z.a.test", Entry::Records(vec![v4("127.0.0.24")])),
        // Only as written.
        ("bare.q.r", Entry::Records(vec![v4("127.0.0.25")])),
        ("abs.a.test", Entry::Records(vec![v4("127.0.0.26")])),
    ]));
    let env = Env::new(
        &[unbound.addr.ip()],
        "search a.test b.test\noptions ndots:2\n",
    );
    let auto = IpProtocol::Auto;
    assert_eq!(env.agree("mixed", auto).await, Ok(ips(&["::1"])));
    assert_eq!(
        env.agree("mixed", IpProtocol::Ip4).await,
        Ok(ips(&["127.0.0.11"]))
    );
    assert_eq!(env.agree("empty", auto).await, Ok(ips(&["127.0.0.12"])));
    assert_eq!(
        env.agree("later", auto).await,
        Ok(ips(&["::1", "127.0.0.13"]))
    );
    assert_eq!(env.agree("one.two", auto).await, Ok(ips(&["127.0.0.21"])));
    assert_eq!(env.agree("x.y.z", auto).await, Ok(ips(&["127.0.0.23"])));
    assert_eq!(env.agree("bare.q.r", auto).await, Ok(ips(&["127.0.0.25"])));
    assert_eq!(
        env.agree("abs.a.test.", auto).await,
        Ok(ips(&["127.0.0.26"]))
    );
    assert!(env.agree("abs.", auto).await.is_err());
    assert!(env.agree("nowhere", auto).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_per_family_as_glibc() {
    let (_dns, unbound) = behind_unbound(Zone::new(&[
        ("four.test", Entry::Records(vec![v4("127.0.0.4")])),
        ("six.test", Entry::Records(vec![v6("::1")])),
        (
            "both.test",
            Entry::Records(vec![v4("127.0.0.5"), v6("::1")]),
        ),
        ("none.test", Entry::Records(vec![])),
    ]));
    let env = Env::new(&[unbound.addr.ip()], "");
    for proto in [IpProtocol::Auto, IpProtocol::Ip4] {
        for name in [
            "four.test",
            "six.test",
            "both.test",
            "none.test",
            "missing.test",
        ] {
            env.agree(name, proto).await.ok();
        }
    }
    assert_eq!(
        env.ours("six.test", IpProtocol::Ip4).await,
        Err("six.test: no A record".into())
    );
    assert_eq!(
        env.ours("none.test", IpProtocol::Auto).await,
        Err("none.test: no A or AAAA record".into())
    );
    assert_eq!(
        env.ours("missing.test", IpProtocol::Auto).await,
        Err("missing.test: NXDOMAIN (no such name)".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chains_are_followed_as_glibc_follows_them() {
    // Twenty links in one answer, straight from our server on port 53.
    let names: Vec<&'static str> = (0..=20).map(|i| name(format!("c{i}.chain.test"))).collect();
    let mut table: Vec<(&str, Entry)> = (0..20)
        .map(|i| (names[i], Entry::Records(vec![Rec::Cname(names[i + 1])])))
        .collect();
    table.push((names[20], Entry::Records(vec![v4("127.0.0.20")])));
    // A short chain through unbound, and one that ends in nothing.
    table.push((
        "www.alias.test",
        Entry::Records(vec![Rec::Cname("edge.alias.test")]),
    ));
    table.push((
        "edge.alias.test",
        Entry::Records(vec![Rec::Cname("origin.alias.test")]),
    ));
    table.push(("origin.alias.test", Entry::Records(vec![v4("127.0.0.30")])));
    table.push((
        "dangling.alias.test",
        Entry::Records(vec![Rec::Cname("gone.alias.test")]),
    ));
    let direct = DnsServer::start_on(&format!("{}:53", own_address()), Zone::new(&table));
    let env = Env::new(&[direct.addr.ip()], "");
    assert_eq!(
        env.agree("c0.chain.test", IpProtocol::Auto).await,
        Ok(ips(&["127.0.0.20"]))
    );
    assert_eq!(
        env.agree("c10.chain.test", IpProtocol::Ip4).await,
        Ok(ips(&["127.0.0.20"]))
    );
    let (_dns, unbound) = behind_unbound(Zone::new(&table));
    let env = Env::new(&[unbound.addr.ip()], "");
    assert_eq!(
        env.agree("www.alias.test", IpProtocol::Auto).await,
        Ok(ips(&["127.0.0.30"]))
    );
    assert!(
        env.agree("dangling.alias.test", IpProtocol::Auto)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_answers_are_asked_again_over_tcp() {
    // 100 addresses do not fit in a UDP answer: unbound truncates it, glibc and we ask again
    // over TCP.
    let many: Vec<Rec> = (1..=100).map(|i| v4(&format!("127.0.1.{i}"))).collect();
    let (_dns, unbound) = behind_unbound(Zone::new(&[("many.test", Entry::Records(many))]));
    let env = Env::new(&[unbound.addr.ip()], "");
    let got = env.agree("many.test", IpProtocol::Ip4).await.unwrap();
    assert_eq!(got.len(), 100);
    // Our server truncates over UDP whatever the size: straight from it on port 53.
    let direct = DnsServer::start_on(
        &format!("{}:53", own_address()),
        Zone::new(&[("tc.test", Entry::Truncated(vec![v4("127.0.0.40")]))]),
    );
    let env = Env::new(&[direct.addr.ip()], "");
    assert_eq!(
        env.agree("tc.test", IpProtocol::Ip4).await,
        Ok(ips(&["127.0.0.40"]))
    );
    assert!(direct.seen().count("tc.test", "A", "tcp") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_from_the_first_server_moves_on_to_a_good_second() {
    let (_dns, unbound) = behind_unbound(Zone::new(&[(
        "ok.test",
        Entry::Records(vec![v4("127.0.0.50")]),
    )]));
    let failing = DnsServer::start_on(
        &format!("{}:53", own_address()),
        Zone::new(&[("ok.test", Entry::ServFail)]),
    );
    let env = Env::new(&[failing.addr.ip(), unbound.addr.ip()], "");
    assert_eq!(
        env.agree("ok.test", IpProtocol::Auto).await,
        Ok(ips(&["127.0.0.50"]))
    );
    // Both asked the failing server first.
    assert!(failing.seen().count("ok.test", "A", "udp") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_first_servers_are_passed_over() {
    let (_dns, unbound) = behind_unbound(Zone::new(&[(
        "ok.test",
        Entry::Records(vec![v4("127.0.0.60")]),
    )]));
    // Nothing listens on the first address (port unreachable); no socket can be connected to
    // the second (the broadcast address).
    let closed = own_address();
    let env = Env::new(
        &[
            IpAddr::V4(closed),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            unbound.addr.ip(),
        ],
        "options timeout:1\n",
    );
    let started = std::time::Instant::now();
    assert_eq!(
        env.agree("ok.test", IpProtocol::Auto).await,
        Ok(ips(&["127.0.0.60"]))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
