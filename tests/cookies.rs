//! `cookies: true` against a real nginx: the cookies a redirect sets are sent on the following
//! requests of the same probe whose host and path they match, and only then; compared with
//! blackbox_exporter 0.23 (whose Go HTTP client keeps a cookie jar per probe) on the same
//! chains.

mod common;

use common::blackbox::Blackbox;
use common::*;

/// Chains that set a cookie and land on `/home` (or `/both`), which answers 200 only with it.
const LOCATIONS: &str = r#"
        absolute_redirect off;
        location = /login { add_header Set-Cookie "session=abc; Path=/"; return 302 /home; }
        location = /login-other { add_header Set-Cookie "session=abc; Path=/other"; return 302 /home; }
        location = /login-secure { add_header Set-Cookie "session=abc; Path=/; Secure"; return 302 /home; }
        location = /login-elsewhere { add_header Set-Cookie "session=abc; Path=/"; return 302 http://localhost:{port}/home; }
        location = /login-logout { add_header Set-Cookie "session=abc; Path=/"; return 302 /logout; }
        location = /logout { add_header Set-Cookie "session=; Path=/; Max-Age=0"; return 302 /home; }
        location = /login-both { add_header Set-Cookie "session=abc; Path=/"; return 302 /both; }
        location = /home { if ($cookie_session = "abc") { return 200; } return 403; }
        location = /both { if ($http_cookie = "conf=1; session=abc") { return 200; } return 403; }
"#;

/// Our exporter's `/probe` answer for the target named `name`.
fn probe_ours(exporter: &Exporter, name: &str) -> String {
    let path = format!("/probe?target={}", url_encode(name));
    let r = http(exporter.addr, "GET", &path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

#[test]
fn cookies_set_by_a_redirect_are_sent_where_they_match_as_blackbox_does() {
    let nginx = Nginx::start_with(&[], LOCATIONS);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", nginx.port);
    // (target name, path, cookies, configured Cookie header, final code, redirects)
    let cases: &[(&str, &str, bool, bool, f64, f64)] = &[
        ("login", "/login", true, false, 200.0, 1.0),
        ("login-without-cookies", "/login", false, false, 403.0, 1.0),
        ("path-other", "/login-other", true, false, 403.0, 1.0),
        ("secure-over-http", "/login-secure", true, false, 403.0, 1.0),
        (
            "host-only-elsewhere",
            "/login-elsewhere",
            true,
            false,
            403.0,
            1.0,
        ),
        ("deleted", "/login-logout", true, false, 403.0, 2.0),
        (
            "with-configured-cookie",
            "/login-both",
            true,
            true,
            200.0,
            1.0,
        ),
        // Nothing outlives a probe: the jars of the chains before are not this one's.
        ("home", "/home", true, false, 403.0, 0.0),
    ];
    let mut config = String::from("defaults:\n  follow_redirects: 3\ntargets:\n");
    for (name, path, cookies, configured, _, _) in cases {
        let headers = if *configured {
            ", headers: {Cookie: conf=1}"
        } else {
            ""
        };
        config.push_str(&format!(
            "  - {{url: '{}', name: {name}, cookies: {cookies}{headers}}}\n",
            url(path)
        ));
    }
    let exporter = Exporter::start(&config, &[]);
    let text = exporter.scrape(None);
    for (name, path, _, _, code, redirects) in cases {
        let target = url(path);
        let labels = [("target", target.as_str()), ("name", *name)];
        let got = sample(&text, "probe_http_status_code", &labels);
        assert_eq!(got, Some(*code), "{name}\n{text}");
        let hops = sample(&text, "probe_http_redirects", &labels);
        assert_eq!(hops, Some(*redirects), "{name}");
        let success = sample(&text, "probe_success", &labels);
        assert_eq!(success, Some(f64::from(*code == 200.0)), "{name}");
        if *code == 403.0 {
            let failed = text.lines().any(|l| {
                l.starts_with("probe_failure_reason{")
                    && l.contains(&format!("name=\"{name}\""))
                    && l.contains("reason=\"status_code\"")
                    && l.ends_with(" 1")
            });
            assert!(failed, "{name}: no status_code failure\n{text}");
        }
    }
    // After the chains that kept the cookie, a probe of /home alone still has none.
    let again = probe_ours(&exporter, "home");
    assert_eq!(sample(&again, "probe_http_status_code", &[]), Some(403.0));

    // blackbox_exporter 0.23 on the same chains: its client keeps a cookie jar within one
    // probe (there is no key to turn it off), and lands where ours does with `cookies: true`.
    let blackbox = Blackbox::start(
        "  follow:\n    prober: http\n    http:\n      follow_redirects: true\n  \
         configured:\n    prober: http\n    http:\n      headers: {Cookie: conf=1}\n",
    );
    for (name, path, cookies, configured, code, redirects) in cases {
        if !cookies {
            continue;
        }
        let module = if *configured { "configured" } else { "follow" };
        let theirs = blackbox.probe(&url(path), module, &[]);
        assert_eq!(
            sample(&theirs, "probe_http_status_code", &[]),
            Some(*code),
            "blackbox on {name}:\n{theirs}"
        );
        assert_eq!(
            sample(&theirs, "probe_http_redirects", &[]),
            Some(*redirects),
            "blackbox on {name}"
        );
    }
}
