//! Scrape budgets and rounds: a crowded round answers by its deadline and opens nothing after
//! it; each scrape gets its own deadline and never a shorter budget; a scrape after a reload
//! never gets the old targets; SIGHUP during start-up is harmless; HEAD costs no round.

mod common;

use common::{Exporter, http, reason, sample};

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A listener that accepts, counts and holds every connection without answering.
fn silent_counter() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().map_while(Result::ok) {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, count)
}

/// A scrape announcing a 0.6 s timeout: how long its answer took, and the answer.
fn short_scrape(addr: SocketAddr) -> (Duration, String) {
    let t = Instant::now();
    let r = http(
        addr,
        "GET",
        "/metrics",
        &["X-Prometheus-Scrape-Timeout-Seconds: 0.6".into()],
    );
    (t.elapsed(), r.body)
}

/// The number of series of `probe_failure_reason` with this reason.
fn count_reason(body: &str, want: &str) -> usize {
    body.lines()
        .filter(|l| {
            l.starts_with("probe_failure_reason{") && l.contains(&format!("reason=\"{want}\""))
        })
        .count()
}

#[test]
fn a_crowded_round_answers_by_the_deadline_and_late_probes_open_no_socket() {
    let (addr, accepted) = silent_counter();
    let mut yaml = String::from("defaults: {timeout: 5s}\ntargets:\n");
    for i in 0..2000 {
        yaml.push_str(&format!("  - http://{addr}/{i}\n"));
    }
    yaml.push_str("max_connections_per_host: 4096\n");
    let e = Exporter::start(&yaml, &["--probe.concurrency", "50"]);
    let t = Instant::now();
    let body = e.scrape(Some(0.6));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(600), "answered after {took:?}");
    let at_answer = accepted.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        at_answer,
        "connections were opened after the answer"
    );
    let cut = count_reason(&body, "scrape_deadline");
    let not_started = count_reason(&body, "not_started");
    assert_eq!(cut + not_started, 2000, "{cut} + {not_started}");
    assert!(
        cut <= 100 && not_started >= 1900,
        "{cut} cut, {not_started} not started"
    );
    assert!(at_answer <= 100, "{at_answer} connections for 50 slots");
}

#[test]
fn each_scrape_gets_its_own_deadline_and_never_a_shorter_budget() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    // `/late` answers after 700 ms: inside a 2 s timeout, beyond a 0.6 s scrape's budget.
    let yaml = format!("defaults: {{timeout: 2s}}\ntargets:\n  - http://{peer}/late\n");
    let e = Exporter::start(&yaml, &[]);
    let addr = e.addr;
    let short = std::thread::spawn(move || short_scrape(addr));
    std::thread::sleep(Duration::from_millis(50));
    // A long scrape arriving during the short one's round must not be cut by its budget.
    let long = e.scrape(Some(25.0));
    let (short_took, short_body) = short.join().unwrap();
    assert!(short_took < Duration::from_millis(600), "{short_took:?}");
    let target = format!("http://{peer}/late");
    assert_eq!(
        reason(&short_body, &target).as_deref(),
        Some("scrape_deadline")
    );
    assert_eq!(reason(&long, &target), None, "{long}");
    assert_eq!(
        sample(&long, "probe_success", &[("target", &target)]),
        Some(1.0)
    );
    // And the other way round: a scrape without a header started a round that may run 2 s; a
    // scrape with a 0.6 s timeout arriving meanwhile is answered by its own deadline.
    let long_round = std::thread::spawn(move || http(addr, "GET", "/metrics", &[]).body);
    std::thread::sleep(Duration::from_millis(50));
    let (took, body) = short_scrape(addr);
    assert!(took < Duration::from_millis(600), "{took:?}");
    assert_eq!(reason(&body, &target).as_deref(), Some("scrape_deadline"));
    let unbounded = long_round.join().unwrap();
    assert_eq!(reason(&unbounded, &target), None);
    // Equal budgets still share one round: two scrapes, one probe.
    let before = sample(&e.scrape(None), "http_status_exporter_rounds_total", &[]).unwrap();
    let a = std::thread::spawn(move || http(addr, "GET", "/metrics", &[]).body);
    std::thread::sleep(Duration::from_millis(50));
    let _b = e.scrape(None);
    let _ = a.join().unwrap();
    let after = sample(&e.scrape(None), "http_status_exporter_rounds_total", &[]).unwrap();
    // Two shared scrapes are one round; the scrape that reads the counter is another.
    assert_eq!(after - before, 2.0);
}

#[test]
fn a_scrape_after_a_reload_never_gets_the_old_targets() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    let old: Vec<String> = (0..3)
        .map(|i| format!("http://{peer}/late?old={i}"))
        .collect();
    let new: Vec<String> = (0..2).map(|i| format!("http://{peer}/?new={i}")).collect();
    let file = |urls: &[String]| {
        let mut y = String::from("defaults: {timeout: 2s}\ntargets:\n");
        for u in urls {
            y.push_str(&format!("  - '{u}'\n"));
        }
        y
    };
    std::fs::write(&path, file(&old)).unwrap();
    let e = Exporter::start_file(&path, &[]);
    let addr = e.addr;
    let first = std::thread::spawn(move || http(addr, "GET", "/metrics", &[]).body);
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(&path, file(&new)).unwrap();
    e.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    let second = e.scrape(None);
    for u in &old {
        assert!(
            !second.contains(u.as_str()),
            "old target {u} after the reload"
        );
    }
    for u in &new {
        assert_eq!(
            sample(&second, "probe_success", &[("target", u)]),
            Some(1.0),
            "{second}"
        );
    }
    let first = first.join().unwrap();
    assert!(first.contains(old[0].as_str()));
}

#[test]
fn sighup_while_a_large_file_loads_does_not_end_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    let mut y = String::with_capacity(200_000 * 32);
    y.push_str("targets:\n");
    for i in 0..200_000 {
        y.push_str(&format!("  - http://127.0.0.1:9/{i}\n"));
    }
    std::fs::write(&path, y).unwrap();
    for delay in [20, 100, 300] {
        let mut child = Command::new(common::exporter_bin())
            .arg("--config.file")
            .arg(&path)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(1500));
        let status = child.try_wait().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(status, None, "SIGHUP after {delay} ms ended the exporter");
    }
}

#[test]
fn head_metrics_runs_no_round() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let e = Exporter::start(&format!("targets:\n  - http://{peer}/\n"), &[]);
    let before = sample(&e.scrape(None), "http_status_exporter_rounds_total", &[]).unwrap();
    for _ in 0..3 {
        let r = http(e.addr, "HEAD", "/metrics", &[]);
        assert_eq!(r.status, 200);
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("content-type: text/plain"),
            "{}",
            r.head
        );
        assert!(r.body.is_empty());
    }
    let after = sample(&e.scrape(None), "http_status_exporter_rounds_total", &[]).unwrap();
    assert_eq!(after - before, 1.0, "HEAD ran a round");
}

#[test]
fn arguments_that_are_not_utf8_are_usage_errors() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"http://x/\xff");
    for args in [
        vec![std::ffi::OsStr::new("check"), bad],
        vec![std::ffi::OsStr::new("--config.file"), bad],
    ] {
        let out = Command::new(common::exporter_bin())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not UTF-8"), "{err}");
    }
}

#[test]
fn config_files_that_are_not_regular_fail_the_check_at_once() {
    let t = Instant::now();
    let out = Command::new(common::exporter_bin())
        .args(["--config.check", "--config.file", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/dev/zero:1:1: the targets file is not a regular file")
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_reload_of_an_alias_bomb_keeps_the_exporter_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, "targets: ['http://127.0.0.1:9/']\n").unwrap();
    let e = Exporter::start_file(&path, &[]);
    // One 1 MiB name aliased a thousand times: gigabytes if it were expanded.
    let mut bomb = format!(
        "defaults: {{}}\nx: &big \"{}\"\ntargets:\n",
        "a".repeat(1 << 20)
    );
    for i in 0..1000 {
        bomb.push_str(&format!(
            "  - url: http://127.0.0.1:9/{i}\n    name: *big\n"
        ));
    }
    std::fs::write(&path, bomb).unwrap();
    e.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(1500));
    let body = e.scrape(None);
    assert_eq!(
        sample(&body, "http_status_exporter_targets", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "http_status_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.proc.pid())).unwrap();
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kib < 200.0 * 1024.0, "peak {peak_kib} KiB");
    assert!(
        e.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("anchors (&name) are not accepted"))
    );
}
