//! `rpiprov status`: reads the local files for the stacks' fingerprints (as deploy
//! would), connects to every host of the inventory, asks each once
//! ([`crate::status::gather`]), and prints what [`crate::status::assess`] says: a table,
//! or with `--json` the same content as one document. Exit 0 when everything matches
//! the inventory and the playbook, 1 when something differs or is down.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::{Ctx, Done, Needs, Opts, connect, with_fleet};
use crate::config::Host;
use crate::exec::report::Reporter;
use crate::exit::{EXIT_FAILED, EXIT_OK};
use crate::status::{Input, assess, gather};
use crate::ui::Plain;

/// Reads Docker's socket on every host (root), changes nothing.
const NEEDS: Needs = Needs {
    whole_swarm: true,
    managers: true,
    root: true,
};

pub fn status(opts: &Opts) -> u8 {
    with_fleet(opts, "status", NEEDS, |ctx| Box::pin(body(ctx)))
}

async fn body(ctx: &Ctx) -> Done {
    let playbook = ctx.loaded.playbook.as_ref();
    // What deploy would fingerprint; without a variable's value, the stacks' files cannot
    // be compared, which the status says rather than fail.
    let local: BTreeMap<String, Result<String, String>> = match playbook {
        None => BTreeMap::new(),
        Some(pb) => match crate::deploy::prepare(pb) {
            Ok(p) => p
                .stacks
                .into_iter()
                .map(|s| (s.name, Ok(s.fingerprint)))
                .collect(),
            Err(e) => pb
                .stacks
                .iter()
                .map(|s| (s.name.clone(), Err(e.clone())))
                .collect(),
        },
    };
    let quiet: Arc<dyn Reporter> = Arc::new(Plain::quiet());
    let names = ctx.ordered_targets();
    let (sessions, failed) = connect(ctx, &names, &quiet).await;
    let hosts: Vec<&Host> = ctx.loaded.inventory.hosts.iter().collect();
    let networks: Vec<&str> = playbook
        .map(|p| p.networks.iter().map(|n| n.name.as_str()).collect())
        .unwrap_or_default();
    let stacks: Vec<&str> = playbook
        .map(|p| p.stacks.iter().map(|s| s.name.as_str()).collect())
        .unwrap_or_default();
    let answers = gather(
        &hosts,
        &networks,
        &stacks,
        &sessions,
        failed,
        ctx.parallel,
        ctx.connect.command_timeout,
    )
    .await;
    let status = assess(&Input {
        hosts: &ctx.loaded.inventory.hosts,
        playbook,
        local: &local,
        answers: &answers,
    });
    if ctx.json {
        // What the status cost the hosts, as every command's `--json` says it.
        let mut doc = serde_json::to_value(&status).expect("the status serialises");
        doc["remote"] =
            serde_json::to_value(crate::remote::stats::snapshot()).expect("the counts serialise");
        crate::ui::json::print(&doc, true);
    } else {
        crate::ui::term::out(&crate::ui::status::render(&status));
    }
    Done::Exit(if status.ok { EXIT_OK } else { EXIT_FAILED })
}
