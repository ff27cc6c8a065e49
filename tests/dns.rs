//! Name resolution against a real DNS server of our own on a free loopback port
//! (`tests/common/dns.rs`), pointed at through a resolv.conf of the test's own, as
//! `--dns.resolv-conf` does: latency, NXDOMAIN, SERVFAIL, REFUSED, a silent server, truncation
//! to TCP, CNAME chains, the hosts file, Happy Eyeballs with a real name, families, search and
//! ndots, one lookup per host per round.

mod common;

use common::dns::{DnsServer, Entry, Rec, Zone};
use common::peer::start_server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_status_exporter::config;
use http_status_exporter::dns::{Resolver, Settings};
use http_status_exporter::probe::{FailureReason, ProbeResult};
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
    assert_eq!(rs[0].ip_protocol, Some(4));
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

    // --config.check reads the resolver files too, and names the bad line.
    let targets = dir.path().join("targets.yaml");
    std::fs::write(&targets, "targets: ['http://flag.test/']\n").unwrap();
    let bad = dir.path().join("bad-resolv.conf");
    std::fs::write(&bad, "search x\nnameserver dns.example\n").unwrap();
    let out = std::process::Command::new(common::exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&targets)
        .arg("--dns.resolv-conf")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:12: nameserver \"dns.example\"",
            bad.display()
        )),
        "{err}"
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
