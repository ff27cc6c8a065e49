//! The status-line and interim-response parser: any bytes, split anywhere, give the same
//! answer, and never a panic.
#![no_main]

use http_status_exporter::probe::status::{HeadParser, Step};
use libfuzzer_sys::fuzz_target;

/// Feed `input` in pieces cut at `cuts`, as reads from a socket would arrive.
fn feed(input: &[u8], cuts: &[usize]) -> Option<String> {
    let mut parser = HeadParser::new();
    let mut buf = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        match parser.advance(&buf) {
            Ok(Step::Done(s)) => return Some(format!("ok {s:?}")),
            Ok(Step::NeedMore { consumed }) => {
                buf.drain(..consumed);
            }
            Err(e) => return Some(format!("err {e}")),
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = match data.split_first() {
        Some((&n, rest)) => {
            let n = usize::from(n % 8);
            let cuts: Vec<usize> = rest.iter().take(n).map(|&b| usize::from(b)).collect();
            (cuts, &rest[n.min(rest.len())..])
        }
        None => (Vec::new(), data),
    };
    let whole = feed(input, &[]);
    let mut sorted = cuts.clone();
    sorted.sort_unstable();
    let split = feed(input, &sorted);
    // However the bytes are split, the answer is the same (or still incomplete).
    assert_eq!(whole, split, "{input:?} split at {sorted:?}");
});
