//! Live progress: [`Plain`] prefixed lines on stderr (logs, CI, `-v`) and [`Bars`], one
//! indicatif line per row with its current step and elapsed time. Both show remote text
//! (output lines, errors): [`Plain`] writes through [`term`], and [`Bars`] hands indicatif
//! only [cleaned](term::clean) text (indicatif ignores its own write errors).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{outcome_word, term};
use crate::exec::report::{Event, Reporter};

/// Plain lines on stderr, `ROW: message`, for logs and CI.
pub struct Plain {
    verbose: bool,
    quiet: bool,
    start: Instant,
    out: Mutex<()>,
}

impl Plain {
    pub fn new(verbose: bool) -> Plain {
        Plain {
            verbose,
            quiet: false,
            start: Instant::now(),
            out: Mutex::new(()),
        }
    }

    /// Shows nothing: for a survey that runs before the user is asked, or output that is
    /// the result itself.
    pub fn quiet() -> Plain {
        Plain {
            quiet: true,
            ..Plain::new(false)
        }
    }
}

impl Reporter for Plain {
    fn event(&self, row: &str, event: Event) {
        if self.quiet {
            return;
        }
        let line = match event {
            Event::Step(s) => format!("{row}: {s}"),
            Event::Output(l) if self.verbose => format!("{row}:   | {l}"),
            Event::Output(_) => return,
            Event::Done(o, msg) => format!("{row}: {} {msg}", outcome_word(o)),
            Event::Note(n) => format!("{row}: {n}"),
        };
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let t = self.start.elapsed().as_secs_f64();
        term::errln(&format!("[{t:6.1}s] {line}"));
    }
}

/// One indicatif line per row with its current step and elapsed time. A row that ends
/// stops spinning at once and shows its outcome and its own time (how long after the
/// start it ended), while the others go on; when the command ends, the block is cleared:
/// the summary table that follows says it all once.
pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// For a row that ended: no spinner, no running clock.
    done_style: ProgressStyle,
    start: Instant,
}

/// A finished row's line: `✓ pi2  [0.9s] changed load image ...`.
pub fn done_line(outcome: &str, seconds: f64, msg: &str) -> String {
    format!("[{seconds:>4.1}s] {outcome} {msg}")
}

impl Bars {
    pub fn new(rows: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let width = rows.iter().map(String::len).max().unwrap_or(4);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:<{width}}} [{{elapsed:>4}}] {{wide_msg}}"
        ))
        .expect("static template");
        let done_style =
            ProgressStyle::with_template(&format!("  {{prefix:<{width}}} {{wide_msg}}"))
                .expect("static template");
        let bars = rows
            .iter()
            .map(|h| {
                let pb = multi.add(ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.set_prefix(term::clean(h).into_owned());
                pb.set_message("waiting");
                pb.enable_steady_tick(Duration::from_millis(120));
                (h.clone(), pb)
            })
            .collect();
        Bars {
            multi,
            bars,
            done_style,
            start: Instant::now(),
        }
    }
}

impl Reporter for Bars {
    fn event(&self, row: &str, event: Event) {
        let safe = |text: &str| term::clean(text).into_owned();
        let Some(pb) = self.bars.get(row) else {
            let _ = self.multi.println(safe(&format!("{row}: {event:?}")));
            return;
        };
        match event {
            Event::Step(s) => pb.set_message(safe(&s)),
            Event::Output(l) => {
                let step = pb.message();
                let step = step.split(" | ").next().unwrap_or_default().to_string();
                pb.set_message(format!("{step} | {}", truncate(&safe(&l), 60)));
            }
            Event::Done(o, msg) => {
                let seconds = self.start.elapsed().as_secs_f64();
                // Only the first line of a multi-line error: the summary shows the rest.
                let msg = msg.lines().next().unwrap_or_default();
                pb.set_style(self.done_style.clone());
                pb.finish_with_message(safe(&done_line(outcome_word(o), seconds, msg)));
            }
            // The row's own line says it (a line above the block would repeat the row's
            // end a moment later).
            Event::Note(n) if !pb.is_finished() => pb.set_message(safe(&n)),
            Event::Note(n) => {
                let _ = self.multi.println(safe(&format!("{row}: {n}")));
            }
        }
    }
    fn finish(&self) {
        // The summary (or the JSON) that follows is the result: the block goes, so that
        // nothing is said twice.
        for pb in self.bars.values() {
            pb.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::report::Outcome;

    /// What a compromised Pi might print: OSC 52 (write the clipboard), a cursor move, a
    /// carriage return that overwrites, a right-to-left override.
    const HOSTILE: &str = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[1A\rok \u{202e}deliaf";

    #[test]
    fn bars_hand_indicatif_only_cleaned_remote_text() {
        let bars = Bars::new(&["pi1".to_string(), "pi2".to_string()]);
        bars.event("pi1", Event::Step("install docker".into()));
        bars.event("pi1", Event::Output(HOSTILE.into()));
        let shown = bars.bars["pi1"].message();
        assert!(!shown.contains(term::is_unsafe), "{shown:?}");
        assert!(
            shown.starts_with("install docker | \\x1b]52;c;"),
            "{shown:?}"
        );
        bars.event("pi2", Event::Step(HOSTILE.into()));
        assert!(!bars.bars["pi2"].message().contains(term::is_unsafe));
        bars.event("pi2", Event::Note(HOSTILE.into()));
        assert!(!bars.bars["pi2"].message().contains(term::is_unsafe));
        bars.event("pi2", Event::Done(Outcome::Failed, HOSTILE.into()));
        let end = bars.bars["pi2"].message();
        assert!(end.contains("FAILED \\x1b]52;c;"), "{end:?}");
        assert!(!end.contains(term::is_unsafe), "{end:?}");
    }

    #[test]
    fn a_finished_row_shows_its_outcome_and_own_time() {
        assert_eq!(
            done_line("changed", 0.94, "load image lab/busybox:1"),
            "[ 0.9s] changed load image lab/busybox:1"
        );
    }
}
