//! The web config loader (`--web.config.file`): any text is a config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = http_status_exporter::web::parse(std::path::Path::new("/nonexistent/web.yml"), text);
});
