//! The shipped alerting rules agree with the README's scrape jobs: each job the README shows,
//! run alone in a real Prometheus with the rules against a healthy exporter, leaves every
//! alert silent (none pending, none firing).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Exporter, Nginx, http, prometheus, prometheus_query};

/// Every scrape job of the README's YAML blocks, as written (each a `  - job_name:` entry).
fn readme_jobs() -> Vec<String> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut jobs = Vec::new();
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for entry in block.split("  - job_name:").skip(1) {
            let entry: Vec<&str> = entry.lines().take_while(|l| !l.trim().is_empty()).collect();
            jobs.push(format!("  - job_name:{}\n", entry.join("\n")));
        }
    }
    jobs
}

/// `job` made to run here: against `exporter`, with `url` for the target a blackbox-style job
/// names, and at the global one-second interval.
fn localized(job: &str, exporter: SocketAddr, url: &str) -> String {
    job.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("scrape_interval:") && !t.starts_with("scrape_timeout:")
        })
        .map(|l| {
            l.replace("localhost:9723", &exporter.to_string())
                .replace("exporter:9723", &exporter.to_string())
                .replace("https://shop.example/", url)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_readme_job_alone_with_the_shipped_rules_leaves_every_alert_silent() {
    let jobs = readme_jobs();
    let names: Vec<String> = jobs
        .iter()
        .map(|j| {
            j.lines()
                .next()
                .unwrap()
                .replace("  - job_name:", "")
                .trim()
                .to_owned()
        })
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    let nginx = Nginx::start(&[]);
    let url = format!("http://127.0.0.1:{}/ok", nginx.port);
    let e = Exporter::start(
        &format!(
            "groups: {{critical: {{}}, pages: {{}}}}\ntargets:\n\
             \x20 - {{url: '{url}?critical', group: critical}}\n\
             \x20 - {{url: '{url}?pages', group: pages}}\n\
             \x20 - {url}\n"
        ),
        &[],
    );
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/prometheus/rules/http_status_exporter.rules.yml");
    let runs: Vec<_> = jobs
        .iter()
        .zip(&names)
        .map(|(job, name)| {
            let conf = format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 rule_files: ['{}']\nscrape_configs:\n{}\n",
                rules.display(),
                localized(job, e.addr, &url)
            );
            let name = name.clone();
            std::thread::spawn(move || {
                let (_proc, prom) = prometheus(&conf);
                let start = Instant::now();
                // Scraped and healthy for a few evaluations, with the rules loaded.
                let mut healthy_since = None;
                loop {
                    assert!(
                        start.elapsed() < Duration::from_secs(40),
                        "job {name} never came up: {:?}",
                        prometheus_query(prom, "up")
                    );
                    let up = prometheus_query(prom, "up");
                    let all_up = !up.is_empty() && up.iter().all(|s| s["value"][1] == "1");
                    let rules_loaded =
                        !prometheus_query(prom, "count(probe_success)").is_empty() && all_up;
                    match (rules_loaded, healthy_since) {
                        (true, None) => healthy_since = Some(Instant::now()),
                        (true, Some(t)) if t.elapsed() > Duration::from_secs(4) => break,
                        (false, _) => healthy_since = None,
                        _ => {}
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                let r = http(prom, "GET", "/api/v1/rules", &[]);
                assert!(
                    r.body.contains("ExporterAbsent"),
                    "rules not loaded: {}",
                    r.body
                );
                (name, prometheus_query(prom, "ALERTS"))
            })
        })
        .collect();
    let mut loud = Vec::new();
    for run in runs {
        let (name, alerts) = run.join().unwrap();
        for a in alerts {
            loud.push(format!(
                "job {name}: {} {}",
                a["metric"]["alertname"], a["metric"]["alertstate"]
            ));
        }
    }
    assert!(
        loud.is_empty(),
        "alerts on a healthy setup:\n{}",
        loud.join("\n")
    );
}
