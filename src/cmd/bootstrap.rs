//! `rpiprov bootstrap`: connects to the selected hosts and every manager, and hands over
//! to the executor ([`crate::bootstrap`]), which runs the preflight first; its findings
//! are printed before the summary, and `--json` adds them and the probed facts.

use std::collections::BTreeMap;

use super::context::{Ctx, Done, Needs, Opts, Style, connect, known_addresses, with_fleet};
use crate::bootstrap::{Bootstrapped, Check};
use crate::config::Host;
use crate::ui::term;

/// Managers are connected whatever `--on` selects: joins and labels go through them.
pub const NEEDS: Needs = Needs {
    whole_swarm: false,
    managers: true,
    root: true,
};

pub fn bootstrap(opts: &Opts, force: bool, skip_preflight: &[String]) -> u8 {
    let skip = checks(skip_preflight);
    with_fleet(opts, "bootstrap", NEEDS, |ctx| {
        Box::pin(async move {
            let done = run(ctx, force, skip.clone(), false).await;
            for f in &done.findings {
                let skipped = if skip.contains(&f.check) {
                    " (skipped)"
                } else {
                    ""
                };
                term::errln(&format!("{}{skipped}", f.line()));
            }
            finish(ctx, done, Style::Table)
        })
    })
}

/// The checks `--skip-preflight` names (clap has checked the names).
pub fn checks(names: &[String]) -> Vec<Check> {
    names.iter().filter_map(|n| Check::from_name(n)).collect()
}

/// Connects and runs the executor: a bootstrap, or with `preflight_only` the doctor.
pub async fn run(ctx: &Ctx, force: bool, skip: Vec<Check>, preflight_only: bool) -> Bootstrapped {
    let inv = &ctx.loaded.inventory;
    let names = ctx.ordered_targets();
    let reporter = ctx.reporter(&names);
    let hosts: Vec<&Host> = ctx.selected.iter().map(|n| ctx.host(n)).collect();
    let managers: Vec<&Host> = inv.managers().collect();
    let all: Vec<&Host> = names.iter().map(|n| ctx.host(n)).collect();
    // Names are resolved while the connections are made.
    let ((sessions, failed), addresses) = tokio::join!(
        connect(ctx, &names, &reporter),
        known_addresses(&all, ctx.connect.connect_timeout)
    );
    let networks = ctx
        .loaded
        .playbook
        .as_ref()
        .map(|p| p.networks.as_slice())
        .unwrap_or_default();
    let opts = crate::bootstrap::Options {
        hosts,
        managers,
        networks,
        default_addr_pool: inv.swarm.default_addr_pool.as_deref(),
        force,
        parallel: ctx.parallel,
        command_timeout: ctx.connect.command_timeout,
        skip,
        preflight_only,
        addresses,
    };
    let done = crate::bootstrap::execute(&opts, sessions, failed, reporter.clone()).await;
    reporter.finish();
    done
}

/// The end: the rows, and in `--json` the facts and the findings.
pub fn finish(ctx: &Ctx, done: Bootstrapped, style: Style) -> Done {
    let facts: BTreeMap<_, _> = done.facts.into_iter().collect();
    Done::Rows {
        rows: done.rows,
        details: ctx.details(&serde_json::json!({ "facts": facts, "preflight": done.findings })),
        style,
    }
}
