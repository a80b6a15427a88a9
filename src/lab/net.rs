//! The lab network: one bridge in the root namespace, one network namespace and veth pair
//! per node, NAT to the outside (for apt in bare nodes), and FORWARD rules that let lab
//! traffic through even when a dockerd in the root namespace set the FORWARD policy to DROP.

use std::fs;
use std::path::Path;

use super::error::{LabError, Result};
use super::layout::{BENCHMARK_BLOCK, Layout, NodeSpec, Subnet};
use super::state::{Rule, Shared};
use super::sys::{self, cmd, run, succeeds};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// What the labs of this machine share, in root's /run: gone at reboot, like the bridges
/// and namespaces it is about.
const MACHINE_DIR: &str = "/run/rpiprov-lab";
/// `ip_forward` as it was before the first lab of the machine set it; the last lab to go
/// down restores it (a lab going down while another runs must not cut that one's NAT).
const FORWARD_BEFORE: &str = "ip_forward.before";

fn link_exists(name: &str) -> bool {
    succeeds(cmd(["ip", "link", "show", "dev", name]))
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Serialises, across every lab of the machine, the choice of a subnet until the bridge
/// holds it (two `lab up` at once would pick the same free /24), and the shared
/// `ip_forward` bookkeeping. Released when the file is closed.
pub fn machine_lock() -> Result<fs::File> {
    let dir = Path::new(MACHINE_DIR);
    sys::private_dir(dir)?;
    sys::lock_file(&dir.join("lock"), true)?.ok_or_else(|| unreachable_lock(dir))
}

fn unreachable_lock(dir: &Path) -> LabError {
    LabError::Other(format!("{}: cannot take the machine lock", dir.display()))
}

/// The IPv4 subnets of this machine's interfaces and routes, with the device that holds
/// each, except `own` (the lab's bridge, when it exists already).
pub fn taken_subnets(own: &str) -> Result<Vec<(Subnet, String)>> {
    let mut taken = Vec::new();
    for line in run(cmd(["ip", "-o", "-4", "addr", "show"]))?.lines() {
        // `3: eth0    inet 10.0.0.5/24 brd ...`
        let words: Vec<&str> = line.split_whitespace().collect();
        let dev = words.get(1).copied().unwrap_or("");
        let net = words
            .iter()
            .position(|w| *w == "inet")
            .and_then(|i| words.get(i + 1))
            .and_then(|cidr| {
                let (addr, prefix) = cidr.split_once('/')?;
                Some(Subnet::new(addr.parse().ok()?, prefix.parse().ok()?))
            });
        if let Some(net) = net.filter(|_| dev != own) {
            taken.push((net, dev.to_string()));
        }
    }
    for line in run(cmd(["ip", "-4", "route", "show"]))?.lines() {
        // `198.18.3.0/24 dev rpl...br proto kernel scope link src 198.18.3.1`
        let words: Vec<&str> = line.split_whitespace().collect();
        let dev = words
            .iter()
            .position(|w| *w == "dev")
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("");
        let net = words.first().and_then(|w| match w.split_once('/') {
            Some(_) => w.parse::<Subnet>().ok(),
            None => w.parse().ok().map(|a| Subnet::new(a, 32)),
        });
        if let Some(net) = net.filter(|_| dev != own) {
            taken.push((net, dev.to_string()));
        }
    }
    Ok(taken)
}

/// Creates the bridge if missing; returns whether anything was created. The caller holds
/// [`machine_lock`]: the subnet is checked free and taken in one step.
pub fn ensure_bridge(state: &Shared, layout: &Layout) -> Result<bool> {
    let br = &layout.bridge;
    if link_exists(br) {
        return Ok(false);
    }
    let subnet = layout.subnet();
    if let Some((t, dev)) = taken_subnets(br)?
        .into_iter()
        .find(|(t, _)| t.overlaps(&subnet))
    {
        return Err(LabError::Usage(format!(
            "this lab's subnet {subnet} overlaps {t} on {dev} (another lab?); run `rpiprov lab down` for one of them"
        )));
    }
    state.record(|s| s.bridge = true)?;
    run(cmd(["ip", "link", "add", br, "type", "bridge"]))?;
    let addr = format!("{}/{}", layout.gateway(), layout.prefix);
    run(cmd(["ip", "addr", "add", &addr, "dev", br]))?;
    run(cmd(["ip", "link", "set", br, "up"]))?;
    Ok(true)
}

pub fn rules(layout: &Layout) -> Vec<Rule> {
    let br = layout.bridge.clone();
    let subnet = layout.subnet().to_string();
    let block = BENCHMARK_BLOCK.to_string();
    let rule = |table: &str, chain: &str, spec: &[&str]| Rule {
        table: table.into(),
        chain: chain.into(),
        spec: spec.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        // Node to node, across the bridge (br_netfilter may send bridged frames to FORWARD).
        rule("filter", "FORWARD", &["-i", &br, "-o", &br, "-j", "ACCEPT"]),
        // Nothing leaves the lab for the rest of the benchmark block: another lab's nodes,
        // or Docker's ranges, which exist only inside nodes (a packet for them out here is
        // a leak). Disjoint from the other rules, so their order does not matter.
        rule(
            "filter",
            "FORWARD",
            &["-i", &br, "!", "-o", &br, "-d", &block, "-j", "DROP"],
        ),
        // Nodes to the outside (apt), and the replies back.
        rule(
            "filter",
            "FORWARD",
            &["-i", &br, "-s", &subnet, "!", "-d", &block, "-j", "ACCEPT"],
        ),
        rule(
            "filter",
            "FORWARD",
            &[
                "-o",
                &br,
                "-d",
                &subnet,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ),
        rule(
            "nat",
            "POSTROUTING",
            &["-s", &subnet, "!", "-o", &br, "-j", "MASQUERADE"],
        ),
    ]
}

fn iptables(rule: &Rule, op: &str) -> std::process::Command {
    let mut c = cmd(["iptables", "-w", "-t", &rule.table, op, &rule.chain]);
    c.args(&rule.spec);
    c
}

/// Adds each rule that is not there yet (recorded first). FORWARD rules go first in the
/// chain, ahead of any DROP that a dockerd of the root namespace may have added.
pub fn ensure_rules(state: &Shared, layout: &Layout) -> Result<usize> {
    let mut added = 0;
    for rule in rules(layout) {
        if succeeds(iptables(&rule, "-C")) {
            continue;
        }
        state.record(|s| {
            if !s.rules.contains(&rule) {
                s.rules.push(rule.clone());
            }
        })?;
        let op = if rule.table == "filter" { "-I" } else { "-A" };
        run(iptables(&rule, op))?;
        added += 1;
    }
    Ok(added)
}

pub fn remove_rule(rule: &Rule) {
    // A rule added twice (by hand or by two crashed runs) is removed as often as it is there.
    for _ in 0..8 {
        if !succeeds(iptables(rule, "-C")) {
            break;
        }
        let _ = run(iptables(rule, "-D"));
    }
}

/// Sets `ip_forward` to 1 (NAT for apt in bare nodes). The caller holds [`machine_lock`].
pub fn ensure_ip_forward(state: &Shared) -> Result<bool> {
    let now = fs::read_to_string(IP_FORWARD).map_err(|e| LabError::io(IP_FORWARD, e))?;
    if now.trim() == "1" {
        return Ok(false);
    }
    let before = now.trim().to_string();
    state.record(|s| {
        s.ip_forward_before.get_or_insert_with(|| before.clone());
    })?;
    sys::write_if_absent(
        &Path::new(MACHINE_DIR).join(FORWARD_BEFORE),
        before.as_bytes(),
    )?;
    fs::write(IP_FORWARD, "1\n").map_err(|e| LabError::io(IP_FORWARD, e))?;
    Ok(true)
}

/// Another lab's bridge still exists on this machine.
fn other_lab_exists(own_bridge: &str) -> bool {
    let Ok(links) = run(cmd(["ip", "-o", "link", "show", "type", "bridge"])) else {
        return true;
    };
    links.lines().any(|l| {
        let name = l
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_end_matches(':');
        name != own_bridge
            && name.len() == 11
            && name.starts_with("rpl")
            && name.ends_with("br")
            && name[3..9].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Puts `ip_forward` back as it was before the first lab, when this lab (its bridge gone)
/// was the last one. The caller holds [`machine_lock`].
pub fn release_ip_forward(own_bridge: &str, recorded: Option<&str>) {
    let file = Path::new(MACHINE_DIR).join(FORWARD_BEFORE);
    let machine = fs::read_to_string(&file).ok();
    if other_lab_exists(own_bridge) {
        // Still needed; the value this lab recorded passes to whichever lab goes last.
        if let (None, Some(before)) = (&machine, recorded) {
            let _ = sys::write_if_absent(&file, before.as_bytes());
        }
        return;
    }
    if let Some(before) = machine.as_deref().or(recorded) {
        let _ = fs::write(IP_FORWARD, format!("{}\n", before.trim()));
    }
    let _ = fs::remove_file(&file);
}

/// The node's namespace and its veth pair, addressed and routed through the bridge.
pub fn create_node_net(state: &Shared, layout: &Layout, node: &NodeSpec) -> Result<()> {
    let ns = &node.netns;
    state.record(|s| s.nodes.entry(node.name.clone()).or_default().netns = true)?;
    run(cmd(["ip", "netns", "add", ns]))?;
    state.record(|s| s.nodes.entry(node.name.clone()).or_default().veth = true)?;
    run(cmd([
        "ip", "link", "add", &node.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ]))?;
    run(cmd([
        "ip",
        "link",
        "set",
        &node.veth,
        "master",
        &layout.bridge,
        "up",
    ]))?;
    let addr = format!("{}/{}", node.address, layout.prefix);
    run(cmd(["ip", "-n", ns, "addr", "add", &addr, "dev", "eth0"]))?;
    run(cmd(["ip", "-n", ns, "link", "set", "eth0", "up"]))?;
    run(cmd(["ip", "-n", ns, "link", "set", "lo", "up"]))?;
    run(cmd([
        "ip",
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &layout.gateway().to_string(),
    ]))?;
    Ok(())
}

/// Removes what [`create_node_net`] made; missing pieces are fine.
pub fn remove_node_net(node: &NodeSpec) {
    if netns_exists(&node.netns) {
        let _ = run(cmd(["ip", "netns", "del", &node.netns]));
    }
    // Deleting the namespace deletes its end of the pair, and with it ours; this only acts
    // when the namespace was never made or is already gone.
    if link_exists(&node.veth) {
        let _ = run(cmd(["ip", "link", "del", &node.veth]));
    }
}

/// Cuts (`up` false) or restores a node's link: the host side of its veth pair.
pub fn set_link(veth: &str, up: bool) -> Result<()> {
    run(cmd([
        "ip",
        "link",
        "set",
        "dev",
        veth,
        if up { "up" } else { "down" },
    ]))
    .map(drop)
}

pub fn remove_bridge(layout: &Layout) {
    if link_exists(&layout.bridge) {
        let _ = run(cmd(["ip", "link", "del", &layout.bridge]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Shape, plan};

    #[test]
    fn nat_and_forward_rules_name_the_lab_bridge_and_subnet() {
        let l = plan(
            std::path::Path::new("/x"),
            Shape {
                docker: 1,
                bare: 0,
                sshd_only: 0,
            },
            "198.18.0.0/24".parse().unwrap(),
            &crate::lab::Distros::default(),
        )
        .unwrap();
        let lines: Vec<String> = rules(&l)
            .iter()
            .map(|r| format!("-t {} {} {}", r.table, r.chain, r.spec.join(" ")))
            .collect();
        let br = &l.bridge;
        assert_eq!(
            lines,
            [
                format!("-t filter FORWARD -i {br} -o {br} -j ACCEPT"),
                format!("-t filter FORWARD -i {br} ! -o {br} -d 198.18.0.0/15 -j DROP"),
                format!("-t filter FORWARD -i {br} -s 198.18.0.0/24 ! -d 198.18.0.0/15 -j ACCEPT"),
                format!(
                    "-t filter FORWARD -o {br} -d 198.18.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                ),
                format!("-t nat POSTROUTING -s 198.18.0.0/24 ! -o {br} -j MASQUERADE"),
            ]
        );
    }
}
