//! Lifecycle endpoints: `GET /-/healthy`, `GET /-/ready` and `POST /-/reload`
//! (`--web.enable-lifecycle`).

use hyper::{Response, StatusCode};

use super::State;
use super::body::{Chunks, TEXT, reply};

/// `GET /-/healthy` and `GET /-/ready`: the exporter serves, so it is both.
pub(super) fn healthy() -> Response<Chunks> {
    reply(StatusCode::OK, TEXT, "OK\n")
}

/// `POST /-/reload`: load the files again, when the lifecycle endpoints are on. The error
/// (which may quote a header value from the file) goes to the log only.
pub(super) async fn reload(state: &State) -> Response<Chunks> {
    if !state.lifecycle {
        return reply(
            StatusCode::FORBIDDEN,
            TEXT,
            "the lifecycle endpoints are off; start the exporter with --web.enable-lifecycle \
             or reload with SIGHUP\n",
        );
    }
    match state.reloader.reload().await {
        Ok(n) => reply(
            StatusCode::OK,
            TEXT,
            format!("config reloaded: {n} targets\n"),
        ),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            "config reload failed; the previous config stays in use (see the exporter's log)\n",
        ),
    }
}
