//! `rpiprov deploy`: under the lock on the manager, upload the stack files, ship the
//! images to the nodes that lack them, then deploy the stacks in playbook order, each one
//! only when its fingerprint (compose bytes, shipped image archives, variable values)
//! differs from the one recorded at its last converged deploy, and wait until it
//! converges. A failed stack stops the stacks after it: the order is a dependency order.
//!
//! Two stages: [`prepare`] reads the local files and variables (no connection; its errors
//! are usage errors), [`run`] does the remote work and returns one report per row (the
//! manager, each node, each stack) plus a per-stack detail for `--json`.
//!
//! Wiring, for the CLI layer:
//!
//! ```text
//! let prepared = deploy::prepare(&playbook)?;            // Err: usage error, exit 2
//! let opts = deploy::Options::new(parallel, ssh.command_timeout);
//! let rows = deploy::row_names(&prepared, leader.host(), &node_names);  // for ui::reporter
//! let res = deploy::run(&opts, &prepared, leader, nodes, reporter,
//!                       async { let _ = tokio::signal::ctrl_c().await; }).await;
//! ui::summary("deploy", &res.hosts, elapsed);  JsonResult { hosts: &res.hosts, details: Some(&res.stacks), .. }
//! exit code: if res.failed() { 1 } else { 0 }
//! `deploy --unlock`: lock::unlock(&*leader, timeout).await -> the sentence to print
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::converge::{self, ServiceState};
use crate::images;
use crate::lock::{self, LockOwner};
use crate::remote::{ExecRequest, Remote, UploadOutcome, UploadRequest};
use crate::run::{StepError, run_ok};
use crate::secret::Secret;
use crate::stack_commands;
use crate::ui::{Event, HostReport, Outcome, Reporter};

mod prepare;
pub use prepare::{EnvVar, Prepared, PreparedStack, fingerprint, prepare, prepare_with};

/// What the manager says of the stacks: those that exist, and the recorded fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackState {
    pub existing: HashSet<String>,
    pub recorded: HashMap<String, String>,
}

/// Reads the output of [`stack_commands::stacks_state`].
pub fn parse_state(text: &str) -> StackState {
    let mut s = StackState::default();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("stack ") {
            s.existing.insert(name.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("deployed ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(fp)) = (it.next(), it.next()) {
                s.recorded.insert(name.to_string(), fp.to_string());
            }
        }
    }
    s
}

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
    pub seconds: f64,
}

/// The whole result: rows for the summary table (manager, nodes, then `stack NAME` rows)
/// and the per-stack detail.
#[derive(Debug, Clone, Serialize)]
pub struct DeployResult {
    pub hosts: Vec<HostReport>,
    pub stacks: Vec<StackResult>,
}

impl DeployResult {
    /// Exit code 1 when true.
    pub fn failed(&self) -> bool {
        crate::ui::any_failed(&self.hosts)
    }
    pub fn changed(&self) -> bool {
        crate::ui::any_changed(&self.hosts)
    }
}

/// The summary and progress row of a stack.
pub fn stack_row(stack: &str) -> String {
    format!("stack {stack}")
}

/// The rows a progress display should show, in order: the manager, the nodes, the stacks.
pub fn row_names(prepared: &Prepared, leader: &str, nodes: &[String]) -> Vec<String> {
    let mut rows = vec![leader.to_string()];
    let mut others: Vec<&String> = nodes.iter().filter(|n| *n != leader).collect();
    others.sort();
    if !prepared.images.is_empty() {
        rows.extend(others.into_iter().cloned());
    }
    rows.extend(prepared.stacks.iter().map(|s| stack_row(&s.name)));
    rows
}

/// Time between two convergence polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How the run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes worked on at once (image shipping).
    pub parallel: usize,
    /// Limit of one ordinary remote command.
    pub command_timeout: Duration,
    /// Time between two convergence polls (2 s).
    pub poll_interval: Duration,
    /// Who takes the lock: [`LockOwner::current`]`("deploy")`.
    pub owner: LockOwner,
}

impl Options {
    /// The defaults, with this process as the lock owner.
    pub fn new(parallel: usize, command_timeout: Duration) -> Options {
        Options {
            parallel,
            command_timeout,
            poll_interval: POLL_INTERVAL,
            owner: LockOwner::current("deploy"),
        }
    }
}

/// Deploys. `leader` is a reachable manager; `nodes` every swarm node that may run the
/// shipped images (the leader included), by inventory name. `interrupt` ends the run
/// early when it completes: pass `async { let _ = tokio::signal::ctrl_c().await; }`, or
/// `std::future::pending()` for none. The lock is released on every path: success,
/// failure, interruption (a refused run leaves the holder's lock alone).
pub async fn run<R: Remote + 'static>(
    opts: &Options,
    prepared: &Prepared,
    leader: Arc<R>,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> DeployResult {
    let d = Deploy::new(opts, prepared, leader, nodes, reporter);
    let leader_name = d.leader_name.clone();
    // The interruption is watched from the first remote command on, the lock included:
    // a Ctrl-C while the lock is being taken must not leave it behind.
    let work = async {
        d.step(&leader_name, "take the deploy lock");
        if let Err(e) = lock::acquire(&*d.leader, &opts.owner, opts.command_timeout).await {
            d.fail_row(&leader_name, "lock", &e.to_string());
            d.skip_pending("not attempted: the deploy lock is held");
            return false;
        }
        d.deploy().await;
        true
    };
    let locked = tokio::select! {
        locked = work => locked,
        () = interrupt => {
            d.fail_row(&leader_name, "interrupted", "interrupted (Ctrl-C)");
            d.skip_pending("interrupted");
            // Maybe taken: releasing only removes a lock that is ours.
            true
        }
    };
    if !locked {
        return d.finish();
    }
    d.step(&leader_name, "release the deploy lock");
    match lock::release(&*d.leader, &opts.owner, opts.command_timeout).await {
        Ok(_) => {}
        Err(e) => d.fail_row(
            &leader_name,
            "release lock",
            &format!("{e}; clear it with `rpiprov deploy --unlock`"),
        ),
    }
    d.finish()
}

struct Deploy<'a, R> {
    opts: &'a Options,
    prepared: &'a Prepared,
    leader: Arc<R>,
    leader_name: String,
    nodes: HashMap<String, Arc<R>>,
    reporter: Arc<dyn Reporter>,
    rows: crate::ui::Rows,
    stacks: Mutex<Vec<StackResult>>,
    /// The stack being deployed, so an interruption names it.
    current: Mutex<Option<usize>>,
    secrets: Vec<Secret>,
    started: Instant,
}

impl<'a, R: Remote + 'static> Deploy<'a, R> {
    fn new(
        opts: &'a Options,
        prepared: &'a Prepared,
        leader: Arc<R>,
        nodes: HashMap<String, Arc<R>>,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        let leader_name = leader.host().to_string();
        let mut names = vec![leader_name.clone()];
        if !prepared.images.is_empty() {
            let mut others: Vec<String> = nodes
                .keys()
                .filter(|n| **n != leader_name)
                .cloned()
                .collect();
            others.sort();
            names.extend(others);
        }
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
                seconds: 0.0,
            })
            .collect();
        let secrets = prepared
            .stacks
            .iter()
            .flat_map(|s| s.variables.iter())
            .filter(|v| v.secret && !v.value.expose().is_empty())
            .map(|v| v.value.clone())
            .collect();
        Deploy {
            opts,
            prepared,
            leader,
            leader_name,
            nodes,
            reporter,
            rows: crate::ui::Rows::new(&names),
            stacks: Mutex::new(stacks),
            current: Mutex::new(None),
            secrets,
            started: Instant::now(),
        }
    }

    /// Creates the playbook's networks that do not exist; a network that exists with other
    /// options is an error (Docker cannot change one in place), as in bootstrap.
    async fn ensure_networks(&self) -> Result<(), StepError> {
        let names: Vec<&str> = self
            .prepared
            .networks
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        let out = self.root(crate::commands::network_inspect(&names)).await?;
        let existing = crate::facts::parse_networks(&out.stdout_str()).map_err(StepError)?;
        for net in &self.prepared.networks {
            match existing.iter().find(|n| n.name == net.name) {
                Some(have) => {
                    if let Some(conflict) = crate::plan::network_conflict(net, have) {
                        return Err(StepError(conflict));
                    }
                }
                None => {
                    self.step(&self.leader_name, &format!("create network {}", net.name));
                    self.root(crate::commands::network_create(net)).await?;
                    self.changed_row(&self.leader_name, format!("create network {}", net.name));
                }
            }
        }
        Ok(())
    }

    /// Remote text with every secret value replaced: Docker may echo a value in an error
    /// (an interpolation error quotes the text around it).
    fn redact(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in &self.secrets {
            t = t.replace(s.expose(), "<redacted>");
        }
        t
    }

    fn step(&self, row: &str, what: &str) {
        self.reporter.event(row, Event::Step(what.to_string()));
    }

    fn changed_row(&self, row: &str, what: String) {
        self.rows.changed(row, what);
    }

    fn fail_row(&self, row: &str, step: &str, error: &str) {
        self.rows.fail(row, step, &self.redact(error));
    }

    fn set_stack(&self, i: usize, f: impl FnOnce(&mut StackResult)) {
        let mut stacks = self.stacks.lock().unwrap();
        f(&mut stacks[i]);
        stacks[i].seconds = self.started.elapsed().as_secs_f64();
    }

    fn fail_stack(&self, i: usize, step: &str, error: &str) {
        let error = self.redact(error);
        self.set_stack(i, |s| {
            s.status = StackStatus::Failed;
            s.failed_step = Some(step.to_string());
            s.error = Some(error);
        });
    }

    /// Marks the stacks not attempted yet (and the one in progress, as failed).
    fn skip_pending(&self, reason: &str) {
        let current = *self.current.lock().unwrap();
        let mut stacks = self.stacks.lock().unwrap();
        for (i, s) in stacks.iter_mut().enumerate() {
            if Some(i) == current && s.status == StackStatus::Skipped && s.error.is_none() {
                s.status = StackStatus::Failed;
                s.failed_step = Some("interrupted".into());
                s.error = Some(format!("{reason} while deploying"));
            } else if s.status == StackStatus::Skipped && s.error.is_none() {
                s.error = Some(reason.to_string());
            }
        }
    }

    async fn root(&self, cmd: String) -> Result<crate::remote::Output, StepError> {
        run_ok(
            &*self.leader,
            ExecRequest::new(cmd)
                .privileged()
                .timeout(self.opts.command_timeout),
        )
        .await
    }

    /// Everything done under the lock.
    async fn deploy(&self) {
        let leader = self.leader_name.clone();

        // The playbook's networks: a teardown removes them, and the stacks need them.
        if !self.prepared.networks.is_empty() {
            self.step(&leader, "check networks");
            if let Err(e) = self.ensure_networks().await {
                self.fail_row(&leader, "networks", &e.0);
                self.skip_pending("not attempted: the playbook's networks are not ready");
                return;
            }
        }

        // Images first: a stack must not start before its images are on the nodes.
        let shipped = images::ship(
            &self.nodes,
            &self.prepared.images,
            self.opts.parallel,
            self.opts.command_timeout,
            self.reporter.clone(),
        )
        .await;
        // image name -> nodes that may lack it
        let mut lacking: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &shipped {
            for img in &n.loaded {
                self.changed_row(&n.host, format!("load image {img}"));
            }
            if let Some((what, err)) = &n.failed {
                let step = if what == "check images" {
                    what.clone()
                } else {
                    format!("load image {what}")
                };
                self.fail_row(&n.host, &step, err);
                for img in &n.not_loaded {
                    lacking.entry(img.clone()).or_default().push(n.host.clone());
                }
            }
        }

        self.step(&leader, "read the stacks' state");
        let names: Vec<&str> = self
            .prepared
            .stacks
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let state = match self.root(stack_commands::stacks_state(&names)).await {
            Ok(out) => parse_state(&out.stdout_str()),
            Err(e) => {
                self.fail_row(&leader, "read stack state", &e.0);
                self.skip_pending("not attempted: the stack state could not be read");
                return;
            }
        };

        let mut blocked: Option<String> = None;
        for (i, st) in self.prepared.stacks.iter().enumerate() {
            if let Some(b) = &blocked {
                self.set_stack(i, |s| {
                    s.error = Some(format!("not attempted: stack {b} failed before it"))
                });
                continue;
            }
            *self.current.lock().unwrap() = Some(i);
            let ok = self.deploy_stack(i, st, &state, &lacking).await;
            *self.current.lock().unwrap() = None;
            if !ok {
                blocked = Some(st.name.clone());
            }
        }
        let unchanged = self
            .stacks
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.status == StackStatus::Unchanged);
        if unchanged && !self.prepared.stacks.is_empty() {
            self.reporter.event(
                &leader,
                Event::Note(format!(
                    "all {} stacks unchanged since their last deploy; nothing deployed",
                    self.prepared.stacks.len()
                )),
            );
        }
    }

    /// Uploads, decides, deploys and waits for one stack; false when it failed.
    async fn deploy_stack(
        &self,
        i: usize,
        st: &PreparedStack,
        state: &StackState,
        lacking: &BTreeMap<String, Vec<String>>,
    ) -> bool {
        let row = stack_row(&st.name);
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

        self.step(&row, "upload");
        let upload = self
            .leader
            .upload(UploadRequest {
                contents: st.contents.clone(),
                dest: stack_commands::stack_file(&st.name, &st.file_name),
                mode: 0o644,
                privileged: true,
            })
            .await;
        match upload {
            Ok(UploadOutcome::Written) => self.changed_row(
                &self.leader_name,
                format!("upload {}/{}", st.name, st.file_name),
            ),
            Ok(UploadOutcome::Unchanged) => {}
            Err(e) => {
                self.fail_stack(i, "upload", &e.to_string());
                return false;
            }
        }

        let why = match decide(&st.fingerprint, state, &st.name) {
            Decision::Unchanged => {
                self.set_stack(i, |s| s.status = StackStatus::Unchanged);
                return true;
            }
            Decision::Deploy(why) => why,
        };
        self.set_stack(i, |s| s.why = Some(why.to_string()));

        self.step(&row, &format!("docker stack deploy ({why})"));
        let stdin: String = st
            .variables
            .iter()
            .map(|v| format!("{}={}\n", v.name, v.value.expose()))
            .collect();
        let req = ExecRequest::new(stack_commands::stack_deploy(
            &st.name,
            &st.file_name,
            !st.images.is_empty(),
        ))
        .privileged()
        .stdin(stdin.into_bytes())
        .timeout(self.opts.command_timeout);
        match run_ok(&*self.leader, req).await {
            Ok(out) => {
                for line in out.stdout_str().lines().filter(|l| !l.trim().is_empty()) {
                    self.reporter
                        .event(&row, Event::Output(self.redact(line.trim())));
                }
            }
            Err(e) => {
                self.fail_stack(i, "deploy", &e.0);
                return false;
            }
        }

        let states = match self.converge(st, &row).await {
            Ok(states) => states,
            Err((states, text)) => {
                self.set_stack(i, |s| s.services = states);
                self.fail_stack(i, "converge", &text);
                return false;
            }
        };
        let n = states.len();
        self.set_stack(i, |s| s.services = states);

        // Recorded only once converged, so that a stack that failed is retried next time.
        self.step(&row, "record the deploy");
        let record = self
            .leader
            .upload(UploadRequest {
                contents: format!("{}\n", st.fingerprint).into_bytes(),
                dest: stack_commands::deployed_record(&st.name),
                mode: 0o600,
                privileged: true,
            })
            .await;
        if let Err(e) = record {
            self.fail_stack(i, "record", &e.to_string());
            return false;
        }
        self.set_stack(i, |s| {
            s.status = StackStatus::Deployed;
            s.error = None;
        });
        self.reporter
            .event(&row, Event::Note(format!("{n} service(s) converged")));
        true
    }

    /// Polls until every service converged or the stack's timeout passed. On timeout:
    /// the last states and one line per failing service.
    async fn converge(
        &self,
        st: &PreparedStack,
        row: &str,
    ) -> Result<Vec<ServiceState>, (Vec<ServiceState>, String)> {
        self.step(row, "wait for convergence");
        let deadline = Instant::now() + st.timeout;
        let mut states: Vec<ServiceState> = Vec::new();
        let mut last_error: Option<String>;
        let mut seen_converged = false;
        loop {
            let poll = self
                .root(stack_commands::stack_poll(&st.name))
                .await
                .and_then(|o| converge::parse_poll(&o.stdout_str()).map_err(StepError));
            match poll {
                Ok(p) => {
                    states = converge::assess(&st.name, &st.services, &p);
                    last_error = None;
                    if converge::all_converged(&states) {
                        // Twice in a row: right after `stack deploy` swarm may not have
                        // started the update yet (old tasks still running, no update
                        // status), and a crash-looping task can look running once.
                        if seen_converged {
                            return Ok(states);
                        }
                        seen_converged = true;
                    } else {
                        seen_converged = false;
                    }
                    let done = states.iter().filter(|s| s.converged).count();
                    self.reporter.event(
                        row,
                        Event::Output(format!("{done}/{} services converged", states.len())),
                    );
                }
                // A poll that fails (a manager busy electing) is retried until the end.
                Err(e) => last_error = Some(e.0),
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(self.opts.poll_interval.min(deadline - now)).await;
        }
        let mut text = format!("not converged after {}", crate::ui::secs(st.timeout));
        let failing = converge::failure_text(&states);
        if !failing.is_empty() {
            text.push('\n');
            text.push_str(&failing);
        }
        if let Some(e) = last_error {
            text.push_str(&format!("\nlast poll failed: {e}"));
        }
        Err((states, text))
    }

    /// The rows with their outcomes; emits each row's end.
    fn finish(self) -> DeployResult {
        let stacks = self.stacks.into_inner().unwrap();
        let mut rows = self.rows.into_inner();
        for s in &stacks {
            let mut r = HostReport::new(&stack_row(&s.stack));
            r.seconds = s.seconds;
            match s.status {
                StackStatus::Deployed => {
                    r.outcome = Outcome::Changed;
                    let why = s.why.clone().unwrap_or_default();
                    r.changed.push(format!(
                        "deployed ({why}); {} service(s) converged",
                        s.services.len()
                    ));
                }
                StackStatus::Unchanged => {}
                StackStatus::Failed => {
                    r.outcome = Outcome::Failed;
                    r.failed_step = s.failed_step.clone();
                    r.error = s.error.clone();
                }
                StackStatus::Skipped => {
                    r.outcome = Outcome::Skipped;
                    r.error = s.error.clone();
                }
            }
            rows.push(r);
        }
        for r in &rows {
            let msg = match (&r.error, r.changed.is_empty()) {
                (Some(e), _) => match &r.failed_step {
                    Some(step) => format!("{step}: {e}"),
                    None => e.clone(),
                },
                (None, true) => "no change".into(),
                (None, false) => format!("{} change(s)", r.changed.len()),
            };
            self.reporter.event(&r.host, Event::Done(r.outcome, msg));
        }
        DeployResult {
            hosts: rows,
            stacks,
        }
    }
}

#[cfg(test)]
mod tests;
