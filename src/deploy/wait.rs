//! The convergence wait of the deployed stacks: one loop ([`Watch`]) polls every stack
//! being waited for at once, in one round trip per poll, and says when each is *ready*
//! (the next stack may be deployed) and when each has *converged* (see
//! [`crate::docker::service`] for both, judged there). This file only decides when to ask
//! again, what a poll asks, and when to give up.
//!
//! - **What a poll asks**: the manager's Engine API ([`crate::exec::engine`]: services,
//!   tasks and nodes, three requests in one round trip, no process on the Pi). A poll
//!   that fails (its relay broke with a cut link) fails alone: the next one starts a
//!   new relay over the connection the transport makes again.
//! - **When**: at once after a deploy, then backing off from 0.1 s to 0.5 s (or the poll
//!   interval, when shorter); sooner when a task becomes settled (seen running [`SETTLE`]
//!   ago) or a deadline falls.
//! - **Order**: the deploy waits until a stack is ready before it deploys the next one
//!   (the playbook's order is a dependency order); the settle time and swarm's update
//!   monitoring of a ready stack go on while the next ones deploy, and the deploy ends
//!   when every stack converged or failed.
//! - **When to give up**: at a stack's timeout (from its deploy), with swarm's reasons;
//!   at once for every stack when the manager is unreachable (the transport gave up
//!   reconnecting); as soon as swarm rejects a stack's tasks with an error that retrying
//!   cannot fix, on repeated attempts ([`service::doomed`]); for a stack whose global
//!   services miss nodes down in the swarm, after [`DOWN_NODE_GRACE`] (a node that
//!   rebooted is back well within it), whether swarm counts them complete or their
//!   update still waits for such a node.
//! - **What it shows**: per stack, how many services converged and each other service's
//!   latest task error (a plain line too, each time that error changes).
//!
//! Where more checks plug in: [`Watch::poll`] is the one place that sees each stack's
//! fresh states (and the swarm's nodes); a judgement that a stack cannot converge belongs
//! in `docker::service` and is called there, next to [`service::assess`],
//! [`service::doomed`] and [`service::judge_down_nodes`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::docker::api;
use crate::docker::node::{self, SwarmNode};
use crate::docker::service::{self, Behind, Poll, ServiceState};
use crate::exec::engine::{Engine, EngineError};
use crate::exec::report::{RowId, Rows, secs};

use super::PreparedStack;

/// How long a task must have been seen running to count: a task that starts and dies at
/// once (a crash loop) must not be taken for a converged service.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How long a global service may miss nodes that swarm marks down before the wait gives
/// up on it: swarm notices a node is back within seconds of its dockerd answering.
pub const DOWN_NODE_GRACE: Duration = Duration::from_secs(20);

/// How long a service must look [left behind](service::left_behind) before it is updated
/// again with `--force`: swarm starts a deploy's update within a second, but the status
/// of a killed run's update may read over before its last task is replaced (seen once
/// after 5 s, in a run that then converged without the force); a task really left behind
/// stays so for good.
const LEFT_BEHIND_AFTER: Duration = Duration::from_secs(15);

/// The first poll after a deploy.
const FIRST_POLL: Duration = Duration::from_millis(100);

/// The longest time between two polls through the Engine API.
const API_POLL_MAX: Duration = Duration::from_millis(500);

/// The swarm's nodes, for the judgement of global services.
pub async fn nodes(leader: &Engine, timeout: Duration) -> Result<Vec<SwarmNode>, String> {
    let r = leader.call(api::nodes(), timeout).await?;
    api::read(&r, node::parse_node_list)
}

/// One poll of every stack and the swarm's nodes, in one round trip. `Err` is the engine's
/// (the relay, or the host given up); a poll Docker could not answer is `Ok(Err)`.
pub async fn poll_stacks(
    leader: &Engine,
    timeout: Duration,
) -> Result<Result<(BTreeMap<String, Poll>, Vec<SwarmNode>), String>, EngineError> {
    let reqs = [api::stack_services(), api::stack_tasks(), api::nodes()];
    let r = leader.batch(&reqs, timeout).await?;
    Ok((|| {
        api::all_ok(&r)?;
        let nodes = node::parse_node_list(&r[2].body)?;
        Ok((
            api::parse_stack_polls(&r[0].body, &r[1].body, &nodes)?,
            nodes,
        ))
    })())
}

/// Why a stack did not converge.
#[derive(Debug, Clone)]
pub struct NotConverged {
    /// The services as the last poll saw them.
    pub states: Vec<ServiceState>,
    /// What the user reads: the cause, then one line per failing service.
    pub text: String,
    /// Only global services missing on nodes down in the swarm: the stack runs everywhere
    /// else, and the stacks after it may still be deployed.
    pub nodes_down: bool,
}

/// One stack waited for.
struct Watched<'a> {
    st: &'a PreparedStack,
    /// When it was deployed (the wait began).
    started: Instant,
    deadline: Instant,
    /// Its failing tasks over the polls, for [`service::doomed`].
    attempts: service::Attempts,
    /// Each service's latest task error, as last shown.
    shown: Vec<(String, String)>,
    states: Vec<ServiceState>,
    last_error: Option<String>,
    /// Since when swarm's count was complete but global services missed down nodes.
    blocked_since: Option<Instant>,
    /// Since when each service was seen [left behind](service::left_behind) by an
    /// update, and those already updated again with `--force`.
    behind_since: HashMap<String, Instant>,
    forced: Vec<String>,
    /// Set once it converged (`Ok`) or gave up.
    end: Option<Result<(), NotConverged>>,
    /// Its end was handed out by [`Watch::take_ended`].
    reported: bool,
}

/// How a watched stack ended: its name, its last states, converged or why not.
pub type Ended = (String, Vec<ServiceState>, Result<(), NotConverged>);

/// The wait of every deployed stack.
pub struct Watch<'a> {
    /// The manager's Engine API.
    engine: Arc<Engine>,
    rows: &'a Rows,
    command_timeout: Duration,
    max_interval: Duration,
    settle: Duration,
    stacks: Vec<Watched<'a>>,
    /// Task id -> when it was first seen running.
    first_running: HashMap<String, Instant>,
    interval: Duration,
}

/// How a [`Watch`] polls.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub command_timeout: Duration,
    /// The longest time between two polls.
    pub max_interval: Duration,
    /// See [`SETTLE`].
    pub settle: Duration,
}

impl<'a> Watch<'a> {
    pub fn new(engine: Arc<Engine>, rows: &'a Rows, pace: Pace) -> Self {
        Watch {
            engine,
            rows,
            command_timeout: pace.command_timeout,
            max_interval: pace.max_interval,
            settle: pace.settle,
            stacks: Vec::new(),
            first_running: HashMap::new(),
            interval: FIRST_POLL,
        }
    }

    /// Starts waiting for a stack just deployed; its timeout runs from now.
    pub fn add(&mut self, st: &'a PreparedStack) {
        self.rows
            .step(&RowId::stack(&st.name), "wait for convergence");
        let now = Instant::now();
        self.stacks.push(Watched {
            st,
            started: now,
            deadline: now + st.timeout,
            attempts: service::Attempts::default(),
            shown: Vec::new(),
            states: Vec::new(),
            last_error: None,
            blocked_since: None,
            behind_since: HashMap::new(),
            forced: Vec::new(),
            end: None,
            reported: false,
        });
        self.interval = FIRST_POLL;
    }

    /// Polls until the stack is ready (or converged): `Ok`, or why not when it failed or
    /// its timeout passed. Other stacks may converge or fail meanwhile.
    pub async fn until_ready(&mut self, name: &str) -> Result<(), NotConverged> {
        loop {
            self.poll().await;
            let w = self
                .stacks
                .iter()
                .find(|w| w.st.name == name)
                .expect("the stack is watched");
            match &w.end {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(e.clone()),
                None if !w.states.is_empty() && service::all_ready(&w.states) => return Ok(()),
                None => {}
            }
            self.sleep().await;
        }
    }

    /// The stacks that ended (converged or failed) since the last call, so that the
    /// deploy records them and ends their rows at once.
    pub fn take_ended(&mut self) -> Vec<Ended> {
        let mut out = Vec::new();
        for w in self
            .stacks
            .iter_mut()
            .filter(|w| w.end.is_some() && !w.reported)
        {
            w.reported = true;
            out.push((
                w.st.name.clone(),
                w.states.clone(),
                w.end.clone().unwrap_or(Ok(())),
            ));
        }
        out
    }

    /// Polls until every stack converged or failed, and says how each ended (those not
    /// taken already with [`Watch::take_ended`]).
    pub async fn until_all_converged(mut self) -> Vec<Ended> {
        while self.stacks.iter().any(|w| w.end.is_none()) {
            self.poll().await;
            if self.stacks.iter().all(|w| w.end.is_some()) {
                break;
            }
            self.sleep().await;
        }
        self.take_ended()
    }

    /// Waits for the next poll: the backoff, or sooner when a task becomes settled or
    /// a deadline falls.
    async fn sleep(&mut self) {
        let now = Instant::now();
        let mut until = now + self.interval;
        for first in self.first_running.values() {
            let due = *first + self.settle;
            if due > now && due < until {
                until = due;
            }
        }
        for w in self.stacks.iter().filter(|w| w.end.is_none()) {
            until = until.min(w.deadline.max(now));
        }
        tokio::time::sleep_until(until).await;
        // A poll costs the Pi no process: it may come twice a second.
        self.interval = (self.interval * 3 / 2).min(self.max_interval.min(API_POLL_MAX));
    }

    /// One poll of every stack still waited for; updates their states and ends.
    async fn poll(&mut self) {
        let open: Vec<String> = self
            .stacks
            .iter()
            .filter(|w| w.end.is_none())
            .map(|w| w.st.name.clone())
            .collect();
        if open.is_empty() {
            return;
        }
        let (polls, swarm_nodes) = match self.fetch(&open).await {
            Ok(x) => x,
            Err(e) => return self.unreachable(&e),
        };
        let now = Instant::now();
        for i in 0..self.stacks.len() {
            if self.stacks[i].end.is_some() {
                continue;
            }
            let name = self.stacks[i].st.name.clone();
            match polls.get(&name) {
                Some(Ok(p)) => {
                    let mut p = p.clone();
                    for t in &mut p.tasks {
                        if t.desired == "running" && t.state == "running" {
                            let first = *self.first_running.entry(t.id.clone()).or_insert(now);
                            t.settled = now.duration_since(first) >= self.settle;
                        }
                    }
                    self.force_left_behind(i, &p, now).await;
                    let w = &mut self.stacks[i];
                    w.states = service::assess(&name, &w.st.services, &p);
                    w.last_error = None;
                    let waited = now.duration_since(w.started);
                    w.attempts.observe(&p, waited);
                    let errors = service::latest_errors(&w.states, &p);
                    for (svc, e) in &errors {
                        // A plain line when an error is new, for logs and non-terminal output.
                        if !w.shown.iter().any(|(s, x)| s == svc && x == e) {
                            self.rows.note(&RowId::stack(&name), &format!("{svc}: {e}"));
                        }
                    }
                    let w = &mut self.stacks[i];
                    w.shown = errors;
                    let doomed = service::doomed(&w.states, &p, &w.attempts, waited);
                    if !doomed.is_empty() {
                        let mut text = format!(
                            "gave up after {}: swarm rejects the tasks with an error that retrying cannot fix",
                            secs(waited)
                        );
                        for d in &doomed {
                            let replicas = w
                                .states
                                .iter()
                                .find(|s| s.name == d.service)
                                .map_or("", |s| s.replicas.as_str());
                            text.push_str(&format!("\n{} {replicas}: {}", d.service, d.reason));
                        }
                        w.end = Some(Err(NotConverged {
                            states: w.states.clone(),
                            text,
                            nodes_down: false,
                        }));
                        continue;
                    }
                    // What is left may be global services whose update still waits
                    // for a node swarm marks down: that node will not take it, and the
                    // stack is judged on the down nodes as a converged one is.
                    let left_global = w
                        .states
                        .iter()
                        .filter(|s| !s.converged)
                        .all(|s| global_in(&p.specs, &s.name));
                    let converged = service::all_converged(&w.states);
                    let only_down = !converged
                        && left_global
                        && only_down_nodes_left(&w.states, &p.specs, &swarm_nodes);
                    if converged || only_down {
                        // Swarm's count leaves out nodes it marks down: the poll brought
                        // them.
                        let w = &mut self.stacks[i];
                        let down = service::judge_down_nodes(&mut w.states, &p.specs, &swarm_nodes);
                        if !down {
                            w.end = Some(Ok(()));
                            continue;
                        }
                        let since = *w.blocked_since.get_or_insert(now);
                        // At the stack's timeout, the down nodes are the reason too.
                        if now.duration_since(since) >= DOWN_NODE_GRACE.min(w.st.timeout)
                            || now >= w.deadline
                        {
                            let mut text = format!(
                                "global services do not run on nodes down in the swarm (for {})",
                                secs(now.duration_since(since))
                            );
                            text.push('\n');
                            text.push_str(&service::failure_text(&w.states));
                            w.end = Some(Err(NotConverged {
                                states: w.states.clone(),
                                text,
                                nodes_down: true,
                            }));
                            continue;
                        }
                    } else {
                        w.blocked_since = None;
                    }
                    let w = &self.stacks[i];
                    let done = w.states.iter().filter(|s| s.converged).count();
                    let mut line = format!("{done}/{} services converged", w.states.len());
                    for (svc, e) in &w.shown {
                        line.push_str(&format!("; {svc}: {e}"));
                    }
                    self.rows.output(&RowId::stack(&name), &line);
                }
                // A poll that fails (a manager busy electing) is retried until the end.
                Some(Err(e)) => self.stacks[i].last_error = Some(e.clone()),
                None => {}
            }
            let w = &mut self.stacks[i];
            if now >= w.deadline {
                w.end = Some(Err(timed_out(w)));
            }
        }
    }

    /// Updates again, with `--force`, once each, the services an earlier update left
    /// behind (see [`service::left_behind`]) for [`LEFT_BEHIND_AFTER`], or whose update
    /// swarm paused: swarm would never replace their old tasks or go on with the update,
    /// and the wait would run out its timeout.
    async fn force_left_behind(&mut self, i: usize, p: &Poll, now: Instant) {
        let behind = service::left_behind(p);
        let w = &mut self.stacks[i];
        w.behind_since
            .retain(|s, _| behind.iter().any(|(b, _)| b == s));
        let mut due = Vec::new();
        for (svc, why) in behind {
            let since = *w.behind_since.entry(svc.clone()).or_insert(now);
            let after = match why {
                Behind::Paused => Duration::ZERO,
                Behind::OlderTask => LEFT_BEHIND_AFTER,
            };
            if now.duration_since(since) >= after && !w.forced.contains(&svc) {
                w.forced.push(svc.clone());
                due.push((svc, why));
            }
        }
        let row = RowId::stack(&self.stacks[i].st.name);
        for (svc, why) in due {
            let why = why.describe();
            let said = match force_update(&self.engine, &svc, self.command_timeout).await {
                Ok(()) => format!("{svc}: {why}: updated again with --force"),
                Err(e) => format!("{svc}: its update again with --force failed: {e}"),
            };
            self.rows.note(&row, &said);
        }
    }

    /// The manager is gone for good: every stack still waited for ends now.
    fn unreachable(&mut self, e: &str) {
        for w in self.stacks.iter_mut().filter(|w| w.end.is_none()) {
            let mut text = format!("{e}; the stack's state there is unknown");
            let failing = service::failure_text(&w.states);
            if !failing.is_empty() {
                text.push_str(&format!("\nat the last poll:\n{failing}"));
            }
            w.end = Some(Err(NotConverged {
                states: w.states.clone(),
                text,
                nodes_down: false,
            }));
        }
    }

    /// The polls of these stacks, and the swarm's nodes, in one round trip. `Err` only
    /// when the manager is unreachable; a poll that failed is in the map, for each stack.
    async fn fetch(&mut self, stacks: &[String]) -> Result<Fetched, String> {
        let (polls, nodes) = match poll_stacks(&self.engine, self.command_timeout).await {
            Err(e) if e.is_unreachable() => return Err(e.to_string()),
            Err(e) => (Err(e.to_string()), vec![]),
            Ok(Err(e)) => (Err(e), vec![]),
            Ok(Ok((all, nodes))) => (Ok(all), nodes),
        };
        let each = stacks
            .iter()
            .map(|s| {
                let poll = match &polls {
                    Ok(all) => Ok(all.get(s).cloned().unwrap_or_default()),
                    Err(e) => Err(e.clone()),
                };
                (s.clone(), poll)
            })
            .collect();
        Ok((each, nodes))
    }
}

/// Updates a service again, every task replaced (`docker service update --force`): its
/// spec read and sent back at the negotiated version, the counter raised.
async fn force_update(engine: &Engine, service: &str, timeout: Duration) -> Result<(), String> {
    let r = engine.call(api::service_inspect(service), timeout).await?;
    let spec = api::read(&r, api::parse_service_spec)?;
    let r = engine
        .call(api::service_force_update(&spec), timeout)
        .await?;
    api::read(&r, |_| Ok(()))
}

/// Per stack its poll (or why it failed), and the swarm's nodes (none when the poll failed).
type Fetched = (HashMap<String, Result<Poll, String>>, Vec<SwarmNode>);

/// Whether `service` is a global one.
fn global_in(specs: &[service::ServiceSpec], service: &str) -> bool {
    specs
        .iter()
        .any(|s| s.name == service && s.mode == service::Mode::Global)
}

/// Every service not converged is a global one that misses nodes down in the swarm.
fn only_down_nodes_left(
    states: &[ServiceState],
    specs: &[service::ServiceSpec],
    nodes: &[SwarmNode],
) -> bool {
    let missing = service::missing_on_down_nodes(specs, nodes);
    states
        .iter()
        .filter(|s| !s.converged)
        .all(|s| missing.iter().any(|(m, _)| *m == s.name))
}

/// Why a stack did not converge in time: one line per failing service, in swarm's words.
fn timed_out(w: &Watched) -> NotConverged {
    let mut text = format!("not converged after {}", secs(w.st.timeout));
    let failing = service::failure_text(&w.states);
    if !failing.is_empty() {
        text.push('\n');
        text.push_str(&failing);
    }
    if let Some(e) = &w.last_error {
        text.push_str(&format!("\nlast poll failed: {e}"));
    }
    NotConverged {
        states: w.states.clone(),
        text,
        nodes_down: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::service::{Mode, ServiceSpec};

    fn spec(name: &str, mode: Mode) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            mode,
            restart_condition: "any".into(),
            update: Some(("updating".into(), "update in progress".into())),
            constraints: vec![],
        }
    }

    fn state(name: &str, converged: bool) -> ServiceState {
        ServiceState {
            name: name.into(),
            mode: String::new(),
            replicas: String::new(),
            converged,
            reasons: vec![],
            ready: converged,
        }
    }

    fn node(name: &str, state: &str) -> SwarmNode {
        SwarmNode {
            hostname: name.into(),
            state: state.into(),
            availability: "active".into(),
            ..Default::default()
        }
    }

    /// Issue 14: web's update waits for pi2, whose dockerd was killed: only a global
    /// service that misses a down node is left, so the stack is judged on the down nodes.
    #[test]
    fn an_update_waiting_only_for_a_down_node_is_judged_on_it() {
        let specs = [
            spec("web_web", Mode::Global),
            spec("api_api", Mode::Replicated(2)),
        ];
        let nodes = [node("pi1", "ready"), node("pi2", "down")];
        let waiting = [state("web_web", false), state("api_api", true)];
        assert!(only_down_nodes_left(&waiting, &specs, &nodes));
        assert!(global_in(&specs, "web_web") && !global_in(&specs, "api_api"));
        // A replicated service not converged yet is waited for as usual.
        let both = [state("web_web", false), state("api_api", false)];
        assert!(!only_down_nodes_left(&both, &specs, &nodes));
        // Every node ready: the global service's update is simply in progress.
        let ready = [node("pi1", "ready"), node("pi2", "ready")];
        assert!(!only_down_nodes_left(&waiting, &specs, &ready));
    }
}
