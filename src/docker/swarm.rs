//! The swarm, as one node takes part in it: [`SwarmInfo`], the swarm as one node's daemon
//! sees it (its `/info`, read by the probe, [`crate::docker::probe`]), whether it serves the
//! swarm's API, whether Docker refused something because the node is in no swarm, and how
//! a node leaves ([`Leave`]). The requests (init, join, leave, the join tokens) are
//! [`crate::docker::api`]'s; the join token travels in the body of one, in no process's
//! argv. Nodes as the manager lists them are in [`crate::docker::node`].

use serde::{Deserialize, Serialize};

use crate::docker::null_as_default;

/// The swarm as one node's daemon sees it.
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

/// How a node leaves the swarm (`crate::teardown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    Worker,
    /// A manager other than the last: it demotes itself first.
    Manager,
    /// `--force`: the last manager, or a node leaving a swarm that is not ours.
    Force,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(in_no_swarm("This node is not part of a swarm"));
        assert!(!in_no_swarm(
            "rpc error: code = Unknown desc = update out of sequence"
        ));
    }
}
