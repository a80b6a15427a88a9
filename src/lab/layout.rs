//! The shape of a lab, computed from the flags and the lab directory alone (pure, no I/O):
//! node names, kinds, roles, addresses, and the names of the kernel objects made for them.
//! Names carry a tag derived from the lab directory, so two labs in two directories never
//! fight over a namespace or an interface name.

use std::net::Ipv4Addr;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{LabError, Result};

/// Past this, the lab is no longer a rack but a stress test of this machine.
pub const MAX_NODES: usize = 1000;
/// Bridge (gateway) address; nodes start at .11 like the project's examples.
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const FIRST_NODE: u32 = 11;
/// Up to this many nodes fit in 198.18.0.0/24 (.11 to .254); beyond, the lab uses a /16.
const NODES_IN_SLASH24: usize = 254 - FIRST_NODE as usize + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Runs sshd and its own dockerd, over the host's file system (private /etc, /var, /run).
    Docker,
    /// A Debian rootfs (overlay over the debootstrap cache) as the node's root, sshd only: a
    /// fresh Pi.
    Bare,
    /// Only sshd, for scale tests of the SSH layer.
    SshdOnly,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Bare => "bare",
            Kind::SshdOnly => "sshd-only",
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub docker: usize,
    pub bare: usize,
    pub sshd_only: usize,
}

impl Shape {
    pub fn total(&self) -> usize {
        self.docker + self.bare + self.sshd_only
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub kind: Kind,
    pub role: String,
    pub address: Ipv4Addr,
    /// Network namespace name (`ip netns`).
    pub netns: String,
    /// Host side of the node's veth pair, plugged into the lab bridge.
    pub veth: String,
    /// sudo asks this node's `pi` for the password in `DIR/sudo-password`.
    pub sudo_password: bool,
    pub zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub tag: String,
    pub bridge: String,
    pub prefix: u8,
    pub nodes: Vec<NodeSpec>,
}

impl Layout {
    /// The lab subnet in CIDR form, as NAT and FORWARD rules name it.
    pub fn subnet(&self) -> String {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        let net = Ipv4Addr::from(u32::from(BRIDGE_ADDR) & mask);
        format!("{net}/{}", self.prefix)
    }
}

/// A short stable tag for a lab directory (which must be absolute and canonical).
pub fn tag_for(dir: &Path) -> String {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..3])
}

/// The n-th node address (0-based), skipping the .0 and .255 of every /24 so that no node
/// ever looks like a network or broadcast address, even in the /16 layout.
fn address(n: usize) -> Ipv4Addr {
    let mut a = u32::from(BRIDGE_ADDR) - 1 + FIRST_NODE;
    let mut left = n;
    loop {
        let last = a & 0xff;
        if last != 0 && last != 255 {
            if left == 0 {
                return Ipv4Addr::from(a);
            }
            left -= 1;
        }
        a += 1;
    }
}

/// Checks the flags alone, before anything is created.
pub fn validate(shape: Shape) -> Result<()> {
    let total = shape.total();
    if total == 0 {
        return Err(LabError::Usage("a lab needs at least one node".into()));
    }
    if total > MAX_NODES {
        return Err(LabError::Usage(format!(
            "{total} nodes asked, at most {MAX_NODES} are supported"
        )));
    }
    Ok(())
}

pub fn plan(dir: &Path, shape: Shape) -> Result<Layout> {
    validate(shape)?;
    let total = shape.total();
    let tag = tag_for(dir);
    let kinds = std::iter::repeat_n(Kind::Docker, shape.docker)
        .chain(std::iter::repeat_n(Kind::Bare, shape.bare))
        .chain(std::iter::repeat_n(Kind::SshdOnly, shape.sshd_only));
    let nodes = kinds
        .enumerate()
        .map(|(i, kind)| {
            let name = format!("pi{}", i + 1);
            NodeSpec {
                netns: format!("rpl-{tag}-{name}"),
                veth: format!("rpl{tag}v{}", i + 1),
                role: if i == 0 { "manager" } else { "worker" }.to_string(),
                address: address(i),
                // One node (the second of a Docker/bare fleet) asks for a password, as many
                // real Pis do; scale-test fleets stay password-less.
                sudo_password: i == 1 && kind != Kind::SshdOnly,
                zone: ["a", "b", "c"][i % 3].to_string(),
                name,
                kind,
            }
        })
        .collect();
    Ok(Layout {
        bridge: format!("rpl{tag}br"),
        prefix: if total <= NODES_IN_SLASH24 { 24 } else { 16 },
        tag,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(docker: usize, bare: usize, sshd_only: usize) -> Shape {
        Shape {
            docker,
            bare,
            sshd_only,
        }
    }

    #[test]
    fn default_fleet_is_two_docker_nodes_and_one_bare() {
        let l = plan(Path::new("/x/.lab"), shape(2, 1, 0)).unwrap();
        let got: Vec<_> = l
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.kind,
                    n.role.as_str(),
                    n.address.to_string(),
                    n.sudo_password,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("pi1", Kind::Docker, "manager", "198.18.0.11".into(), false),
                ("pi2", Kind::Docker, "worker", "198.18.0.12".into(), true),
                ("pi3", Kind::Bare, "worker", "198.18.0.13".into(), false),
            ]
        );
        assert_eq!(l.subnet(), "198.18.0.0/24");
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_of_15_bytes() {
        let l = plan(Path::new("/x/.lab"), shape(0, 0, MAX_NODES)).unwrap();
        assert!(l.bridge.len() <= 15, "{}", l.bridge);
        assert!(l.nodes.iter().all(|n| n.veth.len() <= 15));
    }

    #[test]
    fn two_directories_get_different_names() {
        let a = plan(Path::new("/x/a"), shape(1, 0, 0)).unwrap();
        let b = plan(Path::new("/x/b"), shape(1, 0, 0)).unwrap();
        assert_ne!(a.bridge, b.bridge);
        assert_ne!(a.nodes[0].netns, b.nodes[0].netns);
    }

    #[test]
    fn big_fleets_use_a_slash16_and_skip_0_and_255() {
        let l = plan(Path::new("/x"), shape(0, 0, 300)).unwrap();
        assert_eq!(l.prefix, 16);
        assert_eq!(l.subnet(), "198.18.0.0/16");
        assert_eq!(l.nodes[243].address.to_string(), "198.18.0.254");
        assert_eq!(l.nodes[244].address.to_string(), "198.18.1.1");
        let mut seen = std::collections::HashSet::new();
        assert!(l.nodes.iter().all(|n| seen.insert(n.address)));
        let l = plan(Path::new("/x"), shape(0, 0, 244)).unwrap();
        assert_eq!(l.prefix, 24);
    }

    #[test]
    fn empty_and_huge_fleets_are_usage_errors() {
        assert!(matches!(
            plan(Path::new("/x"), shape(0, 0, 0)),
            Err(LabError::Usage(_))
        ));
        assert!(matches!(
            plan(Path::new("/x"), shape(0, 0, MAX_NODES + 1)),
            Err(LabError::Usage(_))
        ));
    }
}
