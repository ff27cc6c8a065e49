//! `GET /metrics` and `GET /probe`: pick the targets a scrape asks for, derive its budget from
//! the scrape timeout Prometheus announces, join or start a round and answer with its metrics.

use std::io::Write as _;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::body::{Chunks, METRICS_CONTENT_TYPE, TEXT, accepts_gzip, query_pairs, reply, respond};
use crate::config::Config;
use crate::prober::Selection;

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
    let config = state.prober.config();
    let selection = if probe {
        match probe_selection(&config, &query) {
            Ok(s) => s,
            Err((status, message)) => return reply(status, TEXT, message),
        }
    } else {
        match group_selection(&config, &query) {
            Ok(s) => s,
            Err(message) => return reply(StatusCode::NOT_FOUND, TEXT, message),
        }
    };
    drop(config);
    let budget = state.budget(req.headers().get("x-prometheus-scrape-timeout-seconds"));
    let round = match state.prober.scrape_selection(selection, budget).await {
        Ok(round) => round,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    };
    // `/probe` answers with the target's series only, as blackbox does.
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

/// The target `/probe?target=URL&module=M` asks for: one that is in the config, by its URL as
/// written or its name. Nothing else is ever probed (no open proxy). `module`, when it names a
/// group, selects that group's target only (a URL may be in several groups); other modules are
/// accepted as blackbox jobs send them.
fn probe_selection(
    config: &Config,
    query: &[(String, String)],
) -> Result<Selection, (StatusCode, String)> {
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let Some(wanted) = param("target") else {
        return Err((
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
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "target {wanted:?} is not in the config: /probe probes configured targets only, \
                 by their URL as written or their name\n"
            ),
        ));
    }
    let group = param("module").filter(|m| config.groups.iter().any(|g| g == *m));
    if let Some(module) = group
        && !matching.contains(&module.as_str())
    {
        return Err((
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
