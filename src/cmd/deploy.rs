//! `rpiprov deploy` (and `deploy --unlock`): reads the local files first (a missing file
//! or variable is a usage error, before any connection), connects to the whole swarm, and
//! hands over to the executor ([`crate::deploy`]) with Ctrl-C as its interruption.

use super::context::{
    Ctx, Done, Needs, Opts, connect_swarm, ctrl_c, known_addresses, show_preview, with_fleet,
};
use crate::exec::report::{Reporter, Silent};
use crate::exit::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::ui::term;

const NEEDS: Needs = Needs {
    whole_swarm: true,
    managers: true,
    root: true,
};

/// `stacks`: only these of the playbook (all when empty).
pub fn deploy(
    opts: &Opts,
    unlock: bool,
    dry_run: bool,
    skip_bind_check: bool,
    stacks: &[String],
) -> u8 {
    let stacks = stacks.to_vec();
    with_fleet(opts, "deploy", NEEDS, move |ctx| {
        let stacks = stacks.clone();
        Box::pin(async move { body(ctx, unlock, dry_run, skip_bind_check, &stacks).await })
    })
}

async fn body(
    ctx: &Ctx,
    unlock: bool,
    dry_run: bool,
    skip_bind_check: bool,
    stacks: &[String],
) -> Done {
    let playbook = match ctx.playbook_of(stacks, crate::config::Purpose::Deploy) {
        Ok(p) => p,
        Err(code) => return Done::Exit(code),
    };
    let playbook = &playbook;
    // Local files and variables first: a missing secret is a usage error, and nothing
    // remote has been touched yet.
    let prepared = match crate::deploy::prepare(playbook) {
        Ok(p) => p,
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return Done::Exit(EXIT_USAGE);
        }
    };
    if unlock {
        let reporter = ctx.reporter(&[]);
        let swarm = match connect_swarm(ctx, &reporter).await {
            Ok(s) => s,
            Err(done) => return done,
        };
        return match crate::exec::lock::unlock(&*swarm.leader, ctx.connect.command_timeout).await {
            Ok(msg) => {
                term::outln(&msg);
                Done::Exit(EXIT_OK)
            }
            Err(e) => {
                term::errln(&format!("error: {e}"));
                Done::Exit(EXIT_FAILED)
            }
        };
    }
    if dry_run {
        let quiet: std::sync::Arc<dyn Reporter> = std::sync::Arc::new(Silent);
        let swarm = match connect_swarm(ctx, &quiet).await {
            Ok(s) => s,
            Err(done) => return done,
        };
        let opts = crate::deploy::Options::new(ctx.parallel, ctx.connect.command_timeout);
        let mut preview = crate::deploy::preview(
            &opts,
            &prepared,
            swarm.leader,
            swarm.engines,
            swarm.sessions,
        )
        .await;
        for (host, e) in swarm.unreachable {
            preview.problems.insert(0, format!("{host}: {e}"));
        }
        return show_preview(ctx, &preview);
    }
    let names = ctx.ordered_targets();
    let leader_name = ctx.manager_names().into_iter().next().unwrap_or_default();
    let rows = crate::deploy::row_names(&prepared, &leader_name, &names);
    let reporter = ctx.reporter(&rows);
    let swarm = match connect_swarm(ctx, &reporter).await {
        Ok(s) => s,
        Err(done) => return done,
    };
    // What the bind check compares each node's word with.
    let hosts: Vec<&crate::config::Host> = names.iter().map(|n| ctx.host(n)).collect();
    let addresses = known_addresses(&hosts, ctx.connect.connect_timeout).await;
    let opts = crate::deploy::Options {
        skip_bind_check,
        addresses,
        ..crate::deploy::Options::new(ctx.parallel, ctx.connect.command_timeout)
    };
    let res = crate::deploy::execute(
        &opts,
        &prepared,
        swarm.leader,
        swarm.engines,
        swarm.sessions,
        reporter.clone(),
        ctrl_c(),
    )
    .await;
    reporter.finish();
    ctx.done(swarm.unreachable, res.rows, &res.stacks)
}
