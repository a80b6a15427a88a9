//! Facts: what one read-only probe (see [`crate::commands::probe`]) reports of a host, parsed
//! into types the planner reads. Parsing is pure and tested on recorded probe output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Addresses of the managers this node knows, for messages.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.remote_managers
            .iter()
            .map(|m| m.addr.clone())
            .collect()
    }
}

/// One node as a manager's `docker node inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmNode {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    /// `ready`, `down`, `unknown` ...
    pub state: String,
    pub addr: String,
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
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeSpec {
    #[serde(deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    role: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeDescription {
    hostname: String,
}
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawNodeStatus {
    state: String,
    addr: String,
}

/// A network as `docker network inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub attachable: bool,
    pub internal: bool,
    pub subnets: Vec<String>,
    pub encrypted: bool,
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

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Everything the probe reports of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub os_id: String,
    pub os_version: String,
    /// Userland architecture (`dpkg --print-architecture`): `armhf` on 32-bit Raspberry Pi
    /// OS even though `uname -m` says `aarch64`.
    pub arch: String,
    pub kernel_arch: String,
    pub hostname: String,
    /// The address this host has on the connection rpiprov reached it by.
    pub reach_addr: String,
    pub systemd: bool,
    pub apt: bool,
    pub docker_installed: bool,
    pub docker_running: bool,
    pub docker_version: Option<String>,
    /// The text of `/etc/docker/daemon.json`, if the file exists.
    pub daemon_json: Option<String>,
    pub swarm: SwarmInfo,
    /// Filled on managers only.
    pub nodes: Vec<SwarmNode>,
    /// The playbook's networks that exist, as a manager sees them.
    pub networks: Vec<NetworkInfo>,
}

/// Parses the probe's output. Unknown keys are ignored so that an older rpiprov can read
/// the probe of a newer one; malformed JSON is an error naming the section.
pub fn parse(output: &str) -> Result<Facts, String> {
    let mut f = Facts::default();
    let mut section: Option<(&str, Vec<&str>)> = None;
    for line in output.lines() {
        if let Some((name, body)) = section.as_mut() {
            if line.strip_prefix("@@end ") == Some(*name) {
                let name = *name;
                let text = body.join("\n");
                section = None;
                parse_section(&mut f, name, &text)?;
            } else {
                body.push(line);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("@@begin ") {
            section = Some((name, Vec::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "os_id" => f.os_id = value,
            "os_version" => f.os_version = value,
            "arch" => f.arch = value,
            "kernel_arch" => f.kernel_arch = value,
            "hostname" => f.hostname = value,
            "reach_addr" => f.reach_addr = value,
            "init" => f.systemd = value == "systemd",
            "apt" => f.apt = value == "yes",
            "docker_installed" => f.docker_installed = value == "yes",
            "docker_running" => f.docker_running = value == "yes",
            "docker_version" if !value.is_empty() => f.docker_version = Some(value),
            _ => {}
        }
    }
    if let Some((name, _)) = section {
        return Err(format!("probe output ended inside section {name}"));
    }
    if f.hostname.is_empty() {
        return Err("probe output has no hostname: the probe did not run".to_string());
    }
    Ok(f)
}

/// Parses `docker network inspect --format '{{json .}}'` output: one network per line.
pub fn parse_networks(text: &str) -> Result<Vec<NetworkInfo>, String> {
    let mut f = Facts::default();
    parse_section(&mut f, "networks", text)?;
    Ok(f.networks)
}

fn parse_section(f: &mut Facts, name: &str, text: &str) -> Result<(), String> {
    match name {
        "daemon_json" => {
            // The probe adds a newline after the file in case it has none.
            f.daemon_json = Some(text.strip_suffix('\n').unwrap_or(text).to_string());
        }
        "swarm" => {
            f.swarm = serde_json::from_str(text.trim())
                .map_err(|e| format!("cannot read the swarm state from docker info: {e}"))?;
        }
        "nodes" => {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let raw: RawNode = serde_json::from_str(line)
                    .map_err(|e| format!("cannot read docker node inspect: {e}"))?;
                f.nodes.push(SwarmNode {
                    id: raw.id,
                    hostname: raw.description.hostname,
                    role: raw.spec.role,
                    labels: raw.spec.labels,
                    state: raw.status.state,
                    addr: raw.status.addr,
                });
            }
        }
        "networks" => {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let raw: RawNetwork = serde_json::from_str(line)
                    .map_err(|e| format!("cannot read docker network inspect: {e}"))?;
                f.networks.push(NetworkInfo {
                    encrypted: raw.options.contains_key("encrypted"),
                    name: raw.name,
                    driver: raw.driver,
                    scope: raw.scope,
                    attachable: raw.attachable,
                    internal: raw.internal,
                    subnets: raw.ipam.config.into_iter().map(|c| c.subnet).collect(),
                });
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANAGER: &str = r#"os_id=debian
os_version=12
arch=armhf
kernel_arch=aarch64
hostname=pi1
reach_addr=198.18.0.11
init=other
apt=yes
docker_installed=yes
@@begin daemon_json
{"insecure-registries": ["pi1:5000"]}
@@end daemon_json
docker_running=yes
docker_version=20.10.24+dfsg1
@@begin swarm
{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"n1","Addr":"198.18.0.11:2377"}],"Nodes":2,"Managers":1,"Cluster":{"ID":"c1","Version":{"Index":10}}}
@@end swarm
@@begin nodes
{"ID":"n1","Spec":{"Labels":{"zone":"a"},"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"198.18.0.11"}}
{"ID":"n2","Spec":{"Labels":{},"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2"},"Status":{"State":"down","Addr":"198.18.0.12"}}
@@end nodes
@@begin networks
{"Name":"DATA","Scope":"swarm","Driver":"overlay","IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"198.19.10.0/24","Gateway":"198.19.10.1"}]},"Internal":true,"Attachable":false,"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097","encrypted":""},"Labels":null}
@@end networks
"#;

    #[test]
    fn parses_a_manager_probe() {
        let f = parse(MANAGER).unwrap();
        assert_eq!(f.arch, "armhf");
        assert_eq!(f.kernel_arch, "aarch64");
        assert_eq!(f.reach_addr, "198.18.0.11");
        assert!(!f.systemd);
        assert!(f.docker_running);
        assert_eq!(f.docker_version.as_deref(), Some("20.10.24+dfsg1"));
        assert_eq!(
            f.daemon_json.as_deref(),
            Some(r#"{"insecure-registries": ["pi1:5000"]}"#)
        );
        assert!(f.swarm.is_active());
        assert!(f.swarm.control_available);
        assert_eq!(f.swarm.cluster.id, "c1");
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.nodes[0].labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(f.nodes[1].state, "down");
        assert_eq!(
            f.networks,
            vec![NetworkInfo {
                name: "DATA".into(),
                driver: "overlay".into(),
                scope: "swarm".into(),
                attachable: false,
                internal: true,
                subnets: vec!["198.19.10.0/24".into()],
                encrypted: true,
            }]
        );
    }

    #[test]
    fn parses_a_bare_host_and_an_inactive_swarm() {
        let f = parse("hostname=pi3\ndocker_installed=no\ndocker_running=no\n").unwrap();
        assert!(!f.docker_installed);
        assert_eq!(f.swarm, SwarmInfo::default());

        let inactive = "hostname=pi2\ndocker_running=yes\n@@begin swarm\n{\"NodeID\":\"\",\"NodeAddr\":\"\",\"LocalNodeState\":\"inactive\",\"ControlAvailable\":false,\"Error\":\"\",\"RemoteManagers\":null}\n@@end swarm\n";
        let f = parse(inactive).unwrap();
        assert!(!f.swarm.is_active());
        assert!(f.swarm.remote_managers.is_empty());
    }

    #[test]
    fn broken_output_is_an_error_not_a_guess() {
        assert_eq!(
            parse("sudo: a password is required\n").unwrap_err(),
            "probe output has no hostname: the probe did not run"
        );
        assert!(
            parse("hostname=x\n@@begin swarm\n{not json\n@@end swarm\n")
                .unwrap_err()
                .starts_with("cannot read the swarm state from docker info:")
        );
        assert_eq!(
            parse("hostname=x\n@@begin nodes\n").unwrap_err(),
            "probe output ended inside section nodes"
        );
    }

    #[test]
    fn the_real_probe_runs_in_a_shell_without_docker() {
        // On a machine without a Docker daemon the probe must still report the basics.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::commands::probe(&[]))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert!(!f.hostname.is_empty());
        assert!(!f.arch.is_empty());
    }
}
