//! The shape of a lab, computed from the flags and the lab directory alone (pure, no I/O):
//! node names, kinds, roles, addresses, and the names of the kernel objects made for them.
//! Names carry a tag derived from the lab directory, so two labs in two directories never
//! fight over a namespace or an interface name.

use std::net::Ipv4Addr;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::distro::{Distro, Distros};
use super::error::{LabError, Result};

/// Past this, the lab is no longer a rack but a stress test of this machine.
pub const MAX_NODES: usize = 1000;
/// Node n (1-based) is at .(10+n) of its subnet, like the project's examples (.11, .12...).
const FIRST_NODE: u32 = 11;
/// Up to this many nodes fit in a /24 (.11 to .254); beyond, the lab uses [`BIG`].
pub const NODES_IN_SLASH24: usize = 254 - FIRST_NODE as usize + 1;

/// The labs' own subnets: a free /24 each, in 198.18.0.0/17. The rest of 198.18.0.0/15
/// (RFC 2544, never a real LAN) is for Docker inside the nodes: `bip` 198.18.254.1/24,
/// address pools 198.18.128.0/18, the swarm pool 198.19.0.0/16.
pub const LAB_BLOCK: Subnet = Subnet::new(Ipv4Addr::new(198, 18, 0, 0), 17);
/// What every node may never reach outside its own lab: the whole benchmark block.
pub const BENCHMARK_BLOCK: Subnet = Subnet::new(Ipv4Addr::new(198, 18, 0, 0), 15);
/// The subnet of a lab of more than [`NODES_IN_SLASH24`] nodes: it covers every /24 of
/// [`LAB_BLOCK`], so such a lab cannot run beside another.
pub const BIG: Subnet = Subnet::new(Ipv4Addr::new(198, 18, 0, 0), 16);

/// An IPv4 network in CIDR form (`198.18.3.0/24`). Only what the lab needs: parse, print,
/// contain, overlap (a dependency for these four would be more code to review than this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The network of `addr` with `prefix` bits (host bits cleared).
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        };
        Subnet {
            network: Ipv4Addr::from_bits(addr.to_bits() & mask),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        addr.to_bits() & self.mask() == self.network.to_bits()
    }

    /// `other` lies wholly inside `self`.
    pub fn covers(&self, other: &Subnet) -> bool {
        self.prefix <= other.prefix && self.contains(other.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The bridge (gateway) address: the first of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network.to_bits() + 1)
    }

    /// How many lab nodes fit: addresses from .11 on, skipping the .0 and .255 of every /24
    /// and the subnet's broadcast address.
    pub fn capacity(&self) -> usize {
        let size = 1u64 << (32 - u32::from(self.prefix));
        let usable = (0..size)
            .filter(|i| {
                let last = (u64::from(self.network.to_bits()) + i) & 0xff;
                *i >= u64::from(FIRST_NODE) && *i != size - 1 && last != 0 && last != 255
            })
            .count();
        usable.min(MAX_NODES)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a subnet in CIDR form such as 198.18.5.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length (0 to 32)"))?;
        let net = Subnet::new(addr, prefix);
        if net.network != addr {
            return Err(format!("{s} has host bits set; did you mean {net}?"));
        }
        Ok(net)
    }
}

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
    /// The Debian release it runs (`--distro`); labs recorded before releases were a
    /// choice ran bookworm only. sshd-only nodes run the machine's own (bookworm).
    #[serde(default)]
    pub distro: Distro,
}

impl NodeSpec {
    /// The node has a root file system of its own (an overlay over the release's cached
    /// base, `pivot_root` into it): bare nodes, and Docker nodes of a release other than
    /// the machine's.
    pub fn own_root(&self) -> bool {
        match self.kind {
            Kind::Bare => true,
            Kind::Docker => !self.distro.on_host_fs(),
            Kind::SshdOnly => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub tag: String,
    pub bridge: String,
    /// The lab subnet's network address; absent from the state of labs made before labs
    /// had subnets of their own (they all used 198.18.0.0).
    #[serde(default = "legacy_network")]
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub nodes: Vec<NodeSpec>,
}

fn legacy_network() -> Ipv4Addr {
    LAB_BLOCK.network()
}

impl Layout {
    /// The lab subnet, as NAT and FORWARD rules name it.
    pub fn subnet(&self) -> Subnet {
        Subnet::new(self.network, self.prefix)
    }

    /// The bridge's address: the nodes' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet().gateway()
    }
}

/// A short stable tag for a lab directory (which must be absolute and canonical).
pub fn tag_for(dir: &Path) -> String {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..3])
}

/// The n-th node address (0-based) in `subnet`, skipping the .0 and .255 of every /24 so
/// that no node ever looks like a network or broadcast address, even in a /16.
fn address(subnet: Subnet, n: usize) -> Ipv4Addr {
    let mut a = subnet.network().to_bits() + FIRST_NODE;
    let mut left = n;
    loop {
        let last = a & 0xff;
        if last != 0 && last != 255 {
            if left == 0 {
                return Ipv4Addr::from_bits(a);
            }
            left -= 1;
        }
        a += 1;
    }
}

/// Checks `--distro` against the nodes that get a release (Docker and bare ones): no name
/// of the list may go unused, and sshd-only nodes run the machine's own system.
pub fn validate_distros(shape: Shape, distros: &Distros) -> Result<()> {
    if *distros == Distros::default() {
        return Ok(());
    }
    if shape.sshd_only > 0 {
        return Err(LabError::Usage(
            "--distro is for Docker and bare nodes; sshd-only nodes run this machine's system"
                .into(),
        ));
    }
    let nodes = shape.docker + shape.bare;
    let given = distros.as_slice().len();
    if given > nodes {
        return Err(LabError::Usage(format!(
            "--distro {distros} names {given} releases for {nodes} node{} (docker nodes first, then bare ones, the last release repeating)",
            if nodes == 1 { "" } else { "s" }
        )));
    }
    Ok(())
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

/// Checks a subnet the user named with `--subnet`, before anything is created.
pub fn validate_subnet(subnet: Subnet, shape: Shape) -> Result<()> {
    let inside = subnet == BIG || (LAB_BLOCK.covers(&subnet) && subnet.prefix() <= 24);
    if !inside {
        return Err(LabError::Usage(format!(
            "--subnet {subnet}: a lab subnet is a /17 to /24 inside {LAB_BLOCK}, or {BIG} \
             (the rest of {BENCHMARK_BLOCK} is for Docker inside the nodes)"
        )));
    }
    if subnet.capacity() < shape.total() {
        return Err(LabError::Usage(format!(
            "--subnet {subnet} holds {} nodes, {} asked",
            subnet.capacity(),
            shape.total()
        )));
    }
    Ok(())
}

/// The subnet of a new lab: the one asked for if it is free, else the first free /24 of
/// [`LAB_BLOCK`], or [`BIG`] for a fleet too big for a /24. `taken` holds the subnets of
/// this machine's interfaces and routes (other labs' bridges among them).
pub fn choose_subnet(
    asked: Option<Subnet>,
    shape: Shape,
    taken: &[(Subnet, String)],
) -> Result<Subnet> {
    let clash = |s: &Subnet| taken.iter().find(|(t, _)| t.overlaps(s));
    if let Some(s) = asked {
        validate_subnet(s, shape)?;
        return match clash(&s) {
            Some((t, dev)) => Err(LabError::Usage(format!(
                "--subnet {s} overlaps {t} on {dev} (another lab?); choose another or run `rpiprov lab down` for that lab"
            ))),
            None => Ok(s),
        };
    }
    if shape.total() > NODES_IN_SLASH24 {
        return match clash(&BIG) {
            Some((t, dev)) => Err(LabError::Usage(format!(
                "a lab of {} nodes needs all of {BIG}, but {t} is on {dev} (another lab?); \
                 bring that lab down first, or split the fleet into labs of at most {NODES_IN_SLASH24} nodes",
                shape.total()
            ))),
            None => Ok(BIG),
        };
    }
    let count = 1u32 << (24 - LAB_BLOCK.prefix());
    (0..count)
        .map(|i| {
            Subnet::new(
                Ipv4Addr::from_bits(LAB_BLOCK.network().to_bits() + (i << 8)),
                24,
            )
        })
        .find(|s| clash(s).is_none())
        .ok_or_else(|| {
            LabError::Usage(format!(
                "no free /24 left in {LAB_BLOCK} (all {count} are in use); bring a lab down first"
            ))
        })
}

pub fn plan(dir: &Path, shape: Shape, subnet: Subnet, distros: &Distros) -> Result<Layout> {
    validate(shape)?;
    validate_distros(shape, distros)?;
    if subnet.capacity() < shape.total() {
        return Err(LabError::Usage(format!(
            "{subnet} holds {} nodes, {} asked",
            subnet.capacity(),
            shape.total()
        )));
    }
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
                address: address(subnet, i),
                // One node (the second of a Docker/bare fleet) asks for a password, as many
                // real Pis do; scale-test fleets stay password-less.
                sudo_password: i == 1 && kind != Kind::SshdOnly,
                zone: ["a", "b", "c"][i % 3].to_string(),
                // Docker nodes come first, then bare ones: node order is the list's order.
                distro: match kind {
                    Kind::SshdOnly => Distro::Bookworm,
                    Kind::Docker | Kind::Bare => distros.for_node(i),
                },
                name,
                kind,
            }
        })
        .collect();
    Ok(Layout {
        bridge: format!("rpl{tag}br"),
        network: subnet.network(),
        prefix: subnet.prefix(),
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

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    const FIRST: Subnet = Subnet::new(Ipv4Addr::new(198, 18, 0, 0), 24);

    /// `--distro` left at its default.
    fn d() -> Distros {
        Distros::default()
    }

    #[test]
    fn releases_go_to_docker_nodes_then_bare_ones_the_last_repeating() {
        let list: Distros = "sid,trixie".parse().unwrap();
        let l = plan(Path::new("/x"), shape(1, 2, 0), FIRST, &list).unwrap();
        let got: Vec<_> = l
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.kind, n.distro, n.own_root()))
            .collect();
        assert_eq!(
            got,
            [
                ("pi1", Kind::Docker, Distro::Sid, true),
                ("pi2", Kind::Bare, Distro::Trixie, true),
                ("pi3", Kind::Bare, Distro::Trixie, true),
            ]
        );
        // Bookworm Docker nodes stay on the machine's own file system, as before.
        let l = plan(Path::new("/x"), shape(2, 1, 0), FIRST, &d()).unwrap();
        let roots: Vec<bool> = l.nodes.iter().map(|n| n.own_root()).collect();
        assert_eq!(roots, [false, false, true]);
        assert!(l.nodes.iter().all(|n| n.distro == Distro::Bookworm));
    }

    #[test]
    fn a_release_list_longer_than_the_fleet_or_on_sshd_only_nodes_is_refused() {
        let three: Distros = "sid,trixie,bookworm".parse().unwrap();
        let e = plan(Path::new("/x"), shape(1, 1, 0), FIRST, &three).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lab: --distro sid,trixie,bookworm names 3 releases for 2 nodes (docker nodes first, then bare ones, the last release repeating)"
        );
        assert!(matches!(e, LabError::Usage(_)));
        let sid: Distros = "sid".parse().unwrap();
        assert!(matches!(
            validate_distros(shape(0, 0, 5), &sid),
            Err(LabError::Usage(_))
        ));
        assert!(validate_distros(shape(0, 0, 5), &d()).is_ok());
        // A recorded node of a lab made before releases were a choice is a bookworm one.
        let old = r#"{"name":"pi1","kind":"docker","role":"manager","address":"198.18.0.11",
            "netns":"n","veth":"v","sudo_password":false,"zone":"a"}"#;
        let n: NodeSpec = serde_json::from_str(old).unwrap();
        assert_eq!(n.distro, Distro::Bookworm);
    }

    #[test]
    fn default_fleet_is_two_docker_nodes_and_one_bare() {
        let l = plan(Path::new("/x/.lab"), shape(2, 1, 0), FIRST, &d()).unwrap();
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
        assert_eq!(l.subnet().to_string(), "198.18.0.0/24");
        assert_eq!(l.gateway().to_string(), "198.18.0.1");
    }

    #[test]
    fn a_lab_in_another_subnet_has_its_addresses_there() {
        let l = plan(Path::new("/x"), shape(2, 1, 0), net("198.18.7.0/24"), &d()).unwrap();
        assert_eq!(l.gateway().to_string(), "198.18.7.1");
        assert_eq!(l.nodes[2].address.to_string(), "198.18.7.13");
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_of_15_bytes() {
        let l = plan(Path::new("/x/.lab"), shape(0, 0, MAX_NODES), BIG, &d()).unwrap();
        assert!(l.bridge.len() <= 15, "{}", l.bridge);
        assert!(l.nodes.iter().all(|n| n.veth.len() <= 15));
    }

    #[test]
    fn two_directories_get_different_names() {
        let a = plan(Path::new("/x/a"), shape(1, 0, 0), FIRST, &d()).unwrap();
        let b = plan(Path::new("/x/b"), shape(1, 0, 0), FIRST, &d()).unwrap();
        assert_ne!(a.bridge, b.bridge);
        assert_ne!(a.nodes[0].netns, b.nodes[0].netns);
    }

    #[test]
    fn big_fleets_use_a_slash16_and_skip_0_and_255() {
        let l = plan(Path::new("/x"), shape(0, 0, 300), BIG, &d()).unwrap();
        assert_eq!(l.subnet().to_string(), "198.18.0.0/16");
        assert_eq!(l.nodes[243].address.to_string(), "198.18.0.254");
        assert_eq!(l.nodes[244].address.to_string(), "198.18.1.1");
        let mut seen = std::collections::HashSet::new();
        assert!(l.nodes.iter().all(|n| seen.insert(n.address)));
        assert_eq!(choose_subnet(None, shape(0, 0, 245), &[]).unwrap(), BIG);
        assert_eq!(choose_subnet(None, shape(0, 0, 244), &[]).unwrap(), FIRST);
        // A /24 cannot hold 245 nodes.
        assert!(matches!(
            plan(Path::new("/x"), shape(0, 0, 245), FIRST, &d()),
            Err(LabError::Usage(_))
        ));
    }

    #[test]
    fn empty_and_huge_fleets_are_usage_errors() {
        assert!(matches!(
            plan(Path::new("/x"), shape(0, 0, 0), FIRST, &d()),
            Err(LabError::Usage(_))
        ));
        assert!(matches!(
            plan(Path::new("/x"), shape(0, 0, MAX_NODES + 1), BIG, &d()),
            Err(LabError::Usage(_))
        ));
    }

    #[test]
    fn subnets_parse_print_and_overlap() {
        assert_eq!(net("198.18.3.0/24").to_string(), "198.18.3.0/24");
        assert!(net("198.18.0.0/17").covers(&net("198.18.3.0/24")));
        assert!(net("198.18.3.0/24").overlaps(&net("198.18.0.0/16")));
        assert!(!net("198.18.3.0/24").overlaps(&net("198.18.4.0/24")));
        assert!(net("198.18.3.0/24").contains(Ipv4Addr::new(198, 18, 3, 200)));
        for bad in ["198.18.3.1/24", "198.18.3.0", "198.18.3.0/33", "x/24"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        assert_eq!(FIRST.capacity(), NODES_IN_SLASH24);
        assert_eq!(BIG.capacity(), MAX_NODES);
    }

    #[test]
    fn a_new_lab_takes_the_first_free_slash24() {
        let taken = vec![
            (net("198.18.0.0/24"), "rplaaaaaabr".to_string()),
            (net("198.18.1.0/24"), "rplbbbbbbbr".to_string()),
            (net("10.0.0.0/8"), "eth0".to_string()),
        ];
        let s = shape(2, 1, 0);
        assert_eq!(
            choose_subnet(None, s, &taken).unwrap(),
            net("198.18.2.0/24")
        );
        // A big lab needs the whole /16: refused beside another lab, saying why.
        let e = choose_subnet(None, shape(0, 0, 300), &taken).unwrap_err();
        assert!(
            e.to_string().contains("198.18.0.0/24 is on rplaaaaaabr"),
            "{e}"
        );
        // --subnet: used when free, refused when taken or outside the lab block.
        assert_eq!(
            choose_subnet(Some(net("198.18.9.0/24")), s, &taken).unwrap(),
            net("198.18.9.0/24")
        );
        let e = choose_subnet(Some(net("198.18.1.0/24")), s, &taken).unwrap_err();
        assert!(
            e.to_string()
                .contains("overlaps 198.18.1.0/24 on rplbbbbbbbr"),
            "{e}"
        );
        for outside in [
            "198.18.128.0/24",
            "198.19.0.0/24",
            "192.168.1.0/24",
            "198.18.0.0/25",
        ] {
            assert!(
                matches!(
                    choose_subnet(Some(net(outside)), s, &[]),
                    Err(LabError::Usage(_))
                ),
                "{outside}"
            );
        }
        // Every /24 of the block in use.
        let full: Vec<_> = (0..128)
            .map(|i| (net(&format!("198.18.{i}.0/24")), format!("br{i}")))
            .collect();
        assert!(
            choose_subnet(None, s, &full)
                .unwrap_err()
                .to_string()
                .contains("no free /24")
        );
    }
}
