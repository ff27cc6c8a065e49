//! The targets file as YAML: one type per block, each checking its values while it is
//! decoded, so that the decoder's position is the position of a bad value.
//!
//! Blocks refuse keys they do not know. The keys that layer are declared once, in
//! [`Settings`]; a target's mapping is its own keys plus those.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::layer::Settings;
use super::{MAX_PAIRS, MAX_REDIRECTS, PROMETHEUS_LABELS, parse_duration};
use crate::outcome::HttpVersion;
use crate::probe_url::{self, ProbeUrl};
use crate::proxy::NoProxy;
use crate::secret::Secret;
use crate::tls::MinVersion;

/// A human duration: `250ms`, `5s`, `1m`, `1m30s`, `1.5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| de::Error::custom(format!("timeout: {e}")))
    }
}

/// Redirects `follow_redirects: true` stands for: blackbox_exporter's limit.
pub const BLACKBOX_REDIRECTS: u8 = 10;

/// `follow_redirects`: a number of hops (0 to [`MAX_REDIRECTS`]), or blackbox_exporter's
/// `true` (its limit of [`BLACKBOX_REDIRECTS`] hops) and `false` (none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FollowRedirects(pub(super) u8);

impl<'de> Deserialize<'de> for FollowRedirects {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A number of hops or a boolean.
        struct V;
        impl Visitor<'_> for V {
            type Value = FollowRedirects;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a number of redirects from 0 to {MAX_REDIRECTS}, or true or false"
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FollowRedirects, E> {
                Ok(FollowRedirects(if v { BLACKBOX_REDIRECTS } else { 0 }))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FollowRedirects, E> {
                match u8::try_from(v) {
                    Ok(n) if n <= MAX_REDIRECTS => Ok(FollowRedirects(n)),
                    _ => Err(E::custom(format!(
                        "follow_redirects must be 0 to {MAX_REDIRECTS}, true or false"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FollowRedirects, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => self.visit_u64(u64::MAX),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `valid_http_versions`: the versions a status line may name, spelled as blackbox_exporter
/// spells them (`HTTP/1.0`, `HTTP/1.1`). An empty list allows any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpVersions(pub(super) Vec<HttpVersion>);

impl<'de> Deserialize<'de> for HttpVersions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The list, each entry decoded where it stands.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HttpVersions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of HTTP versions like [\"HTTP/1.0\", \"HTTP/1.1\"]")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HttpVersions, A::Error> {
                let mut versions = Vec::new();
                while let Some(VersionEntry(v)) = seq.next_element()? {
                    if !versions.contains(&v) {
                        versions.push(v);
                    }
                }
                Ok(HttpVersions(versions))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One entry of `valid_http_versions`.
struct VersionEntry(HttpVersion);

impl<'de> Deserialize<'de> for VersionEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_http_version(&s)
            .map(VersionEntry)
            .map_err(de::Error::custom)
    }
}

/// An HTTP version as blackbox_exporter's `valid_http_versions` spells it. HTTP/2 and HTTP/3
/// are refused with the reason: the probe speaks HTTP/1.x, so no answer could name them.
pub(super) fn parse_http_version(s: &str) -> Result<HttpVersion, String> {
    match s {
        "HTTP/1.0" => Ok(HttpVersion::Http10),
        "HTTP/1.1" => Ok(HttpVersion::Http11),
        _ if s.starts_with("HTTP/2") || s.starts_with("HTTP/3") => Err(format!(
            "valid_http_versions: {s:?} cannot be probed: the probe speaks HTTP/1.x only \
             (\"HTTP/1.0\", \"HTTP/1.1\")"
        )),
        _ => Err(format!(
            "valid_http_versions: invalid HTTP version {s:?}: expected \"HTTP/1.0\" or \"HTTP/1.1\""
        )),
    }
}

/// A URL checked while decoding.
#[derive(Debug)]
pub(super) struct UrlValue(pub(super) ProbeUrl);

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
pub(super) enum HeaderSource {
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
pub(super) struct Headers(pub(super) Vec<(String, HeaderSource)>);

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
pub(super) fn has_control(v: &str) -> bool {
    v.chars().any(|c| c.is_control() && c != '\t')
}

/// A password or token written in the file. Decoding errors never quote it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct SecretValue(pub(super) Secret);

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
pub(super) struct BasicAuth {
    /// The user name (may be shown).
    pub(super) username: String,
    /// The password.
    pub(super) password: Option<SecretValue>,
    /// A file holding the password.
    pub(super) password_file: Option<PathBuf>,
}

/// `no_proxy`: a list, or one comma-separated string as in `NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct NoProxyList(pub(super) Vec<String>);

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
pub(super) struct Labels(pub(super) Vec<(String, String)>);

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
pub(super) fn check_label_name(k: &str) -> Result<(), String> {
    let mut chars = k.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || k.starts_with("__") {
        return Err(format!("invalid label name {k:?}"));
    }
    if crate::family::reserved_labels().any(|r| r == k) {
        return Err(format!(
            "label name {k:?} is reserved: the exporter puts it on its own series"
        ));
    }
    if PROMETHEUS_LABELS.contains(&k) {
        return Err(format!(
            "label name {k:?} is reserved: Prometheus sets it on every series it scrapes"
        ));
    }
    Ok(())
}

/// The `tls_config` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// CA certificates (PEM) replacing the built-in roots.
    pub(super) ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub(super) cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub(super) key_file: Option<PathBuf>,
    /// SNI and verification name.
    pub(super) server_name: Option<String>,
    /// Skip certificate verification.
    pub(super) insecure_skip_verify: Option<bool>,
    /// Lowest accepted TLS version.
    pub(super) min_version: Option<MinVersion>,
}

/// A group name: letters, digits, `_`, `-` and `.`, so that it reads the same in a query
/// string (`/metrics?group=critical`), a label and a Prometheus job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct GroupName(pub(super) String);

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

/// One entry of `targets`: its URL, name and labels, and its [`Settings`] (its group among
/// them), over its group's and the defaults'.
#[derive(Debug)]
pub(super) struct LongTarget {
    /// The URL.
    pub(super) url: ProbeUrl,
    /// The `name` label.
    pub(super) name: Option<String>,
    /// Extra labels.
    pub(super) labels: Option<Labels>,
    /// The target's own settings; `group` names the block of `groups` laid under them.
    /// Boxed, and absent for a bare URL: a file of 100,000 URLs holds a pointer per entry
    /// while it is compiled, not a whole block of settings.
    settings: Option<Box<Settings>>,
}

impl LongTarget {
    /// A target given by its URL alone.
    pub(super) fn bare(url: ProbeUrl) -> Self {
        LongTarget {
            url,
            name: None,
            labels: None,
            settings: None,
        }
    }

    /// Whether the target sets anything of its own (beyond URL, name and labels).
    pub(super) fn has_settings(&self) -> bool {
        self.settings.is_some()
    }

    /// The target's own settings.
    pub(super) fn settings(&self) -> &Settings {
        static NONE: OnceLock<Settings> = OnceLock::new();
        self.settings
            .as_deref()
            .unwrap_or_else(|| NONE.get_or_init(Settings::default))
    }

    /// The target's own settings, to change.
    pub(super) fn settings_mut(&mut self) -> &mut Settings {
        self.settings.get_or_insert_with(Box::default)
    }
}

/// The keys of a target that are not settings.
const OWN_KEYS: [&str; 3] = ["url", "name", "labels"];

/// Every key of a target's mapping, in the order an unknown key's message lists them: its own,
/// then `group`, then the other settings.
fn long_target_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let settings = Settings::keys();
        let group = settings.iter().filter(|k| **k == "group");
        let rest = settings.iter().filter(|k| **k != "group");
        OWN_KEYS
            .into_iter()
            .chain(group.chain(rest).copied())
            .collect()
    })
}

/// A key of a target's mapping.
enum TargetKey {
    /// `url`.
    Url,
    /// `name`.
    Name,
    /// `labels`.
    Labels,
    /// A key of [`Settings`].
    Setting(&'static str),
}

/// Decodes a key of a target's mapping, refusing unknown ones while the decoder still stands
/// on the key, so that the error points at it.
struct TargetKeySeed;

impl<'de> DeserializeSeed<'de> for TargetKeySeed {
    type Value = TargetKey;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TargetKey, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for TargetKeySeed {
    type Value = TargetKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetKey, E> {
        Ok(match v {
            "url" => TargetKey::Url,
            "name" => TargetKey::Name,
            "labels" => TargetKey::Labels,
            _ => match Settings::keys().iter().find(|k| **k == v) {
                Some(k) => TargetKey::Setting(k),
                None => return Err(E::unknown_field(v, long_target_keys())),
            },
        })
    }
}

/// A target's own keys, as read so far (the outer `Option` says whether the key was seen).
#[derive(Default)]
struct OwnKeys {
    /// `url`.
    url: Option<UrlValue>,
    /// `name`.
    name: Option<Option<String>>,
    /// `labels`.
    labels: Option<Option<Labels>>,
    /// Whether any key of the settings was seen.
    settings: bool,
}

/// A target's mapping as [`Settings`] sees it: the target's own keys are taken out on the way
/// (into `own`), and every value is decoded where it stands in the file.
struct SettingsOf<'o, A> {
    /// The target's mapping.
    map: A,
    /// Where the target's own keys go.
    own: &'o mut OwnKeys,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SettingsOf<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key_seed(TargetKeySeed)? {
            match key {
                TargetKey::Url if self.own.url.is_some() => {
                    return Err(de::Error::duplicate_field("url"));
                }
                TargetKey::Url => self.own.url = Some(self.map.next_value()?),
                TargetKey::Name if self.own.name.is_some() => {
                    return Err(de::Error::duplicate_field("name"));
                }
                TargetKey::Name => self.own.name = Some(self.map.next_value()?),
                TargetKey::Labels if self.own.labels.is_some() => {
                    return Err(de::Error::duplicate_field("labels"));
                }
                TargetKey::Labels => self.own.labels = Some(self.map.next_value()?),
                TargetKey::Setting(k) => {
                    self.own.settings = true;
                    return seed
                        .deserialize(de::value::BorrowedStrDeserializer::new(k))
                        .map(Some);
                }
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl<'de> Deserialize<'de> for LongTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A mapping: the target's own keys, and its settings decoded by [`Settings`].
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LongTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct LongTarget")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LongTarget, A::Error> {
                let mut own = OwnKeys::default();
                let settings =
                    Settings::deserialize(de::value::MapAccessDeserializer::new(SettingsOf {
                        map,
                        own: &mut own,
                    }))?;
                let url = own.url.ok_or_else(|| de::Error::missing_field("url"))?;
                Ok(LongTarget {
                    url: url.0,
                    name: own.name.flatten(),
                    labels: own.labels.flatten(),
                    // A mapping of URL, name and labels only has no settings of its own: it
                    // shares its group's, as a bare URL does.
                    settings: own.settings.then(|| Box::new(settings)),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// One entry of `targets`: a bare URL or a mapping.
#[derive(Debug)]
pub(super) struct RawTarget(pub(super) LongTarget);

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
                Ok(RawTarget(LongTarget::bare(url)))
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
pub(super) struct NativeFile {
    /// Settings for every target.
    #[serde(default)]
    pub(super) defaults: Settings,
    /// Settings per group, over `defaults`.
    #[serde(default)]
    pub(super) groups: BTreeMap<GroupName, Settings>,
    /// The targets; `~` (null) is an entry blanked out after an error (see `recover`), or an
    /// error of its own.
    pub(super) targets: Vec<Option<RawTarget>>,
    /// Per-host cap on concurrent probes.
    pub(super) max_connections_per_host: Option<usize>,
    /// `/probe` of targets that are not in this file.
    #[serde(default)]
    pub(super) probe: ProbeBlock,
}

/// The `probe` block: which targets that are not in the file `/probe` may probe.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProbeBlock {
    /// Networks and host name patterns admitted.
    #[serde(default)]
    pub(super) allow: Vec<String>,
    /// Networks never connected to, whatever `allow` says.
    #[serde(default)]
    pub(super) deny: Vec<String>,
}

/// One group of a Prometheus file_sd file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SdGroup {
    /// URLs.
    pub(super) targets: Vec<UrlValue>,
    /// Labels for every URL of the group; `__`-prefixed ones are ignored, `name` becomes the
    /// name label.
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded entry is held for every target while a file is compiled: a bare URL's is
    /// its URL and a pointer for its settings (it was 672 bytes with the settings inline).
    #[test]
    fn a_decoded_entry_is_small() {
        let size = std::mem::size_of::<LongTarget>();
        eprintln!("LongTarget {size} bytes");
        assert!(size <= 168, "{size}");
        assert_eq!(
            std::mem::size_of::<Option<RawTarget>>(),
            size,
            "an entry is decoded and collected in place"
        );
    }

    #[test]
    fn a_target_lists_its_own_keys_then_the_settings() {
        let keys = long_target_keys();
        assert_eq!(keys[..5], ["url", "name", "labels", "group", "timeout"]);
        assert_eq!(keys.len(), 3 + Settings::keys().len());
        assert!(Settings::keys().iter().all(|k| keys.contains(k)));
    }

    #[test]
    fn a_targets_keys_are_refused_where_they_stand() {
        let parse = |text: &str| crate::config::parse(std::path::Path::new("t.yml"), text);
        let e = parse("targets:\n  - {url: 'http://a/', nope: 1}\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 24), "{e}");
        assert!(
            e.message.starts_with(
                "targets[0]: unknown field `nope`, expected one of `url`, `name`, `labels`, \
                 `group`, `timeout`, `valid_status_codes`,"
            ),
            "{e}"
        );
        assert!(
            e.message
                .ends_with("`send_credentials_to_admitted`, `fail_if_body_matches_regexp`, `fail_if_body_not_matches_regexp`, `fail_if_header_matches`, `fail_if_header_not_matches`, `body_size_limit`, `compression`"),
            "{e}"
        );
        let e = parse("targets:\n  - {url: 'http://a/', url: 'http://b/'}\n").unwrap_err();
        assert_eq!(e.message, "targets[0]: duplicate field `url`");
        let e = parse("targets:\n  - {url: 'http://a/', timeout: ~, timeout: 2s}\n").unwrap_err();
        assert_eq!(e.message, "targets[0]: duplicate field `timeout`");
        let e = parse("targets:\n  - {name: x, timeout: 2s}\n").unwrap_err();
        assert_eq!(e.message, "targets[0]: missing field `url`");
        let e = parse("targets:\n  - {url: 'http://a/', timeout: 5}\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 33), "{e}");
    }
}
