//! Hostile and broken peers: each misbehaviour of our own loopback test server has a defined
//! outcome (status code, success, failure reason), asserted here through the library's probe
//! round, as the exporter runs it.

mod common;

use common::peer::{TIMEOUT, read_head, start_server};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_status_exporter::config::{self, Config};
use http_status_exporter::outcome::{FailureReason, ProbeResult};
use http_status_exporter::round::{Limits, run_round};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Probe each URL once, as one round, and return the results in order.
async fn probe_all(yaml: &str) -> (Arc<Config>, Vec<ProbeResult>) {
    let config = Arc::new(config::parse(Path::new("peers.yml"), yaml).unwrap());
    let round = run_round(
        config.clone(),
        &std::sync::Arc::new(common::system_resolver()),
        None,
        Limits { concurrency: 64 },
        |_, _| {},
    )
    .await;
    (config, round.results)
}

/// A targets file with every URL under the test timeout.
fn targets(urls: &[String]) -> String {
    let mut y = format!(
        "defaults: {{timeout: {}ms}}\ntargets:\n",
        TIMEOUT.as_millis()
    );
    for u in urls {
        y.push_str(&format!("  - '{u}'\n"));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_has_its_outcome() {
    let addr = start_server("127.0.0.1:0").await;
    let cases = common::peer::CASES;
    let urls: Vec<String> = cases
        .iter()
        .map(|(p, _, _)| format!("http://{addr}{p}"))
        .collect();
    let started = std::time::Instant::now();
    let (_, results) = probe_all(&targets(&urls)).await;
    let elapsed = started.elapsed();
    for ((path, code, reason), r) in cases.iter().zip(&results) {
        let got_code = r.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(
            (got_code, r.failure.map(FailureReason::as_str)),
            (*code, *reason),
            "{path}: {:?}",
            r.detail
        );
        if *reason == Some("timeout") {
            let off = r.duration.as_secs_f64() - TIMEOUT.as_secs_f64();
            assert!(
                (-0.001..0.015).contains(&off),
                "{path}: took {:?}",
                r.duration
            );
        }
    }
    // Garbage is refused at once, not at the deadline.
    for (i, (path, _, reason)) in cases.iter().enumerate() {
        if *reason == Some("invalid_response") {
            assert!(
                results[i].duration < Duration::from_millis(200),
                "{path}: {:?}",
                results[i].duration
            );
        }
    }
    // The round ends with its longest deadline.
    assert!(
        elapsed < TIMEOUT + Duration::from_millis(300),
        "round took {elapsed:?}"
    );
}

#[tokio::test]
async fn the_request_on_the_wire_is_well_formed_http_1_1() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        head
    });
    let yaml = format!(
        "targets:\n  - url: 'http://{addr}/health?x=1&y=2#frag'\n    headers: {{X-Probe: yes}}\n"
    );
    let (_, results) = probe_all(&yaml).await;
    assert!(results[0].success(), "{:?}", results[0]);
    let head = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        head,
        format!(
            "GET /health?x=1&y=2 HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: http_status_exporter/{}\r\n\
             Connection: close\r\nX-Probe: yes\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn connection_failures_have_their_reasons() {
    let refused = common::closed_port();
    // A listener that never accepts, with its backlog filled: connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(full_addr)).await
        {
            fillers.push(s);
        }
    }
    let urls = [
        format!("http://127.0.0.1:{refused}/"),
        format!("http://{full_addr}/"),
    ];
    let (_, results) = probe_all(&targets(&urls)).await;
    assert_eq!(
        results[0].failure,
        Some(FailureReason::ConnectRefused),
        "{:?}",
        results[0]
    );
    assert_eq!(
        results[1].failure,
        Some(FailureReason::ConnectTimeout),
        "{:?}",
        results[1]
    );
    let off = results[1].duration.as_secs_f64() - TIMEOUT.as_secs_f64();
    assert!(
        (-0.001..0.015).contains(&off),
        "took {:?}",
        results[1].duration
    );
    drop(fillers);
}

#[tokio::test]
async fn address_families_and_source_address() {
    let v4 = start_server("127.0.0.1:0").await;
    let v6 = start_server("[::1]:0").await;
    let yaml = format!(
        "targets:\n  - http://127.0.0.1:{}/\n  - http://[::1]:{}/\n  - url: http://localhost:{}/v4-only\n    ip_protocol: ip4\n  - url: http://localhost:{}/v6-only\n    ip_protocol: ip6\n",
        v4.port(),
        v6.port(),
        v4.port(),
        v6.port()
    );
    let (_, results) = probe_all(&yaml).await;
    assert_eq!(results[0].ip_protocol(), Some(4));
    assert!(results[0].success());
    assert_eq!(results[1].ip_protocol(), Some(6));
    assert!(results[1].success());
    // A name is narrowed to the family the target allows.
    assert_eq!(results[2].ip_protocol(), Some(4), "{:?}", results[2]);
    assert_eq!(results[3].ip_protocol(), Some(6), "{:?}", results[3]);
    // An address of a family the target does not allow is refused at load.
    for (url, proto) in [("http://[::1]:1/", "ip4"), ("http://127.0.0.1:1/", "ip6")] {
        let text = format!("targets:\n  - url: {url}\n    ip_protocol: {proto}\n");
        let e = config::parse(Path::new("peers.yml"), &text).unwrap_err();
        assert!(e.to_string().contains("forbids the address"), "{e}");
    }
}

#[tokio::test]
async fn source_ip_is_the_local_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, peer) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        peer
    });
    let yaml = format!("targets:\n  - url: http://{addr}/\n    source_ip: 127.0.0.2\n");
    let (_, results) = probe_all(&yaml).await;
    assert!(results[0].success());
    assert_eq!(server.await.unwrap().ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn happy_eyeballs_survives_a_dead_family() {
    use http_status_exporter::probe::connect::connect;
    // Only IPv4 listens; IPv6 is tried first and refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let addrs = ["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    let s = connect(&addrs, port, None).await.unwrap();
    assert!(s.peer_addr().unwrap().is_ipv4());
    // Only IPv6 listens; IPv4 is tried first.
    let listener6 = TcpListener::bind("[::1]:0").await.unwrap();
    let port6 = listener6.local_addr().unwrap().port();
    let addrs = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let s = connect(&addrs, port6, None).await.unwrap();
    assert!(s.peer_addr().unwrap().is_ipv6());
    // A first address that hangs (full backlog) loses to the second after the attempt delay.
    let socket = tokio::net::TcpSocket::new_v6().unwrap();
    socket.bind("[::1]:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let full_port = full.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(100),
            TcpStream::connect(("::1", full_port)),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let v4 = TcpListener::bind(("127.0.0.1", full_port)).await;
    if let Ok(_v4) = v4 {
        let addrs = ["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let t = std::time::Instant::now();
        let s = connect(&addrs, full_port, None).await.unwrap();
        assert!(s.peer_addr().unwrap().is_ipv4());
        assert!(
            t.elapsed() >= Duration::from_millis(240),
            "{:?}",
            t.elapsed()
        );
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
    }
}

#[test]
fn a_name_that_does_not_resolve_is_dns() {
    // In a network namespace of our own, so no query leaves the machine.
    let unshare = common::find_program("unshare", "util-linux");
    let out = std::process::Command::new(unshare)
        .args(["--net", "--map-root-user"])
        .arg(common::exporter_bin())
        .args([
            "check",
            "--output",
            "json",
            "--timeout",
            "2s",
            "http://no-such-host.invalid/",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "dns", "{v}");
    assert_eq!(out.status.code(), Some(1));
}
