//! DNS answers off the wire: any bytes are an answer or a refusal, never a panic or a loop.
#![no_main]

use http_status_exporter::dns::wire::{TYPE_A, TYPE_AAAA, parse_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for qtype in [TYPE_A, TYPE_AAAA] {
        if let Ok(a) = parse_answer(data, 0x1234, "www.example.test", qtype) {
            assert!(a.addrs.len() <= data.len() / 4);
        }
    }
});
