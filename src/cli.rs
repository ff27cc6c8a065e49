//! Command-line flags in Prometheus style (`--config.file=F` or `--config.file F`), declared
//! with clap: the help text is generated from these declarations, so it cannot drift from
//! what is parsed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::config::parse_duration;

/// Default `--web.listen-address`.
pub const DEFAULT_LISTEN: &str = ":9723";

/// Default `--web.telemetry-path`.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

/// Paths the exporter serves besides the metrics: `--web.telemetry-path` cannot be one.
pub const RESERVED_PATHS: &[&str] = &[
    "/",
    "/probe",
    "/target",
    "/config",
    "/sd",
    "/-/healthy",
    "/-/ready",
    "/-/reload",
];

/// Largest `--status.history`.
pub const MAX_HISTORY: usize = 10_000;

/// Default `--config.file`.
pub const DEFAULT_CONFIG: &str = "targets.yaml";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=info msg="…" key=value`
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Flags shared by both commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// `error`, `warn`, `info` or `debug`.
    pub level: tracing::Level,
    /// Output format.
    pub format: LogFormat,
}

/// Flags of the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeArgs {
    /// The targets file.
    pub config_file: PathBuf,
    /// `host:port` or `:port` to listen on; every one given is served.
    pub listen_address: Vec<String>,
    /// Serve on the sockets systemd passes (socket activation) instead of listening.
    pub systemd_socket: bool,
    /// The path that serves the metrics of a round of every target.
    pub telemetry_path: String,
    /// Subtracted from Prometheus' scrape timeout to leave time for the answer.
    pub timeout_offset: Duration,
    /// Most probes at once; derived from the file-descriptor limit when not given.
    pub concurrency: Option<usize>,
    /// A scrape less than this after the last round of its selection gets that round.
    pub min_interval: Duration,
    /// The scrape timeout assumed when a scrape announces none.
    pub default_scrape_timeout: Option<Duration>,
    /// Results kept per target for the status page; `None`: 60, fewer for a file so large
    /// that 60 rounds would hold more than 24 MiB of results.
    pub history: Option<usize>,
    /// Only validate the config and exit.
    pub config_check: bool,
    /// Poll the targets file and reload when its content changes.
    pub auto_reload_interval: Option<Duration>,
    /// TLS and basic authentication for our endpoints.
    pub web_config_file: Option<PathBuf>,
    /// Serve `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// `(count, index)`: probe only this shard's targets.
    pub shard: Option<crate::config::Shard>,
    /// Name resolution.
    pub dns: crate::dns::Settings,
    /// Logging.
    pub logging: Logging,
}

/// How `check` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// An aligned table.
    Table,
    /// One JSON object per line.
    Json,
}

/// Flags of `check`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckArgs {
    /// A targets file to probe, if given.
    pub config_file: Option<PathBuf>,
    /// URLs given on the command line.
    pub urls: Vec<String>,
    /// Table or JSON lines.
    pub output: Output,
    /// Timeout of every URL given on the command line.
    pub timeout: Duration,
    /// Most probes at once.
    pub concurrency: Option<usize>,
    /// Name resolution.
    pub dns: crate::dns::Settings,
    /// Logging.
    pub logging: Logging,
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the exporter.
    Serve(ServeArgs),
    /// Probe once and print.
    Check(CheckArgs),
    /// Print this text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
}

/// A usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\nRun with --help for usage.")]
pub struct UsageError(pub String);

/// A duration flag's value.
fn duration(v: &str) -> Result<Duration, String> {
    parse_duration(v)
}

/// A duration flag's value where zero is valid however it is written (`0`, `0s`, `0ms`).
fn zero_or_duration(v: &str) -> Result<Duration, String> {
    let zero = v
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<f64>()
        .is_ok_and(|n| n == 0.0);
    if zero {
        Ok(Duration::ZERO)
    } else {
        parse_duration(v)
    }
}

/// A count that must be above zero.
fn positive(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?} is not a positive number"))
}

/// `--web.telemetry-path`: an absolute path that is not another endpoint's.
fn telemetry_path(v: &str) -> Result<String, String> {
    if !v.starts_with('/')
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?')
    {
        return Err(format!("{v:?} is not an absolute path like /metrics"));
    }
    if RESERVED_PATHS.contains(&v) {
        return Err(format!("{v:?} is already served by another endpoint"));
    }
    Ok(v.to_owned())
}

/// `--status.history`: 0 to [`MAX_HISTORY`].
fn history_depth(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|n| *n <= MAX_HISTORY)
        .ok_or_else(|| format!("{v:?} is not a number from 0 to {MAX_HISTORY}"))
}

/// `--shard.count`: above zero.
fn shard_count(v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?} is not a positive number"))
}

/// `--log.level`.
fn level(v: &str) -> Result<tracing::Level, String> {
    match v {
        "error" => Ok(tracing::Level::ERROR),
        "warn" => Ok(tracing::Level::WARN),
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        other => Err(format!(
            "unknown level {other:?} (error, warn, info, debug)"
        )),
    }
}

/// `--dns.resolver`.
fn backend(v: &str) -> Result<crate::dns::Backend, String> {
    match v {
        "builtin" => Ok(crate::dns::Backend::Builtin),
        "system" => Ok(crate::dns::Backend::System),
        other => Err(format!("{other:?} is neither builtin nor system")),
    }
}

/// Flags both commands take: probing, name resolution, logging.
#[derive(Debug, Args)]
struct Common {
    /// Most probes at once [default: from the open-file limit]
    #[arg(long = "probe.concurrency", value_name = "N", value_parser = positive)]
    concurrency: Option<usize>,
    /// builtin (asynchronous, reads the two files below) or system (getaddrinfo, for NSS
    /// modules)
    #[arg(long = "dns.resolver", value_name = "R", default_value = "builtin", value_parser = backend)]
    resolver: crate::dns::Backend,
    /// Name servers, search list and options [default: /etc/resolv.conf]
    #[arg(long = "dns.resolv-conf", value_name = "F")]
    resolv_conf: Option<PathBuf>,
    /// Names that win over DNS [default: /etc/hosts]
    #[arg(long = "dns.hosts-file", value_name = "F")]
    hosts_file: Option<PathBuf>,
    /// Keep answers across rounds for their TTL (default: every round resolves afresh)
    #[arg(long = "dns.cache", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    cache: bool,
    /// Most DNS queries in flight; a lookup of both families asks two [default: from the
    /// open-file limit, at most 768]
    #[arg(long = "dns.concurrency", value_name = "N", value_parser = positive)]
    dns_concurrency: Option<usize>,
    /// error, warn, info, debug
    #[arg(long = "log.level", value_name = "L", default_value = "info", value_parser = level)]
    level: tracing::Level,
    /// logfmt or json
    #[arg(long = "log.format", value_name = "F", default_value = "logfmt")]
    format: LogFormat,
}

impl Common {
    /// The resolver settings and logging these flags give.
    fn split(self) -> (crate::dns::Settings, Logging) {
        let Common {
            concurrency: _,
            resolver,
            resolv_conf,
            hosts_file,
            cache,
            dns_concurrency,
            level,
            format,
        } = self;
        (
            crate::dns::Settings {
                backend: resolver,
                resolv_conf,
                hosts_file,
                cache,
                concurrency: dns_concurrency,
            },
            Logging { level, format },
        )
    }
}

/// http_status_exporter: probes HTTP(S) endpoints on every scrape of /metrics.
#[derive(Debug, Parser)]
#[command(
    name = "http_status_exporter",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    args_override_self = true,
    override_usage = "http_status_exporter [flags]\n       http_status_exporter check [--config.file F] [--output table|json] [--timeout D] [URL...]"
)]
struct Cli {
    /// Probe once and print, instead of serving.
    #[command(subcommand)]
    command: Option<Sub>,
    /// The targets file
    #[arg(long = "config.file", value_name = "F", default_value = DEFAULT_CONFIG)]
    config_file: PathBuf,
    /// Validate the targets file and every file it names, then exit
    #[arg(long = "config.check", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    config_check: bool,
    /// Poll the targets file and reload when it changed (e.g. 30s)
    #[arg(long = "config.auto-reload-interval", value_name = "D", value_parser = duration)]
    auto_reload_interval: Option<Duration>,
    /// Address to listen on; repeat the flag to listen on several
    #[arg(long = "web.listen-address", value_name = "A", default_value = DEFAULT_LISTEN,
          action = ArgAction::Append)]
    listen_address: Vec<String>,
    /// Serve on the sockets systemd passes (socket activation) instead of
    /// --web.listen-address
    #[arg(long = "web.systemd-socket", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    systemd_socket: bool,
    /// Path under which to expose the metrics
    #[arg(long = "web.telemetry-path", value_name = "P", default_value = DEFAULT_TELEMETRY_PATH,
          value_parser = telemetry_path)]
    telemetry_path: String,
    /// TLS and basic auth for our endpoints (exporter-toolkit format)
    #[arg(long = "web.config.file", value_name = "F")]
    web_config_file: Option<PathBuf>,
    /// Serve POST /-/reload (off: reload with SIGHUP)
    #[arg(long = "web.enable-lifecycle", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    enable_lifecycle: bool,
    /// Results kept per target for the status page (0: none) [default: 60, fewer when 60 rounds
    /// of the file would hold more than 24 MiB]
    #[arg(long = "status.history", value_name = "N", value_parser = history_depth)]
    history: Option<usize>,
    /// Split the targets over N replicas [default: 1]
    #[arg(long = "shard.count", value_name = "N", value_parser = shard_count)]
    shard_count: Option<u64>,
    /// This replica: 0..N-1, or a name ending in -I (a StatefulSet pod) [default: 0]
    #[arg(long = "shard.index", value_name = "I", value_parser = crate::config::Shard::parse_index)]
    shard_index: Option<u64>,
    /// Subtracted from the scrape timeout Prometheus announces
    #[arg(long = "timeout-offset", value_name = "D", default_value = "0.5s", value_parser = zero_or_duration)]
    timeout_offset: Duration,
    /// The scrape timeout of a scrape that announces none [default: the longer of 10s and the
    /// longest target timeout plus 1s]
    #[arg(long = "scrape.default-timeout", value_name = "D", value_parser = duration)]
    default_scrape_timeout: Option<Duration>,
    /// A scrape less than D after the last round of the same targets gets that round's results
    /// (HA pairs; 0s: off)
    #[arg(long = "probe.min-interval", value_name = "D", default_value = "0s", value_parser = zero_or_duration)]
    min_interval: Duration,
    #[command(flatten)]
    common: Common,
}

/// The `check` command's flags.
#[derive(Debug, Subcommand)]
enum Sub {
    /// Probe the targets file's targets (or the URLs given) once, print the results, and exit 0
    /// when every one succeeded, 1 when one failed, 2 when the targets could not be read or the
    /// results could not be written.
    #[command(args_override_self = true)]
    Check {
        /// A targets file to probe [default: targets.yaml when no URL is given]
        #[arg(long = "config.file", value_name = "F")]
        config_file: Option<PathBuf>,
        /// An aligned table or one JSON object per line
        #[arg(long = "output", value_name = "FORMAT", default_value = "table")]
        output: Output,
        /// Timeout of URLs given on the command line
        #[arg(long = "timeout", value_name = "D", default_value = "5s", value_parser = duration)]
        timeout: Duration,
        /// URLs to probe
        #[arg(value_name = "URL")]
        urls: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let argv = std::iter::once("http_status_exporter".to_owned()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Command::Help(e.render().to_string()))
                }
                clap::error::ErrorKind::DisplayVersion => Ok(Command::Version),
                _ => {
                    let text = e.render().to_string();
                    // clap's own "For more information, try '--help'." is said by UsageError.
                    let text = text
                        .lines()
                        .filter(|l| !l.starts_with("For more information") && !l.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join("\n");
                    Err(UsageError(text))
                }
            };
        }
    };
    let Cli {
        command,
        config_file,
        config_check,
        auto_reload_interval,
        listen_address,
        systemd_socket,
        telemetry_path,
        web_config_file,
        enable_lifecycle,
        history,
        shard_count,
        shard_index,
        timeout_offset,
        default_scrape_timeout,
        min_interval,
        common,
    } = cli;
    if let Some(Sub::Check {
        config_file,
        output,
        timeout,
        urls,
        common,
    }) = command
    {
        let concurrency = common.concurrency;
        let (dns, logging) = common.split();
        let config_file =
            config_file.or_else(|| urls.is_empty().then(|| PathBuf::from(DEFAULT_CONFIG)));
        return Ok(Command::Check(CheckArgs {
            config_file,
            urls,
            output,
            timeout,
            concurrency,
            dns,
            logging,
        }));
    }
    let shard = match (shard_count, shard_index) {
        (None, None) => None,
        (Some(count), index) => {
            let index = index.unwrap_or(0);
            if index >= count {
                return Err(UsageError(format!(
                    "--shard.index {index} must be below --shard.count {count}"
                )));
            }
            Some(crate::config::Shard { count, index })
        }
        (None, Some(_)) => return Err(UsageError("--shard.index needs --shard.count".into())),
    };
    let concurrency = common.concurrency;
    let (dns, logging) = common.split();
    Ok(Command::Serve(ServeArgs {
        config_file,
        listen_address,
        systemd_socket,
        telemetry_path,
        timeout_offset,
        concurrency,
        min_interval,
        default_scrape_timeout,
        history,
        config_check,
        auto_reload_interval,
        web_config_file,
        enable_lifecycle,
        shard,
        dns,
        logging,
    }))
}

/// The addresses to try for a listen address, in order: `:port` is every address, IPv6 and
/// IPv4 (`[::]:port`, dual-stack on Linux), then `0.0.0.0:port` where IPv6 is off; anything
/// else is used as is.
pub fn listen_addresses(a: &str) -> Vec<String> {
    match a.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![a.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn serve_flags() {
        let Command::Serve(a) = parse(args(
            "--config.file=x.yml --web.listen-address 127.0.0.1:0 --timeout-offset 250ms --log.format json --log.level debug --probe.concurrency 7 --config.auto-reload-interval=30s",
        ))
        .unwrap() else {
            panic!("not serve")
        };
        assert_eq!(a.config_file, PathBuf::from("x.yml"));
        assert_eq!(a.listen_address, ["127.0.0.1:0"]);
        assert_eq!(a.timeout_offset, Duration::from_millis(250));
        assert_eq!(a.logging.format, LogFormat::Json);
        assert_eq!(a.logging.level, tracing::Level::DEBUG);
        assert_eq!(a.concurrency, Some(7));
        assert_eq!(a.auto_reload_interval, Some(Duration::from_secs(30)));
        assert!(!a.config_check);
        assert!(!a.enable_lifecycle);
        assert_eq!(a.shard, None);
        for (flags, check, lifecycle) in [
            ("--config.check", true, false),
            ("--config.check=false", false, false),
            ("--config.check=true --web.enable-lifecycle", true, true),
            ("--web.enable-lifecycle=false", false, false),
        ] {
            let Command::Serve(a) = parse(args(flags)).unwrap() else {
                panic!("not serve")
            };
            assert_eq!(
                (a.config_check, a.enable_lifecycle),
                (check, lifecycle),
                "{flags}"
            );
        }
        let Command::Serve(a) = parse(args("--shard.count=3 --shard.index exporter-2")).unwrap()
        else {
            panic!("not serve")
        };
        assert_eq!(a.shard, Some(crate::config::Shard { count: 3, index: 2 }));
        assert_eq!(a.dns, crate::dns::Settings::default());
        let Command::Serve(a) = parse(args(
            "--dns.resolver system --dns.resolv-conf=r.conf --dns.hosts-file h --dns.cache --dns.concurrency 9",
        ))
        .unwrap() else {
            panic!("not serve")
        };
        assert_eq!(
            a.dns,
            crate::dns::Settings {
                backend: crate::dns::Backend::System,
                resolv_conf: Some(PathBuf::from("r.conf")),
                hosts_file: Some(PathBuf::from("h")),
                cache: true,
                concurrency: Some(9),
            }
        );
    }

    #[test]
    fn check_flags() {
        let Command::Check(a) = parse(args(
            "check --output json http://a/ https://b/ --timeout 2s",
        ))
        .unwrap() else {
            panic!("not check")
        };
        assert_eq!(a.urls, ["http://a/", "https://b/"]);
        assert_eq!(a.output, Output::Json);
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert_eq!(a.config_file, None);
        let Command::Check(a) = parse(args("check")).unwrap() else {
            panic!("not check")
        };
        assert_eq!(a.config_file, Some(PathBuf::from(DEFAULT_CONFIG)));
    }

    #[test]
    fn bad_flags() {
        for bad in [
            "--nope",
            "--config.file",
            "stray",
            "--log.level loud",
            "--probe.concurrency 0",
            "--timeout-offset soon",
            "check --web.listen-address :1",
            "--shard.count 3 --shard.index 3",
            "--shard.index 1",
            "--shard.count 0",
            "--shard.count 3 --shard.index pod",
            "--output json",
            "--dns.resolver getaddrinfo",
            "--dns.concurrency 0",
            "--dns.cache=yes",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn listen_addresses_are_dual_stack() {
        assert_eq!(listen_addresses(":9723"), ["[::]:9723", "0.0.0.0:9723"]);
        assert_eq!(listen_addresses("[::1]:1"), ["[::1]:1"]);
    }

    #[test]
    fn exporter_toolkit_web_flags() {
        let serve = |s: &str| match parse(args(s)).unwrap() {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
        };
        let a = serve("");
        assert_eq!(a.listen_address, [DEFAULT_LISTEN]);
        assert_eq!(a.telemetry_path, "/metrics");
        assert!(!a.systemd_socket);
        let a = serve(
            "--web.listen-address 127.0.0.1:1 --web.listen-address=[::1]:2 \
             --web.telemetry-path /probe-metrics --web.systemd-socket",
        );
        assert_eq!(a.listen_address, ["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(a.telemetry_path, "/probe-metrics");
        assert!(a.systemd_socket);
        for bad in ["metrics", "/probe", "/", "/-/reload", "/a?b"] {
            let e = parse(args(&format!("--web.telemetry-path={bad}"))).unwrap_err();
            assert!(e.0.contains("--web.telemetry-path"), "{bad}: {e}");
        }
    }

    #[test]
    fn small_flag_cases() {
        for zero in ["0", "0s", "0ms", "0.0s"] {
            let Command::Serve(a) = parse(args(&format!("--timeout-offset {zero}"))).unwrap()
            else {
                panic!("not serve")
            };
            assert_eq!(a.timeout_offset, Duration::ZERO, "{zero}");
            // Zero turns the min-interval off, however it is written.
            let Command::Serve(a) = parse(args(&format!("--probe.min-interval={zero}"))).unwrap()
            else {
                panic!("not serve")
            };
            assert_eq!(a.min_interval, Duration::ZERO, "{zero}");
        }
        let Command::Serve(a) =
            parse(args("--probe.min-interval 5s --scrape.default-timeout 2s")).unwrap()
        else {
            panic!("not serve")
        };
        assert_eq!(a.min_interval, Duration::from_secs(5));
        assert_eq!(a.default_scrape_timeout, Some(Duration::from_secs(2)));
        assert!(parse(args("--scrape.default-timeout 0s")).is_err());
        for bad in [
            "--shard.count 3 --shard.index -1",
            "--shard.count 3 --shard.index pod-",
            "--shard.count 3 --shard.index pod-x",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
