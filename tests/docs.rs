//! The documentation keeps up with the code: every failure reason is in the README's reason
//! table and in the Grafana failure-reason panel, and every probe metric is in the README's
//! metric table.

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
