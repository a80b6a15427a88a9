//! Real OpenSSH servers for the transport tests: each test starts its own `sshd` on a free
//! loopback port, with host keys generated for it in a temporary folder, and stops it (by
//! its pid, nothing else) when the guard is dropped.
//!
//! # The test users exist only inside each test sshd
//!
//! The tests log in as [`TEST_USER`] (whose sudo asks for a password) and [`NOPASSWD_USER`]
//! (NOPASSWD sudo, like Raspberry Pi OS's default user). Users on this machine with a known
//! password and root through sudo would be a door for anyone who reaches any sshd of the
//! machine (the system's, when it runs), so they are never created here. Instead each test
//! sshd is started by `unshare --mount` in a mount namespace of its own, where, before it
//! `exec`s sshd, a setup script mounts:
//!
//! - a tmpfs over `/run` (sshd's privilege separation folder, sudo's timestamps; it also
//!   hides the sockets of nscd and systemd-userdb, so that user lookups read the files);
//! - an overlay over `/etc` whose writable layer is on that tmpfs: the users are added to
//!   its `passwd`, `shadow` and `group`, their sudo rules to its `sudoers.d`;
//! - a tmpfs over `/home` for their home folders.
//!
//! Only processes in that namespace (the test sshd, its sessions, their sudo) see the users;
//! the system's sshd, `su`, `login` and every other process of the machine do not know them,
//! and `/etc` on disk is never written. The namespace, with its users, sudo rules and their
//! password hashes (which only ever were in memory), ends with the last of its processes:
//! the sshd is killed by the guard's `Drop` (also when a test fails or panics) and, as
//! `PR_SET_PDEATHSIG` asks the kernel, when the test process dies (killed by a signal).
//! Only the temporary folders of a killed process remain (host keys, the test's client
//! keys, logs): the first server of the next test process removes them
//! ([`remove_stale_folders`]).
//!
//! [`TEST_USER`]'s password is random, drawn once per test process and never written
//! anywhere but to `chpasswd`'s stdin inside the namespace; [`NOPASSWD_USER`] has none
//! (key only; client keys are in folders only root may enter). So while a test server
//! listens on loopback, another user of the machine cannot log in to it either. Both
//! users get user ids that are free on this machine.
//!
//! Earlier versions of these tests created both users on the machine itself, with a fixed
//! password and sudo rules in `/etc/sudoers.d`, and never removed them: the first server
//! a test process starts removes such leftovers (see [`remove_legacy_users`]).
//!
//! The kernel sends the parent-death signal when the *thread* that started the sshd ends,
//! so a server lives at most as long as that thread. Tests start and drop their servers on
//! the test's own thread (`#[tokio::test]` runs tasks there), which is what they need.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const TEST_USER: &str = "rpiprov-test";
/// A second user whose sudo needs no password; it has no password at all.
pub const NOPASSWD_USER: &str = "rpiprov-test-np";
/// Marks the sudoers drop-ins that earlier versions of these tests wrote on the machine.
const LEGACY_MARK: &str = "# Written by rpiprov's transport tests.";

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

/// [`TEST_USER`]'s login and sudo password: random, drawn once per test process. Tests
/// assert it never shows up in output.
pub fn test_password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut bytes = [0u8; 24];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("read /dev/urandom");
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect()
    })
}

/// The user ids of [`TEST_USER`] and [`NOPASSWD_USER`] (each user's group has the same
/// id): the first two ids from 42000 on that no user and no group of this machine has.
fn test_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let mut taken = std::collections::HashSet::new();
        for file in ["/etc/passwd", "/etc/group"] {
            for line in fs::read_to_string(file).unwrap_or_default().lines() {
                if let Some(id) = line.split(':').nth(2).and_then(|f| f.parse::<u32>().ok()) {
                    taken.insert(id);
                }
            }
        }
        let mut free = (42000..).filter(|id| !taken.contains(id));
        (free.next().unwrap(), free.next().unwrap())
    })
}

/// uid and gid of `user` (one of the two test users) in the test sshd's namespace.
pub fn user_ids(user: &str) -> (u32, u32) {
    let (test, np) = test_ids();
    match user {
        TEST_USER => (test, test),
        NOPASSWD_USER => (np, np),
        other => panic!("{other} is not a test user"),
    }
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

/// Whether this machine (not a test sshd's namespace) knows `user`.
pub fn machine_has_user(user: &str) -> bool {
    Command::new("getent")
        .args(["passwd", user])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Files in `/etc/sudoers.d` of this machine that name a test user.
pub fn machine_sudo_rules_for_test_users() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/etc/sudoers.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEST_USER) || text.contains(TEST_USER) {
            found.push(entry.path());
        }
    }
    found
}

/// Removes what earlier versions of these tests left on the machine: the sudo rules they
/// wrote (marked with [`LEGACY_MARK`]) first, which takes root away at once, then the two
/// users with their home folders. `userdel -f`: processes of other namespaces (a lab
/// node's user, a test sshd's) may share the user's id, and a plain userdel refuses then.
pub fn remove_legacy_users() {
    for user in [TEST_USER, NOPASSWD_USER] {
        let rule = Path::new("/etc/sudoers.d").join(user);
        if fs::read_to_string(&rule).is_ok_and(|t| t.starts_with(LEGACY_MARK)) {
            fs::remove_file(&rule).unwrap();
            eprintln!("removed {} left by an earlier test run", rule.display());
        }
        if machine_has_user(user) {
            let out = Command::new("userdel")
                .args(["-f", "-r", user])
                .output()
                .unwrap();
            if out.status.success() {
                eprintln!("removed user {user} left by an earlier test run");
            } else {
                eprintln!(
                    "warning: cannot remove user {user} left by an earlier test run: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// Removes the temporary folders of test processes that were killed before they could
/// (their servers died with them): a server folder whose sshd no longer runs, and a client
/// folder (`rpiprov-client-*`, made by the tests), once older than any test runs. Servers
/// of other test processes running now are left alone: they run (checked through the
/// pid file) or are younger than that.
pub fn remove_stale_folders() {
    const OLD: Duration = Duration::from_secs(30 * 60);
    let tmp = std::env::temp_dir();
    for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > OLD));
        let stale = if name.starts_with("rpiprov-sshd-") {
            old && !server_runs(&path)
        } else {
            name.starts_with("rpiprov-client-") && old
        };
        if stale && fs::remove_dir_all(&path).is_ok() {
            eprintln!("removed {} left by a killed test run", path.display());
        }
    }
}

/// Whether the sshd of a server folder runs: its pid file names a process whose command
/// line (which sshd rewrites into one string) holds the folder's config.
fn server_runs(dir: &Path) -> bool {
    let Some(pid) = fs::read_to_string(dir.join("sshd.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let conf = dir.join("sshd_config");
    let conf = conf.as_os_str().as_encoded_bytes();
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(conf.len()).any(|w| w == conf))
}

/// Checks what every server needs, and removes leftovers of killed runs and of earlier
/// versions; once per test process.
pub fn ensure_system_setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the transport tests start sshd in mount namespaces of their own: run them as root"
        );
        assert!(
            sshd_binary().exists(),
            "OpenSSH sshd not found at {} (set RPIPROV_TEST_SSHD)",
            sshd_binary().display()
        );
        remove_legacy_users();
        remove_stale_folders();
    });
}

/// Run by `sh` inside the new mount namespace, then replaced by sshd (same pid). Arguments:
/// `users` (`yes` or `no`), the sshd binary, its config, the two user ids. With users,
/// stdin holds `rpiprov-test:PASSWORD` for chpasswd.
const NAMESPACE_SETUP: &str = r#"set -eu
users=$1 sshd=$2 conf=$3 test_id=$4 np_id=$5
# Memory only, and seen only in this namespace (see tests/support/sshd.rs).
mount -t tmpfs -o mode=0755,size=16m rpiprov-test-run /run
mkdir -m 0755 /run/sshd
if [ "$users" = yes ]; then
  # The merged /etc takes its mode from the upper folder: 0755 as /etc, or users cannot read passwd.
  mkdir -m 0755 /run/etc-upper
  mkdir -m 0700 /run/etc-work
  mount -t overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work rpiprov-test-etc /etc
  mount -t tmpfs -o mode=0755,size=16m rpiprov-test-home /home
  add_user() { # name id sudo-rule
    sed -i "/^$1:/d" /etc/passwd /etc/shadow /etc/group
    echo "$1:x:$2:$2:rpiprov transport tests:/home/$1:/bin/sh" >>/etc/passwd
    echo "$1:*:::::::" >>/etc/shadow
    echo "$1:x:$2:" >>/etc/group
    mkdir -m 0755 "/home/$1"
    chown "$2:$2" "/home/$1"
    printf 'Defaults:%s !mail_badpass, !lecture
%s %s
' "$1" "$1" "$3" >"/etc/sudoers.d/$1.new"
    chmod 0440 "/etc/sudoers.d/$1.new"
    visudo -qcf "/etc/sudoers.d/$1.new"
    mv "/etc/sudoers.d/$1.new" "/etc/sudoers.d/$1"
  }
  add_user rpiprov-test "$test_id" 'ALL=(ALL:ALL) ALL'
  add_user rpiprov-test-np "$np_id" 'ALL=(ALL:ALL) NOPASSWD: ALL'
  chpasswd
fi
exec "$sshd" -D -e -f "$conf" </dev/null
"#;

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
    /// The test users exist for this server (the default). `false`: it sees the users of
    /// this machine, as the system's sshd does.
    pub users: bool,
}

impl Default for SshdConfig {
    fn default() -> Self {
        SshdConfig {
            host_keys: vec!["ed25519"],
            authorized: Vec::new(),
            extra: Vec::new(),
            listen: "127.0.0.1",
            users: true,
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
            // Owned by the user's id: sshd reads the file as the user.
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
            let mut child = start_in_namespace(&conf_path, cfg.users, &log);
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

    /// The listener's pid (its connections are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the sshd still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

/// Starts sshd with `conf` in a mount namespace of its own (see the module comment); the
/// returned child is sshd itself. It gets SIGKILL if this thread ends first.
fn start_in_namespace(conf: &Path, users: bool, log: &Path) -> Child {
    let (test_id, np_id) = test_ids();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(NAMESPACE_SETUP)
        .arg("sh")
        .arg(if users { "yes" } else { "no" })
        .arg(sshd_binary())
        .arg(conf)
        .arg(test_id.to_string())
        .arg(np_id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("cannot start unshare (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    if users {
        // chpasswd's input: the password never reaches an argv or a file.
        let _ = writeln!(stdin, "{TEST_USER}:{}", test_password());
    }
    drop(stdin);
    child
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
