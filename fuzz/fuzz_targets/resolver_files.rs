//! `resolv.conf` and hosts files: any text is settings or an error with a place.
#![no_main]

use http_status_exporter::dns::conf::{parse_hosts, parse_resolv_conf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = parse_resolv_conf(std::path::Path::new("resolv.conf"), text) {
        assert!(!c.nameservers.is_empty() && c.nameservers.len() <= 3);
        assert!(c.attempts >= 1 && c.ndots <= 15);
    }
    let hosts = parse_hosts(text);
    assert!(hosts.len() <= text.len());
});
