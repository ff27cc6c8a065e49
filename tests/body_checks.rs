//! Header and body checks against our own tokio peer (bodies framed by `Content-Length`, by
//! chunks with extensions and a trailer, by the close; gzip; large, trickling and endless
//! bodies), each case compared with blackbox_exporter 0.23 probing the same peer with the same
//! keys: `probe_success` and `probe_failed_due_to_regex` must be equal.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::blackbox::Blackbox;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A JSON health answer.
const UP: &str = "{\"status\":\"UP\"}";

/// 2 MiB of body, ending in `UP`.
const BIG: usize = 2 << 20;

/// Serve one connection as the request path says.
async fn serve(mut s: TcpStream) {
    let head = common::peer::read_head(&mut s).await;
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let length = |code: &str, body: &str| {
        format!(
            "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nX-Version: 2.1\r\n\
             x-version: 3.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let answer: Vec<u8> = match path.as_str() {
        "/up" => length("200 OK", UP),
        "/down" => length("200 OK", "{\"status\":\"DOWN\"}"),
        "/500-down" => length("500 Internal Server Error", "{\"status\":\"DOWN\"}"),
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n\
            4;ext=1\r\n{\"st\r\n7;a=\"b;c\"\r\natus\":\"\r\n4\r\nUP\"}\r\n0\r\nX-Trailer: DOWN\r\n\r\n"
            .to_vec(),
        // A redirect whose own body says the opposite of where it leads.
        "/to-up" => b"HTTP/1.1 302 Found\r\nLocation: /up\r\nContent-Length: 6\r\n\r\nDOWN!\n".to_vec(),
        "/to-down" => b"HTTP/1.1 302 Found\r\nLocation: /down\r\nContent-Length: 3\r\n\r\nUP\n".to_vec(),
        "/close" => format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{UP}").into_bytes(),
        "/gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(UP.as_bytes()).unwrap();
            let gz = gz.finish().unwrap();
            let mut a = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                gz.len()
            )
            .into_bytes();
            a.extend(gz);
            a
        }
        "/big" => {
            let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
            a.resize(a.len() + BIG - 2, b'a');
            a.extend(b"UP");
            a
        }
        "/trickle" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await;
            for _ in 0..100 {
                if s.write_all(b"trickle..\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        "/endless" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let block = vec![b'x'; 16 * 1024];
            let start = Instant::now();
            // Until the reader goes, or 30 s.
            while start.elapsed() < Duration::from_secs(30) {
                if s.write_all(&block).await.is_err() {
                    return;
                }
            }
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    };
    let _ = s.write_all(&answer).await;
    let _ = s.shutdown().await;
}

/// Start the peer on its own thread and runtime.
fn peer() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
    });
    rx.recv().unwrap()
}

/// One case: its name (our target's name and blackbox's module), the path, the keys (a YAML
/// flow mapping's inside, the same for both), and the expected success and
/// `probe_failed_due_to_regex`.
struct Case {
    name: &'static str,
    path: &'static str,
    keys: &'static str,
    success: bool,
    regex: bool,
}

const fn case(
    name: &'static str,
    path: &'static str,
    keys: &'static str,
    success: bool,
    regex: bool,
) -> Case {
    Case {
        name,
        path,
        keys,
        success,
        regex,
    }
}

/// Every case compared with blackbox_exporter.
const CASES: &[Case] = &[
    case(
        "length-up",
        "/up",
        "fail_if_body_matches_regexp: [DOWN]",
        true,
        false,
    ),
    case(
        "length-down",
        "/down",
        "fail_if_body_matches_regexp: [DOWN]",
        false,
        true,
    ),
    case(
        "length-not-up",
        "/down",
        "fail_if_body_not_matches_regexp: ['\"UP\"']",
        false,
        true,
    ),
    // The trailer says DOWN: it is not part of the body.
    case(
        "chunked",
        "/chunked",
        "fail_if_body_matches_regexp: [DOWN], fail_if_body_not_matches_regexp: ['^\\{\"status\":\"UP\"\\}$']",
        true,
        false,
    ),
    case(
        "close",
        "/close",
        "fail_if_body_not_matches_regexp: ['\"UP\"\\}$']",
        true,
        false,
    ),
    case(
        "close-down",
        "/close",
        "fail_if_body_matches_regexp: [UP]",
        false,
        true,
    ),
    case(
        "gzip",
        "/gzip",
        "compression: gzip, headers: {Accept-Encoding: gzip}, fail_if_body_not_matches_regexp: ['\"UP\"']",
        true,
        false,
    ),
    case(
        "big-1kib",
        "/big",
        "body_size_limit: 1KiB, fail_if_body_not_matches_regexp: ['UP$']",
        false,
        true,
    ),
    case(
        "big-4mib",
        "/big",
        "body_size_limit: 4MiB, fail_if_body_not_matches_regexp: ['UP$']",
        true,
        false,
    ),
    case(
        "big-limit-only",
        "/big",
        "body_size_limit: 1KiB",
        false,
        false,
    ),
    case(
        "header-present",
        "/up",
        "fail_if_header_not_matches: [{header: X-Version, regexp: '^3\\.'}]",
        true,
        false,
    ),
    case(
        "header-wrong",
        "/up",
        "fail_if_header_not_matches: [{header: X-Version, regexp: '^4\\.'}]",
        false,
        true,
    ),
    case(
        "header-matches",
        "/up",
        "fail_if_header_matches: [{header: X-Version, regexp: '^2\\.'}]",
        false,
        true,
    ),
    case(
        "header-missing",
        "/up",
        "fail_if_header_not_matches: [{header: X-Missing, regexp: x}]",
        false,
        true,
    ),
    case(
        "header-missing-allowed",
        "/up",
        "fail_if_header_matches: [{header: X-Missing, regexp: x, allow_missing: true}]",
        true,
        false,
    ),
    case(
        "header-other-case",
        "/up",
        "fail_if_header_not_matches: [{header: CONTENT-type, regexp: '^application/json$'}]",
        true,
        false,
    ),
    case(
        "head-empty-body",
        "/up",
        "method: HEAD, fail_if_body_not_matches_regexp: ['^$']",
        true,
        false,
    ),
    // The final answer of a redirect chain is judged, not the redirect.
    case(
        "redirect-to-up",
        "/to-up",
        "follow_redirects: true, fail_if_body_matches_regexp: [DOWN]",
        true,
        false,
    ),
    case(
        "redirect-to-down",
        "/to-down",
        "follow_redirects: true, fail_if_body_not_matches_regexp: [UP]",
        false,
        true,
    ),
    // The code fails first: the body is not judged.
    case(
        "500-down",
        "/500-down",
        "fail_if_body_matches_regexp: [DOWN]",
        false,
        false,
    ),
    // The deadline ends the body: its checks cannot pass.
    case(
        "trickle",
        "/trickle",
        "fail_if_body_matches_regexp: [DOWN]",
        false,
        true,
    ),
    case(
        "endless",
        "/endless",
        "body_size_limit: 64KiB, fail_if_body_matches_regexp: [DOWN]",
        false,
        true,
    ),
];

/// The probe timeout of every case, on both sides.
const TIMEOUT: &str = "1500ms";

/// Our failure reason for each case that fails.
fn our_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "length-down" | "close-down" => "body_matches",
        "length-not-up" | "redirect-to-down" => "body_not_matches",
        "big-1kib" | "big-limit-only" | "endless" | "big-default" => "body_too_large",
        "header-wrong" => "header_not_matches",
        "header-matches" => "header_matches",
        "header-missing" => "header_missing",
        "500-down" => "status_code",
        "trickle" => "timeout",
        _ => return None,
    })
}

#[test]
fn body_and_header_checks_agree_with_blackbox() {
    let peer = peer();
    let url = |path: &str| format!("http://{peer}{path}");
    let mut config =
        format!("defaults:\n  timeout: {TIMEOUT}\n  valid_status_codes: [200]\ntargets:\n");
    let mut modules = String::new();
    for c in CASES {
        config.push_str(&format!(
            "  - {{url: '{}', name: {}, {}}}\n",
            url(c.path),
            c.name,
            c.keys
        ));
        modules.push_str(&format!(
            "  {}:\n    prober: http\n    timeout: {TIMEOUT}\n    http: {{{}}}\n",
            c.name, c.keys
        ));
    }
    // Without body_size_limit, our default (1 MiB) applies, where blackbox has none.
    config.push_str(&format!(
        "  - {{url: '{}', name: big-default, fail_if_body_not_matches_regexp: ['UP$']}}\n",
        url("/big")
    ));
    modules.push_str(
        "  big-default:\n    prober: http\n    http: {fail_if_body_not_matches_regexp: ['UP$']}\n",
    );
    // And a plain target: no checks, no series of theirs.
    config.push_str(&format!(
        "  - {{url: '{}', name: plain}}\n",
        url("/endless")
    ));

    let exporter = Exporter::start(&config, &[]);
    let started = Instant::now();
    let ours = exporter.scrape(Some(10.0));
    // The endless and trickling bodies end at the limit and the deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let blackbox = Blackbox::start(&modules);
    let mut report = Vec::new();
    for c in CASES {
        let labels = [("name", c.name)];
        let our_success = sample(&ours, "probe_success", &labels);
        let our_regex = sample(&ours, "probe_failed_due_to_regex", &labels);
        let theirs = blackbox.probe(&url(c.path), c.name, &[]);
        let their_success = sample(&theirs, "probe_success", &[]);
        let their_regex = sample(&theirs, "probe_failed_due_to_regex", &[]);
        let our_length = sample(&ours, "probe_http_uncompressed_body_length", &labels);
        let their_length = sample(&theirs, "probe_http_uncompressed_body_length", &[]);
        report.push(format!(
            "{:24} success/regex: ours {our_success:?}/{our_regex:?} blackbox \
             {their_success:?}/{their_regex:?}; body length: ours {our_length:?} blackbox \
             {their_length:?}",
            c.name
        ));
        assert_eq!(
            our_success,
            Some(f64::from(c.success)),
            "{}\n{ours}",
            c.name
        );
        assert_eq!(our_regex, Some(f64::from(c.regex)), "{}\n{ours}", c.name);
        assert_eq!(
            their_success, our_success,
            "blackbox on {}:\n{theirs}",
            c.name
        );
        assert_eq!(their_regex, our_regex, "blackbox on {}:\n{theirs}", c.name);
        let reason = ours
            .lines()
            .find(|l| {
                l.starts_with("probe_failure_reason{")
                    && l.contains(&format!("name=\"{}\"", c.name))
            })
            .map(|l| {
                l.split("reason=\"")
                    .nth(1)
                    .unwrap_or_default()
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
        assert_eq!(reason.as_deref(), our_reason(c.name), "{}", c.name);
        // Where a body was read, both count the same bytes of it (decoded, up to the limit);
        // a body cut by the deadline counts what the trickle had sent by then, on either side.
        if our_length.is_some() && c.name != "trickle" {
            assert_eq!(our_length, their_length, "{}", c.name);
        }
    }
    eprintln!("{}", report.join("\n"));
    // The limit: what is held stops there.
    for (name, limit) in [
        ("big-1kib", 1024.0),
        ("endless", 65536.0),
        ("big-default", 1048576.0),
    ] {
        let got = sample(
            &ours,
            "probe_http_uncompressed_body_length",
            &[("name", name)],
        );
        assert_eq!(got, Some(limit), "{name}");
    }
    let big = [("name", "big-default")];
    assert_eq!(sample(&ours, "probe_success", &big), Some(0.0));
    let theirs = blackbox.probe(&url("/big"), "big-default", &[]);
    assert_eq!(sample(&theirs, "probe_success", &[]), Some(1.0), "{theirs}");
    // The deadline ends the trickle (1.5 s), and the limit the endless body, well before it.
    let duration = |name| sample(&ours, "probe_duration_seconds", &[("name", name)]).unwrap();
    assert!(
        (1.4..2.0).contains(&duration("trickle")),
        "{}",
        duration("trickle")
    );
    assert!(duration("endless") < 1.0, "{}", duration("endless"));
    // The plain probe reads the status line only: no body, no checks.
    let plain = [("name", "plain")];
    assert_eq!(sample(&ours, "probe_success", &plain), Some(1.0));
    assert_eq!(sample(&ours, "probe_failed_due_to_regex", &plain), None);
    assert_eq!(
        sample(&ours, "probe_http_uncompressed_body_length", &plain),
        None
    );
    assert!(duration("plain") < 0.5, "{}", duration("plain"));

    // The trace shows the head and how much body was read; `check` names the pattern.
    let r = http(
        exporter.addr,
        "GET",
        "/probe?target=length-down&debug=true",
        &[],
    );
    assert!(
        r.body
            .contains("head: Content-Type: application/json; X-Version: 2.1"),
        "{}",
        r.body
    );
    assert!(r.body.contains("body: 17 bytes read"), "{}", r.body);
    assert!(!r.body.contains("\"DOWN\"}"), "{}", r.body);
    assert!(
        r.body
            .contains("body matched fail_if_body_matches_regexp \"DOWN\""),
        "{}",
        r.body
    );
    // The status page shows the reason and the pattern.
    let page = http(exporter.addr, "GET", "/", &[]).body;
    assert!(
        page.contains("header_missing: header X-Missing is missing"),
        "{page}"
    );
    assert!(
        page.contains("body_matches: body matched fail_if_body_matches_regexp &quot;DOWN&quot;")
            || page.contains("body_matches: body matched fail_if_body_matches_regexp \"DOWN\""),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yaml");
    std::fs::write(
        &file,
        format!(
            "targets:\n  - {{url: '{}', fail_if_header_not_matches: [{{header: X-Version, regexp: '^4'}}]}}\n",
            url("/up")
        ),
    )
    .unwrap();
    let out = Command::new(exporter_bin())
        .args(["check", "--config.file"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "header X-Version did not match fail_if_header_not_matches \"^4\" (2 values)"
        ),
        "{text}"
    );
    assert!(text.contains("header_not_matches"), "{text}");
}
