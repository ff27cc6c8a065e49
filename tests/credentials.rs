//! Credentials: `basic_auth` (password inline or from a file), `bearer_token(_file)`, header
//! values from files and a proxy URL with a password reach the wire, are read again on reload,
//! and never appear in any output: metrics, `/config`, the status pages, the log at debug
//! level, `check` (table and JSON) and `--config.check`.

mod common;

use std::process::Command;

use common::recorder::recording_server;
use common::{Exporter, closed_port, exporter_bin, http, target_sample, url_encode};

/// Every secret of the config below, and the encodings in which it is sent.
const SECRETS: &[&str] = &[
    "pw-from-file-7f3a",
    "inline-pw-51c2",
    "token-from-file-9d0e",
    "inline-token-44ab",
    "key-from-file-2b8c",
    "proxy-pw-6e1f",
    "connect-secret-0c7d",
];

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Fails naming the output and the secret found in it.
fn assert_clean(what: &str, text: &str) {
    let mut forms: Vec<String> = SECRETS.iter().map(|s| (*s).to_owned()).collect();
    forms.push(b64("probe:pw-from-file-7f3a"));
    forms.push(b64("probe:inline-pw-51c2"));
    forms.push(b64("puser:proxy-pw-6e1f"));
    for f in &forms {
        assert!(
            !text.contains(f.as_str()),
            "{what} shows the secret {f}:\n{text}"
        );
    }
}

#[test]
fn secrets_are_sent_reread_on_reload_and_never_shown() {
    let (addr, seen) = recording_server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Written by `echo`: the trailing newline is not part of the secret.
    std::fs::write(d.join("pw.txt"), "pw-from-file-7f3a\n").unwrap();
    std::fs::write(d.join("token.txt"), "token-from-file-9d0e\n").unwrap();
    std::fs::write(d.join("key.txt"), "key-from-file-2b8c").unwrap();
    let base = format!("http://{addr}");
    let proxy = format!("http://puser:proxy-pw-6e1f@127.0.0.1:{}", closed_port());
    let config = format!(
        "targets:\n\
         \x20 - {{url: '{base}/basic-file', basic_auth: {{username: probe, password_file: pw.txt}}}}\n\
         \x20 - {{url: '{base}/basic-inline', basic_auth: {{username: probe, password: inline-pw-51c2}}}}\n\
         \x20 - {{url: '{base}/bearer-file', bearer_token_file: token.txt}}\n\
         \x20 - {{url: '{base}/bearer-inline', bearer_token: inline-token-44ab}}\n\
         \x20 - {{url: '{base}/header-file', headers: {{X-Api-Key: {{file: key.txt}}, X-Plain: shown}}}}\n\
         \x20 - {{url: 'http://127.0.0.1:9/via-proxy', proxy_url: '{proxy}'}}\n\
         \x20 - {{url: 'https://127.0.0.1:9/', proxy_url: '{proxy}', proxy_connect_header: {{X-Connect: [connect-secret-0c7d]}}}}\n"
    );
    let path = d.join("targets.yaml");
    std::fs::write(&path, &config).unwrap();
    let exporter = Exporter::start_file(&path, &["--log.level", "debug"]);
    let metrics = exporter.scrape(Some(10.0));
    for p in [
        "/basic-file",
        "/basic-inline",
        "/bearer-file",
        "/bearer-inline",
        "/header-file",
    ] {
        let url = format!("{base}{p}");
        assert_eq!(
            target_sample(&metrics, "probe_success", &url),
            Some(1.0),
            "{url}"
        );
    }
    // The proxy's port is closed: the probe says so, naming the proxy without its password.
    assert_eq!(
        common::reason(&metrics, "http://127.0.0.1:9/via-proxy").as_deref(),
        Some("proxy_connect_refused")
    );

    // What went on the wire.
    let sent = |path: &str| {
        let seen = seen.lock().unwrap();
        seen.iter()
            .rev()
            .find(|s| s.head.starts_with(&format!("GET {path} ")))
            .map(|s| s.head.clone())
            .unwrap_or_else(|| panic!("no request for {path}"))
    };
    let basic = |pw: &str| format!("Authorization: Basic {}\r\n", b64(&format!("probe:{pw}")));
    assert!(sent("/basic-file").contains(&basic("pw-from-file-7f3a")));
    assert!(sent("/basic-inline").contains(&basic("inline-pw-51c2")));
    assert!(sent("/bearer-file").contains("Authorization: Bearer token-from-file-9d0e\r\n"));
    assert!(sent("/bearer-inline").contains("Authorization: Bearer inline-token-44ab\r\n"));
    assert!(sent("/header-file").contains("X-Api-Key: key-from-file-2b8c\r\n"));

    // Every output, looked at while the secrets are in use.
    let mut outputs = vec![("metrics", metrics)];
    for (what, path) in [
        ("/config", "/config".to_owned()),
        ("status page", "/".to_owned()),
        ("status page, failed only", "/?state=down".to_owned()),
        (
            "target page",
            format!("/target?url={}", url_encode(&format!("{base}/basic-file"))),
        ),
        (
            "proxied target page",
            format!("/target?url={}", url_encode("http://127.0.0.1:9/via-proxy")),
        ),
    ] {
        let r = http(exporter.addr, "GET", &path, &[]);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        outputs.push((what, r.body));
    }
    let config_page = &outputs[1].1;
    assert!(
        config_page.contains("X-Api-Key") && config_page.contains("Authorization"),
        "{config_page}"
    );
    // The proxy's user name is hidden with its password.
    assert!(
        config_page.contains("\"http://<secret>@127.0.0.1:") && !config_page.contains("puser"),
        "{config_page}"
    );
    let proxied = &outputs[5].1;
    assert!(proxied.contains("proxy_connect_refused"), "{proxied}");
    for args in [
        vec!["check", "--output", "json", "--config.file"],
        vec!["check", "--config.file"],
        vec!["--config.check", "--config.file"],
    ] {
        let out = Command::new(exporter_bin())
            .args(&args)
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("basic-file") || text.contains("OK, 7 targets"),
            "{args:?}: {text}"
        );
        outputs.push(("check", text));
    }
    for (what, text) in &outputs {
        assert_clean(what, text);
    }

    // A new password file is read on reload; a reload that fails (a file gone) keeps the
    // running config and names the file, not its contents.
    std::fs::write(d.join("pw.txt"), "second-pw-8a8a\n").unwrap();
    exporter.proc.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(500));
    exporter.scrape(Some(10.0));
    assert!(sent("/basic-file").contains(&basic("second-pw-8a8a")));
    std::fs::remove_file(d.join("token.txt")).unwrap();
    exporter.proc.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = exporter.scrape(Some(10.0));
    let url = format!("{base}/bearer-file");
    assert_eq!(target_sample(&after, "probe_success", &url), Some(1.0));
    assert!(sent("/bearer-file").contains("Bearer token-from-file-9d0e"));
    let log = exporter.log.lock().unwrap().join("\n");
    assert!(
        log.contains("token.txt"),
        "the failed reload names the file:\n{log}"
    );
    assert_clean("log", &log);
    assert!(!log.contains("second-pw-8a8a"), "{log}");
}

#[test]
fn credential_settings_that_contradict_each_other_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "tok\n").unwrap();
    std::fs::write(dir.path().join("ctl.txt"), "a\u{7}b").unwrap();
    for (yaml, want) in [
        (
            "{url: 'http://a/', basic_auth: {username: u, password: p}, bearer_token: t}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', bearer_token: t, bearer_token_file: t.txt}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', basic_auth: {username: u, password: hunter2, password_file: t.txt}}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', bearer_token_file: missing.txt}",
            "missing.txt",
        ),
        (
            "{url: 'http://a/', bearer_token_file: ctl.txt}",
            "control characters",
        ),
        (
            "{url: 'http://a/', bearer_token: t, headers: {Authorization: x}}",
            "Authorization is set",
        ),
        (
            "{url: 'http://a/', body: x, body_file: t.txt}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', headers: {Content-Length: '3'}}",
            "set from body",
        ),
        ("{url: 'http://a/', method: 'G T'}", "method"),
        (
            "{url: 'http://a/', follow_redirects: 21}",
            "follow_redirects",
        ),
        (
            "{url: 'http://a/', fail_if_ssl: true, fail_if_not_ssl: true}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', proxy_url: 'https://p:1'}",
            "only http://",
        ),
        (
            "{url: 'http://a/', proxy_url: 'http://u:hunter2@p:1/x'}",
            "<secret>",
        ),
        (
            "{url: 'http://a/', no_proxy: [a.example]}",
            "no_proxy needs proxy_url",
        ),
        (
            "{url: 'http://a/', proxy_url: 'http://p:1', proxy_from_environment: true}",
            "cannot both",
        ),
        (
            "{url: 'http://a/', tls_config: {insecure_skip_verify: true}}",
            "follows no redirects",
        ),
    ] {
        let path = dir.path().join("targets.yaml");
        std::fs::write(&path, format!("targets:\n  - {yaml}\n")).unwrap();
        let out = Command::new(exporter_bin())
            .args(["--config.check", "--config.file"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml} was accepted");
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(err.contains("targets.yaml:2:"), "{yaml}: no line in {err}");
        assert!(!err.contains("hunter2"), "{yaml}: {err}");
    }
}

/// Secrets planted below, each with a prefix of its own: no output may hold any secret, nor
/// its first four characters, nor the base64 form it is sent in.
const PLANTED: &[&str] = &[
    // In the valid config, in use.
    "Bx4q-basic-inline",
    "Fk2w-basic-file",
    "Tn6r-bearer-inline",
    "Tf3m-bearer-file",
    "Hv5s-header-plain",
    "Hf8d-header-file",
    "Pu7k-proxyuser",
    "Pp9z-proxypass",
    "Cq2j-connect",
    // In the invalid configs, which must fail without quoting them.
    "Uw3e-urluser",
    "Ux5y-urlpass",
    "Uy7z-urlpass-spaced",
    "Ua6b-urlpass-scheme",
    "Bs1a-basic-string",
    "Hs4b-header-string",
    "Cs6c-connect-string",
    "Pm8d-proxy-malformed",
    "Pf2e-proxy-ftp",
    "Pn3v-proxy-noport",
    "Bc9f-token-control",
    "Fc5g-file-control",
    "Hc3h-header-control",
    "Hm2k-header-mapkey",
    "Cf4n-connect-wrongtype",
];

/// Fails naming the output and the planted secret (or its prefix, or its base64 form) found.
fn assert_none_planted(what: &str, text: &str) {
    for s in PLANTED {
        assert!(
            !text.contains(&s[..4]),
            "{what} shows {s} (or its start):\n{text}"
        );
    }
    for (user, pw) in [
        ("probe", "Bx4q-basic-inline"),
        ("probe", "Fk2w-basic-file"),
        ("Pu7k-proxyuser", "Pp9z-proxypass"),
    ] {
        let sent = b64(&format!("{user}:{pw}"));
        assert!(!text.contains(&sent), "{what} shows {sent}:\n{text}");
    }
}

#[test]
fn no_secret_nor_its_start_is_shown_by_any_output_of_a_good_or_a_bad_config() {
    let (addr, seen) = recording_server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw.txt"), "Fk2w-basic-file\n").unwrap();
    std::fs::write(d.join("token.txt"), "Tf3m-bearer-file\n").unwrap();
    std::fs::write(d.join("key.txt"), "Hf8d-header-file").unwrap();
    std::fs::write(d.join("ctl.txt"), "Fc5g-file-control\u{7}\n").unwrap();
    let base = format!("http://{addr}");
    let proxy = format!(
        "http://Pu7k-proxyuser:Pp9z-proxypass@127.0.0.1:{}",
        closed_port()
    );
    let good = format!(
        "targets:\n\
         \x20 - {{url: '{base}/a', basic_auth: {{username: probe, password: Bx4q-basic-inline}}}}\n\
         \x20 - {{url: '{base}/b', basic_auth: {{username: probe, password_file: pw.txt}}}}\n\
         \x20 - {{url: '{base}/c', bearer_token: Tn6r-bearer-inline}}\n\
         \x20 - {{url: '{base}/d', bearer_token_file: token.txt}}\n\
         \x20 - {{url: '{base}/e', headers: {{X-Plain-Key: Hv5s-header-plain, X-File-Key: {{file: key.txt}}}}}}\n\
         \x20 - {{url: 'http://127.0.0.1:9/via', proxy_url: '{proxy}'}}\n\
         \x20 - {{url: 'https://127.0.0.1:9/', proxy_url: '{proxy}', proxy_connect_header: {{X-Connect: [Cq2j-connect]}}}}\n"
    );
    let bad: &[&str] = &[
        "{url: 'http://Uw3e-urluser:Ux5y-urlpass@a/'}",
        "'http://Uw3e-urluser:Uy7z-urlpass-spaced@a b/'",
        "'Uw3e-urluser:Ua6b-urlpass-scheme@a/'",
        "{url: 'http://a/', basic_auth: 'probe:Bs1a-basic-string'}",
        "{url: 'http://a/', headers: 'Authorization: Bearer Hs4b-header-string'}",
        "{url: 'http://a/', proxy_url: 'http://p:1', proxy_connect_header: 'X: Cs6c-connect-string'}",
        "{url: 'http://a/', proxy_url: 'http://Pu7k-proxyuser:12/Pm8d-proxy-malformed@p:1'}",
        "{url: 'http://a/', proxy_url: 'ftp://Pu7k-proxyuser:Pf2e-proxy-ftp@p:1'}",
        "{url: 'http://a/', proxy_url: 'http://Pu7k-proxyuser:Pn3v-proxy-noport@p:99999'}",
        "{url: 'http://a/', bearer_token: \"Bc9f-token-control\\a\"}",
        "{url: 'http://a/', bearer_token_file: ctl.txt}",
        "{url: 'http://a/', headers: {X-Key: \"Hc3h-header-control\\a\"}}",
        "{url: 'http://a/', headers: {X-Key: {Hm2k-header-mapkey: 1}}}",
        "{url: 'http://a/', proxy_url: 'http://p:1', proxy_connect_header: {X: {file: a, Cf4n-connect-wrongtype: 1}}}",
    ];
    let path = d.join("targets.yaml");
    std::fs::write(&path, &good).unwrap();
    let exporter = Exporter::start_file(&path, &["--log.level", "debug", "--web.enable-lifecycle"]);
    let metrics = exporter.scrape(Some(10.0));
    for p in ["/a", "/b", "/c", "/d", "/e"] {
        let url = format!("{base}{p}");
        assert_eq!(
            target_sample(&metrics, "probe_success", &url),
            Some(1.0),
            "{url}"
        );
    }
    // The secrets are in use: they went on the wire.
    {
        let seen = seen.lock().unwrap();
        let all: String = seen.iter().map(|s| s.head.as_str()).collect();
        for s in [
            "Hv5s-header-plain",
            "Hf8d-header-file",
            "Tn6r-bearer-inline",
        ] {
            assert!(all.contains(s), "{s} not sent: {all}");
        }
    }
    let mut outputs = vec![("metrics".to_owned(), metrics)];
    for page in [
        "/config".to_owned(),
        "/".to_owned(),
        "/?state=down".to_owned(),
        format!("/target?url={}", url_encode("http://127.0.0.1:9/via")),
        format!("/target?url={}", url_encode("https://127.0.0.1:9/")),
        format!("/target?url={}", url_encode(&format!("{base}/a"))),
    ] {
        let r = http(exporter.addr, "GET", &page, &[]);
        assert_eq!(r.status, 200, "{page}");
        outputs.push((page, r.body));
    }
    assert!(
        outputs[1].1.contains("<secret>@127.0.0.1"),
        "{}",
        outputs[1].1
    );
    for args in [
        vec!["check", "--output", "json", "--config.file"],
        vec!["check", "--config.file"],
        vec!["--config.check", "--config.file"],
    ] {
        let out = Command::new(exporter_bin())
            .args(&args)
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((format!("{args:?}"), text));
    }

    // Every bad config: refused by --config.check and by a reload, neither quoting it.
    for yaml in bad {
        let text = format!("targets:\n  - {yaml}\n");
        let bad_path = d.join("bad.yaml");
        std::fs::write(&bad_path, &text).unwrap();
        let out = Command::new(exporter_bin())
            .args(["--config.check", "--config.file"])
            .arg(&bad_path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{yaml} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("bad.yaml:2:"), "{yaml}: {err}");
        outputs.push((format!("--config.check of {yaml}"), err));
        std::fs::write(&path, &text).unwrap();
        let r = http(exporter.addr, "POST", "/-/reload", &[]);
        assert_eq!(r.status, 500, "{yaml}: {}", r.body);
        outputs.push((format!("reload of {yaml}"), r.body));
    }
    // The old config kept running; one more scrape and page after the failed reloads.
    let after = exporter.scrape(Some(10.0));
    assert_eq!(
        target_sample(&after, "probe_success", &format!("{base}/a")),
        Some(1.0)
    );
    outputs.push(("metrics after".into(), after));
    let r = http(exporter.addr, "GET", "/config", &[]);
    outputs.push(("/config after".into(), r.body));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = exporter.log.lock().unwrap().join("\n");
    // The log has each failed reload, with its place in the file.
    assert!(log.matches("targets.yaml:2:").count() >= bad.len(), "{log}");
    outputs.push(("log".into(), log));
    for (what, text) in &outputs {
        assert_none_planted(what, text);
    }
}
