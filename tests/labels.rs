//! No valid file can break a scrape with its labels: every label name the exporter puts on its
//! own series is refused as a target label, with its place; and the whole exposition of a
//! config that makes every family passes `promtool check metrics` with no label twice.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{Exporter, Nginx, Pki, TlsServer, closed_port, find_program};
use http_status_exporter::family::{Family, reserved_labels};

#[test]
fn every_label_name_the_exporter_puts_on_its_series_is_refused_as_a_target_label() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    let names: Vec<&str> = reserved_labels().chain(["job", "instance"]).collect();
    assert!(
        names.contains(&"subject") && names.contains(&"phase"),
        "{names:?}"
    );
    for name in names {
        let text = format!("targets:\n  - url: http://127.0.0.1:1/\n    labels: {{{name}: x}}\n");
        let err = http_status_exporter::config::parse(&path, &text)
            .err()
            .unwrap_or_else(|| panic!("a target label {name:?} was accepted"));
        assert!(err.message.contains(&format!("{name:?}")), "{err}");
        assert!(err.message.contains("reserved"), "{err}");
        assert_eq!(err.line, 3, "{name}: {err}");
        assert!(err.column > 1, "{name}: {err}");
    }
    // The group label is the exporter's only in a file that uses groups.
    let text = "targets:\n  - url: http://127.0.0.1:1/\n    labels: {group: x}\n";
    assert!(http_status_exporter::config::parse(&path, text).is_ok());
}

/// The label names of one sample line of the text format, in order.
fn label_names(line: &str) -> Vec<String> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let close = line.rfind('}').unwrap();
    let mut names = Vec::new();
    let mut rest = &line[open + 1..close];
    while let Some(eq) = rest.find("=\"") {
        names.push(rest[..eq].trim_start_matches(',').to_owned());
        // Skip the quoted value, escapes included.
        let value = &rest[eq + 2..];
        let mut end = 0;
        let bytes = value.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        rest = &value[end + 1..];
    }
    names
}

#[test]
fn the_exposition_of_every_family_passes_promtool_with_no_label_twice() {
    let promtool = find_program("promtool", "prometheus");
    let pki = Pki::new("labels root");
    let (cert, key) = pki.leaf(&["localhost"], -1, 30);
    let nginx = Nginx::start(&[TlsServer {
        cert_pem: cert,
        key_pem: key,
        extra: String::new(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let (port, tls) = (nginx.port, nginx.tls_ports[0]);
    let dead = closed_port();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "defaults: {{tls_config: {{ca_file: ca.pem}}}}\n\
             groups: {{web: {{}}}}\n\
             targets:\n\
             \x20 - {{url: 'https://localhost:{tls}/ok', name: shop, labels: {{team: core, env: prod}}, group: web, body_size_limit: 1KiB}}\n\
             \x20 - {{url: 'http://localhost:{port}/moved', follow_redirects: true, labels: {{team: edge}}}}\n\
             \x20 - {{url: 'http://127.0.0.1:{dead}/', name: down}}\n"
        ),
    )
    .unwrap();
    let e = Exporter::start_file(&targets, &[]);
    let body = e.scrape(Some(10.0));
    // Every family has a series here.
    for family in Family::ALL {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("{}{{", family.name()))),
            "no {} series:\n{body}",
            family.name()
        );
    }
    // Each series carries the target's labels, then its family's own, each name once.
    let target_labels = ["target", "name", "group", "team", "env"];
    for line in body.lines().filter(|l| l.starts_with("probe_")) {
        let names = label_names(line);
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a label twice: {line}");
        let family = Family::ALL
            .into_iter()
            .find(|f| line.starts_with(&format!("{}{{", f.name())))
            .unwrap_or_else(|| panic!("a series of no family: {line}"));
        for n in &names {
            assert!(
                target_labels.contains(&n.as_str()) || family.labels().contains(&n.as_str()),
                "{n} is neither a target label nor one of {:?}: {line}",
                family.labels()
            );
        }
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // 0: clean; 3: lint remarks only (such as a name's unit suffix). 1 is a parse error.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool check metrics: {:?}\n{said}",
        out.status
    );
    assert!(!said.contains("error"), "{said}");
}
