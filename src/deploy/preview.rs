//! `deploy --dry-run` (`rpiprov plan deploy`): what [`super::execute`] would do, read with
//! the same commands and decided by the same functions, without the lock and without a
//! single write: the networks it would create ([`network::compare`]), the images it would
//! load on each node ([`super::images::missing_on`]), the file sets it would upload, and the
//! stacks it would deploy and why ([`super::decide`]), each with the diff of its files
//! between the set the manager deployed last and here.

use std::collections::HashMap;
use std::sync::Arc;

use super::images::{missing_on, refusal};
use super::{Decision, Options, Prepared, PreparedStack, decide};
use crate::docker::network::{self, Verdict};
use crate::docker::paths::current_release;
use crate::docker::stack;
use crate::exec::engine::Engines;
use crate::exec::preview::{FileDiff, Planned, Preview, file_diff};
use crate::exec::report::RowId;
use crate::exec::{StepError, parallel_map, root};
use crate::remote::Remote;

/// One file of a stack's set: where it lives on the manager, how it is named here, its
/// bytes, and whether it is a secret (its content is never shown).
pub struct StackFile<'a> {
    pub remote: String,
    pub shown: String,
    pub local: &'a [u8],
    pub secret: bool,
}

/// The files that travel with a stack: its set (the compose file, the files it refers
/// to, the names of its configs and secrets), each against the same file of the set the
/// manager deployed last.
pub fn stack_files(st: &PreparedStack) -> Vec<StackFile<'_>> {
    st.release
        .entries
        .iter()
        .map(|e| StackFile {
            remote: format!("{}/{}", current_release(&st.name), e.path),
            shown: format!(
                "{}/{}",
                st.name,
                e.path.strip_prefix("files/").unwrap_or(&e.path)
            ),
            local: &e.bytes,
            secret: e.secret,
        })
        .collect()
}

/// What `execute` would do. `leader` and `nodes` as for [`super::execute`].
pub async fn preview<R: Remote + 'static>(
    opts: &Options,
    prepared: &Prepared,
    leader: Arc<R>,
    engines: Arc<Engines<R>>,
    nodes: HashMap<String, Arc<R>>,
) -> Preview {
    let (mut p, lock) = tokio::join!(
        changes(opts, prepared, leader.clone(), engines, nodes),
        crate::exec::lock::peek(&*leader, opts.command_timeout)
    );
    p.add_lock(leader.host(), lock.map_err(|e| e.0));
    p
}

/// What `execute` would change, and what stands in its way, the lock aside.
async fn changes<R: Remote + 'static>(
    opts: &Options,
    prepared: &Prepared,
    leader: Arc<R>,
    engines: Arc<Engines<R>>,
    nodes: HashMap<String, Arc<R>>,
) -> Preview {
    let timeout = opts.command_timeout;
    let leader_id = RowId::host(leader.host());
    let mut lead = Planned::new(&leader_id);
    let mut problems = Vec::new();
    let engine = match engines.get(leader.host()).await {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("{}: {e}", leader_id.name));
            return finish(lead, vec![], vec![], problems);
        }
    };

    // The run stops before any change where the manager's CLI cannot read a file.
    if super::cli::needed(prepared) {
        match super::cli::read(&*leader, timeout).await {
            Ok(found) => {
                for (i, why) in super::cli::judge(prepared, &leader_id.name, &found) {
                    let stack = &prepared.stacks[i].name;
                    problems.push(format!("stack {stack}: {why}; deploy changes nothing"));
                }
            }
            Err(e) => problems.push(format!(
                "{}: read the Docker CLI's release: {e}",
                leader_id.name
            )),
        }
    }

    if !prepared.networks.is_empty() {
        match super::networks(&engine, timeout).await {
            Ok(existing) => {
                for v in network::compare(&prepared.networks, &existing) {
                    match v {
                        Verdict::Missing(net) => {
                            lead.steps.push(format!("create network {}", net.name))
                        }
                        Verdict::Conflict(msg) => {
                            problems.push(format!("{}: networks: {msg}", leader_id.name))
                        }
                        Verdict::Matches => {}
                    }
                }
            }
            Err(e) => problems.push(format!("{}: networks: {e}", leader_id.name)),
        }
    }

    // Images, node by node.
    let mut node_rows: Vec<Planned> = Vec::new();
    if !prepared.images.is_empty() {
        let mut names: Vec<String> = nodes.keys().cloned().collect();
        names.sort();
        let images = Arc::new(prepared.images.clone());
        let checked = parallel_map(names, opts.parallel, |n| {
            let remote = nodes[&n].clone();
            let images = images.clone();
            let engines = engines.clone();
            async move {
                let r = missing_on(&*remote, &engines, &images, timeout).await;
                (n, r)
            }
        })
        .await;
        for (n, r) in checked {
            let mut row = Planned::new(&RowId::host(&n));
            match r {
                Ok(survey) => {
                    for &i in &survey.missing {
                        let img = &prepared.images[i];
                        match refusal(img, &survey.store, &n) {
                            Some(why) => {
                                problems.push(format!("{n}: load image {}: {why}", img.name))
                            }
                            None => row.steps.push(format!("load image {}", img.name)),
                        }
                    }
                }
                Err(e) => problems.push(format!("{n}: check images: {e}")),
            }
            if n == leader_id.name {
                // The leader's images go before its uploads, as they run.
                let mut steps = row.steps;
                steps.append(&mut lead.steps);
                lead.steps = steps;
            } else {
                node_rows.push(row);
            }
        }
    }

    // The stacks: state, then the files on the manager.
    let (state, present) = match super::read_state(&*leader, &engine, prepared, timeout).await {
        Ok(x) => x,
        Err(e) => {
            problems.push(format!("{}: read the stacks' state: {e}", leader_id.name));
            return finish(lead, node_rows, vec![], problems);
        }
    };
    let paths: Vec<String> = prepared
        .stacks
        .iter()
        .flat_map(|s| stack_files(s).into_iter().map(|f| f.remote))
        .collect();
    let remote_files = match root(&*leader, stack::files_read(&paths), timeout)
        .await
        .and_then(|o| stack::parse_files(&o.stdout_str()).map_err(StepError))
    {
        Ok(f) => f,
        Err(e) => {
            problems.push(format!("{}: read the stacks' files: {e}", leader_id.name));
            HashMap::new()
        }
    };
    let mut stack_rows = Vec::new();
    for st in &prepared.stacks {
        let mut row = Planned::new(&RowId::stack(&st.name));
        let mut diffs: Vec<FileDiff> = Vec::new();
        for f in stack_files(st) {
            let remote = remote_files.get(&f.remote).cloned().flatten();
            if let Some(d) = file_diff(&f.shown, remote.as_deref(), f.local, f.secret) {
                diffs.push(d);
            }
        }
        if let Decision::Deploy(why) = decide(&st.fingerprint, &state, &st.name) {
            let r = &st.release;
            if !present.iter().any(|(n, id)| *n == st.name && *id == r.id) {
                // The upload is the leader's step, as the real run reports it.
                lead.steps.push(format!(
                    "upload {} ({} file(s), {} bytes)",
                    st.name, r.files, r.bytes
                ));
            }
            row.steps.push(format!("docker stack deploy ({why})"));
            row.why = Some(why.to_string());
            row.files = diffs;
        }
        stack_rows.push(row);
    }
    finish(lead, node_rows, stack_rows, problems)
}

/// The preview's rows in the order the run works on them: the manager, the nodes, the
/// stacks; those with nothing to do are listed as unchanged.
fn finish(
    lead: Planned,
    nodes: Vec<Planned>,
    stacks: Vec<Planned>,
    problems: Vec<String>,
) -> Preview {
    let mut p = Preview {
        command: "deploy".into(),
        problems,
        ..Default::default()
    };
    for r in std::iter::once(lead).chain(nodes).chain(stacks) {
        if r.steps.is_empty() {
            p.unchanged.push(r.row);
        } else {
            p.rows.push(r);
        }
    }
    p
}
