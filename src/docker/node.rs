//! Swarm nodes as a manager manages them: [`SwarmNode`] parsed from the Engine API's node
//! list (the probe asks for it on managers), the quorum a change keeps, the node entries
//! a Pi leaves behind when it leaves or is reinstalled ([`stale`]), the dissolution of a
//! swarm ([`dissolve`]), and whether a node takes tasks ([`Availability`], for
//! `maintain`). The requests that change a node are [`crate::docker::api`]'s.
//!
//! A Pi names its own node: the node ID its `/info` reports, and the host name its
//! earlier entries are listed under. That is the Pi's word, and a Pi that lies
//! (compromised, or cloned with another's swarm state) would have what is meant for its
//! node done to another: demote a manager, attract another node's services, remove a
//! healthy node (a half-joined node's repair, the pruning of stale entries), pass another
//! node's bind check. So before a node is promoted, demoted, labelled, removed or judged
//! for a host, [`check_claim`] compares the leader's entry of that node with what rpiprov
//! knows of the host without its word: one rule, for bootstrap's planner ([`stale`] and
//! `plan::half_joined`), its executor and deploy's bind check.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::docker::null_as_default;

/// One node as a manager lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SwarmNode {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    /// `ready`, `down`, `unknown` ...
    pub state: String,
    pub addr: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// Docker's name for the node's architecture (`x86_64`, `aarch64`, `armv7l`).
    pub architecture: String,
    /// `linux` on a Pi.
    pub os: String,
    /// The labels of the node's Docker daemon (`daemon.json`'s `labels`).
    pub engine_labels: BTreeMap<String, String>,
    /// A manager's standing in the raft: `leader`, `reachable` or `unreachable`; empty
    /// for a worker.
    pub manager: String,
    /// The node's Docker Engine version, as it last told the managers.
    pub engine_version: String,
}

impl SwarmNode {
    /// Swarm counts the node out: it stopped hearing from it (down, or not known yet),
    /// although it is meant to take tasks (not drained or paused by hand).
    pub fn is_down(&self) -> bool {
        self.state != "ready" && self.availability == "active"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNode {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    spec: RawNodeSpec,
    #[serde(default)]
    description: RawNodeDescription,
    #[serde(default)]
    status: RawNodeStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    manager_status: Option<RawManagerStatus>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeSpec {
    #[serde(deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    role: String,
    availability: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeDescription {
    hostname: String,
    #[serde(deserialize_with = "null_as_default")]
    platform: RawPlatform,
    #[serde(deserialize_with = "null_as_default")]
    engine: RawEngine,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawPlatform {
    architecture: String,
    #[serde(rename = "OS")]
    os: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawEngine {
    #[serde(deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    engine_version: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawManagerStatus {
    leader: bool,
    reachability: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeStatus {
    state: String,
    addr: String,
}

impl From<RawNode> for SwarmNode {
    fn from(raw: RawNode) -> SwarmNode {
        SwarmNode {
            id: raw.id,
            hostname: raw.description.hostname,
            role: raw.spec.role,
            labels: raw.spec.labels,
            state: raw.status.state,
            addr: raw.status.addr,
            availability: raw.spec.availability,
            architecture: raw.description.platform.architecture,
            os: raw.description.platform.os,
            engine_labels: raw.description.engine.labels,
            manager: match raw.manager_status {
                Some(m) if m.leader => "leader".to_string(),
                Some(m) => m.reachability,
                None => String::new(),
            },
            engine_version: raw.description.engine.engine_version,
        }
    }
}

/// Parses the Engine API's node list (`GET /nodes`).
pub fn parse_node_list(json: &[u8]) -> Result<Vec<SwarmNode>, String> {
    let raw: Vec<RawNode> =
        serde_json::from_slice(json).map_err(|e| format!("cannot read the nodes: {e}"))?;
    Ok(raw.into_iter().map(SwarmNode::from).collect())
}

/// Parses one node as the Engine API answers it (`GET /nodes/{id}`).
pub fn parse_node(json: &[u8]) -> Result<SwarmNode, String> {
    let raw: RawNode =
        serde_json::from_slice(json).map_err(|e| format!("cannot read the node: {e}"))?;
    Ok(SwarmNode::from(raw))
}

/// What an operation does to managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// They stop being managers (demote, leave): the set of managers shrinks.
    Remove,
    /// They go down for a while (reboot, maintenance): the set stays, they do not vote.
    Down,
}

/// Whether the managers keep quorum (a majority of the managers up) once these nodes are
/// removed or down. `Err` says how many would be up of how many, and what to do. Nodes
/// that are not managers change nothing; managers not `ready` count as down already.
pub fn quorum_after(nodes: &[SwarmNode], ids: &[&str], change: Change) -> Result<(), String> {
    let managers: Vec<&SwarmNode> = nodes.iter().filter(|n| n.role == "manager").collect();
    let touched = |n: &SwarmNode| ids.contains(&n.id.as_str());
    let total = managers.len();
    let up = managers.iter().filter(|n| n.state == "ready").count();
    let hit = managers.iter().filter(|n| touched(n)).count();
    let hit_up = managers
        .iter()
        .filter(|n| touched(n) && n.state == "ready")
        .count();
    let after_total = match change {
        Change::Remove => total - hit,
        Change::Down => total,
    };
    let after_up = up - hit_up;
    if hit == 0 || after_total == 0 || after_up * 2 > after_total {
        return Ok(());
    }
    let down: Vec<&str> = managers
        .iter()
        .filter(|n| n.state != "ready" && !touched(n))
        .map(|n| n.hostname.as_str())
        .collect();
    let already = if down.is_empty() {
        String::new()
    } else {
        format!(" ({} down already)", down.join(", "))
    };
    Err(format!(
        "the swarm would lose quorum: {after_up} of its {after_total} managers would be up{already}, and raft needs {}; bring managers back or add some first (3 managers keep quorum with one down)",
        after_total / 2 + 1
    ))
}

/// What a host says of itself in the swarm, and what rpiprov knows of it otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The host's name in the inventory.
    pub host: &'a str,
    /// The node ID the host's Docker reports as its own, or (for [`Basis::HostName`]) the
    /// ID of the entry the leader lists under the host name the host reports.
    pub node_id: &'a str,
    /// The host name the host reports.
    pub hostname: &'a str,
    /// The host's addresses as this machine knows them, not as the host says: the
    /// inventory's `address` (and what it resolves to here) and `advertise`.
    pub addresses: &'a [String],
    /// Other hosts that report the same node ID.
    pub also_claimed_by: &'a [String],
    /// What the claim rests on.
    pub basis: Basis,
    /// What is done to the node once the claim holds, and left undone otherwise.
    pub stake: Stake,
}

/// What ties a host to a node entry: both are the host's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The node ID its Docker reports as its own.
    NodeId,
    /// The host name it reports, under which the leader lists the entry (a stale entry
    /// of its earlier life).
    HostName,
}

/// What rpiprov would do to the node a host claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stake {
    /// Change its role or labels (bootstrap's settings).
    RoleAndLabels,
    /// Remove the entry (a half-joined node's repair, the pruning of stale entries).
    Removal,
    /// Take the host's answer as that node's (deploy's bind check).
    Answer,
}

/// How long a node that has just joined may be listed by the leader before it has
/// reported itself (see [`reported`]).
pub const REPORTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether the leader's entry of a node is filled in: a node that has just joined is
/// listed at once, but its host name comes with its first report to the managers and its
/// address once they see its connection (seen in a CI run on the lab: an entry with
/// neither just after the join had returned, on a busy machine). Until then it says nothing
/// of whose node it is, and [`check_claim`] would refuse it for a host name of "".
pub fn reported(entry: &SwarmNode) -> bool {
    !entry.hostname.is_empty() && !entry.addr.is_empty() && entry.addr != "0.0.0.0"
}

/// The one rule for acting on a node because of what a host says of itself (a role or
/// label change, a removal, an answer taken as that node's): the leader's entry of the
/// node (`entry`, `None` when the leader lists no such node) must be that host's: the ID
/// claimed by no other host, the same host name, and an address the swarm sees it at
/// (`Status.Addr`, the address the node's connection to the managers comes from, which
/// the node cannot choose) that is one of the host's as this machine knows them. The
/// error says what differs and what is left undone.
pub fn check_claim(claim: &Claim, entry: Option<NodeEntry<'_>>) -> Result<(), String> {
    let Claim {
        host,
        node_id: id,
        hostname,
        addresses,
        also_claimed_by,
        basis,
        stake,
    } = claim;
    let left_alone = format!(
        "{} (a Pi that reports another node's {} is misconfigured, cloned from another's SD card, or compromised)",
        match stake {
            Stake::RoleAndLabels => "its role and labels are left alone",
            Stake::Removal => "no node is removed",
            Stake::Answer => "its answer is not taken for that node",
        },
        match basis {
            Basis::NodeId => "ID",
            Basis::HostName => "host name",
        }
    );
    let says = match basis {
        Basis::NodeId => format!("{host} reports swarm node {id}"),
        Basis::HostName => {
            format!("{host} reports host name {hostname}, under which the leader lists node {id}")
        }
    };
    if !also_claimed_by.is_empty() {
        return Err(format!(
            "{host} and {} report the same swarm node {id}: {left_alone}",
            also_claimed_by.join(", ")
        ));
    }
    let Some(entry) = entry else {
        return Err(format!(
            "{says}, which the leader does not list: {left_alone}"
        ));
    };
    let seen_at = if entry.addr.is_empty() {
        "no address".to_string()
    } else {
        entry.addr.to_string()
    };
    if entry.hostname != *hostname {
        return Err(format!(
            "{host} (host name {hostname}) reports swarm node {id}, which the leader lists as host name {} at {seen_at}: {left_alone}",
            entry.hostname
        ));
    }
    let same = |a: &String| match (a.parse::<IpAddr>(), entry.addr.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(entry.addr),
    };
    if !addresses.iter().any(same) {
        return Err(format!(
            "{says}, which the swarm sees at {seen_at}, not at {host}'s {}: {left_alone}; if {seen_at} is {host}'s own address, set `advertise = \"{seen_at}\"` for it in the inventory",
            addresses.join(", ")
        ));
    }
    Ok(())
}

/// What a node takes: new tasks (`Active`), or none, its tasks moved elsewhere (`Drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Active,
    Drain,
}

impl Availability {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Drain => "drain",
        }
    }
}

/// One step of dissolving the swarm ([`dissolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dissolve {
    /// These workers leave, all at once (inventory names).
    WorkersLeave(Vec<String>),
    /// A manager that cannot leave by itself (its Docker does not answer, or it is none
    /// of ours) is demoted by the leader first, so that the managers left keep quorum as
    /// they go. It still believes it is in the swarm until someone makes it leave.
    Demote { hostname: String, id: String },
    /// A manager leaves, demoting itself first (inventory name).
    ManagerLeaves(String),
    /// The leader leaves last, with `--force` (inventory name).
    LeaderLeaves(String),
}

/// The plan of a dissolution, and where it would lose quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dissolution {
    pub steps: Vec<Dissolve>,
    /// Each step that would leave the managers without quorum, and why: the whole
    /// dissolution is refused then, unless forced.
    pub quorum: Vec<String>,
}

/// Dissolves the swarm in an order that keeps quorum until the end: workers leave; then
/// the managers that cannot leave by themselves are demoted, one at a time (removing one
/// that is down keeps a quorum that holds); then the other managers leave one at a time;
/// the leader last. `nodes` is the leader's list; `answered` the hosts whose Docker said
/// which node it is (inventory name, node id); `leader` the leader's inventory name and
/// node id. A host that did not answer has no step: the caller reports it.
pub fn dissolve(
    nodes: &[SwarmNode],
    answered: &[(String, String)],
    leader: (&str, &str),
) -> Dissolution {
    let listed = |id: &str| nodes.iter().find(|n| n.id == id);
    let mut d = Dissolution::default();
    let workers: Vec<String> = answered
        .iter()
        .filter(|(h, id)| h != leader.0 && listed(id).is_none_or(|n| n.role != "manager"))
        .map(|(h, _)| h.clone())
        .collect();
    if !workers.is_empty() {
        d.steps.push(Dissolve::WorkersLeave(workers));
    }
    let mut current: Vec<SwarmNode> = nodes.to_vec();
    let remove = |current: &mut Vec<SwarmNode>, id: &str, who: &str, d: &mut Dissolution| {
        if let Err(why) = quorum_after(current, &[id], Change::Remove) {
            d.quorum
                .push(format!("when {who} stops being a manager, {why}"));
        }
        current.retain(|n| n.id != id);
    };
    let ours = |id: &str| {
        answered
            .iter()
            .find(|(_, a)| a == id)
            .map(|(h, _)| h.clone())
    };
    for n in nodes
        .iter()
        .filter(|n| n.role == "manager" && n.id != leader.1 && ours(&n.id).is_none())
    {
        remove(&mut current, &n.id, &n.hostname, &mut d);
        d.steps.push(Dissolve::Demote {
            hostname: n.hostname.clone(),
            id: n.id.clone(),
        });
    }
    for (h, id) in answered {
        let is_manager = listed(id).is_some_and(|n| n.role == "manager");
        if is_manager && h != leader.0 {
            remove(&mut current, id, h, &mut d);
            d.steps.push(Dissolve::ManagerLeaves(h.clone()));
        }
    }
    d.steps.push(Dissolve::LeaderLeaves(leader.0.to_string()));
    d
}

/// A node entry as [`stale`] weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub state: &'a str,
    pub addr: &'a str,
}

/// A host whose earlier lives may have left node entries: its inventory name, the host
/// name it reports, and its addresses as this machine knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub host: &'a str,
    pub hostname: &'a str,
    pub addresses: &'a [String],
}

/// What becomes of one entry listed under an owner's host name ([`stale`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale<'a> {
    /// Removed for `host` (forced when swarm still lists it up: it notices a departure
    /// only after the heartbeat times out).
    Remove {
        host: &'a str,
        id: &'a str,
        force: bool,
    },
    /// Left alone, and why: the claim did not hold ([`check_claim`]).
    Leave { host: &'a str, why: String },
}

/// The stale entries among `entries`: those listed under an owner's host name that are no
/// host's current node (`current`: the node IDs the hosts report), each judged by
/// [`check_claim`] as a removal: removed only when the swarm sees it at one of that
/// owner's addresses as this machine knows them, so that a Pi reporting another's host
/// name never has that one's entry removed, down or up.
pub fn stale<'a>(
    entries: &[NodeEntry<'a>],
    owners: &[Owner<'a>],
    current: &[String],
) -> Vec<Stale<'a>> {
    let mut out = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !current.iter().any(|c| c == e.id))
    {
        let mut left = None;
        for o in owners.iter().filter(|o| o.hostname == e.hostname) {
            let claim = Claim {
                host: o.host,
                node_id: e.id,
                hostname: o.hostname,
                addresses: o.addresses,
                also_claimed_by: &[],
                basis: Basis::HostName,
                stake: Stake::Removal,
            };
            match check_claim(&claim, Some(*e)) {
                Ok(()) => {
                    left = None;
                    out.push(Stale::Remove {
                        host: o.host,
                        id: e.id,
                        force: e.state != "down",
                    });
                    break;
                }
                Err(why) => {
                    left.get_or_insert(Stale::Leave { host: o.host, why });
                }
            }
        }
        out.extend(left);
    }
    out
}

impl<'a> From<&'a SwarmNode> for NodeEntry<'a> {
    fn from(n: &'a SwarmNode) -> NodeEntry<'a> {
        NodeEntry {
            id: &n.id,
            hostname: &n.hostname,
            state: &n.state,
            addr: &n.addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, host: &str, role: &str, state: &str) -> SwarmNode {
        SwarmNode {
            id: id.into(),
            hostname: host.into(),
            role: role.into(),
            state: state.into(),
            ..Default::default()
        }
    }

    /// Issue 13: three managers, one of them frozen (listed down, its Docker silent): it
    /// is demoted first, then the others leave one at a time; no step loses quorum.
    #[test]
    fn a_dissolution_keeps_quorum_to_the_end() {
        let nodes = vec![
            member("n1", "pi1", "manager", "down"),
            member("n2", "pi2", "manager", "ready"),
            member("n3", "pi3", "manager", "ready"),
            member("n4", "pi4", "worker", "ready"),
        ];
        let answered = vec![
            ("pi2".to_string(), "n2".to_string()),
            ("pi3".to_string(), "n3".to_string()),
            ("pi4".to_string(), "n4".to_string()),
        ];
        let d = dissolve(&nodes, &answered, ("pi2", "n2"));
        assert_eq!(
            d.steps,
            vec![
                Dissolve::WorkersLeave(vec!["pi4".into()]),
                Dissolve::Demote {
                    hostname: "pi1".into(),
                    id: "n1".into()
                },
                Dissolve::ManagerLeaves("pi3".into()),
                Dissolve::LeaderLeaves("pi2".into()),
            ]
        );
        assert!(d.quorum.is_empty(), "{:?}", d.quorum);
        // Two of three down: quorum is gone already, and raft commits no demotion.
        let mut two_down = nodes.clone();
        two_down[2].state = "down".into();
        let d = dissolve(&two_down, &answered[..1], ("pi2", "n2"));
        assert_eq!(
            d.quorum,
            vec![
                "when pi1 stops being a manager, the swarm would lose quorum: 1 of its 2 managers would be up (pi3 down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down)"
            ]
        );
    }

    /// Issue 18: an entry is stale for a host when it is listed under the host name the
    /// host reports, is no host's current node, and the swarm sees it at one of the
    /// host's addresses as this machine knows them; another machine's entry under that
    /// name (down or up) is left, saying why.
    #[test]
    fn stale_entries_are_those_of_our_host_names_at_that_hosts_addresses() {
        let e = |id, hostname, state, addr| NodeEntry {
            id,
            hostname,
            state,
            addr,
        };
        let entries = [
            e("old", "pi2", "down", "198.18.0.12"),
            e("new", "pi2", "ready", "198.18.0.12"),
            e("same", "pi3", "ready", "198.18.0.13"),
            e("twin", "pi3", "ready", "10.0.0.3"),
            e("gone", "pi1", "down", "198.18.0.11"),
            e("other", "pi4", "down", "198.18.0.14"),
        ];
        let pi2 = vec!["198.18.0.12".to_string()];
        let pi3 = vec!["198.18.0.13".to_string()];
        let owners = [
            Owner {
                host: "pi2",
                hostname: "pi2",
                addresses: &pi2,
            },
            Owner {
                host: "pi3",
                hostname: "pi3",
                addresses: &pi3,
            },
            // pi3 again, lying about its host name: pi1 is down, and its entry stays.
            Owner {
                host: "pi3",
                hostname: "pi1",
                addresses: &pi3,
            },
        ];
        let not_removed = "no node is removed (a Pi that reports another node's host name is misconfigured, cloned from another's SD card, or compromised)";
        assert_eq!(
            stale(&entries, &owners, &["new".into()]),
            [
                Stale::Remove {
                    host: "pi2",
                    id: "old",
                    force: false
                },
                Stale::Remove {
                    host: "pi3",
                    id: "same",
                    force: true
                },
                Stale::Leave {
                    host: "pi3",
                    why: format!(
                        "pi3 reports host name pi3, under which the leader lists node twin, which the swarm sees at 10.0.0.3, not at pi3's 198.18.0.13: {not_removed}; if 10.0.0.3 is pi3's own address, set `advertise = \"10.0.0.3\"` for it in the inventory"
                    )
                },
                Stale::Leave {
                    host: "pi3",
                    why: format!(
                        "pi3 reports host name pi1, under which the leader lists node gone, which the swarm sees at 198.18.0.11, not at pi3's 198.18.0.13: {not_removed}; if 198.18.0.11 is pi3's own address, set `advertise = \"198.18.0.11\"` for it in the inventory"
                    )
                },
            ]
        );
    }

    fn manager(id: &str, state: &str) -> SwarmNode {
        SwarmNode {
            id: id.into(),
            hostname: format!("pi-{id}"),
            role: "manager".into(),
            state: state.into(),
            ..Default::default()
        }
    }

    fn entry(hostname: &str, addr: &str) -> SwarmNode {
        SwarmNode {
            id: "n1".into(),
            hostname: hostname.into(),
            role: "manager".into(),
            state: "ready".into(),
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn quorum_is_kept_or_the_refusal_says_why() {
        let three = vec![
            manager("a", "ready"),
            manager("b", "ready"),
            manager("c", "ready"),
        ];
        assert_eq!(quorum_after(&three, &["a"], Change::Down), Ok(()));
        assert_eq!(quorum_after(&three, &["a"], Change::Remove), Ok(()));
        assert_eq!(
            quorum_after(&three, &["a", "b"], Change::Down),
            Err("the swarm would lose quorum: 1 of its 3 managers would be up, and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down)".into())
        );
        // One manager down already: demoting another leaves 1 of 2.
        let one_down = vec![
            manager("a", "ready"),
            manager("b", "ready"),
            manager("c", "down"),
        ];
        assert_eq!(
            quorum_after(&one_down, &["b"], Change::Remove),
            Err("the swarm would lose quorum: 1 of its 2 managers would be up (pi-c down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down)".into())
        );
        // The only manager: down is a loss, leaving the swarm entirely is not a quorum matter.
        let one = vec![manager("a", "ready")];
        assert!(quorum_after(&one, &["a"], Change::Down).is_err());
        assert_eq!(quorum_after(&one, &["a"], Change::Remove), Ok(()));
        assert_eq!(quorum_after(&three, &["worker"], Change::Down), Ok(()));
    }

    /// Fields as Docker 20.10's Engine API lists them (trimmed).
    #[test]
    fn a_node_s_state_availability_and_platform_are_read() {
        let nodes = parse_node_list(
            br#"[{"ID":"n1","Spec":{"Labels":{"zone":"a"},"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1","Platform":{"Architecture":"aarch64","OS":"linux"},"Engine":{"EngineVersion":"20.10.24+dfsg1","Labels":{"disk":"ssd"}}},"Status":{"State":"ready","Addr":"198.18.0.11"}},{"ID":"n2","Spec":{"Labels":null,"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2","Engine":{"Labels":null}},"Status":{"State":"down","Addr":"198.18.0.12"}}]"#,
        )
        .unwrap();
        assert_eq!(
            nodes[0],
            SwarmNode {
                id: "n1".into(),
                hostname: "pi1".into(),
                role: "manager".into(),
                labels: [("zone".to_string(), "a".to_string())].into(),
                state: "ready".into(),
                addr: "198.18.0.11".into(),
                availability: "active".into(),
                architecture: "aarch64".into(),
                os: "linux".into(),
                engine_labels: [("disk".to_string(), "ssd".to_string())].into(),
                manager: String::new(),
                engine_version: "20.10.24+dfsg1".into(),
            }
        );
        assert!(!nodes[0].is_down());
        assert!(nodes[1].is_down());
        let drained = SwarmNode {
            availability: "drain".into(),
            ..nodes[1].clone()
        };
        assert!(
            !drained.is_down(),
            "drained by hand: not expected to run tasks"
        );
    }

    #[test]
    fn a_claim_holds_when_the_leader_sees_that_node_at_one_of_the_hosts_addresses() {
        let addresses = vec!["pi3.local".to_string(), "198.18.0.13".to_string()];
        let claim = Claim {
            host: "pi3",
            node_id: "n1",
            hostname: "pi3",
            addresses: &addresses,
            also_claimed_by: &[],
            basis: Basis::NodeId,
            stake: Stake::RoleAndLabels,
        };
        assert_eq!(
            check_claim(&claim, Some(NodeEntry::from(&entry("pi3", "198.18.0.13")))),
            Ok(())
        );
        let v6 = vec!["2001:db8::0:13".to_string()];
        let claim = Claim {
            addresses: &v6,
            ..claim
        };
        assert_eq!(
            check_claim(&claim, Some(NodeEntry::from(&entry("pi3", "2001:db8::13")))),
            Ok(())
        );
    }

    /// Issue 9 item 7: pi3 reports pi1's node ID (and even pi1's host name).
    #[test]
    fn a_host_that_reports_another_nodes_id_is_refused_saying_why() {
        let addresses = vec!["198.18.0.13".to_string()];
        let left_alone = "its role and labels are left alone (a Pi that reports another node's ID is misconfigured, cloned from another's SD card, or compromised)";
        let claim = Claim {
            host: "pi3",
            node_id: "n1",
            hostname: "pi3",
            addresses: &addresses,
            also_claimed_by: &[],
            basis: Basis::NodeId,
            stake: Stake::RoleAndLabels,
        };
        assert_eq!(
            check_claim(&claim, Some(NodeEntry::from(&entry("pi1", "198.18.0.11")))),
            Err(format!(
                "pi3 (host name pi3) reports swarm node n1, which the leader lists as host name pi1 at 198.18.0.11: {left_alone}"
            ))
        );
        let lying_name = Claim {
            hostname: "pi1",
            ..claim.clone()
        };
        assert_eq!(
            check_claim(
                &lying_name,
                Some(NodeEntry::from(&entry("pi1", "198.18.0.11")))
            ),
            Err(format!(
                "pi3 reports swarm node n1, which the swarm sees at 198.18.0.11, not at pi3's 198.18.0.13: {left_alone}; if 198.18.0.11 is pi3's own address, set `advertise = \"198.18.0.11\"` for it in the inventory"
            ))
        );
        assert_eq!(
            check_claim(&claim, None),
            Err(format!(
                "pi3 reports swarm node n1, which the leader does not list: {left_alone}"
            ))
        );
        let twice = vec!["pi1".to_string()];
        let cloned = Claim {
            also_claimed_by: &twice,
            ..claim
        };
        assert_eq!(
            check_claim(&cloned, Some(NodeEntry::from(&entry("pi3", "198.18.0.13")))),
            Err(format!(
                "pi3 and pi1 report the same swarm node n1: {left_alone}"
            ))
        );
    }

    /// A manager's standing in the raft and the engine version, as Docker 20.10 lists
    /// them (trimmed): what `status` shows.
    #[test]
    fn a_manager_s_standing_and_the_engine_version_are_read() {
        let nodes = parse_node_list(
            br#"[{"ID":"n1","Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1","Engine":{"EngineVersion":"20.10.24+dfsg1"}},"Status":{"State":"ready"},"ManagerStatus":{"Leader":true,"Reachability":"reachable","Addr":"198.18.0.11:2377"}},{"ID":"n2","Spec":{"Role":"manager"},"Description":{"Hostname":"pi2"},"Status":{"State":"down"},"ManagerStatus":{"Reachability":"unreachable"}},{"ID":"n3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready"}}]"#,
        )
        .unwrap();
        let got: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.manager.as_str(), n.engine_version.as_str()))
            .collect();
        assert_eq!(
            got,
            [("leader", "20.10.24+dfsg1"), ("unreachable", ""), ("", "")]
        );
    }
}
