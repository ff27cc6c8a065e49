//! The exporter end to end: a real nginx on loopback (plain, IPv6, `localhost`, HTTPS with a
//! CA made at test time), the exporter binary on a free port, scraped over HTTP.

mod common;

use common::*;

/// Targets of the main scenario: (URL, expected status code, expected success).
fn expectations(port: u16, tls_port: u16) -> Vec<(String, u16, bool)> {
    vec![
        (format!("http://127.0.0.1:{port}/ok"), 200, true),
        (format!("http://127.0.0.1:{port}/nocontent"), 204, true),
        (format!("http://127.0.0.1:{port}/moved"), 301, true),
        (format!("http://127.0.0.1:{port}/found"), 302, true),
        (format!("http://127.0.0.1:{port}/missing"), 404, false),
        (format!("http://127.0.0.1:{port}/broken"), 500, false),
        (format!("http://[::1]:{port}/ok"), 200, true),
        (format!("http://localhost:{port}/ok"), 200, true),
        (format!("https://localhost:{tls_port}/ok"), 200, true),
    ]
}

#[test]
fn a_scrape_reports_every_target_of_a_real_nginx() {
    let pki = Pki::new("e2e test CA");
    let (cert, key) = pki.leaf(&["localhost", "127.0.0.1"], -1, 30);
    let nginx = Nginx::start(&[TlsServer {
        cert_pem: cert,
        key_pem: key,
        extra: "ssl_protocols TLSv1.2 TLSv1.3;".into(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let (port, tls_port) = (nginx.port, nginx.tls_ports[0]);
    let refused = closed_port();
    let mut yaml = String::from("targets:\n");
    for (url, _, _) in expectations(port, tls_port) {
        if url.starts_with("https") {
            yaml.push_str(&format!(
                "  - url: {url}\n    name: tls\n    tls_config: {{ca_file: ca.pem}}\n"
            ));
        } else {
            yaml.push_str(&format!("  - {url}\n"));
        }
    }
    yaml.push_str(&format!(
        "  - url: http://127.0.0.1:{refused}/\n    name: refused\n    labels: {{team: core}}\n    headers: {{Authorization: Bearer s3cret}}\n"
    ));
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let exporter = Exporter::start_file(&path, &["--web.enable-lifecycle"]);

    let text = exporter.scrape(Some(10.0));
    for (url, code, ok) in expectations(port, tls_port) {
        assert_eq!(
            target_sample(&text, "probe_http_status_code", &url),
            Some(f64::from(code)),
            "{url}\n{text}"
        );
        assert_eq!(
            target_sample(&text, "probe_success", &url),
            Some(if ok { 1.0 } else { 0.0 }),
            "{url}"
        );
        let want_reason = (!ok).then(|| "status_code".to_owned());
        assert_eq!(reason(&text, &url), want_reason, "{url}");
        let duration = target_sample(&text, "probe_duration_seconds", &url).unwrap();
        assert!(duration > 0.0 && duration < 5.0, "{url}: {duration}");
    }
    let refused_url = format!("http://127.0.0.1:{refused}/");
    assert_eq!(
        target_sample(&text, "probe_success", &refused_url),
        Some(0.0)
    );
    assert_eq!(
        target_sample(&text, "probe_http_status_code", &refused_url),
        Some(0.0)
    );
    assert_eq!(
        reason(&text, &refused_url).as_deref(),
        Some("connect_refused")
    );
    assert!(
        text.contains(&format!(
            "probe_success{{target=\"{refused_url}\",name=\"refused\",team=\"core\"}} 0"
        )),
        "name and extra labels are on the series"
    );
    // Address families and TLS facts.
    let v6 = format!("http://[::1]:{port}/ok");
    assert_eq!(target_sample(&text, "probe_ip_protocol", &v6), Some(6.0));
    let tls_url = format!("https://localhost:{tls_port}/ok");
    assert_eq!(
        sample(
            &text,
            "probe_tls_version_info",
            &[("target", &tls_url), ("version", "TLS 1.3")]
        ),
        Some(1.0),
        "{text}"
    );
    let expiry = target_sample(&text, "probe_ssl_leaf_cert_expiry", &tls_url).unwrap();
    let in_days = (expiry - unix_now()) / 86_400.0;
    assert!(
        (29.0..31.0).contains(&in_days),
        "leaf expires in {in_days} days"
    );
    let tls_phase = sample(
        &text,
        "probe_http_duration_seconds",
        &[("target", &tls_url), ("phase", "tls")],
    )
    .unwrap();
    assert!(tls_phase > 0.0);
    // Exporter metrics.
    assert_eq!(
        sample(&text, "http_status_exporter_targets", &[]),
        Some(10.0)
    );
    assert!(sample(&text, "http_status_exporter_round_duration_seconds", &[]).unwrap() > 0.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[]).unwrap() > 0.0);

    // Compressed when the client accepts gzip (Prometheus does), with the same content.
    let gz = http(
        exporter.addr,
        "GET",
        "/metrics",
        &[
            "Accept-Encoding: gzip".to_owned(),
            "X-Prometheus-Scrape-Timeout-Seconds: 10".to_owned(),
        ],
    );
    assert!(
        gz.head
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{}",
        gz.head
    );
    for (url, code, _) in expectations(port, tls_port) {
        assert_eq!(
            target_sample(&gz.body, "probe_http_status_code", &url),
            Some(f64::from(code))
        );
    }
    assert!(gz.body.contains("http_status_exporter_build_info"));
    let plain = http(exporter.addr, "GET", "/metrics", &[]);
    assert!(!plain.head.to_ascii_lowercase().contains("content-encoding"));

    // Other endpoints.
    let health = http(exporter.addr, "GET", "/-/healthy", &[]);
    assert_eq!(health.status, 200);
    let page = http(exporter.addr, "GET", "/", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("http://127.0.0.1:{port}/missing"))
    );
    assert!(page.body.contains("href=\"/metrics\""));
    let config = http(exporter.addr, "GET", "/config", &[]);
    assert_eq!(config.status, 200);
    assert!(
        config.body.contains(&format!("url: \"{refused_url}\"")),
        "{}",
        config.body
    );
    assert!(config.body.contains("Authorization") && !config.body.contains("s3cret"));
    assert_eq!(http(exporter.addr, "GET", "/nope", &[]).status, 404);
    assert_eq!(http(exporter.addr, "DELETE", "/metrics", &[]).status, 405);

    // A target removed from the file leaves no series behind.
    let kept = format!("http://127.0.0.1:{port}/ok");
    std::fs::write(&path, format!("targets: [{kept}]\n")).unwrap();
    let r = http(exporter.addr, "POST", "/-/reload", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let text = exporter.scrape(Some(10.0));
    assert_eq!(target_sample(&text, "probe_success", &kept), Some(1.0));
    assert!(!text.contains("/missing"), "stale series left:\n{text}");
    assert!(!text.contains(&refused_url));
    assert_eq!(
        sample(&text, "http_status_exporter_targets", &[]),
        Some(1.0)
    );
}

#[test]
fn check_prints_each_result_and_exits_1_on_failure() {
    let nginx = Nginx::start(&[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let missing = format!("http://127.0.0.1:{}/missing", nginx.port);
    let out = std::process::Command::new(exporter_bin())
        .args(["check", &ok, &missing])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].trim_start().starts_with("TIME  CODE  URL "),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("2 targets: 1 up, 1 down, in "),
        "{stdout}"
    );
    let has = |l: &&&str, url: &str| l.contains(&format!("  {url} "));
    let ok_line = lines.iter().find(|l| has(l, &ok)).unwrap();
    assert!(ok_line.contains("HTTP/1.1 200 OK"), "{ok_line}");
    assert!(ok_line.contains("  200   "), "{ok_line}");
    let missing_line = lines.iter().find(|l| has(l, &missing)).unwrap();
    assert!(
        missing_line.contains("404 Not Found (status_code)"),
        "{missing_line}"
    );
    // Aligned: the result column starts at the same place on every line.
    let col = |l: &str| l.find("HTTP/1.1").unwrap();
    assert_eq!(col(ok_line), col(missing_line));

    let out = std::process::Command::new(exporter_bin())
        .args(["check", "--output", "json", &ok])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], ok.as_str());
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["success"], true);
    assert!(v["duration_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn check_tells_one_url_under_two_names_apart_and_counts_in_words() {
    let nginx = Nginx::start(&[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.yaml");
    std::fs::write(
        &two,
        format!(
            "targets:\n  - {{url: '{ok}', name: shop, labels: {{team: core}}}}\n  \
             - {{url: '{ok}', name: shop-eu}}\n"
        ),
    )
    .unwrap();
    let check = |args: &[&str]| {
        let out = std::process::Command::new(exporter_bin())
            .arg("check")
            .arg("--config.file")
            .arg(&two)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = check(&[]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("  URL") && lines[0].contains("  NAME"),
        "{table}"
    );
    let rows: Vec<&str> = lines[1..3].to_vec();
    assert!(rows.iter().any(|l| l.contains("  shop  ")), "{table}");
    assert!(rows.iter().any(|l| l.contains("  shop-eu  ")), "{table}");
    assert_ne!(rows[0].split_at(16).1, rows[1].split_at(16).1, "{table}");
    assert!(lines[3].starts_with("2 targets: 2 up"), "{table}");
    let json = check(&["--output", "json"]);
    let values: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shop = values.iter().find(|v| v["name"] == "shop").expect("shop");
    assert_eq!(shop["labels"]["team"], "core", "{shop}");
    assert_eq!(shop["group"], "default", "{shop}");
    // One target is one target.
    let one = dir.path().join("one.yaml");
    std::fs::write(&one, format!("targets:\n  - {ok}\n")).unwrap();
    let out = std::process::Command::new(exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&one)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": OK, 1 target\n"), "{text}");
    let out = std::process::Command::new(exporter_bin())
        .args(["check", &ok])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n1 target: 1 up, 0 down"), "{text}");
    assert!(!text.contains("NAME"), "no names, no NAME column: {text}");
}

#[test]
fn check_without_network_reports_every_public_site_promptly() {
    // A network namespace of our own with no interface but a down loopback: nothing can leave
    // the machine, and every probe must fail fast with a reason.
    let unshare = find_program("unshare", "util-linux");
    let sites = [
        "https://www.google.com/",
        "https://www.youtube.com/",
        "https://www.facebook.com/",
        "https://www.wikipedia.org/",
        "https://www.instagram.com/",
        "https://www.reddit.com/",
        "https://www.bing.com/",
        "https://x.com/",
        "https://www.amazon.com/",
        "https://www.yahoo.com/",
    ];
    let start = std::time::Instant::now();
    let out = std::process::Command::new(unshare)
        .args(["--net", "--map-root-user"])
        .arg(exporter_bin())
        .args(["check", "--timeout", "3s", "--output", "json"])
        .args(sites)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), sites.len(), "{stdout}");
    for r in &results {
        assert_eq!(r["success"], false);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            ["dns", "connect_error", "connect_refused"].contains(&reason),
            "{r}"
        );
    }
    assert!(
        elapsed < std::time::Duration::from_secs(4),
        "took {elapsed:?}"
    );
}
