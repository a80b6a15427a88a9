//! `rpiprov teardown`: under the deploy lock, remove the playbook's stacks in reverse
//! order, each waited for until its services, networks and containers (on every node) are
//! really gone (`docker stack rm` returns before: moby #29293, #30942), then the
//! playbook's networks, retried while Docker still holds endpoints on them. Optionally
//! purge what rpiprov left on the hosts and dissolve the swarm. Only what the playbook
//! declares is touched.
//!
//! [`survey`] lists what would be removed, for the confirmation prompt of the CLI.
//!
//! ```text
//! let found = teardown::survey(&*leader, &playbook, timeout).await?;
//! if !yes { ask(found.describe()) }       // "will remove, in this order: stacks db, web; then networks DATA"
//! let opts = teardown::Options::new(parallel, timeout, manager_names, leave_swarm, purge);
//! let res = teardown::run(&opts, &playbook, leader, nodes, reporter, ctrl_c).await;
//! ui::summary("teardown", &res.hosts, elapsed); exit 1 if res.failed()
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Playbook;
use crate::lock::{self, LockOwner};
use crate::remote::{ExecRequest, Output, Remote};
use crate::run::{StepError, parallel_map, run_ok};
use crate::stack_commands::{self, LeaveKind};
use crate::ui::{Event, HostReport, Reporter};

/// What exists of the playbook on the swarm, in the order it would be removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Survey {
    /// Stacks that exist (services or networks under their name), reverse playbook order.
    pub stacks: Vec<String>,
    /// The playbook's networks that exist, reverse declaration order.
    pub networks: Vec<String>,
}

impl Survey {
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.networks.is_empty()
    }

    /// For the confirmation prompt.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "nothing to remove: no stack or network of the playbook exists".into();
        }
        let mut parts = Vec::new();
        if !self.stacks.is_empty() {
            parts.push(format!("stacks {}", self.stacks.join(", ")));
        }
        if !self.networks.is_empty() {
            parts.push(format!("networks {}", self.networks.join(", ")));
        }
        format!("will remove, in this order: {}", parts.join("; then "))
    }
}

/// What would be removed, from the output of [`stack_commands::teardown_survey`]. A stack
/// whose services are gone but whose networks linger (an interrupted `stack rm`) counts.
pub fn parse_survey(output: &str, playbook: &Playbook) -> Survey {
    let mut stacks_seen: Vec<&str> = Vec::new();
    let mut networks_seen: Vec<&str> = Vec::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("stack ") {
            stacks_seen.push(name.trim());
        } else if let Some(rest) = line.strip_prefix("network ") {
            let mut it = rest.split_whitespace();
            if let Some(name) = it.next() {
                networks_seen.push(name);
            }
            if let Some(ns) = it.next() {
                stacks_seen.push(ns);
            }
        }
    }
    Survey {
        stacks: playbook
            .stacks
            .iter()
            .rev()
            .filter(|s| stacks_seen.contains(&s.name.as_str()))
            .map(|s| s.name.clone())
            .collect(),
        networks: playbook
            .networks
            .iter()
            .rev()
            .filter(|n| networks_seen.contains(&n.name.as_str()))
            .map(|n| n.name.clone())
            .collect(),
    }
}

/// Asks the manager what exists.
pub async fn survey<R: Remote>(
    leader: &R,
    playbook: &Playbook,
    timeout: Duration,
) -> Result<Survey, StepError> {
    let out = run_ok(
        leader,
        ExecRequest::new(stack_commands::teardown_survey())
            .privileged()
            .timeout(timeout),
    )
    .await?;
    Ok(parse_survey(&out.stdout_str(), playbook))
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
    /// Workers leave, then the other managers, then the leader (`--force`).
    pub leave_swarm: bool,
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
            poll_interval: crate::deploy::POLL_INTERVAL,
            network_timeout: Duration::from_secs(60),
            leave_swarm,
            purge,
            managers,
            owner: LockOwner::current("teardown"),
        }
    }
}

/// The rows for the summary (the manager, nodes, `stack NAME`, `network NAME`) and what
/// was removed.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownResult {
    pub hosts: Vec<HostReport>,
    /// What existed when the teardown began.
    pub found: Survey,
    pub removed_stacks: Vec<String>,
    pub removed_networks: Vec<String>,
}

impl TeardownResult {
    pub fn failed(&self) -> bool {
        crate::ui::any_failed(&self.hosts)
    }
    pub fn changed(&self) -> bool {
        crate::ui::any_changed(&self.hosts)
    }
}

pub fn network_row(name: &str) -> String {
    format!("network {name}")
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
    rows.extend(survey.stacks.iter().map(|s| crate::deploy::stack_row(s)));
    rows.extend(survey.networks.iter().map(|n| network_row(n)));
    rows
}

/// Tears down. `leader` is a reachable manager; `nodes` every node to check for
/// leftover containers (and to purge or dissolve), the leader included. `interrupt` as
/// in [`crate::deploy::run`]: the lock is released on every path.
pub async fn run<R: Remote + 'static>(
    opts: &Options,
    playbook: &Playbook,
    leader: Arc<R>,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> TeardownResult {
    let t = Teardown {
        opts,
        playbook,
        leader_name: leader.host().to_string(),
        leader,
        nodes,
        reporter,
        rows: crate::ui::Rows::new::<&str>(&[]),
        found: Mutex::new(Survey::default()),
        removed_stacks: Mutex::new(Vec::new()),
        removed_networks: Mutex::new(Vec::new()),
    };
    let leader_name = t.leader_name.clone();
    t.row(&leader_name, |_| {});
    // As in deploy: the lock is taken inside the interruptible part.
    let work = async {
        t.step(&leader_name, "take the deploy lock");
        if let Err(e) = lock::acquire(&*t.leader, &opts.owner, opts.command_timeout).await {
            t.fail(&leader_name, "lock", &e.to_string());
            return false;
        }
        t.teardown().await;
        true
    };
    let locked = tokio::select! {
        locked = work => locked,
        () = interrupt => {
            t.fail(&leader_name, "interrupted", "interrupted (Ctrl-C)");
            true
        }
    };
    if !locked {
        return t.finish();
    }
    t.reporter
        .event(&leader_name, Event::Step("release the deploy lock".into()));
    if let Err(e) = lock::release(&*t.leader, &opts.owner, opts.command_timeout).await {
        t.fail(
            &leader_name,
            "release lock",
            &format!("{e}; clear it with `rpiprov deploy --unlock`"),
        );
    }
    t.finish()
}

struct Teardown<'a, R> {
    opts: &'a Options,
    playbook: &'a Playbook,
    leader: Arc<R>,
    leader_name: String,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    rows: crate::ui::Rows,
    found: Mutex<Survey>,
    removed_stacks: Mutex<Vec<String>>,
    removed_networks: Mutex<Vec<String>>,
}

impl<R: Remote + 'static> Teardown<'_, R> {
    fn row(&self, name: &str, f: impl FnOnce(&mut HostReport)) {
        self.rows.with(name, f);
    }

    fn changed(&self, name: &str, what: String) {
        self.rows.changed(name, what);
    }

    fn fail(&self, name: &str, step: &str, error: &str) {
        self.rows.fail(name, step, error);
    }

    fn skip(&self, name: &str, reason: &str) {
        self.rows.skip(name, reason);
    }

    fn step(&self, name: &str, what: &str) {
        self.reporter.event(name, Event::Step(what.to_string()));
    }

    async fn exec(&self, remote: &R, cmd: String) -> Result<Output, StepError> {
        run_ok(
            remote,
            ExecRequest::new(cmd)
                .privileged()
                .timeout(self.opts.command_timeout),
        )
        .await
    }

    /// Runs a root command on every node at once (bounded), in node-name order.
    async fn on_every_node(
        &self,
        cmd: String,
        step: Option<&'static str>,
    ) -> Vec<(String, Result<Output, StepError>)> {
        let timeout = self.opts.command_timeout;
        parallel_map(self.sorted_nodes(), self.opts.parallel, |n| {
            let remote = self.nodes[&n].clone();
            let cmd = cmd.clone();
            let reporter = self.reporter.clone();
            async move {
                if let Some(step) = step {
                    reporter.event(&n, Event::Step(step.into()));
                }
                let r = run_ok(
                    &*remote,
                    ExecRequest::new(cmd).privileged().timeout(timeout),
                )
                .await;
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

    async fn teardown(&self) {
        let leader = self.leader_name.clone();
        self.step(&leader, "list what exists");
        let found = match survey(&*self.leader, self.playbook, self.opts.command_timeout).await {
            Ok(s) => s,
            Err(e) => {
                self.fail(&leader, "list what exists", &e.0);
                return;
            }
        };
        *self.found.lock().unwrap() = found.clone();
        if found.is_empty() {
            self.reporter.event(&leader, Event::Note(found.describe()));
        }

        let mut stuck: Option<String> = None;
        for name in &found.stacks {
            let row = crate::deploy::stack_row(name);
            self.step(&row, "docker stack rm");
            if let Err(e) = self
                .exec(&self.leader, stack_commands::stack_rm(name))
                .await
            {
                self.fail(&row, "docker stack rm", &e.0);
                stuck.get_or_insert(name.clone());
                continue;
            }
            // Each stack is gone before the one it depends on is removed: reverse order
            // means something only if removals do not overlap.
            self.step(&row, "wait until gone");
            let timeout = self
                .playbook
                .stacks
                .iter()
                .find(|s| &s.name == name)
                .map(|s| s.timeout)
                .unwrap_or(self.opts.network_timeout);
            match self.wait_gone(name, timeout).await {
                Ok(()) => {
                    self.changed(&row, "removed".into());
                    self.removed_stacks.lock().unwrap().push(name.clone());
                }
                Err(e) => {
                    self.fail(&row, "wait until gone", &e);
                    stuck.get_or_insert(name.clone());
                }
            }
        }

        for net in &found.networks {
            let row = network_row(net);
            if let Some(s) = &stuck {
                self.skip(&row, &format!("not attempted: stack {s} is not gone"));
                continue;
            }
            self.step(&row, "docker network rm");
            match self.remove_network(net).await {
                Ok(true) => {
                    self.changed(&row, "removed".into());
                    self.removed_networks.lock().unwrap().push(net.clone());
                }
                Ok(false) => {}
                Err(e) => self.fail(&row, "docker network rm", &e),
            }
        }

        if self.opts.purge || self.opts.leave_swarm {
            // Every node gets a row: the summary then shows the ones with nothing to do.
            for n in self.sorted_nodes() {
                self.row(&n, |_| {});
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
            self.fail(&leader, what, "not attempted: an earlier step failed");
            return;
        }
        if self.opts.purge {
            self.purge().await;
        }
        if self.opts.leave_swarm {
            self.leave().await;
        }
    }

    /// Waits until the stack has no service or network on the manager and no container
    /// on any node.
    async fn wait_gone(&self, stack: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut left: Vec<String> = Vec::new();
            match self
                .exec(&self.leader, stack_commands::stack_leftovers(stack))
                .await
            {
                Ok(out) => {
                    let text = out.stdout_str();
                    let count = |p: &str| text.lines().filter(|l| l.starts_with(p)).count();
                    let (s, n) = (count("service "), count("network "));
                    if s > 0 {
                        left.push(format!("{s} service(s)"));
                    }
                    if n > 0 {
                        left.push(format!("{n} network(s)"));
                    }
                }
                Err(e) => left.push(format!("{}: {e}", self.leader_name)),
            }
            // Containers stop after their services are removed; only worth asking once
            // the manager side is clean.
            if left.is_empty() {
                let results = self
                    .on_every_node(stack_commands::stack_containers(stack), None)
                    .await;
                for (n, r) in results {
                    match r {
                        Ok(out) => {
                            let c = out
                                .stdout_str()
                                .lines()
                                .filter(|l| l.starts_with("container "))
                                .count();
                            if c > 0 {
                                left.push(format!("{c} container(s) on {n}"));
                            }
                        }
                        Err(e) => left.push(format!("{n}: {e}")),
                    }
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "still present after {}: {}",
                    crate::ui::secs(timeout),
                    left.join(", ")
                ));
            }
            tokio::time::sleep(self.opts.poll_interval.min(deadline - now)).await;
        }
    }

    /// Removes a network, retrying while Docker says it still has endpoints (tasks of a
    /// just removed stack detach asynchronously). `Ok(false)` when it was already gone.
    async fn remove_network(&self, net: &str) -> Result<bool, String> {
        let deadline = Instant::now() + self.opts.network_timeout;
        loop {
            match self
                .exec(&self.leader, stack_commands::network_rm(net))
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if is_gone(&e.0) => return Ok(false),
                Err(e) if is_in_use(&e.0) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(format!(
                            "still in use after {}: {}",
                            crate::ui::secs(self.opts.network_timeout),
                            e.0
                        ));
                    }
                    self.reporter
                        .event(&network_row(net), Event::Output(e.0.clone()));
                    tokio::time::sleep(self.opts.poll_interval.min(deadline - now)).await;
                }
                Err(e) => return Err(e.0),
            }
        }
    }

    async fn purge(&self) {
        let leader = self.leader_name.clone();
        self.step(&leader, "purge stack files and deploy records");
        let names: Vec<&str> = self
            .playbook
            .stacks
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        match self
            .exec(&self.leader, stack_commands::stacks_purge(&names))
            .await
        {
            Ok(out) => {
                for line in out.stdout_str().lines() {
                    if let Some(d) = line.strip_prefix("purged ") {
                        self.changed(&leader, format!("purge {d}"));
                    }
                }
            }
            Err(e) => self.fail(&leader, "purge stack files", &e.0),
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
                stack_commands::images_purge(&refs),
                Some("purge shipped images"),
            )
            .await;
        for (n, r) in results {
            match r {
                Ok(out) => {
                    for line in out.stdout_str().lines() {
                        if let Some(i) = line
                            .strip_prefix("purged ")
                            .and_then(|i| i.trim().parse::<usize>().ok())
                            && let Some(name) = images.get(i)
                        {
                            self.changed(&n, format!("remove image {name}"));
                        }
                    }
                }
                Err(e) => self.fail(&n, "purge shipped images", &e.0),
            }
        }
    }

    /// Workers leave (in parallel), then the other managers one by one, then the leader.
    async fn leave(&self) {
        let leader = self.leader_name.clone();
        let (managers, workers): (Vec<String>, Vec<String>) = self
            .sorted_nodes()
            .into_iter()
            .filter(|n| *n != leader)
            .partition(|n| self.opts.managers.contains(n));
        let timeout = self.opts.command_timeout.max(Duration::from_secs(60));
        let results = parallel_map(workers, self.opts.parallel, |n| {
            let remote = self.nodes[&n].clone();
            let reporter = self.reporter.clone();
            async move {
                reporter.event(&n, Event::Step("leave the swarm".into()));
                let r = run_ok(
                    &*remote,
                    ExecRequest::new(stack_commands::swarm_leave(LeaveKind::Worker))
                        .privileged()
                        .timeout(timeout),
                )
                .await;
                (n, r)
            }
        })
        .await;
        let mut order: Vec<(String, Result<Output, StepError>)> = results;
        for m in managers {
            self.step(&m, "leave the swarm");
            let remote = self.nodes[&m].clone();
            let r = run_ok(
                &*remote,
                ExecRequest::new(stack_commands::swarm_leave(LeaveKind::Manager))
                    .privileged()
                    .timeout(timeout),
            )
            .await;
            order.push((m, r));
        }
        self.step(&leader, "leave the swarm (last manager)");
        let r = run_ok(
            &*self.leader,
            ExecRequest::new(stack_commands::swarm_leave(LeaveKind::LastManager))
                .privileged()
                .timeout(timeout),
        )
        .await;
        order.push((leader, r));
        for (n, r) in order {
            match r {
                Ok(out) if out.stdout_str().contains("@@inactive") => {}
                Ok(_) => self.changed(&n, "left the swarm".into()),
                Err(e) => self.fail(&n, "leave the swarm", &e.0),
            }
        }
    }

    fn finish(self) -> TeardownResult {
        let mut rows = self.rows.into_inner();
        // The manager first, then nodes, then stacks and networks in the order handled.
        let leader = self.leader_name.clone();
        let key = |r: &HostReport| {
            if r.host == leader {
                0
            } else if r.host.starts_with("stack ") || r.host.starts_with("network ") {
                2
            } else {
                1
            }
        };
        rows.sort_by_key(key);
        for r in &rows {
            let msg = match (&r.error, r.changed.is_empty()) {
                (Some(e), _) => match &r.failed_step {
                    Some(step) => format!("{step}: {e}"),
                    None => e.clone(),
                },
                (None, true) => "no change".into(),
                (None, false) => r.changed.join("; "),
            };
            self.reporter.event(&r.host, Event::Done(r.outcome, msg));
        }
        TeardownResult {
            hosts: rows,
            found: self.found.into_inner().unwrap(),
            removed_stacks: self.removed_stacks.into_inner().unwrap(),
            removed_networks: self.removed_networks.into_inner().unwrap(),
        }
    }
}

/// Docker's answers for a network that still has endpoints (local scope, then swarm).
fn is_in_use(err: &str) -> bool {
    err.contains("active endpoints") || err.contains("is in use")
}

fn is_gone(err: &str) -> bool {
    err.contains("No such network") || err.contains("not found")
}

#[cfg(test)]
mod tests;
