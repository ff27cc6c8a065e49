//! From decoded entries to runtime [`Target`]s: lay the settings over each other, check what
//! needs more than one value (duplicates, keys that exclude each other, lengths), and build
//! the request bytes, proxy rules (both with `files`, which reads what the settings name) and
//! TLS clients, each shared by every target with the same settings.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{FieldError, Files};
use super::layer::Settings;
use super::position::{line_col, locate, url_position};
use super::schema::{GroupName, HeaderSource, Labels, LongTarget, RawTls};
use super::{
    Config, ConfigError, DEFAULT_GROUP, DEFAULT_MAX_CONNECTIONS_PER_HOST, DEFAULT_TIMEOUT,
    MAX_ERRORS, MAX_PAIRS, MAX_TEXT,
};
use crate::checks::{self, Checks, Compression, HeaderMatches, Patterns};
use crate::codes::StatusCodes;
use crate::probe_url::{self, IpProtocol};
use crate::request::{self, RequestSpec};
use crate::target::{Profile, Target};
use crate::tls::{self, TlsSettings, TlsTarget};

/// Turn decoded entries into targets: merge defaults, check duplicates, build TLS clients.
/// Every target is checked: the errors are those of each bad target, in file order (past
/// [`MAX_ERRORS`], one more, and the rest unchecked).
pub(super) fn build(
    path: &Path,
    text: &str,
    defaults: &Settings,
    groups: &BTreeMap<GroupName, Settings>,
    entries: &[LongTarget],
    per_host: Option<usize>,
) -> Result<Config, Vec<ConfigError>> {
    // The file uses groups when it defines or names one: only then do series carry `group`.
    let uses_groups = !groups.is_empty()
        || defaults.group.is_some()
        || entries.iter().any(|e| e.settings().group.is_some());
    let mut compiler = Compiler {
        path,
        text,
        base: path.parent().unwrap_or(Path::new(".")),
        defaults,
        groups,
        entries,
        uses_groups,
        files: Files::default(),
        tls: TlsClients::default(),
        seen: HashSet::new(),
        layered: HashMap::new(),
        admitted: false,
        block_errors: HashMap::new(),
        reported: HashSet::new(),
        profiles: HashMap::new(),
        group_names: HashMap::new(),
    };
    compiler.check_blocks();
    let mut group_names = BTreeSet::new();
    let mut targets = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    let mut failed = false;
    for (k, entry) in entries.iter().enumerate() {
        // The group picks the `groups` block to lay under the target, so it is read before
        // the layers are merged (which would give the same).
        let group = entry
            .settings()
            .group
            .as_ref()
            .or(defaults.group.as_ref())
            .map_or(DEFAULT_GROUP, |g| g.0.as_str());
        if !group_names.contains(group) {
            group_names.insert(group.to_owned());
        }
        match compiler.target(k, entry, group) {
            Ok(t) => targets.push(Arc::new(t)),
            Err(list) => {
                // An inherited error reported already leaves the list empty: the load still
                // fails, on that error.
                failed = true;
                errors.extend(list);
                // One more than are listed, so that the list says it was cut.
                if errors.len() > MAX_ERRORS {
                    errors.truncate(MAX_ERRORS + 1);
                    break;
                }
            }
        }
    }
    if failed {
        // In file order: an error inherited from a block stands where the block is written.
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    }
    Ok(Config {
        file: path.to_owned(),
        targets,
        max_connections_per_host: per_host.unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_HOST),
        uses_groups,
        groups: group_names.into_iter().collect(),
        allow: None,
        templates: BTreeMap::new(),
    })
}

/// `config` with the `/probe` allowlist and, per group (every group the file names, and
/// `default`), a template: a target of that group's settings for an https URL of no host,
/// which `/probe` adapts to each target the allowlist admits.
pub(super) fn with_templates(
    mut config: Config,
    allow: Option<Arc<crate::allow::Allow>>,
    path: &Path,
    text: &str,
    defaults: &Settings,
    groups: &BTreeMap<GroupName, Settings>,
) -> Result<Config, Vec<ConfigError>> {
    let Some(allow) = allow else {
        return Ok(config);
    };
    let mut names: BTreeSet<String> = config.groups.iter().cloned().collect();
    names.extend(groups.keys().map(|g| g.0.clone()));
    names.insert(DEFAULT_GROUP.to_owned());
    let mut entries = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        // The URL is only a stand-in; `Target::adapted` replaces it.
        let url = probe_url::parse_url(&format!("https://template.invalid/{i}"))
            .map_err(|e| vec![ConfigError::new(path, 1, 1, e.to_string())])?;
        let mut entry = LongTarget::bare(url);
        entry.settings_mut().group = Some(GroupName(name.clone()));
        entries.push(entry);
    }
    let mut compiler = Compiler {
        path,
        text,
        base: path.parent().unwrap_or(Path::new(".")),
        defaults,
        groups,
        entries: &entries,
        uses_groups: config.uses_groups,
        files: Files::default(),
        tls: TlsClients::default(),
        seen: HashSet::new(),
        layered: HashMap::new(),
        admitted: true,
        block_errors: HashMap::new(),
        reported: HashSet::new(),
        profiles: HashMap::new(),
        group_names: HashMap::new(),
    };
    let mut errors = Vec::new();
    for (k, (entry, name)) in entries.iter().zip(&names).enumerate() {
        match compiler.target(k, entry, name) {
            Ok(mut t) => {
                Arc::make_mut(&mut t.profile).allowed = Some(allow.clone());
                config.templates.insert(name.clone(), Arc::new(t));
            }
            Err(list) => {
                for mut e in list {
                    e.message = format!("probe: the settings of group {name:?}: {}", e.message);
                    errors.push(e);
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    config.allow = Some(allow);
    Ok(config)
}

/// What makes two entries the same probe, however the URL is spelled (`HTTP://`, `:80`, an
/// empty path): with the same name, labels and group they would make the same series twice.
/// The same URL in two groups is two probes (a `/probe` module picks one).
type ProbeKey<'a> = (
    probe_url::Scheme,
    &'a probe_url::Host,
    u16,
    &'a str,
    Option<&'a str>,
    Option<&'a Labels>,
    String,
);

/// Everything one load shares between its targets.
struct Compiler<'a> {
    /// The file, named in errors.
    path: &'a Path,
    /// Its text, where errors are placed.
    text: &'a str,
    /// The folder relative paths start from.
    base: &'a Path,
    /// The `defaults` block.
    defaults: &'a Settings,
    /// The `groups` blocks.
    groups: &'a BTreeMap<GroupName, Settings>,
    /// Every entry, in file order.
    entries: &'a [LongTarget],
    /// Whether series carry a `group` label.
    uses_groups: bool,
    /// Files read, and the request specs and proxy rules built from settings.
    files: Files,
    /// TLS client configurations built so far.
    tls: TlsClients,
    /// The probes met so far.
    seen: HashSet<ProbeKey<'a>>,
    /// Per group: `defaults` with the group's block over it, and its default codes.
    layered: HashMap<String, (Arc<Settings>, Arc<StatusCodes>)>,
    /// Whether the entries are the templates of targets the `/probe` allowlist admits, which
    /// get no credential unless their group sends them.
    admitted: bool,
    /// The errors the `defaults` block and each group's block have on their own, by message:
    /// where the block stands and the field. A target that inherits one reports it there.
    block_errors: HashMap<String, (usize, &'static str)>,
    /// The block errors reported already: each once, however many targets inherit it.
    reported: HashSet<String>,
    /// Per group, the profile of the targets that set nothing of their own.
    profiles: HashMap<String, Arc<Profile>>,
    /// Each group's name, shared by its profiles.
    group_names: HashMap<String, Arc<str>>,
}

/// Where `key` is first written as a key at or after byte `from` (a whole word followed by
/// `:`, so that `file` is not found inside `bearer_token_file`); else where the word is
/// first found, as [`locate`] finds it.
fn locate_key(text: &str, key: &str, from: usize) -> (usize, usize) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut at = from.min(text.len());
    while let Some(i) = text
        .get(at..)
        .and_then(|rest| rest.find(key))
        .map(|i| i + at)
    {
        let before = text[..i].chars().next_back();
        let after = text[i + key.len()..].trim_start_matches([' ', '"', '\'']);
        if !before.is_some_and(word) && after.starts_with(':') {
            return line_col(text, i);
        }
        at = i + key.len();
    }
    locate(text, key, from).0
}

/// The TLS client of a target, and the one for the https requests of its redirects.
type TargetTls = (Option<TlsTarget>, Option<Arc<rustls::ClientConfig>>);

/// The byte offset of a top-level `key:` in `text` (at the start of a line).
fn top_level(text: &str, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    if text.starts_with(&needle) {
        return Some(0);
    }
    text.find(&format!("\n{needle}")).map(|i| i + 1)
}

impl<'a> Compiler<'a> {
    /// An error at a line and column of the file.
    fn err_at(&self, (line, column): (usize, usize), message: String) -> ConfigError {
        ConfigError::new(self.path, line, column, message)
    }

    /// An error at entry `k`'s URL. Where it stands is worked out only when an error needs
    /// it, so that loading stays linear.
    fn url_err(&self, k: usize, message: String) -> ConfigError {
        let (at, _) = url_position(self.text, self.urls(k));
        self.err_at(at.map_or((1, 1), |i| line_col(self.text, i)), message)
    }

    /// An error at the first `field` after byte `offset` (where a block starts).
    fn block_err(&self, offset: usize, field: &str, message: String) -> ConfigError {
        self.err_at(locate_key(self.text, field, offset), message)
    }

    /// Check the `defaults` block and each group's block (over `defaults`) on their own, and
    /// keep the errors each has, to report an inherited error once, where it is written.
    fn check_blocks(&mut self) {
        let mut blocks: Vec<(usize, Settings)> = Vec::new();
        if let Some(at) = top_level(self.text, "defaults") {
            blocks.push((at, self.defaults.clone()));
        }
        let groups_at = top_level(self.text, "groups");
        for (name, own) in self.groups {
            let start = groups_at.unwrap_or(0);
            let (_, after) = locate(self.text, &format!("{}:", name.0), start);
            let at = after.saturating_sub(name.0.len() + 1);
            blocks.push((at, self.defaults.under(own)));
        }
        for (at, settings) in blocks {
            let mut found: Vec<FieldError> = Vec::new();
            if let Err(list) = self.files.request_spec(&settings, self.base) {
                found.extend(list);
            }
            if let Err(e) = self.files.proxy_rules(&settings, self.base) {
                found.push(e);
            }
            if let Some(raw) = &settings.tls_config
                && let Err((field, message)) = self.tls_client(raw)
            {
                found.push((field, message));
            }
            for (field, message) in found {
                self.block_errors.entry(message).or_insert((at, field));
            }
        }
    }

    /// `errors` of entry `k` as reported: one its block has on its own is reported once, at
    /// the block; the others at the entry.
    fn placed(&mut self, k: usize, errors: Vec<FieldError>) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for (field, message) in errors {
            match self.block_errors.get(&message).copied() {
                Some((at, field)) => {
                    if self.reported.insert(message.clone()) {
                        out.push(self.block_err(at, field, message));
                    }
                }
                None => out.push(self.field_err(k, field, message)),
            }
        }
        out
    }

    /// An error at the first `field` after entry `k`'s URL.
    fn field_err(&self, k: usize, field: &str, message: String) -> ConfigError {
        let (_, after) = url_position(self.text, self.urls(k));
        self.err_at(locate_key(self.text, field, after), message)
    }

    /// The URLs of the entries up to `k`, as written (unless written with escapes).
    fn urls(&self, k: usize) -> impl Iterator<Item = &'a str> + use<'a> {
        self.entries[..=k].iter().map(|e| e.url.raw.as_str())
    }

    /// `defaults` with `group`'s block over it, and the codes a target of the group accepts
    /// unless it says otherwise.
    fn layered(&mut self, group: &str) -> (Arc<Settings>, Arc<StatusCodes>) {
        let (defaults, groups) = (self.defaults, self.groups);
        self.layered
            .entry(group.to_owned())
            .or_insert_with(|| {
                let s = match groups.get(&GroupName(group.to_owned())) {
                    Some(own) => defaults.under(own),
                    None => defaults.clone(),
                };
                let codes = Arc::new(s.valid_status_codes.clone().unwrap_or_default());
                (Arc::new(s), codes)
            })
            .clone()
    }

    /// The name of `group`, one allocation per group.
    fn group_name(&mut self, group: &str) -> Arc<str> {
        if let Some(g) = self.group_names.get(group) {
            return g.clone();
        }
        let g: Arc<str> = Arc::from(group);
        self.group_names.insert(group.to_owned(), g.clone());
        g
    }

    /// Entry `k` as a target of `group`.
    fn target(
        &mut self,
        k: usize,
        entry: &'a LongTarget,
        group: &str,
    ) -> Result<Target, Vec<ConfigError>> {
        let raw = entry.url.raw.as_str();
        let (defaults, default_codes) = self.layered(group);
        let u = &entry.url;
        let probe = (
            u.scheme,
            &u.host,
            u.port,
            u.path_and_query.as_str(),
            entry.name.as_deref(),
            entry.labels.as_ref(),
            group.to_owned(),
        );
        if !self.seen.insert(probe) {
            return Err(vec![
                self.url_err(k, format!("targets: {raw:?} is listed twice")),
            ]);
        }
        if !self.admitted && entry.settings().send_credentials_to_admitted.is_some() {
            return Err(vec![self.field_err(
                k,
                "send_credentials_to_admitted",
                "send_credentials_to_admitted: a target of the file always gets its credentials; \
                 the key says whether the targets /probe admits get them, in defaults or a group"
                    .into(),
            )]);
        }
        // The target's own settings over its group's over the defaults.
        let mut merged = defaults.under(entry.settings());
        if self.admitted && merged.send_credentials_to_admitted != Some(true) {
            merged = merged.without_credentials();
        }
        // The decoder keeps it within 0 to MAX_REDIRECTS.
        let follow_redirects = merged.follow_redirects.map_or(0, |f| f.0);
        let fail_if_ssl = merged.fail_if_ssl.unwrap_or(false);
        let fail_if_not_ssl = merged.fail_if_not_ssl.unwrap_or(false);
        // Every error of the entry, each once: those it inherits from a block that has them on
        // its own are reported at that block, the first time only.
        let mut found: Vec<FieldError> = Vec::new();
        if fail_if_ssl && fail_if_not_ssl {
            found.push((
                "fail_if_ssl",
                "fail_if_ssl and fail_if_not_ssl cannot both be true".into(),
            ));
        }
        let checks = match body_checks(&mut merged) {
            Ok(checks) => checks,
            Err(e) => {
                found.push(e);
                None
            }
        };
        let spec = self
            .files
            .request_spec(&merged, self.base)
            .map_err(|list| found.extend(list))
            .ok();
        let proxy = self
            .files
            .proxy_rules(&merged, self.base)
            .map_err(|e| found.push(e))
            .ok();
        // Without the request's spec, the TLS name is the URL's host.
        let bare = RequestSpec::bare(request::Method::GET);
        let tls = self
            .tls(
                entry,
                &merged,
                spec.as_deref().unwrap_or(&bare),
                follow_redirects,
            )
            .map_err(|e| found.push(e))
            .ok();
        let mut errors = self.placed(k, found);
        let name = entry.name.clone();
        let labels = entry.labels.clone().unwrap_or_default().0;
        if let Err(e) = self.check_name_and_labels(k, name.as_deref(), &labels) {
            errors.push(e);
        }
        let ip_protocol = merged.ip_protocol.unwrap_or_default();
        if let Err(e) = self.check_family(k, entry, ip_protocol) {
            errors.push(e);
        }
        let (Some(spec), Some(proxy), Some((tls, redirect_tls)), true) =
            (spec, proxy, tls, errors.is_empty())
        else {
            return Err(errors);
        };
        let valid_codes = match &entry.settings().valid_status_codes {
            Some(c) => Arc::new(c.clone()),
            None => default_codes,
        };
        let url = entry.url.clone();
        // A target that sets nothing of its own has its group's settings: it shares the
        // profile of the first such target of the group.
        let shared = (!entry.has_settings())
            .then(|| self.profiles.get(group).cloned())
            .flatten();
        let profile = match shared {
            Some(p) => p,
            None => {
                let profile = Arc::new(Profile {
                    spec,
                    follow_redirects,
                    redirect_tls,
                    fail_if_ssl,
                    fail_if_not_ssl,
                    proxy,
                    group: self.group_name(group),
                    timeout: merged.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
                    valid_codes,
                    ip_protocol,
                    source_ip: merged.source_ip,
                    valid_http_versions: merged
                        .valid_http_versions
                        .map(|v| v.0)
                        .filter(|v| !v.is_empty()),
                    cookies: merged.cookies.unwrap_or(false),
                    allowed: None,
                    checks,
                    server_name: merged
                        .tls_config
                        .as_ref()
                        .and_then(|t| t.server_name.as_deref())
                        .map(Arc::from),
                });
                if !entry.has_settings() {
                    self.profiles.insert(group.to_owned(), profile.clone());
                }
                profile
            }
        };
        Ok(Target {
            label_block: Target::render_labels(
                raw,
                name.as_deref(),
                self.uses_groups.then_some(group),
                &labels,
            )
            .into(),
            url,
            name,
            labels,
            tls,
            profile,
        })
    }

    /// The TLS client of an https target, and the one for the https requests of its redirects.
    /// An http target has TLS settings only to follow redirects. The name sent and verified is
    /// `server_name`, else a configured `Host` header's host, else the URL's host.
    fn tls(
        &mut self,
        entry: &LongTarget,
        merged: &Settings,
        spec: &RequestSpec,
        follow_redirects: u8,
    ) -> Result<TargetTls, FieldError> {
        let url = &entry.url;
        let raw_tls = merged.tls_config.clone().unwrap_or_default();
        if url.scheme == probe_url::Scheme::Http
            && entry.settings().tls_config.is_some()
            && follow_redirects == 0
        {
            return Err((
                "tls_config",
                format!(
                    "tls_config: {:?} is not an https target and follows no redirects",
                    url.raw
                ),
            ));
        }
        let tls = match url.scheme {
            probe_url::Scheme::Http => None,
            probe_url::Scheme::Https => {
                let config = self.tls_client(&raw_tls)?;
                let server_name = tls::server_name(
                    raw_tls.server_name.as_deref(),
                    spec.host_header(),
                    &url.host,
                )?;
                Some(TlsTarget {
                    config,
                    server_name,
                })
            }
        };
        let redirect_tls = if follow_redirects > 0 {
            Some(self.tls_client(&raw_tls)?)
        } else {
            None
        };
        Ok((tls, redirect_tls))
    }

    /// The TLS client configuration of `raw_tls`, built once per load for the same settings;
    /// or the field at fault and why.
    fn tls_client(&mut self, raw_tls: &RawTls) -> Result<Arc<rustls::ClientConfig>, FieldError> {
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| self.base.join(p));
        let settings = TlsSettings {
            ca_file: resolve(&raw_tls.ca_file),
            cert_file: resolve(&raw_tls.cert_file),
            key_file: resolve(&raw_tls.key_file),
            insecure_skip_verify: raw_tls.insecure_skip_verify.unwrap_or(false),
            min_version: raw_tls.min_version,
        };
        if let Some(c) = self.tls.configs.get(&settings) {
            return Ok(c.clone());
        }
        let c = tls::build_client_config(&settings, &self.tls.provider).map_err(|e| {
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
            (field, format!("tls_config.{field}: {e}"))
        })?;
        self.tls.configs.insert(settings, c.clone());
        Ok(c)
    }

    /// The `name` and labels of entry `k`: not empty, not too long, not too many, and no
    /// `group` label where the group is a label of its own.
    fn check_name_and_labels(
        &self,
        k: usize,
        name: Option<&str>,
        labels: &[(String, String)],
    ) -> Result<(), ConfigError> {
        if name.is_some_and(str::is_empty) {
            return Err(self.field_err(k, "name", "name must not be empty".into()));
        }
        if self.uses_groups && labels.iter().any(|(key, _)| key == "group") {
            return Err(self.field_err(
                k,
                "group",
                "labels: group is the target's group in a file that uses groups".into(),
            ));
        }
        if name.is_some_and(|n| n.len() > MAX_TEXT) {
            return Err(self.field_err(k, "name", format!("name is longer than {MAX_TEXT} bytes")));
        }
        if labels.len() > MAX_PAIRS {
            return Err(self.field_err(k, "labels", format!("more than {MAX_PAIRS} labels")));
        }
        if let Some((key, _)) = labels
            .iter()
            .find(|(key, v)| key.len() + v.len() > MAX_TEXT)
        {
            return Err(self.field_err(
                k,
                key,
                format!("labels: {key} is longer than {MAX_TEXT} bytes"),
            ));
        }
        Ok(())
    }

    /// An IP literal of a family that `ip_protocol` forbids cannot be probed.
    fn check_family(
        &self,
        k: usize,
        entry: &LongTarget,
        ip_protocol: IpProtocol,
    ) -> Result<(), ConfigError> {
        let probe_url::Host::Ip(ip) = &entry.url.host else {
            return Ok(());
        };
        let forbidden = match ip_protocol {
            IpProtocol::Auto => false,
            IpProtocol::Ip4 => ip.is_ipv6(),
            IpProtocol::Ip6 => ip.is_ipv4(),
        };
        if forbidden {
            return Err(self.url_err(
                k,
                format!(
                    "targets: {:?}: ip_protocol {} forbids the address {ip}",
                    entry.url.raw,
                    ip_protocol.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// The header and body checks of `merged` settings (`None` when it sets none), and the
/// `Accept-Encoding` its `compression` asks for, added to its headers unless they have one
/// already, which must then accept it (as blackbox_exporter requires).
fn body_checks(merged: &mut Settings) -> Result<Option<Arc<Checks>>, FieldError> {
    let compression = merged.compression.unwrap_or_default();
    if let Some(coding) = compression.accept_encoding() {
        let headers = merged.headers.get_or_insert_with(Default::default);
        let written = headers
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("accept-encoding"));
        match written {
            Some((_, HeaderSource::Plain(v))) if checks::accepts(v, coding) => {}
            Some(_) => {
                return Err((
                    "compression",
                    format!(
                        "compression: {coding} is not accepted by the Accept-Encoding header \
                         in headers: leave the header out (it is sent as {coding}) or list \
                         {coding} in it"
                    ),
                ));
            }
            None => headers
                .0
                .push(("Accept-Encoding".into(), HeaderSource::Plain(coding.into()))),
        }
    }
    let patterns = |p: &Option<Patterns>| p.clone().unwrap_or_default();
    let header_checks = |h: &Option<HeaderMatches>| h.clone().unwrap_or_default();
    let body_matches = patterns(&merged.fail_if_body_matches_regexp);
    let body_not_matches = patterns(&merged.fail_if_body_not_matches_regexp);
    let header_matches = header_checks(&merged.fail_if_header_matches);
    let header_not_matches = header_checks(&merged.fail_if_header_not_matches);
    let reads_body = !body_matches.0.is_empty()
        || !body_not_matches.0.is_empty()
        || merged.body_size_limit.is_some()
        || compression != Compression::Identity;
    if !reads_body && header_matches.0.is_empty() && header_not_matches.0.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Checks {
        body_matches,
        body_not_matches,
        header_matches,
        header_not_matches,
        limit: merged
            .body_size_limit
            .map_or(checks::DEFAULT_BODY_LIMIT, |b| b.0),
        compression,
        reads_body,
    })))
}

/// TLS client configurations, one per distinct [`TlsSettings`].
struct TlsClients {
    /// The crypto provider every configuration uses.
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Configurations by their settings.
    configs: HashMap<TlsSettings, Arc<rustls::ClientConfig>>,
}

impl Default for TlsClients {
    fn default() -> Self {
        TlsClients {
            provider: tls::provider(),
            configs: HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{MAX_TEXT, parse};
    use crate::outcome::HttpVersion;
    use crate::target::Target;
    use rustls::pki_types::ServerName;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// The TLS name of the only target of `text`.
    fn sni(text: &str) -> String {
        let c = parse(Path::new("t.yml"), text).unwrap();
        match &c.targets[0].tls.as_ref().unwrap().server_name {
            ServerName::DnsName(n) => n.as_ref().to_owned(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_host_header_names_the_tls_server_unless_server_name_does() {
        let t = |extra: &str| {
            sni(&format!(
                "targets:\n  - {{url: 'https://127.0.0.1:8443/', {extra}}}\n"
            ))
        };
        assert_eq!(t("name: x"), "127.0.0.1");
        assert_eq!(t("headers: {Host: a.test}"), "a.test");
        assert_eq!(t("headers: {host: 'a.test:8443'}"), "a.test");
        assert_eq!(t("headers: {HOST: '[::1]:8443'}"), "::1");
        assert_eq!(t("headers: {Host: '10.1.2.3'}"), "10.1.2.3");
        assert_eq!(
            t("headers: {Host: a.test}, tls_config: {server_name: b.test}"),
            "b.test"
        );
        // From the defaults, and the target's own header over them.
        let text = "defaults: {headers: {Host: a.test}}\ntargets:\n  - https://x.test/\n  - {url: 'https://y.test/', headers: {host: c.test}}\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let names: Vec<_> = c
            .targets
            .iter()
            .map(|t| format!("{:?}", t.tls.as_ref().unwrap().server_name))
            .collect();
        assert!(
            names[0].contains("a.test") && names[1].contains("c.test"),
            "{names:?}"
        );
        let e = parse(
            Path::new("t.yml"),
            "targets:\n  - url: https://a/\n    headers: {Host: 'bad name'}\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 5), "{e}");
        assert!(
            e.message
                .starts_with("headers: Host: \"bad name\" is not a valid TLS server name"),
            "{e}"
        );
    }

    #[test]
    fn targets_that_set_nothing_of_their_own_share_their_groups_profile() {
        let c = parse(
            Path::new("t.yml"),
            "groups:\n  slow: {timeout: 9s}\ntargets:\n  - http://a/1\n  - http://a/2\n  \
             - {url: 'http://a/3', name: three, labels: {team: x}}\n  \
             - {url: 'http://a/4', timeout: 2s}\n  - {url: 'http://a/5', group: slow}\n  \
             - {url: 'http://a/6', group: slow}\n  - https://a/7\n",
        )
        .unwrap();
        let t = &c.targets;
        let same = |i: usize, j: usize| Arc::ptr_eq(&t[i].profile, &t[j].profile);
        // Bare URLs, and a mapping of URL, name and labels only: one profile.
        assert!(same(0, 1) && same(0, 2) && same(0, 6), "{t:?}");
        // A target's own setting makes its own profile; a `group` key is a setting.
        assert!(!same(0, 3) && t[3].timeout == Duration::from_secs(2));
        assert!(!same(0, 4) && !same(4, 5), "each names its group itself");
        assert_eq!(t[4].timeout, Duration::from_secs(9));
        assert_eq!((&*t[4].group, &*t[0].group), ("slow", "default"));
        // One allocation per group name.
        assert!(Arc::ptr_eq(&t[4].profile.group, &t[5].profile.group));
        // What is the target's own stays its own.
        assert_eq!(t[2].name.as_deref(), Some("three"));
        assert!(t[6].tls.is_some() && t[0].tls.is_none());
        assert!(
            t[1].first_head()
                .starts_with(b"GET /2 HTTP/1.1\r\nHost: a\r\n")
        );
    }

    #[test]
    fn blackbox_translation_keys() {
        let one = |settings: &str| {
            parse(
                Path::new("t.yml"),
                &format!("targets:\n  - {{url: 'http://a/', {settings}}}\n"),
            )
            .map(|c| Target::clone(&c.targets[0]))
        };
        assert_eq!(one("follow_redirects: true").unwrap().follow_redirects, 10);
        assert_eq!(one("follow_redirects: false").unwrap().follow_redirects, 0);
        assert_eq!(one("follow_redirects: 3").unwrap().follow_redirects, 3);
        for bad in ["21", "-1", "yes-please", "1.5"] {
            let e = one(&format!("follow_redirects: {bad}")).unwrap_err();
            assert_eq!((e.line, e.column), (2, 42), "{bad}: {e}");
            assert!(e.message.contains("follow_redirects"), "{bad}: {e}");
        }
        let codes = one("valid_status_codes: []").unwrap().valid_codes.clone();
        assert!(codes.contains(200) && codes.contains(302) && !codes.contains(404));
        let versions = |v: &str| {
            one(&format!("valid_http_versions: {v}")).map(|t| t.valid_http_versions.clone())
        };
        assert_eq!(
            versions("['HTTP/1.0', 'HTTP/1.1']").unwrap(),
            Some(vec![HttpVersion::Http10, HttpVersion::Http11])
        );
        assert_eq!(
            versions("[HTTP/1.1, HTTP/1.1]").unwrap(),
            Some(vec![HttpVersion::Http11])
        );
        assert_eq!(versions("[]").unwrap(), None);
        assert_eq!(one("name: x").unwrap().valid_http_versions, None);
        let e = versions("['HTTP/1.1', 'HTTP/2.0']").unwrap_err();
        assert_eq!((e.line, e.column), (2, 59), "{e}");
        assert!(e.message.contains("the probe speaks HTTP/1.x only"), "{e}");
        let e = versions("['http/1.1']").unwrap_err();
        assert_eq!((e.line, e.column), (2, 47), "{e}");
        assert!(
            e.message.contains("expected \"HTTP/1.0\" or \"HTTP/1.1\""),
            "{e}"
        );
        assert!(one("cookies: true").unwrap().cookies);
        assert!(!one("name: x").unwrap().cookies);
        // Both layer: defaults, then the target.
        let text = "defaults: {cookies: true, valid_http_versions: [HTTP/1.1], follow_redirects: true}\ntargets:\n  - http://a/\n  - {url: 'http://b/', cookies: false, follow_redirects: 2}\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        assert!(c.targets[0].cookies && !c.targets[1].cookies);
        assert_eq!(
            c.targets[1].valid_http_versions,
            Some(vec![HttpVersion::Http11])
        );
        assert_eq!(
            (c.targets[0].follow_redirects, c.targets[1].follow_redirects),
            (10, 2)
        );
    }

    #[test]
    fn body_and_header_checks_layer_and_a_bad_pattern_stands_where_it_is_written() {
        let text = "defaults:\n  fail_if_body_matches_regexp: ['DOWN']\n  body_size_limit: 64KiB\n\
                    groups:\n  api:\n    fail_if_header_not_matches:\n      - {header: X-Version, regexp: '^2\\.'}\n\
                    targets:\n  - http://a/\n  - {url: 'http://b/', group: api, compression: gzip}\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let a = c.targets[0].checks.as_deref().unwrap();
        assert_eq!(a.body_matches.0.len(), 1);
        assert_eq!(a.limit, 64 * 1024);
        assert!(a.reads_body && !a.has_header_checks());
        let b = c.targets[1].checks.as_deref().unwrap();
        assert_eq!(b.header_not_matches.0[0].header, "X-Version");
        assert_eq!(b.compression, crate::checks::Compression::Gzip);
        let request = String::from_utf8_lossy(&c.targets[1].first_head()).into_owned();
        assert!(request.contains("Accept-Encoding: gzip\r\n"), "{request}");
        assert!(!String::from_utf8_lossy(&c.targets[0].first_head()).contains("Accept-Encoding"));
        // A target without checks reads the status line only; header checks alone read no body.
        let plain = parse(Path::new("t.yml"), "targets: ['http://a/']\n").unwrap();
        assert!(plain.targets[0].checks.is_none());
        let text =
            "targets:\n  - url: http://a/\n    fail_if_header_matches: [{header: A, regexp: x}]\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let h = c.targets[0].checks.as_deref().unwrap();
        assert!(!h.reads_body && h.limit == crate::checks::DEFAULT_BODY_LIMIT);
        // Bad patterns, at their place.
        let e = parse(
            Path::new("t.yml"),
            "targets:\n  - url: http://a/\n    fail_if_body_matches_regexp: ['ok', 'a(b']\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 42), "{e}");
        assert!(e.message.contains("invalid regular expression"), "{e}");
        let e = parse(
            Path::new("t.yml"),
            "defaults:\n  fail_if_header_matches:\n    - header: X\n      regexp: '[z-a]'\ntargets: ['http://a/']\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 16), "{e}");
        assert!(
            e.message.contains("invalid regular expression \"[z-a]\""),
            "{e}"
        );
        for (bad, want, at) in [
            (
                "fail_if_header_matches: [{header: 'a b', regexp: x}]",
                "invalid header name",
                (2, 59),
            ),
            (
                "fail_if_header_matches: [{header: A, regexp: x, nope: 1}]",
                "unknown field `nope`",
                (2, 72),
            ),
            ("body_size_limit: 1kB", "unknown unit", (2, 41)),
            ("body_size_limit: 0", "is not accepted", (2, 41)),
            ("compression: br", "brotli", (2, 37)),
            (
                "compression: gzip, headers: {Accept-Encoding: br}",
                "is not accepted by the Accept-Encoding",
                (2, 24),
            ),
        ] {
            let text = format!("targets:\n  - {{url: 'http://a/', {bad}}}\n");
            let e = parse(Path::new("t.yml"), &text).unwrap_err();
            assert!(e.message.contains(want), "{bad}: {e}");
            assert_eq!((e.line, e.column), at, "{bad}: {e}");
        }
        // An Accept-Encoding that lists the coding is kept.
        let text = "targets:\n  - {url: 'http://a/', compression: deflate, headers: {accept-encoding: 'br, deflate'}}\n";
        let c = parse(Path::new("t.yml"), text).unwrap();
        let request = String::from_utf8_lossy(&c.targets[0].first_head()).into_owned();
        assert!(
            request.contains("accept-encoding: br, deflate\r\n"),
            "{request}"
        );
    }

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
        let request = String::from_utf8_lossy(&c.targets[0].first_head()).into_owned();
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
}
