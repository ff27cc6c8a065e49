//! The churn benchmark: what a long-running exporter's memory does when it is scraped the way
//! real sites scrape it, not one scrape at a time.
//!
//! One exporter process (the release build beside this example) probes 10,000 targets on a
//! loopback peer of ours, in 40 groups of 250. The peer flaps: each target answers `200` and
//! `503` by turns, with a reason phrase that changes on every answer, so that every result
//! brings a new detail text to the status history. 200 more targets in a group `slow` answer
//! after 1.5 s. The run, in phases, with the exporter's RSS read from `/proc` after each:
//!
//! 1. plateau: 60 scrapes of every fast group (the status history, 60 deep, is then full);
//! 2. 2,000 distinct selections: 1,000 of one to three groups and 1,000 `/probe` targets,
//!    8 scrapes at a time;
//! 3. 200 reloads that rename every group, each followed by two scrapes of the new names;
//! 4. 500 abandoned scrapes: clients that ask for the slow group and hang up after 50 ms,
//!    10 at a time;
//! 5. back to the plateau: 60 scrapes of every fast group.
//!
//! It prints a table of RSS per phase, the peak (VmHWM) and the last phase against the first,
//! and exits 1 when the peak is over 96 MiB or the end is more than 10% above the plateau.
//!
//! Run it with `cargo build --release --locked --bin http_status_exporter --example churn &&
//! target/release/examples/churn`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::Proc;

/// Fast groups, and targets in each.
const GROUPS: usize = 40;
/// Targets per fast group.
const PER_GROUP: usize = 250;
/// Targets of the slow group.
const SLOW: usize = 200;
/// How long a slow target takes to answer.
const SLOW_DELAY: Duration = Duration::from_millis(1500);
/// `--probe.min-interval` of the exporter: scrapes of one selection closer than this share a
/// round.
const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// The memory budget the run must stay under.
const PEAK_BUDGET_MIB: f64 = 96.0;

/// The peer: flapping fast targets under `/t/`, slow ones under `/slow/`. Runs on a runtime of
/// its own in a background thread; returns its address.
fn start_peer() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("address"))
                .expect("send");
            let answers = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
            let serial = Arc::new(AtomicU64::new(0));
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let (answers, serial) = (answers.clone(), serial.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    if path.starts_with("/slow/") {
                        tokio::time::sleep(SLOW_DELAY).await;
                    }
                    let k = {
                        let mut a = answers.lock().expect("not poisoned");
                        let k = a.entry(path).or_default();
                        *k += 1;
                        *k
                    };
                    let n = serial.fetch_add(1, Ordering::Relaxed);
                    let line = if k % 2 == 0 {
                        format!("HTTP/1.1 200 OK {n}\r\nContent-Length: 0\r\n\r\n")
                    } else {
                        format!("HTTP/1.1 503 Down since answer {n}\r\nContent-Length: 0\r\n\r\n")
                    };
                    let _ = s.write_all(line.as_bytes()).await;
                    let _ = s.read(&mut buf).await;
                });
            }
        });
    });
    rx.recv().expect("peer address")
}

/// The targets file, with every group named `{prefix}{g}`.
fn targets(peer: SocketAddr, prefix: &str) -> String {
    let mut text = String::from(
        "max_connections_per_host: 1000\ndefaults: {timeout: 5s, valid_status_codes: [200]}\ntargets:\n",
    );
    for g in 0..GROUPS {
        for i in 0..PER_GROUP {
            text.push_str(&format!(
                "  - {{url: 'http://{peer}/t/{g}/{i}', group: {prefix}{g}}}\n"
            ));
        }
    }
    for i in 0..SLOW {
        text.push_str(&format!(
            "  - {{url: 'http://{peer}/slow/{i}', group: slow}}\n"
        ));
    }
    text
}

/// One request, read to the end; the status code.
fn get(addr: SocketAddr, path: &str, timeout: f64) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Prometheus-Scrape-Timeout-Seconds: {timeout}\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A line of `/proc/PID/status`, in MiB.
fn proc_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Run `jobs` on `threads` threads; how many got a 200.
fn run_parallel(threads: usize, jobs: Vec<Box<dyn FnOnce() -> u16 + Send>>) -> usize {
    let queue = Arc::new(Mutex::new(jobs));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let queue = queue.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                loop {
                    let job = queue.lock().expect("not poisoned").pop();
                    let Some(job) = job else { return ok };
                    ok += usize::from(job() == 200);
                }
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
}

/// The query string selecting every fast group.
fn all_fast(prefix: &str) -> String {
    let groups: Vec<String> = (0..GROUPS).map(|g| format!("group={prefix}{g}")).collect();
    format!("/metrics?{}", groups.join("&"))
}

/// `n` full scrapes of the fast groups, each a round of its own (spaced by more than the
/// min-interval); how many answered 200.
fn plateau(addr: SocketAddr, prefix: &str, n: usize) -> usize {
    let path = all_fast(prefix);
    (0..n)
        .filter(|_| {
            std::thread::sleep(MIN_INTERVAL + Duration::from_millis(100));
            get(addr, &path, 10.0) == 200
        })
        .count()
}

fn main() {
    let exe = std::env::current_exe().expect("own path");
    let bin: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("http_status_exporter");
    // `--quick`: a quarter of every phase but the plateaus, for a first look.
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 4 } else { 1 };
    let dir = tempfile::tempdir().expect("temp dir");
    let peer = start_peer();
    let file = dir.path().join("targets.yaml");
    std::fs::write(&file, targets(peer, "g")).expect("write");
    let mut child = Command::new(&bin)
        .arg("--config.file")
        .arg(&file)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.enable-lifecycle",
            "--probe.min-interval",
            "500ms",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("exporter starts (cargo build --release --bin http_status_exporter)");
    let addr: SocketAddr = support::listening_address(&mut child);
    let pid = child.id();
    let exporter = Proc(child);
    let mut rows: Vec<(String, f64, f64, Duration)> = Vec::new();
    let mut row = |name: &str, ok: usize, of: usize, start: Instant| {
        let rss = proc_mib(pid, "VmRSS:");
        let peak = proc_mib(pid, "VmHWM:");
        eprintln!("{name}: {ok}/{of} answered, RSS {rss:.1} MiB, peak {peak:.1} MiB");
        rows.push((
            format!("{name} ({ok}/{of} answered)"),
            rss,
            peak,
            start.elapsed(),
        ));
    };

    let start = Instant::now();
    let ok = plateau(addr, "g", 60);
    row("60 scrapes of all 10,000 flapping targets", ok, 60, start);

    let start = Instant::now();
    let mut jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while seen.len() < 1_000 / scale {
        // A xorshift walk through sets of one to three groups.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 1 + (x % 3) as usize;
        let mut set: Vec<usize> = (0..size)
            .map(|k| ((x >> (8 + 8 * k)) % GROUPS as u64) as usize)
            .collect();
        set.sort_unstable();
        set.dedup();
        if seen.insert(set.clone()) {
            let q: Vec<String> = set.iter().map(|g| format!("group=g{g}")).collect();
            let path = format!("/metrics?{}", q.join("&"));
            jobs.push(Box::new(move || get(addr, &path, 5.0)));
        }
    }
    for i in 0..1_000 / scale {
        let url = format!("http://{peer}/t/{}/{}", i % GROUPS, i / GROUPS);
        let path = format!(
            "/probe?target={}",
            url.replace(':', "%3A").replace('/', "%2F")
        );
        jobs.push(Box::new(move || get(addr, &path, 5.0)));
    }
    let n = jobs.len();
    let ok = run_parallel(8, jobs);
    row("2,000 distinct selections, 8 at a time", ok, n, start);

    let start = Instant::now();
    let mut ok = 0;
    for k in 0..200 / scale {
        let prefix = format!("r{k}_");
        std::fs::write(&file, targets(peer, &prefix)).expect("write");
        let reload = {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .expect("write");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            r.starts_with("HTTP/1.1 200")
        };
        ok += usize::from(reload);
        get(addr, &format!("/metrics?group={prefix}{}", k % GROUPS), 5.0);
        get(
            addr,
            &format!(
                "/metrics?group={prefix}{}&group={prefix}{}",
                (k + 1) % GROUPS,
                (k + 7) % GROUPS
            ),
            5.0,
        );
    }
    row("200 reloads renaming every group", ok, 200 / scale, start);

    let start = Instant::now();
    let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..500 / scale)
        .map(|_| {
            Box::new(move || {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return 0u16;
                };
                let _ = s.write_all(
                    b"GET /metrics?group=slow HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
                );
                std::thread::sleep(Duration::from_millis(50));
                200u16
            }) as Box<dyn FnOnce() -> u16 + Send>
        })
        .collect();
    let ok = run_parallel(10, jobs);
    // Let the abandoned rounds end.
    std::thread::sleep(Duration::from_secs(2));
    row("500 scrapes abandoned after 50 ms", ok, 500 / scale, start);

    let start = Instant::now();
    let ok = plateau(addr, &format!("r{}_", 200 / scale - 1), 60);
    row(
        "60 scrapes of all 10,000 flapping targets again",
        ok,
        60,
        start,
    );

    println!("\n| phase | RSS after | peak so far | took |");
    println!("|---|---:|---:|---:|");
    for (name, rss, peak, took) in &rows {
        println!(
            "| {name} | {rss:.1} MiB | {peak:.1} MiB | {:.1} s |",
            took.as_secs_f64()
        );
    }
    let first = rows.first().map_or(f64::NAN, |r| r.1);
    let last = rows.last().map_or(f64::NAN, |r| r.1);
    let peak = rows.last().map_or(f64::NAN, |r| r.2);
    println!(
        "\npeak {peak:.1} MiB (budget {PEAK_BUDGET_MIB} MiB); end {last:.1} MiB against a plateau of {first:.1} MiB ({:+.1}%)",
        100.0 * (last / first - 1.0)
    );
    // Stopped before the exit, which runs no destructor.
    drop(exporter);
    if peak > PEAK_BUDGET_MIB || last > first * 1.1 {
        println!("over budget");
        std::process::exit(1);
    }
}
