//! The exchange: write the request (head, then body) and read the answer's head, bounded, as
//! far as the probe needs it: the final status line, and for a redirect to follow its
//! `Location` (and its `Set-Cookie` values, when the chain keeps cookies). Also reads a proxy's
//! answer to CONNECT for [`super::tunnel`].
//!
//! A connection is closed with a reset unless the server has closed first (see [`finish`]).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::redirect::is_redirect;
use super::socket::Socket;
use super::status::{Field, HeadParser, HeaderScan, Headers, MAX_HEAD, MAX_LINE, ParseError, Step};
use super::{Failure, Timed, seconds};
use crate::outcome::{FailureReason, StatusLine};
use crate::proxy::Proxy;

/// The answer to a request, once its final status line is in.
#[derive(Debug)]
pub struct Answer {
    /// The final status line.
    pub status: StatusLine,
    /// The `Location` of a redirect to follow (`None`: not a redirect, or none asked for); or,
    /// when the rest of the redirect's head could not be read, why it is not followed (the 3xx
    /// is then the answer).
    pub location: Result<Option<String>, String>,
    /// The `Content-Length` of an answer that is not a redirect, when the bytes that came
    /// with its status line carry it.
    pub content_length: Option<u64>,
    /// The `Set-Cookie` values of a redirect, when asked for ([`Want::Cookies`]).
    pub set_cookies: Vec<Vec<u8>>,
    /// For a target with checks: what was read of the answer for them.
    pub checked: Option<Box<super::body::Checked>>,
}

/// Write the request (head, then body), read the final status line (and, as `want` says, a
/// redirect's `Location`) before `deadline`. The time runs from the first write to the
/// arrival of the last bytes read (the kernel's stamp), when the status line came. `proxy` is the proxy the request is written to,
/// when it is not inside a tunnel: a stall is then the proxy's. Without a status line, the
/// exchange failed; the stream is closed when it returns.
pub async fn exchange<S: Conn>(
    mut stream: S,
    (head, body): (Vec<u8>, &[u8]),
    want: Want,
    checks: Option<&crate::checks::Checks>,
    proxy: Option<&Proxy>,
    deadline: Instant,
) -> Timed<Answer> {
    let t = Instant::now();
    let mut status = None;
    // A request without a body is one write, which Nagle's algorithm never holds back; a
    // body must not wait for an ACK of its head.
    if !body.is_empty() {
        let _ = stream.socket().tcp().set_nodelay(true);
    }
    let outcome = timeout_at(deadline, async {
        stream.write_all(&head).await?;
        if !body.is_empty() {
            stream.write_all(body).await?;
        }
        stream.flush().await?;
        match checks {
            // The answer is read into the buffer the head was written from.
            None => read_head_in(&mut stream, head, want, &mut status).await,
            // Boxed: the plain probe's future does not carry its size.
            Some(c) => {
                let head_request = head.starts_with(b"HEAD ");
                let read = super::body::read_checked(
                    &mut stream,
                    want,
                    c,
                    head_request,
                    &mut status,
                    deadline,
                );
                Box::pin(read).await
            }
        }
    })
    .await;
    let seen = t.elapsed();
    let took = match (&status, &outcome) {
        (Some(_), Ok(_)) => stream.socket().since(t).min(seen),
        _ => seen,
    };
    finish(&mut stream);
    // Dropping the stream closes the connection.
    drop(stream);
    let result = match (status, outcome) {
        // Once the status line is in, what failed is the rest of a redirect's head: the 3xx
        // is the answer, and the detail says why it was not followed.
        (Some(status), mut outcome) => {
            let (content_length, set_cookies, checked) = match &mut outcome {
                Ok(Ok(h)) => (
                    h.content_length,
                    std::mem::take(&mut h.set_cookies),
                    h.checked.take(),
                ),
                _ => (None, Vec::new(), None),
            };
            let location = match outcome {
                Ok(Ok(h)) => match h.location {
                    None if want != Want::Status && is_redirect(status.code) => {
                        Err("it has no Location".to_owned())
                    }
                    location => Ok(location),
                },
                Err(_) => Err(format!("no Location within {} (deadline)", seconds(took))),
                Ok(Err(ReadError::Closed)) => {
                    Err("the connection closed before its Location".to_owned())
                }
                Ok(Err(ReadError::Io(e))) => Err(e.to_string()),
                Ok(Err(ReadError::Parse(e))) => Err(e.to_string()),
            };
            Ok(Answer {
                status,
                location,
                content_length,
                set_cookies,
                checked,
            })
        }
        (None, Err(_)) => Err(match proxy {
            Some(p) => Failure::new(
                FailureReason::Timeout,
                format!(
                    "proxy {}: no complete status line within {}",
                    p.authority(),
                    seconds(took)
                ),
            ),
            None => Failure::new(
                FailureReason::Timeout,
                "deadline passed before a complete status line",
            ),
        }),
        (None, Ok(Err(ReadError::Io(e)))) => Err(Failure::io(&e, false)),
        // `read_head` returns a head only after its status line: without one, the read ended.
        (None, Ok(Err(ReadError::Closed) | Ok(_))) => Err(Failure::new(
            FailureReason::Closed,
            "connection closed before a complete status line",
        )),
        (None, Ok(Err(ReadError::Parse(e)))) => {
            Err(Failure::new(FailureReason::InvalidResponse, e.to_string()))
        }
    };
    Timed {
        took,
        late: seen - took,
        result,
    }
}

/// The `Content-Length` among the complete header lines of `bytes` (what arrived with the
/// status line), read without waiting for more: a peer's slow head never delays or fails a
/// probe for it. `None` when the lines there do not carry one, or carry one that is not a
/// plain number (or two that disagree).
pub fn content_length(bytes: &[u8]) -> Option<u64> {
    let mut found = None;
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = value.parse().ok()?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// A probe's stream: gives access to its socket.
pub trait Conn: AsyncRead + AsyncWrite + Unpin {
    /// The socket underneath.
    fn socket(&self) -> &Socket;
}

impl Conn for Socket {
    fn socket(&self) -> &Socket {
        self
    }
}

impl Conn for tokio_rustls::client::TlsStream<Socket> {
    fn socket(&self) -> &Socket {
        self.get_ref().0
    }
}

/// Before the stream is dropped: read what has arrived, so that a FIN of the server's among
/// it is seen and the close is then the usual one, leaving TIME_WAIT on the server's side
/// (see [`Socket`]); otherwise the close resets. Reads at most 64 KiB, never waits.
fn finish<S: Conn>(stream: &mut S) {
    use futures_util::FutureExt as _;
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut buf).now_or_never() {
            Some(Ok(0)) => {
                stream.socket().closed_by_peer();
                return;
            }
            Some(Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

/// Why no status line was read.
#[derive(Debug)]
pub enum ReadError {
    /// A socket or TLS error.
    Io(io::Error),
    /// End of stream before a complete status line.
    Closed,
    /// The bytes are not HTTP/1.x.
    Parse(ParseError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// First read's buffer size: a whole status line and usually the headers.
pub const INITIAL_READ: usize = 1024;

/// How much of a response head to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The final status line only.
    Status,
    /// The status line, and a redirect's `Location`.
    Location,
    /// The status line, and a redirect's `Location` and `Set-Cookie` values: its head is read
    /// to its end (within [`MAX_HEAD`]).
    Cookies,
    /// The whole head (a proxy's answer to CONNECT), noting bytes after it.
    Whole,
}

/// What was read of a response head after its final status line.
#[derive(Debug)]
pub struct Head {
    /// The `Location` of a redirect, when asked for.
    pub location: Option<String>,
    /// Bytes followed the head ([`Want::Whole`] only).
    pub extra: bool,
    /// `Content-Length`, when the head was not read on but the bytes already read after the
    /// status line carry it (see [`content_length`]).
    pub content_length: Option<u64>,
    /// The `Set-Cookie` values of a redirect ([`Want::Cookies`] only).
    pub set_cookies: Vec<Vec<u8>>,
    /// What was read for a target's checks (see [`super::body::read_checked`]).
    pub checked: Option<Box<super::body::Checked>>,
    /// The largest the buffer grew, in bytes: what the reader held at most.
    #[cfg(test)]
    pub held: usize,
}

/// Read until the final status line is complete, holding at most [`MAX_LINE`] bytes, and put
/// it in `answer`; then, as `want` says, the header lines too: at most [`MAX_HEAD`] more bytes,
/// read one line at a time into the same buffer (a redirect's `Location` is that buffer, cut
/// down to the value). An error after the status line leaves the status line in `answer`.
///
/// With [`Want::Cookies`] a redirect's head is read on past its `Location` to its end, each
/// `Set-Cookie` value copied out as its line is scanned; a head that goes on past
/// [`MAX_HEAD`], or a connection that closes before its end, after a usable `Location` gives
/// that `Location` and the cookies read so far.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    want: Want,
    answer: &mut Option<StatusLine>,
) -> Result<Head, ReadError> {
    read_head_in(stream, Vec::with_capacity(INITIAL_READ), want, answer).await
}

/// [`read_head`] into `buf` (emptied first): the buffer the request's head was written from.
async fn read_head_in<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
    want: Want,
    answer: &mut Option<StatusLine>,
) -> Result<Head, ReadError> {
    buf.clear();
    buf.reserve(INITIAL_READ);
    let mut parser = HeadParser::new();
    let line = status_line(stream, &mut buf, &mut parser).await?;
    let headers = match want {
        Want::Status => false,
        Want::Location | Want::Cookies => is_redirect(line.code),
        Want::Whole => true,
    };
    *answer = Some(line);
    if !headers {
        return Ok(Head {
            location: None,
            extra: false,
            content_length: content_length(buf.get(parser.end()..).unwrap_or_default()),
            set_cookies: Vec::new(),
            checked: None,
            #[cfg(test)]
            held: buf.capacity(),
        });
    }
    buf.drain(..parser.end());
    let mut scan = HeaderScan::new(want != Want::Whole);
    if want == Want::Cookies {
        scan = scan.with_cookies();
    }
    // Collecting cookies: what was found so far, from the first field found on.
    let mut collected: Option<Box<Collected>> = None;
    // Bytes of the head read after the status line.
    let mut read = buf.len();
    loop {
        match scan.scan(&buf).map_err(ReadError::Parse)? {
            Headers::Location { start, end } => {
                buf.truncate(end);
                buf.drain(..start);
                #[cfg(test)]
                let held = buf.capacity();
                // The scan found UTF-8 there.
                let location = String::from_utf8(buf).ok();
                return Ok(Head {
                    location,
                    extra: false,
                    content_length: None,
                    set_cookies: Vec::new(),
                    checked: None,
                    #[cfg(test)]
                    held,
                });
            }
            Headers::Field {
                field,
                start,
                end,
                next,
            } => {
                let value = &buf[start..end];
                let c = collected.get_or_insert_with(Box::default);
                match field {
                    // The scan found UTF-8 there.
                    Field::Location => c.location = String::from_utf8(value.to_vec()).ok(),
                    Field::SetCookie => c.set_cookies.push(value.to_vec()),
                }
                buf.drain(..next);
                // The rest of the buffer may hold more complete lines.
                continue;
            }
            Headers::End { end } => {
                let found = collected.map(|c| *c).unwrap_or_default();
                return Ok(Head {
                    extra: buf.len() > end,
                    ..found.head(buf.capacity())
                });
            }
            Headers::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
        if read >= MAX_HEAD {
            if let Some(found) = Collected::followable(&mut collected) {
                return Ok((*found).head(buf.capacity()));
            }
            return Err(ReadError::Parse(ParseError::HeadTooLong));
        }
        if buf.len() == buf.capacity() {
            buf.reserve_exact(
                (buf.capacity() * 2)
                    .clamp(INITIAL_READ, MAX_LINE)
                    .saturating_sub(buf.len()),
            );
        }
        let room = (buf.capacity().min(MAX_LINE) - buf.len()).min(MAX_HEAD - read);
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            if let Some(found) = Collected::followable(&mut collected) {
                return Ok((*found).head(buf.capacity()));
            }
            return Err(ReadError::Closed);
        }
        read += n;
    }
}

/// Read into `buf` until `parser` has the final status line (interim answers skipped),
/// holding at most [`MAX_LINE`] bytes; what came after it stays in `buf`, from
/// `parser.end()`.
pub(super) async fn status_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    parser: &mut HeadParser,
) -> Result<StatusLine, ReadError> {
    loop {
        if buf.len() == buf.capacity() {
            // The parser refuses a line of MAX_LINE bytes, so len < MAX_LINE here.
            buf.reserve_exact((buf.capacity() * 2).min(MAX_LINE).saturating_sub(buf.len()));
        }
        let room = buf.capacity().min(MAX_LINE) - buf.len();
        let n = (&mut *stream).take(room as u64).read_buf(buf).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match parser.advance(buf).map_err(ReadError::Parse)? {
            Step::Done(line) => return Ok(line),
            Step::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
    }
}

/// What a read collecting cookies ([`Want::Cookies`]) found so far in a redirect's head.
/// Boxed where [`read_head`] holds it, so that a read that collects nothing carries only a
/// pointer.
#[derive(Debug, Default)]
struct Collected {
    /// The first usable `Location`.
    location: Option<String>,
    /// The `Set-Cookie` values, in order.
    set_cookies: Vec<Vec<u8>>,
}

impl Collected {
    /// What was collected, when it has a usable `Location`: enough to follow the redirect
    /// when the rest of its head cannot be read (past [`MAX_HEAD`], or closed).
    fn followable(collected: &mut Option<Box<Collected>>) -> Option<Box<Collected>> {
        collected.take_if(|c| c.location.is_some())
    }

    /// The head these findings make, for a buffer that held at most `held` bytes.
    #[cfg_attr(not(test), allow(unused_variables))]
    fn head(self, held: usize) -> Head {
        let Collected {
            location,
            set_cookies,
        } = self;
        Head {
            location,
            extra: false,
            content_length: None,
            set_cookies,
            checked: None,
            #[cfg(test)]
            held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_read_from_what_came_with_the_status_line() {
        assert_eq!(
            content_length(b"Server: x\r\nContent-Length: 153\r\n\r\nbody"),
            Some(153)
        );
        assert_eq!(content_length(b"content-length:7\n\n"), Some(7));
        assert_eq!(
            content_length(b"Content-Length: 3\r\nContent-Length: 3\r\n"),
            Some(3)
        );
        // Not there, not complete, after the head, or not a plain number: none.
        assert_eq!(content_length(b"Transfer-Encoding: chunked\r\n\r\n"), None);
        assert_eq!(content_length(b"Content-Length: 15"), None);
        assert_eq!(content_length(b"\r\nContent-Length: 1\r\n"), None);
        assert_eq!(content_length(b"Content-Length: -1\r\n"), None);
        assert_eq!(content_length(b"Content-Length: 1, 1\r\n"), None);
        assert_eq!(
            content_length(b"Content-Length: 1\r\nContent-Length: 2\r\n"),
            None
        );
        assert_eq!(
            content_length(b"Content-Length: 99999999999999999999999\r\n"),
            None
        );
    }
    use crate::probe::status;

    /// Read a head from `bytes` as `want` says: the outcome, the status line, and how many
    /// bytes were read.
    async fn read_from(bytes: &[u8], want: Want) -> (Result<Head, ReadError>, Option<u16>, usize) {
        let mut rest = bytes;
        let mut answer = None;
        let outcome = read_head(&mut rest, want, &mut answer).await;
        (outcome, answer.map(|s| s.code), bytes.len() - rest.len())
    }

    /// `n` header lines of 4 KiB cookies.
    fn cookies(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("Set-Cookie: c{i}={}\r\n", "v".repeat(4096)).into_bytes())
            .collect()
    }

    #[tokio::test]
    async fn a_status_line_costs_at_most_4_kib_held_and_12_kib_read() {
        // Interim responses up to their limit, then a status line and a large head.
        let mut bytes = Vec::new();
        for _ in 0..status::MAX_INTERIM {
            let link = format!("Link: </{}>\r\n", "a".repeat(980));
            bytes.extend(format!("HTTP/1.1 103 Early Hints\r\n{link}\r\n").bytes());
        }
        assert!(bytes.len() > status::MAX_INTERIM_BYTES - 200);
        bytes.extend(b"HTTP/1.1 200 OK\r\n");
        bytes.extend(cookies(50));
        let (head, code, read) = read_from(&bytes, Want::Status).await;
        assert_eq!(code, Some(200));
        assert!(head.unwrap().held <= MAX_LINE);
        assert!(read <= status::MAX_INTERIM_BYTES + MAX_LINE, "{read}");
    }

    #[tokio::test]
    async fn a_redirect_head_is_read_one_line_at_a_time_up_to_16_kib() {
        // The Location after 40 KiB of cookies: not reached.
        let mut late = b"HTTP/1.1 302 Found\r\n".to_vec();
        late.extend(cookies(10));
        late.extend(b"Location: /ok\r\n\r\n");
        let (head, code, read) = read_from(&late, Want::Location).await;
        assert!(matches!(
            head,
            Err(ReadError::Parse(ParseError::HeadTooLong))
        ));
        assert_eq!(code, Some(302));
        assert!(read <= 20 + MAX_HEAD, "{read}");
        // The Location first: found, held in the one buffer, the cookies never read.
        let mut early = b"HTTP/1.1 302 Found\r\nLocation: /ok\r\n".to_vec();
        early.extend(cookies(10));
        let (head, _, read) = read_from(&early, Want::Location).await;
        let head = head.unwrap();
        assert_eq!(head.location.as_deref(), Some("/ok"));
        assert!(
            head.held <= MAX_LINE && read <= INITIAL_READ,
            "{} {read}",
            head.held
        );
        // A proxy's answer to CONNECT is bounded the same way.
        let mut proxy = b"HTTP/1.1 200 Connection established\r\n".to_vec();
        proxy.extend(cookies(10));
        let (head, code, read) = read_from(&proxy, Want::Whole).await;
        assert!(matches!(
            head,
            Err(ReadError::Parse(ParseError::HeadTooLong))
        ));
        assert_eq!(code, Some(200));
        assert!(read <= 40 + MAX_HEAD, "{read}");
        // Collecting cookies: the head is read on past the Location, the cookies that fit a
        // line are kept, and the limit after the Location still gives the Location.
        let (head, _, read) = read_from(&early, Want::Cookies).await;
        let head = head.unwrap();
        assert_eq!(head.location.as_deref(), Some("/ok"));
        assert!(head.set_cookies.is_empty() && head.held <= MAX_LINE);
        assert!(read <= 40 + MAX_HEAD, "{read}");
        let mut small = b"HTTP/1.1 302 Found\r\nSet-Cookie: a=1\r\nLocation: /ok\r\n".to_vec();
        small.extend(b"Set-Cookie: b=2; Path=/\r\n\r\nbody");
        let (head, _, _) = read_from(&small, Want::Cookies).await;
        let head = head.unwrap();
        assert_eq!(head.location.as_deref(), Some("/ok"));
        assert_eq!(head.set_cookies, [&b"a=1"[..], b"b=2; Path=/"]);
        // Closed before the end, after the Location: followed with what was read.
        let cut = &small[..small.len() - 10];
        let (head, _, _) = read_from(cut, Want::Cookies).await;
        assert_eq!(head.unwrap().set_cookies, [&b"a=1"[..]]);
        // Not a redirect: nothing after the status line is read.
        let ok = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\n\r\n";
        let (head, _, _) = read_from(ok, Want::Cookies).await;
        assert!(head.unwrap().set_cookies.is_empty());
        // A whole head with cookies just under the limit: held one line at a time.
        let mut fits = b"HTTP/1.1 200 Connection established\r\n".to_vec();
        fits.extend(cookies(3));
        fits.extend(b"\r\n");
        let (head, _, _) = read_from(&fits, Want::Whole).await;
        let head = head.unwrap();
        assert!(!head.extra && head.held <= MAX_LINE, "{}", head.held);
    }
}
#[cfg(test)]
mod sizes {
    #[test]
    fn print_sizes() {
        let mut s: &[u8] = b"";
        let mut a = None;
        let f = super::read_head(&mut s, super::Want::Status, &mut a);
        eprintln!("READ_HEAD {}", std::mem::size_of_val(&f));
    }
}
