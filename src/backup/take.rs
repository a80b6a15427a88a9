//! `rpiprov backup`'s remote work: the survey (what the swarm is, which manager to copy
//! from, see [`super::choose`]) and the copy ([`take`]). The command asks the user
//! between the two when the copy's stop loses quorum, and holds the deploy lock around
//! the copy (`crate::cmd::backup`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::archive::{self, FilePart, Manifest, NodePart, Source, StackPart, SwarmPart};
use super::choose::{self, Candidate, Choice};
use super::{SCRIPT_WAIT, discard, failure, fetch_staged};
use crate::docker::api::{self, DaemonInfo, ResetOnInit};
use crate::docker::backup::{self as remote, Kind, RECORDS_FILE, SWARM_FILE};
use crate::docker::node::{self, SwarmNode};
use crate::exec::engine::Engines;
use crate::exec::report::{RowId, Rows, secs};
use crate::exec::{StepError, parallel_map, root};
use crate::remote::{ExecRequest, Remote};
use crate::secret::Secret;

/// What the swarm is, and where its state will be copied from.
#[derive(Debug, Clone)]
pub struct Survey {
    pub swarm_id: String,
    pub keep: ResetOnInit,
    pub nodes: Vec<SwarmNode>,
    pub stacks: Vec<StackPart>,
    pub choice: Choice,
    pub source: Source,
    /// The manager the survey asked, where `deploy` keeps rpiprov's records.
    pub records_from: String,
    /// Managers not copied from, and why (no answer, not confirmed as their node).
    pub passed_over: Vec<(String, String)>,
    /// An autolocked swarm's key, read from the manager: the source comes back locked
    /// from Docker's restart and is unlocked with it. Never stored nor shown.
    pub unlock_key: Option<Secret>,
}

impl Survey {
    /// The nodes as the archive lists them.
    pub fn node_parts(&self) -> Vec<NodePart> {
        let mut nodes: Vec<&SwarmNode> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
        nodes
            .into_iter()
            .map(|n| NodePart {
                id: n.id.clone(),
                hostname: n.hostname.clone(),
                role: n.role.clone(),
                address: n.addr.clone(),
                state: n.state.clone(),
                availability: n.availability.clone(),
                labels: n.labels.clone(),
            })
            .collect()
    }

    pub fn managers(&self) -> usize {
        self.nodes.iter().filter(|n| n.role == "manager").count()
    }

    /// The archive's manifest for what was taken, now.
    pub fn manifest(&self, taken: &Taken) -> Manifest {
        Manifest {
            format: archive::FORMAT.into(),
            version: archive::VERSION,
            rpiprov: env!("CARGO_PKG_VERSION").into(),
            created: crate::clock::rfc3339(std::time::SystemTime::now()),
            swarm: SwarmPart {
                id: self.swarm_id.clone(),
                managers: self.managers(),
                keep: self.keep,
            },
            source: self.source.clone(),
            records_from: self.records_from.clone(),
            nodes: self.node_parts(),
            stacks: self.stacks.clone(),
            files: vec![
                FilePart::of(SWARM_FILE, &taken.swarm),
                FilePart::of(RECORDS_FILE, &taken.records),
            ],
        }
    }
}

/// Whether the swarm sees a node at one of the host's addresses (as this machine knows
/// them, not as the host says): what makes a host's word on its node ID good enough to
/// stop that node's Docker as a follower rather than as the leader.
fn seen_at_one_of(node: &SwarmNode, addresses: &[String]) -> bool {
    addresses.iter().any(
        |a| match (a.parse::<IpAddr>(), node.addr.parse::<IpAddr>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a.eq_ignore_ascii_case(&node.addr),
        },
    )
}

/// Each stack's services, without the stack prefix.
fn stacks_of(polls: &BTreeMap<String, crate::docker::service::Poll>) -> Vec<StackPart> {
    polls
        .iter()
        .map(|(stack, p)| StackPart {
            name: stack.clone(),
            services: p
                .services
                .iter()
                .map(|s| {
                    s.name
                        .strip_prefix(&format!("{stack}_"))
                        .unwrap_or(&s.name)
                        .to_string()
                })
                .collect(),
        })
        .collect()
}

/// Asks `records` (the manager `deploy` acts through) what the swarm is, in one round
/// trip of its Engine API, and every manager of `managers` (reachable, inventory order)
/// which node it is; chooses the manager to copy from.
pub async fn survey<R: Remote + 'static>(
    records: &R,
    engines: &Arc<Engines<R>>,
    managers: &[(String, Arc<R>)],
    addresses: &HashMap<String, Vec<String>>,
    timeout: Duration,
) -> Result<Survey, String> {
    let engine = engines.get(records.host()).await?;
    let reqs = [
        api::info(),
        api::swarm_inspect(),
        api::stack_services(),
        api::stack_tasks(),
        api::nodes(),
    ];
    let r = engine.batch(&reqs, timeout).await?;
    api::all_ok(&r)?;
    let info = api::parse_daemon_info(&r[0].body)?;
    let spec = api::parse_swarm(&r[1].body)?;
    let nodes = node::parse_node_list(&r[4].body)?;
    let polls = api::parse_stack_polls(&r[2].body, &r[3].body, &nodes)?;
    let keep = api::reset_on_init(&spec.spec);
    let unlock_key = if keep.autolock {
        let r = engine.call(api::swarm_unlock_key(), timeout).await?;
        Some(api::read(&r, api::parse_unlock_key)?)
    } else {
        None
    };
    drop(engine);

    let all = engines.clone();
    let infos: Vec<(String, Result<DaemonInfo, String>)> =
        parallel_map(managers.to_vec(), 8, move |(host, _)| {
            let engines = all.clone();
            async move {
                let asked = async {
                    let e = engines.get(&host).await?;
                    let answer = e.call(api::info(), timeout).await?;
                    api::read(&answer, api::parse_daemon_info)
                };
                let asked = asked.await;
                (host, asked)
            }
        })
        .await;
    let mut passed_over = Vec::new();
    let mut confirmed: Vec<(String, &SwarmNode, DaemonInfo)> = Vec::new();
    for (host, res) in infos {
        let info = match res {
            Ok(i) => i,
            Err(e) => {
                passed_over.push((host, e));
                continue;
            }
        };
        let id = info.swarm.node_id.clone();
        let known = addresses.get(&host).cloned().unwrap_or_default();
        match nodes.iter().find(|n| !id.is_empty() && n.id == id) {
            Some(n) if seen_at_one_of(n, &known) => confirmed.push((host, n, info)),
            Some(n) => passed_over.push((
                host.clone(),
                format!(
                    "it reports swarm node {id}, which the swarm sees at {}, not at {host}'s {}",
                    n.addr,
                    known.join(", ")
                ),
            )),
            None => passed_over.push((
                host,
                format!("it reports swarm node {id:?}, which the swarm does not list"),
            )),
        }
    }
    let candidates: Vec<Candidate> = confirmed
        .iter()
        .map(|(host, node, _)| Candidate { host, node })
        .collect();
    let choice = choose::choose(&candidates, &nodes, &choose::running_on(&polls))?;
    let (_, node, src) = confirmed
        .iter()
        .find(|(h, _, _)| *h == choice.host)
        .expect("the choice is a candidate");
    let root = src.docker_root_dir.clone();
    if !root.starts_with('/') || root.contains(['\n', '\0']) {
        return Err(format!(
            "{}: Docker names {root:?} as its data root, which is no absolute path",
            choice.host
        ));
    }
    let source = Source {
        host: choice.host.clone(),
        node_id: node.id.clone(),
        address: node.addr.clone(),
        leader: choice.leader,
        docker_version: src.server_version.clone(),
        docker_root: root,
    };
    Ok(Survey {
        swarm_id: info.swarm.cluster.id,
        keep,
        unlock_key,
        stacks: stacks_of(&polls),
        nodes,
        choice,
        source,
        records_from: records.host().to_string(),
        passed_over,
    })
}

/// What [`take`] brought back.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The swarm folder, gzipped, as the Pi packed it.
    pub swarm: Vec<u8>,
    /// rpiprov's records, gzipped.
    pub records: Vec<u8>,
}

/// Copies the swarm's state from `source` (Docker stopped for it and started again by the
/// Pi's own script) and rpiprov's records from `records`, each checked as it arrives. The
/// stages on the Pis are removed once read, or when the copy failed. A failure is
/// reported on its host's row (`None`).
pub async fn take<R: Remote + 'static>(
    source: &R,
    records: &R,
    engines: &Engines<R>,
    survey: &Survey,
    rows: &Rows,
    timeout: Duration,
) -> Option<Taken> {
    let docker_root = &survey.source.docker_root;
    let key = survey.unlock_key.as_ref();
    let swarm = match copy_swarm(source, engines, docker_root, key, rows, timeout).await {
        Ok(b) => b,
        Err(e) => {
            rows.fail(&RowId::host(source.host()), "copy", &e.0);
            return None;
        }
    };
    match copy_records(records, rows, timeout).await {
        Ok(records) => Some(Taken { swarm, records }),
        Err(e) => {
            rows.fail(&RowId::host(records.host()), "records", &e.0);
            None
        }
    }
}

/// The swarm folder of `source`, with Docker stopped for the copy.
async fn copy_swarm<R: Remote + 'static>(
    source: &R,
    engines: &Engines<R>,
    docker_root: &str,
    key: Option<&Secret>,
    rows: &Rows,
    timeout: Duration,
) -> Result<Vec<u8>, StepError> {
    let row = RowId::host(source.host());
    rows.step(&row, "stop Docker, copy the swarm state, start Docker");
    let started = Instant::now();
    let out = root(source, remote::snapshot(docker_root), SCRIPT_WAIT).await?;
    let staged = remote::parse_staged(Kind::Snapshot, &out.stdout_str()).map_err(StepError)?;
    let took = started.elapsed();
    let host = source.host();
    let locked = match (staged.ok("start"), key) {
        (true, Some(key)) => unlock_again(source, engines, key, rows, timeout)
            .await
            .err(),
        _ => None,
    };
    let problem = if !staged.ok("start") {
        Some(format!(
            "Docker did not start again on {host} after the copy: start it (`sudo systemctl start docker`, or `sudo service docker start`)"
        ))
    } else if let Some(e) = locked {
        Some(format!(
            "{host} stays locked after Docker's restart ({e}): unlock it (`docker swarm unlock`)"
        ))
    } else if !staged.ok("stop") {
        Some(format!(
            "Docker did not stop on {host}, so nothing was copied (it runs)"
        ))
    } else if !staged.ok("copy") {
        Some(format!(
            "the copy of {docker_root}/swarm on {host} failed (Docker runs again)"
        ))
    } else {
        None
    };
    if let Some(what) = problem {
        let e = failure(source, &staged, &what, timeout).await;
        discard(source, &staged.stage, timeout).await;
        return Err(e);
    }
    rows.step(&row, "fetch the copy");
    let swarm = fetch_staged(source, &staged, SWARM_FILE, timeout).await;
    discard(source, &staged.stage, timeout).await;
    let swarm = swarm?;
    rows.changed(
        &row,
        format!(
            "Docker stopped, its swarm state copied ({} bytes), Docker started again ({} in all)",
            swarm.len(),
            secs(took)
        ),
    );
    Ok(swarm)
}

/// An autolocked manager comes back from Docker's restart locked: unlocks it again.
async fn unlock_again<R: Remote + 'static>(
    source: &R,
    engines: &Engines<R>,
    key: &Secret,
    rows: &Rows,
    timeout: Duration,
) -> Result<(), StepError> {
    // Docker restarted: its engine's relay ended with it.
    engines.forget(source.host()).await;
    let engine = engines
        .get(source.host())
        .await
        .map_err(super::engine_error)?;
    let state = super::settled(&engine, timeout, super::Await::Serving).await?;
    if state.local_node_state == "locked" {
        let state = super::unlock(&engine, key, timeout, super::Await::Serving).await?;
        if !state.is_active() {
            return Err(StepError(format!(
                "its swarm state is {}",
                state.local_node_state
            )));
        }
        rows.note(
            &RowId::host(source.host()),
            "unlocked again (the swarm is autolocked)",
        );
    }
    Ok(())
}

/// rpiprov's records on `records`, packed there; nothing is stopped.
async fn copy_records<R: Remote>(
    records: &R,
    rows: &Rows,
    timeout: Duration,
) -> Result<Vec<u8>, StepError> {
    let row = RowId::host(records.host());
    rows.step(&row, "copy rpiprov's records");
    let out = root(records, remote::pack_records(), timeout).await?;
    let staged = remote::parse_staged(Kind::Records, &out.stdout_str()).map_err(StepError)?;
    let packed = fetch_staged(records, &staged, RECORDS_FILE, timeout).await;
    discard(records, &staged.stage, timeout).await;
    let bytes = packed?;
    rows.changed(
        &row,
        format!("rpiprov's records copied ({} bytes)", bytes.len()),
    );
    Ok(bytes)
}

/// After Ctrl-C during a copy: waits for the Pi's script to end (it starts Docker again by
/// itself), says how it ended, and removes its stage.
pub async fn after_interrupt<R: Remote + 'static>(
    source: &R,
    engines: &Engines<R>,
    survey: &Survey,
    rows: &Rows,
    timeout: Duration,
) {
    let row = RowId::host(source.host());
    rows.step(&row, "wait for the copy's script to start Docker again");
    let req = ExecRequest::new(remote::settle(Kind::Snapshot))
        .privileged()
        .timeout(Duration::from_secs(200));
    match crate::exec::run_ok(source, req).await {
        Ok(out) => {
            let ended = remote::parse_settled(&out.stdout_str());
            let down = ended
                .iter()
                .any(|f| !f.iter().any(|(k, v)| k == "start" && v == "ok"));
            if down {
                rows.fail(
                    &row,
                    "docker",
                    "Docker did not start again after the interrupted copy: start it (`sudo systemctl start docker`, or `sudo service docker start`)",
                );
            } else if !ended.is_empty() {
                rows.note(&row, "the copy's script ran to its end: Docker runs again");
                if let Some(key) = &survey.unlock_key
                    && let Err(e) = unlock_again(source, engines, key, rows, timeout).await
                {
                    rows.fail(
                        &row,
                        "unlock",
                        &format!("{e}: unlock it (`docker swarm unlock`)"),
                    );
                }
            }
        }
        Err(e) => rows.fail(
            &row,
            "docker",
            &format!("cannot tell whether Docker runs again: {e}; check it (`docker info`)"),
        ),
    }
}
