//! Faults and Pi realities on one node of a lab, for users rehearsing failures and for the
//! end-to-end tests: packet filters in the node's network namespace, its daemons frozen,
//! killed or started, a reboot with a new boot id, a skewed clock. The `Lab` methods in
//! `mod.rs` find the node (only ever one of that lab's own) and call these.
//!
//! Packet filters live in the node's own `raw` table, in two chains of the lab's (hooked
//! from PREROUTING and OUTPUT, loopback excepted): they see every packet the node sends or
//! receives before Docker's NAT, so a dropped port is dropped for the node's daemons and
//! for its published ports alike, and Docker's own rules (filter and nat) are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{LabError, Result};
use super::sys::{cmd, run, succeeds};

/// Dropped ports (`lab filter --drop`).
pub const DROP_CHAIN: &str = "RPIPROV-DROP";
/// Random loss (`lab filter --loss`), a chain of its own so that a new rate replaces the old.
pub const LOSS_CHAIN: &str = "RPIPROV-LOSS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A port and its protocol, as `7946/udp` or `2377/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    pub proto: Proto,
}

impl std::str::FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Port, String> {
        let bad = || format!("{s:?} is not PORT/tcp or PORT/udp (such as 7946/udp)");
        let (port, proto) = s.split_once('/').ok_or_else(bad)?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(bad()),
        };
        let port = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        Ok(Port { port, proto })
    }
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// `iptables -t raw` argument lists that hook `chain` into the node's traffic.
pub fn hooks(chain: &str) -> [Vec<String>; 2] {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    [
        v(&["PREROUTING", "!", "-i", "lo", "-j", chain]),
        v(&["OUTPUT", "!", "-o", "lo", "-j", chain]),
    ]
}

/// The rule of [`DROP_CHAIN`] that drops a port: packets to it, whichever way (a
/// connection to the node's port, or from the node to that port elsewhere).
pub fn drop_rule(port: Port) -> Vec<String> {
    let dport = port.port.to_string();
    ["-p", port.proto.as_str(), "--dport", &dport, "-j", "DROP"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The rule of [`LOSS_CHAIN`] that drops `percent` % of packets at random (netem is not in
/// every kernel; the statistic match is).
pub fn loss_rule(percent: f64) -> Vec<String> {
    let p = format!("{:.4}", percent / 100.0);
    [
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &p,
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn validate_loss(percent: f64) -> Result<()> {
    if (0.0..=100.0).contains(&percent) {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "--loss {percent}: a percentage between 0 and 100"
        )))
    }
}

/// `iptables -w -t raw ARGS` in the network namespace `netns` (the host's binary, as the
/// node's own dockerd uses on Docker nodes).
fn iptables(netns: &str, args: &[String]) -> Command {
    let mut c = cmd([
        "nsenter".to_string(),
        format!("--net=/run/netns/{netns}"),
        "--".into(),
        "iptables".into(),
        "-w".into(),
        "-t".into(),
        "raw".into(),
    ]);
    c.args(args);
    c
}

fn with(op: &str, chain: &str, rule: &[String]) -> Vec<String> {
    let mut v = vec![op.to_string(), chain.to_string()];
    v.extend_from_slice(rule);
    v
}

/// Creates and hooks the lab's chains in the node, once.
fn ensure_chains(netns: &str) -> Result<()> {
    for chain in [DROP_CHAIN, LOSS_CHAIN] {
        if !succeeds(iptables(netns, &["-n".into(), "-L".into(), chain.into()])) {
            run(iptables(netns, &["-N".into(), chain.into()]))?;
        }
        for hook in hooks(chain) {
            let (builtin, rest) = hook.split_first().expect("hook has a chain");
            if !succeeds(iptables(netns, &with("-C", builtin, rest))) {
                run(iptables(netns, &with("-I", builtin, rest)))?;
            }
        }
    }
    Ok(())
}

pub fn drop_port(netns: &str, port: Port) -> Result<()> {
    ensure_chains(netns)?;
    let rule = drop_rule(port);
    if !succeeds(iptables(netns, &with("-C", DROP_CHAIN, &rule))) {
        run(iptables(netns, &with("-A", DROP_CHAIN, &rule)))?;
    }
    Ok(())
}

/// Random loss of `percent` % of the node's packets, replacing an earlier rate; 0 clears it.
pub fn loss(netns: &str, percent: f64) -> Result<()> {
    validate_loss(percent)?;
    ensure_chains(netns)?;
    run(iptables(netns, &["-F".into(), LOSS_CHAIN.into()]))?;
    if percent > 0.0 {
        run(iptables(
            netns,
            &with("-A", LOSS_CHAIN, &loss_rule(percent)),
        ))?;
    }
    Ok(())
}

/// Removes every filter the lab put in the node (the empty, hooked chains stay).
pub fn clear_filters(netns: &str) -> Result<()> {
    for chain in [DROP_CHAIN, LOSS_CHAIN] {
        if succeeds(iptables(netns, &["-n".into(), "-L".into(), chain.into()])) {
            run(iptables(netns, &["-F".into(), chain.into()]))?;
        }
    }
    Ok(())
}

/// The filters in place, as `iptables -S` prints them (for `lab filter` to show).
pub fn list_filters(netns: &str) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for chain in [DROP_CHAIN, LOSS_CHAIN] {
        if let Ok(out) = run(iptables(netns, &["-S".into(), chain.into()])) {
            lines.extend(
                out.lines()
                    .filter(|l| l.starts_with("-A"))
                    .map(String::from),
            );
        }
    }
    Ok(lines)
}

/// A node daemon the fault commands act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Sshd,
    Dockerd,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Sshd => "sshd",
            Daemon::Dockerd => "dockerd",
        }
    }

    /// Its pid file inside the node, relative to the node's root.
    pub fn pid_file(self) -> &'static str {
        match self {
            Daemon::Sshd => "run/sshd.pid",
            Daemon::Dockerd => "run/docker.pid",
        }
    }

    /// Every pid file that says it runs: Debian's init script keeps a second one for
    /// Docker, and dockerd one for the containerd it starts.
    pub fn pid_files(self) -> &'static [&'static str] {
        match self {
            Daemon::Sshd => &["run/sshd.pid"],
            Daemon::Dockerd => &[
                "run/docker.pid",
                "run/docker-ssd.pid",
                "run/docker/containerd/containerd.pid",
            ],
        }
    }

    /// What starts it inside the node, detached (sshd daemonises; Docker through the
    /// distribution's init script where there is one, as the boot script does).
    pub fn start_script(self) -> &'static str {
        match self {
            Daemon::Sshd => "mkdir -p /run/sshd && exec /usr/sbin/sshd",
            Daemon::Dockerd => {
                "log=/run/rpiprov-node/dockerd.log\n\
                 if [ -x /etc/init.d/docker ]; then\n\
                 \x20 exec /etc/init.d/docker start >>$log 2>&1 </dev/null\n\
                 fi\n\
                 setsid dockerd -p /run/docker.pid >>$log 2>&1 </dev/null &\n"
            }
        }
    }
}

/// Runs `script` with `sh -c` in the command that enters the node; stdin from `input`.
pub fn run_in(
    mut enter: Command,
    script: &str,
    args: &[&str],
    input: Option<&Path>,
) -> Result<String> {
    enter.args(["sh", "-c", script, "sh"]).args(args);
    match input {
        Some(p) => {
            let f = fs::File::open(p).map_err(|e| LabError::io(p, e))?;
            enter.stdin(Stdio::from(f));
        }
        None => {
            enter.stdin(Stdio::null());
        }
    }
    let out = enter
        .output()
        .map_err(|e| LabError::Other(format!("cannot enter the node: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Other(format!(
            "{} ({}): {}",
            script.lines().next().unwrap_or(script),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// As [`run_in`], with `input` on the script's stdin (what should not be in an argument
/// list that every user of the machine may read).
pub fn run_in_feeding(
    mut enter: Command,
    script: &str,
    args: &[&str],
    input: &[u8],
) -> Result<String> {
    use std::io::Write as _;
    enter
        .args(["sh", "-c", script, "sh"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let enter_err = |e: std::io::Error| LabError::Other(format!("cannot enter the node: {e}"));
    let mut child = enter.spawn().map_err(enter_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A script that fails early closes its stdin: its status says why, not this write.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(enter_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Other(format!(
            "{} ({}): {}",
            script.lines().next().unwrap_or(script),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Waits until `check` holds, or fails after `timeout` saying what was awaited.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > timeout {
            return Err(LabError::Other(format!(
                "{what} after {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Writes a new boot id into the node's boot_id file IN PLACE: the file bind-mounted over
/// `/proc/sys/kernel/random/boot_id` in the node is this very inode (a rename would leave
/// the node showing the old one). Returns the new id.
pub fn new_boot_id(file: &Path) -> Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let uuid = "/proc/sys/kernel/random/uuid";
    let id = fs::read_to_string(uuid).map_err(|e| LabError::io(uuid, e))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .map_err(|e| LabError::io(file, e))?;
    f.write_all(id.as_bytes())
        .map_err(|e| LabError::io(file, e))?;
    Ok(id.trim().to_string())
}

/// The host's libfaketime (Debian package `libfaketime`), copied into the node: bare nodes
/// have their own /usr without it.
pub fn host_libfaketime() -> Result<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(rd) = fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            candidates.push(e.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        LabError::Missing(
            "no libfaketime.so.1 (apt-get install faketime libfaketime; scripts/deps.sh does)"
                .into(),
        )
    })
}

/// The offset as libfaketime's config takes it: `+300` or `-90` (seconds).
pub fn faketime_offset(seconds: i64) -> String {
    format!("{seconds:+}")
}

/// Run in the node with the library on stdin and the offset as `$1`: the library goes to
/// the node's private /etc (readable by every user, as a preloaded library must be), the
/// offset to `/etc/faketimerc` (which libfaketime reads without any environment), and the
/// preload list is written last, once both are in place.
pub const SKEW_SCRIPT: &str = "set -eu\n\
     mkdir -p /etc/rpiprov-lab\n\
     cat > /etc/rpiprov-lab/libfaketime.so.1.new\n\
     chmod 644 /etc/rpiprov-lab/libfaketime.so.1.new\n\
     mv -f /etc/rpiprov-lab/libfaketime.so.1.new /etc/rpiprov-lab/libfaketime.so.1\n\
     printf '%s\\n' \"$1\" > /etc/faketimerc\n\
     echo /etc/rpiprov-lab/libfaketime.so.1 > /etc/ld.so.preload\n";

/// The preload list goes first: no process starts with half a setup.
pub const CLEAR_CLOCK_SCRIPT: &str =
    "rm -f /etc/ld.so.preload /etc/faketimerc && rm -rf /etc/rpiprov-lab";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_their_protocol() {
        let p: Port = "7946/udp".parse().unwrap();
        assert_eq!(
            p,
            Port {
                port: 7946,
                proto: Proto::Udp
            }
        );
        assert_eq!(p.to_string(), "7946/udp");
        for bad in ["7946", "0/tcp", "70000/tcp", "22/icmp", "x/tcp"] {
            assert!(bad.parse::<Port>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_raw_table_rules_in_the_labs_own_chains() {
        assert_eq!(
            hooks(DROP_CHAIN)
                .iter()
                .map(|h| h.join(" "))
                .collect::<Vec<_>>(),
            [
                "PREROUTING ! -i lo -j RPIPROV-DROP",
                "OUTPUT ! -o lo -j RPIPROV-DROP"
            ]
        );
        assert_eq!(
            drop_rule("2377/tcp".parse().unwrap()).join(" "),
            "-p tcp --dport 2377 -j DROP"
        );
        assert_eq!(
            loss_rule(30.0).join(" "),
            "-m statistic --mode random --probability 0.3000 -j DROP"
        );
        assert!(validate_loss(100.0).is_ok());
        assert!(matches!(validate_loss(101.0), Err(LabError::Usage(_))));
        assert!(matches!(validate_loss(-1.0), Err(LabError::Usage(_))));
    }

    #[test]
    fn the_clock_offset_has_its_sign() {
        assert_eq!(faketime_offset(300), "+300");
        assert_eq!(faketime_offset(-90), "-90");
        assert_eq!(faketime_offset(0), "+0");
        // The preload list comes last when skewing, first when clearing.
        let last = SKEW_SCRIPT.lines().last().unwrap();
        assert_eq!(
            last,
            "echo /etc/rpiprov-lab/libfaketime.so.1 > /etc/ld.so.preload"
        );
        assert!(CLEAR_CLOCK_SCRIPT.starts_with("rm -f /etc/ld.so.preload"));
    }
}
