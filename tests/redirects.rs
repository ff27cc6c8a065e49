//! Redirects, methods and bodies against real servers on loopback: nginx redirect chains
//! (relative, absolute, http to https and back, to a 404, a loop, over the hop limit), and our
//! own recording server for what each request of a chain carries.

mod common;

use common::recorder::recording_server;
use common::{Exporter, Nginx, Pki, TlsServer, reason, target_sample};

/// Redirects in every nginx server (plain and TLS), Locations left relative when relative.
const REDIRECTS: &str = r#"
        absolute_redirect off;
        location = /r/rel { return 302 /ok; }
        location = /r/dir/up { return 301 ../../ok; }
        location = /r/abs { return 301 http://127.0.0.1:{port}/ok; }
        location = /r/tohttps { return 301 https://127.0.0.1:{tls0}/ok; }
        location = /r/tohttp { return 308 http://127.0.0.1:{port}/ok; }
        location = /r/to404 { return 302 /missing; }
        location = /r/loop1 { return 302 /r/loop2; }
        location = /r/loop2 { return 302 /r/loop1; }
        location = /r/c3 { return 302 /r/c2; }
        location = /r/c2 { return 302 /r/c1; }
        location = /r/c1 { return 307 /ok; }
"#;

/// The value of `metric` for the target with URL `url` and name `name`.
fn named(text: &str, metric: &str, url: &str, name: &str) -> Option<f64> {
    common::sample(text, metric, &[("target", url), ("name", name)])
}

#[test]
fn redirect_chains_are_followed_up_to_their_limit() {
    let pki = Pki::new("redirects CA");
    let (cert_pem, key_pem) = pki.leaf(&["127.0.0.1"], -1, 30);
    let nginx = Nginx::start_with(
        &[TlsServer {
            cert_pem,
            key_pem,
            extra: String::new(),
        }],
        REDIRECTS,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let (p, t) = (nginx.port, nginx.tls_ports[0]);
    let http = |path: &str| format!("http://127.0.0.1:{p}{path}");
    let https = |path: &str| format!("https://127.0.0.1:{t}{path}");
    let config = format!(
        "defaults:\n  follow_redirects: 5\n  tls_config: {{ca_file: ca.pem}}\n  valid_status_codes: [2xx]\n\
         targets:\n\
         \x20 - {rel}\n  - {up}\n  - {abs}\n  - {tohttps}\n  - {tohttp}\n  - {to404}\n  - {loop1}\n\
         \x20 - {{url: '{c3}', name: two, follow_redirects: 2}}\n\
         \x20 - {{url: '{c3}', name: three, follow_redirects: 3}}\n\
         \x20 - {{url: '{moved}', name: off, follow_redirects: 0, valid_status_codes: [301]}}\n\
         \x20 - {{url: '{rel}', name: need-tls, fail_if_not_ssl: true}}\n\
         \x20 - {{url: '{tohttps}', name: need-tls, fail_if_not_ssl: true}}\n\
         \x20 - {{url: '{ok_tls}', name: no-tls, fail_if_ssl: true}}\n\
         \x20 - {{url: '{ok}', name: no-tls, fail_if_ssl: true}}\n",
        rel = http("/r/rel"),
        up = http("/r/dir/up"),
        abs = http("/r/abs"),
        tohttps = http("/r/tohttps"),
        tohttp = https("/r/tohttp"),
        to404 = http("/r/to404"),
        loop1 = http("/r/loop1"),
        c3 = http("/r/c3"),
        moved = http("/moved"),
        ok_tls = https("/ok"),
        ok = http("/ok"),
    );
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, &config).unwrap();
    let exporter = Exporter::start_file(&path, &[]);
    let text = exporter.scrape(Some(10.0));

    // (URL, final code, redirects, ssl, failure reason)
    let plain: &[(String, f64, f64, f64, Option<&str>)] = &[
        (http("/r/rel"), 200.0, 1.0, 0.0, None),
        (http("/r/dir/up"), 200.0, 1.0, 0.0, None),
        (http("/r/abs"), 200.0, 1.0, 0.0, None),
        (http("/r/tohttps"), 200.0, 1.0, 1.0, None),
        (https("/r/tohttp"), 200.0, 1.0, 0.0, None),
        (http("/r/to404"), 404.0, 1.0, 0.0, Some("status_code")),
        (http("/r/loop1"), 302.0, 1.0, 0.0, Some("redirect_limit")),
    ];
    for (url, code, hops, ssl, why) in plain {
        let m = |metric| target_sample(&text, metric, url);
        assert_eq!(m("probe_http_status_code"), Some(*code), "{url}\n{text}");
        assert_eq!(m("probe_http_redirects"), Some(*hops), "{url}");
        assert_eq!(m("probe_http_ssl"), Some(*ssl), "{url}");
        // The unnamed target's own reason, not that of a named one with the same URL.
        let own = reason(&text, url).filter(|r| {
            text.contains(&format!(
                "probe_failure_reason{{target=\"{url}\",reason=\"{r}\"}}"
            ))
        });
        assert_eq!(own.as_deref(), *why, "{url}");
        assert_eq!(m("probe_success"), Some(f64::from(u8::from(why.is_none()))));
    }
    // The hop to https did its handshake against the target's CA and recorded the expiry.
    let tohttps = http("/r/tohttps");
    assert!(target_sample(&text, "probe_ssl_earliest_cert_expiry", &tohttps).unwrap() > 0.0);
    let tls_phase = common::sample(
        &text,
        "probe_http_duration_seconds",
        &[("target", &tohttps), ("phase", "tls")],
    );
    assert!(tls_phase.unwrap() > 0.0, "{text}");

    // The final request of https to http was plain: no TLS facts of the first hop remain.
    let tohttp = https("/r/tohttp");
    assert_eq!(
        target_sample(&text, "probe_ssl_earliest_cert_expiry", &tohttp),
        None
    );
    assert!(!text.contains(&format!("probe_tls_version_info{{target=\"{tohttp}\"")));

    let c3 = http("/r/c3");
    assert_eq!(named(&text, "probe_http_redirects", &c3, "two"), Some(2.0));
    assert_eq!(named(&text, "probe_success", &c3, "two"), Some(0.0));
    assert!(text.contains(&format!(
        "probe_failure_reason{{target=\"{c3}\",name=\"two\",reason=\"redirect_limit\"}} 1"
    )));
    assert_eq!(
        named(&text, "probe_http_redirects", &c3, "three"),
        Some(3.0)
    );
    assert_eq!(
        named(&text, "probe_http_status_code", &c3, "three"),
        Some(200.0)
    );
    // Off: the 3xx is the answer, as before redirects could be followed.
    let moved = http("/moved");
    assert_eq!(
        named(&text, "probe_http_status_code", &moved, "off"),
        Some(301.0)
    );
    assert_eq!(
        named(&text, "probe_http_redirects", &moved, "off"),
        Some(0.0)
    );
    assert_eq!(named(&text, "probe_success", &moved, "off"), Some(1.0));

    let fails = |url: &str, name: &str, why: &str| {
        text.contains(&format!(
            "probe_failure_reason{{target=\"{url}\",name=\"{name}\",reason=\"{why}\"}} 1"
        ))
    };
    assert!(
        fails(&http("/r/rel"), "need-tls", "fail_if_not_ssl"),
        "{text}"
    );
    assert_eq!(
        named(&text, "probe_success", &tohttps, "need-tls"),
        Some(1.0)
    );
    assert!(fails(&https("/ok"), "no-tls", "fail_if_ssl"), "{text}");
    assert_eq!(
        named(&text, "probe_success", &http("/ok"), "no-tls"),
        Some(1.0)
    );

    // `check` follows the same chains and says why in JSON.
    let out = std::process::Command::new(common::exporter_bin())
        .args(["check", "--output", "json", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("/r/loop1"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["reason"], "redirect_limit");
    assert!(v["detail"].as_str().unwrap().contains("loop"), "{line}");
}

#[test]
fn methods_bodies_and_credentials_along_a_chain() {
    let (addr, seen) = recording_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("body.json"),
        "{\"query\": \"{ health }\"}\n",
    )
    .unwrap();
    let base = format!("http://{addr}");
    let config = format!(
        "defaults:\n  follow_redirects: 3\n  valid_status_codes: [2xx]\n\
         targets:\n\
         \x20 - {{url: '{base}/graphql', method: POST, body_file: body.json, headers: {{Content-Type: application/json}}}}\n\
         \x20 - {{url: '{base}/post307', method: PUT, body: 'kept'}}\n\
         \x20 - {{url: '{base}/post303', method: POST, body: 'dropped'}}\n\
         \x20 - {{url: '{base}/cross', bearer_token: same-host-only, headers: {{Host: configured.example}}}}\n\
         \x20 - {{url: '{base}/noloc', valid_status_codes: [302]}}\n\
         \x20 - {{url: '{base}/badloc', valid_status_codes: [302]}}\n\
         \x20 - {{url: '{base}/options', method: OPTIONS}}\n"
    );
    std::fs::write(dir.path().join("targets.yaml"), &config).unwrap();
    let exporter = Exporter::start_file(&dir.path().join("targets.yaml"), &[]);
    let text = exporter.scrape(Some(10.0));
    for path in [
        "/graphql", "/post307", "/post303", "/cross", "/noloc", "/badloc", "/options",
    ] {
        let url = format!("{base}{path}");
        assert_eq!(
            target_sample(&text, "probe_success", &url),
            Some(1.0),
            "{url}\n{text}"
        );
    }
    let redirects =
        |path: &str| target_sample(&text, "probe_http_redirects", &format!("{base}{path}"));
    assert_eq!(redirects("/post307"), Some(1.0));
    assert_eq!(redirects("/noloc"), Some(0.0));
    assert_eq!(redirects("/badloc"), Some(0.0));

    let seen = seen.lock().unwrap().clone();
    let find = |start: &str| {
        seen.iter()
            .filter(|s| s.head.starts_with(start))
            .cloned()
            .collect::<Vec<_>>()
    };
    // The body from the file, announced with its length, and the configured header.
    let graphql = &find("POST /graphql ")[0];
    assert_eq!(graphql.body, b"{\"query\": \"{ health }\"}\n");
    assert!(
        graphql.head.contains("Content-Length: 24\r\n"),
        "{}",
        graphql.head
    );
    assert!(graphql.head.contains("Content-Type: application/json\r\n"));
    // 307 keeps the method and the body; 303 turns them into a GET without a body.
    assert_eq!(find("PUT /post307 ")[0].body, b"kept");
    assert_eq!(find("PUT /echo ").len(), 1, "{seen:#?}");
    assert_eq!(find("PUT /echo ")[0].body, b"kept");
    assert_eq!(find("POST /post303 ")[0].body, b"dropped");
    let after303: Vec<_> = seen
        .iter()
        .filter(|s| s.head.starts_with("GET /echo ") && !s.head.contains("Authorization"))
        .collect();
    assert!(!after303.is_empty(), "{seen:#?}");
    assert!(
        after303
            .iter()
            .all(|s| s.body.is_empty() && !s.head.contains("Content-Length"))
    );
    // The token and the configured Host go to the target's own host only.
    let cross = &find("GET /cross ")[0];
    assert!(
        cross
            .head
            .contains("Authorization: Bearer same-host-only\r\n"),
        "{}",
        cross.head
    );
    assert!(cross.head.contains("Host: configured.example\r\n"));
    let moved: Vec<_> = seen
        .iter()
        .filter(|s| s.head.contains(&format!("Host: localhost:{}", addr.port())))
        .collect();
    assert_eq!(moved.len(), 1, "{seen:#?}");
    assert!(
        !moved[0].head.contains("Authorization"),
        "{}",
        moved[0].head
    );
    assert!(!find("OPTIONS /options ")[0].head.contains("Content-Length"));
}

/// `check --output json` over the targets file `path`: each line by its target URL.
fn check_json(path: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(common::exporter_bin())
        .args(["check", "--output", "json", "--config.file"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The line of `lines` for `url`.
fn line_of<'a>(lines: &'a [serde_json::Value], url: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|v| v["target"] == url)
        .unwrap_or_else(|| panic!("no line for {url}: {lines:#?}"))
}

#[test]
fn a_failed_hop_reports_its_own_facts_not_the_previous_hops() {
    let pki = Pki::new("hops CA");
    let (cert_pem, key_pem) = pki.leaf(&["127.0.0.1"], -1, 30);
    let dead = common::closed_port();
    let nginx = Nginx::start_with(
        &[TlsServer {
            cert_pem,
            key_pem,
            extra: String::new(),
        }],
        &format!(
            "        location = /r/todead {{ return 302 http://127.0.0.1:{dead}/; }}\n\
             \x20       location = /r/tls-todead {{ return 302 https://127.0.0.1:{{tls0}}/r/todead; }}\n"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let (p, t) = (nginx.port, nginx.tls_ports[0]);
    // https 302 -> http to a closed port; http 302 -> https 302 -> http to a closed port.
    let two = format!("https://127.0.0.1:{t}/r/todead");
    let three = format!("http://127.0.0.1:{p}/r/tls-todead");
    let config = format!(
        "defaults:\n  follow_redirects: 5\n  tls_config: {{ca_file: ca.pem}}\n\
         targets:\n  - {two}\n  - {three}\n"
    );
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, &config).unwrap();
    let exporter = Exporter::start_file(&path, &[]);
    let text = exporter.scrape(Some(10.0));
    for (url, hops) in [(&two, 1.0), (&three, 2.0)] {
        let m = |metric| target_sample(&text, metric, url);
        // What the failed hop established: nothing but its phases.
        assert_eq!(
            reason(&text, url).as_deref(),
            Some("connect_refused"),
            "{text}"
        );
        assert_eq!(m("probe_http_status_code"), Some(0.0), "{url}\n{text}");
        assert_eq!(m("probe_http_ssl"), Some(0.0), "{url}\n{text}");
        assert_eq!(m("probe_http_redirects"), Some(hops), "{url}");
        assert_eq!(m("probe_ssl_earliest_cert_expiry"), None, "{url}\n{text}");
        assert_eq!(m("probe_ssl_leaf_cert_expiry"), None, "{url}\n{text}");
        assert_eq!(
            m("probe_ssl_last_chain_expiry_timestamp_seconds"),
            None,
            "{url}\n{text}"
        );
        assert!(
            !text.contains(&format!("probe_ssl_last_chain_info{{target=\"{url}\"")),
            "{text}"
        );
        assert_eq!(m("probe_http_version"), None, "{url}\n{text}");
        // The failed hop's own resolution: the family of the address it tried (as
        // blackbox_exporter reports it once resolved), not a fact of an earlier hop.
        assert_eq!(m("probe_ip_protocol"), Some(4.0), "{url}\n{text}");
        assert!(
            !text.contains(&format!("probe_tls_version_info{{target=\"{url}\"")),
            "{text}"
        );
        // The phases still add up over the hops: the handshake of an earlier hop counts.
        let tls = common::sample(
            &text,
            "probe_http_duration_seconds",
            &[("target", url), ("phase", "tls")],
        );
        assert!(tls.unwrap() > 0.0, "{url}\n{text}");
    }
    let lines = check_json(&path);
    for (url, hop) in [(&two, 2), (&three, 3)] {
        let v = line_of(&lines, url);
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with(&format!("redirect hop {hop}: ")),
            "{url}: {v}"
        );
        assert_eq!(v["status_code"], 0, "{v}");
        assert_eq!(v["status_line"], serde_json::Value::Null, "{v}");
        assert_eq!(v["ssl"], false, "{v}");
        assert_eq!(v["tls_version"], serde_json::Value::Null, "{v}");
        assert_eq!(v["cert_leaf_expiry"], serde_json::Value::Null, "{v}");
    }
}

#[test]
fn a_redirect_whose_location_cannot_be_had_is_judged_as_an_answer() {
    let peer = common::peer::spawn_thread("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let url = |path: &str| format!("http://{peer}{path}");
    let config = format!(
        "defaults:\n  follow_redirects: 3\n  timeout: 1s\n  valid_status_codes: [200, 302]\n\
         targets:\n\
         \x20 - {}\n  - {}\n  - {}\n  - {}\n  - {}\n  - {}\n\
         \x20 - {{url: '{}', name: strict, valid_status_codes: [200]}}\n",
        url("/r302-cookies"),
        url("/r302-cookies-after"),
        url("/r302-long-location"),
        url("/r302-stall"),
        url("/r302-close"),
        url("/r302-bad-location"),
        url("/r302-close"),
    );
    let path = dir.path().join("targets.yaml");
    std::fs::write(&path, &config).unwrap();
    let lines = check_json(&path);
    // (path, code, redirects, the detail says)
    let cases = [
        (
            "/r302-cookies",
            302,
            0,
            "302 not followed: its head is longer than 16384 bytes",
        ),
        ("/r302-cookies-after", 200, 1, ""),
        (
            "/r302-long-location",
            302,
            0,
            "302 not followed: its Location is longer than 4096 bytes",
        ),
        (
            "/r302-stall",
            302,
            0,
            "302 not followed: no Location within",
        ),
        (
            "/r302-close",
            302,
            0,
            "302 not followed: the connection closed before its Location",
        ),
        (
            "/r302-bad-location",
            302,
            0,
            "302 not followed: its Location \"ftp://x/\\u{202e}evil\" is not an http(s) URL",
        ),
    ];
    for (p, code, redirects, says) in cases {
        let v = lines
            .iter()
            .find(|v| v["target"] == url(p) && v["success"] == true)
            .unwrap_or_else(|| panic!("{p} did not succeed: {lines:#?}"));
        assert_eq!(v["status_code"], code, "{v}");
        assert_eq!(v["redirects"], redirects, "{v}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(says), "{p}: {v}");
    }
    // Judged against valid_status_codes like any answer, the detail saying why.
    let v = lines
        .iter()
        .find(|v| v["target"] == url("/r302-close") && v["success"] == false)
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(v["reason"], "status_code", "{v}");
    assert_eq!(v["status_code"], 302, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("closed before its Location"),
        "{v}"
    );
    // The table says it too.
    let table = std::process::Command::new(common::exporter_bin())
        .args(["check", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .contains("HTTP/1.1 302 Found (302 not followed: its head is longer than 16384 bytes)"),
        "{table}"
    );
    // The stalled head took the probe's whole timeout, and no more.
    let stall = line_of(&lines, &url("/r302-stall"));
    let took = stall["duration_seconds"].as_f64().unwrap();
    assert!((0.9..2.0).contains(&took), "{stall}");
}
