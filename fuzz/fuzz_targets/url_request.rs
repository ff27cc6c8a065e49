//! A URL to request bytes: an accepted URL always makes a well-formed request with no
//! injected line.
#![no_main]

use http_status_exporter::probe_url::parse_url;
use http_status_exporter::request::{Hop, Method, RequestForm, RequestSpec, build_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = parse_url(text) else {
        return;
    };
    let request = build_head(
        &url,
        &RequestSpec::bare(Method::GET),
        RequestForm::Origin,
        Hop::FIRST,
    );
    let request = std::str::from_utf8(&request).expect("requests are text");
    let lines: Vec<&str> = request.split("\r\n").collect();
    assert!(
        lines[0].starts_with("GET /") && lines[0].ends_with(" HTTP/1.1"),
        "{request:?}"
    );
    assert!(request.ends_with("\r\n\r\n"));
    // Request line, Host, User-Agent, Connection, then the blank line that ends the head.
    assert_eq!(lines.len(), 6, "{request:?}");
    assert!(
        !request.contains('\n') || request.matches('\n').count() == request.matches("\r\n").count()
    );
});
