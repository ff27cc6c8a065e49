//! Probes through real proxies from Debian (tinyproxy and squid, each started with a temporary
//! config on a free port): http in absolute form, https through CONNECT with the target's own
//! name verified inside the tunnel, `no_proxy`, a proxy that demands authentication (from the
//! URL or from `proxy_connect_header`), one that refuses the destination, one that is not
//! running, and `proxy_from_environment`.

mod common;

use std::time::Duration;

use common::proxy::{Proxy, ProxyKind, ProxyOpts, proxy_authorization};
use common::{Exporter, Nginx, Pki, TlsServer, closed_port, exporter_bin, reason, sample};

/// nginx with a plain server and a TLS server whose certificate names 127.0.0.1 only, and the
/// folder holding its CA as `ca.pem`.
fn nginx() -> (Nginx, tempfile::TempDir) {
    let pki = Pki::new("proxy tests CA");
    let (cert_pem, key_pem) = pki.leaf(&["127.0.0.1"], -1, 30);
    let nginx = Nginx::start(&[TlsServer {
        cert_pem,
        key_pem,
        extra: String::new(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    (nginx, dir)
}

/// `check --output json` on `config` (in `dir`) with extra environment variables: one JSON
/// value per target, by URL and name.
fn check(dir: &std::path::Path, config: &str, env: &[(&str, String)]) -> Vec<serde_json::Value> {
    let path = dir.join("check.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(exporter_bin())
        .args(["check", "--output", "json", "--config.file"])
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The result of `url` (named `name`, if given) among `check`'s.
fn result<'a>(
    all: &'a [serde_json::Value],
    url: &str,
    name: Option<&str>,
) -> &'a serde_json::Value {
    all.iter()
        .find(|v| v["target"] == url && v["name"].as_str() == name)
        .unwrap_or_else(|| panic!("no result for {url} {name:?} in {all:#?}"))
}

#[test]
fn http_and_https_through_a_proxy_and_past_it() {
    let (nginx, dir) = nginx();
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let ok_tls = format!("https://127.0.0.1:{}/ok", nginx.tls_ports[0]);
    // The certificate does not name localhost: inside the tunnel, the target's name counts.
    let wrong_name = format!("https://localhost:{}/ok", nginx.tls_ports[0]);
    let direct = format!("http://localhost:{}/missing", nginx.port);
    for kind in ProxyKind::ALL {
        let p = Proxy::start(ProxyOpts {
            kind,
            ..Default::default()
        });
        let config = format!(
            "defaults:\n  proxy_url: '{proxy}'\n  no_proxy: [localhost]\n  tls_config: {{ca_file: ca.pem}}\n\
             targets:\n  - {ok}\n  - {ok_tls}\n  - {{url: '{wrong_name}', no_proxy: [10.0.0.0/8]}}\n  - {{url: '{direct}', no_proxy: 'localhost, 10.0.0.0/8'}}\n",
            proxy = p.url()
        );
        let path = dir.path().join("targets.yaml");
        std::fs::write(&path, &config).unwrap();
        let exporter = Exporter::start_file(&path, &[]);
        let text = exporter.scrape(Some(10.0));
        let m = |metric: &str, url: &str| common::target_sample(&text, metric, url);
        let k = kind.name();
        assert_eq!(m("probe_success", &ok), Some(1.0), "{k}\n{text}");
        assert_eq!(m("probe_http_status_code", &ok), Some(200.0), "{k}");
        assert_eq!(m("probe_http_ssl", &ok), Some(0.0), "{k}");
        assert_eq!(m("probe_success", &ok_tls), Some(1.0), "{k}\n{text}");
        assert_eq!(m("probe_http_ssl", &ok_tls), Some(1.0), "{k}");
        assert!(
            m("probe_ssl_earliest_cert_expiry", &ok_tls).unwrap() > 0.0,
            "{k}"
        );
        let phase = |url: &str, phase: &str| {
            sample(
                &text,
                "probe_http_duration_seconds",
                &[("target", url), ("phase", phase)],
            )
        };
        assert!(phase(&ok_tls, "proxy").unwrap() > 0.0, "{k}: {text}");
        assert!(phase(&ok_tls, "tls").unwrap() > 0.0, "{k}");
        assert_eq!(
            phase(&ok, "proxy"),
            Some(0.0),
            "{k}: an http target has no CONNECT"
        );
        assert_eq!(
            reason(&text, &wrong_name).as_deref(),
            Some("tls_hostname_mismatch"),
            "{k}"
        );
        // no_proxy: straight to nginx, which answers 404.
        assert_eq!(m("probe_http_status_code", &direct), Some(404.0), "{k}");
        assert_eq!(phase(&direct, "proxy"), Some(0.0), "{k}");

        // Squid logs a tunnel when it closes, in whatever order they close.
        p.wait_request(
            &format!("CONNECT localhost:{}", nginx.tls_ports[0]),
            Duration::from_secs(5),
        );
        let seen = p.wait_request(
            &format!("CONNECT 127.0.0.1:{}", nginx.tls_ports[0]),
            Duration::from_secs(5),
        );
        assert!(seen.contains(&format!("GET {ok}")), "{k}: {seen:#?}");
        assert!(
            seen.contains(&format!("CONNECT 127.0.0.1:{}", nginx.tls_ports[0])),
            "{k}: {seen:#?}"
        );
        assert!(
            !seen.iter().any(|r| r.contains("/missing")),
            "{k}: {seen:#?}"
        );
    }
}

#[test]
fn proxies_that_refuse_say_so() {
    let (nginx, dir) = nginx();
    let tls = nginx.tls_ports[0];
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let ok_tls = format!("https://127.0.0.1:{tls}/ok");
    for kind in ProxyKind::ALL {
        let k = kind.name();
        let auth = Proxy::start(ProxyOpts {
            kind,
            basic_auth: Some(("probe".into(), "proxy-pw".into())),
            ..Default::default()
        });
        let deny = Proxy::start(ProxyOpts {
            kind,
            deny_ports: vec![tls],
            ..Default::default()
        });
        let with_pw = |user: &str, pw: &str| format!("http://{user}:{pw}@127.0.0.1:{}", auth.port);
        let header = proxy_authorization("probe", "proxy-pw");
        let (_, header_value) = header.split_once(": ").unwrap();
        let config = format!(
            "defaults:\n  tls_config: {{ca_file: ca.pem}}\ntargets:\n\
             \x20 - {{url: '{ok}', name: auth, proxy_url: '{right}'}}\n\
             \x20 - {{url: '{ok_tls}', name: auth, proxy_url: '{right}'}}\n\
             \x20 - {{url: '{ok_tls}', name: header, proxy_url: '{bare}', proxy_connect_header: {{Proxy-Authorization: ['{header_value}']}}}}\n\
             \x20 - {{url: '{ok_tls}', name: none, proxy_url: '{bare}'}}\n\
             \x20 - {{url: '{ok_tls}', name: wrong, proxy_url: '{wrong}'}}\n\
             \x20 - {{url: '{ok_tls}', name: denied, proxy_url: '{denied}'}}\n\
             \x20 - {{url: '{ok_tls}', name: gone, proxy_url: 'http://127.0.0.1:{closed}'}}\n",
            right = with_pw("probe", "proxy-pw"),
            // Another user: squid keeps one credential per user name, and a wrong password
            // for `probe` arriving beside the right one can make it refuse both.
            wrong = with_pw("intruder", "not-it"),
            bare = auth.url(),
            denied = deny.url(),
            closed = closed_port(),
        );
        let all = check(dir.path(), &config, &[]);
        let r = |url: &str, name: &str| result(&all, url, Some(name));
        assert_eq!(r(&ok, "auth")["success"], true, "{k}: {all:#?}");
        assert_eq!(r(&ok_tls, "auth")["success"], true, "{k}: {all:#?}");
        assert_eq!(r(&ok_tls, "header")["success"], true, "{k}: {all:#?}");
        for (name, code) in [
            ("none", 407),
            ("wrong", kind.wrong_credentials_status()),
            ("denied", 403),
        ] {
            let v = r(&ok_tls, name);
            assert_eq!(v["reason"], "proxy_connect_status", "{k} {name}: {v}");
            let detail = v["detail"].as_str().unwrap();
            assert!(detail.contains(" with HTTP/1."), "{k} {name}: {detail}");
            assert!(detail.contains(&format!(" {code}")), "{k} {name}: {detail}");
            assert!(!detail.contains("not-it"), "{k}: {detail}");
            assert_eq!(
                v["status_code"], 0,
                "{k} {name}: the proxy's code is not the target's"
            );
        }
        let gone = r(&ok_tls, "gone");
        assert_eq!(gone["reason"], "proxy_connect_refused", "{k}: {gone}");
        assert!(
            gone["detail"]
                .as_str()
                .unwrap()
                .contains("the proxy 127.0.0.1:"),
            "{gone}"
        );
    }
}

#[test]
fn the_environment_names_the_proxy() {
    let (nginx, dir) = nginx();
    let p = Proxy::start(ProxyOpts::default());
    let ok = format!("http://127.0.0.1:{}/ok", nginx.port);
    let ok_tls = format!("https://127.0.0.1:{}/ok", nginx.tls_ports[0]);
    let skipped = format!("http://localhost:{}/ok", nginx.port);
    let config = format!(
        "defaults:\n  proxy_from_environment: true\n  tls_config: {{ca_file: ca.pem}}\n\
         targets:\n  - {ok}\n  - {ok_tls}\n  - {skipped}\n"
    );
    let env = [
        ("http_proxy", p.url()),
        ("HTTPS_PROXY", p.url().replace("http://", "")),
        ("NO_PROXY", "example.invalid,localhost".to_owned()),
    ];
    let all = check(dir.path(), &config, &env);
    for url in [&ok, &ok_tls, &skipped] {
        assert_eq!(result(&all, url, None)["success"], true, "{url}: {all:#?}");
    }
    let seen = p.wait_request(
        &format!("CONNECT 127.0.0.1:{}", nginx.tls_ports[0]),
        Duration::from_secs(5),
    );
    assert!(seen.contains(&format!("GET {ok}")), "{seen:#?}");
    assert!(!seen.iter().any(|r| r.contains("localhost")), "{seen:#?}");
    // A bad variable is a config error naming it.
    let path = dir.path().join("check.yaml");
    let out = std::process::Command::new(exporter_bin())
        .args(["--config.check", "--config.file"])
        .arg(&path)
        .env("HTTPS_PROXY", "socks5://u:hidden@127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HTTPS_PROXY") && err.contains("only http://"),
        "{err}"
    );
    assert!(!err.contains("hidden"), "{err}");
}

#[test]
fn a_proxy_that_never_answers_is_named_with_the_time_waited() {
    let silent = common::peer::silent_listener();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "defaults:\n  proxy_url: 'http://{silent}'\n  timeout: 1s\n\
         targets:\n  - https://127.0.0.1:9/\n  - http://127.0.0.1:9/plain\n"
    );
    let all = check(dir.path(), &config, &[]);
    let tunnel = result(&all, "https://127.0.0.1:9/", None);
    assert_eq!(tunnel["reason"], "timeout", "{tunnel}");
    let detail = tunnel["detail"].as_str().unwrap();
    let waited = |detail: &str, prefix: &str| {
        let rest = detail.strip_prefix(prefix)?.strip_suffix(" s")?;
        rest.parse::<f64>().ok()
    };
    // The time waited: the probe's second, less what connecting took.
    let prefix = format!("proxy {silent}: no answer to CONNECT within ");
    let secs = waited(detail, &prefix).unwrap_or_else(|| panic!("{detail}"));
    assert!((0.5..=1.1).contains(&secs), "{detail}");
    let plain = result(&all, "http://127.0.0.1:9/plain", None);
    assert_eq!(plain["reason"], "timeout", "{plain}");
    let detail = plain["detail"].as_str().unwrap();
    let prefix = format!("proxy {silent}: no complete status line within ");
    let secs = waited(detail, &prefix).unwrap_or_else(|| panic!("{detail}"));
    assert!((0.5..=1.1).contains(&secs), "{detail}");
}

#[test]
fn no_proxy_matches_trailing_dots_and_ipv4_mapped_addresses_as_curl_and_go_do() {
    let (nginx, dir) = nginx();
    let port = nginx.port;
    // The proxy is not running: a target that went through it would fail.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let config = format!(
        "defaults:\n  proxy_url: '{dead}'\n\
         targets:\n\
         \x20 - {{url: 'http://localhost.:{port}/ok', name: dotted-target, no_proxy: [localhost]}}\n\
         \x20 - {{url: 'http://localhost:{port}/ok', name: dotted-entry, no_proxy: [localhost.]}}\n\
         \x20 - {{url: 'http://a.localhost.:{port}/ok', name: below, no_proxy: '.localhost.'}}\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/ok', name: mapped-entry, no_proxy: ['::ffff:127.0.0.1']}}\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/ok', name: mapped-net, no_proxy: ['::ffff:127.0.0.0/104']}}\n\
         \x20 - {{url: 'http://[::ffff:127.0.0.1]:{port}/ok', name: mapped-target, no_proxy: [127.0.0.0/8]}}\n\
         \x20 - {{url: 'http://127.0.0.1:{port}/ok', name: other-net, no_proxy: ['::ffff:10.0.0.0/104', example.com.]}}\n"
    );
    let all = check(dir.path(), &config, &[]);
    for name in [
        "dotted-target",
        "dotted-entry",
        "below",
        "mapped-entry",
        "mapped-net",
        "mapped-target",
    ] {
        let v = all
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {all:#?}"));
        assert_eq!(v["success"], true, "{name}: {v}");
        assert_eq!(v["status_code"], 200, "{name}: {v}");
    }
    let other = all.iter().find(|v| v["name"] == "other-net").unwrap();
    assert_eq!(other["reason"], "proxy_connect_refused", "{other}");
}
