//! Renderers only: how a command's progress and result look. Work emits
//! [`Event`](crate::exec::report::Event)s to a [`Reporter`]; [`reporter`] picks the one
//! that shows them ([`progress::Bars`] on a terminal, [`progress::Plain`] lines otherwise).
//! At the end, the rows become a table ([`summary`]) or, with `--json`, one document
//! ([`json`]); `status` has its own table ([`status`]), `plan` and `--dry-run` theirs
//! ([`plan`]). Nothing here decides anything
//! about hosts; it reads `crate::exec::report` and `crate::status`.
//! Every byte any of them writes, and every message of the commands, goes through
//! [`term`]: remote text made safe for a terminal, and a closed pipe never a panic.

pub mod json;
pub mod plan;
pub mod progress;
pub mod status;
pub mod summary;
pub mod term;

use std::io::IsTerminal;

use crate::exec::report::{Outcome, Reporter};

pub use progress::{Bars, Plain};

/// Picks the reporter: bars on a terminal, plain lines when stderr is not one or with `-v`.
pub fn reporter(rows: &[String], verbose: bool) -> Box<dyn Reporter> {
    if !verbose && std::io::stderr().is_terminal() {
        Box::new(Bars::new(rows))
    } else {
        Box::new(Plain::new(verbose))
    }
}

/// How an outcome reads in progress lines and the summary.
fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Unchanged => "ok",
        Outcome::Changed => "changed",
        Outcome::Failed => "FAILED",
        Outcome::Skipped => "SKIPPED",
    }
}
