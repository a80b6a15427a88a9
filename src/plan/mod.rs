//! The bootstrap planner: a pure function of inventory, playbook and facts (see
//! [`crate::docker::probe`]) to ordered phases of per-host steps. Only what differs from
//! the wanted state becomes a step, so a formed fleet yields an empty plan. Unit-tested
//! without SSH, as exact steps from given facts (`tests.rs`).
//!
//! [`plan`] calls one function per phase, in the order they run: Docker on every host
//! ([`docker_phase`]), the leader ([`pick_leader`]), the joins ([`joins`]), then the
//! leader's swarm settings: stale node entries ([`prune`]), labels ([`labels`]) and the
//! playbook's networks ([`networks`]). The executor is `crate::bootstrap`.
//!
//! Beside it, bootstrap's other pure judgements: [`preflight`] (each host's clock,
//! kernel, memory cgroup, disk and architecture to findings) and [`ports`] (which node
//! must reach which port, and what the port test found); and `maintain`'s ([`maintain`]:
//! the order nodes are taken out of the swarm in, and when a drain is really over).

pub mod maintain;
pub mod ports;
pub mod preflight;

use std::collections::{BTreeMap, HashMap};

use crate::config::{Advertise, Host, InstallMethod, Network, Role};
use crate::docker::engine::merge_daemon_json;
use crate::docker::network::{Verdict, compare};
use crate::docker::node::{
    Basis, Change, Claim, NodeEntry, Owner, Stake, Stale, SwarmNode, check_claim, quorum_after,
    stale,
};
use crate::docker::probe::{DockerProblem, Facts};

/// One thing to do on one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    InstallDocker(InstallMethod),
    /// Writes `/etc/docker/daemon.json` with this text (the user's keys kept).
    WriteDaemonJson(String),
    StartDocker,
    RestartDocker,
    /// Leaves a swarm (`--force` on a node of another swarm).
    LeaveSwarm {
        reason: String,
    },
    InitSwarm {
        advertise: String,
        default_addr_pool: Option<String>,
    },
    JoinSwarm {
        role: Role,
        advertise: String,
    },
    /// A half-joined node ([`half_joined`]): unless it completes by itself within a grace
    /// period, it leaves (`--force`), the leader removes the entry it still lists
    /// (`stale`, confirmed to be that host's by [`check_claim`]), and it joins again.
    Rejoin {
        role: Role,
        advertise: String,
        stale: Option<String>,
        why: String,
    },
    /// On the leader: removes node entries left by these hosts' earlier lives (a node that
    /// left or was reinstalled): listed under the host name the host reports, at one of
    /// its addresses as this machine knows them, not a host's current node
    /// ([`crate::docker::node::stale`], judged again on the leader's list after the joins).
    PruneStaleNodes {
        hosts: Vec<String>,
    },
    /// On the leader: changes a host's role.
    SetRole {
        host: String,
        role: Role,
    },
    /// On the leader: adds or updates these labels of a host's node.
    SetLabels {
        host: String,
        labels: Vec<(String, String)>,
    },
    CreateNetwork(Network),
    /// On the leader, last: new join tokens for the roles that joined nodes in this run
    /// (the tokens went to those nodes; `docker swarm join-token --rotate`).
    RotateJoinTokens {
        worker: bool,
        manager: bool,
    },
    /// A step that cannot be done; executing it fails the host with this message.
    Refuse(String),
}

impl Step {
    /// A short description for progress lines and the summary.
    pub fn describe(&self) -> String {
        match self {
            Step::InstallDocker(m) => format!(
                "install docker ({})",
                match m {
                    InstallMethod::Distro => "docker.io package",
                    InstallMethod::GetDocker => "get.docker.com script",
                    InstallMethod::Command(_) => "inventory command",
                    InstallMethod::Skip => "skip",
                }
            ),
            Step::WriteDaemonJson(_) => "write /etc/docker/daemon.json".into(),
            Step::StartDocker => "start docker".into(),
            Step::RestartDocker => "restart docker".into(),
            Step::LeaveSwarm { .. } => "leave the other swarm".into(),
            Step::InitSwarm { advertise, .. } => format!("swarm init (advertise {advertise})"),
            Step::JoinSwarm { role, .. } => format!("join swarm as {}", role.as_str()),
            Step::Rejoin { role, .. } => {
                format!("rejoin swarm as {} (it was half-joined)", role.as_str())
            }
            Step::PruneStaleNodes { .. } => "remove stale node entries".into(),
            Step::SetRole { host, role } => format!("make {host} a {}", role.as_str()),
            Step::SetLabels { host, labels } => format!(
                "label {host} {}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Step::CreateNetwork(n) => format!("create network {}", n.name),
            Step::RotateJoinTokens { worker, manager } => format!(
                "rotate the {} join token",
                match (worker, manager) {
                    (true, true) => "worker and manager",
                    (true, false) => "worker",
                    _ => "manager",
                }
            ),
            Step::Refuse(_) => "refused".into(),
        }
    }
}

/// The steps of one host in one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub host: String,
    pub steps: Vec<Step>,
    /// Hosts whose failure skips this work (the leader, for swarm steps).
    pub depends_on: Vec<String>,
}

/// The name of the first phase: Docker installed, configured and running on each host.
/// The executor runs the swarm phases beside it, each host's swarm work after its own
/// Docker work (`crate::bootstrap`).
pub const DOCKER_PHASE: &str = "docker";

/// The name of the last phase: the leader's swarm settings (stale entries, roles, labels,
/// networks, the rotation of the join tokens), which the executor sends together.
pub const SETTINGS_PHASE: &str = "swarm settings";

/// A phase runs after the previous one has finished on every host (the Docker phase
/// aside: see [`DOCKER_PHASE`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: &'static str,
    /// Hosts of the phase run at once (bounded); otherwise one after another.
    pub parallel: bool,
    pub work: Vec<Work>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The manager that initialises the swarm or already leads it.
    pub leader: Option<String>,
    pub phases: Vec<Phase>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.phases
            .iter()
            .all(|p| p.work.iter().all(|w| w.steps.is_empty()))
    }
    /// Leaves these hosts out: their own work, and the leader's steps about them (labels,
    /// roles). For hosts the preflight stopped after the plan was made.
    pub fn drop_hosts(&mut self, hosts: &[String]) {
        let about = |s: &Step| match s {
            Step::SetLabels { host, .. } | Step::SetRole { host, .. } => hosts.contains(host),
            _ => false,
        };
        for phase in &mut self.phases {
            phase.work.retain(|w| !hosts.contains(&w.host));
            for w in &mut phase.work {
                w.steps.retain(|s| !about(s));
            }
        }
    }

    /// The steps of one host, over all phases.
    pub fn steps_of(&self, host: &str) -> Vec<&Step> {
        self.phases
            .iter()
            .flat_map(|p| p.work.iter())
            .filter(|w| w.host == host)
            .flat_map(|w| w.steps.iter())
            .collect()
    }
}

/// What the planner is given.
pub struct Input<'a> {
    /// The hosts to act on (after `--on`), in inventory order.
    pub hosts: &'a [&'a Host],
    /// Every manager of the inventory (the leader may be outside `--on`).
    pub managers: &'a [&'a Host],
    /// Facts of every host that answered the probe.
    pub facts: &'a HashMap<String, Facts>,
    /// Each host's addresses as this machine knows them (not as the host says): what a
    /// node entry must show before it is removed for that host ([`check_claim`]). A host
    /// missing here is known by its inventory `address` only.
    pub addresses: &'a HashMap<String, Vec<String>>,
    pub networks: &'a [Network],
    pub default_addr_pool: Option<&'a str>,
    /// `--force`: a node of another swarm leaves it.
    pub force: bool,
}

/// Plans a bootstrap. Hosts without facts (unreachable) get no steps; the executor reports
/// them. A refused step stands where the problem is, so other hosts still proceed.
pub fn plan(input: &Input) -> Plan {
    let (mut docker, will_run_docker) = docker_phase(input);
    let Some(leader) = pick_leader(input) else {
        return Plan {
            leader: None,
            phases: phases(docker, None, vec![], vec![], vec![]),
        };
    };
    let lf = &input.facts[&leader.name];
    let mut plan = Plan {
        leader: Some(leader.name.clone()),
        phases: vec![],
    };

    // A leader that is a worker of some other swarm cannot lead ours.
    let mut leaves: Vec<(String, Step)> = Vec::new();
    if lf.swarm.is_active() && !lf.swarm.control_available {
        let msg = format!(
            "belongs to another swarm (managed by {})",
            lf.swarm.manager_addrs().join(", ")
        );
        if input.force {
            leaves.push((leader.name.clone(), Step::LeaveSwarm { reason: msg }));
        } else {
            docker.push(Work {
                host: leader.name.clone(),
                steps: vec![Step::Refuse(format!(
                    "{msg}; run with --force to make it leave and lead this one"
                ))],
                depends_on: vec![],
            });
            plan.phases = phases(docker, None, vec![], vec![], vec![]);
            return plan;
        }
    }
    let swarm = Swarm::new(leader, lf);

    let mut j = joins(input, &swarm, &will_run_docker);
    leaves.append(&mut j.leaves);
    let mut leader_steps = Vec::new();
    leader_steps.extend(prune(input, &swarm, j.prune));
    leader_steps.extend(j.set_roles);
    leader_steps.extend(labels(input, &swarm, &j.blocked, &j.rejoined));
    leader_steps.extend(networks(input, &swarm));
    // The tokens that go to joining nodes are worth nothing once they joined.
    let joins = |works: &[Work]| {
        works
            .iter()
            .any(|w| w.steps.iter().any(|s| matches!(s, Step::JoinSwarm { .. })))
    };
    let (worker, manager) = (joins(&j.workers), joins(&j.managers));
    if worker || manager {
        leader_steps.push(Step::RotateJoinTokens { worker, manager });
    }

    // Leaves go first, in the docker phase, so that joins find the node free.
    for (host, step) in leaves {
        match docker.iter_mut().find(|w| w.host == host) {
            Some(w) => w.steps.push(step),
            None => docker.push(Work {
                host,
                steps: vec![step],
                depends_on: vec![],
            }),
        }
    }
    // Keep the docker phase in inventory order.
    let order: HashMap<&str, usize> = input
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    docker.sort_by_key(|w| order.get(w.host.as_str()).copied().unwrap_or(usize::MAX));

    let init = (!swarm.exists).then(|| Work {
        host: leader.name.clone(),
        steps: vec![Step::InitSwarm {
            advertise: advertise_of(leader, lf),
            default_addr_pool: input.default_addr_pool.map(str::to_string),
        }],
        depends_on: vec![],
    });
    let settings = if leader_steps.is_empty() {
        vec![]
    } else {
        vec![Work {
            host: leader.name.clone(),
            steps: leader_steps,
            depends_on: vec![],
        }]
    };
    plan.phases = phases(docker, init, j.managers, j.workers, settings);
    plan
}

/// The phases in the order they run, leaving out the empty ones.
fn phases(
    docker: Vec<Work>,
    init: Option<Work>,
    manager_joins: Vec<Work>,
    worker_joins: Vec<Work>,
    settings: Vec<Work>,
) -> Vec<Phase> {
    let phase = |name, parallel, work: Vec<Work>| {
        (!work.is_empty()).then_some(Phase {
            name,
            parallel,
            work,
        })
    };
    [
        phase(DOCKER_PHASE, true, docker),
        phase("swarm init", false, init.into_iter().collect()),
        // Managers join one at a time so that raft never loses quorum mid-join.
        phase("manager joins", false, manager_joins),
        phase("worker joins", true, worker_joins),
        phase(SETTINGS_PHASE, false, settings),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Docker on every host: installed (or refused), `daemon.json` merged, the daemon
/// started or restarted. Also says, per host, whether Docker will run after this phase.
pub fn docker_phase<'a>(input: &Input<'a>) -> (Vec<Work>, HashMap<&'a str, bool>) {
    let mut docker = Vec::new();
    let mut will_run_docker: HashMap<&str, bool> = HashMap::new();
    for host in input.hosts {
        let Some(f) = input.facts.get(&host.name) else {
            continue;
        };
        let mut steps = Vec::new();
        let mut running = f.docker_running;
        if let Some(DockerProblem::Unsupported(why)) = &f.docker_problem {
            steps.push(Step::Refuse(why.clone()));
        } else if !f.docker_installed {
            match &host.docker.install {
                InstallMethod::Skip => steps.push(Step::Refuse(
                    "docker is not installed and the inventory says install = \"skip\"".into(),
                )),
                m => {
                    steps.push(Step::InstallDocker(m.clone()));
                    // Debian's package starts the daemon; the start step makes sure.
                    running = false;
                }
            }
        }
        let installable = !matches!(steps.first(), Some(Step::Refuse(_)));
        if installable {
            match merge_daemon_json(f.daemon_json.as_deref(), &host.docker.daemon) {
                Ok(Some(text)) => {
                    steps.push(Step::WriteDaemonJson(text));
                    steps.push(Step::RestartDocker);
                }
                Ok(None) if !running => steps.push(Step::StartDocker),
                Ok(None) => {}
                Err(e) => steps.push(Step::Refuse(e)),
            }
        }
        let ok = !steps.iter().any(|s| matches!(s, Step::Refuse(_)));
        will_run_docker.insert(&host.name, ok);
        if !steps.is_empty() {
            docker.push(Work {
                host: host.name.clone(),
                steps,
                depends_on: vec![],
            });
        }
    }
    (docker, will_run_docker)
}

/// The leader: a manager that already leads a swarm, else the first manager that answered.
pub fn pick_leader<'a>(input: &Input<'a>) -> Option<&'a Host> {
    input
        .managers
        .iter()
        .find(|m| {
            input
                .facts
                .get(&m.name)
                .is_some_and(|f| f.swarm.is_active() && f.swarm.control_available)
        })
        .or_else(|| {
            input
                .managers
                .iter()
                .find(|m| input.facts.contains_key(&m.name))
        })
        .copied()
}

/// The swarm as the leader sees it.
pub struct Swarm<'a> {
    pub leader: &'a Host,
    /// The leader's facts.
    pub facts: &'a Facts,
    /// The leader already leads a swarm.
    pub exists: bool,
    /// The swarm's nodes by id (empty when it does not exist yet).
    pub nodes: HashMap<&'a str, &'a SwarmNode>,
}

impl<'a> Swarm<'a> {
    fn new(leader: &'a Host, facts: &'a Facts) -> Swarm<'a> {
        let exists = facts.swarm.is_active() && facts.swarm.control_available;
        let nodes = if exists {
            facts.nodes.iter().map(|n| (n.id.as_str(), n)).collect()
        } else {
            HashMap::new()
        };
        Swarm {
            leader,
            facts,
            exists,
            nodes,
        }
    }
}

/// What the joins phase decided.
#[derive(Default)]
pub struct Joins {
    /// Managers to join, one at a time.
    pub managers: Vec<Work>,
    /// Workers to join in parallel, and hosts refused (shared host names, other swarms).
    pub workers: Vec<Work>,
    /// Role changes of hosts already in our swarm, for the leader.
    pub set_roles: Vec<Step>,
    /// Hosts refused: they get no label either.
    pub blocked: Vec<String>,
    /// Hosts whose old node entries the leader removes.
    pub prune: Vec<String>,
    /// Hosts that leave another swarm first (`--force`).
    pub leaves: Vec<(String, Step)>,
    /// Half-joined hosts that join again under a new node id: their labels are set anew.
    pub rejoined: Vec<String>,
}

impl Joins {
    /// A join (or rejoin) of `host`: managers one at a time, workers in parallel, after
    /// the leader.
    fn join(&mut self, host: &Host, step: Step, swarm: &Swarm) {
        let work = Work {
            host: host.name.clone(),
            steps: vec![step],
            depends_on: vec![swarm.leader.name.clone()],
        };
        match host.role {
            Role::Manager => self.managers.push(work),
            Role::Worker => self.workers.push(work),
        }
    }
}

/// Why a node of ours is half-joined, and the entry the leader still lists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfJoined {
    pub why: String,
    /// The entry its repair removes; `Err` says why the entry it names is not its own
    /// (the repair is refused then: nothing is removed).
    pub stale: Result<Option<String>, String>,
}

/// A node that is neither in the swarm nor out of it: its join timed out and it is still
/// trying (`pending`, or `error`), it believes it is in the swarm but the managers list
/// it down while it answers, or it believes it is a node that the swarm no longer lists.
/// It must be one of ours: it names one of our managers (by node id or address) as its
/// manager; a node of another swarm is not half-joined (that needs `--force`). The node ID
/// it reports is its word: the entry of that ID is removed only when [`check_claim`]
/// confirms it is this host's.
pub fn half_joined(host: &Host, input: &Input, swarm: &Swarm) -> Option<HalfJoined> {
    let f = input.facts.get(&host.name)?;
    if !swarm.exists {
        return None;
    }
    let ours = names_our_managers(f, swarm);
    let id = f.swarm.node_id.as_str();
    let listed = swarm.nodes.get(id).filter(|_| !id.is_empty()).copied();
    let stale = |n: &SwarmNode| claimed_for_removal(host, f, n, input).map(|()| Some(n.id.clone()));
    match f.swarm.local_node_state.as_str() {
        state @ ("pending" | "error") if ours || f.swarm.remote_managers.is_empty() => {
            Some(HalfJoined {
                why: format!(
                    "its join did not complete (its swarm state is {state}); it is still trying in the background"
                ),
                stale: listed.map_or(Ok(None), stale),
            })
        }
        "active" => match listed {
            Some(n) if n.state == "down" => Some(HalfJoined {
                why: format!(
                    "the managers list it down under its node id {id} while it answers: it believes it is in the swarm but takes no part"
                ),
                stale: stale(n),
            }),
            None if ours => Some(HalfJoined {
                why: format!(
                    "it believes it is node {id} of this swarm, which no longer lists it (its entry was removed while it was away)"
                ),
                stale: Ok(None),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the leader's entry `n`, of the node ID `host` reports, may be removed for it
/// ([`check_claim`]: that host's host name and address, claimed by no other host).
fn claimed_for_removal(host: &Host, f: &Facts, n: &SwarmNode, input: &Input) -> Result<(), String> {
    let mut also: Vec<String> = input
        .facts
        .iter()
        .filter(|(h, o)| **h != host.name && o.swarm.node_id == n.id)
        .map(|(h, _)| h.clone())
        .collect();
    also.sort();
    let addresses = addresses_of(input, host);
    let claim = Claim {
        host: &host.name,
        node_id: &n.id,
        hostname: &f.hostname,
        addresses: &addresses,
        also_claimed_by: &also,
        basis: Basis::NodeId,
        stake: Stake::Removal,
    };
    check_claim(&claim, Some(NodeEntry::from(n)))
}

/// A host's addresses as this machine knows them ([`Input::addresses`]).
fn addresses_of(input: &Input, host: &Host) -> Vec<String> {
    input
        .addresses
        .get(&host.name)
        .cloned()
        .unwrap_or_else(|| vec![host.address.clone()])
}

/// Whether the node names one of our managers as its manager, by node id or address
/// (a manager of another cluster, which says its cluster id, never).
fn names_our_managers(f: &Facts, swarm: &Swarm) -> bool {
    if !f.swarm.cluster.id.is_empty() && f.swarm.cluster.id != swarm.facts.swarm.cluster.id {
        return false;
    }
    let managers: Vec<&SwarmNode> = swarm
        .nodes
        .values()
        .filter(|n| n.role == "manager")
        .copied()
        .collect();
    let host = |addr: &str| -> String {
        match addr.rsplit_once(':') {
            Some((h, _)) => h.trim_matches(['[', ']']).to_string(),
            None => addr.to_string(),
        }
    };
    f.swarm.remote_managers.iter().any(|m| {
        let ip = host(&m.addr);
        (!m.node_id.is_empty()
            && (managers.iter().any(|n| n.id == m.node_id)
                || m.node_id == swarm.facts.swarm.node_id))
            || (!ip.is_empty()
                && (managers.iter().any(|n| n.addr == ip) || swarm.facts.swarm.node_addr == ip))
    })
}

/// Joins, role changes, and the refusals that stop a host from joining: a host name shared
/// by two hosts (swarm shows nodes by host name and default Pi images are all called
/// "raspberrypi"), a node of another swarm without `--force`.
pub fn joins(input: &Input, swarm: &Swarm, will_run_docker: &HashMap<&str, bool>) -> Joins {
    let facts = input.facts;
    let lf = swarm.facts;
    // Host names must be unique before anything joins.
    let mut by_hostname: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for host in input.hosts.iter().chain(input.managers.iter()) {
        if let Some(f) = facts.get(&host.name) {
            let names = by_hostname.entry(f.hostname.as_str()).or_default();
            if !names.contains(&host.name.as_str()) {
                names.push(&host.name);
            }
        }
    }
    let mut j = Joins::default();
    let mut demoted: Vec<&str> = Vec::new();
    for host in input.hosts {
        let Some(f) = facts.get(&host.name) else {
            continue;
        };
        if host.name == swarm.leader.name {
            continue;
        }
        let dup = &by_hostname[f.hostname.as_str()];
        let half = half_joined(host, input, swarm);
        let in_our_swarm = half.is_none()
            && f.swarm.is_active()
            && swarm.nodes.contains_key(f.swarm.node_id.as_str());
        let mut refuse = None;
        if dup.len() > 1 {
            refuse = Some(format!(
                "host name {:?} is shared by {}; give each Pi its own (hostnamectl set-hostname) before it joins, or the swarm confuses them",
                f.hostname,
                dup.join(", ")
            ));
        } else if let Some(h) = half {
            // Its stale entry goes before it joins again: only an entry confirmed to be
            // its own, and a manager's only while the managers keep quorum without it.
            match h.stale {
                Err(why) => {
                    refuse = Some(format!(
                        "half-joined ({}), and its repair is refused: {why}",
                        h.why
                    ));
                }
                Ok(stale) => {
                    let stale_manager = stale
                        .as_deref()
                        .filter(|id| swarm.nodes.get(id).is_some_and(|n| n.role == "manager"));
                    if let Some(id) = stale_manager
                        && let Err(why) = quorum_after(&lf.nodes, &[id], Change::Remove)
                        && !input.force
                    {
                        refuse = Some(format!(
                            "half-joined ({}), and removing its manager entry is refused: {why}; or run with --force",
                            h.why
                        ));
                    } else if will_run_docker[host.name.as_str()] {
                        j.rejoined.push(host.name.clone());
                        if lf.nodes.iter().any(|n| n.hostname == f.hostname) {
                            j.prune.push(host.name.clone());
                        }
                        let step = Step::Rejoin {
                            role: host.role,
                            advertise: advertise_of(host, f),
                            stale,
                            why: h.why,
                        };
                        j.join(host, step, swarm);
                        continue;
                    }
                }
            }
        } else if f.swarm.is_active() && !in_our_swarm {
            let which = if f.swarm.cluster.id.is_empty() {
                format!("managed by {}", f.swarm.manager_addrs().join(", "))
            } else {
                format!("cluster {}", f.swarm.cluster.id)
            };
            if input.force {
                j.leaves.push((
                    host.name.clone(),
                    Step::LeaveSwarm {
                        reason: format!("belongs to another swarm ({which})"),
                    },
                ));
                j.prune.push(host.name.clone());
            } else {
                refuse = Some(format!(
                    "belongs to another swarm ({which}); run with --force to make it leave and join this one"
                ));
            }
        }
        if let Some(msg) = refuse {
            j.blocked.push(host.name.clone());
            j.workers.push(Work {
                host: host.name.clone(),
                steps: vec![Step::Refuse(msg)],
                depends_on: vec![],
            });
            continue;
        }
        if in_our_swarm {
            let node = swarm.nodes[f.swarm.node_id.as_str()];
            if node.role != host.role.as_str() {
                // Demotions one after another: each must leave the managers a quorum.
                if host.role == Role::Worker {
                    demoted.push(node.id.as_str());
                    if let Err(why) = quorum_after(&lf.nodes, &demoted, Change::Remove)
                        && !input.force
                    {
                        demoted.pop();
                        j.set_roles.push(Step::Refuse(format!(
                            "demoting {} to worker refused: {why}; or run with --force",
                            host.name
                        )));
                        continue;
                    }
                }
                j.set_roles.push(Step::SetRole {
                    host: host.name.clone(),
                    role: host.role,
                });
            }
        } else if will_run_docker[host.name.as_str()] {
            // A Pi that was reinstalled, or left, rejoins as a new node: its old entry goes.
            if lf.nodes.iter().any(|n| n.hostname == f.hostname) {
                j.prune.push(host.name.clone());
            }
            let step = Step::JoinSwarm {
                role: host.role,
                advertise: advertise_of(host, f),
            };
            j.join(host, step, swarm);
        }
    }
    j
}

/// Stale node entries: `down` entries that [`stale`] finds are our hosts' (listed under
/// the host name one reports, at one of its addresses), and those of the hosts [`joins`]
/// found rejoining or leaving. Pruned after the joins so that the fleet shows each Pi
/// once; the executor judges the leader's list again then.
pub fn prune(input: &Input, swarm: &Swarm, mut hosts: Vec<String>) -> Option<Step> {
    if swarm.exists {
        let addresses: Vec<(&Host, &Facts, Vec<String>)> = input
            .hosts
            .iter()
            .filter_map(|h| Some((*h, input.facts.get(&h.name)?, addresses_of(input, h))))
            .collect();
        let owners: Vec<Owner> = addresses
            .iter()
            .map(|(h, f, a)| Owner {
                host: &h.name,
                hostname: &f.hostname,
                addresses: a,
            })
            .collect();
        let current: Vec<String> = input
            .facts
            .values()
            .map(|f| f.swarm.node_id.clone())
            .collect();
        let down: Vec<NodeEntry> = swarm
            .facts
            .nodes
            .iter()
            .filter(|n| n.state == "down")
            .map(NodeEntry::from)
            .collect();
        for verdict in stale(&down, &owners, &current) {
            if let Stale::Remove { host, .. } = verdict {
                hosts.push(host.to_string());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    (!hosts.is_empty()).then_some(Step::PruneStaleNodes { hosts })
}

/// Labels: what the inventory wants and the node does not have yet (never for a host
/// refused by [`joins`]; all of them for one that joins again under a new node id).
pub fn labels(input: &Input, swarm: &Swarm, blocked: &[String], rejoined: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    for host in input.hosts {
        if host.labels.is_empty() {
            continue;
        }
        let Some(f) = input.facts.get(&host.name) else {
            continue;
        };
        let current = swarm
            .nodes
            .get(f.swarm.node_id.as_str())
            .filter(|_| !rejoined.contains(&host.name))
            .map(|n| &n.labels);
        let missing: Vec<(String, String)> = host
            .labels
            .iter()
            .filter(|(k, v)| current.and_then(|c| c.get(*k)) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing.is_empty() && !blocked.contains(&host.name) {
            steps.push(Step::SetLabels {
                host: host.name.clone(),
                labels: missing,
            });
        }
    }
    steps
}

/// The playbook's networks: created where missing, refused where one exists with other
/// options (the same decision `deploy` takes: [`crate::docker::network::compare`]).
/// Networks exist once the swarm does; only the leader creates them, and only when it
/// is among the hosts acted on (or the swarm is new).
pub fn networks(input: &Input, swarm: &Swarm) -> Vec<Step> {
    let leader_acted_on = input.hosts.iter().any(|h| h.name == swarm.leader.name);
    if swarm.exists && !leader_acted_on {
        return vec![];
    }
    compare(input.networks, &swarm.facts.networks)
        .into_iter()
        .filter_map(|v| match v {
            Verdict::Missing(net) => Some(Step::CreateNetwork(net.clone())),
            Verdict::Conflict(msg) => Some(Step::Refuse(msg)),
            Verdict::Matches => None,
        })
        .collect()
}

/// The address a node advertises to the swarm.
pub fn advertise_of(host: &Host, f: &Facts) -> String {
    match &host.advertise {
        Advertise::Address(ip) => ip.to_string(),
        Advertise::Interface(name) => name.clone(),
        Advertise::Reach if !f.reach_addr.is_empty() => f.reach_addr.clone(),
        Advertise::Reach => host.address.clone(),
    }
}

#[cfg(test)]
mod tests;
