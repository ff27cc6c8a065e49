//! The exporter's HTTP endpoints (hyper), config reload and graceful shutdown.
//!
//! - `GET /metrics`: joins or starts a probe round and answers with its metrics.
//! - `GET /`: the status page of the last round.
//! - `GET /config`: the targets in effect (header values left out).
//! - `GET /-/healthy`, `GET /-/ready`: liveness and readiness.
//! - `POST /-/reload`: reload the targets file.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Config, ConfigError};
use crate::metrics::ChunkedRender;
use crate::prober::{Prober, Selection};
use crate::web::WebConfig;

/// Content type of the text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Loads the config again for a reload.
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Loads the web config (TLS, basic auth) again for a reload.
pub type WebLoader = Box<dyn Fn() -> Result<WebConfig, ConfigError> + Send + Sync>;

/// Reads the resolver's files again for a reload.
pub type DnsLoader = Box<dyn Fn() -> Result<crate::dns::Resolver, ConfigError> + Send + Sync>;

/// How long a client may take for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the endpoints share.
pub struct App {
    /// Runs rounds; holds the config.
    pub prober: Arc<Prober>,
    /// Subtracted from the scrape timeout Prometheus announces.
    pub timeout_offset: Duration,
    /// Reads the targets file again.
    pub loader: Loader,
    /// Reads the web config again, if there is one.
    pub web_loader: Option<WebLoader>,
    /// The web config file, for errors.
    web_file: Option<std::path::PathBuf>,
    /// Reads the resolver's files again, if they are to be reloaded.
    pub dns_loader: Option<DnsLoader>,
    /// TLS and authentication of our endpoints; replaced whole on reload.
    web: std::sync::RwLock<Arc<WebConfig>>,
    /// Serialises reloads.
    reload_lock: tokio::sync::Mutex<()>,
    /// Whether `POST /-/reload` is served (`--web.enable-lifecycle`).
    lifecycle: bool,
    /// The scrape timeout assumed for a scrape that announces none
    /// (`--scrape.default-timeout`); without it the prober's default budget applies.
    default_scrape_timeout: Option<Duration>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("timeout_offset", &self.timeout_offset)
            .finish()
    }
}

impl App {
    /// An app serving `prober`; records the initial load as a successful one.
    pub fn new(prober: Arc<Prober>, timeout_offset: Duration, loader: Loader) -> Self {
        let m = prober.metrics();
        m.reload_ok.set(1);
        m.reload_success_time.set(unix_now());
        App {
            prober,
            timeout_offset,
            loader,
            web_loader: None,
            web_file: None,
            dns_loader: None,
            web: std::sync::RwLock::new(Arc::new(WebConfig::open())),
            reload_lock: tokio::sync::Mutex::new(()),
            lifecycle: false,
            default_scrape_timeout: None,
        }
    }

    /// Treat a scrape that announces no timeout as one that announced `timeout`
    /// (`--scrape.default-timeout`).
    pub fn with_default_scrape_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.default_scrape_timeout = timeout;
        self
    }

    /// Serve `POST /-/reload` (`--web.enable-lifecycle`); without it the endpoint answers 403,
    /// as Prometheus's does.
    pub fn with_lifecycle(mut self, on: bool) -> Self {
        self.lifecycle = on;
        self
    }

    /// Serve with TLS and authentication from a web config file, reloaded with the targets.
    pub fn with_web(mut self, web: WebConfig, file: std::path::PathBuf, loader: WebLoader) -> Self {
        self.web = std::sync::RwLock::new(Arc::new(web));
        self.web_file = Some(file);
        self.web_loader = Some(loader);
        self
    }

    /// Read the resolver's files again on every reload.
    pub fn with_dns(mut self, loader: DnsLoader) -> Self {
        self.dns_loader = Some(loader);
        self
    }

    /// The web config in force.
    pub fn web(&self) -> Arc<WebConfig> {
        self.web.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Load the targets file again; a bad file keeps the old config in use.
    pub async fn reload(&self) -> Result<usize, ConfigError> {
        let _guard = self.reload_lock.lock().await;
        let m = self.prober.metrics();
        // Loading reads files and may take a while for a large file: keep it off the worker's
        // async duties.
        let loaded = tokio::task::block_in_place(|| {
            (self.loader)().and_then(|config| {
                let web = self.web_loader.as_ref().map(|load| load()).transpose()?;
                let dns = self.dns_loader.as_ref().map(|load| load()).transpose()?;
                if let Some(next) = &web
                    && let Some(lost) = self.web().weakened_by(next)
                {
                    return Err(ConfigError {
                        file: self.web_file.clone().unwrap_or_default(),
                        line: 1,
                        column: 1,
                        message: format!(
                            "the new web config turns {lost} off; a reload never weakens the \
                             endpoint's protection, restart the exporter to do that"
                        ),
                    });
                }
                Ok((config, web, dns))
            })
        });
        match loaded {
            Ok((config, web, dns)) => {
                let n = config.targets.len();
                if let Some(dns) = dns {
                    self.prober.set_resolver(dns);
                }
                self.prober.set_config(config);
                if let Some(web) = web {
                    *self.web.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(web);
                }
                m.reload_ok.set(1);
                m.reload_success_time.set(unix_now());
                // The old config's memory, once no round holds it, goes back to the system.
                crate::sys::release_free_memory();
                tracing::info!(targets = n, "config reloaded");
                Ok(n)
            }
            Err(e) => {
                m.reload_ok.set(0);
                tracing::error!(error = %e, "config reload failed; keeping the previous config");
                Err(e)
            }
        }
    }

    /// The probe budget of a scrape: the announced scrape timeout (else
    /// `--scrape.default-timeout`) minus the offset; `None` leaves the prober's default.
    pub fn budget(&self, header: Option<&HeaderValue>) -> Option<Duration> {
        let announced = header
            .and_then(|h| h.to_str().ok())
            .and_then(|s| s.trim().parse().ok());
        scrape_budget(announced, self.timeout_offset).or_else(|| {
            scrape_budget(
                self.default_scrape_timeout.map(|d| d.as_secs_f64()),
                self.timeout_offset,
            )
        })
    }
}

/// Seconds since the epoch, as a float.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The budget for a scrape announcing `timeout` seconds: `timeout - offset`, but never less
/// than half the timeout, so that a short scrape timeout still leaves time to answer and the
/// budget grows with the timeout; `None` without a header (the prober's default budget then).
pub fn scrape_budget(timeout: Option<f64>, offset: Duration) -> Option<Duration> {
    let t = timeout.filter(|t| t.is_finite() && *t > 0.0)?;
    let t = Duration::try_from_secs_f64(t.min(86_400.0)).ok()?;
    Some(t.saturating_sub(offset).max(t / 2))
}

/// Serve on `listener` until `shutdown` completes, then let in-flight requests finish for up
/// to [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
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
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = app.web().tls.clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tls {
                        None => serve_connection(stream, app, watcher).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(tls, app, watcher).await,
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
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period");
    }
}

/// Serve HTTP/1.1 on one connection, plain or TLS, until it ends or shutdown drains it. A
/// client that stops reading is cut off after [`WRITE_STALL_TIMEOUT`], one that keeps going
/// after [`MAX_REQUESTS_PER_CONNECTION`] requests or [`MAX_CONNECTION_AGE`].
async fn serve_connection<S>(io: S, app: Arc<App>, watcher: hyper_util::server::graceful::Watcher)
where
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
                let (app, served) = (app.clone(), served.clone());
                async move {
                    let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let mut r = handle(app, req).await?;
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

/// Fails a connection whose writes make no progress for `limit`: hyper has no write timeout,
/// and a client that never reads would otherwise hold its connection slot and the response it
/// pins forever.
struct StallGuard<S> {
    /// The connection.
    inner: S,
    /// How long a write may stay pending.
    limit: Duration,
    /// Running while a write is pending; cleared by progress.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    /// Guard `inner`.
    fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a write step: progress clears the clock, `Pending` starts it or checks it.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        step: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if step.is_ready() {
            self.stalled = None;
            return step;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let step = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, step)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let step = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, step)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let step = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, step)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let step = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, step)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body: for `/metrics`, the round's probe metrics rendered chunk by chunk as
/// hyper asks for them, then fixed chunks (the exporter's own metrics); for the rest, fixed
/// chunks only.
#[derive(Debug, Default)]
pub struct Chunks {
    /// Renders the probe metrics, while there are any left.
    probes: Option<ChunkedRender>,
    /// Sent after the probe metrics.
    tail: std::collections::VecDeque<Bytes>,
    /// Compresses every chunk when the client accepts gzip; finished after the last chunk.
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl Chunks {
    /// The next uncompressed chunk.
    fn next_plain(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.probes.as_mut().and_then(ChunkedRender::next_chunk) {
            return Some(chunk);
        }
        self.probes = None;
        self.tail.pop_front()
    }

    /// The next chunk as sent: compressed when gzip is on.
    fn next_sent(&mut self) -> Option<Bytes> {
        loop {
            let plain = self.next_plain();
            let Some(encoder) = self.gzip.as_mut() else {
                return plain;
            };
            match plain {
                Some(chunk) => {
                    // Writing into a Vec cannot fail.
                    let _ = encoder.write_all(&chunk);
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                None => {
                    let out = self
                        .gzip
                        .take()
                        .and_then(|e| e.finish().ok())
                        .unwrap_or_default();
                    return Some(Bytes::from(out));
                }
            }
        }
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.next_sent().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.probes.is_none() && self.tail.is_empty() && self.gzip.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.probes.is_some() || self.gzip.is_some() {
            return hyper::body::SizeHint::default();
        }
        let n: usize = self.tail.iter().map(Bytes::len).sum();
        hyper::body::SizeHint::with_exact(n as u64)
    }
}

/// Whether an `Accept-Encoding` header accepts gzip: `gzip` (or `*` when gzip is not named)
/// with a quality above zero (RFC 9110 §12.5.3: `q=0`, `q=0.0`, `q=0.000` refuse it).
fn accepts_gzip(header: Option<&HeaderValue>) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let mut gzip = None;
    let mut star = None;
    for part in value.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let coding = fields.next().unwrap_or_default();
        let quality = fields
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .next_back()
            .map_or(1.0, |v| v.parse::<f64>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality > 0.0);
        } else if coding == "*" {
            star = Some(quality > 0.0);
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// A request's query string as decoded pairs.
fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
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
/// group, must be the target's group; other modules are accepted as blackbox jobs send them.
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
    let Some(t) = config
        .targets
        .iter()
        .find(|t| t.url.raw == *wanted || t.name.as_deref() == Some(wanted.as_str()))
    else {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "target {wanted:?} is not in the config: /probe probes configured targets only, \
                 by their URL as written or their name\n"
            ),
        ));
    };
    if let Some(module) = param("module")
        && config.groups.iter().any(|g| g == module)
        && **module != *t.group
    {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "target {wanted:?} is in group {:?}, not {module:?}\n",
                &*t.group
            ),
        ));
    }
    Ok(Selection::Target(wanted.clone()))
}

/// A response with a body and content type.
fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Chunks> {
    respond(
        status,
        content_type,
        Chunks {
            probes: None,
            tail: [body.into()]
                .into_iter()
                .filter(|b| !b.is_empty())
                .collect(),
            gzip: None,
        },
    )
}

/// A response with a prepared body.
fn respond(status: StatusCode, content_type: &'static str, body: Chunks) -> Response<Chunks> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Route one request.
async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Chunks>, Infallible> {
    let text = "text/plain; charset=utf-8";
    let web = app.web();
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
            let mut r = reply(StatusCode::UNAUTHORIZED, text, "unauthorized\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"http_status_exporter\""),
            );
            return Ok(r);
        }
    }
    let path = req.uri().path();
    let method = req.method().clone();
    let allowed: &[Method] = match path {
        "/metrics" | "/probe" | "/" | "/target" | "/config" | "/-/healthy" | "/-/ready" => {
            &[Method::GET, Method::HEAD]
        }
        "/-/reload" => &[Method::POST],
        _ => return Ok(reply(StatusCode::NOT_FOUND, text, "not found\n")),
    };
    if !allowed.contains(&method) {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, text, "method not allowed\n");
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
        // HEAD learns the headers without costing a round.
        "/metrics" | "/probe" if method == Method::HEAD => {
            reply(StatusCode::OK, METRICS_CONTENT_TYPE, "")
        }
        "/metrics" | "/probe" => {
            let query = query_pairs(&req);
            let selection = if path == "/probe" {
                match probe_selection(&app.prober.config(), &query) {
                    Ok(s) => s,
                    Err((status, message)) => return Ok(reply(status, text, message)),
                }
            } else {
                match group_selection(&app.prober.config(), &query) {
                    Ok(s) => s,
                    Err(message) => return Ok(reply(StatusCode::NOT_FOUND, text, message)),
                }
            };
            let budget = app.budget(req.headers().get("x-prometheus-scrape-timeout-seconds"));
            match app.prober.scrape_selection(selection, budget).await {
                Ok(round) => {
                    // `/probe` answers with the target's series only, as blackbox does.
                    let mut tail = Vec::with_capacity(8192);
                    if path == "/metrics" {
                        if let Err(e) = app.prober.metrics().render(&mut tail) {
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
                        Chunks {
                            probes: Some(ChunkedRender::new(round)),
                            tail: [Bytes::from(tail)].into(),
                            // The fastest level: a round's text is very repetitive anyway.
                            gzip: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
                        },
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
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, text, format!("{e}\n")),
            }
        }
        "/-/healthy" | "/-/ready" => reply(StatusCode::OK, text, "OK\n"),
        "/config" => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            crate::status_page::render_config(&app.prober.config()),
        ),
        "/-/reload" if !app.lifecycle => reply(
            StatusCode::FORBIDDEN,
            text,
            "the lifecycle endpoints are off; start the exporter with --web.enable-lifecycle \
             or reload with SIGHUP\n",
        ),
        // The error (which may quote a header value from the file) goes to the log only.
        "/-/reload" => match app.reload().await {
            Ok(n) => reply(
                StatusCode::OK,
                text,
                format!("config reloaded: {n} targets\n"),
            ),
            Err(_) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                text,
                "config reload failed; the previous config stays in use (see the exporter's log)\n",
            ),
        },
        "/target" => {
            let query = query_pairs(&req);
            match crate::status_page::render_target(
                &app.prober.config(),
                app.prober.history(),
                &query,
            ) {
                Some(page) => reply(StatusCode::OK, "text/html; charset=utf-8", page),
                None => reply(
                    StatusCode::NOT_FOUND,
                    text,
                    "no such target: /target?url=URL (and &name=NAME) of a configured target\n",
                ),
            }
        }
        _ => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::status_page::render(
                &app.prober.config(),
                app.prober.last_round().as_deref(),
                app.prober.history(),
                &crate::status_page::View::from_query(&query_pairs(&req)),
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&h("gzip"))));
        assert!(accepts_gzip(Some(&h("br, GZIP;q=0.5, deflate"))));
        assert!(!accepts_gzip(Some(&h("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("gzip; q=0.000"))));
        assert!(!accepts_gzip(Some(&h("gzip;Q=0.0, identity"))));
        assert!(accepts_gzip(Some(&h("gzip;q=0.001"))));
        assert!(accepts_gzip(Some(&h("*"))));
        assert!(!accepts_gzip(Some(&h("*, gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("*;q=0"))));
        assert!(!accepts_gzip(Some(&h("identity"))));
        assert!(!accepts_gzip(None));
    }

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
