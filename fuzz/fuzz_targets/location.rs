//! A redirect's head: the header scan gives one verdict however the bytes are split, and a
//! `Location` it finds leads either nowhere or to a well-formed next request.
#![no_main]

use http_status_exporter::probe::status::{Headers, scan_headers};
use http_status_exporter::probe_url::{parse_url, redirect_target};
use http_status_exporter::request::{Hop, Method, RequestForm, RequestSpec, build_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, head)) = data.split_first() else {
        return;
    };
    let verdict = scan_headers(head);
    // A prefix is never a different verdict: it needs more, or it ended (or failed) already.
    let prefix = scan_headers(&head[..usize::from(cut).min(head.len())]);
    match (&prefix, &verdict) {
        (Ok(Headers::NeedMore { .. }), _) => {}
        (p, v) => assert_eq!(p, v, "{head:?} cut at {cut}"),
    }
    let Ok(Headers::Location { start, end }) = verdict else {
        return;
    };
    assert!(start <= end && end <= head.len());
    let location = std::str::from_utf8(&head[start..end]).expect("a usable Location is UTF-8");
    let base = parse_url("https://example.test:8443/a/b?q=1").expect("a valid base");
    let Some(next) = redirect_target(&base, location) else {
        return;
    };
    let spec = RequestSpec::bare(Method::GET);
    let hop = Hop {
        same_origin: false,
        keep_method: false,
    };
    for form in [RequestForm::Origin, RequestForm::Absolute(None)] {
        let request = build_head(&next, &spec, form, hop);
        let request = std::str::from_utf8(&request).expect("requests are text");
        assert!(request.ends_with("\r\n\r\n"), "{request:?}");
        // Request line, Host, User-Agent, Connection, then the blank line that ends the head.
        let lines: Vec<&str> = request.split("\r\n").collect();
        assert_eq!(lines.len(), 6, "{request:?}");
        assert!(
            lines.iter().all(|l| !l.contains(['\r', '\n'])),
            "{request:?}"
        );
        assert!(
            lines[0].ends_with(" HTTP/1.1") && lines[0].matches(' ').count() == 2,
            "{request:?}"
        );
    }
});
