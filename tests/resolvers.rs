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
//! and TCP, SERVFAIL from the first server with a good second one, unusable first servers;
//! odd `options` values (`ndots:abc`, `attempts:-1`, `timeout:2x`), which both must read alike;
//! and a link-local name server with its zone (`fe80::53%llc0`), reached over a veth pair
//! between two network namespaces of the test's own (`ip netns`, package `iproute2`), where
//! glibc runs too (`ip netns exec`).

mod common;

use common::dns::{DnsServer, Entry, Rec, Unbound, Zone, program};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
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
        self.glibc_in(None, name, proto)
    }

    /// [`Env::glibc`], in network namespace `netns` when given (`ip netns exec`).
    fn glibc_in(
        &self,
        netns: Option<&str>,
        name: &str,
        proto: IpProtocol,
    ) -> Result<Vec<IpAddr>, String> {
        let unshare = program("unshare", "util-linux");
        program("getent", "libc-bin");
        let database = match proto {
            IpProtocol::Ip4 => "ahostsv4",
            _ => "ahosts",
        };
        let mut command = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new(program("ip", "iproute2"));
                c.args(["netns", "exec", ns]).arg(unshare);
                c
            }
            None => std::process::Command::new(unshare),
        };
        let out = command
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

/// A name with `dots` dots: `x`, `x.y`, `x.y.y`...
fn dotted(dots: usize) -> String {
    std::iter::once("x")
        .chain(std::iter::repeat_n("y", dots))
        .collect::<Vec<_>>()
        .join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_ndots_values_pick_the_names_glibc_picks() {
    // Every name is NXDOMAIN, so both resolvers go through all their candidates: the order in
    // which the names are asked shows the ndots each read.
    let dns = DnsServer::start_on(&format!("{}:53", own_address()), Zone::new(&[]));
    let names: Vec<String> = [0, 1, 2, 3, 14, 15].into_iter().map(dotted).collect();
    for option in [
        "ndots:abc",
        "ndots:3x",
        "ndots:+2",
        "ndots:",
        "ndots: 3",
        "ndots:-1",
        "ndots:-2",
        "ndots:-17",
        "ndots:99",
        "ndots:4294967299",
        "ndots:2 ndots:x",
    ] {
        let env = Env::new(
            &[dns.addr.ip()],
            &format!("search s.test\noptions {option}\n"),
        );
        for name in &names {
            let from = dns.seen().asked.len();
            let glibc = tokio::task::block_in_place(|| env.glibc(name, IpProtocol::Auto));
            assert!(glibc.is_err(), "options {option}, {name}: {glibc:?}");
            let theirs = dns.seen().names_since(from);
            let from = dns.seen().asked.len();
            let ours = env.ours(name, IpProtocol::Auto).await;
            assert!(ours.is_err(), "options {option}, {name}: {ours:?}");
            let asked = dns.seen().names_since(from);
            assert_eq!(
                asked, theirs,
                "options {option}, {name}: ours, then glibc's"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_attempts_and_timeout_values_are_read_as_glibc_reads_them() {
    let dns = DnsServer::start_on(
        &format!("{}:53", own_address()),
        Zone::new(&[
            ("refused.test", Entry::Refused),
            ("silent.test", Entry::Silent),
        ]),
    );
    // A refusal moves on at once: the questions one lookup sends are `attempts` rounds (none
    // at all when glibc reads 0).
    for option in [
        "attempts:abc",
        "attempts:0",
        "attempts:-1",
        "attempts:3x",
        "attempts: 2",
        "attempts:99",
    ] {
        let env = Env::new(&[dns.addr.ip()], &format!("options {option}\n"));
        let before = dns.seen().count("refused.test", "A", "udp");
        assert!(
            tokio::task::block_in_place(|| env.glibc("refused.test.", IpProtocol::Auto)).is_err()
        );
        let between = dns.seen().count("refused.test", "A", "udp");
        assert!(env.ours("refused.test.", IpProtocol::Auto).await.is_err());
        let after = dns.seen().count("refused.test", "A", "udp");
        assert_eq!(
            after - between,
            between - before,
            "options {option}: questions we sent, then glibc's"
        );
    }
    // Silence: one wait of `timeout`, which glibc reads as 1 s for `abc` and 2 s for `2x`.
    // Both resolvers wait at the same time, each on its own sockets.
    for (option, secs) in [("timeout:abc", 1.0), ("timeout:2x", 2.0)] {
        let env = Arc::new(Env::new(
            &[dns.addr.ip()],
            &format!("options {option} attempts:1\n"),
        ));
        let e = env.clone();
        let glibc = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            assert!(e.glibc("silent.test.", IpProtocol::Auto).is_err());
            started.elapsed().as_secs_f64()
        });
        let started = std::time::Instant::now();
        assert!(env.ours("silent.test.", IpProtocol::Auto).await.is_err());
        let ours = started.elapsed().as_secs_f64();
        let theirs = glibc.await.unwrap();
        for took in [ours, theirs] {
            assert!(
                (secs..secs + 0.5).contains(&took),
                "options {option}: ours {ours:.3} s, glibc {theirs:.3} s, expected {secs} s"
            );
        }
    }
}

/// Two network namespaces of this test's own joined by a veth pair whose ends have only the
/// link-local addresses given here (`fe80::1` on the client's `llc0`, `fe80::53` on the
/// server's `lls0`): no automatic address, no duplicate address detection, nothing leaves
/// them. Removed when dropped (their veth ends go with them).
struct LinkLocal {
    /// Where the resolvers run.
    client: String,
    /// Where the name server runs.
    server: String,
}

impl LinkLocal {
    /// The client's interface.
    const CLIENT_IF: &str = "llc0";
    /// The server's interface.
    const SERVER_IF: &str = "lls0";

    fn new() -> LinkLocal {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let net = LinkLocal {
            client: format!("hse-llc-{id}"),
            server: format!("hse-lls-{id}"),
        };
        let (c, s) = (net.client.as_str(), net.server.as_str());
        ip(&["netns", "add", c]);
        ip(&["netns", "add", s]);
        let (c_if, s_if) = (Self::CLIENT_IF, Self::SERVER_IF);
        ip(&[
            "-n", c, "link", "add", c_if, "type", "veth", "peer", "name", s_if, "netns", s,
        ]);
        for (ns, dev, addr) in [(c, c_if, "fe80::1/64"), (s, s_if, "fe80::53/64")] {
            ip(&["-n", ns, "link", "set", dev, "addrgenmode", "none"]);
            ip(&["-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The index of interface `dev` in namespace `ns`.
    fn index(ns: &str, dev: &str) -> u32 {
        let out = std::process::Command::new(program("ip", "iproute2"))
            .args(["-n", ns, "-o", "link", "show", dev])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':').next().unwrap().trim().parse().unwrap()
    }
}

impl Drop for LinkLocal {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// Run `ip` with these arguments; fail naming the package when it cannot.
fn ip(args: &[&str]) {
    let out = std::process::Command::new(program("ip", "iproute2"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root and the iproute2 package)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exporter's answer for `name` with `env`'s files, resolved in network namespace `ns`
/// (the resolver is loaded there too, so that an interface name is the namespace's).
fn ours_in(ns: &str, env: &Env, name: &str) -> Result<Vec<IpAddr>, String> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: setns moves only this thread, into a namespace whose descriptor we
                // hold; the runtime below runs on this thread alone.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(env.ours(name, IpProtocol::Auto))
            })
            .join()
            .unwrap()
    })
}

#[test]
fn a_link_local_name_server_with_its_zone_answers_in_a_network_namespace() {
    let net = LinkLocal::new();
    let server_if = LinkLocal::index(&net.server, LinkLocal::SERVER_IF);
    let client_if = LinkLocal::index(&net.client, LinkLocal::CLIENT_IF);
    let at = SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x53),
        53,
        0,
        server_if,
    );
    let dns = DnsServer::start_in(
        &net.server,
        SocketAddr::V6(at),
        // AAAA only: glibc asks for A only where the host has an IPv4 address besides
        // loopback (AI_ADDRCONFIG), which these namespaces have not.
        Zone::new(&[("web.test", Entry::Records(vec![v6("::1")]))]),
    );
    // The zone as an interface name, and as a number.
    for zone in [LinkLocal::CLIENT_IF.to_owned(), client_if.to_string()] {
        let env = Env::new(
            &[],
            &format!("nameserver fe80::53%{zone}\noptions timeout:1\n"),
        );
        let theirs = env.glibc_in(Some(&net.client), "web.test", IpProtocol::Auto);
        assert_eq!(theirs, Ok(ips(&["::1"])), "glibc, %{zone}");
        let before = dns.seen().count("web.test", "AAAA", "udp");
        let ours = ours_in(&net.client, &env, "web.test");
        assert_eq!(ours, Ok(ips(&["::1"])), "ours, %{zone}");
        assert_eq!(dns.seen().count("web.test", "AAAA", "udp"), before + 1);
    }
    // A zone that is no interface there: glibc asks without one, which cannot reach a
    // link-local server, and so do we.
    let env = Env::new(
        &[],
        "nameserver fe80::53%nosuch0\noptions timeout:1 attempts:1\n",
    );
    assert!(
        env.glibc_in(Some(&net.client), "web.test", IpProtocol::Auto)
            .is_err()
    );
    assert!(ours_in(&net.client, &env, "web.test").is_err());
}
