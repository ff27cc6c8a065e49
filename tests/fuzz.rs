//! Property tests with thousands of cases: the status-line parser and the targets-file loader
//! never panic, and the parser gives the same answer however the bytes are split.

use std::path::Path;

use http_status_exporter::config;
use http_status_exporter::probe::status::{HeadParser, MAX_LINE, ParseError, Step};
use proptest::prelude::*;

/// Feed `input` in pieces cut at `cuts`, dropping consumed bytes like the probe does.
fn feed(input: &[u8], cuts: &[usize]) -> Result<Option<u16>, ParseError> {
    let mut parser = HeadParser::new();
    let mut buf = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut from = 0;
    for p in points {
        buf.extend_from_slice(&input[from..p]);
        from = p;
        match parser.advance(&buf)? {
            Step::Done(s) => return Ok(Some(s.code)),
            Step::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
        // The probe never holds a line longer than MAX_LINE.
        assert!(buf.len() < MAX_LINE);
    }
    Ok(None)
}

/// Bytes that look like responses more often than uniform noise would.
fn responseish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"HTTP/1.1 ".to_vec()),
        Just(b"HTTP/1.0 ".to_vec()),
        Just(b"HTTP/2 ".to_vec()),
        Just(b"100 Continue\r\n\r\n".to_vec()),
        Just(b"103 Early Hints\r\nLink: </a>\r\n\r\n".to_vec()),
        Just(b"200 OK\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"Header: v\r\n".to_vec()),
        "[0-9]{1,4}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parser_never_panics_and_ignores_how_bytes_are_split(
        input in prop_oneof![responseish(), proptest::collection::vec(any::<u8>(), 0..9000)],
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = feed(&input, &[]);
        let split = feed(&input, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    // Final codes only: interim 1xx codes other than 101 are skipped, not returned.
    fn valid_status_lines_parse(
        code in prop_oneof![Just(101u16), 200u16..600],
        reason in "[ -~]{0,40}",
        lf in any::<bool>(),
    ) {
        let end = if lf { "\n" } else { "\r\n" };
        let sep = if reason.is_empty() { "" } else { " " };
        let line = format!("HTTP/1.1 {code}{sep}{reason}{end}");
        prop_assert_eq!(feed(line.as_bytes(), &[]), Ok(Some(code)));
    }

    #[test]
    fn loader_never_panics_on_any_text(text in "\\PC{0,400}") {
        let _ = config::parse(Path::new("fuzz.yml"), &text);
    }

    #[test]
    fn loader_never_panics_on_yamlish_text(parts in proptest::collection::vec(prop_oneof![
        Just("targets:\n"), Just("defaults:\n"), Just("  - "), Just("  - url: "), Just("    name: "),
        Just("http://127.0.0.1:1/"), Just("https://[::1]:9/x?y"), Just("http://bücher.example/"),
        Just("    timeout: "), Just("5s"), Just("-1ms"), Just("    valid_status_codes: "),
        Just("[200, \"3xx\", \"400-404\"]"), Just("    headers: {X: y}"), Just("    labels: {a: b}"),
        Just("    tls_config: {ca_file: /nonexistent}"), Just("\n"), Just("{"), Just("]"),
        Just("- targets: ["), Just("&a "), Just("*a"), Just("!!binary "), Just("~"), Just(": "),
    ], 0..30)) {
        let text: String = parts.concat();
        let _ = config::parse(Path::new("fuzz.yml"), &text);
    }
}

/// Every input a fuzz campaign ever failed on (`fuzz/run.sh`), kept in
/// `tests/fuzz-regressions/TARGET/`, replayed the way that target's harness reads it.
#[test]
fn inputs_that_once_failed_a_fuzz_target_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/status_line");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        // The harness's layout: a count of cuts, the cut points, then the input.
        let (n, rest) = data.split_first().unwrap();
        let n = usize::from(n % 8);
        let cuts: Vec<usize> = rest.iter().take(n).map(|&b| usize::from(b)).collect();
        let input = &rest[n.min(rest.len())..];
        assert_eq!(
            feed(input, &[]),
            feed(input, &cuts),
            "{input:?} cut at {cuts:?}"
        );
        seen += 1;
    }
    assert!(seen >= 1);
    // The first one, reduced: garbage from the third byte, in a line longer than MAX_LINE.
    let mut line = b"HT\xff".to_vec();
    line.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
    line.push(b'\n');
    assert_eq!(feed(&line, &[]), Err(ParseError::NotHttp));
    assert_eq!(feed(&line, &[0, 16]), Err(ParseError::NotHttp));
}
