//! One lab node: its directory, its boot script, and its first process.
//!
//! A node is started as `nsenter --net=<netns> unshare --mount --uts --propagation private
//! sh boot.sh`: the script runs inside the node's network namespace (entered with nsenter,
//! not `ip netns exec`, which remounts /sys and hides the cgroups dockerd needs), in a new
//! mount and UTS namespace. It mounts the node's private file systems, starts sshd (and
//! dockerd), writes `ready`, and then becomes `sleep infinity`: that "holder" process keeps
//! the namespaces alive and is how the host enters the node later (`nsenter -t PID`).
//! Mounts made inside a node's mount namespace never appear on the host and vanish with it.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{LabError, Result};
use super::layout::{Kind, NodeSpec};
use super::sys::{self, ProcId, cmd};
use crate::shell::quote;

/// Root may raise the hard limit; Debian's /etc/init.d/docker runs `ulimit -n 1048576`,
/// which fails under this machine's default hard limit of 20000.
const NOFILE: libc::rlim_t = 1_048_576;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Local Docker ranges of Docker nodes: inside 198.18.0.0/15, clear of the node addresses
/// (198.18.0.0/24) and of the swarm pool (198.19.0.0/16). Each node is its own network
/// namespace, so every node may use the same ranges, as real Pis do.
pub const DOCKER_BIP: &str = "198.18.254.1/24";
pub const DOCKER_POOL: &str = "198.18.128.0/18";

/// Debian's /etc/init.d/docker runs `ulimit -n 1048576` (and `-p unlimited`) under `set -e`.
/// Where hard limits cannot be raised (root without CAP_SYS_RESOURCE, as on this project's
/// CI machines), that start fails; the script sources /etc/default/docker first, so a
/// function appended there clamps such requests to the hard limit. The apt option keeps a
/// bare node's file when docker.io installs its own copy (else dpkg stops at a conffile
/// prompt). Lab-only, and only where needed.
const NOFILE_SHIM: &str = r#"hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ] && ! grep -qs 'rpiprov lab' $R/etc/default/docker; then
  mkdir -p $R/etc/default $R/etc/apt/apt.conf.d
  cat >> $R/etc/default/docker <<'SHIM'
# rpiprov lab: this machine cannot raise hard limits (no CAP_SYS_RESOURCE), and
# /etc/init.d/docker asks for `ulimit -n 1048576` and `ulimit -p unlimited`: where that
# fails, set the limit to its hard maximum instead. Not needed on a Pi.
ulimit() {
  if [ $# -eq 2 ]; then
    command ulimit "$1" "$2" 2>/dev/null || command ulimit "$1" "$(command ulimit -H "$1")"
  else
    command ulimit "$@"
  fi
}
SHIM
  printf 'Dpkg::Options { "--force-confdef"; "--force-confold"; };\n' > $R/etc/apt/apt.conf.d/99rpiprov-lab
fi
"#;

pub fn node_dir(lab_dir: &Path, name: &str) -> PathBuf {
    lab_dir.join("nodes").join(name)
}

pub fn sshd_config(node: &NodeSpec) -> String {
    format!(
        "# sshd of lab node {name}, written by `rpiprov lab up`.\n\
         ListenAddress {addr}:22\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PidFile /run/sshd.pid\n\
         PermitRootLogin no\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile .ssh/authorized_keys\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         # No PAM: the account checks that matter here are sshd's own.\n\
         UsePAM no\n\
         StrictModes yes\n\
         # Room for the SSH layer's parallel connections in scale tests.\n\
         MaxStartups 200:30:400\n\
         MaxSessions 64\n\
         PrintMotd no\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp internal-sftp\n",
        name = node.name,
        addr = node.address,
    )
}

/// The node's first `/etc/docker/daemon.json`: the lab's ranges on Docker nodes; with
/// `--cpu`, the `cgroup-parent` that puts containers under the node's capped cgroup (bare
/// nodes get that key alone, for the dockerd that `bootstrap` will install).
pub fn daemon_json(kind: Kind, cgroup_parent: Option<&str>) -> Option<String> {
    let mut doc = match kind {
        Kind::Docker => serde_json::json!({
            "bip": DOCKER_BIP,
            "default-address-pools": [{ "base": DOCKER_POOL, "size": 24 }],
            "data-root": "/var/lib/docker",
            "exec-root": "/run/docker",
        }),
        Kind::Bare if cgroup_parent.is_some() => serde_json::json!({}),
        Kind::Bare | Kind::SshdOnly => return None,
    };
    if let Some(parent) = cgroup_parent {
        doc["cgroup-parent"] = parent.into();
    }
    Some(serde_json::to_string_pretty(&doc).expect("json serialises") + "\n")
}

/// Commands libfaketime must leave alone when a node's clock is skewed (`lab clock`): sshd
/// dies in its seccomp sandbox with libfaketime loaded, and the daemons keep real time as
/// a Pi's do (Go reads the clock without libc anyway). Set in the daemons' environment; the
/// sessions sshd starts get a fresh one, so their commands see the skew.
pub const FAKETIME_SKIP: &str =
    "sshd,dockerd,containerd,containerd-shim,containerd-shim-runc-v2,runc,docker-proxy,docker-init";

/// Inside the node, the file that `/proc/sys/kernel/random/boot_id` shows (bind-mounted
/// over it at boot): each node has its own boot id, and `lab reboot` writes a new one.
pub const BOOT_ID: &str = "boot_id";

/// A Pi with Raspberry Pi OS runs Debian's `docker` CLI (docker.io, 20.10) against
/// Debian's dockerd; a Docker node runs on this machine's `/usr`, where another `docker`
/// may sit first in `PATH` (and in sudo's `secure_path`): `/usr/local/bin`. The node sees
/// Debian's under both names, so that what rpiprov's commands print, and what they cost,
/// is what a Pi's CLI gives. Only inside the node's mount namespace: the host keeps its own.
const DISTRO_CLI: &str = "# The distribution's docker CLI, as on a Pi, even where another one comes first in PATH.\n\
     if [ -x /usr/bin/docker ] && [ -e /usr/local/bin/docker ]; then mount --bind /usr/bin/docker /usr/local/bin/docker; fi\n";

/// The mounts of a node on this machine's file system (Docker nodes of bookworm, sshd-only
/// nodes): private copies of what rpiprov or sudo write per node over the host's own.
fn host_fs_mounts(node: &NodeSpec) -> String {
    let mut s = String::from(
        "R=\nC=\n\
         # The node directory may sit under a directory mounted over below (/tmp,\n\
         # /home, /run...): reach it through /mnt until then, through /run after.\n\
         mount --bind $N /mnt\n\
         N=/mnt\n\
         # Private copies of everything rpiprov or sudo write per node; the host's\n\
         # own files stay untouched (overlays keep the changes under $N).\n\
         mount -t tmpfs -o mode=0755 lab-run /run\n\
         mount -t overlay lab-etc -o lowerdir=/etc,upperdir=$N/etc.upper,workdir=$N/etc.work /etc\n\
         mount --bind $N/home /home\n\
         mount --bind $N/tmp /tmp\n",
    );
    if node.kind == Kind::Docker {
        s.push_str(
            "mount -t overlay lab-var -o lowerdir=/var,upperdir=$N/var.upper,workdir=$N/var.work /var\n\
             mkdir -p /var/lib/docker /etc/docker\n\
             # Docker's storage must not sit on an overlay: a plain directory of the node.\n\
             mount --bind $N/docker /var/lib/docker\n\
             # The lab's daemon.json unless this node already has its own (kept across\n\
             # restarts); never the host's, which the /etc overlay would show.\n\
             [ -e $N/etc.upper/docker/daemon.json ] || cp $N/daemon.json /etc/docker/daemon.json\n",
        );
        s.push_str(DISTRO_CLI);
        s.push_str(NOFILE_SHIM);
    }
    s.push_str(
        "mkdir -p /run/rpiprov-node\n\
         mount --move /mnt /run/rpiprov-node\n\
         N=/run/rpiprov-node\n",
    );
    s
}

/// The mounts of a node with a root file system of its own (bare nodes, Docker nodes of
/// trixie or sid): an overlay over the cached release (`lower`), the kernel's file
/// systems, and for Docker its storage on a plain directory of the node.
fn own_root_mounts(node: &NodeSpec, lower: &[PathBuf]) -> String {
    let lower: Vec<String> = lower
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut s = format!("B={}\n", quote(&lower.join(":")));
    s.push_str(
        "R=$N/root\nC=\"chroot $R\"\n\
         mount -t overlay lab-root -o lowerdir=$B,upperdir=$N/root.upper,workdir=$N/root.work $R\n\
         mount -t proc proc $R/proc\n\
         mount --rbind /sys $R/sys\n\
         mount --rbind /dev $R/dev\n\
         mount -t tmpfs -o mode=0755 lab-run $R/run\n\
         mkdir -p $R/run/lock $R/run/rpiprov-node\n\
         mount --bind $N $R/run/rpiprov-node\n\
         cp -L /etc/resolv.conf $R/etc/resolv.conf\n",
    );
    if node.kind == Kind::Docker {
        s.push_str(
            "# Docker's storage must not sit on an overlay: a plain directory of the node.\n\
             mkdir -p $R/var/lib/docker\n\
             mount --bind $N/docker $R/var/lib/docker\n",
        );
    }
    s.push_str(
        "# The lab's daemon.json (with --cpu, on a bare node: the cgroup-parent for the\n\
         # dockerd that bootstrap installs) unless the node already has its own.\n\
         if [ -e $N/daemon.json ] && [ ! -e $R/etc/docker/daemon.json ]; then\n\
         \x20 mkdir -p $R/etc/docker && cp $N/daemon.json $R/etc/docker/daemon.json\n\
         fi\n",
    );
    s.push_str(NOFILE_SHIM);
    s
}

/// The paths a boot script needs from the host. Everything else it reads is in the node
/// directory (`authorized_keys`, `sudo-password`, `sshd_config`...), written before boot.
pub struct BootInputs<'a> {
    pub node_dir: &'a Path,
    /// The cached root file system of a node that has its own: overlay lower directories,
    /// uppermost first (the release's Docker layer, then its base).
    pub lower: &'a [PathBuf],
}

/// The node's boot script (pure; see the module header for how it is run).
pub fn boot_script(node: &NodeSpec, inp: &BootInputs) -> String {
    let n = quote(&inp.node_dir.to_string_lossy());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#!/bin/sh\n# Boot script of lab node {name} ({kind}, {distro}), written by `rpiprov lab up`.\nset -eu\nN={n}",
        name = node.name,
        kind = node.kind.as_str(),
        distro = node.distro,
    );
    let _ = writeln!(
        s,
        "export FAKETIME_SKIP_CMDS={FAKETIME_SKIP}\nhostname {}",
        quote(&node.name)
    );
    // R: the node's root seen from here; C: how to run a command inside it.
    if node.own_root() {
        s.push_str(&own_root_mounts(node, inp.lower));
    } else {
        s.push_str(&host_fs_mounts(node));
    }
    let _ = writeln!(
        s,
        "mkdir -p $R/run/sshd\n\
         echo {name} > $R/etc/hostname\n\
         printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t{name}\\n::1\\tlocalhost ip6-localhost\\n' > $R/etc/hosts\n\
         # Only the node's own host key: the base image's keys would be shared by all nodes.\n\
         rm -f $R/etc/ssh/ssh_host_*\n\
         cp $N/ssh_host_ed25519_key $N/ssh_host_ed25519_key.pub $R/etc/ssh/\n\
         chmod 600 $R/etc/ssh/ssh_host_ed25519_key\n\
         cp $N/sshd_config $R/etc/ssh/sshd_config\n\
         $C id pi >/dev/null 2>&1 || $C useradd --create-home --user-group --shell /bin/bash pi",
        name = node.name
    );
    if node.sudo_password {
        let _ = writeln!(
            s,
            "printf 'pi:%s\\n' \"$(cat $N/sudo-password)\" | $C chpasswd\n\
             echo 'pi ALL=(ALL) ALL' > $R/etc/sudoers.d/lab-pi"
        );
    } else {
        // '*': no password can match, yet the account is not "locked" (a '!' would make sshd
        // refuse the key as well).
        s.push_str(
            "$C usermod -p '*' pi\n\
             echo 'pi ALL=(ALL) NOPASSWD: ALL' > $R/etc/sudoers.d/lab-pi\n",
        );
    }
    let _ = writeln!(
        s,
        "chmod 440 $R/etc/sudoers.d/lab-pi\n\
         mkdir -p $R/home/pi/.ssh\n\
         cp $N/authorized_keys $R/home/pi/.ssh/authorized_keys\n\
         $C chown -R pi:pi /home/pi/.ssh\n\
         chmod 700 $R/home/pi/.ssh\n\
         chmod 600 $R/home/pi/.ssh/authorized_keys"
    );
    if node.own_root() {
        // Become the node: its root turns into the mount namespace's root, and the host's
        // file system goes. A chroot would not do: `docker exec` enters a container's mount
        // namespace at that namespace's root, which would be the host's file system.
        s.push_str(
            "cd $R\n\
             pivot_root . .\n\
             umount -l .\n\
             cd /\n\
             N=/run/rpiprov-node\n\
             R=\n\
             C=\n",
        );
    }
    s.push_str(
        "# This boot's id, shown by /proc/sys/kernel/random/boot_id inside the node only.\n\
         cat /proc/sys/kernel/random/uuid > $N/boot_id\n\
         chmod 444 $N/boot_id\n\
         mount --bind $N/boot_id /proc/sys/kernel/random/boot_id\n\
         $C /usr/sbin/sshd\n",
    );
    if node.kind == Kind::Docker {
        s.push_str(
            "# Through the distribution's init script when there is one, so that `service docker\n\
             # restart` (after a daemon.json change) manages this very dockerd.\n\
             if [ -x /etc/init.d/docker ]; then\n\
             \x20 /etc/init.d/docker start >>$N/dockerd.log 2>&1 </dev/null\n\
             else\n\
             \x20 dockerd -p /run/docker.pid >>$N/dockerd.log 2>&1 </dev/null &\n\
             fi\n\
             i=0\n\
             until docker info >/dev/null 2>&1; do\n\
             \x20 i=$((i+1)); [ $i -lt 1200 ] || { echo 'dockerd did not answer in 120 s' >&2; exit 1; }\n\
             \x20 sleep 0.1\n\
             done\n",
        );
    }
    s.push_str("touch $N/ready\nexec sleep infinity\n");
    s
}

/// Directories the boot script mounts or copies from; created before the first boot and
/// kept across node restarts (they are the node's "disk").
pub fn prepare_dirs(node: &NodeSpec, dir: &Path) -> Result<()> {
    let subdirs: &[&str] = match node.kind {
        _ if node.own_root() && node.kind == Kind::Docker => {
            &["root", "root.upper", "root.work", "docker"]
        }
        Kind::Docker => &[
            "etc.upper",
            "etc.work",
            "home",
            "tmp",
            "var.upper",
            "var.work",
            "docker",
        ],
        Kind::SshdOnly => &["etc.upper", "etc.work", "home", "tmp"],
        Kind::Bare => &["root", "root.upper", "root.work"],
    };
    sys::mkdir(dir, 0o700)?;
    for d in subdirs {
        sys::mkdir(&dir.join(d), if *d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    Ok(())
}

/// Makes the command's process join a cgroup (writes `0` to its `cgroup.procs`) between
/// fork and exec, so that it and everything it starts are in the cgroup from the start.
fn join_cgroup(c: &mut Command, procs: Option<&Path>) -> Result<()> {
    let Some(path) = procs else {
        return Ok(());
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LabError::io(path, e))?;
    // SAFETY: only async-signal-safe calls (write) between fork and exec; `file` is moved
    // into the closure and stays open until the command is dropped.
    unsafe {
        c.pre_exec(move || {
            use std::os::fd::AsRawFd;
            if libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts the node's holder process, detached from this process, in the node's cgroup
/// (`cgroup_procs`, with `--cpu`); returns its identity.
pub fn spawn(node: &NodeSpec, dir: &Path, cgroup_procs: Option<&Path>) -> Result<ProcId> {
    let log_path = dir.join("boot.log");
    let log = sys::create_fresh(&log_path, 0o644)?;
    let log2 = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    let _ = fs::remove_file(dir.join("ready"));
    let mut c = cmd([
        "nsenter".to_string(),
        format!("--net=/run/netns/{}", node.netns),
        "--".into(),
        "unshare".into(),
        "--mount".into(),
        "--uts".into(),
        "--propagation".into(),
        "private".into(),
        "--".into(),
        "/bin/sh".into(),
        dir.join("boot.sh").to_string_lossy().into_owned(),
    ]);
    // The node must not inherit this command's environment (secrets such as
    // RPIPROV_SUDO_PASSWORD, the user's locale and proxies).
    c.env_clear()
        .env("PATH", PATH)
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    join_cgroup(&mut c, cgroup_procs)?;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            // Own session: no terminal signal of `lab up` reaches the node.
            libc::setsid();
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            // Best effort: on machines whose root lacks CAP_SYS_RESOURCE this fails, and
            // Docker's init script gets the shim of `NOFILE_SHIM` instead.
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let child = c
        .spawn()
        .map_err(|e| node_err(node, format!("cannot start nsenter: {e}")))?;
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    // The child is never waited for: it outlives this command on purpose.
    drop(child);
    sys::proc_id(pid).ok_or_else(|| node_err(node, format!("boot process {pid} vanished at once")))
}

fn node_err(node: &NodeSpec, message: String) -> LabError {
    LabError::Node {
        node: node.name.clone(),
        message,
    }
}

fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("boot.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n  ")
}

/// Waits for the boot script's `ready` mark; an error with the boot log when the holder dies.
pub fn wait_ready(node: &NodeSpec, dir: &Path, holder: ProcId, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if dir.join("ready").exists() && sys::alive(holder) {
            return Ok(());
        }
        if !sys::alive(holder) {
            return Err(node_err(
                node,
                format!(
                    "boot failed; {}:\n  {}",
                    dir.join("boot.log").display(),
                    log_tail(dir)
                ),
            ));
        }
        if start.elapsed() > timeout {
            return Err(node_err(
                node,
                format!(
                    "not ready after {} s; {}",
                    timeout.as_secs(),
                    dir.join("boot.log").display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pid file inside the node, read through the holder's view of the file system (its
/// root is the node's root, bare nodes included).
pub fn pid_in_node(holder: ProcId, file: &str) -> Option<ProcId> {
    let path = PathBuf::from(format!("/proc/{}/root", holder.pid)).join(file);
    let pid: i32 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
    sys::proc_id(pid).filter(|p| sys::alive(*p))
}

pub fn sshd_running(holder: ProcId) -> bool {
    sys::alive(holder) && pid_in_node(holder, "run/sshd.pid").is_some()
}

pub fn dockerd_running(holder: ProcId) -> bool {
    sys::alive(holder) && pid_in_node(holder, "run/docker.pid").is_some()
}

/// A command run inside a node (its mount, UTS and network namespaces; entering the mount
/// namespace also enters the node's root, and with `--cpu` its cgroup): how the lab and
/// the tests reach a node without SSH. Daemons started this way keep real time (see
/// [`FAKETIME_SKIP`]).
pub fn enter(holder: ProcId, cgroup_procs: Option<&Path>) -> Result<Command> {
    let mut c = cmd([
        "nsenter".to_string(),
        "--target".into(),
        holder.pid.to_string(),
        "--mount".into(),
        "--uts".into(),
        "--net".into(),
        "--".into(),
    ]);
    c.env_clear()
        .env("PATH", PATH)
        .env("LANG", "C.UTF-8")
        .env("FAKETIME_SKIP_CMDS", FAKETIME_SKIP);
    join_cgroup(&mut c, cgroup_procs)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::distro::{Distro, Distros};
    use crate::lab::layout::{Shape, plan};

    fn nodes_of(distros: &str) -> Vec<NodeSpec> {
        plan(
            Path::new("/x"),
            Shape {
                docker: 2,
                bare: 1,
                sshd_only: 0,
            },
            "198.18.0.0/24".parse().unwrap(),
            &distros.parse::<Distros>().unwrap(),
        )
        .unwrap()
        .nodes
    }

    fn nodes() -> Vec<NodeSpec> {
        nodes_of("bookworm")
    }

    fn script_with(node: &NodeSpec, lower: &[PathBuf]) -> String {
        boot_script(
            node,
            &BootInputs {
                node_dir: Path::new("/lab dir/nodes/x"),
                lower,
            },
        )
    }

    fn script(node: &NodeSpec) -> String {
        script_with(node, &[PathBuf::from("/cache/bookworm")])
    }

    #[test]
    fn a_docker_node_of_another_release_boots_its_docker_layer_over_its_base() {
        let n = &nodes_of("sid,trixie")[0];
        assert_eq!((n.kind, n.distro), (Kind::Docker, Distro::Sid));
        let lower = [
            PathBuf::from("/cache/sid-docker"),
            PathBuf::from("/cache/sid-minbase"),
        ];
        let s = script_with(n, &lower);
        assert!(s.contains("(docker, sid)"), "{s}");
        assert!(
            s.contains("B=/cache/sid-docker:/cache/sid-minbase\n"),
            "{s}"
        );
        assert!(s.contains("mount -t overlay lab-root -o lowerdir=$B,upperdir=$N/root.upper"));
        // Its own storage, its own daemon.json, its own init script and CLI: nothing of
        // the host's /usr, so no CLI to bind over another.
        let storage = s
            .find("mount --bind $N/docker $R/var/lib/docker\n")
            .unwrap();
        assert!(storage < s.find("pivot_root . .").unwrap());
        assert!(s.contains("cp $N/daemon.json $R/etc/docker/daemon.json"));
        assert!(!s.contains("/usr/local/bin/docker"), "{s}");
        assert!(!s.contains("lowerdir=/etc"), "{s}");
        let sshd = s.find("/usr/sbin/sshd").unwrap();
        let dockerd = s.find("/etc/init.d/docker start").unwrap();
        assert!(s.find("pivot_root . .").unwrap() < sshd && sshd < dockerd);
        assert!(s.ends_with("touch $N/ready\nexec sleep infinity\n"));
        let tmp = tempfile::tempdir().unwrap();
        let nd = tmp.path().join("pi1");
        prepare_dirs(n, &nd).unwrap();
        assert!(nd.join("docker").is_dir() && nd.join("root.upper").is_dir());
        assert!(!nd.join("etc.upper").exists());
    }

    #[test]
    fn docker_node_gets_private_run_etc_var_and_its_own_dockerd() {
        let s = script(&nodes()[0]);
        assert!(s.contains("N='/lab dir/nodes/x'\n"), "{s}");
        assert!(s.contains("hostname pi1\n"));
        // The node directory is reached through a bind made before any mount can hide it.
        let bind = s.find("mount --bind $N /mnt\nN=/mnt\n").unwrap();
        assert!(bind < s.find("lab-run /run").unwrap());
        assert!(s.contains("mount -t tmpfs -o mode=0755 lab-run /run\n"));
        assert!(s.contains("lowerdir=/etc,upperdir=$N/etc.upper"));
        assert!(s.contains("mount --bind $N/docker /var/lib/docker\n"));
        assert!(s.contains("dockerd -p /run/docker.pid"));
        assert!(s.contains("NOPASSWD"));
        // Debian's docker CLI under every name, before sshd serves a session.
        let cli = s
            .find("mount --bind /usr/bin/docker /usr/local/bin/docker")
            .unwrap();
        assert!(cli < s.find("/usr/sbin/sshd").unwrap());
        assert!(!script(&nodes()[2]).contains("/usr/local/bin/docker"));
        assert!(s.ends_with("touch $N/ready\nexec sleep infinity\n"));
    }

    #[test]
    fn second_node_asks_for_the_password_from_the_file() {
        let s = script(&nodes()[1]);
        assert!(
            s.contains("\"$(cat $N/sudo-password)\" | $C chpasswd\n"),
            "{s}"
        );
        assert!(s.contains("echo 'pi ALL=(ALL) ALL' > $R/etc/sudoers.d/lab-pi\n"));
        assert!(!s.contains("NOPASSWD"));
    }

    #[test]
    fn bare_node_is_its_own_root_over_an_overlay_without_dockerd() {
        let s = script(&nodes()[2]);
        assert!(s.contains("B=/cache/bookworm\n"), "{s}");
        assert!(s.contains("mount -t overlay lab-root -o lowerdir=$B,upperdir=$N/root.upper"));
        assert!(s.contains("mount -t proc proc $R/proc\n"));
        assert!(s.contains("cp -L /etc/resolv.conf $R/etc/resolv.conf\n"));
        // The node's root becomes the namespace's root before sshd starts in it.
        let pivot = s
            .find("cd $R\npivot_root . .\numount -l .\ncd /\n")
            .unwrap();
        assert!(pivot < s.find("/usr/sbin/sshd").unwrap());
        assert!(
            !s.contains("dockerd -p") && !s.contains("init.d/docker start"),
            "{s}"
        );
    }

    #[test]
    fn sshd_listens_on_the_node_address_only_with_keys_only() {
        let c = sshd_config(&nodes()[2]);
        assert!(c.contains("ListenAddress 198.18.0.13:22\n"));
        assert!(c.contains("PasswordAuthentication no\n"));
        assert!(c.contains("HostKey /etc/ssh/ssh_host_ed25519_key\n"));
    }

    #[test]
    fn docker_ranges_stay_inside_the_benchmark_block() {
        let j: serde_json::Value =
            serde_json::from_str(&daemon_json(Kind::Docker, None).unwrap()).unwrap();
        assert_eq!(j["bip"], "198.18.254.1/24");
        assert_eq!(j["default-address-pools"][0]["base"], "198.18.128.0/18");
        assert!(j.get("cgroup-parent").is_none());
    }

    #[test]
    fn with_a_cpu_cap_containers_go_under_the_node_cgroup_even_on_bare_nodes() {
        let parent = Some("/rpiprov-lab/abc/pi1");
        let j: serde_json::Value =
            serde_json::from_str(&daemon_json(Kind::Docker, parent).unwrap()).unwrap();
        assert_eq!(j["cgroup-parent"], "/rpiprov-lab/abc/pi1");
        assert_eq!(j["bip"], "198.18.254.1/24");
        assert_eq!(
            daemon_json(Kind::Bare, parent).unwrap(),
            "{\n  \"cgroup-parent\": \"/rpiprov-lab/abc/pi1\"\n}\n"
        );
        assert_eq!(daemon_json(Kind::Bare, None), None);
        assert_eq!(daemon_json(Kind::SshdOnly, parent), None);
        assert!(script(&nodes()[2]).contains("cp $N/daemon.json $R/etc/docker/daemon.json"));
    }

    #[test]
    fn every_boot_gets_its_own_boot_id_and_daemons_keep_real_time() {
        for n in nodes() {
            let s = script(&n);
            let bind = s
                .find("mount --bind $N/boot_id /proc/sys/kernel/random/boot_id\n")
                .unwrap();
            assert!(
                s.find("cat /proc/sys/kernel/random/uuid > $N/boot_id\n")
                    .unwrap()
                    < bind
            );
            assert!(bind < s.find("/usr/sbin/sshd").unwrap(), "{s}");
            assert!(s.contains(&format!("export FAKETIME_SKIP_CMDS={FAKETIME_SKIP}\n")));
        }
    }
}
