//! The targets file: YAML schema, defaults, validation, and errors that name the file, line,
//! column and field.
//!
//! Two formats are accepted, told apart by the document's top level:
//! - a **mapping** is the native format (`defaults`, `groups`, `targets`,
//!   `max_connections_per_host`);
//! - a **sequence** is Prometheus `file_sd` format (`- targets: [...]\n  labels: {...}`).
//!
//! Values are checked while they are decoded, so the YAML decoder's position is the position
//! of the bad value. Checks that need the whole file (duplicates, reading TLS files) locate the
//! value in the source text.
//!
//! # Layout
//! - this file: the loaded [`Config`], loading and reading a file, the top level of both
//!   formats, sharding, and the limits;
//! - `schema`: one type per YAML block, each checking its values as it is decoded;
//! - `layer`: the settings that layer defaults, group and target, and their merge;
//! - `compile`: layered settings into runtime targets (TLS clients among them), and the
//!   checks that need more than one value;
//! - `files`: the request and proxy rules of a target's settings, and the files they name;
//! - `position`: the file, line and column of an error;
//! - `recover`: going on after an error, so that a load reports every error of the file.

mod compile;
mod files;
mod layer;
pub(crate) mod position;
mod recover;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de;

use crate::probe_url;
use crate::target::Target;
use layer::Settings;
use position::locate;
use recover::FileMap;
use schema::{GroupName, HumanDuration, Labels, LongTarget, NativeFile, SdGroup, check_label_name};

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

/// Largest `max_connections_per_host`: more than any host could want, and within what a
/// semaphore holds.
pub const MAX_CONNECTIONS_PER_HOST: usize = 65_536;

/// The group every target without one belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// Label names Prometheus sets on every series it scrapes (`job`, `instance`): a target label
/// of that name would be renamed `exported_*` or, with `honor_labels`, replace Prometheus's.
const PROMETHEUS_LABELS: &[&str] = &["job", "instance"];

pub use crate::config_error::{ConfigError, MAX_ERRORS};

/// A loaded, validated targets file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (the status pages name it).
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
    /// The `/probe` allowlist (`probe: {allow, deny}`); `None` probes configured targets only.
    pub allow: Option<Arc<crate::allow::Allow>>,
    /// With an allowlist: per group (every group named in the file, and `default`), a target
    /// that carries the group's settings, from which `/probe` makes the targets it admits.
    pub templates: BTreeMap<String, Arc<Target>>,
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
            allow: self.allow.clone(),
            templates: self.templates.clone(),
        }
    }
}

/// Parse a human duration: `250ms`, `5s`, `1m`, `1m30s`, `1.5s`; above 0 and at most 24h.
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
    let fail = |message: String| ConfigError::new(path, 1, 1, message);
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
/// Every error of the file is reported, in file order (see [`ConfigError::more`]): after a bad
/// entry of `targets` or a bad `defaults` or `groups` block, the rest of the file is still
/// checked, at a cost close to a clean load (see `recover`). An error outside those parts, an
/// anchor or a file_sd file stops at the first.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err_at = |(line, column): (usize, usize), message: String| {
        ConfigError::new(path, line, column, message)
    };
    check_structure(path, text)?;
    let is_sd = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
        .is_some_and(|l| l.starts_with('-') || l.starts_with('['));
    if is_sd {
        let groups: Vec<SdGroup> = serde_yaml::from_str(text).map_err(|e| {
            let (place, message) = position::yaml_error(text, &e);
            err_at(place, message)
        })?;
        let entries = file_sd_entries(text, groups).map_err(|(at, m)| err_at(at, m))?;
        return compile::build(
            path,
            text,
            &Settings::default(),
            &BTreeMap::new(),
            &entries,
            None,
        )
        .map_err(|e| ConfigError::list(e, false).unwrap_or_else(|| unlisted(path)));
    }
    let mut errors = Vec::new();
    let mut truncated = false;
    let mut skipped = BTreeSet::new();
    let mut blanked_a_block = false;
    let mut map = None;
    let file = match serde_yaml::from_str::<NativeFile>(text) {
        Ok(file) => file,
        Err(e) => {
            let r = recover::recover(text, &e);
            errors.extend(r.errors.into_iter().map(|(at, m)| err_at(at, m)));
            truncated = r.truncated;
            (skipped, blanked_a_block, map) = (r.skipped, r.blanked_a_block, Some(r.map));
            match r.file {
                Some(file) => file,
                None => {
                    return Err(
                        ConfigError::list(errors, truncated).unwrap_or_else(|| unlisted(path))
                    );
                }
            }
        }
    };
    // Collected in place, in the buffer the decoder filled: a large file's entries are not
    // held twice.
    let entries: Vec<LongTarget> = file
        .targets
        .into_iter()
        .enumerate()
        .filter_map(|(k, t)| match t {
            Some(t) => Some(t.0),
            // Past MAX_ERRORS the list is cut: these would not be shown.
            None if skipped.contains(&k) || errors.len() > MAX_ERRORS => None,
            None => {
                let m = map.get_or_insert_with(|| FileMap::new(text));
                errors.push(err_at(
                    m.target_place(text, k).unwrap_or((1, 1)),
                    format!(
                        "targets[{k}]: an empty entry: write a URL or a mapping with a `url` key"
                    ),
                ));
                None
            }
        })
        .collect();
    let (defaults, groups, per_host) = (file.defaults, file.groups, file.max_connections_per_host);
    let allow = if file.probe.allow.is_empty() && file.probe.deny.is_empty() {
        None
    } else {
        match crate::allow::Allow::new(&file.probe.allow, &file.probe.deny) {
            Ok(a) if a.is_empty() => {
                let (at, _) = locate(text, "probe", 0);
                errors.push(err_at(
                    at,
                    "probe: deny needs an allow list to narrow".into(),
                ));
                None
            }
            Ok(a) => Some(Arc::new(a)),
            Err((i, allow, e)) => {
                let key = if allow { "allow" } else { "deny" };
                let (_, after) = locate(text, "probe", 0);
                let (at, _) = locate(text, key, after);
                errors.push(err_at(at, format!("probe.{key}[{i}]: {e}")));
                None
            }
        }
    };
    if per_host.is_some_and(|n| !(1..=MAX_CONNECTIONS_PER_HOST).contains(&n)) {
        let (at, _) = locate(text, "max_connections_per_host", 0);
        errors.push(err_at(
            at,
            format!("max_connections_per_host must be 1 to {MAX_CONNECTIONS_PER_HOST}"),
        ));
    }
    for name in groups
        .iter()
        .filter_map(|(n, g)| g.group.as_ref().map(|_| n))
    {
        let (at, _) = locate(text, &name.0, 0);
        errors.push(err_at(
            at,
            format!("groups: {}: a group block names no group", name.0),
        ));
    }
    // Targets are compiled over the defaults and groups they are laid on: when one of those
    // was bad, what the targets would make of it is left for the next check.
    if !blanked_a_block {
        match compile::build(path, text, &defaults, &groups, &entries, per_host)
            .and_then(|c| compile::with_templates(c, allow, path, text, &defaults, &groups))
        {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(more) => errors.extend(more),
        }
    }
    Err(ConfigError::list(errors, truncated).unwrap_or_else(|| unlisted(path)))
}

/// An error for a load that failed without saying why; not expected to happen.
fn unlisted(path: &Path) -> ConfigError {
    ConfigError::new(path, 1, 1, "the file could not be loaded".into())
}

/// The entries of a file_sd file: each URL with its group's labels, where `name` is the name,
/// `group` the group, and `__`-prefixed labels are dropped. A bad label is placed at its first
/// occurrence in `text`.
fn file_sd_entries(
    text: &str,
    groups: Vec<SdGroup>,
) -> Result<Vec<LongTarget>, ((usize, usize), String)> {
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
                let decoded =
                    GroupName::deserialize(de::value::StrDeserializer::<de::value::Error>::new(&v))
                        .map_err(|e| (locate(text, &v, 0).0, format!("labels: group: {e}")))?;
                group = Some(decoded);
                continue;
            }
            check_label_name(&k).map_err(|m| (locate(text, &k, 0).0, format!("labels: {m}")))?;
            labels.push((k, v));
        }
        for url in g.targets {
            let mut entry = LongTarget::bare(url.0);
            entry.name = name.clone();
            entry.labels = Some(Labels(labels.clone()));
            entry.settings_mut().group = group.clone();
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Most YAML events a file may hold: a million targets with settings fit well within it.
pub const MAX_YAML_EVENTS: usize = 20_000_000;

/// Deepest nesting of collections a file may hold, counting the top level: a targets file
/// needs five (the top, `targets`, a target, its `headers`, a header's list of values). The
/// YAML decoder's time grows with the square of the depth of flow collections (`{a: {a: ...}}`),
/// so a deeper file is refused before it is decoded.
pub const MAX_NESTING: usize = 64;

/// Check the file's shape before it is decoded, naming where it goes wrong: YAML anchors and
/// aliases are refused (an alias is expanded in full at every use, so a small file could
/// decode into gigabytes; a targets file does not need them, `defaults` shares settings), and
/// so are collections nested deeper than [`MAX_NESTING`] levels and more than
/// [`MAX_YAML_EVENTS`] nodes. The pass stops at the first of these, so that its own cost
/// grows with the file's size, never with its depth. Syntax errors are left to the decoder,
/// which reports them in its own words.
fn check_structure(path: &Path, text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let at = |mark: yaml_rust2::scanner::Marker, message: String| {
        ConfigError::new(path, mark.line(), mark.col() + 1, message)
    };
    let anchors =
        || "YAML anchors (&name) are not accepted: write the value out, or use defaults".to_owned();
    let mut depth = 0usize;
    for _ in 0..MAX_YAML_EVENTS {
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(());
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                return Err(at(
                    mark,
                    "YAML aliases (*name) are not accepted: write the value out, or use defaults"
                        .to_owned(),
                ));
            }
            Event::Scalar(_, _, anchor, _) if anchor != 0 => return Err(at(mark, anchors())),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if anchor != 0 {
                    return Err(at(mark, anchors()));
                }
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(at(
                        mark,
                        format!(
                            "collections nested deeper than {MAX_NESTING} levels: a targets \
                             file needs five"
                        ),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Err(ConfigError::new(
        path,
        1,
        1,
        format!("more than {MAX_YAML_EVENTS} YAML nodes"),
    ))
}

/// A config of bare URLs (as given to `check` on the command line), each with `timeout`.
pub fn from_urls(urls: &[String], timeout: Duration) -> Result<Config, ConfigError> {
    let origin = Path::new("<command line>");
    let mut entries = Vec::with_capacity(urls.len());
    for (i, u) in urls.iter().enumerate() {
        let url = probe_url::parse_url(u)
            .map_err(|e| ConfigError::new(origin, 1, i + 1, e.to_string()))?;
        entries.push(LongTarget::bare(url));
    }
    let defaults = Settings {
        timeout: Some(HumanDuration(timeout)),
        ..Settings::default()
    };
    compile::build(origin, "", &defaults, &BTreeMap::new(), &entries, None)
        .map_err(|e| ConfigError::list(e, false).unwrap_or_else(|| unlisted(origin)))
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `file:line:column` and the start of each message of a load that failed.
    fn places(text: &str) -> Vec<(usize, usize, String)> {
        let e = parse(Path::new("t.yml"), text).unwrap_err();
        e.all()
            .map(|e| (e.line, e.column, e.message.chars().take(20).collect()))
            .collect()
    }

    #[test]
    fn every_error_of_a_file_is_reported_where_it_stands() {
        let text = "defaults:\n  timeout: 5 parsecs\ngroups:\n  fast: {timeout: 1s, nope: 1}\n  \
                    slow:\n    timeout: 9s\ntargets:\n  - http://ok.test/\n  - 'ftp://bad.test/'\n  \
                    - url: http://a.test/\n    timeout: 2s\n    follow_redirects: maybe\n  \
                    - {url: 'http://b.test/', nope: 1}\n  - ~\n  - {name: no-url}\n  \
                    - http://ok2.test/\n";
        let want = [
            (2, 12, "defaults: timeout: i"),
            (4, 23, "groups.fast: unknown"),
            (9, 6, "targets[1]: URL \"ftp"),
            (12, 23, "targets[2].follow_re"),
            (13, 29, "targets[3]: unknown "),
            (14, 5, "targets[4]: an empty"),
            (15, 5, "targets[5]: missing "),
        ];
        let got = places(text);
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1, g.2.as_str()), w);
        }
        // Each error is the one the file would give with that entry alone broken.
        let alone = "targets:\n  - http://ok.test/\n  - {url: 'http://b.test/', nope: 1}\n";
        let e = parse(Path::new("t.yml"), alone).unwrap_err();
        assert_eq!((e.line, e.column, e.count()), (3, 29, 1));
        // Errors found once the file decodes (duplicates, keys that exclude each other) come
        // with those of the decoder, in file order.
        let text = "targets:\n  - http://ok.test/\n  - {url: 'http://b.test/', nope: 1}\n  \
                    - http://ok.test/\n  - {url: 'http://d.test/', fail_if_ssl: true, fail_if_not_ssl: true}\n  \
                    - {url: 'http://e.test/', timeout: 0s}\n";
        let got: Vec<_> = places(text).into_iter().map(|(l, c, _)| (l, c)).collect();
        assert_eq!(got, [(3, 29), (4, 5), (5, 29), (6, 38)]);
        // A syntax error ends the list.
        assert_eq!(places("targets: ['http://a/'\n").len(), 1);
        let got = places("targets: [a, 'http://b/'\n");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].2.starts_with("did not find"), "{got:?}");
    }

    #[test]
    fn a_load_lists_at_most_max_errors() {
        let mut text = String::from("targets:\n");
        for i in 0..MAX_ERRORS + 20 {
            text.push_str(&format!("  - {{url: 'http://a/{i}', nope: 1}}\n"));
        }
        let e = parse(Path::new("t.yml"), &text).unwrap_err();
        assert_eq!(e.count(), MAX_ERRORS);
        assert!(e.truncated);
        assert!(
            e.to_string()
                .ends_with("stopped after 100 errors; fix these and check again")
        );
        let mut text = String::from("targets:\n");
        for _ in 0..MAX_ERRORS + 20 {
            text.push_str("  - http://a/\n");
        }
        let e = parse(Path::new("t.yml"), &text).unwrap_err();
        assert_eq!((e.count(), e.truncated), (MAX_ERRORS, true));
        // Empty entries too, each placed on its own line.
        let text = format!("targets:\n{}", "  - ~\n".repeat(MAX_ERRORS + 20));
        let e = parse(Path::new("t.yml"), &text).unwrap_err();
        assert_eq!((e.count(), e.truncated), (MAX_ERRORS, true));
        assert_eq!((e.more[98].line, e.more[98].column), (101, 5));
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
    fn collections_nested_too_deep_are_refused_where_the_deepest_starts() {
        // The top, `targets` and the target are three levels; each `{a: ` opens one more.
        let flow = |n: usize| {
            format!(
                "targets:\n  - url: http://a/\n    headers: {}x{}\n",
                "{a: ".repeat(n),
                "}".repeat(n)
            )
        };
        let e = parse(Path::new("t.yml"), &flow(MAX_NESTING - 3)).unwrap_err();
        assert!(!e.message.contains("nested"), "{e}");
        for n in [MAX_NESTING - 2, 100_000] {
            let e = parse(Path::new("t.yml"), &flow(n)).unwrap_err();
            assert_eq!((e.line, e.column, e.count()), (3, 14 + 4 * 61, 1), "{e}");
            assert!(
                e.message
                    .starts_with("collections nested deeper than 64 levels"),
                "{e}"
            );
        }
        // Block collections count the same: the labels' mapping is the fourth level.
        let mut text = String::from("targets:\n  - url: http://a/\n    labels:\n");
        for i in 0..MAX_NESTING {
            text.push_str(&format!("{}a:\n", " ".repeat(6 + i)));
        }
        let e = parse(Path::new("t.yml"), &text).unwrap_err();
        assert_eq!((e.line, e.count()), (4 + 61, 1), "{e}");
        assert!(e.message.contains("nested deeper"), "{e}");
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
        let blocks: Vec<_> = c.targets.iter().map(|t| &*t.label_block).collect();
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
