//! The targets file loader, both formats: any text is a config or an error with a place,
//! never a panic, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match http_status_exporter::config::parse(std::path::Path::new("fuzz.yml"), text) {
        Ok(c) => assert!(c.targets.len() <= text.len()),
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "{e}"),
    }
});
