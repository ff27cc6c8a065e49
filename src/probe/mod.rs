//! One probe: resolve, connect (TCP, then TLS for https), write the request, read the status
//! line, close. Every step runs under the probe's deadline and is timed.
//!
//! A target that is down is a [`ProbeResult`] with a [`FailureReason`], never an `Err`.

pub mod connect;
pub mod status;

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::dns::RoundResolver;
use crate::target::{Scheme, Target};
use crate::tls::{self, CertExpiry, PRESENTED};
use status::{HeadParser, MAX_LINE, StatusLine, Step};

/// Why a probe failed: the value of the `reason` label of `probe_failure_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// The host name did not resolve (or to no address of the allowed family).
    Dns,
    /// Every address refused the connection.
    ConnectRefused,
    /// The deadline passed before a TCP connection was established.
    ConnectTimeout,
    /// Connecting failed otherwise: unreachable network, no usable source address.
    ConnectError,
    /// The TLS handshake failed for a reason not listed below.
    TlsHandshake,
    /// The server's certificate is expired or not yet valid.
    TlsCertExpired,
    /// The server's certificate chain does not lead to a trusted CA.
    TlsCertUntrusted,
    /// The server's certificate is not valid for the name probed.
    TlsHostnameMismatch,
    /// No TLS version both sides accept.
    TlsProtocolVersion,
    /// The server refused our client certificate, or required one we did not send.
    TlsClientCert,
    /// The peer does not speak TLS at all (it answered the handshake with something else).
    TlsNotTls,
    /// Connected, but no complete status line arrived before the deadline.
    Timeout,
    /// The peer closed the connection before a complete status line.
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The peer answered with something that is not an HTTP/1.x status line.
    InvalidResponse,
    /// A valid status line with a code outside `valid_status_codes`.
    StatusCode,
    /// The probe never left the queue before the scrape's deadline.
    NotStarted,
    /// The probe started late and the scrape's deadline ended it before its own timeout.
    ScrapeDeadline,
}

impl FailureReason {
    /// Every reason, in the order of the documentation.
    pub const ALL: [FailureReason; 18] = [
        FailureReason::Dns,
        FailureReason::ConnectRefused,
        FailureReason::ConnectTimeout,
        FailureReason::ConnectError,
        FailureReason::TlsHandshake,
        FailureReason::TlsCertExpired,
        FailureReason::TlsCertUntrusted,
        FailureReason::TlsHostnameMismatch,
        FailureReason::TlsProtocolVersion,
        FailureReason::TlsClientCert,
        FailureReason::TlsNotTls,
        FailureReason::Timeout,
        FailureReason::Closed,
        FailureReason::Reset,
        FailureReason::InvalidResponse,
        FailureReason::StatusCode,
        FailureReason::NotStarted,
        FailureReason::ScrapeDeadline,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Dns => "dns",
            FailureReason::ConnectRefused => "connect_refused",
            FailureReason::ConnectTimeout => "connect_timeout",
            FailureReason::ConnectError => "connect_error",
            FailureReason::TlsHandshake => "tls_handshake",
            FailureReason::TlsCertExpired => "tls_cert_expired",
            FailureReason::TlsCertUntrusted => "tls_cert_untrusted",
            FailureReason::TlsHostnameMismatch => "tls_hostname_mismatch",
            FailureReason::TlsProtocolVersion => "tls_protocol_version",
            FailureReason::TlsClientCert => "tls_client_cert",
            FailureReason::TlsNotTls => "tls_not_tls",
            FailureReason::Timeout => "timeout",
            FailureReason::Closed => "closed",
            FailureReason::Reset => "reset",
            FailureReason::InvalidResponse => "invalid_response",
            FailureReason::StatusCode => "status_code",
            FailureReason::NotStarted => "not_started",
            FailureReason::ScrapeDeadline => "scrape_deadline",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long each phase took. A phase that did not run is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Waiting for the host's addresses (zero for IP literals).
    pub resolve: Duration,
    /// From the first connect call to an established TCP connection.
    pub connect: Duration,
    /// The TLS handshake.
    pub tls: Duration,
    /// From writing the request to the last byte of the final status line.
    pub processing: Duration,
}

/// The negotiated TLS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2
    Tls12,
    /// TLS 1.3
    Tls13,
}

impl TlsVersion {
    /// The `version` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }
}

/// Everything one probe found out.
#[derive(Debug, Clone, Default)]
pub struct ProbeResult {
    /// The final status line, if a valid one arrived.
    pub status: Option<StatusLine>,
    /// Why the probe failed; `None` means success.
    pub failure: Option<FailureReason>,
    /// A human-readable detail of the failure (the OS or TLS error), for logs and `check`.
    pub detail: Option<String>,
    /// From the probe's start (after it left the queue) to its end.
    pub duration: Duration,
    /// Per-phase times.
    pub phases: Phases,
    /// 4 or 6: the address family of the connection, once connected.
    pub ip_protocol: Option<u8>,
    /// The negotiated TLS version.
    pub tls_version: Option<TlsVersion>,
    /// Expiry of the certificates the server presented, even if they were refused.
    pub cert: Option<CertExpiry>,
}

impl ProbeResult {
    /// Whether the probe succeeded.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// A result for a probe that never ran.
    pub fn not_started() -> Self {
        ProbeResult {
            failure: Some(FailureReason::NotStarted),
            detail: Some("no free probe slot before the scrape deadline".into()),
            ..Default::default()
        }
    }

    /// A result for a probe that the scrape's deadline ended before it finished.
    pub fn cut_by_deadline() -> Self {
        ProbeResult {
            failure: Some(FailureReason::ScrapeDeadline),
            detail: Some("the scrape deadline ended the probe before its own timeout".into()),
            ..Default::default()
        }
    }

    /// Record a failure.
    fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failure = Some(reason);
        self.detail = Some(detail.into());
    }
}

/// Probe `target` once, giving up at `deadline`. The probe's clock starts now.
pub async fn probe(target: &Target, deadline: Instant, resolver: &RoundResolver) -> ProbeResult {
    let start = Instant::now();
    let mut result = ProbeResult::default();
    run(target, deadline, resolver, &mut result).await;
    result.duration = Instant::now().saturating_duration_since(start);
    result
}

/// The body of [`probe`]: fills `result` as far as it gets.
async fn run(
    target: &Target,
    deadline: Instant,
    resolver: &RoundResolver,
    result: &mut ProbeResult,
) {
    let t = Instant::now();
    let resolved = timeout_at(
        deadline,
        resolver.resolve(&target.url.host, target.ip_protocol),
    )
    .await;
    let addrs = match resolved {
        Ok(answer) => {
            // The lookup's own time, never the wait for a lookup slot; shared lookups report
            // theirs to every target of the host.
            result.phases.resolve = answer.took;
            match answer.result {
                Ok(addrs) => addrs,
                Err(e) => return result.fail(FailureReason::Dns, e.to_string()),
            }
        }
        Err(_) => {
            result.phases.resolve = t.elapsed();
            let name = crate::dns::DnsFailure::Deadline(target.url.host.to_string());
            return result.fail(FailureReason::Dns, name.to_string());
        }
    };

    // A deadline already past opens no socket (a timeout polls its future once first).
    if Instant::now() >= deadline {
        return result.fail(
            FailureReason::ConnectTimeout,
            "deadline passed before connecting",
        );
    }
    let t = Instant::now();
    let tcp = match timeout_at(
        deadline,
        connect::connect(&addrs, target.url.port, target.source_ip),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            result.phases.connect = t.elapsed();
            let reason = if e.kind() == io::ErrorKind::ConnectionRefused {
                FailureReason::ConnectRefused
            } else {
                FailureReason::ConnectError
            };
            return result.fail(reason, e.to_string());
        }
        Err(_) => {
            result.phases.connect = t.elapsed();
            return result.fail(
                FailureReason::ConnectTimeout,
                "deadline passed while connecting",
            );
        }
    };
    result.phases.connect = t.elapsed();
    result.ip_protocol = tcp
        .peer_addr()
        .ok()
        .map(|a| if a.is_ipv4() { 4 } else { 6 });
    // Probes write one small request: do not wait for more to fill a segment.
    let _ = tcp.set_nodelay(true);
    // A connection we close first ends with a reset, unless the server has closed already
    // (see `finish`): an active close would leave a TIME_WAIT socket on our side for a
    // minute, and rounds of thousands of targets on one address would run out of ports.
    set_linger_zero(&tcp, true);

    match (target.url.scheme, &target.tls) {
        // Boxed: the TLS state is large, and plain probes should not carry its size.
        (Scheme::Https, Some(tls)) => {
            Box::pin(tls_exchange(tcp, tls, target, deadline, result)).await
        }
        _ => exchange(tcp, target, deadline, result).await,
    }
}

/// The TLS handshake (recording the presented certificates), then [`exchange`].
async fn tls_exchange(
    tcp: tokio::net::TcpStream,
    tls: &crate::tls::TlsTarget,
    target: &Target,
    deadline: Instant,
    result: &mut ProbeResult,
) {
    let t = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let handshake = PRESENTED.scope(Cell::new(None), async {
        let r = connector.connect(tls.server_name.clone(), tcp).await;
        (r, PRESENTED.with(Cell::get))
    });
    let outcome = timeout_at(deadline, handshake).await;
    result.phases.tls = t.elapsed();
    let stream = match outcome {
        Ok((r, cert)) => {
            result.cert = cert;
            match r {
                Ok(s) => s,
                Err(e) => return fail_io(result, &e, true),
            }
        }
        Err(_) => {
            return result.fail(
                FailureReason::Timeout,
                "deadline passed during the TLS handshake",
            );
        }
    };
    result.tls_version = match stream.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
        Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
        _ => None,
    };
    exchange(stream, target, deadline, result).await;
}

/// Write the request, read the final status line, judge the code.
async fn exchange<S>(mut stream: S, target: &Target, deadline: Instant, result: &mut ProbeResult)
where
    S: Conn,
{
    let t = Instant::now();
    let outcome = timeout_at(deadline, async {
        stream.write_all(&target.request).await?;
        stream.flush().await?;
        read_status(&mut stream).await
    })
    .await;
    result.phases.processing = t.elapsed();
    match outcome {
        Err(_) => result.fail(
            FailureReason::Timeout,
            "deadline passed before a complete status line",
        ),
        Ok(Err(ReadError::Io(e))) => fail_io(result, &e, false),
        Ok(Err(ReadError::Closed)) => result.fail(
            FailureReason::Closed,
            "connection closed before a complete status line",
        ),
        Ok(Err(ReadError::Parse(e))) => result.fail(FailureReason::InvalidResponse, e.to_string()),
        Ok(Ok(status)) => {
            if !target.valid_codes.contains(status.code) {
                result.fail(
                    FailureReason::StatusCode,
                    format!("status {} is not a valid status code", status.code),
                );
            }
            result.status = Some(status);
        }
    }
    finish(&mut stream);
    // Dropping the stream closes the connection.
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
    Parse(status::ParseError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// First read's buffer size: a whole status line and usually the headers.
const INITIAL_READ: usize = 1024;

/// Read until the final status line is complete, holding at most [`MAX_LINE`] bytes.
async fn read_status<S: AsyncRead + Unpin>(stream: &mut S) -> Result<StatusLine, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(INITIAL_READ);
    let mut parser = HeadParser::new();
    loop {
        if buf.len() == buf.capacity() {
            // The parser refuses a line of MAX_LINE bytes, so len < MAX_LINE here.
            buf.reserve_exact((buf.capacity() * 2).min(MAX_LINE) - buf.len());
        }
        let room = buf.capacity() - buf.len();
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match parser.advance(&buf).map_err(ReadError::Parse)? {
            Step::Done(status) => return Ok(status),
            Step::NeedMore { consumed } => {
                buf.drain(..consumed);
            }
        }
    }
}

/// Record an IO error (plain or carrying a TLS error) as a failure.
fn fail_io(result: &mut ProbeResult, e: &io::Error, handshake: bool) {
    if let Some(tls_err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return result.fail(tls::classify(tls_err), tls_err.to_string());
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
    result.fail(reason, e.to_string());
}
