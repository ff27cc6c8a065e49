//! What a load costs, on the binary: a file nested deep is refused at once, its cost growing
//! with its size and not with the square of its depth.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `--config.check` of `file`: its output, and the best time of `runs` runs.
fn check(file: &Path, runs: usize) -> (Output, Duration) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_http_status_exporter"))
            .arg("--config.check")
            .arg("--config.file")
            .arg(file)
            .output()
            .unwrap();
        best = best.min(t.elapsed());
        last = Some(out);
    }
    (last.unwrap(), best)
}

/// A file whose first target's `headers` nest `depth` flow mappings deep.
fn deep_file(depth: usize) -> String {
    format!(
        "targets:\n  - url: http://a.test/\n    headers: {}x{}\n",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    )
}

#[test]
fn a_file_nested_deep_is_refused_at_once_whatever_its_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for depth in [10_000, 40_000] {
        let file = dir.path().join(format!("deep-{depth}.yaml"));
        std::fs::write(&file, deep_file(depth)).unwrap();
        let (out, took) = check(&file, 3);
        runs.push((file, out, took));
    }
    let ratio = runs[1].2.as_secs_f64() / runs[0].2.as_secs_f64();
    eprintln!(
        "--config.check of a deep file: {:?} and {:?}, x{ratio:.2} for 4 times the depth",
        runs[0].2, runs[1].2
    );
    assert!(
        ratio <= 6.0,
        "4 times the depth took {ratio:.1} times as long: {:?} and {:?}",
        runs[0].2,
        runs[1].2
    );
    for (file, out, _) in runs {
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The top-level mapping, `targets` and the target are three levels: the 62nd `{` of
        // the line, at column 14 + 4 * 61, opens the 65th.
        let want = format!("{}:3:{}: ", file.display(), 14 + 4 * 61);
        assert!(stderr.starts_with(&want), "{stderr}\nwanted {want}");
        assert!(stderr.contains("nested deeper than 64 levels"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
