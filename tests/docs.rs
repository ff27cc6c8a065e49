//! The documentation keeps up with the code: every failure reason is in the README's reason
//! table and in the Grafana failure-reason panel, every probe metric is in the README's
//! metric table, and every YAML block of the README loads in the tool it is written for.

mod common;

use http_status_exporter::metrics::Family;
use http_status_exporter::outcome::FailureReason;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_reason_and_metric_is_documented() {
    let readme = read("README.md");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/http_status_exporter.json")).unwrap();
    let panel = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Failure reasons")
        .expect("a Failure reasons panel");
    let described = panel["description"].as_str().unwrap();
    for reason in FailureReason::ALL {
        let name = reason.as_str();
        assert!(
            readme.contains(&format!("\n| `{name}` |")),
            "README's reason table lacks {name}"
        );
        let listed = described
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == name);
        assert!(
            listed,
            "the Failure reasons panel's description lacks {name}"
        );
    }
    for metric in Family::ALL.map(Family::name) {
        assert!(
            readme.contains(&format!("\n| `{metric}` |"))
                || readme.contains(&format!("\n| `{metric}{{")),
            "README's metric table lacks {metric}"
        );
    }
}

#[test]
fn the_reserved_label_names_are_those_the_exporter_puts_on_its_series() {
    let readme = read("README.md");
    let start = readme
        .find("(reserved: ")
        .expect("the README lists the reserved labels");
    let end = start + readme[start..].find(')').unwrap();
    let listed: std::collections::BTreeSet<String> = readme[start + "(reserved: ".len()..end]
        .split(',')
        .map(|s| s.trim().trim_matches('`').to_owned())
        .collect();
    let emitted: std::collections::BTreeSet<String> =
        http_status_exporter::family::reserved_labels()
            .map(str::to_owned)
            .collect();
    assert_eq!(listed, emitted);
}

/// Every YAML block of the README, dedented, in order.
fn readme_yaml_blocks() -> Vec<String> {
    let readme = read("README.md");
    readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| {
            let block = b.split("```").next().unwrap();
            let indent = block
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            block
                .lines()
                .map(|l| l.get(indent..).unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        })
        .collect()
}

/// Make the files `block` names (by these keys) in `dir`, with content each kind of file
/// needs: certificates and keys from a CA made now, text for the rest; absolute paths are
/// taken into `dir`. Returns the block with its paths moved there.
fn with_files(block: &str, dir: &std::path::Path, pki: &common::Pki) -> String {
    let (cert, key) = pki.leaf(&["localhost"], -1, 30);
    let mut out = block.to_owned();
    for line in block.lines() {
        for (k, v) in line
            .split(['{', ','])
            .filter_map(|part| part.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim().trim_end_matches('}').trim()))
        {
            let v = v
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches(['}', ','])
                .trim_matches(['\'', '"']);
            if !(k.ends_with("file") || k == "file") || v.is_empty() || v.starts_with('{') {
                continue;
            }
            let name = v.trim_start_matches('/').replace('/', "_");
            let body = if k.contains("ca") {
                pki.ca_pem()
            } else if k.starts_with("cert") {
                cert.clone()
            } else if k.starts_with("key") {
                key.clone()
            } else {
                "value-from-a-file".to_owned()
            };
            std::fs::write(dir.join(&name), body).unwrap();
            if v.starts_with('/') {
                out = out.replace(v, &dir.join(&name).display().to_string());
            }
        }
    }
    out
}

/// Run `program` with `args` in the package's folder; its exit code and what it said.
fn run(program: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

#[test]
fn every_yaml_block_of_the_readme_loads_in_its_tool() {
    let exporter = std::path::Path::new(common::exporter_bin());
    let promtool = common::find_program("promtool", "prometheus");
    let blackbox = common::find_program(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    let pki = common::Pki::new("docs root");
    let blocks = readme_yaml_blocks();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut failed = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let text = with_files(block, dir.path(), &pki);
        let file = dir.path().join(format!("block{i}.yml"));
        let path = file.to_str().unwrap().to_owned();
        let (kind, (ok, said)) = if text.contains("job_name:") {
            let conf = if text.starts_with("scrape_configs:") {
                text.clone()
            } else {
                let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
                format!("scrape_configs:\n{}\n", indented.join("\n"))
            };
            std::fs::write(&file, conf).unwrap();
            ("prometheus", run(&promtool, &["check", "config", &path]))
        } else if text.starts_with("- alert:") {
            let indented: Vec<String> = text.lines().map(|l| format!("      {l}")).collect();
            let rules = format!(
                "groups:\n  - name: docs\n    rules:\n{}\n",
                indented.join("\n")
            );
            std::fs::write(&file, rules).unwrap();
            ("rules", run(&promtool, &["check", "rules", &path]))
        } else if text.starts_with("modules:") {
            std::fs::write(&file, &text).unwrap();
            let flag = format!("--config.file={path}");
            ("blackbox", run(&blackbox, &[&flag, "--config.check"]))
        } else if text.contains("tls_server_config:") || text.contains("basic_auth_users:") {
            // The README's placeholder for a hash stands for a real one.
            let hash = bcrypt::hash("docs", 4).unwrap();
            std::fs::write(&file, text.replace("$2y$10$...", &hash)).unwrap();
            let targets = dir.path().join("targets.yml");
            std::fs::write(&targets, "targets: []\n").unwrap();
            let t = targets.to_str().unwrap();
            let web = format!("--web.config.file={path}");
            (
                "web config",
                run(exporter, &["--config.check", "--config.file", t, &web]),
            )
        } else {
            std::fs::write(&file, &text).unwrap();
            (
                "targets file",
                run(exporter, &["--config.check", "--config.file", &path]),
            )
        };
        *kinds.entry(kind).or_default() += 1;
        if ok != Some(0) {
            failed.push(format!("block {i} ({kind}):\n{block}\n=> {said}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    for kind in [
        "targets file",
        "prometheus",
        "rules",
        "blackbox",
        "web config",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} block was run: {kinds:?}"
        );
    }
}

/// Every command line of the README's `sh` blocks, trimmed.
fn readme_commands() -> Vec<String> {
    read("README.md")
        .split("```sh\n")
        .skip(1)
        .flat_map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_readme_command_that_can_run_here_runs_as_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Not run here, each for its reason: the test suite itself and the benchmark (run by CI
    // and by hand), a probe of a public site (no network off this machine), installing into
    // the host's system folders, and the deployment checks (tests/deploy.rs runs them).
    let elsewhere = [
        "./tests/run",
        "bash examples/bench.sh",
        "cargo run --release -- check https://example.com/ http://127.0.0.1:8080/health",
        "install -m 0755 target/release/http_status_exporter /usr/local/bin/",
        "install -D -m 0644 examples/targets.yaml /etc/http_status_exporter/targets.yaml",
        "install -m 0644 deploy/systemd/http_status_exporter.service /etc/systemd/system/",
        "systemctl daemon-reload && systemctl enable --now http_status_exporter",
        "cargo build --release",
        "python3 tests/deploy/e2e.py --exporter target/release/http_status_exporter",
        "python3 tests/deploy/check_kubernetes.py --exporter target/release/http_status_exporter --schemas",
    ];
    common::find_program("promtool", "prometheus");
    let mut ran = 0;
    for command in readme_commands() {
        if elsewhere.contains(&command.as_str()) {
            continue;
        }
        // `cargo run --release --` is the binary these tests were built with.
        let line = command.replace("cargo run --release --", common::exporter_bin());
        if line.starts_with(common::exporter_bin()) && !line.contains(" check") {
            // The exporter itself: it starts, listens, and stops on SIGTERM.
            let args: Vec<&str> = line.split_whitespace().skip(1).collect();
            let config = args
                .windows(2)
                .find(|w| w[0] == "--config.file")
                .map(|w| root.join(w[1]))
                .expect("the command names its targets file");
            let e = common::Exporter::start_file(&config, &[]);
            assert!(e.scrape(Some(5.0)).contains("probe_success{"), "{command}");
            e.proc.signal("TERM");
            ran += 1;
            continue;
        }
        let (code, said) = run(std::path::Path::new("sh"), &["-c", &line]);
        // The one command the README says exits 1: the example file fails one target on
        // purpose.
        let expected = if line.contains(" check --config.file examples/targets.yaml") {
            1
        } else {
            0
        };
        assert_eq!(code, Some(expected), "{command}:\n{said}");
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} commands ran");
}
