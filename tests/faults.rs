//! Real network faults, made on test hosts of our own: two network namespaces joined by a veth
//! pair, with addresses from 198.18.0.0/15 (the benchmarking range) that exist only inside
//! them. The exporter's `check` runs in the client namespace; nothing leaves the machine and
//! the host's own interfaces and sysctls are untouched.
//!
//! Needs root and iproute2 (`ip netns`), as CI has.

mod common;

use common::netns::{Net, in_netns, ip};

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The result of `url` among `lines`.
fn result<'a>(lines: &'a [serde_json::Value], url: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["target"] == url)
        .unwrap_or_else(|| panic!("no result for {url}: {lines:?}"))
}

/// Seconds of a result, printed for the README's fault table (`--nocapture`).
fn secs(v: &serde_json::Value) -> f64 {
    let s = v["duration_seconds"].as_f64().unwrap();
    println!("{}: {} after {s:.4} s", v["target"], v["reason"]);
    s
}

#[test]
fn a_route_that_drops_the_handshake_is_a_connect_timeout_at_the_deadline() {
    let mut net = Net::new();
    net.serve(8080, "ok");
    // The server's answers to the client go nowhere: the SYN arrives, no SYN-ACK comes back.
    ip(&[
        "-n",
        &net.server,
        "route",
        "add",
        "blackhole",
        &format!("{}/32", net.client_ip),
    ]);
    let url = format!("http://{}:8080/", net.server_ip);
    let (lines, _) = net.check(&format!("defaults: {{timeout: 1s}}\ntargets: ['{url}']\n"));
    let r = result(&lines, &url);
    assert_eq!(r["reason"], "connect_timeout", "{r}");
    assert!((1.0..1.05).contains(&secs(r)), "{r}");
}

#[test]
fn an_unreachable_route_is_a_connect_error_at_once() {
    let net = Net::new();
    ip(&[
        "-n",
        &net.client,
        "route",
        "add",
        "unreachable",
        "198.19.77.0/24",
    ]);
    let url = "http://198.19.77.7:8080/";
    let (lines, _) = net.check(&format!("defaults: {{timeout: 2s}}\ntargets: ['{url}']\n"));
    let r = result(&lines, url);
    assert_eq!(r["reason"], "connect_error", "{r}");
    assert!(secs(r) < 0.05, "{r}");
}

#[test]
fn a_link_that_goes_down_mid_status_line_is_a_timeout_at_the_deadline() {
    let mut net = Net::new();
    net.serve(8081, "partial");
    let url = format!("http://{}:8081/", net.server_ip);
    let yaml = format!("defaults: {{timeout: 1500ms}}\ntargets: ['{url}']\n");
    let server = net.server.clone();
    let dev = net.server_if();
    // The link goes down once the partial status line is on its way.
    let cut = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        ip(&["-n", &server, "link", "set", &dev, "down"]);
    });
    let (lines, _) = net.check(&yaml);
    cut.join().unwrap();
    let r = result(&lines, &url);
    assert_eq!(r["reason"], "timeout", "{r}");
    assert!((1.5..1.55).contains(&secs(r)), "{r}");
}

#[test]
fn a_server_that_never_reads_a_large_request_ends_at_the_deadline() {
    let mut net = Net::new();
    net.serve(8082, "deaf");
    let url = format!("http://{}:8082/", net.server_ip);
    // 60 headers of 4,000 bytes: 240 KB that the server never reads, so our write blocks.
    let headers: Vec<String> = (0..60)
        .map(|i| format!("X-Big-{i}: '{}'", "x".repeat(4000)))
        .collect();
    let yaml = format!(
        "defaults: {{timeout: 1s, headers: {{{}}}}}\ntargets: ['{url}']\n",
        headers.join(", ")
    );
    let (lines, _) = net.check(&yaml);
    let r = result(&lines, &url);
    assert_eq!(r["reason"], "timeout", "{r}");
    assert!((1.0..1.05).contains(&secs(r)), "{r}");
}

/// A server in namespace `ns` on `addr` that answers 200 and then leaves the connection open
/// until the client ends it; counts connections.
fn keep_open_server(ns: &str, addr: std::net::SocketAddr) -> std::sync::Arc<AtomicUsize> {
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let path = format!("/run/netns/{ns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: as in `in_netns`.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            socket.bind(addr).unwrap();
            let listener = socket.listen(4096).unwrap();
            tx.send(()).unwrap();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    // Never close first: wait for the client's close or reset.
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
    });
    rx.recv().unwrap();
    count
}

#[test]
fn ten_thousand_targets_every_2s_for_60s_never_run_out_of_ports() {
    let net = Net::new();
    // Ports are a per-namespace matter: TIME_WAIT sockets may not be reused here.
    ip(&[
        "netns",
        "exec",
        &net.client,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.tcp_tw_reuse=0",
    ]);
    let server: std::net::SocketAddr = format!("{}:8090", net.server_ip).parse().unwrap();
    let accepted = keep_open_server(&net.server, server);
    let dir = tempfile::tempdir().unwrap();
    let mut yaml =
        String::from("defaults: {timeout: 1500ms}\nmax_connections_per_host: 1024\ntargets:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!("  - http://{server}/t{i}\n"));
    }
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, yaml).unwrap();
    // The exporter in the client namespace, through a wrapper that enters it.
    let wrapper = net.exporter_wrapper(dir.path());
    let e = common::Exporter::start_with(&wrapper, &path, &[]);
    let addr = e.addr;
    let start = Instant::now();
    let mut rounds = 0;
    let mut ok = 0;
    let mut errors = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let tick = Instant::now();
        let body = in_netns(&net.client, move || {
            common::http(
                addr,
                "GET",
                "/metrics",
                &["X-Prometheus-Scrape-Timeout-Seconds: 1.9".into()],
            )
            .body
        });
        rounds += 1;
        ok += body
            .lines()
            .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
            .count();
        errors.extend(
            body.lines()
                .filter(|l| l.starts_with("probe_failure_reason{"))
                .take(3)
                .map(str::to_owned),
        );
        std::thread::sleep(Duration::from_secs(2).saturating_sub(tick.elapsed()));
    }
    let client = net.client.clone();
    let time_wait = in_netns(&client, || {
        let out = Command::new(common::find_program("ss", "iproute2"))
            .args(["-tan", "state", "time-wait"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .count()
            .saturating_sub(1)
    });
    println!(
        "{rounds} rounds, {ok} ok, {} failures, {} connections accepted, {time_wait} TIME_WAIT on the exporter's side",
        errors.len(),
        accepted.load(Ordering::Relaxed)
    );
    assert!(rounds >= 29, "{rounds} rounds");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ok, rounds * 10_000);
    assert!(time_wait < 100, "{time_wait} TIME_WAIT sockets on our side");
}
