//! Target groups, HA pairs and `/probe`: scrapes select groups, rounds of different selections
//! share the slots, `--probe.min-interval` serves one round to both replicas, `/probe` probes
//! configured targets only; and a real Prometheus scrapes all three kinds of job.

mod common;

use common::{Exporter, http, sample};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A web server that counts the requests for each path and the most it serves at once; each
/// answer waits `delay`.
struct Counter {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    connections: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

impl Counter {
    fn start(delay: Duration) -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (h, c, m) = (hits.clone(), connections.clone(), most_at_once.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                c.fetch_add(1, Ordering::SeqCst);
                let (h, m, now) = (h.clone(), m.clone(), now.clone());
                std::thread::spawn(move || {
                    let mut s = s;
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(running, Ordering::SeqCst);
                    let mut buf = [0u8; 2048];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Some(path) = head.split_whitespace().nth(1) {
                        *h.lock().unwrap().entry(path.to_owned()).or_default() += 1;
                    }
                    std::thread::sleep(delay);
                    // Out of service before the answer leaves: the client cannot open its next
                    // connection before it has this answer, so no overlap is counted that the
                    // client did not cause.
                    now.fetch_sub(1, Ordering::SeqCst);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                });
            }
        });
        Counter {
            addr,
            hits,
            connections,
            most_at_once,
        }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// Two groups with their own settings, and one target in the default group.
fn grouped(peer: SocketAddr) -> String {
    format!(
        "defaults: {{timeout: 3s}}\ngroups:\n  critical: {{timeout: 2s}}\n  pages: {{}}\ntargets:\n  \
         - {{url: 'http://{peer}/api', group: critical, name: api}}\n  \
         - {{url: 'http://{peer}/home', group: pages}}\n  \
         - {{url: 'http://{peer}/about', group: pages}}\n  \
         - 'http://{peer}/other'\n"
    )
}

#[test]
fn a_scrape_probes_the_groups_it_names_and_series_carry_the_group() {
    let peer = Counter::start(Duration::ZERO);
    let e = Exporter::start(&grouped(peer.addr), &[]);
    let body = http(e.addr, "GET", "/metrics?group=critical", &[]).body;
    let api = format!("http://{}/api", peer.addr);
    assert_eq!(
        sample(
            &body,
            "probe_success",
            &[("target", &api), ("group", "critical")]
        ),
        Some(1.0),
        "{body}"
    );
    assert!(!body.contains("/home"), "{body}");
    assert_eq!((peer.hits("/api"), peer.hits("/home")), (1, 0));
    let body = http(e.addr, "GET", "/metrics?group=pages&group=default", &[]).body;
    assert!(body.contains("/home") && body.contains("/about") && body.contains("/other"));
    assert!(!body.contains("/api\""), "{body}");
    assert!(body.contains("group=\"default\""));
    // No parameter: every target, as before.
    let all = e.scrape(None);
    assert_eq!(all.matches("probe_success{").count(), 4);
    assert_eq!(peer.hits("/api"), 2);
    let r = http(e.addr, "GET", "/metrics?group=nope", &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("critical, default, pages"), "{}", r.body);
    // A file without groups has no group label.
    let plain = Exporter::start(&format!("targets: ['http://{}/x']\n", peer.addr), &[]);
    assert!(!plain.scrape(None).contains("group="));
}

#[test]
fn rounds_of_different_groups_share_the_concurrency_bound() {
    let peer = Counter::start(Duration::from_millis(150));
    let e = Exporter::start(&grouped(peer.addr), &["--probe.concurrency", "1"]);
    let addr = e.addr;
    let scrapes: Vec<_> = ["critical", "pages", "default"]
        .into_iter()
        .map(|g| std::thread::spawn(move || http(addr, "GET", &format!("/metrics?group={g}"), &[])))
        .collect();
    for s in scrapes {
        assert_eq!(s.join().unwrap().status, 200);
    }
    assert_eq!(peer.connections.load(Ordering::SeqCst), 4);
    assert_eq!(peer.most_at_once.load(Ordering::SeqCst), 1);
}

#[test]
fn an_ha_pair_probes_each_target_once_per_min_interval() {
    let peer = Counter::start(Duration::ZERO);
    let e = Exporter::start(&grouped(peer.addr), &["--probe.min-interval", "5s"]);
    // Two Prometheus replicas, one second apart.
    let first = e.scrape(Some(10.0));
    std::thread::sleep(Duration::from_secs(1));
    let second = e.scrape(Some(10.0));
    for path in ["/api", "/home", "/about", "/other"] {
        assert_eq!(peer.hits(path), 1, "{path}");
    }
    let age = |b: &str| sample(b, "http_status_exporter_round_age_seconds", &[]).unwrap();
    assert!(age(&first) < 0.5, "{}", age(&first));
    assert!((0.9..2.0).contains(&age(&second)), "{}", age(&second));
    // Another selection is its own round.
    http(e.addr, "GET", "/metrics?group=critical", &[]);
    assert_eq!(peer.hits("/api"), 2);
}

#[test]
fn probe_answers_for_configured_targets_only() {
    let peer = Counter::start(Duration::ZERO);
    let outsider = Counter::start(Duration::ZERO);
    let e = Exporter::start(&grouped(peer.addr), &[]);
    let api = format!("http://{}/api", peer.addr);
    let q = common::url_encode;
    // Not configured: 404, and nothing is opened towards it.
    let r = http(
        e.addr,
        "GET",
        &format!("/probe?target={}", q(&format!("http://{}/", outsider.addr))),
        &[],
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("not in the config"), "{}", r.body);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(outsider.connections.load(Ordering::SeqCst), 0);
    // Configured: that target's series only, by URL or by name.
    for key in [api.as_str(), "api"] {
        let r = http(
            e.addr,
            "GET",
            &format!("/probe?target={}&module=http_2xx", q(key)),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body.matches("probe_success{").count(), 1, "{}", r.body);
        assert_eq!(
            sample(&r.body, "probe_success", &[("target", &api)]),
            Some(1.0)
        );
        assert!(!r.body.contains("http_status_exporter_"), "{}", r.body);
    }
    assert_eq!(peer.hits("/api"), 2);
    assert_eq!(peer.hits("/home"), 0);
    // A module that names a group must be the target's.
    let r = http(
        e.addr,
        "GET",
        &format!("/probe?target={}&module=pages", q(&api)),
        &[],
    );
    assert_eq!(r.status, 404);
    assert_eq!(http(e.addr, "GET", "/probe", &[]).status, 400);
}

/// A GET against Prometheus's HTTP API, as JSON.
fn api(prom: SocketAddr, path: &str) -> serde_json::Value {
    let r = http(prom, "GET", path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn a_real_prometheus_scrapes_groups_at_their_intervals_and_probe_with_relabeling() {
    let peer = Counter::start(Duration::ZERO);
    let e = Exporter::start(&grouped(peer.addr), &[]);
    let api_url = format!("http://{}/api", peer.addr);
    let home_url = format!("http://{}/home", peer.addr);
    let exporter = e.addr.to_string();
    let conf = format!(
        "global: {{scrape_timeout: 1s}}\nscrape_configs:\n\
         - job_name: critical\n  scrape_interval: 1s\n  params: {{group: [critical]}}\n  static_configs: [{{targets: ['{exporter}']}}]\n\
         - job_name: pages\n  scrape_interval: 4s\n  params: {{group: [pages]}}\n  static_configs: [{{targets: ['{exporter}']}}]\n\
         - job_name: blackbox\n  scrape_interval: 2s\n  metrics_path: /probe\n  params: {{module: [http_2xx]}}\n  \
           static_configs: [{{targets: ['{home_url}']}}]\n  relabel_configs:\n    \
           - {{source_labels: [__address__], target_label: __param_target}}\n    \
           - {{source_labels: [__param_target], target_label: instance}}\n    \
           - {{target_label: __address__, replacement: '{exporter}'}}\n"
    );
    let (proc, prom_addr) = common::prometheus(&conf);
    let start = Instant::now();
    // Wait for every job to have scraped, then let the intervals run.
    // Prometheus answers 503 until its storage is open.
    let ready = || {
        let r = http(
            prom_addr,
            "GET",
            "/api/v1/query?query=count%20by%20(job)%20(probe_success)",
            &[],
        );
        r.status == 200
            && serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["data"]["result"]
                .as_array()
                .unwrap()
                .len()
                == 3
    };
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not every job scraped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (api_before, home_before) = (peer.hits("/api"), peer.hits("/home"));
    std::thread::sleep(Duration::from_secs(8));
    let (api_hits, home_hits) = (
        peer.hits("/api") - api_before,
        peer.hits("/home") - home_before,
    );
    // critical every 1 s; home through pages every 4 s and /probe every 2 s.
    assert!(
        (6..=10).contains(&api_hits),
        "critical target probed {api_hits} times in 8 s"
    );
    assert!(
        (4..=8).contains(&home_hits),
        "home probed {home_hits} times in 8 s"
    );
    let series = api(prom_addr, "/api/v1/series?match%5B%5D=probe_success");
    let series = series["data"].as_array().unwrap();
    let with = |job: &str| -> Vec<&serde_json::Value> {
        series.iter().filter(|s| s["job"] == job).collect()
    };
    let critical = with("critical");
    assert_eq!(critical.len(), 1, "{series:?}");
    assert_eq!(critical[0]["group"], "critical");
    assert_eq!(critical[0]["target"], api_url.as_str());
    assert_eq!(critical[0]["name"], "api");
    let pages = with("pages");
    assert_eq!(pages.len(), 2, "{series:?}");
    assert!(pages.iter().all(|s| s["group"] == "pages"));
    let blackbox = with("blackbox");
    assert_eq!(blackbox.len(), 1, "{series:?}");
    assert_eq!(blackbox[0]["instance"], home_url.as_str());
    assert_eq!(blackbox[0]["target"], home_url.as_str());
    assert_eq!(blackbox[0]["group"], "pages");
    drop(proc);
}
