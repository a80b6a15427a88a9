//! What a status says: a pure function of the configuration and what each host answered.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::Answer;
use crate::config::{Host, Playbook};
use crate::docker::network::{Verdict, compare};
use crate::docker::node::SwarmNode;
use crate::docker::overview::Overview;
use crate::docker::probe::DockerProblem;
use crate::docker::service::{Task, assess_once as assess_services, judge_down_nodes};

/// What [`assess`] is given.
pub struct Input<'a> {
    /// Every host of the inventory, in its order.
    pub hosts: &'a [Host],
    pub playbook: Option<&'a Playbook>,
    /// Each playbook stack's deploy fingerprint computed from the local files, or why it
    /// could not be (a variable's environment variable is not set).
    pub local: &'a BTreeMap<String, Result<String, String>>,
    /// What each host answered, or why it did not.
    pub answers: &'a HashMap<String, Result<Answer, String>>,
}

/// The whole status; the `--json` document is this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Nothing differs from the inventory and the playbook, and nothing is down.
    pub ok: bool,
    pub nodes: Vec<NodeStatus>,
    pub swarm: SwarmStatus,
    pub stacks: Vec<StackStatus>,
    pub drift: Drift,
    /// What differs or is down, one sentence each: the exit code is 1 when there is any.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong.
    pub warnings: Vec<String>,
}

/// One inventory host.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeStatus {
    pub host: String,
    pub address: String,
    /// rpiprov could connect and run its probe.
    pub reachable: bool,
    /// `ready`, `down`, `unreachable`, `no docker`, `unsupported` (a Docker that speaks
    /// no Engine API version rpiprov speaks), `not in swarm`, `no swarm`.
    pub state: String,
    /// Why it is not `ready`.
    pub why: Option<String>,
    /// Docker Engine version.
    pub docker: Option<String>,
    /// The userland architecture (`dpkg`), or Docker's name for it when the host did not
    /// answer.
    pub arch: Option<String>,
    /// As the swarm has it: `manager` or `worker`.
    pub role: Option<String>,
    /// `active`, `pause`, `drain`.
    pub availability: Option<String>,
    /// A manager's standing: `leader`, `reachable`, `unreachable`.
    pub manager: Option<String>,
    /// The swarm node's labels.
    pub labels: BTreeMap<String, String>,
}

/// The swarm as a manager sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SwarmStatus {
    /// The manager whose view this is; `None` when no manager answered with a swarm.
    pub seen_from: Option<String>,
    pub cluster: Option<String>,
    pub managers: usize,
    pub managers_reachable: usize,
    /// More than half of the managers are reachable; `None` when unknown.
    pub quorum: Option<bool>,
}

/// One playbook stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StackStatus {
    pub stack: String,
    pub deployed: bool,
    /// `current` (deployed from the files as they are here), `changed` (the files changed
    /// since its last deploy), `not deployed`, `not recorded` (deployed, but not by
    /// rpiprov), `unknown` (the local fingerprint could not be computed).
    pub files: String,
    pub services: Vec<ServiceStatus>,
}

/// One service of a stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub mode: String,
    pub replicas: String,
    pub converged: bool,
    /// Why it has not converged, as swarm says it.
    pub error: Option<String>,
    /// The most recent error of any of its tasks, even when it converged since.
    pub last_task_error: Option<String>,
}

/// What exists that the configuration does not describe, or the other way round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Drift {
    /// Playbook networks that do not exist.
    pub networks_missing: Vec<String>,
    /// Playbook networks that exist with other options: what differs.
    pub networks_different: Vec<String>,
    /// Stacks in the swarm that the playbook does not name.
    pub stacks_unknown: Vec<String>,
    /// Swarm networks of no stack that the playbook does not name.
    pub networks_unknown: Vec<String>,
    /// Swarm nodes that no inventory host is.
    pub nodes_unknown: Vec<String>,
}

/// The manager whose view counts: the first inventory manager that answered with one.
fn view<'a>(input: &Input<'a>) -> Option<(&'a Host, &'a Answer, &'a Overview)> {
    input.hosts.iter().find_map(|h| {
        let a = input.answers.get(&h.name)?.as_ref().ok()?;
        Some((h, a, a.overview.as_ref()?))
    })
}

/// The swarm node that is this inventory host: by the node id its own probe reported,
/// else (it did not answer) by host name, then by address.
fn node_of<'a>(
    host: &Host,
    answer: Option<&Answer>,
    nodes: &'a [SwarmNode],
) -> Option<&'a SwarmNode> {
    if let Some(a) = answer
        && !a.facts.swarm.node_id.is_empty()
    {
        return nodes.iter().find(|n| n.id == a.facts.swarm.node_id);
    }
    let hostname = answer.map_or(host.name.as_str(), |a| a.facts.hostname.as_str());
    nodes
        .iter()
        .find(|n| n.hostname == hostname)
        .or_else(|| nodes.iter().find(|n| n.addr == host.address))
}

/// Decides the status. Hosts, stacks and networks come out in configuration order.
pub fn assess(input: &Input) -> Status {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let view = view(input);
    let nodes: &[SwarmNode] = view.map_or(&[], |(_, a, _)| a.facts.nodes.as_slice());

    // Nodes.
    let mut seen_nodes: Vec<&str> = Vec::new();
    let mut node_rows = Vec::new();
    for h in input.hosts {
        let answer = input.answers.get(&h.name);
        let ok = answer.and_then(|a| a.as_ref().ok());
        let mut n = NodeStatus {
            host: h.name.clone(),
            address: h.address.clone(),
            reachable: ok.is_some(),
            ..Default::default()
        };
        let swarm_node = node_of(h, ok, nodes);
        if let Some(sn) = swarm_node {
            seen_nodes.push(&sn.id);
            n.role = Some(sn.role.clone());
            n.availability = Some(sn.availability.clone()).filter(|a| !a.is_empty());
            n.manager = Some(sn.manager.clone()).filter(|m| !m.is_empty());
            n.labels = sn.labels.clone();
            n.docker = Some(sn.engine_version.clone()).filter(|v| !v.is_empty());
            n.arch = Some(sn.architecture.clone()).filter(|v| !v.is_empty());
        }
        let (state, why) = match answer {
            Some(Ok(a)) => {
                // The daemon's own word, else what it last told the managers, else the
                // package installed (a daemon that does not answer, outside a swarm).
                n.docker = a
                    .facts
                    .docker_version
                    .clone()
                    .or(n.docker)
                    .or_else(|| a.facts.docker_package.clone());
                n.arch = Some(a.facts.arch.clone())
                    .filter(|v| !v.is_empty())
                    .or(n.arch);
                if !a.facts.docker_installed {
                    (
                        "no docker",
                        Some("Docker is not installed (rpiprov bootstrap installs it)".to_string()),
                    )
                } else if let Some(DockerProblem::Unsupported(why)) = &a.facts.docker_problem {
                    ("unsupported", Some(why.clone()))
                } else if !a.facts.docker_running {
                    ("down", Some("dockerd is not running".to_string()))
                } else if view.is_none() {
                    ("no swarm", None)
                } else {
                    match swarm_node {
                        None => (
                            "not in swarm",
                            Some(
                                "not a node of the swarm (rpiprov bootstrap joins it)".to_string(),
                            ),
                        ),
                        Some(sn) if sn.state != "ready" => {
                            ("down", Some(format!("the swarm sees it {}", sn.state)))
                        }
                        Some(_) => ("ready", None),
                    }
                }
            }
            Some(Err(e)) => ("unreachable", Some(e.clone())),
            None => ("unreachable", Some("not asked".to_string())),
        };
        n.state = state.to_string();
        n.why = why;
        if n.state != "ready" && n.state != "no swarm" {
            problems.push(format!(
                "{}: {}{}",
                h.name,
                n.state,
                n.why
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(sn) = swarm_node {
            if sn.role != h.role.as_str() {
                problems.push(format!(
                    "{}: the swarm has it as a {}, the inventory as a {} (rpiprov bootstrap changes it)",
                    h.name,
                    sn.role,
                    h.role.as_str()
                ));
            }
            let missing: Vec<String> = h
                .labels
                .iter()
                .filter(|(k, v)| sn.labels.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{}: label {} missing on its node (rpiprov bootstrap sets it)",
                    h.name,
                    missing.join(",")
                ));
            }
            if !sn.availability.is_empty() && sn.availability != "active" {
                warnings.push(format!(
                    "{}: availability is {}: the swarm runs no new task there",
                    h.name, sn.availability
                ));
            }
        }
        node_rows.push(n);
    }

    // The swarm and its quorum.
    let mut swarm = SwarmStatus::default();
    let mut drift = Drift::default();
    match view {
        Some((leader, answer, _)) => {
            swarm.seen_from = Some(leader.name.clone());
            swarm.cluster = Some(answer.facts.swarm.cluster.id.clone()).filter(|c| !c.is_empty());
            let managers: Vec<&SwarmNode> = nodes.iter().filter(|n| n.role == "manager").collect();
            swarm.managers = managers.len();
            swarm.managers_reachable = managers
                .iter()
                .filter(|n| n.manager == "leader" || n.manager == "reachable")
                .count();
            let quorum = swarm.managers_reachable * 2 > swarm.managers;
            swarm.quorum = Some(quorum);
            if !quorum {
                problems.push(format!(
                    "swarm: quorum lost: {} of {} managers reachable; the swarm cannot be changed until more than half are back",
                    swarm.managers_reachable, swarm.managers
                ));
            }
            if swarm.managers > 0 && swarm.managers % 2 == 0 {
                warnings.push(format!(
                    "swarm: {} managers, an even number: they tolerate no more failures than {}; use an odd number",
                    swarm.managers,
                    swarm.managers - 1
                ));
            }
            drift.nodes_unknown = nodes
                .iter()
                .filter(|n| !seen_nodes.contains(&n.id.as_str()))
                .map(|n| n.hostname.clone())
                .collect();
            for n in &drift.nodes_unknown {
                problems.push(format!("node {n} is in the swarm but not in the inventory"));
            }
        }
        None => {
            let any_swarm = input
                .answers
                .values()
                .any(|a| a.as_ref().is_ok_and(|a| a.facts.swarm.is_active()));
            problems.push(if any_swarm {
                "swarm: no manager of the inventory answered as a manager: the swarm's state is unknown".to_string()
            } else {
                "swarm: there is no swarm (rpiprov bootstrap forms it)".to_string()
            });
        }
    }

    // Networks and stacks, against the playbook.
    let mut stacks = Vec::new();
    if let (Some(pb), Some((_, answer, ov))) = (input.playbook, view) {
        for (want, verdict) in pb
            .networks
            .iter()
            .zip(compare(&pb.networks, &answer.facts.networks))
        {
            match verdict {
                Verdict::Matches => {}
                Verdict::Missing(_) => {
                    drift.networks_missing.push(want.name.clone());
                    problems.push(format!(
                        "network {}: missing (rpiprov bootstrap or deploy creates it)",
                        want.name
                    ));
                }
                Verdict::Conflict(msg) => {
                    drift.networks_different.push(msg.clone());
                    problems.push(msg);
                }
            }
        }
        drift.networks_unknown = ov
            .networks
            .iter()
            .filter(|(name, ns)| {
                ns.is_empty() && name != "ingress" && !pb.networks.iter().any(|n| &n.name == name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for n in &drift.networks_unknown {
            problems.push(format!(
                "network {n} is in the swarm but not in the playbook"
            ));
        }
        let mut unknown: Vec<String> = ov
            .state
            .existing
            .iter()
            .filter(|s| !pb.stacks.iter().any(|p| &p.name == *s))
            .cloned()
            .collect();
        unknown.sort();
        for s in &unknown {
            problems.push(format!("stack {s} is in the swarm but not in the playbook"));
        }
        drift.stacks_unknown = unknown;

        for st in &pb.stacks {
            let deployed = ov.state.existing.contains(&st.name);
            let recorded = ov.state.recorded.get(&st.name);
            let local = input.local.get(&st.name);
            let files = match (deployed, recorded, local) {
                (false, _, _) => "not deployed",
                (true, None, _) => "not recorded",
                (true, Some(_), None | Some(Err(_))) => "unknown",
                (true, Some(r), Some(Ok(l))) if r == l => "current",
                (true, Some(_), Some(Ok(_))) => "changed",
            };
            match files {
                "not deployed" => problems.push(format!(
                    "stack {}: not deployed (rpiprov deploy deploys it)",
                    st.name
                )),
                "not recorded" => problems.push(format!(
                    "stack {}: deployed, but not by rpiprov: whether it runs the current files is unknown (rpiprov deploy redeploys it)",
                    st.name
                )),
                "changed" => problems.push(format!(
                    "stack {}: its files changed since its last deploy (rpiprov deploy redeploys it)",
                    st.name
                )),
                "unknown" => warnings.push(format!(
                    "stack {}: whether it runs the current files is unknown: {}",
                    st.name,
                    match local {
                        Some(Err(e)) => e.as_str(),
                        _ => "no local fingerprint",
                    }
                )),
                _ => {}
            }
            let mut services = Vec::new();
            if deployed {
                match ov.polls.get(&st.name) {
                    Some(Ok(poll)) => {
                        // Swarm's own count leaves out the nodes it marks down: judged
                        // against the nodes, as a deploy judges it.
                        let mut states = assess_services(&st.name, &st.compose.services, poll);
                        judge_down_nodes(&mut states, &poll.specs, nodes);
                        for s in states {
                            let tasks: Vec<&Task> =
                                poll.tasks.iter().filter(|t| t.service == s.name).collect();
                            let error = (!s.converged).then(|| s.reasons.join("; "));
                            if let Some(e) = &error {
                                problems.push(format!(
                                    "stack {}: service {} {}: {e}",
                                    st.name, s.name, s.replicas
                                ));
                            }
                            services.push(ServiceStatus {
                                last_task_error: tasks
                                    .iter()
                                    .find(|t| !t.error.is_empty())
                                    .map(|t| t.error.clone()),
                                name: s.name,
                                mode: s.mode,
                                replicas: s.replicas,
                                converged: s.converged,
                                error,
                            });
                        }
                    }
                    Some(Err(e)) => problems.push(format!(
                        "stack {}: its services could not be read: {e}",
                        st.name
                    )),
                    None => {}
                }
            }
            stacks.push(StackStatus {
                stack: st.name.clone(),
                deployed,
                files: files.to_string(),
                services,
            });
        }
    }

    Status {
        ok: problems.is_empty(),
        nodes: node_rows,
        swarm,
        stacks,
        drift,
        problems,
        warnings,
    }
}
