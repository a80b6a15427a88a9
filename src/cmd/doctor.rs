//! `rpiprov doctor`: bootstrap's preflight alone ([`crate::bootstrap`] with
//! `preflight_only`): one probe per host, the port test among every selected node and
//! the managers, the findings printed one per line with what to do, and nothing changed.
//! Exit code 1 when there is an error, one that bootstrap would refuse.

use super::bootstrap::{NEEDS, checks, finish, run};
use super::context::{Opts, Style, with_fleet};
use crate::ui::term;

pub fn doctor(opts: &Opts, skip_preflight: &[String]) -> u8 {
    let skip = checks(skip_preflight);
    with_fleet(opts, "doctor", NEEDS, |ctx| {
        Box::pin(async move {
            let mut done = run(ctx, false, skip.clone(), true).await;
            done.findings.retain(|f| !skip.contains(&f.check));
            if !ctx.json {
                for f in &done.findings {
                    term::outln(&f.line());
                }
                if done.findings.is_empty() {
                    term::outln("doctor: nothing to report");
                }
            }
            finish(ctx, done, Style::Tally)
        })
    })
}
