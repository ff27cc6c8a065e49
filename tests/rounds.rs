//! Rounds under the load real deployments make: several selections of one host scraped at
//! once, scrapes without the timeout header, reloads mid-round, HA pairs with different
//! budgets, and clients that hang up. Every promise is checked at a peer that counts what the
//! exporter really did.

mod common;

use common::{Exporter, http, reason, sample};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A web server on a free loopback port that answers `200 OK` after `delay` (never, when
/// `None`), and counts what the exporter does to it.
struct Peer {
    addr: SocketAddr,
    /// Requests by path.
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Connections between their accept and their answer: each is a probe holding its host's
    /// slot (the answer leaves after the count drops, so no overlap is counted that the client
    /// did not cause).
    in_service: Arc<AtomicUsize>,
    /// The most `in_service` ever reached.
    most_at_once: Arc<AtomicUsize>,
    /// Connections the client has not closed yet.
    open: Arc<AtomicUsize>,
}

impl Peer {
    fn start(delay: Option<Duration>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = Peer {
            addr,
            hits: Arc::default(),
            connections: Arc::default(),
            in_service: Arc::default(),
            most_at_once: Arc::default(),
            open: Arc::default(),
        };
        let (hits, connections, in_service, most, open) = (
            peer.hits.clone(),
            peer.connections.clone(),
            peer.in_service.clone(),
            peer.most_at_once.clone(),
            peer.open.clone(),
        );
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                connections.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let now = in_service.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let (hits, in_service, open) = (hits.clone(), in_service.clone(), open.clone());
                std::thread::spawn(move || serve(s, delay, &hits, &in_service, &open));
            }
        });
        peer
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// One connection: read the request, wait, answer (or not), then wait for the client to close.
fn serve(
    mut s: TcpStream,
    delay: Option<Duration>,
    hits: &Mutex<HashMap<String, usize>>,
    in_service: &AtomicUsize,
    open: &AtomicUsize,
) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    if let Some(path) = head.split_whitespace().nth(1) {
        *hits.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }
    if let Some(delay) = delay {
        std::thread::sleep(delay);
        in_service.fetch_sub(1, Ordering::SeqCst);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    // Until the client closes (or resets) its side.
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    if delay.is_none() {
        in_service.fetch_sub(1, Ordering::SeqCst);
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// `n` targets `/{group}/{i}` on `peer` in each group.
fn groups_on_one_host(peer: SocketAddr, groups: &[&str], n: usize, extra: &str) -> String {
    let mut text =
        format!("max_connections_per_host: 4\ndefaults: {{timeout: 10s}}\n{extra}targets:\n");
    for g in groups {
        for i in 0..n {
            text.push_str(&format!(
                "  - {{url: 'http://{peer}/{g}/{i}', group: {g}}}\n"
            ));
        }
    }
    text
}

/// Scrape `path` with a scrape timeout header; the answer and how long it took.
fn timed_scrape(addr: SocketAddr, path: &str, timeout: f64) -> (common::Response, Duration) {
    let start = Instant::now();
    let r = http(
        addr,
        "GET",
        path,
        &[format!("X-Prometheus-Scrape-Timeout-Seconds: {timeout}")],
    );
    (r, start.elapsed())
}

/// Every target of `group` in `body` succeeded.
fn all_succeeded(body: &str, peer: SocketAddr, group: &str, n: usize) {
    for i in 0..n {
        let target = format!("http://{peer}/{group}/{i}");
        assert_eq!(
            sample(body, "probe_success", &[("target", &target)]),
            Some(1.0),
            "{target}: {:?}",
            reason(body, &target)
        );
    }
}

#[test]
fn overlapping_selections_of_one_host_all_get_real_results_by_their_deadlines() {
    // 0.2 s a request, at most 4 at once: 30 targets of a group take 1.5 s alone.
    let peer = Peer::start(Some(Duration::from_millis(200)));
    let groups = ["a", "b", "c"];
    let e = Exporter::start(&groups_on_one_host(peer.addr, &groups, 30, ""), &[]);
    for together in [&groups[..2], &groups[..]] {
        let addr = e.addr;
        let scrapes: Vec<_> = together
            .iter()
            .map(|g| {
                let g = (*g).to_owned();
                std::thread::spawn(move || {
                    let (r, took) = timed_scrape(addr, &format!("/metrics?group={g}"), 15.0);
                    (g, r, took)
                })
            })
            .collect();
        for s in scrapes {
            let (g, r, took) = s.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            all_succeeded(&r.body, peer.addr, &g, 30);
            // All of them share 4 slots: 0.2 s x 30 x groups / 4, and no group waits for the
            // budget's end.
            let most = Duration::from_millis(200 * 30 * together.len() as u64 / 4 + 1500);
            assert!(took < most, "group {g} answered after {took:?}");
            assert_eq!(
                sample(
                    &r.body,
                    "http_status_exporter_round_probes_not_started",
                    &[]
                ),
                Some(0.0)
            );
        }
    }
    assert!(peer.most_at_once() <= 4, "{} at once", peer.most_at_once());
    assert_eq!(peer.most_at_once(), 4, "the cap is used");
}

#[test]
fn a_scrape_without_the_timeout_header_answers_within_the_default() {
    // 40 targets at 0.5 s each, one at a time: 20 s to probe them all.
    let peer = Peer::start(Some(Duration::from_millis(500)));
    let config = groups_on_one_host(peer.addr, &["a"], 40, "")
        .replace("max_connections_per_host: 4", "max_connections_per_host: 1");
    let e = Exporter::start(
        &config,
        &["--scrape.default-timeout", "2s", "--timeout-offset", "0.5s"],
    );
    let start = Instant::now();
    let r = http(e.addr, "GET", "/metrics", &[]);
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        took < Duration::from_millis(2200),
        "answered after {took:?}"
    );
    let first = format!("http://{}/a/0", peer.addr);
    assert_eq!(
        sample(&r.body, "probe_success", &[("target", &first)]),
        Some(1.0)
    );
    let last = format!("http://{}/a/39", peer.addr);
    assert_eq!(reason(&r.body, &last).as_deref(), Some("not_started"));
}

#[test]
fn the_cap_per_host_holds_across_a_reload_mid_round() {
    let peer = Peer::start(Some(Duration::from_millis(300)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, groups_on_one_host(peer.addr, &["a"], 40, "")).unwrap();
    let e = Exporter::start_file(&path, &["--web.enable-lifecycle"]);
    let addr = e.addr;
    let first = std::thread::spawn(move || timed_scrape(addr, "/metrics", 20.0));
    std::thread::sleep(Duration::from_millis(700));
    // Mid-round: a renamed group, the same host; then a scrape of the new config.
    std::fs::write(&path, groups_on_one_host(peer.addr, &["b"], 40, "")).unwrap();
    assert_eq!(http(e.addr, "POST", "/-/reload", &[]).status, 200);
    let (second, _) = timed_scrape(e.addr, "/metrics", 20.0);
    let (first, _) = first.join().unwrap();
    all_succeeded(&first.body, peer.addr, "a", 40);
    all_succeeded(&second.body, peer.addr, "b", 40);
    assert!(peer.most_at_once() <= 4, "{} at once", peer.most_at_once());
}

#[test]
fn min_interval_never_hands_a_cut_result_to_a_longer_budget() {
    let peer = Peer::start(Some(Duration::from_millis(800)));
    let e = Exporter::start(
        &groups_on_one_host(peer.addr, &["a"], 2, ""),
        &["--probe.min-interval", "30s"],
    );
    let target = format!("http://{}/a/0", peer.addr);
    // A 0.6 s scrape timeout leaves a 0.3 s budget: the probes are cut.
    let (short, _) = timed_scrape(e.addr, "/metrics", 0.6);
    assert_eq!(
        reason(&short.body, &target).as_deref(),
        Some("scrape_deadline")
    );
    // The other replica has 10 s: it gets a round of its own.
    let (long, _) = timed_scrape(e.addr, "/metrics", 10.0);
    assert_eq!(
        sample(&long.body, "probe_success", &[("target", &target)]),
        Some(1.0)
    );
    assert_eq!(peer.hits("/a/0"), 2);
    // That round cut nothing: a replica with a short budget may have it.
    let (again, _) = timed_scrape(e.addr, "/metrics", 0.6);
    assert_eq!(
        sample(&again.body, "probe_success", &[("target", &target)]),
        Some(1.0)
    );
    // A short scrape after a cut one gets it too: its own round would be cut as much.
    let (_, _) = timed_scrape(e.addr, "/metrics?group=a", 0.6);
    let (cut_again, took) = timed_scrape(e.addr, "/metrics?group=a", 0.6);
    assert_eq!(
        reason(&cut_again.body, &target).as_deref(),
        Some("scrape_deadline")
    );
    assert!(
        took < Duration::from_millis(100),
        "served from the last round: {took:?}"
    );
    assert_eq!(peer.hits("/a/0"), 3);
}

/// Send a scrape and keep the connection open without reading; the caller drops it to hang
/// up.
fn scrape_and_hang_up_later(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Prometheus-Scrape-Timeout-Seconds: 25\r\n\r\n"
    )
    .unwrap();
    s
}

/// Wait until `f` holds, for at most `within`; how long it took.
fn wait_for(within: Duration, f: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn an_abandoned_round_closes_its_connections_within_a_second_of_its_last_client_leaving() {
    // A peer that never answers: every probe would hold its connection for 20 s.
    let peer = Peer::start(None);
    let config = groups_on_one_host(peer.addr, &["a"], 10, "")
        .replace("timeout: 10s", "timeout: 20s")
        .replace(
            "max_connections_per_host: 4",
            "max_connections_per_host: 32",
        );
    let e = Exporter::start(&config, &[]);
    let first = scrape_and_hang_up_later(e.addr, "/metrics");
    wait_for(Duration::from_secs(5), || peer.open() == 10).expect("10 probes connected");
    // A second scrape joins the round; the first client hangs up: the round goes on.
    let second = scrape_and_hang_up_later(e.addr, "/metrics");
    std::thread::sleep(Duration::from_millis(200));
    drop(first);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        peer.open(),
        10,
        "a round with a client left keeps its probes"
    );
    assert_eq!(peer.connections.load(Ordering::SeqCst), 10, "one round");
    // The last client hangs up: every connection closes within a second.
    drop(second);
    let took = wait_for(Duration::from_secs(1), || peer.open() == 0);
    assert!(took.is_some(), "{} connections still open", peer.open());
    // The exporter goes on, and says a round was abandoned.
    let body = http(
        e.addr,
        "GET",
        "/metrics",
        &["X-Prometheus-Scrape-Timeout-Seconds: 0.8".to_owned()],
    )
    .body;
    assert_eq!(
        sample(&body, "http_status_exporter_rounds_abandoned_total", &[]),
        Some(1.0),
        "{body}"
    );
}

#[tokio::test]
async fn selection_caches_are_bounded_and_a_reload_empties_them() {
    use http_status_exporter::prober::{MAX_SELECTIONS, Prober, Selection};
    use http_status_exporter::round::Limits;
    // Ten groups of two targets on a closed port: every probe ends at once.
    let port = common::closed_port();
    let mut text = String::from("targets:\n");
    for g in 0..10 {
        for i in 0..2 {
            text.push_str(&format!(
                "  - {{url: 'http://127.0.0.1:{port}/{g}/{i}', group: g{g}}}\n"
            ));
        }
    }
    let path = std::path::Path::new("t.yml");
    let config = http_status_exporter::config::parse(path, &text).unwrap();
    let prober = Arc::new(
        Prober::new(
            config,
            common::system_resolver(),
            Limits { concurrency: 64 },
            http_status_exporter::metrics::ExporterMetrics::new().unwrap(),
        )
        .with_min_interval(Duration::from_secs(60)),
    );
    // Every combination of the ten groups: 1,023 selections.
    for mask in 1u32..1024 {
        let names = (0..10)
            .filter(|g| mask & (1 << g) != 0)
            .map(|g| format!("g{g}"))
            .collect();
        let round = prober
            .scrape_selection(Selection::groups(names), Some(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(round.results.len(), 2 * mask.count_ones() as usize);
        let (subsets, rounds) = prober.cached_selections();
        assert!(
            subsets <= MAX_SELECTIONS && rounds <= MAX_SELECTIONS,
            "{subsets}, {rounds}"
        );
    }
    assert_eq!(prober.cached_selections(), (MAX_SELECTIONS, MAX_SELECTIONS));
    // A reload (groups renamed) drops everything kept for the old config.
    prober
        .set_config(http_status_exporter::config::parse(path, &text.replace("g1", "h1")).unwrap());
    assert_eq!(prober.cached_selections(), (0, 0));
    let round = prober
        .scrape_selection(
            Selection::groups(vec!["h1".into()]),
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(round.results.len(), 2);
    assert_eq!(prober.cached_selections(), (1, 1));
}
