//! Finding and stopping a lab's processes. A process belongs to the lab when it runs in one
//! of the lab's network or mount namespaces, is a recorded holder, or descends from such a
//! process (containers run in namespaces of their own but are children of the node's
//! containerd-shim). Nothing is ever matched by name alone.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::sys::{self, ProcId, ProcInfo};

#[derive(Default)]
pub struct Targets {
    pub net_ns: HashSet<u64>,
    pub mnt_ns: HashSet<u64>,
    pub holders: Vec<ProcId>,
    /// Processes spared although they are in the namespaces (a node's holder on reboot).
    pub keep: Vec<ProcId>,
}

impl Targets {
    /// Never aim at the namespaces this command itself runs in (those are the host's): a
    /// state file recorded too early would otherwise name every process of the machine.
    fn sanitize(&mut self) {
        for (kind, set) in [("net", &mut self.net_ns), ("mnt", &mut self.mnt_ns)] {
            if let Some(own) = sys::ns_inode(Path::new(&format!("/proc/self/ns/{kind}"))) {
                set.remove(&own);
            }
            set.remove(&0);
        }
    }
}

fn members(t: &Targets) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let all = sys::processes();
    let mut set: HashSet<i32> = all
        .iter()
        .filter(|p| {
            t.net_ns.contains(&p.net_ns)
                || t.mnt_ns.contains(&p.mnt_ns)
                || t.holders.contains(&p.id)
        })
        .map(|p| p.id.pid)
        .collect();
    loop {
        let before = set.len();
        for p in &all {
            if set.contains(&p.ppid) {
                set.insert(p.id.pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.remove(&me);
    for k in &t.keep {
        set.remove(&k.pid);
    }
    all.into_iter()
        .filter(|p| set.contains(&p.id.pid))
        .collect()
}

fn wait_gone(ids: &[ProcId], timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ids.iter().all(|p| !sys::alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ids.iter().all(|p| !sys::alive(*p))
}

/// Stops every process of the targets: dockerd first and gracefully (it stops its
/// containers and leaves the swarm's state consistent), then the rest with SIGTERM, then
/// SIGKILL. Returns how many processes were signalled.
pub fn stop(mut t: Targets) -> usize {
    t.sanitize();
    let dockerds: Vec<ProcId> = members(&t)
        .into_iter()
        .filter(|p| p.comm == "dockerd")
        .map(|p| p.id)
        .collect();
    for p in &dockerds {
        sys::signal(*p, libc::SIGTERM);
    }
    wait_gone(&dockerds, Duration::from_secs(20));
    let rest: Vec<ProcId> = members(&t).into_iter().map(|p| p.id).collect();
    for p in &rest {
        sys::signal(*p, libc::SIGTERM);
    }
    if !wait_gone(&rest, Duration::from_secs(3)) {
        for p in members(&t) {
            sys::signal(p.id, libc::SIGKILL);
        }
        wait_gone(&rest, Duration::from_secs(3));
    }
    dockerds.len() + rest.len()
}

/// Processes still running in the targets (for `down`'s final check and the tests).
pub fn remaining(mut t: Targets) -> Vec<ProcId> {
    t.sanitize();
    members(&t).into_iter().map(|p| p.id).collect()
}
