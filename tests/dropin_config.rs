//! The keys and behaviours that make a blackbox_exporter http module work here unchanged,
//! checked against blackbox_exporter itself on the same nginx: a `Host` header names the TLS
//! server, `follow_redirects: true` follows as blackbox does; and `--config.check` lists every
//! error of a file at once.

mod common;

use std::process::Command;

use common::blackbox::Blackbox;
use common::*;

/// Our exporter's `/probe` answer for the target named `name`.
fn probe_ours(exporter: &Exporter, name: &str) -> String {
    let r = http(
        exporter.addr,
        "GET",
        &format!("/probe?target={}", url_encode(name)),
        &[],
    );
    assert_eq!(r.status, 200, "/probe?target={name}: {}", r.body);
    r.body
}

/// The value of `metric` (whatever its labels) in a probe's answer.
fn value(text: &str, metric: &str) -> Option<f64> {
    sample(text, metric, &[])
}

#[test]
fn a_host_header_names_the_tls_server_as_in_blackbox() {
    let pki = Pki::new("drop-in CA");
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
    let ours = Exporter::start(
        &format!(
            "defaults:\n  tls_config: {{ca_file: '{ca}'}}\ntargets:\n  \
             - {{url: '{url}', name: with-host, headers: {{Host: a.test}}}}\n  \
             - {{url: '{url}', name: without-host}}\n  \
             - {{url: '{url}', name: server-name-wins, headers: {{Host: a.test}}, \
             tls_config: {{server_name: b.test}}}}\n",
            ca = ca.display()
        ),
        &[],
    );
    let blackbox = Blackbox::start(&format!(
        "  with_host:\n    prober: http\n    http:\n      headers: {{Host: a.test}}\n      \
         tls_config: {{ca_file: '{ca}'}}\n  \
         without_host:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{ca}'}}\n",
        ca = ca.display()
    ));

    let ours_ok = probe_ours(&ours, "with-host");
    let theirs_ok = blackbox.probe(&url, "with_host", &[]);
    assert_eq!(value(&ours_ok, "probe_success"), Some(1.0), "{ours_ok}");
    assert_eq!(value(&theirs_ok, "probe_success"), Some(1.0), "{theirs_ok}");
    let expiry = value(&ours_ok, "probe_ssl_earliest_cert_expiry");
    assert!(expiry.is_some(), "{ours_ok}");
    assert_eq!(
        expiry,
        value(&theirs_ok, "probe_ssl_earliest_cert_expiry"),
        "ours:\n{ours_ok}\nblackbox:\n{theirs_ok}"
    );

    // Without the header the name verified is 127.0.0.1, which the certificate does not
    // cover: both fail.
    let ours_bad = probe_ours(&ours, "without-host");
    let theirs_bad = blackbox.probe(&url, "without_host", &[]);
    assert_eq!(value(&ours_bad, "probe_success"), Some(0.0), "{ours_bad}");
    assert_eq!(
        value(&theirs_bad, "probe_success"),
        Some(0.0),
        "{theirs_bad}"
    );
    // `server_name` wins over the header.
    let named = probe_ours(&ours, "server-name-wins");
    assert_eq!(value(&named, "probe_success"), Some(0.0), "{named}");
}

#[test]
fn follow_redirects_true_and_false_count_hops_as_blackbox_does() {
    // Two hops: /twice -> /moved -> /ok.
    let nginx = Nginx::start_with(&[], "        location = /twice { return 302 /moved; }\n");
    let url = format!("http://127.0.0.1:{}/twice", nginx.port);
    let ours = Exporter::start(
        &format!(
            "targets:\n  - {{url: '{url}', name: follows, follow_redirects: true}}\n  \
             - {{url: '{url}', name: stays, follow_redirects: false, valid_status_codes: []}}\n"
        ),
        &[],
    );
    let blackbox = Blackbox::start(
        "  follows:\n    prober: http\n    http:\n      follow_redirects: true\n  \
         stays:\n    prober: http\n    http:\n      follow_redirects: false\n      \
         valid_status_codes: []\n",
    );
    let ours_follows = probe_ours(&ours, "follows");
    let theirs_follows = blackbox.probe(&url, "follows", &[]);
    for text in [&ours_follows, &theirs_follows] {
        assert_eq!(value(text, "probe_http_redirects"), Some(2.0), "{text}");
        assert_eq!(value(text, "probe_http_status_code"), Some(200.0), "{text}");
        assert_eq!(value(text, "probe_success"), Some(1.0), "{text}");
    }
    let ours_stays = probe_ours(&ours, "stays");
    let theirs_stays = blackbox.probe(&url, "stays", &[]);
    for text in [&ours_stays, &theirs_stays] {
        assert_eq!(value(text, "probe_http_status_code"), Some(302.0), "{text}");
    }
    // Hops taken here; blackbox also counts the redirect it was told not to follow.
    assert_eq!(
        value(&ours_stays, "probe_http_redirects"),
        Some(0.0),
        "{ours_stays}"
    );
    assert_eq!(
        value(&theirs_stays, "probe_http_redirects"),
        Some(1.0),
        "{theirs_stays}"
    );
    // `valid_status_codes: []` is each exporter's default: 2xx and 3xx here, 2xx there.
    assert_eq!(
        value(&ours_stays, "probe_success"),
        Some(1.0),
        "{ours_stays}"
    );
    assert_eq!(
        value(&theirs_stays, "probe_success"),
        Some(0.0),
        "{theirs_stays}"
    );
}

#[test]
fn config_check_lists_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yaml");
    std::fs::write(
        &file,
        "defaults:\n\
         \x20 timeout: 5 parsecs\n\
         targets:\n\
         \x20 - http://ok.test/\n\
         \x20 - 'ftp://bad.test/'\n\
         \x20 - url: http://a.test/\n\
         \x20   follow_redirects: 99\n\
         \x20 - {url: 'http://b.test/', nope: 1}\n\
         \x20 - url: https://c.test/\n\
         \x20   valid_http_versions: [HTTP/2.0]\n\
         \x20 - {url: 'http://d.test/', timeout: 0s}\n\
         \x20 - http://ok2.test/\n",
    )
    .unwrap();
    let out = Command::new(exporter_bin())
        .arg("--config.check")
        .arg("--config.file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    let want = [
        format!("{f}:2:12: defaults: timeout: invalid duration"),
        format!("{f}:5:6: targets[1]: URL \"ftp://bad.test/\" must start with"),
        format!("{f}:7:23: targets[2].follow_redirects: follow_redirects must be 0 to 20"),
        format!("{f}:8:29: targets[3]: unknown field `nope`"),
        format!(
            "{f}:10:27: targets[4].valid_http_versions: valid_http_versions: \"HTTP/2.0\" cannot be probed: the probe speaks HTTP/1.x only"
        ),
        format!("{f}:11:38: targets[5]: timeout: invalid duration \"0s\""),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), want.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&want) {
        assert!(line.starts_with(want.as_str()), "{line}\nwanted {want}");
    }
}

#[test]
fn every_error_is_listed_once_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(
        &path,
        "defaults:\n  bearer_token_file: missing-token\n  headers: {X-Key: {file: missing-key}}\n\
         groups:\n  web:\n    tls_config: {ca_file: missing-ca.pem}\n\
         targets:\n  - http://a.test/\n  - http://b.test/\n\
         \x20 - {url: 'https://c.test/', group: web}\n  - {url: 'https://d.test/', group: web}\n\
         \x20 - url: http://e.test/\n    body_file: missing-body\n    proxy_url: http://p.test:3128\n    \
         proxy_connect_header: {X-P: {file: missing-proxy-header}}\n",
    )
    .unwrap();
    let out = Command::new(exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("t.yaml:")).collect();
    let at = |what: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains(what))
            .map(|l| {
                l.split(": ")
                    .next()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // Each once, at the line that names the file, whatever inherits it.
    assert_eq!(at("missing-token"), ["t.yaml:2:3"], "{text}");
    assert_eq!(at("missing-key"), ["t.yaml:3:21"], "{text}");
    assert_eq!(at("missing-ca.pem"), ["t.yaml:6:18"], "{text}");
    // Two files missing in one target's own settings: two errors.
    assert_eq!(at("missing-body"), ["t.yaml:13:5"], "{text}");
    assert_eq!(at("missing-proxy-header").len(), 1, "{text}");
    assert_eq!(lines.len(), 5, "{text}");
}
