//! The trace of one probe, for `/probe?debug=true`: what each phase did, in order, with the
//! time since the probe started. A probe run inside [`collect`] records its steps; anywhere
//! else [`note`] does nothing but look up a task-local and never builds its line.
//!
//! Imports nothing of this crate.

use std::cell::RefCell;
use std::future::Future;

use tokio::time::Instant;

/// The lines of a trace so far, and when it started.
#[derive(Debug)]
struct Lines {
    /// When [`collect`] started.
    start: Instant,
    /// `+12.3ms what happened`, one per step.
    lines: Vec<String>,
}

/// Most lines kept: a trace is read by a person.
const MAX_LINES: usize = 200;

tokio::task_local! {
    /// The trace of the probe running on this task, if it is traced.
    static TRACE: RefCell<Lines>;
}

/// Record a step of the probe running on this task, if it is traced. `line` runs only then.
pub fn note(line: impl FnOnce() -> String) {
    let _ = TRACE.try_with(|t| {
        let mut t = t.borrow_mut();
        if t.lines.len() < MAX_LINES {
            let at = t.start.elapsed();
            let text = line();
            t.lines
                .push(format!("+{:>8.1}ms  {text}", at.as_secs_f64() * 1000.0));
        }
    });
}

/// Run `work` (a probe, on this task) with tracing on; its output and the trace's lines.
pub async fn collect<F: Future>(work: F) -> (F::Output, Vec<String>) {
    let lines = RefCell::new(Lines {
        start: Instant::now(),
        lines: Vec::new(),
    });
    TRACE
        .scope(lines, async {
            let out = work.await;
            let lines = TRACE.with(|t| std::mem::take(&mut t.borrow_mut().lines));
            (out, lines)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_are_kept_inside_collect_only() {
        let mut built = 0;
        note(|| {
            built += 1;
            "outside".into()
        });
        assert_eq!(built, 0, "a line was built with no trace running");
        let ((), lines) = collect(async {
            note(|| "first".into());
            tokio::task::yield_now().await;
            note(|| "second".into());
        })
        .await;
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("  first") && lines[0].starts_with('+'));
        assert!(lines[1].ends_with("  second"));
        let ((), many) = collect(async {
            for i in 0..(MAX_LINES + 50) {
                note(|| i.to_string());
            }
        })
        .await;
        assert_eq!(many.len(), MAX_LINES);
    }
}
