//! `rpiprov lab status`: one line per node, from the state file and the live processes.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::error::{LabError, Result};
use super::layout::{Kind, NodeSpec};
use super::state::State;
use super::{hardware, node, print_line, vm};

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
            if spec.vm.is_some() {
                let (sshd, dockerd) = vm::status(&state.dir, spec, holder);
                return NodeStatus {
                    spec: spec.clone(),
                    sshd,
                    dockerd,
                };
            }
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
    // What `lab hardware` fakes, in a last column that shows only when a node fakes some.
    let faked: Vec<String> = rows
        .iter()
        .map(|r| hardware::load(&node::node_dir(dir, &r.spec.name)).cell())
        .collect();
    let any = faked.iter().any(|f| !f.is_empty());
    // A VM lab says what each machine is; a namespace lab's table stays as it was.
    let vms = rows.iter().any(|r| r.spec.vm.is_some());
    let machine = |r: &NodeStatus| match &r.spec.vm {
        Some(v) => format!(" vm {}", v.arch),
        None => String::new(),
    };
    let header = format!(
        "{:<8} {:<15} {:<8} {:<10} {:<5} {:<7} {:<8} {}",
        "NODE",
        "ADDRESS",
        "ROLE",
        "KIND",
        "SSHD",
        "DOCKERD",
        if vms { "RELEASE  MACHINE" } else { "RELEASE" },
        if any { "HARDWARE" } else { "" }
    );
    print_line(header.trim_end());
    let mut healthy = true;
    for (r, faked) in rows.iter().zip(&faked) {
        let docker = match r.dockerd {
            Some(true) => "up",
            Some(false) => "down",
            None => "-",
        };
        healthy &= r.sshd && r.dockerd != Some(false);
        let release = if vms {
            format!("{:<8}{}", r.spec.distro.as_str(), machine(r))
        } else {
            r.spec.distro.to_string()
        };
        let line = format!(
            "{:<8} {:<15} {:<8} {:<10} {:<5} {docker:<7} {release:<8} {faked}",
            r.spec.name,
            r.spec.address.to_string(),
            r.spec.role,
            r.spec.kind.as_str(),
            if r.sshd { "up" } else { "down" },
        );
        print_line(line.trim_end());
    }
    if let Some(r) = &state.registry {
        let up = super::registry::running(r);
        healthy &= up;
        print_line(&format!(
            "registry {} {}",
            r.addr,
            if up { "up" } else { "down" }
        ));
    }
    Ok(healthy)
}
