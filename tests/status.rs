//! What people look at, in a real browser (headless Chromium, screenshots kept in
//! `target/test-artifacts/`): the strip and uptime of a flapping target, the per-target page,
//! and a 10,000-target page in pages.

mod common;

use common::{Exporter, closed_port, http};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A peer that answers 200 and 500 in turn.
fn flapping() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let answer: &[u8] = if n.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = s.write_all(answer);
        }
    });
    addr
}

/// Where screenshots are kept.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url`: the DOM after loading, and a screenshot into `shot`.
fn browse(url: &str, shot: &Path, height: u32) -> String {
    let dom = common::chromium(url, (1400, height), &["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let _ = std::fs::remove_file(shot);
    let out = common::chromium(
        url,
        (1400, height),
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 1000),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[test]
fn a_flapping_target_shows_its_strip_and_uptime_and_its_own_page() {
    let flap = flapping();
    let fine = common::peer::spawn_thread("127.0.0.1:0");
    let flap_url = format!("http://{flap}/");
    let yaml = format!(
        "targets:\n  - {{url: 'http://{fine}/ok', name: fine}}\n  - {{url: '{flap_url}', name: flapping}}\n  \
         - {{url: 'http://127.0.0.1:{}/', name: refused}}\n",
        closed_port()
    );
    let e = Exporter::start(&yaml, &[]);
    for _ in 0..12 {
        e.scrape(None);
    }
    let dom = browse(
        &format!("http://{}/", e.addr),
        &artefacts().join("status-flapping.png"),
        500,
    );
    let rows: Vec<&str> = dom.split("<tr class=\"").skip(1).collect();
    assert_eq!(rows.len(), 3, "{dom}");
    let flapping = rows.iter().find(|r| r.contains("flapping")).unwrap();
    let cells: Vec<&str> = flapping
        .split("<span class=\"")
        .skip(1)
        .map(|c| c.split('"').next().unwrap())
        .collect();
    assert_eq!(cells.len(), 12, "{flapping}");
    assert!(cells.windows(2).all(|w| w[0] != w[1]), "{cells:?}");
    assert!(flapping.contains("50.0%"), "{flapping}");
    // Each cell says when, what and how long.
    assert!(flapping.contains("500 status_code"), "{flapping}");
    let fine_row = rows.iter().find(|r| r.contains(">fine<")).unwrap();
    assert!(fine_row.contains("100.0%"));
    assert!(
        rows.iter()
            .any(|r| r.contains("refused") && r.contains("0.0%"))
    );
    assert!(
        dom.contains("<b>1</b> up") && dom.contains("<b>2</b> down"),
        "{dom}"
    );

    // Its own page: every result in full.
    let page = browse(
        &format!(
            "http://{}/target?url={}",
            e.addr,
            common::url_encode(&flap_url)
        ),
        &artefacts().join("status-target.png"),
        700,
    );
    let results: Vec<&str> = page.split("<tr class=\"").skip(1).collect();
    assert_eq!(results.len(), 12, "{page}");
    assert!(
        page.contains("Up in 6 of the last 12 rounds (50.0%)"),
        "{page}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.contains("HTTP/1.1 500 Internal Server Error"))
    );
    assert!(results.iter().all(|r| r.contains("IPv4")));
    assert_eq!(
        http(e.addr, "GET", "/target?url=http%3A%2F%2Fnowhere%2F", &[]).status,
        404
    );
}

#[test]
fn ten_thousand_targets_render_fast_in_pages_under_a_megabyte() {
    let port = closed_port();
    let mut yaml = String::from("defaults: {timeout: 2s}\ntargets:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!("  - http://127.0.0.1:{port}/t{i}\n"));
    }
    let fine = common::peer::spawn_thread("127.0.0.1:0");
    yaml.push_str(&format!(
        "  - {{url: 'http://{fine}/healthy', name: healthy}}\n"
    ));
    let e = Exporter::start(&yaml, &[]);
    for _ in 0..3 {
        e.scrape(None);
    }
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..9 {
        let t = Instant::now();
        let r = http(e.addr, "GET", "/", &[]);
        times.push(t.elapsed());
        size = r.body.len();
        assert_eq!(r.status, 200);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!("status page of 10,001 targets: {median:?} median, {size} bytes");
    assert!(median < Duration::from_millis(100), "{median:?}");
    assert!(size < 1_000_000, "{size} bytes");
    let page = http(e.addr, "GET", "/", &[]).body;
    assert_eq!(page.matches("<tr class=\"").count(), 100);
    assert!(
        page.contains("10001 targets shown, page 1 of 101"),
        "{page}"
    );
    // The last page holds the healthy one, after every failure.
    let last = http(e.addr, "GET", "/?page=101", &[]).body;
    assert!(last.contains(">healthy<"), "{last}");
    // Filters: by state and by text.
    let up = http(e.addr, "GET", "/?state=up", &[]).body;
    assert_eq!(up.matches("<tr class=\"up\"").count(), 1);
    let found = http(e.addr, "GET", "/?q=%2Ft999", &[]).body;
    assert!(found.contains("11 targets shown"), "{found}");
    let dom = browse(
        &format!("http://{}/?page=2", e.addr),
        &artefacts().join("status-10000.png"),
        900,
    );
    assert!(dom.contains("page 2 of 101"));
    assert!(dom.contains("rel=\"prev\"") && dom.contains("rel=\"next\""));
}
