//! The swarm, as one node takes part in it: `docker swarm init`, the join tokens and their
//! rotation (the join itself goes through the Engine API: [`crate::docker::api::swarm_join`],
//! so that the token is in no process's argv), leaving ([`swarm_leave`], one command for every
//! case), the local node's state, and [`SwarmInfo`]: the swarm as one node's `docker
//! info` sees it (parsed by the probe, [`crate::docker::probe`]). Nodes as the manager
//! lists them are in [`crate::docker::node`].

use serde::{Deserialize, Serialize};

use crate::docker::null_as_default;
use crate::shell::join;

/// The swarm as one node's `docker info` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    /// `inactive`, `pending`, `active`, `error` or `locked`.
    pub local_node_state: String,
    pub control_available: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub remote_managers: Vec<RemoteManager>,
    #[serde(deserialize_with = "null_as_default")]
    pub cluster: ClusterInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RemoteManager {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub addr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterInfo {
    #[serde(rename = "ID")]
    pub id: String,
}

impl SwarmInfo {
    pub fn is_active(&self) -> bool {
        self.local_node_state == "active"
    }

    /// `Ok(())` when this node manages an active swarm and can serve its API now, else
    /// what it is instead.
    pub fn serving(&self) -> Result<(), String> {
        match (self.local_node_state.as_str(), self.control_available) {
            ("active", true) => Ok(()),
            ("active", false) => Err("not a manager of its swarm".into()),
            ("", _) => Err("its Docker said nothing of its swarm".into()),
            (state, _) => Err(format!("its swarm state is {state}")),
        }
    }
    /// Addresses of the managers this node knows, for messages.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.remote_managers
            .iter()
            .map(|m| m.addr.clone())
            .collect()
    }
}

/// Whether Docker refused a request because the node is in no swarm (a leave of a node
/// that left already, a node read on a node that never joined): Docker's words for it.
pub fn in_no_swarm(message: &str) -> bool {
    message.contains("not part of a swarm")
}

/// `docker swarm init`. The advertise address may be an IP or an interface name; Docker
/// accepts both.
pub fn swarm_init(advertise: &str, default_addr_pool: Option<&str>) -> String {
    let mut args = vec![
        "docker".to_string(),
        "swarm".into(),
        "init".into(),
        "--advertise-addr".into(),
        advertise.to_string(),
    ];
    if let Some(pool) = default_addr_pool {
        args.push("--default-addr-pool".into());
        args.push(pool.to_string());
    }
    join(args)
}

/// The address and node id of this node once it leads a swarm: `ADDR ID`. Read by
/// [`parse_addr_and_id`].
pub fn local_addr_and_id() -> String {
    "docker info --format '{{.Swarm.NodeAddr}} {{.Swarm.NodeID}}'".to_string()
}

pub fn parse_addr_and_id(output: &str) -> Option<(&str, &str)> {
    let mut it = output.split_whitespace();
    Some((it.next()?, it.next()?))
}

/// Prints the join token for a role. Its output is a secret.
pub fn join_token(manager: bool) -> String {
    format!(
        "docker swarm join-token -q {}",
        if manager { "manager" } else { "worker" }
    )
}

/// New join tokens for these roles (`docker swarm join-token --rotate`); the new tokens
/// are printed on the manager and thrown away there: a later join fetches them again.
pub fn rotate_join_tokens(worker: bool, manager: bool) -> String {
    let roles: Vec<&str> = [(worker, "worker"), (manager, "manager")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| r)
        .collect();
    roles
        .iter()
        .map(|r| format!("docker swarm join-token --rotate -q {r} >/dev/null"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// This node's swarm state and node id, as its Docker says: `active n2`. Read by
/// [`parse_local_node`] (`maintain`, `teardown --leave-swarm` and the repair of a
/// half-joined node ask each node which node it is).
pub fn local_swarm_state() -> String {
    "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'".to_string()
}

/// The local node as [`local_swarm_state`] prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalNode<'a> {
    /// `inactive`, `pending`, `active` ...; empty when Docker printed nothing.
    pub state: &'a str,
    pub id: Option<&'a str>,
}

pub fn parse_local_node(output: &str) -> LocalNode<'_> {
    let mut it = output.split_whitespace();
    LocalNode {
        state: it.next().unwrap_or_default(),
        id: it.next(),
    }
}

/// Whether this node is a manager that can serve the swarm's API right now: prints
/// `LocalNodeState ControlAvailable`. Read by [`parse_serving`].
pub fn manager_serving() -> String {
    "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'".to_string()
}

/// `Ok(())` when [`manager_serving`] says the node manages an active swarm, else what it
/// is instead.
pub fn parse_serving(output: &str) -> Result<(), String> {
    let mut it = output.split_whitespace();
    match (it.next(), it.next()) {
        (Some("active"), Some("true")) => Ok(()),
        (Some("active"), _) => Err("not a manager of its swarm".into()),
        (Some(state), _) => Err(format!("its swarm state is {state}")),
        (None, _) => Err("docker printed nothing".into()),
    }
}

/// How a node leaves the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    Worker,
    /// A manager other than the last: it demotes itself first.
    Manager,
    /// `--force`: the last manager, or a node leaving a swarm that is not ours.
    Force,
}

/// Leaves the swarm; prints `@@inactive` when the node is in no swarm (nothing to do;
/// see [`parse_left`]). A manager that is not the last one demotes itself first, then
/// leaves as a worker: Docker refuses a plain `leave` on a manager, and `--force` on one
/// that is not the last could break the quorum of the managers that remain. Demotion
/// takes effect asynchronously, hence the retries.
pub fn swarm_leave(kind: Leave) -> String {
    let leave = match kind {
        Leave::Worker => "docker swarm leave".to_string(),
        Leave::Manager => concat!(
            "id=$(docker info --format '{{.Swarm.NodeID}}'); docker node demote \"$id\" >/dev/null; ",
            "i=0; until docker swarm leave >/dev/null 2>&1; do i=$((i+1)); ",
            "if [ $i -ge 30 ]; then docker swarm leave; exit $?; fi; sleep 1; done"
        )
        .to_string(),
        Leave::Force => "docker swarm leave --force".to_string(),
    };
    format!(
        "state=$(docker info --format '{{{{.Swarm.LocalNodeState}}}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else {leave}; fi"
    )
}

/// Whether [`swarm_leave`] made the node leave (false: it was in no swarm).
pub fn parse_left(output: &str) -> bool {
    !output.contains("@@inactive")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn swarm_commands() {
        assert_eq!(
            swarm_init("198.18.0.11", Some("198.19.0.0/16")),
            "docker swarm init --advertise-addr 198.18.0.11 --default-addr-pool 198.19.0.0/16"
        );
        assert_eq!(
            swarm_init("eth0", None),
            "docker swarm init --advertise-addr eth0"
        );
        assert_eq!(
            rotate_join_tokens(true, true),
            "docker swarm join-token --rotate -q worker >/dev/null && docker swarm join-token --rotate -q manager >/dev/null"
        );
        assert_eq!(
            rotate_join_tokens(false, true),
            "docker swarm join-token --rotate -q manager >/dev/null"
        );
        assert_eq!(join_token(false), "docker swarm join-token -q worker");
        assert_eq!(join_token(true), "docker swarm join-token -q manager");
    }

    #[test]
    fn the_leader_s_address_is_read() {
        assert_eq!(
            parse_addr_and_id("198.18.0.11 n1\n"),
            Some(("198.18.0.11", "n1"))
        );
        assert_eq!(parse_addr_and_id(" \n"), None);
    }

    #[test]
    fn the_local_node_is_read() {
        assert_eq!(
            local_swarm_state(),
            "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'"
        );
        assert_eq!(
            parse_local_node("active n2\n"),
            LocalNode {
                state: "active",
                id: Some("n2")
            }
        );
        assert_eq!(
            parse_local_node("pending\n"),
            LocalNode {
                state: "pending",
                id: None
            }
        );
        assert_eq!(parse_local_node("").state, "");
    }

    #[test]
    fn a_serving_manager_is_told_from_the_rest() {
        let info = |state: &str, manager: bool| SwarmInfo {
            local_node_state: state.into(),
            control_available: manager,
            ..Default::default()
        };
        assert_eq!(info("active", true).serving(), Ok(()));
        assert_eq!(
            info("active", false).serving(),
            Err("not a manager of its swarm".into())
        );
        assert_eq!(
            info("inactive", false).serving(),
            Err("its swarm state is inactive".into())
        );
        assert_eq!(
            info("", false).serving(),
            Err("its Docker said nothing of its swarm".into())
        );
        assert_eq!(parse_serving("active true\n"), Ok(()));
        assert_eq!(
            parse_serving("active false\n"),
            Err("not a manager of its swarm".into())
        );
        assert_eq!(
            parse_serving("inactive false\n"),
            Err("its swarm state is inactive".into())
        );
        assert_eq!(parse_serving(""), Err("docker printed nothing".into()));
    }

    #[test]
    fn leave_commands() {
        assert_eq!(
            swarm_leave(Leave::Worker),
            "state=$(docker info --format '{{.Swarm.LocalNodeState}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else docker swarm leave; fi"
        );
        assert_eq!(
            swarm_leave(Leave::Force),
            "state=$(docker info --format '{{.Swarm.LocalNodeState}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else docker swarm leave --force; fi"
        );
        assert!(
            swarm_leave(Leave::Manager)
                .contains("docker node demote \"$id\" >/dev/null; i=0; until docker swarm leave")
        );
        for s in [
            swarm_leave(Leave::Worker),
            swarm_leave(Leave::Manager),
            swarm_leave(Leave::Force),
        ] {
            syntax_ok(&s);
        }
        assert!(parse_left("Node left the swarm.\n"));
        assert!(!parse_left("@@inactive\n"));
    }

    #[test]
    fn leaving_is_skipped_on_a_node_in_no_swarm() {
        let d = ScratchHost::new();
        let ran = d.run(&swarm_leave(Leave::Worker), b"");
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "Node left the swarm.\n")
        );
        assert_eq!(d.run(&swarm_leave(Leave::Manager), b"").code, 0);
        let calls = d.calls();
        assert!(
            calls.contains("node demote active\nswarm leave\n"),
            "{calls}"
        );
        std::fs::write(d.docker_file("state"), "inactive\n").unwrap();
        let ran = d.run(&swarm_leave(Leave::Force), b"");
        assert_eq!((ran.code, ran.stdout.as_str()), (0, "@@inactive\n"));
    }
}
