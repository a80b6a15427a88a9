//! `rpiprov teardown`: connects to the whole swarm, asks the manager what exists of the
//! playbook, asks the user to confirm (or takes `--yes`), and hands over to the executor
//! ([`crate::teardown`]) with Ctrl-C as its interruption.

use std::io::IsTerminal;
use std::sync::Arc;

use super::context::{Ctx, Done, Needs, Opts, connect_swarm, ctrl_c, show_preview, with_fleet};
use crate::exec::report::Reporter;
use crate::exit::{EXIT_FAILED, EXIT_USAGE};
use crate::remote::Remote;
use crate::ui::{Plain, term};

const NEEDS: Needs = Needs {
    whole_swarm: true,
    managers: true,
    root: true,
};

/// What the user asked of a teardown.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// `--yes`: no confirmation.
    pub yes: bool,
    pub leave_swarm: bool,
    pub purge: bool,
    /// `--force`: dissolve even where that loses quorum.
    pub force: bool,
}

pub fn teardown(opts: &Opts, asked: Asked, dry_run: bool) -> u8 {
    with_fleet(opts, "teardown", NEEDS, |ctx| {
        Box::pin(body(ctx, asked, dry_run))
    })
}

async fn body(ctx: &Ctx, asked: Asked, dry_run: bool) -> Done {
    let Asked {
        yes,
        leave_swarm,
        purge,
        force,
    } = asked;
    let playbook = match ctx.playbook() {
        Ok(p) => p,
        Err(code) => return Done::Exit(code),
    };
    let interactive = std::io::stdin().is_terminal();
    if !yes && !interactive && !dry_run {
        term::errln(
            "error: teardown removes stacks and networks: confirm with --yes when not on a terminal",
        );
        return Done::Exit(EXIT_USAGE);
    }
    let quiet: Arc<dyn Reporter> = Arc::new(Plain::quiet());
    let swarm = match connect_swarm(ctx, &quiet).await {
        Ok(s) => s,
        Err(done) => return done,
    };
    let mut opts = crate::teardown::Options::new(
        ctx.parallel,
        ctx.connect.command_timeout,
        ctx.manager_names(),
        leave_swarm,
        purge,
    );
    opts.force = force;
    let node_names: Vec<String> = swarm.sessions.keys().cloned().collect();
    if dry_run {
        let mut preview =
            crate::teardown::preview(&*swarm.leader, &swarm.engines, playbook, &opts, &node_names)
                .await;
        for (host, e) in swarm.unreachable {
            preview.problems.insert(0, format!("{host}: {e}"));
        }
        return show_preview(ctx, &preview);
    }
    // The leader's Engine API (opened when it said it serves) serves this survey, the one
    // under the lock and the waits.
    let found = match swarm.engines.get(swarm.leader.host()).await {
        Ok(e) => crate::teardown::survey(&e, playbook, ctx.connect.command_timeout).await,
        Err(e) => Err(crate::exec::StepError(e.to_string())),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return Done::Exit(EXIT_FAILED);
        }
    };
    let mut what = found.describe();
    if leave_swarm {
        what.push_str("; then dissolve the swarm (every node leaves)");
    }
    if purge {
        what.push_str("; and purge what rpiprov uploaded");
    }
    if !yes {
        term::err(&format!("{what}\nProceed? [y/N] "));
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            term::errln("teardown: cancelled, nothing was removed");
            return Done::Exit(EXIT_FAILED);
        }
    } else {
        term::errln(&format!("teardown: {what}"));
    }
    let rows = crate::teardown::row_names(&found, swarm.leader.host(), &node_names, &opts);
    let reporter = ctx.reporter(&rows);
    let res = crate::teardown::execute(
        &opts,
        playbook,
        swarm.leader,
        swarm.engines,
        swarm.sessions,
        reporter.clone(),
        ctrl_c(),
    )
    .await;
    reporter.finish();
    ctx.done(swarm.unreachable, res.rows.clone(), &res)
}
