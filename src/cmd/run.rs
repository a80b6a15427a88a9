//! `rpiprov run [--sudo] -- COMMAND`: what it does is all here. It connects to the
//! selected hosts only (managers are not added), runs the command as written by each
//! host's login shell (as root through sudo with `--sudo`), in parallel, and prints each
//! host's output once all are done, in inventory order, every line prefixed with its host
//! (interleaved lines from many hosts are unreadable). No progress lines around it; the
//! end names only the hosts that failed ([`Style::Tally`]). `--json` holds each host's
//! exit status, stdout and stderr.

use std::sync::Arc;

use super::context::{Ctx, Done, Needs, Opts, Style, connect, with_fleet};
use crate::cli::RunArgs;
use crate::exec::parallel_map;
use crate::exec::report::{Outcome, Reporter, RowId, Rows};
use crate::remote::{ExecRequest, Remote};
use crate::ui::{Plain, term};

pub fn run_command(opts: &Opts, args: &RunArgs) -> u8 {
    let command = args.command.join(" ");
    let sudo = args.sudo;
    // Only with `--sudo` does it run anything as root, and need the sudo passwords.
    let needs = Needs {
        whole_swarm: false,
        managers: false,
        root: sudo,
    };
    with_fleet(opts, "run", needs, |ctx| Box::pin(body(ctx, command, sudo)))
}

async fn body(ctx: &Ctx, command: String, sudo: bool) -> Done {
    // The hosts' own output is what the user asked for: no progress lines around it.
    let reporter: Arc<dyn Reporter> = if ctx.verbose {
        ctx.reporter(&ctx.selected)
    } else {
        Arc::new(Plain::quiet())
    };
    let (sessions, failed) = connect(ctx, &ctx.selected, &reporter).await;
    reporter.finish();
    let rows = Rows::new(Arc::new(Plain::quiet()), &[]);
    for (host, err) in failed {
        rows.connect_failed(&host, err);
    }
    let names: Vec<String> = ctx
        .selected
        .iter()
        .filter(|n| sessions.contains_key(*n))
        .cloned()
        .collect();
    let timeout = ctx.connect.command_timeout;
    let results = parallel_map(names, ctx.parallel, |name| {
        let s = sessions[&name].clone();
        let mut req = ExecRequest::new(command.clone()).timeout(timeout);
        req.privileged = sudo;
        async move {
            let out = s.exec(req).await;
            (name, out)
        }
    })
    .await;
    let mut outputs = serde_json::Map::new();
    for (name, out) in results {
        let id = RowId::host(&name);
        let failure = match out {
            Ok(o) => {
                outputs.insert(
                    name.clone(),
                    serde_json::json!({"status": o.status, "stdout": o.stdout_str(), "stderr": o.stderr_str()}),
                );
                if !ctx.json {
                    for line in o.stdout_str().lines() {
                        term::outln(&format!("{name}: {line}"));
                    }
                    for line in o.stderr_str().lines() {
                        term::errln(&format!("{name}: {line}"));
                    }
                }
                (!o.success()).then(|| match &o.signal {
                    Some(s) => format!("killed by signal {s}"),
                    None => format!("exit {}", o.status),
                })
            }
            Err(e) => Some(e.to_string()),
        };
        // A failed command has no step of its own: the row's error says how it ended.
        rows.with(&id, |r| {
            if let Some(error) = failure {
                r.outcome = Outcome::Failed;
                r.error = Some(error);
            }
        });
    }
    let mut by_name: std::collections::HashMap<String, _> = rows
        .finish()
        .into_iter()
        .map(|r| (r.id.name.clone(), r))
        .collect();
    let ordered = ctx
        .selected
        .iter()
        .filter_map(|n| by_name.remove(n))
        .collect();
    Done::Rows {
        rows: ordered,
        details: ctx.details(&serde_json::Value::Object(outputs)),
        style: Style::Tally,
    }
}
