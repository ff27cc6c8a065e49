//! The status page at `/`: the last round as a table, worst first, readable without JavaScript.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::probe::ProbeResult;
use crate::round::Round;

/// Certificates expiring within this many days are shown as a warning.
const CERT_WARN_DAYS: f64 = 14.0;

/// Escape text for HTML element content and attribute values.
pub fn escape_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// How bad a row is: 0 failed, 1 warning (certificate expiring soon), 2 fine.
fn rank(r: &ProbeResult, now: f64) -> u8 {
    if !r.success() {
        0
    } else if r
        .cert
        .is_some_and(|c| (c.earliest as f64 - now) / 86_400.0 < CERT_WARN_DAYS)
    {
        1
    } else {
        2
    }
}

/// Render the page for `config`, showing `round` if one has run.
pub fn render(config: &Config, round: Option<&Round>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::with_capacity(4096 + config.targets.len() * 300);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>http_status_exporter</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;width:100%}th,td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}",
        "th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}",
        "tr.down td.state{background:#f8d0d0;color:#8a0000;font-weight:bold}",
        "tr.warn td.state{background:#fbeec2;color:#6b5200;font-weight:bold}",
        "tr.up td.state{background:#d5f2d5;color:#145214}",
        "</style></head><body>\n<h1>http_status_exporter</h1>\n",
        "<p><a href=\"/metrics\">Metrics</a> · <a href=\"/config\">Config</a> · <a href=\"/-/healthy\">Health</a></p>\n"
    ));
    let _ = write!(
        out,
        "<p>Config: <code>{}</code>, {} targets",
        html(&config.file.display().to_string()),
        config.targets.len()
    );
    let Some(round) = round else {
        out.push_str(". No round has run yet: the first scrape of <a href=\"/metrics\">/metrics</a> starts one.</p>\n");
        out.push_str(&target_list(config));
        out.push_str("</body></html>\n");
        return out;
    };
    let age = SystemTime::now()
        .duration_since(round.started_at)
        .map_or(0.0, |d| d.as_secs_f64());
    let failed = round.results.iter().filter(|r| !r.success()).count();
    let _ = writeln!(
        out,
        ". Last round: {:.1} s ago, took {:.3} s, {} of {} failed.</p>",
        age,
        round.duration.as_secs_f64(),
        failed,
        round.results.len()
    );
    out.push_str(concat!(
        "<table id=\"targets\"><thead><tr><th>State</th><th>Target</th><th>Name</th>",
        "<th>Status</th><th>Reason</th><th>Latency (ms)</th><th>Certificate expires in (days)</th>",
        "</tr></thead><tbody>\n"
    ));
    let mut order: Vec<usize> = (0..round.results.len()).collect();
    order.sort_by_key(|&i| (rank(&round.results[i], now), i));
    let hidden = order.len().saturating_sub(MAX_ROWS);
    order.truncate(MAX_ROWS);
    for i in order {
        let (t, r) = (&round.config.targets[i], &round.results[i]);
        let (class, state) = match rank(r, now) {
            0 => ("down", "DOWN"),
            1 => ("warn", "WARN"),
            _ => ("up", "UP"),
        };
        let status = r
            .status
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let reason = match (&r.failure, &r.detail) {
            (Some(f), Some(d)) => format!("{f}: {d}"),
            (Some(f), None) => f.to_string(),
            _ => String::new(),
        };
        let expiry = r
            .cert
            .map(|c| format!("{:.1}", (c.earliest as f64 - now) / 86_400.0))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td class=\"state\">{state}</td><td><a href=\"{url}\">{url}</a></td><td>{name}</td>\
             <td>{status}</td><td>{reason}</td><td class=\"num\">{lat:.1}</td><td class=\"num\">{expiry}</td></tr>",
            url = html(&t.url.raw),
            name = html(t.name.as_deref().unwrap_or("")),
            status = html(&status),
            reason = html(&reason),
            lat = r.duration.as_secs_f64() * 1000.0,
        );
    }
    out.push_str("</tbody></table>\n");
    if hidden > 0 {
        let _ = writeln!(
            out,
            "<p>{hidden} more targets, all listed after the ones above by state, are not shown: \
             the page shows the first {MAX_ROWS}. <a href=\"/metrics\">/metrics</a> has them all.</p>"
        );
    }
    out.push_str("</body></html>\n");
    out
}

/// Rows the page shows at most, worst first: a page per request of 10,000 rows (about 3 MB)
/// would let a few clients that never read hold gigabytes.
pub const MAX_ROWS: usize = 1000;

/// The config in effect as YAML, for `/config`: every target with its settings after defaults
/// were applied. Header values are left out: they may carry credentials.
pub fn render_config(config: &Config) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = String::with_capacity(256 + config.targets.len() * 200);
    let _ = writeln!(out, "# {}", config.file.display());
    let _ = writeln!(
        out,
        "max_connections_per_host: {}",
        config.max_connections_per_host
    );
    out.push_str("targets:\n");
    for t in &config.targets {
        let _ = writeln!(out, "  - url: {}", q(&t.url.raw));
        if let Some(n) = &t.name {
            let _ = writeln!(out, "    name: {}", q(n));
        }
        if config.uses_groups {
            let _ = writeln!(out, "    group: {}", q(&t.group));
        }
        if !t.labels.is_empty() {
            let labels: Vec<String> = t
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {}", q(v)))
                .collect();
            let _ = writeln!(out, "    labels: {{{}}}", labels.join(", "));
        }
        let _ = writeln!(out, "    timeout: {}ms", t.timeout.as_millis());
        let request = String::from_utf8_lossy(&t.request);
        let mut lines = request.split("\r\n");
        let method = lines
            .next()
            .and_then(|l| l.split(' ').next())
            .unwrap_or("GET");
        let _ = writeln!(out, "    method: {method}");
        // Quoted: a header name may start with a character YAML reads as syntax (`!`, `*`, `|`).
        let headers: Vec<String> = lines
            .filter_map(|l| l.split_once(':').map(|(k, _)| q(k)))
            .collect();
        let _ = writeln!(
            out,
            "    headers: [{}]  # values not shown",
            headers.join(", ")
        );
        let _ = writeln!(out, "    ip_protocol: {}", t.ip_protocol.as_str());
        if let Some(ip) = t.source_ip {
            let _ = writeln!(out, "    source_ip: {ip}");
        }
        if let Some(tls) = &t.tls {
            let _ = writeln!(out, "    tls_server_name: {}", q(&tls.server_name.to_str()));
        }
    }
    out
}

/// The configured targets, before any round.
fn target_list(config: &Config) -> String {
    let mut out = String::from("<ul>\n");
    for t in &config.targets {
        let _ = writeln!(
            out,
            "<li><a href=\"{u}\">{u}</a></li>",
            u = html(&t.url.raw)
        );
    }
    out.push_str("</ul>\n");
    out
}

/// [`escape_html`] into a new string.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_html(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
