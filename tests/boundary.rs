//! `/probe` as a trust boundary: whatever a caller names, no connection lands where the file
//! forbids; the file's credentials go only where the file says; and every probe, whoever asked
//! for it, counts against the cap per host as the server sees it.
//!
//! The spelling test runs the exporter in a network namespace of its own (with a second one
//! for an allowed host), so that nothing it lets through can leave the machine. Needs root,
//! iproute2 and util-linux, as CI has.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dns::{DnsServer, Entry, Rec, Zone};
use common::netns::{Net, in_netns};
use common::{Exporter, Pki, http, url_encode};

/// Whether a metrics text reports a successful probe.
fn succeeded(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with("probe_success") && l.ends_with(" 1"))
}

/// Connections accepted by a listener, with the local address each landed on.
type Landed = Arc<Mutex<Vec<SocketAddr>>>;

/// A dual-stack listener on every address of namespace `ns` (`[::]`, IPv4 mapped in) that
/// counts the connections it accepts and answers each with 200, as a service on the
/// exporter's own host would. Returns its port.
fn counting_listener(ns: &str) -> (u16, Landed) {
    let landed: Landed = Arc::default();
    let seen = landed.clone();
    let listener = in_netns(ns, || {
        let l = TcpListener::bind("[::]:0").unwrap();
        l.set_nonblocking(false).unwrap();
        l
    });
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            seen.lock().unwrap().push(c.local_addr().unwrap());
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, landed)
}

/// A server in namespace `ns` on `ip` that answers `GET /to/<percent-encoded location>` with
/// a 302 to that location. Returns its address.
fn redirector(ns: &str, ip: &str) -> SocketAddr {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let listener = in_netns(ns, move || TcpListener::bind((ip, 0)).unwrap());
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let to = path.strip_prefix("/to/").map(percent_decode);
            let answer = match to {
                Some(location) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                ),
                None => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
    addr
}

/// Undo `url_encode`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hosts of every spelling of this host's own addresses tried: literals of loopback and
/// of the unspecified addresses in every form a URL parser reads, IPv6 forms, encoded and
/// full-width hosts, names from the hosts file and from DNS, and the own veth address.
fn spellings(own: &str) -> Vec<String> {
    let mut hosts: Vec<String> = [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "017700000001",
        "127.0.0.1.",
        "127.255.255.254",
        "0.0.0.0",
        "0",
        "0.0.0.0.",
        "0x0",
        "00",
        "0.0.0",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::0:1]",
        "[0000::1]",
        "[::]",
        "[0::0]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::ffff:0.0.0.0]",
        "[::ffff:0:0]",
        "[::127.0.0.1]",
        "[::7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "%31%32%37.0.0.1",
        "%30.%30.%30.%30",
        "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
        "\u{ff10}.\u{ff10}.\u{ff10}.\u{ff10}",
        "localhost",
        "localhost.",
        "LOCALHOST",
        "LocalHost.",
        "user@127.0.0.1",
        "user:pw@0.0.0.0",
        "a@[::]",
        "lo4.test",
        "lo4.test.",
        "zero.test",
        "mapped.test",
        "any6.test",
        "lo6.test",
        "own.test",
        "dlo.dns.test",
        "dzero.dns.test",
        "dany.dns.test",
        "dmapped.dns.test",
        "dlo6.dns.test",
        "down.dns.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    hosts.push(own.to_owned());
    hosts.push(format!("[::ffff:{own}]"));
    hosts
}

#[test]
fn no_spelling_of_the_local_host_is_connected_to_directly_or_through_a_redirect() {
    let net = Net::new();
    let own = net.client_ip.clone();
    let (port, landed) = counting_listener(&net.client);
    let hop = redirector(&net.server, &net.server_ip);
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1 localhost lo4.test\n::1 lo6.test\n0.0.0.0 zero.test\n\
             ::ffff:127.0.0.1 mapped.test\n:: any6.test\n{own} own.test\n"
        ),
    )
    .unwrap();
    let a = |ip: &str| Entry::Records(vec![Rec::A(ip.parse().unwrap())]);
    let aaaa = |ip: &str| Entry::Records(vec![Rec::Aaaa(ip.parse().unwrap())]);
    let zone = Zone::new(&[
        ("dlo.dns.test", a("127.0.0.1")),
        ("dzero.dns.test", a("0.0.0.0")),
        ("dany.dns.test", aaaa("::")),
        ("dmapped.dns.test", aaaa("::ffff:127.0.0.1")),
        ("dlo6.dns.test", aaaa("::1")),
        ("down.dns.test", a(&own)),
    ]);
    let dns = DnsServer::start_in(&net.client, "127.0.0.1:0".parse().unwrap(), zone);
    let resolv = dns.resolv_conf(dir.path(), "options attempts:1\n");
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "probe:\n  allow: ['0.0.0.0/0', '::/0']\n  \
             deny: ['127.0.0.0/8', '::1/128', '169.254.0.0/16', 'fe80::/10']\n\
             defaults: {{timeout: 2s, follow_redirects: true}}\n\
             targets:\n  - http://{hop}/configured\n"
        ),
    )
    .unwrap();
    let wrapper = net.exporter_wrapper(dir.path());
    let e = Exporter::start_with(
        &wrapper,
        &targets,
        &[
            "--dns.hosts-file",
            hosts.to_str().unwrap(),
            "--dns.resolv-conf",
            resolv.to_str().unwrap(),
        ],
    );
    let addr = e.addr;
    let probe = |target: String| {
        let path = format!("/probe?target={}", url_encode(&target));
        in_netns(&net.client, move || http(addr, "GET", &path, &[]))
    };
    // The allowed host itself is reachable: the boundary is not simply closed.
    let ok = probe(format!("http://{hop}/plain"));
    assert!(succeeded(&ok.body), "{}", ok.body);

    let mut tried = 0;
    let mut let_through = Vec::new();
    for host in spellings(&own) {
        let mut cases = vec![
            (format!("http://{host}:{port}/"), "direct"),
            (
                format!(
                    "http://{hop}/to/{}",
                    url_encode(&format!("http://{host}:{port}/"))
                ),
                "redirect",
            ),
        ];
        if !host.contains('@') {
            cases.push((format!("{host}:{port}"), "bare host:port"));
            cases.push((
                format!(
                    "http://{hop}/to/{}",
                    url_encode(&format!("//{host}:{port}/"))
                ),
                "scheme-relative redirect",
            ));
        }
        for (target, how) in cases {
            tried += 1;
            let before = landed.lock().unwrap().len();
            let r = probe(target.clone());
            let after = landed.lock().unwrap().clone();
            if r.body
                .lines()
                .any(|l| l.starts_with("probe_success") && l.ends_with(" 1"))
                || after.len() > before
            {
                let_through.push(format!(
                    "{how} {target}: {} {:?}",
                    r.status,
                    &after[before..]
                ));
            }
        }
    }
    assert!(tried >= 200, "only {tried} cases");
    assert!(
        let_through.is_empty(),
        "{} of {tried} cases reached the local host:\n{}",
        let_through.len(),
        let_through.join("\n")
    );
    assert!(landed.lock().unwrap().is_empty());
}

/// A TLS server on 127.0.0.1 that asks for a client certificate without requiring one, and
/// records each request head with whether a certificate came with it.
async fn capturing_tls_peer(
    cert: &str,
    key: &str,
    client_ca: &str,
) -> (SocketAddr, Arc<Mutex<Vec<(String, bool)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = common::tls_server_config(cert, key, client_ca, false);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let with_cert = tls.get_ref().1.peer_certificates().is_some();
                let mut buf = vec![0u8; 8192];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                record.lock().unwrap().push((head, with_cert));
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_target_gets_no_credential_of_the_file_unless_its_group_sends_them() {
    let pki = Pki::new("boundary root");
    let (cert, key) = pki.leaf(&["127.0.0.1"], -1, 30);
    let (client, client_key) = pki.client("prober");
    let (addr, seen) = capturing_tls_peer(&cert, &key, &pki.ca_pem()).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("ca.pem", pki.ca_pem()),
        ("client.pem", client),
        ("client.key", client_key),
        ("key.txt", "file-key-6e1f".to_owned()),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let port = addr.port();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "probe:\n  allow: ['127.0.0.1/32']\n\
             defaults:\n  bearer_token: token-9c2d\n  \
             headers: {{X-Api-Key: {{file: key.txt}}, Cookie: 'session=cookie-41aa', X-Plain: shown}}\n  \
             tls_config: {{ca_file: ca.pem, cert_file: client.pem, key_file: client.key}}\n\
             groups:\n  trusted: {{send_credentials_to_admitted: true}}\n  plain: {{}}\n\
             targets:\n  - {{url: 'https://127.0.0.1:{port}/configured', group: plain}}\n"
        ),
    )
    .unwrap();
    let e = tokio::task::spawn_blocking(move || Exporter::start_file(&targets, &[]))
        .await
        .unwrap();
    let at = e.addr;
    let get = move |path: String| tokio::task::spawn_blocking(move || http(at, "GET", &path, &[]));
    let probe = |target: &str, module: &str| {
        format!(
            "/probe?target={}&module={module}",
            url_encode(&format!("https://127.0.0.1:{port}{target}"))
        )
    };
    for (path, module) in [
        ("/configured", "plain"),
        ("/admitted-plain", "plain"),
        ("/admitted-trusted", "trusted"),
    ] {
        let r = get(probe(path, module)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(succeeded(&r.body), "{path}: {}", r.body);
    }
    let r = get("/metrics".to_owned()).await.unwrap();
    assert!(r.body.contains("probe_success{"), "{}", r.body);
    let seen = seen.lock().unwrap().clone();
    let of = |path: &str| {
        seen.iter()
            .find(|(head, _)| head.starts_with(&format!("GET {path} ")))
            .cloned()
            .unwrap_or_else(|| panic!("no request for {path}: {seen:?}"))
    };
    let credentials = ["token-9c2d", "file-key-6e1f", "cookie-41aa"];
    for path in ["/configured", "/admitted-trusted"] {
        let (head, with_cert) = of(path);
        for c in credentials {
            assert!(head.contains(c), "{path} lacks {c}:\n{head}");
        }
        assert!(with_cert, "{path} came without the client certificate");
        assert!(head.contains("X-Plain: shown"), "{head}");
    }
    let (head, with_cert) = of("/admitted-plain");
    for c in credentials {
        assert!(
            !head.contains(c),
            "an admitted target received {c}:\n{head}"
        );
    }
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );
    assert!(
        !with_cert,
        "an admitted target received the client certificate"
    );
    assert!(
        head.contains("X-Plain: shown"),
        "plain headers still go:\n{head}"
    );
}

#[test]
fn send_credentials_to_admitted_on_a_target_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = http_status_exporter::config::parse(
        &dir.path().join("t.yaml"),
        "targets:\n  - url: http://127.0.0.1:1/\n    send_credentials_to_admitted: true\n",
    )
    .unwrap_err();
    assert!(err.message.contains("defaults or a group"), "{err}");
    assert_eq!(err.line, 3, "{err}");
}

/// A peer on 127.0.0.1 that holds each connection 150 ms before answering 200, and records
/// the most connections it held at once (between accepting and answering).
fn slow_counting_peer() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (most, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let open = Arc::new(AtomicUsize::new(0));
    let (m, t) = (most.clone(), total.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            t.fetch_add(1, Ordering::SeqCst);
            let open = open.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf);
                std::thread::sleep(Duration::from_millis(150));
                // Counted from the accept to the answer: the prober lets its place go only
                // once it has read the answer, so two connections in here at once were open
                // at once on its side too (its close may reach us after its next connect).
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                let _ = c.read(&mut buf);
            });
        }
    });
    (port, most, total)
}

/// A server on 127.0.0.2 that answers every request with a 302 to `location`.
fn redirect_to(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

#[test]
fn the_cap_per_host_holds_for_every_kind_of_probe_at_once_as_the_server_sees_it() {
    let (port, most, total) = slow_counting_peer();
    let hop = redirect_to(format!("http://127.0.0.1:{port}/after-redirect"));
    let config = format!(
        "max_connections_per_host: 1\n\
         probe:\n  allow: ['127.0.0.0/8']\n\
         defaults: {{timeout: 20s}}\n\
         targets:\n\
         \x20 - http://127.0.0.1:{port}/a\n\
         \x20 - http://localhost:{port}/b\n\
         \x20 - {{url: 'http://127.0.0.2:{hop}/hop', follow_redirects: true}}\n\
         \x20 - {{url: 'http://a.proxied.test/c', proxy_url: 'http://127.0.0.1:{port}'}}\n\
         \x20 - {{url: 'http://b.proxied.test/d', proxy_url: 'http://localhost:{port}'}}\n"
    );
    let e = Exporter::start(&config, &[]);
    let configured = format!("http://127.0.0.1:{port}/a");
    let mut paths = vec!["/metrics".to_owned(), "/metrics".to_owned()];
    for _ in 0..4 {
        paths.push(format!(
            "/probe?target={}&debug=true",
            url_encode(&configured)
        ));
    }
    for i in 0..2 {
        paths.push(format!(
            "/probe?target={}&hostname=h{i}.test",
            url_encode(&configured)
        ));
        paths.push(format!(
            "/probe?target={}",
            url_encode(&format!("http://127.0.0.1:{port}/admitted{i}"))
        ));
    }
    let addr = e.addr;
    let answers: Vec<_> = paths
        .into_iter()
        .map(|p| {
            std::thread::spawn(move || {
                let r = http(
                    addr,
                    "GET",
                    &p,
                    &["X-Prometheus-Scrape-Timeout-Seconds: 30".into()],
                );
                (p, r)
            })
        })
        .collect();
    for a in answers {
        let (p, r) = a.join().unwrap();
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        let failed: Vec<&str> = r
            .body
            .lines()
            .filter(|l| l.starts_with("probe_success") && l.ends_with(" 0"))
            .collect();
        assert!(failed.is_empty(), "{p}: {failed:?}\n{}", r.body);
    }
    // Five targets (one a redirect, so two requests) for the scrapes, four traced probes, two
    // with another Host, two admitted: at least 14 connections, never two at once.
    assert!(total.load(Ordering::SeqCst) >= 12, "{total:?}");
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "the peer saw more than one connection at once"
    );
}

#[test]
fn without_a_probe_block_a_refused_target_is_logged_with_the_entry_that_would_admit_it() {
    let e = Exporter::start("targets:\n  - http://127.0.0.1:1/\n", &[]);
    for (target, entry) in [
        ("http://127.0.0.2:1/", "127.0.0.2/32"),
        (
            "api.corp.example:8080",
            "api.corp.example or *.corp.example",
        ),
    ] {
        let r = http(
            e.addr,
            "GET",
            &format!("/probe?target={}", url_encode(target)),
            &[],
        );
        assert_eq!(r.status, 404, "{}", r.body);
        let wanted = format!("an `allow` entry like {entry} would admit it");
        let start = std::time::Instant::now();
        while !e.log.lock().unwrap().iter().any(|l| l.contains(&wanted)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no log line says {wanted:?}:\n{}",
                e.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
