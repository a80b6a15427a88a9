//! The `rpiprov teardown` executor: under the deploy lock, remove the playbook's stacks in
//! reverse order, wait until their services, networks and containers (on every node) are
//! really gone (`docker stack rm` returns before: moby #29293, #30942), then the
//! playbook's networks, retried while Docker still holds endpoints on them. Optionally
//! purge what rpiprov left on the hosts and dissolve the swarm. Only what the playbook
//! declares is touched.
//!
//! # What "reverse order" guarantees
//!
//! Each stack's `docker stack rm` is sent only once the stack after it in the playbook
//! has no service and no network left in the swarm (as the manager lists them): from
//! then on swarm neither schedules nor restarts a task of it, and its services' names
//! no longer resolve. Its containers are not waited for one stack at a time: swarm stops
//! a removed service's containers on its own schedule (on Docker 20.10, measured in the
//! lab: the node gets the task's removal at once, stops the container 3 s later, of
//! which 2 s are a fixed wait of Docker's for gossip to converge before a container on
//! an overlay network is stopped, `defaultGossipConvergeDelay` in moby's swarm
//! executor; then the stop grace period; and removes the stopped container some 2.5 s
//! after that: about 7 s per stack, on every node), so the containers of consecutive
//! stacks may be stopping at the same time: a stack's processes are not known to have
//! exited before the previous stack's are told to stop. They are all waited for
//! together once every stack is removed from the swarm (every node asked at once, one
//! request each per poll, and asked again as soon as a node's event stream reports a
//! stack container removed), and the playbook's networks go only after the last
//! container of every stack is gone. The end state is the same: no service, container or network
//! of the playbook left, and a deploy right after works.
//!
//! [`survey`] lists what would be removed, for the confirmation prompt (`crate::cmd`);
//! the commands and the parse of their answers are in [`crate::docker::stack`],
//! [`crate::docker::network`], [`crate::docker::image`] and [`crate::docker::swarm`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Playbook;
use crate::config::Role;
use crate::docker::network::{self, RmFailure};
use crate::docker::node::{self, Dissolution, Dissolve};
use crate::docker::stack::{self, Survey};
use crate::docker::swarm::{self, Leave};
use crate::docker::{api, image};
use crate::exec::engine::{Engine, Engines, Watch};
use crate::exec::lock::{Holder, LockOwner, with_lock};
use crate::exec::preview::{Planned, Preview};
use crate::exec::report::{Reporter, Row, RowId, RowKind, Rows, secs};
use crate::exec::{MANAGER_ANSWER, POLL_INTERVAL, StepError, parallel_map, root};
use crate::remote::{Output, Remote};

/// Asks the manager what exists of the playbook through its Engine API, in one round
/// trip: its swarm state (a node in no swarm, a fleet already dissolved, holds nothing of
/// a playbook, and a second teardown must succeed), every stack service and every network.
pub async fn survey(
    engine: &Engine,
    playbook: &Playbook,
    timeout: Duration,
) -> Result<Survey, StepError> {
    let mut reqs = vec![api::info()];
    reqs.extend(api::survey());
    let r = engine
        .batch(&reqs, timeout)
        .await
        .map_err(|e| StepError(e.to_string()))?;
    let info = api::read(&r[0], api::parse_info).map_err(StepError)?;
    if !info.is_active() {
        return Ok(Survey::default());
    }
    api::all_ok(&r[1..])
        .and_then(|()| api::parse_survey(&r[1].body, &r[2].body))
        .map(|seen| seen.survey(playbook))
        .map_err(StepError)
}

/// What `execute` would do, from what exists now (`teardown --dry-run`): the same survey,
/// no lock, no write.
pub async fn preview<R: Remote + 'static>(
    leader: &R,
    engines: &Engines<R>,
    playbook: &Playbook,
    opts: &Options,
    nodes: &[String],
) -> Preview {
    let found = match engines.get(leader.host()).await {
        Ok(e) => survey(&e, playbook, opts.command_timeout).await,
        Err(e) => Err(StepError(e.to_string())),
    };
    let mut p = match found {
        Ok(found) => preview_of(&found, playbook, opts, leader.host(), nodes),
        Err(e) => Preview {
            command: "teardown".into(),
            problems: vec![format!("{}: list what exists: {e}", leader.host())],
            ..Default::default()
        },
    };
    let lock = crate::exec::lock::peek(leader, opts.command_timeout).await;
    p.add_lock(leader.host(), lock.map_err(|e| e.0));
    p
}

/// The steps of a teardown of what `found` holds, in the order `execute` takes them:
/// stacks (reverse playbook order), networks, then with `--purge` the uploaded files and
/// shipped images, with `--leave-swarm` workers, other managers, then the leader.
pub fn preview_of(
    found: &Survey,
    playbook: &Playbook,
    opts: &Options,
    leader: &str,
    nodes: &[String],
) -> Preview {
    let mut rows: Vec<Planned> = Vec::new();
    let mut on = |id: RowId, step: &str| match rows.iter_mut().find(|r| r.row == id.label()) {
        Some(r) => r.steps.push(step.to_string()),
        None => {
            let mut r = Planned::new(&id);
            r.steps.push(step.to_string());
            rows.push(r);
        }
    };
    for s in &found.stacks {
        on(
            RowId::stack(s),
            "remove (docker stack rm, then wait until gone)",
        );
    }
    for n in &found.networks {
        on(RowId::network(n), "remove (docker network rm)");
    }
    let mut others: Vec<&String> = nodes.iter().filter(|n| *n != leader).collect();
    others.sort();
    if opts.purge {
        on(RowId::host(leader), "purge stack files and deploy records");
        if !playbook.images.is_empty() {
            on(RowId::host(leader), "purge shipped images");
            for n in &others {
                on(RowId::host(n), "purge shipped images");
            }
        }
    }
    if opts.leave_swarm {
        let (managers, workers): (Vec<&String>, Vec<&String>) =
            others.iter().partition(|n| opts.managers.contains(n));
        for n in workers.into_iter().chain(managers) {
            on(RowId::host(n), "leave the swarm");
        }
        on(RowId::host(leader), "leave the swarm (last manager)");
    }
    Preview {
        command: "teardown".into(),
        rows,
        unchanged: vec![],
        problems: vec![],
    }
}

/// How the run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub parallel: usize,
    pub command_timeout: Duration,
    /// Time between two checks that a stack is gone, or two network removal attempts.
    pub poll_interval: Duration,
    /// How long a network's removal is retried while Docker reports active endpoints.
    pub network_timeout: Duration,
    /// Dissolve the swarm: workers leave, then the other managers, then the leader
    /// (`--force`), in an order that keeps quorum ([`node::dissolve`]).
    pub leave_swarm: bool,
    /// Dissolve the swarm even where that loses quorum (managers down).
    pub force: bool,
    /// Remove the stack folders and deploy records on the manager, and the shipped
    /// images and their records on the nodes.
    pub purge: bool,
    /// The inventory's managers, by name (to pick how each node leaves).
    pub managers: Vec<String>,
    /// [`LockOwner::current`]`("teardown")`.
    pub owner: LockOwner,
}

impl Options {
    /// The defaults (2 s polls, networks retried for 60 s), this process as lock owner.
    pub fn new(
        parallel: usize,
        command_timeout: Duration,
        managers: Vec<String>,
        leave_swarm: bool,
        purge: bool,
    ) -> Options {
        Options {
            parallel,
            command_timeout,
            poll_interval: POLL_INTERVAL,
            network_timeout: Duration::from_secs(60),
            leave_swarm,
            force: false,
            purge,
            managers,
            owner: LockOwner::current("teardown"),
        }
    }
}

/// The rows for the summary (the manager, nodes, stacks, networks) and what was removed.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownResult {
    #[serde(rename = "hosts")]
    pub rows: Vec<Row>,
    /// What existed when the teardown began.
    pub found: Survey,
    pub removed_stacks: Vec<String>,
    pub removed_networks: Vec<String>,
}

impl TeardownResult {
    pub fn failed(&self) -> bool {
        crate::exec::report::any_failed(&self.rows)
    }
    pub fn changed(&self) -> bool {
        crate::exec::report::any_changed(&self.rows)
    }
}

/// The rows a progress display should show: the manager, the nodes when they have work
/// (purge, leave), then the stacks and networks of the survey.
pub fn row_names(survey: &Survey, leader: &str, nodes: &[String], opts: &Options) -> Vec<String> {
    let mut rows = vec![leader.to_string()];
    if opts.purge || opts.leave_swarm {
        let mut others: Vec<&String> = nodes.iter().filter(|n| *n != leader).collect();
        others.sort();
        rows.extend(others.into_iter().cloned());
    }
    rows.extend(survey.stacks.iter().map(|s| RowId::stack(s).label()));
    rows.extend(survey.networks.iter().map(|n| RowId::network(n).label()));
    rows
}

/// Tears down. `leader` is a reachable manager; `nodes` every node to check for
/// leftover containers (and to purge or dissolve), the leader included, and `engines`
/// their Engine APIs (the leader's open already). `interrupt` as in
/// [`crate::exec::lock::with_lock`]: the lock is released on every path.
pub async fn execute<R: Remote + 'static>(
    opts: &Options,
    playbook: &Playbook,
    leader: Arc<R>,
    engines: Arc<Engines<R>>,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> TeardownResult {
    let t = Teardown {
        opts,
        playbook,
        leader_row: RowId::host(leader.host()),
        leader,
        nodes,
        rows: Rows::new(reporter, &[]),
        found: Mutex::new(Survey::default()),
        removed_stacks: Mutex::new(Vec::new()),
        removed_networks: Mutex::new(Vec::new()),
        engines,
        watches: Mutex::new(Vec::new()),
    };
    t.rows.with(&t.leader_row, |_| {});
    let holder = Holder {
        remote: &*t.leader,
        owner: &opts.owner,
        timeout: opts.command_timeout,
        rows: &t.rows,
        row: &t.leader_row,
    };
    with_lock(holder, interrupt, t.teardown()).await;
    t.finish()
}

struct Teardown<'a, R> {
    opts: &'a Options,
    playbook: &'a Playbook,
    leader: Arc<R>,
    leader_row: RowId,
    nodes: HashMap<String, Arc<R>>,
    rows: Rows,
    found: Mutex<Survey>,
    removed_stacks: Mutex<Vec<String>>,
    removed_networks: Mutex<Vec<String>>,
    /// Each node's Engine API: what is left of a stack is asked there, without a `docker`
    /// process per poll.
    engines: Arc<Engines<R>>,
    /// Each node's watch of its stack containers' removals, where it could be opened;
    /// taken by the wait for the containers.
    watches: Mutex<Vec<Watch>>,
}

/// A stack being removed: its time is up at `deadline` (its `timeout` after its
/// `docker stack rm`).
struct Removing {
    name: String,
    deadline: Instant,
    timeout: Duration,
}

/// What holds a removed stack up on a node (see [`Teardown::node_leftovers`]).
struct Leftover {
    /// `None`: every stack (the node could not say).
    stack: Option<String>,
    what: String,
    /// The node was given up as unreachable: no later poll will answer.
    gone: bool,
}

/// The first check that a stack is gone, or the first retry of a network removal; then
/// backing off to the poll interval (a quarter of a second when every check goes through
/// the API: a teardown is mostly waiting for Docker, so the end of each wait is seen
/// sooner; a poll is one request per node over a stream already open, no process there).
const FIRST_POLL: Duration = Duration::from_millis(100);
const API_POLL_MAX: Duration = Duration::from_millis(250);

impl<R: Remote + 'static> Teardown<'_, R> {
    async fn root(&self, cmd: String) -> Result<Output, StepError> {
        root(&*self.leader, cmd, self.opts.command_timeout).await
    }

    /// Runs a root command on every node at once (bounded), in node-name order; `step`
    /// is shown on each node's row.
    async fn on_every_node(
        &self,
        cmd: String,
        step: Option<&'static str>,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, StepError>)> {
        self.on_nodes(self.sorted_nodes(), move |_| cmd.clone(), step, timeout)
            .await
    }

    /// Runs a root command on these nodes at once (bounded), in the order given.
    async fn on_nodes(
        &self,
        names: Vec<String>,
        cmd: impl Fn(&str) -> String,
        step: Option<&'static str>,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, StepError>)> {
        parallel_map(names, self.opts.parallel, |n| {
            let remote = self.nodes[&n].clone();
            let cmd = cmd(&n);
            let rows = self.rows.clone();
            async move {
                if let Some(step) = step {
                    rows.step(&RowId::host(&n), step);
                }
                let r = root(&*remote, cmd, timeout).await;
                (n, r)
            }
        })
        .await
    }

    fn sorted_nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.nodes.keys().cloned().collect();
        names.sort();
        names
    }

    /// The Engine API of a node (the leader's is open already).
    async fn engine(&self, node: &str) -> Result<Arc<Engine>, String> {
        self.engines.get(node).await.map_err(|e| e.to_string())
    }

    /// Opens the Engine API of every node not open yet, and on every node a watch of its
    /// stack containers' removals, both relays at once.
    async fn open_engines(&self) {
        let opened = parallel_map(self.sorted_nodes(), self.opts.parallel, |n| {
            let engines = self.engines.clone();
            async move {
                let w = engines
                    .get_watching(&n, &api::stack_container_removals())
                    .await;
                (n, w)
            }
        })
        .await;
        let mut watches = self.watches.lock().unwrap();
        for (n, opened) in opened {
            match opened {
                // Without a watch the node's containers are still polled, as often as
                // before.
                Ok((_, Ok(w))) => watches.push(w),
                Ok((_, Err(_))) => {}
                // Its polls say why, each time.
                Err(e) => self.rows.note(&RowId::host(&n), &e.to_string()),
            }
        }
    }

    /// The longest wait between two polls: a poll is one request per node over a relay
    /// already open, no process there.
    fn max_interval(&self) -> Duration {
        self.opts.poll_interval.min(API_POLL_MAX)
    }

    async fn teardown(&self) {
        let leader = &self.leader_row;
        // A dissolution that would lose quorum is refused before anything is removed.
        if self.opts.leave_swarm {
            self.rows.step(leader, "plan the swarm's dissolution");
            match self.dissolution().await {
                Err(e) => {
                    self.rows.fail(leader, "leave the swarm", &e);
                    return;
                }
                Ok((plan, _)) => {
                    if let Some(why) = self.quorum_refusal(&plan) {
                        self.rows.fail(leader, "leave the swarm", &why);
                        return;
                    }
                }
            }
        }
        self.rows.step(leader, "list what exists");
        let found = match self.engine(self.leader.host()).await {
            Ok(e) => survey(&e, self.playbook, self.opts.command_timeout).await,
            Err(e) => Err(StepError(e)),
        };
        let found = match found {
            Ok(s) => s,
            Err(e) => {
                self.rows.fail(leader, "list what exists", &e.0);
                return;
            }
        };
        *self.found.lock().unwrap() = found.clone();
        if found.is_empty() {
            self.rows.note(leader, &found.describe());
        }

        let mut stuck: Option<String> = None;
        // The stacks whose services and networks are gone, with when their wait ends.
        let mut removing: Vec<Removing> = Vec::new();
        for (k, name) in found.stacks.iter().enumerate() {
            let row = RowId::stack(name);
            self.rows.step(&row, "docker stack rm");
            // The nodes' API relays are only worth starting when there is something to
            // wait for: they start while the first stack is being removed.
            let (removed, ()) = tokio::join!(self.root(stack::stack_rm(name)), async {
                if k == 0 {
                    self.open_engines().await;
                }
            });
            if let Err(e) = removed {
                self.rows.fail(&row, "docker stack rm", &e.0);
                self.rows.close(&row);
                stuck.get_or_insert(name.clone());
                continue;
            }
            let timeout = self
                .playbook
                .stacks
                .iter()
                .find(|s| &s.name == name)
                .map(|s| s.timeout)
                .unwrap_or(self.opts.network_timeout);
            let stack = Removing {
                name: name.clone(),
                deadline: Instant::now() + timeout,
                timeout,
            };
            // Reverse order: this stack's services and networks are gone from the swarm
            // before the one before it is removed (see the module header).
            self.rows
                .step(&row, "wait until its services and networks are gone");
            match self.wait_manager_side(&stack).await {
                Ok(()) => {
                    self.rows.step(&row, "wait until its containers are gone");
                    removing.push(stack);
                }
                Err(e) => {
                    self.rows.fail(&row, "wait until gone", &e);
                    self.rows.close(&row);
                    stuck.get_or_insert(name.clone());
                }
            }
        }
        // A teardown cut short (a node given up as unreachable) leaves stacks gone from
        // the swarm whose containers that node still runs; its dockerd removes them once
        // it hears from the managers again. The rerun finds the networks still there,
        // and waits for those containers too. (Nothing found: nothing was cut short.)
        if !found.is_empty() {
            let gone: Vec<&crate::config::Stack> = self
                .playbook
                .stacks
                .iter()
                .filter(|s| !found.stacks.contains(&s.name))
                .collect();
            if !gone.is_empty() {
                let left = self.node_leftovers().await;
                for st in gone {
                    if left
                        .iter()
                        .any(|l| l.stack.as_deref() == Some(st.name.as_str()))
                    {
                        self.rows.step(
                            &RowId::stack(&st.name),
                            "wait until its containers are gone",
                        );
                        removing.push(Removing {
                            name: st.name.clone(),
                            deadline: Instant::now() + st.timeout,
                            timeout: st.timeout,
                        });
                    }
                }
            }
        }
        // Their containers, on every node, all at once.
        if let Some(s) = self.wait_containers(&removing).await {
            stuck.get_or_insert(s);
        }

        for net in &found.networks {
            let row = RowId::network(net);
            if let Some(s) = &stuck {
                self.rows
                    .skip(&row, &format!("not attempted: stack {s} is not gone"));
                continue;
            }
            self.rows.step(&row, "docker network rm");
            match self.remove_network(net).await {
                Ok(true) => {
                    self.rows.changed(&row, "removed".into());
                    self.removed_networks.lock().unwrap().push(net.clone());
                }
                Ok(false) => {}
                Err(e) => self.rows.fail(&row, "docker network rm", &e),
            }
            self.rows.close(&row);
        }

        if self.opts.purge || self.opts.leave_swarm {
            // Every node gets a row: the summary then shows the ones with nothing to do.
            for n in self.sorted_nodes() {
                self.rows.with(&RowId::host(&n), |_| {});
            }
        }
        // Purging images still in use, or dissolving a swarm whose stacks would not go,
        // would turn one failure into several: both wait for a clean run.
        let failed = self.rows.any_failed();
        if failed && (self.opts.purge || self.opts.leave_swarm) {
            let what = match (self.opts.purge, self.opts.leave_swarm) {
                (true, true) => "purge and leave swarm",
                (true, false) => "purge",
                _ => "leave swarm",
            };
            self.rows
                .fail(leader, what, "not attempted: an earlier step failed");
            return;
        }
        if self.opts.purge {
            self.purge().await;
        }
        if self.opts.leave_swarm {
            self.leave().await;
        }
    }

    /// Waits until the stack has no service or network on the manager.
    async fn wait_manager_side(&self, stack: &Removing) -> Result<(), String> {
        let mut interval = FIRST_POLL;
        loop {
            let left = self.manager_leftovers(&stack.name).await;
            if left.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= stack.deadline {
                return Err(format!(
                    "still present after {}: {}",
                    secs(stack.timeout),
                    left.join(", ")
                ));
            }
            tokio::time::sleep(interval.min(stack.deadline - now)).await;
            interval = (interval * 3 / 2).min(self.max_interval());
        }
    }

    /// Waits until none of these stacks has a container left on any node, every node
    /// asked at once, once per poll for all of them. Each stack's row ends as soon as its
    /// last container is gone (removed), or when its time is up (failed, naming what is
    /// left where); the first stack that failed is returned.
    ///
    /// Between polls it listens to every node's watch: a removed container wakes it at
    /// once, so the end of the wait is seen as it happens. While every node is watched,
    /// the polls back off to the poll interval (they only guard against a lost event);
    /// a node without a watch, or whose watch ended, is polled as often as before.
    async fn wait_containers(&self, stacks: &[Removing]) -> Option<String> {
        let mut pending: Vec<&Removing> = stacks.iter().collect();
        let mut stuck = None;
        let mut interval = FIRST_POLL;
        let removed = Arc::new(tokio::sync::Notify::new());
        let watched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Dropped at the end of the wait: each task stops and its relay ends.
        let mut listening = tokio::task::JoinSet::new();
        for mut w in std::mem::take(&mut *self.watches.lock().unwrap()) {
            let (removed, watched) = (removed.clone(), watched.clone());
            watched.fetch_add(1, Ordering::SeqCst);
            listening.spawn(async move {
                while w.next().await {
                    removed.notify_one();
                }
                watched.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while !pending.is_empty() {
            let left = self.node_leftovers().await;
            let now = Instant::now();
            pending.retain(|s| {
                let row = RowId::stack(&s.name);
                let mine: Vec<&Leftover> = left
                    .iter()
                    .filter(|l| l.stack.as_deref().is_none_or(|x| x == s.name))
                    .collect();
                let here: Vec<&str> = mine.iter().map(|l| l.what.as_str()).collect();
                if here.is_empty() {
                    self.rows.changed(&row, "removed".into());
                    self.removed_stacks.lock().unwrap().push(s.name.clone());
                } else if mine.iter().all(|l| l.gone) {
                    // All that holds it up is nodes given up as unreachable: no later
                    // poll will see them.
                    self.rows.fail(
                        &row,
                        "wait until gone",
                        &format!(
                            "whether its containers are gone there is unknown: {}",
                            here.join(", ")
                        ),
                    );
                    stuck.get_or_insert(s.name.clone());
                } else if now >= s.deadline {
                    self.rows.fail(
                        &row,
                        "wait until gone",
                        &format!(
                            "still present after {}: {}",
                            secs(s.timeout),
                            here.join(", ")
                        ),
                    );
                    stuck.get_or_insert(s.name.clone());
                } else {
                    return true;
                }
                // The stack's row ends now, with its own time, while the others go on.
                self.rows.close(&row);
                false
            });
            let Some(next) = pending.iter().map(|s| s.deadline).min() else {
                break;
            };
            let now = Instant::now();
            tokio::select! {
                () = tokio::time::sleep(interval.min(next.saturating_duration_since(now))) => {}
                () = removed.notified() => {}
            }
            let max = if watched.load(Ordering::SeqCst) == self.nodes.len() {
                self.opts.poll_interval
            } else {
                self.max_interval()
            };
            interval = (interval * 3 / 2).min(max);
        }
        listening.abort_all();
        // In the stacks' order, as a stack-by-stack wait would have found them.
        self.removed_stacks
            .lock()
            .unwrap()
            .sort_by_key(|n| stacks.iter().position(|s| &s.name == n));
        stuck
    }

    /// What is left of a stack on the manager: services and networks.
    async fn manager_leftovers(&self, name: &str) -> Vec<String> {
        let leader = self.leader_row.name.as_str();
        let timeout = self.opts.command_timeout;
        let counts = match self.engine(leader).await {
            Ok(e) => e
                .batch(&api::stack_leftovers(name), timeout)
                .await
                .map_err(String::from)
                .and_then(|r| {
                    api::all_ok(&r)?;
                    Ok((api::count_list(&r[0].body)?, api::count_list(&r[1].body)?))
                }),
            Err(e) => Err(e),
        };
        let mut left = Vec::new();
        match counts {
            Ok((services, networks)) => {
                if services > 0 {
                    left.push(format!("{services} service(s)"));
                }
                if networks > 0 {
                    left.push(format!("{networks} network(s)"));
                }
            }
            Err(e) => left.push(format!("{leader}: {e}")),
        }
        left
    }

    /// The stacks' containers left on the nodes, all asked at once (one request per node
    /// for every stack): "N container(s) on NODE" for a stack, or "NODE: error" for no
    /// stack in particular when a node could not say (it holds up every stack; for good
    /// when the transport gave the node up). A node whose relay broke (a lost connection)
    /// is asked over a new one at the next poll, on the connection the transport makes
    /// again.
    async fn node_leftovers(&self) -> Vec<Leftover> {
        let timeout = self.opts.command_timeout;
        let results = parallel_map(self.sorted_nodes(), self.opts.parallel, |n| {
            let engines = self.engines.clone();
            async move {
                let counts = match engines.get(&n).await {
                    Ok(e) => match e.call(api::stack_containers(), timeout).await {
                        Ok(r) => api::read(&r, api::count_by_stack)
                            .map_err(|e| (format!("{n}: {e}"), false)),
                        Err(e) => Err((e.to_string(), e.is_unreachable())),
                    },
                    Err(e) => Err((e.to_string(), e.is_unreachable())),
                };
                (n, counts)
            }
        })
        .await;
        let mut left = Vec::new();
        for (n, r) in results {
            match r {
                Ok(counts) => left.extend(counts.into_iter().map(|(stack, c)| Leftover {
                    stack: Some(stack),
                    what: format!("{c} container(s) on {n}"),
                    gone: false,
                })),
                Err((e, gone)) => left.push(Leftover {
                    stack: None,
                    // The engine's words name the host already.
                    what: e,
                    gone,
                }),
            }
        }
        left
    }

    /// Removes a network, retrying while Docker says it still has endpoints (tasks of a
    /// just removed stack detach asynchronously). `Ok(false)` when it was already gone.
    async fn remove_network(&self, net: &str) -> Result<bool, String> {
        let deadline = Instant::now() + self.opts.network_timeout;
        let mut interval = FIRST_POLL;
        loop {
            // Through the leader's Engine API: Docker's message says what holds it.
            let r = self
                .engine(self.leader.host())
                .await?
                .call(api::network_remove(net), self.opts.command_timeout)
                .await?;
            if r.ok() {
                return Ok(true);
            }
            let e = api::error_message(&r);
            match network::rm_failure(&e) {
                RmFailure::Gone => return Ok(false),
                RmFailure::Other => return Err(e),
                RmFailure::InUse => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(format!(
                            "still in use after {}: {e}",
                            secs(self.opts.network_timeout)
                        ));
                    }
                    self.rows.output(&RowId::network(net), &e);
                    tokio::time::sleep(interval.min(deadline - now)).await;
                    interval = (interval * 3 / 2).min(self.opts.poll_interval);
                }
            }
        }
    }

    async fn purge(&self) {
        let leader = &self.leader_row;
        self.rows
            .step(leader, "purge stack files and deploy records");
        let names: Vec<&str> = self
            .playbook
            .stacks
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        match self.root(stack::stacks_purge(&names)).await {
            Ok(out) => {
                for d in stack::parse_purged(&out.stdout_str()) {
                    self.rows.changed(leader, format!("purge {d}"));
                }
            }
            Err(e) => self.rows.fail(leader, "purge stack files", &e.0),
        }
        let images: Vec<String> = self
            .playbook
            .images
            .iter()
            .map(|i| i.name.clone())
            .collect();
        if images.is_empty() {
            return;
        }
        let refs: Vec<&str> = images.iter().map(String::as_str).collect();
        let results = self
            .on_every_node(
                image::images_purge(&refs),
                Some("purge shipped images"),
                self.opts.command_timeout,
            )
            .await;
        for (n, r) in results {
            let row = RowId::host(&n);
            match r {
                Ok(out) => {
                    for name in image::parse_purged(&out.stdout_str(), &images) {
                        self.rows.changed(&row, format!("remove image {name}"));
                    }
                }
                Err(e) => self.rows.fail(&row, "purge shipped images", &e.0),
            }
        }
    }

    /// How the swarm would be dissolved, from the leader's list of nodes and each node's
    /// word on which node it is ([`node::dissolve`]), all asked through their Engine APIs,
    /// and the hosts whose Docker did not answer (they cannot leave), with why.
    async fn dissolution(&self) -> Result<(Dissolution, Vec<(String, String)>), String> {
        let asked = parallel_map(self.sorted_nodes(), self.opts.parallel, |n| {
            let engines = self.engines.clone();
            async move {
                let local = tokio::time::timeout(MANAGER_ANSWER, async {
                    let e = engines.get(&n).await?;
                    let r = e.call(api::info(), MANAGER_ANSWER).await?;
                    api::read(&r, api::parse_info)
                })
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "{n}: its Docker did not answer within {}",
                        secs(MANAGER_ANSWER)
                    ))
                });
                (n, local)
            }
        })
        .await;
        let mut answered = Vec::new();
        let mut silent = Vec::new();
        for (host, r) in asked {
            match r {
                Ok(local) => match local.local_node_state.as_str() {
                    "active" if !local.node_id.is_empty() => answered.push((host, local.node_id)),
                    // In no swarm: nothing to leave.
                    "inactive" => {}
                    state => silent.push((host, format!("its swarm state is {state:?}"))),
                },
                Err(e) => silent.push((host, e)),
            }
        }
        let leader = self.leader_row.name.clone();
        let Some(leader_id) = answered
            .iter()
            .find(|(h, _)| *h == leader)
            .map(|(_, id)| id.clone())
        else {
            return Err(format!(
                "{leader}, the manager acted through, did not say which node it is"
            ));
        };
        let nodes = swarm_nodes(&*self.engine(&leader).await?, self.opts.command_timeout)
            .await
            .map_err(|e| format!("cannot list the nodes: {e}"))?;
        Ok((
            node::dissolve(&nodes, &answered, (&leader, &leader_id)),
            silent,
        ))
    }

    /// The refusal of a dissolution that would lose quorum (unless forced), for the
    /// leader's row.
    fn quorum_refusal(&self, d: &Dissolution) -> Option<String> {
        (!d.quorum.is_empty() && !self.opts.force).then(|| {
            format!(
                "refused: {}; bring the managers back first, or run with --force to dissolve what can be",
                d.quorum.join("; ")
            )
        })
    }

    /// Dissolves the swarm in an order that keeps quorum to the end
    /// ([`node::dissolve`]): workers leave (in parallel), the managers that cannot leave
    /// by themselves are demoted, the other managers leave one by one, the leader last.
    /// Every leave and demotion goes through the Engine APIs.
    async fn leave(&self) {
        let leader = self.leader_row.name.clone();
        let (plan, silent) = match self.dissolution().await {
            Ok(p) => p,
            Err(e) => {
                self.rows.fail(&self.leader_row, "leave the swarm", &e);
                return;
            }
        };
        if let Some(why) = self.quorum_refusal(&plan) {
            self.rows.fail(&self.leader_row, "leave the swarm", &why);
            return;
        }
        let mut order: Vec<(String, Result<bool, String>)> = Vec::new();
        for step in plan.steps {
            match step {
                Dissolve::WorkersLeave(workers) => {
                    let mut r = parallel_map(workers, self.opts.parallel, |n| {
                        let rows = self.rows.clone();
                        let engines = self.engines.clone();
                        async move {
                            rows.step(&RowId::host(&n), "leave the swarm");
                            let left = leave_as(&engines, &n, Leave::Worker).await;
                            (n, left)
                        }
                    })
                    .await;
                    order.append(&mut r);
                }
                Dissolve::Demote { hostname, id } => {
                    let what = format!("demote {hostname} (it cannot leave by itself)");
                    self.rows.step(&self.leader_row, &what);
                    match self.demote(&leader, &id).await {
                        Ok(()) => self.rows.changed(&self.leader_row, what),
                        Err(e) => self.rows.fail(&self.leader_row, &what, &e),
                    }
                }
                Dissolve::ManagerLeaves(m) => {
                    self.rows.step(&RowId::host(&m), "leave the swarm");
                    let left = leave_as(&self.engines, &m, Leave::Manager).await;
                    order.push((m, left));
                }
                Dissolve::LeaderLeaves(_) => {
                    self.rows
                        .step(&self.leader_row, "leave the swarm (last manager)");
                    let left = leave_as(&self.engines, &leader, Leave::Force).await;
                    order.push((leader.clone(), left));
                }
            }
        }
        for (n, r) in order {
            let row = RowId::host(&n);
            match r {
                Ok(false) => {}
                Ok(true) => self.rows.changed(&row, "left the swarm".into()),
                Err(e) => self.rows.fail(&row, "leave the swarm", &e),
            }
        }
        for (host, why) in silent {
            self.rows.fail(
                &RowId::host(&host),
                "leave the swarm",
                &format!(
                    "its Docker did not answer ({why}): it still believes it is in the swarm; once it answers, run `docker swarm leave --force` on it"
                ),
            );
        }
    }

    /// Demotes node `id` through `on`'s Engine API.
    async fn demote(&self, on: &str, id: &str) -> Result<(), String> {
        demote(&*self.engine(on).await?, id, self.opts.command_timeout).await
    }

    /// The rows in order (the manager, then nodes, then stacks and networks in the order
    /// handled), with what was removed; emits each row's end.
    fn finish(self) -> TeardownResult {
        let mut rows = self.rows.finish();
        let key = |r: &Row| match r.id.kind {
            RowKind::Host if r.id == self.leader_row => 0,
            RowKind::Host => 1,
            RowKind::Stack | RowKind::Network => 2,
        };
        rows.sort_by_key(key);
        TeardownResult {
            rows,
            found: self.found.into_inner().unwrap(),
            removed_stacks: self.removed_stacks.into_inner().unwrap(),
            removed_networks: self.removed_networks.into_inner().unwrap(),
        }
    }
}

/// The swarm's nodes, as a manager lists them.
async fn swarm_nodes(engine: &Engine, timeout: Duration) -> Result<Vec<node::SwarmNode>, String> {
    let r = engine.call(api::nodes(), timeout).await?;
    api::read(&r, node::parse_node_list)
}

/// Demotes node `id` (its spec read, sent back a worker's) through a manager's engine.
async fn demote(engine: &Engine, id: &str, timeout: Duration) -> Result<(), String> {
    let r = engine.call(api::node_inspect(id), timeout).await?;
    let spec = api::read(&r, api::parse_node_spec)?;
    let r = engine
        .call(api::node_update(&spec, Some(Role::Worker), &[]), timeout)
        .await?;
    api::read(&r, |_| Ok(()))
}

/// Makes a node leave the swarm, as `kind` says, through its own Engine API; `false` when
/// it was in no swarm. A manager other than the last demotes itself first, then leaves
/// as a worker: Docker refuses a plain leave on a manager, and a forced one on a manager
/// that is not the last could break the quorum of those that remain. Demotion takes
/// effect asynchronously: the leave is tried again for up to 30 s.
async fn leave_as<R: Remote + 'static>(
    engines: &Engines<R>,
    host: &str,
    kind: Leave,
) -> Result<bool, String> {
    let timeout = LEAVE_TIMEOUT;
    let e = engines.get(host).await?;
    match kind {
        Leave::Worker => leave_once(&e, false).await,
        Leave::Force => leave_once(&e, true).await,
        Leave::Manager => {
            let info = {
                let r = e.call(api::info(), timeout).await?;
                api::read(&r, api::parse_info)?
            };
            if !info.is_active() {
                return Ok(false);
            }
            demote(&e, &info.node_id, timeout).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match leave_once(&e, false).await {
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    done => return done,
                }
            }
        }
    }
}

/// One leave (`force` or not); `false` when the node was in no swarm.
async fn leave_once(e: &Engine, force: bool) -> Result<bool, String> {
    let r = e.call(api::swarm_leave(force), LEAVE_TIMEOUT).await?;
    match api::read(&r, |_| Ok(())) {
        Ok(()) => Ok(true),
        Err(m) if swarm::in_no_swarm(&m) => Ok(false),
        Err(m) => Err(m),
    }
}

/// How long a leave may take: a manager's demotion and departure reach the raft first.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests;
