//! VM nodes (`lab up --vm`): each node a virtual machine of its own, emulated by qemu, with
//! a Debian kernel and systemd, on the lab's bridge through a tap device at the address a
//! namespace node would have. What a namespace on the host's kernel cannot show: the
//! ingress routing mesh and virtual IPs (IPVS), real reboots, the kernel's own command line
//! and modules, the clock of a machine of its own, and the Pi's architecture (arm64).
//!
//! The lab module calls in here where the node kind differs: planning ([`apply`]), the
//! images ([`image`], built once per release and architecture in the cache), starting a
//! node ([`node`]: its seed, its copy-on-write disk, its tap, its qemu process), waiting for
//! its SSH login, its status, and the faults ([`fault`], through the guest agent). See
//! docs/LAB.md for the design and the figures measured on this kind of machine.

mod agent;
mod binfmt;
mod fault;
mod image;
mod node;
mod qemu;
mod seed;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::distro::Distros;
use super::error::{LabError, Result};
use super::images as lab_images;
use super::layout::{Kind, Layout, NodeSpec, Shape, plan};
use super::state::Shared;
use super::sys::ProcId;

pub use fault::Guest;
pub use image::Variant;
pub use node::{is_up, status, wait_ready};

/// From qemu's start to a login over SSH: 30-80 s measured, far more while a loaded
/// machine runs several at once.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// More would not fit this kind of machine (2 cores, 24 GiB; see docs/LAB.md).
pub const MAX_VMS: usize = 12;
/// What one VM takes of this machine's memory, measured (its guest memory, qemu's
/// translation cache and page tables; see docs/LAB.md), for the check before starting.
pub const MEMORY_PER_VM_MB: u64 = 1200;

/// A node's architecture, by Debian's name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's name (`dpkg --print-architecture`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), as swarm reports it (`node.platform.arch`).
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The architecture of this machine, when it is one VM nodes know.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Arch, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an architecture of VM nodes (amd64, arm64)"))
    }
}

/// `NODE=VALUE`, the form of the per-node flags (`--kernel-args pi2='cgroup_disable=memory'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeValue {
    pub node: String,
    pub value: String,
}

impl FromStr for NodeValue {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<NodeValue, String> {
        let (node, value) = s
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| {
                format!("{s:?} is not NODE=VALUE (such as pi2=cgroup_disable=memory)")
            })?;
        Ok(NodeValue {
            node: node.to_string(),
            value: value.to_string(),
        })
    }
}

/// What `lab up --vm` and its flags ask for (lists per node in order; the last entry
/// holds for the nodes after it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmOptions {
    /// `--arch`: amd64 when empty.
    pub archs: Vec<Arch>,
    /// `--kernel-args NODE=ARGS`: added to that node's kernel command line.
    pub kernel_args: Vec<NodeValue>,
    /// `--without-module NODE=MODULE`: a module that node's kernel does not have.
    pub without_modules: Vec<NodeValue>,
}

/// What makes a node a VM, recorded with its spec in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmNode {
    pub arch: Arch,
    /// The Debian release of its image.
    pub release: String,
    /// Words added to its kernel command line.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Modules removed from its disk and refused by its kernel.
    #[serde(default)]
    pub without_modules: Vec<String>,
    /// Its network card's address, on the lab's bridge.
    pub mac: String,
}

impl VmNode {
    /// The image a node of this kind boots: Docker preinstalled, or none.
    pub fn variant(kind: Kind) -> Variant {
        match kind {
            Kind::Docker => Variant::Docker,
            _ => Variant::Bare,
        }
    }
}

/// The `i`-th entry of a per-node list, the last one for the nodes after it.
fn nth<T: Clone>(list: &[T], i: usize) -> Option<T> {
    list.get(i).or(list.last()).cloned()
}

/// Makes the planned nodes VMs: their architecture, release, kernel arguments, modules and
/// card; the host side of their link is a tap (`rpl<tag>t<n>`) instead of a veth.
pub fn apply(layout: &mut Layout, opts: &VmOptions) -> Result<()> {
    let n = layout.nodes.len();
    if layout.nodes.iter().any(|s| s.kind == Kind::SshdOnly) {
        return Err(LabError::Usage(
            "--vm and --sshd-only do not go together: an sshd-only node is a namespace of this machine (hundreds fit; VMs do not)".into(),
        ));
    }
    if n > MAX_VMS {
        return Err(LabError::Usage(format!(
            "{n} VM nodes asked, at most {MAX_VMS} fit on one machine"
        )));
    }
    if opts.archs.len() > n {
        return Err(LabError::Usage(format!(
            "--arch names {} nodes, the lab has {n}",
            opts.archs.len()
        )));
    }
    let names: Vec<String> = layout.nodes.iter().map(|s| s.name.clone()).collect();
    let kernel_args = per_node(&names, &opts.kernel_args, "--kernel-args", kernel_words)?;
    let modules = per_node(
        &names,
        &opts.without_modules,
        "--without-module",
        module_names,
    )?;
    let tag = layout.tag.clone();
    for (i, spec) in layout.nodes.iter_mut().enumerate() {
        spec.veth = format!("rpl{tag}t{}", i + 1);
        spec.vm = Some(VmNode {
            arch: nth(&opts.archs, i).unwrap_or(Arch::Amd64),
            // `--distro`, as for namespace nodes: the release of the node's image.
            release: spec.distro.as_str().to_string(),
            kernel_args: kernel_args[i].clone(),
            without_modules: modules[i].clone(),
            mac: mac(&tag, i),
        });
    }
    Ok(())
}

/// Whether a lab planned with `opts` would have the machines the recorded one has (the
/// same nodes as VMs or not, of the same architectures, releases and kernel arguments).
pub fn same_machines(
    dir: &Path,
    recorded: &Layout,
    shape: Shape,
    distros: &Distros,
    opts: Option<&VmOptions>,
) -> Result<bool> {
    let mut l = plan(dir, shape, recorded.subnet(), distros)?;
    if let Some(o) = opts {
        apply(&mut l, o)?;
    }
    Ok(l.nodes
        .iter()
        .map(|n| &n.vm)
        .eq(recorded.nodes.iter().map(|n| &n.vm)))
}

/// The images and accelerators of a lab's VMs, made ready before any node starts.
pub struct Prepared {
    images: Vec<((String, Arch, Variant), image::Images)>,
    accel: Vec<(Arch, qemu::Accel)>,
}

fn wanted(spec: &NodeSpec) -> Option<(String, Arch, Variant)> {
    let vm = spec.vm.as_ref()?;
    Some((vm.release.clone(), vm.arch, VmNode::variant(spec.kind)))
}

/// Builds (once, in the cache) the images the nodes need and picks each architecture's
/// accelerator.
pub fn prepare(
    cache: &Path,
    lab_dir: &Path,
    nodes: &[NodeSpec],
    say: &dyn Fn(&str),
) -> Result<Prepared> {
    let mut keys: Vec<(String, Arch, Variant)> = nodes.iter().filter_map(wanted).collect();
    keys.sort();
    keys.dedup();
    let built = image::ensure_images(cache, &keys, say)?;
    let images: Vec<_> = keys.into_iter().zip(built).collect();
    let mut accel = Vec::new();
    for ((_, arch, _), img) in &images {
        if accel.iter().all(|(a, _)| a != arch) {
            accel.push((
                *arch,
                qemu::accel(*arch, &img.kernel, &img.initrd, lab_dir, say)?,
            ));
        }
    }
    Ok(Prepared { images, accel })
}

/// The lab's container image archive of an architecture (busybox-static of that arch).
pub fn archive_of(arch: Arch) -> String {
    format!("images/busybox-{arch}.tar")
}

impl Prepared {
    /// Starts one node's VM; its qemu process.
    pub fn start(&self, state: &Shared, dir: &Path, spec: &NodeSpec) -> Result<ProcId> {
        let key = wanted(spec).expect("a VM node");
        let img = &self
            .images
            .iter()
            .find(|(k, _)| *k == key)
            .expect("prepared")
            .1;
        let accel = self
            .accel
            .iter()
            .find(|(a, _)| *a == key.1)
            .expect("prepared")
            .1;
        node::start(state, dir, spec, img, accel)
    }

    fn archs(&self) -> Vec<Arch> {
        self.accel.iter().map(|(a, _)| *a).collect()
    }

    /// The image archive of every architecture of the lab, for its playbook.
    pub fn archives(&self) -> Vec<(Arch, String)> {
        let mut v: Vec<_> = self
            .archs()
            .into_iter()
            .map(|a| (a, archive_of(a)))
            .collect();
        v.sort();
        v
    }

    /// Writes the container image archive of each architecture; the names it made.
    pub fn write_images(&self, dir: &Path) -> Result<Vec<String>> {
        let mut made = Vec::new();
        for (arch, rel) in self.archives() {
            let busybox = &self
                .images
                .iter()
                .find(|((_, a, _), _)| *a == arch)
                .expect("prepared")
                .1
                .busybox;
            if lab_images::ensure_archive(dir, busybox, &rel)? {
                made.push(rel);
            }
        }
        Ok(made)
    }
}

/// A locally administered unicast address, distinct per node of a lab (each lab has a
/// bridge of its own, so labs may repeat them).
fn mac(tag: &str, i: usize) -> String {
    format!(
        "52:54:{}:{}:{}:{:02x}",
        &tag[0..2],
        &tag[2..4],
        &tag[4..6],
        (i + 1) % 256
    )
}

/// The values of a `NODE=VALUE` flag per node (in node order), each checked by `parse`;
/// a node name of no node of the lab is a usage error.
fn per_node(
    names: &[String],
    given: &[NodeValue],
    flag: &str,
    parse: fn(&str) -> std::result::Result<Vec<String>, String>,
) -> Result<Vec<Vec<String>>> {
    let mut out = vec![Vec::new(); names.len()];
    for v in given {
        let i = names.iter().position(|n| *n == v.node).ok_or_else(|| {
            LabError::Usage(format!(
                "{flag} {}={}: no node {} in this lab ({})",
                v.node,
                v.value,
                v.node,
                names.join(", ")
            ))
        })?;
        let words = parse(&v.value)
            .map_err(|e| LabError::Usage(format!("{flag} {}={}: {e}", v.node, v.value)))?;
        out[i].extend(words);
    }
    Ok(out)
}

/// Kernel command line words: printable, no quotes, none of the lab's own.
fn kernel_words(s: &str) -> std::result::Result<Vec<String>, String> {
    if s.len() > 512 {
        return Err("longer than 512 characters".into());
    }
    let words: Vec<String> = s.split_whitespace().map(String::from).collect();
    if words.is_empty() {
        return Err("no kernel argument".into());
    }
    for w in &words {
        if !w
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'\\".contains(&b))
        {
            return Err(format!("{w:?}: only printable characters without quotes"));
        }
        if w.starts_with("rpiprov.") || w.starts_with("root=") || w.starts_with("console=") {
            return Err(format!("{w}: the lab sets this itself"));
        }
    }
    Ok(words)
}

/// Module names (`vxlan`, `ip_vs`), comma separated.
fn module_names(s: &str) -> std::result::Result<Vec<String>, String> {
    let names: Vec<String> = s.split(',').map(str::trim).map(String::from).collect();
    for m in &names {
        let plain = !m.is_empty()
            && m.len() <= 64
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain {
            return Err(format!("{m:?} is not a module name"));
        }
    }
    Ok(names)
}

/// The node's kernel command line: its console, its disk, `eth0` on every architecture (as
/// on a Pi), no AppArmor (a Pi's kernel runs none, and Docker would then need its parser),
/// the modules it must not load, then its own arguments.
pub fn cmdline(vm: &VmNode) -> String {
    let console = match vm.arch {
        Arch::Amd64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    };
    let mut words = vec![
        format!("console={console}"),
        "root=/dev/vda".to_string(),
        "rw".to_string(),
        "net.ifnames=0".to_string(),
        "apparmor=0".to_string(),
    ];
    if !vm.without_modules.is_empty() {
        words.push(format!("module_blacklist={}", vm.without_modules.join(",")));
    }
    words.extend(vm.kernel_args.iter().cloned());
    words.join(" ")
}

/// Checks that the VMs about to start fit in this machine's memory.
pub fn check_memory(starting: usize) -> Result<()> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_mb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb / 1024);
    match available_mb {
        Some(mb) if mb < MEMORY_PER_VM_MB * starting as u64 => Err(LabError::Usage(format!(
            "{starting} VMs need about {} MB, this machine has {mb} MB available; start fewer",
            MEMORY_PER_VM_MB * starting as u64
        ))),
        _ => Ok(()),
    }
}

/// The host tools `lab up --vm` needs for these architectures.
pub fn tools(archs: &[Arch]) -> Vec<&'static str> {
    let mut t = vec![
        "ssh-keygen",
        "tar",
        "qemu-img",
        "debootstrap",
        "mkfs.ext4",
        "cpio",
        "gzip",
        "dpkg-deb",
        "chroot",
        "ssh",
    ];
    for a in archs {
        t.push(qemu::system_binary(*a));
        if Some(*a) != Arch::host() {
            t.push(binfmt::user_binary(*a));
        }
    }
    t.sort_unstable();
    t.dedup();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Shape, plan};

    fn layout(docker: usize, bare: usize) -> Layout {
        plan(
            std::path::Path::new("/x/.lab"),
            Shape {
                docker,
                bare,
                sshd_only: 0,
            },
            "198.18.0.0/24".parse().unwrap(),
            &Distros::default(),
        )
        .unwrap()
    }

    fn opts(archs: &[&str]) -> VmOptions {
        VmOptions {
            archs: archs.iter().map(|a| a.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_take_the_architectures_in_order_and_the_last_for_the_rest() {
        let mut l = layout(1, 2);
        apply(&mut l, &opts(&["amd64", "arm64"])).unwrap();
        let got: Vec<_> = l
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.vm.as_ref().unwrap().arch.as_str()))
            .collect();
        assert_eq!(got, [("pi1", "amd64"), ("pi2", "arm64"), ("pi3", "arm64")]);
        let tag = &l.tag;
        assert_eq!(l.nodes[1].veth, format!("rpl{tag}t2"));
        assert_eq!(
            l.nodes[2].vm.as_ref().unwrap().mac,
            format!("52:54:{}:{}:{}:03", &tag[0..2], &tag[2..4], &tag[4..6])
        );
        assert_eq!(l.nodes[0].vm.as_ref().unwrap().release, "bookworm");
        // No list: every node amd64.
        let mut l = layout(2, 0);
        apply(&mut l, &VmOptions::default()).unwrap();
        assert!(
            l.nodes
                .iter()
                .all(|n| n.vm.as_ref().unwrap().arch == Arch::Amd64)
        );
    }

    #[test]
    fn per_node_flags_name_nodes_of_the_lab_and_are_checked() {
        let mut l = layout(1, 1);
        let o = VmOptions {
            kernel_args: vec!["pi2=cgroup_disable=memory".parse().unwrap()],
            without_modules: vec!["pi1=vxlan".parse().unwrap()],
            ..Default::default()
        };
        apply(&mut l, &o).unwrap();
        let pi1 = l.nodes[0].vm.as_ref().unwrap();
        let pi2 = l.nodes[1].vm.as_ref().unwrap();
        assert_eq!(
            cmdline(pi1),
            "console=ttyS0 root=/dev/vda rw net.ifnames=0 apparmor=0 module_blacklist=vxlan"
        );
        assert_eq!(
            cmdline(pi2),
            "console=ttyS0 root=/dev/vda rw net.ifnames=0 apparmor=0 cgroup_disable=memory"
        );
        for (flag, bad, says) in [
            ("k", "pi3=quiet", "no node pi3 in this lab (pi1, pi2)"),
            ("k", "pi1=a'b", "only printable characters without quotes"),
            ("k", "pi1=console=tty0", "the lab sets this itself"),
            ("m", "pi1=vx lan", "is not a module name"),
        ] {
            let mut o = VmOptions::default();
            let v = bad.parse().unwrap();
            if flag == "k" {
                o.kernel_args.push(v);
            } else {
                o.without_modules.push(v);
            }
            let e = apply(&mut layout(1, 1), &o).unwrap_err();
            assert!(matches!(e, LabError::Usage(_)), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = apply(&mut layout(1, 0), &opts(&["amd64", "arm64"])).unwrap_err();
        assert_eq!(e.to_string(), "lab: --arch names 2 nodes, the lab has 1");
    }

    #[test]
    fn arm64_boots_on_its_own_console_and_values_parse() {
        let vm = VmNode {
            arch: Arch::Arm64,
            release: "bookworm".into(),
            kernel_args: vec![],
            without_modules: vec![],
            mac: "52:54:00:00:00:01".into(),
        };
        assert!(cmdline(&vm).starts_with("console=ttyAMA0 "));
        assert_eq!("arm64".parse::<Arch>(), Ok(Arch::Arm64));
        assert_eq!(Arch::Arm64.machine(), "aarch64");
        assert!("armhf".parse::<Arch>().is_err());
        assert!("=x".parse::<NodeValue>().is_err());
        assert!("pi1".parse::<NodeValue>().is_err());
        assert_eq!(
            "pi1=a=b".parse::<NodeValue>().unwrap(),
            NodeValue {
                node: "pi1".into(),
                value: "a=b".into()
            }
        );
    }
}
