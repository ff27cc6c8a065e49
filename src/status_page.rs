//! The status page at `/`: the last round as a table, worst first, with each target's recent
//! results as a strip and its uptime, filtered and paged by the query string; and a page per
//! target with its results in full. Both read without JavaScript.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::outcome::ProbeResult;
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

/// Rows per page of the status page.
pub const PAGE_SIZE: usize = 100;

/// What the status page shows: `?state=down|warn|up`, `?q=substring`, `?page=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Only targets in this state.
    pub state: Option<String>,
    /// Only targets whose URL, name or group holds this text (case-insensitive).
    pub query: Option<String>,
    /// Which page, from 1.
    pub page: usize,
}

impl View {
    /// From the query string's pairs.
    pub fn from_query(pairs: &[(String, String)]) -> View {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, v)| n == k && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        View {
            state: get("state").filter(|s| matches!(s.as_str(), "down" | "warn" | "up")),
            query: get("q").map(|q| q.to_lowercase()),
            page: get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
        }
    }

    /// A link to page `page` of this view.
    fn link(&self, page: usize) -> String {
        let mut out = format!("/?page={page}");
        if let Some(s) = &self.state {
            let _ = write!(out, "&amp;state={}", query_escape(s));
        }
        if let Some(q) = &self.query {
            let _ = write!(out, "&amp;q={}", query_escape(q));
        }
        out
    }
}

/// Percent-encode a query value.
fn query_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The state class and word of a rank.
fn state_of(rank: u8) -> (&'static str, &'static str) {
    match rank {
        0 => ("down", "DOWN"),
        1 => ("warn", "WARN"),
        _ => ("up", "UP"),
    }
}

/// The page's head: title, style and links to every endpoint (the metrics at
/// `metrics_path`, `--web.telemetry-path`).
fn head(out: &mut String, title: &str, metrics_path: &str) {
    let _ = write!(
        out,
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>{}</title><style>",
            "body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}",
            "table{{border-collapse:collapse;width:100%}}th,td{{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}",
            "th{{background:#f4f4f4}}td.num{{text-align:right;font-variant-numeric:tabular-nums}}",
            "tr.down td.state{{background:#f8d0d0;color:#8a0000;font-weight:bold}}",
            "tr.warn td.state{{background:#fbeec2;color:#6b5200;font-weight:bold}}",
            "tr.up td.state{{background:#d5f2d5;color:#145214}}",
            ".strip{{white-space:nowrap;line-height:1}}.strip span{{display:inline-block;width:5px;height:16px;margin-right:1px;background:#ccc}}",
            ".strip span.ok{{background:#3a3}}.strip span.fail{{background:#c33}}",
            ".counts span{{margin-right:1.2em}}form{{margin:.8em 0}}nav a{{margin-right:.6em}}",
            "</style></head><body>\n<h1>{}</h1>\n",
            "<p><a href=\"/\">Status</a> · <a href=\"{}\">Metrics</a> · <a href=\"/config\">Config</a> · ",
            "<a href=\"/sd\">Service discovery</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Ready</a></p>\n"
        ),
        html(title),
        html(title),
        html(metrics_path)
    );
}

/// Render the page for `config`, showing `round` if one has run, with each target's recent
/// results from `history`, filtered and paged by `view`.
pub fn render(
    config: &Config,
    round: Option<&Round>,
    history: &crate::history::History,
    view: &View,
    metrics_path: &str,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::with_capacity(16_384 + PAGE_SIZE * (600 + history.depth() * 80));
    head(&mut out, "http_status_exporter", metrics_path);
    let _ = write!(
        out,
        "<p>Config: <code>{}</code>, {} targets",
        html(&config.file.display().to_string()),
        config.targets.len()
    );
    let Some(round) = round else {
        let path = html(metrics_path);
        let _ = writeln!(
            out,
            ". No round has run yet: the first scrape of <a href=\"{path}\">{path}</a> starts one.</p>"
        );
        out.push_str(&target_list(config));
        out.push_str("</body></html>\n");
        return out;
    };
    let age = SystemTime::now()
        .duration_since(round.started_at)
        .map_or(0.0, |d| d.as_secs_f64());
    let ranks: Vec<u8> = round.results.iter().map(|r| rank(r, now)).collect();
    let count = |k: u8| ranks.iter().filter(|r| **r == k).count();
    let _ = writeln!(
        out,
        ". Last round: {:.1} s ago, took {:.3} s.</p>\n<p class=\"counts\"><span><b>{}</b> up</span><span><b>{}</b> down</span><span><b>{}</b> certificates expiring within {} days</span></p>",
        age,
        round.duration.as_secs_f64(),
        count(2),
        count(0),
        count(1),
        CERT_WARN_DAYS
    );
    let _ = writeln!(
        out,
        "<form method=\"get\" action=\"/\"><label>Show <select name=\"state\">{}</select></label> \
         <label>matching <input name=\"q\" value=\"{}\" placeholder=\"URL, name or group\"></label> \
         <button>Filter</button></form>",
        ["", "down", "warn", "up"]
            .iter()
            .map(|s| format!(
                "<option value=\"{s}\"{}>{}</option>",
                if view.state.as_deref() == Some(*s) {
                    " selected"
                } else {
                    ""
                },
                if s.is_empty() { "all" } else { s }
            ))
            .collect::<String>(),
        html(view.query.as_deref().unwrap_or(""))
    );
    // Failures first, then warnings, then the rest; file order within each.
    let mut order: Vec<usize> = (0..round.results.len())
        .filter(|&i| {
            let (class, _) = state_of(ranks[i]);
            let t = &round.config.targets[i];
            view.state.as_deref().is_none_or(|s| s == class)
                && view.query.as_deref().is_none_or(|q| {
                    t.url.raw.to_lowercase().contains(q)
                        || t.name
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(q))
                        || t.group.to_lowercase().contains(q)
                })
        })
        .collect();
    order.sort_by_key(|&i| (ranks[i], i));
    let shown = order.len();
    let pages = shown.div_ceil(PAGE_SIZE).max(1);
    let page = view.page.min(pages);
    let first = (page - 1) * PAGE_SIZE;
    let groups = round.config.uses_groups;
    let _ = writeln!(
        out,
        "<table id=\"targets\"><thead><tr><th>State</th><th>Target</th><th>Name</th>{}\
         <th>Status</th><th>Reason</th><th>Latency (ms)</th><th>Certificate expires in (days)</th>\
         <th>Last {} rounds</th><th>Uptime</th></tr></thead><tbody>",
        if groups { "<th>Group</th>" } else { "" },
        history.depth()
    );
    for &i in order.iter().skip(first).take(PAGE_SIZE) {
        let (t, r) = (&round.config.targets[i], &round.results[i]);
        let (class, state) = state_of(ranks[i]);
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
        let (entries, uptime) = history.strip(&t.label_block);
        let mut strip = String::with_capacity(entries.len() * 80);
        for e in &entries {
            let what = match e.failure() {
                None => e.code.to_string(),
                Some(f) if e.code != 0 => format!("{} {f}", e.code),
                Some(f) => f.to_string(),
            };
            let _ = write!(
                strip,
                "<span class=\"{}\" title=\"{} {} {:.1} ms\"></span>",
                if e.success() { "ok" } else { "fail" },
                clock(e.time()),
                html(&what),
                e.duration().as_secs_f64() * 1000.0
            );
        }
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td class=\"state\">{state}</td><td><a href=\"/target?{id}\">{url}</a> \
             <a class=\"trace\" href=\"{trace}\" title=\"trace one probe\">trace</a></td><td>{name}</td>{group}\
             <td>{status}</td><td>{reason}</td><td class=\"num\">{lat:.1}</td><td class=\"num\">{expiry}</td>\
             <td class=\"strip\">{strip}</td><td class=\"num\">{uptime}</td></tr>",
            id = target_query(t),
            trace = trace_link(t),
            url = html(&t.url.raw),
            name = html(t.name.as_deref().unwrap_or("")),
            group = if groups {
                format!("<td>{}</td>", html(&t.group))
            } else {
                String::new()
            },
            status = html(&status),
            reason = html(&reason),
            lat = r.duration.as_secs_f64() * 1000.0,
            uptime = uptime.map_or(String::new(), |u| format!("{:.1}%", u * 100.0)),
        );
    }
    out.push_str("</tbody></table>\n");
    let _ = write!(
        out,
        "<nav><p>{shown} targets shown, page {page} of {pages}. "
    );
    if page > 1 {
        let _ = write!(
            out,
            "<a href=\"{}\" rel=\"prev\">previous</a>",
            view.link(page - 1)
        );
    }
    if page < pages {
        let _ = write!(
            out,
            "<a href=\"{}\" rel=\"next\">next</a>",
            view.link(page + 1)
        );
    }
    out.push_str("</p></nav>\n</body></html>\n");
    out
}

/// `/probe?target=…&module=…&debug=true` for `t`: one probe of it, traced.
fn trace_link(t: &crate::target::Target) -> String {
    format!(
        "/probe?target={}&amp;module={}&amp;debug=true",
        query_escape(t.name.as_deref().unwrap_or(&t.url.raw)),
        query_escape(&t.group)
    )
}

/// The query that names a target on its page: its URL, and its name when it has one (the same
/// URL may be listed under two names).
fn target_query(t: &crate::target::Target) -> String {
    let mut q = format!("url={}", query_escape(&t.url.raw));
    if let Some(n) = &t.name {
        let _ = write!(q, "&amp;name={}", query_escape(n));
    }
    q
}

/// A time as `2026-12-01 07:30:00Z`.
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The page of one target (`/target?url=U`, with `&name=N` to tell apart a URL listed twice,
/// or `?name=N` alone): its last results in full, newest first. `None` when no such target
/// is configured.
pub fn render_target(
    config: &Config,
    history: &crate::history::History,
    query: &[(String, String)],
    metrics_path: &str,
) -> Option<String> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (url, name) = (get("url"), get("name"));
    if url.is_none() && name.is_none() {
        return None;
    }
    let target = config.targets.iter().find(|t| {
        url.is_none_or(|u| t.url.raw == u) && name.is_none_or(|n| t.name.as_deref() == Some(n))
    })?;
    let mut out = String::with_capacity(8192 + history.depth() * 400);
    head(&mut out, &target.url.raw, metrics_path);
    let _ = writeln!(
        out,
        "<p><a href=\"{}\">Trace one probe</a> of this target: what each step did, and the \
         metrics it gives.</p>",
        trace_link(target)
    );
    let _ = writeln!(
        out,
        "<p>Name: {}{}, timeout {} ms.</p>",
        html(target.name.as_deref().unwrap_or("(none)")),
        if config.uses_groups {
            format!(", group {}", html(&target.group))
        } else {
            String::new()
        },
        target.timeout.as_millis()
    );
    let results = history.results(&target.label_block);
    let up = results.iter().filter(|r| r.failure.is_none()).count();
    if !results.is_empty() {
        let _ = writeln!(
            out,
            "<p>Up in {up} of the last {} rounds ({:.1}%).</p>",
            results.len(),
            up as f64 * 100.0 / results.len() as f64
        );
    }
    out.push_str(concat!(
        "<table id=\"results\"><thead><tr><th>Time</th><th>State</th><th>Status line or detail</th><th>Reason</th>",
        "<th>Total (ms)</th><th>Resolve</th><th>Connect</th><th>TLS</th><th>Processing</th>",
        "<th>IP</th><th>TLS version</th><th>Certificate expires</th></tr></thead><tbody>\n"
    ));
    let ms = |d: std::time::Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    for r in &results {
        let class = if r.failure.is_none() { "up" } else { "down" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            clock(r.at),
            if r.failure.is_none() { "UP" } else { "DOWN" },
            html(r.text.as_deref().unwrap_or("")),
            r.failure.map_or(String::new(), |f| f.to_string()),
            ms(r.duration),
            ms(r.phases[0]),
            ms(r.phases[1]),
            ms(r.phases[2]),
            ms(r.phases[3]),
            r.ip_protocol.map_or(String::new(), |p| format!("IPv{p}")),
            r.tls.map_or("", |v| v.as_str()),
            r.cert_expiry.map_or(String::new(), |c| {
                clock(UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(c).unwrap_or(0)))
            }),
        );
    }
    if results.is_empty() {
        out.push_str(
            "<tr><td colspan=\"12\">No result yet: a scrape of /metrics runs a round.</td></tr>\n",
        );
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    Some(out)
}

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
        let spec = &t.spec;
        let _ = writeln!(out, "    method: {}", spec.method.as_str());
        // Quoted: a header name may start with a character YAML reads as syntax (`!`, `*`, `|`).
        let headers: Vec<String> = spec
            .headers
            .iter()
            .map(|(k, _)| q(k))
            .chain(spec.secret_headers.iter().map(|(k, _)| q(k)))
            .collect();
        let _ = writeln!(
            out,
            "    headers: [{}]  # values not shown",
            headers.join(", ")
        );
        if !spec.body.is_empty() {
            let _ = writeln!(out, "    body: {} bytes", spec.body.len());
        }
        if t.follow_redirects > 0 {
            let _ = writeln!(out, "    follow_redirects: {}", t.follow_redirects);
        }
        if t.fail_if_ssl {
            out.push_str("    fail_if_ssl: true\n");
        }
        if t.fail_if_not_ssl {
            out.push_str("    fail_if_not_ssl: true\n");
        }
        if let Some(proxy) = t.proxy.as_deref().and_then(|r| r.for_url(&t.url)) {
            let _ = writeln!(out, "    proxy: {}", q(&proxy.shown));
        }
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
