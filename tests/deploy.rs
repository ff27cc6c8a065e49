//! The deployment files against the real tools: the shipped Prometheus scrape job, rules and
//! rule tests, and every Grafana panel query and alert expression run through a real
//! Prometheus scraping the exporter (tests/deploy/e2e.py); the Kubernetes manifests checked
//! against their schemas and the exporter's own flags (tests/deploy/check_kubernetes.py); the
//! systemd unit with `systemd-analyze verify`.

mod common;

use std::process::Command;

/// Run a Python check script with the exporter binary; it prints `N passed, M failed` last.
fn run_script(script: &str, extra: &[&str]) {
    let python = common::find_program("python3", "python3");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(python)
        .arg(format!("{root}/tests/deploy/{script}"))
        .args(["--exporter", common::exporter_bin()])
        .args(extra)
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && last.ends_with(" 0 failed"),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn dashboard_queries_and_alerts_run_against_a_real_prometheus() {
    run_script("e2e.py", &[]);
}

#[test]
fn kubernetes_manifests_are_valid() {
    run_script("check_kubernetes.py", &["--schemas"]);
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let analyze = common::find_program("systemd-analyze", "systemd");
    let root = env!("CARGO_MANIFEST_DIR");
    let unit = std::fs::read_to_string(format!(
        "{root}/deploy/systemd/http_status_exporter.service"
    ))
    .unwrap();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing {line}");
    }
    // Verify a copy whose binary exists on this machine; any warning fails the test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("http_status_exporter.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/http_status_exporter",
            common::exporter_bin(),
        ),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
