//! Name resolution against a real DNS server of our own on a free loopback port
//! (`tests/common/dns.rs`), pointed at through a resolv.conf of the test's own, as
//! `--dns.resolv-conf` does: latency, NXDOMAIN, SERVFAIL, REFUSED, a silent server, truncation
//! to TCP, CNAME chains, the hosts file, Happy Eyeballs with a real name, families, search and
//! ndots, one lookup per host per round, and a round dropped with its lookups in flight.

mod common;

use common::dns::{DnsServer, Entry, Rec, Zone};
use common::peer::start_server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_status_exporter::config;
use http_status_exporter::dns::{Resolver, Settings};
use http_status_exporter::outcome::{FailureReason, ProbeResult};
use http_status_exporter::probe_url::{Host, IpProtocol};
use http_status_exporter::round::{Limits, run_round};

/// The built-in resolver reading `resolv.conf` (plus `extra` lines) for `dns`, and `hosts`.
fn resolver(dns: &DnsServer, dir: &Path, extra: &str, hosts: &str, cache: bool) -> Arc<Resolver> {
    let hosts_file = dir.join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    let settings = Settings {
        resolv_conf: Some(dns.resolv_conf(dir, extra)),
        hosts_file: Some(hosts_file),
        cache,
        ..Settings::default()
    };
    Arc::new(Resolver::load(&settings, 4096).unwrap())
}

/// Probe a targets file once with `resolver`; results in file order.
async fn round(yaml: &str, resolver: &Arc<Resolver>) -> Vec<ProbeResult> {
    let cfg = Arc::new(config::parse(Path::new("dns.yml"), yaml).unwrap());
    run_round(cfg, resolver, None, Limits { concurrency: 64 }, |_, _| {})
        .await
        .results
}

/// A targets file of these URLs with a timeout.
fn targets(timeout: &str, urls: &[String]) -> String {
    let mut y = format!("defaults: {{timeout: {timeout}}}\ntargets:\n");
    for u in urls {
        y.push_str(&format!("  - '{u}'\n"));
    }
    y
}

fn v4(s: &str) -> Rec {
    Rec::A(s.parse().unwrap())
}

fn v6(s: &str) -> Rec {
    Rec::Aaaa(s.parse().unwrap())
}

/// A web server on 127.0.0.1 answering 200 to anything.
async fn web() -> SocketAddr {
    start_server("127.0.0.1:0").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_time_is_the_servers_latency() {
    let mut zone = Zone::new(&[("slow.test", Entry::Records(vec![v4("127.0.0.1")]))]);
    zone.delay = Duration::from_millis(100);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", false);
    let port = web().await.port();
    let rs = round(&targets("3s", &[format!("http://slow.test:{port}/")]), &r).await;
    assert!(rs[0].success(), "{:?}", rs[0]);
    let resolve = rs[0].phases.resolve;
    // A and AAAA are asked at once, so the lookup takes one delay, not two.
    assert!(
        resolve >= Duration::from_millis(100) && resolve < Duration::from_millis(140),
        "resolve {resolve:?}"
    );
    assert_eq!(dns.seen().count("slow.test", "A", "udp"), 1);
    assert_eq!(dns.seen().count("slow.test", "AAAA", "udp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_dns_with_a_detail_that_tells_them_apart() {
    let dns = DnsServer::start(Zone::new(&[
        ("servfail.test", Entry::ServFail),
        ("refused.test", Entry::Refused),
        ("v6only.test", Entry::Records(vec![v6("::1")])),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1", "", false);
    let yaml = "defaults: {timeout: 2s}\ntargets:\n  - http://missing.test/\n  - http://servfail.test/\n  \
                - http://refused.test/\n  - url: http://v6only.test/\n    ip_protocol: ip4\n";
    let rs = round(yaml, &r).await;
    let details: Vec<&str> = rs
        .iter()
        .map(|r| r.detail.as_deref().unwrap_or(""))
        .collect();
    for r in &rs {
        assert_eq!(r.failure, Some(FailureReason::Dns), "{r:?}");
    }
    assert_eq!(details[0], "missing.test: NXDOMAIN (no such name)");
    assert_eq!(
        details[1],
        "servfail.test: the DNS server answered SERVFAIL"
    );
    assert_eq!(details[2], "refused.test: the DNS server answered REFUSED");
    assert_eq!(details[3], "v6only.test: no A record");
    // ip4 asked for A only.
    assert_eq!(dns.seen().count("v6only.test", "AAAA", "udp"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_ends_its_probes_at_the_deadline_and_holds_up_no_one() {
    let dns = DnsServer::start(Zone::new(&[("hang.test", Entry::Silent)]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "127.0.0.1 inhosts.test\n", false);
    let addr = web().await;
    let port = addr.port();
    let started = Instant::now();
    let rs = round(
        &targets(
            "1s",
            &[
                format!("http://hang.test:{port}/"),
                format!("http://{addr}/"),
                format!("http://inhosts.test:{port}/"),
            ],
        ),
        &r,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(rs[0].failure, Some(FailureReason::Dns), "{:?}", rs[0]);
    assert_eq!(
        rs[0].detail.as_deref(),
        Some("hang.test: no answer before the probe's deadline")
    );
    assert!(
        rs[0].duration >= Duration::from_millis(1000)
            && rs[0].duration < Duration::from_millis(1100),
        "{:?}",
        rs[0].duration
    );
    assert!(took < Duration::from_millis(1300), "round took {took:?}");
    for other in &rs[1..] {
        assert!(other.success(), "{other:?}");
        assert!(other.duration < Duration::from_millis(200), "{other:?}");
    }
}

/// This process's IPv4 UDP sockets connected to `server` (from `/proc/self/net/udp`).
fn udp_sockets_to(server: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = server else {
        panic!("an IPv4 server")
    };
    // The kernel writes the address as the bytes of the IP in memory order, then the port.
    let ip = u32::from_ne_bytes(v4.ip().octets());
    let remote = format!("{ip:08X}:{:04X}", v4.port());
    std::fs::read_to_string("/proc/self/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some(remote.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_dropped_mid_lookup_stops_its_lookups_and_closes_their_sockets() {
    // Names whose server never answers: each lookup would wait its 10 s on its own socket.
    let names: Vec<String> = (0..20).map(|i| format!("q{i}.test")).collect();
    let entries: Vec<(&str, Entry)> = names.iter().map(|n| (n.as_str(), Entry::Silent)).collect();
    let dns = DnsServer::start(Zone::new(&entries));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(
        &dns,
        dir.path(),
        "options timeout:10 attempts:1\n",
        "",
        false,
    );
    let urls: Vec<String> = names.iter().map(|n| format!("http://{n}/")).collect();
    let yaml = targets("20s", &urls);
    let round = tokio::spawn(async move { round(&yaml, &r).await });
    // Wait until `done` holds of the sockets open to the server, for at most `within`.
    let sockets = |done: fn(usize) -> bool, within: Duration, what: &'static str| async move {
        let start = Instant::now();
        while !done(udp_sockets_to(dns.addr)) {
            let open = udp_sockets_to(dns.addr);
            assert!(start.elapsed() < within, "{open} lookups {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    sockets(|n| n >= 20, Duration::from_secs(5), "asking, not 20").await;
    // The round's last client leaves: the round is dropped with its lookups in flight.
    round.abort();
    sockets(
        |n| n == 0,
        Duration::from_secs(1),
        "still asking a second after their round was dropped",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_answers_are_asked_again_over_tcp_and_cnames_are_followed() {
    let dns = DnsServer::start(Zone::new(&[
        ("big.test", Entry::Truncated(vec![v4("127.0.0.1")])),
        ("www.test", Entry::Records(vec![Rec::Cname("edge.test")])),
        ("edge.test", Entry::Records(vec![Rec::Cname("origin.test")])),
        ("origin.test", Entry::Records(vec![v4("127.0.0.1")])),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", false);
    let port = web().await.port();
    let yaml = format!(
        "defaults: {{timeout: 2s, ip_protocol: ip4}}\ntargets:\n  - http://big.test:{port}/\n  - http://www.test:{port}/\n"
    );
    let rs = round(&yaml, &r).await;
    assert!(rs[0].success(), "{:?}", rs[0]);
    assert!(rs[1].success(), "{:?}", rs[1]);
    let seen = dns.seen();
    assert_eq!(seen.count("big.test", "A", "udp"), 1);
    assert_eq!(seen.count("big.test", "A", "tcp"), 1);
    // The chain came in one answer: the aliases were not asked for separately.
    assert_eq!(seen.for_name("edge.test") + seen.for_name("origin.test"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_file_names_win_and_send_no_query() {
    let dns = DnsServer::start(Zone::new(&[(
        "both.test",
        Entry::Records(vec![v4("192.0.2.1")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(
        &dns,
        dir.path(),
        "",
        "# local names\n127.0.0.1 only-in-hosts.test\n127.0.0.1 both.test\n",
        false,
    );
    let port = web().await.port();
    let rs = round(
        &targets(
            "2s",
            &[
                format!("http://only-in-hosts.test:{port}/"),
                format!("http://both.test:{port}/"),
            ],
        ),
        &r,
    )
    .await;
    assert!(rs.iter().all(ProbeResult::success), "{rs:?}");
    assert_eq!(dns.seen().total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_with_a_real_name_falls_back_to_the_family_that_answers() {
    let dns = DnsServer::start(Zone::new(&[(
        "dual.test",
        Entry::Records(vec![v4("127.0.0.1"), v6("::1")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", false);
    // Listening on 127.0.0.1 only: the same port on ::1 refuses, and IPv6 is tried first.
    let port = web().await.port();
    let yaml = format!(
        "defaults: {{timeout: 2s}}\ntargets:\n  - http://dual.test:{port}/\n  - url: http://dual.test:{port}/v6\n    ip_protocol: ip6\n"
    );
    let rs = round(&yaml, &r).await;
    assert!(rs[0].success(), "{:?}", rs[0]);
    assert_eq!(rs[0].ip_protocol(), Some(4));
    // Well before the 250 ms attempt delay: the refusal moved on at once.
    assert!(
        rs[0].phases.connect < Duration::from_millis(100),
        "{:?}",
        rs[0].phases
    );
    assert_eq!(
        rs[1].failure,
        Some(FailureReason::ConnectRefused),
        "{:?}",
        rs[1]
    );
    // auto asked both families, ip6 only AAAA (a query in flight for the same question may be
    // shared by both lookups).
    let seen = dns.seen();
    assert_eq!(seen.count("dual.test", "A", "udp"), 1);
    assert!((1..=2).contains(&seen.count("dual.test", "AAAA", "udp")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_list_and_ndots() {
    let dns = DnsServer::start(Zone::new(&[
        ("svc.corp.test", Entry::Records(vec![v4("127.0.0.1")])),
        ("api.eu.corp.test", Entry::Records(vec![v4("127.0.0.1")])),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(
        &dns,
        dir.path(),
        "search corp.test\noptions ndots:2\n",
        "",
        false,
    );
    let port = web().await.port();
    let yaml = format!(
        "defaults: {{timeout: 2s, ip_protocol: ip4}}\ntargets:\n  - http://svc:{port}/\n  - http://api.eu:{port}/\n"
    );
    let rs = round(&yaml, &r).await;
    assert!(rs.iter().all(ProbeResult::success), "{rs:?}");
    let seen = dns.seen();
    // Fewer dots than ndots: the search list comes first, so the bare names were never asked.
    assert_eq!(seen.count("svc.corp.test", "A", "udp"), 1);
    assert_eq!(seen.count("api.eu.corp.test", "A", "udp"), 1);
    assert_eq!(seen.for_name("svc") + seen.for_name("api.eu"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_once_per_round_afresh_every_round_unless_cached() {
    let dns = DnsServer::start(Zone::new(&[(
        "shared.test",
        Entry::Records(vec![v4("127.0.0.1")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let port = web().await.port();
    let urls: Vec<String> = (0..5)
        .map(|i| format!("http://shared.test:{port}/{i}"))
        .collect();
    let yaml = targets("2s", &urls);
    let fresh = resolver(&dns, dir.path(), "", "", false);
    for expected in [1, 2] {
        let rs = round(&yaml, &fresh).await;
        assert!(rs.iter().all(ProbeResult::success), "{rs:?}");
        assert_eq!(dns.seen().count("shared.test", "A", "udp"), expected);
        // Every target reports the one lookup's own time.
        assert!(
            rs.windows(2)
                .all(|w| w[0].phases.resolve == w[1].phases.resolve)
        );
    }
    let cached = resolver(&dns, dir.path(), "", "", true);
    round(&yaml, &cached).await;
    round(&yaml, &cached).await;
    assert_eq!(dns.seen().count("shared.test", "A", "udp"), 3);
}

#[test]
fn the_exporter_reads_the_resolver_files_given_by_flag() {
    let dns = DnsServer::start(Zone::new(&[(
        "flag.test",
        Entry::Records(vec![v4("127.0.0.1")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let resolv = dns.resolv_conf(dir.path(), "");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 from-hosts.test\n").unwrap();
    let port = common::peer::spawn_thread("127.0.0.1:0").port();
    let out = std::process::Command::new(common::exporter_bin())
        .args(["check", "--output", "json", "--dns.resolv-conf"])
        .arg(&resolv)
        .arg("--dns.hosts-file")
        .arg(&hosts)
        .arg(format!("http://flag.test:{port}/"))
        .arg(format!("http://from-hosts.test:{port}/"))
        .arg(format!("http://nothere.test:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let by = |t: &str| {
        lines
            .iter()
            .find(|l| l["target"].as_str().unwrap().contains(t))
            .unwrap()
    };
    assert_eq!(by("flag.test")["success"], true, "{text}");
    assert_eq!(by("from-hosts.test")["success"], true, "{text}");
    assert_eq!(by("nothere.test")["reason"], "dns", "{text}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(dns.seen().for_name("from-hosts.test"), 0);

    // --config.check reads the resolver files too. A line glibc skips is skipped with a
    // warning that names it, and the check passes, as glibc's programs run.
    let targets = dir.path().join("targets.yaml");
    std::fs::write(&targets, "targets: ['http://flag.test/']\n").unwrap();
    let odd = dir.path().join("odd-resolv.conf");
    std::fs::write(
        &odd,
        "search x\nnameserver dns.example\noptions ndots:abc\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&targets)
        .arg("--dns.resolv-conf")
        .arg(&odd)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    for warning in [
        format!(
            "{}:2:12: nameserver \\\"dns.example\\\" is not",
            odd.display()
        ),
        format!("{}:3:9: options ndots:abc is read as 0", odd.display()),
    ] {
        assert!(err.contains(&warning), "{warning} not in {err}");
    }
    assert!(
        said.contains("dns: OK, builtin resolver: servers 127.0.0.1:53, search [x], ndots 0"),
        "{said}"
    );
    let out = std::process::Command::new(common::exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&targets)
        .arg("--dns.resolv-conf")
        .arg(&resolv)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("dns: OK, builtin resolver: servers {}", dns.addr)),
        "{said}"
    );
}

#[test]
fn check_prints_a_table_whose_columns_line_up() {
    // Ten public-looking names that do not resolve (our DNS server says NXDOMAIN: no query
    // leaves the machine), a refused port and a healthy target.
    let names = [
        "www.youtube.com",
        "login.microsoftonline.com",
        "a-very-long-subdomain-name-for-testing.example.org",
        "x.co",
        "api.github.com",
        "cdn.jsdelivr.net",
        "status.cloud.google.com",
        "www.wikipedia.org",
        "registry.npmjs.org",
        "news.ycombinator.com",
    ];
    let dns = DnsServer::start(Zone::new(&[]));
    let dir = tempfile::tempdir().unwrap();
    let resolv = dns.resolv_conf(dir.path(), "options attempts:1");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let refused = format!("http://127.0.0.1:{}/", common::closed_port());
    let mut urls: Vec<String> = names.iter().map(|n| format!("https://{n}/")).collect();
    urls.push(refused.clone());
    urls.push(format!("http://{peer}/ok"));
    let out = std::process::Command::new(common::exporter_bin())
        .args(["check", "--timeout", "2s", "--dns.resolv-conf"])
        .arg(&resolv)
        .arg("--dns.hosts-file")
        .arg(&hosts)
        .args(&urls)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + urls.len() + 1, "{text}");
    assert!(!text.contains('\x1b'), "colour without a terminal: {text}");
    let header = lines[0];
    let url_col = header.find("URL").unwrap();
    let result_col = header.find("RESULT").unwrap();
    for line in &lines[1..=urls.len()] {
        let chars: Vec<char> = line.chars().collect();
        let url_start = chars.iter().position(|c| *c == 'h').unwrap();
        assert_eq!(url_start, url_col, "URL column moved: {line:?}\n{text}");
        // The result starts where the header says, after the padded URL column.
        assert_ne!(chars[result_col], ' ', "{line:?}");
        assert_eq!(chars[result_col - 1], ' ', "{line:?}");
        assert_eq!(chars[result_col - 2], ' ', "{line:?}");
    }
    for n in names {
        let line = lines.iter().find(|l| l.contains(n)).unwrap();
        assert!(line.contains(&format!("dns: {n}: NXDOMAIN")), "{line}");
        // The name is said once in the detail, not again by a second layer of error text.
        assert_eq!(line.matches(n).count(), 2, "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&refused) && l.contains("connect_refused"))
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with("12 targets: 1 up, 11 down, in "),
        "{summary}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// Resolve `name` through a round of `resolver`, as a probe would.
async fn lookup(
    resolver: &Arc<Resolver>,
    name: &str,
    proto: IpProtocol,
) -> Result<Vec<std::net::IpAddr>, String> {
    let round = resolver.round();
    round
        .resolve(&Host::Name(name.into()), proto)
        .await
        .result
        .map(|a| a.to_vec())
        .map_err(|e| e.to_string())
}

fn ips(list: &[&str]) -> Vec<std::net::IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_another_question_is_ignored_and_the_wait_goes_on() {
    let mut zone = Zone::new(&[(
        "spoofed.test",
        Entry::Mismatched(vec![v4("127.0.0.7"), v6("::7")]),
    )]);
    zone.delay = Duration::from_millis(20);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1", "", false);
    for proto in [IpProtocol::Auto, IpProtocol::Ip4, IpProtocol::Ip6] {
        let round = r.round();
        let answer = round
            .resolve(&Host::Name("spoofed.test".into()), proto)
            .await;
        let want = match proto {
            IpProtocol::Auto => ips(&["::7", "127.0.0.7"]),
            IpProtocol::Ip4 => ips(&["127.0.0.7"]),
            IpProtocol::Ip6 => ips(&["::7"]),
        };
        assert_eq!(answer.result.as_deref(), Ok(&want[..]), "{proto:?}");
        // The right answer came 5 ms after the decoys.
        assert!(answer.took >= Duration::from_millis(25), "{answer:?}");
    }
    // Each question was asked once: the decoys neither ended the wait nor caused a retry.
    assert_eq!(dns.seen().count("spoofed.test", "A", "udp"), 2);
    assert_eq!(dns.seen().count("spoofed.test", "AAAA", "udp"), 2);
}

/// A server that answers every name under `suffix` with 127.0.0.1 after `delay`, and the
/// built-in resolver for it (`resolv.conf` lines `options`, an empty hosts file) with at
/// most `concurrency` queries in flight.
fn wildcard(
    suffix: &str,
    delay: Duration,
    dir: &Path,
    options: &str,
    concurrency: usize,
) -> (DnsServer, Arc<Resolver>) {
    let dns = DnsServer::start(Zone {
        wildcard: Some((suffix.to_owned(), vec![v4("127.0.0.1")])),
        delay,
        ..Zone::default()
    });
    let hosts_file = dir.join("hosts");
    std::fs::write(&hosts_file, "").unwrap();
    let settings = Settings {
        resolv_conf: Some(dns.resolv_conf(dir, options)),
        hosts_file: Some(hosts_file),
        concurrency: Some(concurrency),
        ..Settings::default()
    };
    let r = Arc::new(Resolver::load(&settings, 1 << 16).unwrap());
    (dns, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lookups_with_one_attempt_have_no_false_failure() {
    let dir = tempfile::tempdir().unwrap();
    let options = "options attempts:1 timeout:5\n";
    let (dns, r) = wildcard(
        ".many.test",
        Duration::from_millis(20),
        dir.path(),
        options,
        1024,
    );
    let round = Arc::new(r.round());
    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let round = round.clone();
            tokio::spawn(async move {
                let host = Host::Name(format!("n{i}.many.test"));
                round.resolve(&host, IpProtocol::Auto).await.result
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} false failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(dns.seen().total(), 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_leaves_from_a_fresh_port_with_a_random_id() {
    let dns = DnsServer::start(Zone::new(&[(
        "ports.test",
        Entry::Records(vec![v4("127.0.0.1")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", false);
    for _ in 0..300 {
        lookup(&r, "ports.test", IpProtocol::Ip4).await.unwrap();
    }
    let seen = dns.seen();
    // The kernel picks a random free port for each socket: a handful may repeat, 8 fixed
    // sockets would give 8.
    assert!(seen.ports.len() >= 250, "{} ports", seen.ports.len());
    let distinct: std::collections::HashSet<u16> = seen.ids.iter().copied().collect();
    assert!(distinct.len() >= 290, "{} ids", distinct.len());
    // Not a sequence: consecutive IDs do not step by a constant.
    let steps: std::collections::HashSet<u16> = seen
        .ids
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect();
    assert!(steps.len() >= 250, "{} steps", steps.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_lookup_outlives_the_target_that_started_it() {
    let mut zone = Zone::new(&[("shared.test", Entry::Records(vec![v4("127.0.0.1")]))]);
    zone.delay = Duration::from_millis(400);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1", "", false);
    let round = Arc::new(r.round());
    let host = Host::Name("shared.test".into());
    let started = tokio::time::Instant::now();
    // A short-timeout target starts the lookup and gives up at 100 ms.
    let short = {
        let (round, host) = (round.clone(), host.clone());
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_millis(100),
                round.resolve(&host, IpProtocol::Ip4),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A target with a longer deadline shares that lookup: the answer comes at 400 ms.
    let long = tokio::time::timeout_at(
        started + Duration::from_millis(490),
        round.resolve(&host, IpProtocol::Ip4),
    )
    .await;
    assert!(short.await.unwrap().is_err(), "the short target gave up");
    let answer = long.expect("the shared lookup went on after the short target gave up");
    assert_eq!(answer.result.unwrap().to_vec(), ips(&["127.0.0.1"]));
    assert!(
        answer.took >= Duration::from_millis(400) && answer.took < Duration::from_millis(490),
        "{:?}",
        answer.took
    );
    // One lookup, not one restarted by the second target.
    assert_eq!(dns.seen().count("shared.test", "A", "udp"), 1);
    // Targets that come later in the round get the same answer without a query.
    let late = round.resolve(&host, IpProtocol::Ip4).await;
    assert!(late.result.is_ok());
    assert_eq!(dns.seen().count("shared.test", "A", "udp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_whose_first_target_times_out_still_resolves_the_others() {
    let mut zone = Zone::new(&[("slowname.test", Entry::Records(vec![v4("127.0.0.1")]))]);
    zone.delay = Duration::from_millis(300);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1", "", false);
    let port = web().await.port();
    // The first target's deadline passes before the answer; the other five share its lookup.
    let mut yaml =
        format!("targets:\n  - url: http://slowname.test:{port}/short\n    timeout: 100ms\n");
    for i in 0..5 {
        yaml.push_str(&format!(
            "  - url: http://slowname.test:{port}/{i}\n    timeout: 2s\n"
        ));
    }
    let rs = round(&yaml, &r).await;
    assert_eq!(rs[0].failure, Some(FailureReason::Dns), "{:?}", rs[0]);
    for other in &rs[1..] {
        assert!(other.success(), "{other:?}");
        assert!(
            other.phases.resolve >= Duration::from_millis(300)
                && other.phases.resolve < Duration::from_millis(380),
            "{:?}",
            other.phases
        );
    }
    assert_eq!(dns.seen().count("slowname.test", "A", "udp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_be_used_is_skipped_in_every_round() {
    let dns = DnsServer::start(Zone::new(&[(
        "next.test",
        Entry::Records(vec![v4("127.0.0.9")]),
    )]));
    let dir = tempfile::tempdir().unwrap();
    // A UDP socket cannot be connected to the broadcast address (EACCES): like an IPv6 server
    // on a host without IPv6, the socket for it cannot be opened.
    let conf = dir.path().join("resolv.conf");
    std::fs::write(
        &conf,
        format!(
            "nameserver 255.255.255.255\nnameserver {}#{}\noptions attempts:1\n",
            dns.addr.ip(),
            dns.addr.port()
        ),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let settings = Settings {
        resolv_conf: Some(conf),
        hosts_file: Some(hosts),
        ..Settings::default()
    };
    let r = Arc::new(Resolver::load(&settings, 4096).unwrap());
    for _ in 0..3 {
        assert_eq!(
            lookup(&r, "next.test", IpProtocol::Auto).await,
            Ok(ips(&["127.0.0.9"]))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_twenty_aliases_in_one_answer_resolves() {
    let names: Vec<String> = (0..=20).map(|i| format!("c{i}.chain.test")).collect();
    let leaked: Vec<&'static str> = names
        .iter()
        .map(|n| &*Box::leak(n.clone().into_boxed_str()))
        .collect();
    let mut table: Vec<(&str, Entry)> = (0..20)
        .map(|i| (leaked[i], Entry::Records(vec![Rec::Cname(leaked[i + 1])])))
        .collect();
    table.push((
        leaked[20],
        Entry::Records(vec![v4("127.0.0.20"), v6("::20")]),
    ));
    let dns = DnsServer::start(Zone::new(&table));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", false);
    assert_eq!(
        lookup(&r, "c0.chain.test", IpProtocol::Auto).await,
        Ok(ips(&["::20", "127.0.0.20"]))
    );
    // The chain came whole in one answer per type.
    assert_eq!(dns.seen().total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_with_the_top_bit_set_is_not_kept_by_the_cache() {
    let mut zone = Zone::new(&[("ttl.test", Entry::Records(vec![v4("127.0.0.1")]))]);
    zone.ttl = Some(0x8000_0000 | 3600);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "", "", true);
    for expected in 1..=3 {
        assert_eq!(
            lookup(&r, "ttl.test", IpProtocol::Ip4).await,
            Ok(ips(&["127.0.0.1"]))
        );
        assert_eq!(dns.seen().count("ttl.test", "A", "udp"), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_families_come_from_one_search_candidate() {
    let dns = DnsServer::start(Zone::new(&[
        // AAAA for the first suffix, A for the second: the first name has records.
        ("mixed.a.test", Entry::Records(vec![v6("::a")])),
        ("mixed.b.test", Entry::Records(vec![v4("127.0.0.11")])),
        // The first name exists without addresses (NODATA for both): the search goes on.
        ("empty.a.test", Entry::Records(vec![])),
        ("empty.b.test", Entry::Records(vec![v4("127.0.0.12")])),
        // The first name does not exist (NXDOMAIN): the search goes on.
        (
            "later.b.test",
            Entry::Records(vec![v4("127.0.0.13"), v6("::13")]),
        ),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "search a.test b.test\n", "", false);
    assert_eq!(
        lookup(&r, "mixed", IpProtocol::Auto).await,
        Ok(ips(&["::a"]))
    );
    assert_eq!(dns.seen().for_name("mixed.b.test"), 0);
    // Asked for one family, the search goes on until a name has that family.
    assert_eq!(
        lookup(&r, "mixed", IpProtocol::Ip4).await,
        Ok(ips(&["127.0.0.11"]))
    );
    assert_eq!(
        lookup(&r, "empty", IpProtocol::Auto).await,
        Ok(ips(&["127.0.0.12"]))
    );
    assert_eq!(
        lookup(&r, "later", IpProtocol::Auto).await,
        Ok(ips(&["::13", "127.0.0.13"]))
    );
    assert_eq!(
        lookup(&r, "nowhere", IpProtocol::Auto).await,
        Err("nowhere: NXDOMAIN (no such name)".into())
    );
    let seen = dns.seen();
    // Each candidate asked both families at once, once.
    for name in ["empty.a.test", "later.a.test", "later.b.test"] {
        assert_eq!(seen.count(name, "A", "udp"), 1, "{name}");
        assert_eq!(seen.count(name, "AAAA", "udp"), 1, "{name}");
    }
}

/// Within a round a socket whose lookup got its answers serves the next lookups, at most
/// `SOCKET_USES` of them; a lookup that timed out closes its socket, so that its late answer
/// reaches no other lookup; and no socket outlives its round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_serves_a_few_clean_lookups_of_its_round_then_closes() {
    use http_status_exporter::dns::client::SOCKET_USES;
    let mut zone = Zone {
        wildcard: Some((".pool.test".to_owned(), vec![v4("127.0.0.1")])),
        ..Zone::default()
    };
    zone.names.insert("silent.test".into(), Entry::Silent);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1 timeout:1", "", false);
    let round = r.round();
    let n = 10 * SOCKET_USES as usize;
    for i in 0..n {
        let host = Host::Name(format!("n{i}.pool.test"));
        let answer = round.resolve(&host, IpProtocol::Ip4).await;
        assert!(answer.result.is_ok(), "{answer:?}");
    }
    // The one that times out, then one more.
    let silent = round
        .resolve(&Host::Name("silent.test".into()), IpProtocol::Ip4)
        .await;
    assert!(silent.result.is_err(), "{silent:?}");
    let after = round
        .resolve(&Host::Name("after.pool.test".into()), IpProtocol::Ip4)
        .await;
    assert!(after.result.is_ok(), "{after:?}");
    drop(round);
    let next_round = r.round();
    let next = next_round
        .resolve(&Host::Name("next.pool.test".into()), IpProtocol::Ip4)
        .await;
    assert!(next.result.is_ok(), "{next:?}");
    let seen = dns.seen();
    let uses: Vec<usize> = seen.by_port.values().map(Vec::len).collect();
    // Sockets are reused: 160 lookups took about 10 sockets, each at most SOCKET_USES.
    assert!(uses.iter().all(|&u| u <= SOCKET_USES as usize), "{uses:?}");
    assert!(
        seen.by_port.len() <= n / 4,
        "{} ports for {n}",
        seen.by_port.len()
    );
    let port_of = |name: &str| {
        seen.by_port
            .iter()
            .find(|(_, names)| names.iter().any(|x| x == name))
            .map(|(p, names)| (*p, names.clone()))
            .unwrap()
    };
    // The socket of the timed-out lookup asked nothing after it.
    let (silent_port, names) = port_of("silent.test");
    assert_eq!(
        names.last().map(String::as_str),
        Some("silent.test"),
        "{names:?}"
    );
    assert_ne!(port_of("after.pool.test").0, silent_port);
    // A new round opens a socket of its own.
    let (next_port, names) = port_of("next.pool.test");
    assert_eq!(names, vec!["next.pool.test".to_owned()]);
    assert_ne!(next_port, port_of("after.pool.test").0);
}

/// A round looks its names up ahead of their probes: with one probe at a time, four names
/// whose lookups take 300 ms each take about one lookup's time, not four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_looks_its_names_up_ahead_of_their_probes() {
    let mut zone = Zone {
        wildcard: Some((".ahead.test".to_owned(), vec![v4("127.0.0.1")])),
        ..Zone::default()
    };
    zone.delay = Duration::from_millis(300);
    let dns = DnsServer::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(&dns, dir.path(), "options attempts:1", "", false);
    let port = web().await.port();
    let urls: Vec<String> = (0..4)
        .map(|i| format!("http://n{i}.ahead.test:{port}/"))
        .collect();
    let cfg = Arc::new(config::parse(Path::new("dns.yml"), &targets("5s", &urls)).unwrap());
    let round = run_round(cfg, &r, None, Limits { concurrency: 1 }, |_, _| {}).await;
    assert!(
        round.results.iter().all(ProbeResult::success),
        "{:?}",
        round.results
    );
    // One probe at a time: without looking ahead, 4 x 300 ms.
    assert!(
        round.duration < Duration::from_millis(900),
        "{:?}",
        round.duration
    );
    for r in &round.results {
        // Each reports its lookup's own time.
        assert!(
            r.phases.resolve >= Duration::from_millis(300),
            "{:?}",
            r.phases
        );
    }
}

/// `--dns.concurrency` bounds the queries waiting at the server, not the lookups: a lookup of
/// both families asks A and AAAA at once and takes two of its slots, so that a resolver with
/// a cap on the queries one client may have waiting (unbound's `wait-limit`, 1,000 by
/// default) never drops ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_concurrency_bounds_queries_in_flight() {
    for (proto, lookups_at_once) in [(IpProtocol::Auto, 2), (IpProtocol::Ip4, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let delay = Duration::from_millis(50);
        let (dns, r) = wildcard(".cap.test", delay, dir.path(), "options attempts:1\n", 4);
        assert!(
            r.describe().contains("4 queries at once"),
            "{}",
            r.describe()
        );
        let round = Arc::new(r.round());
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let round = round.clone();
                tokio::spawn(async move {
                    let host = Host::Name(format!("n{i}.cap.test"));
                    round.resolve(&host, proto).await.result
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let took = started.elapsed();
        let seen = dns.seen();
        assert_eq!(seen.most_waiting, 4, "{proto:?}");
        // 40 lookups of 50 ms, `lookups_at_once` at a time.
        let floor = Duration::from_millis(50 * 40 / lookups_at_once);
        assert!(took >= floor, "{proto:?}: {took:?}");
    }
    // The default stays under unbound's wait-limit.
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(Zone::default());
    let settings = Settings {
        resolv_conf: Some(dns.resolv_conf(dir.path(), "")),
        ..Settings::default()
    };
    let r = Resolver::load(&settings, 1 << 20).unwrap();
    assert!(
        r.describe().contains("768 queries at once"),
        "{}",
        r.describe()
    );
}
