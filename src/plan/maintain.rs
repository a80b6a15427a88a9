//! `maintain`'s decisions, pure: in which order, and how many at once, the nodes are taken
//! out of the swarm ([`order`]), whether a drained node's tasks have really moved
//! ([`drained`]), and whether a node that came back runs its global services again
//! ([`globals_back`]). The executor (`crate::maintain`) polls the swarm and asks these.
//!
//! The order: workers first, then managers, the manager the command acts through (and
//! holds the lock on) last; in inventory order otherwise. A batch (`--batch N`, one node
//! by default) never takes down managers that the others could not outvote (raft keeps
//! quorum, [`quorum_after`]), nor more than `max_unavailable` tasks of any replicated
//! service: each service keeps at least its replicas minus that many running. One node
//! alone that holds more is still taken (it cannot be split), with a warning.

use std::collections::{BTreeMap, HashMap};

use crate::docker::node::{Change, SwarmNode, quorum_after};
use crate::docker::service::Task;
use crate::docker::task::{Service, Snapshot, is_live};

/// A host to maintain and the swarm node it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    pub node_id: &'a str,
}

/// What the order is made from.
pub struct Input<'a> {
    /// The swarm as a manager sees it now ([`crate::docker::task::snapshot_reads`]).
    pub swarm: &'a Snapshot,
    /// The hosts to maintain, in inventory order.
    pub targets: &'a [Target<'a>],
    /// At most this many nodes at once (at least 1).
    pub batch: usize,
    /// At most this many tasks of one replicated service down at once (at least 1).
    pub max_unavailable: u64,
    /// `--force`: a manager whose absence loses quorum is taken anyway.
    pub force: bool,
    /// The node id of the manager the command acts through: it goes last.
    pub through: Option<&'a str>,
}

/// The batches, in the order they run, and what the user should know before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// Host names, one batch after another.
    pub batches: Vec<Vec<String>>,
    /// (host, what to know about it).
    pub warnings: Vec<(String, String)>,
}

/// The order of a maintenance, or, per host refused, why (nothing is done then).
pub fn order(input: &Input) -> Result<Order, Vec<(String, String)>> {
    let nodes: HashMap<&str, &SwarmNode> = input
        .swarm
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let mut refused = Vec::new();
    let mut warnings = Vec::new();
    let mut ok: Vec<(Target, &SwarmNode)> = Vec::new();
    for t in input.targets {
        let Some(node) = nodes.get(t.node_id) else {
            refused.push((
                t.host.to_string(),
                format!(
                    "it is not a node of this swarm (its node id {:?} is not listed by the managers): bootstrap it first, or leave it out of --on",
                    t.node_id
                ),
            ));
            continue;
        };
        if node.state != "ready" {
            refused.push((
                t.host.to_string(),
                format!(
                    "the swarm sees it {}: maintain drains a node that is up; bring it back first (rpiprov bootstrap --on {})",
                    node.state, t.host
                ),
            ));
            continue;
        }
        if node.role == "manager"
            && let Err(why) = quorum_after(&input.swarm.nodes, &[t.node_id], Change::Down)
        {
            if input.force {
                warnings.push((
                    t.host.to_string(),
                    format!(
                        "while it is down {why}; going on (--force): its services keep running, but the swarm takes no change until it is back"
                    ),
                ));
            } else {
                refused.push((
                    t.host.to_string(),
                    format!("taking it down is refused: {why}; or run with --force"),
                ));
                continue;
            }
        }
        ok.push((*t, node));
    }
    if !refused.is_empty() {
        return Err(refused);
    }

    // Workers, then managers, the one acted through last; inventory order otherwise.
    let rank =
        |(t, n): &(Target, &SwarmNode)| (n.role == "manager", input.through == Some(t.node_id));
    ok.sort_by_key(rank);

    let load = |set: &[(Target, &SwarmNode)]| -> BTreeMap<&str, u64> {
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, n) in set {
            for (svc, count) in replicated_tasks_on(input.swarm, &n.hostname) {
                *per.entry(svc).or_default() += count;
            }
        }
        per
    };
    let max = input.max_unavailable.max(1);
    for (t, n) in &ok {
        for (svc, count) in replicated_tasks_on(input.swarm, &n.hostname) {
            if count > max {
                let desired = service(input.swarm, svc).map_or(count, |s| s.desired);
                warnings.push((
                    t.host.to_string(),
                    format!(
                        "it runs {count} of {svc}'s {desired} replicas: while it drains, {svc} runs {} (swarm starts them elsewhere once they stopped)",
                        desired.saturating_sub(count)
                    ),
                ));
            }
        }
    }

    let fits = |set: &[(Target, &SwarmNode)]| {
        let managers: Vec<&str> = set
            .iter()
            .filter(|(_, n)| n.role == "manager")
            .map(|(t, _)| t.node_id)
            .collect();
        (managers.len() <= 1 || quorum_after(&input.swarm.nodes, &managers, Change::Down).is_ok())
            && load(set).values().all(|c| *c <= max)
    };
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<(Target, &SwarmNode)> = Vec::new();
    for item in ok {
        let mut with = current.clone();
        with.push(item);
        if !current.is_empty() && (current.len() >= input.batch.max(1) || !fits(&with)) {
            batches.push(current.iter().map(|(t, _)| t.host.to_string()).collect());
            current.clear();
        }
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current.iter().map(|(t, _)| t.host.to_string()).collect());
    }
    Ok(Order { batches, warnings })
}

/// Live tasks of replicated services on the node of this host name, per service.
fn replicated_tasks_on<'a>(swarm: &'a Snapshot, hostname: &str) -> BTreeMap<&'a str, u64> {
    let mut per = BTreeMap::new();
    for t in swarm
        .tasks
        .iter()
        .filter(|t| t.node == hostname && is_live(t))
    {
        if service(swarm, &t.service).is_some_and(|s| s.replicated) {
            *per.entry(t.service.as_str()).or_default() += 1;
        }
    }
    per
}

fn service<'a>(swarm: &'a Snapshot, name: &str) -> Option<&'a Service> {
    swarm.services.iter().find(|s| s.name == name)
}

/// Whether a drained node's tasks have really moved: none is left live on it, and every
/// replicated service runs as many tasks as before the drain (or all it wants, if it now
/// wants fewer). `before` is the swarm's services before the drain, `now` a
/// [`crate::docker::task::node_poll_reads`] of the node. `Err` says what is still waited for.
pub fn drained(hostname: &str, before: &[Service], now: &Snapshot) -> Result<(), String> {
    let mut pending = Vec::new();
    let left: Vec<String> = now
        .tasks
        .iter()
        .filter(|t| t.node == hostname && is_live(t))
        .map(|t| format!("{} ({})", t.slot, t.state))
        .collect();
    if !left.is_empty() {
        pending.push(format!("still on {hostname}: {}", left.join(", ")));
    }
    for s in now.services.iter().filter(|s| s.replicated) {
        let was = before
            .iter()
            .find(|b| b.name == s.name)
            .map_or(0, |b| b.running);
        let want = was.min(s.desired);
        if s.running < want {
            let why: Vec<&str> = now
                .tasks
                .iter()
                .filter(|t| t.service == s.name && !t.error.is_empty())
                .map(|t| t.error.as_str())
                .collect();
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            };
            pending.push(format!(
                "{} runs {} of {} ({} before the drain){why}",
                s.name, s.running, s.desired, was
            ));
        }
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(pending.join("; "))
    }
}

/// The global services with a live task on this node: those it must run again once back.
pub fn globals_on(swarm: &Snapshot, hostname: &str) -> Vec<String> {
    globals_with(swarm, hostname, is_live)
}

/// The global services a node already drained ran before (its task history, a
/// [`crate::docker::task::node_poll_reads`] of it): a drained node runs none, so [`globals_on`]
/// finds nothing to wait for once it is active again, and a rerun after a failed
/// maintenance would end before the node serves. Only services still global count.
pub fn globals_ran(history: &Snapshot, hostname: &str) -> Vec<String> {
    globals_with(history, hostname, |_| true)
}

/// The global services with a task on this node that `counts`, sorted, once each.
fn globals_with(swarm: &Snapshot, hostname: &str, counts: impl Fn(&Task) -> bool) -> Vec<String> {
    let mut out: Vec<String> = swarm
        .tasks
        .iter()
        .filter(|t| t.node == hostname && counts(t))
        .filter(|t| service(swarm, &t.service).is_some_and(|s| s.global))
        .map(|t| t.service.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the node runs a task of each of `wanted` again (a
/// [`crate::docker::task::node_poll_reads`] of it). `Err` names those not running yet.
pub fn globals_back(hostname: &str, wanted: &[String], now: &Snapshot) -> Result<(), String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| {
            !now.tasks
                .iter()
                .any(|t| &t.service == *w && t.node == hostname && t.state == "running")
        })
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not running on {hostname} yet: {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str, role: &str, state: &str) -> SwarmNode {
        SwarmNode {
            id: id.into(),
            hostname: host.into(),
            role: role.into(),
            state: state.into(),
            availability: "active".into(),
            ..Default::default()
        }
    }

    fn svc(name: &str, global: bool, running: u64, desired: u64) -> Service {
        Service {
            name: name.into(),
            global,
            replicated: !global,
            running,
            desired,
        }
    }

    fn task(slot: &str, node: &str, state: &str) -> Task {
        Task {
            service: slot.rsplit_once('.').unwrap().0.into(),
            slot: slot.into(),
            node: node.into(),
            desired: "running".into(),
            state: state.into(),
            id: format!("t-{slot}"),
            error: String::new(),
            current: true,
            settled: false,
        }
    }

    /// Three managers (m1..m3) and three workers (w1..w3); `api` has 3 replicas on w1,
    /// w1 and w2; `web` is global.
    fn swarm() -> Snapshot {
        Snapshot {
            nodes: vec![
                node("m1", "pi1", "manager", "ready"),
                node("m2", "pi2", "manager", "ready"),
                node("m3", "pi3", "manager", "ready"),
                node("w1", "pi4", "worker", "ready"),
                node("w2", "pi5", "worker", "ready"),
                node("w3", "pi6", "worker", "ready"),
            ],
            services: vec![svc("api", false, 3, 3), svc("web", true, 6, 6)],
            tasks: vec![
                task("api.1", "pi4", "running"),
                task("api.2", "pi4", "running"),
                task("api.3", "pi5", "running"),
                task("web.m1", "pi1", "running"),
                task("web.w1", "pi4", "running"),
            ],
        }
    }

    fn targets(s: &Snapshot) -> Vec<Target<'_>> {
        s.nodes
            .iter()
            .map(|n| Target {
                host: &n.hostname,
                node_id: &n.id,
            })
            .collect()
    }

    fn input<'a>(s: &'a Snapshot, t: &'a [Target<'a>], batch: usize) -> Input<'a> {
        Input {
            swarm: s,
            targets: t,
            batch,
            max_unavailable: 1,
            force: false,
            through: Some("m1"),
        }
    }

    #[test]
    fn one_at_a_time_workers_first_the_manager_acted_through_last() {
        let s = swarm();
        let t = targets(&s);
        let o = order(&input(&s, &t, 1)).unwrap();
        assert_eq!(
            o.batches,
            vec![
                vec!["pi4"],
                vec!["pi5"],
                vec!["pi6"],
                vec!["pi2"],
                vec!["pi3"],
                vec!["pi1"]
            ]
        );
        assert_eq!(
            o.warnings,
            vec![(
                "pi4".to_string(),
                "it runs 2 of api's 3 replicas: while it drains, api runs 1 (swarm starts them elsewhere once they stopped)".to_string()
            )]
        );
    }

    #[test]
    fn batches_keep_quorum_and_replicas() {
        let s = swarm();
        let t = targets(&s);
        // pi4 and pi5 both run api: never in one batch; pi6 runs no replica. Of three
        // managers, two down at once would lose quorum.
        let o = order(&input(&s, &t, 3)).unwrap();
        assert_eq!(
            o.batches,
            vec![
                vec!["pi4"],
                vec!["pi5", "pi6", "pi2"],
                vec!["pi3"],
                vec!["pi1"]
            ]
        );
        // Five managers: two at once keep three of five.
        let mut five = swarm();
        five.nodes[3].role = "manager".into();
        five.nodes[4].role = "manager".into();
        let t = targets(&five);
        let mut i = input(&five, &t, 2);
        i.max_unavailable = 2;
        let o = order(&i).unwrap();
        assert_eq!(
            o.batches,
            vec![vec!["pi6", "pi2"], vec!["pi3", "pi4"], vec!["pi5", "pi1"]]
        );
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    #[test]
    fn refusals_say_why_and_nothing_is_planned() {
        let mut s = swarm();
        s.nodes.truncate(4);
        s.nodes[1].state = "down".into();
        let t = vec![
            Target {
                host: "pi2",
                node_id: "m2",
            },
            Target {
                host: "pi3",
                node_id: "m3",
            },
            Target {
                host: "pi9",
                node_id: "zz",
            },
        ];
        assert_eq!(
            order(&input(&s, &t, 1)).unwrap_err(),
            vec![
                ("pi2".to_string(), "the swarm sees it down: maintain drains a node that is up; bring it back first (rpiprov bootstrap --on pi2)".to_string()),
                ("pi3".to_string(), "taking it down is refused: the swarm would lose quorum: 1 of its 3 managers would be up (pi2 down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down); or run with --force".to_string()),
                ("pi9".to_string(), "it is not a node of this swarm (its node id \"zz\" is not listed by the managers): bootstrap it first, or leave it out of --on".to_string()),
            ]
        );
    }

    #[test]
    fn the_only_manager_is_taken_only_when_forced() {
        let s = Snapshot {
            nodes: vec![
                node("m1", "pi1", "manager", "ready"),
                node("w1", "pi2", "worker", "ready"),
            ],
            ..Default::default()
        };
        let t = targets(&s);
        let err = order(&input(&s, &t, 1)).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].1.starts_with("taking it down is refused: the swarm would lose quorum: 0 of its 1 managers would be up"),
            "{err:?}"
        );
        let mut i = input(&s, &t, 1);
        i.force = true;
        let o = order(&i).unwrap();
        assert_eq!(o.batches, vec![vec!["pi2"], vec!["pi1"]]);
        assert_eq!(o.warnings[0].0, "pi1");
        assert!(
            o.warnings[0]
                .1
                .starts_with("while it is down the swarm would lose quorum")
        );
    }

    #[test]
    fn a_drain_is_over_when_the_tasks_have_moved_not_before() {
        let before = vec![svc("api", false, 2, 2), svc("web", true, 3, 3)];
        // Just after `docker node update`: still running on pi2.
        let mut now = Snapshot {
            services: vec![svc("api", false, 2, 2), svc("web", true, 3, 2)],
            tasks: vec![
                task("api.1", "pi2", "running"),
                task("web.n2", "pi2", "running"),
            ],
            ..Default::default()
        };
        now.tasks[0].desired = "shutdown".into();
        assert_eq!(
            drained("pi2", &before, &now),
            Err("still on pi2: api.1 (running), web.n2 (running)".into())
        );
        // Stopped there, not started elsewhere yet (no room: swarm says why).
        now.tasks[0].state = "shutdown".into();
        now.tasks[1].state = "shutdown".into();
        now.services[0].running = 1;
        let mut elsewhere = task("api.1", "", "pending");
        elsewhere.error = "no suitable node (max replicas per node limit exceed)".into();
        now.tasks.push(elsewhere);
        assert_eq!(
            drained("pi2", &before, &now),
            Err("api runs 1 of 2 (2 before the drain): no suitable node (max replicas per node limit exceed)".into())
        );
        now.services[0].running = 2;
        now.tasks.pop();
        assert_eq!(drained("pi2", &before, &now), Ok(()));
        // A service already short before the drain is not waited for beyond that.
        let short = vec![svc("api", false, 1, 2)];
        now.services[0].running = 1;
        assert_eq!(drained("pi2", &short, &now), Ok(()));
    }

    #[test]
    fn global_services_back_on_the_node() {
        let s = swarm();
        assert_eq!(globals_on(&s, "pi4"), vec!["web"]);
        assert!(globals_on(&s, "pi6").is_empty());
        let mut now = Snapshot {
            tasks: vec![task("web.w1", "pi4", "shutdown")],
            ..Default::default()
        };
        assert_eq!(
            globals_back("pi4", &["web".into()], &now),
            Err("not running on pi4 yet: web".into())
        );
        now.tasks.push(task("web.w1", "pi4", "running"));
        assert_eq!(globals_back("pi4", &["web".into()], &now), Ok(()));
    }

    #[test]
    fn a_node_drained_before_is_waited_for_the_global_services_it_ran() {
        // pi4 left drained by a failed run: nothing live on it, its history still says web.
        let mut history = Snapshot {
            services: vec![svc("web", true, 5, 5), svc("api", false, 3, 3)],
            tasks: vec![
                task("web.w1", "pi4", "shutdown"),
                task("api.1", "pi4", "shutdown"),
                task("gone.w1", "pi4", "shutdown"),
            ],
            ..Default::default()
        };
        for t in &mut history.tasks {
            t.desired = "shutdown".into();
        }
        assert!(globals_on(&history, "pi4").is_empty());
        assert_eq!(globals_ran(&history, "pi4"), vec!["web"]);
        assert!(globals_ran(&history, "pi5").is_empty());
    }
}
