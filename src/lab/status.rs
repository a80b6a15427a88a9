//! `rpiprov lab status`: one line per node, from the state file and the live processes.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::error::{LabError, Result};
use super::layout::{Kind, NodeSpec};
use super::state::State;
use super::{node, print_line};

pub struct NodeStatus {
    pub spec: NodeSpec,
    pub sshd: bool,
    pub dockerd: Option<bool>,
}

fn port_open(node: &NodeSpec) -> bool {
    let addr = SocketAddr::from((node.address, 22));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

pub fn collect(state: &State) -> Vec<NodeStatus> {
    state
        .layout
        .nodes
        .iter()
        .map(|spec| {
            let holder = state.nodes.get(&spec.name).and_then(|n| n.holder);
            let sshd = holder.is_some_and(node::sshd_running) && port_open(spec);
            let dockerd = match (spec.kind, holder) {
                (Kind::SshdOnly, _) => None,
                (_, Some(h)) if node::dockerd_running(h) => Some(true),
                // A bare node has no Docker until `bootstrap` installs it.
                (Kind::Bare, _) => None,
                _ => Some(false),
            };
            NodeStatus {
                spec: spec.clone(),
                sshd,
                dockerd,
            }
        })
        .collect()
}

/// Prints the table for the lab in `dir` (canonical, checked); whether every node is up.
pub fn status(dir: &Path) -> Result<bool> {
    let state = State::load(dir)?
        .ok_or_else(|| LabError::Usage(format!("no lab in {} (no state.json)", dir.display())))?;
    let rows = collect(&state);
    print_line(&format!(
        "{:<8} {:<15} {:<8} {:<10} {:<5} {:<7} RELEASE",
        "NODE", "ADDRESS", "ROLE", "KIND", "SSHD", "DOCKERD"
    ));
    let mut healthy = true;
    for r in &rows {
        let docker = match r.dockerd {
            Some(true) => "up",
            Some(false) => "down",
            None => "-",
        };
        healthy &= r.sshd && r.dockerd != Some(false);
        print_line(&format!(
            "{:<8} {:<15} {:<8} {:<10} {:<5} {docker:<7} {}",
            r.spec.name,
            r.spec.address.to_string(),
            r.spec.role,
            r.spec.kind.as_str(),
            if r.sshd { "up" } else { "down" },
            r.spec.distro,
        ));
    }
    Ok(healthy)
}
