//! The `rpiprov bootstrap` executor: probe every host once ([`crate::exec::probe`]: its
//! shell command and its Engine API at once), plan ([`crate::plan`]), then run the plan's
//! phases with barriers between them (init before joins), hosts in parallel within a
//! phase. Docker is installed and started with the host's own tools; everything else
//! (init, join, leave, the leader's settings) goes through each host's Engine API, the
//! engine its probe opened (or a new one once Docker was started there). One row per host; a host that fails
//! stops there while the others go on, and the swarm steps of hosts that depend on a
//! failed manager are skipped. Join tokens are fetched once from the leader and go to the
//! joining node in the body of an Engine API request (`docker system dial-stdio`), never
//! in a process's argv or environment; a run that joined nodes ends by rotating the
//! tokens it used. A host's role or labels are changed only on the node the leader
//! confirms is that host's ([`crate::docker::node::check_claim`]); otherwise the host's
//! row says why and the leader goes on with its other steps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Advertise, Host, Network, Role};
use crate::docker::api::{self, Request};
use crate::docker::engine::{self, DAEMON_JSON};
use crate::docker::node;
use crate::docker::probe::{self, Facts};
use crate::docker::swarm;
use crate::exec::engine::{Engine, EngineError, Engines};
use crate::exec::preview::{Planned, Preview};
use crate::exec::report::{Reporter, Row, RowId, Rows, Silent};
use crate::exec::{StepError, check, parallel_map, root};
use crate::plan::ports::Node;
use crate::plan::preflight::{Finding, Probed, Window, errors};
use crate::plan::{self, Phase, Plan, Step, Work};
use crate::remote::{ExecRequest, Output, Remote, UploadOutcome, UploadRequest};
use crate::secret::Secret;

/// What the command was asked.
pub struct Options<'a> {
    /// The hosts to act on, in inventory order.
    pub hosts: Vec<&'a Host>,
    /// Every manager of the inventory, reachable or not.
    pub managers: Vec<&'a Host>,
    pub networks: &'a [Network],
    pub default_addr_pool: Option<&'a str>,
    pub force: bool,
    pub parallel: usize,
    pub command_timeout: Duration,
    /// Preflight checks whose errors do not stop a host (`--skip-preflight`).
    pub skip: Vec<Check>,
    /// `rpiprov doctor`: probe and run the preflight, the port test among every node
    /// included, and change nothing.
    pub preflight_only: bool,
    /// Each host's addresses as this machine knows them (not as the host says): the
    /// inventory's `address`, what it resolves to here, `advertise`. A host missing here
    /// is known by its inventory `address` only.
    pub addresses: HashMap<String, Vec<String>>,
    /// How long a half-joined node is given to complete its join by itself before it is
    /// made to leave and join again ([`REJOIN_GRACE`]).
    pub rejoin_grace: Duration,
}

/// A node whose Docker just restarted is listed down for a few seconds (until its next
/// heartbeat), and a join that timed out may still complete: this long is waited before
/// a half-joined node is repaired.
pub const REJOIN_GRACE: Duration = Duration::from_secs(20);

/// What a bootstrap (or a doctor) found and did.
pub struct Bootstrapped {
    /// One row per host, in inventory order.
    pub rows: Vec<Row>,
    /// The probed facts (for `--json`).
    pub facts: HashMap<String, Facts>,
    /// The preflight's findings, skipped checks included (they are still worth reading).
    pub findings: Vec<Finding>,
}

/// The swarm's join details, fetched once from the leader when a join needs them.
#[derive(Default)]
struct SwarmCtx {
    manager_addr: Option<String>,
    worker_token: Option<Secret>,
    manager_token: Option<Secret>,
}

struct Shared<R> {
    sessions: HashMap<String, Arc<R>>,
    rows: Rows,
    node_ids: Mutex<HashMap<String, String>>,
    swarm: tokio::sync::Mutex<SwarmCtx>,
    leader: Option<String>,
    /// Host -> the host name it reported and its addresses as this machine knows them:
    /// what the leader's node entry must show before the host's node is changed.
    known: HashMap<String, (String, Vec<String>)>,
    command_timeout: Duration,
    rejoin_grace: Duration,
    /// Each host's Engine API, opened by its probe (or at its first use after Docker
    /// started there).
    engines: Arc<Engines<R>>,
}

/// Probes, judges the preflight, plans and bootstraps. `sessions` holds the hosts that
/// connected; `failed` the ones that did not, with the reason. A host with a preflight
/// error (of a check not skipped) fails at `preflight` and nothing is done to it; the
/// port test runs only when the plan forms or joins (or for `doctor`).
pub async fn execute<R: Remote + 'static>(
    opts: &Options<'_>,
    sessions: HashMap<String, Arc<R>>,
    failed: Vec<(String, String)>,
    reporter: Arc<dyn Reporter>,
) -> Bootstrapped {
    let started = Instant::now();
    let rows = Rows::new(reporter, &[]);
    for (host, err) in failed {
        rows.connect_failed(&host, err);
        rows.close(&RowId::host(&host));
    }

    let engines = Arc::new(Engines::new(&sessions, opts.command_timeout));
    let Decided {
        facts: all_facts,
        findings,
        plan,
    } = decide(opts, &sessions, &engines, &rows).await;

    let node_ids = all_facts
        .iter()
        .filter(|(_, f)| f.swarm.is_active())
        .map(|(h, f)| (h.clone(), f.swarm.node_id.clone()))
        .collect();
    let mut swarm = SwarmCtx::default();
    if let Some(leader) = &plan.leader {
        let lf = &all_facts[leader];
        if lf.swarm.control_available && !lf.swarm.node_addr.is_empty() {
            swarm.manager_addr = Some(format!("{}:2377", lf.swarm.node_addr));
        }
    }
    let known = opts
        .hosts
        .iter()
        .chain(opts.managers.iter())
        .filter_map(|h| {
            let f = all_facts.get(&h.name)?;
            let addresses = opts
                .addresses
                .get(&h.name)
                .cloned()
                .unwrap_or_else(|| vec![h.address.clone()]);
            Some((h.name.clone(), (f.hostname.clone(), addresses)))
        })
        .collect();
    let shared = Arc::new(Shared {
        engines,
        known,
        sessions,
        rows: rows.clone(),
        node_ids: Mutex::new(node_ids),
        swarm: tokio::sync::Mutex::new(swarm),
        leader: plan.leader.clone(),
        command_timeout: opts.command_timeout,
        rejoin_grace: opts.rejoin_grace,
    });
    if !opts.preflight_only {
        run_phases(&shared, &plan, opts.parallel).await;
    }

    // The hosts acted on, and the managers outside `--on` that something happened to.
    let mut by_name: HashMap<String, Row> = rows
        .finish()
        .into_iter()
        .map(|r| (r.id.name.clone(), r))
        .collect();
    let mut names: Vec<&str> = opts.hosts.iter().map(|h| h.name.as_str()).collect();
    for m in &opts.managers {
        if !names.contains(&m.name.as_str())
            && by_name
                .get(&m.name)
                .is_some_and(|r| !r.changed.is_empty() || r.failed())
        {
            names.push(&m.name);
        }
    }
    let ordered = names
        .into_iter()
        .filter_map(|name| by_name.remove(name))
        .map(|mut r| {
            // A host that waited on the others took the whole run.
            if r.seconds == 0.0 {
                r.seconds = started.elapsed().as_secs_f64();
            }
            r
        })
        .collect();
    Bootstrapped {
        rows: ordered,
        facts: all_facts,
        findings,
    }
}

/// The address peers reach a host at for the port test: what it advertises to the swarm
/// when that is an address, else the address it is already in the swarm with, else the
/// one it was reached by.
fn test_addr(host: &Host, f: &Facts) -> String {
    match &host.advertise {
        Advertise::Address(ip) => ip.to_string(),
        _ if !f.swarm.node_addr.is_empty() => f.swarm.node_addr.clone(),
        _ if !f.reach_addr.is_empty() => f.reach_addr.clone(),
        _ => host.address.clone(),
    }
}

/// What bootstrap decided before acting: the facts, the preflight's findings, and the
/// plan without the hosts the preflight refused.
pub struct Decided {
    pub facts: HashMap<String, Facts>,
    pub findings: Vec<Finding>,
    pub plan: Plan,
}

/// Probes every connected host at once (one round trip each), judges the preflight (and
/// tests the ports when the swarm forms or grows, or for doctor), and plans: what
/// `execute` runs and `preview` shows. A host whose probe failed, or that the preflight
/// refuses, has its row failed and closed.
async fn decide<R: Remote + 'static>(
    opts: &Options<'_>,
    sessions: &HashMap<String, Arc<R>>,
    engines: &Arc<Engines<R>>,
    rows: &Rows,
) -> Decided {
    // Facts first: one probe per host, all at once; each host's engine is kept for the
    // steps.
    let net_names: Arc<Vec<String>> =
        Arc::new(opts.networks.iter().map(|n| n.name.clone()).collect());
    let names: Vec<String> = sessions.keys().cloned().collect();
    let timeout = opts.command_timeout.min(Duration::from_secs(120));
    let results = parallel_map(names, opts.parallel, |name| {
        let session = sessions[&name].clone();
        let rows = rows.clone();
        let (engines, net_names) = (engines.clone(), net_names.clone());
        async move {
            rows.step(&RowId::host(&name), "probe");
            let sent = preflight::now();
            let networks: Vec<&str> = net_names.iter().map(String::as_str).collect();
            let res = crate::exec::probe::probe(
                &*session,
                &engines,
                probe::probe(),
                &networks,
                &[],
                timeout,
            )
            .await;
            (name, res.map(|p| (p.facts, preflight::window(sent))))
        }
    })
    .await;
    let mut all_facts = HashMap::new();
    let mut windows: HashMap<String, Window> = HashMap::new();
    for (name, res) in results {
        let id = RowId::host(&name);
        match res {
            Ok((f, window)) => {
                windows.insert(name.clone(), window);
                // Until its first step (or its end), a host waits on the others.
                rows.step(&id, "probed; waiting for the plan's turn");
                all_facts.insert(name, f);
                rows.add(&id);
            }
            Err(e) => {
                rows.fail(&id, "probe", &e.0);
                rows.close(&id);
            }
        }
    }

    let acted_on: Vec<&Host> = opts
        .hosts
        .iter()
        .filter(|h| all_facts.contains_key(&h.name))
        .copied()
        .collect();
    let probed: Vec<Probed> = acted_on
        .iter()
        .map(|h| Probed {
            host: &h.name,
            facts: &all_facts[&h.name],
            window: windows.get(&h.name).copied(),
        })
        .collect();
    let mut findings = plan::preflight::judge(&probed);
    let managers: Vec<(&str, &Facts)> = opts
        .managers
        .iter()
        .filter_map(|m| Some((m.name.as_str(), all_facts.get(&m.name)?)))
        .collect();
    findings.extend(plan::preflight::manager_versions(&managers));

    let mut plan = plan::plan(&plan::Input {
        hosts: &opts.hosts,
        managers: &opts.managers,
        facts: &all_facts,
        addresses: &opts.addresses,
        networks: opts.networks,
        default_addr_pool: opts.default_addr_pool,
        force: opts.force,
    });

    // The port test: only when the swarm forms or grows (a formed fleet's second run
    // stays one probe per host), or for doctor.
    let forming = plan
        .phases
        .iter()
        .flat_map(|p| p.work.iter())
        .flat_map(|w| w.steps.iter())
        .any(|s| {
            matches!(
                s,
                Step::InitSwarm { .. } | Step::JoinSwarm { .. } | Step::Rejoin { .. }
            )
        });
    if (opts.preflight_only || forming) && !opts.skip.contains(&Check::Ports) {
        let mut members: Vec<&Host> = acted_on.clone();
        for m in &opts.managers {
            if all_facts.contains_key(&m.name) && !members.iter().any(|h| h.name == m.name) {
                members.push(m);
            }
        }
        let addrs: Vec<String> = members
            .iter()
            .map(|h| test_addr(h, &all_facts[&h.name]))
            .collect();
        let nodes: Vec<Node> = members
            .iter()
            .zip(&addrs)
            .map(|(h, addr)| {
                let f = &all_facts[&h.name];
                Node {
                    host: &h.name,
                    addr,
                    manager: h.role == Role::Manager,
                    in_swarm: f.swarm.is_active(),
                    docker: f.docker_running,
                }
            })
            .collect();
        for h in &members {
            rows.step(&RowId::host(&h.name), "test ports");
        }
        findings.extend(preflight::ports(sessions, &nodes, opts.parallel).await);
    }
    let stopped = errors(&findings, &opts.skip);
    let mut refused = Vec::new();
    for h in opts.hosts.iter().chain(opts.managers.iter()) {
        let mine: Vec<String> = stopped
            .iter()
            .filter(|f| f.host == h.name)
            .map(|f| format!("{}: {}; what to do: {}", f.check.name(), f.message, f.fix))
            .collect();
        let id = RowId::host(&h.name);
        if !mine.is_empty() && rows.failed(&id) == Some(false) {
            rows.fail(&id, "preflight", &mine.join("\n"));
            rows.close(&id);
            refused.push(h.name.clone());
        }
    }
    plan.drop_hosts(&refused);
    Decided {
        facts: all_facts,
        findings,
        plan,
    }
}

/// What `execute` would do, without doing it (`bootstrap --dry-run`): the same probe,
/// preflight and plan ([`decide`]), shown per host and phase. Hosts that could not be
/// reached, probed, or that the preflight refuses, and refused steps, are the preview's
/// problems.
pub async fn preview<R: Remote + 'static>(
    opts: &Options<'_>,
    sessions: HashMap<String, Arc<R>>,
    failed: Vec<(String, String)>,
) -> (Preview, HashMap<String, Facts>) {
    let rows = Rows::new(Arc::new(Silent), &[]);
    for (host, err) in failed {
        rows.connect_failed(&host, err);
    }
    let engines = Arc::new(Engines::new(&sessions, opts.command_timeout));
    let Decided { facts, plan, .. } = decide(opts, &sessions, &engines, &rows).await;
    let mut problems: Vec<String> = rows
        .finish()
        .into_iter()
        .filter(|r| r.failed())
        .map(|r| format!("{}: {}", r.label(), r.detail()))
        .collect();
    (preview_of(&plan, &mut problems, &opts.hosts), facts)
}

/// The preview of a plan: a row per host with steps, in the order the phases run them.
pub fn preview_of(plan: &Plan, problems: &mut Vec<String>, hosts: &[&Host]) -> Preview {
    let mut rows: Vec<Planned> = Vec::new();
    for phase in &plan.phases {
        for w in &phase.work {
            let id = RowId::host(&w.host);
            let i = match rows.iter().position(|r| r.row == id.label()) {
                Some(i) => i,
                None => {
                    rows.push(Planned::new(&id));
                    rows.len() - 1
                }
            };
            for step in &w.steps {
                if let Step::Refuse(msg) = step {
                    problems.push(format!("{}: {msg}", w.host));
                } else {
                    rows[i].steps.push(step.describe());
                }
            }
        }
    }
    rows.retain(|r| !r.steps.is_empty());
    let unchanged = hosts
        .iter()
        .filter(|h| !rows.iter().any(|r| r.row == h.name))
        .filter(|h| {
            !problems
                .iter()
                .any(|p| p.starts_with(&format!("{}: ", h.name)))
        })
        .map(|h| h.name.clone())
        .collect();
    Preview {
        command: "bootstrap".into(),
        rows,
        unchanged,
        problems: std::mem::take(problems),
    }
}

/// Runs the phases: the Docker phase on every host at once, and beside it the swarm
/// phases one after another, each host's swarm work waiting only for that host's own
/// Docker work. The leader initialises the swarm, and the hosts that have Docker join it,
/// while a fresh Pi still installs Docker; that Pi joins once its install is done, and the
/// leader's settings (labels, networks) come after every join. Within a phase, hosts at
/// once (bounded) or one by one as the phase says.
async fn run_phases<R: Remote + 'static>(shared: &Arc<Shared<R>>, plan: &Plan, parallel: usize) {
    // A host's row ends after the last phase it has work in (at once when it has none),
    // so that it shows its outcome and time while the others go on.
    let last_phase = |host: &str| {
        plan.phases
            .iter()
            .rposition(|p| p.work.iter().any(|w| w.host == host && !w.steps.is_empty()))
    };
    let hosts: Vec<String> = shared.sessions.keys().cloned().collect();
    let close_after = |phase: Option<usize>| {
        for h in hosts.iter().filter(|h| last_phase(h) == phase) {
            shared.rows.close(&RowId::host(h));
        }
    };
    close_after(None);
    let runnable = |phase: &Phase| -> Vec<Work> {
        phase
            .work
            .iter()
            .filter(|w| !w.steps.is_empty())
            .cloned()
            .collect()
    };
    let has_docker = plan
        .phases
        .first()
        .is_some_and(|p| p.name == plan::DOCKER_PHASE);
    let docker = plan.phases.first().filter(|_| has_docker).map(|p| (0, p));
    let swarm_phases = plan.phases.iter().enumerate().skip(usize::from(has_docker));
    // The hosts whose Docker work is not done yet.
    let pending: HashSet<String> = docker
        .map(|(_, p)| runnable(p).into_iter().map(|w| w.host).collect())
        .unwrap_or_default();
    let (done_tx, done_rx) = tokio::sync::watch::channel(pending);
    let docker_phase = async {
        if let Some((i, phase)) = docker {
            let limit = if phase.parallel { parallel } else { 1 };
            let done_tx = Arc::new(done_tx);
            parallel_map(runnable(phase), limit, |work| {
                let shared = shared.clone();
                let done_tx = done_tx.clone();
                let name = phase.name;
                async move {
                    run_work(&shared, &work, name).await;
                    done_tx.send_modify(|p| {
                        p.remove(&work.host);
                    });
                }
            })
            .await;
            close_after(Some(i));
        }
    };
    let swarm = async {
        for (i, phase) in swarm_phases {
            let limit = if phase.parallel { parallel } else { 1 };
            parallel_map(runnable(phase), limit, |work| {
                let shared = shared.clone();
                let mut done_rx = done_rx.clone();
                let name = phase.name;
                async move {
                    // This host's Docker first: its failure then skips the rest.
                    let _ = done_rx.wait_for(|p| !p.contains(&work.host)).await;
                    run_work(&shared, &work, name).await;
                }
            })
            .await;
            close_after(Some(i));
        }
    };
    tokio::join!(docker_phase, swarm);
}

/// One host's steps of one phase, stopping at the first that fails; the leader's
/// settings together over its Engine API ([`settings`]).
async fn run_work<R: Remote + 'static>(shared: &Shared<R>, work: &Work, phase: &str) {
    let id = RowId::host(&work.host);
    if let Some(reason) = shared.blocked(&id, &work.depends_on) {
        shared.skip(&id, &reason);
        return;
    }
    if phase == plan::SETTINGS_PHASE {
        return shared.settings(work).await;
    }
    for step in &work.steps {
        let desc = step.describe();
        shared.rows.step(&id, &desc);
        match shared.do_step(&work.host, step).await {
            Ok(true) => {
                // Managers join one at a time: the output shows each one in before the
                // next begins.
                if matches!(
                    step,
                    Step::JoinSwarm {
                        role: Role::Manager,
                        ..
                    }
                ) {
                    shared.rows.note(&id, "joined; a manager now");
                }
                shared.rows.changed(&id, desc)
            }
            Ok(false) => {}
            Err(e) => {
                shared.rows.fail(&id, &desc, &e.0);
                shared.rows.close(&id);
                break;
            }
        }
    }
}

impl<R: Remote + 'static> Shared<R> {
    /// Why a host's work is not attempted: it has no row (not reachable), it failed
    /// already (empty reason: its own row says why), or a host it depends on failed.
    fn blocked(&self, id: &RowId, deps: &[String]) -> Option<String> {
        match self.rows.failed(id) {
            None => return Some("not reachable".into()),
            Some(true) => return Some(String::new()),
            Some(false) => {}
        }
        deps.iter()
            .find(|d| self.rows.failed(&RowId::host(d)).is_none_or(|f| f))
            .map(|d| format!("manager {d} failed; swarm steps not attempted"))
    }

    fn skip(&self, id: &RowId, reason: &str) {
        if reason.is_empty() {
            return; // Already failed: its own report says why.
        }
        self.rows.skip(id, reason);
        self.rows.close(id);
    }

    fn session(&self, host: &str) -> Result<Arc<R>, StepError> {
        self.sessions
            .get(host)
            .cloned()
            .ok_or_else(|| StepError(format!("{host} is not connected")))
    }

    /// The host's engine, or the step's error.
    async fn engine(&self, host: &str) -> Result<Arc<Engine>, StepError> {
        self.engines
            .get(host)
            .await
            .map_err(|e| StepError(e.to_string()))
    }

    /// One request to the host's daemon; Docker's refusal is the error.
    async fn ask<T>(
        &self,
        host: &str,
        req: Request,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, StepError> {
        let answer = self
            .engine(host)
            .await?
            .call(req, self.command_timeout)
            .await
            .map_err(|e| StepError(e.to_string()))?;
        api::read(&answer, parse).map_err(StepError)
    }

    async fn root(&self, host: &str, cmd: String) -> Result<Output, StepError> {
        root(&*self.session(host)?, cmd, self.command_timeout).await
    }

    /// Runs one step; `Ok(true)` when it changed something. The leader's settings are
    /// not steps of their own: [`settings`] sends them together.
    async fn do_step(&self, host: &str, step: &Step) -> Result<bool, StepError> {
        match step {
            Step::Refuse(msg) => Err(StepError(msg.clone())),
            Step::InstallDocker(method) => {
                let Some(cmd) = engine::install_docker(method) else {
                    return Err(StepError("docker install is set to skip".into()));
                };
                let s = self.session(host)?;
                let rows = self.rows.clone();
                let id = RowId::host(host);
                let mut on_line = move |_: crate::remote::Stream, line: &str| {
                    if !line.trim().is_empty() {
                        rows.output(&id, line);
                    }
                };
                let out = s
                    .exec_streaming(
                        ExecRequest::new(cmd)
                            .privileged()
                            .timeout(self.command_timeout),
                        &mut on_line,
                    )
                    .await?;
                check(out)?;
                Ok(true)
            }
            Step::WriteDaemonJson(text) => {
                let s = self.session(host)?;
                let outcome = s
                    .upload(UploadRequest {
                        contents: text.clone().into_bytes(),
                        dest: DAEMON_JSON.into(),
                        mode: 0o644,
                        privileged: true,
                    })
                    .await?;
                Ok(outcome == UploadOutcome::Written)
            }
            // A relay opened before spoke to the daemon that stopped: the next use opens
            // a new one.
            Step::StartDocker => {
                self.root(host, engine::start_docker()).await?;
                self.engines.forget(host).await;
                Ok(true)
            }
            Step::RestartDocker => {
                self.root(host, engine::restart_docker()).await?;
                self.engines.forget(host).await;
                Ok(true)
            }
            Step::LeaveSwarm { .. } => self.leave(host).await.map(|_| true),
            Step::InitSwarm {
                advertise,
                default_addr_pool,
            } => {
                let init = api::swarm_init(advertise, default_addr_pool.as_deref());
                let id = self.ask(host, init, api::parse_node_id).await?;
                let info = self.ask(host, api::info(), api::parse_info).await?;
                if info.node_addr.is_empty() {
                    return Err(StepError(format!(
                        "swarm init left node {id} without an address"
                    )));
                }
                self.swarm.lock().await.manager_addr = Some(format!("{}:2377", info.node_addr));
                self.node_ids.lock().unwrap().insert(host.to_string(), id);
                Ok(true)
            }
            Step::JoinSwarm { role, advertise } => self.join(host, *role, advertise).await,
            Step::Rejoin {
                role,
                advertise,
                stale,
                why,
            } => {
                self.rejoin(host, *role, advertise, stale.as_deref(), why)
                    .await
            }
            Step::PruneStaleNodes { .. }
            | Step::SetRole { .. }
            | Step::SetLabels { .. }
            | Step::RotateJoinTokens { .. }
            | Step::CreateNetwork(_) => Err(StepError(format!(
                "{} is one of the leader's settings, sent with the others",
                step.describe()
            ))),
        }
    }

    /// Makes the host leave its swarm (`--force`: it may be the last manager of a swarm
    /// that is not ours). `false` when it was in none.
    async fn leave(&self, host: &str) -> Result<bool, StepError> {
        let answer = self
            .engine(host)
            .await?
            .call(api::swarm_leave(true), self.command_timeout)
            .await
            .map_err(|e| StepError(e.to_string()))?;
        self.node_ids.lock().unwrap().remove(host);
        match api::read(&answer, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(e) if swarm::in_no_swarm(&e) => Ok(false),
            Err(e) => Err(StepError(e)),
        }
    }

    /// Repairs a half-joined node: unless it completes by itself within the grace
    /// period, it leaves, the leader removes the entry it still lists, and it joins again.
    async fn rejoin(
        &self,
        host: &str,
        role: Role,
        advertise: &str,
        stale: Option<&str>,
        why: &str,
    ) -> Result<bool, StepError> {
        let id = RowId::host(host);
        self.rows.note(&id, &format!("half-joined: {why}"));
        if self.healed(host).await? {
            self.rows.note(&id, "it completed its join by itself");
            return Ok(false);
        }
        self.leave(host).await?;
        if let Some(stale) = stale {
            let leader = self
                .leader
                .clone()
                .ok_or_else(|| StepError("no manager to remove its entry".into()))?;
            // A manager's entry is demoted first: swarm removes no member of the raft.
            // Either may be gone already (the leader pruned it): that is no failure.
            if let Ok(spec) = self
                .ask(&leader, api::node_inspect(stale), api::parse_node_spec)
                .await
            {
                let demote = api::node_update(&spec, Some(Role::Worker), &[]);
                let _ = self.ask(&leader, demote, |_| Ok(())).await;
            }
            if let Err(e) = self
                .ask(&leader, api::node_remove(stale, true), |_| Ok(()))
                .await
                && !e.0.contains("not found")
            {
                return Err(StepError(format!("cannot remove its entry {stale}: {e}")));
            }
        }
        self.join(host, role, advertise).await
    }

    /// Whether a half-joined node completes by itself within the grace period: its own
    /// Docker says active and the leader lists it ready.
    async fn healed(&self, host: &str) -> Result<bool, StepError> {
        let deadline = Instant::now() + self.rejoin_grace;
        loop {
            let local = self.ask(host, api::info(), api::parse_info).await?;
            if let Some(leader) = &self.leader
                && local.is_active()
                && !local.node_id.is_empty()
                && let Ok(entry) = self
                    .ask(leader, api::node_inspect(&local.node_id), node::parse_node)
                    .await
                && entry.state == "ready"
            {
                self.node_ids
                    .lock()
                    .unwrap()
                    .insert(host.to_string(), local.node_id);
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(2).min(self.rejoin_grace)).await;
        }
    }

    /// A relay that broke: a lost connection breaks it too (issue 14: a link cut during
    /// the join), which is what to say then; the host is asked whether it still answers
    /// (an SSH ping, no process there).
    async fn relay_error(&self, host: &str, e: EngineError) -> StepError {
        if let EngineError::Relay { .. } = e
            && let Ok(s) = self.session(host)
            && !s
                .answers(self.command_timeout.min(Duration::from_secs(5)))
                .await
        {
            return StepError(format!("{host}: connection lost ({e})"));
        }
        StepError(e.to_string())
    }

    /// Joins a node through its Docker Engine API: the token comes from the leader once
    /// (on the channel's stdout) and goes to the node in the body of `POST /swarm/join`
    /// on the relay's stdin: in no process's argv or environment, on either host.
    async fn join(&self, host: &str, role: Role, advertise: &str) -> Result<bool, StepError> {
        let (addr, token) = {
            let leader = self
                .leader
                .clone()
                .ok_or_else(|| StepError("no manager to join".into()))?;
            let mut ctx = self.swarm.lock().await;
            let manager = role == Role::Manager;
            let cached = if manager {
                &ctx.manager_token
            } else {
                &ctx.worker_token
            };
            let token = match cached {
                Some(t) => t.clone(),
                None => {
                    // Both tokens in one answer from the leader's Engine API (it serves
                    // the settings after the joins).
                    let s = self
                        .ask(&leader, api::swarm_inspect(), api::parse_swarm)
                        .await?;
                    ctx.worker_token = Some(s.worker_token);
                    ctx.manager_token = Some(s.manager_token);
                    let t = if manager {
                        &ctx.manager_token
                    } else {
                        &ctx.worker_token
                    };
                    t.clone()
                        .ok_or_else(|| StepError("the leader gave no join token".into()))?
                }
            };
            let addr = ctx
                .manager_addr
                .clone()
                .ok_or_else(|| StepError("the manager's swarm address is not known".into()))?;
            (addr, token)
        };
        let engine = self.engines.get(host).await;
        let engine = match engine {
            Ok(e) => e,
            Err(e) => return Err(self.relay_error(host, e).await),
        };
        let redact = |e: String| e.replace(token.expose(), "<redacted>");
        let answer = engine
            .call(
                api::swarm_join(advertise, &addr, &token),
                Duration::from_secs(120),
            )
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return Err(StepError(redact(self.relay_error(host, e).await.0))),
        };
        let refused = (!answer.ok()).then(|| redact(api::error_message(&answer)));
        // Joins are asynchronous: the daemon may answer that it goes on joining in the
        // background, so the local state decides.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut interval = Duration::from_millis(100);
        loop {
            let info = match engine.call(api::info(), self.command_timeout).await {
                Ok(r) => api::read(&r, api::parse_info).map_err(StepError)?,
                Err(e) => return Err(self.relay_error(host, e).await),
            };
            match info.local_node_state.as_str() {
                "active" if !info.node_id.is_empty() => {
                    self.node_ids
                        .lock()
                        .unwrap()
                        .insert(host.to_string(), info.node_id);
                    return Ok(true);
                }
                "pending" if Instant::now() < deadline => {
                    tokio::time::sleep(interval).await;
                    interval = (interval * 2).min(Duration::from_secs(1));
                }
                state => {
                    return Err(StepError(refused.unwrap_or_else(|| {
                        format!("the node's swarm state is {state:?} after the join")
                    })));
                }
            }
        }
    }
}

pub mod preflight;
mod settings;

pub use crate::plan::preflight::{Check, Severity};

#[cfg(test)]
mod tests;
