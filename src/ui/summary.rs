//! The end of a command on a terminal: [`summary`], the table of rows with their result,
//! time and detail; or [`tally`], for a command whose output already is the result
//! (`rpiprov run`): only the failures and a count.

use std::time::Duration;

use super::outcome_word;
use crate::exec::report::{Outcome, Row};

/// The summary table printed at the end of a command.
pub fn summary(command: &str, rows: &[Row], elapsed: Duration) -> String {
    let labels: Vec<String> = rows.iter().map(Row::label).collect();
    let width = labels.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<width$}  {:<9} {:>7}  DETAIL\n",
        "HOST", "RESULT", "TIME"
    ));
    for (r, label) in rows.iter().zip(&labels) {
        // A multi-line remote error is indented under its row.
        let detail = r
            .detail()
            .trim_end()
            .replace('\n', &format!("\n{:width$}  ", ""));
        out.push_str(&format!(
            "{label:<width$}  {:<9} {:>6.1}s  {detail}\n",
            outcome_word(r.outcome),
            r.seconds
        ));
    }
    let count = |o: Outcome| rows.iter().filter(|r| r.outcome == o).count();
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
            rows.len()
        ));
    } else {
        out.push_str(&format!(
            "{command}: {changed} changed, {unchanged} unchanged, {failed} failed, {skipped} skipped ({secs:.1}s)\n"
        ));
    }
    out
}

/// The end of a command whose output is the result: a line per failed row, then a count.
pub fn tally(command: &str, rows: &[Row], elapsed: Duration) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.failed()) {
        out.push_str(&format!(
            "{}: FAILED {}\n",
            r.label(),
            r.error.as_deref().unwrap_or("")
        ));
    }
    let failed = rows.iter().filter(|r| r.failed()).count();
    out.push_str(&format!(
        "{command}: {} ok, {failed} failed ({:.1}s)\n",
        rows.len() - failed,
        elapsed.as_secs_f64()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::report::RowId;

    fn host(name: &str) -> Row {
        Row::new(RowId::host(name))
    }

    #[test]
    fn summary_of_an_unchanged_fleet_says_so() {
        let r = vec![host("pi1"), host("pi22")];
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
        let mut a = host("pi1");
        a.outcome = Outcome::Changed;
        a.changed = vec!["swarm init".into(), "create network DATA".into()];
        a.seconds = 2.25;
        let mut b = host("pi3");
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

    #[test]
    fn tally_names_only_the_failures() {
        let mut b = host("pi2");
        b.outcome = Outcome::Failed;
        b.error = Some("exit 3".into());
        assert_eq!(
            tally("run", &[host("pi1"), b], Duration::from_millis(400)),
            "pi2: FAILED exit 3\nrun: 1 ok, 1 failed (0.4s)\n"
        );
    }
}
