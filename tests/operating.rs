//! Running it for real, on the binary: reload (SIGHUP, POST, polling), --config.check, file_sd
//! targets, TLS and basic auth on our endpoints, the status page in a real Chromium, graceful
//! shutdown, sharding over three processes, and the per-host connection cap.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Wait until `f` is true, polling.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The `target` label of every `probe_success` series.
fn targets_of(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("probe_success{"))
        .filter_map(|l| {
            let i = l.find("target=\"")? + 8;
            let j = l[i..].find('"')?;
            Some(l[i..i + j].to_owned())
        })
        .collect()
}

/// A targets file listing nginx's `/ok` (`a`); `b` is nginx's `other` path, for a reload to add.
fn two_urls_one_listed(
    nginx: &Nginx,
    other: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    let a = format!("http://127.0.0.1:{}/ok", nginx.port);
    let b = format!("http://127.0.0.1:{}{other}", nginx.port);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, format!("targets: ['{a}']\n")).unwrap();
    (dir, path, a, b)
}

#[test]
fn reload_keeps_the_working_config_when_the_new_one_is_bad() {
    let nginx = Nginx::start(&[]);
    let (_dir, path, a, b) = two_urls_one_listed(&nginx, "/nocontent");
    let exporter = Exporter::start_file(&path, &["--web.enable-lifecycle"]);
    let text = exporter.scrape(None);
    assert_eq!(targets_of(&text), BTreeSet::from([a.clone()]));
    let good_time = sample(
        &text,
        "http_status_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    // SIGHUP with a new file.
    std::fs::write(&path, format!("targets: ['{a}', '{b}']\n")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    exporter.proc.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || targets_of(
        &exporter.scrape(None)
    )
    .len()
        == 2));

    // Only POST reloads.
    assert_eq!(http(exporter.addr, "GET", "/-/reload", &[]).status, 405);
    assert_eq!(http(exporter.addr, "PUT", "/-/reload", &[]).status, 405);

    // A bad file: a generic 500 (the file's values stay out of the answer), the error in the
    // log, old targets still probed, the metric says so.
    std::fs::write(&path, "targets:\n  - ftp://nope/\n").unwrap();
    let r = http(exporter.addr, "POST", "/-/reload", &[]);
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("config reload failed") && !r.body.contains("ftp://nope/"),
        "{}",
        r.body
    );
    assert!(eventually(Duration::from_secs(2), || exporter
        .log
        .lock()
        .unwrap()
        .iter()
        .any(
            |l| l.contains("targets.yaml:2:5:") && l.contains("ftp://nope/")
        )));
    let text = exporter.scrape(None);
    assert_eq!(targets_of(&text), BTreeSet::from([a.clone(), b.clone()]));
    assert_eq!(
        sample(
            &text,
            "http_status_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    let last_good = sample(
        &text,
        "http_status_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(last_good >= good_time);
    let last_good_after_bad = last_good;

    // A bad file on SIGHUP changes nothing either.
    exporter.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    let text = exporter.scrape(None);
    assert_eq!(targets_of(&text).len(), 2);
    assert_eq!(
        sample(
            &text,
            "http_status_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        Some(last_good_after_bad)
    );

    // Fixed: success again.
    std::fs::write(&path, format!("targets: ['{b}']\n")).unwrap();
    assert_eq!(http(exporter.addr, "POST", "/-/reload", &[]).status, 200);
    let text = exporter.scrape(None);
    assert_eq!(targets_of(&text), BTreeSet::from([b]));
    assert_eq!(
        sample(
            &text,
            "http_status_exporter_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
}

#[test]
fn auto_reload_follows_content_changes() {
    let nginx = Nginx::start(&[]);
    let (dir, path, a, b) = two_urls_one_listed(&nginx, "/moved");
    let exporter = Exporter::start_file(&path, &["--config.auto-reload-interval", "100ms"]);
    assert_eq!(targets_of(&exporter.scrape(None)).len(), 1);
    // A file rewritten the way a ConfigMap update replaces it.
    let tmp = dir.path().join("targets.yaml.new");
    std::fs::write(&tmp, format!("targets: ['{a}', '{b}']\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || targets_of(
            &exporter.scrape(None)
        )
        .len()
            == 2),
        "{:?}",
        exporter.log.lock().unwrap()
    );
    let reloads = exporter
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("msg=\"config reloaded\""))
        .count();
    std::thread::sleep(Duration::from_millis(400));
    let later = exporter
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("msg=\"config reloaded\""))
        .count();
    assert_eq!(reloads, later, "an unchanged file is not reloaded");
}

#[test]
fn config_check_validates_the_file_and_the_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let pki = Pki::new("check CA");
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(
        &good,
        "targets:\n  - url: https://127.0.0.1:1/\n    tls_config: {ca_file: ca.pem}\n",
    )
    .unwrap();
    let check = |file: &std::path::Path| {
        Command::new(exporter_bin())
            .args(["--config.check", "--config.file"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "targets:\n  - url: https://127.0.0.1:1/\n    tls_config: {ca_file: missing.pem}\n",
    )
    .unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:3:18: tls_config.ca_file: cannot read CA file",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn file_sd_targets_drive_the_exporter() {
    let nginx = Nginx::start(&[]);
    let yaml = format!(
        "- targets: ['http://127.0.0.1:{p}/ok', 'http://127.0.0.1:{p}/missing']\n  labels: {{env: prod, __meta_ignored: x}}\n- targets: ['http://[::1]:{p}/ok']\n",
        p = nginx.port
    );
    let exporter = Exporter::start(&yaml, &[]);
    let text = exporter.scrape(None);
    assert!(text.contains(&format!(
        "probe_success{{target=\"http://127.0.0.1:{}/ok\",env=\"prod\"}} 1",
        nginx.port
    )));
    assert!(text.contains(&format!(
        "probe_http_status_code{{target=\"http://127.0.0.1:{}/missing\",env=\"prod\"}} 404",
        nginx.port
    )));
    assert!(text.contains(&format!(
        "probe_success{{target=\"http://[::1]:{}/ok\"}} 1",
        nginx.port
    )));
    assert!(!text.contains("__meta_ignored"));
}

/// One HTTPS request to our endpoint: (status, first header lines) or the TLS error.
fn https_get(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    auth: Option<&str>,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = String::from("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn tls_mutual_tls_and_basic_auth_on_our_endpoints() {
    let pki = Pki::new("web CA");
    let (cert, key) = pki.leaf(&["localhost"], -1, 30);
    let (client_cert, client_key) = pki.client("prometheus");
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("server.crt", &cert),
        ("server.key", &key),
        ("ca.crt", &pki.ca_pem()),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\nbasic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .unwrap();
    let exporter = Exporter::start(
        "targets: []\n",
        &["--web.config.file", web.to_str().unwrap()],
    );
    let addr = exporter.addr;
    let basic = |u: &str, p: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };

    // Plain HTTP gets no answer.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // HTTPS without credentials: 401 with a challenge.
    let r = https_get(addr, &pki.ca_pem(), None, None).unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{r}"
    );
    let r = https_get(addr, &pki.ca_pem(), None, Some(&basic("prom", "wrong"))).unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = https_get(addr, &pki.ca_pem(), None, Some(&basic("prom", "s3cret"))).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("http_status_exporter_build_info"));
    let with_client_cert = || {
        https_get(
            addr,
            &pki.ca_pem(),
            Some((&client_cert, &client_key)),
            Some(&basic("prom", "s3cret")),
        )
        .unwrap()
    };
    let r = with_client_cert();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // Reloaded with the config: now a client certificate is required.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .unwrap();
    exporter.proc.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || {
        !https_get(addr, &pki.ca_pem(), None, Some(&basic("prom", "s3cret")))
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    }));
    let r = with_client_cert();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn the_status_page_reads_worst_first_in_a_real_browser() {
    let nginx = Nginx::start(&[]);
    let yaml = format!(
        "targets:\n  - url: http://127.0.0.1:{p}/ok\n    name: fine\n  - url: http://127.0.0.1:{p}/broken\n    name: broken\n  - url: http://127.0.0.1:{r}/\n    name: refused\n",
        p = nginx.port,
        r = closed_port()
    );
    let exporter = Exporter::start(&yaml, &[]);
    exporter.scrape(None);
    let url = format!("http://{}/", exporter.addr);
    let artefacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let browser = |extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        common::chromium(&url, (1200, 500), &extra)
    };
    let dom = browser(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let rows: Vec<&str> = dom.split("<tr class=\"").skip(1).collect();
    assert_eq!(rows.len(), 3, "{dom}");
    // Worst first: the two failures, in file order, then the healthy one.
    assert!(
        rows[0].starts_with("down") && rows[0].contains("broken") && rows[0].contains("500"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("down") && rows[1].contains("connect_refused"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("up") && rows[2].contains("fine"),
        "{}",
        rows[2]
    );
    assert!(dom.contains("href=\"/metrics\""));
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        shot.metadata().map(|m| m.len() > 1000).unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_lets_the_scrape_in_flight_finish_then_exits_0() {
    let peer = peer::spawn_thread("127.0.0.1:0");
    // `/late` answers after 700 ms; its timeout is 2 s.
    let mut exporter = Exporter::start(
        &format!("defaults: {{timeout: 2s}}\ntargets: ['http://{peer}/late']\n"),
        &[],
    );
    let addr = exporter.addr;
    let scrape = std::thread::spawn(move || http(addr, "GET", "/metrics", &[]));
    std::thread::sleep(Duration::from_millis(200));
    exporter.proc.signal("TERM");
    let r = scrape.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains(&format!("probe_success{{target=\"http://{peer}/late\"}} 1")),
        "{}",
        r.body
    );
    let status = exporter.proc.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn three_shards_cover_every_target_exactly_once() {
    let nginx = Nginx::start(&[]);
    let mut yaml = String::from("targets:\n");
    for i in 0..300 {
        yaml.push_str(&format!("  - http://127.0.0.1:{}/ok?{i}\n", nginx.port));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, yaml).unwrap();
    let shards: Vec<Exporter> = (0..3)
        .map(|i| {
            let index = format!("exporter-{i}");
            Exporter::start_file(&path, &["--shard.count", "3", "--shard.index", &index])
        })
        .collect();
    let mut union = BTreeSet::new();
    let mut total = 0;
    for s in &shards {
        let text = s.scrape(None);
        let mine = targets_of(&text);
        assert!(mine.len() > 60, "a shard got only {}", mine.len());
        assert_eq!(
            sample(&text, "http_status_exporter_targets", &[]),
            Some(mine.len() as f64)
        );
        total += mine.len();
        union.extend(mine);
    }
    assert_eq!(total, 300, "a target was probed twice");
    assert_eq!(union.len(), 300, "a target was probed by no shard");
}

#[test]
fn the_per_host_cap_bounds_connections_to_one_host() {
    // A host that counts its concurrent connections and holds each for 30 ms.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (n, p) = (n.clone(), p.clone());
            std::thread::spawn(move || {
                let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(c, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(30));
                // Counted out before answering: the prober frees its slot only after it read
                // the answer, so the next connection is always counted after this one left.
                n.fetch_sub(1, Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            });
        }
    });
    let mut yaml = String::from("max_connections_per_host: 4\ntargets:\n");
    for i in 0..40 {
        yaml.push_str(&format!("  - http://{addr}/{i}\n"));
    }
    let exporter = Exporter::start(&yaml, &[]);
    let text = exporter.scrape(None);
    let ok = text
        .lines()
        .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
        .count();
    assert_eq!(ok, 40);
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 4, "{peak} connections at once to one host");
    assert!(
        peak >= 2,
        "the cap is a cap, not serialisation: peak {peak}"
    );
}
