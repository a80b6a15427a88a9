//! The bootstrap planner: a pure function of inventory, playbook and facts to ordered
//! phases of per-host steps. Only what differs from the wanted state becomes a step, so a
//! formed fleet yields an empty plan. Unit-tested without SSH.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::config::{Advertise, Host, InstallMethod, Network, Role};
use crate::facts::{Facts, NetworkInfo};

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
    /// On the leader: removes node entries left by these hosts' earlier lives (a node that
    /// left or was reinstalled): same host name, not the host's current node.
    PruneStaleNodes {
        hostnames: Vec<String>,
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

/// A phase runs after the previous one has finished on every host.
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
    pub networks: &'a [Network],
    pub default_addr_pool: Option<&'a str>,
    /// `--force`: a node of another swarm leaves it.
    pub force: bool,
}

/// Plans a bootstrap. Hosts without facts (unreachable) get no steps; the executor reports
/// them. A refused step stands where the problem is, so other hosts still proceed.
pub fn plan(input: &Input) -> Plan {
    let facts = input.facts;
    let mut docker_phase = Vec::new();
    let mut will_run_docker: HashMap<&str, bool> = HashMap::new();

    for host in input.hosts {
        let Some(f) = facts.get(&host.name) else {
            continue;
        };
        let mut steps = Vec::new();
        let mut running = f.docker_running;
        if !f.docker_installed {
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
            docker_phase.push(Work {
                host: host.name.clone(),
                steps,
                depends_on: vec![],
            });
        }
    }

    // The leader: a manager that already leads a swarm, else the first manager that answered.
    let leader = input
        .managers
        .iter()
        .find(|m| {
            facts
                .get(&m.name)
                .is_some_and(|f| f.swarm.is_active() && f.swarm.control_available)
        })
        .or_else(|| input.managers.iter().find(|m| facts.contains_key(&m.name)))
        .copied();

    let mut plan = Plan {
        leader: leader.map(|l| l.name.clone()),
        phases: vec![],
    };
    let Some(leader) = leader else {
        if !docker_phase.is_empty() {
            plan.phases.push(Phase {
                name: "docker",
                parallel: true,
                work: docker_phase,
            });
        }
        return plan;
    };
    let lf = &facts[&leader.name];
    let leader_dep = vec![leader.name.clone()];
    let mut leave_steps: Vec<(String, Step)> = Vec::new();

    // A leader that is a worker of some other swarm cannot lead ours.
    if lf.swarm.is_active() && !lf.swarm.control_available {
        let msg = format!(
            "belongs to another swarm (managed by {})",
            lf.swarm.manager_addrs().join(", ")
        );
        if input.force {
            leave_steps.push((leader.name.clone(), Step::LeaveSwarm { reason: msg }));
        } else {
            docker_phase.push(Work {
                host: leader.name.clone(),
                steps: vec![Step::Refuse(format!(
                    "{msg}; run with --force to make it leave and lead this one"
                ))],
                depends_on: vec![],
            });
            plan.phases.push(Phase {
                name: "docker",
                parallel: true,
                work: docker_phase,
            });
            return plan;
        }
    }
    let swarm_exists = lf.swarm.is_active() && lf.swarm.control_available;
    let cluster_nodes: HashMap<&str, &crate::facts::SwarmNode> = if swarm_exists {
        lf.nodes.iter().map(|n| (n.id.as_str(), n)).collect()
    } else {
        HashMap::new()
    };

    // Host names must be unique before anything joins: swarm shows nodes by host name and
    // default Pi images are all called "raspberrypi".
    let mut by_hostname: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for host in input.hosts.iter().chain(input.managers.iter()) {
        if let Some(f) = facts.get(&host.name) {
            let names = by_hostname.entry(f.hostname.as_str()).or_default();
            if !names.contains(&host.name.as_str()) {
                names.push(&host.name);
            }
        }
    }

    let mut manager_joins = Vec::new();
    let mut worker_joins = Vec::new();
    let mut leader_steps = Vec::new();
    let mut blocked: Vec<&str> = Vec::new();
    // Hosts that leave a swarm: their old entry turns `down` and is pruned.
    let mut prune: Vec<String> = Vec::new();

    for host in input.hosts {
        let Some(f) = facts.get(&host.name) else {
            continue;
        };
        if host.name == leader.name {
            continue;
        }
        let dup = &by_hostname[f.hostname.as_str()];
        let in_our_swarm =
            f.swarm.is_active() && cluster_nodes.contains_key(f.swarm.node_id.as_str());
        let mut refuse = None;
        if dup.len() > 1 {
            refuse = Some(format!(
                "host name {:?} is shared by {}; give each Pi its own (hostnamectl set-hostname) before it joins, or the swarm confuses them",
                f.hostname,
                dup.join(", ")
            ));
        } else if f.swarm.is_active() && !in_our_swarm {
            let which = if f.swarm.cluster.id.is_empty() {
                format!("managed by {}", f.swarm.manager_addrs().join(", "))
            } else {
                format!("cluster {}", f.swarm.cluster.id)
            };
            if input.force {
                leave_steps.push((
                    host.name.clone(),
                    Step::LeaveSwarm {
                        reason: format!("belongs to another swarm ({which})"),
                    },
                ));
                prune.push(f.hostname.clone());
            } else {
                refuse = Some(format!(
                    "belongs to another swarm ({which}); run with --force to make it leave and join this one"
                ));
            }
        }
        if let Some(msg) = refuse {
            blocked.push(&host.name);
            worker_joins.push(Work {
                host: host.name.clone(),
                steps: vec![Step::Refuse(msg)],
                depends_on: vec![],
            });
            continue;
        }
        if in_our_swarm {
            let node = cluster_nodes[f.swarm.node_id.as_str()];
            if node.role != host.role.as_str() {
                leader_steps.push(Step::SetRole {
                    host: host.name.clone(),
                    role: host.role,
                });
            }
        } else if will_run_docker[host.name.as_str()] {
            // A Pi that was reinstalled, or left, rejoins as a new node: its old entry goes.
            if lf.nodes.iter().any(|n| n.hostname == f.hostname) {
                prune.push(f.hostname.clone());
            }
            let work = Work {
                host: host.name.clone(),
                steps: vec![Step::JoinSwarm {
                    role: host.role,
                    advertise: advertise_of(host, f),
                }],
                depends_on: leader_dep.clone(),
            };
            match host.role {
                Role::Manager => manager_joins.push(work),
                Role::Worker => worker_joins.push(work),
            }
        }
    }

    // Down entries whose host name is one of ours: leftovers of a node that left or was
    // reinstalled. Pruned after the joins so that the fleet shows each Pi once.
    for n in lf.nodes.iter().filter(|n| n.state == "down") {
        let ours = input
            .hosts
            .iter()
            .any(|h| facts.get(&h.name).is_some_and(|f| f.hostname == n.hostname));
        if ours && swarm_exists {
            prune.push(n.hostname.clone());
        }
    }
    prune.sort();
    prune.dedup();
    if !prune.is_empty() {
        leader_steps.insert(0, Step::PruneStaleNodes { hostnames: prune });
    }

    // Labels: what the inventory wants and the node does not have yet.
    for host in input.hosts {
        if host.labels.is_empty() {
            continue;
        }
        let Some(f) = facts.get(&host.name) else {
            continue;
        };
        let current = cluster_nodes
            .get(f.swarm.node_id.as_str())
            .map(|n| &n.labels);
        let missing: Vec<(String, String)> = host
            .labels
            .iter()
            .filter(|(k, v)| current.and_then(|c| c.get(*k)) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing.is_empty() && !blocked.contains(&host.name.as_str()) {
            leader_steps.push(Step::SetLabels {
                host: host.name.clone(),
                labels: missing,
            });
        }
    }

    // Networks exist once the swarm does; only the leader creates them.
    if input.hosts.iter().any(|h| h.name == leader.name) || !swarm_exists {
        for net in input.networks {
            match lf.networks.iter().find(|n| n.name == net.name) {
                None => leader_steps.push(Step::CreateNetwork(net.clone())),
                Some(have) => {
                    if let Some(conflict) = network_conflict(net, have) {
                        leader_steps.push(Step::Refuse(conflict));
                    }
                }
            }
        }
    }

    // Leaves go first, in the docker phase, so that joins find the node free.
    for (host, step) in leave_steps {
        match docker_phase.iter_mut().find(|w| w.host == host) {
            Some(w) => w.steps.push(step),
            None => docker_phase.push(Work {
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
    docker_phase.sort_by_key(|w| order.get(w.host.as_str()).copied().unwrap_or(usize::MAX));

    if !docker_phase.is_empty() {
        plan.phases.push(Phase {
            name: "docker",
            parallel: true,
            work: docker_phase,
        });
    }
    if !swarm_exists {
        plan.phases.push(Phase {
            name: "swarm init",
            parallel: false,
            work: vec![Work {
                host: leader.name.clone(),
                steps: vec![Step::InitSwarm {
                    advertise: advertise_of(leader, lf),
                    default_addr_pool: input.default_addr_pool.map(str::to_string),
                }],
                depends_on: vec![],
            }],
        });
    }
    if !manager_joins.is_empty() {
        // Managers join one at a time so that raft never loses quorum mid-join.
        plan.phases.push(Phase {
            name: "manager joins",
            parallel: false,
            work: manager_joins,
        });
    }
    if !worker_joins.is_empty() {
        plan.phases.push(Phase {
            name: "worker joins",
            parallel: true,
            work: worker_joins,
        });
    }
    if !leader_steps.is_empty() {
        plan.phases.push(Phase {
            name: "swarm settings",
            parallel: false,
            work: vec![Work {
                host: leader.name.clone(),
                steps: leader_steps,
                depends_on: vec![],
            }],
        });
    }
    plan
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

/// Why an existing network cannot serve as the playbook's, or `None` when it can. Docker
/// cannot change a network in place, so the user has to decide.
pub fn network_conflict(want: &Network, have: &NetworkInfo) -> Option<String> {
    let diff = network_diff(want, have);
    (!diff.is_empty()).then(|| {
        format!(
            "network {} exists with other options ({}); Docker cannot change a network in place: remove it (docker network rm {}) or change the playbook",
            want.name,
            diff.join(", "),
            want.name
        )
    })
}

/// What differs between the playbook's network and the one that exists.
pub fn network_diff(want: &Network, have: &NetworkInfo) -> Vec<String> {
    let pairs = [
        ("driver", have.driver.clone(), want.driver.clone()),
        (
            "attachable",
            have.attachable.to_string(),
            want.attachable.to_string(),
        ),
        (
            "internal",
            have.internal.to_string(),
            want.internal.to_string(),
        ),
        (
            "encrypted",
            have.encrypted.to_string(),
            want.encrypted.to_string(),
        ),
    ];
    let mut diff: Vec<String> = pairs
        .into_iter()
        .filter(|(_, h, w)| h != w)
        .map(|(what, h, w)| format!("{what} is {h}, playbook says {w}"))
        .collect();
    if let Some(subnet) = &want.subnet
        && !have.subnets.contains(subnet)
    {
        diff.push(format!(
            "subnet is {}, playbook says {subnet}",
            if have.subnets.is_empty() {
                "unset".to_string()
            } else {
                have.subnets.join(",")
            }
        ));
    }
    diff
}

/// Merges the inventory's daemon settings into the host's `daemon.json`. Keys the user set
/// and the inventory does not name are kept; lists are united (a registry the user added by
/// hand stays); objects merge key by key. Returns the new text, or `None` when the file
/// already says all of it.
pub fn merge_daemon_json(
    current: Option<&str>,
    wanted: &Map<String, Value>,
) -> Result<Option<String>, String> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut doc = match current.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err("/etc/docker/daemon.json is not a JSON object; fix it by hand".into());
            }
            Err(e) => {
                return Err(format!(
                    "/etc/docker/daemon.json is not valid JSON ({e}); fix it by hand, rpiprov will not overwrite it"
                ));
            }
        },
    };
    let before = Value::Object(doc.clone());
    merge_into(&mut doc, wanted);
    let after = Value::Object(doc);
    if after == before {
        return Ok(None);
    }
    let mut text = serde_json::to_string_pretty(&after).expect("JSON values serialise");
    text.push('\n');
    Ok(Some(text))
}

fn merge_into(doc: &mut Map<String, Value>, wanted: &Map<String, Value>) {
    for (k, v) in wanted {
        match (doc.get_mut(k), v) {
            (Some(Value::Object(have)), Value::Object(want)) => merge_into(have, want),
            (Some(Value::Array(have)), Value::Array(want)) => {
                for item in want {
                    if !have.contains(item) {
                        have.push(item.clone());
                    }
                }
            }
            _ => {
                doc.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
