//! Measurement fidelity: what we report is the target's time, not our own queueing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_status_exporter::config;
use http_status_exporter::outcome::FailureReason;
use http_status_exporter::round::{Limits, run_round};

/// Timing tests run one at a time: a 10,000-target round beside a "probed alone" peer would
/// measure our own CPU contention, not the peer.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A peer on its own OS threads (not the prober's runtime) that answers `delay` after it has
/// read the request.
fn delayed_peer(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                std::thread::sleep(delay);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });
    addr
}

/// One round of a targets file naming only `peer`, probed alone.
async fn alone(peer: SocketAddr) -> http_status_exporter::round::Round {
    let cfg = config::parse(Path::new("t.yml"), &format!("targets: ['http://{peer}/']")).unwrap();
    run_round(
        Arc::new(cfg),
        &std::sync::Arc::new(common::system_resolver()),
        None,
        Limits { concurrency: 16 },
        |_, _| {},
    )
    .await
}

/// The error of `measured` against `want`, in milliseconds.
fn error_ms(measured: impl Into<Duration>, want: Duration) -> f64 {
    let measured: Duration = measured.into();
    (measured.as_secs_f64() - want.as_secs_f64()) * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_peer_alone_is_measured_within_10ms() {
    let _serial = SERIAL.lock().await;
    let delay = Duration::from_millis(200);
    let peer = delayed_peer(delay);
    let round = alone(peer).await;
    let r = &round.results[0];
    assert!(r.success(), "{r:?}");
    let err = error_ms(r.duration, delay);
    eprintln!(
        "alone: duration error {err:+.2} ms, processing error {:+.2} ms",
        error_ms(r.phases.processing, delay)
    );
    assert!((0.0..10.0).contains(&err), "duration {:?}", r.duration);
    assert!(
        error_ms(r.phases.processing, delay).abs() < 10.0,
        "{:?}",
        r.phases
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_peer_inside_a_round_of_10000_is_measured_within_50ms() {
    let _serial = SERIAL.lock().await;
    let nginx = common::Nginx::start(&[]);
    let delay = Duration::from_millis(200);
    let peer = delayed_peer(delay);
    let mut yaml = String::from("max_connections_per_host: 1000\ntargets:\n");
    for i in 0..10_000 {
        if i == 5_000 {
            yaml.push_str(&format!("  - http://{peer}/delayed\n"));
        }
        yaml.push_str(&format!("  - http://127.0.0.1:{}/ok?{i}\n", nginx.port));
    }
    let cfg = Arc::new(config::parse(Path::new("t.yml"), &yaml).unwrap());
    let idx = cfg
        .targets
        .iter()
        .position(|t| t.url.raw.ends_with("/delayed"))
        .unwrap();
    let round = run_round(
        cfg,
        &std::sync::Arc::new(common::system_resolver()),
        Some(Duration::from_secs(20)),
        Limits { concurrency: 1024 },
        |_, _| {},
    )
    .await;
    let ok = round.results.iter().filter(|r| r.success()).count();
    assert_eq!(ok, 10_001, "every probe of the round succeeds");
    let r = &round.results[idx];
    let err = error_ms(r.duration, delay);
    eprintln!(
        "inside a round of 10,000 ({:.3} s): duration error {err:+.2} ms, processing error {:+.2} ms",
        round.duration.as_secs_f64(),
        error_ms(r.phases.processing, delay)
    );
    assert!(err.abs() < 50.0, "duration {:?}", r.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_that_never_start_are_not_started_not_timeout() {
    let _serial = SERIAL.lock().await;
    // 200 targets that each take 100 ms, 10 at a time, 1 s of budget: about 100 fit.
    let delay = Duration::from_millis(100);
    let peer = delayed_peer(delay);
    let mut yaml =
        String::from("defaults: {timeout: 5s}\nmax_connections_per_host: 100\ntargets:\n");
    for i in 0..200 {
        yaml.push_str(&format!("  - http://{peer}/{i}\n"));
    }
    let cfg = Arc::new(config::parse(Path::new("t.yml"), &yaml).unwrap());
    let budget = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let round = run_round(
        cfg,
        &std::sync::Arc::new(common::system_resolver()),
        Some(budget),
        Limits { concurrency: 10 },
        |_, _| {},
    )
    .await;
    let elapsed = started.elapsed();
    let count = |f: Option<FailureReason>| round.results.iter().filter(|r| r.failure == f).count();
    let (ok, not_started, cut, timeout) = (
        count(None),
        count(Some(FailureReason::NotStarted)),
        count(Some(FailureReason::ScrapeDeadline)),
        count(Some(FailureReason::Timeout)),
    );
    eprintln!(
        "ok {ok}, not_started {not_started}, scrape_deadline {cut}, timeout {timeout}, {elapsed:?}"
    );
    assert_eq!(timeout, 0, "no target is blamed for our queue");
    assert!(ok >= 80, "{ok} succeeded");
    assert!(not_started >= 80, "{not_started} never started");
    assert_eq!(ok + not_started + cut, 200);
    assert_eq!(round.not_started, not_started);
    assert!(
        elapsed < budget + Duration::from_millis(100),
        "round took {elapsed:?}"
    );
    // Every probe that ran measured the peer, not the queue.
    for r in round.results.iter().filter(|r| r.success()) {
        assert!(error_ms(r.duration, delay).abs() < 30.0, "{:?}", r.duration);
    }
    assert!(round.max_queue_wait > Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_slow_host_does_not_hold_up_the_others() {
    let _serial = SERIAL.lock().await;
    let nginx = common::Nginx::start(&[]);
    // 40 paths on a host that takes 100 ms, 2 at a time: 2 s of work for that host alone.
    let peer = delayed_peer(Duration::from_millis(100));
    let mut yaml = String::from("max_connections_per_host: 2\ntargets:\n");
    for i in 0..40 {
        yaml.push_str(&format!("  - http://{peer}/{i}\n"));
    }
    // Listed after it: 20 quick targets on another host.
    for i in 0..20 {
        yaml.push_str(&format!("  - http://[::1]:{}/ok?{i}\n", nginx.port));
    }
    let cfg = Arc::new(config::parse(Path::new("t.yml"), &yaml).unwrap());
    let start = std::time::Instant::now();
    let mut quick_done = Vec::new();
    let round = run_round(
        cfg.clone(),
        &std::sync::Arc::new(common::system_resolver()),
        None,
        Limits { concurrency: 8 },
        |i, _| {
            if cfg.targets[i].url.raw.contains("[::1]") {
                quick_done.push(start.elapsed());
            }
        },
    )
    .await;
    assert!(round.results.iter().all(|r| r.success()));
    let last_quick = quick_done.iter().max().unwrap();
    eprintln!(
        "quick targets done after {last_quick:?}, round {:?}",
        round.duration
    );
    assert_eq!(quick_done.len(), 20);
    assert!(
        *last_quick < Duration::from_millis(500),
        "the quick host waited {last_quick:?}"
    );
    assert!(round.duration > Duration::from_millis(1900));
}

/// A peer on its own OS thread that tells `read` when it has read a request, then answers
/// `delay` later.
fn peer_that_tells(delay: Duration, read: Arc<tokio::sync::Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            read.notify_one();
            std::thread::sleep(delay);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    addr
}

/// The processing phase ends at the kernel's stamp of the status line's arrival: a probe
/// thread that is busy (here blocked for 150 ms) when the answer arrives does not lengthen the
/// phase or the probe's duration.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_runtime_does_not_lengthen_the_times_of_an_answer_that_arrived() {
    use http_status_exporter::probe_threads::ProbeThreads;
    let _serial = SERIAL.lock().await;
    let delay = Duration::from_millis(20);
    let read = Arc::new(tokio::sync::Notify::new());
    let peer = peer_that_tells(delay, read.clone());
    // Once the peer has the request, every probe thread (the probe's among them) is blocked
    // while the answer arrives.
    let blocker = tokio::spawn(async move {
        read.notified().await;
        let threads = ProbeThreads::get();
        let blocked: Vec<_> = (0..threads.count())
            .map(|k| {
                threads.spawn(k, async {
                    std::thread::sleep(Duration::from_millis(150));
                })
            })
            .collect();
        for b in blocked {
            b.await.unwrap();
        }
    });
    let started = std::time::Instant::now();
    let round = alone(peer).await;
    let wall = started.elapsed();
    blocker.await.unwrap();
    let r = &round.results[0];
    assert!(r.success(), "{r:?}");
    eprintln!(
        "wall {wall:?}: processing {:?}, connect {:?}, duration {:?}",
        r.phases.processing, r.phases.connect, r.duration
    );
    assert!(wall >= Duration::from_millis(150), "{wall:?}");
    let err = error_ms(r.phases.processing, delay);
    assert!((0.0..15.0).contains(&err), "processing {:?}", r.phases);
    let err = error_ms(r.duration, delay);
    assert!((0.0..20.0).contains(&err), "duration {:?}", r.duration);
    assert!(
        r.phases.connect < Duration::from_millis(5),
        "{:?}",
        r.phases
    );
}
