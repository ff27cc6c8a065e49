//! TLS and certificates against real nginx TLS servers (and a rustls server where nginx answers
//! a missing client certificate with an HTTP 400 instead of a TLS alert), with a CA and leaf
//! certificates made at test time.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use http_status_exporter::config;
use http_status_exporter::outcome::{FailureReason, ProbeResult, TlsVersion};
use http_status_exporter::round::{Limits, run_round};

/// Days from now until a unix time.
fn days_until(t: i64) -> f64 {
    (t as f64 - unix_now()) / 86_400.0
}

/// Probe the targets of `yaml` (relative files resolved in `dir`) once.
async fn probe(dir: &Path, yaml: &str) -> Vec<ProbeResult> {
    let cfg = config::parse(&dir.join("targets.yaml"), yaml).unwrap();
    run_round(
        Arc::new(cfg),
        &std::sync::Arc::new(common::system_resolver()),
        None,
        Limits { concurrency: 16 },
        |_, _| {},
    )
    .await
    .results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_case_has_its_outcome_and_expiry() {
    let root = Pki::new("test root");
    let intermediate = root.intermediate("test intermediate", 10);
    let other = Pki::new("unrelated CA");
    let names = ["localhost", "127.0.0.1"];
    let (valid, valid_key) = root.leaf(&names, -1, 30);
    let (expired, expired_key) = root.leaf(&names, -40, -2);
    let (future, future_key) = root.leaf(&names, 5, 60);
    let (wrong, wrong_key) = root.leaf(&["other.test"], -1, 30);
    let (untrusted, untrusted_key) = other.leaf(&names, -1, 30);
    let (chained, chained_key) = intermediate.leaf(&names, -1, 30);
    let modern = "ssl_protocols TLSv1.2 TLSv1.3;".to_owned();
    let server = |cert: &str, key: &str, extra: &str| TlsServer {
        cert_pem: cert.to_owned(),
        key_pem: key.to_owned(),
        extra: extra.to_owned(),
    };
    let nginx = Nginx::start(&[
        server(&valid, &valid_key, &modern),
        server(&expired, &expired_key, &modern),
        server(&wrong, &wrong_key, &modern),
        server(&untrusted, &untrusted_key, &modern),
        server(
            &format!("{chained}{}", intermediate.ca_pem()),
            &chained_key,
            &modern,
        ),
        server(&valid, &valid_key, "ssl_protocols TLSv1.2;"),
        server(&future, &future_key, &modern),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.ca_pem()).unwrap();
    let p = &nginx.tls_ports;
    let yaml = format!(
        "defaults:\n  tls_config: {{ca_file: root.pem}}\ntargets:\n\
         - https://localhost:{}/ok\n\
         - https://localhost:{}/ok\n\
         - https://localhost:{}/ok\n\
         - https://localhost:{}/ok\n\
         - https://localhost:{}/ok\n\
         - https://localhost:{}/ok\n\
         - url: https://localhost:{}/min13\n  tls_config: {{min_version: TLS13}}\n\
         - url: https://127.0.0.1:{}/by-ip\n\
         - url: https://127.0.0.1:{}/sni\n  tls_config: {{server_name: other.test}}\n\
         - url: https://localhost:{}/insecure\n  tls_config: {{insecure_skip_verify: true}}\n\
         - https://localhost:{}/ok\n\
         - https://127.0.0.1:{}/plain-http-port\n",
        p[0], p[1], p[2], p[3], p[4], p[5], p[5], p[0], p[2], p[3], p[6], nginx.port
    );
    let r = probe(dir.path(), &yaml).await;
    use FailureReason::*;
    let outcome = |i: usize| (r[i].status.as_ref().map_or(0, |s| s.code), r[i].failure);
    // Valid: success, TLS 1.3, leaf expiry about 30 days out.
    assert_eq!(outcome(0), (200, None), "{:?}", r[0]);
    assert_eq!(r[0].tls_version, Some(TlsVersion::Tls13));
    let c = r[0].cert.unwrap();
    assert!((29.0..31.0).contains(&days_until(c.leaf)), "{c:?}");
    assert_eq!(c.leaf, c.earliest);
    assert!(r[0].phases.tls > std::time::Duration::ZERO);
    // Expired: failed, and the expiry (in the past) is still reported.
    assert_eq!(outcome(1), (0, Some(TlsCertExpired)), "{:?}", r[1]);
    assert!(days_until(r[1].cert.unwrap().leaf) < -1.0);
    // Wrong name.
    assert_eq!(outcome(2), (0, Some(TlsHostnameMismatch)), "{:?}", r[2]);
    assert!(r[2].cert.is_some());
    // Unknown issuer.
    assert_eq!(outcome(3), (0, Some(TlsCertUntrusted)), "{:?}", r[3]);
    assert!((29.0..31.0).contains(&days_until(r[3].cert.unwrap().leaf)));
    // Intermediate chain: leaf 30 days, earliest (the intermediate) 10 days.
    assert_eq!(outcome(4), (200, None), "{:?}", r[4]);
    let c = r[4].cert.unwrap();
    assert!((29.0..31.0).contains(&days_until(c.leaf)), "{c:?}");
    assert!((9.0..11.0).contains(&days_until(c.earliest)), "{c:?}");
    // TLS 1.2-only server: fine by default, refused with min_version TLS13.
    assert_eq!(outcome(5), (200, None), "{:?}", r[5]);
    assert_eq!(r[5].tls_version, Some(TlsVersion::Tls12));
    assert_eq!(outcome(6), (0, Some(TlsProtocolVersion)), "{:?}", r[6]);
    // Probing by IP verifies the IP SAN; server_name overrides SNI and verification.
    assert_eq!(outcome(7), (200, None), "{:?}", r[7]);
    assert_eq!(outcome(8), (200, None), "{:?}", r[8]);
    // insecure_skip_verify accepts an untrusted certificate and still reports its expiry.
    assert_eq!(outcome(9), (200, None), "{:?}", r[9]);
    assert!(r[9].cert.is_some());
    // Not yet valid counts as expired.
    assert_eq!(outcome(10), (0, Some(TlsCertExpired)), "{:?}", r[10]);
    // A server that does not speak TLS.
    assert_eq!(outcome(11), (0, Some(TlsNotTls)), "{:?}", r[11]);
    assert!(r[11].cert.is_none());
}

/// A rustls server on loopback requiring client certificates from `ca`; answers 200.
async fn mtls_server(cert: &str, key: &str, ca: &str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = common::tls_server_config(cert, key, ca, true);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let root = Pki::new("mtls root");
    let other = Pki::new("other client CA");
    let (cert, key) = root.leaf(&["localhost"], -1, 30);
    let addr = mtls_server(&cert, &key, &root.ca_pem()).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, client_key) = root.client("prober");
    let (stranger, stranger_key) = other.client("stranger");
    for (name, body) in [
        ("root.pem", root.ca_pem()),
        ("client.pem", client),
        ("client.key", client_key),
        ("stranger.pem", stranger),
        ("stranger.key", stranger_key),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let port = addr.port();
    let yaml = format!(
        "defaults:\n  tls_config: {{ca_file: root.pem}}\ntargets:\n\
         - url: https://localhost:{port}/with-cert\n  tls_config: {{cert_file: client.pem, key_file: client.key}}\n\
         - url: https://localhost:{port}/without-cert\n\
         - url: https://localhost:{port}/wrong-cert\n  tls_config: {{cert_file: stranger.pem, key_file: stranger.key}}\n"
    );
    let r = probe(dir.path(), &yaml).await;
    assert!(r[0].success(), "{:?}", r[0]);
    assert_eq!(
        r[1].failure,
        Some(FailureReason::TlsClientCert),
        "{:?}",
        r[1]
    );
    assert_eq!(
        r[2].failure,
        Some(FailureReason::TlsClientCert),
        "{:?}",
        r[2]
    );
    // The server's certificate was seen in every case.
    assert!(r.iter().all(|x| x.cert.is_some()));
}

#[test]
fn a_half_client_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = config::parse(
        &dir.path().join("t.yaml"),
        "targets:\n  - url: https://localhost:1/\n    tls_config: {cert_file: c.pem}\n",
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("cert_file and key_file must be given together"),
        "{err}"
    );
}

#[test]
fn one_client_configuration_per_distinct_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), Pki::new("x").ca_pem()).unwrap();
    let cfg = config::parse(
        &dir.path().join("t.yaml"),
        "defaults:\n  tls_config: {ca_file: ca.pem}\ntargets:\n  - https://a.test/\n  - https://b.test/\n  - url: https://c.test/\n    tls_config: {server_name: x.test}\n  - url: https://d.test/\n    tls_config: {min_version: TLS13}\n",
    )
    .unwrap();
    let tls: Vec<_> = cfg
        .targets
        .iter()
        .map(|t| t.tls.as_ref().unwrap())
        .collect();
    assert!(Arc::ptr_eq(&tls[0].config, &tls[1].config));
    assert!(
        Arc::ptr_eq(&tls[0].config, &tls[2].config),
        "server_name does not need its own"
    );
    assert!(!Arc::ptr_eq(&tls[0].config, &tls[3].config));
}

#[test]
fn control_bytes_in_a_certificate_name_reach_no_terminal_and_no_page() {
    let pki = Pki::new("names CA");
    // An ESC sequence that would clear a terminal, in the only name of the certificate.
    let (cert_pem, key_pem) = pki.leaf(&["evil\u{1b}[2J\u{1b}]0;owned\u{7}.test"], -1, 30);
    let nginx = Nginx::start(&[TlsServer {
        cert_pem,
        key_pem,
        extra: String::new(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let url = format!("https://localhost:{}/ok", nginx.tls_ports[0]);
    let path = dir.path().join("targets.yaml");
    std::fs::write(
        &path,
        format!("defaults:\n  tls_config: {{ca_file: ca.pem}}\ntargets:\n  - {url}\n"),
    )
    .unwrap();
    let exporter = Exporter::start_file(&path, &["--log.level", "debug"]);
    let metrics = exporter.scrape(Some(10.0));
    assert_eq!(
        reason(&metrics, &url).as_deref(),
        Some("tls_hostname_mismatch"),
        "{metrics}"
    );
    let mut outputs = vec![("metrics", metrics)];
    for page in ["/", &format!("/target?url={}", url_encode(&url))] {
        let r = http(exporter.addr, "GET", page, &[]);
        assert_eq!(r.status, 200, "{page}");
        outputs.push(("status page", r.body));
    }
    let check = std::process::Command::new(exporter_bin())
        .args(["check", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&check.stdout).into_owned();
    // The name is there, escaped.
    assert!(
        table.contains("evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}.test"),
        "{table}"
    );
    outputs.push(("check", table));
    std::thread::sleep(std::time::Duration::from_millis(200));
    outputs.push(("log", exporter.log.lock().unwrap().join("\n")));
    for (what, text) in &outputs {
        assert!(
            !text.contains(['\u{1b}', '\u{7}']),
            "{what} has the raw control bytes: {text:?}"
        );
    }
    assert!(outputs[1].1.contains("evil\\u{1b}[2J"), "{}", outputs[1].1);
}
