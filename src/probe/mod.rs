//! One probe: resolve, connect (TCP, then TLS for https), write the request, read the status
//! line, close. Every step runs under the probe's deadline and is timed.
//!
//! A target that is down is a [`ProbeResult`] with a [`FailureReason`], never an `Err`.

pub mod connect;
pub mod status;
pub mod text;

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::dns::RoundResolver;
use crate::outcome::{CertExpiry, FailureReason, Phases, ProbeResult, StatusLine, TlsVersion};
use crate::probe_url::{ProbeUrl, Scheme};
use crate::request::{Hop, build_head, request_body};
use crate::target::Target;
use crate::tls::{self, PRESENTED};
use status::{HeadParser, HeaderScan, Headers, MAX_HEAD, MAX_LINE, ParseError, Step};

impl ProbeResult {
    /// Record a failure.
    fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failure = Some(reason);
        self.detail = Some(detail.into());
    }

    /// Take the facts of the last request of the probe: its answer, failure and TLS facts
    /// replace whatever is there, its phases add to those of the earlier hops. The detail of
    /// a failure after a redirect names the hop (`redirect hop 2: ...`, the first request
    /// being hop 1).
    fn settle(&mut self, facts: Facts) {
        let Facts {
            status,
            failure,
            detail,
            phases,
            ip_protocol,
            tls_version,
            cert,
            ssl,
        } = facts;
        self.status = status;
        self.failure = failure;
        self.detail = match (failure, detail) {
            (Some(_), Some(d)) if self.redirects > 0 => Some(format!(
                "redirect hop {}: {d}",
                u16::from(self.redirects) + 1
            )),
            (_, d) => d,
        };
        self.phases.add(&phases);
        self.ip_protocol = ip_protocol;
        self.tls_version = tls_version;
        self.cert = cert;
        self.ssl = ssl;
    }
}

/// What one request of a probe established. Every request of a redirect chain starts from a
/// fresh one, and only the last request's are moved into the [`ProbeResult`]: nothing an
/// earlier hop found can be reported as the final answer's.
#[derive(Debug, Default)]
struct Facts {
    /// The request's final status line, once it was read.
    status: Option<StatusLine>,
    /// Why the request failed.
    failure: Option<FailureReason>,
    /// The failure's detail; without a failure, why a redirect was not followed.
    detail: Option<String>,
    /// The request's own phase times.
    phases: Phases,
    /// 4 or 6, once connected.
    ip_protocol: Option<u8>,
    /// The negotiated TLS version, once the handshake completed.
    tls_version: Option<TlsVersion>,
    /// Expiry of the certificates the server presented, even if they were refused.
    cert: Option<CertExpiry>,
    /// Whether the request went over TLS (its handshake completed).
    ssl: bool,
}

impl Facts {
    /// Record the request's failure.
    fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failure = Some(reason);
        self.detail = Some(detail.into());
    }

    /// Record why the redirect answered was not followed (the 3xx is then the answer).
    fn not_followed(&mut self, why: impl std::fmt::Display) {
        let code = self.status.as_ref().map_or(0, |s| s.code);
        self.detail = Some(format!("{code} not followed: {why}"));
    }
}

/// Probe `target` once, giving up at `deadline`. The probe's clock starts now.
pub async fn probe(target: &Target, deadline: Instant, resolver: &RoundResolver) -> ProbeResult {
    let start = Instant::now();
    let mut result = run(target, deadline, resolver).await;
    result.duration = Instant::now().saturating_duration_since(start);
    result
}

/// The codes whose `Location` is followed.
fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// The body of [`probe`]: one request, or one per hop of a redirect chain; then the verdict
/// on the final answer. While a request runs, only its own facts are held: the result is made
/// from them once it is over.
async fn run(target: &Target, deadline: Instant, resolver: &RoundResolver) -> ProbeResult {
    if target.follow_redirects == 0 {
        let mut facts = Facts::default();
        request(
            target,
            &target.url,
            Hop::FIRST,
            deadline,
            resolver,
            &mut facts,
        )
        .await;
        let mut result = ProbeResult::default();
        result.settle(facts);
        judge(target, &target.url, &mut result);
        result
    } else {
        // Boxed: the state of a chain is not carried by the probes that follow none.
        let (mut result, url) = Box::pin(follow(target, deadline, resolver)).await;
        judge(target, &url, &mut result);
        result
    }
}

/// The verdict on the final answer, to `url`, when no request failed: its code, and TLS as
/// `fail_if_ssl` and `fail_if_not_ssl` want it.
fn judge(target: &Target, url: &ProbeUrl, result: &mut ProbeResult) {
    if result.failure.is_some() {
        return;
    }
    let Some(status) = &result.status else { return };
    if !target.valid_codes.contains(status.code) {
        let mut detail = format!("status {} is not a valid status code", status.code);
        if let Some(why) = &result.detail {
            detail = format!("{detail} ({why})");
        }
        return result.fail(FailureReason::StatusCode, detail);
    }
    if target.fail_if_ssl && result.ssl {
        return result.fail(FailureReason::FailIfSsl, "the final request went over TLS");
    }
    if target.fail_if_not_ssl && !result.ssl {
        let detail = format!("the final request, to {}, did not go over TLS", url.raw);
        result.fail(FailureReason::FailIfNotSsl, detail);
    }
}

/// The requests of a redirect chain, up to `follow_redirects` hops: returns the result (a
/// failure, `redirect_limit` among them, is in it) and the URL of the final request.
async fn follow(
    target: &Target,
    deadline: Instant,
    resolver: &RoundResolver,
) -> (ProbeResult, ProbeUrl) {
    let mut result = ProbeResult::default();
    let mut url = target.url.clone();
    let mut hop = Hop::FIRST;
    let mut visited: Vec<ProbeUrl> = Vec::new();
    loop {
        let mut facts = Facts::default();
        let location = request(target, &url, hop, deadline, resolver, &mut facts).await;
        let code = facts.status.as_ref().map_or(0, |s| s.code);
        let next = match location {
            Some(location) => {
                let next = crate::probe_url::redirect_target(&url, &location);
                if next.is_none() {
                    // A Location that does not make a probe URL leaves the 3xx as the answer.
                    let shown = text::printable(&location);
                    facts.not_followed(format_args!(
                        "its Location \"{shown}\" is not an http(s) URL"
                    ));
                }
                next
            }
            None => {
                if facts.failure.is_none() && facts.detail.is_none() && is_redirect(code) {
                    facts.not_followed("it has no Location");
                }
                None
            }
        };
        result.settle(facts);
        let Some(next) = next else { break };
        let same = |a: &ProbeUrl, b: &ProbeUrl| {
            (a.scheme, &a.host, a.port, &a.path_and_query)
                == (b.scheme, &b.host, b.port, &b.path_and_query)
        };
        visited.push(url.clone());
        if visited.iter().any(|v| same(v, &next)) {
            result.fail(
                FailureReason::RedirectLimit,
                format!("redirect loop: {code} back to {}", next.raw),
            );
            break;
        }
        if result.redirects >= target.follow_redirects {
            result.fail(
                FailureReason::RedirectLimit,
                format!(
                    "more than {} redirects (the next, {code}, to {})",
                    target.follow_redirects, next.raw
                ),
            );
            break;
        }
        result.redirects += 1;
        hop = Hop {
            same_origin: (next.scheme, &next.host, next.port)
                == (target.url.scheme, &target.url.host, target.url.port),
            keep_method: hop.keep_method && matches!(code, 307 | 308),
        };
        url = next;
    }
    (result, url)
}

/// `1.5 s`: a wait, for a failure's detail.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One request of a probe to `url`: resolve, connect (to the proxy if `url` goes through one),
/// CONNECT, TLS, the exchange. Each phase records what it established in `facts`, which the
/// caller made fresh for this request; returns the `Location` of a redirect to follow.
async fn request(
    target: &Target,
    url: &ProbeUrl,
    hop: Hop,
    deadline: Instant,
    resolver: &RoundResolver,
    facts: &mut Facts,
) -> Option<String> {
    let proxy = target.proxy.as_deref().and_then(|rules| rules.for_url(url));
    let (host, port) = match proxy {
        Some(p) => (&p.host, p.port),
        None => (&url.host, url.port),
    };
    let via = |what: &str| match proxy {
        Some(p) => format!("{what} the proxy {}", p.authority()),
        None => what.to_owned(),
    };
    let t = Instant::now();
    let resolved = timeout_at(deadline, resolver.resolve(host, target.ip_protocol)).await;
    let addrs = match resolved {
        Ok(answer) => {
            // The lookup's own time, never the wait for a lookup slot; shared lookups report
            // theirs to every target of the host.
            facts.phases.resolve += answer.took;
            match answer.result {
                Ok(addrs) => addrs,
                Err(e) if proxy.is_some() => {
                    facts.fail(FailureReason::Dns, format!("{}: {e}", via("resolving")));
                    return None;
                }
                Err(e) => {
                    facts.fail(FailureReason::Dns, e.to_string());
                    return None;
                }
            }
        }
        Err(_) => {
            facts.phases.resolve += t.elapsed();
            let name = crate::dns::DnsFailure::Deadline(host.to_string());
            facts.fail(FailureReason::Dns, name.to_string());
            return None;
        }
    };

    // A deadline already past opens no socket (a timeout polls its future once first).
    if Instant::now() >= deadline {
        facts.fail(
            FailureReason::ConnectTimeout,
            "deadline passed before connecting",
        );
        return None;
    }
    let t = Instant::now();
    let connected = timeout_at(deadline, connect::connect(&addrs, port, target.source_ip)).await;
    facts.phases.connect += t.elapsed();
    let mut tcp = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = match (e.kind() == io::ErrorKind::ConnectionRefused, proxy) {
                (true, Some(_)) => FailureReason::ProxyConnectRefused,
                (true, None) => FailureReason::ConnectRefused,
                (false, _) => FailureReason::ConnectError,
            };
            let detail = match proxy {
                Some(_) => format!("{}: {e}", via("connecting to")),
                None => e.to_string(),
            };
            facts.fail(reason, detail);
            return None;
        }
        Err(_) => {
            facts.fail(
                FailureReason::ConnectTimeout,
                match proxy {
                    Some(_) => format!("deadline passed while {}", via("connecting to")),
                    None => "deadline passed while connecting".into(),
                },
            );
            return None;
        }
    };
    facts.ip_protocol = tcp
        .peer_addr()
        .ok()
        .map(|a| if a.is_ipv4() { 4 } else { 6 });
    // Probes write one small request: do not wait for more to fill a segment.
    let _ = tcp.set_nodelay(true);
    // A connection we close first ends with a reset, unless the server has closed already
    // (see `finish`): an active close would leave a TIME_WAIT socket on our side for a
    // minute, and rounds of thousands of targets on one address would run out of ports.
    set_linger_zero(&tcp, true);

    let form = crate::proxy::request_form(proxy, url);
    // The first request's head was built at load (a later one's URL is never the target's:
    // that would be a loop).
    let built;
    let head: &[u8] = if std::ptr::eq(url, &target.url) || url.raw == target.url.raw {
        &target.request
    } else {
        built = build_head(url, &target.spec, form, hop);
        &built
    };
    let body = request_body(&target.spec, hop);
    let want = if target.follow_redirects > 0 {
        Want::Location
    } else {
        Want::Status
    };
    if let (Some(p), Scheme::Https) = (proxy, url.scheme) {
        let t = Instant::now();
        let tunnel = connect_tunnel(&mut tcp, p, url, deadline).await;
        facts.phases.proxy += t.elapsed();
        if let Err((reason, detail)) = tunnel {
            facts.fail(reason, detail);
            return None;
        }
    }
    match url.scheme {
        // Boxed: the TLS state is large, and plain probes should not carry its size.
        Scheme::Https => {
            let tls = match (&target.tls, &target.redirect_tls) {
                (Some(own), _) if url.host == target.url.host => {
                    Some((own.config.clone(), own.server_name.clone()))
                }
                (own, redirect) => redirect
                    .clone()
                    .or_else(|| own.as_ref().map(|o| o.config.clone()))
                    .zip(tls::server_name(None, &url.host).ok()),
            };
            let Some((config, name)) = tls else {
                facts.fail(
                    FailureReason::TlsHandshake,
                    format!("no TLS client for {}", url.host),
                );
                return None;
            };
            Box::pin(tls_exchange(
                tcp,
                config,
                name,
                (head, body),
                want,
                deadline,
                facts,
            ))
            .await
        }
        Scheme::Http => exchange(tcp, (head, body), want, proxy, deadline, facts).await,
    }
}

/// Why a CONNECT tunnel was not opened: the reason and its detail.
type TunnelFailure = (FailureReason, String);

/// Ask `proxy` for a tunnel to `url`'s host and port over `tcp`: write CONNECT, read the whole
/// answer head (bounded), before `deadline`; a 2xx opens the tunnel.
async fn connect_tunnel(
    tcp: &mut tokio::net::TcpStream,
    proxy: &crate::proxy::Proxy,
    url: &ProbeUrl,
    deadline: Instant,
) -> Result<(), TunnelFailure> {
    let at = proxy.authority();
    let t = Instant::now();
    let mut answer = None;
    let read = timeout_at(deadline, async {
        tcp.write_all(&proxy.connect_request(url)).await?;
        read_head(tcp, Want::Whole, &mut answer).await
    })
    .await;
    let refused = |status: &StatusLine| {
        (
            FailureReason::ProxyConnectStatus,
            format!(
                "the proxy {at} answered CONNECT {}:{} with {status}",
                url.host, url.port
            ),
        )
    };
    // A refusal is one whatever follows its status line.
    if let Some(status) = answer.as_ref().filter(|s| !(200..300).contains(&s.code)) {
        return Err(refused(status));
    }
    let io_fail = |e: &io::Error| {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureReason::Reset,
            _ => FailureReason::Closed,
        };
        (reason, format!("the proxy {at}: {e}"))
    };
    match read {
        Err(_) => Err((
            FailureReason::Timeout,
            match answer {
                Some(status) => format!(
                    "proxy {at}: no end to its answer to CONNECT ({status}) within {}",
                    seconds(t.elapsed())
                ),
                None => format!(
                    "proxy {at}: no answer to CONNECT within {}",
                    seconds(t.elapsed())
                ),
            },
        )),
        Ok(Ok(head)) => {
            if head.extra {
                return Err((
                    FailureReason::InvalidResponse,
                    format!("the proxy {at} sent bytes after its answer to CONNECT"),
                ));
            }
            Ok(())
        }
        Ok(Err(ReadError::Io(e))) => Err(io_fail(&e)),
        Ok(Err(ReadError::Closed)) => Err((
            FailureReason::Closed,
            format!("the proxy {at} closed the connection before answering CONNECT"),
        )),
        Ok(Err(ReadError::Parse(e))) => Err((
            FailureReason::InvalidResponse,
            format!("the proxy {at} answered CONNECT with something else: {e}"),
        )),
    }
}

/// The TLS handshake (recording the presented certificates), then [`exchange`].
async fn tls_exchange(
    tcp: tokio::net::TcpStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: rustls_pki_types::ServerName<'static>,
    request: (&[u8], &[u8]),
    want: Want,
    deadline: Instant,
    facts: &mut Facts,
) -> Option<String> {
    let t = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake = PRESENTED.scope(Cell::new(None), async {
        let r = connector.connect(server_name, tcp).await;
        (r, PRESENTED.with(Cell::get))
    });
    let outcome = timeout_at(deadline, handshake).await;
    facts.phases.tls += t.elapsed();
    let stream = match outcome {
        Ok((r, cert)) => {
            facts.cert = cert;
            match r {
                Ok(s) => s,
                Err(e) => {
                    fail_io(facts, &e, true);
                    return None;
                }
            }
        }
        Err(_) => {
            facts.fail(
                FailureReason::Timeout,
                "deadline passed during the TLS handshake",
            );
            return None;
        }
    };
    facts.ssl = true;
    facts.tls_version = match stream.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
        Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
        _ => None,
    };
    exchange(stream, request, want, None, deadline, facts).await
}

/// Write the request (head, then body), read the final status line (and, for a redirect to
/// follow, its `Location`). `proxy` is the proxy the request is written to, when it is not
/// inside a tunnel: a stall is then the proxy's.
async fn exchange<S>(
    mut stream: S,
    (head, body): (&[u8], &[u8]),
    want: Want,
    proxy: Option<&crate::proxy::Proxy>,
    deadline: Instant,
    facts: &mut Facts,
) -> Option<String>
where
    S: Conn,
{
    let t = Instant::now();
    let status = &mut facts.status;
    let outcome = timeout_at(deadline, async {
        stream.write_all(head).await?;
        if !body.is_empty() {
            stream.write_all(body).await?;
        }
        stream.flush().await?;
        read_head(&mut stream, want, status).await
    })
    .await;
    let took = t.elapsed();
    facts.phases.processing += took;
    let mut location = None;
    // Once the status line is in, what failed is the rest of a redirect's head: the 3xx is
    // the answer, and the detail says why it was not followed.
    let answered = facts.status.is_some();
    match outcome {
        Ok(Ok(h)) => location = h.location,
        Err(_) if answered => facts.not_followed(format_args!(
            "no Location within {} (deadline)",
            seconds(took)
        )),
        Ok(Err(ReadError::Closed)) if answered => {
            facts.not_followed("the connection closed before its Location");
        }
        Ok(Err(ReadError::Io(e))) if answered => facts.not_followed(e),
        Ok(Err(ReadError::Parse(e))) if answered => facts.not_followed(e),
        Err(_) => match proxy {
            Some(p) => facts.fail(
                FailureReason::Timeout,
                format!(
                    "proxy {}: no complete status line within {}",
                    p.authority(),
                    seconds(took)
                ),
            ),
            None => facts.fail(
                FailureReason::Timeout,
                "deadline passed before a complete status line",
            ),
        },
        Ok(Err(ReadError::Io(e))) => fail_io(facts, &e, false),
        Ok(Err(ReadError::Closed)) => facts.fail(
            FailureReason::Closed,
            "connection closed before a complete status line",
        ),
        Ok(Err(ReadError::Parse(e))) => facts.fail(FailureReason::InvalidResponse, e.to_string()),
    }
    finish(&mut stream);
    // Dropping the stream closes the connection.
    location
}

/// A probe's stream: gives access to its TCP socket.
trait Conn: AsyncRead + AsyncWrite + Unpin {
    /// The TCP socket underneath.
    fn tcp(&self) -> &tokio::net::TcpStream;
}

impl Conn for tokio::net::TcpStream {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self
    }
}

impl Conn for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0
    }
}

/// Turn the reset-on-close of a probe's socket on or off.
// `set_linger` is deprecated in tokio because a linger *time* blocks the closing thread;
// zero does not block (it resets), and off is the default close.
#[allow(deprecated)]
fn set_linger_zero(tcp: &tokio::net::TcpStream, on: bool) {
    let _ = tcp.set_linger(on.then_some(Duration::ZERO));
}

/// Before the stream is dropped: when the server has already closed its side (its FIN is
/// among the bytes already received), close normally, so that TIME_WAIT stays on the server's
/// side; otherwise the close resets. Reads only what has arrived, at most 64 KiB, never waits.
fn finish<S: Conn>(stream: &mut S) {
    use futures_util::FutureExt as _;
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut buf).now_or_never() {
            Some(Ok(0)) => {
                set_linger_zero(stream.tcp(), false);
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

/// Why no status line was read.
#[derive(Debug)]
enum ReadError {
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
const INITIAL_READ: usize = 1024;

/// How much of a response head to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The final status line only.
    Status,
    /// The status line, and a redirect's `Location`.
    Location,
    /// The whole head (a proxy's answer to CONNECT), noting bytes after it.
    Whole,
}

/// What was read of a response head after its final status line.
#[derive(Debug)]
struct Head {
    /// The `Location` of a redirect, when asked for.
    location: Option<String>,
    /// Bytes followed the head ([`Want::Whole`] only).
    extra: bool,
    /// The largest the buffer grew, in bytes: what the reader held at most.
    #[cfg(test)]
    held: usize,
}

/// Read until the final status line is complete, holding at most [`MAX_LINE`] bytes, and put
/// it in `answer`; then, as `want` says, the header lines too: at most [`MAX_HEAD`] more bytes,
/// read one line at a time into the same buffer (a redirect's `Location` is that buffer, cut
/// down to the value). An error after the status line leaves the status line in `answer`.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    want: Want,
    answer: &mut Option<StatusLine>,
) -> Result<Head, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_READ);
    let mut parser = HeadParser::new();
    let line = loop {
        if buf.len() == buf.capacity() {
            // The parser refuses a line of MAX_LINE bytes, so len < MAX_LINE here.
            buf.reserve_exact((buf.capacity() * 2).min(MAX_LINE).saturating_sub(buf.len()));
        }
        let room = buf.capacity().min(MAX_LINE) - buf.len();
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match parser.advance(&buf).map_err(ReadError::Parse)? {
            Step::Done(line) => break line,
            Step::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
    };
    let headers = match want {
        Want::Status => false,
        Want::Location => is_redirect(line.code),
        Want::Whole => true,
    };
    *answer = Some(line);
    if !headers {
        return Ok(Head {
            location: None,
            extra: false,
            #[cfg(test)]
            held: buf.capacity(),
        });
    }
    buf.drain(..parser.end());
    let mut scan = HeaderScan::new(want == Want::Location);
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
                    #[cfg(test)]
                    held,
                });
            }
            Headers::End { end } => {
                return Ok(Head {
                    location: None,
                    extra: buf.len() > end,
                    #[cfg(test)]
                    held: buf.capacity(),
                });
            }
            Headers::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
        if read >= MAX_HEAD {
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
            return Err(ReadError::Closed);
        }
        read += n;
    }
}

/// Record an IO error (plain or carrying a TLS error) as a failure. A TLS error can quote the
/// names of the server's certificate: its text is made printable here.
fn fail_io(facts: &mut Facts, e: &io::Error, handshake: bool) {
    if let Some(tls_err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return facts.fail(
            tls::classify(tls_err),
            text::printable(&tls_err.to_string()),
        );
    }
    let reason = match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => FailureReason::Reset,
        io::ErrorKind::UnexpectedEof if handshake => FailureReason::TlsHandshake,
        io::ErrorKind::UnexpectedEof => FailureReason::Closed,
        _ if handshake => FailureReason::TlsHandshake,
        _ => FailureReason::Closed,
    };
    facts.fail(reason, e.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A whole head with cookies just under the limit: held one line at a time.
        let mut fits = b"HTTP/1.1 200 Connection established\r\n".to_vec();
        fits.extend(cookies(3));
        fits.extend(b"\r\n");
        let (head, _, _) = read_from(&fits, Want::Whole).await;
        let head = head.unwrap();
        assert!(!head.extra && head.held <= MAX_LINE, "{}", head.held);
    }
}
