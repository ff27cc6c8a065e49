//! The exporter's HTTP endpoints (hyper) and graceful shutdown, one file per endpoint family:
//!
//! - [`scrape`]: `GET /metrics` (or `--web.telemetry-path`: a round of every target, or of
//!   `?group=`), `GET /probe`.
//! - `pages`: `GET /` (the status page, which links every endpoint), `GET /target`,
//!   `GET /config`, `GET /sd` (the targets for Prometheus' `http_sd_configs`).
//! - `lifecycle`: `GET /-/healthy`, `GET /-/ready`, `POST /-/reload`.
//! - `body`: response bodies (chunked metrics, gzip); `conn`: the stalled-client guard.
//!
//! Reloading itself is the application's ([`Reload`]): the server only asks for it.

mod body;
mod conn;
mod lifecycle;
mod pages;
pub mod scrape;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config_error::ConfigError;
use crate::prober::Prober;
use crate::web::WebConfig;
use body::{Chunks, TEXT, reply};
use conn::StallGuard;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write may make no progress (a client that does not read) before the connection
/// is closed.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests served on one connection; the last answer says `Connection: close`. Bounds what a
/// client that pipelines requests and never reads can make us hold.
const MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// After this age a connection is told `Connection: close` on its next answer, and it is
/// closed outright [`CONNECTION_GRACE`] later.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// How long past [`MAX_CONNECTION_AGE`] a connection may last.
const CONNECTION_GRACE: Duration = Duration::from_secs(60);

/// Largest request head accepted.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a client may take for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reloading the files, which the application provides: `POST /-/reload` asks for it.
pub trait Reload: Send + Sync {
    /// Load the files again; a bad file keeps everything in use. The number of targets on
    /// success.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<usize, ConfigError>> + Send + '_>>;
}

/// The web config in force (TLS and authentication of our endpoints), replaced whole on
/// reload and read by every request.
#[derive(Debug)]
pub struct WebSlot(RwLock<Arc<WebConfig>>);

impl WebSlot {
    /// A slot holding `web`.
    pub fn new(web: WebConfig) -> Self {
        WebSlot(RwLock::new(Arc::new(web)))
    }

    /// The web config in force.
    pub fn get(&self) -> Arc<WebConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `web` in force.
    pub fn set(&self, web: WebConfig) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(web);
    }
}

/// Everything the endpoints share.
pub struct State {
    /// Runs rounds; holds the config.
    pub prober: Arc<Prober>,
    /// Subtracted from the scrape timeout Prometheus announces.
    pub timeout_offset: Duration,
    /// The web config in force.
    pub web: Arc<WebSlot>,
    /// Reloads the files for `POST /-/reload`.
    pub reloader: Arc<dyn Reload>,
    /// Whether `POST /-/reload` is served (`--web.enable-lifecycle`); without it the endpoint
    /// answers 403, as Prometheus's does.
    pub lifecycle: bool,
    /// The scrape timeout assumed for a scrape that announces none
    /// (`--scrape.default-timeout`); without it the prober's default budget applies.
    pub default_scrape_timeout: Option<Duration>,
    /// The path of the metrics of a round of every target (`--web.telemetry-path`).
    pub telemetry_path: String,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("timeout_offset", &self.timeout_offset)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

impl State {
    /// The probe budget of a scrape: the announced scrape timeout (else
    /// `--scrape.default-timeout`) minus the offset; `None` leaves the prober's default.
    pub fn budget(&self, header: Option<&HeaderValue>) -> Option<Duration> {
        let announced = header
            .and_then(|h| h.to_str().ok())
            .and_then(|s| s.trim().parse().ok());
        scrape::scrape_budget(announced, self.timeout_offset).or_else(|| {
            scrape::scrape_budget(
                self.default_scrape_timeout.map(|d| d.as_secs_f64()),
                self.timeout_offset,
            )
        })
    }
}

/// Serve on every listener until `shutdown` completes, then let in-flight requests finish for up
/// to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let mut turn = 0;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            // A free connection slot; the semaphore is never closed.
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            // Every slot is taken by a slow client: a shutdown must still get through.
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = accept(&listeners, &mut turn) => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = state.web.get().tls.clone();
                let state = state.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tls {
                        None => serve_connection(stream, state, watcher).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(tls, state, watcher).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            // Stop accepting; in-flight requests finish below.
            () = &mut shutdown => break,
        }
    }
    drop(listeners);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period");
    }
}

/// The next connection on any of `listeners`, asking them in turn from `turn` on so that no
/// listener starves another.
async fn accept(
    listeners: &[TcpListener],
    turn: &mut usize,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    std::future::poll_fn(|cx| {
        for k in 0..listeners.len() {
            let i = (*turn + k) % listeners.len();
            if let std::task::Poll::Ready(r) = listeners[i].poll_accept(cx) {
                *turn = i + 1;
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Serve HTTP/1.1 on one connection, plain or TLS, until it ends or shutdown drains it. A
/// client that stops reading is cut off after [`WRITE_STALL_TIMEOUT`], one that keeps going
/// after [`MAX_REQUESTS_PER_CONNECTION`] requests or [`MAX_CONNECTION_AGE`].
async fn serve_connection<S>(
    io: S,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let opened = tokio::time::Instant::now();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(
            TokioIo::new(StallGuard::new(io, WRITE_STALL_TIMEOUT)),
            service_fn(move |req| {
                let (state, served) = (state.clone(), served.clone());
                async move {
                    let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let mut r = handle(state, req).await?;
                    if n >= MAX_REQUESTS_PER_CONNECTION || opened.elapsed() >= MAX_CONNECTION_AGE {
                        r.headers_mut()
                            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(r)
                }
            }),
        );
    match tokio::time::timeout(MAX_CONNECTION_AGE + CONNECTION_GRACE, watcher.watch(conn)).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!("connection closed at its maximum age"),
    }
}

/// Route one request: authenticate, check the method, hand it to its endpoint.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Chunks>, Infallible> {
    let web = state.web.get();
    if web.requires_auth() {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // bcrypt is slow on purpose: keep it off the runtime's worker threads.
        let header = header.map(str::to_owned);
        let check = web.clone();
        let ok = tokio::task::spawn_blocking(move || check.authorized(header.as_deref()))
            .await
            .unwrap_or(false);
        if !ok {
            let mut r = reply(StatusCode::UNAUTHORIZED, TEXT, "unauthorized\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"http_status_exporter\""),
            );
            return Ok(r);
        }
    }
    let path = req.uri().path();
    let metrics = path == state.telemetry_path;
    let allowed: &[Method] = match path {
        _ if metrics => &[Method::GET, Method::HEAD],
        "/probe" | "/" | "/target" | "/config" | "/sd" | "/-/healthy" | "/-/ready" => {
            &[Method::GET, Method::HEAD]
        }
        "/-/reload" => &[Method::POST],
        _ => return Ok(reply(StatusCode::NOT_FOUND, TEXT, "not found\n")),
    };
    if !allowed.contains(req.method()) {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Ok(r);
    }
    Ok(match path {
        _ if metrics => scrape::answer(&state, &req, false).await,
        "/probe" => scrape::answer(&state, &req, true).await,
        "/-/healthy" | "/-/ready" => lifecycle::healthy(),
        "/-/reload" => lifecycle::reload(&state).await,
        "/config" => pages::config(&state),
        "/sd" => pages::service_discovery(&state, &req),
        "/target" => pages::target(&state, &req),
        _ => pages::status(&state, &req),
    })
}
