//! http_status_exporter: a Prometheus exporter that, on every scrape of `/metrics`, probes
//! every configured HTTP(S) target concurrently with a hand-rolled HTTP/1.1 status-line probe
//! and reports status code, success, latency by phase, TLS facts and why a probe failed.
//!
//! # Layout
//! - [`app`]: running the exporter: load, listen, serve, reload on SIGHUP or file change, stop.
//! - [`cli`]: command-line flags, declared with clap.
//! - [`config`]: the targets file: schema, defaults, validation with file:line:column errors.
//! - [`codes`]: valid status code sets (`200`, `"3xx"`, `"400-404"`).
//! - [`target`]: a target URL parsed once, its request bytes and label block.
//! - [`dns`]: name resolution: the asynchronous stub resolver, its files, the system path.
//! - [`tls`]: TLS client configurations, certificate expiry and chain facts, TLS failure
//!   classification.
//! - [`probe`]: one probe, each request told phase by phase: route, connect
//!   ([`probe::connect`], Happy Eyeballs), tunnel, TLS, exchange ([`probe::status`], the
//!   status-line parser), redirect.
//! - [`proxy`]: HTTP proxies: `proxy_url`, `no_proxy`, the proxy environment variables.
//! - [`round`]: one scrape's fan-out: lanes per host, the slots every round shares, deadlines.
//! - [`prober`]: which scrapes share a round; min-interval reuse; abandoned rounds; caches.
//! - [`history`]: the last results of every target, for the status pages.
//! - [`metrics`]: metric names and rendering; the exporter's own registry.
//! - [`server`]: hyper endpoints, reload, graceful shutdown.
//! - [`status_page`]: the HTML status page.
//! - [`check`]: the one-shot `check` command.
//! - [`logging`]: logfmt and JSON log output.
//! - [`sys`]: file-descriptor limit and the concurrency derived from it.
//! - [`web`]: `--web.config.file`: TLS and basic authentication on our endpoints.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod allow;
pub mod app;
pub mod check;
pub mod cli;
pub mod codes;
pub mod config;
pub mod config_error;
pub mod dns;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod peer_text;
pub mod probe;
pub mod probe_url;
pub mod prober;
pub mod proxy;
pub mod request;
pub mod round;
pub mod secret;
pub mod server;
pub mod status_page;
pub mod sys;
pub mod target;
pub mod tls;
pub mod trace;
pub mod web;
