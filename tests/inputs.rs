//! Small things users run into: `check`'s exit codes, a malformed bcrypt hash caught by the
//! config check, a dual-stack `:port`, `Vary` on `/metrics`, `/config` that stays YAML.

mod common;

use common::{Exporter, exporter_bin, free_port, http};

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn check_exits_2_for_a_bad_config_and_for_output_nobody_reads() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "targets:\n  - ftp://x/\n").unwrap();
    let out = Command::new(exporter_bin())
        .args(["check", "--config.file"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:2:5:"));
    // A target that succeeds, printed to a closed pipe.
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let mut child = Command::new(exporter_bin())
        .args(["check", &format!("http://{peer}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the results"));
}

#[test]
fn a_malformed_bcrypt_hash_fails_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(&targets, "targets: []\n").unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  prom: '$2y$10$short'\n").unwrap();
    let out = Command::new(exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&targets)
        .arg("--web.config.file")
        .arg(&web)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("basic_auth_users.prom: not a bcrypt hash")
    );
}

#[test]
fn a_bare_port_listens_on_ipv6_and_ipv4() {
    let port = free_port();
    let e = Exporter::start(
        "targets: []\n",
        &["--web.listen-address", &format!(":{port}")],
    );
    assert_eq!(e.addr.port(), port);
    for host in ["127.0.0.1", "[::1]"] {
        let addr = format!("{host}:{port}").parse().unwrap();
        common::wait_listening(addr, Duration::from_secs(2));
        assert_eq!(http(addr, "GET", "/-/healthy", &[]).status, 200, "{host}");
    }
}

#[test]
fn metrics_vary_by_encoding_and_config_stays_yaml() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let e = Exporter::start(
        &format!(
            "targets:\n  - url: http://{peer}/\n    headers: {{'!odd': 'x', '*star': 'y', '|pipe': 'z'}}\n"
        ),
        &[],
    );
    let r = http(
        e.addr,
        "GET",
        "/metrics",
        &["Accept-Encoding: gzip;q=0.000".into()],
    );
    let head = r.head.to_ascii_lowercase();
    assert!(head.contains("vary: accept-encoding"), "{}", r.head);
    assert!(!head.contains("content-encoding"), "{}", r.head);
    let config = http(e.addr, "GET", "/config", &[]).body;
    let parsed: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
    let headers = &parsed["targets"][0]["headers"];
    assert!(
        headers
            .as_sequence()
            .unwrap()
            .iter()
            .any(|h| h.as_str() == Some("!odd")),
        "{config}"
    );
}

#[test]
fn auto_reload_reports_a_vanished_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, "targets: []\n").unwrap();
    let e = Exporter::start_file(&path, &["--config.auto-reload-interval", "100ms"]);
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let body = e.scrape(None);
    assert_eq!(
        common::sample(
            &body,
            "http_status_exporter_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    let warned = e
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("targets file cannot be read"))
        .count();
    assert_eq!(warned, 1, "{:?}", e.log.lock().unwrap());
}

#[test]
fn pem_files_that_are_not_regular_fail_the_check_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        "targets:\n  - url: https://127.0.0.1:1/\n    tls_config: {ca_file: /dev/zero}\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = Command::new(exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&targets)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    assert!(t.elapsed() < Duration::from_secs(2));
}
