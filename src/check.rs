//! `http_status_exporter check`: probe every target once, concurrently, printing each result
//! the moment it completes.

use std::io::Write;
use std::sync::Arc;

use crate::cli::Output;
use crate::config::Config;
use crate::dns::Resolver;
use crate::outcome::ProbeResult;
use crate::round::{Limits, run_round};
use crate::target::Target;

/// How `check` prints a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// Colour the code and result (green, red): only on a terminal, never with `NO_COLOR`.
    pub color: bool,
}

impl Style {
    /// Colour when `out_is_terminal` and `NO_COLOR` is unset or empty (<https://no-color.org>).
    pub fn detect(out_is_terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: out_is_terminal && !no_color,
        }
    }
}

/// Width of the TIME column: `12345.6ms`.
const TIME_WIDTH: usize = 9;

/// Width of the CODE column.
const CODE_WIDTH: usize = 4;

/// Probe `config`'s targets once, writing a line per result to `out` as results arrive, then
/// a summary line. The fixed-width columns come first and the variable text last, so the table
/// stays aligned whatever a result says: `TIME  CODE  URL  RESULT`. Returns how many targets
/// failed, or the error that stopped the output (a closed pipe): results nobody can read are
/// no success.
pub async fn run(
    config: Config,
    resolver: &Arc<Resolver>,
    limits: Limits,
    output: Output,
    style: Style,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let started = std::time::Instant::now();
    let width = config
        .targets
        .iter()
        .map(|t| t.url.raw.chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    // A NAME column when a target has a name or the file uses groups, so that one URL under
    // two names (or in two groups) prints two rows told apart.
    let names = config
        .targets
        .iter()
        .map(|t| shown_name(t, config.uses_groups).chars().count())
        .max()
        .filter(|_| config.uses_groups || config.targets.iter().any(|t| t.name.is_some()))
        .map(|w| w.max(4));
    let columns = Columns {
        width,
        names,
        groups: config.uses_groups,
    };
    let mut broken: Option<std::io::Error> = None;
    if output == Output::Table {
        let name = names.map_or(String::new(), |w| format!("{:<w$}  ", "NAME"));
        if let Err(e) = writeln!(
            out,
            "{:>TIME_WIDTH$}  {:<CODE_WIDTH$}  {:<width$}  {name}RESULT",
            "TIME", "CODE", "URL"
        )
        .and_then(|()| out.flush())
        {
            broken = Some(e);
        }
    }
    let config = Arc::new(config);
    let targets = config.clone();
    let total = targets.targets.len();
    let mut failed = 0;
    run_round(config, resolver, None, limits, |i, r| {
        failed += usize::from(!r.success());
        let line = match output {
            Output::Table => table_row(&targets.targets[i], r, columns, style),
            Output::Json => json_line(&targets.targets[i], r),
        };
        if broken.is_none()
            && let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        {
            broken = Some(e);
        }
    })
    .await;
    if output == Output::Table && broken.is_none() {
        let summary = format!(
            "{}: {} up, {failed} down, in {:.2} s",
            count(total, "target"),
            total - failed,
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = writeln!(out, "{summary}").and_then(|()| out.flush()) {
            broken = Some(e);
        }
    }
    match broken {
        Some(e) => Err(e),
        None => Ok(failed),
    }
}

/// `1 target`, `2 targets`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The widths of a table's variable columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The URL column: the widest URL of the run.
    pub width: usize,
    /// The NAME column, when there is one: the widest name (and group) of the run.
    pub names: Option<usize>,
    /// Whether the file uses groups: the NAME column then shows each target's group.
    pub groups: bool,
}

/// What the NAME column shows of a target: its name, and its group when the file uses groups
/// (`shop [web]`); `-` for neither.
fn shown_name(t: &Target, uses_groups: bool) -> String {
    match (t.name.as_deref(), uses_groups) {
        (Some(n), true) => format!("{n} [{}]", t.group),
        (Some(n), false) => n.to_owned(),
        (None, true) => format!("- [{}]", t.group),
        (None, false) => "-".to_owned(),
    }
}

/// `   12.3ms  200   URL  HTTP/1.1 200 OK` or `    0.2ms  ---   URL  connect_refused: ...`,
/// with a NAME column before the result when `columns` has one.
pub fn table_row(t: &Target, r: &ProbeResult, columns: Columns, style: Style) -> String {
    let width = columns.width;
    let result = match (&r.status, r.failure) {
        // A note on a success: why a redirect was not followed.
        (Some(s), None) => match &r.detail {
            Some(d) => format!("{s} ({d})"),
            None => s.to_string(),
        },
        (Some(s), Some(f)) => match &r.detail {
            // A header or body check: the detail names the pattern.
            Some(d) if f.about_head_or_body() => format!("{s} ({f}: {d})"),
            _ => format!("{s} ({f})"),
        },
        (None, Some(f)) => match &r.detail {
            Some(d) => format!("{f}: {d}"),
            None => f.to_string(),
        },
        (None, None) => String::new(),
    };
    let code = r
        .status
        .as_ref()
        .map_or_else(|| "---".to_owned(), |s| s.code.to_string());
    let time = format!("{:.1}ms", r.duration.as_secs_f64() * 1000.0);
    let (on, off) = match (style.color, r.success()) {
        (false, _) => ("", ""),
        (true, true) => ("\x1b[32m", "\x1b[0m"),
        (true, false) => ("\x1b[31m", "\x1b[0m"),
    };
    let name = columns.names.map_or(String::new(), |w| {
        format!("{:<w$}  ", shown_name(t, columns.groups))
    });
    format!(
        "{time:>TIME_WIDTH$}  {on}{code:<CODE_WIDTH$}{off}  {url:<width$}  {name}{on}{result}{off}",
        url = t.url.raw,
    )
}

/// One JSON object describing a result.
pub fn json_line(t: &Target, r: &ProbeResult) -> String {
    serde_json::json!({
        "target": t.url.raw,
        "name": t.name,
        "group": &*t.group,
        "labels": t
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "success": r.success(),
        "status_code": r.status.as_ref().map_or(0, |s| s.code),
        "status_line": r.status.as_ref().map(ToString::to_string),
        "reason": r.failure.map(|f| f.as_str()),
        "detail": r.detail,
        "duration_seconds": r.duration.as_secs_f64(),
        "phases": {
            "resolve": r.phases.resolve.as_secs_f64(),
            "connect": r.phases.connect.as_secs_f64(),
            "proxy": r.phases.proxy.as_secs_f64(),
            "tls": r.phases.tls.as_secs_f64(),
            "processing": r.phases.processing.as_secs_f64(),
        },
        "redirects": r.redirects,
        "ssl": r.ssl,
        "ip_protocol": r.ip_protocol(),
        "tls_version": r.tls_version.map(|v| v.as_str()),
        "cert_leaf_expiry": r.cert.map(|c| c.leaf),
        "cert_earliest_expiry": r.cert.map(|c| c.earliest),
    })
    .to_string()
}
