//! `rpiprov bootstrap`: probe every host once, plan, then run the plan's phases with
//! barriers between them (init before joins), hosts in parallel within a phase.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::commands;
use crate::config::{Host, Network, Role};
use crate::facts::{self, Facts};
use crate::plan::{self, Plan, Step};
use crate::remote::{ExecRequest, Remote, UploadRequest};
use crate::run::{StepError, check, parallel_map, run_ok};
use crate::secret::Secret;
use crate::ui::{Event, HostReport, Outcome, Reporter};

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
    reporter: Arc<dyn Reporter>,
    reports: Mutex<HashMap<String, HostReport>>,
    node_ids: Mutex<HashMap<String, String>>,
    swarm: tokio::sync::Mutex<SwarmCtx>,
    leader: Option<String>,
    /// Host name -> the addresses that machine is known by (for stale entries).
    machines: HashMap<String, Vec<String>>,
    command_timeout: Duration,
    started: Instant,
}

/// Probes, plans and bootstraps. `sessions` holds the hosts that connected; `failed` the
/// ones that did not, with the reason. Returns one report per host, in inventory order,
/// and the facts gathered (for `--json`).
pub async fn run<R: Remote + 'static>(
    opts: &Options<'_>,
    sessions: HashMap<String, Arc<R>>,
    failed: Vec<(String, String)>,
    reporter: Arc<dyn Reporter>,
) -> (Vec<HostReport>, HashMap<String, Facts>) {
    let started = Instant::now();
    let mut reports: HashMap<String, HostReport> = HashMap::new();
    for (host, err) in &failed {
        let mut r = HostReport::new(host);
        r.outcome = Outcome::Failed;
        r.failed_step = Some("connect".into());
        r.error = Some(err.clone());
        reporter.event(host, Event::Done(Outcome::Failed, err.clone()));
        reports.insert(host.clone(), r);
    }

    // Facts first: one probe per host, all at once.
    let net_names: Vec<String> = opts.networks.iter().map(|n| n.name.clone()).collect();
    let probe = commands::probe(&net_names.iter().map(String::as_str).collect::<Vec<_>>());
    let names: Vec<String> = sessions.keys().cloned().collect();
    let results = parallel_map(names.clone(), opts.parallel, |name| {
        let session = sessions[&name].clone();
        let reporter = reporter.clone();
        let probe = probe.clone();
        let timeout = opts.command_timeout.min(Duration::from_secs(120));
        async move {
            reporter.event(&name, Event::Step("probe".into()));
            let res = run_ok(
                &*session,
                ExecRequest::new(probe).privileged().timeout(timeout),
            )
            .await
            .and_then(|out| facts::parse(&out.stdout_str()).map_err(StepError));
            (name, res)
        }
    })
    .await;
    let mut all_facts = HashMap::new();
    for (name, res) in results {
        match res {
            Ok(f) => {
                // Until its first step (or its end), a host waits on the others.
                reporter.event(
                    &name,
                    Event::Step("probed; waiting for the plan's turn".into()),
                );
                all_facts.insert(name.clone(), f);
                reports.insert(name.clone(), HostReport::new(&name));
            }
            Err(e) => {
                let mut r = HostReport::new(&name);
                r.outcome = Outcome::Failed;
                r.failed_step = Some("probe".into());
                r.error = Some(e.0.clone());
                reporter.event(&name, Event::Done(Outcome::Failed, format!("probe: {e}")));
                reports.insert(name, r);
            }
        }
    }

    let plan = plan::plan(&plan::Input {
        hosts: &opts.hosts,
        managers: &opts.managers,
        facts: &all_facts,
        networks: opts.networks,
        default_addr_pool: opts.default_addr_pool,
        force: opts.force,
    });

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
    let mut machines: HashMap<String, Vec<String>> = HashMap::new();
    for (host, f) in &all_facts {
        let addrs = machines.entry(f.hostname.clone()).or_default();
        addrs.extend(
            [f.reach_addr.clone(), f.swarm.node_addr.clone()]
                .into_iter()
                .filter(|a| !a.is_empty()),
        );
        if let Some(h) = opts
            .hosts
            .iter()
            .chain(opts.managers.iter())
            .find(|h| &h.name == host)
        {
            addrs.push(h.address.clone());
        }
    }
    let shared = Arc::new(Shared {
        machines,
        sessions,
        reporter: reporter.clone(),
        reports: Mutex::new(reports),
        node_ids: Mutex::new(node_ids),
        swarm: tokio::sync::Mutex::new(swarm),
        leader: plan.leader.clone(),
        command_timeout: opts.command_timeout,
        started,
    });
    execute(&shared, &plan, opts.parallel).await;

    // Every host that answered and is not failed is done now.
    let mut reports = shared.reports.lock().unwrap().clone();
    let mut ordered = Vec::new();
    let mut names: Vec<&str> = opts.hosts.iter().map(|h| h.name.as_str()).collect();
    for m in &opts.managers {
        if !names.contains(&m.name.as_str())
            && reports
                .get(&m.name)
                .is_some_and(|r| !r.changed.is_empty() || r.failed())
        {
            names.push(&m.name);
        }
    }
    for name in names {
        if let Some(mut r) = reports.remove(name) {
            if r.outcome == Outcome::Unchanged && !r.changed.is_empty() {
                r.outcome = Outcome::Changed;
            }
            if r.seconds == 0.0 {
                r.seconds = started.elapsed().as_secs_f64();
            }
            if !r.failed() {
                let msg = if r.changed.is_empty() {
                    "no change".to_string()
                } else {
                    format!("{} change(s)", r.changed.len())
                };
                reporter.event(name, Event::Done(r.outcome, msg));
            }
            ordered.push(r);
        }
    }
    (ordered, all_facts)
}

async fn execute<R: Remote + 'static>(shared: &Arc<Shared<R>>, plan: &Plan, parallel: usize) {
    for phase in &plan.phases {
        let runnable: Vec<_> = phase
            .work
            .iter()
            .filter(|w| !w.steps.is_empty())
            .cloned()
            .collect();
        let limit = if phase.parallel { parallel } else { 1 };
        parallel_map(runnable, limit, |work| {
            let shared = shared.clone();
            async move {
                if let Some(reason) = shared.blocked(&work.host, &work.depends_on) {
                    shared.skip(&work.host, &reason);
                    return;
                }
                for step in &work.steps {
                    let desc = step.describe();
                    shared.reporter.event(&work.host, Event::Step(desc.clone()));
                    match shared.do_step(&work.host, step).await {
                        Ok(changed) => {
                            if changed {
                                shared.changed(&work.host, desc);
                            }
                        }
                        Err(e) => {
                            shared.fail(&work.host, &desc, &e.0);
                            break;
                        }
                    }
                }
            }
        })
        .await;
    }
}

impl<R: Remote + 'static> Shared<R> {
    fn blocked(&self, host: &str, deps: &[String]) -> Option<String> {
        let reports = self.reports.lock().unwrap();
        match reports.get(host) {
            None => return Some("not reachable".into()),
            Some(r) if r.failed() => return Some(String::new()),
            _ => {}
        }
        deps.iter()
            .find(|d| reports.get(*d).is_none_or(|r| r.failed()))
            .map(|d| format!("manager {d} failed; swarm steps not attempted"))
    }

    fn skip(&self, host: &str, reason: &str) {
        if reason.is_empty() {
            return; // Already failed: its own report says why.
        }
        let mut reports = self.reports.lock().unwrap();
        let r = reports
            .entry(host.to_string())
            .or_insert_with(|| HostReport::new(host));
        r.outcome = Outcome::Skipped;
        r.error = Some(reason.to_string());
        r.seconds = self.started.elapsed().as_secs_f64();
        self.reporter
            .event(host, Event::Done(Outcome::Skipped, reason.to_string()));
    }

    fn changed(&self, host: &str, desc: String) {
        let mut reports = self.reports.lock().unwrap();
        if let Some(r) = reports.get_mut(host) {
            r.changed.push(desc);
            r.seconds = self.started.elapsed().as_secs_f64();
        }
    }

    fn fail(&self, host: &str, step: &str, error: &str) {
        let mut reports = self.reports.lock().unwrap();
        if let Some(r) = reports.get_mut(host) {
            r.outcome = Outcome::Failed;
            r.failed_step = Some(step.to_string());
            r.error = Some(error.to_string());
            r.seconds = self.started.elapsed().as_secs_f64();
        }
        self.reporter.event(
            host,
            Event::Done(Outcome::Failed, format!("{step}: {error}")),
        );
    }

    fn session(&self, host: &str) -> Result<Arc<R>, StepError> {
        self.sessions
            .get(host)
            .cloned()
            .ok_or_else(|| StepError(format!("{host} is not connected")))
    }

    fn node_id(&self, host: &str) -> Result<String, StepError> {
        self.node_ids
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .ok_or_else(|| {
                StepError(format!(
                    "the swarm node of {host} is not known (did it join?)"
                ))
            })
    }

    async fn root(&self, host: &str, cmd: String) -> Result<crate::remote::Output, StepError> {
        let s = self.session(host)?;
        run_ok(
            &*s,
            ExecRequest::new(cmd)
                .privileged()
                .timeout(self.command_timeout),
        )
        .await
    }

    /// Runs one step; `Ok(true)` when it changed something.
    async fn do_step(&self, host: &str, step: &Step) -> Result<bool, StepError> {
        match step {
            Step::Refuse(msg) => Err(StepError(msg.clone())),
            Step::InstallDocker(method) => {
                let Some(cmd) = commands::install_docker(method) else {
                    return Err(StepError("docker install is set to skip".into()));
                };
                let s = self.session(host)?;
                let reporter = self.reporter.clone();
                let h = host.to_string();
                let mut on_line = move |_: crate::remote::Stream, line: &str| {
                    if !line.trim().is_empty() {
                        reporter.event(&h, Event::Output(line.to_string()));
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
                        dest: "/etc/docker/daemon.json".into(),
                        mode: 0o644,
                        privileged: true,
                    })
                    .await?;
                Ok(outcome == crate::remote::UploadOutcome::Written)
            }
            Step::StartDocker => self
                .root(host, commands::start_docker())
                .await
                .map(|_| true),
            Step::RestartDocker => self
                .root(host, commands::restart_docker())
                .await
                .map(|_| true),
            Step::LeaveSwarm { .. } => {
                self.root(host, commands::swarm_leave(true)).await?;
                self.node_ids.lock().unwrap().remove(host);
                Ok(true)
            }
            Step::InitSwarm {
                advertise,
                default_addr_pool,
            } => {
                self.root(
                    host,
                    commands::swarm_init(advertise, default_addr_pool.as_deref()),
                )
                .await?;
                let out = self
                    .root(
                        host,
                        "docker info --format '{{.Swarm.NodeAddr}} {{.Swarm.NodeID}}'".into(),
                    )
                    .await?;
                let text = out.stdout_str();
                let mut it = text.split_whitespace();
                let (Some(addr), Some(id)) = (it.next(), it.next()) else {
                    return Err(StepError(format!(
                        "swarm init left no node address: {text}"
                    )));
                };
                self.swarm.lock().await.manager_addr = Some(format!("{addr}:2377"));
                self.node_ids
                    .lock()
                    .unwrap()
                    .insert(host.to_string(), id.to_string());
                Ok(true)
            }
            Step::JoinSwarm { role, advertise } => self.join(host, *role, advertise).await,
            Step::PruneStaleNodes { hostnames } => {
                let out = self.root(host, commands::node_entries()).await?;
                let current: Vec<String> =
                    self.node_ids.lock().unwrap().values().cloned().collect();
                let mut removed = false;
                for line in out.stdout_str().lines() {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let [id, name, state, addr] = parts[..] else {
                        continue;
                    };
                    if !hostnames.iter().any(|h| h == name) || current.iter().any(|c| c == id) {
                        continue;
                    }
                    // An entry that is still up is removed only when it is this very
                    // machine (same address): never another Pi that shares the name.
                    let same_machine = self
                        .machines
                        .get(name)
                        .is_some_and(|addrs| addrs.iter().any(|a| a == addr));
                    if state == "down" || same_machine {
                        self.root(host, commands::node_rm(id, state != "down"))
                            .await?;
                        removed = true;
                    }
                }
                Ok(removed)
            }
            Step::SetRole { host: target, role } => {
                let id = self.node_id(target)?;
                let cmd = match role {
                    Role::Manager => commands::node_promote(&id),
                    Role::Worker => commands::node_demote(&id),
                };
                self.root(host, cmd).await.map(|_| true)
            }
            Step::SetLabels {
                host: target,
                labels,
            } => {
                let id = self.node_id(target)?;
                self.root(host, commands::node_labels(&id, labels))
                    .await
                    .map(|_| true)
            }
            Step::CreateNetwork(net) => self
                .root(host, commands::network_create(net))
                .await
                .map(|_| true),
        }
    }

    /// Joins a node. The token comes from the leader once and goes to the node on stdin.
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
                    let out = self.root(&leader, commands::join_token(manager)).await?;
                    let t = Secret::new(out.stdout_str().trim());
                    if manager {
                        ctx.manager_token = Some(t.clone());
                    } else {
                        ctx.worker_token = Some(t.clone());
                    }
                    t
                }
            };
            let addr = ctx
                .manager_addr
                .clone()
                .ok_or_else(|| StepError("the manager's swarm address is not known".into()))?;
            (addr, token)
        };
        let s = self.session(host)?;
        let stdin = format!("{}\n", token.expose()).into_bytes();
        let out = s
            .exec(
                ExecRequest::new(commands::swarm_join(advertise, &addr))
                    .privileged()
                    .stdin(stdin)
                    .timeout(Duration::from_secs(120)),
            )
            .await?;
        // Joins are asynchronous: `swarm join` may time out while the node joins in the
        // background, so the local state decides.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.root(host, commands::local_swarm_state()).await?;
            let text = state.stdout_str();
            let mut it = text.split_whitespace();
            match (it.next(), it.next()) {
                (Some("active"), Some(id)) => {
                    self.node_ids
                        .lock()
                        .unwrap()
                        .insert(host.to_string(), id.to_string());
                    return Ok(true);
                }
                (Some("pending"), _) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                _ => {
                    let err = check(out)
                        .err()
                        .map(|e| e.0)
                        .unwrap_or_else(|| format!("node state is {}", text.trim()));
                    // Docker does not echo tokens, but no error may ever carry one.
                    return Err(StepError(err.replace(token.expose(), "<redacted>")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fake::{FakeRemote, Recorder, fail, host, ok};

    const INACTIVE: &str = "@@begin swarm\n{\"LocalNodeState\":\"inactive\"}\n@@end swarm\n";

    fn probe_of(hostname: &str, addr: &str, docker: bool) -> String {
        if docker {
            format!(
                "hostname={hostname}\nreach_addr={addr}\ndocker_installed=yes\ndocker_running=yes\n{INACTIVE}"
            )
        } else {
            format!(
                "hostname={hostname}\nreach_addr={addr}\ndocker_installed=no\ndocker_running=no\n"
            )
        }
    }

    const TOKEN: &str = "SWMTKN-1-secret-token-value";

    async fn bootstrap(
        fakes: &[FakeRemote],
        hosts: &[Host],
        unreachable: Vec<(String, String)>,
    ) -> (Vec<HostReport>, Vec<String>) {
        let refs: Vec<&Host> = hosts.iter().collect();
        let managers: Vec<&Host> = hosts.iter().filter(|h| h.role == Role::Manager).collect();
        let opts = Options {
            hosts: refs,
            managers,
            networks: &[],
            default_addr_pool: None,
            force: false,
            parallel: 4,
            command_timeout: Duration::from_secs(5),
        };
        let sessions = fakes
            .iter()
            .map(|f| (f.name.clone(), Arc::new(f.clone())))
            .collect();
        let rec = Arc::new(Recorder::default());
        let (reports, _) = run(&opts, sessions, unreachable, rec.clone()).await;
        let events = rec.0.lock().unwrap().clone();
        (reports, events)
    }

    fn fleet() -> (Vec<FakeRemote>, Vec<Host>) {
        let m = FakeRemote::new("pi1");
        m.on("@@begin", ok(&probe_of("pi1", "198.18.0.11", true)))
            .on("swarm init", ok(""))
            .on("{{.Swarm.NodeAddr}}", ok("198.18.0.11 n1\n"))
            .on("join-token -q worker", ok(&format!("{TOKEN}\n")));
        let w = FakeRemote::new("pi2");
        w.on("@@begin", ok(&probe_of("pi2", "198.18.0.12", false)))
            .on("apt-get install", ok("Setting up docker.io\n"))
            .on("docker info >/dev/null", ok(""))
            // The join "times out" although the node joined: the state decides.
            .on(
                "swarm join",
                fail(1, &format!("Timeout was reached (token {TOKEN})")),
            )
            .on("LocalNodeState", ok("active n2\n"));
        (
            vec![m, w],
            vec![host("pi1", Role::Manager), host("pi2", Role::Worker)],
        )
    }

    #[tokio::test]
    async fn installs_inits_and_joins_with_the_token_on_stdin_only() {
        let (fakes, hosts) = fleet();
        let (reports, events) = bootstrap(&fakes, &hosts, vec![]).await;
        assert_eq!(reports[0].outcome, Outcome::Changed);
        assert_eq!(
            reports[0].changed,
            vec!["swarm init (advertise 198.18.0.11)"]
        );
        assert_eq!(reports[1].outcome, Outcome::Changed, "{:?}", reports[1]);
        assert_eq!(
            reports[1].changed,
            vec![
                "install docker (docker.io package)",
                "start docker",
                "join swarm as worker"
            ]
        );
        // Every command ran as root; the join command line has no token, stdin has it.
        let log = fakes[1].log.lock().unwrap().clone();
        assert!(log.iter().all(|r| r.privileged));
        let join = log
            .iter()
            .find(|r| r.command.contains("swarm join"))
            .unwrap();
        assert!(join.command.contains("198.18.0.11:2377"));
        assert!(!join.command.contains(TOKEN));
        assert_eq!(join.stdin.as_deref(), Some(format!("{TOKEN}\n").as_bytes()));
        // The token appears in no event and no report.
        assert!(events.iter().all(|e| !e.contains(TOKEN)), "{events:?}");
        assert!(!format!("{reports:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn a_failed_manager_stops_the_swarm_steps_before_any_worker_joins() {
        let (fakes, hosts) = fleet();
        fakes[0].rules_front(
            "swarm init",
            fail(
                1,
                "Error response from daemon: could not choose an IP address",
            ),
        );
        let (reports, events) = bootstrap(&fakes, &hosts, vec![]).await;
        assert_eq!(reports[0].outcome, Outcome::Failed);
        assert_eq!(
            reports[0].failed_step.as_deref(),
            Some("swarm init (advertise 198.18.0.11)")
        );
        assert_eq!(
            reports[0].error.as_deref(),
            Some("exit 1: Error response from daemon: could not choose an IP address")
        );
        // The worker still got Docker (it does not depend on the manager) but did not join.
        assert_eq!(reports[1].outcome, Outcome::Skipped);
        assert_eq!(
            reports[1].error.as_deref(),
            Some("manager pi1 failed; swarm steps not attempted")
        );
        assert!(!fakes[1].commands().iter().any(|c| c.contains("swarm join")));
        assert!(
            fakes[1]
                .commands()
                .iter()
                .any(|c| c.contains("apt-get install"))
        );
        assert!(events.iter().any(|e| e.contains("pi2: Done(Skipped")));
    }

    #[tokio::test]
    async fn an_unreachable_worker_fails_alone() {
        let (fakes, hosts) = fleet();
        let (reports, _) = bootstrap(
            &fakes[..1],
            &hosts,
            vec![(
                "pi2".into(),
                "no answer from 198.18.0.12:22 within 2s".into(),
            )],
        )
        .await;
        assert_eq!(reports[0].outcome, Outcome::Changed);
        assert_eq!(reports[1].outcome, Outcome::Failed);
        assert_eq!(reports[1].failed_step.as_deref(), Some("connect"));
    }

    #[tokio::test]
    async fn a_rejoining_pi_replaces_its_old_entry_but_never_a_live_namesake() {
        let (fakes, mut hosts) = fleet();
        hosts.push(host("pi3", Role::Worker));
        // The manager leads a swarm that still lists pi3's old node (up: it left seconds
        // ago) and a live machine elsewhere that is also called pi3.
        let m = FakeRemote::new("pi1");
        m.on(
            "@@begin",
            ok(&format!(
                "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin swarm\n{}\n@@end swarm\n@@begin nodes\n{}\n{}\n{}\n@@end nodes\n",
                r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
                r#"{"ID":"n1","Spec":{"Role":"manager"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"198.18.0.11"}}"#,
                r#"{"ID":"old3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"198.18.0.13"}}"#,
                r#"{"ID":"far3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"10.0.0.3"}}"#,
            )),
        )
        .on("join-token -q worker", ok(&format!("{TOKEN}\n")))
        .on(
            "{{.Status.Addr}}",
            ok("n1 pi1 ready 198.18.0.11\nold3 pi3 ready 198.18.0.13\nfar3 pi3 ready 10.0.0.3\nnew3 pi3 ready 198.18.0.13\n"),
        )
        .on("docker node rm", ok(""));
        let w3 = FakeRemote::new("pi3");
        w3.on("@@begin", ok(&probe_of("pi3", "198.18.0.13", true)))
            .on("swarm join", ok(""))
            .on("LocalNodeState", ok("active new3\n"));
        let (reports, _) = bootstrap(&[m.clone(), w3, fakes[1].clone()], &hosts[..], vec![]).await;
        let pi2 = reports.iter().find(|r| r.host == "pi2").unwrap();
        assert_eq!(pi2.outcome, Outcome::Changed, "{pi2:?}");
        let removals: Vec<String> = m
            .commands()
            .into_iter()
            .filter(|c| c.contains("node rm"))
            .collect();
        assert_eq!(removals, vec!["docker node rm --force old3"]);
    }

    impl FakeRemote {
        /// A rule that wins over the ones already set.
        fn rules_front(&self, contains: &str, out: crate::remote::Output) {
            let fresh = FakeRemote::new(&self.name);
            fresh.on(contains, out);
            let mut mine = self.rules_take();
            let mut front = fresh.rules_take();
            front.append(&mut mine);
            self.rules_put(front);
        }
    }
}
