//! Where one request of a probe goes, decided before any socket is opened: straight to the
//! URL's host, to a plain-HTTP proxy in absolute form, or through a CONNECT tunnel; which
//! address is resolved and connected to; how the request line names its target; and which TLS
//! client and server name an https request uses. Pure: no IO, nothing allocated on the common
//! path (the first request of a probe).

use std::borrow::Cow;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::probe_url::{Host, ProbeUrl, Scheme};
use crate::proxy::Proxy;
use crate::request::RequestForm;
use crate::target::Target;

/// How the TCP connection of a request reaches the URL's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via<'a> {
    /// Straight to the URL's host and port.
    Direct,
    /// To a plain-HTTP proxy, which is sent the request in absolute form (an http URL).
    Proxy(&'a Proxy),
    /// To a proxy, which is asked with CONNECT for a tunnel to the URL's host and port (an
    /// https URL); the TLS handshake and the request then go through the tunnel.
    Tunnel(&'a Proxy),
}

/// Whether a request goes over TLS, and with which client.
#[derive(Debug, Clone)]
pub enum Security<'a> {
    /// An http URL: the request is written as is.
    Plain,
    /// An https URL: a handshake with this client configuration, sending and verifying this
    /// server name.
    Tls {
        /// The client configuration, shared by targets with the same TLS settings.
        config: &'a Arc<ClientConfig>,
        /// The name sent as SNI and verified: the target's own (configured `server_name`
        /// included) for its own host, the URL's host for a redirect elsewhere.
        server_name: Cow<'a, ServerName<'static>>,
    },
    /// An https URL for which the target holds no TLS client (or whose host makes no server
    /// name): the request fails before its handshake.
    NoClient,
}

/// The decisions for one request of a probe (a hop of its redirect chain).
#[derive(Debug, Clone)]
pub struct Route<'a> {
    /// Direct, through a proxy, or through a tunnel.
    pub via: Via<'a>,
    /// The host resolved and connected to: the proxy's when there is one, else the URL's.
    pub host: &'a Host,
    /// The port connected to, the same way.
    pub port: u16,
    /// How the request line names its target.
    pub form: RequestForm<'a>,
    /// TLS, for an https URL.
    pub security: Security<'a>,
}

impl<'a> Route<'a> {
    /// The proxy the TCP connection goes to, if any.
    pub fn proxy(&self) -> Option<&'a Proxy> {
        match self.via {
            Via::Direct => None,
            Via::Proxy(p) | Via::Tunnel(p) => Some(p),
        }
    }

    /// `what`, naming the proxy when the connection goes to one: `connecting to the proxy
    /// host:port`. For failure details.
    pub fn to_proxy(&self, what: &str) -> String {
        match self.proxy() {
            Some(p) => format!("{what} the proxy {}", p.authority()),
            None => what.to_owned(),
        }
    }
}

/// Decide how the request of `target`'s probe to `url` goes: `url` is the target's own URL for
/// the first request, a redirect's target for a later one.
pub fn route<'a>(target: &'a Target, url: &'a ProbeUrl) -> Route<'a> {
    let (via, host, port) = via(target, url);
    let proxy = match via {
        Via::Direct => None,
        Via::Proxy(p) | Via::Tunnel(p) => Some(p),
    };
    Route {
        via,
        host,
        port,
        form: crate::proxy::request_form(proxy, url),
        security: security(target, url),
    }
}

/// How a request of `target` to `url` reaches its server, and the host and port it connects
/// to: the proxy's when there is one, else the URL's.
pub fn via<'a>(target: &'a Target, url: &'a ProbeUrl) -> (Via<'a>, &'a Host, u16) {
    let proxy = target.proxy.as_deref().and_then(|rules| rules.for_url(url));
    match (proxy, url.scheme) {
        (None, _) => (Via::Direct, &url.host, url.port),
        (Some(p), Scheme::Http) => (Via::Proxy(p), &p.host, p.port),
        (Some(p), Scheme::Https) => (Via::Tunnel(p), &p.host, p.port),
    }
}

/// The TLS client of a request to `url`: the target's own for its own host; for another host
/// (a redirect's), the redirect client (the target's TLS settings without its `server_name`)
/// with the URL's host as server name.
fn security<'a>(target: &'a Target, url: &'a ProbeUrl) -> Security<'a> {
    if url.scheme == Scheme::Http {
        return Security::Plain;
    }
    match (&target.tls, &target.redirect_tls) {
        (Some(own), _) if url.host == target.url.host => Security::Tls {
            config: &own.config,
            server_name: Cow::Borrowed(&own.server_name),
        },
        (own, redirect) => {
            let config = redirect.as_ref().or(own.as_ref().map(|o| &o.config));
            match (config, crate::tls::server_name(None, None, &url.host)) {
                (Some(config), Ok(name)) => Security::Tls {
                    config,
                    server_name: Cow::Owned(name),
                },
                _ => Security::NoClient,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_url::{IpProtocol, parse_url};
    use crate::proxy::{NoProxy, ProxyRules};
    use crate::request::{Method, RequestSpec};
    use crate::secret::Secret;
    use crate::tls::{TlsSettings, TlsTarget};

    /// A TLS client configuration of its own (so that tests can tell two apart).
    fn client() -> Arc<ClientConfig> {
        crate::tls::build_client_config(&TlsSettings::default(), &crate::tls::provider()).unwrap()
    }

    /// A target for `raw`, through `proxy` (`http://proxy:3128` for both schemes) unless
    /// `no_proxy` covers the host, following redirects when `redirects` says so.
    fn target(raw: &str, proxy: bool, no_proxy: &[&str], redirects: bool) -> Target {
        let url = parse_url(raw).unwrap();
        let tls = (url.scheme == Scheme::Https).then(|| TlsTarget {
            config: client(),
            server_name: crate::tls::server_name(None, None, &url.host).unwrap(),
        });
        let rules = proxy.then(|| {
            let p = crate::proxy::parse("http://user:pw@proxy:3128", Secret::new(String::new()))
                .unwrap();
            Arc::new(ProxyRules {
                http: Some(p.clone()),
                https: Some(p),
                no_proxy: NoProxy::parse(no_proxy.iter().copied()).unwrap(),
            })
        });
        Target {
            name: None,
            labels: Vec::new(),
            tls,
            label_block: Arc::from(""),
            url,
            profile: Arc::new(crate::target::Profile {
                spec: Arc::new(RequestSpec::bare(Method::GET)),
                follow_redirects: u8::from(redirects),
                redirect_tls: redirects.then(client),
                fail_if_ssl: false,
                fail_if_not_ssl: false,
                proxy: rules,
                timeout: std::time::Duration::from_secs(5),
                valid_codes: Arc::new(crate::codes::StatusCodes::default()),
                ip_protocol: IpProtocol::Auto,
                source_ip: None,
                group: Arc::from("default"),
                valid_http_versions: None,
                cookies: false,
                allowed: None,
                checks: None,
                server_name: None,
            }),
        }
    }

    fn name(host: &str) -> Host {
        Host::Name(host.into())
    }

    #[test]
    fn a_direct_http_request_goes_to_the_url_in_origin_form_without_tls() {
        let t = target("http://example.com:8080/x", false, &[], false);
        let r = route(&t, &t.url);
        assert_eq!(r.via, Via::Direct);
        assert_eq!((r.host, r.port), (&name("example.com"), 8080));
        assert_eq!(r.form, RequestForm::Origin);
        assert!(matches!(r.security, Security::Plain));
        assert_eq!(r.to_proxy("connecting to"), "connecting to");
    }

    #[test]
    fn a_direct_https_request_uses_the_targets_own_tls_client_and_name() {
        let t = target("https://example.com/", false, &[], true);
        let r = route(&t, &t.url);
        assert_eq!(r.via, Via::Direct);
        assert_eq!((r.host, r.port), (&name("example.com"), 443));
        assert_eq!(r.form, RequestForm::Origin);
        let own = t.tls.as_ref().unwrap();
        let Security::Tls {
            config,
            server_name,
        } = r.security
        else {
            panic!("no TLS: {:?}", r.security);
        };
        assert!(Arc::ptr_eq(config, &own.config));
        // Borrowed: the first request copies nothing to decide its name.
        assert!(matches!(server_name, Cow::Borrowed(n) if n == &own.server_name));
    }

    #[test]
    fn an_http_request_through_a_proxy_goes_to_the_proxy_in_absolute_form() {
        let t = target("http://example.com/x", true, &[], false);
        let r = route(&t, &t.url);
        let proxy = t.proxy.as_ref().unwrap().http.as_ref().unwrap();
        assert_eq!(r.via, Via::Proxy(proxy));
        assert_eq!((r.host, r.port), (&name("proxy"), 3128));
        assert_eq!(r.form, RequestForm::Absolute(proxy.authorization.as_ref()));
        assert!(proxy.authorization.is_some());
        assert!(matches!(r.security, Security::Plain));
        assert_eq!(
            r.to_proxy("connecting to"),
            "connecting to the proxy proxy:3128"
        );
    }

    #[test]
    fn an_https_request_through_a_proxy_goes_through_a_tunnel_in_origin_form() {
        let t = target("https://example.com/", true, &[], false);
        let r = route(&t, &t.url);
        let proxy = t.proxy.as_ref().unwrap().https.as_ref().unwrap();
        assert_eq!(r.via, Via::Tunnel(proxy));
        assert_eq!((r.host, r.port), (&name("proxy"), 3128));
        assert_eq!(r.form, RequestForm::Origin);
        assert!(matches!(r.security, Security::Tls { config, .. }
            if Arc::ptr_eq(config, &t.tls.as_ref().unwrap().config)));
    }

    #[test]
    fn a_host_in_no_proxy_is_reached_directly() {
        let t = target(
            "http://internal.example.com/",
            true,
            &[".example.com"],
            false,
        );
        let r = route(&t, &t.url);
        assert_eq!(r.via, Via::Direct);
        assert_eq!((r.host, r.port), (&name("internal.example.com"), 80));
        assert_eq!(r.form, RequestForm::Origin);
        // Another host of the same target still goes through the proxy.
        let other = parse_url("http://example.org/").unwrap();
        assert!(matches!(route(&t, &other).via, Via::Proxy(_)));
    }

    #[test]
    fn a_redirect_to_another_host_uses_the_redirect_tls_client_and_its_own_name() {
        let t = target("http://example.com/", false, &[], true);
        let next = parse_url("https://other.example.net:8443/login").unwrap();
        let r = route(&t, &next);
        assert_eq!(r.via, Via::Direct);
        assert_eq!((r.host, r.port), (&name("other.example.net"), 8443));
        let redirect = t.redirect_tls.as_ref().unwrap();
        let Security::Tls {
            config,
            server_name,
        } = r.security
        else {
            panic!("no TLS: {:?}", r.security);
        };
        assert!(Arc::ptr_eq(config, redirect));
        assert_eq!(
            server_name.into_owned(),
            ServerName::try_from("other.example.net").unwrap()
        );
        // From an https target, another host still gets the redirect client, not the own one.
        let t = target("https://example.com/", false, &[], true);
        let r = route(&t, &next);
        let own = &t.tls.as_ref().unwrap().config;
        assert!(matches!(r.security, Security::Tls { config, .. }
            if Arc::ptr_eq(config, t.redirect_tls.as_ref().unwrap()) && !Arc::ptr_eq(config, own)));
        // Without any client (a target that follows no redirect), an https hop has none.
        let t = target("http://example.com/", false, &[], false);
        assert!(matches!(route(&t, &next).security, Security::NoClient));
    }
}
