//! `rpiprov bootstrap`: connects to the selected hosts and every manager, and hands over
//! to the executor ([`crate::bootstrap`]); `--json` adds the probed facts.

use std::collections::BTreeMap;

use super::context::{Ctx, Done, Needs, Opts, Style, connect, with_fleet};
use crate::config::Host;

/// Managers are connected whatever `--on` selects: joins and labels go through them.
const NEEDS: Needs = Needs {
    whole_swarm: false,
    managers: true,
    root: true,
};

pub fn bootstrap(opts: &Opts, force: bool) -> u8 {
    with_fleet(opts, "bootstrap", NEEDS, |ctx| Box::pin(body(ctx, force)))
}

async fn body(ctx: &Ctx, force: bool) -> Done {
    let inv = &ctx.loaded.inventory;
    let names = ctx.ordered_targets();
    let reporter = ctx.reporter(&names);
    let (sessions, failed) = connect(ctx, &names, &reporter).await;
    let hosts: Vec<&Host> = ctx.selected.iter().map(|n| ctx.host(n)).collect();
    let managers: Vec<&Host> = inv.managers().collect();
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
    };
    let (rows, facts) = crate::bootstrap::execute(&opts, sessions, failed, reporter.clone()).await;
    reporter.finish();
    let facts: BTreeMap<_, _> = facts.into_iter().collect();
    Done::Rows {
        rows,
        details: ctx.details(&serde_json::json!({ "facts": facts })),
        style: Style::Table,
    }
}
