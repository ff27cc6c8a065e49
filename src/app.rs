//! Running the exporter: load the config and the files it names, listen, serve until a
//! shutdown signal, and reload on SIGHUP, `POST /-/reload` (see [`crate::server`]) or when the
//! targets file changes (`--config.auto-reload-interval`).

use std::sync::Arc;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::cli;
use crate::config::{self, Config, ConfigError};
use crate::metrics::ExporterMetrics;
use crate::prober::Prober;
use crate::round::Limits;
use crate::server::{self, State, WebSlot};
use crate::web::WebConfig;
use crate::{dns, logging, sys, web};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be loaded: it reads `file:line:column: message`.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The exporter's own metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listen address could not be bound (every address tried and its error), or systemd
    /// passed no usable socket.
    #[error("cannot listen on {0}")]
    Listen(String),
    /// The listener's own address could not be read.
    #[error("reading the listen address: {0}")]
    Address(std::io::Error),
}

/// Run the exporter until SIGTERM or SIGINT (or, with `--config.check`, validate and print).
pub async fn run(args: cli::ServeArgs) -> Result<(), RunError> {
    logging::init(&args.logging);
    // Taken before the config loads, so that a SIGHUP during a long load is a reload once the
    // exporter runs, not lost and not fatal.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let path = args.config_file.clone();
    let shard = args.shard;
    let load = move |p: &std::path::Path| {
        let mut c = config::load(p)?;
        if let Some(s) = shard {
            s.apply(&mut c);
        }
        Ok::<_, config::ConfigError>(c)
    };
    // Read before loading: a change between the two is seen as a change by auto-reload.
    let initial_content = config::read_bounded(&path, "targets file");
    let config = load(&path)?;
    let web = args.web_config_file.as_deref().map(web::load).transpose()?;
    let fd_limit = sys::raise_fd_limit();
    let resolver = dns::Resolver::load(&args.dns, fd_limit)?;
    if args.config_check {
        println!(
            "{}: OK, {}",
            path.display(),
            crate::check::count(config.targets.len(), "target")
        );
        if let Some(f) = &args.web_config_file {
            println!("{}: OK", f.display());
        }
        println!("dns: OK, {}", resolver.describe());
        return Ok(());
    }
    // What decoding the file used and freed goes back to the system before serving.
    sys::release_free_memory();
    // The kernel's receive stamps stay on from the first round (see `stamp::keep_on`).
    crate::stamp::keep_on();
    // The probe threads start with the exporter, not with its first round.
    crate::probe_threads::ProbeThreads::get();
    let concurrency = sys::concurrency(args.concurrency, fd_limit);
    let resolver_description = resolver.describe();
    let metrics = ExporterMetrics::new()?;
    let targets = config.targets.len();
    let prober = Arc::new(
        Prober::new(config, resolver, Limits { concurrency }, metrics)
            .with_min_interval(args.min_interval)
            .with_history(args.history),
    );
    let web_slot = Arc::new(WebSlot::new(web.unwrap_or_else(WebConfig::open)));
    let loader_path = path.clone();
    let dns_settings = args.dns.clone();
    let reloader = Arc::new(Reloader(Arc::new(Files {
        prober: prober.clone(),
        web: web_slot.clone(),
        file: path.clone(),
        loader: Box::new(move || load(&loader_path)),
        web_loader: args.web_config_file.clone().map(|file| {
            let reread = file.clone();
            let loader: WebLoader = Box::new(move || web::load(&reread));
            (file, loader)
        }),
        dns_loader: Box::new(move || dns::Resolver::load(&dns_settings, fd_limit)),
        lock: std::sync::Mutex::new(()),
    })));
    reloader.0.loaded();
    let state = Arc::new(State {
        prober,
        timeout_offset: args.timeout_offset,
        web: web_slot,
        reloader: reloader.clone(),
        lifecycle: args.enable_lifecycle,
        default_scrape_timeout: args.default_scrape_timeout,
        telemetry_path: args.telemetry_path.clone(),
    });
    let listeners = listen(&args).await?;
    let mut local = Vec::new();
    for l in &listeners {
        local.push(l.local_addr().map_err(RunError::Address)?);
    }
    tracing::info!(
        address = %local[0],
        addresses = %local.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        config = %path.display(),
        targets,
        concurrency,
        fd_limit,
        shard = %shard.map_or("all".to_owned(), |s| format!("{} of {}", s.index, s.count)),
        tls = state.web.get().tls.is_some(),
        dns = %resolver_description,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    spawn_reload_on_sighup(reloader.clone(), hangups);
    if let Some(every) = args.auto_reload_interval {
        spawn_auto_reload(reloader, path.clone(), every, initial_content);
    }
    server::serve(listeners, state, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The sockets to serve on: systemd's (`--web.systemd-socket`), or one per
/// `--web.listen-address`, where `:port` is every address (IPv6 and IPv4, or IPv4 alone where
/// IPv6 is off). Every address must be bound, as exporter-toolkit requires.
async fn listen(args: &cli::ServeArgs) -> Result<Vec<tokio::net::TcpListener>, RunError> {
    if args.systemd_socket {
        return sys::systemd_listeners()
            .and_then(|ls| {
                ls.into_iter()
                    .map(|l| tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string()))
                    .collect()
            })
            .map_err(|e| RunError::Listen(format!("systemd sockets: {e}")));
    }
    let mut listeners = Vec::new();
    for wanted in &args.listen_address {
        let mut failures = Vec::new();
        let mut bound = None;
        for address in cli::listen_addresses(wanted) {
            match tokio::net::TcpListener::bind(&address).await {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => failures.push(format!("{address}: {e}")),
            }
        }
        listeners.push(bound.ok_or_else(|| RunError::Listen(failures.join(", ")))?);
    }
    Ok(listeners)
}

/// Reload the config on every SIGHUP.
fn spawn_reload_on_sighup(
    reloader: Arc<Reloader>,
    hangups: std::io::Result<tokio::signal::unix::Signal>,
) {
    tokio::spawn(async move {
        let Ok(mut hup) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reloader.reload().await;
        }
    });
}

/// Poll the targets file and reload when its content changed.
fn spawn_auto_reload(
    reloader: Arc<Reloader>,
    path: std::path::PathBuf,
    every: std::time::Duration,
    initial: Result<String, config::ConfigError>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        let mut last = initial;
        loop {
            tick.tick().await;
            let read_path = path.clone();
            let now = tokio::task::spawn_blocking(move || {
                config::read_bounded(&read_path, "targets file")
            })
            .await
            .unwrap_or_else(|e| {
                Err(config::ConfigError::new(
                    path.clone(),
                    1,
                    1,
                    format!("cannot read the targets file: {e}"),
                ))
            });
            // A changed file reloads; so does a file that vanished or became unreadable, so
            // that the failure is logged and counted as SIGHUP would (once, not every poll).
            if now != last {
                match &now {
                    Ok(_) => tracing::info!(config = %path.display(), "targets file changed"),
                    Err(e) => tracing::warn!(error = %e, "targets file cannot be read"),
                }
                let _ = reloader.reload().await;
                last = now;
            }
        }
    });
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            tracing::warn!("cannot listen for shutdown signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Loads the config again for a reload.
type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Loads the web config (TLS, basic auth) again for a reload.
type WebLoader = Box<dyn Fn() -> Result<WebConfig, ConfigError> + Send + Sync>;

/// Reads the resolver's files again for a reload.
type DnsLoader = Box<dyn Fn() -> Result<dns::Resolver, ConfigError> + Send + Sync>;

/// Reloads the targets file, the web config and the resolver's files together, on SIGHUP,
/// `POST /-/reload` or a changed file; a bad file keeps everything in use.
struct Reloader(Arc<Files>);

/// The files a reload reads, how to read each, and what takes what was read.
struct Files {
    /// Takes the new config and resolver.
    prober: Arc<Prober>,
    /// Takes the new web config.
    web: Arc<WebSlot>,
    /// The targets file, which names a reload that stopped.
    file: PathBuf,
    /// Reads the targets file again.
    loader: Loader,
    /// The web config file and how to read it again, if there is one.
    web_loader: Option<(PathBuf, WebLoader)>,
    /// Reads the resolver's files again.
    dns_loader: DnsLoader,
    /// Serialises reloads, taken on the thread that reloads.
    lock: std::sync::Mutex<()>,
}

impl Files {
    /// Record a successful load (the first one, at start).
    fn loaded(&self) {
        self.prober.metrics().record_load(true);
    }

    /// Read every file again and put what was read in use; a bad file keeps everything in
    /// use. Blocks for as long as reading takes.
    fn reload(&self) -> Result<usize, ConfigError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (config, web, dns) = match self.load() {
            Ok(loaded) => loaded,
            Err(e) => return Err(self.failed(e)),
        };
        let n = config.targets.len();
        self.prober.set_resolver(dns);
        self.prober.set_config(config);
        if let Some(web) = web {
            self.web.set(web);
        }
        self.loaded();
        tracing::info!(targets = n, "config reloaded");
        // The old config's memory, once no round holds it, goes back to the system.
        sys::release_free_memory();
        Ok(n)
    }

    /// The files read again: the config, the web config if there is one, the resolver. A
    /// web config that would weaken the endpoint's protection is an error.
    fn load(&self) -> Result<(Config, Option<WebConfig>, dns::Resolver), ConfigError> {
        let config = (self.loader)()?;
        let web = match &self.web_loader {
            Some((file, load)) => {
                let next = load()?;
                if let Some(lost) = self.web.get().weakened_by(&next) {
                    return Err(ConfigError::new(
                        file.clone(),
                        1,
                        1,
                        format!(
                            "the new web config turns {lost} off; a reload never weakens the \
                             endpoint's protection, restart the exporter to do that"
                        ),
                    ));
                }
                Some(next)
            }
            None => None,
        };
        let dns = (self.dns_loader)()?;
        Ok((config, web, dns))
    }

    /// Count and log a reload that failed with `e`.
    fn failed(&self, e: ConfigError) -> ConfigError {
        self.prober.metrics().record_load(false);
        tracing::error!(error = %e, "config reload failed; keeping the previous config");
        e
    }
}

impl Reloader {
    /// Load the files again; a bad file keeps the old config in use. Parsing a large targets
    /// file, reading the files it names and giving the old config's memory back take a
    /// while: they run on a blocking thread, so that no runtime thread that serves scrapes
    /// waits for them.
    async fn reload(&self) -> Result<usize, ConfigError> {
        let files = self.0.clone();
        tokio::task::spawn_blocking(move || files.reload())
            .await
            .unwrap_or_else(|e| {
                let message = format!("the reload stopped: {e}");
                Err(self
                    .0
                    .failed(ConfigError::new(self.0.file.clone(), 1, 1, message)))
            })
    }
}

impl server::Reload for Reloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<usize, ConfigError>> + Send + '_>> {
        Box::pin(Reloader::reload(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// The targets file the reloader reads.
    const TARGETS: &str = "targets: ['http://127.0.0.1:9/', 'http://127.0.0.1:9/x']\n";

    /// A reloader whose targets file takes `parse` to load.
    fn reloader(parse: Duration) -> Reloader {
        let config = config::parse(Path::new("t.yml"), "targets: []\n").unwrap();
        let prober = Prober::new(
            config,
            dns::Resolver::system(1),
            Limits { concurrency: 4 },
            ExporterMetrics::new().unwrap(),
        );
        Reloader(Arc::new(Files {
            prober: Arc::new(prober),
            web: Arc::new(WebSlot::new(WebConfig::open())),
            file: "t.yml".into(),
            loader: Box::new(move || {
                std::thread::sleep(parse);
                config::parse(Path::new("t.yml"), TARGETS)
            }),
            web_loader: None,
            dns_loader: Box::new(|| Ok(dns::Resolver::system(1))),
            lock: std::sync::Mutex::new(()),
        }))
    }

    /// The runtime has one thread here: a reload that parsed on it would stop every other
    /// task (the scrapes) until it was done.
    #[tokio::test]
    async fn a_reload_parses_off_the_runtime_threads() {
        let reloader = reloader(Duration::from_millis(600));
        let ticks = tokio::spawn(async {
            let mut longest = Duration::ZERO;
            for _ in 0..40 {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                longest = longest.max(t.elapsed());
            }
            longest
        });
        assert_eq!(reloader.reload().await, Ok(2));
        assert_eq!(reloader.0.prober.config().targets.len(), 2);
        let longest = ticks.await.unwrap();
        assert!(
            longest < Duration::from_millis(300),
            "a tick waited {longest:?}"
        );
    }
}
