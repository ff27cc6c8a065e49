//! The targets file: YAML schema, defaults, validation, and errors that name the file, line,
//! column and field.
//!
//! Two formats are accepted, told apart by the document's top level:
//! - a **mapping** is the native format (`defaults`, `targets`, `max_connections_per_host`);
//! - a **sequence** is Prometheus `file_sd` format (`- targets: [...]\n  labels: {...}`).
//!
//! Values are checked while they are decoded, so the YAML decoder's position is the position
//! of the bad value. Checks that need the whole file (duplicates, reading TLS files) locate the
//! value in the source text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::codes::StatusCodes;
use bytes::Bytes;

use crate::probe_url::{self, IpProtocol, ProbeUrl};
use crate::proxy::{self, NoProxy, ProxyRules};
use crate::request::{self, Method, RequestSpec};
use crate::secret::Secret;
use crate::target::Target;
use crate::tls::{self, MinVersion, TlsSettings, TlsTarget};

/// A probe's timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent connections to one host when the file does not say: enough to keep a round fast,
/// few enough that a file with thousands of paths on one web server does not flood it.
pub const DEFAULT_MAX_CONNECTIONS_PER_HOST: usize = 32;

/// Longest name, label or header (name and value together): a value every series repeats
/// must stay small.
pub const MAX_TEXT: usize = 4096;

/// Most labels, and most headers, of a target.
pub const MAX_PAIRS: usize = 64;

/// Most redirects `follow_redirects` may allow.
pub const MAX_REDIRECTS: u8 = 20;

/// Largest `body` or `body_file`: a health check's request, not an upload.
pub const MAX_BODY: usize = 1 << 20;

/// Largest file a password, token or header value is read from.
pub const MAX_SECRET_FILE: usize = 64 * 1024;

/// How far past the previous target's URL the next one is looked for when an error must be
/// placed: far enough for a target with a long block of settings.
const SEARCH_WINDOW: usize = 16 * 1024;

/// Largest `max_connections_per_host`: more than any host could want, and within what a
/// semaphore holds.
pub const MAX_CONNECTIONS_PER_HOST: usize = 65_536;

/// Label names the exporter sets itself.
const RESERVED_LABELS: &[&str] = &[
    "target", "name", "phase", "reason", "version", "job", "instance",
];

pub use crate::config_error::ConfigError;

/// A loaded, validated targets file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Every target, in file order; shared, so that the subset a selection probes costs a
    /// pointer per target.
    pub targets: Vec<Arc<Target>>,
    /// Cap on concurrent probes per host.
    pub max_connections_per_host: usize,
    /// Whether the file defines or names groups: only then do series carry a `group` label.
    pub uses_groups: bool,
    /// The groups of the targets, sorted.
    pub groups: Vec<String>,
}

impl Config {
    /// The targets `keep` selects, as a config of their own (for a round of a group or a
    /// single target); everything else is the same.
    pub fn subset(&self, mut keep: impl FnMut(&Target) -> bool) -> Config {
        Config {
            file: self.file.clone(),
            targets: self.targets.iter().filter(|t| keep(t)).cloned().collect(),
            max_connections_per_host: self.max_connections_per_host,
            uses_groups: self.uses_groups,
            groups: self.groups.clone(),
        }
    }
}

/// A human duration: `250ms`, `5s`, `1m`, `1m30s`, `1.5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Parse a human duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {s:?}: expected a number and a unit, like 250ms, 5s or 1m");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    if total <= 0.0 || total > 86_400.0 {
        return Err(format!(
            "invalid duration {s:?}: must be above 0 and at most 24h"
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| de::Error::custom(format!("timeout: {e}")))
    }
}

/// A URL checked while decoding.
#[derive(Debug, Clone)]
struct UrlValue(ProbeUrl);

impl<'de> Deserialize<'de> for UrlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        probe_url::parse_url(&s)
            .map(UrlValue)
            .map_err(de::Error::custom)
    }
}

/// Where a header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HeaderSource {
    /// Written in the file: may be shown.
    Plain(String),
    /// Several values: one header line each (`proxy_connect_header` only).
    List(Vec<String>),
    /// Read from a file at load and at reload: a secret.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for HeaderSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A string, a list of strings, or `{file: PATH}`.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value, or {file: PATH}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderSource, E> {
                Ok(HeaderSource::Plain(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HeaderSource, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    if values.len() == MAX_PAIRS {
                        return Err(de::Error::custom(format!("more than {MAX_PAIRS} values")));
                    }
                    values.push(v);
                }
                Ok(HeaderSource::List(values))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderSource, A::Error> {
                let mut file = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "file" || file.is_some() {
                        // The key is not quoted: it may be a value written in the wrong place.
                        return Err(de::Error::custom(
                            "a header value is a string, a list of strings or {file: PATH}",
                        ));
                    }
                    file = Some(map.next_value::<PathBuf>()?);
                }
                file.map(HeaderSource::File)
                    .ok_or_else(|| de::Error::custom("missing field `file`"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Request headers, checked for valid names and values that cannot inject lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Headers(Vec<(String, HeaderSource)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, HeaderSource>::deserialize(d)?;
        for (k, v) in &map {
            if k.is_empty() || !k.bytes().all(crate::request::is_tchar) {
                return Err(de::Error::custom(format!(
                    "headers: invalid header name {k:?}"
                )));
            }
            let values: &[String] = match v {
                HeaderSource::Plain(v) => std::slice::from_ref(v),
                HeaderSource::List(l) => l,
                HeaderSource::File(_) => &[],
            };
            if values.iter().any(|v| has_control(v)) {
                return Err(de::Error::custom(format!(
                    "headers: header {k:?} has control characters in its value"
                )));
            }
        }
        Ok(Headers(map.into_iter().collect()))
    }
}

/// Whether a header value holds characters that could end its line.
fn has_control(v: &str) -> bool {
    v.chars().any(|c| c.is_control() && c != '\t')
}

/// A password or token written in the file. Decoding errors never quote it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SecretValue(Secret);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Any scalar, as text.
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretValue, E> {
                if has_control(v) {
                    return Err(E::custom("the value has control characters"));
                }
                Ok(SecretValue(Secret::new(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretValue, E> {
                Ok(SecretValue(Secret::new(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretValue, E> {
                Ok(SecretValue(Secret::new(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretValue, E> {
                Err(E::custom("write the value as a quoted string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretValue, E> {
                Err(E::custom("write the value as a quoted string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `basic_auth`: the password written in the file or read from one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    /// The user name (may be shown).
    username: String,
    /// The password.
    password: Option<SecretValue>,
    /// A file holding the password.
    password_file: Option<PathBuf>,
}

/// `no_proxy`: a list, or one comma-separated string as in `NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NoProxyList(Vec<String>);

impl<'de> Deserialize<'de> for NoProxyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A string or a list of strings.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        let list = match Form::deserialize(d)
            .map_err(|_| de::Error::custom("no_proxy: a list of host names and CIDRs"))?
        {
            Form::One(s) => s.split(',').map(|e| e.trim().to_owned()).collect(),
            Form::Many(l) => l,
        };
        NoProxy::parse(list.iter().map(String::as_str)).map_err(de::Error::custom)?;
        Ok(NoProxyList(list))
    }
}

/// Extra labels, checked against the Prometheus label name syntax and our own labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Labels(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        for k in map.keys() {
            check_label_name(k).map_err(|e| de::Error::custom(format!("labels: {e}")))?;
        }
        Ok(Labels(map.into_iter().collect()))
    }
}

/// A label name must match `[a-zA-Z_][a-zA-Z0-9_]*`, not start with `__` and not be ours.
fn check_label_name(k: &str) -> Result<(), String> {
    let mut chars = k.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || k.starts_with("__") {
        return Err(format!("invalid label name {k:?}"));
    }
    if RESERVED_LABELS.contains(&k) {
        return Err(format!("label name {k:?} is reserved"));
    }
    Ok(())
}

/// The `tls_config` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// CA certificates (PEM) replacing the built-in roots.
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    cert_file: Option<PathBuf>,
    /// Client key (PEM).
    key_file: Option<PathBuf>,
    /// SNI and verification name.
    server_name: Option<String>,
    /// Skip certificate verification.
    insecure_skip_verify: Option<bool>,
    /// Lowest accepted TLS version.
    min_version: Option<MinVersion>,
}

impl RawTls {
    /// Fields of `over` win over those of `self`.
    fn merged(&self, over: &RawTls) -> RawTls {
        RawTls {
            ca_file: over.ca_file.clone().or_else(|| self.ca_file.clone()),
            cert_file: over.cert_file.clone().or_else(|| self.cert_file.clone()),
            key_file: over.key_file.clone().or_else(|| self.key_file.clone()),
            server_name: over
                .server_name
                .clone()
                .or_else(|| self.server_name.clone()),
            insecure_skip_verify: over.insecure_skip_verify.or(self.insecure_skip_verify),
            min_version: over.min_version.or(self.min_version),
        }
    }
}

/// Settings that `defaults` gives every target and a target may override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The probe's time limit.
    timeout: Option<HumanDuration>,
    /// Codes that count as success.
    valid_status_codes: Option<StatusCodes>,
    /// Any method token.
    method: Option<Method>,
    /// Extra request headers.
    headers: Option<Headers>,
    /// TLS settings.
    tls_config: Option<RawTls>,
    /// Address family.
    ip_protocol: Option<IpProtocol>,
    /// Local address to probe from.
    source_ip: Option<IpAddr>,
    /// The group of the targets (in `defaults` only; a `groups` block is a group already).
    group: Option<GroupName>,
    /// Redirects followed at most.
    follow_redirects: Option<u8>,
    /// Fail when the final request went over TLS.
    fail_if_ssl: Option<bool>,
    /// Fail when the final request did not go over TLS.
    fail_if_not_ssl: Option<bool>,
    /// `http://[user:password@]host:port` of a proxy for every request.
    proxy_url: Option<SecretValue>,
    /// Hosts reached without the proxy.
    no_proxy: Option<NoProxyList>,
    /// Take the proxy from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
    proxy_from_environment: Option<bool>,
    /// Headers of every CONNECT request.
    proxy_connect_header: Option<Headers>,
    /// `Authorization: Basic`.
    basic_auth: Option<BasicAuth>,
    /// `Authorization: Bearer`, written in the file.
    bearer_token: Option<SecretValue>,
    /// `Authorization: Bearer`, read from a file.
    bearer_token_file: Option<PathBuf>,
    /// The request body.
    body: Option<String>,
    /// A file holding the request body.
    body_file: Option<PathBuf>,
}

impl Settings {
    /// These settings with `over`'s on top: fields replace, headers merge by name, TLS
    /// settings merge field by field.
    fn under(&self, over: &Settings) -> Settings {
        let headers = match (&self.headers, &over.headers) {
            (Some(base), Some(top)) => {
                let mut merged = base.0.clone();
                for (k, v) in &top.0 {
                    merged.retain(|(bk, _)| !bk.eq_ignore_ascii_case(k));
                    merged.push((k.clone(), v.clone()));
                }
                Some(Headers(merged))
            }
            (base, top) => top.clone().or_else(|| base.clone()),
        };
        let tls_config = match (&self.tls_config, &over.tls_config) {
            (Some(base), Some(top)) => Some(base.merged(top)),
            (base, top) => top.clone().or_else(|| base.clone()),
        };
        Settings {
            timeout: over.timeout.or(self.timeout),
            valid_status_codes: over
                .valid_status_codes
                .clone()
                .or_else(|| self.valid_status_codes.clone()),
            method: over.method.clone().or_else(|| self.method.clone()),
            headers,
            tls_config,
            ip_protocol: over.ip_protocol.or(self.ip_protocol),
            source_ip: over.source_ip.or(self.source_ip),
            group: over.group.clone().or_else(|| self.group.clone()),
            follow_redirects: over.follow_redirects.or(self.follow_redirects),
            fail_if_ssl: over.fail_if_ssl.or(self.fail_if_ssl),
            fail_if_not_ssl: over.fail_if_not_ssl.or(self.fail_if_not_ssl),
            // Keys that belong together are taken together from the layer that sets any of
            // them: a target's `bearer_token` replaces the defaults' `basic_auth`, its
            // `body_file` the defaults' `body`, its `proxy_from_environment` their `proxy_url`.
            ..self.grouped_under(over)
        }
    }

    /// The credential, body and proxy keys of [`Settings::under`].
    fn grouped_under(&self, over: &Settings) -> Settings {
        let top = |x: &Settings| -> bool {
            x.basic_auth.is_some() || x.bearer_token.is_some() || x.bearer_token_file.is_some()
        };
        let auth = if top(over) { over } else { self };
        let body = if over.body.is_some() || over.body_file.is_some() {
            over
        } else {
            self
        };
        let proxied = if over.proxy_url.is_some() || over.proxy_from_environment.is_some() {
            over
        } else {
            self
        };
        Settings {
            basic_auth: auth.basic_auth.clone(),
            bearer_token: auth.bearer_token.clone(),
            bearer_token_file: auth.bearer_token_file.clone(),
            body: body.body.clone(),
            body_file: body.body_file.clone(),
            proxy_url: proxied.proxy_url.clone(),
            proxy_from_environment: proxied.proxy_from_environment,
            no_proxy: over.no_proxy.clone().or_else(|| self.no_proxy.clone()),
            proxy_connect_header: over
                .proxy_connect_header
                .clone()
                .or_else(|| self.proxy_connect_header.clone()),
            ..Settings::default()
        }
    }
}

/// The group every target without one belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// A group name: letters, digits, `_`, `-` and `.`, so that it reads the same in a query
/// string (`/metrics?group=critical`), a label and a Prometheus job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupName(String);

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            Ok(GroupName(s))
        } else {
            Err(de::Error::custom(format!(
                "invalid group name {s:?}: use 1 to 64 letters, digits, `_`, `-` or `.`"
            )))
        }
    }
}

/// One entry of `targets` in its long form: its URL, name and labels, and any key of
/// [`Settings`] (each documented there), over its group's and the defaults'.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongTarget {
    /// The URL (`None` only while the entry is being built).
    #[serde(deserialize_with = "some_url")]
    url: Option<UrlValue>,
    /// The `name` label.
    name: Option<String>,
    /// Extra labels.
    labels: Option<Labels>,
    /// The group, whose settings in `groups` apply over `defaults`.
    group: Option<GroupName>,
    timeout: Option<HumanDuration>,
    valid_status_codes: Option<StatusCodes>,
    method: Option<Method>,
    headers: Option<Headers>,
    tls_config: Option<RawTls>,
    ip_protocol: Option<IpProtocol>,
    source_ip: Option<IpAddr>,
    follow_redirects: Option<u8>,
    fail_if_ssl: Option<bool>,
    fail_if_not_ssl: Option<bool>,
    proxy_url: Option<SecretValue>,
    no_proxy: Option<NoProxyList>,
    proxy_from_environment: Option<bool>,
    proxy_connect_header: Option<Headers>,
    basic_auth: Option<BasicAuth>,
    bearer_token: Option<SecretValue>,
    bearer_token_file: Option<PathBuf>,
    body: Option<String>,
    body_file: Option<PathBuf>,
}

/// `url` is required: decoded as a [`UrlValue`] and kept as `Some`.
fn some_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UrlValue>, D::Error> {
    UrlValue::deserialize(d).map(Some)
}

impl LongTarget {
    /// A target given by its URL alone.
    fn bare(url: UrlValue) -> Self {
        LongTarget {
            url: Some(url),
            ..LongTarget::default()
        }
    }

    /// The URL, which decoding made sure of.
    fn url(&self) -> &ProbeUrl {
        // Every constructor sets it: `bare`, and the decoder, for which `url` is required.
        #[allow(clippy::expect_used)]
        &self.url.as_ref().expect("a target has a URL").0
    }

    /// The target's own settings, to lay over its group's.
    fn settings(&self) -> Settings {
        Settings {
            timeout: self.timeout,
            valid_status_codes: self.valid_status_codes.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            tls_config: self.tls_config.clone(),
            ip_protocol: self.ip_protocol,
            source_ip: self.source_ip,
            group: None,
            follow_redirects: self.follow_redirects,
            fail_if_ssl: self.fail_if_ssl,
            fail_if_not_ssl: self.fail_if_not_ssl,
            proxy_url: self.proxy_url.clone(),
            no_proxy: self.no_proxy.clone(),
            proxy_from_environment: self.proxy_from_environment,
            proxy_connect_header: self.proxy_connect_header.clone(),
            basic_auth: self.basic_auth.clone(),
            bearer_token: self.bearer_token.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            body: self.body.clone(),
            body_file: self.body_file.clone(),
        }
    }
}

/// One entry of `targets`: a bare URL or a mapping.
#[derive(Debug, Clone)]
struct RawTarget(LongTarget);

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Accepts a string or a mapping, keeping the decoder's own errors for the mapping.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL or a mapping with a `url` key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                let url = probe_url::parse_url(v).map_err(E::custom)?;
                Ok(RawTarget(LongTarget::bare(UrlValue(url))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                let t = LongTarget::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// The native format's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFile {
    /// Settings for every target.
    #[serde(default)]
    defaults: Settings,
    /// Settings per group, over `defaults`.
    #[serde(default)]
    groups: BTreeMap<GroupName, Settings>,
    /// The targets.
    targets: Vec<RawTarget>,
    /// Per-host cap on concurrent probes.
    max_connections_per_host: Option<usize>,
}

/// One group of a Prometheus file_sd file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdGroup {
    /// URLs.
    targets: Vec<UrlValue>,
    /// Labels for every URL of the group; `__`-prefixed ones are ignored, `name` becomes the
    /// name label.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Load and validate a targets file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_bounded(path, "targets file")?;
    parse(path, &text)
}

/// Largest config file read: far beyond any real targets file, well below what would hurt.
pub const MAX_FILE_SIZE: u64 = 64 << 20;

/// Read a config file as text: a regular file (not a FIFO or `/dev/zero`) of at most
/// [`MAX_FILE_SIZE`] bytes, checked before and while reading.
pub fn read_bounded(path: &Path, what: &str) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let fail = |message: String| ConfigError {
        file: path.to_owned(),
        line: 1,
        column: 1,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read the {what}: {e}")))?;
    if !meta.is_file() {
        return Err(fail(format!("the {what} is not a regular file")));
    }
    let too_large = || fail(format!("the {what} is larger than {MAX_FILE_SIZE} bytes"));
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read the {what}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| fail(format!("the {what} is not UTF-8 text")))
}

/// Validate a targets file's text; `path` names it in errors and anchors relative TLS paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err_at = |line: usize, column: usize, message: String| ConfigError {
        file: path.to_owned(),
        line,
        column,
        message,
    };
    let yaml_err = |e: serde_yaml::Error| {
        let message = strip_location(&e.to_string());
        let (line, column) = match e.location() {
            // The decoder reports some errors at the start of the enclosing mapping: move to
            // the offending value when the message quotes it.
            Some(l) => match quoted(&message)
                .and_then(|v| find_from(text, v, l.index()).or_else(|| text.find(v)))
            {
                Some(i) => line_col(text, i),
                None => (l.line(), l.column()),
            },
            None => (1, 1),
        };
        err_at(line, column, without_strings(&message))
    };
    refuse_aliases(path, text)?;
    let is_sd = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
        .is_some_and(|l| l.starts_with('-') || l.starts_with('['));
    let (defaults, groups, entries, per_host) = if is_sd {
        let groups: Vec<SdGroup> = serde_yaml::from_str(text).map_err(yaml_err)?;
        let mut entries = Vec::new();
        for g in groups {
            let mut name = None;
            let mut group = None;
            let mut labels = Vec::new();
            for (k, v) in g.labels {
                if k.starts_with("__") {
                    continue;
                }
                if k == "name" {
                    name = Some(v);
                    continue;
                }
                if k == "group" {
                    group = Some(
                        GroupName::deserialize(
                            de::value::StrDeserializer::<de::value::Error>::new(&v),
                        )
                        .map_err(|e| {
                            let ((l, c), _) = locate(text, &v, 0);
                            err_at(l, c, format!("labels: group: {e}"))
                        })?,
                    );
                    continue;
                }
                check_label_name(&k).map_err(|m| {
                    let ((l, c), _) = locate(text, &k, 0);
                    err_at(l, c, format!("labels: {m}"))
                })?;
                labels.push((k, v));
            }
            for url in g.targets {
                entries.push(LongTarget {
                    name: name.clone(),
                    labels: Some(Labels(labels.clone())),
                    group: group.clone(),
                    ..LongTarget::bare(url)
                });
            }
        }
        (Settings::default(), BTreeMap::new(), entries, None)
    } else {
        let file: NativeFile = serde_yaml::from_str(text).map_err(yaml_err)?;
        let entries = file.targets.into_iter().map(|t| t.0).collect();
        (
            file.defaults,
            file.groups,
            entries,
            file.max_connections_per_host,
        )
    };
    if per_host.is_some_and(|n| !(1..=MAX_CONNECTIONS_PER_HOST).contains(&n)) {
        let ((l, c), _) = locate(text, "max_connections_per_host", 0);
        return Err(err_at(
            l,
            c,
            format!("max_connections_per_host must be 1 to {MAX_CONNECTIONS_PER_HOST}"),
        ));
    }
    if let Some(name) = groups.iter().find_map(|(n, g)| g.group.as_ref().map(|_| n)) {
        let ((l, c), _) = locate(text, &name.0, 0);
        return Err(err_at(
            l,
            c,
            format!("groups: {}: a group block names no group", name.0),
        ));
    }
    build(path, text, &defaults, &groups, &entries, per_host)
}

/// Most YAML events a file may hold: a million targets with settings fit well within it.
pub const MAX_YAML_EVENTS: usize = 20_000_000;

/// Refuse YAML anchors and aliases, naming where they stand: an alias is expanded in full at
/// every use, so a small file could decode into gigabytes. A targets file does not need them
/// (`defaults` shares settings). Also bounds the number of YAML nodes. Syntax errors are left
/// to the decoder, which reports them in its own words.
fn refuse_aliases(path: &Path, text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::parser::{Event, Parser};
    // Only a file that mentions `&` or `*` can hold an anchor or alias: most never pay for
    // the second pass.
    if !text.contains(['&', '*']) {
        return Ok(());
    }
    let mut parser = Parser::new_from_str(text);
    let at = |mark: yaml_rust2::scanner::Marker, message: &str| ConfigError {
        file: path.to_owned(),
        line: mark.line(),
        column: mark.col() + 1,
        message: message.to_owned(),
    };
    for _ in 0..MAX_YAML_EVENTS {
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(());
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                return Err(at(
                    mark,
                    "YAML aliases (*name) are not accepted: write the value out, or use defaults",
                ));
            }
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor != 0 =>
            {
                return Err(at(
                    mark,
                    "YAML anchors (&name) are not accepted: write the value out, or use defaults",
                ));
            }
            _ => {}
        }
    }
    Err(ConfigError {
        file: path.to_owned(),
        line: 1,
        column: 1,
        message: format!("more than {MAX_YAML_EVENTS} YAML nodes"),
    })
}

/// A config of bare URLs (as given to `check` on the command line), each with `timeout`.
pub fn from_urls(urls: &[String], timeout: Duration) -> Result<Config, ConfigError> {
    let origin = Path::new("<command line>");
    let mut entries = Vec::with_capacity(urls.len());
    for (i, u) in urls.iter().enumerate() {
        let url = probe_url::parse_url(u).map_err(|e| ConfigError {
            file: origin.to_owned(),
            line: 1,
            column: i + 1,
            message: e.to_string(),
        })?;
        entries.push(LongTarget::bare(UrlValue(url)));
    }
    let defaults = Settings {
        timeout: Some(HumanDuration(timeout)),
        ..Settings::default()
    };
    build(origin, "", &defaults, &BTreeMap::new(), &entries, None)
}

/// A field-level error of [`build`]: the key to point at, and the message.
type FieldError = (&'static str, String);

/// What the settings of a target turn into, shared by every target with the same settings.
type SpecKey = (
    Option<Method>,
    Option<Headers>,
    Option<BasicAuth>,
    Option<SecretValue>,
    Option<PathBuf>,
    Option<String>,
    Option<PathBuf>,
);

/// The proxy keys of a target, for sharing their rules.
type ProxyKey = (
    Option<SecretValue>,
    Option<NoProxyList>,
    Option<bool>,
    Option<Headers>,
);

/// Files the targets name (secrets, bodies), each read once per load, and what the settings
/// built from them, shared between targets.
#[derive(Default)]
struct Files {
    /// Contents by path.
    read: HashMap<PathBuf, Result<Bytes, String>>,
    /// Request specs by their settings.
    specs: HashMap<SpecKey, Arc<RequestSpec>>,
    /// Proxy rules by their settings.
    proxies: HashMap<ProxyKey, Option<Arc<ProxyRules>>>,
}

impl Files {
    /// A file's bytes: a regular file of at most `limit` bytes, relative to `base`.
    fn bytes(&mut self, base: &Path, path: &Path, limit: usize) -> Result<Bytes, String> {
        let full = base.join(path);
        if let Some(r) = self.read.get(&full) {
            return r.clone();
        }
        let r = read_limited(&full, limit);
        self.read.insert(full, r.clone());
        r
    }

    /// A secret read from a file: UTF-8 text, surrounding whitespace trimmed (a file written
    /// by `echo` ends in a newline), no control characters. Errors never quote the contents.
    fn secret(&mut self, base: &Path, path: &Path) -> Result<Secret, String> {
        let bytes = self.bytes(base, path, MAX_SECRET_FILE)?;
        let shown = base.join(path).display().to_string();
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("{shown} is not UTF-8 text"))?
            .trim();
        if has_control(text) {
            return Err(format!("{shown} holds control characters"));
        }
        Ok(Secret::new(text.to_owned()))
    }

    /// A header's values: those written in the file (`Ok`), or the secret read from a file.
    fn header_values(
        &mut self,
        base: &Path,
        source: &HeaderSource,
    ) -> Result<Result<Vec<String>, Secret>, String> {
        Ok(match source {
            HeaderSource::Plain(v) => Ok(vec![v.clone()]),
            HeaderSource::List(l) => Ok(l.clone()),
            HeaderSource::File(p) => Err(self.secret(base, p)?),
        })
    }

    /// The method, headers, credentials and body of `s`.
    fn request_spec(&mut self, s: &Settings, base: &Path) -> Result<Arc<RequestSpec>, FieldError> {
        let key: SpecKey = (
            s.method.clone(),
            s.headers.clone(),
            s.basic_auth.clone(),
            s.bearer_token.clone(),
            s.bearer_token_file.clone(),
            s.body.clone(),
            s.body_file.clone(),
        );
        if let Some(spec) = self.specs.get(&key) {
            return Ok(spec.clone());
        }
        let mut spec = RequestSpec::bare(s.method.clone().unwrap_or(Method::GET));
        for (k, v) in s.headers.iter().flat_map(|h| &h.0) {
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(("headers", format!("headers: {k} is set from body")));
            }
            let values = self
                .header_values(base, v)
                .map_err(|m| ("file", format!("headers: {k}: {m}")))?;
            match values {
                Ok(shown) => spec
                    .headers
                    .extend(shown.into_iter().map(|v| (k.clone(), v))),
                Err(secret) => spec.secret_headers.push((k.clone(), secret)),
            }
        }
        let count = spec.headers.len() + spec.secret_headers.len();
        if count > MAX_PAIRS {
            return Err(("headers", format!("more than {MAX_PAIRS} headers")));
        }
        let long = spec
            .headers
            .iter()
            .map(|(k, v)| (k, v.len()))
            .chain(
                spec.secret_headers
                    .iter()
                    .map(|(k, v)| (k, v.expose().len())),
            )
            .find(|(k, n)| k.len() + n > MAX_TEXT);
        if let Some((k, _)) = long {
            return Err((
                "headers",
                format!("headers: {k} is longer than {MAX_TEXT} bytes"),
            ));
        }
        let authorization = match (&s.basic_auth, &s.bearer_token, &s.bearer_token_file) {
            (None, None, None) => None,
            (Some(auth), None, None) => {
                let password = match (&auth.password, &auth.password_file) {
                    (Some(_), Some(_)) => {
                        return Err((
                            "password_file",
                            "basic_auth: password and password_file cannot both be set".into(),
                        ));
                    }
                    (Some(p), None) => p.0.clone(),
                    (None, Some(f)) => self
                        .secret(base, f)
                        .map_err(|m| ("password_file", format!("basic_auth.password_file: {m}")))?,
                    (None, None) => Secret::new(String::new()),
                };
                if auth.username.contains(':') || has_control(&auth.username) {
                    return Err((
                        "username",
                        "basic_auth.username must not hold `:` or control characters".into(),
                    ));
                }
                let token = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{}:{}", auth.username, password.expose()),
                );
                Some(Secret::new(format!("Basic {token}")))
            }
            (None, Some(t), None) => Some(Secret::new(format!("Bearer {}", t.0.expose()))),
            (None, None, Some(f)) => {
                let t = self
                    .secret(base, f)
                    .map_err(|m| ("bearer_token_file", format!("bearer_token_file: {m}")))?;
                Some(Secret::new(format!("Bearer {}", t.expose())))
            }
            (None, Some(_), Some(_)) => {
                return Err((
                    "bearer_token_file",
                    "bearer_token and bearer_token_file cannot both be set".into(),
                ));
            }
            _ => {
                return Err((
                    "basic_auth",
                    "basic_auth and bearer_token cannot both be set".into(),
                ));
            }
        };
        if let Some(auth) = authorization {
            let set = |k: &String| k.eq_ignore_ascii_case("authorization");
            if spec.headers.iter().any(|(k, _)| set(k))
                || spec.secret_headers.iter().any(|(k, _)| set(k))
            {
                return Err((
                    "headers",
                    "headers: Authorization is set by basic_auth or bearer_token".into(),
                ));
            }
            spec.secret_headers.push(("Authorization".into(), auth));
        }
        spec.body = match (&s.body, &s.body_file) {
            (None, None) => Bytes::new(),
            (Some(b), None) if b.len() > MAX_BODY => {
                return Err(("body", format!("body is longer than {MAX_BODY} bytes")));
            }
            (Some(b), None) => Bytes::from(b.clone()),
            (None, Some(f)) => self
                .bytes(base, f, MAX_BODY)
                .map_err(|m| ("body_file", format!("body_file: {m}")))?,
            (Some(_), Some(_)) => {
                return Err(("body_file", "body and body_file cannot both be set".into()));
            }
        };
        let spec = Arc::new(spec);
        self.specs.insert(key, spec.clone());
        Ok(spec)
    }

    /// The proxy rules of `s`, `None` when it names no proxy.
    fn proxy_rules(
        &mut self,
        s: &Settings,
        base: &Path,
    ) -> Result<Option<Arc<ProxyRules>>, FieldError> {
        let key: ProxyKey = (
            s.proxy_url.clone(),
            s.no_proxy.clone(),
            s.proxy_from_environment,
            s.proxy_connect_header.clone(),
        );
        if let Some(rules) = self.proxies.get(&key) {
            return Ok(rules.clone());
        }
        let from_env = s.proxy_from_environment.unwrap_or(false);
        if s.proxy_url.is_some() && from_env {
            return Err((
                "proxy_from_environment",
                "proxy_url and proxy_from_environment cannot both be set".into(),
            ));
        }
        if s.no_proxy.is_some() && s.proxy_url.is_none() {
            return Err((
                "no_proxy",
                "no_proxy needs proxy_url (with proxy_from_environment, NO_PROXY applies)".into(),
            ));
        }
        if s.proxy_connect_header.is_some() && s.proxy_url.is_none() && !from_env {
            return Err((
                "proxy_connect_header",
                "proxy_connect_header needs proxy_url or proxy_from_environment".into(),
            ));
        }
        let mut lines = String::new();
        for (k, v) in s.proxy_connect_header.iter().flat_map(|h| &h.0) {
            let values = match self
                .header_values(base, v)
                .map_err(|m| ("file", format!("proxy_connect_header: {k}: {m}")))?
            {
                Ok(shown) => shown,
                Err(secret) => vec![secret.expose().to_owned()],
            };
            for v in values {
                if k.len() + v.len() > MAX_TEXT {
                    return Err((
                        "proxy_connect_header",
                        format!("proxy_connect_header: {k} is longer than {MAX_TEXT} bytes"),
                    ));
                }
                lines.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let connect = Secret::new(lines);
        let rules = if let Some(u) = &s.proxy_url {
            let p = proxy::parse(u.0.expose(), connect)
                .map_err(|e| ("proxy_url", format!("proxy_url: {e}")))?;
            let no_proxy = NoProxy::parse(s.no_proxy.iter().flat_map(|l| &l.0).map(String::as_str))
                .map_err(|e| ("no_proxy", e.to_string()))?;
            Some(Arc::new(ProxyRules {
                http: Some(p.clone()),
                https: Some(p),
                no_proxy,
            }))
        } else if from_env {
            ProxyRules::from_environment(|k| std::env::var(k).ok(), &connect)
                .map_err(|(var, e)| {
                    (
                        "proxy_from_environment",
                        format!("proxy_from_environment: {var}: {e}"),
                    )
                })?
                .map(Arc::new)
        } else {
            None
        };
        self.proxies.insert(key, rules.clone());
        Ok(rules)
    }
}

/// Read at most `limit` bytes of a regular file.
fn read_limited(path: &Path, limit: usize) -> Result<Bytes, String> {
    use std::io::Read as _;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!("{shown} is larger than {limit} bytes"));
    }
    Ok(Bytes::from(bytes))
}

/// Turn decoded entries into targets: merge defaults, check duplicates, build TLS clients.
fn build(
    path: &Path,
    text: &str,
    base_defaults: &Settings,
    groups: &BTreeMap<GroupName, Settings>,
    entries: &[LongTarget],
    per_host: Option<usize>,
) -> Result<Config, ConfigError> {
    let err_at = |line: usize, column: usize, message: String| ConfigError {
        file: path.to_owned(),
        line,
        column,
        message,
    };

    let base = path.parent().unwrap_or(Path::new("."));
    let mut files = Files::default();
    let provider = tls::provider();
    let mut tls_cache: HashMap<TlsSettings, Arc<rustls::ClientConfig>> = HashMap::new();
    // The same probe twice, however its URL is spelled (`HTTP://`, `:80`, an empty path), with
    // the same name and labels, would make the same series twice.
    type Probe<'a> = (
        probe_url::Scheme,
        &'a probe_url::Host,
        u16,
        &'a str,
        Option<&'a str>,
        Option<&'a Labels>,
    );
    let mut seen: HashSet<Probe<'_>> = HashSet::new();
    // The file uses groups when it defines or names one: only then do series carry `group`.
    let uses_groups = !groups.is_empty()
        || base_defaults.group.is_some()
        || entries.iter().any(|e| e.group.is_some());
    // Per group: `defaults` with the group's block over it, and its default codes.
    let mut layered: HashMap<String, (Arc<Settings>, Arc<StatusCodes>)> = HashMap::new();
    let mut group_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut targets = Vec::with_capacity(entries.len());
    // Where target `k`'s URL stands in the text, worked out only when an error needs it, so
    // that loading stays linear: URLs are searched in file order, each after the previous one
    // and within a window, since one written with escapes is not in the text as decoded.
    let position_of = |k: usize| -> (Option<usize>, usize) {
        let mut cursor = 0;
        let mut at = None;
        for e in &entries[..=k] {
            let raw = e.url().raw.as_str();
            let end = (cursor + raw.len() + SEARCH_WINDOW).min(text.len());
            at = text
                .get(cursor..end)
                .and_then(|w| w.find(raw))
                .map(|i| i + cursor);
            cursor = at.map_or(cursor, |i| i + raw.len());
        }
        (at, cursor)
    };

    for (k, entry) in entries.iter().enumerate() {
        let raw = entry.url().raw.as_str();
        let group = entry
            .group
            .as_ref()
            .or(base_defaults.group.as_ref())
            .map_or(DEFAULT_GROUP, |g| g.0.as_str());
        if !group_names.contains(group) {
            group_names.insert(group.to_owned());
        }
        let (defaults, default_codes) = layered
            .entry(group.to_owned())
            .or_insert_with(|| {
                let s = match groups.get(&GroupName(group.to_owned())) {
                    Some(own) => base_defaults.under(own),
                    None => base_defaults.clone(),
                };
                let codes = Arc::new(s.valid_status_codes.clone().unwrap_or_default());
                (Arc::new(s), codes)
            })
            .clone();
        let u = entry.url();
        if !seen.insert((
            u.scheme,
            &u.host,
            u.port,
            u.path_and_query.as_str(),
            entry.name.as_deref(),
            entry.labels.as_ref(),
        )) {
            let (line, column) = position_of(k).0.map_or((1, 1), |i| line_col(text, i));
            return Err(err_at(
                line,
                column,
                format!("targets: {raw:?} is listed twice"),
            ));
        }
        let field_err = |field: &str, message: String| {
            let ((l, c), _) = locate(text, field, position_of(k).1);
            err_at(l, c, message)
        };
        // The target's own settings over its group's over the defaults.
        let merged = defaults.under(&entry.settings());
        let url = entry.url().clone();
        let follow_redirects = merged.follow_redirects.unwrap_or(0);
        if follow_redirects > MAX_REDIRECTS {
            return Err(field_err(
                "follow_redirects",
                format!("follow_redirects must be 0 to {MAX_REDIRECTS}"),
            ));
        }
        let fail_if_ssl = merged.fail_if_ssl.unwrap_or(false);
        let fail_if_not_ssl = merged.fail_if_not_ssl.unwrap_or(false);
        if fail_if_ssl && fail_if_not_ssl {
            return Err(field_err(
                "fail_if_ssl",
                "fail_if_ssl and fail_if_not_ssl cannot both be true".into(),
            ));
        }
        let spec = files
            .request_spec(&merged, base)
            .map_err(|(field, m)| field_err(field, m))?;
        let proxy = files
            .proxy_rules(&merged, base)
            .map_err(|(field, m)| field_err(field, m))?;
        // The target's own TLS settings; an http target has some only to follow redirects.
        let raw_tls = merged.tls_config.clone().unwrap_or_default();
        if url.scheme == probe_url::Scheme::Http
            && entry.tls_config.is_some()
            && follow_redirects == 0
        {
            return Err(field_err(
                "tls_config",
                format!("tls_config: {raw:?} is not an https target and follows no redirects"),
            ));
        }
        let mut client_config = || -> Result<Arc<rustls::ClientConfig>, ConfigError> {
            let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
            let settings = TlsSettings {
                ca_file: resolve(&raw_tls.ca_file),
                cert_file: resolve(&raw_tls.cert_file),
                key_file: resolve(&raw_tls.key_file),
                insecure_skip_verify: raw_tls.insecure_skip_verify.unwrap_or(false),
                min_version: raw_tls.min_version,
            };
            if let Some(c) = tls_cache.get(&settings) {
                return Ok(c.clone());
            }
            let c = tls::build_client_config(&settings, &provider).map_err(|e| {
                let field = match &e {
                    tls::TlsError::File {
                        what: "CA file", ..
                    }
                    | tls::TlsError::NoCertificate { .. } => "ca_file",
                    tls::TlsError::File {
                        what: "key file", ..
                    } => "key_file",
                    _ => "cert_file",
                };
                field_err(field, format!("tls_config.{field}: {e}"))
            })?;
            tls_cache.insert(settings, c.clone());
            Ok(c)
        };
        let tls = match url.scheme {
            probe_url::Scheme::Http => None,
            probe_url::Scheme::Https => {
                let config = client_config()?;
                let server_name = tls::server_name(raw_tls.server_name.as_deref(), &url.host)
                    .map_err(|m| {
                        field_err("server_name", format!("tls_config.server_name: {m}"))
                    })?;
                Some(TlsTarget {
                    config,
                    server_name,
                })
            }
        };
        let redirect_tls = if follow_redirects > 0 {
            Some(client_config()?)
        } else {
            None
        };
        let name = entry.name.clone();
        if let Some(n) = &name {
            if n.is_empty() {
                return Err(field_err("name", "name must not be empty".into()));
            }
        }
        let labels = entry.labels.clone().unwrap_or_default().0;
        if uses_groups && labels.iter().any(|(k, _)| k == "group") {
            return Err(field_err(
                "group",
                "labels: group is the target's group in a file that uses groups".into(),
            ));
        }
        if name.as_ref().is_some_and(|n| n.len() > MAX_TEXT) {
            return Err(field_err(
                "name",
                format!("name is longer than {MAX_TEXT} bytes"),
            ));
        }
        if labels.len() > MAX_PAIRS {
            return Err(field_err("labels", format!("more than {MAX_PAIRS} labels")));
        }
        if let Some((k, _)) = labels.iter().find(|(k, v)| k.len() + v.len() > MAX_TEXT) {
            return Err(field_err(
                k,
                format!("labels: {k} is longer than {MAX_TEXT} bytes"),
            ));
        }
        let ip_protocol = merged.ip_protocol.unwrap_or_default();
        if let probe_url::Host::Ip(ip) = &url.host {
            let forbidden = match ip_protocol {
                IpProtocol::Auto => false,
                IpProtocol::Ip4 => ip.is_ipv6(),
                IpProtocol::Ip6 => ip.is_ipv4(),
            };
            if forbidden {
                let (line, column) = position_of(k).0.map_or((1, 1), |i| line_col(text, i));
                return Err(err_at(
                    line,
                    column,
                    format!(
                        "targets: {raw:?}: ip_protocol {} forbids the address {ip}",
                        ip_protocol.as_str()
                    ),
                ));
            }
        }
        let valid_codes = match &entry.valid_status_codes {
            Some(c) => Arc::new(c.clone()),
            None => default_codes.clone(),
        };
        let first = proxy::request_form(proxy.as_ref().and_then(|p| p.for_url(&url)), &url);
        targets.push(Arc::new(Target {
            request: request::build_head(&url, &spec, first, request::Hop::FIRST),
            spec,
            follow_redirects,
            redirect_tls,
            fail_if_ssl,
            fail_if_not_ssl,
            proxy,
            label_block: Target::render_labels(
                raw,
                name.as_deref(),
                uses_groups.then_some(group),
                &labels,
            ),
            group: Arc::from(group),
            url,
            name,
            labels,
            timeout: merged.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            valid_codes,
            tls,
            ip_protocol,
            source_ip: merged.source_ip,
        }));
    }
    Ok(Config {
        file: path.to_owned(),
        targets,
        max_connections_per_host: per_host.unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_HOST),
        uses_groups,
        groups: group_names.into_iter().collect(),
    })
}

/// One of `count` replicas: probes the targets whose stable URL hash falls on `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// How many replicas share the targets.
    pub count: u64,
    /// This replica, from 0 to count - 1.
    pub index: u64,
}

impl Shard {
    /// Whether `target` belongs to this shard.
    pub fn owns(&self, target: &Target) -> bool {
        target.shard_hash() % self.count == self.index
    }

    /// Keep only this shard's targets.
    pub fn apply(&self, config: &mut Config) {
        config.targets.retain(|t| self.owns(t));
    }

    /// Parse `--shard.index`: a number, or a name ending in `-N` like a StatefulSet pod's
    /// `exporter-2`.
    pub fn parse_index(s: &str) -> Result<u64, String> {
        let bad = || format!("{s:?} is neither a number nor a name ending in -N");
        let digits = match s.rsplit_once('-') {
            // `-1` is a negative number, not a pod name.
            Some(("", _)) => return Err(bad()),
            Some((_, digits)) => digits,
            None => s,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map_err(|_| bad())
    }
}

/// Drop serde_yaml's " at line L column C" suffix: the location is printed in front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

/// 1-based line and column of the first occurrence of `needle` at or after byte `from`
/// (falling back to the whole text, then to 1:1), and the byte offset just after it.
fn locate(text: &str, needle: &str, from: usize) -> ((usize, usize), usize) {
    match find_from(text, needle, from).or_else(|| text.find(needle)) {
        Some(i) => (line_col(text, i), i + needle.len()),
        None => ((1, 1), from),
    }
}

/// Byte offset of `needle` at or after `from`.
fn find_from(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(needle).map(|i| i + from)
}

/// 1-based line and column of byte offset `i`.
fn line_col(text: &str, i: usize) -> (usize, usize) {
    let before = &text[..i];
    let line = before.matches('\n').count() + 1;
    let column = i - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, column)
}

/// A decoder's message without the strings it quotes: `invalid type: string "probe:pw",
/// expected struct BasicAuth` becomes `invalid type: a string, expected struct BasicAuth`. A
/// value in the wrong place can be a secret (a `basic_auth` written as `user:password`, a
/// header written as one string), and the line and column point at it anyway.
fn without_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(QUOTED) {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        // The string is Debug-quoted: it ends at the first quote that is not escaped.
        let mut chars = rest[i + QUOTED.len()..].char_indices();
        let mut end = rest.len() - i - QUOTED.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[i + QUOTED.len() + end..];
    }
    out.push_str(rest);
    out
}

/// The first `"quoted"` part of a message, when it has no escapes.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    let value = &message[start..start + len];
    (!value.is_empty() && !value.contains('\\')).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_printed_for_debugging_hides_its_credentials() {
        let text = "targets:\n  - {url: 'http://a/', bearer_token: tok-3141, proxy_url: 'http://u:pw-2718@p:1'}\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let shown = format!("{:?}", c.targets[0]);
        assert!(
            shown.contains("http://a/") && shown.contains("<secret>"),
            "{shown}"
        );
        assert!(
            !shown.contains("tok-3141") && !shown.contains("pw-2718"),
            "{shown}"
        );
        // The request itself carries them.
        let request = String::from_utf8_lossy(&c.targets[0].request).into_owned();
        assert!(
            request.contains("Authorization: Bearer tok-3141\r\n"),
            "{request}"
        );
        assert!(
            request.starts_with("GET http://a/ HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("Proxy-Authorization: Basic dTpwdy0yNzE4\r\n"),
            "{request}"
        );
    }

    #[test]
    fn an_ip_literal_of_a_forbidden_family_is_a_load_error() {
        let text = "defaults: {ip_protocol: ip4}\ntargets:\n  - http://127.0.0.1/\n  - http://[::1]:8080/\n";
        let e = parse(Path::new("t.yml"), text).unwrap_err();
        assert_eq!((e.line, e.column), (4, 5), "{e}");
        assert_eq!(
            e.to_string(),
            "t.yml:4:5: targets: \"http://[::1]:8080/\": ip_protocol ip4 forbids the address ::1"
        );
        let text = "targets:\n  - url: http://10.0.0.1/\n    ip_protocol: ip6\n";
        let e = parse(Path::new("t.yml"), text).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(parse(Path::new("t.yml"), "targets:\n  - http://[::1]/\n").is_ok());
    }

    #[test]
    fn max_connections_per_host_is_checked_against_its_range() {
        for bad in ["0", "65537", "18446744073709551615"] {
            let text = format!("max_connections_per_host: {bad}\ntargets: ['http://a/']\n");
            let e = parse(Path::new("t.yml"), &text).unwrap_err();
            assert_eq!((e.line, e.column), (1, 1), "{e}");
            assert!(e.message.contains("1 to 65536"), "{e}");
        }
        let ok = parse(
            Path::new("t.yml"),
            "max_connections_per_host: 65536\ntargets: ['http://a/']\n",
        );
        assert_eq!(ok.unwrap().max_connections_per_host, 65_536);
    }

    #[test]
    fn files_that_are_not_regular_are_refused_before_reading() {
        let e = load(Path::new("/dev/zero")).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
    }

    #[test]
    fn yaml_anchors_and_aliases_are_refused_with_their_place() {
        let text = "defaults: {timeout: 2s}\ntargets:\n  - url: http://a/\n    labels: &l {team: x}\n  - url: http://b/\n    labels: *l\n";
        let e = parse(Path::new("t.yml"), text).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("anchors"), "{e}");
        let text = "targets:\n  - url: http://a/\n    name: *nothing\n";
        let e = parse(Path::new("t.yml"), text).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("anchor"), "{e}");
        // `&` and `*` inside values are no anchors.
        let ok = parse(
            Path::new("t.yml"),
            "targets:\n  - 'http://a/?x=1&y=*'\n  - http://b/?q=a&b\n",
        );
        assert_eq!(ok.unwrap().targets.len(), 2);
    }

    #[test]
    fn loading_is_linear_whatever_the_spelling() {
        // URLs written with escapes are not in the text as decoded.
        let mut text = String::from("targets:\n");
        for i in 0..40_000 {
            text.push_str(&format!("  - \"http://\\x61.test/{i}\"\n"));
        }
        let t = std::time::Instant::now();
        let c = parse(Path::new("t.yml"), &text).unwrap();
        assert_eq!(c.targets.len(), 40_000);
        assert_eq!(c.targets[1].url.raw, "http://a.test/1");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn texts_and_pairs_are_capped() {
        let long = "x".repeat(MAX_TEXT + 1);
        let e = parse(
            Path::new("t.yml"),
            &format!("targets:\n  - url: http://a/\n    name: {long}\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("longer than 4096"), "{e}");
        let e = parse(
            Path::new("t.yml"),
            &format!("targets:\n  - url: http://a/\n    labels: {{team: {long}}}\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("labels: team"), "{e}");
        let many: Vec<String> = (0..65).map(|i| format!("l{i}: v")).collect();
        let e = parse(
            Path::new("t.yml"),
            &format!(
                "targets:\n  - url: http://a/\n    labels: {{{}}}\n",
                many.join(", ")
            ),
        )
        .unwrap_err();
        assert!(e.message.contains("more than 64 labels"), "{e}");
        let e = parse(
            Path::new("t.yml"),
            &format!("defaults: {{headers: {{X-Big: {long}}}}}\ntargets: ['http://a/']\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("headers: X-Big"), "{e}");
    }

    #[test]
    fn urls_hosts_ports_duplicates_and_tls_on_http() {
        let bad = |text: &str, want: &str| {
            let e = parse(Path::new("t.yml"), text).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        };
        bad("targets: ['http:///ok']\n", "no host");
        bad("targets: ['http://a:0/']\n", "port 0");
        // The same probe however it is spelled.
        for (a, b) in [
            ("http://a/", "HTTP://a/"),
            ("http://a/", "http://a:80/"),
            ("http://a", "http://a/"),
            ("http://LOCALHOST/", "http://localhost/"),
        ] {
            bad(&format!("targets: ['{a}', '{b}']\n"), "is listed twice");
        }
        // The same URL with another name or labels is another series.
        let ok =
            "targets:\n  - http://a/\n  - {url: 'http://a/', name: other, headers: {Host: b}}\n";
        assert_eq!(parse(Path::new("t.yml"), ok).unwrap().targets.len(), 2);
        bad(
            "targets:\n  - url: http://a/\n    tls_config: {insecure_skip_verify: true}\n",
            "tls_config: \"http://a/\" is not an https target",
        );
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
        let req = String::from_utf8_lossy(&c.targets[0].request).into_owned();
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
    fn durations() {
        let ok = [
            ("250ms", 0.25),
            ("5s", 5.0),
            ("1m", 60.0),
            ("1m30s", 90.0),
            ("1.5s", 1.5),
            ("1h", 3600.0),
        ];
        for (s, secs) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs_f64(secs)), "{s}");
        }
        for bad in ["", "5", "s", "5x", "-1s", "0s", "25h", "1.2.3s", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoder_messages_lose_the_strings_they_quote() {
        assert_eq!(
            without_strings("invalid type: string \"probe:pw\", expected struct BasicAuth"),
            "invalid type: a string, expected struct BasicAuth"
        );
        assert_eq!(
            without_strings("x: string \"a\\\"b\", y: string \"c\""),
            "x: a string, y: a string"
        );
        assert_eq!(
            without_strings("unterminated string \"abc"),
            "unterminated a string"
        );
        assert_eq!(without_strings("no quotes"), "no quotes");
        for yaml in [
            "{url: 'http://a/', basic_auth: 'probe:pw-1234'}",
            "{url: 'http://a/', headers: 'Authorization: Bearer pw-1234'}",
            "{url: 'http://a/', proxy_connect_header: 'X: pw-1234'}",
            "{url: 'http://a/', headers: {X: {pw-1234: 1}}}",
            "{url: 'http://u:pw-1234@a/'}",
            "'http://u:pw-1234@a b/'",
            "'u:pw-1234@a/'",
        ] {
            let text = format!("targets:\n  - {yaml}\n");
            let e = parse(Path::new("t.yml"), &text).unwrap_err().to_string();
            assert!(e.starts_with("t.yml:2:"), "{e}");
            assert!(!e.contains("pw-1") && !e.contains("1234"), "{yaml}: {e}");
        }
    }

    #[test]
    fn locate_finds_line_and_column() {
        let text = "a: 1\nbb: x\n  c: x\n";
        assert_eq!(locate(text, "x", 0), ((2, 5), 10));
        assert_eq!(locate(text, "x", 10), ((3, 6), 17));
        assert_eq!(locate(text, "zz", 3), ((1, 1), 3));
        assert_eq!(quoted("bad \"v 1\" here"), Some("v 1"));
        assert_eq!(quoted("none"), None);
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
        let req = std::str::from_utf8(&a.request).unwrap();
        assert!(
            req.starts_with("HEAD /a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{req}"
        );
        assert!(req.contains("X-A: 1\r\nX-B: 2\r\n"));
        assert!(a.valid_codes.contains(200) && !a.valid_codes.contains(204));
        let b = &c.targets[1];
        assert_eq!(b.timeout, Duration::from_millis(250));
        let req = std::str::from_utf8(&b.request).unwrap();
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
            b.label_block,
            r#"target="http://[::1]:8080/b?q=1",name="b",team="core""#
        );
        assert_eq!(c.max_connections_per_host, DEFAULT_MAX_CONNECTIONS_PER_HOST);
    }

    #[test]
    fn shards_split_targets_exactly_once() {
        let mut text = String::from("targets:\n");
        for i in 0..300 {
            text.push_str(&format!("  - http://127.0.0.1:1/{i}\n"));
        }
        let all = parse(Path::new("t.yml"), &text).unwrap();
        let mut seen = 0;
        for index in 0..3 {
            let mut c = all.clone();
            Shard { count: 3, index }.apply(&mut c);
            assert!(
                c.targets.len() > 50,
                "shard {index} got {}",
                c.targets.len()
            );
            seen += c.targets.len();
        }
        assert_eq!(seen, 300);
        assert_eq!(Shard::parse_index("exporter-2"), Ok(2));
        assert_eq!(Shard::parse_index("7"), Ok(7));
        assert!(Shard::parse_index("exporter").is_err());
    }

    #[test]
    fn file_sd_format() {
        let text = "- targets: [http://127.0.0.1:1/, 'http://127.0.0.1:2/x']\n  labels: {env: prod, name: web, __meta_x: y}\n- targets: [http://127.0.0.1:3/]\n";
        let c = parse(Path::new("sd.yml"), text).unwrap();
        let blocks: Vec<_> = c.targets.iter().map(|t| t.label_block.as_str()).collect();
        assert_eq!(
            blocks,
            [
                r#"target="http://127.0.0.1:1/",name="web",env="prod""#,
                r#"target="http://127.0.0.1:2/x",name="web",env="prod""#,
                r#"target="http://127.0.0.1:3/""#,
            ]
        );
    }
}
