//! A drop-in for blackbox_exporter users: exporter-toolkit's web flags, `/sd` for a `/probe`
//! job, `module=` selecting one group's target, and the metrics blackbox dashboards and alerts
//! query, compared with blackbox_exporter 0.23 on the same targets.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::blackbox::Blackbox;
use common::*;

/// Three target entries on one nginx: `/ok` in two groups, `/found` in one.
fn two_groups(port: u16) -> String {
    format!(
        "targets:\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/ok', name: api, group: critical, labels: {{team: core}}}}\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/ok', group: pages}}\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/found', group: pages}}\n"
    )
}

#[test]
fn every_listen_address_serves_and_the_metrics_live_at_the_telemetry_path() {
    let nginx = Nginx::start(&[]);
    let url = format!("http://127.0.0.1:{}/ok", nginx.port);
    let e = Exporter::start(
        &format!("targets: ['{url}']\n"),
        &[
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.listen-address=127.0.0.1:0",
            "--web.telemetry-path",
            "/probe-metrics",
        ],
    );
    assert_eq!(e.addresses.len(), 2, "{:?}", e.addresses);
    assert_ne!(e.addresses[0], e.addresses[1]);
    for a in &e.addresses {
        let r = http(*a, "GET", "/probe-metrics", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(target_sample(&r.body, "probe_success", &url), Some(1.0));
        assert!(r.body.contains("http_status_exporter_targets 1\n"));
        assert_eq!(http(*a, "GET", "/metrics", &[]).status, 404);
    }
    // The landing page links every endpoint, the metrics at their path.
    let page = http(e.addr, "GET", "/", &[]).body;
    for link in [
        "href=\"/probe-metrics\"",
        "href=\"/config\"",
        "href=\"/sd\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
    ] {
        assert!(page.contains(link), "the landing page lacks {link}");
    }
    // A telemetry path that would hide another endpoint is refused at start.
    let out = Command::new(exporter_bin())
        .args(["--web.telemetry-path", "/probe", "--config.check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already served"));
}

#[test]
fn systemd_socket_activation_serves_on_the_socket_it_is_given() {
    let python = find_program("python3", "python3");
    let nginx = Nginx::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    // What systemd does: a bound, listening socket at descriptor 3, LISTEN_PID set to the
    // process that then execs the service.
    let wrapper = dir.path().join("activate");
    std::fs::write(
        &wrapper,
        format!(
            "#!{}\nimport os, socket, sys\n\
             s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(128)\n\
             open({:?}, 'w').write(str(s.getsockname()[1]))\n\
             os.dup2(s.fileno(), 3)\nos.set_inheritable(3, True)\n\
             os.environ['LISTEN_PID'] = str(os.getpid())\nos.environ['LISTEN_FDS'] = '1'\n\
             os.execv({:?}, [{:?}] + sys.argv[1:])\n",
            python.display(),
            port_file.display().to_string(),
            exporter_bin(),
            exporter_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let targets = dir.path().join("targets.yaml");
    let url = format!("http://127.0.0.1:{}/ok", nginx.port);
    std::fs::write(&targets, format!("targets: ['{url}']\n")).unwrap();
    let e = Exporter::start_with(&wrapper, &targets, &["--web.systemd-socket"]);
    let given: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(e.addresses, [SocketAddr::from(([127, 0, 0, 1], given))]);
    let body = e.scrape(None);
    assert_eq!(target_sample(&body, "probe_success", &url), Some(1.0));

    // Without systemd's variables the flag is a clear start-up error, not a silent fallback.
    let out = Command::new(exporter_bin())
        .arg("--config.file")
        .arg(&targets)
        .arg("--web.systemd-socket")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systemd sockets: LISTEN_PID"), "{err}");
}

#[test]
fn probe_with_a_module_selects_exactly_that_groups_target() {
    let nginx = Nginx::start(&[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let e = Exporter::start(&two_groups(nginx.port), &[]);
    let probe = |module: Option<&str>| {
        let mut path = format!("/probe?target={}", url_encode(&ok));
        if let Some(m) = module {
            path.push_str(&format!("&module={m}"));
        }
        let r = http(e.addr, "GET", &path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    };
    for group in ["critical", "pages"] {
        let body = probe(Some(group));
        assert_eq!(body.matches("probe_success{").count(), 1, "{body}");
        assert_eq!(
            sample(&body, "probe_success", &[("target", &ok), ("group", group)]),
            Some(1.0),
            "{body}"
        );
    }
    // A module that is not a group (a blackbox job's http_2xx) and no module: every entry.
    for module in [Some("http_2xx"), None] {
        assert_eq!(probe(module).matches("probe_success{").count(), 2);
    }
    let found = format!("http://127.0.0.1:{}/found", nginx.port);
    let r = http(
        e.addr,
        "GET",
        &format!("/probe?target={}&module=critical", url_encode(&found)),
        &[],
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("in group \"pages\""), "{}", r.body);
}

/// A GET against Prometheus's HTTP API, as JSON.
fn api(prom: SocketAddr, path: &str) -> serde_json::Value {
    let r = http(prom, "GET", path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn a_probe_job_discovers_the_exporters_own_targets_from_sd() {
    let nginx = Nginx::start(&[]);
    let e = Exporter::start(&two_groups(nginx.port), &[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let found = format!("http://127.0.0.1:{}/found", nginx.port);

    let sd: serde_json::Value =
        serde_json::from_str(&http(e.addr, "GET", "/sd", &[]).body).unwrap();
    let sd = sd.as_array().unwrap();
    assert_eq!(sd.len(), 3, "{sd:?}");
    assert_eq!(sd[0]["targets"], serde_json::json!([ok]));
    assert_eq!(sd[0]["labels"]["__param_module"], "critical");
    assert_eq!(sd[0]["labels"]["name"], "api");
    assert_eq!(sd[0]["labels"]["team"], "core");
    assert_eq!(sd[2]["labels"]["__param_module"], "pages");
    let only: serde_json::Value =
        serde_json::from_str(&http(e.addr, "GET", "/sd?group=critical", &[]).body).unwrap();
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(http(e.addr, "GET", "/sd?group=nope", &[]).status, 404);

    let exporter = e.addr.to_string();
    let (_prom, prom) = prometheus(&format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n\
         - job_name: probe\n  metrics_path: /probe\n  honor_labels: true\n  \
           http_sd_configs: [{{url: 'http://{exporter}/sd', refresh_interval: 1s}}]\n  \
           relabel_configs:\n    \
           - {{source_labels: [__address__], target_label: __param_target}}\n    \
           - {{source_labels: [__param_target], target_label: instance}}\n    \
           - {{target_label: __address__, replacement: '{exporter}'}}\n"
    ));
    let start = Instant::now();
    let series = loop {
        let r = http(
            prom,
            "GET",
            "/api/v1/query?query=probe_success%7Bjob%3D%22probe%22%7D",
            &[],
        );
        if r.status == 200 {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            let result = v["data"]["result"].as_array().unwrap().clone();
            if result.len() == 3 {
                break result;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus did not get 3 probe_success series: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // One series per target entry: each probe asked for exactly its group's entry.
    let mut seen: Vec<(String, String, String)> = series
        .iter()
        .map(|s| {
            let m = &s["metric"];
            assert_eq!(s["value"][1], "1", "{s:?}");
            (
                m["target"].as_str().unwrap().to_owned(),
                m["group"].as_str().unwrap().to_owned(),
                m["instance"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (found.clone(), "pages".to_owned(), found.clone()),
        (ok.clone(), "critical".to_owned(), ok.clone()),
        (ok.clone(), "pages".to_owned(), ok.clone()),
    ];
    want.sort();
    assert_eq!(seen, want);
    let names = api(
        prom,
        "/api/v1/series?match%5B%5D=probe_success%7Bname%3D%22api%22%7D",
    );
    assert_eq!(names["data"].as_array().unwrap().len(), 1, "{names}");
}

#[test]
fn blackbox_reload_metrics_and_dns_lookup_time_mean_what_they_mean_in_blackbox() {
    let nginx = Nginx::start(&[]);
    let by_name = format!("http://localhost:{}/ok", nginx.port);
    let by_ip = format!("http://127.0.0.1:{}/ok", nginx.port);
    let bb = Blackbox::start("  http_2xx:\n    prober: http\n    timeout: 5s\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, format!("targets: ['{by_name}', '{by_ip}']\n")).unwrap();
    let e = Exporter::start_file(&path, &[]);
    let ours = e.scrape(None);
    let theirs_metrics = http(bb.addr, "GET", "/metrics", &[]).body;
    for name in [
        "blackbox_exporter_config_last_reload_successful",
        "blackbox_exporter_config_last_reload_success_timestamp_seconds",
    ] {
        let a = sample(&ours, name, &[]).unwrap_or_else(|| panic!("we lack {name}"));
        let b =
            sample(&theirs_metrics, name, &[]).unwrap_or_else(|| panic!("blackbox lacks {name}"));
        if name.ends_with("successful") {
            assert_eq!(a, b, "{name}");
        } else {
            assert!((a - unix_now()).abs() < 120.0 && (b - unix_now()).abs() < 120.0);
        }
    }
    // A failed reload: the blackbox name reads 0, as an alert written for blackbox expects.
    std::fs::write(&path, "targets: [\n").unwrap();
    e.proc.signal("HUP");
    let start = Instant::now();
    loop {
        let text = e.scrape(None);
        if sample(
            &text,
            "blackbox_exporter_config_last_reload_successful",
            &[],
        ) == Some(0.0)
        {
            assert_eq!(
                sample(
                    &text,
                    "http_status_exporter_config_last_reload_successful",
                    &[]
                ),
                Some(0.0)
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no failed reload seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // probe_dns_lookup_time_seconds: present for a name and for an IP literal, as in blackbox.
    for target in [&by_name, &by_ip] {
        let theirs = bb.probe(target, "http_2xx", &[]);
        let b = sample(&theirs, "probe_dns_lookup_time_seconds", &[]).unwrap();
        let a = target_sample(&ours, "probe_dns_lookup_time_seconds", target).unwrap();
        assert!(
            (0.0..1.0).contains(&a) && (0.0..1.0).contains(&b),
            "{target}: {a} {b}"
        );
        assert_eq!(sample(&theirs, "probe_success", &[]), Some(1.0));
        assert_eq!(target_sample(&ours, "probe_success", target), Some(1.0));
    }
    assert_eq!(
        target_sample(&ours, "probe_dns_lookup_time_seconds", &by_ip),
        Some(0.0)
    );
}

#[test]
fn address_version_and_length_facts_equal_blackbox_exporters_on_the_same_targets() {
    let nginx = Nginx::start(&[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let missing = format!("http://127.0.0.1:{}/missing", nginx.port);
    let refused = format!("http://127.0.0.1:{}/", closed_port());
    let v6 = format!("http://[::1]:{}/ok", nginx.port);
    let bb = Blackbox::start(
        "  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
    );
    let e = Exporter::start(
        &format!("targets: ['{ok}', '{missing}', '{refused}', '{v6}']\n"),
        &[],
    );
    let ours = e.scrape(None);
    for target in [&ok, &missing, &refused, &v6] {
        let theirs = bb.probe(target, "http_2xx", &[]);
        let b = |m: &str| sample(&theirs, m, &[]);
        let a = |m: &str| target_sample(&ours, m, target);
        assert_eq!(a("probe_success"), b("probe_success"), "{target}");
        // Known from resolution on, also when connecting fails.
        for m in ["probe_ip_protocol", "probe_ip_addr_hash"] {
            assert_eq!(
                a(m),
                b(m),
                "{target}: {m}\nours:\n{ours}\ntheirs:\n{theirs}"
            );
        }
        if target == &refused {
            // No answer: blackbox reports 0 for what it never learnt, we report nothing.
            assert_eq!(b("probe_http_version"), Some(0.0));
            assert_eq!(a("probe_http_version"), None);
            assert_eq!(a("probe_http_content_length"), None);
        } else {
            // An answer, good or not: its version and length.
            assert_eq!(a("probe_http_version"), b("probe_http_version"), "{target}");
            assert_eq!(
                a("probe_http_content_length"),
                b("probe_http_content_length"),
                "{target}"
            );
        }
    }
    assert_eq!(
        target_sample(&ours, "probe_http_content_length", &ok),
        Some(3.0)
    );
    assert_eq!(target_sample(&ours, "probe_ip_protocol", &v6), Some(6.0));
}

/// A loopback server on `ip` that answers 200 to anything and counts the connections it got.
fn counting_peer(ip: &str) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, count)
}

/// A targets file with an allowlist, and a hosts file for the exporter's resolver: names
/// under `allowed.test` are admitted; `ok.allowed.test` resolves into the allowed network,
/// `denied.allowed.test` to loopback, which no name pattern opens.
fn allowlisted_exporter(configured: &str) -> (Exporter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.2 ok.allowed.test\n127.0.0.1 denied.allowed.test\n",
    )
    .unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "probe:\n  allow: ['127.0.0.2/32', '*.allowed.test']\n  deny: ['127.0.0.3/32']\n\
             groups:\n  web: {{timeout: 2s}}\n\
             targets:\n  - {{url: '{configured}', group: web}}\n"
        ),
    )
    .unwrap();
    let e = Exporter::start_file(&targets, &["--dns.hosts-file", hosts.to_str().unwrap()]);
    (e, dir)
}

#[test]
fn a_probe_job_with_file_sd_probes_what_the_allowlist_admits_and_connects_nowhere_else() {
    let nginx = Nginx::start(&[]);
    let configured = format!("http://127.0.0.1:{}/ok", nginx.port);
    let (allowed, allowed_hits) = counting_peer("127.0.0.2");
    let (denied, denied_hits) = counting_peer("127.0.0.1");
    let (e, dir) = allowlisted_exporter(&configured);
    let literal = format!("http://127.0.0.2:{}/health", allowed.port());
    let by_name = format!("ok.allowed.test:{}", allowed.port());
    let into_loopback = format!("denied.allowed.test:{}", denied.port());
    let outside = format!("http://127.0.0.1:{}/", denied.port());
    let sd = dir.path().join("sd.json");
    std::fs::write(
        &sd,
        serde_json::json!([{
            "targets": [&configured, &literal, &by_name, &into_loopback, &outside],
            "labels": {"__param_module": "web"}
        }])
        .to_string(),
    )
    .unwrap();
    let exporter = e.addr.to_string();
    let (_prom, prom) = prometheus(&format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n\
         - job_name: probe\n  metrics_path: /probe\n  honor_labels: true\n  \
           file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n  \
           relabel_configs:\n    \
           - {{source_labels: [__address__], target_label: __param_target}}\n    \
           - {{source_labels: [__param_target], target_label: instance}}\n    \
           - {{target_label: __address__, replacement: '{exporter}'}}\n",
        sd.display()
    ));
    let query = |q: &str| prometheus_query(prom, q);
    let value = |q: &str, instance: &str| -> Option<String> {
        query(q)
            .iter()
            .find(|s| s["metric"]["instance"] == instance)
            .map(|s| s["value"][1].as_str().unwrap().to_owned())
    };
    let start = Instant::now();
    while query("up{job=\"probe\"}").len() < 5 || query("probe_success").len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus did not scrape every target: {:?}",
            query("up")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(value("probe_success", &configured).as_deref(), Some("1"));
    assert_eq!(value("probe_success", &literal).as_deref(), Some("1"));
    assert_eq!(value("probe_success", &by_name).as_deref(), Some("1"));
    // A permitted name that resolves into loopback: a failed probe, never a connection.
    assert_eq!(value("probe_success", &into_loopback).as_deref(), Some("0"));
    assert_eq!(
        value(
            "probe_failure_reason{reason=\"address_denied\"}",
            &into_loopback
        )
        .as_deref(),
        Some("1")
    );
    // Not admitted at all: 404, so the job's `up` is 0 and no probe series exist.
    assert_eq!(value("up", &outside).as_deref(), Some("0"));
    assert_eq!(value("probe_success", &outside), None);
    // Every admitted probe got the group's settings: its group label is web.
    for s in query("probe_success") {
        assert_eq!(s["metric"]["group"], "web", "{s}");
    }
    assert!(allowed_hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_eq!(
        denied_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a denied target was connected to"
    );
    // The log says which rule would admit what was refused.
    let log = e.log.lock().unwrap().join("\n");
    assert!(
        log.contains("127.0.0.1/32 would admit it"),
        "no refusal logged:\n{log}"
    );
}

#[test]
fn debug_traces_a_probe_and_says_why_a_target_is_refused() {
    let nginx = Nginx::start(&[]);
    let configured = format!("http://127.0.0.1:{}/ok", nginx.port);
    let (e, _dir) = allowlisted_exporter(&configured);
    let get = |target: &str| {
        http(
            e.addr,
            "GET",
            &format!("/probe?target={}&module=web&debug=true", url_encode(target)),
            &[],
        )
    };
    let r = get(&configured);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain")
    );
    for want in [
        "a configured target",
        "Logs for the probe:",
        &format!("direct to 127.0.0.1:{}", nginx.port),
        &format!("connected to 127.0.0.1:{}", nginx.port),
        "send: GET /ok HTTP/1.1; Host: 127.0.0.1",
        "answer: HTTP/1.1 200 OK (Content-Length 3)",
        "verdict: success",
        "Metrics that would have been returned:",
        "probe_http_status_code{",
    ] {
        assert!(
            r.body.contains(want),
            "the trace lacks {want:?}:\n{}",
            r.body
        );
    }
    let r = get(&format!("denied.allowed.test:{}", nginx.port));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("admitted by the probe allowlist"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("refused: denied.allowed.test resolves only to denied addresses: 127.0.0.1 is a loopback"),
        "{}",
        r.body
    );
    assert!(r.body.contains("reason=\"address_denied\""), "{}", r.body);
    let r = get(&format!("http://127.0.0.3:{}/", nginx.port));
    assert_eq!(r.status, 404);
    assert!(r.body.starts_with("refused: "), "{}", r.body);
    assert!(r.body.contains("denied network 127.0.0.3/32"), "{}", r.body);
    // The status page links a trace of each target.
    e.scrape(None);
    let page = http(e.addr, "GET", "/", &[]).body;
    assert!(
        page.contains("&amp;debug=true"),
        "no trace link on the status page"
    );
}

#[test]
fn hostname_sets_the_host_header_and_the_tls_name_as_in_blackbox() {
    let pki = Pki::new("hostname CA");
    let (cert, key) = pki.leaf(&["a.test"], -1, 30);
    let nginx = Nginx::start(&[TlsServer {
        cert_pem: cert,
        key_pem: key,
        extra: String::new(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let url = format!("https://127.0.0.1:{}/ok", nginx.tls_ports[0]);
    let e = Exporter::start(
        &format!(
            "targets:\n  - {{url: '{url}', tls_config: {{ca_file: '{}'}}}}\n",
            ca.display()
        ),
        &[],
    );
    let bb = Blackbox::start(&format!(
        "  tls:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{}'}}\n",
        ca.display()
    ));
    for hostname in [None, Some("a.test")] {
        let mut path = format!("/probe?target={}", url_encode(&url));
        let mut extra = Vec::new();
        if let Some(h) = hostname {
            path.push_str(&format!("&hostname={h}"));
            extra.push(("hostname", h));
        }
        let ours = http(e.addr, "GET", &path, &[]).body;
        let theirs = bb.probe(&url, "tls", &extra);
        let want = if hostname.is_some() { 1.0 } else { 0.0 };
        assert_eq!(
            sample(&theirs, "probe_success", &[]),
            Some(want),
            "{theirs}"
        );
        assert_eq!(
            target_sample(&ours, "probe_success", &url),
            Some(want),
            "{ours}"
        );
        if hostname.is_none() {
            assert_eq!(
                reason(&ours, &url).as_deref(),
                Some("tls_hostname_mismatch")
            );
        }
    }
    assert_eq!(
        http(
            e.addr,
            "GET",
            &format!("/probe?target={}&hostname=a%0d%0ab", url_encode(&url)),
            &[]
        )
        .status,
        400
    );
}

#[test]
fn valid_http_versions_judges_the_status_line_as_blackbox_does() {
    let nginx = Nginx::start(&[]);
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let bb = Blackbox::start(
        "  only10:\n    prober: http\n    http:\n      valid_http_versions: [HTTP/1.0]\n\
         \x20 only11:\n    prober: http\n    http:\n      valid_http_versions: [HTTP/1.1]\n",
    );
    let e = Exporter::start(
        &format!(
            "groups:\n  only10: {{valid_http_versions: [HTTP/1.0]}}\n  only11: {{valid_http_versions: [HTTP/1.1]}}\n\
             targets:\n  - {{url: '{ok}', group: only10}}\n  - {{url: '{ok}', group: only11}}\n"
        ),
        &[],
    );
    for (module, want) in [("only10", 0.0), ("only11", 1.0)] {
        let theirs = bb.probe(&ok, module, &[]);
        let ours = http(
            e.addr,
            "GET",
            &format!("/probe?target={}&module={module}", url_encode(&ok)),
            &[],
        )
        .body;
        assert_eq!(
            sample(&theirs, "probe_success", &[]),
            Some(want),
            "{theirs}"
        );
        assert_eq!(
            target_sample(&ours, "probe_success", &ok),
            Some(want),
            "{ours}"
        );
        // The answer's version is reported either way.
        assert_eq!(target_sample(&ours, "probe_http_version", &ok), Some(1.1));
        if want == 0.0 {
            assert_eq!(
                reason(&ours, &ok).as_deref(),
                Some("http_version"),
                "{ours}"
            );
        }
    }
}
