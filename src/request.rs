//! The bytes of a probe request: method, configured headers and body, and the head of each
//! request of a redirect chain.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::probe_url::{ProbeUrl, Scheme};
use crate::secret::Secret;

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
        let valid = !token.is_empty() && token.len() <= 32 && token.bytes().all(is_tchar);
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
    /// The value of a configured `Host` header (any case), written in the file or read from
    /// one.
    pub fn host_header(&self) -> Option<&str> {
        let shown = self.headers.iter().map(|(k, v)| (k, v.as_str()));
        let secret = self.secret_headers.iter().map(|(k, v)| (k, v.expose()));
        shown
            .chain(secret)
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim())
    }

    /// This spec with `Host: host` instead of any configured `Host` header.
    pub fn with_host(&self, host: &str) -> RequestSpec {
        let not_host = |k: &String| !k.eq_ignore_ascii_case("host");
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(k, _)| not_host(k))
            .cloned()
            .collect();
        headers.push(("Host".to_owned(), host.to_owned()));
        RequestSpec {
            method: self.method.clone(),
            headers,
            secret_headers: self
                .secret_headers
                .iter()
                .filter(|(k, _)| not_host(k))
                .cloned()
                .collect(),
            body: self.body.clone(),
        }
    }

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

/// The host of a `Host` header's value, as blackbox_exporter uses it for the TLS server name:
/// without a `:port`, and a bracketed IPv6 address without its brackets.
pub fn host_of(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']').map_or(value, |(ip, _)| ip);
    }
    match value.rsplit_once(':') {
        // One colon: `host:port`. More than one: an IPv6 address without brackets.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => value,
    }
}

/// The `User-Agent` every probe sends unless the config names another.
pub const USER_AGENT: &str = concat!("http_status_exporter/", env!("CARGO_PKG_VERSION"));

/// The `User-Agent` header line a request sends unless the config sets one.
const USER_AGENT_LINE: &str = concat!(
    "User-Agent: http_status_exporter/",
    env!("CARGO_PKG_VERSION"),
    "\r\n"
);

/// The head of one request of a probe (its body, if any, is [`request_body`]).
pub fn build_head(url: &ProbeUrl, spec: &RequestSpec, form: RequestForm<'_>, hop: Hop) -> Bytes {
    build_head_with_cookies(url, spec, form, hop, None)
}

/// [`build_head`] with `cookies`, the `Cookie` value a probe's cookie jar has for `url` (names
/// and values the jar checked: no control characters). A request sends one `Cookie` header at
/// most (RFC 6265 §5.4): the jar's cookies follow those of a configured `Cookie` header the
/// request sends (one goes only to the target's own origin, as without a jar), or make a
/// header of their own.
pub fn build_head_with_cookies(
    url: &ProbeUrl,
    spec: &RequestSpec,
    form: RequestForm<'_>,
    hop: Hop,
    cookies: Option<&str>,
) -> Bytes {
    let mut req = String::with_capacity(128);
    write_head(&mut req, url, spec, form, hop, cookies);
    Bytes::from(req)
}

/// [`build_head_with_cookies`] written at the end of `req`: a probe writes its head into the
/// buffer it then reads the answer into, so that the head costs no allocation of its own and
/// no target holds one between rounds.
pub fn write_head(
    req: &mut String,
    url: &ProbeUrl,
    spec: &RequestSpec,
    form: RequestForm<'_>,
    hop: Hop,
    cookies: Option<&str>,
) {
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
    let sent = || shown.clone().chain(hidden.clone());
    let has = |name: &str| sent().any(|(k, _)| k.eq_ignore_ascii_case(name));
    // Pieces are pushed, not formatted: every probe writes its head.
    req.push_str(method.as_str());
    req.push(' ');
    if let RequestForm::Absolute(_) = form {
        req.push_str(match url.scheme {
            Scheme::Http => "http://",
            Scheme::Https => "https://",
        });
        req.push_str(&url.authority);
    }
    req.push_str(&url.path_and_query);
    req.push_str(" HTTP/1.1\r\n");
    if !has("host") {
        req.push_str("Host: ");
        req.push_str(&url.authority);
        req.push_str("\r\n");
    }
    if !has("user-agent") {
        req.push_str(USER_AGENT_LINE);
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
    let mut jar = cookies.filter(|c| !c.is_empty());
    for (k, v) in sent() {
        match jar.filter(|_| k.eq_ignore_ascii_case("cookie")) {
            Some(c) if v.trim().is_empty() => {
                let _ = write!(req, "{k}: {c}\r\n");
                jar = None;
            }
            Some(c) => {
                let _ = write!(req, "{k}: {v}; {c}\r\n");
                jar = None;
            }
            None => {
                let _ = write!(req, "{k}: {v}\r\n");
            }
        }
    }
    if let Some(c) = jar {
        let _ = write!(req, "Cookie: {c}\r\n");
    }
    req.push_str("\r\n");
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

/// RFC 9110 `tchar`: the characters of a token such as a header name or a method.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_url::parse_url;

    #[test]
    fn request_bytes_are_well_formed() {
        let u = parse_url("http://localhost:8080/health?full=1").unwrap();
        let build = |method: Method, headers: Vec<(String, String)>| {
            let spec = RequestSpec {
                headers,
                ..RequestSpec::bare(method)
            };
            build_head(&u, &spec, RequestForm::Origin, Hop::FIRST)
        };
        let req = build(Method::GET, vec![("X-Probe".into(), "1".into())]);
        assert_eq!(
            std::str::from_utf8(&req).unwrap(),
            format!(
                "GET /health?full=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: {USER_AGENT}\r\n\
                 Connection: close\r\nX-Probe: 1\r\n\r\n"
            )
        );
        let req = build(Method::HEAD, vec![("host".into(), "other".into())]);
        let text = std::str::from_utf8(&req).unwrap();
        assert!(text.starts_with("HEAD /health?full=1 HTTP/1.1\r\nUser-Agent:"));
        assert!(text.ends_with("host: other\r\n\r\n"));
    }

    #[test]
    fn a_jars_cookies_join_a_configured_cookie_header_sent_to_the_same_origin_only() {
        let u = parse_url("http://example.com/home").unwrap();
        let spec = RequestSpec {
            headers: vec![("cookie".into(), "conf=1".into())],
            ..RequestSpec::bare(Method::GET)
        };
        let head = |hop, cookies| {
            let head = build_head_with_cookies(&u, &spec, RequestForm::Origin, hop, cookies);
            String::from_utf8(head.to_vec()).unwrap()
        };
        let same = head(Hop::FIRST, Some("s=abc"));
        assert!(
            same.ends_with("\r\ncookie: conf=1; s=abc\r\n\r\n"),
            "{same}"
        );
        assert_eq!(same.matches("ookie:").count(), 1);
        let other = Hop {
            same_origin: false,
            keep_method: false,
        };
        let text = head(other, Some("s=abc"));
        assert!(text.ends_with("\r\nCookie: s=abc\r\n\r\n"), "{text}");
        assert!(!text.contains("conf=1"));
        let text = head(other, None);
        assert!(!text.contains("ookie"), "{text}");
        assert_eq!(head(Hop::FIRST, None), head(Hop::FIRST, Some("")));
    }
}
