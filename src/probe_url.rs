//! The parsed probe URL: scheme, host, port, `Host` header value and request target, checked
//! once at load; and the address families a probe may use. Imports nothing of this crate.

use std::net::IpAddr;

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
    let mut joined = url::Url::parse(&base.raw).ok()?.join(location).ok()?;
    // A user and password in a Location are the peer's words: the chain goes on to the host
    // (judged like any other) without them, and never sends them.
    if !joined.username().is_empty() || joined.password().is_some() {
        joined.set_username("").ok()?;
        joined.set_password(None).ok()?;
    }
    parse_url(joined.as_str()).ok()
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
}
