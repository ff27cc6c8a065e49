//! `GET /metrics` and `GET /probe`: pick the targets a scrape asks for, derive its budget from
//! the scrape timeout Prometheus announces, join or start a round and answer with its metrics.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::body::{Chunks, METRICS_CONTENT_TYPE, TEXT, accepts_gzip, query_pairs, reply, respond};
use crate::allow::Admission;
use crate::config::Config;
use crate::prober::Selection;
use crate::round::Round;
use crate::target::Target;

/// Answer a scrape of `/metrics` (`probe` false) or `/probe` (`probe` true).
pub(super) async fn answer(
    state: &State,
    req: &Request<Incoming>,
    probe: bool,
) -> Response<Chunks> {
    // HEAD learns the headers without costing a round.
    if req.method() == Method::HEAD {
        return reply(StatusCode::OK, METRICS_CONTENT_TYPE, "");
    }
    let query = query_pairs(req);
    let budget = state.budget(req.headers().get("x-prometheus-scrape-timeout-seconds"));
    let config = state.prober.config();
    let selection = if probe {
        match probe_request(&config, &query) {
            Ok(ProbeRequest::Shared(s)) => s,
            Ok(ProbeRequest::Own { targets, debug }) => {
                drop(config);
                return match debug {
                    true => debug_answer(state, &targets[0], budget).await,
                    false => {
                        let round = state.prober.probe_targets(targets, budget).await;
                        metrics_answer(state, req, round, true)
                    }
                };
            }
            Err(refusal) => return refusal.answer(),
        }
    } else {
        match group_selection(&config, &query) {
            Ok(s) => s,
            Err(message) => return reply(StatusCode::NOT_FOUND, TEXT, message),
        }
    };
    drop(config);
    match state.prober.scrape_selection(selection, budget).await {
        Ok(round) => metrics_answer(state, req, round, probe),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

/// The metrics of `round`: for `/metrics` followed by the exporter's own; `/probe` answers
/// with the target's series only, as blackbox does.
fn metrics_answer(
    state: &State,
    req: &Request<Incoming>,
    round: Arc<Round>,
    probe: bool,
) -> Response<Chunks> {
    let mut tail = Vec::with_capacity(8192);
    if !probe {
        if let Err(e) = state.prober.metrics().render(&mut tail) {
            tracing::error!(error = %e, "cannot render exporter metrics");
        }
        let _ = write!(
            tail,
            "# HELP http_status_exporter_round_age_seconds How old the results of this answer are: from the end of their round to now.\n\
             # TYPE http_status_exporter_round_age_seconds gauge\n\
             http_status_exporter_round_age_seconds {}\n",
            round.finished.elapsed().as_secs_f64()
        );
    }
    let gzip = accepts_gzip(req.headers().get(hyper::header::ACCEPT_ENCODING));
    let mut r = respond(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        Chunks::metrics(round, tail, gzip),
    );
    if gzip {
        r.headers_mut().insert(
            hyper::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    // Caches must key the answer by what the client accepts.
    r.headers_mut().insert(
        hyper::header::VARY,
        HeaderValue::from_static("Accept-Encoding"),
    );
    r
}

/// `/probe?debug=true`: probe once with a trace, and answer with the trace, the verdict and
/// the metrics a scrape would have got, as text for a person.
async fn debug_answer(
    state: &State,
    target: &Arc<Target>,
    budget: Option<Duration>,
) -> Response<Chunks> {
    let (result, lines) = state.prober.trace_target(target, budget).await;
    let mut out = String::with_capacity(4096);
    let how = if target.allowed.is_some() {
        "not in the targets file; admitted by the probe allowlist"
    } else {
        "a configured target"
    };
    let _ = writeln!(
        out,
        "Probe of {} (group {:?}, {how}), timeout {:.1} s\n\nLogs for the probe:",
        target.url.raw,
        &*target.group,
        target.timeout.as_secs_f64()
    );
    for line in &lines {
        let _ = writeln!(out, "{line}");
    }
    let mut config = state.prober.config().subset(|_| false);
    config.targets = vec![target.clone()];
    let round = Arc::new(Round::of(Arc::new(config), vec![result], budget));
    out.push_str("\nMetrics that would have been returned:\n");
    let mut render = crate::metrics::ChunkedRender::new(round);
    while let Some(chunk) = render.next_chunk() {
        out.push_str(&String::from_utf8_lossy(&chunk));
    }
    reply(StatusCode::OK, TEXT, out)
}

/// What a `/probe` request asks for.
enum ProbeRequest {
    /// Configured targets as they are: a round shared with other scrapes of them.
    Shared(Selection),
    /// Targets made for this request (an allowlisted URL, or another `Host`), or one traced.
    Own {
        /// The targets.
        targets: Vec<Arc<Target>>,
        /// Trace the (first) target's probe (`debug=true`).
        debug: bool,
    },
}

/// Why a `/probe` request is not probed: its status and message.
struct Refusal {
    /// 400 for a bad request, 404 for a target that is not probed.
    status: StatusCode,
    /// What the client is told.
    message: String,
    /// Whether the client asked for a trace: it then reads "refused".
    debug: bool,
}

impl Refusal {
    /// The answer to the client.
    fn answer(self) -> Response<Chunks> {
        let body = match self.debug {
            true => format!("refused: {}", self.message),
            false => self.message,
        };
        reply(self.status, TEXT, body)
    }
}

/// Read a `/probe` request: `target` (configured, by URL or name; or, under the allowlist, any
/// URL or bare `host:port`), `module` (a group), `hostname` (the `Host` header and TLS name to
/// probe with) and `debug`.
fn probe_request(config: &Config, query: &[(String, String)]) -> Result<ProbeRequest, Refusal> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let debug = param("debug").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let refuse = |status, message: String| Refusal {
        status,
        message,
        debug,
    };
    let hostname = match param("hostname") {
        Some(h) if !valid_hostname(h) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("hostname {h:?} is not a host name or host:port\n"),
            ));
        }
        h => h,
    };
    let selection = match probe_selection(config, query) {
        Ok(s) => s,
        Err(Unprobed::Configured(status, message)) => return Err(refuse(status, message)),
        Err(Unprobed::NotConfigured(wanted, message)) => {
            let target = allowlisted(config, &wanted, param("module"), hostname)
                .map_err(|why| {
                    tracing::info!(target = %wanted, why = %why, "/probe refused a target that is not in the targets file");
                    refuse(StatusCode::NOT_FOUND, format!("{}{why}\n", message))
                })?;
            return Ok(ProbeRequest::Own {
                targets: vec![Arc::new(target)],
                debug,
            });
        }
    };
    if hostname.is_none() && !debug {
        return Ok(ProbeRequest::Shared(selection));
    }
    let mut targets = Vec::new();
    for t in config.targets.iter().filter(|t| selection.keeps(t)) {
        targets.push(match hostname {
            Some(h) => Arc::new(
                t.adapted(t.url.clone(), Some(h), config.uses_groups)
                    .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e}\n")))?,
            ),
            None => t.clone(),
        });
    }
    Ok(ProbeRequest::Own { targets, debug })
}

/// Whether `/probe?hostname=` is a host name or address, with an optional port: nothing that
/// could break the request head.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// A target that is not in the file, made from the group `module`'s settings (else the
/// `default` group's) when the allowlist admits its host; why not otherwise, naming the rule
/// that would admit it.
fn allowlisted(
    config: &Config,
    wanted: &str,
    module: Option<&str>,
    hostname: Option<&str>,
) -> Result<Target, String> {
    // A bare `host:port` is `http://host:port/`, as in blackbox_exporter.
    let raw = if wanted.contains("://") {
        wanted.to_owned()
    } else {
        format!("http://{wanted}/")
    };
    let url = crate::probe_url::parse_url(&raw).map_err(|e| e.to_string())?;
    let Some(allow) = &config.allow else {
        // What an allowlist of nothing says names the entry that would admit the host.
        let why = match crate::probe::admission(&crate::allow::Allow::default(), &url) {
            Admission::Refused(why) => format!("{why}; "),
            Admission::Admitted { .. } => String::new(),
        };
        return Err(format!(
            "{why}add it to the targets file, or admit it with a `probe: {{allow: [...]}}` block"
        ));
    };
    if let Admission::Refused(why) = crate::probe::admission(allow, &url) {
        return Err(why);
    }
    let group = module
        .filter(|m| config.templates.contains_key(*m))
        .unwrap_or(crate::config::DEFAULT_GROUP);
    let template = config
        .templates
        .get(group)
        .ok_or_else(|| format!("no settings for group {group:?}"))?;
    template.adapted(url, hostname, config.uses_groups)
}

/// The groups `/metrics?group=a&group=b` asks for; an unknown group is an error (a typo in a
/// scrape config must not look like an empty group).
fn group_selection(config: &Config, query: &[(String, String)]) -> Result<Selection, String> {
    let mut names = Vec::new();
    for (k, v) in query {
        if k != "group" {
            continue;
        }
        if !config.groups.iter().any(|g| g == v) {
            return Err(format!(
                "unknown group {v:?}; the groups are: {}\n",
                config.groups.join(", ")
            ));
        }
        names.push(v.clone());
    }
    Ok(Selection::groups(names))
}

/// Why `/probe` does not probe a configured target as asked.
enum Unprobed {
    /// A bad request, or a configured target in another group: the status and message.
    Configured(StatusCode, String),
    /// The target is not in the file: the target as asked, and the start of the message.
    NotConfigured(String, String),
}

/// The target `/probe?target=URL&module=M` asks for: one that is in the config, by its URL as
/// written or its name. Nothing else is ever probed (no open proxy). `module`, when it names a
/// group, selects that group's target only (a URL may be in several groups); other modules are
/// accepted as blackbox jobs send them.
fn probe_selection(config: &Config, query: &[(String, String)]) -> Result<Selection, Unprobed> {
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let Some(wanted) = param("target") else {
        return Err(Unprobed::Configured(
            StatusCode::BAD_REQUEST,
            "/probe needs a target parameter: /probe?target=URL\n".into(),
        ));
    };
    let matching: Vec<&str> = config
        .targets
        .iter()
        .filter(|t| t.url.raw == *wanted || t.name.as_deref() == Some(wanted.as_str()))
        .map(|t| &*t.group)
        .collect();
    if matching.is_empty() {
        return Err(Unprobed::NotConfigured(
            wanted.clone(),
            format!(
                "target {wanted:?} is not in the config: /probe probes configured targets only, \
                 by their URL as written or their name, and targets the probe allowlist admits: "
            ),
        ));
    }
    let group = param("module").filter(|m| config.groups.iter().any(|g| g == *m));
    if let Some(module) = group
        && !matching.contains(&module.as_str())
    {
        return Err(Unprobed::Configured(
            StatusCode::NOT_FOUND,
            format!(
                "target {wanted:?} is in group {}, not {module:?}\n",
                matching
                    .iter()
                    .map(|g| format!("{g:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Selection::Target {
        key: wanted.clone(),
        group: group.cloned(),
    })
}

/// The budget for a scrape announcing `timeout` seconds: `timeout - offset`, but never less
/// than half the timeout, so that a short scrape timeout still leaves time to answer and the
/// budget grows with the timeout; `None` without a header (the prober's default budget then).
pub fn scrape_budget(timeout: Option<f64>, offset: Duration) -> Option<Duration> {
    let t = timeout.filter(|t| t.is_finite() && *t > 0.0)?;
    let t = Duration::try_from_secs_f64(t.min(86_400.0)).ok()?;
    Some(t.saturating_sub(offset).max(t / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_arithmetic() {
        let half = Duration::from_millis(500);
        let cases = [
            (None, None),
            (Some(10.0), Some(Duration::from_millis(9500))),
            (Some(0.5), Some(Duration::from_millis(250))),
            (Some(0.51), Some(Duration::from_millis(255))),
            (Some(0.2), Some(Duration::from_millis(100))),
            (Some(1.2), Some(Duration::from_millis(700))),
            (Some(0.0), None),
            (Some(-3.0), None),
            (Some(f64::NAN), None),
            (Some(f64::INFINITY), None),
            (Some(1e12), Some(Duration::from_secs(86_400) - half)),
        ];
        for (header, want) in cases {
            assert_eq!(scrape_budget(header, half), want, "{header:?}");
        }
        // Always inside the scrape timeout, and never shorter for a longer timeout.
        for offset in [Duration::ZERO, half, Duration::from_secs(2)] {
            let mut previous = Duration::ZERO;
            for ms in (10..5000).step_by(10) {
                let t = f64::from(ms) / 1000.0;
                let b = scrape_budget(Some(t), offset).unwrap();
                if offset.is_zero() {
                    assert!(b.as_secs_f64() <= t + 1e-9, "{t}: {b:?}");
                } else {
                    assert!(b.as_secs_f64() < t, "{t} {offset:?}: {b:?}");
                }
                assert!(b >= previous, "{t} {offset:?}: {b:?} < {previous:?}");
                previous = b;
            }
        }
    }
}
