//! Which manager a backup copies the swarm's state from, and what stopping its Docker
//! for the copy costs: a pure function of the swarm's nodes, the managers rpiprov reached
//! (each confirmed as the node it says it is), and where the services' tasks run.
//!
//! - Three managers or more: a reachable one that does not lead, whose stop keeps quorum
//!   ([`node::quorum_after`]): the swarm goes on, and of those the one that runs the fewest
//!   services no other node runs (ties: inventory order), so that every service stays up.
//! - Two: stopping either loses quorum for the copy (raft needs 2 of 2): the one that does
//!   not lead, so that the leader stays in place; the user is asked first.
//! - One: it, its stop announced and asked for first; its workers' containers run on.
//! - A swarm of more managers that lost some already is treated as the two-manager case
//!   when no stop keeps quorum.

use std::collections::{BTreeMap, BTreeSet};

use crate::docker::node::{self, Change, SwarmNode};
use crate::docker::service::Poll;

/// A manager rpiprov reached, and its node (confirmed: see `take::survey`).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub host: &'a str,
    pub node: &'a SwarmNode,
}

/// What the copy's stop does to the swarm's quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quorum {
    Kept,
    /// Lost for the stop's duration (the choice's `why` says what that costs): the user
    /// is asked first.
    Lost,
}

/// The manager to copy from, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub host: String,
    pub node_id: String,
    pub leader: bool,
    pub quorum: Quorum,
    /// One sentence for the user: where, why, and what the stop costs.
    pub why: String,
    /// Services whose only running tasks are on it: they stop for the copy.
    pub stopped: Vec<String>,
}

/// Per service, the host names of the nodes that run one of its tasks now.
pub fn running_on(polls: &BTreeMap<String, Poll>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for poll in polls.values() {
        for s in &poll.services {
            out.entry(s.name.clone()).or_default();
        }
        for t in &poll.tasks {
            if t.desired == "running" && t.state == "running" {
                out.entry(t.service.clone())
                    .or_default()
                    .insert(t.node.clone());
            }
        }
    }
    out
}

/// The services that run on `hostname` only.
fn only_on(running: &BTreeMap<String, BTreeSet<String>>, hostname: &str) -> Vec<String> {
    running
        .iter()
        .filter(|(_, on)| on.len() == 1 && on.contains(hostname))
        .map(|(s, _)| s.clone())
        .collect()
}

/// Chooses the manager (see the module header). `candidates` in inventory order.
pub fn choose(
    candidates: &[Candidate],
    nodes: &[SwarmNode],
    running: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Choice, String> {
    let managers: Vec<&SwarmNode> = nodes.iter().filter(|n| n.role == "manager").collect();
    let up = managers.iter().filter(|n| n.state == "ready").count();
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            c.node.role == "manager" && c.node.state == "ready" && c.node.manager != "unreachable"
        })
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "no manager of the swarm can be copied from: none of the {} rpiprov reached is a ready manager in the swarm's node list",
            candidates.len()
        ));
    }
    let followers: Vec<&&Candidate> = usable
        .iter()
        .filter(|c| c.node.manager != "leader")
        .collect();
    let keeping = followers
        .iter()
        .filter(|c| node::quorum_after(nodes, &[c.node.id.as_str()], Change::Down).is_ok())
        .min_by_key(|c| only_on(running, &c.node.hostname).len());
    let pick = |c: &Candidate, quorum: Quorum, why: String| Choice {
        host: c.host.to_string(),
        node_id: c.node.id.clone(),
        leader: c.node.manager == "leader",
        quorum,
        why,
        stopped: only_on(running, &c.node.hostname),
    };
    if let Some(c) = keeping {
        let mut why = format!(
            "taken from {}, a manager that does not lead: {} of the {} managers stay up during the copy, so quorum holds and the swarm goes on",
            c.host,
            up - 1,
            managers.len()
        );
        let stopped = only_on(running, &c.node.hostname);
        if !stopped.is_empty() {
            why.push_str(&format!(
                "; {} run(s) only there and stop for the copy",
                stopped.join(", ")
            ));
        }
        return Ok(pick(c, Quorum::Kept, why));
    }
    let c = followers.first().map(|c| **c).unwrap_or(usable[0]);
    let why = match managers.len() {
        1 => format!(
            "{} is the swarm's only manager: its Docker stops for the copy (seconds; longer with many containers to stop), and meanwhile the swarm cannot be changed and {}'s own containers stop and start again; the workers' containers keep running",
            c.host, c.host
        ),
        2 => format!(
            "the swarm has 2 managers, and stopping either one's Docker loses quorum for the copy (raft needs 2 of 2): the services keep running, but the swarm cannot be changed or replace a failed task until it is back; taken from {}, the one that does not lead, so that the leader stays in place",
            c.host
        ),
        _ => {
            let lost = node::quorum_after(nodes, &[c.node.id.as_str()], Change::Down)
                .err()
                .unwrap_or_default();
            format!(
                "stopping any manager's Docker for the copy loses quorum now: {lost}; taken from {} all the same if you go on",
                c.host
            )
        }
    };
    Ok(pick(c, Quorum::Lost, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::service::{ServiceLine, Task};

    fn mgr(id: &str, standing: &str) -> SwarmNode {
        SwarmNode {
            id: id.into(),
            hostname: id.replace('n', "pi"),
            role: "manager".into(),
            state: "ready".into(),
            availability: "active".into(),
            manager: standing.into(),
            ..Default::default()
        }
    }

    fn worker(id: &str) -> SwarmNode {
        SwarmNode {
            role: "worker".into(),
            manager: String::new(),
            ..mgr(id, "")
        }
    }

    fn task(service: &str, node: &str) -> Task {
        Task {
            id: format!("{service}-{node}"),
            service: service.into(),
            slot: format!("{service}.1"),
            node: node.into(),
            desired: "running".into(),
            state: "running".into(),
            error: String::new(),
            current: true,
            settled: true,
        }
    }

    fn polls(tasks: Vec<Task>) -> BTreeMap<String, Poll> {
        let mut names: Vec<String> = tasks.iter().map(|t| t.service.clone()).collect();
        names.dedup();
        BTreeMap::from([(
            "s".to_string(),
            Poll {
                services: names
                    .into_iter()
                    .map(|name| ServiceLine {
                        name,
                        running: 1,
                        desired: 1,
                        completed: None,
                    })
                    .collect(),
                tasks,
                ..Default::default()
            },
        )])
    }

    fn candidates<'a>(nodes: &'a [SwarmNode]) -> Vec<Candidate<'a>> {
        nodes
            .iter()
            .filter(|n| n.role == "manager")
            .map(|n| Candidate {
                host: Box::leak(n.hostname.clone().into_boxed_str()),
                node: n,
            })
            .collect()
    }

    /// Three managers: not the leader, and of the two others the one whose stop takes no
    /// service down (echo runs on pi2 alone).
    #[test]
    fn three_managers_copy_from_a_follower_that_runs_no_service_alone() {
        let nodes = [
            mgr("n1", "leader"),
            mgr("n2", "reachable"),
            mgr("n3", "reachable"),
        ];
        let running = running_on(&polls(vec![
            task("echo_echo", "pi2"),
            task("web_web", "pi1"),
            task("web_web", "pi2"),
            task("web_web", "pi3"),
        ]));
        let c = choose(&candidates(&nodes), &nodes, &running).unwrap();
        assert_eq!(
            c,
            Choice {
                host: "pi3".into(),
                node_id: "n3".into(),
                leader: false,
                quorum: Quorum::Kept,
                why: "taken from pi3, a manager that does not lead: 2 of the 3 managers stay up during the copy, so quorum holds and the swarm goes on".into(),
                stopped: vec![],
            }
        );
        // Both followers run a service alone: the first in inventory order, saying so.
        let running = running_on(&polls(vec![
            task("echo_echo", "pi2"),
            task("api_api", "pi3"),
        ]));
        let c = choose(&candidates(&nodes), &nodes, &running).unwrap();
        assert_eq!(
            (c.host.as_str(), c.stopped.clone()),
            ("pi2", vec!["echo_echo".to_string()])
        );
        assert!(
            c.why
                .ends_with("; echo_echo run(s) only there and stop for the copy"),
            "{}",
            c.why
        );
    }

    #[test]
    fn one_or_two_managers_lose_quorum_and_say_so() {
        let one = [mgr("n1", "leader"), worker("n2"), worker("n3")];
        let c = choose(&candidates(&one), &one, &BTreeMap::new()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.leader, &c.quorum),
            ("pi1", true, &Quorum::Lost)
        );
        assert!(
            c.why
                .starts_with("pi1 is the swarm's only manager: its Docker stops for the copy"),
            "{}",
            c.why
        );
        assert!(c.why.ends_with("the workers' containers keep running"));

        let two = [mgr("n1", "leader"), mgr("n2", "reachable")];
        let c = choose(&candidates(&two), &two, &BTreeMap::new()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.leader, &c.quorum),
            ("pi2", false, &Quorum::Lost)
        );
        assert!(
            c.why
                .contains("loses quorum for the copy (raft needs 2 of 2)"),
            "{}",
            c.why
        );

        // Three managers, one down already: no stop keeps quorum.
        let mut three = [
            mgr("n1", "leader"),
            mgr("n2", "reachable"),
            mgr("n3", "unreachable"),
        ];
        three[2].state = "down".into();
        let c = choose(&candidates(&three), &three, &BTreeMap::new()).unwrap();
        assert_eq!((c.host.as_str(), &c.quorum), ("pi2", &Quorum::Lost));
        assert!(
            c.why.contains(
                "the swarm would lose quorum: 1 of its 3 managers would be up (pi3 down already)"
            ),
            "{}",
            c.why
        );
    }

    #[test]
    fn no_ready_manager_is_an_error() {
        let mut nodes = [mgr("n1", "leader")];
        nodes[0].state = "down".into();
        let e = choose(&candidates(&nodes), &nodes, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e,
            "no manager of the swarm can be copied from: none of the 1 rpiprov reached is a ready manager in the swarm's node list"
        );
    }
}
