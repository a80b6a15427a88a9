//! Rendering of progress and results. Work emits [`Event`]s; a [`Reporter`] shows them as
//! indicatif lines on a terminal or as plain prefixed lines otherwise. Results become a
//! summary table or, with `--json`, one JSON document on stdout. Nothing secret reaches
//! here: events carry step descriptions and remote stderr, never tokens or passwords.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Something that happened on one host.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step began.
    Step(String),
    /// A line of remote output during a long step (shown as the step's detail).
    Output(String),
    /// The host is done: outcome and a short message.
    Done(Outcome, String),
    /// A note that does not change the host's state.
    Note(String),
}

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing needed doing.
    Unchanged,
    /// Steps were done.
    Changed,
    /// A step failed, or the host could not be reached.
    Failed,
    /// Not attempted because something it depends on failed.
    Skipped,
}

/// The result of one host, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    /// What was changed, one description per step.
    pub changed: Vec<String>,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl HostReport {
    pub fn new(host: &str) -> HostReport {
        HostReport {
            host: host.to_string(),
            outcome: Outcome::Unchanged,
            changed: vec![],
            failed_step: None,
            error: None,
            seconds: 0.0,
        }
    }
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed | Outcome::Skipped)
    }
}

/// Whether any row failed or was skipped: the command exits 1.
pub fn any_failed(rows: &[HostReport]) -> bool {
    rows.iter().any(HostReport::failed)
}

/// Whether any row changed something.
pub fn any_changed(rows: &[HostReport]) -> bool {
    rows.iter().any(|r| r.outcome == Outcome::Changed)
}

/// The per-row reports of a command, shared by its tasks: a row is made on first use, and
/// every change stamps it with the time since the command started.
pub struct Rows {
    rows: Mutex<Vec<HostReport>>,
    started: Instant,
}

impl Rows {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Rows {
        Rows {
            rows: Mutex::new(names.iter().map(|n| HostReport::new(n.as_ref())).collect()),
            started: Instant::now(),
        }
    }

    pub fn with(&self, row: &str, f: impl FnOnce(&mut HostReport)) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let i = match rows.iter().position(|r| r.host == row) {
            Some(i) => i,
            None => {
                rows.push(HostReport::new(row));
                rows.len() - 1
            }
        };
        f(&mut rows[i]);
        rows[i].seconds = self.started.elapsed().as_secs_f64();
    }

    /// Records a change; the row becomes `changed`.
    pub fn changed(&self, row: &str, what: String) {
        self.with(row, |r| {
            r.changed.push(what);
            if r.outcome == Outcome::Unchanged {
                r.outcome = Outcome::Changed;
            }
        });
    }

    /// Records a failure. The first one names the row's failed step; later ones are added
    /// below it, so that no failure is lost.
    pub fn fail(&self, row: &str, step: &str, error: &str) {
        self.with(row, |r| {
            if r.outcome == Outcome::Failed {
                let prev = r.error.take().unwrap_or_default();
                r.error = Some(format!("{prev}\n{step}: {error}"));
            } else {
                r.outcome = Outcome::Failed;
                r.failed_step = Some(step.to_string());
                r.error = Some(error.to_string());
            }
        });
    }

    pub fn skip(&self, row: &str, reason: &str) {
        self.with(row, |r| {
            r.outcome = Outcome::Skipped;
            r.error = Some(reason.to_string());
        });
    }

    /// Whether any row has failed or was skipped so far.
    pub fn any_failed(&self) -> bool {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(HostReport::failed)
    }

    pub fn into_inner(self) -> Vec<HostReport> {
        self.rows.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shows events as they come.
pub trait Reporter: Send + Sync {
    fn event(&self, host: &str, event: Event);
    /// Clears live output before the summary is printed.
    fn finish(&self) {}
}

/// Picks the reporter: bars on a terminal, plain lines when stderr is not one or with `-v`.
pub fn reporter(hosts: &[String], verbose: bool) -> Box<dyn Reporter> {
    if !verbose && std::io::stderr().is_terminal() {
        Box::new(Bars::new(hosts))
    } else {
        Box::new(Plain::new(verbose))
    }
}

/// Plain lines on stderr, `HOST: message`, for logs and CI.
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

    /// Shows nothing: for a survey that runs before the user is asked.
    pub fn quiet() -> Plain {
        Plain {
            quiet: true,
            ..Plain::new(false)
        }
    }
}

impl Reporter for Plain {
    fn event(&self, host: &str, event: Event) {
        if self.quiet {
            return;
        }
        let line = match event {
            Event::Step(s) => format!("{host}: {s}"),
            Event::Output(l) if self.verbose => format!("{host}:   | {l}"),
            Event::Output(_) => return,
            Event::Done(o, msg) => format!("{host}: {} {msg}", outcome_word(o)),
            Event::Note(n) => format!("{host}: {n}"),
        };
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let t = self.start.elapsed().as_secs_f64();
        let _ = writeln!(std::io::stderr(), "[{t:6.1}s] {line}");
    }
}

/// One indicatif line per host with its current step and elapsed time.
pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl Bars {
    pub fn new(hosts: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let width = hosts.iter().map(String::len).max().unwrap_or(4);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:<{width}}} [{{elapsed:>4}}] {{wide_msg}}"
        ))
        .expect("static template");
        let bars = hosts
            .iter()
            .map(|h| {
                let pb = multi.add(ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.set_prefix(h.clone());
                pb.set_message("waiting");
                pb.enable_steady_tick(Duration::from_millis(120));
                (h.clone(), pb)
            })
            .collect();
        Bars { multi, bars }
    }
}

impl Reporter for Bars {
    fn event(&self, host: &str, event: Event) {
        let Some(pb) = self.bars.get(host) else {
            let _ = self.multi.println(format!("{host}: {event:?}"));
            return;
        };
        match event {
            Event::Step(s) => pb.set_message(s),
            Event::Output(l) => {
                let step = pb.message();
                let step = step.split(" | ").next().unwrap_or_default().to_string();
                pb.set_message(format!("{step} | {}", truncate(&l, 60)));
            }
            Event::Done(o, msg) => pb.finish_with_message(format!("{} {msg}", outcome_word(o))),
            Event::Note(n) => {
                let _ = self.multi.println(format!("{host}: {n}"));
            }
        }
    }
    fn finish(&self) {
        for pb in self.bars.values() {
            if !pb.is_finished() {
                pb.finish();
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Unchanged => "ok",
        Outcome::Changed => "changed",
        Outcome::Failed => "FAILED",
        Outcome::Skipped => "SKIPPED",
    }
}

/// The summary table printed at the end of a command.
pub fn summary(command: &str, reports: &[HostReport], elapsed: Duration) -> String {
    let width = reports
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<width$}  {:<9} {:>7}  DETAIL\n",
        "HOST", "RESULT", "TIME"
    ));
    for r in reports {
        let detail = match (&r.error, r.changed.is_empty()) {
            (Some(e), _) => match &r.failed_step {
                Some(step) => format!("{step}: {e}"),
                None => e.clone(),
            },
            (None, true) => "no change".to_string(),
            (None, false) => r.changed.join("; "),
        };
        // A multi-line remote error is indented under its host.
        let detail = detail
            .trim_end()
            .replace('\n', &format!("\n{:width$}  ", ""));
        out.push_str(&format!(
            "{:<width$}  {:<9} {:>6.1}s  {detail}\n",
            r.host,
            outcome_word(r.outcome),
            r.seconds
        ));
    }
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    let (changed, unchanged, failed, skipped) = (
        count(Outcome::Changed),
        count(Outcome::Unchanged),
        count(Outcome::Failed),
        count(Outcome::Skipped),
    );
    let secs = elapsed.as_secs_f64();
    if changed == 0 && failed == 0 && skipped == 0 {
        out.push_str(&format!(
            "{command}: no change on any host ({} hosts, {secs:.1}s)\n",
            reports.len()
        ));
    } else {
        out.push_str(&format!(
            "{command}: {changed} changed, {unchanged} unchanged, {failed} failed, {skipped} skipped ({secs:.1}s)\n"
        ));
    }
    out
}

/// A duration for messages: `90s`, or `0.2s` below ten seconds when not whole.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 && d.subsec_millis() != 0 {
        format!("{s:.1}s")
    } else {
        format!("{:.0}s", s)
    }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a, T: Serialize> {
    pub command: &'a str,
    pub ok: bool,
    pub changed: bool,
    pub seconds: f64,
    pub hosts: &'a [HostReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_messages() {
        assert_eq!(secs(Duration::from_secs(90)), "90s");
        assert_eq!(secs(Duration::from_millis(200)), "0.2s");
        assert_eq!(secs(Duration::from_millis(60_400)), "60s");
    }

    #[test]
    fn summary_of_an_unchanged_fleet_says_so() {
        let r = vec![HostReport::new("pi1"), HostReport::new("pi22")];
        assert_eq!(
            summary("bootstrap", &r, Duration::from_millis(1500)),
            "HOST  RESULT       TIME  DETAIL\n\
             pi1   ok           0.0s  no change\n\
             pi22  ok           0.0s  no change\n\
             bootstrap: no change on any host (2 hosts, 1.5s)\n"
        );
    }

    #[test]
    fn summary_shows_changes_and_the_failed_step() {
        let mut a = HostReport::new("pi1");
        a.outcome = Outcome::Changed;
        a.changed = vec!["swarm init".into(), "create network DATA".into()];
        a.seconds = 2.25;
        let mut b = HostReport::new("pi3");
        b.outcome = Outcome::Failed;
        b.failed_step = Some("install docker".into());
        b.error = Some("exit 100\nE: Unable to locate package".into());
        assert_eq!(
            summary("bootstrap", &[a, b], Duration::from_secs(3)),
            "HOST  RESULT       TIME  DETAIL\n\
             pi1   changed      2.2s  swarm init; create network DATA\n\
             pi3   FAILED       0.0s  install docker: exit 100\n\
             \x20     E: Unable to locate package\n\
             bootstrap: 1 changed, 0 unchanged, 1 failed, 0 skipped (3.0s)\n"
        );
    }
}
