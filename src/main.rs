//! The `http_status_exporter` binary: parse the command line, start the runtime, then run the
//! exporter ([`http_status_exporter::app`]) or the `check` command.

use std::process::ExitCode;

use http_status_exporter::cli::{self, Command};
use http_status_exporter::round::Limits;
use http_status_exporter::{app, check, config, dns, logging, sys};

fn main() -> ExitCode {
    sys::ignore_sighup();
    sys::limit_malloc_arenas();
    sys::fix_mmap_threshold();
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
    runtime.block_on(async move {
        match command {
            Command::Help(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Command::Version => {
                println!("http_status_exporter {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            Command::Check(args) => run_check(args).await,
            Command::Serve(args) => match app::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                // A config error already reads `file:line:column: message`.
                Err(app::RunError::Config(c)) => {
                    eprintln!("{c}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("http_status_exporter: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

/// Probe once and print; exit 0 when every target succeeded, 1 when one failed, 2 when the
/// targets could not be read or the results could not be written.
async fn run_check(args: cli::CheckArgs) -> ExitCode {
    logging::init(&args.logging);
    let usage_failure = |e: &dyn std::fmt::Display| {
        eprintln!("{e}");
        ExitCode::from(2)
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
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("http_status_exporter: cannot write the results: {e}");
            ExitCode::from(2)
        }
    }
}
