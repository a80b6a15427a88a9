//! One VM node's life: its directory (`DIR/nodes/<name>/`: host key, initramfs with its
//! seed, `disk.qcow2` over the image, the console log, the agent and QMP sockets), its tap
//! in the lab's bridge, its qemu process (the node's "holder" in `state.json`), and the
//! wait for its SSH login. The disk is the node's SD card: it stays across `lab reboot`
//! and a restart of a broken node; `lab down` removes it with the directory.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::super::error::{LabError, Result};
use super::super::files::{self, CLIENT_KEY};
use super::super::layout::{Kind, Layout, NodeSpec};
use super::super::node::node_dir;
use super::super::state::Shared;
use super::super::sys::{self, ProcId, cmd, run, succeeds};
use super::agent::Agent;
use super::image::Images;
use super::qemu::{self, Accel, CONSOLE, Machine};
use super::{VmNode, cmdline, seed};

const DISK: &str = "disk.qcow2";
const INITRD: &str = "initrd.img";
/// The node's own host key, for the login check before the lab's known_hosts is written.
const KNOWN_HOSTS: &str = "known_hosts";
pub const READY: &str = "ready";

fn vm_of(spec: &NodeSpec) -> &VmNode {
    spec.vm.as_ref().expect("a VM node")
}

fn node_err(spec: &NodeSpec, message: String) -> LabError {
    LabError::Node {
        node: spec.name.clone(),
        message,
    }
}

/// Starts the VM of `spec` from `images` (after its seed, disk and tap are in place);
/// returns its qemu process, recorded in the state.
pub fn start(
    state: &Shared,
    dir: &Path,
    spec: &NodeSpec,
    images: &Images,
    accel: Accel,
) -> Result<ProcId> {
    let vm = vm_of(spec);
    let layout = state.read(|s| s.layout.clone());
    let nd = node_dir(dir, &spec.name);
    sys::mkdir(&nd, 0o700)?;
    files::ensure_key(
        &nd.join("ssh_host_ed25519_key"),
        &format!("root@{}", spec.name),
    )?;
    let host_key = fs::read_to_string(nd.join("ssh_host_ed25519_key.pub"))
        .map_err(|e| LabError::io(nd.join("ssh_host_ed25519_key.pub"), e))?;
    let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    sys::write_file(
        &nd.join(KNOWN_HOSTS),
        format!("{} {}\n", spec.address, key.join(" ")).as_bytes(),
        0o644,
    )?;
    write_initrd(dir, &nd, spec, vm, &layout, images)?;
    ensure_disk(&nd, &images.disk)?;
    create_tap(state, &layout, spec)?;
    let _ = fs::remove_file(nd.join(READY));
    let line = cmdline(vm);
    let argv = qemu::argv(&Machine {
        name: &spec.name,
        arch: vm.arch,
        accel,
        kernel: &images.kernel,
        initrd: Path::new(INITRD),
        cmdline: &line,
        disk: DISK,
        tap: &spec.veth,
        mac: &vm.mac,
    });
    // For whoever debugs a node: the very command line, readable.
    sys::write_file(
        &nd.join("qemu.argv"),
        (crate::shell::join(argv.clone()) + "\n").as_bytes(),
        0o644,
    )?;
    let holder = qemu::spawn(&spec.name, &nd, &argv)?;
    state.record(|s| s.nodes.entry(spec.name.clone()).or_default().holder = Some(holder))?;
    Ok(holder)
}

/// The image's initramfs with this node's seed appended (0600: it holds the sudo password).
fn write_initrd(
    dir: &Path,
    nd: &Path,
    spec: &NodeSpec,
    vm: &VmNode,
    layout: &Layout,
    images: &Images,
) -> Result<()> {
    let files = seed::files(spec, vm, dir, nd, layout.prefix, layout.gateway())?;
    let stage = sys::temp_dir(nd, "seed")?;
    let cpio = seed::archive(&stage, &files);
    let _ = fs::remove_dir_all(&stage);
    let base = fs::read(&images.initrd).map_err(|e| LabError::io(&images.initrd, e))?;
    sys::write_file(&nd.join(INITRD), &seed::initrd(&base, &cpio?), 0o600)
}

/// The node's copy-on-write disk over the image, made once (its "SD card").
fn ensure_disk(nd: &Path, image: &Path) -> Result<()> {
    let disk = nd.join(DISK);
    if disk.is_file() {
        return Ok(());
    }
    let tmp = nd.join(format!(".{DISK}{}", sys::TMP_SUFFIX));
    let _ = fs::remove_file(&tmp);
    run(cmd([
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        &image.to_string_lossy(),
        &tmp.to_string_lossy(),
    ]))?;
    fs::rename(&tmp, &disk).map_err(|e| LabError::io(&disk, e))
}

/// The node's tap, in the bridge (recorded before it is made; `down` deletes it by name).
fn create_tap(state: &Shared, layout: &Layout, spec: &NodeSpec) -> Result<()> {
    state.record(|s| s.nodes.entry(spec.name.clone()).or_default().veth = true)?;
    let tap = &spec.veth;
    if !succeeds(cmd(["ip", "link", "show", "dev", tap])) {
        run(cmd(["ip", "tuntap", "add", "dev", tap, "mode", "tap"]))?;
    }
    run(cmd([
        "ip",
        "link",
        "set",
        tap,
        "master",
        &layout.bridge,
        "up",
    ]))?;
    Ok(())
}

fn console_tail(nd: &Path) -> String {
    let text = fs::read(nd.join(CONSOLE)).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n  ")
}

/// A login as `pi` with the lab's key, the node's host key checked: what a user (and
/// rpiprov) will do first. A port that accepts is not enough: sshd may not serve yet.
pub fn ssh_login(dir: &Path, spec: &NodeSpec) -> bool {
    let nd = node_dir(dir, &spec.name);
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .args([
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
    ])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        nd.join(KNOWN_HOSTS).display()
    ))
    .args([
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=2",
    ])
    .arg("-i")
    .arg(dir.join(CLIENT_KEY))
    .arg(format!("pi@{}", spec.address))
    .arg("true")
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c.status().is_ok_and(|s| s.success())
}

fn docker_answers(agent: &Agent) -> bool {
    agent
        .run("docker info >/dev/null", &[], None, Duration::from_secs(30))
        .is_ok()
}

/// Waits until the node's agent answers (and its boot id is no longer `old`, after a
/// reboot), `pi` logs in over SSH and, where Docker is installed, `docker info` answers.
pub fn wait_boot(
    dir: &Path,
    spec: &NodeSpec,
    holder: ProcId,
    timeout: Duration,
    old: Option<&str>,
) -> Result<String> {
    let nd = node_dir(dir, &spec.name);
    let agent = Agent::new(&nd);
    let started = Instant::now();
    let mut stage = "the guest agent";
    loop {
        if !sys::alive(holder) {
            return Err(node_err(
                spec,
                format!(
                    "qemu ended; {}:\n  {}",
                    nd.join(CONSOLE).display(),
                    console_tail(&nd)
                ),
            ));
        }
        if started.elapsed() > timeout {
            return Err(node_err(
                spec,
                format!(
                    "waited {} s for {stage}; {}:\n  {}",
                    timeout.as_secs(),
                    nd.join(CONSOLE).display(),
                    console_tail(&nd)
                ),
            ));
        }
        if let Ok(id) = agent.run(
            "cat /proc/sys/kernel/random/boot_id; if command -v dockerd >/dev/null; then echo docker; fi",
            &[],
            None,
            Duration::from_secs(5),
        ) {
            let mut lines = id.lines();
            let boot_id = lines.next().unwrap_or("").trim().to_string();
            let docker = spec.kind == Kind::Docker || lines.next() == Some("docker");
            if old.is_some_and(|o| o == boot_id) {
                stage = "the reboot";
            } else if !ssh_login(dir, spec) {
                stage = "an SSH login";
            } else if docker && !docker_answers(&agent) {
                stage = "docker info";
            } else {
                return Ok(boot_id);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// [`wait_boot`] after `lab up` started the node; marks it ready.
pub fn wait_ready(dir: &Path, spec: &NodeSpec, holder: ProcId, timeout: Duration) -> Result<()> {
    wait_boot(dir, spec, holder, timeout, None)?;
    sys::write_file(&node_dir(dir, &spec.name).join(READY), b"", 0o644)
}

fn port_open(spec: &NodeSpec) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((spec.address, 22)),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// Up as `lab up` left it: qemu runs, it was ready, port 22 accepts, and a Docker node's
/// dockerd answers.
pub fn is_up(dir: &Path, spec: &NodeSpec, holder: Option<ProcId>) -> bool {
    let nd = node_dir(dir, &spec.name);
    holder.is_some_and(sys::alive)
        && nd.join(READY).exists()
        && port_open(spec)
        && (spec.kind != Kind::Docker || docker_answers(&Agent::new(&nd)))
}

/// What `lab status` shows: sshd (port 22 accepts), dockerd (its unit active; `None` where
/// Docker is not installed).
pub fn status(dir: &Path, spec: &NodeSpec, holder: Option<ProcId>) -> (bool, Option<bool>) {
    let alive = holder.is_some_and(sys::alive);
    let docker_kind = (spec.kind == Kind::Docker).then_some(false);
    if !alive {
        return (false, docker_kind);
    }
    let agent = Agent::new(&node_dir(dir, &spec.name));
    let dockerd = match agent.run(DOCKERD_STATE, &[], None, Duration::from_secs(10)) {
        Ok(s) if s.trim() == "up" => Some(true),
        Ok(s) if s.trim() == "none" => None,
        Ok(_) => Some(false),
        // No answer: down where Docker belongs, unknown (as not installed) elsewhere.
        Err(_) => docker_kind,
    };
    (port_open(spec), dockerd)
}

const DOCKERD_STATE: &str = "if command -v dockerd >/dev/null; then \
     if systemctl is-active --quiet docker.service; then echo up; else echo down; fi; \
     else echo none; fi";

/// The node's directory, for the fault commands.
pub fn dir_of(dir: &Path, spec: &NodeSpec) -> PathBuf {
    node_dir(dir, &spec.name)
}
