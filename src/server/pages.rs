//! The pages for people: `GET /` (the status page of the last round), `GET /target` (one
//! target's history), `GET /config` (the targets in effect, header values left out) and
//! `GET /sd` (the targets for Prometheus' `http_sd_configs`).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::State;
use super::body::{Chunks, HTML, JSON, TEXT, query_pairs, reply};
use crate::status_page;

/// `GET /`: the status page, filtered and sorted as its query asks.
pub(super) fn status(state: &State, req: &Request<Incoming>) -> Response<Chunks> {
    reply(
        StatusCode::OK,
        HTML,
        status_page::render(
            &state.prober.config(),
            state.prober.last_round().as_deref(),
            state.prober.history(),
            &status_page::View::from_query(&query_pairs(req)),
            &state.telemetry_path,
        ),
    )
}

/// `GET /target?url=URL`: one target's page.
pub(super) fn target(state: &State, req: &Request<Incoming>) -> Response<Chunks> {
    let query = query_pairs(req);
    let page = status_page::render_target(
        &state.prober.config(),
        state.prober.history(),
        &query,
        &state.telemetry_path,
    );
    match page {
        Some(page) => reply(StatusCode::OK, HTML, page),
        None => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "no such target: /target?url=URL (and &name=NAME) of a configured target\n",
        ),
    }
}

/// `GET /config`: the targets in effect.
pub(super) fn config(state: &State) -> Response<Chunks> {
    reply(
        StatusCode::OK,
        TEXT,
        status_page::render_config(&state.prober.config()),
    )
}

/// `GET /sd`: every configured target in Prometheus' HTTP service discovery format, one
/// group per target: its URL as the address, its group as `__param_module`, its name and
/// labels as labels. A `/probe` job that discovers from here probes exactly the exporter's
/// targets; `?group=G` (repeatable) lists only those groups.
pub(super) fn service_discovery(state: &State, req: &Request<Incoming>) -> Response<Chunks> {
    let config = state.prober.config();
    let wanted: Vec<String> = query_pairs(req)
        .into_iter()
        .filter(|(k, _)| k == "group")
        .map(|(_, v)| v)
        .collect();
    if let Some(unknown) = wanted.iter().find(|g| !config.groups.contains(g)) {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!(
                "unknown group {unknown:?}; the groups are: {}\n",
                config.groups.join(", ")
            ),
        );
    }
    let groups: Vec<serde_json::Value> = config
        .targets
        .iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|g| **g == *t.group))
        .map(|t| {
            let mut labels = serde_json::Map::new();
            labels.insert("__param_module".into(), t.group.as_ref().into());
            if let Some(name) = &t.name {
                labels.insert("name".into(), name.as_str().into());
            }
            if config.uses_groups {
                labels.insert("group".into(), t.group.as_ref().into());
            }
            for (k, v) in &t.labels {
                labels.insert(k.clone(), v.as_str().into());
            }
            serde_json::json!({ "targets": [t.url.raw], "labels": labels })
        })
        .collect();
    reply(
        StatusCode::OK,
        JSON,
        serde_json::Value::Array(groups).to_string() + "\n",
    )
}
