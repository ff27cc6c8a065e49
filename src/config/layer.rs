//! The settings that layer: `defaults`, then the target's group's block, then the target's
//! own keys, each over the one before.
//!
//! [`Settings`] is the one place a key is declared. Its merge names every field, so a key that
//! is added without saying how it layers does not compile.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::schema::{
    BasicAuth, FollowRedirects, GroupName, HeaderSource, Headers, HttpVersions, HumanDuration,
    NoProxyList, RawTls, SecretValue,
};
use crate::checks::{ByteSize, Compression, HeaderMatches, Patterns};
use crate::codes::StatusCodes;
use crate::probe_url::IpProtocol;
use crate::request::Method;

/// Settings that `defaults` gives every target, a group gives its targets, and a target may
/// override: the `defaults` block and a `groups` block, and every key of a target but its
/// URL, name and labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    /// The probe's time limit.
    pub(super) timeout: Option<HumanDuration>,
    /// Codes that count as success.
    pub(super) valid_status_codes: Option<StatusCodes>,
    /// Any method token.
    pub(super) method: Option<Method>,
    /// Extra request headers.
    pub(super) headers: Option<Headers>,
    /// TLS settings.
    pub(super) tls_config: Option<RawTls>,
    /// Address family.
    pub(super) ip_protocol: Option<IpProtocol>,
    /// Local address to probe from.
    pub(super) source_ip: Option<IpAddr>,
    /// The group of the targets (a `groups` block is a group already: there it is an error).
    pub(super) group: Option<GroupName>,
    /// Redirects followed at most.
    pub(super) follow_redirects: Option<FollowRedirects>,
    /// Fail when the final request went over TLS.
    pub(super) fail_if_ssl: Option<bool>,
    /// Fail when the final request did not go over TLS.
    pub(super) fail_if_not_ssl: Option<bool>,
    /// `http://[user:password@]host:port` of a proxy for every request.
    pub(super) proxy_url: Option<SecretValue>,
    /// Hosts reached without the proxy.
    pub(super) no_proxy: Option<NoProxyList>,
    /// Take the proxy from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
    pub(super) proxy_from_environment: Option<bool>,
    /// Headers of every CONNECT request.
    pub(super) proxy_connect_header: Option<Headers>,
    /// `Authorization: Basic`.
    pub(super) basic_auth: Option<BasicAuth>,
    /// `Authorization: Bearer`, written in the file.
    pub(super) bearer_token: Option<SecretValue>,
    /// `Authorization: Bearer`, read from a file.
    pub(super) bearer_token_file: Option<PathBuf>,
    /// The request body.
    pub(super) body: Option<String>,
    /// A file holding the request body.
    pub(super) body_file: Option<PathBuf>,
    /// HTTP versions a status line may name (any when unset).
    pub(super) valid_http_versions: Option<HttpVersions>,
    /// Keep cookies across the redirects of one probe.
    pub(super) cookies: Option<bool>,
    /// Send the file's credentials to the targets the `/probe` allowlist admits, too (`defaults`
    /// and `groups` only): without it they get none.
    pub(super) send_credentials_to_admitted: Option<bool>,
    /// Fail when any of these matches the body.
    pub(super) fail_if_body_matches_regexp: Option<Patterns>,
    /// Fail unless each of these matches the body.
    pub(super) fail_if_body_not_matches_regexp: Option<Patterns>,
    /// Fail when a value of the header matches.
    pub(super) fail_if_header_matches: Option<HeaderMatches>,
    /// Fail when no value of the header matches.
    pub(super) fail_if_header_not_matches: Option<HeaderMatches>,
    /// The most body bytes read, decoded.
    pub(super) body_size_limit: Option<ByteSize>,
    /// How the body is decoded.
    pub(super) compression: Option<Compression>,
}

/// `over` when it is set, else `base`.
fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
    over.as_ref().or(base.as_ref()).cloned()
}

impl Settings {
    /// These settings with `over`'s on top: fields replace, headers merge by name, TLS
    /// settings merge field by field. Keys that belong together are taken together from the
    /// layer that sets any of them: a target's `bearer_token` replaces the defaults'
    /// `basic_auth`, its `body_file` the defaults' `body`, its `proxy_from_environment` their
    /// `proxy_url`.
    pub(super) fn under(&self, over: &Settings) -> Settings {
        let Settings {
            timeout,
            valid_status_codes,
            method,
            headers,
            tls_config,
            ip_protocol,
            source_ip,
            group,
            follow_redirects,
            fail_if_ssl,
            fail_if_not_ssl,
            proxy_url,
            no_proxy,
            proxy_from_environment,
            proxy_connect_header,
            basic_auth,
            bearer_token,
            bearer_token_file,
            body,
            body_file,
            valid_http_versions,
            cookies,
            send_credentials_to_admitted,
            fail_if_body_matches_regexp,
            fail_if_body_not_matches_regexp,
            fail_if_header_matches,
            fail_if_header_not_matches,
            body_size_limit,
            compression,
        } = over;
        let auth = if basic_auth.is_some() || bearer_token.is_some() || bearer_token_file.is_some()
        {
            over
        } else {
            self
        };
        let body_from = if body.is_some() || body_file.is_some() {
            over
        } else {
            self
        };
        let proxied = if proxy_url.is_some() || proxy_from_environment.is_some() {
            over
        } else {
            self
        };
        Settings {
            timeout: pick(timeout, &self.timeout),
            valid_status_codes: pick(valid_status_codes, &self.valid_status_codes),
            method: pick(method, &self.method),
            headers: match (&self.headers, headers) {
                (Some(base), Some(top)) => Some(base.merged(top)),
                (base, top) => pick(top, base),
            },
            tls_config: match (&self.tls_config, tls_config) {
                (Some(base), Some(top)) => Some(base.merged(top)),
                (base, top) => pick(top, base),
            },
            ip_protocol: pick(ip_protocol, &self.ip_protocol),
            source_ip: pick(source_ip, &self.source_ip),
            group: pick(group, &self.group),
            follow_redirects: pick(follow_redirects, &self.follow_redirects),
            fail_if_ssl: pick(fail_if_ssl, &self.fail_if_ssl),
            fail_if_not_ssl: pick(fail_if_not_ssl, &self.fail_if_not_ssl),
            proxy_url: proxied.proxy_url.clone(),
            no_proxy: pick(no_proxy, &self.no_proxy),
            proxy_from_environment: proxied.proxy_from_environment,
            proxy_connect_header: pick(proxy_connect_header, &self.proxy_connect_header),
            basic_auth: auth.basic_auth.clone(),
            bearer_token: auth.bearer_token.clone(),
            bearer_token_file: auth.bearer_token_file.clone(),
            body: body_from.body.clone(),
            body_file: body_from.body_file.clone(),
            valid_http_versions: pick(valid_http_versions, &self.valid_http_versions),
            cookies: pick(cookies, &self.cookies),
            send_credentials_to_admitted: pick(
                send_credentials_to_admitted,
                &self.send_credentials_to_admitted,
            ),
            fail_if_body_matches_regexp: pick(
                fail_if_body_matches_regexp,
                &self.fail_if_body_matches_regexp,
            ),
            fail_if_body_not_matches_regexp: pick(
                fail_if_body_not_matches_regexp,
                &self.fail_if_body_not_matches_regexp,
            ),
            fail_if_header_matches: pick(fail_if_header_matches, &self.fail_if_header_matches),
            fail_if_header_not_matches: pick(
                fail_if_header_not_matches,
                &self.fail_if_header_not_matches,
            ),
            body_size_limit: pick(body_size_limit, &self.body_size_limit),
            compression: pick(compression, &self.compression),
        }
    }

    /// These settings without any credential, for a target the `/probe` allowlist admitted:
    /// no `basic_auth` or bearer token, no header whose value is read from a file, no
    /// `Authorization`, `Proxy-Authorization` or `Cookie` header, no client certificate and no
    /// CONNECT headers.
    pub(super) fn without_credentials(&self) -> Settings {
        let secret = |name: &str| {
            ["authorization", "proxy-authorization", "cookie"]
                .iter()
                .any(|s| name.eq_ignore_ascii_case(s))
        };
        let headers = self.headers.as_ref().map(|h| {
            Headers(
                h.0.iter()
                    .filter(|(k, v)| !secret(k) && !matches!(v, HeaderSource::File(_)))
                    .cloned()
                    .collect(),
            )
        });
        let tls_config = self.tls_config.as_ref().map(|t| RawTls {
            cert_file: None,
            key_file: None,
            ..t.clone()
        });
        Settings {
            headers,
            tls_config,
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            proxy_connect_header: None,
            ..self.clone()
        }
    }

    /// The keys of a settings block, in the order they are declared (and listed in the
    /// message about an unknown key), as serde derives them.
    pub(super) fn keys() -> &'static [&'static str] {
        static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut keys: &'static [&'static str] = &[];
            // Decoding stops at `deserialize_struct`, once the names are read.
            let _ = Settings::deserialize(KeyNames(&mut keys));
            keys
        })
    }
}

impl Headers {
    /// These headers with `top`'s on top, by name, case-insensitively.
    fn merged(&self, top: &Headers) -> Headers {
        let mut merged = self.0.clone();
        for (k, v) in &top.0 {
            merged.retain(|(bk, _)| !bk.eq_ignore_ascii_case(k));
            merged.push((k.clone(), v.clone()));
        }
        Headers(merged)
    }
}

impl RawTls {
    /// Fields of `over` win over those of `self`.
    fn merged(&self, over: &RawTls) -> RawTls {
        let RawTls {
            ca_file,
            cert_file,
            key_file,
            server_name,
            insecure_skip_verify,
            min_version,
        } = over;
        RawTls {
            ca_file: pick(ca_file, &self.ca_file),
            cert_file: pick(cert_file, &self.cert_file),
            key_file: pick(key_file, &self.key_file),
            server_name: pick(server_name, &self.server_name),
            insecure_skip_verify: pick(insecure_skip_verify, &self.insecure_skip_verify),
            min_version: pick(min_version, &self.min_version),
        }
    }
}

/// A deserializer that only records the field names a derived `Deserialize` asks for.
struct KeyNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for KeyNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_MAX_CONNECTIONS_PER_HOST, parse};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn the_keys_are_those_of_the_struct() {
        let keys = Settings::keys();
        assert_eq!(keys.len(), 29);
        assert_eq!(keys[0], "timeout");
        assert_eq!(keys[7], "group");
        assert_eq!(keys[19], "body_file");
        assert_eq!(keys[21], "cookies");
    }

    #[test]
    fn groups_layer_their_settings_between_defaults_and_targets() {
        let text = "defaults: {timeout: 5s, headers: {X-A: '1', X-B: '1'}, group: pages}\n\
                    groups:\n  critical: {timeout: 2s, headers: {X-B: '2'}}\n\
                    targets:\n  - {url: 'http://a/', group: critical}\n  \
                    - {url: 'http://b/', group: critical, timeout: 1s}\n  - http://c/\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let t: Vec<_> = c
            .targets
            .iter()
            .map(|t| (&*t.group, t.timeout.as_millis()))
            .collect();
        assert_eq!(t, [("critical", 2000), ("critical", 1000), ("pages", 5000)]);
        let req = String::from_utf8_lossy(&c.targets[0].first_head()).into_owned();
        assert!(
            req.contains("X-A: 1\r\n") && req.contains("X-B: 2\r\n"),
            "{req}"
        );
        assert!(c.uses_groups);
        assert_eq!(c.groups, ["critical", "pages"]);
        assert!(c.targets[0].label_block.contains(",group=\"critical\""));
        // Without groups nothing changes.
        let plain = parse(Path::new("t.yml"), "targets: ['http://a/']\n").unwrap();
        assert!(!plain.uses_groups);
        assert_eq!(plain.groups, ["default"]);
        assert!(!plain.targets[0].label_block.contains("group"));
        // Mistakes.
        for (bad, want) in [
            (
                "groups:\n  a: {group: b}\ntargets: ['http://a/']\n",
                "a group block names no group",
            ),
            (
                "targets:\n  - {url: 'http://a/', group: 'no spaces'}\n",
                "invalid group name",
            ),
            (
                "targets:\n  - {url: 'http://a/', group: x, labels: {group: y}}\n",
                "labels: group",
            ),
        ] {
            let e = parse(Path::new("t.yml"), bad).unwrap_err();
            assert!(e.to_string().contains(want), "{bad:?}: {e}");
        }
        // file_sd: a `group` label is the group.
        let sd = parse(
            Path::new("t.yml"),
            "- targets: ['http://a/']\n  labels: {group: critical}\n",
        )
        .unwrap();
        assert_eq!(&*sd.targets[0].group, "critical");
        assert!(sd.uses_groups);
    }

    #[test]
    fn defaults_and_overrides_merge() {
        let text = r#"
defaults:
  timeout: 2s
  method: HEAD
  headers: {X-A: "1", X-B: "2"}
  valid_status_codes: [200]
targets:
  - http://127.0.0.1:8080/a
  - url: http://[::1]:8080/b?q=1
    name: b
    labels: {team: core}
    timeout: 250ms
    method: GET
    headers: {x-b: "3"}
    valid_status_codes: ["4xx"]
"#;
        let c = parse(Path::new("t.yml"), text).unwrap();
        assert_eq!(c.targets.len(), 2);
        let a = &c.targets[0];
        assert_eq!(a.timeout, Duration::from_secs(2));
        let head = a.first_head();
        let req = std::str::from_utf8(&head).unwrap();
        assert!(
            req.starts_with("HEAD /a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{req}"
        );
        assert!(req.contains("X-A: 1\r\nX-B: 2\r\n"));
        assert!(a.valid_codes.contains(200) && !a.valid_codes.contains(204));
        let b = &c.targets[1];
        assert_eq!(b.timeout, Duration::from_millis(250));
        let head = b.first_head();
        let req = std::str::from_utf8(&head).unwrap();
        assert!(
            req.starts_with("GET /b?q=1 HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{req}"
        );
        assert!(
            req.contains("X-A: 1\r\nx-b: 3\r\n") && !req.contains("X-B"),
            "{req}"
        );
        assert!(b.valid_codes.contains(404) && !b.valid_codes.contains(200));
        assert_eq!(
            &*b.label_block,
            r#"target="http://[::1]:8080/b?q=1",name="b",team="core""#
        );
        assert_eq!(c.max_connections_per_host, DEFAULT_MAX_CONNECTIONS_PER_HOST);
    }
}
