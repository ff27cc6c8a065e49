//! Command-line flags in Prometheus style (`--config.file=F` or `--config.file F`).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;

/// Default `--web.listen-address`.
pub const DEFAULT_LISTEN: &str = ":9723";

/// Largest `--status.history`.
pub const MAX_HISTORY: usize = 10_000;

/// Default `--config.file`.
pub const DEFAULT_CONFIG: &str = "targets.yaml";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `host:port` or `:port` to listen on.
    pub listen_address: String,
    /// Subtracted from Prometheus' scrape timeout to leave time for the answer.
    pub timeout_offset: Duration,
    /// Most probes at once; derived from the file-descriptor limit when not given.
    pub concurrency: Option<usize>,
    /// A scrape less than this after the last round of its selection gets that round.
    pub min_interval: Duration,
    /// The scrape timeout assumed when a scrape announces none.
    pub default_scrape_timeout: Option<Duration>,
    /// Results kept per target for the status page.
    pub history: usize,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Help text of the exporter.
pub fn usage() -> String {
    format!(
        "http_status_exporter {version}: probes HTTP(S) endpoints on every scrape of /metrics.

Usage:
  http_status_exporter [flags]
  http_status_exporter check [--config.file F] [--output table|json] [--timeout D] [URL...]

Flags:
  --config.file F                   targets file (default {DEFAULT_CONFIG})
  --config.check                    validate the targets file and every file it names, then exit
  --config.auto-reload-interval D   poll the targets file and reload when it changed (e.g. 30s)
  --web.listen-address A            address to listen on (default {DEFAULT_LISTEN})
  --web.config.file F               TLS and basic auth for our endpoints (exporter-toolkit format)
  --web.enable-lifecycle            serve POST /-/reload (off: reload with SIGHUP)
  --status.history N                results kept per target for the status page (default 60; 0: none)
  --shard.count N                   split the targets over N replicas (default 1)
  --shard.index I                   this replica: 0..N-1, or a name ending in -I (a StatefulSet pod)
  --timeout-offset D                subtracted from the scrape timeout Prometheus announces (default 0.5s)
  --scrape.default-timeout D        the scrape timeout of a scrape that announces none (default:
                                    the longer of 10s and the longest target timeout plus 1s)
  --probe.concurrency N             most probes at once (default: from the open-file limit)
  --probe.min-interval D            a scrape less than D after the last round of the same
                                    targets gets that round's results (HA pairs; default 0s: off)
  --dns.resolver R                  builtin (asynchronous, reads the two files below) or system
                                    (getaddrinfo, for NSS modules) (default builtin)
  --dns.resolv-conf F               name servers, search list and options (default /etc/resolv.conf)
  --dns.hosts-file F                names that win over DNS (default /etc/hosts)
  --dns.cache                       keep answers across rounds for their TTL (default: every
                                    round resolves afresh)
  --dns.concurrency N               most lookups in flight (default: from the open-file limit, at most 512)
  --log.level L                     error, warn, info, debug (default info)
  --log.format F                    logfmt or json (default logfmt)
  -h, --help                        this text
  --version                         print the version

check flags:
  --output table|json               an aligned table (default) or one JSON object per line
  --timeout D                       timeout of URLs given on the command line (default 5s)
",
        version = env!("CARGO_PKG_VERSION")
    )
}

/// `v` as a duration, where zero is valid however it is written (`0`, `0s`, `0ms`).
fn zero_or(
    v: String,
    dur: impl Fn(String) -> Result<Duration, UsageError>,
) -> Result<Duration, UsageError> {
    let zero = v
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<f64>()
        .is_ok_and(|n| n == 0.0);
    if zero { Ok(Duration::ZERO) } else { dur(v) }
}

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    let check = args.peek().is_some_and(|a| a == "check");
    if check {
        args.next();
    }
    let mut config_file = None;
    let mut listen_address = DEFAULT_LISTEN.to_owned();
    let mut timeout_offset = Duration::from_millis(500);
    let mut concurrency = None;
    let mut config_check = false;
    let mut auto_reload_interval = None;
    let mut level = tracing::Level::INFO;
    let mut format = LogFormat::Logfmt;
    let mut output = Output::Table;
    let mut timeout = crate::config::DEFAULT_TIMEOUT;
    let mut urls = Vec::new();
    let mut web_config_file = None;
    let mut enable_lifecycle = false;
    let mut min_interval = Duration::ZERO;
    let mut default_scrape_timeout = None;
    let mut history = crate::history::DEFAULT_DEPTH;
    let mut shard_count: Option<u64> = None;
    let mut shard_index: Option<u64> = None;
    let mut dns = crate::dns::Settings::default();

    while let Some(arg) = args.next() {
        if !arg.starts_with('-') {
            if check {
                urls.push(arg);
                continue;
            }
            return Err(UsageError(format!("unexpected argument {arg:?}")));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let flag = flag.trim_start_matches('-');
        let mut value = || -> Result<String, UsageError> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| UsageError(format!("--{flag} needs a value")))
        };
        let dur = |v: String| parse_duration(&v).map_err(|e| UsageError(format!("--{flag}: {e}")));
        match (flag, check) {
            ("h" | "help", _) => return Ok(Command::Help(usage())),
            ("version", _) => return Ok(Command::Version),
            ("config.file", _) => config_file = Some(PathBuf::from(value()?)),
            ("log.level", _) => {
                level = match value()?.as_str() {
                    "error" => tracing::Level::ERROR,
                    "warn" => tracing::Level::WARN,
                    "info" => tracing::Level::INFO,
                    "debug" => tracing::Level::DEBUG,
                    other => {
                        return Err(UsageError(format!("--log.level: unknown level {other:?}")));
                    }
                }
            }
            ("log.format", _) => {
                format = match value()?.as_str() {
                    "logfmt" => LogFormat::Logfmt,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(UsageError(format!(
                            "--log.format: unknown format {other:?}"
                        )));
                    }
                }
            }
            ("probe.concurrency", _) => {
                let v = value()?;
                let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    UsageError(format!(
                        "--probe.concurrency: {v:?} is not a positive number"
                    ))
                })?;
                concurrency = Some(n);
            }
            ("dns.resolver", _) => {
                dns.backend = match value()?.as_str() {
                    "builtin" => crate::dns::Backend::Builtin,
                    "system" => crate::dns::Backend::System,
                    other => {
                        return Err(UsageError(format!(
                            "--dns.resolver: {other:?} is neither builtin nor system"
                        )));
                    }
                }
            }
            ("dns.resolv-conf", _) => dns.resolv_conf = Some(PathBuf::from(value()?)),
            ("dns.hosts-file", _) => dns.hosts_file = Some(PathBuf::from(value()?)),
            ("dns.cache", _) => dns.cache = boolean(flag, &inline)?,
            ("dns.concurrency", _) => {
                let v = value()?;
                let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    UsageError(format!("--dns.concurrency: {v:?} is not a positive number"))
                })?;
                dns.concurrency = Some(n);
            }
            ("web.listen-address", false) => listen_address = value()?,
            ("timeout-offset", false) => timeout_offset = zero_or(value()?, dur)?,
            ("config.check", false) => config_check = boolean(flag, &inline)?,
            ("web.config.file", false) => web_config_file = Some(PathBuf::from(value()?)),
            ("status.history", false) => {
                let v = value()?;
                history = v
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_HISTORY)
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--status.history: {v:?} is not a number from 0 to {MAX_HISTORY}"
                        ))
                    })?;
            }
            ("probe.min-interval", false) => min_interval = zero_or(value()?, dur)?,
            ("scrape.default-timeout", false) => default_scrape_timeout = Some(dur(value()?)?),
            ("web.enable-lifecycle", false) => enable_lifecycle = boolean(flag, &inline)?,
            ("shard.count", false) => {
                let v = value()?;
                shard_count = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    UsageError(format!("--shard.count: {v:?} is not a positive number"))
                })?);
            }
            ("shard.index", false) => {
                let v = value()?;
                shard_index = Some(
                    crate::config::Shard::parse_index(&v)
                        .map_err(|e| UsageError(format!("--shard.index: {e}")))?,
                );
            }
            ("config.auto-reload-interval", false) => auto_reload_interval = Some(dur(value()?)?),
            ("output", true) => {
                output = match value()?.as_str() {
                    "table" => Output::Table,
                    "json" => Output::Json,
                    other => return Err(UsageError(format!("--output: unknown format {other:?}"))),
                }
            }
            ("timeout", true) => timeout = dur(value()?)?,
            _ => return Err(UsageError(format!("unknown flag {arg:?}"))),
        }
    }
    let logging = Logging { level, format };
    if check {
        if config_file.is_none() && urls.is_empty() {
            config_file = Some(PathBuf::from(DEFAULT_CONFIG));
        }
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
    Ok(Command::Serve(ServeArgs {
        web_config_file,
        enable_lifecycle,
        min_interval,
        default_scrape_timeout,
        history,
        shard,
        config_file: config_file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
        listen_address,
        timeout_offset,
        concurrency,
        config_check,
        auto_reload_interval,
        dns,
        logging,
    }))
}

/// A boolean flag's value: `--flag` or `--flag=true` is true, `--flag=false` false.
fn boolean(flag: &str, inline: &Option<String>) -> Result<bool, UsageError> {
    match inline.as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(UsageError(format!(
            "--{flag}: {other:?} is neither true nor false"
        ))),
    }
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
        assert_eq!(a.listen_address, "127.0.0.1:0");
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
