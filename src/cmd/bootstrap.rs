//! `rpiprov bootstrap` (and `--dry-run`, `rpiprov plan bootstrap`): connects to the
//! selected hosts and every manager, and hands over to the executor
//! ([`crate::bootstrap`]), which runs the preflight first; its findings are printed before
//! the summary, and `--json` adds them and the probed facts. A dry run stops at the plan
//! ([`crate::bootstrap::preview`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::context::{
    Ctx, Done, Needs, Opts, Style, connect, known_addresses, show_preview, with_fleet,
};
use crate::bootstrap::{Bootstrapped, Check};
use crate::config::Host;
use crate::exec::report::{Reporter, Silent};
use crate::remote::Session;
use crate::ui::term;

/// The sessions of the hosts that answered, by name.
type Sessions = HashMap<String, Arc<Session>>;

/// Managers are connected whatever `--on` selects: joins and labels go through them.
pub const NEEDS: Needs = Needs {
    whole_swarm: false,
    managers: true,
    root: true,
};

pub fn bootstrap(opts: &Opts, force: bool, skip_preflight: &[String], dry_run: bool) -> u8 {
    let skip = checks(skip_preflight);
    with_fleet(opts, "bootstrap", NEEDS, |ctx| {
        Box::pin(async move {
            if dry_run {
                return preview(ctx, force, skip).await;
            }
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

/// The executor's options from the command line and the configuration; `addresses` as
/// [`known_addresses`] resolved them.
fn options(
    ctx: &Ctx,
    force: bool,
    skip: Vec<Check>,
    preflight_only: bool,
    addresses: HashMap<String, Vec<String>>,
) -> crate::bootstrap::Options<'_> {
    let inv = &ctx.loaded.inventory;
    let networks = ctx
        .loaded
        .playbook
        .as_ref()
        .map(|p| p.networks.as_slice())
        .unwrap_or_default();
    crate::bootstrap::Options {
        hosts: ctx
            .selected
            .iter()
            .map(|n| ctx.host(n))
            .collect::<Vec<&Host>>(),
        managers: inv.managers().collect(),
        networks,
        default_addr_pool: inv.swarm.default_addr_pool.as_deref(),
        force,
        parallel: ctx.parallel,
        command_timeout: ctx.connect.command_timeout,
        skip,
        preflight_only,
        addresses,
        rejoin_grace: crate::bootstrap::REJOIN_GRACE,
    }
}

/// Connects to every host (names are resolved meanwhile), reporting to `reporter`.
async fn connect_all(
    ctx: &Ctx,
    reporter: &Arc<dyn Reporter>,
) -> (
    Sessions,
    Vec<(String, String)>,
    HashMap<String, Vec<String>>,
) {
    let names = ctx.ordered_targets();
    let all: Vec<&Host> = names.iter().map(|n| ctx.host(n)).collect();
    let ((sessions, failed), addresses) = tokio::join!(
        connect(ctx, &names, reporter),
        known_addresses(&all, ctx.connect.connect_timeout)
    );
    (sessions, failed, addresses)
}

/// Connects and runs the executor: a bootstrap, or with `preflight_only` the doctor.
pub async fn run(ctx: &Ctx, force: bool, skip: Vec<Check>, preflight_only: bool) -> Bootstrapped {
    let reporter = ctx.reporter(&ctx.ordered_targets());
    let (sessions, failed, addresses) = connect_all(ctx, &reporter).await;
    let opts = options(ctx, force, skip, preflight_only, addresses);
    let done = crate::bootstrap::execute(&opts, sessions, failed, reporter.clone()).await;
    reporter.finish();
    done
}

/// Connects and shows what the executor would do, without progress lines.
async fn preview(ctx: &Ctx, force: bool, skip: Vec<Check>) -> Done {
    let silent: Arc<dyn Reporter> = Arc::new(Silent);
    let (sessions, failed, addresses) = connect_all(ctx, &silent).await;
    let opts = options(ctx, force, skip, false, addresses);
    let (preview, _) = crate::bootstrap::preview(&opts, sessions, failed).await;
    show_preview(ctx, &preview)
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
