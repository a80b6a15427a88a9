//! The lab network: one bridge in the root namespace, one network namespace and veth pair
//! per node, NAT to the outside (for apt in bare nodes), and FORWARD rules that let lab
//! traffic through even when a dockerd in the root namespace set the FORWARD policy to DROP.

use std::fs;

use super::error::{LabError, Result};
use super::layout::{BRIDGE_ADDR, Layout, NodeSpec};
use super::state::{Rule, Shared};
use super::sys::{cmd, run, succeeds};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn link_exists(name: &str) -> bool {
    succeeds(cmd(["ip", "link", "show", "dev", name]))
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Refuses to start when the bridge address is already in use by another interface (most
/// likely another lab): the two would answer for the same node addresses.
fn check_address_free(bridge: &str) -> Result<()> {
    let out = run(cmd(["ip", "-o", "-4", "addr", "show"]))?;
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let dev = words.nth(1).unwrap_or("");
        if dev != bridge && line.contains(&format!(" {BRIDGE_ADDR}/")) {
            return Err(LabError::Usage(format!(
                "{BRIDGE_ADDR} is already on interface {dev} (another lab?); run `rpiprov lab down` for it first"
            )));
        }
    }
    Ok(())
}

/// Creates the bridge if missing; returns whether anything was created.
pub fn ensure_bridge(state: &Shared, layout: &Layout) -> Result<bool> {
    let br = &layout.bridge;
    if link_exists(br) {
        return Ok(false);
    }
    check_address_free(br)?;
    state.record(|s| s.bridge = true)?;
    run(cmd(["ip", "link", "add", br, "type", "bridge"]))?;
    let addr = format!("{BRIDGE_ADDR}/{}", layout.prefix);
    run(cmd(["ip", "addr", "add", &addr, "dev", br]))?;
    run(cmd(["ip", "link", "set", br, "up"]))?;
    Ok(true)
}

pub fn rules(layout: &Layout) -> Vec<Rule> {
    let br = layout.bridge.clone();
    let subnet = layout.subnet();
    let rule = |table: &str, chain: &str, spec: &[&str]| Rule {
        table: table.into(),
        chain: chain.into(),
        spec: spec.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        // Node to node, across the bridge (br_netfilter may send bridged frames to FORWARD).
        rule("filter", "FORWARD", &["-i", &br, "-o", &br, "-j", "ACCEPT"]),
        // Nodes to the outside (apt), and the replies back.
        rule(
            "filter",
            "FORWARD",
            &["-i", &br, "-s", &subnet, "-j", "ACCEPT"],
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

pub fn ensure_ip_forward(state: &Shared) -> Result<bool> {
    let now = fs::read_to_string(IP_FORWARD).map_err(|e| LabError::io(IP_FORWARD, e))?;
    if now.trim() == "1" {
        return Ok(false);
    }
    state.record(|s| {
        s.ip_forward_before
            .get_or_insert_with(|| now.trim().to_string());
    })?;
    fs::write(IP_FORWARD, "1\n").map_err(|e| LabError::io(IP_FORWARD, e))?;
    Ok(true)
}

pub fn restore_ip_forward(before: &str) {
    let _ = fs::write(IP_FORWARD, format!("{before}\n"));
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
        &BRIDGE_ADDR.to_string(),
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
                format!("-t filter FORWARD -i {br} -s 198.18.0.0/24 -j ACCEPT"),
                format!(
                    "-t filter FORWARD -o {br} -d 198.18.0.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                ),
                format!("-t nat POSTROUTING -s 198.18.0.0/24 ! -o {br} -j MASQUERADE"),
            ]
        );
    }
}
