//! What a probe found out: its result, the failure reasons, the status line and phase times.
//! Vocabulary shared by the probe, the metrics, the history and the pages; it imports
//! nothing of this crate.

use std::fmt;
use std::time::Duration;

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
    /// The proxy refused the TCP connection.
    ProxyConnectRefused,
    /// The proxy answered CONNECT with a code other than 2xx (the code is in the detail).
    ProxyConnectStatus,
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
    /// A valid status line whose HTTP version is not in `valid_http_versions`.
    HttpVersion,
    /// A redirect loop, or more redirects than `follow_redirects` allows.
    RedirectLimit,
    /// `fail_if_ssl`: the final request went over TLS.
    FailIfSsl,
    /// `fail_if_not_ssl`: the final request did not go over TLS.
    FailIfNotSsl,
    /// A `fail_if_header_matches` pattern matched a value of its header.
    HeaderMatches,
    /// A `fail_if_header_not_matches` pattern matched no value of its header.
    HeaderNotMatches,
    /// A header that a header check names is missing, and the check does not allow that.
    HeaderMissing,
    /// A `fail_if_body_matches_regexp` pattern matched the body.
    BodyMatches,
    /// A `fail_if_body_not_matches_regexp` pattern did not match the body.
    BodyNotMatches,
    /// The body, decoded, is longer than `body_size_limit`.
    BodyTooLarge,
    /// A `/probe` target admitted by the allowlist resolved only to addresses it denies (or
    /// a redirect led to a host it does not admit): no connection was made.
    AddressDenied,
    /// The probe never left the queue before the scrape's deadline.
    NotStarted,
    /// The probe started late and the scrape's deadline ended it before its own timeout.
    ScrapeDeadline,
}

impl FailureReason {
    /// Every reason, in the order of the documentation.
    pub const ALL: [FailureReason; 31] = [
        FailureReason::Dns,
        FailureReason::ConnectRefused,
        FailureReason::ConnectTimeout,
        FailureReason::ConnectError,
        FailureReason::ProxyConnectRefused,
        FailureReason::ProxyConnectStatus,
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
        FailureReason::HttpVersion,
        FailureReason::RedirectLimit,
        FailureReason::FailIfSsl,
        FailureReason::FailIfNotSsl,
        FailureReason::HeaderMatches,
        FailureReason::HeaderNotMatches,
        FailureReason::HeaderMissing,
        FailureReason::BodyMatches,
        FailureReason::BodyNotMatches,
        FailureReason::BodyTooLarge,
        FailureReason::AddressDenied,
        FailureReason::NotStarted,
        FailureReason::ScrapeDeadline,
    ];

    /// Whether this reason, given with a status line, comes from the header and body checks:
    /// a check that failed, or a head or body that could not be read whole for them (a
    /// timeout, a close, a reset, a bad chunk). Its detail then says what the status line
    /// does not (the pattern), and is shown beside it.
    pub fn about_head_or_body(self) -> bool {
        matches!(
            self,
            FailureReason::HeaderMatches
                | FailureReason::HeaderNotMatches
                | FailureReason::HeaderMissing
                | FailureReason::BodyMatches
                | FailureReason::BodyNotMatches
                | FailureReason::BodyTooLarge
                | FailureReason::Timeout
                | FailureReason::Closed
                | FailureReason::Reset
                | FailureReason::InvalidResponse
        )
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Dns => "dns",
            FailureReason::ConnectRefused => "connect_refused",
            FailureReason::ConnectTimeout => "connect_timeout",
            FailureReason::ConnectError => "connect_error",
            FailureReason::ProxyConnectRefused => "proxy_connect_refused",
            FailureReason::ProxyConnectStatus => "proxy_connect_status",
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
            FailureReason::HttpVersion => "http_version",
            FailureReason::RedirectLimit => "redirect_limit",
            FailureReason::FailIfSsl => "fail_if_ssl",
            FailureReason::FailIfNotSsl => "fail_if_not_ssl",
            FailureReason::HeaderMatches => "header_matches",
            FailureReason::HeaderNotMatches => "header_not_matches",
            FailureReason::HeaderMissing => "header_missing",
            FailureReason::BodyMatches => "body_matches",
            FailureReason::BodyNotMatches => "body_not_matches",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::AddressDenied => "address_denied",
            FailureReason::NotStarted => "not_started",
            FailureReason::ScrapeDeadline => "scrape_deadline",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time span in nanoseconds: half the size of a [`Duration`] (which pads its 12 bytes to
/// 16), and exact to the nanosecond up to 584 years. Results keep their times in it, so that a
/// round of 100,000 results holds 4.8 MB less. It compares with a [`Duration`] directly.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(u64);

impl Nanos {
    /// Zero.
    pub const ZERO: Nanos = Nanos(0);

    /// `d`, saturating at `u64::MAX` nanoseconds.
    pub fn new(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// As a [`Duration`].
    pub fn get(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Seconds, as the exposition writes them.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Nanos {
        Nanos::new(d)
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Duration {
        n.get()
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl std::ops::AddAssign<Duration> for Nanos {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(Nanos::new(d).0);
    }
}

impl std::ops::AddAssign for Nanos {
    fn add_assign(&mut self, n: Nanos) {
        self.0 = self.0.saturating_add(n.0);
    }
}

impl PartialEq<Duration> for Nanos {
    fn eq(&self, d: &Duration) -> bool {
        self.get() == *d
    }
}

impl PartialOrd<Duration> for Nanos {
    fn partial_cmp(&self, d: &Duration) -> Option<std::cmp::Ordering> {
        self.get().partial_cmp(d)
    }
}

/// How long each phase took. A phase that did not run is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Waiting for the host's addresses (zero for IP literals).
    pub resolve: Nanos,
    /// From the first connect call to an established TCP connection (to the proxy, when
    /// there is one).
    pub connect: Nanos,
    /// The CONNECT exchange with a proxy, for https through a proxy.
    pub proxy: Nanos,
    /// The TLS handshake.
    pub tls: Nanos,
    /// From writing the request to the last byte of the final status line.
    pub processing: Nanos,
}

impl Phases {
    /// Add `other`'s times to these.
    pub fn add(&mut self, other: &Phases) {
        self.resolve += other.resolve;
        self.connect += other.connect;
        self.proxy += other.proxy;
        self.tls += other.tls;
        self.processing += other.processing;
    }
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

/// The HTTP version named in a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
        })
    }
}

/// A parsed status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// The protocol version the peer answered with.
    pub version: HttpVersion,
    /// The three-digit status code, 100 to 599.
    pub code: u16,
    /// The reason phrase, possibly empty; non-UTF-8 bytes are replaced.
    pub reason: Reason,
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.code)?;
        let reason = self.reason.text(self.code);
        if !reason.is_empty() {
            write!(f, " {reason}")?;
        }
        Ok(())
    }
}

/// A status line's reason phrase. The phrase RFC 9110 gives its code (`OK` for 200, the answer
/// of nearly every probe) is held as a mark, not as text: a result then owns no allocation for
/// it. Any other phrase is kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(Option<Box<str>>);

impl Reason {
    /// The phrase `text` of a status line with `code`.
    pub fn new(code: u16, text: &str) -> Reason {
        if !text.is_empty() && standard_reason(code) == text {
            Reason(None)
        } else {
            Reason(Some(text.into()))
        }
    }

    /// Whether it is the code's usual phrase.
    pub fn is_usual(&self) -> bool {
        self.0.is_none()
    }

    /// The phrase, for a status line with `code` (the code it was made with).
    pub fn text(&self, code: u16) -> &str {
        self.0.as_deref().unwrap_or_else(|| standard_reason(code))
    }
}

/// The reason phrase RFC 9110 gives `code`, or `""`.
pub fn standard_reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// NotAfter of the presented certificates, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertExpiry {
    /// The leaf (end-entity) certificate's NotAfter.
    pub leaf: i64,
    /// The earliest NotAfter of the whole presented chain.
    pub earliest: i64,
}

/// blackbox_exporter's facts of the chain the server presented: the leaf's identity, and the
/// earliest expiry of the chain that was verified. Held behind an [`std::sync::Arc`] so that a
/// result without TLS carries one pointer only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// SHA-256 of the leaf certificate's DER.
    pub fingerprint_sha256: [u8; 32],
    /// The subject, issuer and DNS names, one after the other (see the accessors): one
    /// allocation instead of three.
    pub names: String,
    /// Where the subject ends in `names`.
    pub subject_end: usize,
    /// Where the issuer ends in `names` (the DNS names follow).
    pub issuer_end: usize,
    /// Earliest NotAfter of the verified chain, the trust anchor's included when it is known
    /// (unix seconds); `None` when the chain was not verified (refused, or
    /// `insecure_skip_verify`).
    pub last_chain_expiry: Option<i64>,
}

impl ChainInfo {
    /// The leaf's subject, in Go's `pkix.Name.String()` form (`CN=a.test,O=Example`).
    pub fn subject(&self) -> &str {
        self.names.get(..self.subject_end).unwrap_or_default()
    }

    /// The leaf's issuer, in the form of [`ChainInfo::subject`].
    pub fn issuer(&self) -> &str {
        self.names
            .get(self.subject_end..self.issuer_end)
            .unwrap_or_default()
    }

    /// The leaf's DNS subject alternative names, joined with `,`.
    pub fn subject_alternative(&self) -> &str {
        self.names.get(self.issuer_end..).unwrap_or_default()
    }

    /// [`ChainInfo::fingerprint_sha256`] in lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(64);
        for b in self.fingerprint_sha256 {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        out
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
    pub detail: Option<Box<str>>,
    /// From the probe's start (after it left the queue) to its end.
    pub duration: Nanos,
    /// Per-phase times.
    pub phases: Phases,
    /// The address connected to, once connected (before that, the first address the host
    /// resolved to): the one `probe_ip_addr_hash` hashes.
    pub ip: Option<std::net::IpAddr>,
    /// The final answer's `Content-Length`, when the bytes that came with its status line
    /// carry it.
    pub content_length: Option<u64>,
    /// The negotiated TLS version.
    pub tls_version: Option<TlsVersion>,
    /// Expiry of the certificates the server presented, even if they were refused.
    pub cert: Option<CertExpiry>,
    /// The presented chain's leaf and, when it was verified, the chain's expiry.
    pub chain: Option<std::sync::Arc<ChainInfo>>,
    /// For a target with header or body checks: whether one failed, as blackbox_exporter's
    /// `probe_failed_due_to_regex` says it (a body that could not be read whole fails its
    /// body checks); `None` for a target without checks.
    pub failed_due_to_regex: Option<bool>,
    /// Bytes of the final answer's body read, decoded (at most its limit, which is at most
    /// 256 MiB: a `u32` holds it), when it was read.
    pub body_length: Option<u32>,
    /// Redirects followed.
    pub redirects: u8,
    /// Whether the final request went over TLS (its handshake completed).
    pub ssl: bool,
}

impl ProbeResult {
    /// Whether the probe succeeded.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// 4 or 6: the address family of [`ProbeResult::ip`].
    pub fn ip_protocol(&self) -> Option<u8> {
        self.ip.map(|ip| if ip.is_ipv4() { 4 } else { 6 })
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
        let mut result = ProbeResult::default();
        result.ended_by_scrape_deadline();
        result
    }

    /// Mark this result as ended by the scrape's deadline before the probe's own timeout; the
    /// facts it gathered stay.
    pub fn ended_by_scrape_deadline(&mut self) {
        self.failure = Some(FailureReason::ScrapeDeadline);
        self.detail = Some("the scrape deadline ended the probe before its own timeout".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usual_reason_phrase_is_a_mark_and_any_other_is_kept_as_written() {
        let ok = Reason::new(200, "OK");
        assert_eq!(ok, Reason(None), "the usual phrase owns no text");
        assert_eq!(ok.text(200), "OK");
        let other = Reason::new(200, "Fine");
        assert_eq!(other.text(200), "Fine");
        // Another code's phrase, a phrase in another case, and none at all stay as written.
        assert_eq!(Reason::new(200, "Not Found").text(200), "Not Found");
        assert_eq!(Reason::new(404, "not found").text(404), "not found");
        assert_eq!(Reason::new(200, "").text(200), "");
        assert_eq!(Reason::new(299, "").text(299), "");
        let line = StatusLine {
            version: HttpVersion::Http11,
            code: 503,
            reason: Reason::new(503, "Service Unavailable"),
        };
        assert_eq!(line.to_string(), "HTTP/1.1 503 Service Unavailable");
        let bare = StatusLine {
            version: HttpVersion::Http10,
            code: 200,
            reason: Reason::new(200, ""),
        };
        assert_eq!(bare.to_string(), "HTTP/1.0 200");
    }

    #[test]
    fn nanos_are_exact_and_compare_with_durations() {
        let d = Duration::new(3, 123_456_789);
        let n = Nanos::from(d);
        assert_eq!(n.get(), d);
        assert!(n == d && n < Duration::from_secs(4) && n > Duration::from_secs(3));
        let mut sum = Nanos::ZERO;
        sum += d;
        sum += n;
        assert_eq!(sum, Duration::new(6, 246_913_578));
        assert_eq!(
            Nanos::from(Duration::MAX).get(),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(format!("{n:?}"), format!("{d:?}"));
    }
}
