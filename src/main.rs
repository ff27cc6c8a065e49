//! The `http_status_exporter` binary: flags, logging, config, listener, run.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use http_status_exporter::cli::{self, Command};
use http_status_exporter::config;
use http_status_exporter::metrics::ExporterMetrics;
use http_status_exporter::prober::Prober;
use http_status_exporter::round::Limits;
use http_status_exporter::server::{self, App};
use http_status_exporter::{check, dns, logging, sys, web};

fn main() -> ExitCode {
    sys::ignore_sighup();
    sys::limit_malloc_arenas();
    // Arguments that are not UTF-8 are usage errors, not a panic.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|bad| {
                format!("argument {bad:?} is not UTF-8 text\nRun with --help for usage.")
            })
        })
        .collect();
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let command = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Help(text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Version => {
                println!("http_status_exporter {}", env!("CARGO_PKG_VERSION"));
                Ok(ExitCode::SUCCESS)
            }
            Command::Check(args) => run_check(args).await,
            Command::Serve(args) => run_serve(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // A config error already reads `file:line:column: message`.
            match e.downcast_ref::<config::ConfigError>() {
                Some(c) => eprintln!("{c}"),
                None => eprintln!("http_status_exporter: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Probe once and print; exit 0 when every target succeeded, 1 when one failed, 2 when the
/// targets could not be read or the results could not be written.
async fn run_check(args: cli::CheckArgs) -> anyhow::Result<ExitCode> {
    logging::init(&args.logging);
    let usage_failure = |e: &dyn std::fmt::Display| {
        eprintln!("{e}");
        Ok(ExitCode::from(2))
    };
    let mut config = match &args.config_file {
        Some(f) => match config::load(f) {
            Ok(c) => c,
            Err(e) => return usage_failure(&e),
        },
        None => match config::from_urls(&[], args.timeout) {
            Ok(c) => c,
            Err(e) => return usage_failure(&e),
        },
    };
    if !args.urls.is_empty() {
        match config::from_urls(&args.urls, args.timeout) {
            Ok(extra) => config.targets.extend(extra.targets),
            Err(e) => return usage_failure(&e),
        }
    }
    let fd_limit = sys::raise_fd_limit();
    let concurrency = sys::concurrency(args.concurrency, fd_limit);
    let resolver = match dns::Resolver::load(&args.dns, fd_limit) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => return usage_failure(&e),
    };
    let style = check::Style::detect(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let mut stdout = std::io::stdout().lock();
    let outcome = check::run(
        config,
        &resolver,
        Limits { concurrency },
        args.output,
        style,
        &mut stdout,
    )
    .await;
    Ok(match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("http_status_exporter: cannot write the results: {e}");
            ExitCode::from(2)
        }
    })
}

/// Run the exporter until SIGTERM or SIGINT.
async fn run_serve(args: cli::ServeArgs) -> anyhow::Result<ExitCode> {
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
        return Ok(ExitCode::SUCCESS);
    }
    let concurrency = sys::concurrency(args.concurrency, fd_limit);
    let resolver_description = resolver.describe();
    let metrics = ExporterMetrics::new().context("registering metrics")?;
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
    let listener = listener.with_context(|| format!("cannot listen on {}", failures.join(", ")))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;
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
    Ok(ExitCode::SUCCESS)
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
