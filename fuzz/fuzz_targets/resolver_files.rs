//! `resolv.conf` and hosts files: any text is settings within glibc's bounds, with warnings
//! that point into it.
#![no_main]

use http_status_exporter::dns::conf::{parse_hosts, parse_resolv_conf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (c, warnings) = parse_resolv_conf(std::path::Path::new("resolv.conf"), text);
    assert!(!c.nameservers.is_empty() && c.nameservers.len() <= 3);
    assert!(c.attempts <= 5 && c.ndots <= 15);
    assert!((1..=30).contains(&c.timeout.as_secs()));
    let lines = text.lines().count();
    assert!(warnings.iter().all(|w| w.line >= 1 && w.line <= lines));
    let hosts = parse_hosts(text);
    assert!(hosts.len() <= text.len());
});
