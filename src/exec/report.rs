//! What a command reports, and the one bookkeeping of it. A command's result is a list of
//! [`Row`]s: one per host, and for `deploy` and `teardown` one per stack and network
//! ([`RowKind`]). While it works, a command emits [`Event`]s to a [`Reporter`] (the
//! renderers are in `crate::ui`). [`Rows`] does both for every command: it keeps the rows,
//! stamps their times, redacts what must not be shown, and emits each row's end with the
//! same message the summary shows ([`Row::detail`]).
//!
//! Nothing secret reaches here: events carry step descriptions and remote stderr, never
//! tokens or passwords, and [`Rows::with_secrets`] strips variable values Docker may echo.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::secret::Secret;

/// Something that happened on one row.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step began.
    Step(String),
    /// A line of remote output during a long step (shown as the step's detail).
    Output(String),
    /// The row is done: outcome and a short message.
    Done(Outcome, String),
    /// A note that does not change the row's state.
    Note(String),
}

/// How one row ended.
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

/// What a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    Host,
    Stack,
    Network,
}

/// Which row: a kind and a name (`Host` `pi1`, `Stack` `web`, `Network` `DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowId {
    pub kind: RowKind,
    pub name: String,
}

impl RowId {
    pub fn host(name: &str) -> RowId {
        RowId {
            kind: RowKind::Host,
            name: name.to_string(),
        }
    }
    pub fn stack(name: &str) -> RowId {
        RowId {
            kind: RowKind::Stack,
            name: name.to_string(),
        }
    }
    pub fn network(name: &str) -> RowId {
        RowId {
            kind: RowKind::Network,
            name: name.to_string(),
        }
    }

    /// How the row is shown: `pi1`, `stack web`, `network DATA`.
    pub fn label(&self) -> String {
        match self.kind {
            RowKind::Host => self.name.clone(),
            RowKind::Stack => format!("stack {}", self.name),
            RowKind::Network => format!("network {}", self.name),
        }
    }
}

/// The result of one row, for the summary and `--json`.
///
/// In `--json` a row is `{"host": LABEL, "kind": ..., "outcome": ...}`: `host` holds the
/// label ([`RowId::label`]) as it always has, so `stack web` for a stack; `kind` says what
/// the row is about.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: RowId,
    pub outcome: Outcome,
    /// What was changed, one description per step.
    pub changed: Vec<String>,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            host: String,
            kind: RowKind,
            outcome: Outcome,
            changed: &'a [String],
            failed_step: &'a Option<String>,
            error: &'a Option<String>,
            seconds: f64,
        }
        Json {
            host: self.label(),
            kind: self.id.kind,
            outcome: self.outcome,
            changed: &self.changed,
            failed_step: &self.failed_step,
            error: &self.error,
            seconds: self.seconds,
        }
        .serialize(s)
    }
}

impl Row {
    pub fn new(id: RowId) -> Row {
        Row {
            id,
            outcome: Outcome::Unchanged,
            changed: vec![],
            failed_step: None,
            error: None,
            seconds: 0.0,
        }
    }

    /// The row of a host that could not be reached: the one form for every command.
    pub fn connect_failed(host: &str, error: String) -> Row {
        Row {
            outcome: Outcome::Failed,
            failed_step: Some("connect".into()),
            error: Some(error),
            ..Row::new(RowId::host(host))
        }
    }

    pub fn label(&self) -> String {
        self.id.label()
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed | Outcome::Skipped)
    }

    /// What the row's end says, in the progress display and the summary alike: the failed
    /// step and its error, `no change`, or what changed.
    ///
    /// A failed row that had changed things says those too, after the failure: an
    /// interrupted or half-done run must say what it did as well as what it did not.
    pub fn detail(&self) -> String {
        match (&self.error, self.changed.is_empty()) {
            (Some(e), changed) => {
                let failure = match &self.failed_step {
                    Some(step) => format!("{step}: {e}"),
                    None => e.clone(),
                };
                if changed {
                    failure
                } else {
                    format!("{failure}\ndone before: {}", self.changed.join("; "))
                }
            }
            (None, true) => "no change".to_string(),
            (None, false) => self.changed.join("; "),
        }
    }
}

/// Whether any row failed or was skipped: the command exits 1.
pub fn any_failed(rows: &[Row]) -> bool {
    rows.iter().any(Row::failed)
}

/// Whether any row changed something.
pub fn any_changed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.outcome == Outcome::Changed)
}

/// Shows events as they come.
pub trait Reporter: Send + Sync {
    fn event(&self, row: &str, event: Event);
    /// Clears live output before the summary is printed.
    fn finish(&self) {}
}

/// Shows nothing: for work whose result is reported at its end (a preview).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &str, _: Event) {}
}

/// One row and whether its end was shown already.
struct Entry {
    row: Row,
    closed: bool,
}

struct Inner {
    rows: Mutex<Vec<Entry>>,
    started: Instant,
    reporter: Arc<dyn Reporter>,
    secrets: Vec<Secret>,
}

/// The rows of a command and the events they emit, shared by its tasks (a clone shares
/// the same rows). A row is made on first use; every change stamps it with the time since
/// the command started. Each row's end is emitted once: when the command
/// [closes](Rows::close) it early (a bootstrap host that failed while others go on), or
/// at [`finish`](Rows::finish).
#[derive(Clone)]
pub struct Rows {
    inner: Arc<Inner>,
}

impl Rows {
    /// These rows, in this order, before anything happened to them.
    pub fn new(reporter: Arc<dyn Reporter>, ids: &[RowId]) -> Rows {
        Rows::with_secrets(reporter, ids, vec![])
    }

    /// As [`Rows::new`], and every error and output line has these values replaced by
    /// `<redacted>`: Docker may echo a variable's value (an interpolation error quotes the
    /// text around it).
    pub fn with_secrets(reporter: Arc<dyn Reporter>, ids: &[RowId], secrets: Vec<Secret>) -> Rows {
        Rows {
            inner: Arc::new(Inner {
                rows: Mutex::new(
                    ids.iter()
                        .map(|id| Entry {
                            row: Row::new(id.clone()),
                            closed: false,
                        })
                        .collect(),
                ),
                started: Instant::now(),
                reporter,
                secrets: secrets
                    .into_iter()
                    .filter(|s| !s.expose().is_empty())
                    .collect(),
            }),
        }
    }

    /// Text with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in &self.inner.secrets {
            t = t.replace(s.expose(), "<redacted>");
        }
        t
    }

    /// When the command started, for times of its own.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(rows: &'a mut Vec<Entry>, id: &RowId) -> &'a mut Entry {
        let i = match rows.iter().position(|e| e.row.id == *id) {
            Some(i) => i,
            None => {
                rows.push(Entry {
                    row: Row::new(id.clone()),
                    closed: false,
                });
                rows.len() - 1
            }
        };
        &mut rows[i]
    }

    /// Changes a row (made if missing) and stamps its time.
    pub fn with(&self, id: &RowId, f: impl FnOnce(&mut Row)) {
        let mut rows = self.lock();
        let e = Self::entry(&mut rows, id);
        f(&mut e.row);
        e.row.seconds = self.inner.started.elapsed().as_secs_f64();
    }

    /// Makes sure the row exists, without changing it: the summary shows it even when
    /// nothing happens to it.
    pub fn add(&self, id: &RowId) {
        Self::entry(&mut self.lock(), id);
    }

    /// Whether the row failed or was skipped; `None` when there is no such row.
    pub fn failed(&self, id: &RowId) -> Option<bool> {
        self.lock()
            .iter()
            .find(|e| e.row.id == *id)
            .map(|e| e.row.failed())
    }

    /// Whether any row has failed or was skipped so far.
    pub fn any_failed(&self) -> bool {
        self.lock().iter().any(|e| e.row.failed())
    }

    fn event(&self, id: &RowId, event: Event) {
        self.inner.reporter.event(&id.label(), event);
    }

    /// A step begins on the row.
    pub fn step(&self, id: &RowId, what: &str) {
        self.event(id, Event::Step(what.to_string()));
    }

    /// A line of remote output for the row's current step.
    pub fn output(&self, id: &RowId, line: &str) {
        self.event(id, Event::Output(self.redact(line)));
    }

    /// A note that does not change the row.
    pub fn note(&self, id: &RowId, text: &str) {
        self.event(id, Event::Note(text.to_string()));
    }

    /// Records a change; the row becomes `changed`.
    pub fn changed(&self, id: &RowId, what: String) {
        self.with(id, |r| {
            r.changed.push(what);
            if r.outcome == Outcome::Unchanged {
                r.outcome = Outcome::Changed;
            }
        });
    }

    /// Records a failure. The first one names the row's failed step; later ones are added
    /// below it, so that no failure is lost.
    pub fn fail(&self, id: &RowId, step: &str, error: &str) {
        let error = self.redact(error);
        self.with(id, |r| {
            if r.outcome == Outcome::Failed {
                let prev = r.error.take().unwrap_or_default();
                r.error = Some(format!("{prev}\n{step}: {error}"));
            } else {
                r.outcome = Outcome::Failed;
                r.failed_step = Some(step.to_string());
                r.error = Some(error);
            }
        });
    }

    /// The row was not attempted, for this reason.
    pub fn skip(&self, id: &RowId, reason: &str) {
        self.with(id, |r| {
            r.outcome = Outcome::Skipped;
            r.error = Some(reason.to_string());
        });
    }

    /// Sets a row as it is, time included (made if missing).
    pub fn put(&self, row: Row) {
        let id = row.id.clone();
        Self::entry(&mut self.lock(), &id).row = row;
    }

    /// A host that could not be reached ([`Row::connect_failed`]); no time is spent on it.
    pub fn connect_failed(&self, host: &str, error: String) {
        self.put(Row::connect_failed(host, self.redact(&error)));
    }

    /// Emits the row's end now: nothing more will happen to it.
    pub fn close(&self, id: &RowId) {
        let mut rows = self.lock();
        if let Some(e) = rows.iter_mut().find(|e| e.row.id == *id && !e.closed) {
            e.closed = true;
            let done = Event::Done(e.row.outcome, e.row.detail());
            drop(rows);
            self.event(id, done);
        }
    }

    /// The rows, in the order they were made; emits the end of every row not closed yet.
    /// Called once, when the command's work is over.
    pub fn finish(&self) -> Vec<Row> {
        let rows = std::mem::take(&mut *self.lock());
        rows.into_iter()
            .map(|e| {
                if !e.closed {
                    self.event(&e.row.id, Event::Done(e.row.outcome, e.row.detail()));
                }
                e.row
            })
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Recorder;

    #[test]
    fn durations_in_messages() {
        assert_eq!(secs(Duration::from_secs(90)), "90s");
        assert_eq!(secs(Duration::from_millis(200)), "0.2s");
        assert_eq!(secs(Duration::from_millis(60_400)), "60s");
    }

    #[test]
    fn a_row_s_json_keeps_its_label_under_host() {
        let mut r = Row::new(RowId::stack("web"));
        r.outcome = Outcome::Changed;
        r.changed = vec!["removed".into()];
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "host": "stack web", "kind": "stack", "outcome": "changed",
                "changed": ["removed"], "failed_step": null, "error": null, "seconds": 0.0
            })
        );
    }

    #[test]
    fn rows_keep_every_failure_redact_and_end_once() {
        let rec = Arc::new(Recorder::default());
        let rows = Rows::with_secrets(
            rec.clone(),
            &[RowId::host("pi1")],
            vec![Secret::new("hunter2"), Secret::new("")],
        );
        let web = RowId::stack("web");
        rows.changed(&web, "deployed".into());
        rows.fail(&RowId::host("pi1"), "lock", "held by hunter2");
        rows.fail(&RowId::host("pi1"), "release lock", "exit 1");
        rows.output(&web, "echo hunter2");
        rows.connect_failed("pi2", "no answer".into());
        rows.close(&RowId::host("pi2"));
        rows.close(&RowId::host("pi2"));
        assert_eq!(rows.failed(&RowId::host("pi1")), Some(true));
        assert_eq!(rows.failed(&RowId::host("pi9")), None);
        let out = rows.finish();
        let labels: Vec<String> = out.iter().map(Row::label).collect();
        assert_eq!(labels, vec!["pi1", "stack web", "pi2"]);
        assert_eq!(
            out[0].detail(),
            "lock: held by <redacted>\nrelease lock: exit 1"
        );
        assert_eq!(out[1].outcome, Outcome::Changed);
        assert_eq!(out[2].detail(), "connect: no answer");
        assert_eq!(
            rec.events(),
            vec![
                "stack web: Output(\"echo <redacted>\")",
                "pi2: Done(Failed, \"connect: no answer\")",
                "pi1: Done(Failed, \"lock: held by <redacted>\\nrelease lock: exit 1\")",
                "stack web: Done(Changed, \"deployed\")",
            ]
        );
    }
}
