//! The HTTP/1.x response-head reader: pure parsing, no IO.
//!
//! A probe feeds the bytes it has read so far to [`HeadParser::advance`]. The parser answers
//! "need more bytes", "here is the final status line", or "this is not an HTTP/1.x response".
//! Interim `1xx` responses (`100 Continue`, `103 Early Hints`, ...) and their header lines are
//! skipped. Garbage is rejected as early as the first byte that cannot start a status line, so a
//! peer speaking another protocol fails at once instead of at the deadline.

use crate::outcome::{HttpVersion, Reason, StatusLine, standard_reason};
use crate::request::is_tchar;

/// Longest line accepted, in bytes, line end included. A peer that sends more without a line
/// end is answering with something that is not an HTTP status line or header.
pub const MAX_LINE: usize = 4096;

/// Most bytes read after a final status line, when the header lines are read at all (to find
/// a redirect's `Location`, or the end of a proxy's answer to CONNECT). They are read one line
/// at a time: no more than [`MAX_LINE`] of them are held.
pub const MAX_HEAD: usize = 16 * 1024;

/// How many interim (1xx) responses may precede the final one.
pub const MAX_INTERIM: usize = 8;

/// Bytes accepted for all interim responses together, so that with the final status line a
/// probe reads at most `MAX_INTERIM_BYTES + MAX_LINE` bytes.
pub const MAX_INTERIM_BYTES: usize = 8 * 1024;

/// Why the bytes are not an HTTP/1.x response head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first bytes cannot start `HTTP/1.0` or `HTTP/1.1`.
    #[error("not an HTTP/1.x status line")]
    NotHttp,
    /// `HTTP/` followed by a version other than 1.0 or 1.1.
    #[error("unsupported HTTP version")]
    Version,
    /// The status code is not three digits from 100 to 599.
    #[error("malformed status code")]
    Code,
    /// Something other than a space, a reason phrase or a line end follows the code, or the
    /// reason phrase holds control characters.
    #[error("malformed status line")]
    Malformed,
    /// A line longer than [`MAX_LINE`] bytes.
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// More interim responses, or more bytes of them, than the limits allow.
    #[error("too many interim responses")]
    TooManyInterim,
    /// A header line of an interim response is not `name: value`.
    #[error("malformed header line in an interim response")]
    Header,
    /// The header lines of a response read whole (a proxy's answer to CONNECT), or read for a
    /// redirect's `Location`, go on for more than [`MAX_HEAD`] bytes.
    #[error("its head is longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    /// A redirect's `Location` line is longer than [`MAX_LINE`] bytes.
    #[error("its Location is longer than {MAX_LINE} bytes")]
    LocationTooLong,
}

/// What the parser needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Give me more bytes; `consumed` bytes at the front of the buffer are done with and may be
    /// dropped before the next call.
    NeedMore {
        /// Bytes at the front of the buffer that belonged to complete interim responses.
        consumed: usize,
    },
    /// The final status line was read completely.
    Done(StatusLine),
}

/// Where the parser is in the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next line is a status line.
    Status,
    /// Inside the header block of an interim response.
    InterimHeaders,
}

/// Incremental response-head parser. It keeps only counters; the caller owns the bytes.
#[derive(Debug, Clone)]
pub struct HeadParser {
    /// What the next complete line is.
    state: State,
    /// Interim responses seen so far.
    interim: usize,
    /// Bytes of interim responses consumed so far.
    interim_bytes: usize,
    /// Where the final status line ended in the last buffer given to `advance`.
    end: usize,
}

impl Default for HeadParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadParser {
    /// A parser expecting a status line first.
    pub fn new() -> Self {
        HeadParser {
            state: State::Status,
            interim: 0,
            interim_bytes: 0,
            end: 0,
        }
    }

    /// Once [`Step::Done`] was returned: the offset just past the final status line in the
    /// buffer of that call, where the response's header lines start.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Consume complete lines of `buf`. Returns the final status line once it is complete, or
    /// how many leading bytes are finished with. Errors as soon as the bytes cannot be HTTP/1.x.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Step, ParseError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            // A status line that cannot be one is refused for that before its length is
            // judged, so that the verdict is the same however the bytes were split.
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if self.state == State::Status {
                    check_prefix(rest)?;
                }
                if rest.len() >= MAX_LINE {
                    return Err(ParseError::TooLong);
                }
                return Ok(Step::NeedMore { consumed: pos });
            };
            if self.state == State::Status {
                check_prefix(&rest[..nl])?;
            }
            if nl + 1 > MAX_LINE {
                return Err(ParseError::TooLong);
            }
            let mut line = &rest[..nl];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            pos += nl + 1;
            match self.state {
                State::Status => {
                    let status = parse_status_line(line)?;
                    if (100..200).contains(&status.code) && status.code != 101 {
                        self.interim += 1;
                        self.interim_bytes += nl + 1;
                        if self.interim > MAX_INTERIM {
                            return Err(ParseError::TooManyInterim);
                        }
                        self.state = State::InterimHeaders;
                    } else {
                        self.end = pos;
                        return Ok(Step::Done(status));
                    }
                }
                State::InterimHeaders => {
                    self.interim_bytes += nl + 1;
                    if self.interim_bytes > MAX_INTERIM_BYTES {
                        return Err(ParseError::TooManyInterim);
                    }
                    if line.is_empty() {
                        self.state = State::Status;
                        continue;
                    }
                    check_header_line(line)?;
                }
            }
        }
    }
}

/// What a scan of the header lines after a final status line found, as far as they have
/// arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Headers {
    /// No verdict yet. `consumed` bytes at the front of the buffer are done with (complete
    /// header lines, or the part of an over-long line that is being skipped) and may be
    /// dropped before the next call.
    NeedMore {
        /// Bytes at the front of the buffer that are done with.
        consumed: usize,
    },
    /// A `Location` (when asked for): its value, trimmed, is `buf[start..end]`. The rest of the
    /// head is not needed.
    Location {
        /// Where the value starts in the buffer.
        start: usize,
        /// Where it ends.
        end: usize,
    },
    /// When cookies are collected too ([`HeaderScan::with_cookies`]): a field asked for, whose
    /// value, trimmed, is `buf[start..end]`. The scan goes on: bytes before `next` are done
    /// with and may be dropped before the next call.
    Field {
        /// Which field it is.
        field: Field,
        /// Where the value starts in the buffer.
        start: usize,
        /// Where it ends.
        end: usize,
        /// Where the next line starts.
        next: usize,
    },
    /// The blank line that ends the head is in, and no `Location` was asked for or found (or,
    /// when cookies are collected, every field asked for was reported).
    End {
        /// The offset just past the blank line: bytes from here on follow the head.
        end: usize,
    },
}

/// A header field a scan that collects cookies reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The first usable `Location`.
    Location,
    /// A non-empty `Set-Cookie`.
    SetCookie,
}

/// Scans the header lines after a final status line one at a time, for the first usable
/// `Location` or the blank line that ends the head; or, collecting cookies, for that
/// `Location` and every `Set-Cookie` up to the end of the head. The caller owns the bytes and
/// needs to hold only the line being read: a line longer than [`MAX_LINE`] (a cookie too
/// large to keep among them) is skipped as it arrives, never held whole. How many bytes a
/// head may have in all is the caller's to bound.
#[derive(Debug, Clone, Default)]
pub struct HeaderScan {
    /// Look for the first usable `Location` (and stop there, unless collecting cookies).
    location: bool,
    /// Report every `Set-Cookie` and the `Location` as [`Headers::Field`], up to the end.
    cookies: bool,
    /// Collecting cookies: the `Location` was reported, later ones are not looked at.
    found: bool,
    /// Inside a line longer than [`MAX_LINE`], which is skipped up to its line end.
    skipping: bool,
}

impl HeaderScan {
    /// A scan at the start of the header lines; `location` asks for the first usable
    /// `Location` (non-empty UTF-8 without control characters).
    pub fn new(location: bool) -> Self {
        HeaderScan {
            location,
            cookies: false,
            found: false,
            skipping: false,
        }
    }

    /// The same scan, reading on to the end of the head to report the `Location` and every
    /// `Set-Cookie` as [`Headers::Field`].
    pub fn with_cookies(self) -> Self {
        HeaderScan {
            cookies: true,
            ..self
        }
    }

    /// Consume the complete lines of `buf` (which continues where the consumed bytes of the
    /// previous call ended). The verdict is the same however the bytes are split.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Headers, ParseError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if self.skipping {
                    return Ok(Headers::NeedMore {
                        consumed: buf.len(),
                    });
                }
                if rest.len() >= MAX_LINE {
                    self.long_line(rest)?;
                    return Ok(Headers::NeedMore {
                        consumed: buf.len(),
                    });
                }
                return Ok(Headers::NeedMore { consumed: pos });
            };
            let line_start = pos;
            pos += nl + 1;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if nl + 1 > MAX_LINE {
                self.long_line(rest)?;
                self.skipping = false;
                continue;
            }
            let mut line = &rest[..nl];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            if line.is_empty() {
                return Ok(Headers::End { end: pos });
            }
            if self.location
                && !self.found
                && let Some(at) = header_value_at(line, b"location")
                    .filter(|at| usable_location(&line[at.start..at.end]))
            {
                let (start, end) = (line_start + at.start, line_start + at.end);
                if !self.cookies {
                    return Ok(Headers::Location { start, end });
                }
                self.found = true;
                return Ok(Headers::Field {
                    field: Field::Location,
                    start,
                    end,
                    next: pos,
                });
            }
            if self.cookies
                && let Some(at) = header_value_at(line, b"set-cookie").filter(|at| !at.is_empty())
            {
                return Ok(Headers::Field {
                    field: Field::SetCookie,
                    start: line_start + at.start,
                    end: line_start + at.end,
                    next: pos,
                });
            }
        }
    }

    /// A line of at least [`MAX_LINE`] bytes starts in `line`: a `Location` that long (before
    /// a usable one) is refused, any other line is skipped.
    fn long_line(&mut self, line: &[u8]) -> Result<(), ParseError> {
        if self.location && !self.found && header_value_at(line, b"location").is_some() {
            return Err(ParseError::LocationTooLong);
        }
        self.skipping = true;
        Ok(())
    }
}

/// Scan `buf`, the bytes after a final status line, in one piece for the first usable
/// `Location` or the end of the head (see [`HeaderScan`]).
pub fn scan_headers(buf: &[u8]) -> Result<Headers, ParseError> {
    HeaderScan::new(true).scan(buf)
}

/// Whether a `Location` value can be followed: non-empty UTF-8 without control characters
/// (which RFC 9110 does not allow in a field value).
fn usable_location(value: &[u8]) -> bool {
    !value.is_empty()
        && !value.iter().any(|&b| b < 0x20 || b == 0x7f)
        && std::str::from_utf8(value).is_ok()
}

/// Where the value of header line `line` is, trimmed, when its name is `name` (lower case).
fn header_value_at(line: &[u8], name: &[u8]) -> Option<std::ops::Range<usize>> {
    let colon = line.iter().position(|&b| b == b':')?;
    if !line[..colon].eq_ignore_ascii_case(name) {
        return None;
    }
    let value = &line[colon + 1..];
    let lead = value.len() - value.trim_ascii_start().len();
    let trimmed = value.trim_ascii().len();
    let start = colon + 1 + lead;
    Some(start..start + trimmed)
}

/// What every status line starts with.
const HTTP: &[u8] = b"HTTP/";

/// The accepted major version after [`HTTP`].
const MAJOR: &[u8] = b"1.";

/// Compare `partial` with `want` on their common length.
fn agrees(partial: &[u8], want: &[u8]) -> bool {
    let n = partial.len().min(want.len());
    partial[..n] == want[..n]
}

/// Reject a partial status line as soon as its bytes cannot start an accepted one.
fn check_prefix(partial: &[u8]) -> Result<(), ParseError> {
    if !agrees(partial, HTTP) {
        return Err(ParseError::NotHttp);
    }
    let after_http = partial.get(HTTP.len()..).unwrap_or_default();
    if !agrees(after_http, MAJOR) {
        return Err(ParseError::Version);
    }
    // From here on the layout is fixed: minor digit, space, three digits, space or line end.
    let tail = after_http.get(MAJOR.len()..).unwrap_or_default();
    for (i, &b) in tail.iter().enumerate().take(6) {
        // Three digits are in: a code out of range is refused before what follows it.
        if i == 5 && !(&b"100"[..]..=&b"599"[..]).contains(&&tail[2..5]) {
            return Err(ParseError::Code);
        }
        let ok = match i {
            0 => b == b'0' || b == b'1',
            1 => b == b' ',
            2..=4 => b.is_ascii_digit(),
            _ => b == b' ' || b == b'\r',
        };
        if !ok {
            return Err(match i {
                0 | 1 => ParseError::Version,
                5 if !b.is_ascii_digit() => ParseError::Malformed,
                _ => ParseError::Code,
            });
        }
    }
    Ok(())
}

/// Parse one complete status line, line end already removed.
///
/// Grammar (RFC 9112 §4): `HTTP/1.0` or `HTTP/1.1`, one space, three digits, then nothing or a
/// space and a reason phrase of visible characters, spaces, tabs and obs-text.
pub fn parse_status_line(line: &[u8]) -> Result<StatusLine, ParseError> {
    let Some(rest) = line.strip_prefix(HTTP) else {
        return Err(ParseError::NotHttp);
    };
    let (version, rest) = match rest {
        [b'1', b'.', b'0', rest @ ..] => (HttpVersion::Http10, rest),
        [b'1', b'.', b'1', rest @ ..] => (HttpVersion::Http11, rest),
        _ => return Err(ParseError::Version),
    };
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err(ParseError::Version);
    };
    let digits = rest.get(..3).ok_or(ParseError::Code)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Code);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Err(ParseError::Code);
    }
    let reason = match &rest[3..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        [d, ..] if d.is_ascii_digit() => return Err(ParseError::Code),
        _ => return Err(ParseError::Malformed),
    };
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(ParseError::Malformed);
    }
    Ok(StatusLine {
        version,
        code,
        // The usual phrase is recognised before any text is made of it.
        reason: if reason == standard_reason(code).as_bytes() {
            Reason::new(code, standard_reason(code))
        } else {
            Reason::new(
                code,
                &crate::peer_text::printable(&String::from_utf8_lossy(reason)),
            )
        },
    })
}

/// Check an interim response's header line: a token, a colon, then no control characters.
fn check_header_line(line: &[u8]) -> Result<(), ParseError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::Header)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Header);
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::Header);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `bytes` fed in pieces of `step` bytes through a buffer that keeps only what is
    /// not consumed yet, as the probe does; also returns the most bytes held at once.
    fn scan_in_steps(
        bytes: &[u8],
        step: usize,
        location: bool,
    ) -> (Result<String, ParseError>, usize) {
        let mut scan = HeaderScan::new(location);
        let mut buf = Vec::new();
        let mut held = 0;
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            held = held.max(buf.len());
            match scan.scan(&buf) {
                Err(e) => return (Err(e), held),
                Ok(Headers::NeedMore { consumed }) => {
                    buf.drain(..consumed);
                }
                Ok(Headers::Location { start, end }) => {
                    return (
                        Ok(String::from_utf8_lossy(&buf[start..end]).into_owned()),
                        held,
                    );
                }
                Ok(Headers::End { end }) => {
                    assert!(end <= buf.len());
                    return (Ok("end".into()), held);
                }
                Ok(Headers::Field { .. }) => panic!("a scan without cookies reported a field"),
            }
        }
        (Ok("need more".into()), held)
    }

    #[test]
    fn header_scans_find_the_first_location_or_the_end_however_split() {
        let head = b"Server: x\r\nlocation:  /next \r\nLocation: /second\r\n\r\nbody";
        assert_eq!(
            scan_headers(head),
            Ok(Headers::Location { start: 22, end: 27 })
        );
        for step in 1..head.len() {
            assert_eq!(
                scan_in_steps(head, step, true).0,
                Ok("/next".into()),
                "{step}"
            );
            assert_eq!(
                scan_in_steps(head, step, false).0,
                Ok("end".into()),
                "{step}"
            );
        }
        // Empty, control characters, not UTF-8: not usable, the next one is.
        let head = b"Location:\nLocation: /a\x1bb\nLocation: \xff\nLocation: /c\n\n";
        assert_eq!(scan_in_steps(head, 3, true).0, Ok("/c".into()));
        assert_eq!(
            scan_headers(b"Location:\nX: y\n\n"),
            Ok(Headers::End { end: 16 })
        );
        assert_eq!(
            scan_headers(b"X: y\r\n"),
            Ok(Headers::NeedMore { consumed: 6 })
        );
    }

    #[test]
    fn long_header_lines_are_skipped_without_being_held() {
        // Cookies of 40 KiB, then the Location: found, holding at most one line's bytes.
        let mut head = Vec::new();
        for i in 0..10 {
            head.extend(format!("Set-Cookie: c{i}={}\r\n", "v".repeat(MAX_LINE)).bytes());
        }
        head.extend(b"Location: /after-cookies\r\n\r\n");
        for step in [1, 100, 1024, MAX_LINE] {
            let (found, held) = scan_in_steps(&head, step, true);
            assert_eq!(found, Ok("/after-cookies".into()), "{step}");
            assert!(held <= MAX_LINE + step, "{step}: held {held}");
        }
        assert!(matches!(scan_headers(&head), Ok(Headers::Location { .. })));
        // A Location too long to hold is refused, whole or in pieces.
        let mut long = b"X: y\r\nLocation: /".to_vec();
        long.extend([b'a'; MAX_LINE]);
        long.extend(b"\r\n\r\n");
        assert_eq!(scan_headers(&long), Err(ParseError::LocationTooLong));
        assert_eq!(
            scan_in_steps(&long, 7, true).0,
            Err(ParseError::LocationTooLong)
        );
        assert_eq!(scan_in_steps(&long, 7, false).0, Ok("end".into()));
        // A line of exactly MAX_LINE bytes (line end included) is a line like any other.
        let mut edge = b"Location: /".to_vec();
        edge.resize(MAX_LINE - 2, b'b');
        edge.extend(b"\r\n\r\n");
        assert!(matches!(scan_headers(&edge), Ok(Headers::Location { .. })));
    }

    /// Scan `bytes` collecting cookies, fed in pieces of `step` bytes as the probe does: the
    /// fields reported, then `end` if the end was reached; and the most bytes held at once.
    fn collect_in_steps(bytes: &[u8], step: usize) -> (Vec<String>, usize) {
        let mut scan = HeaderScan::new(true).with_cookies();
        let mut buf = Vec::new();
        let mut held = 0;
        let mut found = Vec::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            held = held.max(buf.len());
            loop {
                match scan.scan(&buf) {
                    Err(e) => {
                        found.push(format!("{e}"));
                        return (found, held);
                    }
                    Ok(Headers::NeedMore { consumed }) => {
                        buf.drain(..consumed);
                        break;
                    }
                    Ok(Headers::Field {
                        field,
                        start,
                        end,
                        next,
                    }) => {
                        let value = String::from_utf8_lossy(&buf[start..end]);
                        found.push(format!("{field:?} {value}"));
                        buf.drain(..next);
                    }
                    Ok(Headers::Location { .. }) => panic!("a scan collecting cookies stopped"),
                    Ok(Headers::End { .. }) => {
                        found.push("end".into());
                        return (found, held);
                    }
                }
            }
        }
        (found, held)
    }

    #[test]
    fn a_scan_collecting_cookies_reports_each_and_the_first_location_up_to_the_end() {
        let mut head = b"Set-Cookie: a=1; Path=/\r\nServer: x\r\nLocation: /next\r\n".to_vec();
        head.extend(b"set-cookie:b=2\r\nSet-Cookie:   \r\nLocation: /second\r\n");
        // A cookie too large to keep is skipped as it arrives.
        head.extend(format!("Set-Cookie: big={}\r\n", "v".repeat(MAX_LINE)).bytes());
        head.extend(b"Set-Cookie: c=3\r\n\r\nbody");
        let want = [
            "SetCookie a=1; Path=/",
            "Location /next",
            "SetCookie b=2",
            "SetCookie c=3",
            "end",
        ];
        for step in [1, 2, 7, 64, 1024, MAX_LINE, head.len()] {
            let (found, held) = collect_in_steps(&head, step);
            assert_eq!(found, want, "{step}");
            assert!(held <= MAX_LINE + step, "{step}: held {held}");
        }
        // A Location too long is refused before a usable one, ignored after it.
        let long = format!("Location: /{}\r\n", "a".repeat(MAX_LINE));
        let (found, _) = collect_in_steps(format!("{long}Location: /x\r\n\r\n").as_bytes(), 100);
        assert_eq!(found, ["its Location is longer than 4096 bytes"]);
        let (found, _) = collect_in_steps(format!("Location: /x\r\n{long}\r\n").as_bytes(), 100);
        assert_eq!(found, ["Location /x", "end"]);
        // Without cookies, Set-Cookie is not reported and the scan stops at the Location.
        assert_eq!(scan_in_steps(&head, 5, true).0, Ok("/next".into()));
    }

    #[test]
    fn reason_phrases_are_made_safe_to_print() {
        let mut p = HeadParser::new();
        let line = "HTTP/1.1 200 O\u{9b}2J\u{202e}K\u{2066}!\r\n".as_bytes();
        let Step::Done(s) = p.advance(line).unwrap() else {
            panic!("not done")
        };
        assert_eq!(s.reason.text(s.code), "O\\u{9b}2J\\u{202e}K\\u{2066}!");
    }

    fn status(code: u16, reason: &str, version: HttpVersion) -> StatusLine {
        StatusLine {
            version,
            code,
            reason: Reason::new(code, reason),
        }
    }

    fn parse_all(input: &[u8]) -> Result<Step, ParseError> {
        HeadParser::new().advance(input)
    }

    #[test]
    fn complete_status_lines() {
        use HttpVersion::*;
        let cases: &[(&[u8], StatusLine)] = &[
            (b"HTTP/1.1 200 OK\r\n", status(200, "OK", Http11)),
            (
                b"HTTP/1.0 404 Not Found\r\n",
                status(404, "Not Found", Http10),
            ),
            (b"HTTP/1.1 204\r\n", status(204, "", Http11)),
            (b"HTTP/1.1 299 \r\n", status(299, "", Http11)),
            (
                b"HTTP/1.1 500 Internal\tError\n",
                status(500, "Internal\tError", Http11),
            ),
            (
                b"HTTP/1.1 301 Moved\nLocation: /x\n",
                status(301, "Moved", Http11),
            ),
            (b"HTTP/1.1 599 x\r\n", status(599, "x", Http11)),
            (
                b"HTTP/1.1 200 caf\xc3\xa9\r\n",
                status(200, "caf\u{e9}", Http11),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_all(input),
                Ok(Step::Done(want.clone())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn rejected_status_lines() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"SSH-2.0-OpenSSH_9.2\r\n", ParseError::NotHttp),
            (b"\x16\x03\x01\x00", ParseError::NotHttp),
            (b"\r\nHTTP/1.1 200 OK\r\n", ParseError::NotHttp),
            (b"http/1.1 200 OK\r\n", ParseError::NotHttp),
            (b"HTTP/2.0 200 OK\r\n", ParseError::Version),
            (b"HTTP/1.2 200 OK\r\n", ParseError::Version),
            (b"HTTP/1.1  200 OK\r\n", ParseError::Code),
            (b"HTTP/1.1 20 OK\r\n", ParseError::Code),
            (b"HTTP/1.1 2000 OK\r\n", ParseError::Code),
            (b"HTTP/1.1 20x OK\r\n", ParseError::Code),
            (b"HTTP/1.1 099 Low\r\n", ParseError::Code),
            (b"HTTP/1.1 600 High\r\n", ParseError::Code),
            (b"HTTP/1.1 200OK\r\n", ParseError::Malformed),
            (b"HTTP/1.1 200 O\x00K\r\n", ParseError::Malformed),
            (b"HTTP/1.1\r\n", ParseError::Version),
            (b"HTTP/1.1 \r\n", ParseError::Code),
            (b"ICY 200 OK\r\n", ParseError::NotHttp),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_all(input),
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn garbage_is_rejected_from_its_first_bytes() {
        assert_eq!(parse_all(b"S"), Err(ParseError::NotHttp));
        assert_eq!(parse_all(b"\x00"), Err(ParseError::NotHttp));
        assert_eq!(parse_all(b"HTTP/1.9"), Err(ParseError::Version));
        assert_eq!(parse_all(b"HTTP/1.1 2x"), Err(ParseError::Code));
        assert_eq!(parse_all(b"HTTP/1.1 2000"), Err(ParseError::Code));
        // A valid prefix asks for more.
        assert_eq!(parse_all(b"HTT"), Ok(Step::NeedMore { consumed: 0 }));
        assert_eq!(
            parse_all(b"HTTP/1.1 20"),
            Ok(Step::NeedMore { consumed: 0 })
        );
        assert_eq!(parse_all(b""), Ok(Step::NeedMore { consumed: 0 }));
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_answer() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 418 I'm a teapot\r\n";
        let mut parser = HeadParser::new();
        let mut buf = Vec::new();
        let mut result = None;
        for &b in input.iter() {
            buf.push(b);
            match parser.advance(&buf).expect("valid prefix") {
                Step::NeedMore { consumed } => {
                    buf.drain(..consumed);
                }
                Step::Done(s) => {
                    result = Some(s);
                    break;
                }
            }
        }
        assert_eq!(
            result,
            Some(status(418, "I'm a teapot", HttpVersion::Http11))
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        let input = b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\n";
        assert_eq!(
            parse_all(input),
            Ok(Step::Done(status(200, "OK", HttpVersion::Http11)))
        );
        // 101 is final: nothing asked to switch protocols.
        assert_eq!(
            parse_all(b"HTTP/1.1 101 Switching\r\n"),
            Ok(Step::Done(status(101, "Switching", HttpVersion::Http11)))
        );
        // An interim response with a bad header line.
        assert_eq!(
            parse_all(b"HTTP/1.1 103 Early\r\nnot a header\r\n"),
            Err(ParseError::Header)
        );
        let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert_eq!(parse_all(&many), Err(ParseError::TooManyInterim));
        // Few interim responses, but long ones: the byte budget ends them.
        let mut long = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
        for _ in 0..(MAX_INTERIM_BYTES / 100 + 1) {
            long.extend_from_slice(format!("Link: <{}>\r\n", "a".repeat(92)).as_bytes());
        }
        assert_eq!(parse_all(&long), Err(ParseError::TooManyInterim));
    }

    #[test]
    fn interim_bytes_are_reported_consumed() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2";
        assert_eq!(parse_all(input), Ok(Step::NeedMore { consumed: 25 }));
    }

    #[test]
    fn long_lines_are_refused() {
        let mut line = b"HTTP/1.1 200 ".to_vec();
        line.resize(MAX_LINE, b'a');
        assert_eq!(parse_all(&line), Err(ParseError::TooLong));
        line.truncate(MAX_LINE - 1);
        assert_eq!(parse_all(&line), Ok(Step::NeedMore { consumed: 0 }));
        line.push(b'\n');
        assert!(matches!(parse_all(&line), Ok(Step::Done(_))));
    }

    #[test]
    fn every_single_byte_prefix_of_garbage_is_decided_without_panic() {
        for b in 0..=255u8 {
            let r = parse_all(&[b]);
            if b == b'H' {
                assert_eq!(r, Ok(Step::NeedMore { consumed: 0 }));
            } else if b == b'\n' {
                assert_eq!(r, Err(ParseError::NotHttp));
            } else {
                assert_eq!(r, Err(ParseError::NotHttp), "byte {b}");
            }
        }
    }
}
