//! A stack's services and their convergence: a [`Poll`] of every stack's services and
//! tasks (read from the Engine API's answers by [`crate::docker::api::parse_stack_polls`]),
//! and the judgement of whether each service has reached what was asked of it, and if not, why,
//! in swarm's own words ([`assess`], [`all_converged`], [`failure_text`]), each service's
//! latest task error ([`latest_errors`]), and whether a service can still converge at all
//! ([`doomed`]: an error that retrying cannot fix, seen on repeated attempts; what the
//! wait saw over time is [`Attempts`]). The wait loop that polls until then is `deploy`'s
//! (`crate::deploy::wait`). Tested on answers in Docker 20.10's shapes.
//!
//! Per service, two stages:
//! - *ready*: every slot runs a task of the service's **current** spec (a task made
//!   before the last `stack deploy` whose spec differs is the previous version still
//!   running: the update has not reached it yet), replicated and global services at
//!   their desired count, one-shot services (jobs, and `restart_policy: none` /
//!   `on-failure`) with their tasks completed, and no update paused or rolled back;
//! - *converged*: ready, every running task counted has stayed up for a while
//!   ([`Task::settled`]: seen running on polls at least the settle time apart, see
//!   `crate::deploy::wait`), and swarm's own update, if one ran, `completed` (swarm marks
//!   it so only after watching the new tasks for the update's `monitor` period).
//!
//! Exact, not "converged twice in a row": which tasks run the current spec is read, not
//! guessed from a delay; the settle time only covers a task that starts and dies at once.
//!
//! Swarm's count of a global service leaves out the nodes it marks down: with a worker's
//! cable pulled, `web` shows `2/2` while the inventory puts it on 3 nodes. So a global
//! service is also judged against the swarm's nodes ([`judge_down_nodes`]): every node
//! down in the swarm that its placement constraints admit ([`constraint_allows`]) is a
//! node it does not run on, named in its reasons.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::docker::node::SwarmNode;
use crate::shell::{join, quote};

/// A service's counts, as its `ServiceStatus` says them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLine {
    pub name: String,
    pub running: u64,
    pub desired: u64,
    /// Replicated jobs: (completed, total completions).
    pub completed: Option<(u64, u64)>,
}

/// A service's mode, from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    Global,
    ReplicatedJob { total: u64 },
    GlobalJob,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Replicated(_) => "replicated",
            Mode::Global => "global",
            Mode::ReplicatedJob { .. } => "replicated-job",
            Mode::GlobalJob => "global-job",
        }
    }
}

/// What `docker service inspect` tells of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub mode: Mode,
    /// `any` (the default), `on-failure` or `none`.
    pub restart_condition: String,
    /// `UpdateStatus.State` and `.Message`, when an update ever ran.
    pub update: Option<(String, String)>,
    /// Placement constraints (`node.role==manager`), as given.
    pub constraints: Vec<String>,
}

/// One task, as the Engine API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub service: String,
    /// `web_app.1` (replicated) or `web_agent.<node id>` (global).
    pub slot: String,
    pub node: String,
    /// Lower case: `running`, `shutdown`, `complete`, `ready` ...
    pub desired: String,
    /// Lower case first word of the current state: `running`, `rejected`, `pending` ...
    pub state: String,
    pub error: String,
    /// Made from the service's current spec (`crate::docker::api` judges it).
    pub current: bool,
    /// Running long enough to count: set by the wait loop, which sees tasks over time.
    pub settled: bool,
}

/// One poll of one stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poll {
    pub services: Vec<ServiceLine>,
    pub specs: Vec<ServiceSpec>,
    pub tasks: Vec<Task>,
}

/// Where one service stands; also the `--json` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub name: String,
    pub mode: String,
    /// `2/2`, or `1/1 completed` for jobs.
    pub replicas: String,
    pub converged: bool,
    /// Why not, as swarm says it; empty when converged.
    pub reasons: Vec<String>,
    /// Ready (see the module doc): the stacks after this one may be deployed.
    #[serde(skip)]
    pub ready: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawService {
    spec: RawSpec,
    #[serde(default)]
    update_status: Option<RawUpdate>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSpec {
    name: String,
    #[serde(default)]
    mode: RawMode,
    #[serde(default)]
    task_template: RawTaskTemplate,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawMode {
    replicated: Option<RawReplicated>,
    global: Option<serde_json::Value>,
    replicated_job: Option<RawJob>,
    global_job: Option<serde_json::Value>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawReplicated {
    replicas: Option<u64>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawJob {
    total_completions: Option<u64>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawTaskTemplate {
    restart_policy: Option<RawRestart>,
    placement: Option<RawPlacement>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawPlacement {
    #[serde(deserialize_with = "crate::docker::null_as_default")]
    constraints: Vec<String>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawRestart {
    condition: Option<String>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawUpdate {
    state: String,
    message: String,
}

/// Reads the specs of a JSON array of services (the Engine API's list, or `docker service
/// inspect`'s: the same objects).
pub fn parse_inspect(json: &str) -> Result<Vec<ServiceSpec>, String> {
    if json.trim().is_empty() {
        return Ok(vec![]);
    }
    let raw: Vec<RawService> = serde_json::from_str(json)
        .map_err(|e| format!("cannot read docker service inspect: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|s| {
            let m = s.spec.mode;
            let mode = if let Some(r) = m.replicated {
                Mode::Replicated(r.replicas.unwrap_or(1))
            } else if m.global.is_some() {
                Mode::Global
            } else if let Some(j) = m.replicated_job {
                Mode::ReplicatedJob {
                    total: j.total_completions.unwrap_or(1),
                }
            } else if m.global_job.is_some() {
                Mode::GlobalJob
            } else {
                Mode::Replicated(1)
            };
            let template = s.spec.task_template;
            ServiceSpec {
                name: s.spec.name,
                mode,
                constraints: template
                    .placement
                    .map(|p| p.constraints)
                    .unwrap_or_default(),
                restart_condition: template
                    .restart_policy
                    .and_then(|r| r.condition)
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "any".into()),
                update: s
                    .update_status
                    .filter(|u| !u.state.is_empty())
                    .map(|u| (u.state, u.message)),
            }
        })
        .collect())
}

/// The state of every service of a stack. `expected` holds the compose file's service
/// names; a service not created (yet) is reported as such.
pub fn assess(stack: &str, expected: &[String], poll: &Poll) -> Vec<ServiceState> {
    let mut names: Vec<String> = expected.iter().map(|s| format!("{stack}_{s}")).collect();
    for s in &poll.services {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let line = poll.services.iter().find(|s| s.name == name);
            let spec = poll.specs.iter().find(|s| s.name == name);
            let tasks: Vec<&Task> = poll.tasks.iter().filter(|t| t.service == name).collect();
            match (line, spec) {
                (Some(line), Some(spec)) => assess_service(line, spec, &tasks),
                _ => ServiceState {
                    name,
                    mode: String::new(),
                    replicas: "0/0".into(),
                    converged: false,
                    reasons: vec!["service not created".into()],
                    ready: false,
                },
            }
        })
        .collect()
}

fn assess_service(line: &ServiceLine, spec: &ServiceSpec, tasks: &[&Task]) -> ServiceState {
    let slots = |pred: &dyn Fn(&Task) -> bool| -> BTreeSet<&str> {
        tasks
            .iter()
            .filter(|t| pred(t))
            .map(|t| t.slot.as_str())
            .collect()
    };
    let live = |t: &Task| t.desired == "running" && t.state == "running" && t.current;
    let running = slots(&live);
    // A slot that completed and runs nothing now counts as done for one-shot services.
    let done: BTreeSet<&str> = slots(&|t| t.state == "complete")
        .difference(&running)
        .copied()
        .collect();
    // Tasks swarm still wants running that were made from the previous spec: the update
    // has not reached them yet.
    let stale = tasks
        .iter()
        .filter(|t| t.desired == "running" && !t.current)
        .count();
    // Running tasks not seen up for the settle time yet.
    let unsettled = tasks.iter().any(|t| live(t) && !t.settled);
    let one_shot = spec.restart_condition != "any";
    let mut replicas = format!("{}/{}", line.running, line.desired);
    let counts_ok = match &spec.mode {
        Mode::Replicated(n) if one_shot => (running.len() + done.len()) as u64 >= *n,
        Mode::Replicated(n) => line.running >= *n,
        Mode::Global if one_shot => (running.len() + done.len()) as u64 >= line.desired,
        Mode::Global => line.running == line.desired,
        Mode::ReplicatedJob { total } => {
            let completed = line.completed.map(|(c, _)| c).unwrap_or(done.len() as u64);
            replicas = format!("{completed}/{total} completed");
            completed >= *total
        }
        // Newer clients print `(c/t completed)` for global jobs too; older ones do not,
        // and the tasks tell.
        Mode::GlobalJob if line.completed.is_some() => {
            let (c, t) = line.completed.unwrap_or_default();
            replicas = format!("{c}/{t} completed");
            t > 0 && c >= t
        }
        Mode::GlobalJob => {
            let wanted: Vec<&&Task> = tasks.iter().filter(|t| t.desired == "complete").collect();
            let completed = wanted.iter().filter(|t| t.state == "complete").count();
            replicas = format!("{completed}/{} completed", wanted.len());
            !wanted.is_empty() && completed == wanted.len()
        }
    };
    let update = spec.update.as_ref().map(|(state, _)| state.as_str());
    // Updating is fine for the next stack to start once no task of the old spec runs;
    // paused and rolled back are not fine at all.
    let update_failing = matches!(update, Some(s) if s != "completed" && s != "updating");
    let ready = counts_ok && stale == 0 && !update_failing;
    let converged = ready && !unsettled && update.is_none_or(|s| s == "completed");
    let mut reasons = Vec::new();
    if !converged {
        if let Some((state, msg)) = &spec.update
            && state != "completed"
        {
            let state = state.replace('_', " ");
            reasons.push(if msg.is_empty() {
                format!("update {state}")
            } else {
                format!("update {state}: {msg}")
            });
        }
        if stale > 0 {
            reasons.push(format!(
                "{stale} task(s) of the previous spec still running (the update has not reached them)"
            ));
        }
        if !counts_ok {
            reasons.extend(task_reasons(tasks));
            if reasons.is_empty() {
                reasons.push(format!("{replicas} tasks running"));
            }
        } else if unsettled && reasons.is_empty() {
            reasons.push(format!(
                "{replicas} tasks running, not yet for long: checking that they stay up"
            ));
        }
    }
    ServiceState {
        name: line.name.clone(),
        mode: spec.mode.as_str().to_string(),
        replicas,
        converged,
        reasons,
        ready,
    }
}

/// The distinct errors of a service's tasks that did not run, most recent first, each
/// with the nodes it happened on; without errors, the states its tasks are stuck in.
fn task_reasons(tasks: &[&Task]) -> Vec<String> {
    let mut errors: Vec<(String, Vec<String>)> = Vec::new();
    for t in tasks {
        if t.state == "running" || t.state == "complete" || t.error.is_empty() {
            continue;
        }
        let node = if t.node.is_empty() {
            None
        } else {
            Some(t.node.clone())
        };
        match errors.iter_mut().find(|(e, _)| *e == t.error) {
            Some((_, nodes)) => {
                if let Some(n) = node
                    && !nodes.contains(&n)
                {
                    nodes.push(n);
                }
            }
            None => errors.push((t.error.clone(), node.into_iter().collect())),
        }
    }
    if !errors.is_empty() {
        return errors
            .into_iter()
            .take(3)
            .map(|(e, nodes)| {
                if nodes.is_empty() {
                    e
                } else {
                    format!("{e} (on {})", nodes.join(", "))
                }
            })
            .collect();
    }
    // No error text: say where the tasks that should run are stuck.
    let mut stuck: Vec<String> = Vec::new();
    for t in tasks {
        if t.desired == "running" && t.state != "running" && !stuck.contains(&t.state) {
            stuck.push(t.state.clone());
        }
    }
    stuck.into_iter().map(|s| format!("task {s}")).collect()
}

/// Whether retrying cannot fix a task error: swarm will reject every attempt the same way
/// until someone changes the stack or the nodes. A missing image (`No such image`, `pull
/// access denied`, `manifest unknown`, `repository does not exist`, an invalid
/// reference), a bind source that does not exist or another invalid mount, and no node
/// that may run the task (placement constraints, platform) are such errors. A node
/// without room (`insufficient resources`) or at its `max_replicas_per_node` is not:
/// an update that stops old tasks frees it.
pub fn is_permanent(error: &str) -> bool {
    let e = error.to_lowercase();
    const PERMANENT: &[&str] = &[
        "no such image",
        "pull access denied",
        "manifest unknown",
        "repository does not exist",
        "invalid reference format",
        "bind source path does not exist",
        "invalid mount config",
        "unsupported platform",
        "scheduling constraints not satisfied",
    ];
    if e.contains("insufficient resources") || e.contains("max replicas per node") {
        return false;
    }
    PERMANENT.iter().any(|p| e.contains(p)) || e.starts_with("no suitable node")
}

/// How long a task may stay pending with an error that retrying cannot fix (no node may
/// run it) before the wait gives up: long enough for a node that is still joining or
/// being labelled.
pub const PENDING_GRACE: Duration = Duration::from_secs(10);

/// What the wait has seen of one stack's failing tasks, over its polls: which failures
/// were there before it began (not this deploy's attempts: a stack deployed again after
/// a fix must not be judged on them), and since when each task pending with an error that
/// retrying cannot fix has been seen so. Times are the wait's own clock, as durations
/// from any fixed point.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    polled: bool,
    before: HashSet<String>,
    pending_since: HashMap<String, Duration>,
}

impl Attempts {
    /// Takes in a poll made at `now`.
    pub fn observe(&mut self, poll: &Poll, now: Duration) {
        if !self.polled {
            self.polled = true;
            self.before = poll
                .tasks
                .iter()
                .filter(|t| matches!(t.state.as_str(), "rejected" | "failed"))
                .map(|t| t.id.clone())
                .collect();
        }
        let pending: HashSet<&str> = poll
            .tasks
            .iter()
            .filter(|t| t.state == "pending" && is_permanent(&t.error))
            .map(|t| t.id.as_str())
            .collect();
        self.pending_since
            .retain(|id, _| pending.contains(id.as_str()));
        for id in pending {
            self.pending_since.entry(id.to_string()).or_insert(now);
        }
    }
}

/// A service that cannot converge, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub service: String,
    /// `No such image: foo:1 (on pi2, pi3; 3 attempts)`.
    pub reason: String,
}

/// The services of a poll that cannot converge: tasks of the current spec rejected or
/// failed during the wait with an error that retrying cannot fix ([`is_permanent`]), on at
/// least two attempts; or a task that should run, seen pending with such an error for
/// [`PENDING_GRACE`] (no node may take it; swarm retries the same task). `now` on the
/// clock of [`Attempts::observe`]. A job (`replicated-job`, `global-job`) whose task of
/// this deploy exited non-zero is doomed at once. A service that converged is never doomed, and
/// transient errors (a container that exits, a node without room) are left to the
/// stack's timeout.
pub fn doomed(
    states: &[ServiceState],
    poll: &Poll,
    attempts: &Attempts,
    now: Duration,
) -> Vec<Doomed> {
    let mut out = Vec::new();
    for st in states.iter().filter(|s| !s.converged) {
        let tasks: Vec<&Task> = poll.tasks.iter().filter(|t| t.service == st.name).collect();
        let failures: Vec<&&Task> = tasks
            .iter()
            .filter(|t| t.current && matches!(t.state.as_str(), "rejected" | "failed"))
            .filter(|t| is_permanent(&t.error) && !attempts.before.contains(&t.id))
            .collect();
        let stuck = tasks.iter().find(|t| {
            t.desired == "running"
                && attempts
                    .pending_since
                    .get(&t.id)
                    .is_some_and(|since| now.saturating_sub(*since) >= PENDING_GRACE)
        });
        let job = poll
            .specs
            .iter()
            .find(|s| s.name == st.name)
            .is_some_and(|s| matches!(s.mode, Mode::ReplicatedJob { .. } | Mode::GlobalJob));
        // A job's run that exited non-zero is its verdict: the job has failed (waiting
        // on would only run out the timeout; `docker stack deploy` itself never ends).
        let exited = tasks.iter().find(|t| {
            job && t.current
                && t.state == "failed"
                && t.error.starts_with("task: non-zero exit")
                && !attempts.before.contains(&t.id)
        });
        let (error, seen): (&str, Vec<&&Task>) = if let Some(t) = exited {
            (t.error.as_str(), vec![t])
        } else if failures.len() >= 2 {
            // The most frequent error, with the nodes of every attempt that had it.
            let error = failures[0].error.as_str();
            let same: Vec<&&Task> = failures
                .iter()
                .filter(|t| t.error == error)
                .copied()
                .collect();
            (error, same)
        } else if let Some(t) = stuck {
            (t.error.as_str(), vec![t])
        } else {
            continue;
        };
        let mut nodes: Vec<&str> = seen
            .iter()
            .map(|t| t.node.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut detail = Vec::new();
        if !nodes.is_empty() {
            detail.push(format!("on {}", nodes.join(", ")));
        }
        detail.push(if exited.is_some() {
            "the job failed".to_string()
        } else if seen.len() >= 2 {
            format!("{} attempts", seen.len())
        } else {
            "still pending".to_string()
        });
        out.push(Doomed {
            service: st.name.clone(),
            reason: format!("{error} ({})", detail.join("; ")),
        });
    }
    out
}

/// The latest task error of each service that has not converged, as `(service, "error
/// (on node)")`, for the progress display while waiting: the error of a task that should
/// run (the attempt in progress) before one of a task already shut down.
pub fn latest_errors(states: &[ServiceState], poll: &Poll) -> Vec<(String, String)> {
    states
        .iter()
        .filter(|s| !s.converged)
        .filter_map(|s| {
            let with_error = || {
                poll.tasks
                    .iter()
                    .filter(|t| t.service == s.name && !t.error.is_empty())
            };
            let t = with_error()
                .find(|t| t.desired == "running")
                .or_else(|| with_error().next())?;
            let text = if t.node.is_empty() {
                t.error.clone()
            } else {
                format!("{} (on {})", t.error, t.node)
            };
            Some((s.name.clone(), text))
        })
        .collect()
}

/// Every service converged.
pub fn all_converged(states: &[ServiceState]) -> bool {
    states.iter().all(|s| s.converged)
}

/// Whether a placement constraint (`node.role == manager`, `node.labels.disk!=hdd`) admits
/// `node`, the way swarm decides: `==` or `!=`, keys and values compared without regard
/// to case (a label's name excepted), a missing label read as empty. Swarm refuses a
/// service with any other key, so one here admits no node.
pub fn constraint_allows(constraint: &str, node: &SwarmNode) -> bool {
    let (key, equal, value) = if let Some((k, v)) = constraint.split_once("==") {
        (k, true, v)
    } else if let Some((k, v)) = constraint.split_once("!=") {
        (k, false, v)
    } else {
        return false;
    };
    let (key, value) = (key.trim(), value.trim());
    let is = |k: &str| key.eq_ignore_ascii_case(k);
    let prefixed = |prefix: &str| {
        (key.len() > prefix.len() && key[..prefix.len()].eq_ignore_ascii_case(prefix))
            .then(|| &key[prefix.len()..])
    };
    let label = |labels: &std::collections::BTreeMap<String, String>, name: &str| {
        labels.get(name).cloned().unwrap_or_default()
    };
    let actual = if is("node.id") {
        node.id.clone()
    } else if is("node.hostname") {
        node.hostname.clone()
    } else if is("node.role") {
        node.role.clone()
    } else if is("node.platform.os") {
        node.os.clone()
    } else if is("node.platform.arch") {
        node.architecture.clone()
    } else if let Some(name) = prefixed("node.labels.") {
        label(&node.labels, name)
    } else if let Some(name) = prefixed("engine.labels.") {
        label(&node.engine_labels, name)
    } else {
        return false;
    };
    actual.eq_ignore_ascii_case(value) == equal
}

/// The nodes that may get a new task of a service with these constraints: ready, active
/// (not drained or paused), admitted by every constraint.
pub fn placement_candidates<'n>(
    constraints: &[String],
    nodes: &'n [SwarmNode],
) -> Vec<&'n SwarmNode> {
    nodes
        .iter()
        .filter(|n| n.state == "ready" && (n.availability.is_empty() || n.availability == "active"))
        .filter(|n| constraints.iter().all(|c| constraint_allows(c, n)))
        .collect()
}

/// For each global service of `specs`, the nodes down in the swarm that its placement
/// admits: where the playbook puts it and it does not run, although swarm's own count
/// looks complete. Services without such a node are left out.
pub fn missing_on_down_nodes(
    specs: &[ServiceSpec],
    nodes: &[SwarmNode],
) -> Vec<(String, Vec<String>)> {
    specs
        .iter()
        .filter(|s| s.mode == Mode::Global)
        .filter_map(|s| {
            let missing: Vec<String> = nodes
                .iter()
                .filter(|n| n.is_down())
                .filter(|n| s.constraints.iter().all(|c| constraint_allows(c, n)))
                .map(|n| n.hostname.clone())
                .collect();
            (!missing.is_empty()).then(|| (s.name.clone(), missing))
        })
        .collect()
}

/// The services an update left behind: swarm's update is over (completed, or none ever
/// ran) while a task of an older spec still runs. Swarm will not come back to that task:
/// a run killed before its service converged, or an update that went on while a node was
/// away, leaves such a service, and the rerun's `stack deploy` of the same spec changes
/// nothing. Right after a deploy the same holds for a moment, until swarm starts the
/// update: the caller waits before it believes this.
///
/// So is a service whose update swarm paused: a task failed, and swarm will not go on
/// by itself. Seen in the lab after the manager's link was cut for 16 s during a global
/// service's update: the nodes' old tasks still held their host-mode port when the new
/// ones started ("port already in use"), and the update paused with every task running
/// again. One more try settles a failure of that kind; a failure of the new spec itself
/// pauses it again, and the wait reports it.
pub fn left_behind(poll: &Poll) -> Vec<(String, Behind)> {
    let older_runs = |name: &str| {
        poll.tasks
            .iter()
            .any(|t| t.service == name && t.desired == "running" && !t.current)
    };
    poll.specs
        .iter()
        .filter_map(|s| {
            let why = match s.update.as_ref().map(|(state, _)| state.as_str()) {
                Some("paused") => Behind::Paused,
                None | Some("completed") if older_runs(&s.name) => Behind::OlderTask,
                _ => return None,
            };
            Some((s.name.clone(), why))
        })
        .collect()
}

/// Why a service is [`left_behind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Swarm's update is over while a task of an older spec still runs.
    OlderTask,
    /// Swarm paused the update after a task failed: its last word, not a reading taken
    /// before the update started.
    Paused,
}

impl Behind {
    /// What the wait says when it updates the service again.
    pub fn describe(self) -> &'static str {
        match self {
            Behind::OlderTask => {
                "a task of an older spec was left behind by an earlier update (a killed run, a node away)"
            }
            Behind::Paused => {
                "swarm paused its update after a task failed (a node away, or an old task still holding its port)"
            }
        }
    }
}

/// Marks the global services that do not run on nodes down in the swarm (see
/// [`missing_on_down_nodes`]) as not converged, naming the nodes. Returns whether any was.
pub fn judge_down_nodes(
    states: &mut [ServiceState],
    specs: &[ServiceSpec],
    nodes: &[SwarmNode],
) -> bool {
    let missing = missing_on_down_nodes(specs, nodes);
    for (service, hosts) in &missing {
        if let Some(state) = states.iter_mut().find(|s| &s.name == service) {
            state.converged = false;
            state.reasons.push(down_reason(hosts));
        }
    }
    !missing.is_empty()
}

/// Why a global service does not run on these nodes.
fn down_reason(hosts: &[String]) -> String {
    let (noun, verb) = if hosts.len() == 1 {
        ("node", "is")
    } else {
        ("nodes", "are")
    };
    format!(
        "not running on {}: the {noun} {verb} down in the swarm",
        hosts.join(", ")
    )
}

/// [`assess`] of one look (`rpiprov status`, a report after the wait): a task running
/// now counts, however long it has run; the settle time is the wait's, which sees tasks
/// over time.
pub fn assess_once(stack: &str, expected: &[String], poll: &Poll) -> Vec<ServiceState> {
    let mut p = poll.clone();
    for t in &mut p.tasks {
        t.settled = true;
    }
    assess(stack, expected, &p)
}

/// Every service ready: the next stack may go.
pub fn all_ready(states: &[ServiceState]) -> bool {
    states.iter().all(|s| s.ready)
}

/// The failure text for a stack: one line per service that did not converge.
pub fn failure_text(states: &[ServiceState]) -> String {
    states
        .iter()
        .filter(|s| !s.converged)
        .map(|s| format!("{} {}: {}", s.name, s.replicas, s.reasons.join("; ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `rpiprov logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// A service (`web_web`) or a stack (`web`): every service of it.
    pub name: String,
    pub follow: bool,
    /// `10m`, `2026-11-25T16:00:00`: Docker's `--since`.
    pub since: Option<String>,
    /// The last N lines of each task.
    pub tail: Option<u32>,
}

/// Whether `--since` is something Docker reads (a duration or a timestamp), checked here
/// so that a typo is a usage error rather than a remote one.
pub fn valid_since(since: &str) -> bool {
    !since.is_empty()
        && since
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":.+-".contains(c))
}

/// `docker service logs` of a service, or of every service of a stack at once (each in
/// the background, their lines interleaved as they come), each line prefixed by Docker
/// with its task and node (`web_web.1.x2k@pi1 | ...`). Prints `@@none` and exits 3 when
/// there is no such service or stack.
pub fn service_logs(req: &LogsRequest) -> String {
    let mut opts = vec!["docker".to_string(), "service".into(), "logs".into()];
    if req.follow {
        opts.push("--follow".into());
    }
    if let Some(since) = &req.since {
        opts.push("--since".into());
        opts.push(since.clone());
    }
    if let Some(n) = req.tail {
        opts.push("--tail".into());
        opts.push(n.to_string());
    }
    format!(
        "n={name}; if docker service inspect \"$n\" >/dev/null 2>&1; then s=$n; else s=$(docker stack services --format '{{{{.Name}}}}' \"$n\" 2>/dev/null); fi; if [ -z \"$s\" ]; then echo '@@none'; exit 3; fi; for x in $s; do {cmd} \"$x\" & done; wait",
        name = quote(&req.name),
        cmd = join(&opts),
    )
}

/// Whether [`service_logs`] found nothing of that name.
pub fn logs_found_nothing(stdout: &str) -> bool {
    stdout.lines().next() == Some("@@none")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The poll with every task counted as up for long enough.
    fn settled(mut p: Poll) -> Poll {
        for t in &mut p.tasks {
            t.settled = true;
        }
        p
    }

    /// A stack service as the Engine API lists it: its stack is the part of `name` before
    /// `_`; `spec` holds its mode and task template; its counts; its update's state.
    fn service(
        name: &str,
        spec: serde_json::Value,
        counts: (u64, u64, u64),
        update: Option<(&str, &str)>,
    ) -> serde_json::Value {
        let mut spec = spec;
        spec["Name"] = name.into();
        spec["Labels"] =
            serde_json::json!({"com.docker.stack.namespace": name.split('_').next().unwrap()});
        let mut s = serde_json::json!({
            "ID": format!("s-{name}"),
            "Spec": spec,
            "ServiceStatus": {"RunningTasks": counts.0, "DesiredTasks": counts.1,
                "CompletedTasks": counts.2},
        });
        if let Some((state, message)) = update {
            s["UpdateStatus"] = serde_json::json!({"State": state, "Message": message});
        }
        s
    }

    /// A task of `service` in `slot` (0 for a global service's) on `node` (a host name,
    /// empty for none), in swarm's words for its states and error.
    fn api_task(
        id: &str,
        service: &str,
        slot: u64,
        node: &str,
        (desired, state): (&str, &str),
        err: &str,
    ) -> serde_json::Value {
        serde_json::json!({
            "ID": id, "ServiceID": format!("s-{service}"), "Slot": slot,
            "NodeID": if node.is_empty() { String::new() } else { format!("id-{node}") },
            "Status": {"State": state, "Err": err}, "DesiredState": desired,
        })
    }

    /// One stack's poll from the Engine API's answers, as the deploy's wait reads it: each
    /// task made from its service's current spec (unless it says otherwise).
    fn poll_of(stack: &str, services: &[serde_json::Value], tasks: &[serde_json::Value]) -> Poll {
        let tasks: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if t.get("Spec").is_none() {
                    let svc = services.iter().find(|s| s["ID"] == t["ServiceID"]);
                    t["Spec"] =
                        svc.map_or(serde_json::json!({}), |s| s["Spec"]["TaskTemplate"].clone());
                }
                t
            })
            .collect();
        let nodes: Vec<SwarmNode> = ["pi1", "pi2", "pi3"]
            .iter()
            .map(|h| SwarmNode {
                id: format!("id-{h}"),
                hostname: h.to_string(),
                ..Default::default()
            })
            .collect();
        let mut all = crate::docker::api::parse_stack_polls(
            serde_json::to_string(services).unwrap().as_bytes(),
            serde_json::to_string(&tasks).unwrap().as_bytes(),
            &nodes,
        )
        .unwrap();
        all.remove(stack).unwrap_or_default()
    }

    /// A stack `web` (trimmed from Docker 20.10's shapes): a replicated service whose
    /// image is missing, a global service up on both nodes, a replicated job done, and a
    /// service with a placement constraint no node satisfies.
    fn web_services() -> Vec<serde_json::Value> {
        use serde_json::json;
        vec![
            service(
                "web_app",
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "foo:1"},
                    "RestartPolicy": {"Condition": "any", "Delay": 5000000000u64, "MaxAttempts": 0},
                    "ForceUpdate": 0, "Runtime": "container"},
                    "Mode": {"Replicated": {"Replicas": 2}}, "EndpointSpec": {"Mode": "dnsrr"}}),
                (0, 2, 0),
                None,
            ),
            service(
                "web_agent",
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "lab/agent:1"}},
                    "Mode": {"Global": {}}}),
                (2, 2, 0),
                Some(("completed", "update completed")),
            ),
            service(
                "web_migrate",
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "lab/migrate:1"},
                    "RestartPolicy": {"Condition": "on-failure"}},
                    "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}}),
                (0, 1, 1),
                None,
            ),
            service(
                "web_db",
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "lab/db:1"},
                    "Placement": {"Constraints": ["node.labels.disk==ssd"]}},
                    "Mode": {"Replicated": {"Replicas": 1}}}),
                (0, 1, 0),
                None,
            ),
        ]
    }

    fn web_tasks() -> Vec<serde_json::Value> {
        let gone = "No such image: foo:1";
        vec![
            api_task("id1", "web_app", 1, "pi2", ("running", "rejected"), gone),
            api_task("id2", "web_app", 1, "pi1", ("shutdown", "rejected"), gone),
            api_task("id3", "web_app", 2, "pi1", ("running", "rejected"), gone),
            api_task("id4", "web_agent", 0, "pi1", ("running", "running"), ""),
            api_task("id5", "web_agent", 0, "pi2", ("running", "running"), ""),
            api_task("id6", "web_migrate", 1, "pi2", ("complete", "complete"), ""),
            api_task(
                "id7",
                "web_db",
                1,
                "",
                ("running", "pending"),
                "no suitable node (scheduling constraints not satisfied on 3 nodes)",
            ),
        ]
    }

    fn web_poll() -> Poll {
        poll_of("web", &web_services(), &web_tasks())
    }

    /// The placement keys as swarm reads them, against nodes as a manager reports them.
    #[test]
    fn placement_candidates_are_the_ready_active_nodes_the_constraints_admit() {
        let node = |id: &str, host: &str, role: &str, labels: &[(&str, &str)]| SwarmNode {
            id: id.into(),
            hostname: host.into(),
            role: role.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: "ready".into(),
            availability: "active".into(),
            os: "linux".into(),
            architecture: "aarch64".into(),
            engine_labels: [("storage".to_string(), "ssd".to_string())].into(),
            ..Default::default()
        };
        let fleet = vec![
            node("n1", "pi1", "manager", &[("zone", "a")]),
            node("n2", "pi2", "worker", &[("zone", "b"), ("Disk", "big")]),
            SwarmNode {
                architecture: "x86_64".into(),
                engine_labels: Default::default(),
                ..node("n3", "pi3", "worker", &[])
            },
            SwarmNode {
                availability: "drain".into(),
                ..node("n4", "pi4", "worker", &[("zone", "a")])
            },
            SwarmNode {
                state: "down".into(),
                ..node("n5", "pi5", "worker", &[("zone", "a")])
            },
        ];
        let on = |c: &[&str]| -> Vec<String> {
            let c: Vec<String> = c.iter().map(|x| x.to_string()).collect();
            placement_candidates(&c, &fleet)
                .into_iter()
                .map(|n| n.hostname.clone())
                .collect()
        };
        assert_eq!(on(&[]), ["pi1", "pi2", "pi3"]);
        assert_eq!(on(&["node.role == manager"]), ["pi1"]);
        assert_eq!(on(&["node.role==WORKER"]), ["pi2", "pi3"]);
        assert_eq!(on(&["node.role != manager"]), ["pi2", "pi3"]);
        assert_eq!(on(&["node.hostname == PI2"]), ["pi2"]);
        assert_eq!(on(&["node.id == n3"]), ["pi3"]);
        assert_eq!(on(&["node.labels.zone != a"]), ["pi2", "pi3"]);
        // Label names are case sensitive, values and keys are not.
        assert_eq!(on(&["node.labels.Disk == BIG"]), ["pi2"]);
        assert_eq!(on(&["node.labels.disk == big"]), Vec::<String>::new());
        assert_eq!(
            on(&["Node.Labels.zone == b", "node.role == worker"]),
            ["pi2"]
        );
        assert_eq!(
            on(&["node.platform.os == linux", "node.platform.arch == aarch64"]),
            ["pi1", "pi2"]
        );
        assert_eq!(on(&["engine.labels.storage == ssd"]), ["pi1", "pi2"]);
        assert_eq!(on(&["node.rack == 1"]), Vec::<String>::new());
    }

    #[test]
    fn which_errors_retrying_cannot_fix() {
        for e in [
            "No such image: foo:1",
            "pull access denied for foo, repository does not exist or may require 'docker login'",
            "manifest unknown: manifest unknown",
            "invalid mount config for type \"bind\": bind source path does not exist: /srv/data",
            "no suitable node (scheduling constraints not satisfied on 3 nodes)",
            "no suitable node (unsupported platform on 2 nodes)",
        ] {
            assert!(is_permanent(e), "{e}");
        }
        for e in [
            "task: non-zero exit (1)",
            "no suitable node (insufficient resources on 2 nodes)",
            "no suitable node (max replicas per node limit exceed)",
            "starting container failed: context deadline exceeded",
            "",
        ] {
            assert!(!is_permanent(e), "{e}");
        }
    }

    /// Issue 10 item 5: repeated attempts with an error retrying cannot fix, or a task
    /// that finds no node for long enough, end the wait; failures from before the wait
    /// (a deploy again after a fix) and transient ones do not.
    #[test]
    fn a_permanent_error_on_repeated_attempts_dooms_the_service() {
        let secs = Duration::from_secs;
        let services = ["app".into(), "agent".into(), "migrate".into(), "db".into()];
        // The wait's first poll saw none of these failures yet.
        let mut first = web_poll();
        first
            .tasks
            .retain(|t| !["id1", "id2", "id3"].contains(&t.id.as_str()));
        let p = web_poll();
        let states = assess_once("web", &services, &p);
        let mut seen = Attempts::default();
        seen.observe(&first, secs(0));
        seen.observe(&p, secs(1));
        assert_eq!(
            doomed(&states, &p, &seen, secs(1)),
            vec![Doomed {
                service: "web_app".into(),
                reason: "No such image: foo:1 (on pi1, pi2; 3 attempts)".into(),
            }]
        );
        // web_db finds no node: given PENDING_GRACE from when the wait first saw it.
        seen.observe(&p, secs(11));
        let d = doomed(&states, &p, &seen, secs(11));
        assert_eq!(
            d[1],
            Doomed {
                service: "web_db".into(),
                reason: "no suitable node (scheduling constraints not satisfied on 3 nodes) (still pending)".into(),
            }
        );
        // Failures that were there at the wait's first poll are not this deploy's.
        let mut before = Attempts::default();
        before.observe(&p, secs(0));
        assert!(doomed(&states, &p, &before, secs(5)).is_empty());
        // Nor are tasks of another spec than the service's current one.
        let mut old = p.clone();
        for t in &mut old.tasks {
            t.current = false;
        }
        assert!(
            doomed(&states, &old, &seen, secs(1))
                .iter()
                .all(|d| d.service != "web_app")
        );
        assert_eq!(
            latest_errors(&states, &p)[0],
            (
                "web_app".to_string(),
                "No such image: foo:1 (on pi2)".to_string()
            )
        );
    }

    #[test]
    fn the_logs_command() {
        let req = LogsRequest {
            name: "web".into(),
            follow: true,
            since: Some("10m".into()),
            tail: Some(5),
        };
        assert_eq!(
            service_logs(&req),
            "n=web; if docker service inspect \"$n\" >/dev/null 2>&1; then s=$n; else s=$(docker stack services --format '{{.Name}}' \"$n\" 2>/dev/null); fi; if [ -z \"$s\" ]; then echo '@@none'; exit 3; fi; for x in $s; do docker service logs --follow --since 10m --tail 5 \"$x\" & done; wait"
        );
        assert!(valid_since("2026-11-25T16:00:00.5+01:00") && valid_since("1h30m"));
        assert!(!valid_since("10m; reboot") && !valid_since(""));
    }

    /// Against the stand-in docker: a service is asked by its name, a stack's services
    /// each, and a name that is neither says so.
    #[test]
    fn logs_of_a_service_or_of_each_service_of_a_stack() {
        let d = crate::testing::script::ScratchHost::new();
        d.answer(("service", "logs"), "web_web.1.abc@pi1    | hello\n");
        let logs = |name: &str| {
            let req = LogsRequest {
                name: name.into(),
                ..Default::default()
            };
            d.run(&service_logs(&req), b"")
        };
        std::fs::write(d.docker_file("service_web_web"), "").unwrap();
        let out = logs("web_web").ok();
        assert_eq!(out, "web_web.1.abc@pi1    | hello\n");
        assert!(
            d.calls().ends_with("service logs web_web\n"),
            "{}",
            d.calls()
        );
        // A stack: the stand-in's `stack services` names two, `stack` and `web`, each
        // asked at once.
        let out = logs("web").ok();
        assert_eq!(out.lines().count(), 2, "{out}");
        let calls = d.calls();
        let last: Vec<&str> = calls.lines().rev().take(2).collect();
        assert!(
            last.contains(&"service logs stack") && last.contains(&"service logs web"),
            "{calls}"
        );
        std::fs::write(d.docker_file("down"), "").unwrap();
        let ran = logs("nope");
        assert_eq!((ran.code, ran.stdout.as_str()), (3, "@@none\n"));
        assert!(logs_found_nothing(&ran.stdout));
    }

    #[test]
    fn reads_a_poll() {
        let p = web_poll();
        assert_eq!(p.services.len(), 4);
        assert_eq!(
            p.specs[0],
            ServiceSpec {
                name: "web_app".into(),
                mode: Mode::Replicated(2),
                restart_condition: "any".into(),
                update: None,
                constraints: vec![],
            }
        );
        assert_eq!(p.specs[3].constraints, vec!["node.labels.disk==ssd"]);
        assert_eq!(
            p.specs[1].update,
            Some(("completed".into(), "update completed".into()))
        );
        assert_eq!(p.specs[2].mode, Mode::ReplicatedJob { total: 1 });
        assert_eq!(p.specs[2].restart_condition, "on-failure");
        assert_eq!(
            p.tasks[0],
            Task {
                id: "id1".into(),
                service: "web_app".into(),
                slot: "web_app.1".into(),
                node: "pi2".into(),
                desired: "running".into(),
                state: "rejected".into(),
                error: "No such image: foo:1".into(),
                current: true,
                settled: false,
            }
        );
        assert_eq!(p.tasks[6].node, "");
    }

    #[test]
    fn assesses_each_service_with_swarm_s_reason() {
        let p = settled(web_poll());
        let states = assess(
            "web",
            &["app".into(), "agent".into(), "migrate".into(), "db".into()],
            &p,
        );
        let by = |n: &str| states.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(
            by("web_app"),
            ServiceState {
                name: "web_app".into(),
                mode: "replicated".into(),
                replicas: "0/2".into(),
                converged: false,
                reasons: vec!["No such image: foo:1 (on pi2, pi1)".into()],
                ready: false,
            }
        );
        assert!(by("web_agent").converged);
        assert!(by("web_migrate").converged);
        assert_eq!(by("web_migrate").replicas, "1/1 completed");
        assert_eq!(
            by("web_db").reasons,
            vec!["no suitable node (scheduling constraints not satisfied on 3 nodes)"]
        );
        assert!(!all_converged(&states));
        assert_eq!(
            failure_text(&states),
            "web_app 0/2: No such image: foo:1 (on pi2, pi1)\n\
             web_db 0/1: no suitable node (scheduling constraints not satisfied on 3 nodes)"
        );
    }

    /// `web_app`, one replica, with this update status; swarm counts one running.
    fn one_replica(update: Option<(String, String)>) -> (ServiceSpec, ServiceLine) {
        let spec = ServiceSpec {
            name: "web_app".into(),
            mode: Mode::Replicated(1),
            restart_condition: "any".into(),
            update,
            constraints: vec![],
        };
        let line = ServiceLine {
            name: "web_app".into(),
            running: 1,
            desired: 1,
            completed: None,
        };
        (spec, line)
    }

    /// Issue 19 item 5: a job whose task exited non-zero fails at once, naming the exit
    /// code and the node; one that failed before the wait, or a service that is not a
    /// job, is left to the timeout.
    #[test]
    fn a_job_that_exits_non_zero_is_doomed_at_once() {
        let (mut spec, _) = one_replica(None);
        spec.mode = Mode::ReplicatedJob { total: 1 };
        let mut failed = task("j1", "web_app.1", "failed", true, false);
        failed.desired = "complete".into();
        failed.error = "task: non-zero exit (3)".into();
        let p = Poll {
            services: Vec::new(),
            specs: vec![spec.clone()],
            tasks: vec![failed],
        };
        let states = vec![ServiceState {
            name: "web_app".into(),
            mode: "replicated-job".into(),
            replicas: "0/1 completed".into(),
            converged: false,
            reasons: Vec::new(),
            ready: false,
        }];
        let mut seen = Attempts::default();
        seen.observe(&Poll::default(), Duration::ZERO);
        assert_eq!(
            doomed(&states, &p, &seen, Duration::from_secs(1)),
            vec![Doomed {
                service: "web_app".into(),
                reason: "task: non-zero exit (3) (on pi1; the job failed)".into(),
            }]
        );
        let mut before = Attempts::default();
        before.observe(&p, Duration::ZERO);
        assert!(doomed(&states, &p, &before, Duration::from_secs(1)).is_empty());
        spec.mode = Mode::Replicated(1);
        let service = Poll {
            specs: vec![spec],
            ..p.clone()
        };
        assert!(doomed(&states, &service, &seen, Duration::from_secs(1)).is_empty());
    }

    fn task(id: &str, slot: &str, state: &str, current: bool, settled: bool) -> Task {
        Task {
            id: id.into(),
            service: "web_app".into(),
            slot: slot.into(),
            node: "pi1".into(),
            desired: "running".into(),
            state: state.into(),
            error: String::new(),
            current,
            settled,
        }
    }

    #[test]
    fn update_in_progress_or_rolled_back_is_not_converged() {
        let (mut spec, line) = one_replica(Some(("updating".into(), "update in progress".into())));
        let up = task("t1", "web_app.1", "running", true, true);
        let s = assess_service(&line, &spec, &[&up]);
        // The new task runs: the next stack may go; swarm still watches it.
        assert!(s.ready && !s.converged);
        assert_eq!(s.reasons, vec!["update updating: update in progress"]);
        spec.update = Some((
            "rollback_completed".into(),
            "rollback completed: task failed".into(),
        ));
        let s = assess_service(&line, &spec, &[&up]);
        assert!(!s.ready);
        assert_eq!(
            s.reasons,
            vec!["update rollback completed: rollback completed: task failed"]
        );
        spec.update = Some(("completed".into(), "update completed".into()));
        assert!(assess_service(&line, &spec, &[&up]).converged);
    }

    /// Issue 14: an update that is over while a task of an older spec still runs was left
    /// behind (a killed run, a node away during the update); one still going is not.
    #[test]
    fn a_task_left_behind_by_a_finished_update_is_found() {
        let (mut spec, _) = one_replica(Some(("completed".into(), "update completed".into())));
        let old = task("t0", "web_app.1", "running", false, true);
        let new = task("t1", "web_app.2", "running", true, true);
        let poll = |spec: &ServiceSpec, tasks: Vec<Task>| Poll {
            services: vec![],
            specs: vec![spec.clone()],
            tasks,
        };
        assert_eq!(
            left_behind(&poll(&spec, vec![old.clone(), new.clone()])),
            [("web_app".to_string(), Behind::OlderTask)]
        );
        assert!(left_behind(&poll(&spec, vec![new.clone()])).is_empty());
        spec.update = Some(("updating".into(), "update in progress".into()));
        assert!(left_behind(&poll(&spec, vec![old.clone()])).is_empty());
        // Paused by swarm after a task failed: it will not go on by itself, whatever runs.
        spec.update = Some((
            "paused".into(),
            "update paused due to failure or early termination of task t2".into(),
        ));
        assert_eq!(
            left_behind(&poll(&spec, vec![new])),
            [("web_app".to_string(), Behind::Paused)]
        );
        spec.update = Some(("rollback_completed".into(), "rollback completed".into()));
        assert!(left_behind(&poll(&spec, vec![old])).is_empty());
    }

    /// Right after `stack deploy`, before swarm started the update: the old task still
    /// runs and the counts look right. Not ready, and it says why.
    #[test]
    fn a_task_of_the_previous_spec_is_not_convergence() {
        let (spec, line) = one_replica(None);
        let old = task("t0", "web_app.1", "running", false, true);
        let s = assess_service(&line, &spec, &[&old]);
        assert!(!s.ready && !s.converged);
        assert_eq!(
            s.reasons,
            vec!["1 task(s) of the previous spec still running (the update has not reached them)"]
        );
        // The new one started: ready at once, converged once it stayed up.
        let mut old_gone = old.clone();
        old_gone.desired = "shutdown".into();
        old_gone.state = "shutdown".into();
        let new = task("t1", "web_app.1", "running", true, false);
        let s = assess_service(&line, &spec, &[&new, &old_gone]);
        assert!(s.ready && !s.converged);
        assert_eq!(
            s.reasons,
            vec!["1/1 tasks running, not yet for long: checking that they stay up"]
        );
        let new = task("t1", "web_app.1", "running", true, true);
        let s = assess_service(&line, &spec, &[&new, &old_gone]);
        assert!(s.ready && s.converged, "{s:?}");
    }

    #[test]
    fn restart_none_service_converges_when_its_task_completed() {
        use serde_json::json;
        let once = service(
            "jobs_once",
            json!({"TaskTemplate": {"RestartPolicy": {"Condition": "none"}},
                "Mode": {"Replicated": {"Replicas": 1}}}),
            (0, 1, 0),
            None,
        );
        let done = api_task("id8", "jobs_once", 1, "pi1", ("shutdown", "complete"), "");
        let poll = poll_of("jobs", std::slice::from_ref(&once), &[done]);
        let states = assess("jobs", &["once".into()], &poll);
        assert!(states[0].converged, "{states:?}");
        assert!(states[0].ready);
        // The same service still starting is not.
        let starting = api_task("id8", "jobs_once", 1, "pi1", ("running", "starting"), "");
        let states = assess(
            "jobs",
            &["once".into()],
            &poll_of("jobs", &[once], &[starting]),
        );
        assert!(!states[0].converged);
        assert_eq!(states[0].reasons, vec!["task starting"]);
    }

    #[test]
    fn a_failing_container_reports_its_exit_and_is_given_the_full_timeout() {
        let app = service(
            "web_app",
            serde_json::json!({"Mode": {"Replicated": {"Replicas": 1}}}),
            (0, 1, 0),
            None,
        );
        let exit = "task: non-zero exit (127)";
        let p = poll_of(
            "web",
            &[app],
            &[
                api_task("id9", "web_app", 1, "pi1", ("running", "starting"), ""),
                api_task("id10", "web_app", 1, "pi1", ("shutdown", "failed"), exit),
                api_task("id11", "web_app", 1, "pi2", ("shutdown", "failed"), exit),
            ],
        );
        let states = assess("web", &["app".into()], &p);
        assert_eq!(
            states[0].reasons,
            vec!["task: non-zero exit (127) (on pi1, pi2)"]
        );
        // Retrying may fix a container that exits: never a reason to give up early.
        let mut seen = Attempts::default();
        seen.observe(&Poll::default(), Duration::ZERO);
        seen.observe(&p, Duration::from_secs(20));
        assert!(doomed(&states, &p, &seen, Duration::from_secs(20)).is_empty());
        assert_eq!(
            latest_errors(&states, &p),
            vec![(
                "web_app".to_string(),
                "task: non-zero exit (127) (on pi1)".to_string()
            )]
        );
    }

    #[test]
    fn global_job_and_missing_service() {
        let gj = service(
            "s_gj",
            serde_json::json!({"Mode": {"GlobalJob": {}}}),
            (0, 2, 0),
            None,
        );
        let tasks = [
            api_task("id11", "s_gj", 0, "pi1", ("complete", "complete"), ""),
            api_task("id12", "s_gj", 0, "pi2", ("complete", "running"), ""),
        ];
        let states = assess(
            "s",
            &["gj".into(), "late".into()],
            &poll_of("s", std::slice::from_ref(&gj), &tasks),
        );
        assert_eq!(states[0].replicas, "1/2 completed");
        assert!(!states[0].converged);
        assert_eq!(states[1].name, "s_late");
        assert_eq!(states[1].reasons, vec!["service not created"]);
        // Both done: converged.
        let mut tasks = tasks;
        tasks[1]["Status"]["State"] = "complete".into();
        let states = assess("s", &["gj".into()], &poll_of("s", &[gj], &tasks));
        assert!(states[0].converged);
        assert_eq!(states[0].replicas, "2/2 completed");
        // A stack with nothing listed polls to nothing.
        assert_eq!(poll_of("s", &[], &[]), Poll::default());
    }

    fn swarm_node(hostname: &str, role: &str, state: &str) -> SwarmNode {
        SwarmNode {
            id: format!("id-{hostname}"),
            hostname: hostname.into(),
            role: role.into(),
            state: state.into(),
            availability: "active".into(),
            architecture: "aarch64".into(),
            os: "linux".into(),
            labels: [("zone".to_string(), "r1".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn placement_constraints_as_swarm_reads_them() {
        let n = swarm_node("pi3", "worker", "down");
        for (c, admits) in [
            ("node.role==worker", true),
            ("node.role == manager", false),
            ("node.role!=manager", true),
            ("node.hostname==PI3", true),
            ("node.id==id-pi3", true),
            ("node.platform.os==linux", true),
            ("node.platform.arch!=aarch64", false),
            ("node.labels.zone==r1", true),
            ("node.labels.disk==ssd", false),
            // A label the node lacks is empty: `!=` admits it.
            ("node.labels.disk!=ssd", true),
            ("engine.labels.disk==", true),
            ("node.ip==198.18.0.13", false),
            ("nonsense", false),
        ] {
            assert_eq!(constraint_allows(c, &n), admits, "{c}");
        }
    }

    /// Issue 14, measured: a worker's link cut during a deploy; swarm marks it down, stops
    /// counting it, and the global `web` shows 2/2. The node is named, with each global
    /// service its placement puts there; replicated services and a global service kept to
    /// managers are not concerned, nor is a node drained by hand.
    #[test]
    fn a_global_service_missing_on_a_down_node_is_not_converged() {
        use serde_json::json;
        let global = |name: &str, template: serde_json::Value, n: u64| {
            service(
                name,
                json!({"TaskTemplate": template, "Mode": {"Global": {}}}),
                (n, n, 0),
                None,
            )
        };
        let services = [
            global("web_web", json!({}), 2),
            global(
                "web_agent",
                json!({"Placement": {"Constraints": ["node.role==manager"]}}),
                1,
            ),
            service(
                "web_api",
                json!({"Mode": {"Replicated": {"Replicas": 2}}}),
                (2, 2, 0),
                None,
            ),
        ];
        let up = ("running", "running");
        let tasks = [
            api_task("d1", "web_web", 0, "pi1", up, ""),
            api_task("d2", "web_web", 0, "pi2", up, ""),
            api_task("d3", "web_agent", 0, "pi1", up, ""),
            api_task("d4", "web_api", 1, "pi1", up, ""),
            api_task("d5", "web_api", 2, "pi2", up, ""),
        ];
        let poll = settled(poll_of("web", &services, &tasks));
        let expected: Vec<String> = vec!["web".into(), "agent".into(), "api".into()];
        let mut states = assess("web", &expected, &poll);
        assert!(all_converged(&states), "swarm's own count: {states:?}");
        let mut nodes = vec![
            swarm_node("pi1", "manager", "ready"),
            swarm_node("pi2", "worker", "ready"),
            swarm_node("pi3", "worker", "down"),
        ];
        assert!(judge_down_nodes(&mut states, &poll.specs, &nodes));
        assert!(!all_converged(&states));
        assert_eq!(
            failure_text(&states),
            "web_web 2/2: not running on pi3: the node is down in the swarm"
        );
        // Two nodes down, one of them drained by hand (not expected to run anything).
        nodes.push(swarm_node("pi4", "worker", "unknown"));
        nodes.push(SwarmNode {
            availability: "drain".into(),
            ..swarm_node("pi5", "worker", "down")
        });
        assert_eq!(
            missing_on_down_nodes(&poll.specs, &nodes),
            vec![(
                "web_web".to_string(),
                vec!["pi3".to_string(), "pi4".to_string()]
            )]
        );
        let mut states = assess("web", &expected, &poll);
        judge_down_nodes(&mut states, &poll.specs, &nodes);
        assert_eq!(
            states[0].reasons,
            vec!["not running on pi3, pi4: the nodes are down in the swarm"]
        );
        // Every node back: nothing to say.
        let up: Vec<SwarmNode> = ["pi1", "pi2", "pi3"]
            .iter()
            .map(|n| swarm_node(n, "worker", "ready"))
            .collect();
        let mut states = assess("web", &expected, &poll);
        assert!(!judge_down_nodes(&mut states, &poll.specs, &up));
        assert!(all_converged(&states));
    }
}
