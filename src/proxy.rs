//! HTTP proxies: which proxy a URL goes through (`proxy_url`, `no_proxy`,
//! `proxy_from_environment`), and the proxy's own address and credentials.
//!
//! An http target is asked for in absolute form (`GET http://host/path`) from the proxy; an
//! https target goes through a `CONNECT host:port` tunnel, with TLS to the target itself inside
//! it. Only `http://` proxies are supported.

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;

use crate::probe_url::{Host, ProbeUrl, Scheme};
use crate::request::RequestForm;
use crate::secret::Secret;

/// Why a proxy setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL does not parse, or is not `http://host:port`.
    #[error("invalid proxy URL {shown}: {reason}")]
    Url {
        /// The URL as written, everything up to its last `@` hidden.
        shown: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry of `no_proxy` is neither a host name nor an address or CIDR.
    #[error("no_proxy: invalid entry {0:?}")]
    NoProxy(String),
}

/// One proxy: where it listens and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The proxy's host.
    pub host: Host,
    /// The proxy's port (80 when the URL names none).
    pub port: u16,
    /// `Basic ...` from the URL's user and password, sent as `Proxy-Authorization`.
    pub authorization: Option<Secret>,
    /// Extra header lines of every CONNECT request (`proxy_connect_header`), `\r\n`-ended.
    pub connect_headers: Secret,
    /// The URL as shown in `/config` and in failure details: its password masked.
    pub shown: String,
}

impl Proxy {
    /// `host:port` of the proxy, for failure details.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The CONNECT request for `url`'s host and port.
    pub fn connect_request(&self, url: &ProbeUrl) -> Vec<u8> {
        let mut req = String::with_capacity(128);
        let target = format!("{}:{}", url.host, url.port);
        // Writing to a String cannot fail.
        let _ = write!(req, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        let _ = write!(req, "User-Agent: {}\r\n", crate::request::USER_AGENT);
        if let Some(auth) = &self.authorization {
            let _ = write!(req, "Proxy-Authorization: {}\r\n", auth.expose());
        }
        req.push_str(self.connect_headers.expose());
        req.push_str("\r\n");
        req.into_bytes()
    }
}

/// How a request for `url` names its target when it goes through `proxy` (or none): in
/// absolute form with the proxy's credentials for an http URL through a proxy, in origin form
/// otherwise (directly, or inside a CONNECT tunnel).
pub fn request_form<'a>(proxy: Option<&'a Proxy>, url: &ProbeUrl) -> RequestForm<'a> {
    match proxy {
        Some(p) if url.scheme == Scheme::Http => RequestForm::Absolute(p.authorization.as_ref()),
        _ => RequestForm::Origin,
    }
}

/// Parse a proxy URL: `http://[user:password@]host[:port]`; a URL without a scheme is taken as
/// `http://` (as in `HTTP_PROXY=proxy:3128`). The port defaults to 80, as for any http URL.
pub fn parse(raw: &str, connect_headers: Secret) -> Result<Proxy, ProxyError> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    // An error shows the URL as written, but never what stands before its last `@`: the URL
    // parser may have split a malformed one elsewhere (`http://user:12/34@host` has host
    // `user` and port 12), and that part can be a password.
    let url = url::Url::parse(&with_scheme).map_err(|e| ProxyError::Url {
        shown: crate::probe_url::hide_userinfo(raw),
        reason: e.to_string(),
    })?;
    let fail = |reason: &str| ProxyError::Url {
        shown: crate::probe_url::hide_userinfo(raw),
        reason: reason.into(),
    };
    if url.scheme() != "http" {
        return Err(fail("only http:// proxies are supported"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(fail("a proxy URL is scheme, host and port only"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
        Some(url::Host::Ipv4(a)) => Host::Ip(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Host::Ip(IpAddr::V6(a)),
        None => return Err(fail("no host")),
    };
    let port = url.port().unwrap_or(80);
    if port == 0 {
        return Err(fail("port 0 cannot be connected to"));
    }
    let authorization = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| fail("the user or password is not valid UTF-8"))
        };
        let user = decode(url.username())?;
        let password = decode(url.password().unwrap_or(""))?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(Secret::new(format!("Basic {token}")))
    };
    Ok(Proxy {
        host,
        port,
        authorization,
        connect_headers,
        shown: mask(&url),
    })
}

/// A parsed proxy URL as shown: `http://<secret>@host:port`, the user name hidden with the
/// password.
fn mask(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let user = if url.username().is_empty() && url.password().is_none() {
        ""
    } else {
        "<secret>@"
    };
    format!("{}://{user}{host}{port}", url.scheme())
}

/// `%XX` decoding of a URL's user or password.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Hosts that are reached directly even when a proxy is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    /// `*`: no host uses the proxy.
    all: bool,
    /// Domain names: the name itself and every name under it.
    names: Vec<String>,
    /// Networks, matched against IP-literal hosts.
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    /// Parse entries: `*`, host names (`example.com`, `.example.com` and `*.example.com` all
    /// cover the name and its subdomains), IP addresses and CIDRs (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<NoProxy, ProxyError> {
        let mut out = NoProxy::default();
        for raw in entries {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                out.all = true;
                continue;
            }
            let bare = e.trim_start_matches("*.").trim_start_matches('.');
            let bare = bare
                .strip_prefix('[')
                .and_then(|b| b.strip_suffix(']'))
                .unwrap_or(bare);
            if let Some((ip, len)) = bare.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| ProxyError::NoProxy(e.into()))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| ProxyError::NoProxy(e.into()))?;
                out.nets.push((ip, len));
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                out.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else {
                // `example.com.` is `example.com`, as in curl and Go.
                let name = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !valid {
                    return Err(ProxyError::NoProxy(e.into()));
                }
                out.names.push(name);
            }
        }
        Ok(out)
    }

    /// Whether `host` is reached without the proxy.
    pub fn matches(&self, host: &Host) -> bool {
        if self.all {
            return true;
        }
        match host {
            Host::Name(n) => {
                let n = n.strip_suffix('.').unwrap_or(n);
                self.names.iter().any(|e| {
                    n == e
                        || n.len() > e.len()
                            && n.ends_with(e.as_str())
                            && n.as_bytes()[n.len() - e.len() - 1] == b'.'
                })
            }
            Host::Ip(ip) => self.nets.iter().any(|(net, len)| in_net(*ip, *net, *len)),
        }
    }
}

/// Whether `ip` is inside `net/len`. An IPv4 address and its IPv4-mapped IPv6 form
/// (`::ffff:10.0.0.1`) are the same address, on either side, as in Go.
fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_net(IpAddr::V4(a), net, len)),
        (IpAddr::V4(a), IpAddr::V6(_)) => in_net(IpAddr::V6(a.to_ipv6_mapped()), net, len),
    }
}

/// Which proxy each URL goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRules {
    /// For http URLs.
    pub http: Option<Proxy>,
    /// For https URLs.
    pub https: Option<Proxy>,
    /// Hosts reached directly.
    pub no_proxy: NoProxy,
}

impl ProxyRules {
    /// The proxy for `url`, if it uses one.
    pub fn for_url(&self, url: &ProbeUrl) -> Option<&Proxy> {
        let proxy = match url.scheme {
            Scheme::Http => self.http.as_ref(),
            Scheme::Https => self.https.as_ref(),
        }?;
        (!self.no_proxy.matches(&url.host)).then_some(proxy)
    }

    /// Rules from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (or their lower-case spellings,
    /// upper case first), as read by `get`. `None` when neither proxy variable is set.
    pub fn from_environment(
        get: impl Fn(&str) -> Option<String>,
        connect_headers: &Secret,
    ) -> Result<Option<ProxyRules>, (String, ProxyError)> {
        let var = |names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|n| get(n).filter(|v| !v.is_empty()).map(|v| (n.to_owned(), v)))
        };
        let proxy = |names: [&str; 2]| match var(names) {
            Some((name, v)) => parse(&v, connect_headers.clone())
                .map(Some)
                .map_err(|e| (name, e)),
            None => Ok(None),
        };
        let http = proxy(["HTTP_PROXY", "http_proxy"])?;
        let https = proxy(["HTTPS_PROXY", "https_proxy"])?;
        if http.is_none() && https.is_none() {
            return Ok(None);
        }
        let no_proxy = match var(["NO_PROXY", "no_proxy"]) {
            Some((name, v)) => NoProxy::parse(v.split(',')).map_err(|e| (name, e))?,
            None => NoProxy::default(),
        };
        Ok(Some(ProxyRules {
            http,
            https,
            no_proxy,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_url::parse_url;

    fn none() -> Secret {
        Secret::new(String::new())
    }

    #[test]
    fn proxy_urls_parse_with_credentials_masked() {
        let p = parse("http://probe:p%40ss@proxy.example:3128", none()).unwrap();
        assert_eq!(p.host, Host::Name("proxy.example".into()));
        assert_eq!(p.port, 3128);
        assert_eq!(p.shown, "http://<secret>@proxy.example:3128");
        // "probe:p@ss" in base64.
        assert_eq!(p.authorization.unwrap().expose(), "Basic cHJvYmU6cEBzcw==");
        let p = parse("10.0.0.1:8080", none()).unwrap();
        assert_eq!(
            (p.host, p.port),
            (Host::Ip("10.0.0.1".parse().unwrap()), 8080)
        );
        assert!(format!("{:?}", parse("http://u:pw@h:1", none())).contains("<secret>"));
        for bad in [
            "https://h:1",
            "socks5://h:1",
            "http://h:1/path",
            "http://:1",
            "http://u:pw@h:0",
        ] {
            let e = parse(bad, none()).unwrap_err().to_string();
            assert!(!e.contains("pw"), "{e}");
        }
        let e = parse("http://u:pw@[bad", none()).unwrap_err().to_string();
        assert!(e.contains("<secret>") && !e.contains("pw"), "{e}");
        // Neither the user nor a password the URL parser took for a host and port is shown.
        for raw in [
            "http://user:12/34@p:1",
            "ftp://user:pw@p:1",
            "http://user:pw@p:1/x",
        ] {
            let e = parse(raw, none()).unwrap_err().to_string();
            assert!(e.contains("<secret>@p:1"), "{e}");
            assert!(
                !e.contains("user") && !e.contains("12") && !e.contains("pw"),
                "{e}"
            );
        }
    }

    #[test]
    fn no_proxy_matches_names_below_and_networks() {
        let n = NoProxy::parse(["example.com", ".corp", "*.int", "10.0.0.0/8", "::1"]).unwrap();
        let host = |s: &str| parse_url(&format!("http://{s}/")).unwrap().host;
        for yes in [
            "example.com",
            "a.example.com",
            "x.corp",
            "a.b.int",
            "10.1.2.3",
            "[::1]",
        ] {
            assert!(n.matches(&host(yes)), "{yes}");
        }
        for no in [
            "badexample.com",
            "corp.example",
            "11.0.0.1",
            "[::2]",
            "int.example",
        ] {
            assert!(!n.matches(&host(no)), "{no}");
        }
        assert!(NoProxy::parse(["*"]).unwrap().matches(&host("any")));
        // A trailing dot names the same host, on either side.
        let dotted = NoProxy::parse(["example.com.", "corp"]).unwrap();
        for yes in ["example.com", "example.com.", "a.example.com.", "x.corp."] {
            assert!(dotted.matches(&host(yes)), "{yes}");
        }
        assert!(!dotted.matches(&host("example.org.")));
        assert!(NoProxy::parse(["."]).is_err());
        // An IPv4 address and its IPv4-mapped IPv6 form are one address, on either side.
        let mapped = NoProxy::parse(["::ffff:192.168.0.0/112", "::ffff:172.16.0.1"]).unwrap();
        for yes in [
            "[::ffff:10.9.8.7]",
            "192.168.3.4",
            "[::ffff:192.168.3.4]",
            "172.16.0.1",
        ] {
            let n = if yes.contains("::ffff:10.") {
                &n
            } else {
                &mapped
            };
            assert!(n.matches(&host(yes)), "{yes}");
        }
        for no in [
            "[::ffff:11.0.0.1]",
            "192.169.0.1",
            "172.16.0.2",
            "[::1:10.0.0.1]",
        ] {
            assert!(!n.matches(&host(no)) && !mapped.matches(&host(no)), "{no}");
        }
        assert!(NoProxy::parse(["10.0.0.0/33"]).is_err());
        assert!(NoProxy::parse(["a b"]).is_err());
    }

    #[test]
    fn the_environment_gives_one_proxy_per_scheme() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let r = ProxyRules::from_environment(
            env(&[
                ("http_proxy", "http://h:1"),
                ("HTTPS_PROXY", "s:2"),
                ("NO_PROXY", "skip.me, 127.0.0.0/8"),
            ]),
            &none(),
        )
        .unwrap()
        .unwrap();
        let url = |s: &str| parse_url(s).unwrap();
        assert_eq!(r.for_url(&url("http://a/")).unwrap().port, 1);
        assert_eq!(r.for_url(&url("https://a/")).unwrap().port, 2);
        assert!(r.for_url(&url("https://skip.me/")).is_none());
        assert!(r.for_url(&url("http://127.0.0.1:9/")).is_none());
        assert!(
            ProxyRules::from_environment(env(&[("NO_PROXY", "x")]), &none())
                .unwrap()
                .is_none()
        );
        let (var, _) =
            ProxyRules::from_environment(env(&[("HTTPS_PROXY", "ftp://x")]), &none()).unwrap_err();
        assert_eq!(var, "HTTPS_PROXY");
    }

    #[test]
    fn connect_requests_name_the_target_and_carry_the_credentials() {
        let p = parse(
            "http://u:pw@127.0.0.1:3128",
            Secret::new("X-Proxy-Token: t\r\n".into()),
        )
        .unwrap();
        let req = p.connect_request(&parse_url("https://[::1]:8443/x").unwrap());
        let text = String::from_utf8(req).unwrap();
        assert!(
            text.starts_with("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Proxy-Authorization: Basic dTpwdw==\r\n"),
            "{text}"
        );
        assert!(text.ends_with("X-Proxy-Token: t\r\n\r\n"), "{text}");
    }
}
