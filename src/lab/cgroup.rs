//! A Pi's speed: `lab up --cpu FRACTION` caps each node with the cgroup cpu controller, as
//! one cgroup per node (`rpiprov-lab/<tag>/<node>`) holding everything of the node: its
//! holder, from which sshd, the sessions and dockerd descend, and the containers, which
//! dockerd's `cgroup-parent` puts under the same path. cgroup v1 (`cpu.cfs_quota_us`, this
//! project's machines) and v2 (`cpu.max`) are both handled.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{LabError, Result};

/// The CFS period the quota is a share of: 100 ms, the kernel's default.
pub const PERIOD_US: u64 = 100_000;
const ROOT: &str = "/sys/fs/cgroup";
/// Top of every lab cgroup, in each hierarchy.
const TOP: &str = "rpiprov-lab";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: the mount point of the `cpu` controller.
    V1(PathBuf),
    /// cgroup v2: the unified mount point.
    V2(PathBuf),
}

/// Finds the hierarchy that holds the cpu controller, from `/proc/self/mounts`.
pub fn detect() -> Result<Hierarchy> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    detect_in(&mounts).ok_or_else(|| {
        LabError::Missing("no cgroup cpu controller is mounted (needed by --cpu)".into())
    })
}

fn detect_in(mounts: &str) -> Option<Hierarchy> {
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(kind), Some(opts)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        if *kind == "cgroup" && opts.split(',').any(|o| o == "cpu") {
            return Some(Hierarchy::V1(PathBuf::from(point)));
        }
        if *kind == "cgroup2" && *point == ROOT {
            v2 = Some(Hierarchy::V2(PathBuf::from(point)));
        }
    }
    v2.filter(|h| match h {
        Hierarchy::V2(p) => fs::read_to_string(p.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu")),
        Hierarchy::V1(_) => true,
    })
}

/// The path of a node's cgroup relative to a hierarchy's root; also dockerd's
/// `cgroup-parent` (absolute in every hierarchy), so that containers land under it.
pub fn node_path(tag: &str, node: &str) -> String {
    format!("/{TOP}/{tag}/{node}")
}

fn lab_path(tag: &str) -> String {
    format!("/{TOP}/{tag}")
}

impl Hierarchy {
    fn root(&self) -> &Path {
        match self {
            Hierarchy::V1(p) | Hierarchy::V2(p) => p,
        }
    }

    pub fn dir(&self, tag: &str, node: &str) -> PathBuf {
        self.root()
            .join(node_path(tag, node).trim_start_matches('/'))
    }

    /// The file a process writes `0` to, to move itself into the node's cgroup.
    pub fn procs_file(&self, tag: &str, node: &str) -> PathBuf {
        self.dir(tag, node).join("cgroup.procs")
    }

    /// The file that holds the cap, and what it holds for `fraction` of one CPU.
    pub fn quota(&self, fraction: f64) -> (&'static str, String) {
        let quota = quota_us(fraction);
        match self {
            Hierarchy::V1(_) => ("cpu.cfs_quota_us", quota.to_string()),
            Hierarchy::V2(_) => ("cpu.max", format!("{quota} {PERIOD_US}")),
        }
    }

    /// Creates the node's cgroup (and its parents) and sets its cap.
    pub fn create(&self, tag: &str, node: &str, fraction: f64) -> Result<PathBuf> {
        let dir = self.dir(tag, node);
        if let Hierarchy::V2(root) = self {
            // v2: a controller must be enabled in every parent's subtree_control.
            let mut at = root.clone();
            for part in [TOP, tag] {
                at = at.join(part);
                mkdir(&at)?;
                write(&at.join("cgroup.subtree_control"), "+cpu")?;
            }
            write(&root.join("cgroup.subtree_control"), "+cpu")?;
        }
        mkdir(&dir)?;
        if let Hierarchy::V1(_) = self {
            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        }
        self.set(tag, node, fraction)?;
        Ok(dir)
    }

    pub fn set(&self, tag: &str, node: &str, fraction: f64) -> Result<()> {
        let (file, value) = self.quota(fraction);
        write(&self.dir(tag, node).join(file), &value)
    }
}

/// Quota in microseconds per [`PERIOD_US`] for `fraction` of one CPU (at least 1 ms, the
/// kernel's minimum).
pub fn quota_us(fraction: f64) -> u64 {
    ((fraction * PERIOD_US as f64).round() as u64).max(1000)
}

/// Checks `--cpu` before anything is created.
pub fn validate(fraction: f64) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if fraction.is_finite() && fraction >= 0.01 && fraction <= cpus {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "--cpu {fraction}: a share of one CPU between 0.01 and {cpus} (this machine's CPUs)"
        )))
    }
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(|e| LabError::io(p, e))
}

fn write(p: &Path, value: &str) -> Result<()> {
    fs::write(p, value).map_err(|e| LabError::io(p, e))
}

/// Removes the lab's cgroups from every hierarchy (v1: dockerd's runc made the same path
/// in memory, pids, cpuset... for the containers), deepest first. A cgroup with processes
/// left cannot be removed; `down` stops them all first.
pub fn remove(tag: &str) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if let (Some(point), Some("cgroup" | "cgroup2")) = (f.get(1), f.get(2).copied()) {
            let root = Path::new(point);
            remove_tree(&root.join(lab_path(tag).trim_start_matches('/')));
            // The top goes with the last lab; another lab's cgroups keep it.
            let _ = fs::remove_dir(root.join(TOP));
        }
    }
}

fn remove_tree(dir: &Path) {
    // cgroup directories hold only control files and sub-cgroups; rmdir removes one whose
    // sub-cgroups are gone.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Whether any cgroup of the lab remains (for the tests and `down`'s report).
pub fn remaining(tag: &str) -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            matches!(f.get(2).copied(), Some("cgroup" | "cgroup2"))
                .then(|| Path::new(f[1]).join(lab_path(tag).trim_start_matches('/')))
        })
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
        cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
        cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n";
    const V1_COMBINED: &str = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n";

    #[test]
    fn the_cpu_controller_is_found_in_v1_even_combined_with_cpuacct() {
        assert_eq!(
            detect_in(V1),
            Some(Hierarchy::V1("/sys/fs/cgroup/cpu".into()))
        );
        assert_eq!(
            detect_in(V1_COMBINED),
            Some(Hierarchy::V1("/sys/fs/cgroup/cpu,cpuacct".into()))
        );
        assert_eq!(detect_in("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn a_quarter_cpu_is_25_ms_per_100_ms_in_both_versions() {
        let v1 = Hierarchy::V1("/sys/fs/cgroup/cpu".into());
        let v2 = Hierarchy::V2("/sys/fs/cgroup".into());
        assert_eq!(v1.quota(0.25), ("cpu.cfs_quota_us", "25000".to_string()));
        assert_eq!(v2.quota(0.25), ("cpu.max", "25000 100000".to_string()));
        assert_eq!(v1.quota(1.5).1, "150000");
        assert_eq!(quota_us(0.001), 1000, "the kernel's minimum");
        assert_eq!(
            v1.procs_file("abc123", "pi2"),
            Path::new("/sys/fs/cgroup/cpu/rpiprov-lab/abc123/pi2/cgroup.procs")
        );
        assert_eq!(node_path("abc123", "pi2"), "/rpiprov-lab/abc123/pi2");
    }

    #[test]
    fn cpu_shares_outside_reason_are_usage_errors() {
        assert!(validate(0.25).is_ok());
        for bad in [0.0, -1.0, f64::NAN, 1000.0] {
            assert!(matches!(validate(bad), Err(LabError::Usage(_))), "{bad}");
        }
    }
}
