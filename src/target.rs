//! A target URL, parsed and checked once at load, and everything a probe needs from it.
//!
//! Nothing here is recomputed per probe: the request bytes, the address to connect to, the TLS
//! client and the rendered metric labels are built when the config is loaded.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::codes::StatusCodes;
use crate::tls::TlsTarget;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS over TCP.
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The host part of a URL: a DNS name to resolve or an address to use as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An ASCII (punycode for IDN) DNS name, lower case.
    Name(String),
    /// An IP literal: never sent to the resolver.
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// A validated probe URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// The URL exactly as written in the config: the `target` label.
    pub raw: String,
    /// http or https.
    pub scheme: Scheme,
    /// Where to connect.
    pub host: Host,
    /// The TCP port, explicit or the scheme's default.
    pub port: u16,
    /// The `Host` header value: host, plus `:port` when not the default.
    pub authority: String,
    /// Path and query, never empty: the request target of the request line.
    pub path_and_query: String,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Whitespace or control characters would allow header injection or hide typos.
    #[error("URL {0:?} contains whitespace or control characters")]
    Whitespace(String),
    /// Only http:// and https:// URLs can be probed.
    #[error("URL {0:?} must start with http:// or https://")]
    Scheme(String),
    /// The URL parser refused it.
    #[error("invalid URL {url:?}: {reason}")]
    Parse {
        /// The URL as written.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// Credentials in URLs end up in metric labels.
    #[error("URL {0:?} carries credentials; put an Authorization header in `headers` instead")]
    Credentials(String),
}

/// A URL as written, fit to show in an error: everything between its scheme and its last `@`
/// (a user and password, or whatever a malformed URL has there) becomes `<secret>`.
pub fn hide_userinfo(raw: &str) -> String {
    let start = raw.find("://").map_or(0, |i| i + 3);
    match raw[start..].rfind('@') {
        Some(at) => format!("{}<secret>{}", &raw[..start], &raw[start + at..]),
        None => raw.to_owned(),
    }
}

/// Parse and check a target URL.
pub fn parse_url(raw: &str) -> Result<ProbeUrl, UrlError> {
    if raw.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Whitespace(hide_userinfo(raw)));
    }
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let scheme = if lower.starts_with("http://") {
        Scheme::Http
    } else if lower.starts_with("https://") {
        Scheme::Https
    } else {
        return Err(UrlError::Scheme(hide_userinfo(raw)));
    };
    // `http:///ok` would be read as host `ok`: a host must follow the `//`.
    if raw[lower.find("//").map_or(0, |i| i + 2)..].starts_with('/') {
        return Err(UrlError::Parse {
            url: hide_userinfo(raw),
            reason: "no host".into(),
        });
    }
    let url = url::Url::parse(raw).map_err(|e| UrlError::Parse {
        url: hide_userinfo(raw),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials(hide_userinfo(raw)));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
        Some(url::Host::Ipv4(a)) => Host::Ip(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Host::Ip(IpAddr::V6(a)),
        None => {
            return Err(UrlError::Parse {
                url: hide_userinfo(raw),
                reason: "no host".into(),
            });
        }
    };
    let port = url.port().unwrap_or(scheme.default_port());
    if port == 0 {
        return Err(UrlError::Parse {
            url: hide_userinfo(raw),
            reason: "port 0 cannot be connected to".into(),
        });
    }
    let authority = if port == scheme.default_port() {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let mut path_and_query = url.path().to_owned();
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(ProbeUrl {
        raw: raw.to_owned(),
        scheme,
        host,
        port,
        authority,
        path_and_query,
    })
}

/// Where a redirect from `base` with `location` leads: the location resolved against `base`
/// (relative or absolute), if it makes a probe URL. `None` leaves the 3xx as the answer.
pub fn redirect_target(base: &ProbeUrl, location: &str) -> Option<ProbeUrl> {
    let joined = url::Url::parse(&base.raw).ok()?.join(location).ok()?;
    parse_url(joined.as_str()).ok()
}

/// The request method: any HTTP token (`GET`, `HEAD`, `POST`, `OPTIONS`, ...), as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Method(std::borrow::Cow<'static, str>);

impl Method {
    /// `GET`, the default.
    pub const GET: Method = Method(std::borrow::Cow::Borrowed("GET"));
    /// `HEAD`.
    pub const HEAD: Method = Method(std::borrow::Cow::Borrowed("HEAD"));

    /// A method from its token; `None` unless it is a non-empty RFC 9110 token of at most 32
    /// characters.
    pub fn new(token: &str) -> Option<Method> {
        let valid = !token.is_empty()
            && token.len() <= 32
            && token.bytes().all(crate::probe::status::is_tchar);
        valid.then(|| match token {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            other => Method(std::borrow::Cow::Owned(other.to_owned())),
        })
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request of this method carries a body by convention, so that an empty one is
    /// still announced with `Content-Length: 0` (RFC 9110 §8.6).
    pub fn expects_body(&self) -> bool {
        matches!(self.as_str(), "POST" | "PUT" | "PATCH")
    }
}

impl<'de> serde::Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Method::new(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "method: {s:?} is not an HTTP method token (like GET, HEAD, POST or OPTIONS)"
            ))
        })
    }
}

/// A value that must never be shown: a password, a token, a header read from a file. Its
/// `Debug` prints `<secret>`, and nothing in the exporter prints it otherwise.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the request bytes only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Everything a request carries besides its URL: kept per target so that a redirect can build
/// the next request, and so that `/config` can show names without values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The method of the first request.
    pub method: Method,
    /// Configured headers whose values may be shown.
    pub headers: Vec<(String, String)>,
    /// Headers with secret values (`Authorization` from `basic_auth` or `bearer_token`, values
    /// read from files): sent only to the target's own host.
    pub secret_headers: Vec<(String, Secret)>,
    /// The request body, shared by every target with the same `body` or `body_file`.
    pub body: Bytes,
}

impl RequestSpec {
    /// A bare request: `method` with no headers and no body.
    pub fn bare(method: Method) -> RequestSpec {
        RequestSpec {
            method,
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

/// How the request line names its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestForm<'a> {
    /// `GET /path HTTP/1.1`: to the origin server, or through a CONNECT tunnel.
    Origin,
    /// `GET http://host/path HTTP/1.1` to a proxy, with its `Proxy-Authorization` value if any.
    Absolute(Option<&'a Secret>),
}

/// What a request sent after a redirect keeps of the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The request goes to the target's own host (scheme, host and port): configured `Host`,
    /// credentials and secret headers are sent only then.
    pub same_origin: bool,
    /// The method and body of the first request are kept (307, 308); otherwise a request other
    /// than GET or HEAD becomes a GET without a body (301, 302, 303), as browsers do.
    pub keep_method: bool,
}

impl Hop {
    /// The first request of a probe.
    pub const FIRST: Hop = Hop {
        same_origin: true,
        keep_method: true,
    };
}

/// The `User-Agent` every probe sends unless the config names another.
pub const USER_AGENT: &str = concat!("http_status_exporter/", env!("CARGO_PKG_VERSION"));

/// Build a plain request head once: request line, `Host`, `User-Agent`, `Connection: close`,
/// then the configured headers (a configured `Host`, `User-Agent` or `Connection` replaces
/// ours).
pub fn build_request(url: &ProbeUrl, method: Method, headers: &[(String, String)]) -> Bytes {
    let spec = RequestSpec {
        headers: headers.to_vec(),
        ..RequestSpec::bare(method)
    };
    build_head(url, &spec, RequestForm::Origin, Hop::FIRST)
}

/// The head of one request of a probe (its body, if any, is [`request_body`]).
pub fn build_head(url: &ProbeUrl, spec: &RequestSpec, form: RequestForm<'_>, hop: Hop) -> Bytes {
    let downgraded = downgrades(spec, hop);
    let method = if downgraded {
        Method::GET
    } else {
        spec.method.clone()
    };
    let body_len = request_body(spec, hop).len();
    let secret =
        |k: &str| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie");
    // What this request sends of the configured headers.
    let shown = spec
        .headers
        .iter()
        .filter(|(k, _)| hop.same_origin || !(secret(k) || k.eq_ignore_ascii_case("host")))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let hidden = spec
        .secret_headers
        .iter()
        .filter(|_| hop.same_origin)
        .map(|(k, v)| (k.as_str(), v.expose()));
    let sent: Vec<(&str, &str)> = shown.chain(hidden).collect();
    let has = |name: &str| sent.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut req = String::with_capacity(128);
    // Writing to a String cannot fail.
    let _ = match form {
        RequestForm::Origin => write!(
            req,
            "{} {} HTTP/1.1\r\n",
            method.as_str(),
            url.path_and_query
        ),
        RequestForm::Absolute(_) => write!(
            req,
            "{} {}://{}{} HTTP/1.1\r\n",
            method.as_str(),
            match url.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
            url.authority,
            url.path_and_query
        ),
    };
    if !has("host") {
        let _ = write!(req, "Host: {}\r\n", url.authority);
    }
    if !has("user-agent") {
        let _ = write!(req, "User-Agent: {USER_AGENT}\r\n");
    }
    if !has("connection") {
        req.push_str("Connection: close\r\n");
    }
    if let RequestForm::Absolute(Some(auth)) = form {
        let _ = write!(req, "Proxy-Authorization: {}\r\n", auth.expose());
    }
    if body_len > 0 || (method.expects_body() && !downgraded) {
        let _ = write!(req, "Content-Length: {body_len}\r\n");
    }
    for (k, v) in sent {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    Bytes::from(req)
}

/// Whether `hop` turns the request into a GET without a body (301, 302 and 303 do so to a
/// method other than GET or HEAD).
fn downgrades(spec: &RequestSpec, hop: Hop) -> bool {
    !hop.keep_method && !matches!(spec.method.as_str(), "GET" | "HEAD")
}

/// The body a request of `hop` sends: the configured one, unless the redirect dropped it.
pub fn request_body(spec: &RequestSpec, hop: Hop) -> &[u8] {
    if downgrades(spec, hop) {
        &[]
    } else {
        &spec.body
    }
}

/// Which address family a probe may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    /// Both, IPv6 first, with Happy Eyeballs between them.
    #[default]
    Auto,
    /// IPv4 only.
    Ip4,
    /// IPv6 only.
    Ip6,
}

impl IpProtocol {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            IpProtocol::Auto => "auto",
            IpProtocol::Ip4 => "ip4",
            IpProtocol::Ip6 => "ip6",
        }
    }
}

/// Escape a label value for the text exposition format.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One target, ready to probe. Its `Debug` leaves out the request bytes, which may carry
/// credentials.
#[derive(Clone)]
pub struct Target {
    /// The parsed URL.
    pub url: ProbeUrl,
    /// The optional `name` label.
    pub name: Option<String>,
    /// Extra labels from the config, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The head of the first request, built once (in absolute form when the target's own URL
    /// goes through a plain-HTTP proxy).
    pub request: Bytes,
    /// Method, headers and body, for the body and for the requests after a redirect.
    pub spec: Arc<RequestSpec>,
    /// Redirects followed at most (0: a 3xx is the answer).
    pub follow_redirects: u8,
    /// TLS client for the https requests of a redirect chain whose first URL is not the
    /// target's own host (or is http): the target's `tls_config` without its `server_name`.
    pub redirect_tls: Option<Arc<rustls::ClientConfig>>,
    /// Fail when the final request went over TLS.
    pub fail_if_ssl: bool,
    /// Fail when the final request did not go over TLS.
    pub fail_if_not_ssl: bool,
    /// Which proxy each request goes through, when a proxy is configured.
    pub proxy: Option<Arc<crate::proxy::ProxyRules>>,
    /// The probe's own time limit.
    pub timeout: Duration,
    /// Status codes that count as success.
    pub valid_codes: Arc<StatusCodes>,
    /// TLS client for https targets, shared by every target with the same TLS settings.
    pub tls: Option<TlsTarget>,
    /// Address families allowed.
    pub ip_protocol: IpProtocol,
    /// Local address to bind before connecting.
    pub source_ip: Option<IpAddr>,
    /// The label pairs of this target's series, rendered once: `target="…",name="…",…`.
    pub label_block: String,
    /// The group it belongs to (`default` unless the file says otherwise).
    pub group: Arc<str>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.raw)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("spec", &self.spec)
            .field("timeout", &self.timeout)
            .field("follow_redirects", &self.follow_redirects)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Render the label block of a target: `target` first, then `name`, then `group` (when
    /// the file uses groups), then extra labels.
    pub fn render_labels(
        url: &str,
        name: Option<&str>,
        group: Option<&str>,
        labels: &[(String, String)],
    ) -> String {
        let mut out = String::with_capacity(url.len() + 32);
        out.push_str("target=\"");
        escape_label_value(&mut out, url);
        out.push('"');
        if let Some(n) = name {
            out.push_str(",name=\"");
            escape_label_value(&mut out, n);
            out.push('"');
        }
        if let Some(g) = group {
            out.push_str(",group=\"");
            escape_label_value(&mut out, g);
            out.push('"');
        }
        for (k, v) in labels {
            out.push(',');
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(&mut out, v);
            out.push('"');
        }
        out
    }

    /// A stable 64-bit hash of the target's URL (FNV-1a), used to assign shards.
    pub fn shard_hash(&self) -> u64 {
        fnv1a(self.url.raw.as_bytes())
    }
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike `std`'s hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_for_the_wire() {
        let u = parse_url("http://Example.COM").unwrap();
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert_eq!((u.port, u.authority.as_str()), (80, "example.com"));
        assert_eq!(u.path_and_query, "/");

        let u = parse_url("https://[::1]:8443/a/b?x=1&y=%20#frag").unwrap();
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(u.authority, "[::1]:8443");
        assert_eq!(u.path_and_query, "/a/b?x=1&y=%20");

        let u = parse_url("https://bücher.example/").unwrap();
        assert_eq!(u.host, Host::Name("xn--bcher-kva.example".into()));
        assert_eq!(u.raw, "https://bücher.example/");

        let u = parse_url("http://127.0.0.1:80/").unwrap();
        assert_eq!(u.authority, "127.0.0.1");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "",
            "ftp://example.com/",
            "example.com",
            "http://exa mple.com/",
            "http://example.com/\r\nX-Injected: 1",
            "http://example.com/\t",
            "http://",
            "http://user:pw@example.com/",
            "http://example.com:99999/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn request_bytes_are_well_formed() {
        let u = parse_url("http://localhost:8080/health?full=1").unwrap();
        let req = build_request(&u, Method::GET, &[("X-Probe".into(), "1".into())]);
        assert_eq!(
            std::str::from_utf8(&req).unwrap(),
            format!(
                "GET /health?full=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: {USER_AGENT}\r\n\
                 Connection: close\r\nX-Probe: 1\r\n\r\n"
            )
        );
        let req = build_request(&u, Method::HEAD, &[("host".into(), "other".into())]);
        let text = std::str::from_utf8(&req).unwrap();
        assert!(text.starts_with("HEAD /health?full=1 HTTP/1.1\r\nUser-Agent:"));
        assert!(text.ends_with("host: other\r\n\r\n"));
    }

    #[test]
    fn labels_are_escaped() {
        let block = Target::render_labels(
            "http://x/\"q\"",
            Some("a\\b"),
            None,
            &[("team".into(), "line\nbreak".into())],
        );
        assert_eq!(
            block,
            r#"target="http://x/\"q\"",name="a\\b",team="line\nbreak""#
        );
        let block = Target::render_labels("http://x/", None, Some("critical"), &[]);
        assert_eq!(block, r#"target="http://x/",group="critical""#);
    }

    #[test]
    fn shard_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
