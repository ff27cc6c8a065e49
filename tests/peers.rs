//! Hostile and broken peers: each misbehaviour of our own loopback test server has a defined
//! outcome (status code, success, failure reason), asserted here through the library's probe
//! round, as the exporter runs it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_status_exporter::config::{self, Config};
use http_status_exporter::probe::{FailureReason, ProbeResult};
use http_status_exporter::round::{Limits, run_round};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The deadline every probe here runs under.
const TIMEOUT: Duration = Duration::from_millis(400);

/// Read the request head (up to the blank line), returning its bytes.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    buf
}

/// Write `chunks` with `gap` between them.
async fn trickle(s: &mut TcpStream, chunks: &[&[u8]], gap: Duration) {
    for c in chunks {
        if s.write_all(c).await.is_err() {
            return;
        }
        let _ = s.flush().await;
        tokio::time::sleep(gap).await;
    }
}

/// Serve one connection, misbehaving as the request path says.
// SO_LINGER 0 is how a test server sends a reset; dropping such a socket does not block.
#[allow(deprecated)]
async fn misbehave(mut s: TcpStream) {
    let head = read_head(&mut s).await;
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let long = Duration::from_secs(30);
    match path.as_str() {
        "/late" => {
            tokio::time::sleep(TIMEOUT + Duration::from_millis(300)).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
        "/silent" => tokio::time::sleep(long).await,
        "/close" => {}
        "/partial" => {
            let _ = s.write_all(b"HTTP/1.1 20").await;
        }
        "/ssh" => {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
            tokio::time::sleep(long).await;
        }
        "/binary" => {
            let _ = s.write_all(&[0x00, 0x01, 0xfe, 0xff, 0x16, 0x03]).await;
            tokio::time::sleep(long).await;
        }
        "/emptyline" => {
            let _ = s.write_all(b"\r\nHTTP/1.1 200 OK\r\n\r\n").await;
        }
        "/version" => {
            let _ = s.write_all(b"HTTP/2.0 200 OK\r\n\r\n").await;
        }
        "/shortcode" => {
            let _ = s.write_all(b"HTTP/1.1 20 OK\r\n\r\n").await;
        }
        "/longcode" => {
            let _ = s.write_all(b"HTTP/1.1 2000 OK\r\n\r\n").await;
        }
        "/noreason" => {
            let _ = s.write_all(b"HTTP/1.1 299\r\n\r\n").await;
        }
        "/huge" => {
            // A first line that never ends: the probe must give up after a few KiB.
            let chunk = vec![b'a'; 64 * 1024];
            let _ = s.write_all(b"HTTP/1.1 200 ").await;
            for _ in 0..64 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(long).await;
        }
        "/bytewise" => {
            let line = b"HTTP/1.1 200 OK\r\n\r\n";
            let chunks: Vec<&[u8]> = line.chunks(1).collect();
            trickle(&mut s, &chunks, Duration::from_millis(5)).await;
        }
        "/split" => {
            trickle(
                &mut s,
                &[
                    b"HT", b"TP/1", b".1 2", b"04 No", b" Conte", b"nt\r", b"\n\r\n",
                ],
                Duration::from_millis(10),
            )
            .await;
        }
        "/slow-trickle" => {
            // Completes long after the deadline.
            let line = b"HTTP/1.1 200 OK\r\n\r\n";
            let chunks: Vec<&[u8]> = line.chunks(1).collect();
            trickle(&mut s, &chunks, Duration::from_millis(50)).await;
        }
        "/http10" => {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
        }
        "/bare-lf" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\nServer: x\n\nbody").await;
        }
        "/interim" => {
            let _ = s
                .write_all(
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\n\r\n",
                )
                .await;
        }
        "/reset" => {
            let _ = s.write_all(b"HTTP/1.1 2").await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
            return;
        }
        "/reset-now" => {
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
            return;
        }
        _ => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    }
    let _ = s.shutdown().await;
}

/// Start the misbehaving server on `addr` (port 0 for a free one).
async fn start_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(misbehave(s));
        }
    });
    local
}

/// Probe each URL once, as one round, and return the results in order.
async fn probe_all(yaml: &str) -> (Arc<Config>, Vec<ProbeResult>) {
    let config = Arc::new(config::parse(Path::new("peers.yml"), yaml).unwrap());
    let round = run_round(config.clone(), None, Limits { concurrency: 64 }, |_, _| {}).await;
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
    use FailureReason::*;
    // (path, status code, failure reason)
    let cases: &[(&str, u16, Option<FailureReason>)] = &[
        ("/late", 0, Some(Timeout)),
        ("/silent", 0, Some(Timeout)),
        ("/close", 0, Some(Closed)),
        ("/partial", 0, Some(Closed)),
        ("/ssh", 0, Some(InvalidResponse)),
        ("/binary", 0, Some(InvalidResponse)),
        ("/emptyline", 0, Some(InvalidResponse)),
        ("/version", 0, Some(InvalidResponse)),
        ("/shortcode", 0, Some(InvalidResponse)),
        ("/longcode", 0, Some(InvalidResponse)),
        ("/noreason", 299, None),
        ("/huge", 0, Some(InvalidResponse)),
        ("/bytewise", 200, None),
        ("/split", 204, None),
        ("/slow-trickle", 0, Some(Timeout)),
        ("/http10", 200, None),
        ("/bare-lf", 200, None),
        ("/interim", 201, None),
        ("/reset", 0, Some(Reset)),
        ("/reset-now", 0, Some(Reset)),
    ];
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
            (got_code, r.failure),
            (*code, *reason),
            "{path}: {:?}",
            r.detail
        );
        if *reason == Some(Timeout) {
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
        if *reason == Some(InvalidResponse) {
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
        "targets:\n  - http://127.0.0.1:{}/\n  - http://[::1]:{}/\n  - url: http://[::1]:{}/v4-only\n    ip_protocol: ip4\n  - url: http://127.0.0.1:{}/v6-only\n    ip_protocol: ip6\n",
        v4.port(),
        v6.port(),
        v6.port(),
        v4.port()
    );
    let (_, results) = probe_all(&yaml).await;
    assert_eq!(results[0].ip_protocol, Some(4));
    assert!(results[0].success());
    assert_eq!(results[1].ip_protocol, Some(6));
    assert!(results[1].success());
    // An address of a family the target does not allow is no address at all.
    assert_eq!(
        results[2].failure,
        Some(FailureReason::Dns),
        "{:?}",
        results[2]
    );
    assert_eq!(
        results[3].failure,
        Some(FailureReason::Dns),
        "{:?}",
        results[3]
    );
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
