//! Reading a final answer for a target's header and body checks: the whole head (within
//! [`MAX_HEAD`]), then, when the target reads its body, the body framed as HTTP/1.1 frames it
//! (`Content-Length`, chunked, or until the connection closes; none for HEAD, 204 and 304),
//! decoded as `compression` says, and never more than the target's limit held.
//!
//! Every probe's body bytes count against one budget of the process ([`BODY_BUDGET`]): a
//! probe that needs more room than is free waits for it, within its deadline. A target
//! without checks never comes here: its probe reads the status line only.

use std::io::{self, Write as _};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::exchange::{Head, INITIAL_READ, ReadError, Want};
use super::redirect::is_redirect;
use super::status::{HeadParser, MAX_HEAD, MAX_LINE};
use crate::checks::{BODY_BUDGET, CheckFailure, Checks, Compression, show_size};
use crate::outcome::{FailureReason, StatusLine};
use crate::trace;

/// Bytes read from the connection at once while reading a body.
const READ_SIZE: usize = 16 * 1024;

/// The smallest piece of the budget a body takes at once.
const GRAIN: usize = 8 * 1024;

/// Longest chunk-size line (its extensions included).
const MAX_CHUNK_LINE: usize = 4096;

/// Bytes of body all probes hold together, at most.
static BUDGET: Semaphore = Semaphore::const_new(BODY_BUDGET);

/// What was read of a final answer for its checks.
#[derive(Debug, Default)]
pub struct Checked {
    /// The header lines after the status line, each with its line end, up to the empty line
    /// that ends the head (all that was read of them, when the head did not end).
    pub head: Vec<u8>,
    /// The body, decoded, when it was read (within the limit), with its share of the budget.
    pub body: Option<Held>,
    /// Bytes of the body read from the connection (before decoding and framing).
    pub wire: u64,
    /// How the reading ended.
    pub ended: Ended,
    /// Whether the head was read to its end.
    head_done: bool,
}

/// How reading an answer for its checks ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The head, and the body when it is read, were read whole.
    #[default]
    Complete,
    /// The head was read, and its body is not read (a redirect that is followed).
    HeadOnly,
    /// The decoded body is longer than the limit.
    OverLimit,
    /// The deadline passed while reading the head (`true`) or the body.
    TimedOut(bool),
    /// The connection closed before the end of the head (`true`) or of the body.
    Closed(bool),
    /// A socket or TLS error.
    Io(String),
    /// The head or the body is not valid: too long a head, a bad chunk, bad compressed data.
    Invalid(String),
}

/// A body's bytes and the share of [`BUDGET`] they take, handed back when it is dropped.
#[derive(Debug)]
pub struct Held {
    /// The decoded bytes.
    bytes: Vec<u8>,
    /// Their budget.
    _reserved: Reserved,
}

impl Held {
    /// The decoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Checked {
    /// Whether the head was read to its end.
    fn head_complete(&self) -> bool {
        self.head_done
    }

    /// The verdict of `checks` on what was read, as blackbox_exporter gives it for an answer
    /// whose status passed: the failure, if any, and whether it is one that
    /// `probe_failed_due_to_regex` reports (a header check failed, or a body check did, or
    /// could not run because the body could not be read whole).
    pub fn verdict(&self, checks: &Checks) -> (Option<CheckFailure>, bool) {
        if !self.head_complete() {
            return (Some(self.read_failure(checks)), false);
        }
        if let Err(f) = checks.judge_headers(&self.head) {
            return (Some(f), true);
        }
        if !checks.reads_body {
            return (None, false);
        }
        let body_checks = checks.has_body_checks();
        match (&self.ended, &self.body) {
            (Ended::Complete | Ended::HeadOnly, body) => {
                let body = body.as_ref().map(Held::bytes).unwrap_or_default();
                match checks.judge_body(body) {
                    Ok(()) => (None, false),
                    Err(f) => (Some(f), true),
                }
            }
            _ => (Some(self.read_failure(checks)), body_checks),
        }
    }

    /// The failure of a head or body that could not be read whole.
    fn read_failure(&self, checks: &Checks) -> CheckFailure {
        let what = |head: bool| if head { "its head" } else { "its body" };
        let (reason, detail) = match &self.ended {
            Ended::OverLimit => (
                FailureReason::BodyTooLarge,
                format!(
                    "the body is longer than body_size_limit ({})",
                    show_size(checks.limit)
                ),
            ),
            Ended::TimedOut(head) => (
                FailureReason::Timeout,
                format!(
                    "deadline passed before the end of {} ({} bytes of body read)",
                    what(*head),
                    self.wire
                ),
            ),
            Ended::Closed(head) => (
                FailureReason::Closed,
                format!(
                    "the connection closed before the end of {} ({} bytes of body read)",
                    what(*head),
                    self.wire
                ),
            ),
            Ended::Io(e) => (FailureReason::Reset, e.clone()),
            Ended::Invalid(e) => (FailureReason::InvalidResponse, e.clone()),
            Ended::Complete | Ended::HeadOnly => (FailureReason::InvalidResponse, String::new()),
        };
        CheckFailure { reason, detail }
    }

    /// Bytes of the body held, decoded, when it was read.
    pub fn body_length(&self) -> Option<u64> {
        self.body.as_ref().map(|b| b.bytes.len() as u64)
    }
}

/// Read the final status line as [`super::exchange::read_head`] does, then the whole head of
/// the answer, and its body when `checks` read it and the answer has one (`head_request`: the
/// request was a HEAD). A redirect whose `Location` is usable (when `want` follows
/// redirects) gives its `Location` (and `Set-Cookie` values) and its head; its body is not
/// read. After the status line, what happens before `deadline` is in the head's
/// [`Checked`], however it ended.
pub async fn read_checked<S: AsyncRead + Unpin>(
    stream: &mut S,
    want: Want,
    checks: &Checks,
    head_request: bool,
    answer: &mut Option<StatusLine>,
    deadline: Instant,
) -> Result<Head, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_READ);
    let mut parser = HeadParser::new();
    let line = super::exchange::status_line(stream, &mut buf, &mut parser).await?;
    let code = line.code;
    *answer = Some(line);
    buf.drain(..parser.end());
    let mut checked = Checked::default();
    let mut head = Head {
        location: None,
        extra: false,
        content_length: None,
        set_cookies: Vec::new(),
        checked: None,
        #[cfg(test)]
        held: 0,
    };
    // Outside the read, so that what a deadline cuts short is still counted.
    let mut reading = None;
    let read = rest(
        stream,
        buf,
        (want, checks, head_request, code),
        &mut checked,
        &mut head,
        &mut reading,
    );
    if timeout_at(deadline, read).await.is_err() {
        checked.ended = Ended::TimedOut(!checked.head_done);
    }
    if let Some(body) = reading {
        checked.body = Some(body.into_held());
    }
    trace::note(|| {
        let lines = String::from_utf8_lossy(&checked.head);
        let lines: Vec<&str> = lines.lines().filter(|l| !l.is_empty()).collect();
        crate::peer_text::printable(&format!("head: {}", lines.join("; ")))
    });
    if checked.body.is_some() || checked.wire > 0 {
        trace::note(|| {
            format!(
                "body: {} bytes read, {} held decoded ({:?})",
                checked.wire,
                checked.body_length().unwrap_or(0),
                checked.ended
            )
        });
    }
    head.checked = Some(Box::new(checked));
    Ok(head)
}

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// The framing of an answer's body, from its head (RFC 9112, section 6.3); an error for
/// `Content-Length` values that are not one number.
fn framing(head: &[u8], code: u16, head_request: bool) -> Result<Framing, String> {
    if head_request || code < 200 || code == 204 || code == 304 {
        return Ok(Framing::None);
    }
    let te = crate::checks::header_values(head, "transfer-encoding");
    if !te.is_empty() {
        let last = te
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|c| !c.is_empty());
        return Ok(match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::Close,
        });
    }
    let mut length = None;
    for v in crate::checks::header_values(head, "content-length") {
        for piece in v.split(|&b| b == b',') {
            let piece = piece.trim_ascii();
            let n = std::str::from_utf8(piece)
                .ok()
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(|| "the answer's Content-Length is not a number".to_owned())?;
            if length.is_some_and(|l| l != n) {
                return Err("the answer has two different Content-Length values".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Where the head that starts `buf` ends (just after its empty line), looking from `from`
/// (the start of a line); or where the next look starts.
fn head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut pos = from;
    while let Some(i) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..pos + i];
        if line.is_empty() || line == b"\r" {
            return Ok(pos + i + 1);
        }
        pos += i + 1;
    }
    Err(pos)
}

/// The usable `Location` of a redirect's head (the first one, valid UTF-8 without control
/// characters, at most [`MAX_LINE`] bytes), and its `Set-Cookie` values when `want` keeps
/// them.
fn location(head: &[u8], want: Want) -> (Option<String>, Vec<Vec<u8>>) {
    let location = crate::checks::header_values(head, "location")
        .into_iter()
        .next()
        .filter(|v| !v.is_empty() && v.len() <= MAX_LINE)
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|v| !v.chars().any(char::is_control));
    let cookies = if want == Want::Cookies {
        crate::checks::header_values(head, "set-cookie")
            .into_iter()
            .filter(|v| !v.is_empty() && v.len() <= MAX_LINE)
            .collect()
    } else {
        Vec::new()
    };
    (location, cookies)
}

/// After the status line: the head, then the body, into `checked` and `reading` (which
/// outlive a deadline that ends this), and a redirect's `Location` into `found`.
async fn rest<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
    (want, checks, head_request, code): (Want, &Checks, bool, u16),
    checked: &mut Checked,
    found: &mut Head,
    reading: &mut Option<Body>,
) {
    // The head, within MAX_HEAD.
    let mut from = 0;
    let end = loop {
        match head_end(&buf, from) {
            Ok(end) => break end,
            Err(next) => from = next,
        }
        if buf.len() >= MAX_HEAD {
            checked.head = buf;
            checked.ended = Ended::Invalid(format!("its head is longer than {MAX_HEAD} bytes"));
            return;
        }
        buf.reserve(INITIAL_READ);
        let room = (MAX_HEAD + INITIAL_READ)
            .saturating_sub(buf.len())
            .min(buf.capacity() - buf.len());
        match (&mut *stream).take(room as u64).read_buf(&mut buf).await {
            Ok(0) => {
                checked.head = buf;
                checked.ended = Ended::Closed(true);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                checked.head = buf;
                checked.ended = Ended::Io(e.to_string());
                return;
            }
        }
    };
    checked.head = buf[..end].to_vec();
    checked.head_done = true;
    buf.drain(..end);
    found.content_length = crate::checks::header_values(&checked.head, "content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
    if want != Want::Status && is_redirect(code) {
        let (location, set_cookies) = location(&checked.head, want);
        if location.is_some() {
            found.location = location;
            found.set_cookies = set_cookies;
            checked.ended = Ended::HeadOnly;
            return;
        }
    }
    if !checks.reads_body {
        return;
    }
    let framing = match framing(&checked.head, code, head_request) {
        Ok(f) => f,
        Err(e) => {
            checked.ended = Ended::Invalid(e);
            return;
        }
    };
    let body = reading.insert(Body::new(checks));
    checked.ended = body.read(stream, buf, framing, &mut checked.wire).await;
}

/// A body being read: its decoder and what it holds.
struct Body {
    /// The decoder, writing into the [`Sink`].
    decoder: Decoder,
}

impl Body {
    /// A body for `checks`.
    fn new(checks: &Checks) -> Body {
        let limit = usize::try_from(checks.limit).unwrap_or(usize::MAX);
        let sink = Sink {
            bytes: Vec::new(),
            limit,
            over: false,
            reserved: Reserved(0),
            shortfall: 0,
        };
        let decoder = match checks.compression {
            Compression::Identity => Decoder::Identity(sink),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(sink))),
            Compression::Deflate => {
                Decoder::Deflate(Box::new(flate2::write::DeflateDecoder::new(sink)))
            }
        };
        Body { decoder }
    }

    /// The bytes held, with their budget.
    fn into_held(mut self) -> Held {
        let sink = self.decoder.sink();
        Held {
            bytes: std::mem::take(&mut sink.bytes),
            _reserved: std::mem::replace(&mut sink.reserved, Reserved(0)),
        }
    }

    /// Read the body framed as `framing`, starting with the bytes of it in `buf`; `wire`
    /// counts the bytes taken from the connection.
    async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        mut buf: Vec<u8>,
        framing: Framing,
        wire: &mut u64,
    ) -> Ended {
        let mut remaining = match framing {
            Framing::None => return Ended::Complete,
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        };
        let mut chunks = Chunked::default();
        loop {
            let data: &[u8] = &buf;
            match framing {
                Framing::Length(_) => {
                    let take = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    *wire += take as u64;
                    remaining -= take as u64;
                    if let Err(e) = self.feed(&data[..take]).await {
                        return e;
                    }
                }
                Framing::Chunked => {
                    let mut pos = 0;
                    while pos < data.len() && !chunks.is_done() {
                        let (used, piece) = match chunks.next(&data[pos..]) {
                            Ok(step) => step,
                            Err(e) => return Ended::Invalid(e),
                        };
                        pos += used;
                        if let Err(e) = self.feed(piece).await {
                            return e;
                        }
                        if self.decoder.sink().over {
                            break;
                        }
                    }
                    *wire += pos as u64;
                }
                Framing::Close | Framing::None => {
                    *wire += data.len() as u64;
                    if let Err(e) = self.feed(data).await {
                        return e;
                    }
                }
            }
            if self.decoder.sink().over {
                return Ended::OverLimit;
            }
            if remaining == 0 || chunks.is_done() {
                return self.finish().await;
            }
            buf.clear();
            buf.reserve_exact(READ_SIZE);
            match (&mut *stream)
                .take(READ_SIZE as u64)
                .read_buf(&mut buf)
                .await
            {
                Ok(0) if framing == Framing::Close => return self.finish().await,
                Ok(0) => return Ended::Closed(false),
                Ok(_) => {}
                Err(e) => return Ended::Io(e.to_string()),
            }
        }
    }

    /// Write `data` into the decoder, waiting for budget when the sink needs more.
    async fn feed(&mut self, mut data: &[u8]) -> Result<(), Ended> {
        while !data.is_empty() && !self.decoder.sink().over {
            match self.decoder.write(data) {
                Ok(0) => return Ok(()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait().await?,
                Err(e) => return Err(self.decoder.error(&e)),
            }
        }
        Ok(())
    }

    /// The end of the body: the decoder's last bytes.
    async fn finish(&mut self) -> Ended {
        loop {
            match self.decoder.finish() {
                Ok(()) if self.decoder.sink().over => return Ended::OverLimit,
                Ok(()) => return Ended::Complete,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.wait().await {
                        return e;
                    }
                }
                Err(e) => return self.decoder.error(&e),
            }
        }
    }

    /// Wait for the budget the sink is short of.
    async fn wait(&mut self) -> Result<(), Ended> {
        let sink = self.decoder.sink();
        let n = u32::try_from(sink.shortfall).unwrap_or(u32::MAX);
        match BUDGET.acquire_many(n).await {
            Ok(permit) => {
                permit.forget();
                sink.reserved.0 += n as usize;
                sink.shortfall = 0;
                Ok(())
            }
            Err(_) => Err(Ended::Invalid("the body budget is closed".into())),
        }
    }
}

/// A share of [`BUDGET`], handed back when dropped.
#[derive(Debug)]
struct Reserved(usize);

impl Reserved {
    /// Take `n` more bytes of the budget, if they are free now.
    fn try_grow(&mut self, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        match BUDGET.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                self.0 += n;
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        BUDGET.add_permits(self.0);
    }
}

/// Where a decoded body goes: up to `limit` bytes, within the budget reserved. A write that
/// needs more budget than is free fails with `WouldBlock` (nothing taken) and says how much
/// it needs; one past the limit takes what fits and marks the body over.
struct Sink {
    /// The decoded bytes.
    bytes: Vec<u8>,
    /// The most bytes held.
    limit: usize,
    /// More bytes came than the limit.
    over: bool,
    /// The budget held for `bytes`.
    reserved: Reserved,
    /// Budget needed before the next write can go on.
    shortfall: usize,
}

impl io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(self.limit - self.bytes.len());
        let need = self.bytes.len() + take;
        if need > self.reserved.0 {
            let target = need
                .max(self.reserved.0 * 2)
                .max(GRAIN)
                .min(self.limit)
                .max(need);
            let more = target - self.reserved.0;
            if !self.reserved.try_grow(more) {
                self.shortfall = more;
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        if self.bytes.capacity() < need {
            self.bytes
                .reserve_exact(self.reserved.0.max(need) - self.bytes.len());
        }
        self.bytes.extend_from_slice(&data[..take]);
        if take < data.len() {
            self.over = true;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The decoder of a body's `compression`, writing into a [`Sink`].
enum Decoder {
    /// No decoding.
    Identity(Sink),
    /// gzip.
    Gzip(Box<flate2::write::GzDecoder<Sink>>),
    /// Raw DEFLATE.
    Deflate(Box<flate2::write::DeflateDecoder<Sink>>),
}

impl Decoder {
    /// The sink.
    fn sink(&mut self) -> &mut Sink {
        match self {
            Decoder::Identity(s) => s,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Deflate(d) => d.get_mut(),
        }
    }

    /// Decode `data`: how much of it was taken.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Decoder::Identity(s) => s.write(data),
            Decoder::Gzip(d) => d.write(data),
            Decoder::Deflate(d) => d.write(data),
        }
    }

    /// The end of the input: the last decoded bytes, or why the input was not whole.
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Decoder::Identity(_) => Ok(()),
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
        }
    }

    /// The failure of a decoding error.
    fn error(&self, e: &io::Error) -> Ended {
        let what = match self {
            Decoder::Identity(_) => "identity",
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate(_) => "deflate",
        };
        Ended::Invalid(format!("the body cannot be decoded as {what}: {e}"))
    }
}

/// The decoder of a chunked body (RFC 9112, section 7.1): chunk extensions are ignored, and
/// the trailer section is read and dropped (it is not part of the body). Bare line feeds are
/// accepted where CRLF is due.
#[derive(Debug, Default)]
pub struct Chunked {
    /// Where in the framing the next byte stands.
    state: ChunkState,
    /// The size of the chunk being read; then what is left of it.
    size: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
}

/// A place in chunked framing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// The chunk size, before its first digit.
    #[default]
    SizeStart,
    /// The chunk size, after a digit.
    Size,
    /// After the size: extensions (ignored) up to the line feed.
    Ext,
    /// The chunk's data.
    Data,
    /// The CR (or LF) after the data.
    DataEnd,
    /// The LF after the data's CR.
    DataLf,
    /// The trailer section: at the start of a line.
    TrailerStart,
    /// The trailer section: within a line.
    Trailer,
    /// The CR of the trailer section's empty line was read.
    TrailerEndLf,
    /// The body is complete.
    Done,
}

impl Chunked {
    /// Whether the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Read framing from `input` up to the next piece of data: how many bytes were taken,
    /// and the data among them (empty when `input` held framing only, or at the end).
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), String> {
        let mut pos = 0;
        while pos < input.len() {
            if self.state == ChunkState::Data {
                let take = input
                    .len()
                    .saturating_sub(pos)
                    .min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataEnd;
                }
                return Ok((pos + take, &input[pos..pos + take]));
            }
            let b = input[pos];
            pos += 1;
            self.state = match (self.state, b) {
                (ChunkState::Done, _) => return Ok((pos - 1, &[])),
                (ChunkState::SizeStart | ChunkState::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    if self.size > u64::MAX >> 8 {
                        return Err("a chunk size is too large".into());
                    }
                    self.size = self.size * 16 + digit;
                    self.line += 1;
                    ChunkState::Size
                }
                (ChunkState::Size, b';' | b' ' | b'\t' | b'\r') => {
                    self.line += 1;
                    ChunkState::Ext
                }
                (ChunkState::Size | ChunkState::Ext, b'\n') => {
                    self.line = 0;
                    if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::Ext, _) => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(format!(
                            "a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
                        ));
                    }
                    ChunkState::Ext
                }
                (ChunkState::SizeStart | ChunkState::Size, _) => {
                    return Err("a chunk does not start with its size in hex".into());
                }
                (ChunkState::DataEnd, b'\r') => ChunkState::DataLf,
                (ChunkState::DataEnd | ChunkState::DataLf, b'\n') => ChunkState::SizeStart,
                (ChunkState::DataEnd | ChunkState::DataLf, _) => {
                    return Err("a chunk's data is not followed by a line end".into());
                }
                (ChunkState::TrailerStart, b'\r') => ChunkState::TrailerEndLf,
                (ChunkState::TrailerStart | ChunkState::TrailerEndLf, b'\n') => {
                    self.state = ChunkState::Done;
                    return Ok((pos, &[]));
                }
                (ChunkState::TrailerEndLf, _) => {
                    return Err("the trailer section does not end with a line end".into());
                }
                (ChunkState::TrailerStart | ChunkState::Trailer, b) => {
                    self.line += 1;
                    if self.line > MAX_HEAD {
                        return Err(format!(
                            "the trailer section is longer than {MAX_HEAD} bytes"
                        ));
                    }
                    if b == b'\n' {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Trailer
                    }
                }
                (ChunkState::Data, _) => ChunkState::Data,
            };
        }
        Ok((pos, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces as `cuts` splits it: the body, and whether it ended.
    fn decode(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), String> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(input.len());
        for w in bounds.windows(2) {
            let mut piece = &input[w[0]..w[1]];
            while !piece.is_empty() && !c.is_done() {
                let (used, data) = c.next(piece)?;
                out.extend_from_slice(data);
                piece = &piece[used..];
            }
        }
        Ok((out, c.is_done()))
    }

    const BODY: &[u8] = b"5;name=\"quoted;value\"\r\nhello\r\n7 \r\n, world\r\n\
        10\r\n0123456789abcdef\r\n0;last\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\nNEXT";

    #[test]
    fn chunks_decode_at_every_split() {
        let want = b"hello, world0123456789abcdef".to_vec();
        assert_eq!(decode(BODY, &[]).unwrap(), (want.clone(), true));
        for i in 0..=BODY.len() {
            assert_eq!(
                decode(BODY, &[i]).unwrap(),
                (want.clone(), true),
                "split at {i}"
            );
            for j in i..=BODY.len() {
                assert_eq!(decode(BODY, &[i, j]).unwrap().0, want, "split at {i}, {j}");
            }
        }
        // A byte at a time, and bare line feeds.
        let all: Vec<usize> = (1..BODY.len()).collect();
        assert_eq!(decode(BODY, &all).unwrap(), (want, true));
        assert_eq!(
            decode(b"3\nabc\n0\n\n", &[]).unwrap(),
            (b"abc".to_vec(), true)
        );
        // Not over yet: no trailer end.
        assert_eq!(
            decode(b"3\r\nabc\r\n0\r\n", &[]).unwrap(),
            (b"abc".to_vec(), false)
        );
        // The end stays where it is: bytes after it are not taken.
        let mut c = Chunked::default();
        let (used, _) = c.next(b"0\r\n\r\nrest").unwrap();
        assert_eq!(used, 5);
        assert!(c.is_done());
    }

    #[test]
    fn bad_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b";ext\r\n",
            b"3\r\nabcX",
            b"fffffffffffffffff\r\n",
            b"0\r\n\rX",
        ] {
            assert!(
                decode(bad, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE + 1));
        assert!(decode(long.as_bytes(), &[]).unwrap_err().contains("longer"));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |head: &str, code, head_request| framing(head.as_bytes(), code, head_request);
        assert_eq!(
            f("Content-Length: 5\r\n\r\n", 200, false),
            Ok(Framing::Length(5))
        );
        assert_eq!(f("Content-Length: 5\r\n\r\n", 200, true), Ok(Framing::None));
        assert_eq!(
            f("Content-Length: 5\r\n\r\n", 204, false),
            Ok(Framing::None)
        );
        assert_eq!(
            f("Content-Length: 5\r\n\r\n", 304, false),
            Ok(Framing::None)
        );
        assert_eq!(
            f(
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
                200,
                false
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("Transfer-Encoding: gzip\r\n\r\n", 200, false),
            Ok(Framing::Close)
        );
        assert_eq!(f("\r\n", 500, false), Ok(Framing::Close));
        assert_eq!(
            f("Content-Length: 5, 5\r\n\r\n", 200, false),
            Ok(Framing::Length(5))
        );
        assert!(f("Content-Length: 5\r\ncontent-length: 6\r\n\r\n", 200, false).is_err());
        assert!(f("Content-Length: -1\r\n\r\n", 200, false).is_err());
    }

    fn checks(limit: u64, compression: Compression) -> Checks {
        Checks {
            body_matches: Default::default(),
            body_not_matches: Default::default(),
            header_matches: Default::default(),
            header_not_matches: Default::default(),
            limit,
            compression,
            reads_body: true,
        }
    }

    async fn read(answer: &[u8], checks: &Checks) -> Checked {
        let mut stream = answer;
        let mut status = None;
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let head = read_checked(
            &mut stream,
            Want::Status,
            checks,
            false,
            &mut status,
            deadline,
        )
        .await
        .unwrap();
        *head.checked.unwrap()
    }

    #[tokio::test]
    async fn a_head_is_read_whole_within_16_kib_and_a_followed_redirect_has_no_body_read() {
        let c = Checks {
            reads_body: false,
            ..checks(10, Compression::Identity)
        };
        // 40 KiB of cookies: refused past MAX_HEAD, having read little more.
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..10 {
            long.extend(format!("Set-Cookie: c{i}={}\r\n", "v".repeat(4096)).bytes());
        }
        long.extend(b"\r\n");
        let mut stream = &long[..];
        let mut status = None;
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let head = read_checked(&mut stream, Want::Status, &c, false, &mut status, deadline)
            .await
            .unwrap();
        let read = long.len() - stream.len();
        assert!(read <= 17 + MAX_HEAD + INITIAL_READ, "{read}");
        let checked = head.checked.unwrap();
        assert!(
            matches!(checked.ended, Ended::Invalid(_)),
            "{:?}",
            checked.ended
        );
        let (failure, regex) = checked.verdict(&c);
        assert_eq!(failure.unwrap().reason, FailureReason::InvalidResponse);
        assert!(!regex);
        // A redirect followed: its Location and cookies, its head, not its body.
        let redirect = b"HTTP/1.1 302 Found\r\nSet-Cookie: a=1\r\nLocation: /next\r\n\
                         Content-Length: 5\r\n\r\nDOWN!";
        let mut stream = &redirect[..];
        let c = checks(10, Compression::Identity);
        let head = read_checked(&mut stream, Want::Cookies, &c, false, &mut status, deadline)
            .await
            .unwrap();
        assert_eq!(head.location.as_deref(), Some("/next"));
        assert_eq!(head.set_cookies, [b"a=1".to_vec()]);
        let checked = head.checked.unwrap();
        assert_eq!(checked.ended, Ended::HeadOnly);
        assert!(checked.body.is_none() && checked.wire == 0);
    }

    #[tokio::test]
    async fn bodies_are_read_within_their_limit() {
        let c = checks(10, Compression::Identity);
        let ok = read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyMORE", &c).await;
        assert_eq!(ok.ended, Ended::Complete);
        assert_eq!(ok.body.as_ref().map(Held::bytes), Some(&b"body"[..]));
        let over = read(b"HTTP/1.1 200 OK\r\n\r\n0123456789abc", &c).await;
        assert_eq!(over.ended, Ended::OverLimit);
        assert_eq!(over.body_length(), Some(10));
        let cut = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nbody", &c).await;
        assert_eq!(cut.ended, Ended::Closed(false));
        let chunked = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            &c,
        )
        .await;
        assert_eq!(chunked.body.as_ref().map(Held::bytes), Some(&b"abc"[..]));
        assert_eq!(chunked.ended, Ended::Complete);
        // gzip, decoded within the limit; a bomb stops at it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'a'; 100_000]).unwrap();
        let gz = gz.finish().unwrap();
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", gz.len()).into_bytes();
        answer.extend(&gz);
        let whole = read(&answer, &checks(200_000, Compression::Gzip)).await;
        assert_eq!(whole.ended, Ended::Complete);
        assert_eq!(whole.body_length(), Some(100_000));
        let bomb = read(&answer, &checks(1000, Compression::Gzip)).await;
        assert_eq!(
            (bomb.ended.clone(), bomb.body_length()),
            (Ended::OverLimit, Some(1000))
        );
        let bad = read(
            b"HTTP/1.1 200 OK\r\n\r\nnot gzip at all",
            &checks(1000, Compression::Gzip),
        )
        .await;
        assert!(matches!(bad.ended, Ended::Invalid(_)), "{:?}", bad.ended);
        // The budget is handed back with the bytes.
        assert!(BUDGET.available_permits() < BODY_BUDGET);
        drop((ok, over, cut, chunked, whole, bomb, bad));
        assert_eq!(BUDGET.available_permits(), BODY_BUDGET);
    }
}
