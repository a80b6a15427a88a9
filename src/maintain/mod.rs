//! The `rpiprov maintain` executor: rolling maintenance, one node (or one batch) at a
//! time, under the deploy lock. For each node: drain it, wait until its tasks have really
//! moved (swarm's answer to `docker node update` comes long before), do the work (reboot,
//! upgrade Docker, or the user's command), wait until the node is back (after a reboot:
//! a new boot id, not merely the SSH port), make it active again, wait until its global
//! services run there again; then the next. The first failure stops the run and leaves
//! that node drained, saying so and what to do.
//!
//! The order is [`crate::plan::maintain::order`]'s, made again before each batch from a
//! fresh look at the swarm (tasks moved by the previous batch change what the next one
//! may take). Commands about the swarm go through a manager that serves it and is not in
//! the batch; the manager the command started with holds the lock and is maintained last.
//! A rebooted node gets a new connection ([`Connect`]); every host is held in a [`Slot`]
//! so that the lock's release, which goes through the first manager, uses its new one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::InstallMethod;
use crate::docker::api::{self, Request};
use crate::docker::http::Response;
use crate::docker::node::{self, Availability, SwarmNode};
use crate::docker::swarm::SwarmInfo;
use crate::docker::task::{self, Snapshot};
use crate::docker::{engine, machine};
use crate::exec::engine::Engines;
use crate::exec::lock::{Holder, LockOwner, Locked, with_lock};
use crate::exec::report::{Reporter, Row, RowId, Rows, secs};
use crate::exec::{MANAGER_ANSWER, StepError, check, parallel_map, pick_manager, root};
use crate::plan::maintain::{Target, drained, globals_back, globals_on, globals_ran, order};
use crate::remote::{
    ExecRequest, Output, Remote, RemoteError, Stream, UploadOutcome, UploadRequest,
};

/// What is done to each node while it is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Reboot it (`systemctl reboot`, or this command) and wait for a new boot id.
    Reboot { command: Option<String> },
    /// Upgrade Docker by the host's install method.
    UpgradeDocker,
    /// Run this shell command as root.
    Command(String),
}

impl Work {
    fn describe(&self) -> &'static str {
        match self {
            Work::Reboot { .. } => "reboot",
            Work::UpgradeDocker => "upgrade docker",
            Work::Command(_) => "run the command",
        }
    }
}

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub work: Work,
    /// The hosts to maintain, in inventory order, with their Docker install method.
    pub hosts: Vec<(String, InstallMethod)>,
    /// Every manager of the inventory, in inventory order.
    pub managers: Vec<String>,
    pub batch: usize,
    pub max_unavailable: u64,
    pub force: bool,
    /// How long each wait may take (tasks moving, the node coming back).
    pub timeout: Duration,
    pub poll: Duration,
    pub command_timeout: Duration,
    pub owner: LockOwner,
}

/// Opens a new connection to a host (after a reboot the old one is dead).
pub type Connect<R> = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<R, RemoteError>> + Send>> + Send + Sync,
>;

/// What a maintenance did, for the summary and `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Maintained {
    #[serde(skip)]
    pub rows: Vec<Row>,
    /// The batches as first planned (each batch is planned again before it runs).
    pub order: Vec<Vec<String>>,
    /// Hosts maintained to the end, in the order they were.
    pub done: Vec<String>,
    /// Where the run stopped and why; that host is left drained unless it says otherwise.
    pub stopped: Option<Stopped>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub host: String,
    pub error: String,
}

/// A host's connection, replaced when the host comes back from a reboot.
pub struct Slot<R> {
    name: String,
    current: Mutex<Arc<R>>,
}

impl<R> Slot<R> {
    pub fn new(name: &str, remote: Arc<R>) -> Slot<R> {
        Slot {
            name: name.to_string(),
            current: Mutex::new(remote),
        }
    }
    fn get(&self) -> Arc<R> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn replace(&self, remote: R) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(remote);
    }
}

impl<R: Remote> Remote for Slot<R> {
    fn host(&self) -> &str {
        &self.name
    }
    async fn exec(&self, req: ExecRequest) -> Result<Output, RemoteError> {
        let r = self.get();
        r.exec(req).await
    }
    async fn exec_streaming(
        &self,
        req: ExecRequest,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, RemoteError> {
        let r = self.get();
        r.exec_streaming(req, on_line).await
    }
    async fn upload(&self, req: UploadRequest) -> Result<UploadOutcome, RemoteError> {
        let r = self.get();
        r.upload(req).await
    }
    async fn open_stream(
        &self,
        req: ExecRequest,
        lifetime: Duration,
    ) -> Result<crate::remote::ExecStream, RemoteError> {
        let r = self.get();
        r.open_stream(req, lifetime).await
    }
}

/// Maintains the hosts. `sessions` holds every host that connected (targets and
/// managers); `connect` opens new connections. `interrupt` as in
/// [`crate::exec::lock::with_lock`].
pub async fn execute<R: Remote + 'static>(
    opts: &Options,
    sessions: HashMap<String, Arc<R>>,
    connect: Connect<R>,
    reporter: Arc<dyn Reporter>,
    interrupt: impl Future<Output = ()>,
) -> Maintained {
    let ids: Vec<RowId> = opts.hosts.iter().map(|(h, _)| RowId::host(h)).collect();
    let rows = Rows::new(reporter, &ids);
    let slots: HashMap<String, Arc<Slot<R>>> = sessions
        .into_iter()
        .map(|(name, s)| (name.clone(), Arc::new(Slot::new(&name, s))))
        .collect();
    let engines = Arc::new(Engines::new(&slots, opts.command_timeout));
    let m = Arc::new(Maintenance {
        opts: opts.clone(),
        engines,
        slots,
        rows,
        connect,
        report: Mutex::new(Maintained::default()),
        drained: Mutex::new(Vec::new()),
    });
    let through = match m.manager(&[]).await {
        Ok(t) => t,
        Err(e) => {
            for (h, _) in &opts.hosts {
                m.rows.skip(&RowId::host(h), &format!("not attempted: {e}"));
            }
            return Maintenance::finish(m);
        }
    };
    let row = RowId::host(through.host());
    let holder = Holder {
        remote: &*through,
        owner: &opts.owner,
        timeout: opts.command_timeout,
        rows: &m.rows,
        row: &row,
    };
    if with_lock(holder, interrupt, m.run(&through)).await == Locked::Interrupted {
        // Ctrl-C stopped the work where it was: each node drained then stays so.
        let left: Vec<(String, String)> =
            m.drained.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (host, id) in left {
            m.rows.fail(
                &RowId::host(&host),
                "interrupted",
                &format!(
                    "interrupted (Ctrl-C) while {host} was drained: it is left drained; run rpiprov maintain --on {host} again, or make it take tasks with `docker node update --availability active {id}` on a manager"
                ),
            );
        }
    }
    Maintenance::finish(m)
}

struct Maintenance<R> {
    opts: Options,
    slots: HashMap<String, Arc<Slot<R>>>,
    /// Each host's Engine API, on its slot: a relay after a reboot starts on the new
    /// connection.
    engines: Arc<Engines<Slot<R>>>,
    rows: Rows,
    connect: Connect<R>,
    report: Mutex<Maintained>,
    /// Nodes drained and not active again yet (host, node id): what Ctrl-C leaves so.
    drained: Mutex<Vec<(String, String)>>,
}

/// Why a node's maintenance stopped, and whether it was left drained.
struct Failure {
    step: String,
    error: String,
    drained: bool,
}

impl<R: Remote + 'static> Maintenance<R> {
    fn slot(&self, host: &str) -> Result<Arc<Slot<R>>, StepError> {
        self.slots
            .get(host)
            .cloned()
            .ok_or_else(|| StepError(format!("{host} is not connected")))
    }

    /// A manager that serves the swarm, not one of `avoid` (the batch being taken down)
    /// unless no other does.
    async fn manager(&self, avoid: &[String]) -> Result<Arc<Slot<R>>, StepError> {
        let candidates = |skip: &[String]| -> Vec<(String, Arc<Slot<R>>)> {
            self.opts
                .managers
                .iter()
                .filter(|m| !skip.contains(m))
                .filter_map(|m| self.slots.get(m).map(|s| (m.clone(), s.clone())))
                .collect()
        };
        let mut why = match pick_manager(&self.engines, candidates(avoid), MANAGER_ANSWER).await {
            Ok(m) => return Ok(m),
            Err(why) => why,
        };
        if !avoid.is_empty() {
            match pick_manager(&self.engines, candidates(&[]), MANAGER_ANSWER).await {
                Ok(m) => return Ok(m),
                Err(more) => why = more,
            }
        }
        let each: Vec<String> = why.iter().map(|(m, w)| format!("{m}: {w}")).collect();
        Err(StepError(if each.is_empty() {
            "no manager could be reached".to_string()
        } else {
            format!("no manager serves the swarm ({})", each.join("; "))
        }))
    }

    /// The swarm as `through` (a manager) sees it.
    async fn snapshot(&self, through: &Slot<R>) -> Result<Snapshot, StepError> {
        self.ask(through.host(), &task::snapshot_reads())
            .await
            .and_then(|r| task::read(&r).map_err(StepError))
    }

    /// One node's tasks (and the swarm's nodes and services), as manager `m` sees them.
    async fn node_poll(&self, m: &Slot<R>, id: &str) -> Result<Snapshot, StepError> {
        self.ask(m.host(), &task::node_poll_reads(id))
            .await
            .and_then(|r| task::read(&r).map_err(StepError))
    }

    /// Requests to a host's daemon, in one round trip.
    async fn ask(&self, host: &str, reqs: &[Request]) -> Result<Vec<Response>, StepError> {
        let e = self
            .engines
            .get(host)
            .await
            .map_err(|e| StepError(e.to_string()))?;
        e.batch(reqs, self.opts.command_timeout)
            .await
            .map_err(|e| StepError(e.to_string()))
    }

    /// The swarm as the host's own Docker says it takes part in it.
    async fn local(&self, host: &str) -> Result<SwarmInfo, StepError> {
        let r = self.ask(host, &[api::info()]).await?;
        api::read(&r[0], api::parse_info).map_err(StepError)
    }

    /// Node `id` as manager `m` sees it.
    async fn node_entry(
        &self,
        m: &Slot<R>,
        id: &str,
    ) -> Result<(SwarmNode, api::NodeSpec), StepError> {
        let r = self.ask(m.host(), &[api::node_inspect(id)]).await?;
        let entry = api::read(&r[0], node::parse_node).map_err(StepError)?;
        let spec = api::read(&r[0], api::parse_node_spec).map_err(StepError)?;
        Ok((entry, spec))
    }

    /// Sets node `id`'s availability through manager `m`.
    async fn set_availability(
        &self,
        m: &Slot<R>,
        id: &str,
        a: Availability,
    ) -> Result<(), StepError> {
        let (_, spec) = self.node_entry(m, id).await?;
        let r = self
            .ask(m.host(), &[api::node_availability(&spec, a)])
            .await?;
        api::read(&r[0], |_| Ok(())).map_err(StepError)
    }

    fn skip_rest(&self, hosts: &[String], why: &str) {
        for h in hosts {
            let id = RowId::host(h);
            if self.rows.failed(&id) == Some(false) && !self.report().done.contains(h) {
                self.rows.skip(&id, why);
            }
        }
    }

    fn report(&self) -> std::sync::MutexGuard<'_, Maintained> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self: &Arc<Self>, through: &Arc<Slot<R>>) {
        let hosts: Vec<String> = self.opts.hosts.iter().map(|(h, _)| h.clone()).collect();
        // Each host's node, in its own words.
        let mut asked: Vec<String> = hosts.clone();
        if !asked.iter().any(|h| h == through.host()) {
            asked.push(through.host().to_string());
        }
        let answers = parallel_map(asked, self.opts.hosts.len().max(1), |h| {
            let m = self.clone();
            async move {
                let r = m.local(&h).await;
                (h, r)
            }
        })
        .await;
        let mut node_ids: HashMap<String, String> = HashMap::new();
        for (h, r) in answers {
            match r {
                Ok(local) if local.is_active() && !local.node_id.is_empty() => {
                    node_ids.insert(h, local.node_id);
                }
                Ok(local) => self.rows.fail(
                    &RowId::host(&h),
                    "plan",
                    &format!(
                        "it is in no swarm (its swarm state is {:?}): bootstrap it first, or leave it out of --on",
                        local.local_node_state
                    ),
                ),
                Err(e) => self.rows.fail(&RowId::host(&h), "swarm state", &e.0),
            }
        }
        if self.rows.any_failed() {
            self.skip_rest(&hosts, "not attempted: a host could not be planned");
            return;
        }
        let swarm = match self.snapshot(through).await {
            Ok(s) => s,
            Err(e) => {
                self.rows
                    .fail(&RowId::host(through.host()), "look at the swarm", &e.0);
                self.skip_rest(&hosts, "not attempted: the swarm could not be read");
                return;
            }
        };
        let through_id = node_ids.get(through.host()).cloned();
        let plan = |swarm: &Snapshot, left: &[String]| {
            let targets: Vec<Target> = left
                .iter()
                .map(|h| Target {
                    host: h,
                    node_id: &node_ids[h],
                })
                .collect();
            order(&crate::plan::maintain::Input {
                swarm,
                targets: &targets,
                batch: self.opts.batch,
                max_unavailable: self.opts.max_unavailable,
                force: self.opts.force,
                through: through_id.as_deref(),
            })
        };
        let first = match plan(&swarm, &hosts) {
            Ok(o) => o,
            Err(refused) => {
                for (h, why) in refused {
                    self.rows.fail(&RowId::host(&h), "plan", &why);
                }
                self.skip_rest(&hosts, "not attempted: a host was refused");
                return;
            }
        };
        for (h, w) in &first.warnings {
            self.rows.note(&RowId::host(h), &format!("warning: {w}"));
        }
        let shown: Vec<String> = first.batches.iter().map(|b| b.join(" + ")).collect();
        self.rows.note(
            &RowId::host(through.host()),
            &format!("order: {}", shown.join(", then ")),
        );
        {
            let mut r = self.report();
            r.order = first.batches.clone();
            r.warnings = first
                .warnings
                .iter()
                .map(|(h, w)| format!("{h}: {w}"))
                .collect();
        }
        for (i, batch) in first.batches.iter().enumerate() {
            for h in batch {
                self.rows.step(
                    &RowId::host(h),
                    &format!("waits its turn (batch {})", i + 1),
                );
            }
        }

        let mut left: Vec<String> = first.batches.concat();
        let mut swarm = swarm;
        loop {
            let batch = match plan(&swarm, &left) {
                Ok(o) => o.batches.into_iter().next().unwrap_or_default(),
                Err(refused) => {
                    for (h, why) in refused {
                        self.rows.fail(&RowId::host(&h), "plan", &why);
                    }
                    self.skip_rest(&left, "not attempted: maintenance stopped");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            let results = parallel_map(batch.clone(), batch.len(), |h| {
                let id = node_ids[&h].clone();
                let swarm = swarm.clone();
                let batch = batch.clone();
                let m = self.clone();
                async move {
                    let r = m.node(&h, &id, &swarm, &batch).await;
                    (h, r)
                }
            })
            .await;
            let mut stopped = false;
            for (h, r) in results {
                let row = RowId::host(&h);
                match r {
                    Ok(()) => self.report().done.push(h.clone()),
                    Err(f) => {
                        let error = if f.drained {
                            format!(
                                "{}; {h} is left drained (it takes no tasks): once fixed, run rpiprov maintain --on {h} again, or make it take tasks with `docker node update --availability active {}` on a manager",
                                f.error, node_ids[&h]
                            )
                        } else {
                            f.error
                        };
                        self.rows.fail(&row, &f.step, &error);
                        let mut r = self.report();
                        if r.stopped.is_none() {
                            r.stopped = Some(Stopped {
                                host: h.clone(),
                                error,
                            });
                        }
                        stopped = true;
                    }
                }
                self.rows.close(&row);
            }
            left.retain(|h| !batch.contains(h));
            if stopped {
                let at = self.report().stopped.as_ref().map(|s| s.host.clone());
                self.skip_rest(
                    &left,
                    &format!(
                        "not attempted: maintenance stopped at {}",
                        at.unwrap_or_default()
                    ),
                );
                return;
            }
            if left.is_empty() {
                return;
            }
            let through = match self.manager(&[]).await {
                Ok(t) => t,
                Err(e) => {
                    self.skip_rest(&left, &format!("not attempted: {e}"));
                    return;
                }
            };
            swarm = match self.snapshot(&through).await {
                Ok(s) => s,
                Err(e) => {
                    self.skip_rest(
                        &left,
                        &format!("not attempted: the swarm could not be read: {e}"),
                    );
                    return;
                }
            };
        }
    }

    /// One node, from drain to its global services running again.
    async fn node(
        &self,
        host: &str,
        id: &str,
        before: &Snapshot,
        batch: &[String],
    ) -> Result<(), Failure> {
        let row = RowId::host(host);
        let hostname = before
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.hostname.clone())
            .unwrap_or_else(|| host.to_string());
        let fail = |step: &str, drained: bool| {
            let step = step.to_string();
            move |e: StepError| Failure {
                step,
                error: e.0,
                drained,
            }
        };
        let slot = self.slot(host).map_err(fail("connect", false))?;
        let boot = if matches!(self.opts.work, Work::Reboot { .. }) {
            self.rows.step(&row, "read the boot id");
            let out = root(&*slot, machine::boot_id(), self.opts.command_timeout)
                .await
                .map_err(fail("read the boot id", false))?;
            let text = out.stdout_str();
            Some(
                machine::parse_boot_id(&text)
                    .ok_or_else(|| {
                        fail("read the boot id", false)(StepError(format!(
                            "{} holds no boot id: {}",
                            machine::BOOT_ID,
                            text.trim()
                        )))
                    })?
                    .to_string(),
            )
        } else {
            None
        };
        let mut wanted_globals = globals_on(before, &hostname);
        let was_drained = before
            .nodes
            .iter()
            .any(|n| n.id == id && n.availability == "drain");
        if was_drained {
            // Left drained (a failed run, or by hand): nothing runs on it, so what it must
            // run again once active is what it ran before.
            let m = self
                .manager(batch)
                .await
                .map_err(fail("read its task history", false))?;
            let history = self
                .node_poll(&m, id)
                .await
                .map_err(fail("read its task history", false))?;
            wanted_globals = globals_ran(&history, &hostname);
        }

        self.rows.step(&row, "drain");
        let m = self.manager(batch).await.map_err(fail("drain", false))?;
        self.set_availability(&m, id, Availability::Drain)
            .await
            .map_err(fail("drain", true))?;
        self.rows.changed(&row, "drained".into());
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((host.to_string(), id.to_string()));

        self.rows.step(&row, "wait until its tasks moved");
        self.poll(batch, id, |now| drained(&hostname, &before.services, now))
            .await
            .map_err(fail("wait until its tasks moved", true))?;

        let work = self.opts.work.describe();
        self.rows.step(&row, work);
        self.work(host, &slot).await.map_err(fail(work, true))?;
        self.rows.changed(&row, work.into());

        if let Some(boot) = boot {
            self.rows.step(&row, "wait for a new boot id");
            self.rebooted(host, &slot, &boot)
                .await
                .map_err(fail("wait for a new boot id", true))?;
        }
        self.rows.step(&row, "wait until it is back in the swarm");
        self.back(host, id, batch)
            .await
            .map_err(fail("wait until it is back in the swarm", true))?;

        self.rows.step(&row, "make it active");
        let m = self
            .manager(batch)
            .await
            .map_err(fail("make it active", true))?;
        self.set_availability(&m, id, Availability::Active)
            .await
            .map_err(fail("make it active", true))?;
        self.rows.changed(&row, "active again".into());
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(h, _)| h != host);

        if !wanted_globals.is_empty() {
            self.rows.step(&row, "wait until its global services run");
            self.poll(batch, id, |now| {
                globals_back(&hostname, &wanted_globals, now)
            })
            .await
            .map_err(fail("wait until its global services run", false))?;
        }
        Ok(())
    }

    /// Polls the node's tasks through a manager until `done` says so, up to the timeout.
    async fn poll(
        &self,
        batch: &[String],
        id: &str,
        done: impl Fn(&Snapshot) -> Result<(), String>,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last;
        loop {
            last = match self.manager(batch).await {
                Ok(m) => match self.node_poll(&m, id).await {
                    Ok(now) => match done(&now) {
                        Ok(()) => return Ok(()),
                        Err(pending) => pending,
                    },
                    Err(e) => e.0,
                },
                Err(e) => e.0,
            };
            if Instant::now() >= deadline {
                return Err(StepError(format!(
                    "not done within {}: {last}",
                    secs(self.opts.timeout)
                )));
            }
            tokio::time::sleep(self.opts.poll).await;
        }
    }

    /// The work itself, on the node.
    async fn work(&self, host: &str, slot: &Slot<R>) -> Result<(), StepError> {
        let long = self.opts.command_timeout.max(Duration::from_secs(1800));
        let cmd = match &self.opts.work {
            Work::Reboot { command } => {
                let out = root(
                    slot,
                    machine::reboot(command.as_deref()),
                    self.opts.command_timeout,
                )
                .await?;
                return machine::parse_reboot(&out.stdout_str()).map_err(StepError);
            }
            Work::UpgradeDocker => {
                let method = self
                    .opts
                    .hosts
                    .iter()
                    .find(|(h, _)| h == host)
                    .map(|(_, m)| m.clone())
                    .unwrap_or(InstallMethod::Distro);
                engine::upgrade_docker(&method).ok_or_else(|| {
                    StepError(
                        "the inventory says docker install = \"skip\": rpiprov does not manage that Docker's packages".into(),
                    )
                })?
            }
            Work::Command(c) => c.clone(),
        };
        let rows = self.rows.clone();
        let id = RowId::host(host);
        let mut on_line = move |_: Stream, line: &str| {
            if !line.trim().is_empty() {
                rows.output(&id, line);
            }
        };
        let out = slot
            .exec_streaming(
                ExecRequest::new(cmd).privileged().timeout(long),
                &mut on_line,
            )
            .await?;
        check(out).map(|_| ())
    }

    /// Waits until the host answers with another boot id than `before`, on a new
    /// connection, which then replaces the old one.
    async fn rebooted(&self, host: &str, slot: &Slot<R>, before: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last;
        loop {
            tokio::time::sleep(self.opts.poll).await;
            match (self.connect)(host.to_string()).await {
                Ok(fresh) => {
                    match root(&fresh, machine::boot_id(), self.opts.command_timeout).await {
                        Ok(out) => match machine::parse_boot_id(&out.stdout_str()) {
                            Some(id) if id != before => {
                                slot.replace(fresh);
                                // Its relay died with the old connection and its daemon.
                                self.engines.forget(host).await;
                                return Ok(());
                            }
                            Some(_) => {
                                last = "the boot id has not changed (it did not reboot yet)".into()
                            }
                            None => last = format!("no boot id in {:?}", out.stdout_str().trim()),
                        },
                        Err(e) => last = e.0,
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(StepError(format!(
                    "no new boot id within {}; last: {last}",
                    secs(self.opts.timeout)
                )));
            }
        }
    }

    /// Waits until the node's Docker says it is in the swarm and the managers see it ready.
    async fn back(&self, host: &str, id: &str, batch: &[String]) -> Result<(), StepError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last;
        loop {
            last = match self.local(host).await {
                Ok(local) if !local.is_active() => {
                    format!("its swarm state is {:?}", local.local_node_state)
                }
                Ok(_) => match self.manager(batch).await {
                    Ok(m) => match self.node_entry(&m, id).await {
                        Ok((entry, _)) if entry.state == "ready" => return Ok(()),
                        Ok((entry, _)) => format!("the managers see {host} {}", entry.state),
                        Err(e) => e.0,
                    },
                    Err(e) => e.0,
                },
                Err(e) => e.0,
            };
            if Instant::now() >= deadline {
                return Err(StepError(format!(
                    "not back within {}: {last}",
                    secs(self.opts.timeout)
                )));
            }
            tokio::time::sleep(self.opts.poll).await;
        }
    }

    /// The report, once every task of the run has ended.
    fn finish(this: Arc<Self>) -> Maintained {
        let rows = this.rows.finish();
        let mut m = this.report().clone();
        m.rows = rows;
        m
    }
}

#[cfg(test)]
mod tests;
