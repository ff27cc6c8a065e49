//! A target URL, parsed and checked once at load, and everything a probe needs from it.
//!
//! What every probe would otherwise recompute is built when the config is loaded: the address
//! to connect to, the TLS client and the rendered metric labels. The request's head is not
//! kept: a probe writes it into the buffer it reads the answer into.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::codes::StatusCodes;
use crate::outcome::HttpVersion;
use crate::probe_url::{IpProtocol, ProbeUrl};
use crate::request::RequestSpec;
use crate::tls::TlsTarget;

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

/// One target, ready to probe: what is its own (URL, labels, TLS name), and a [`Profile`] of
/// settings shared with every target of the file that has the same. Its `Debug` leaves out
/// the request's headers and body, which may carry credentials.
///
/// It dereferences to its profile, so that `target.timeout` reads the shared setting.
#[derive(Clone)]
pub struct Target {
    /// The parsed URL.
    pub url: ProbeUrl,
    /// The optional `name` label.
    pub name: Option<String>,
    /// Extra labels from the config, sorted by name.
    pub labels: Vec<(String, String)>,
    /// TLS client for https targets (shared by every target with the same TLS settings) and
    /// the name this target's server is checked against.
    pub tls: Option<TlsTarget>,
    /// The label pairs of this target's series, rendered once: `target="…",name="…",…`.
    pub label_block: Arc<str>,
    /// The settings, shared.
    pub profile: Arc<Profile>,
}

/// The settings of a target that do not depend on its URL or labels: every target of a group
/// that sets nothing of its own shares one, so that 100,000 bare URLs hold one copy.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Method, headers and body, for the head of every request and the body.
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
    /// Address families allowed.
    pub ip_protocol: IpProtocol,
    /// Local address to bind before connecting.
    pub source_ip: Option<IpAddr>,
    /// The group it belongs to (`default` unless the file says otherwise).
    pub group: Arc<str>,
    /// HTTP versions the final status line may name (`valid_http_versions`); `None` allows
    /// any.
    pub valid_http_versions: Option<Vec<HttpVersion>>,
    /// Keep the cookies a redirect sets for the next requests of the same probe (`cookies`).
    pub cookies: bool,
    /// For a `/probe` target that is not in the file: the allowlist that admitted it, which
    /// every request's host and addresses must pass before a connection is made.
    pub allowed: Option<Arc<crate::allow::Allow>>,
    /// Header and body checks, when any is configured: the probe then reads the final
    /// answer's whole head (and its body, when a body key is set). `None` for the plain
    /// probe, which reads only the status line.
    pub checks: Option<Arc<crate::checks::Checks>>,
    /// `tls_config.server_name`, when configured: it names the TLS server whatever the URL or
    /// a `Host` header say.
    pub server_name: Option<Arc<str>>,
}

impl std::ops::Deref for Target {
    type Target = Profile;

    fn deref(&self) -> &Profile {
        &self.profile
    }
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

    /// This target's settings for another request: to `url` (a `/probe` target admitted by
    /// the allowlist, probed with its group's settings) and, when `host` is given, with that
    /// `Host` header (`/probe?hostname=`). The request head, the label block (`labels` the
    /// `group` label's) and the TLS server name are made anew; the server name follows `host`
    /// unless `tls_config.server_name` is configured. An https `url` needs a TLS client: this
    /// target's, or its redirects'.
    pub fn adapted(
        &self,
        url: ProbeUrl,
        host: Option<&str>,
        group_label: bool,
    ) -> Result<Target, String> {
        let profile = match host {
            Some(h) => Arc::new(Profile {
                spec: Arc::new(self.spec.with_host(h)),
                ..(*self.profile).clone()
            }),
            None => self.profile.clone(),
        };
        let spec = &profile.spec;
        let tls = match url.scheme {
            crate::probe_url::Scheme::Http => None,
            crate::probe_url::Scheme::Https => {
                let config = self
                    .tls
                    .as_ref()
                    .map(|t| t.config.clone())
                    .or_else(|| self.redirect_tls.clone())
                    .ok_or_else(|| format!("no TLS client for {}", url.raw))?;
                let server_name = crate::tls::server_name(
                    self.server_name.as_deref(),
                    spec.host_header(),
                    &url.host,
                )
                .map_err(|(_, m)| m)?;
                Some(TlsTarget {
                    config,
                    server_name,
                })
            }
        };
        let label_block = Target::render_labels(
            &url.raw,
            self.name.as_deref(),
            group_label.then_some(&*self.group),
            &self.labels,
        )
        .into();
        Ok(Target {
            url,
            tls,
            label_block,
            profile,
            name: self.name.clone(),
            labels: self.labels.clone(),
        })
    }

    /// The head of the first request (in absolute form when the target's own URL goes
    /// through a plain-HTTP proxy), as a probe writes it: a probe builds it when it starts,
    /// so that no target holds one between rounds.
    pub fn first_head(&self) -> Bytes {
        let proxy = self.proxy.as_ref().and_then(|p| p.for_url(&self.url));
        let form = crate::proxy::request_form(proxy, &self.url);
        crate::request::build_head(&self.url, &self.spec, form, crate::request::Hop::FIRST)
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
