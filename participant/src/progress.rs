//! Progress on a terminal for long local work (loading the data, training, scoring): drawn
//! on stderr only when stderr is a terminal, and showing only what is being done, row counts
//! and elapsed time, never a value of the data.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner or a row counter that disappears when dropped.
pub struct Progress(ProgressBar);

fn bar(template: &str, what: String) -> Progress {
    if !std::io::stderr().is_terminal() {
        return Progress(ProgressBar::hidden());
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_message(what);
    pb.enable_steady_tick(Duration::from_millis(120));
    Progress(pb)
}

impl Progress {
    /// Work with no count to show (loading, fitting): a spinner and the elapsed time.
    pub fn spinner(what: impl Into<String>) -> Self {
        bar("{spinner} {msg} ({elapsed})", what.into())
    }

    /// Work over rows whose total is not known beforehand: a running row count.
    pub fn rows(what: impl Into<String>) -> Self {
        bar(
            "{spinner} {msg}: {human_pos} rows ({per_sec}, {elapsed})",
            what.into(),
        )
    }

    /// Counts `n` more rows done.
    pub fn add(&self, n: usize) {
        self.0.inc(n as u64);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_nothing_is_drawn_and_counting_still_works() {
        // The test harness's stderr is captured, not a terminal.
        if std::io::stderr().is_terminal() {
            return;
        }
        let p = Progress::rows("scoring");
        assert!(p.0.is_hidden());
        p.add(5);
        p.add(7);
        assert_eq!(p.0.position(), 12);
    }
}
