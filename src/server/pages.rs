//! The pages for people: `GET /` (the status page of the last round), `GET /target` (one
//! target's history) and `GET /config` (the targets in effect, header values left out).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::State;
use super::body::{Chunks, HTML, TEXT, query_pairs, reply};
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
        ),
    )
}

/// `GET /target?url=URL`: one target's page.
pub(super) fn target(state: &State, req: &Request<Incoming>) -> Response<Chunks> {
    let query = query_pairs(req);
    match status_page::render_target(&state.prober.config(), state.prober.history(), &query) {
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
