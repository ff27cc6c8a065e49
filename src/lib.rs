//! http_status_exporter: a Prometheus exporter that, on every scrape of `/metrics`, probes
//! every configured HTTP(S) target concurrently with a hand-rolled HTTP/1.1 status-line probe
//! and reports status code, success, latency by phase, TLS facts and why a probe failed.
//!
//! # Layout
//! Read from the top down: each module imports only modules listed below it (and `main.rs`
//! only the library).
//! - [`app`]: running the exporter: load, listen, serve, reload (SIGHUP, `/-/reload`, a
//!   changed file), stop.
//! - [`check`]: the one-shot `check` command.
//! - [`logging`]: logfmt and JSON log output.
//! - [`cli`]: command-line flags, declared with clap.
//! - [`server`]: hyper endpoints, one file per family: scrape (`/metrics`, `/probe`), pages
//!   (`/`, `/target`, `/config`, `/sd`), lifecycle; bodies; graceful shutdown.
//! - [`web`]: `--web.config.file`: TLS and basic authentication on our endpoints.
//! - [`status_page`]: the HTML status and target pages.
//! - [`prober`]: which scrapes share a round; min-interval reuse; abandoned rounds; caches;
//!   one-off probes for `/probe`.
//! - [`history`]: the last results of every target, for the status pages.
//! - [`metrics`]: per-target metric families and their rendering; the exporter's registry.
//! - [`round`]: one scrape's fan-out: lanes per host, the slots every round shares, deadlines.
//! - [`config`]: the targets file: schema, layered settings, compiling into targets, error
//!   positions, error recovery, the `/probe` allowlist's templates.
//! - [`probe`]: one probe, each request told phase by phase: route, resolve and connect
//!   ([`probe::connect`]), tunnel, TLS, exchange ([`probe::status`], the head parser),
//!   redirect; then the verdict.
//! - [`target`]: one runtime target: request bytes, TLS client, proxy rules, label block.
//! - [`family`]: the per-target metric families' names and the labels each puts on its
//!   series, which no target label may be.
//! - [`dns`]: name resolution: the asynchronous stub resolver, its files, the system path.
//! - [`proxy`]: HTTP proxies: `proxy_url`, `no_proxy`, the proxy environment variables.
//! - [`tls`]: TLS client configurations, certificate expiry and chain facts, TLS failure
//!   classification.
//! - [`request`]: the bytes of each request of a probe; the `Host` header's host.
//! - [`allow`]: the `/probe` allowlist's rules: networks and host name patterns, and where a
//!   connection to an address lands.
//! - [`gate`]: connection gates: places per host or address under the cap per host.
//! - [`probe_threads`]: the probe threads, one single-threaded runtime per core.
//! - [`codes`]: valid status code sets (`200`, `"3xx"`, `"400-404"`).
//! - [`checks`]: header and body checks (blackbox_exporter's keys): patterns, sizes,
//!   compression, and the judgement of a head and a body.
//! - [`probe_url`]: the parsed probe URL (scheme, host, port, request target); address
//!   families.
//! - [`outcome`]: what a probe found out: result, failure reasons, status line, phase times.
//! - [`config_error`]: an error with the file, line and column it points at.
//! - [`secret`]: a value never shown.
//! - [`peer_text`]: text from a peer made printable once, where it enters.
//! - [`trace`]: the trace of one probe, for `/probe?debug=true`.
//! - [`sys`]: file-descriptor limit, the concurrency derived from it, allocator, systemd
//!   sockets, the clock.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod allow;
pub mod app;
pub mod check;
pub mod checks;
pub mod cli;
pub mod codes;
pub mod config;
pub mod config_error;
pub mod dns;
pub mod family;
pub mod gate;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod peer_text;
pub mod probe;
pub mod probe_threads;
pub mod probe_url;
pub mod prober;
pub mod proxy;
pub mod request;
pub mod round;
pub mod secret;
pub mod server;
pub mod stamp;
pub mod status_page;
pub mod sys;
pub mod target;
pub mod tls;
pub mod trace;
pub mod web;
