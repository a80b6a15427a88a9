//! The `rpiprov deploy` executor: under the lock on the manager, recreate the playbook's
//! missing networks, ship the images to the nodes that lack them, check the bind sources
//! of the stacks about to be deployed on the nodes where their services may run, then
//! deploy the stacks in playbook order, each one only when its fingerprint (its file set,
//! shipped image archives, variable values) differs from the one recorded at its last
//! converged deploy: its file set is uploaded when the manager lacks it, and the stack is
//! deployed from it. The order is a dependency order: a stack is deployed once the
//! one before it is *ready* (every slot runs a task of its current spec), and a stack that
//! does not get there stops the stacks after it (unless all it misses is nodes down in the
//! swarm). The rest of each stack's convergence (tasks that stay up, swarm's update
//! monitoring) overlaps with the next deploys; the run ends when every stack converged or
//! failed, and a stack's deploy is recorded only then.
//!
//! - [`prepare()`] (`prepare.rs`): the local half, before any connection; its errors are
//!   usage errors; [`command`] runs the commands whose output is a variable's value;
//! - [`release`]: a stack's file set (compose file, the files it refers to, the names of
//!   its configs and secrets) as one tar stream;
//! - [`cli`]: whether the manager's Docker CLI reads each stack's file, before any change;
//! - [`binds`]: the bind-mount check on the nodes;
//! - [`images`]: shipping image archives to the nodes (the commands are
//!   [`crate::docker::image`]'s);
//! - [`wait`]: the convergence wait of all the deployed stacks, one poll for all (the
//!   judgement is [`crate::docker::service`]'s);
//! - [`preview()`] (`preview.rs`): `--dry-run`, the same reads and decisions, no write;
//! - this file: the flow, and the result: one row per manager, node and stack, plus a
//!   per-stack detail for `--json`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::docker::api;
use crate::docker::manifest;
use crate::docker::network::NetworkInfo;
use crate::docker::network::{self, Verdict};
use crate::docker::node::SwarmNode;
use crate::docker::release::{self as remote_release, EXTRACTED, Record};
use crate::docker::service::{self, ServiceState};
use crate::docker::stack::{self, DeployFiles, StackState};
use crate::exec::engine::{Engine, Engines};
use crate::exec::lock::{Holder, LockOwner, Locked, with_lock};
use crate::exec::report::{Outcome, Reporter, Row, RowId, Rows, secs};
use crate::exec::{POLL_INTERVAL, StepError, root, run_ok};
use crate::remote::{ExecRequest, Output, Remote};

pub mod binds;
pub mod cli;
pub mod command;
pub mod images;
mod prepare;
mod preview;
pub mod release;
pub mod wait;

use wait::{NotConverged, Pace, Watch};

pub use prepare::{
    EnvVar, Prepared, PreparedStack, ServiceBinds, fingerprint, prepare, prepare_with,
};
pub use preview::{StackFile, preview, stack_files};

/// Whether a stack is deployed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Unchanged,
    Deploy(&'static str),
}

pub fn decide(fingerprint: &str, state: &StackState, stack: &str) -> Decision {
    match state.recorded.get(stack) {
        None => Decision::Deploy("not deployed by rpiprov before"),
        Some(fp) if fp != fingerprint => Decision::Deploy("changed since its last deploy"),
        // Removed by hand since (`docker stack rm`): the record alone must not hide it.
        Some(_) if !state.existing.contains(stack) => Decision::Deploy("stack is missing"),
        Some(_) => Decision::Unchanged,
    }
}

/// How a stack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackStatus {
    Deployed,
    Unchanged,
    Failed,
    /// Not attempted (an earlier stack failed, the lock was held, Ctrl-C).
    Skipped,
}

/// One stack's result, for the summary and `--json`. Holds no variable value.
#[derive(Debug, Clone, Serialize)]
pub struct StackResult {
    pub stack: String,
    pub status: StackStatus,
    /// Why it was deployed (`changed since its last deploy` ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The step that failed: `upload`, `images`, `deploy`, `converge`, `record`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Why it failed or was skipped; one line per failing service for `converge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The services as the last poll saw them (empty when not deployed now).
    pub services: Vec<ServiceState>,
    /// Config and secret versions removed once it converged (`config NAME`): no service
    /// uses them any more.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    pub seconds: f64,
}

impl StackResult {
    /// The stack's row in the summary.
    fn row(&self) -> Row {
        let mut r = Row::new(RowId::stack(&self.stack));
        r.seconds = self.seconds;
        match self.status {
            StackStatus::Deployed => {
                r.outcome = Outcome::Changed;
                let why = self.why.clone().unwrap_or_default();
                r.changed.push(format!(
                    "deployed ({why}); {} service(s) converged",
                    self.services.len()
                ));
                r.changed
                    .extend(self.removed.iter().map(|x| format!("removed unused {x}")));
            }
            StackStatus::Unchanged => {}
            StackStatus::Failed => {
                r.outcome = Outcome::Failed;
                r.failed_step = self.failed_step.clone();
                r.error = self.error.clone();
            }
            StackStatus::Skipped => {
                r.outcome = Outcome::Skipped;
                r.error = self.error.clone();
            }
        }
        r
    }
}

/// The whole result: rows for the summary table (manager, nodes, then the stacks) and
/// the per-stack detail.
#[derive(Debug, Clone, Serialize)]
pub struct DeployResult {
    #[serde(rename = "hosts")]
    pub rows: Vec<Row>,
    pub stacks: Vec<StackResult>,
}

impl DeployResult {
    /// Exit code 1 when true.
    pub fn failed(&self) -> bool {
        crate::exec::report::any_failed(&self.rows)
    }
    pub fn changed(&self) -> bool {
        crate::exec::report::any_changed(&self.rows)
    }
}

/// The rows of the result, in order: the manager, the nodes (when there are images to
/// ship), the stacks.
fn row_ids(prepared: &Prepared, leader: &str, nodes: &[String]) -> Vec<RowId> {
    let mut rows = vec![RowId::host(leader)];
    let mut others: Vec<&String> = nodes.iter().filter(|n| *n != leader).collect();
    others.sort();
    if !prepared.images.is_empty() {
        rows.extend(others.into_iter().map(|n| RowId::host(n)));
    }
    rows.extend(prepared.stacks.iter().map(|s| RowId::stack(&s.name)));
    rows
}

/// The rows a progress display should show, in order: the manager, the nodes, the stacks.
pub fn row_names(prepared: &Prepared, leader: &str, nodes: &[String]) -> Vec<String> {
    row_ids(prepared, leader, nodes)
        .iter()
        .map(RowId::label)
        .collect()
}

/// Where a stack's deploy is, so that an interruption says what was done and what not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upload,
    Deploy,
    Converge,
    Record,
}

impl Phase {
    /// What an interruption in this phase leaves.
    fn interrupted(self) -> &'static str {
        match self {
            Phase::Upload => {
                "during the upload of its files (the manager holds the whole new set or none of it); not deployed"
            }
            Phase::Deploy => {
                "during docker stack deploy (swarm took the new file or kept the old one)"
            }
            Phase::Converge => {
                "during the wait for convergence (deployed; swarm goes on converging it)"
            }
            Phase::Record => "while recording the deploy (it had converged)",
        }
    }
}

/// How the run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes worked on at once (image shipping).
    pub parallel: usize,
    /// Limit of one ordinary remote command.
    pub command_timeout: Duration,
    /// Time between two convergence polls (2 s).
    pub poll_interval: Duration,
    /// How long a task must have been seen running to count ([`wait::SETTLE`]).
    pub settle: Duration,
    /// Who takes the lock: [`LockOwner::current`]`("deploy")`.
    pub owner: LockOwner,
    /// Deploy without checking that bind-mount sources exist on the nodes.
    pub skip_bind_check: bool,
}

impl Options {
    /// The defaults, with this process as the lock owner.
    pub fn new(parallel: usize, command_timeout: Duration) -> Options {
        Options {
            parallel,
            command_timeout,
            poll_interval: POLL_INTERVAL,
            settle: wait::SETTLE,
            owner: LockOwner::current("deploy"),
            skip_bind_check: false,
        }
    }
}

/// Deploys. `leader` is a reachable manager; `nodes` every swarm node that may run the
/// shipped images (the leader included), by inventory name, and `engines` their Engine
/// APIs (the leader's open already). `interrupt` ends the run
/// early when it completes (see [`with_lock`]): Ctrl-C, or `std::future::pending()` for
/// none. The lock is released on every path; a refused run leaves the holder's lock alone.
pub async fn execute<R: Remote + 'static>(
    opts: &Options,
    prepared: &Prepared,
    leader: Arc<R>,
    engines: Arc<Engines<R>>,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> DeployResult {
    let d = Deploy::new(opts, prepared, leader, engines, nodes, reporter);
    // Before the lock and any change: a file the manager's CLI refuses stops the run.
    if !d.cli_reads_the_stacks().await {
        return d.finish();
    }
    let holder = Holder {
        remote: &*d.leader,
        owner: &opts.owner,
        timeout: opts.command_timeout,
        rows: &d.rows,
        row: &d.leader_row,
    };
    match with_lock(holder, interrupt, d.deploy()).await {
        Locked::Done(()) => {}
        Locked::Refused => d.skip_pending("not attempted: the deploy lock is held"),
        Locked::Interrupted => d.interrupted(),
    }
    d.finish()
}

/// How long a node has to answer at the end of a deploy before it counts as silent.
const SILENT_AFTER: Duration = Duration::from_secs(5);

/// The state given to a node that swarm still says is ready but does not answer.
const SILENT_STATE: &str = "silent";

struct Deploy<'a, R> {
    opts: &'a Options,
    prepared: &'a Prepared,
    leader: Arc<R>,
    engines: Arc<Engines<R>>,
    leader_row: RowId,
    nodes: HashMap<String, Arc<R>>,
    rows: Rows,
    stacks: Mutex<Vec<StackResult>>,
    /// The stacks deployed and not done yet, each in its phase, so that an interruption
    /// names them and how far each got.
    in_flight: Mutex<BTreeMap<usize, Phase>>,
    started: Instant,
}

impl<'a, R: Remote + 'static> Deploy<'a, R> {
    fn new(
        opts: &'a Options,
        prepared: &'a Prepared,
        leader: Arc<R>,
        engines: Arc<Engines<R>>,
        nodes: HashMap<String, Arc<R>>,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        let leader_name = leader.host().to_string();
        let node_names: Vec<String> = nodes.keys().cloned().collect();
        // The stacks' rows are made at the end, from their results.
        let ids: Vec<RowId> = row_ids(prepared, &leader_name, &node_names)
            .into_iter()
            .filter(|id| id.kind == crate::exec::report::RowKind::Host)
            .collect();
        let stacks = prepared
            .stacks
            .iter()
            .map(|s| StackResult {
                stack: s.name.clone(),
                status: StackStatus::Skipped,
                why: None,
                failed_step: None,
                error: None,
                services: vec![],
                removed: vec![],
                seconds: 0.0,
            })
            .collect();
        let secrets = prepared
            .stacks
            .iter()
            .flat_map(|s| s.variables.iter())
            .filter(|v| v.secret)
            .map(|v| v.value.clone())
            .collect();
        Deploy {
            opts,
            prepared,
            leader,
            engines,
            leader_row: RowId::host(&leader_name),
            nodes,
            rows: Rows::with_secrets(reporter, &ids, secrets),
            stacks: Mutex::new(stacks),
            in_flight: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        }
    }

    /// The leader's Engine API (opened when it said it serves the swarm).
    async fn engine(&self) -> Result<Arc<Engine>, StepError> {
        self.engines
            .get(self.leader.host())
            .await
            .map_err(|e| StepError(e.to_string()))
    }

    /// Creates the playbook's networks that do not exist; a network that exists with other
    /// options is an error (Docker cannot change one in place), as in bootstrap.
    async fn ensure_networks(&self) -> Result<(), StepError> {
        let engine = self.engine().await?;
        let timeout = self.opts.command_timeout;
        let existing = networks(&engine, timeout).await.map_err(StepError)?;
        for verdict in network::compare(&self.prepared.networks, &existing) {
            match verdict {
                Verdict::Matches => {}
                Verdict::Conflict(conflict) => return Err(StepError(conflict)),
                Verdict::Missing(net) => {
                    let what = format!("create network {}", net.name);
                    self.rows.step(&self.leader_row, &what);
                    let r = engine
                        .call(api::network_create(net, engine.version), timeout)
                        .await
                        .map_err(|e| StepError(e.to_string()))?;
                    api::read(&r, |_| Ok(())).map_err(StepError)?;
                    self.rows.changed(&self.leader_row, what);
                }
            }
        }
        Ok(())
    }

    fn set_stack(&self, i: usize, f: impl FnOnce(&mut StackResult)) {
        let mut stacks = self.stacks.lock().unwrap();
        f(&mut stacks[i]);
        stacks[i].seconds = self.started.elapsed().as_secs_f64();
    }

    fn fail_stack(&self, i: usize, step: &str, error: &str) {
        let error = self.rows.redact(error);
        self.set_stack(i, |s| {
            s.status = StackStatus::Failed;
            s.failed_step = Some(step.to_string());
            s.error = Some(error);
        });
    }

    /// Marks the stacks not attempted yet.
    fn skip_pending(&self, reason: &str) {
        let mut stacks = self.stacks.lock().unwrap();
        for s in stacks.iter_mut() {
            if s.status == StackStatus::Skipped && s.error.is_none() {
                s.error = Some(reason.to_string());
            }
        }
    }

    /// Ctrl-C: the stacks in progress failed, each saying how far it got; the others
    /// after them were not attempted. The summary then shows what was done (the rows'
    /// changes, the stacks deployed) and what was not.
    fn interrupted(&self) {
        let in_flight = self.in_flight.lock().unwrap().clone();
        let mut stacks = self.stacks.lock().unwrap();
        for (i, phase) in in_flight {
            let s = &mut stacks[i];
            if s.status == StackStatus::Skipped && s.error.is_none() {
                s.status = StackStatus::Failed;
                s.failed_step = Some("interrupted".into());
                s.error = Some(format!("interrupted {}", phase.interrupted()));
            }
        }
        drop(stacks);
        self.skip_pending("not attempted: interrupted");
    }

    /// A stack in progress is now in this phase.
    fn phase(&self, i: usize, phase: Phase) {
        self.in_flight.lock().unwrap().insert(i, phase);
    }

    /// A stack is done (converged, unchanged or failed): its row ends now, with its own
    /// time and outcome.
    fn done(&self, i: usize) {
        self.in_flight.lock().unwrap().remove(&i);
        let row = self.stacks.lock().unwrap()[i].row();
        let id = row.id.clone();
        self.rows.put(row);
        self.rows.close(&id);
    }

    async fn root(&self, cmd: String) -> Result<Output, StepError> {
        root(&*self.leader, cmd, self.opts.command_timeout).await
    }

    /// Whether the manager's Docker CLI reads every stack's file; when it does not, each
    /// such stack fails saying why and the others are not attempted. Asks the manager only
    /// when some file needs more than CLI 20.10 reads.
    async fn cli_reads_the_stacks(&self) -> bool {
        if !cli::needed(self.prepared) {
            return true;
        }
        let leader = &self.leader_row;
        self.rows.step(leader, "read the Docker CLI's release");
        let found = match cli::read(&*self.leader, self.opts.command_timeout).await {
            Ok(found) => found,
            Err(e) => {
                self.rows
                    .fail(leader, "read the Docker CLI's release", &e.0);
                self.skip_pending("not attempted: the manager's Docker CLI release is unknown");
                return false;
            }
        };
        let refused = cli::judge(self.prepared, &leader.name, &found);
        if refused.is_empty() {
            return true;
        }
        for (i, why) in &refused {
            self.fail_stack(*i, "docker cli", why);
        }
        let names: Vec<&str> = refused
            .iter()
            .map(|(i, _)| self.prepared.stacks[*i].name.as_str())
            .collect();
        self.skip_pending(&format!(
            "not attempted: {}'s Docker CLI {} cannot deploy {}; nothing was changed",
            leader.name,
            found.cli,
            names.join(", ")
        ));
        false
    }

    /// Everything done under the lock.
    async fn deploy(&self) {
        let leader = &self.leader_row;

        // The playbook's networks: a teardown removes them, and the stacks need them.
        if !self.prepared.networks.is_empty() {
            self.rows.step(leader, "check networks");
            if let Err(e) = self.ensure_networks().await {
                self.rows.fail(leader, "networks", &e.0);
                self.skip_pending("not attempted: the playbook's networks are not ready");
                return;
            }
        }

        // Images first: a stack must not start before its images are on the nodes.
        let shipped = images::ship(
            &self.nodes,
            &self.engines,
            &self.prepared.images,
            self.opts.parallel,
            self.opts.command_timeout,
            &self.rows,
        )
        .await;
        // image name -> nodes that may lack it
        let mut lacking: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &shipped {
            let row = RowId::host(&n.host);
            for img in &n.loaded {
                self.rows.changed(&row, format!("load image {img}"));
            }
            if let Some((what, err)) = &n.failed {
                let step = if what == "check images" {
                    what.clone()
                } else {
                    format!("load image {what}")
                };
                self.rows.fail(&row, &step, err);
                for img in &n.not_loaded {
                    lacking.entry(img.clone()).or_default().push(n.host.clone());
                }
            }
            // A node's part ends with its images: its row shows its outcome and time now,
            // not when the last stack converges.
            if row != *leader {
                self.rows.close(&row);
            }
        }

        self.check_pulled_images().await;

        self.rows.step(leader, "read the stacks' state");
        let read = match self.engine().await {
            Ok(engine) => {
                read_state(
                    &*self.leader,
                    &engine,
                    self.prepared,
                    self.opts.command_timeout,
                )
                .await
            }
            Err(e) => Err(e.0),
        };
        let (state, present) = match read {
            Ok(x) => x,
            Err(e) => {
                self.rows.fail(leader, "read stack state", &e);
                self.skip_pending("not attempted: the stack state could not be read");
                return;
            }
        };

        if !self.opts.skip_bind_check && !self.binds_ok(&state).await {
            return;
        }

        let mut watch: Option<Watch<'_>> = None;
        let mut blocked: Option<String> = None;
        for (i, st) in self.prepared.stacks.iter().enumerate() {
            if let Some(b) = &blocked {
                self.set_stack(i, |s| {
                    s.error = Some(format!("not attempted: stack {b} failed before it"))
                });
                continue;
            }
            self.phase(i, Phase::Upload);
            let uploaded = present
                .iter()
                .any(|(n, id)| *n == st.name && *id == st.release.id);
            let ok = self
                .deploy_stack(i, st, &state, uploaded, &lacking, &mut watch)
                .await;
            // A stack that is done ends its row now; one still converging when it does.
            if self.in_flight.lock().unwrap().get(&i) != Some(&Phase::Converge) {
                self.done(i);
            }
            if !ok {
                blocked = Some(st.name.clone());
            }
            // Stacks that converged (or failed) meanwhile are recorded and end now.
            if let Some(w) = watch.as_mut() {
                for (name, states, end) in w.take_ended() {
                    self.converged(&name, states, end).await;
                }
            }
        }
        // Every stack deployed now converges, or fails, before the run ends.
        if let Some(w) = watch {
            for (name, states, end) in w.until_all_converged().await {
                self.converged(&name, states, end).await;
            }
        }
        self.report_down_nodes().await;
        let unchanged = self
            .stacks
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.status == StackStatus::Unchanged);
        if unchanged && !self.prepared.stacks.is_empty() {
            self.rows.note(
                leader,
                &format!(
                    "all {} stacks unchanged since their last deploy; nothing deployed",
                    self.prepared.stacks.len()
                ),
            );
        }
    }

    /// Images the stacks pull from a registry (the playbook ships the others): which
    /// nodes cannot run them, when the manager can read their manifests; and which could
    /// not be checked. Notes on the manager's row only: nothing is refused on them
    /// ([`manifest`]).
    async fn check_pulled_images(&self) {
        let mut pulled: Vec<&str> = self
            .prepared
            .stacks
            .iter()
            .flat_map(|s| s.pulled.iter().map(String::as_str))
            .collect();
        pulled.sort_unstable();
        pulled.dedup();
        if pulled.is_empty() {
            return;
        }
        let leader = &self.leader_row;
        let Ok(engine) = self.engine().await else {
            return;
        };
        let Ok(nodes) = wait::nodes(&engine, self.opts.command_timeout).await else {
            return;
        };
        self.rows
            .step(leader, "read the manifests of pulled images");
        let out = match self.root(manifest::manifests(&pulled)).await {
            Ok(out) => out,
            Err(e) => {
                self.rows.note(
                    leader,
                    &format!("warning: the images' manifests could not be read ({e}): their architectures are not checked"),
                );
                return;
            }
        };
        for (image, m) in manifest::parse_manifests(&out.stdout_str()) {
            if let Some(said) = manifest::verdict(&image, &m, &nodes, &leader.name) {
                self.rows.note(leader, &format!("warning: {said}"));
            }
        }
    }

    /// Nodes that swarm marks down: a global service the playbook puts there does not
    /// run there, whatever swarm's own count says (it leaves such nodes out). Each such
    /// node's row fails naming those services, and so does each stack that holds one,
    /// unchanged stacks included. One read of the nodes; the stacks are polled only when
    /// a node is down.
    ///
    /// Swarm takes some 15 s to mark a node down once it stops hearing from it: a node
    /// cut off just before the end would still count as ready. So every node is asked
    /// first whether it answers (at once, [`SILENT_AFTER`] each); for one that does not,
    /// the run waits up to [`wait::DOWN_NODE_GRACE`] for swarm to say down or the node to
    /// answer, and one silent and still ready to swarm after that counts as down.
    async fn report_down_nodes(&self) {
        let silent = self.silent_nodes().await;
        let Ok(engine) = self.engine().await else {
            return;
        };
        let Ok(mut nodes) = wait::nodes(&engine, self.opts.command_timeout).await else {
            // The stacks' own results stand.
            return;
        };
        let deadline = Instant::now() + wait::DOWN_NODE_GRACE;
        // Silent to us, still ready and active to swarm: not decided yet.
        let undecided = |n: &SwarmNode| {
            silent.contains(&n.hostname) && !n.is_down() && n.availability == "active"
        };
        while nodes.iter().any(undecided) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match wait::nodes(&engine, self.opts.command_timeout).await {
                Ok(n) => nodes = n,
                Err(_) => break,
            }
        }
        for n in nodes.iter_mut() {
            if undecided(n) {
                n.state = SILENT_STATE.to_string();
            }
        }
        let down: Vec<&SwarmNode> = nodes.iter().filter(|n| n.is_down()).collect();
        if down.is_empty() {
            return;
        }
        // Every stack in one poll.
        let Ok(Ok((polls, _))) = wait::poll_stacks(&engine, self.opts.command_timeout).await else {
            return;
        };
        // node -> services that do not run there
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, st) in self.prepared.stacks.iter().enumerate() {
            let status = self.stacks.lock().unwrap()[i].status;
            if status == StackStatus::Skipped {
                continue;
            }
            let poll = polls.get(&st.name).cloned().unwrap_or_default();
            let gaps = service::missing_on_down_nodes(&poll.specs, &nodes);
            for (svc, hosts) in &gaps {
                for h in hosts {
                    missing.entry(h.clone()).or_default().push(svc.clone());
                }
            }
            if !gaps.is_empty() && status != StackStatus::Failed {
                let mut states = service::assess_once(&st.name, &st.services, &poll);
                service::judge_down_nodes(&mut states, &poll.specs, &nodes);
                let text = format!(
                    "global services do not run on nodes down in the swarm\n{}",
                    service::failure_text(&states)
                );
                self.set_stack(i, |s| s.services = states);
                self.fail_stack(i, "converge", &text);
            }
        }
        for n in down {
            let row = RowId::host(&n.hostname);
            let said = if n.state == SILENT_STATE {
                format!(
                    "does not answer (for {}; swarm still says ready)",
                    secs(wait::DOWN_NODE_GRACE)
                )
            } else {
                format!("down in the swarm (swarm says {})", n.state)
            };
            match missing.get(&n.hostname) {
                Some(services) => self.rows.fail(
                    &row,
                    "swarm",
                    &format!(
                        "{said}: {} not running there; bring the node back (power, network, dockerd), then deploy again",
                        services.join(", ")
                    ),
                ),
                None => self.rows.note(
                    &row,
                    &format!(
                        "{said}; the playbook puts nothing there that swarm does not move"
                    ),
                ),
            }
        }
    }

    /// The nodes (the leader aside: it just answered) that do not answer within
    /// [`SILENT_AFTER`] or whose connection is lost, all asked at once (an SSH ping: no
    /// process on the nodes).
    async fn silent_nodes(&self) -> Vec<String> {
        let leader = self.leader.host().to_string();
        let mut names: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| **n != leader)
            .cloned()
            .collect();
        names.sort();
        let answers = crate::exec::parallel_map(names, self.opts.parallel, |n| {
            let remote = self.nodes[&n].clone();
            async move {
                let answered = remote.answers(SILENT_AFTER).await;
                (n, answered)
            }
        })
        .await;
        answers
            .into_iter()
            .filter(|(_, answered)| !answered)
            .map(|(n, _)| n)
            .collect()
    }

    /// Checks the bind sources of the stacks about to be deployed on the nodes where their
    /// services may run; when some are missing, fails those stacks, skips the others and
    /// returns false: nothing is deployed.
    async fn binds_ok(&self, state: &StackState) -> bool {
        let leader = &self.leader_row;
        let (indexes, stacks): (Vec<usize>, Vec<&PreparedStack>) = self
            .prepared
            .stacks
            .iter()
            .enumerate()
            .filter(|(_, st)| !st.binds.is_empty())
            .filter(|(_, st)| decide(&st.fingerprint, state, &st.name) != Decision::Unchanged)
            .unzip();
        if stacks.is_empty() {
            return true;
        }
        self.rows.step(leader, "check bind mounts on the nodes");
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => {
                self.rows.fail(leader, "bind check", &e.0);
                self.skip_pending("not attempted: the bind mounts could not be checked");
                return false;
            }
        };
        let found = binds::check(
            &engine,
            &self.engines,
            &self.nodes,
            &stacks,
            self.opts.parallel,
            self.opts.command_timeout,
        )
        .await;
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                self.rows.fail(leader, "bind check", &e.0);
                self.skip_pending("not attempted: the bind mounts could not be checked");
                return false;
            }
        };
        for u in &found.unchecked {
            self.rows.note(leader, &format!("bind mounts: {u}"));
        }
        if found.failed.is_empty() {
            return true;
        }
        let mut names = Vec::new();
        for (k, lines) in &found.failed {
            let i = indexes[*k];
            names.push(self.prepared.stacks[i].name.clone());
            let text = format!(
                "{}\nnothing deployed (deploy --skip-bind-check deploys anyway)",
                lines.join("\n")
            );
            self.fail_stack(i, "bind check", &text);
        }
        self.skip_pending(&format!(
            "not attempted: bind mount sources are missing for stack {}",
            names.join(", ")
        ));
        false
    }

    /// Decides, uploads (when the manager lacks its file set), deploys and waits until one
    /// stack is ready (see [`wait`]). Returns whether the stacks after it may be deployed:
    /// false when it failed, unless all it misses is nodes down in the swarm. Its
    /// convergence goes on in `watch`.
    async fn deploy_stack<'s>(
        &'s self,
        i: usize,
        st: &'s PreparedStack,
        state: &StackState,
        uploaded: bool,
        lacking: &BTreeMap<String, Vec<String>>,
        watch: &mut Option<Watch<'s>>,
    ) -> bool {
        let row = RowId::stack(&st.name);
        if let Some((img, hosts)) = st
            .images
            .iter()
            .find_map(|img| lacking.get(img).map(|h| (img, h)))
        {
            self.fail_stack(
                i,
                "images",
                &format!(
                    "image {img} could not be loaded on {}; stack not deployed",
                    hosts.join(", ")
                ),
            );
            return false;
        }

        let why = match decide(&st.fingerprint, state, &st.name) {
            Decision::Unchanged => {
                self.set_stack(i, |s| s.status = StackStatus::Unchanged);
                return true;
            }
            Decision::Deploy(why) => why,
        };
        self.set_stack(i, |s| s.why = Some(why.to_string()));

        if !uploaded {
            self.phase(i, Phase::Upload);
            self.rows.step(&row, "upload");
            let r = &st.release;
            let req = ExecRequest::new(remote_release::release_extract(&st.name, &r.id, &r.sha256))
                .privileged()
                .stdin(r.tar.clone())
                .timeout(self.opts.command_timeout)
                // A set is renamed into place whole: sending it again after a lost
                // connection finds it there or makes it.
                .idempotent();
            match run_ok(&*self.leader, req).await {
                Ok(out) if out.stdout_str().lines().any(|l| l == EXTRACTED) => {
                    self.rows.changed(
                        &self.leader_row,
                        format!(
                            "upload {} ({} file(s), {} bytes)",
                            st.name, r.files, r.bytes
                        ),
                    );
                }
                Ok(out) => {
                    let said = out.stdout_str();
                    self.fail_stack(
                        i,
                        "upload",
                        &format!("unexpected answer from the manager: {}", said.trim()),
                    );
                    return false;
                }
                Err(e) => {
                    self.fail_stack(i, "upload", &e.0);
                    return false;
                }
            }
        }

        self.phase(i, Phase::Deploy);
        self.rows
            .step(&row, &format!("docker stack deploy ({why})"));
        let stdin: String = st
            .variables
            .iter()
            .map(|v| format!("{}={}\n", v.name, v.value.expose()))
            .collect();
        let files = DeployFiles {
            release: &st.release.id,
            compose: &st.release.compose,
            names: st.release.names.as_deref(),
        };
        let req = ExecRequest::new(stack::stack_deploy(&st.name, &files, !st.images.is_empty()))
            .privileged()
            .stdin(stdin.into_bytes())
            .timeout(self.opts.command_timeout)
            // `stack deploy` converges on the files: a second run after a lost connection
            // changes nothing the first did not.
            .idempotent();
        // The manager's Engine API serves every poll of this run: the command's, open
        // since the networks or the images were checked, or one whose relay starts while
        // the first stack deploys.
        let (deployed, opened) = tokio::join!(run_ok(&*self.leader, req), async {
            match watch.is_some() {
                true => None,
                false => Some(self.engine().await),
            }
        });
        if let Some(opened) = opened {
            let engine = match opened {
                Ok(e) => e,
                Err(e) => {
                    self.fail_stack(i, "converge", &e.0);
                    return false;
                }
            };
            let pace = Pace {
                command_timeout: self.opts.command_timeout,
                max_interval: self.opts.poll_interval,
                settle: self.opts.settle,
            };
            *watch = Some(Watch::new(engine, &self.rows, pace));
        }
        match deployed {
            Ok(out) => {
                for line in out.stdout_str().lines().filter(|l| !l.trim().is_empty()) {
                    self.rows.output(&row, line.trim());
                }
            }
            Err(e) => {
                self.fail_stack(i, "deploy", &e.0);
                return false;
            }
        }

        self.phase(i, Phase::Converge);
        let watch = watch.as_mut().expect("made above");
        watch.add(st);
        match watch.until_ready(&st.name).await {
            Ok(()) => true,
            Err(stuck) => {
                self.set_stack(i, |s| s.services = stuck.states);
                self.fail_stack(i, "converge", &stuck.text);
                // Down nodes are the nodes' failure, not this stack's: it runs everywhere
                // else, and what depends on it may go on.
                stuck.nodes_down
            }
        }
    }

    /// A watched stack's end: recorded when it converged (so that a stack that failed is
    /// retried next time), failed otherwise; its row ends.
    async fn converged(
        &self,
        name: &str,
        states: Vec<ServiceState>,
        end: Result<(), NotConverged>,
    ) {
        let Some(i) = self.prepared.stacks.iter().position(|s| s.name == name) else {
            return;
        };
        if self.stacks.lock().unwrap()[i].status == StackStatus::Failed {
            // Failed while the deploy waited for it to be ready: said and ended then.
            return;
        }
        let st = &self.prepared.stacks[i];
        let n = states.len();
        self.set_stack(i, |s| s.services = states);
        if let Err(stuck) = end {
            self.fail_stack(i, "converge", &stuck.text);
            self.done(i);
            return;
        }
        // What the new deploy no longer uses goes only now, too.
        self.phase(i, Phase::Record);
        let row = RowId::stack(name);
        self.rows.step(&row, "record the deploy");
        let record = Record {
            stack: &st.name,
            fingerprint: &st.fingerprint,
            release: &st.release.id,
            objects: &st.release.objects,
        };
        match self.root(remote_release::record_deploy(&record)).await {
            Ok(out) => {
                let pruned = remote_release::parse_record(&out.stdout_str());
                for x in &pruned.in_use {
                    self.rows.note(
                        &row,
                        &format!("{x} is not named by this deploy but still in use: kept"),
                    );
                }
                self.set_stack(i, |s| {
                    s.status = StackStatus::Deployed;
                    s.error = None;
                    s.removed = pruned.removed;
                });
                self.rows.note(&row, &format!("{n} service(s) converged"));
            }
            Err(e) => self.fail_stack(i, "record", &e.0),
        }
        self.done(i);
    }

    /// The rows with their outcomes (the stacks' from their results); emits each row's end.
    fn finish(self) -> DeployResult {
        let stacks = self.stacks.into_inner().unwrap();
        for s in &stacks {
            self.rows.put(s.row());
        }
        DeployResult {
            rows: self.rows.finish(),
            stacks,
        }
    }
}

/// The networks the manager lists, for [`network::compare`] (the run's and the preview's).
pub(crate) async fn networks(
    engine: &Engine,
    timeout: Duration,
) -> Result<Vec<NetworkInfo>, String> {
    let r = engine.call(api::networks(), timeout).await?;
    api::read(&r, network::parse_network_list)
}

/// What the deploy decision reads on the manager, in one round trip: rpiprov's records and
/// which file sets are there (files, by a shell command) and which stacks exist (its
/// Engine API, at once). The run's and the preview's.
pub(crate) async fn read_state<R: Remote>(
    leader: &R,
    engine: &Engine,
    prepared: &Prepared,
    timeout: Duration,
) -> Result<(StackState, Vec<(String, String)>), String> {
    let names: Vec<&str> = prepared.stacks.iter().map(|s| s.name.as_str()).collect();
    let sets: Vec<(&str, &str)> = prepared
        .stacks
        .iter()
        .map(|s| (s.name.as_str(), s.release.id.as_str()))
        .collect();
    let read = ExecRequest::new(format!(
        "{}; {}",
        stack::records_read(&names),
        remote_release::releases_present(&sets)
    ))
    .privileged()
    .timeout(timeout)
    .idempotent();
    let (files, services) = tokio::join!(
        run_ok(leader, read),
        engine.call(api::stack_services(), timeout)
    );
    let text = files.map_err(|e| e.0)?.stdout_str();
    let mut state = stack::parse_state(&text);
    state.existing = api::read(&services?, api::stacks_of)?;
    Ok((state, remote_release::parse_releases(&text)))
}

#[cfg(test)]
mod tests;
