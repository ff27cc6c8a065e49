//! Our own endpoints under abuse: clients that never read, connections that never end, a
//! reload that would weaken the endpoint's protection, the lifecycle endpoint.

mod common;

use common::{Exporter, http, sample};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Resident memory of a process, MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Whether the server closed `s`: everything it sent can be drained to the end.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn clients_that_never_read_are_closed_and_cannot_pin_memory_or_slots() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let mut yaml = String::from("targets:\n");
    for i in 0..2000 {
        yaml.push_str(&format!("  - http://{peer}/p{i}\n"));
    }
    let e = Exporter::start(&yaml, &[]);
    e.scrape(None);
    let before = rss_mib(e.proc.pid());
    let fds_before = open_fds(e.proc.pid());
    // More clients than connection slots (512), each pipelining scrapes and reading nothing.
    let mut clients = Vec::new();
    let request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
    for _ in 0..600 {
        let mut s = TcpStream::connect(e.addr).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(request.as_bytes());
        clients.push(s);
    }
    let start = Instant::now();
    // The slots come back: health answers once the stalled writers are cut off.
    let healthy = loop {
        let probe = std::thread::spawn({
            let addr = e.addr;
            move || http(addr, "GET", "/-/healthy", &[]).status
        });
        std::thread::sleep(Duration::from_millis(500));
        if probe.is_finished() && probe.join().unwrap() == 200 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "/-/healthy never answered"
        );
    };
    // The 10 s write-stall cut starts once a client's socket buffers are full: rendering
    // scrapes of 2,000 targets for 512 clients first takes 2 to 6 s on a 2-core machine (the
    // same with the build before the latest changes: 16.0 s seen once), so the bound leaves
    // room for that.
    assert!(
        healthy < Duration::from_secs(20),
        "healthy after {healthy:?}"
    );
    let peak = rss_mib(e.proc.pid());
    // Those beyond the slots are served, stall and are cut off in a second wave: the
    // exporter's descriptors come back to what they were, while the clients still hold theirs.
    // Two waves of the 10 s write-stall cut end near 22 s; on a loaded 2-core machine the
    // last closes were seen at 25 s, so the bound leaves room for that.
    while open_fds(e.proc.pid()) > fds_before + 2 && start.elapsed() < Duration::from_secs(35) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let fds = open_fds(e.proc.pid());
    assert!(
        fds <= fds_before + 2,
        "{fds} descriptors open after {:?}, {fds_before} before",
        start.elapsed()
    );
    // And a client sees its connection ended by the server.
    assert!(closed_by_server(&mut clients[0]));
    assert!(peak - before < 120.0, "RSS {before:.0} -> {peak:.0} MiB");
}

#[test]
fn a_connection_serves_a_bounded_number_of_requests() {
    let e = Exporter::start("targets: []\n", &[]);
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
            .repeat(150)
            .as_bytes(),
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 100);
    assert_eq!(
        text.to_ascii_lowercase()
            .matches("connection: close")
            .count(),
        1
    );
}

/// A web config of basic auth (user `prom`, password `pw`).
fn auth_file(dir: &std::path::Path) -> std::path::PathBuf {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(&path, format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
    path
}

#[test]
fn a_reload_never_weakens_the_web_config() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let web = auth_file(dir.path());
    let e = Exporter::start(
        "targets: []\n",
        &["--web.config.file", web.to_str().unwrap()],
    );
    let creds = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode("prom:pw")
    );
    for weaker in ["", "basic_auth_users: {}\n"] {
        std::fs::write(&web, weaker).unwrap();
        e.proc.signal("HUP");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            http(e.addr, "GET", "/metrics", &[]).status,
            401,
            "{weaker:?}"
        );
        let r = http(e.addr, "GET", "/metrics", std::slice::from_ref(&creds));
        assert_eq!(r.status, 200);
        assert_eq!(
            sample(
                &r.body,
                "http_status_exporter_config_last_reload_successful",
                &[]
            ),
            Some(0.0)
        );
        assert!(
            e.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("turns basic authentication off"))
        );
    }
}

#[test]
fn the_reload_endpoint_needs_the_lifecycle_flag() {
    let e = Exporter::start("targets: []\n", &[]);
    let r = http(e.addr, "POST", "/-/reload", &[]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--web.enable-lifecycle"), "{}", r.body);
    let on = Exporter::start("targets: []\n", &["--web.enable-lifecycle"]);
    assert_eq!(http(on.addr, "POST", "/-/reload", &[]).status, 200);
}
