//! Resources under load and abuse, on the exporter binary: a low descriptor limit, open files
//! back to baseline after each round, flat memory over many rounds, response sizes that do not
//! matter, and our own endpoint under slow, oversized and concurrent clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// These tests load the machine (10,000 probes, 500 rounds) or assert timings and memory:
/// run them one at a time so that each measures itself, not its neighbours.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Take the [`SERIAL`] lock, even after another test panicked holding it.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A line of /proc/PID/status in KiB, like `VmHWM`.
fn proc_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A targets file of `n` distinct URLs on nginx.
fn many(port: u16, n: usize, path: &str) -> String {
    let mut y = String::from("targets:\n");
    for i in 0..n {
        y.push_str(&format!("  - http://127.0.0.1:{port}{path}?{i}\n"));
    }
    y
}

/// Start the exporter under a hard descriptor limit, via prlimit.
fn start_limited(config: &str, nofile: u32) -> Exporter {
    let prlimit = find_program("prlimit", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, config).unwrap();
    // A wrapper script so that Exporter::start_file's flags go to the exporter.
    let wrapper = dir.path().join("exporter.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --nofile={nofile}:{nofile} {} \"$@\"\n",
            prlimit.display(),
            exporter_bin()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let mut e = Exporter::start_with(&wrapper, &path, &[]);
    e.proc.dir = Some(dir);
    e
}

#[test]
fn ten_thousand_targets_under_a_1024_descriptor_limit_queue_instead_of_failing() {
    let _serial = serial();
    let nginx = Nginx::start(&[]);
    let exporter = start_limited(&many(nginx.port, 10_000, "/ok"), 1024);
    let pid = exporter.proc.pid();
    let baseline = open_fds(pid);
    for round in 0..2 {
        let text = exporter.scrape(Some(60.0));
        let ok = text
            .lines()
            .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
            .count();
        let failures: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("probe_failure_reason{"))
            .take(3)
            .collect();
        assert_eq!(ok, 10_000, "round {round}: failures like {failures:?}");
        assert_eq!(sample(&text, "process_max_fds", &[]), Some(1024.0));
        let concurrency = sample(&text, "http_status_exporter_probe_concurrency", &[]).unwrap();
        assert!(concurrency < 1024.0, "{concurrency}");
        // Every probe socket is closed once the round is over.
        let after = open_fds(pid);
        assert!(
            after <= baseline + 2,
            "round {round}: {after} open descriptors, {baseline} before"
        );
    }
}

#[test]
fn memory_stays_flat_over_500_rounds_and_ignores_response_sizes() {
    let _serial = serial();
    let nginx = Nginx::start(&[]);
    // Half the targets answer with a 16 MiB body that the probe never reads.
    let mut yaml = many(nginx.port, 100, "/ok");
    yaml.push_str(&many(nginx.port, 100, "/big").replacen("targets:\n", "", 1));
    let exporter = Exporter::start(&yaml, &[]);
    let pid = exporter.proc.pid();
    let started = Instant::now();
    let mut hwm_at_50 = 0;
    let mut rounds = 0;
    while rounds < 500 && started.elapsed() < Duration::from_secs(120) {
        let text = exporter.scrape(Some(10.0));
        if rounds == 0 {
            let ok = text
                .lines()
                .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
                .count();
            assert_eq!(ok, 200, "{}", &text[..2000.min(text.len())]);
        }
        rounds += 1;
        if rounds == 50 {
            hwm_at_50 = proc_kib(pid, "VmHWM");
        }
    }
    assert_eq!(rounds, 500, "500 rounds did not fit in 120 s");
    let hwm = proc_kib(pid, "VmHWM");
    eprintln!("peak RSS after 50 rounds {hwm_at_50} KiB, after 500 rounds {hwm} KiB");
    assert!(
        hwm < hwm_at_50 + 2048,
        "peak RSS grew from {hwm_at_50} KiB to {hwm} KiB"
    );
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
}

#[test]
fn our_endpoint_survives_slow_half_open_oversized_and_concurrent_clients() {
    let _serial = serial();
    // A peer that takes 500 ms, so that a round lasts long enough for scrapes to pile up.
    let peer = peer::spawn_thread("127.0.0.1:0");
    let exporter = Exporter::start(&format!("targets: ['http://{peer}/late']\n"), &[]);
    let addr = exporter.addr;

    // Slow clients that never finish their request, and half-open ones.
    let mut slow = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        } else {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        slow.push(s);
    }
    assert_eq!(http(addr, "GET", "/-/healthy", &[]).status, 200);

    // Oversized request headers.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized headers answered with {:?}",
        answer.lines().next()
    );

    // Hundreds of concurrent scrapes share one round.
    let before = sample(
        &exporter.scrape(None),
        "http_status_exporter_rounds_total",
        &[],
    )
    .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                http(addr, "GET", "/metrics", &[]).status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let after = sample(
        &exporter.scrape(None),
        "http_status_exporter_rounds_total",
        &[],
    )
    .unwrap();
    // The 200 scrapes started at most two rounds (one may have been in flight), plus the
    // final scrape's own.
    assert!(
        after - before <= 3.0,
        "{before} -> {after} rounds for 200 concurrent scrapes"
    );
    let scrapes = sample(
        &exporter.scrape(None),
        "http_status_exporter_scrapes_total",
        &[],
    )
    .unwrap();
    assert!(scrapes >= 203.0);
    drop(slow);
    assert_eq!(http(addr, "GET", "/-/healthy", &[]).status, 200);
}

#[test]
fn a_scrape_of_every_misbehaving_peer_returns_within_the_longest_deadline() {
    let _serial = serial();
    let peer = peer::spawn_thread("127.0.0.1:0");
    let mut yaml = format!(
        "defaults: {{timeout: {}ms}}\ntargets:\n",
        peer::TIMEOUT.as_millis()
    );
    for (path, _, _) in peer::CASES {
        yaml.push_str(&format!("  - http://{peer}{path}\n"));
    }
    let refused = closed_port();
    yaml.push_str(&format!("  - http://127.0.0.1:{refused}/\n"));
    let exporter = Exporter::start(&yaml, &[]);
    for _ in 0..3 {
        let t = Instant::now();
        let text = exporter.scrape(Some(5.0));
        let took = t.elapsed();
        assert!(
            took < peer::TIMEOUT + Duration::from_millis(300),
            "scrape took {took:?}"
        );
        for (path, code, reason_label) in peer::CASES {
            let url = format!("http://{peer}{path}");
            assert_eq!(
                target_sample(&text, "probe_http_status_code", &url),
                Some(f64::from(*code)),
                "{url}"
            );
            assert_eq!(reason(&text, &url).as_deref(), *reason_label, "{url}");
        }
        assert_eq!(
            reason(&text, &format!("http://127.0.0.1:{refused}/")).as_deref(),
            Some("connect_refused")
        );
    }
    let hwm = proc_kib(exporter.proc.pid(), "VmHWM");
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
    assert_eq!(http(exporter.addr, "GET", "/-/healthy", &[]).status, 200);
}
