//! Overlay networks: `docker network inspect` and its parse into [`NetworkInfo`], `docker
//! network create` ([`network_create`]: this is where a playbook network is made, for
//! `bootstrap` and for `deploy` alike), `docker network rm` and its answers, and the pure
//! decision both commands share: which of the playbook's networks are missing, and which
//! exist with other options ([`compare`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Network;
use crate::docker::{json_lines, null_as_default};
use crate::shell::join;

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

/// Inspects these networks; missing ones are left out (inspect fails for them, and the
/// status does not matter: the output says which exist). Read by [`parse_networks`].
pub fn network_inspect(names: &[&str]) -> String {
    format!(
        "docker network inspect --format '{{{{json .}}}}' {} 2>/dev/null; true",
        join(names)
    )
}

/// Parses `docker network inspect --format '{{json .}}'` output: one network per line.
pub fn parse_networks(text: &str) -> Result<Vec<NetworkInfo>, String> {
    let raw: Vec<RawNetwork> = json_lines(text, "docker network inspect")?;
    Ok(raw.into_iter().map(NetworkInfo::from).collect())
}

/// The label that marks a network rpiprov created.
pub const MANAGED_LABEL: &str = "io.rpiprov.managed";

/// Creates a playbook network, labelled as rpiprov's (the Engine API's request that does
/// the same: [`crate::docker::api::network_create`]).
pub fn network_create(net: &Network) -> String {
    let mut args = vec![
        "docker".to_string(),
        "network".into(),
        "create".into(),
        "--driver".into(),
        net.driver.clone(),
        "--scope".into(),
        "swarm".into(),
    ];
    if net.attachable {
        args.push("--attachable".into());
    }
    if net.internal {
        args.push("--internal".into());
    }
    if let Some(subnet) = &net.subnet {
        args.push("--subnet".into());
        args.push(subnet.clone());
    }
    if net.encrypted {
        args.push("--opt".into());
        args.push("encrypted".into());
    }
    args.push("--label".into());
    args.push(format!("{MANAGED_LABEL}=true"));
    args.push(net.name.clone());
    join(args)
}

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

pub fn network_rm(name: &str) -> String {
    join(["docker", "network", "rm", name])
}

/// What a failed [`network_rm`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmFailure {
    /// Docker still holds endpoints on it (tasks of a just removed stack detach
    /// asynchronously): worth retrying.
    InUse,
    /// It does not exist (any more).
    Gone,
    Other,
}

/// Classifies the error text of a failed [`network_rm`], in Docker's words for a local
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
    fn network_create_with_every_option() {
        let net = Network {
            name: "DATA".into(),
            driver: "overlay".into(),
            attachable: true,
            internal: true,
            subnet: Some("10.20.0.0/24".into()),
            encrypted: true,
        };
        assert_eq!(
            network_create(&net),
            "docker network create --driver overlay --scope swarm --attachable --internal --subnet 10.20.0.0/24 --opt encrypted --label io.rpiprov.managed=true DATA"
        );
        assert_eq!(network_rm("DATA"), "docker network rm DATA");
    }

    #[test]
    fn network_inspect_tolerates_missing_networks() {
        assert_eq!(
            network_inspect(&["DATA", "my net"]),
            "docker network inspect --format '{{json .}}' DATA 'my net' 2>/dev/null; true"
        );
    }

    #[test]
    fn missing_matching_and_conflicting_networks_in_playbook_order() {
        let wanted = vec![network("A"), network("B"), network("C")];
        let existing = parse_networks(concat!(
            r#"{"Name":"C","Driver":"overlay","Scope":"swarm","Attachable":false,"IPAM":{"Config":null},"Options":null}"#,
            "\n",
            r#"{"Name":"B","Driver":"overlay","Scope":"swarm","Attachable":true,"IPAM":{"Config":[]},"Options":{}}"#,
            "\n",
        ))
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
            rm_failure(
                "exit 1: Error response from daemon: error while removing network: network DATA id 3k2 has active endpoints"
            ),
            RmFailure::InUse
        );
        assert_eq!(
            rm_failure(
                "exit 1: Error response from daemon: rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y"
            ),
            RmFailure::InUse
        );
        assert_eq!(
            rm_failure("exit 1: Error: No such network: DATA"),
            RmFailure::Gone
        );
        assert_eq!(rm_failure("exit 1: permission denied"), RmFailure::Other);
    }
}
