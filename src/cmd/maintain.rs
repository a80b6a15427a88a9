//! `rpiprov maintain [--on HOSTS] (--reboot | --upgrade-docker | -- COMMAND)`: connects
//! to the selected hosts and every manager, and hands over to the executor
//! ([`crate::maintain`]) with Ctrl-C as its interruption. A selected host that cannot be
//! reached stops it before anything is drained.

use std::sync::Arc;

use super::context::{Ctx, Done, Needs, Opts, connect, ctrl_c, with_fleet};
use crate::cli::MaintainArgs;
use crate::exec::lock::LockOwner;
use crate::exec::report::Row;
use crate::exit::EXIT_USAGE;
use crate::maintain::{self, Connect, Work};
use crate::remote::{self, Session};
use crate::ui::term;

const NEEDS: Needs = Needs {
    whole_swarm: false,
    managers: true,
    root: true,
};

pub fn maintain(opts: &Opts, args: &MaintainArgs) -> u8 {
    let timeout = match crate::config::duration::parse(&args.timeout) {
        Ok(t) => t,
        Err(e) => {
            term::errln(&format!("error: --timeout {}: {e}", args.timeout));
            return EXIT_USAGE;
        }
    };
    if args.batch == 0 || args.max_unavailable == 0 {
        term::errln("error: --batch and --max-unavailable are at least 1");
        return EXIT_USAGE;
    }
    let work = if args.reboot {
        Work::Reboot {
            command: args.reboot_command.clone(),
        }
    } else if args.upgrade_docker {
        Work::UpgradeDocker
    } else {
        Work::Command(args.command.join(" "))
    };
    let asked = Asked {
        work,
        timeout,
        batch: args.batch,
        max_unavailable: args.max_unavailable,
        force: args.force,
    };
    with_fleet(opts, "maintain", NEEDS, |ctx| Box::pin(body(ctx, asked)))
}

struct Asked {
    work: Work,
    timeout: std::time::Duration,
    batch: usize,
    max_unavailable: u64,
    force: bool,
}

async fn body(ctx: &Ctx, asked: Asked) -> Done {
    let reporter = ctx.reporter(&ctx.selected);
    let names = ctx.ordered_targets();
    let (sessions, unreachable) = connect(ctx, &names, &reporter).await;
    let lost: Vec<&String> = ctx
        .selected
        .iter()
        .filter(|h| !sessions.contains_key(*h))
        .collect();
    if !lost.is_empty() {
        reporter.finish();
        let mut rows: Vec<Row> = Vec::new();
        for h in ctx.selected.iter().filter(|h| sessions.contains_key(*h)) {
            let mut r = Row::new(crate::exec::report::RowId::host(h));
            r.outcome = crate::exec::report::Outcome::Skipped;
            r.error = Some(format!(
                "not attempted: {} could not be reached, and maintain drains nothing until every selected host answers",
                lost.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            rows.push(r);
        }
        return ctx.done(unreachable, rows, &serde_json::json!({}));
    }
    let targets = ctx.targets.clone();
    let options = Arc::new(ctx.connect.clone());
    let reconnect: Connect<Session> = Arc::new(move |host: String| {
        let target = targets.get(&host).cloned();
        let options = options.clone();
        Box::pin(async move {
            match target {
                Some(t) => remote::connect(&t, &options).await,
                None => Err(remote::RemoteError::Channel {
                    host: host.clone(),
                    reason: "not in the inventory".into(),
                }),
            }
        })
    });
    let opts = maintain::Options {
        work: asked.work,
        hosts: ctx
            .selected
            .iter()
            .map(|h| (h.clone(), ctx.host(h).docker.install.clone()))
            .collect(),
        managers: ctx.manager_names(),
        batch: asked.batch,
        max_unavailable: asked.max_unavailable,
        force: asked.force,
        timeout: asked.timeout,
        poll: crate::exec::POLL_INTERVAL,
        command_timeout: ctx.connect.command_timeout,
        owner: LockOwner::current("maintain"),
    };
    let res = maintain::execute(&opts, sessions, reconnect, reporter.clone(), ctrl_c()).await;
    reporter.finish();
    // Managers that were not selected connected for the swarm's sake only: their
    // failures to connect matter only when no manager was left (the executor says so).
    let unreachable = unreachable
        .into_iter()
        .filter(|(h, _)| ctx.selected.contains(h))
        .collect();
    ctx.done(unreachable, res.rows.clone(), &res)
}
