//! The preflight's judgement: a pure function of what the probe found on each host
//! ([`crate::docker::probe::PreflightFacts`]) and of this machine's clock around the
//! probe, to [`Finding`]s: what is wrong, how bad, and what to do. Errors stop `bootstrap`
//! from forming or joining the swarm on that host (unless the check is skipped); warnings
//! are shown. `rpiprov doctor` prints the same findings alone. The port test between the
//! nodes is judged by [`crate::plan::ports`]. Tested as exact messages.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::docker::probe::{Facts, PreflightFacts};

/// A clock further off than this from this machine is a warning.
pub const CLOCK_WARN_SECS: f64 = 5.0;
/// Swarm backdates the certificates it issues by one hour to absorb clock drift
/// (swarmkit `ca/certificates.go`: `CertBackdate = 1 * time.Hour`); a node further off
/// than that sees a fresh certificate as not yet valid (or its own as expired), and TLS
/// between it and the managers fails. Past this, bootstrap refuses.
pub const CLOCK_REFUSE_SECS: f64 = 3600.0;
/// Less free space than this where Docker keeps its data is an error.
pub const DISK_REFUSE_KIB: u64 = 1024 * 1024;
/// Less than this is a warning.
pub const DISK_WARN_KIB: u64 = 4 * 1024 * 1024;

/// What a finding is about; each can be skipped by name (`--skip-preflight NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Clock,
    Kernel,
    MemoryCgroup,
    Disk,
    Arch,
    /// The Docker versions the fleet runs.
    Docker,
    Ports,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::Clock,
        Check::Kernel,
        Check::MemoryCgroup,
        Check::Disk,
        Check::Arch,
        Check::Docker,
        Check::Ports,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Clock => "clock",
            Check::Kernel => "kernel",
            Check::MemoryCgroup => "memory-cgroup",
            Check::Disk => "disk",
            Check::Arch => "arch",
            Check::Docker => "docker",
            Check::Ports => "ports",
        }
    }

    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing the preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The inventory host it is about; empty for the fleet as a whole.
    pub host: String,
    pub check: Check,
    pub severity: Severity,
    /// What is wrong, and why it matters.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    fn new(host: &str, check: Check, severity: Severity, message: String, fix: &str) -> Finding {
        Finding {
            host: host.to_string(),
            check,
            severity,
            message,
            fix: fix.to_string(),
        }
    }

    /// `error: pi3: clock: MESSAGE; what to do: FIX`, for a terminal.
    pub fn line(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let host = if self.host.is_empty() {
            "fleet"
        } else {
            &self.host
        };
        format!(
            "{sev}: {host}: {}: {}; what to do: {}",
            self.check.name(),
            self.message,
            self.fix
        )
    }
}

/// This machine's clock (seconds since the epoch) when the probe was sent and when its
/// answer came back: the host read its clock somewhere in between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub sent: f64,
    pub received: f64,
}

/// One probed host.
pub struct Probed<'a> {
    pub host: &'a str,
    pub facts: &'a Facts,
    pub window: Option<Window>,
}

/// Judges every probed host, then the fleet as a whole; findings in host order, errors
/// first within a host.
pub fn judge(hosts: &[Probed]) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in hosts {
        let mut mine = Vec::new();
        mine.extend(clock(h.host, &h.facts.preflight, h.window));
        mine.extend(kernel(h.host, &h.facts.preflight));
        mine.extend(memory_cgroup(h.host, &h.facts.preflight));
        mine.extend(disk(h.host, &h.facts.preflight));
        mine.extend(arch(h.host, h.facts));
        mine.sort_by_key(|f| f.severity);
        out.extend(mine);
    }
    out.extend(mixed_arch(hosts));
    out
}

/// The host's clock against this machine's at the middle of the round trip; the half
/// round trip is the uncertainty, and only an offset certain to be past a limit counts.
pub fn clock(host: &str, p: &PreflightFacts, window: Option<Window>) -> Option<Finding> {
    let (Some(w), Ok(theirs)) = (window, p.clock.parse::<f64>()) else {
        return None;
    };
    let offset = theirs - (w.sent + w.received) / 2.0;
    let plus_minus = ((w.received - w.sent) / 2.0).max(0.0);
    let certain = offset.abs() - plus_minus;
    let way = if offset > 0.0 { "ahead of" } else { "behind" };
    let said = format!(
        "its clock is {:.1} s {way} this machine's (±{plus_minus:.1} s)",
        offset.abs()
    );
    if certain > CLOCK_REFUSE_SECS {
        Some(Finding::new(
            host,
            Check::Clock,
            Severity::Error,
            format!(
                "{said}: swarm backdates its TLS certificates by 1 hour only (swarmkit's CertBackdate), so joins and manager traffic fail with \"certificate has expired or is not yet valid\""
            ),
            "set its time (`sudo timedatectl set-ntp true`, or `sudo date -s @$(date +%s)` from a correct machine where there is no network time: a Pi has no battery-backed clock), then run again",
        ))
    } else if certain > CLOCK_WARN_SECS {
        Some(Finding::new(
            host,
            Check::Clock,
            Severity::Warning,
            said,
            "enable network time (`sudo timedatectl set-ntp true`) before it drifts further: past 1 hour swarm's TLS fails",
        ))
    } else {
        None
    }
}

/// How far the kernel supports something, from all the evidence there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Loaded now, or built in.
    Present,
    /// A module Docker can load.
    Module,
    /// Not there: the evidence says why.
    Missing(&'static str),
    /// Nothing on the host could tell.
    Unknown,
}

/// Support from: loaded (`/sys/module`), the kernel configuration's `CONFIG_X` (`y`,
/// `m`, empty), whether a configuration was readable at all, and the module tree
/// (`builtin`, `module`, `none`, and whether `/lib/modules/RELEASE` exists).
pub fn support(
    loaded: bool,
    config: &str,
    have_config: bool,
    module: &str,
    modules_dir: bool,
) -> Support {
    if loaded {
        return Support::Present;
    }
    match config {
        "y" => return Support::Present,
        "m" if modules_dir && module == "none" => {
            return Support::Missing("configured as a module, but the module is not installed");
        }
        "m" => return Support::Module,
        _ if have_config => return Support::Missing("not set in the kernel's configuration"),
        _ => {}
    }
    if !modules_dir {
        return Support::Unknown;
    }
    match module {
        "builtin" => Support::Present,
        "module" => Support::Module,
        _ => Support::Missing("neither built in nor a module under /lib/modules"),
    }
}

/// vxlan (overlay networks) and overlayfs (Docker's overlay2 storage driver).
pub fn kernel(host: &str, p: &PreflightFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let vxlan = support(
        p.loaded_vxlan,
        &p.config_vxlan,
        p.kernel_config,
        &p.module_vxlan,
        p.modules_dir,
    );
    match vxlan {
        Support::Present | Support::Module => {}
        Support::Missing(why) => out.push(Finding::new(
            host,
            Check::Kernel,
            Severity::Error,
            format!("the kernel has no vxlan ({why}): overlay networks would be created but carry no traffic between nodes"),
            "on Ubuntu install linux-modules-extra-raspi (vxlan moved there); on Raspberry Pi OS reinstall the kernel package (raspberrypi-kernel, or linux-image-rpi-* on Bookworm); otherwise use a kernel built with CONFIG_VXLAN",
        )),
        Support::Unknown => out.push(Finding::new(
            host,
            Check::Kernel,
            Severity::Warning,
            "cannot tell whether the kernel has vxlan: no /proc/config.gz, no /boot/config-RELEASE, no /lib/modules/RELEASE and no loaded module".into(),
            "check by hand with `sudo modprobe vxlan`: overlay networks need it",
        )),
    }
    let overlay = if p.fs_overlay {
        Support::Present
    } else {
        support(
            p.loaded_overlay,
            &p.config_overlay_fs,
            p.kernel_config,
            &p.module_overlay,
            p.modules_dir,
        )
    };
    if let Support::Missing(why) = overlay {
        out.push(Finding::new(
            host,
            Check::Kernel,
            Severity::Warning,
            format!("the kernel has no overlayfs ({why}): Docker falls back to the vfs storage driver, which copies every image layer (slow, and it fills an SD card)"),
            "use a kernel built with CONFIG_OVERLAY_FS (every Raspberry Pi OS and Ubuntu kernel is)",
        ));
    }
    out
}

/// The memory cgroup: without it Docker cannot limit a service's memory and ignores the
/// limits a stack sets. Raspberry Pi OS kernels used to leave it off by default.
pub fn memory_cgroup(host: &str, p: &PreflightFacts) -> Option<Finding> {
    let on = p.cgroup_memory == "1"
        || p.cgroup2_controllers
            .split_whitespace()
            .any(|c| c == "memory")
        || p.docker_memory_limit == "true";
    let off = p.cgroup_memory == "0" || p.docker_memory_limit == "false";
    if on || !off {
        return None;
    }
    let disabled = p
        .cmdline
        .split_whitespace()
        .any(|w| w == "cgroup_disable=memory");
    let message = if disabled {
        "the memory cgroup is disabled (`cgroup_disable=memory` on the kernel command line): Docker cannot limit memory, and stacks' memory limits are ignored"
    } else {
        "the memory cgroup is not enabled: Docker cannot limit memory, and stacks' memory limits are ignored"
    };
    Some(Finding::new(
        host,
        Check::MemoryCgroup,
        Severity::Warning,
        message.to_string(),
        "add `cgroup_enable=memory cgroup_memory=1` to the kernel command line (the one line of /boot/firmware/cmdline.txt on Raspberry Pi OS Bookworm, /boot/cmdline.txt before), remove any `cgroup_disable=memory`, and reboot",
    ))
}

/// Free space where Docker keeps its images and containers.
pub fn disk(host: &str, p: &PreflightFacts) -> Option<Finding> {
    let free = p.disk_free_kib?;
    let said = format!("only {} free under {}", size(free), p.disk_path);
    let fix = "free space there (`sudo docker system prune`, `sudo apt-get clean`) or move Docker's data-root to a larger disk: images, containers and logs live there";
    if free < DISK_REFUSE_KIB {
        Some(Finding::new(
            host,
            Check::Disk,
            Severity::Error,
            format!("{said}: not enough for Docker and the playbook's images"),
            fix,
        ))
    } else if free < DISK_WARN_KIB {
        Some(Finding::new(
            host,
            Check::Disk,
            Severity::Warning,
            said,
            fix,
        ))
    } else {
        None
    }
}

fn size(kib: u64) -> String {
    if kib >= 1024 * 1024 {
        format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} MiB", kib / 1024)
    }
}

/// A 32-bit userland: Docker runs images of the userland's architecture, whatever the
/// kernel (`uname -m` says `aarch64` under 32-bit Raspberry Pi OS with a 64-bit kernel).
pub fn arch(host: &str, f: &Facts) -> Option<Finding> {
    let k = f.kernel_arch.as_str();
    match f.arch.as_str() {
        "armhf" if k == "aarch64" || k == "arm64" => Some(Finding::new(
            host,
            Check::Arch,
            Severity::Warning,
            "32-bit userland (armhf) on a 64-bit kernel (aarch64): Docker runs linux/arm/v7 images here, and arm64 images fail with \"exec format error\" or \"no matching manifest\"".into(),
            "install the 64-bit Raspberry Pi OS (arm64) to run arm64 images, or use images built for linux/arm/v7",
        )),
        "armel" => Some(Finding::new(
            host,
            Check::Arch,
            Severity::Warning,
            "ARMv6 userland (armel, a Pi Zero or Pi 1): few images are built for linux/arm/v6".into(),
            "use images built for linux/arm/v6, or keep these Pis out of services' placement",
        )),
        _ => None,
    }
}

/// A fleet of several architectures: every image must be built for each of them.
pub fn mixed_arch(hosts: &[Probed]) -> Option<Finding> {
    let mut by_arch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in hosts.iter().filter(|h| !h.facts.arch.is_empty()) {
        by_arch.entry(&h.facts.arch).or_default().push(h.host);
    }
    if by_arch.len() < 2 {
        return None;
    }
    let groups: Vec<String> = by_arch
        .iter()
        .map(|(arch, hosts)| format!("{}: {arch}", hosts.join(", ")))
        .collect();
    Some(Finding::new(
        "",
        Check::Arch,
        Severity::Warning,
        format!("the fleet mixes architectures ({})", groups.join("; ")),
        "build every image for each of them (multi-platform), or pin services with a `node.platform.arch` placement constraint",
    ))
}

/// Managers that run different major versions of Docker (issue 17: a rack grown over
/// years): each manager's raft and swarm API is its own Docker's, and a leader of one
/// version leads members of another; Docker supports a mixed swarm while it is being
/// upgraded, and rpiprov drives every version it speaks, but managers are best of one.
/// `managers` are the inventory's managers that answered, with what their daemon said.
pub fn manager_versions(managers: &[(&str, &Facts)]) -> Option<Finding> {
    // Ordered by number (9 before 28), a version that does not start with one last.
    let major = |v: &str| {
        let m = v.split('.').next().unwrap_or(v);
        (m.parse::<u64>().unwrap_or(u64::MAX), m.to_string())
    };
    let mut by_major: BTreeMap<(u64, String), Vec<String>> = BTreeMap::new();
    for (host, f) in managers {
        if let Some(v) = &f.docker_version {
            by_major
                .entry(major(v))
                .or_default()
                .push(format!("{host} {v}"));
        }
    }
    if by_major.len() < 2 {
        return None;
    }
    let groups: Vec<String> = by_major.values().map(|hosts| hosts.join(", ")).collect();
    Some(Finding::new(
        "",
        Check::Docker,
        Severity::Warning,
        format!(
            "the managers run different major versions of Docker ({}): a swarm of mixed managers is meant for the time of an upgrade",
            groups.join("; ")
        ),
        "bring them to one major version, one manager at a time so that the swarm keeps quorum (rpiprov maintain --on MANAGER --upgrade-docker, or -- CMD for another OS release)",
    ))
}

/// The findings that stop a host, once skipped checks are left out.
pub fn errors<'a>(findings: &'a [Finding], skip: &[Check]) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error && !skip.contains(&f.check))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> PreflightFacts {
        PreflightFacts {
            clock: "1000.0".into(),
            kernel_config: true,
            config_vxlan: "m".into(),
            config_overlay_fs: "m".into(),
            config_memcg: "y".into(),
            modules_dir: true,
            module_vxlan: "module".into(),
            module_overlay: "module".into(),
            fs_overlay: true,
            cgroup_memory: "1".into(),
            disk_path: "/var/lib/docker".into(),
            disk_free_kib: Some(20 * 1024 * 1024),
            perl: true,
            ..Default::default()
        }
    }

    fn facts(p: PreflightFacts) -> Facts {
        Facts {
            hostname: "pi".into(),
            arch: "arm64".into(),
            kernel_arch: "aarch64".into(),
            preflight: p,
            ..Default::default()
        }
    }

    /// Issue 17: managers of different major versions are a warning naming each; the
    /// same major (20.10.24 and 20.10.5), or workers of other versions, are none.
    #[test]
    fn managers_of_different_major_versions_are_warned_of() {
        let with = |v: &str| Facts {
            docker_version: Some(v.into()),
            ..facts(healthy())
        };
        let (a, b, c) = (with("28.5.2+dfsg4"), with("26.1.5+dfsg1"), with("28.1.1"));
        let nine = with("9.0.1");
        let none = Facts::default();
        let f = manager_versions(&[("pi1", &a), ("pi2", &b), ("pi3", &c), ("pi4", &none)])
            .expect("a warning");
        assert_eq!(
            f.line(),
            "warning: fleet: docker: the managers run different major versions of Docker (pi2 26.1.5+dfsg1; pi1 28.5.2+dfsg4, pi3 28.1.1): a swarm of mixed managers is meant for the time of an upgrade; what to do: bring them to one major version, one manager at a time so that the swarm keeps quorum (rpiprov maintain --on MANAGER --upgrade-docker, or -- CMD for another OS release)"
        );
        assert_eq!(f.severity, Severity::Warning);
        let (d, e) = (with("20.10.24+dfsg1"), with("20.10.5"));
        assert_eq!(manager_versions(&[("pi1", &d), ("pi2", &e)]), None);
        assert_eq!(manager_versions(&[("pi1", &a)]), None);
        // By number: 9 comes before 28.
        let f = manager_versions(&[("pi1", &a), ("pi2", &nine)]).expect("a warning");
        assert!(
            f.line().contains("(pi2 9.0.1; pi1 28.5.2+dfsg4)"),
            "{}",
            f.line()
        );
        assert_eq!(Check::from_name("docker"), Some(Check::Docker));
    }

    fn at(sent: f64, received: f64) -> Option<Window> {
        Some(Window { sent, received })
    }

    #[test]
    fn a_healthy_pi_has_nothing_to_say() {
        let f = facts(healthy());
        let found = judge(&[Probed {
            host: "pi1",
            facts: &f,
            window: at(999.9, 1000.1),
        }]);
        assert_eq!(found, vec![]);
    }

    #[test]
    fn a_clock_past_swarm_s_tls_tolerance_is_refused_with_the_offset() {
        let mut p = healthy();
        p.clock = "8200.25".into();
        let f = clock("pi3", &p, at(999.9, 1000.1)).unwrap();
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(
            f.line(),
            "error: pi3: clock: its clock is 7200.2 s ahead of this machine's (±0.1 s): swarm backdates its TLS certificates by 1 hour only (swarmkit's CertBackdate), so joins and manager traffic fail with \"certificate has expired or is not yet valid\"; what to do: set its time (`sudo timedatectl set-ntp true`, or `sudo date -s @$(date +%s)` from a correct machine where there is no network time: a Pi has no battery-backed clock), then run again"
        );
        p.clock = "990".into();
        assert_eq!(
            clock("pi3", &p, at(999.9, 1000.1)).unwrap().message,
            "its clock is 10.0 s behind this machine's (±0.1 s)"
        );
        assert_eq!(
            clock("pi3", &p, at(999.9, 1000.1)).unwrap().severity,
            Severity::Warning
        );
    }

    #[test]
    fn a_slow_round_trip_never_makes_an_offset_look_worse_than_it_is() {
        let mut p = healthy();
        // 3605 s ahead, but the answer took 20 s: only 3595 s are certain.
        p.clock = "4615".into();
        let f = clock("pi3", &p, at(1000.0, 1020.0)).unwrap();
        assert_eq!(f.severity, Severity::Warning);
        // 3 s off within a 2 s round trip: nothing to say.
        p.clock = "1004".into();
        assert_eq!(clock("pi3", &p, at(1000.0, 1002.0)), None);
        // No reading, or one that is not a number: no finding rather than a guess.
        assert_eq!(clock("pi3", &p, None), None);
        p.clock = "%s.%N".into();
        assert_eq!(clock("pi3", &p, at(1000.0, 1000.1)), None);
    }

    #[test]
    fn kernel_support_from_every_kind_of_evidence() {
        // Loaded, or built in (this lab's kernel: CONFIG_VXLAN=y, no /lib/modules).
        assert_eq!(support(true, "", false, "", false), Support::Present);
        assert_eq!(support(false, "y", true, "", false), Support::Present);
        assert_eq!(support(false, "m", true, "module", true), Support::Module);
        assert_eq!(
            support(false, "m", true, "none", true),
            Support::Missing("configured as a module, but the module is not installed")
        );
        assert_eq!(
            support(false, "", true, "module", true),
            Support::Missing("not set in the kernel's configuration")
        );
        // No configuration to read: the module tree decides, or nothing can tell.
        assert_eq!(support(false, "", false, "builtin", true), Support::Present);
        assert_eq!(support(false, "", false, "module", true), Support::Module);
        assert_eq!(
            support(false, "", false, "none", true),
            Support::Missing("neither built in nor a module under /lib/modules")
        );
        assert_eq!(support(false, "", false, "none", false), Support::Unknown);
    }

    #[test]
    fn a_kernel_without_vxlan_is_refused_and_says_which_package() {
        let mut p = healthy();
        p.config_vxlan = "m".into();
        p.module_vxlan = "none".into();
        let found = kernel("pi2", &p);
        assert_eq!(
            found.iter().map(Finding::line).collect::<Vec<_>>(),
            vec![
                "error: pi2: kernel: the kernel has no vxlan (configured as a module, but the module is not installed): overlay networks would be created but carry no traffic between nodes; what to do: on Ubuntu install linux-modules-extra-raspi (vxlan moved there); on Raspberry Pi OS reinstall the kernel package (raspberrypi-kernel, or linux-image-rpi-* on Bookworm); otherwise use a kernel built with CONFIG_VXLAN"
            ]
        );
        // Nothing can tell: a warning that says how to find out.
        let unknown = PreflightFacts {
            fs_overlay: true,
            ..Default::default()
        };
        let found = kernel("pi2", &unknown);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(
            found[0].fix,
            "check by hand with `sudo modprobe vxlan`: overlay networks need it"
        );
        // No overlayfs: Docker still works, slowly.
        let mut p = healthy();
        p.fs_overlay = false;
        p.config_overlay_fs = String::new();
        let found = kernel("pi2", &p);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0]
                .message
                .starts_with("the kernel has no overlayfs (not set in the kernel's configuration)")
        );
    }

    #[test]
    fn memory_cgroup_off_says_which_cmdline_to_change() {
        let mut p = healthy();
        p.cgroup_memory = "0".into();
        p.cmdline = "console=tty1 root=PARTUUID=1 cgroup_disable=memory rootwait".into();
        let f = memory_cgroup("pi1", &p).unwrap();
        assert_eq!(
            f.line(),
            "warning: pi1: memory-cgroup: the memory cgroup is disabled (`cgroup_disable=memory` on the kernel command line): Docker cannot limit memory, and stacks' memory limits are ignored; what to do: add `cgroup_enable=memory cgroup_memory=1` to the kernel command line (the one line of /boot/firmware/cmdline.txt on Raspberry Pi OS Bookworm, /boot/cmdline.txt before), remove any `cgroup_disable=memory`, and reboot"
        );
        // cgroup v2 lists it among the controllers; Docker's own word counts too.
        p.cgroup2_controllers = "cpuset cpu io memory pids".into();
        assert_eq!(memory_cgroup("pi1", &p), None);
        let mut p = healthy();
        p.cgroup_memory = String::new();
        p.docker_memory_limit = "false".into();
        assert!(memory_cgroup("pi1", &p).is_some());
        p.docker_memory_limit = String::new();
        assert_eq!(memory_cgroup("pi1", &p), None, "nothing could tell");
    }

    #[test]
    fn disk_space_under_docker_s_data_root() {
        let mut p = healthy();
        p.disk_free_kib = Some(300 * 1024);
        p.disk_path = "/var/lib".into();
        let f = disk("pi3", &p).unwrap();
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(
            f.message,
            "only 300 MiB free under /var/lib: not enough for Docker and the playbook's images"
        );
        p.disk_free_kib = Some(2 * 1024 * 1024 + 512 * 1024);
        let f = disk("pi3", &p).unwrap();
        assert_eq!(
            (f.severity, f.message.as_str()),
            (Severity::Warning, "only 2.5 GiB free under /var/lib")
        );
        p.disk_free_kib = None;
        assert_eq!(disk("pi3", &p), None);
    }

    #[test]
    fn a_32_bit_userland_and_a_mixed_fleet_are_warned_about() {
        let mut a = facts(healthy());
        a.arch = "armhf".into();
        let f = arch("pi2", &a).unwrap();
        assert!(
            f.message
                .starts_with("32-bit userland (armhf) on a 64-bit kernel (aarch64)"),
            "{}",
            f.message
        );
        let b = facts(healthy());
        let c = facts(healthy());
        let found = judge(&[
            Probed {
                host: "pi1",
                facts: &b,
                window: None,
            },
            Probed {
                host: "pi2",
                facts: &a,
                window: None,
            },
            Probed {
                host: "pi3",
                facts: &c,
                window: None,
            },
        ]);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[1].line(),
            "warning: fleet: arch: the fleet mixes architectures (pi1, pi3: arm64; pi2: armhf); what to do: build every image for each of them (multi-platform), or pin services with a `node.platform.arch` placement constraint"
        );
    }

    #[test]
    fn skipped_checks_do_not_stop_a_host() {
        let mut p = healthy();
        p.clock = "9000".into();
        p.disk_free_kib = Some(10);
        let f = facts(p);
        let found = judge(&[Probed {
            host: "pi1",
            facts: &f,
            window: at(999.0, 1001.0),
        }]);
        assert_eq!(errors(&found, &[]).len(), 2);
        let left = errors(&found, &[Check::Clock]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].check, Check::Disk);
        assert_eq!(Check::from_name("memory-cgroup"), Some(Check::MemoryCgroup));
        assert_eq!(Check::from_name("nope"), None);
    }
}
