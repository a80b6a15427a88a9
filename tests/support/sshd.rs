//! Real OpenSSH servers for the transport tests: each test starts its own `sshd` on a free
//! loopback port, with host keys generated for it in a temporary folder, and stops it (by
//! its pid, nothing else) when the guard is dropped.
//!
//! The tests run as root (sshd needs it to switch users). They log in as a dedicated
//! system user, [`TEST_USER`], created here if missing, whose sudo rule asks for a password.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const TEST_USER: &str = "rpiprov-test";
/// A second user whose sudo needs no password.
pub const NOPASSWD_USER: &str = "rpiprov-test-np";
/// The test user's login and sudo password. Tests assert it never shows up in output.
pub const TEST_PASSWORD: &str = "Rp1prov-sudo-Pw-93x";

/// The sshd binary: `RPIPROV_TEST_SSHD`, else where Debian installs it (sshd insists on
/// being started by absolute path).
fn sshd_binary() -> PathBuf {
    std::env::var_os("RPIPROV_TEST_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"))
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// uid and gid of a user.
pub fn user_ids(user: &str) -> (u32, u32) {
    let out = run(Command::new("id").arg("-u").arg(user));
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = run(Command::new("id").arg("-g").arg(user));
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (uid, gid)
}

/// uid and gid of [`TEST_USER`].
pub fn test_user_ids() -> (u32, u32) {
    user_ids(TEST_USER)
}

pub fn chown_to(path: &Path, user: &str) {
    let (uid, gid) = user_ids(user);
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

pub fn chown_to_test_user(path: &Path) {
    chown_to(path, TEST_USER);
}

/// Creates `user` if missing, sets its password and writes its sudoers drop-in (checked
/// with visudo, mode 0440, replaced only when it differs). Idempotent.
fn ensure_user(user: &str, password: &str, sudo_rule: &str) {
    let exists = Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", user]));
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd failed");

    let rule = format!(
        "# Written by rpiprov's transport tests.\n\
         Defaults:{user} !mail_badpass, !lecture\n\
         {user} {sudo_rule}\n"
    );
    let sudoers = Path::new("/etc/sudoers.d").join(user);
    if fs::read_to_string(&sudoers).ok().as_deref() != Some(rule.as_str()) {
        // A name with a dot: sudo's includedir ignores it while it is being checked.
        let tmp = sudoers.with_extension("rpiprov-tmp");
        fs::write(&tmp, &rule).unwrap();
        chmod(&tmp, 0o440);
        run(Command::new("visudo").arg("-cf").arg(&tmp));
        fs::rename(&tmp, &sudoers).unwrap();
    }
}

/// Creates the test users (one whose sudo asks for its password, one with NOPASSWD, like
/// Raspberry Pi OS's default user) and the privilege separation folder sshd wants.
/// Idempotent; once per test process.
pub fn ensure_system_setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the transport tests start sshd and create the user {TEST_USER}: run them as root"
        );
        assert!(
            sshd_binary().exists(),
            "OpenSSH sshd not found at {} (set RPIPROV_TEST_SSHD)",
            sshd_binary().display()
        );
        ensure_user(TEST_USER, TEST_PASSWORD, "ALL=(ALL:ALL) ALL");
        ensure_user(NOPASSWD_USER, TEST_PASSWORD, "ALL=(ALL:ALL) NOPASSWD: ALL");
        let privsep = Path::new("/run/sshd");
        if !privsep.exists() {
            fs::create_dir_all(privsep).unwrap();
            chmod(privsep, 0o755);
        }
    });
}

/// A client key pair in `dir`; `passphrase` encrypts the private key.
pub struct Key {
    pub path: PathBuf,
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> Key {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path));
    let public = fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    Key { path, public }
}

/// How to start one server.
pub struct SshdConfig {
    /// Host key types (`ed25519`, `ecdsa`, `rsa`).
    pub host_keys: Vec<&'static str>,
    /// Public keys (authorized_keys lines) accepted for [`TEST_USER`] and [`NOPASSWD_USER`].
    pub authorized: Vec<String>,
    /// More sshd_config lines.
    pub extra: Vec<String>,
    pub listen: &'static str,
}

impl Default for SshdConfig {
    fn default() -> Self {
        SshdConfig {
            host_keys: vec!["ed25519"],
            authorized: Vec::new(),
            extra: Vec::new(),
            listen: "127.0.0.1",
        }
    }
}

/// A running sshd; stopped when dropped.
pub struct Sshd {
    pub dir: TempDir,
    pub addr: String,
    pub port: u16,
    /// `(type, "ssh-ed25519 AAAA...")` for each host key.
    pub host_keys: Vec<(String, String)>,
    child: Child,
    log: PathBuf,
}

impl Sshd {
    pub fn start(cfg: SshdConfig) -> Sshd {
        ensure_system_setup();
        let dir = tempfile::Builder::new()
            .prefix("rpiprov-sshd-")
            .tempdir()
            .unwrap();
        // Others (the test user) must traverse it to read their authorized_keys file.
        chmod(dir.path(), 0o711);
        let keys_dir = dir.path().join("hostkeys");
        fs::create_dir(&keys_dir).unwrap();
        chmod(&keys_dir, 0o700);
        let mut host_keys = Vec::new();
        for kind in &cfg.host_keys {
            let k = keygen(&keys_dir, &format!("ssh_host_{kind}_key"), kind, "");
            host_keys.push((kind.to_string(), strip_comment(&k.public)));
        }
        let auth = dir.path().join("auth");
        fs::create_dir(&auth).unwrap();
        chmod(&auth, 0o711);
        for user in [TEST_USER, NOPASSWD_USER] {
            let user_keys = auth.join(user);
            fs::write(&user_keys, cfg.authorized.join("\n") + "\n").unwrap();
            chmod(&user_keys, 0o600);
            chown_to(&user_keys, user);
        }

        let log = dir.path().join("sshd.log");
        for attempt in 0..5 {
            let port = free_port(cfg.listen);
            let mut conf = vec![
                format!("Port {port}"),
                format!("ListenAddress {}", cfg.listen),
                format!("PidFile {}", dir.path().join("sshd.pid").display()),
                format!("AuthorizedKeysFile {}/%u", auth.display()),
                "StrictModes no".into(),
                "UsePAM no".into(),
                "PasswordAuthentication yes".into(),
                "KbdInteractiveAuthentication no".into(),
                "PermitRootLogin no".into(),
                "LogLevel VERBOSE".into(),
                "PrintMotd no".into(),
            ];
            for kind in &cfg.host_keys {
                conf.push(format!(
                    "HostKey {}",
                    keys_dir.join(format!("ssh_host_{kind}_key")).display()
                ));
            }
            // Options given by the test come first: for most keywords sshd keeps the first.
            let mut lines = cfg.extra.clone();
            lines.extend(conf);
            let conf_path = dir.path().join("sshd_config");
            fs::write(&conf_path, lines.join("\n") + "\n").unwrap();
            let mut child = Command::new(sshd_binary())
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("cannot start sshd");
            if wait_listening(&mut child, &log) {
                return Sshd {
                    dir,
                    addr: cfg.listen.to_string(),
                    port,
                    host_keys,
                    child,
                    log,
                };
            }
            // Most likely the port was taken between our probe and sshd's bind.
            eprintln!(
                "sshd attempt {attempt} failed: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The public host key of that type, `"ssh-ed25519 AAAA..."`.
    pub fn host_key(&self, kind: &str) -> &str {
        &self
            .host_keys
            .iter()
            .find(|(k, _)| k == kind)
            .expect("no such host key")
            .1
    }

    /// The known_hosts name of this server.
    pub fn known_hosts_name(&self) -> String {
        format!("[{}]:{}", self.addr, self.port)
    }

    /// A known_hosts line for one of its host keys.
    pub fn known_hosts_line(&self, kind: &str) -> String {
        format!("{} {}\n", self.known_hosts_name(), self.host_key(kind))
    }
}

fn wait_listening(child: &mut Child, log: &Path) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if fs::read_to_string(log)
            .unwrap_or_default()
            .contains("Server listening on")
        {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the sshd this guard started, by its pid. Its per-connection children end
        // with their connections.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_comment(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port that was free a moment ago on `addr`.
pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An ssh-agent of our own on a socket in `dir`, stopped by pid when dropped.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start ssh-agent");
        let agent = Agent { socket, child };
        let until = Instant::now() + Duration::from_secs(5);
        while !agent.socket.exists() {
            assert!(
                Instant::now() < until,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
