//! A lab fleet for end-to-end tests: `Fleet::up` runs the real binary's `lab up` in a fresh
//! temporary directory, and dropping the guard runs `lab down`, whether the test passed,
//! failed or panicked. Fleets are serialised with a file lock: two labs would compete for
//! the same node addresses, and a test binary runs its tests in parallel threads.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rpiprov");

/// The lab needs root (namespaces, iptables). Without it the fleet tests fail, saying so,
/// rather than pass having checked nothing: run them with `sudo scripts/test.sh`.
pub fn can_run() -> bool {
    // SAFETY: plain syscall without arguments.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the lab fleet tests need root (network namespaces): run sudo scripts/test.sh"
    );
    root
}

/// Where the debootstrap base is cached between test runs (`RPIPROV_LAB_CACHE` wins).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RPIPROV_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache"))
}

fn lock() -> File {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-fleet.lock");
    let f = File::create(&path).expect("create the fleet lock");
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
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
    _lock: File,
}

impl Fleet {
    /// `lab up --dir <tmp> ARGS`; panics (after `lab down`) when it fails.
    pub fn up(args: &[&str]) -> Fleet {
        let lock = lock();
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
            _lock: lock,
        };
        assert!(
            fleet.up_output.status.success(),
            "lab up failed:\n{}",
            text(&fleet.up_output)
        );
        fleet
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
