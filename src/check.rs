//! `http_status_exporter check`: probe every target once, concurrently, printing each result
//! the moment it completes.

use std::io::Write;
use std::sync::Arc;

use crate::cli::Output;
use crate::config::Config;
use crate::dns::Resolver;
use crate::probe::ProbeResult;
use crate::round::{Limits, run_round};
use crate::target::Target;

/// Widest URL column before long URLs overflow it.
const MAX_URL_WIDTH: usize = 60;

/// Probe `config`'s targets once, writing a line per result to `out` as results arrive.
/// Returns how many targets failed, or the error that stopped the output (a closed pipe):
/// results nobody can read are no success.
pub async fn run(
    config: Config,
    resolver: &Arc<Resolver>,
    limits: Limits,
    output: Output,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let width = config
        .targets
        .iter()
        .map(|t| t.url.raw.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, MAX_URL_WIDTH);
    let mut broken: Option<std::io::Error> = None;
    if output == Output::Table {
        if let Err(e) = writeln!(out, "{:<width$}  {:<40}  {:>10}", "URL", "RESULT", "TIME")
            .and_then(|()| out.flush())
        {
            broken = Some(e);
        }
    }
    let config = Arc::new(config);
    let targets = config.clone();
    let mut failed = 0;
    run_round(config, resolver, None, limits, |i, r| {
        failed += usize::from(!r.success());
        let line = match output {
            Output::Table => table_row(&targets.targets[i], r, width),
            Output::Json => json_line(&targets.targets[i], r),
        };
        if broken.is_none()
            && let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        {
            broken = Some(e);
        }
    })
    .await;
    match broken {
        Some(e) => Err(e),
        None => Ok(failed),
    }
}

/// `URL  200 OK  12.3ms` or `URL  connect_refused: Connection refused  0.2ms`.
pub fn table_row(t: &Target, r: &ProbeResult, width: usize) -> String {
    let result = match (&r.status, r.failure) {
        (Some(s), None) => s.to_string(),
        (Some(s), Some(f)) => format!("{s} ({f})"),
        (None, Some(f)) => match &r.detail {
            Some(d) => format!("{f}: {d}"),
            None => f.to_string(),
        },
        (None, None) => String::new(),
    };
    format!(
        "{:<width$}  {:<40}  {:>8.1}ms",
        t.url.raw,
        result,
        r.duration.as_secs_f64() * 1000.0
    )
}

/// One JSON object describing a result.
pub fn json_line(t: &Target, r: &ProbeResult) -> String {
    serde_json::json!({
        "target": t.url.raw,
        "name": t.name,
        "success": r.success(),
        "status_code": r.status.as_ref().map_or(0, |s| s.code),
        "status_line": r.status.as_ref().map(ToString::to_string),
        "reason": r.failure.map(|f| f.as_str()),
        "detail": r.detail,
        "duration_seconds": r.duration.as_secs_f64(),
        "phases": {
            "resolve": r.phases.resolve.as_secs_f64(),
            "connect": r.phases.connect.as_secs_f64(),
            "tls": r.phases.tls.as_secs_f64(),
            "processing": r.phases.processing.as_secs_f64(),
        },
        "ip_protocol": r.ip_protocol,
        "tls_version": r.tls_version.map(|v| v.as_str()),
        "cert_leaf_expiry": r.cert.map(|c| c.leaf),
        "cert_earliest_expiry": r.cert.map(|c| c.earliest),
    })
    .to_string()
}
