//! A lab fleet for end-to-end tests: `Fleet::up` runs the real binary's `lab up` in a fresh
//! temporary directory, and dropping the guard runs `lab down`, whether the test passed,
//! failed or panicked. Each lab has its own subnet, so labs run side by side; what limits
//! them is this machine: a counting semaphore of slot files, shared by every test binary
//! and worktree of the machine, lets at most `RPIPROV_LAB_PARALLEL` (default 2) labs of
//! the tests exist at once.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rpiprov");

/// Machine-wide, so that tests of several binaries and worktrees count together.
const SLOTS_DIR: &str = "/tmp/rpiprov-lab-slots";
const PARALLEL_ENV: &str = "RPIPROV_LAB_PARALLEL";
/// The machine has 2 cores; a lab with two dockerd is about one core's work while it starts.
const DEFAULT_PARALLEL: usize = 2;

/// The lab needs root (namespaces, iptables). Without it the fleet tests fail, saying so,
/// rather than pass having checked nothing: run them with `sudo scripts/test.sh`.
pub fn require_root() {
    // SAFETY: plain syscall without arguments.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the lab fleet tests need root (network namespaces): run sudo scripts/test.sh"
    );
}

/// Where the debootstrap base is cached between test runs (`RPIPROV_LAB_CACHE` wins).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RPIPROV_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache"))
}

fn parallel() -> usize {
    std::env::var(PARALLEL_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_PARALLEL)
}

/// Slot files of the semaphore: in a directory of root's only (in /tmp, anyone could
/// otherwise plant a symlink at a slot's name), opened without following links.
fn slot_file(i: usize) -> File {
    slots_file(&format!("slot-{i}"))
}

fn slots_file(name: &str) -> File {
    let dir = Path::new(SLOTS_DIR);
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("{SLOTS_DIR}: {e}"),
    }
    let meta = std::fs::symlink_metadata(dir).unwrap();
    // SAFETY: plain syscall without arguments.
    let me = unsafe { libc::geteuid() };
    assert!(
        meta.is_dir() && meta.uid() == me && meta.mode() & 0o022 == 0,
        "{SLOTS_DIR} is not a directory of yours that only you may write: remove it"
    );
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("{SLOTS_DIR}/{name}: {e}"))
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Slots of the machine-wide lab semaphore, held until dropped.
pub struct Slots(Vec<File>);

impl Slots {
    /// Takes `want` slots (at most all there are). One slot: the first free one. More:
    /// under a machine-wide `multi` lock, so that only one taker at a time holds slots
    /// while waiting for more (no two of them can deadlock), and it keeps what it got (it
    /// is not starved by takers of one slot, who never wait holding one).
    pub fn acquire(want: usize) -> Slots {
        let n = parallel();
        let want = want.clamp(1, n);
        let _multi = (want > 1).then(|| {
            let f = slots_file("multi");
            // SAFETY: flock on a descriptor we own; released when the file is closed.
            assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
            f
        });
        let started = Instant::now();
        let mut told = false;
        let mut held: Vec<(usize, File)> = Vec::new();
        loop {
            for i in 0..n {
                if held.len() == want {
                    return Slots(held.into_iter().map(|(_, f)| f).collect());
                }
                if held.iter().any(|(h, _)| *h == i) {
                    continue;
                }
                let f = slot_file(i);
                if try_lock(&f) {
                    held.push((i, f));
                }
            }
            if held.len() == want {
                return Slots(held.into_iter().map(|(_, f)| f).collect());
            }
            if !told && started.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "waiting for a lab slot: {n} labs of tests run on this machine ({PARALLEL_ENV}={n})"
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn split_off(&mut self) -> Slots {
        Slots(self.0.pop().into_iter().collect())
    }
}

pub fn lab(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("lab")
        .args(args)
        .env("RPIPROV_LAB_CACHE", cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run rpiprov")
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct Fleet {
    pub dir: PathBuf,
    pub up_output: Output,
    down_done: bool,
    // Dropped after `Drop::drop` ran `lab down`, in this order.
    _tmp: tempfile::TempDir,
    _slots: Slots,
}

impl Fleet {
    /// `lab up --dir <tmp> ARGS`; panics (after `lab down`) when it fails.
    pub fn up(args: &[&str]) -> Fleet {
        require_root();
        Fleet::start(Slots::acquire(1), args)
    }

    /// `lab up --dir <tmp> --distro RELEASES ARGS`: the Docker nodes, then the bare ones,
    /// get the releases in order, the last one repeating (`&[Distro::Sid, Distro::Trixie,
    /// Distro::Bookworm]` with the default shape: pi1 sid, pi2 trixie, pi3 bare bookworm).
    pub fn up_with(releases: &[rpiprov::lab::Distro], args: &[&str]) -> Fleet {
        require_root();
        let list: Vec<&str> = releases.iter().map(|d| d.as_str()).collect();
        let list = list.join(",");
        let mut full = vec!["--distro", &list];
        full.extend_from_slice(args);
        Fleet::start(Slots::acquire(1), &full)
    }

    /// Two labs at once, each with its own directory (and so its own subnet).
    pub fn up_pair(a: &[&str], b: &[&str]) -> (Fleet, Fleet) {
        require_root();
        let mut slots = Slots::acquire(2);
        let second = slots.split_off();
        (Fleet::start(slots, a), Fleet::start(second, b))
    }

    fn start(slots: Slots, args: &[&str]) -> Fleet {
        let tmp = tempfile::Builder::new()
            .prefix("rpiprov-lab-")
            .tempdir()
            .expect("temporary directory");
        let dir = tmp.path().join("lab");
        let dir_s = dir.to_str().unwrap().to_string();
        let mut full = vec!["up", "--dir", &dir_s];
        full.extend_from_slice(args);
        let out = lab(&full);
        let fleet = Fleet {
            dir,
            up_output: out,
            down_done: false,
            _tmp: tmp,
            _slots: slots,
        };
        assert!(
            fleet.up_output.status.success(),
            "lab up failed:\n{}",
            text(&fleet.up_output)
        );
        fleet
    }

    /// The nodes' addresses from the lab's inventory, in inventory order.
    pub fn addresses(&self) -> Vec<String> {
        self.hosts().into_iter().map(|(_, a)| a).collect()
    }

    /// `(name, address)` of every host of the lab's inventory.
    pub fn hosts(&self) -> Vec<(String, String)> {
        let inventory: toml::Value = toml::from_str(&self.read("inventory.toml")).unwrap();
        inventory["host"]
            .as_array()
            .expect("hosts in the lab inventory")
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    h["address"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The address of node `name`, from the lab's inventory.
    pub fn addr(&self, name: &str) -> String {
        self.hosts()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab inventory"))
            .1
    }

    /// The Debian release node `name` runs, as the lab recorded it.
    pub fn release(&self, name: &str) -> rpiprov::lab::Distro {
        let lab = rpiprov::lab::Lab::open(&self.dir).expect("the lab opens");
        lab.node(name).expect("a node of the lab").distro
    }

    pub fn dir_arg(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn lab(&self, sub: &str, extra: &[&str]) -> Output {
        let mut args = vec![sub, "--dir", self.dir_arg()];
        args.extend_from_slice(extra);
        lab(&args)
    }

    /// `lab down` now (the guard then does nothing more).
    pub fn down(&mut self) -> Output {
        self.down_done = true;
        self.lab("down", &[])
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The system OpenSSH client, with real host key verification against the lab's
    /// known_hosts and the lab's key only.
    pub fn ssh(&self, address: &str, command: &str, stdin: Option<&str>) -> Output {
        let mut c = Command::new("ssh");
        c.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            self.dir.join("known_hosts").display()
        ))
        .arg("-i")
        .arg(self.dir.join("id_ed25519"))
        .arg(format!("pi@{address}"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run ssh");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            std::io::Write::write_all(&mut input, s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().expect("ssh output")
    }

    /// Runs a command inside a node's namespaces, as root, without SSH; returns stdout
    /// and panics with everything when it fails.
    pub fn inside(&self, node: &str, args: &[&str]) -> String {
        in_node(
            &rpiprov::lab::Lab::open(&self.dir).expect("the lab opens"),
            node,
            args,
        )
    }

    /// `docker swarm init` by hand on `node`, at its lab address, its overlay networks in
    /// 198.19.0.0/16 (outside the lab's 198.18.0.0/15 links): a swarm rpiprov did not make.
    pub fn swarm_init(&self, node: &str) {
        let addr = self.addr(node);
        self.inside(
            node,
            &[
                "docker",
                "swarm",
                "init",
                "--advertise-addr",
                &addr,
                "--default-addr-pool",
                "198.19.0.0/16",
            ],
        );
    }

    /// `docker service ls` on `node` as `NAME REPLICAS` lines.
    pub fn service_replicas(&self, node: &str) -> String {
        self.inside(
            node,
            &[
                "docker",
                "service",
                "ls",
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        )
    }

    /// Runs over SSH and returns stdout; panics with everything when it fails.
    pub fn ssh_ok(&self, address: &str, command: &str) -> String {
        let out = self.ssh(address, command, None);
        assert!(
            out.status.success(),
            "ssh {address} {command:?}:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where the binary keeps its state (its installation id) in these tests: inside the
    /// lab's folder, gone with it, never in the home of whoever runs the tests.
    pub fn state_home(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Runs the real binary with `-i` this lab's inventory, as a script would: no
    /// terminal, the sudo password of the node that asks for one in the environment.
    pub fn rpiprov(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-i")
            .arg(self.dir.join("inventory.toml"))
            .args(args)
            .env("RPIPROV_SUDO_PASSWORD", self.read("sudo-password").trim())
            .env("XDG_STATE_HOME", self.state_home())
            .stdin(Stdio::null())
            .output()
            .expect("run rpiprov")
    }

    /// A root shell command on node `name`, over SSH and sudo (the sudo password on
    /// stdin, which nodes with password-less sudo ignore); returns stdout, panics with
    /// everything when it fails.
    pub fn root(&self, name: &str, cmd: &str) -> String {
        let quoted = rpiprov::shell::quote(cmd);
        let password = format!("{}\n", self.read("sudo-password").trim());
        let out = self.ssh(
            &self.addr(name),
            &format!("sudo -S -p '' sh -c {quoted}"),
            Some(&password),
        );
        assert!(out.status.success(), "{cmd} on {name}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Fleet {
    /// A command inside node `name`'s namespaces, as root (no SSH: it works with the
    /// node's link cut or its sshd down); `None` when it fails or cannot start.
    pub fn try_inside(&self, name: &str, args: &[&str]) -> Option<String> {
        run_in(&rpiprov::lab::Lab::open(&self.dir).ok()?, name, args)
    }
}

/// A command inside node `name` of an open lab, as root (for threads of a test, which
/// open their own); `None` when it fails or cannot start.
pub fn run_in(lab: &rpiprov::lab::Lab, name: &str, args: &[&str]) -> Option<String> {
    let out = lab.enter(name).ok()?.args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// As [`run_in`]; panics with everything when it fails.
pub fn in_node(lab: &rpiprov::lab::Lab, name: &str, args: &[&str]) -> String {
    let out = lab
        .enter(name)
        .expect("the node exists")
        .args(args)
        .output()
        .expect("run inside the node");
    assert!(out.status.success(), "{args:?} in {name}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `--json` document a command printed on stdout; panics with everything when there
/// is none.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The row of `host` (a label: `pi2`, `stack web`) in a `--json` document.
pub fn row_of<'a>(doc: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    doc["hosts"]
        .as_array()
        .expect("rows in the document")
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no row {host}: {doc:#}"))
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if !self.down_done {
            let out = self.lab("down", &[]);
            if !out.status.success() {
                eprintln!("lab down after the test failed:\n{}", text(&out));
            }
        }
    }
}

/// An HTTP GET over plain TCP; the lab nodes' addresses are reachable from here.
pub fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.starts_with("HTTP/1") => return body,
            _ if Instant::now() > deadline => panic!("no HTTP answer from {addr}: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}
