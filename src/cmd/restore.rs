//! `rpiprov restore FILE [--on HOST]`: reads and checks the archive first (a bad one is a
//! usage error, before any connection), takes the unlock key of an autolocked swarm
//! (`RPIPROV_UNLOCK_KEY`, or asked on a terminal), then:
//!
//! 1. puts the swarm state back onto the target and starts the swarm again from it
//!    ([`crate::backup::restore::put_back`]);
//! 2. runs bootstrap ([`super::bootstrap::run`]): the other hosts join again, and those
//!    that still believe they are in the old swarm are repaired as bootstrap repairs
//!    half-joined nodes; roles, labels and networks as the inventory and playbook say;
//! 3. removes the entries of nodes that are gone, puts rpiprov's records back onto the
//!    manager `deploy` acts through, ships the playbook's images to the nodes that lack
//!    them (a new SD card has none; `deploy`'s shipping), and waits until every stack of
//!    the archive converged (`deploy`'s wait and its judgement).
//!
//! The executors never call each other: this file is where the three meet. The rows of
//! the three parts are merged per host for the summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::context::{Ctx, Done, Needs, Opts, Style, connect, with_fleet};
use crate::backup::archive::{self, Archive};
use crate::backup::restore::{self, Onto, PutBack};
use crate::cli::RestoreArgs;
use crate::config::{Host, Role};
use crate::deploy::images::PreparedImage;
use crate::deploy::wait::{Awaited, Pace, Watch};
use crate::exec::engine::Engines;
use crate::exec::report::{Outcome, Row, RowId, Rows};
use crate::exit::EXIT_USAGE;
use crate::remote::{Remote, Session};
use crate::secret::Secret;
use crate::ui::term;

const NEEDS: Needs = Needs {
    whole_swarm: true,
    managers: true,
    root: true,
};

/// Where the unlock key of an autolocked swarm may come from, besides a prompt.
pub const UNLOCK_KEY_ENV: &str = "RPIPROV_UNLOCK_KEY";

/// How long a stack the playbook does not name (so with no timeout of its own) is waited for.
const STACK_WAIT: Duration = Duration::from_secs(300);

pub fn restore(opts: &Opts, args: &RestoreArgs) -> u8 {
    let archive = match archive::read(&args.file) {
        Ok(a) => a,
        Err(e) => {
            term::errln(&format!("error: {e}; nothing was touched"));
            return EXIT_USAGE;
        }
    };
    if let Err(e) = restore::restorable(&archive) {
        term::errln(&format!("error: {e}; nothing was touched"));
        return EXIT_USAGE;
    }
    let key = match unlock_key(&archive) {
        Ok(k) => k,
        Err(e) => {
            term::errln(&format!("error: {e}; nothing was touched"));
            return EXIT_USAGE;
        }
    };
    let asked = Asked {
        on: args.on.clone(),
        force: args.force,
    };
    with_fleet(opts, "restore", NEEDS, move |ctx| {
        Box::pin(body(ctx, asked, archive, key))
    })
}

/// What the user asked of the restore, besides the archive.
struct Asked {
    on: Option<String>,
    force: bool,
}

/// The unlock key of an autolocked swarm, from the environment or a prompt; `None` for
/// a swarm that is not autolocked. Never printed, never stored.
fn unlock_key(a: &Archive) -> Result<Option<Secret>, String> {
    if !a.manifest.swarm.keep.autolock {
        return Ok(None);
    }
    if let Ok(k) = std::env::var(UNLOCK_KEY_ENV)
        && !k.trim().is_empty()
    {
        return Ok(Some(Secret::new(k.trim())));
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(format!(
            "swarm {} is autolocked: its unlock key is needed; set {UNLOCK_KEY_ENV}, or run on a terminal to be asked",
            a.manifest.swarm.id
        ));
    }
    let k = rpassword::prompt_password(format!(
        "unlock key of swarm {} (`docker swarm unlock-key` showed it): ",
        a.manifest.swarm.id
    ))
    .map_err(|e| format!("cannot read the unlock key: {e}"))?;
    Ok(Some(Secret::new(k.trim())))
}

/// The host to restore onto: `--on`, else the one the archive came from, else the
/// inventory's first manager; it must be a manager of the inventory (it becomes the
/// swarm's manager, and bootstrap must not demote it).
pub fn target<'a>(ctx: &'a Ctx, on: Option<&str>, source: &str) -> Result<&'a Host, String> {
    let inv = &ctx.loaded.inventory;
    let host = match on {
        Some(name) => inv
            .host(name)
            .ok_or_else(|| format!("--on {name}: no such host in the inventory"))?,
        None => match inv.host(source).filter(|h| h.role == Role::Manager) {
            Some(h) => h,
            None => inv
                .managers()
                .next()
                .ok_or("the inventory names no manager")?,
        },
    };
    if host.role != Role::Manager {
        return Err(format!(
            "{} is a worker in the inventory: a restore makes it the swarm's manager; make it a manager there first (`role = \"manager\"`)",
            host.name
        ));
    }
    Ok(host)
}

/// The playbook's images, read here (a new SD card has none of them).
fn images(ctx: &Ctx) -> Result<Vec<PreparedImage>, String> {
    let Some(p) = &ctx.loaded.playbook else {
        return Ok(vec![]);
    };
    p.images
        .iter()
        .map(|img| {
            std::fs::read(&img.archive)
                .map(|bytes| PreparedImage::new(&img.name, img.format, img.cmd.clone(), bytes))
                .map_err(|e| {
                    format!(
                        "image {}: cannot read {}: {e}",
                        img.name,
                        img.archive.display()
                    )
                })
        })
        .collect()
}

/// Each stack of the archive as the wait takes it: the playbook's timeout where it names
/// the stack.
fn awaited(ctx: &Ctx, a: &Archive) -> Vec<Awaited> {
    let timeout_of = |name: &str| {
        ctx.loaded
            .playbook
            .as_ref()
            .and_then(|p| p.stacks.iter().find(|s| s.name == name))
            .map_or(STACK_WAIT, |s| s.timeout)
    };
    a.manifest
        .stacks
        .iter()
        .map(|s| Awaited {
            name: s.name.clone(),
            services: s.services.clone(),
            timeout: timeout_of(&s.name),
        })
        .collect()
}

async fn body(ctx: &Ctx, args: Asked, a: Archive, key: Option<Secret>) -> Done {
    let host = match target(ctx, args.on.as_deref(), &a.manifest.source.host) {
        Ok(h) => h,
        Err(e) => {
            term::errln(&format!("error: {e}; nothing was touched"));
            return Done::Exit(EXIT_USAGE);
        }
    };
    let images = match images(ctx) {
        Ok(i) => i,
        Err(e) => {
            term::errln(&format!("error: {e}; nothing was touched"));
            return Done::Exit(EXIT_USAGE);
        }
    };
    let timeout = ctx.connect.command_timeout;
    term::errln(&format!(
        "restore: swarm {} taken {} from {}, onto {}",
        a.manifest.swarm.id, a.manifest.created, a.manifest.source.host, host.name
    ));

    // 1. The state back on the target, the swarm started again from it.
    let names = ctx.ordered_targets();
    let reporter = ctx.reporter(std::slice::from_ref(&host.name));
    let (sessions, unreachable) = connect(ctx, &names, &reporter).await;
    let rows = Rows::new(reporter.clone(), &[RowId::host(&host.name)]);
    let Some(remote) = sessions.get(&host.name).cloned() else {
        reporter.finish();
        return end(
            ctx,
            unreachable,
            vec![rows.finish()],
            &details(&a, host, None),
        );
    };
    let others: Vec<(String, Arc<Session>)> = ctx
        .manager_names()
        .into_iter()
        .filter(|m| *m != host.name)
        .filter_map(|m| sessions.get(&m).map(|s| (m, s.clone())))
        .collect();
    let engines = Arc::new(Engines::new(&sessions, timeout));
    let onto = Onto {
        host,
        remote: &*remote,
        engines: &engines,
        others: &others,
        force: args.force,
        key: key.as_ref(),
        timeout,
    };
    let outcome = restore::put_back(&onto, &a, &rows).await;
    if let Err(e) = &outcome {
        rows.fail(&RowId::host(&host.name), "restore", &e.0);
    }
    reporter.finish();
    let first = rows.finish();
    let Ok(outcome) = outcome else {
        return end(ctx, unreachable, vec![first], &details(&a, host, None));
    };

    // 2. The other hosts join again: bootstrap's joins and repairs.
    let joined = super::bootstrap::run(ctx, false, vec![], false).await;

    // 3. Gone nodes, records, images, and the wait for the stacks.
    let last = after_joins(ctx, &a, host, &sessions, &engines, &images, outcome).await;
    end(
        ctx,
        unreachable,
        vec![first, joined.rows, last],
        &details(&a, host, Some(outcome)),
    )
}

/// The end: the hosts not reached, then the parts' rows, merged per host.
fn end(
    ctx: &Ctx,
    unreachable: Vec<(String, String)>,
    parts: Vec<Vec<Row>>,
    details: &serde_json::Value,
) -> Done {
    let mut all = vec![super::context::unreached_rows(unreachable)];
    all.extend(parts);
    Done::Rows {
        rows: merge(all),
        details: ctx.details(details),
        style: Style::Table,
    }
}

/// Step 3 of the module header, on one progress display; its rows.
async fn after_joins(
    ctx: &Ctx,
    a: &Archive,
    host: &Host,
    sessions: &HashMap<String, Arc<Session>>,
    engines: &Arc<Engines<Session>>,
    images: &[PreparedImage],
    outcome: PutBack,
) -> Vec<Row> {
    let timeout = ctx.connect.command_timeout;
    // The target's session: the body went on only with it.
    let remote = &sessions[&host.name];
    let mut labels: Vec<String> = ctx.ordered_targets();
    labels.extend(
        a.manifest
            .stacks
            .iter()
            .map(|s| RowId::stack(&s.name).label()),
    );
    let reporter = ctx.reporter(&labels);
    let rows = Rows::new(reporter.clone(), &[]);
    let target_row = RowId::host(&host.name);
    let away: Vec<&Host> = ctx
        .loaded
        .inventory
        .hosts
        .iter()
        .filter(|h| !sessions.contains_key(&h.name))
        .collect();
    if let Err(e) = restore::remove_gone(&**remote, engines, &away, &rows, timeout).await {
        rows.fail(&target_row, "remove gone nodes", &e.0);
    }
    let managers: Vec<(String, Arc<Session>)> = ctx
        .manager_names()
        .into_iter()
        .filter_map(|m| sessions.get(&m).map(|s| (m, s.clone())))
        .collect();
    let leader = crate::exec::pick_manager(engines, managers, crate::exec::MANAGER_ANSWER)
        .await
        .unwrap_or_else(|_| remote.clone());
    let keep = outcome == PutBack::Running;
    if let Err(e) = restore::put_records(&*leader, a, keep, &rows, timeout).await {
        rows.fail(&RowId::host(leader.host()), "records", &e.0);
    }
    let shipped =
        crate::deploy::images::ship(sessions, engines, images, ctx.parallel, timeout, &rows).await;
    for n in shipped {
        let row = RowId::host(&n.host);
        for img in &n.loaded {
            rows.changed(&row, format!("load image {img}"));
        }
        if let Some((what, why)) = &n.failed {
            rows.fail(&row, "images", &format!("{what}: {why}"));
        }
    }
    let engine = match engines.get(leader.host()).await {
        Ok(e) => e,
        Err(e) => {
            for st in &a.manifest.stacks {
                rows.fail(&RowId::stack(&st.name), "converge", &e.to_string());
            }
            reporter.finish();
            return rows.finish();
        }
    };
    let pace = Pace {
        command_timeout: timeout,
        max_interval: crate::exec::POLL_INTERVAL,
        settle: crate::deploy::wait::SETTLE,
    };
    let mut watch = Watch::new(engine, &rows, pace);
    for st in awaited(ctx, a) {
        watch.add_awaited(st);
    }
    for (stack, _, end) in watch.until_all_converged().await {
        let row = RowId::stack(&stack);
        match end {
            Ok(()) => rows.add(&row),
            Err(nc) => rows.fail(&row, "converge", &nc.text),
        }
    }
    reporter.finish();
    rows.finish()
}

/// Rows of several parts, one per host or stack: changes in order, the first failure's
/// step, every error, the longest time.
pub fn merge(parts: Vec<Vec<Row>>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for row in parts.into_iter().flatten() {
        let Some(have) = out.iter_mut().find(|r| r.id == row.id) else {
            out.push(row);
            continue;
        };
        have.changed.extend(row.changed);
        have.seconds = have.seconds.max(row.seconds);
        if row.outcome == Outcome::Failed {
            have.error = Some(match (have.error.take(), row.error) {
                // The same failure seen twice (a host that none of the parts reached).
                (Some(a), Some(b)) if a == b => a,
                (Some(a), Some(b)) => {
                    format!("{a}\n{}: {b}", row.failed_step.clone().unwrap_or_default())
                }
                (a, b) => a.or(b).unwrap_or_default(),
            });
            if have.outcome != Outcome::Failed {
                have.failed_step = row.failed_step;
            }
            have.outcome = Outcome::Failed;
        } else if have.outcome == Outcome::Unchanged {
            have.outcome = row.outcome;
        }
    }
    out
}

/// What `--json` adds: the archive and where it went.
fn details(a: &Archive, host: &Host, outcome: Option<PutBack>) -> serde_json::Value {
    serde_json::json!({
        "swarm": a.manifest.swarm.id,
        "taken": a.manifest.created,
        "from": a.manifest.source.host,
        "onto": host.name,
        "put_back": match outcome {
            Some(PutBack::Restored) => "restored",
            Some(PutBack::Running) => "already running",
            None => "not restored",
        },
        "stacks": a.manifest.stacks.iter().map(|s| &s.name).collect::<Vec<_>>(),
    })
}
