//! `rpiprov restore`'s own remote work, in the order the command runs it
//! (`crate::cmd::restore`, which runs bootstrap between [`put_back`] and [`remove_gone`]):
//!
//! 1. [`put_back`]: the target is judged ([`judge_target`]: Docker running and no swarm,
//!    or `--force`; a target that already runs the archive's swarm has nothing put back),
//!    and so are the other managers ([`judge_others`]: none may still serve a swarm, or the
//!    restore would make a second one); the swarm folder goes in with Docker stopped (one
//!    script on the Pi, [`crate::docker::backup::put_back`]), an autolocked swarm is
//!    unlocked with the key the user gave, and the swarm starts again as a swarm of one
//!    manager at the target's address (`POST /swarm/init` with `ForceNewCluster`);
//! 2. [`remove_gone`]: node entries down in the swarm that no host of the inventory is now,
//!    and that no unreachable host of it may come back as, are removed;
//! 3. [`put_records`]: rpiprov's records go to the manager `deploy` acts through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::archive::Archive;
use super::{Await, SCRIPT_WAIT, settled, unlock};
use crate::config::{Host, Role};
use crate::docker::api::{self, NodeSpec};
use crate::docker::backup::{self as remote, Kind, RECORDS_KEPT, RECORDS_RESTORED};
use crate::docker::node::{self, SwarmNode};
use crate::docker::probe::{self, Facts};
use crate::docker::swarm::SwarmInfo;
use crate::exec::engine::Engine;
use crate::exec::engine::Engines;
use crate::exec::report::{RowId, Rows};
use crate::exec::{StepError, parallel_map, root};
use crate::remote::{ExecRequest, Remote};
use crate::secret::Secret;

/// What the target is, for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Docker runs, in no swarm: the state goes in.
    Free,
    /// It manages the archive's swarm already: nothing to put back (a rerun).
    Running,
    /// It is in a swarm, and `--force` says replace that: what it was in.
    Replace(String),
    /// Not restored onto: why, and what to do.
    Refused(String),
}

/// What a node's swarm state is, in words that name the swarm.
fn describe(s: &SwarmInfo) -> String {
    match s.local_node_state.as_str() {
        "active" if s.control_available => {
            format!("a manager of swarm {}", s.cluster.id)
        }
        "active" => format!(
            "a worker of a swarm (its managers: {})",
            s.manager_addrs().join(", ")
        ),
        "locked" => "a manager of a locked swarm".to_string(),
        state => format!("joining a swarm (its swarm state is {state})"),
    }
}

/// Judges the target from its probe: Docker must run, and it must be in no swarm, unless
/// it manages the archive's swarm already (a rerun) or `force` says replace its state.
pub fn judge_target(host: &str, f: &Facts, swarm_id: &str, force: bool) -> Verdict {
    if !f.docker_installed {
        return Verdict::Refused(format!(
            "{host} has no Docker: a restore needs a Pi with Docker installed and running, and no swarm: install it first (`sudo apt-get install -y docker.io`)"
        ));
    }
    if !f.docker_running {
        return Verdict::Refused(format!(
            "Docker does not run on {host}: start it first (`sudo systemctl start docker`)"
        ));
    }
    let s = &f.swarm;
    match s.local_node_state.as_str() {
        "inactive" | "" => Verdict::Free,
        "active" if s.control_available && s.cluster.id == swarm_id && !force => Verdict::Running,
        _ if force => Verdict::Replace(describe(s)),
        _ => Verdict::Refused(format!(
            "{host} is {}: a restore replaces its swarm state; run with --force to do that",
            describe(s)
        )),
    }
}

/// The other managers must not serve a swarm: one that serves the archive's swarm means
/// the swarm is alive (a restore would start a second one from its past), one that serves
/// another swarm would leave the inventory's managers in two. `force` goes on anyway.
pub fn judge_others(
    others: &[(String, SwarmInfo)],
    swarm_id: &str,
    force: bool,
) -> Result<(), String> {
    if force {
        return Ok(());
    }
    for (host, s) in others {
        if s.local_node_state != "active" || !s.control_available {
            continue;
        }
        return Err(if s.cluster.id == swarm_id {
            format!(
                "the archive's swarm {swarm_id} is alive: {host} serves it; a restore would start a second swarm from its past: bring the other nodes back with `rpiprov bootstrap` instead (or run with --force)"
            )
        } else {
            format!(
                "{host} serves another swarm ({}): the inventory's managers would be in two swarms; make it leave first (or run with --force)",
                s.cluster.id
            )
        });
    }
    Ok(())
}

/// How [`put_back`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutBack {
    /// The state went in and the swarm started again from it.
    Restored,
    /// The target managed the archive's swarm already.
    Running,
}

/// Where a restore goes and what it may do.
pub struct Onto<'a, R> {
    pub host: &'a Host,
    pub remote: &'a R,
    /// The command's engines, one per host that answered.
    pub engines: &'a Arc<Engines<R>>,
    /// The inventory's other managers that answered.
    pub others: &'a [(String, Arc<R>)],
    pub force: bool,
    /// The autolock key, for an autolocked swarm.
    pub key: Option<&'a Secret>,
    pub timeout: Duration,
}

/// Puts the archive's swarm state onto the target and starts the swarm again from it (see
/// the module header). Its steps and changes are reported on the target's row.
pub async fn put_back<R: Remote + 'static>(
    o: &Onto<'_, R>,
    a: &Archive,
    rows: &Rows,
) -> Result<PutBack, StepError> {
    let row = RowId::host(&o.host.name);
    let swarm_id = &a.manifest.swarm.id;
    rows.step(&row, "probe");
    let facts = crate::exec::probe::probe(o.remote, o.engines, probe::probe(), &[], &[], o.timeout)
        .await?
        .facts;
    let verdict = judge_target(&o.host.name, &facts, swarm_id, o.force);
    rows.step(&row, "ask the other managers");
    let others = other_swarms(o.engines, o.others, o.timeout).await;
    judge_others(&others, swarm_id, o.force).map_err(StepError)?;
    match verdict {
        Verdict::Refused(why) => return Err(StepError(why)),
        Verdict::Running => {
            rows.note(
                &row,
                &format!("it manages swarm {swarm_id} already: nothing is put back"),
            );
            return Ok(PutBack::Running);
        }
        Verdict::Replace(was) => rows.note(&row, &format!("--force: it was {was}")),
        Verdict::Free => {}
    }
    let engine = o
        .engines
        .get(&o.host.name)
        .await
        .map_err(super::engine_error)?;
    let info = engine
        .call(api::info(), o.timeout)
        .await
        .map_err(String::from)
        .and_then(|r| api::read(&r, api::parse_daemon_info))
        .map_err(StepError)?;
    drop(engine);
    let docker_root = info.docker_root_dir;
    if !docker_root.starts_with('/') || docker_root.contains(['\n', '\0']) {
        return Err(StepError(format!(
            "Docker names {docker_root:?} as its data root, which is no absolute path"
        )));
    }
    swap_in(o, a, &docker_root, rows).await?;
    let advertise = crate::plan::advertise_of(o.host, &facts);
    start_swarm(o, a, &docker_root, &advertise, rows).await?;
    Ok(PutBack::Restored)
}

/// The swarm state of each other manager that answers (those that do not cannot serve a
/// swarm to split from).
async fn other_swarms<R: Remote + 'static>(
    engines: &Arc<Engines<R>>,
    others: &[(String, Arc<R>)],
    timeout: Duration,
) -> Vec<(String, SwarmInfo)> {
    let all = engines.clone();
    let asked = parallel_map(others.to_vec(), 8, move |(host, _)| {
        let engines = all.clone();
        async move {
            let info = async {
                let e = engines.get(&host).await?;
                let r = e.call(api::info(), timeout).await?;
                api::read(&r, api::parse_info)
            };
            let info = info.await;
            (host, info)
        }
    })
    .await;
    asked
        .into_iter()
        .filter_map(|(h, i)| i.ok().map(|i| (h, i)))
        .collect()
}

/// Sends the swarm folder and swaps it in, Docker stopped for the swap and started again
/// by the Pi's script whatever happens.
async fn swap_in<R: Remote + 'static>(
    o: &Onto<'_, R>,
    a: &Archive,
    docker_root: &str,
    rows: &Rows,
) -> Result<(), StepError> {
    let row = RowId::host(&o.host.name);
    let sha = &a
        .manifest
        .files
        .iter()
        .find(|f| f.name == remote::SWARM_FILE)
        .expect("a read archive lists its swarm member")
        .sha256;
    rows.step(&row, "put the swarm state back (Docker stops for it)");
    let req = ExecRequest::new(remote::put_back(docker_root, sha))
        .privileged()
        .stdin(a.swarm.clone())
        .timeout(SCRIPT_WAIT);
    let out = crate::exec::run_ok(o.remote, req).await?;
    let staged = remote::parse_staged(Kind::Restore, &out.stdout_str()).map_err(StepError)?;
    let host = &o.host.name;
    let problem = if !staged.ok("start") {
        Some(format!(
            "Docker did not start again on {host}: start it (`sudo systemctl start docker`)"
        ))
    } else if !staged.ok("stop") {
        Some(format!(
            "Docker did not stop on {host}, so its swarm state was not replaced"
        ))
    } else if !staged.ok("swap") {
        Some(format!(
            "the swarm state could not be put in place on {host}"
        ))
    } else {
        None
    };
    let result = match problem {
        Some(what) => Err(super::failure(o.remote, &staged, &what, o.timeout).await),
        None => Ok(()),
    };
    super::discard(o.remote, &staged.stage, o.timeout).await;
    // Docker restarted: its engine's relay ended with it.
    o.engines.forget(&o.host.name).await;
    result?;
    rows.changed(
        &row,
        format!(
            "swarm state put back (taken {} from {})",
            a.manifest.created, a.manifest.source.host
        ),
    );
    Ok(())
}

/// Unlocks the restored state if the swarm is autolocked, then starts the swarm again as
/// one manager at `advertise`, keeping autolock and the CA as they were.
async fn start_swarm<R: Remote + 'static>(
    o: &Onto<'_, R>,
    a: &Archive,
    docker_root: &str,
    advertise: &str,
    rows: &Rows,
) -> Result<(), StepError> {
    let row = RowId::host(&o.host.name);
    rows.step(&row, "start the swarm again");
    let engine = o
        .engines
        .get(&o.host.name)
        .await
        .map_err(super::engine_error)?;
    // A state of several managers never gets quorum back on its own: no use waiting.
    let wait = if a.manifest.swarm.managers > 1 {
        Await::Running
    } else {
        Await::Serving
    };
    let mut state = settled(&engine, o.timeout, wait).await?;
    if state.local_node_state == "locked" {
        let key = o.key.ok_or_else(|| {
            StepError("the swarm is autolocked and no unlock key was given".into())
        })?;
        state = unlock(&engine, key, o.timeout, wait).await?;
        rows.changed(&row, "swarm unlocked".into());
    }
    if state.local_node_state == "inactive" {
        return Err(StepError(
            "Docker started without the swarm state that was put back (its log on the Pi says why)"
                .into(),
        ));
    }
    let keep = a.manifest.swarm.keep;
    if keep.autolock && state.is_active() && state.node_addr == advertise {
        // Docker cannot start a new cluster from a locked state (moby/moby#36852); one
        // manager back at its own address needs none: it leads itself, key unchanged.
        rows.changed(
            &row,
            "swarm started again as it was: autolocked, back at its own address (no --force-new-cluster needed), the unlock key unchanged".into(),
        );
        nodes_known(&engine, o.timeout).await;
        return Ok(());
    }
    if keep.autolock {
        autolock_off(o.remote, &engine, docker_root, o.timeout).await?;
        rows.changed(
            &row,
            format!(
                "the swarm's unlock key changed (autolock off for --force-new-cluster, which Docker cannot do on a locked swarm, then on again): read the new one with `docker swarm unlock-key` on {} and keep it",
                o.host.name
            ),
        );
    }
    force_new_cluster(&engine, advertise, keep).await?;
    let state = settled(&engine, o.timeout, Await::Serving).await?;
    if !(state.is_active() && state.control_available) {
        return Err(StepError(format!(
            "after swarm init --force-new-cluster the node's swarm state is {}",
            state.local_node_state
        )));
    }
    rows.changed(
        &row,
        format!(
            "swarm {} started again on it (--force-new-cluster, advertise {advertise})",
            state.cluster.id
        ),
    );
    rows.step(&row, "wait for the nodes to report");
    nodes_known(&engine, o.timeout).await;
    Ok(())
}

/// Turns autolock off on the unlocked manager of a one-manager swarm (it has quorum), and
/// waits (up to 30 s) until the manager rewrote its key unencrypted: `--force-new-cluster`
/// restarts the node without the unlock key.
async fn autolock_off<R: Remote>(
    remote: &R,
    engine: &Engine,
    docker_root: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    let r = engine
        .call(api::swarm_inspect(), timeout)
        .await
        .map_err(super::engine_error)?;
    let spec = api::read(&r, api::parse_swarm).map_err(StepError)?;
    let r = engine
        .call(api::swarm_autolock_off(&spec), timeout)
        .await
        .map_err(super::engine_error)?;
    api::read(&r, |_| Ok(()))
        .map_err(|e| StepError(format!("cannot turn autolock off for the restart: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let header = root(remote, remote::key_header(docker_root), timeout).await?;
        if !remote::key_encrypted(&header.stdout_str()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StepError(
                "the manager's key is still encrypted 30 s after autolock was turned off".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the archive can be restored at all: Docker cannot start a new cluster from an
/// autolocked state of a manager that had peers (moby/moby#36852: `--force-new-cluster`
/// restarts it without its key, and with peers it has no quorum to turn autolock off).
pub fn restorable(a: &Archive) -> Result<(), String> {
    let s = &a.manifest.swarm;
    if s.keep.autolock && s.managers > 1 {
        return Err(format!(
            "swarm {} was autolocked with {} managers: Docker cannot start a swarm again from such a copy (moby/moby#36852); bring one of its managers back instead",
            s.id, s.managers
        ));
    }
    Ok(())
}

/// `POST /swarm/init` with `ForceNewCluster`; again for up to 60 s while Docker says the
/// node is no manager yet (its manager is still starting).
async fn force_new_cluster(
    engine: &Engine,
    advertise: &str,
    keep: crate::docker::api::ResetOnInit,
) -> Result<(), StepError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = engine
            .call(
                api::swarm_force_new_cluster(advertise, keep),
                Duration::from_secs(120),
            )
            .await
            .map_err(super::engine_error)?;
        if answer.ok() {
            return Ok(());
        }
        let said = api::error_message(&answer);
        if !said.contains("not a swarm manager") || Instant::now() >= deadline {
            return Err(StepError(format!(
                "swarm init --force-new-cluster failed: {said}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long the nodes of a swarm started again may stay `unknown`: swarm marks one that
/// has not reported `down` after a few heartbeat periods.
const NODES_KNOWN_WITHIN: Duration = Duration::from_secs(60);

/// Waits until swarm knows of every node whether it is up (ready) or down, up to
/// [`NODES_KNOWN_WITHIN`]: a node that reconnects by itself (its managers' address did
/// not change) is then not taken for a half-joined one, and one that cannot is listed
/// down, as bootstrap's repair of half-joined nodes needs it.
async fn nodes_known(engine: &Engine, timeout: Duration) {
    let deadline = Instant::now() + NODES_KNOWN_WITHIN;
    while Instant::now() < deadline {
        let nodes = engine
            .call(api::nodes(), timeout)
            .await
            .map_err(String::from)
            .and_then(|r| api::read(&r, node::parse_node_list));
        match nodes {
            Ok(n) if n.iter().all(|n| n.state == "ready" || n.state == "down") => return,
            Ok(_) => {}
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node ID each host's Docker reports, for the hosts that answer.
async fn node_ids<R: Remote + 'static>(
    engines: &Arc<Engines<R>>,
    timeout: Duration,
) -> Vec<String> {
    let items: Vec<String> = engines.hosts().cloned().collect();
    let all = engines.clone();
    parallel_map(items, 8, move |host| {
        let engines = all.clone();
        async move {
            let asked = async {
                let e = engines.get(&host).await?;
                let r = e.call(api::info(), timeout).await?;
                api::read(&r, api::parse_info)
            };
            asked.await.map(|i| i.node_id).unwrap_or_default()
        }
    })
    .await
    .into_iter()
    .filter(|id| !id.is_empty())
    .collect()
}

/// The entries of nodes that are gone: down in the swarm, the node of no host that
/// answered, and not (by host name or address) a host of the inventory that did not
/// answer (it may come back and join again by itself).
pub fn gone<'a>(nodes: &'a [SwarmNode], current: &[String], away: &[&Host]) -> Vec<&'a SwarmNode> {
    nodes
        .iter()
        .filter(|n| n.state == "down" && !current.contains(&n.id))
        .filter(|n| {
            !away
                .iter()
                .any(|h| h.name == n.hostname || h.address == n.addr)
        })
        .collect()
}

/// Removes the entries of the nodes that are gone ([`gone`]) through the leader `target`:
/// a manager's entry is demoted first (swarm removes no manager).
pub async fn remove_gone<R: Remote + 'static>(
    target: &R,
    engines: &Arc<Engines<R>>,
    away: &[&Host],
    rows: &Rows,
    timeout: Duration,
) -> Result<(), StepError> {
    let row = RowId::host(target.host());
    rows.step(&row, "remove the entries of nodes that are gone");
    let current = node_ids(engines, timeout).await;
    let engine = engines
        .get(target.host())
        .await
        .map_err(super::engine_error)?;
    let answer = engine
        .call(api::nodes(), timeout)
        .await
        .map_err(super::engine_error)?;
    let nodes = api::read(&answer, node::parse_node_list).map_err(StepError)?;
    let specs: Vec<NodeSpec> = api::read(&answer, api::parse_node_specs).map_err(StepError)?;
    for n in gone(&nodes, &current, away) {
        if n.role == "manager"
            && let Some(spec) = specs.iter().find(|s| s.id == n.id)
        {
            let r = engine
                .call(api::node_update(spec, Some(Role::Worker), &[]), timeout)
                .await
                .map_err(super::engine_error)?;
            api::read(&r, |_| Ok(()))
                .map_err(|e| StepError(format!("demote {}: {e}", n.hostname)))?;
        }
        let r = engine
            .call(api::node_remove(&n.id, true), timeout)
            .await
            .map_err(super::engine_error)?;
        api::read(&r, |_| Ok(())).map_err(|e| StepError(format!("remove {}: {e}", n.hostname)))?;
        rows.changed(
            &row,
            format!(
                "removed the entry of {} ({}), a node that is gone",
                n.hostname, n.id
            ),
        );
    }
    Ok(())
}

/// Puts rpiprov's records onto `manager` (the one `deploy` acts through). With
/// `keep_existing`, records already there stay (a rerun: they may be newer).
pub async fn put_records<R: Remote>(
    manager: &R,
    a: &Archive,
    keep_existing: bool,
    rows: &Rows,
    timeout: Duration,
) -> Result<(), StepError> {
    let row = RowId::host(manager.host());
    rows.step(&row, "put rpiprov's records back");
    let sha = &a
        .manifest
        .files
        .iter()
        .find(|f| f.name == remote::RECORDS_FILE)
        .expect("a read archive lists its records member")
        .sha256;
    let req = ExecRequest::new(remote::put_records(sha, keep_existing))
        .privileged()
        .stdin(a.records.clone())
        .timeout(timeout);
    let out = crate::exec::run_ok(manager, req).await?;
    let said = out.stdout_str();
    if said.contains(RECORDS_RESTORED) {
        rows.changed(&row, "rpiprov's records put back".into());
    } else if !said.contains(RECORDS_KEPT) {
        return Err(StepError(format!(
            "the records were not put back: {}",
            said.trim()
        )));
    }
    Ok(())
}
