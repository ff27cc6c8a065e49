//! Running the exporter: load the config and the files it names, listen, serve until a
//! shutdown signal, and reload on SIGHUP, `POST /-/reload` (see [`crate::server`]) or when the
//! targets file changes (`--config.auto-reload-interval`).

use std::sync::Arc;

use crate::cli;
use crate::config;
use crate::metrics::ExporterMetrics;
use crate::prober::Prober;
use crate::round::Limits;
use crate::server::{self, App};
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
    /// No listen address could be bound; every address tried and its error.
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
        println!("{}: OK, {} targets", path.display(), config.targets.len());
        if let Some(f) = &args.web_config_file {
            println!("{}: OK", f.display());
        }
        println!("dns: OK, {}", resolver.describe());
        return Ok(());
    }
    let concurrency = sys::concurrency(args.concurrency, fd_limit);
    let resolver_description = resolver.describe();
    let metrics = ExporterMetrics::new()?;
    let targets = config.targets.len();
    let prober = Arc::new(
        Prober::new(config, resolver, Limits { concurrency }, metrics)
            .with_min_interval(args.min_interval)
            .with_history(args.history),
    );
    let loader_path = path.clone();
    let mut app = App::new(
        prober,
        args.timeout_offset,
        Box::new(move || load(&loader_path)),
    );
    let dns_settings = args.dns.clone();
    app = app.with_dns(Box::new(move || {
        dns::Resolver::load(&dns_settings, fd_limit)
    }));
    if let (Some(web), Some(file)) = (web, args.web_config_file.clone()) {
        let reread = file.clone();
        app = app.with_web(web, file, Box::new(move || web::load(&reread)));
    }
    app = app
        .with_lifecycle(args.enable_lifecycle)
        .with_default_scrape_timeout(args.default_scrape_timeout);
    let app = Arc::new(app);
    let mut listener = None;
    let mut failures = Vec::new();
    for address in cli::listen_addresses(&args.listen_address) {
        match tokio::net::TcpListener::bind(&address).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(e) => failures.push(format!("{address}: {e}")),
        }
    }
    let listener = listener.ok_or_else(|| RunError::Listen(failures.join(", ")))?;
    let local = listener.local_addr().map_err(RunError::Address)?;
    tracing::info!(
        address = %local,
        config = %path.display(),
        targets,
        concurrency,
        fd_limit,
        shard = %shard.map_or("all".to_owned(), |s| format!("{} of {}", s.index, s.count)),
        tls = app.web().tls.is_some(),
        dns = %resolver_description,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    spawn_reload_on_sighup(app.clone(), hangups);
    if let Some(every) = args.auto_reload_interval {
        spawn_auto_reload(app.clone(), path.clone(), every, initial_content);
    }
    server::serve(listener, app, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Reload the config on every SIGHUP.
fn spawn_reload_on_sighup(app: Arc<App>, hangups: std::io::Result<tokio::signal::unix::Signal>) {
    tokio::spawn(async move {
        let Ok(mut hup) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = app.reload().await;
        }
    });
}

/// Poll the targets file and reload when its content changed.
fn spawn_auto_reload(
    app: Arc<App>,
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
                Err(config::ConfigError {
                    file: path.clone(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read the targets file: {e}"),
                })
            });
            // A changed file reloads; so does a file that vanished or became unreadable, so
            // that the failure is logged and counted as SIGHUP would (once, not every poll).
            if now != last {
                match &now {
                    Ok(_) => tracing::info!(config = %path.display(), "targets file changed"),
                    Err(e) => tracing::warn!(error = %e, "targets file cannot be read"),
                }
                let _ = app.reload().await;
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
