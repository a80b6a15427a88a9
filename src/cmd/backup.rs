//! `rpiprov backup` (and `backup --list FILE`): connects to the managers, asks the one
//! `deploy` acts through what the swarm is and chooses where to copy from
//! ([`crate::backup::take::survey`]), says what the copy's stop costs and asks when it
//! loses quorum (`--yes`; no terminal and no `--yes` is a usage error), then copies under
//! the deploy lock with Ctrl-C as its interruption, and writes the archive
//! ([`crate::backup::archive::write`]). `--list` reads the archive's manifest alone and
//! connects nowhere.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::context::{
    Ctx, Done, Needs, Opts, connect, ctrl_c, known_addresses, unreached, with_fleet,
};
use crate::backup::archive::{self, Archive, Manifest};
use crate::backup::choose::Quorum;
use crate::backup::take::{self, Survey, Taken};
use crate::cli::BackupArgs;
use crate::config::Host;
use crate::exec::engine::Engines;
use crate::exec::lock::{Holder, LockOwner, Locked, with_lock};
use crate::exec::report::{Reporter, RowId, Rows};
use crate::exit::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::remote::Remote;
use crate::ui::{Plain, term};

/// The managers only: the copy and the records are theirs.
const NEEDS: Needs = Needs {
    whole_swarm: true,
    managers: true,
    root: true,
};

pub fn backup(opts: &Opts, args: &BackupArgs) -> u8 {
    if let Some(file) = &args.list {
        return list(file, opts.json);
    }
    if let Some(out) = &args.output
        && let Err(e) = archive::check_destination(out)
    {
        term::errln(&format!("error: {e}; nothing was touched"));
        return EXIT_USAGE;
    }
    let (output, yes) = (args.output.clone(), args.yes);
    with_fleet(opts, "backup", NEEDS, move |ctx| {
        Box::pin(body(ctx, output, yes))
    })
}

/// `--list`: what the archive holds, from its manifest alone.
fn list(file: &Path, json: bool) -> u8 {
    match archive::read_manifest(file) {
        Err(e) => {
            term::errln(&format!("error: {e}"));
            EXIT_USAGE
        }
        Ok(m) if json => {
            crate::ui::json::print(&serde_json::json!({ "file": file, "manifest": m }), true);
            EXIT_OK
        }
        Ok(m) => {
            term::out(&describe(&m));
            EXIT_OK
        }
    }
}

/// What `--list` prints of a manifest.
pub fn describe(m: &Manifest) -> String {
    let plural = |n: usize, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let lock = if m.swarm.keep.autolock {
        "; autolocked: a restore needs its unlock key"
    } else {
        ""
    };
    let s = &m.source;
    let standing = if s.leader {
        "the leader"
    } else {
        "not the leader"
    };
    let nodes: Vec<String> = m
        .nodes
        .iter()
        .map(|n| format!("{} ({}, {})", n.hostname, n.role, n.state))
        .collect();
    let stacks: Vec<String> = m
        .stacks
        .iter()
        .map(|st| format!("{} ({})", st.name, st.services.join(", ")))
        .collect();
    let files: Vec<String> = m
        .files
        .iter()
        .map(|f| format!("{} {} bytes", f.name, f.size))
        .collect();
    format!(
        "swarm    {} ({}{lock})\n\
         taken    {} from {} ({}, {standing}; Docker {}, data root {})\n\
         records  from {}\n\
         nodes    {}: {}\n\
         stacks   {}{}\n\
         format   {} version {}, written by rpiprov {}\n\
         members  {}\n",
        m.swarm.id,
        plural(m.swarm.managers, "manager"),
        m.created,
        s.host,
        s.address,
        s.docker_version,
        s.docker_root,
        m.records_from,
        m.nodes.len(),
        nodes.join(", "),
        m.stacks.len(),
        if stacks.is_empty() {
            String::new()
        } else {
            format!(": {}", stacks.join(", "))
        },
        m.format,
        m.version,
        m.rpiprov,
        files.join(", "),
    )
}

/// Says where the copy comes from and what it costs; asks when the stop loses quorum.
/// `Err` is the end of the command.
fn announce(survey: &Survey, yes: bool) -> Result<(), Done> {
    for (host, why) in &survey.passed_over {
        term::errln(&format!("backup: not copied from {host}: {why}"));
    }
    if survey.keep.autolock && survey.managers() > 1 {
        term::errln(&format!(
            "error: swarm {} is autolocked and has {} managers: Docker cannot start a swarm again from a copy of such a manager (moby/moby#36852: `swarm init --force-new-cluster` restarts it locked), so this backup could not be restored; nothing was touched",
            survey.swarm_id,
            survey.managers()
        ));
        return Err(Done::Exit(EXIT_FAILED));
    }
    if survey.keep.autolock {
        term::errln(
            "backup: the swarm is autolocked: the copy's manager is unlocked again after Docker's restart, and a restore needs the unlock key (`docker swarm unlock-key` on a manager shows it); keep it apart: the archive does not hold it",
        );
    }
    term::errln(&format!("backup: {}", survey.choice.why));
    if survey.choice.quorum == Quorum::Kept || yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        term::errln(&format!(
            "error: the copy stops Docker on {} and the swarm loses quorum meanwhile: confirm with --yes when not on a terminal; nothing was touched",
            survey.choice.host
        ));
        return Err(Done::Exit(EXIT_USAGE));
    }
    term::err("Proceed? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        term::errln("backup: cancelled, nothing was stopped");
        Err(Done::Exit(EXIT_FAILED))
    }
}

async fn body(ctx: &Ctx, output: Option<PathBuf>, yes: bool) -> Done {
    let timeout = ctx.connect.command_timeout;
    let quiet: Arc<dyn Reporter> = Arc::new(Plain::quiet());
    let names = ctx.manager_names();
    let (sessions, unreachable) = connect(ctx, &names, &quiet).await;
    let managers: Vec<_> = names
        .iter()
        .filter_map(|n| sessions.get(n).map(|s| (n.clone(), s.clone())))
        .collect();
    let engines = Arc::new(Engines::new(&sessions, timeout));
    let records =
        match crate::exec::pick_manager(&engines, managers.clone(), crate::exec::MANAGER_ANSWER)
            .await
        {
            Ok(r) => r,
            Err(why) => {
                let each: Vec<String> = why.iter().map(|(m, w)| format!("{m}: {w}")).collect();
                term::errln(&format!(
                    "error: no manager serves the swarm ({}): there is no swarm state to copy",
                    each.join("; ")
                ));
                return unreached(unreachable);
            }
        };
    let hosts: Vec<&Host> = names.iter().map(|n| ctx.host(n)).collect();
    let addresses = known_addresses(&hosts, ctx.connect.connect_timeout).await;
    let survey = match take::survey(&*records, &engines, &managers, &addresses, timeout).await {
        Ok(s) => s,
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return Done::Exit(EXIT_FAILED);
        }
    };
    if let Err(done) = announce(&survey, yes) {
        return done;
    }
    let source = sessions[&survey.choice.host].clone();
    let mut ids = vec![RowId::host(source.host())];
    if records.host() != source.host() {
        ids.push(RowId::host(records.host()));
    }
    let labels: Vec<String> = ids.iter().map(RowId::label).collect();
    let reporter = ctx.reporter(&labels);
    let rows = Rows::new(reporter.clone(), &ids);
    let owner = LockOwner::current("backup");
    let lock_row = RowId::host(records.host());
    let holder = Holder {
        remote: &*records,
        owner: &owner,
        timeout,
        rows: &rows,
        row: &lock_row,
    };
    let work = take::take(&*source, &*records, &engines, &survey, &rows, timeout);
    let taken = match with_lock(holder, ctrl_c(), work).await {
        Locked::Done(t) => t,
        Locked::Refused => None,
        Locked::Interrupted => {
            take::after_interrupt(&*source, &engines, &survey, &rows, timeout).await;
            None
        }
    };
    let written = taken.map(|t| write(&survey, t, output.as_deref(), &rows, &lock_row));
    reporter.finish();
    let details = written.flatten().map(|(path, size, m)| {
        term::errln(&format!(
            "backup: wrote {} ({size} bytes, mode 0600)",
            path.display()
        ));
        serde_json::json!({ "file": path, "size": size, "manifest": m })
    });
    ctx.done(unreachable, rows.finish(), &details)
}

/// Writes the archive (to `output`, or its default name here); a failure is the row's.
fn write(
    survey: &Survey,
    taken: Taken,
    output: Option<&Path>,
    rows: &Rows,
    row: &RowId,
) -> Option<(PathBuf, u64, Manifest)> {
    let m = survey.manifest(&taken);
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(archive::default_name(&m.swarm.id, &m.created)));
    let a = Archive {
        manifest: m,
        swarm: taken.swarm,
        records: taken.records,
    };
    match archive::write(&path, &a) {
        Ok(size) => Some((path, size, a.manifest)),
        Err(e) => {
            rows.fail(row, "write", &e);
            None
        }
    }
}
