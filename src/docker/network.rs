//! Overlay networks: a manager's list parsed into [`NetworkInfo`] ([`parse_network_list`]),
//! what a failed removal means ([`rm_failure`]), and the pure decision `bootstrap`,
//! `deploy` and `status` share: which of the playbook's networks are missing, and which
//! exist with other options ([`compare`]). The requests that create and remove one are
//! [`crate::docker::api::network_create`] and [`crate::docker::api::network_remove`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Network;
use crate::docker::null_as_default;

/// A network as a manager lists it (`GET /networks`; the same object as `docker network
/// inspect`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub attachable: bool,
    pub internal: bool,
    pub subnets: Vec<String>,
    pub encrypted: bool,
    /// The stack it belongs to (its `com.docker.stack.namespace` label); empty for none.
    pub stack: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    attachable: bool,
    #[serde(default)]
    internal: bool,
    #[serde(rename = "IPAM", default)]
    ipam: RawIpam,
    #[serde(default, deserialize_with = "null_as_default")]
    options: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
}

impl From<RawNetwork> for NetworkInfo {
    fn from(raw: RawNetwork) -> NetworkInfo {
        NetworkInfo {
            encrypted: raw.options.contains_key("encrypted"),
            stack: raw
                .labels
                .get(crate::docker::stack::NAMESPACE_LABEL)
                .cloned()
                .unwrap_or_default(),
            name: raw.name,
            driver: raw.driver,
            scope: raw.scope,
            attachable: raw.attachable,
            internal: raw.internal,
            subnets: raw.ipam.config.into_iter().map(|c| c.subnet).collect(),
        }
    }
}

/// Parses the Engine API's network list (`crate::docker::api::networks`).
pub fn parse_network_list(body: &[u8]) -> Result<Vec<NetworkInfo>, String> {
    let raw: Vec<RawNetwork> =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the networks: {e}"))?;
    Ok(raw.into_iter().map(NetworkInfo::from).collect())
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawIpam {
    #[serde(deserialize_with = "null_as_default")]
    config: Vec<RawIpamConfig>,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawIpamConfig {
    subnet: String,
}

/// The label that marks a network rpiprov created.
pub const MANAGED_LABEL: &str = "io.rpiprov.managed";

/// What the manager has of one playbook network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// It does not exist: create it.
    Missing(&'a Network),
    /// It exists as the playbook says.
    Matches,
    /// It exists with other options; the message says which and what to do.
    Conflict(String),
}

/// For each playbook network, in playbook order, what the manager has of it.
pub fn compare<'a>(wanted: &'a [Network], existing: &[NetworkInfo]) -> Vec<Verdict<'a>> {
    wanted
        .iter()
        .map(|net| match existing.iter().find(|n| n.name == net.name) {
            None => Verdict::Missing(net),
            Some(have) => match network_conflict(net, have) {
                Some(conflict) => Verdict::Conflict(conflict),
                None => Verdict::Matches,
            },
        })
        .collect()
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

/// What a failed network removal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmFailure {
    /// Docker still holds endpoints on it (tasks of a just removed stack detach
    /// asynchronously): worth retrying.
    InUse,
    /// It does not exist (any more).
    Gone,
    Other,
}

/// Classifies Docker's message on a failed network removal, in its words for a local
/// network and for a swarm one.
pub fn rm_failure(err: &str) -> RmFailure {
    if err.contains("No such network") || err.contains("not found") {
        RmFailure::Gone
    } else if err.contains("active endpoints") || err.contains("is in use") {
        RmFailure::InUse
    } else {
        RmFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::network;

    #[test]
    fn missing_matching_and_conflicting_networks_in_playbook_order() {
        let wanted = vec![network("A"), network("B"), network("C")];
        let existing = parse_network_list(
            br#"[{"Name":"C","Driver":"overlay","Scope":"swarm","Attachable":false,"IPAM":{"Config":null},"Options":null},
                {"Name":"B","Driver":"overlay","Scope":"swarm","Attachable":true,"IPAM":{"Config":[]},"Options":{}}]"#,
        )
        .unwrap();
        assert_eq!(
            compare(&wanted, &existing),
            vec![
                Verdict::Missing(&wanted[0]),
                Verdict::Matches,
                Verdict::Conflict(
                    "network C exists with other options (attachable is false, playbook says true); Docker cannot change a network in place: remove it (docker network rm C) or change the playbook".into()
                ),
            ]
        );
    }

    #[test]
    fn rm_failures_in_docker_s_words() {
        assert_eq!(
            rm_failure("error while removing network: network DATA id 3k2 has active endpoints"),
            RmFailure::InUse
        );
        assert_eq!(
            rm_failure(
                "rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y"
            ),
            RmFailure::InUse
        );
        assert_eq!(rm_failure("network DATA not found"), RmFailure::Gone);
        assert_eq!(rm_failure("No such network: DATA"), RmFailure::Gone);
        assert_eq!(rm_failure("permission denied"), RmFailure::Other);
    }
}
