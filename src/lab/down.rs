//! `rpiprov lab down`: removes everything `state.json` names, in reverse order of creation,
//! tolerating what is already gone (a crashed `up`, a second `down`).

use std::path::Path;

use super::cgroup;
use super::error::{LabError, Result};
use super::net;
use super::procs::{self, Targets};
use super::registry;
use super::rootfs;
use super::state::State;
use super::sys;

/// Everything `lab up` may write into DIR; `state.json` goes last.
const LAB_ENTRIES: &[&str] = &[
    "nodes",
    "cache",
    "images",
    "stacks",
    "playbook.toml",
    "inventory.toml",
    "known_hosts",
    "id_ed25519",
    "id_ed25519.pub",
    "sudo-password",
    "registry",
    "registry.d",
    ".lock",
    "state.json",
];

pub fn targets(state: &State) -> Targets {
    let mut t = Targets::default();
    for spec in &state.layout.nodes {
        let Some(ns) = state.nodes.get(&spec.name) else {
            continue;
        };
        if let Some(ino) = sys::ns_inode(&Path::new("/run/netns").join(&spec.netns)) {
            t.net_ns.insert(ino);
        }
        if let Some(ino) = ns.mnt_ns {
            t.mnt_ns.insert(ino);
        }
        if let Some(h) = ns.holder {
            t.holders.push(h);
        }
    }
    t
}

pub fn down(dir: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(_) => {
            say(&format!("no lab in {} (nothing to do)", dir.display()));
            return Ok(());
        }
    };
    let Some(state) = State::load(&dir)? else {
        say(&format!(
            "no lab in {} (no state.json; nothing to do)",
            dir.display()
        ));
        return Ok(());
    };
    if let Some(r) = &state.registry {
        registry::stop(r);
        say(&format!("stopped the registry {}", r.addr));
    }
    let n = procs::stop(targets(&state));
    say(&format!("stopped {n} processes"));
    if state.cpu.is_some() {
        cgroup::remove(&state.layout.tag);
    }
    for spec in state.layout.nodes.iter().rev() {
        if state
            .nodes
            .get(&spec.name)
            .is_some_and(|n| n.netns || n.veth)
        {
            net::remove_node_net(spec);
        }
    }
    {
        // Whether this lab is the last one (and restores ip_forward) must not change under
        // a `lab up` of another directory.
        let _machine = net::machine_lock()?;
        if state.bridge {
            net::remove_bridge(&state.layout);
        }
        for rule in state.rules.iter().rev() {
            net::remove_rule(rule);
        }
        net::release_ip_forward(&state.layout.bridge, state.ip_forward_before.as_deref());
    }
    say(&format!(
        "removed {} namespaces, {} iptables rules{}",
        state.nodes.values().filter(|n| n.netns).count(),
        state.rules.len(),
        if state.bridge { ", the bridge" } else { "" }
    ));
    // Node mounts live in the nodes' own mount namespaces and went with them; this only
    // finds what a crash left in the host's (debootstrap's /proc in the cache, say).
    rootfs::unmount_under(&dir);
    let still = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|p| p.starts_with(&format!("{}/", dir.display())));
    if still {
        // Deleting through a mount point would delete the mounted file system's files.
        return Err(LabError::Other(format!(
            "mounts remain under {}; not deleting it",
            dir.display()
        )));
    }
    // Only what the lab wrote; a file the user put there keeps the directory.
    for entry in LAB_ENTRIES {
        let path = dir.join(entry);
        let result = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => continue,
        };
        result.map_err(|e| LabError::io(&path, e))?;
    }
    // Leftovers of writes a crash interrupted (see `sys::write_file`, `sys::temp_dir`).
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(sys::TMP_SUFFIX) {
            let _ = match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(e.path()),
                _ => std::fs::remove_file(e.path()),
            };
        }
    }
    if let Err(e) = std::fs::remove_dir(&dir) {
        say(&format!(
            "kept {}: {e} (files the lab did not make)",
            dir.display()
        ));
    }
    let kept = state
        .cache
        .as_ref()
        .filter(|c| !c.starts_with(&dir))
        .map(|c| format!(" (kept the rootfs cache {})", c.display()))
        .unwrap_or_default();
    say(&format!("removed {}{kept}", dir.display()));
    Ok(())
}
