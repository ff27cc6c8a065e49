//! Body and header checks, with blackbox_exporter's keys: `fail_if_body_matches_regexp`,
//! `fail_if_body_not_matches_regexp`, `fail_if_header_matches`, `fail_if_header_not_matches`,
//! `body_size_limit` and `compression`. Each value is checked while it is decoded, so that a bad
//! pattern is an error at its place in the file.
//!
//! Patterns are compiled with the `regex` crate: its matching takes time linear in the input,
//! so no pattern and no body can make a probe hang. The judgement follows blackbox_exporter's
//! `prober/http.go`: every value of a repeated header is checked, a missing header fails the
//! check unless `allow_missing`, and the body is judged decompressed, within its limit.
//!
//! Imports only [`crate::outcome`] and [`crate::peer_text`].

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::outcome::FailureReason;

/// The body a target reads at most when it sets no `body_size_limit`: blackbox_exporter has no
/// limit by default, and here there is always one.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// The largest `body_size_limit` accepted: the whole of [`BODY_BUDGET`].
pub const MAX_BODY_LIMIT: u64 = BODY_BUDGET as u64;

/// Bytes of bodies every probe of the process holds at most together. A probe that needs more
/// room waits (within its deadline) until others hand theirs back.
pub const BODY_BUDGET: usize = 256 << 20;

/// Compiled program size allowed for one pattern (the `regex` crate's default is 10 MiB).
const PATTERN_SIZE: usize = 1 << 20;

/// Most patterns in one list.
const MAX_PATTERNS: usize = 64;

/// A regular expression, compiled at load, matched against bytes.
#[derive(Clone)]
pub struct Pattern {
    /// The compiled expression.
    regex: regex::bytes::Regex,
}

impl Pattern {
    /// Compile `source`, or say why it cannot be.
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::bytes::RegexBuilder::new(source)
            .size_limit(PATTERN_SIZE)
            .build()
            .map(|regex| Pattern { regex })
            .map_err(|e| {
                let why = match e {
                    regex::Error::Syntax(s) => s
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                        .to_owned(),
                    regex::Error::CompiledTooBig(n) => {
                        format!("it compiles to more than {n} bytes")
                    }
                    other => other.to_string(),
                };
                format!("invalid regular expression {source:?}: {why}")
            })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the pattern matches anywhere in `bytes`.
    pub fn is_match(&self, bytes: &[u8]) -> bool {
        self.regex.is_match(bytes)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(de::Error::custom)
    }
}

/// A list of patterns (`fail_if_body_matches_regexp`, `fail_if_body_not_matches_regexp`),
/// shared by every target that inherits it.
#[derive(Debug, Clone, Default)]
pub struct Patterns(pub Arc<[Pattern]>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = bounded_list::<D, Pattern>(d, "regular expressions")?;
        Ok(Patterns(list.into()))
    }
}

/// Decode a list of at most [`MAX_PATTERNS`] entries, each where it stands.
fn bounded_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    what: &'static str,
) -> Result<Vec<T>, D::Error> {
    /// The list.
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of {}", self.0)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element()? {
                if out.len() == MAX_PATTERNS {
                    return Err(de::Error::custom(format!(
                        "more than {MAX_PATTERNS} {}",
                        self.0
                    )));
                }
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(what, std::marker::PhantomData))
}

/// A header name, checked to be an HTTP token.
#[derive(Debug, Clone)]
struct HeaderName(String);

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if s.is_empty() || !s.bytes().all(token) {
            return Err(de::Error::custom(format!("invalid header name {s:?}")));
        }
        Ok(HeaderName(s))
    }
}

/// One entry of `fail_if_header_matches` or `fail_if_header_not_matches`.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// The header's name, matched case-insensitively.
    pub header: String,
    /// The pattern each value is matched against.
    pub regexp: Pattern,
    /// A missing header passes the check instead of failing it.
    pub allow_missing: bool,
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The mapping as written.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            /// The header's name.
            header: HeaderName,
            /// The pattern.
            regexp: Pattern,
            /// Whether a missing header passes.
            #[serde(default)]
            allow_missing: bool,
        }
        let Raw {
            header,
            regexp,
            allow_missing,
        } = Raw::deserialize(d)?;
        Ok(HeaderMatch {
            header: header.0,
            regexp,
            allow_missing,
        })
    }
}

/// A list of header checks, shared by every target that inherits it.
#[derive(Debug, Clone, Default)]
pub struct HeaderMatches(pub Arc<[HeaderMatch]>);

impl<'de> Deserialize<'de> for HeaderMatches {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = bounded_list::<D, HeaderMatch>(d, "header checks")?;
        Ok(HeaderMatches(list.into()))
    }
}

/// `body_size_limit`: bytes, written as blackbox_exporter (Prometheus' `units.Base2Bytes`)
/// writes them: `512B`, `1KiB`, `5MB` (base 2: `KB` and `KiB` are both 1,024), `1.5MiB`,
/// `1MiB512KiB`; or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A string with units, or a number of bytes.
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 512B, 64KiB or 5MB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                let n = parse_size(v).map_err(|e| E::custom(format!("body_size_limit: {e}")))?;
                checked_limit(n).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                checked_limit(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                match u64::try_from(v) {
                    Ok(v) => checked_limit(v).map_err(E::custom),
                    Err(_) => Err(E::custom(format!(
                        "body_size_limit: {v} (no limit in blackbox_exporter) is not accepted: \
                         a body is read only within a limit, at most {}",
                        show_size(MAX_BODY_LIMIT)
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A limit of `n` bytes, within what this exporter accepts.
fn checked_limit(n: u64) -> Result<ByteSize, String> {
    if n == 0 {
        return Err(format!(
            "body_size_limit: 0 (no limit in blackbox_exporter) is not accepted: a body is read \
             only within a limit, at most {}",
            show_size(MAX_BODY_LIMIT)
        ));
    }
    if n > MAX_BODY_LIMIT {
        return Err(format!(
            "body_size_limit: {n} bytes is more than {}, the bodies all probes hold together",
            show_size(MAX_BODY_LIMIT)
        ));
    }
    Ok(ByteSize(n))
}

/// `n` bytes for people: `1 MiB`, `512 KiB`, `100 bytes`.
pub fn show_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Parse a size as Prometheus' `units.ParseBase2Bytes` does: one or more `<number><unit>`
/// elements (a number may have a fraction), the units `B`, `KiB`, `MiB`, `GiB`, `TiB`, `PiB`,
/// `EiB`, or else all of `B`, `KB`, `MB`, ... (the same base-2 values); `0` alone is zero. A
/// sign is refused (a negative limit means none in blackbox_exporter, which is not accepted
/// here).
pub fn parse_size(s: &str) -> Result<u64, String> {
    const NEW: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    const OLD: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    parse_units(s, &NEW).or_else(|first| parse_units(s, &OLD).map_err(|_| first))
}

/// [`parse_size`] with one set of units, the i-th worth 1024^i.
fn parse_units(s: &str, units: &[&str; 7]) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?}: expected a number and a unit, like 64KiB or 5MB");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let Some(power) = units.iter().position(|u| *u == unit) else {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?}: use B, KiB, MiB, GiB (or KB, MB, GB: \
                 the same)"
            ));
        };
        let scale = (1u64 << (10 * power)) as f64;
        total += value * scale;
        rest = next;
    }
    if total >= 18_446_744_073_709_551_616.0 {
        return Err(format!("size {s:?} is too large"));
    }
    // Truncated as blackbox_exporter truncates it.
    Ok(total as u64)
}

/// `compression`: how the body is decoded before it is checked. blackbox_exporter's values;
/// `br` is refused at load, since this exporter cannot decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No decoding (`identity`, or no key).
    #[default]
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Raw DEFLATE (RFC 1951), as blackbox_exporter (Go's `compress/flate`) reads `deflate`.
    Deflate,
}

impl Compression {
    /// The `Accept-Encoding` a request sends for this compression, if any.
    pub fn accept_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Identity => None,
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
        }
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Compression::Identity),
            "gzip" => Ok(Compression::Gzip),
            "deflate" => Ok(Compression::Deflate),
            "br" => Err(de::Error::custom(
                "compression: \"br\" (brotli) cannot be decoded by this exporter: use gzip, \
                 deflate or identity",
            )),
            _ => Err(de::Error::custom(format!(
                "compression: unknown compression {s:?}: expected gzip, deflate or identity"
            ))),
        }
    }
}

/// Whether an `Accept-Encoding` value written in `headers` accepts `encoding`, as
/// blackbox_exporter requires when both are set: it must be among the codings listed (`*`
/// counts), and not with `q=0`.
pub fn accepts(accept_encoding: &str, encoding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut pieces = part.split(';');
        let coding = pieces.next().unwrap_or_default().trim();
        let refused = pieces.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case(encoding) || coding == "*") && !refused
    })
}

/// A target's checks, built at load; a target without any has none (`None` in
/// [`crate::target::Target`]), and its probe reads only the status line.
#[derive(Debug, Clone)]
pub struct Checks {
    /// `fail_if_body_matches_regexp`.
    pub body_matches: Patterns,
    /// `fail_if_body_not_matches_regexp`.
    pub body_not_matches: Patterns,
    /// `fail_if_header_matches`.
    pub header_matches: HeaderMatches,
    /// `fail_if_header_not_matches`.
    pub header_not_matches: HeaderMatches,
    /// The most body bytes held, decoded.
    pub limit: u64,
    /// How the body is decoded.
    pub compression: Compression,
    /// Whether the body is read: a body check is set, or `body_size_limit` or `compression`
    /// (which, as in blackbox_exporter, fail an answer over the limit or not decodable).
    pub reads_body: bool,
}

/// Why a check failed: the reason, and the detail that names the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// The failure reason.
    pub reason: FailureReason,
    /// What failed, for people.
    pub detail: String,
}

impl CheckFailure {
    /// A failure of `reason`.
    fn new(reason: FailureReason, detail: String) -> CheckFailure {
        CheckFailure { reason, detail }
    }
}

impl Checks {
    /// Whether any header check is set.
    pub fn has_header_checks(&self) -> bool {
        !self.header_matches.0.is_empty() || !self.header_not_matches.0.is_empty()
    }

    /// Whether any header check or body pattern is set: the target reports
    /// `probe_failed_due_to_regex`.
    pub fn has_regexps(&self) -> bool {
        self.has_header_checks() || self.has_body_checks()
    }

    /// Whether any body pattern is set.
    pub fn has_body_checks(&self) -> bool {
        !self.body_matches.0.is_empty() || !self.body_not_matches.0.is_empty()
    }

    /// Judge the header lines of `head` (the lines after the status line, each ending in a
    /// line feed) as blackbox_exporter does: for `fail_if_header_matches`, any value that
    /// matches fails; for `fail_if_header_not_matches`, none matching fails; either way a
    /// missing header fails unless `allow_missing`.
    pub fn judge_headers(&self, head: &[u8]) -> Result<(), CheckFailure> {
        for m in self.header_matches.0.iter() {
            let values = header_values(head, &m.header);
            if values.is_empty() {
                missing(m)?;
                continue;
            }
            if let Some(v) = values.iter().find(|v| m.regexp.is_match(v)) {
                return Err(CheckFailure::new(
                    FailureReason::HeaderMatches,
                    format!(
                        "header {} matched fail_if_header_matches {:?} ({})",
                        m.header,
                        m.regexp.as_str(),
                        quoted(v)
                    ),
                ));
            }
        }
        for m in self.header_not_matches.0.iter() {
            let values = header_values(head, &m.header);
            if values.is_empty() {
                missing(m)?;
                continue;
            }
            if !values.iter().any(|v| m.regexp.is_match(v)) {
                return Err(CheckFailure::new(
                    FailureReason::HeaderNotMatches,
                    format!(
                        "header {} did not match fail_if_header_not_matches {:?} ({} value{})",
                        m.header,
                        m.regexp.as_str(),
                        values.len(),
                        if values.len() == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Judge a whole body, decoded, as blackbox_exporter does: the first
    /// `fail_if_body_matches_regexp` that matches fails, then the first
    /// `fail_if_body_not_matches_regexp` that does not.
    pub fn judge_body(&self, body: &[u8]) -> Result<(), CheckFailure> {
        if let Some(p) = self.body_matches.0.iter().find(|p| p.is_match(body)) {
            return Err(CheckFailure::new(
                FailureReason::BodyMatches,
                format!("body matched fail_if_body_matches_regexp {:?}", p.as_str()),
            ));
        }
        if let Some(p) = self.body_not_matches.0.iter().find(|p| !p.is_match(body)) {
            return Err(CheckFailure::new(
                FailureReason::BodyNotMatches,
                format!(
                    "body did not match fail_if_body_not_matches_regexp {:?}",
                    p.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// The failure of a header check whose header is missing, unless it allows that.
fn missing(m: &HeaderMatch) -> Result<(), CheckFailure> {
    if m.allow_missing {
        return Ok(());
    }
    Err(CheckFailure::new(
        FailureReason::HeaderMissing,
        format!(
            "header {} is missing (the check {:?} does not allow_missing)",
            m.header,
            m.regexp.as_str()
        ),
    ))
}

/// A header value as a detail shows it: printable, quoted.
fn quoted(v: &[u8]) -> String {
    crate::peer_text::printable(&format!("{:?}", String::from_utf8_lossy(v)))
}

/// Every value of header `name` (case-insensitive) among the lines of `head`, in order, with
/// the whitespace around each value trimmed, as Go's `textproto` reads them. A line that
/// starts with a space or tab continues the value before it (obsolete line folding), and is
/// joined to it with a space.
pub fn header_values(head: &[u8], name: &str) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut current = false;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if current && let Some(last) = values.last_mut() {
                let more = line.trim_ascii();
                if !more.is_empty() {
                    if !last.is_empty() {
                        last.push(b' ');
                    }
                    last.extend_from_slice(more);
                }
            }
            continue;
        }
        current = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            values.push(line[colon + 1..].trim_ascii().to_vec());
            current = true;
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(yaml: &str) -> Checks {
        /// The keys of the checks, as a block of settings writes them.
        #[derive(Deserialize)]
        struct Block {
            #[serde(default)]
            fail_if_body_matches_regexp: Patterns,
            #[serde(default)]
            fail_if_body_not_matches_regexp: Patterns,
            #[serde(default)]
            fail_if_header_matches: HeaderMatches,
            #[serde(default)]
            fail_if_header_not_matches: HeaderMatches,
        }
        let b: Block = serde_yaml::from_str(yaml).unwrap();
        Checks {
            body_matches: b.fail_if_body_matches_regexp,
            body_not_matches: b.fail_if_body_not_matches_regexp,
            header_matches: b.fail_if_header_matches,
            header_not_matches: b.fail_if_header_not_matches,
            limit: DEFAULT_BODY_LIMIT,
            compression: Compression::Identity,
            reads_body: true,
        }
    }

    #[test]
    fn sizes_parse_as_blackbox_parses_them() {
        for (s, n) in [
            ("0", 0),
            ("1B", 1),
            ("512B", 512),
            ("1KiB", 1024),
            ("1KB", 1024),
            ("5MB", 5 << 20),
            ("5MiB", 5 << 20),
            ("1.5MiB", 3 << 19),
            ("1MiB512KiB", 3 << 19),
            ("2GB", 2 << 30),
            (".5KiB", 512),
            ("1.KiB", 1024),
            ("0.3B", 0),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in [
            "",
            "1",
            "KiB",
            "1kB",
            "1 KiB",
            "-1KiB",
            "+1KiB",
            "1KiB1KB",
            "1..5KiB",
            ".KiB",
            "1XB",
            "99999999999EiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_size("1kB")
                .unwrap_err()
                .contains("invalid size \"1kB\": unknown unit \"kB\""),
        );
    }

    #[test]
    fn limits_are_bounded_and_never_off() {
        let limit = |y: &str| serde_yaml::from_str::<ByteSize>(y).map(|b| b.0);
        assert_eq!(limit("1KiB").unwrap(), 1024);
        assert_eq!(limit("2048").unwrap(), 2048);
        assert!(
            limit("0")
                .unwrap_err()
                .to_string()
                .contains("is not accepted")
        );
        assert!(
            limit("-1")
                .unwrap_err()
                .to_string()
                .contains("-1 (no limit")
        );
        assert!(limit("257MiB").unwrap_err().to_string().contains("256 MiB"));
        assert!(
            limit("1kB")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
    }

    #[test]
    fn compressions_are_blackboxs_and_brotli_is_refused() {
        let c = |y: &str| serde_yaml::from_str::<Compression>(y);
        assert_eq!(c("gzip").unwrap(), Compression::Gzip);
        assert_eq!(c("GZIP").unwrap(), Compression::Gzip);
        assert_eq!(c("deflate").unwrap(), Compression::Deflate);
        assert_eq!(c("identity").unwrap(), Compression::Identity);
        assert!(c("br").unwrap_err().to_string().contains("brotli"));
        assert!(
            c("zstd")
                .unwrap_err()
                .to_string()
                .contains("unknown compression")
        );
        assert!(accepts("br, gzip;q=0.9", "gzip"));
        assert!(accepts("*", "deflate"));
        assert!(!accepts("br", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
    }

    #[test]
    fn a_bad_pattern_says_why() {
        let e = Pattern::new("a(b").unwrap_err();
        assert!(e.starts_with("invalid regular expression \"a(b\": "), "{e}");
        assert!(e.contains("unclosed group"), "{e}");
        // Too big a program is refused, not compiled.
        assert!(Pattern::new("\\w{1000}\\w{1000}").is_err());
    }

    #[test]
    fn where_the_syntax_differs_from_gos_it_is_as_the_readme_says() {
        let p = |s: &str| Pattern::new(s).unwrap();
        // Unicode classes, and the ASCII ones Go has by default.
        assert!(p("^\\d$").is_match("٣".as_bytes()));
        assert!(!p("^[0-9]$").is_match("٣".as_bytes()));
        assert!(!p("^(?-u:\\w)$").is_match("é".as_bytes()));
        // `.` and bytes that are not UTF-8.
        assert!(!p("^.$").is_match(b"\xff"));
        assert!(p("^(?-u:.)$").is_match(b"\xff"));
        // Go's \Q...\E is refused; set operations and (?x) are accepted.
        assert!(Pattern::new("\\Qa.b\\E").is_err());
        assert!(p("^[a-z&&[^x]]$").is_match(b"a") && !p("^[a-z&&[^x]]$").is_match(b"x"));
        assert!(p("(?x) a b # comment").is_match(b"ab"));
    }

    #[test]
    fn headers_are_judged_as_blackbox_judges_them() {
        let head = b"Content-Type: text/plain\r\nX-Version: 1.2\r\nx-version: 2.0\r\n\r\nnot: a header\r\n";
        let c = checks("fail_if_header_matches: [{header: X-VERSION, regexp: '^1\\.'}]\n");
        let f = c.judge_headers(head).unwrap_err();
        assert_eq!(f.reason, FailureReason::HeaderMatches);
        assert!(
            f.detail.contains("\"^1\\\\.\"") && f.detail.contains("1.2"),
            "{}",
            f.detail
        );
        // Not matches: any value that matches passes.
        let c = checks("fail_if_header_not_matches: [{header: x-version, regexp: '^2'}]\n");
        assert!(c.judge_headers(head).is_ok());
        let c = checks("fail_if_header_not_matches: [{header: x-version, regexp: '^3'}]\n");
        let f = c.judge_headers(head).unwrap_err();
        assert_eq!(f.reason, FailureReason::HeaderNotMatches);
        assert!(f.detail.contains("2 values"), "{}", f.detail);
        // Missing, and allowed to be; a line after the head is not a header.
        let c = checks("fail_if_header_matches: [{header: Not, regexp: a}]\n");
        assert_eq!(
            c.judge_headers(head).unwrap_err().reason,
            FailureReason::HeaderMissing
        );
        let c =
            checks("fail_if_header_not_matches: [{header: Not, regexp: a, allow_missing: true}]\n");
        assert!(c.judge_headers(head).is_ok());
        // Values are trimmed, and folded lines join.
        let folded = b"X-A:  one\r\n two \r\nX-B:\t\r\n\r\n";
        assert_eq!(header_values(folded, "x-a"), [b"one two".to_vec()]);
        assert_eq!(header_values(folded, "X-B"), [Vec::<u8>::new()]);
    }

    #[test]
    fn bodies_are_judged_in_order() {
        let c = checks(
            "fail_if_body_matches_regexp: ['DOWN', '(?i)error']\nfail_if_body_not_matches_regexp: ['\"status\"']\n",
        );
        assert!(c.judge_body(b"{\"status\": \"UP\"}").is_ok());
        let f = c.judge_body(b"{\"status\": \"DOWN\"}").unwrap_err();
        assert_eq!(f.reason, FailureReason::BodyMatches);
        assert_eq!(
            f.detail,
            "body matched fail_if_body_matches_regexp \"DOWN\""
        );
        let f = c.judge_body(b"ok").unwrap_err();
        assert_eq!(f.reason, FailureReason::BodyNotMatches);
        assert_eq!(
            c.judge_body(b"An ERROR").unwrap_err().reason,
            FailureReason::BodyMatches
        );
        // Bytes that are not UTF-8 are matched too.
        let c = checks("fail_if_body_not_matches_regexp: ['ok$']\n");
        assert!(c.judge_body(b"\xff\xfe ok").is_ok());
    }
}
