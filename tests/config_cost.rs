//! What a load costs, on the binary: listing every error of a large targets file costs close to
//! a clean load of the same file, and a file nested deep is refused at once, its cost growing
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

/// A targets file of `n` bare URLs under `defaults`, where the entries of `bad` carry an
/// unknown key; each bad entry's line, column and index.
fn targets_file(n: usize, bad: &[usize]) -> (String, Vec<(usize, usize, usize)>) {
    let mut text = String::from("defaults:\n  timeout: 2s\ntargets:\n");
    let mut wanted = Vec::new();
    for k in 0..n {
        let url = format!("http://h{}.test/p{k}", k % 997);
        if bad.contains(&k) {
            let line = format!("  - {{url: '{url}', nope: 1}}\n");
            wanted.push((k + 4, line.find("nope").unwrap() + 1, k));
            text.push_str(&line);
        } else {
            text.push_str(&format!("  - {url}\n"));
        }
    }
    (text, wanted)
}

#[test]
fn listing_every_error_costs_close_to_a_clean_load() {
    const TARGETS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.yaml");
    std::fs::write(&clean, targets_file(TARGETS, &[]).0).unwrap();
    let (out, clean_time) = check(&clean, 3);
    assert!(out.status.success(), "{out:?}");
    // As many errors as one load lists, and one fewer, so that the load goes on to compile
    // the targets (as a clean load does) after listing them.
    let max = http_status_exporter::config::MAX_ERRORS;
    for errors in [100, max - 1] {
        let bad: Vec<usize> = (0..errors).map(|i| i * (TARGETS / errors) + 517).collect();
        let (text, wanted) = targets_file(TARGETS, &bad);
        let file = dir.path().join(format!("errors-{errors}.yaml"));
        std::fs::write(&file, text).unwrap();
        let (out, errors_time) = check(&file, 3);
        assert_eq!(out.status.code(), Some(1));

        // Every error is listed where it stands, in file order (up to the cap of one load).
        let stderr = String::from_utf8_lossy(&out.stderr);
        let f = file.display();
        let listed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(": targets["))
            .collect();
        assert_eq!(listed.len(), errors.min(max), "{stderr}");
        for (line, (l, c, k)) in listed.iter().zip(&wanted) {
            let want = format!("{f}:{l}:{c}: targets[{k}]: unknown field `nope`");
            assert!(line.starts_with(&want), "{line}\nwanted {want}");
        }

        let ratio = errors_time.as_secs_f64() / clean_time.as_secs_f64();
        eprintln!(
            "--config.check: clean {clean_time:?}, with {errors} errors {errors_time:?}, x{ratio:.2}"
        );
        assert!(
            ratio <= 2.0,
            "listing {errors} errors took {errors_time:?}, {ratio:.1} times the clean load's \
             {clean_time:?}"
        );
    }
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
