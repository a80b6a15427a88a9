//! The SSH transport against real OpenSSH servers on loopback (see `support/sshd.rs`).
//! Each test starts its own sshd(s) on free ports with their own keys, so tests run in
//! parallel. They need root (to run sshd in mount namespaces of its own, where the test
//! users exist: see `support/sshd.rs`).

#[path = "support/sshd.rs"]
mod sshd;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rpiprov::config::HostKeyPolicy;
use rpiprov::remote::{
    ConnectOptions, ExecRequest, Remote, RemoteError, Session, Stream, Target, UploadOutcome,
    UploadRequest, connect,
};
use rpiprov::secret::Secret;
use sha2::{Digest, Sha256};
use sshd::{Agent, Key, Sshd, SshdConfig, TEST_USER, keygen, test_password};
use tempfile::TempDir;

/// A server, a client folder with a key the server accepts and a known_hosts file.
struct Fixture {
    sshd: Sshd,
    client: TempDir,
    key: Key,
    known_hosts: PathBuf,
}

fn client_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rpiprov-client-")
        .tempdir()
        .unwrap()
}

fn fixture_with(mut cfg: SshdConfig, trust: bool) -> Fixture {
    let client = client_dir();
    let key = keygen(client.path(), "id_ed25519", "ed25519", "");
    cfg.authorized.push(key.public.clone());
    let sshd = Sshd::start(cfg);
    let known_hosts = client.path().join("known_hosts");
    if trust {
        let kind = sshd.host_keys[0].0.clone();
        fs::write(&known_hosts, sshd.known_hosts_line(&kind)).unwrap();
    }
    Fixture {
        sshd,
        client,
        key,
        known_hosts,
    }
}

fn fixture() -> Fixture {
    fixture_with(SshdConfig::default(), true)
}

fn options(known_hosts: &Path, policy: HostKeyPolicy) -> ConnectOptions {
    let mut o = ConnectOptions::new(known_hosts.to_path_buf(), policy);
    // Never the developer's own agent: each test says which agent it uses.
    o.agent_socket = None;
    o.key_passphrase = None;
    // Never this machine's /etc/ssh/ssh_known_hosts: a test names the files it reads.
    o.global_known_hosts = Vec::new();
    o.connect_timeout = Duration::from_secs(10);
    o.command_timeout = Duration::from_secs(60);
    o
}

impl Fixture {
    fn target(&self) -> Target {
        let mut t = Target::new("pi-test", &self.sshd.addr, TEST_USER);
        t.port = self.sshd.port;
        t.identity_files = vec![self.key.path.clone()];
        t
    }

    fn options(&self, policy: HostKeyPolicy) -> ConnectOptions {
        options(&self.known_hosts, policy)
    }

    async fn connect(&self) -> Session {
        connect(&self.target(), &self.options(HostKeyPolicy::Strict))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\nsshd log:\n{}", self.sshd.log()))
    }

    /// A folder owned by the test user, for unprivileged writes.
    fn user_dir(&self) -> PathBuf {
        let d = self.sshd.dir.path().join("user-files");
        if !d.exists() {
            fs::create_dir(&d).unwrap();
            sshd::chown_to_test_user(&d);
        }
        d
    }

    /// The target logging in with the test user's password (its only key file is missing).
    fn password_target(&self) -> Target {
        let mut t = self.target();
        t.identity_files = vec![self.client.path().join("missing_key")];
        t.password_auth = true;
        t.login_password = Some(Secret::new(test_password()));
        t
    }

    fn sudo_target(&self, password: Option<&str>) -> Target {
        let mut t = self.target();
        t.sudo = true;
        t.sudo_password = password.map(Secret::new);
        t
    }
}

fn test_uid() -> u32 {
    sshd::test_user_ids().0
}

// ---------------------------------------------------------------- the test users

/// Issue 9, item 1: the test users, with their password and their sudo rules, exist for
/// the test sshd and nowhere else: this machine has no such user, no such sudo rule and no
/// such home folder while a test server logs them in, and an sshd that sees this machine's
/// users (as the system's sshd does) lets neither in, with the right password or key.
#[tokio::test]
async fn the_test_users_exist_only_inside_the_test_sshd() {
    let f = fixture();
    let mut t = f.password_target();
    t.sudo = true;
    t.sudo_password = Some(Secret::new(test_password()));
    let s = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", f.sshd.log()));
    let out = s
        .exec(ExecRequest::new("id -un; ls /etc/sudoers.d | grep rpiprov").privileged())
        .await
        .unwrap();
    assert_eq!(
        out.stdout_str(),
        format!("root\n{TEST_USER}\n{}\n", sshd::NOPASSWD_USER)
    );

    for user in [TEST_USER, sshd::NOPASSWD_USER] {
        assert!(!sshd::machine_has_user(user), "this machine knows {user}");
        assert!(
            !Path::new("/home").join(user).exists(),
            "/home/{user} exists on this machine"
        );
    }
    assert_eq!(
        sshd::machine_sudo_rules_for_test_users(),
        Vec::<PathBuf>::new()
    );

    let system_like = Sshd::start(SshdConfig {
        authorized: vec![f.key.public.clone()],
        users: false,
        ..Default::default()
    });
    fs::write(&f.known_hosts, system_like.known_hosts_line("ed25519")).unwrap();
    for user in [TEST_USER, sshd::NOPASSWD_USER] {
        let mut t = Target::new("system-like", &system_like.addr, user);
        t.port = system_like.port;
        t.identity_files = vec![f.key.path.clone()];
        t.password_auth = true;
        t.login_password = Some(Secret::new(test_password()));
        let err = connect(&t, &f.options(HostKeyPolicy::Strict))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Auth { .. }), "{err}");
        let log = system_like.log();
        assert!(
            log.contains(&format!("Invalid user {user} from 127.0.0.1")),
            "{log}"
        );
        assert!(!log.contains("Accepted"), "{log}");
    }
}

/// Issue 9, item 1: a test process killed before its guards ran leaves nothing: its sshd
/// (and with it the namespace holding the users) dies with the thread that started it, and
/// the next run removes its folder, while the folders of running servers stay.
#[tokio::test]
async fn a_killed_run_leaves_no_server_and_its_folder_is_removed() {
    let mut orphan = std::thread::spawn(|| Sshd::start(SshdConfig::default()))
        .join()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while orphan.is_running() {
        assert!(
            Instant::now() < until,
            "the sshd outlived the thread that started it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = fixture();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for dir in [orphan.dir.path(), running.sshd.dir.path()] {
        fs::File::open(dir)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }
    sshd::remove_stale_folders();
    assert!(!orphan.dir.path().exists());
    assert!(running.sshd.dir.path().join("sshd_config").exists());
    running.connect().await;
}

// ---------------------------------------------------------------- exec

#[tokio::test]
async fn exec_returns_stdout_stderr_and_exit_status() {
    let f = fixture();
    let s = f.connect().await;
    assert_eq!(s.host(), "pi-test");
    assert_eq!(s.user(), TEST_USER);

    let out = s
        .exec(ExecRequest::new("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, 3);
    assert!(!out.success());

    let out = s.exec(ExecRequest::new("id -u")).await.unwrap();
    assert!(out.success());
    assert_eq!(out.stdout_str().trim(), test_uid().to_string());

    // Killed by a signal: no exit status, the signal name instead.
    let out = s.exec(ExecRequest::new("kill -TERM $$")).await.unwrap();
    assert_eq!(out.signal.as_deref(), Some("TERM"));
    assert_eq!(out.status, 255);
    assert!(!out.success());

    // Output written after a big burst, and output after stdin EOF, both arrive.
    let out = s
        .exec(ExecRequest::new(
            "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end",
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 3_000_000 + 1 + 4);
    assert!(out.stdout_str().ends_with("\nend\n"));
}

/// Issue 9, item 8: a command that prints 40 MB keeps the last 8 MiB of it, says so, and
/// a streamed 40 MB line (no newline) arrives in pieces, quickly.
#[tokio::test]
async fn a_huge_output_keeps_its_tail() {
    let f = fixture();
    let s = f.connect().await;
    const KEPT: usize = 8 * 1024 * 1024;
    let total = 40_000_000;
    let started = Instant::now();
    let out = s
        .exec(ExecRequest::new(format!(
            "head -c {total} /dev/zero | tr '\\0' x; echo; echo end"
        )))
        .await
        .unwrap();
    let note = format!(
        "[rpiprov: output too long: the first {} bytes were dropped, the last {KEPT} follow]\n",
        total + 5 - KEPT
    );
    assert_eq!(out.stdout.len(), note.len() + KEPT);
    assert!(out.stdout.starts_with(note.as_bytes()));
    assert!(out.stdout.ends_with(b"xxx\nend\n"));

    let mut pieces = 0;
    let mut longest = 0;
    let out = s
        .exec_streaming(
            ExecRequest::new(format!("head -c {total} /dev/zero | tr '\\0' y")),
            &mut |_, line: &str| {
                pieces += 1;
                longest = longest.max(line.len());
            },
        )
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(pieces, total.div_ceil(64 * 1024));
    assert_eq!(longest, 64 * 1024);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[tokio::test]
async fn stdin_reaches_the_command_byte_for_byte() {
    let f = fixture();
    let s = f.connect().await;
    // 3 MiB + 5 bytes of every byte value: several 256 KiB chunks and a partial one.
    let data: Vec<u8> = (0..(3 * 1024 * 1024 + 5))
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let out = s
        .exec(ExecRequest::new("sha256sum | cut -c1-64").stdin(data.clone()))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), hex::encode(Sha256::digest(&data)));
    // A command that echoes its stdin back while reading it (no deadlock on full windows).
    let out = s
        .exec(ExecRequest::new("cat").stdin(data.clone()))
        .await
        .unwrap();
    assert!(
        out.stdout == data,
        "cat returned {} bytes",
        out.stdout.len()
    );
    // No stdin: EOF right away, so `cat` ends.
    let out = s
        .exec(ExecRequest::new("cat; echo done").timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "done\n");
}

#[tokio::test]
async fn streaming_delivers_lines_in_order_as_they_arrive() {
    let f = fixture();
    let s = f.connect().await;
    let start = Instant::now();
    let mut seen: Vec<(Stream, String, Duration)> = Vec::new();
    let mut on_line =
        |stream: Stream, line: &str| seen.push((stream, line.to_string(), start.elapsed()));
    let out = s
        .exec_streaming(
            ExecRequest::new(
                "echo one; echo warn >&2; sleep 1; i=2; while [ $i -le 200 ]; do echo line$i; i=$((i+1)); done; printf tail",
            ),
            &mut on_line,
        )
        .await
        .unwrap();
    assert!(out.success());
    let stdout: Vec<&str> = seen
        .iter()
        .filter(|(s, ..)| *s == Stream::Stdout)
        .map(|(_, l, _)| l.as_str())
        .collect();
    let mut expected = vec!["one".to_string()];
    expected.extend((2..=200).map(|i| format!("line{i}")));
    expected.push("tail".into());
    assert_eq!(stdout, expected);
    let stderr: Vec<&str> = seen
        .iter()
        .filter(|(s, ..)| *s == Stream::Stderr)
        .map(|(_, l, _)| l.as_str())
        .collect();
    assert_eq!(stderr, ["warn"]);
    // "one" was delivered before the command slept, not at the end.
    let first = seen[0].2;
    let last = seen.last().unwrap().2;
    assert!(
        last - first >= Duration::from_millis(800),
        "{first:?} {last:?}"
    );
    // The full output is still returned.
    assert!(out.stdout_str().starts_with("one\nline2\n"));
    assert!(out.stdout_str().ends_with("line200\ntail"));
}

/// 30 commands at once over one connection: more than OpenSSH's MaxSessions (10). All
/// succeed, at most `MAX_CHANNELS` run at the same time (measured on the server from each
/// command's start and end times), and they do overlap.
#[tokio::test]
async fn thirty_parallel_execs_share_one_connection() {
    let f = fixture();
    let s = f.connect().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = s.clone();
        tasks.spawn(async move {
            let out = s
                .exec(ExecRequest::new(format!(
                    "date +%s.%N; sleep 0.3; date +%s.%N; echo {i}"
                )))
                .await;
            (i, out)
        });
    }
    let mut spans: Vec<(f64, f64)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, out) = r.unwrap();
        let out = out.unwrap_or_else(|e| panic!("exec {i}: {e}"));
        let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
        assert_eq!(lines[2], i.to_string());
        spans.push((lines[0].parse().unwrap(), lines[1].parse().unwrap()));
    }
    assert_eq!(spans.len(), 30);
    let most_at_once = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    // sshd itself would stop at 10 (MaxSessions); rpiprov's own limit is 8.
    assert_eq!(rpiprov::remote::MAX_CHANNELS, 8);
    assert!(
        (2..=8).contains(&most_at_once),
        "{most_at_once} commands ran at once"
    );
    let elapsed = started.elapsed();
    // 30 sleeps of 0.3 s in waves of 8 channels: about 4 waves, far below 9 s sequentially.
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    let log = f.sshd.log();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
}

/// Bursts of very short commands: sshd frees session slots lazily after a close, so
/// it refuses some channels even below the limit; those refusals must be absorbed.
#[tokio::test]
async fn bursts_of_short_commands_all_succeed() {
    let f = fixture();
    let s = f.connect().await;
    for round in 0..2 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let s = s.clone();
            tasks.spawn(async move { (i, s.exec(ExecRequest::new("echo ok")).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, out) = r.unwrap();
            let out = out.unwrap_or_else(|e| panic!("round {round} exec {i}: {e}"));
            assert_eq!(out.stdout_str(), "ok\n");
        }
    }
}

#[tokio::test]
async fn a_command_over_its_time_limit_fails_and_the_connection_lives_on() {
    let f = fixture();
    let s = f.connect().await;
    let started = Instant::now();
    let err = s
        .exec(ExecRequest::new("sleep 37").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::CommandTimeout { secs: 1, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("sleep 37"), "{err}");
    let out = s.exec(ExecRequest::new("echo alive")).await.unwrap();
    assert_eq!(out.stdout_str(), "alive\n");
    // The abandoned command was stopped, not left running on the host.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processes_like("sleep 37"), 0);
}

/// How many processes on this machine (the "remote" host of these tests) run exactly `args`.
fn processes_like(args: &str) -> usize {
    let out = std::process::Command::new("ps")
        .args(["-e", "-o", "args="])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == args)
        .count()
}

/// A session to the fixture's sudo user, with its password.
async fn sudo_session(f: &Fixture) -> Session {
    connect(
        &f.sudo_target(Some(test_password())),
        &f.options(HostKeyPolicy::Strict),
    )
    .await
    .unwrap()
}

/// `sleep N.UNIQUE` commands with durations unique to this run, so that nothing else on
/// the machine matches them.
fn unique_sleeps(ns: std::ops::Range<u32>) -> Vec<String> {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros();
    ns.map(|n| format!("sleep {n}.{unique:06}")).collect()
}

/// Commands with children, and root commands under sudo, are stopped as a whole when
/// they run over their time (a signal to the login shell alone would leave them running).
#[tokio::test]
async fn timed_out_process_trees_are_stopped_also_under_sudo() {
    let f = fixture();
    let s = sudo_session(&f).await;
    let sleeps = unique_sleeps(43..47);
    let (a, b) = (s.clone(), s.clone());
    let (ra, rb) = tokio::join!(
        a.exec(
            ExecRequest::new(format!("{} & {}; echo never", sleeps[0], sleeps[1]))
                .timeout(Duration::from_secs(1))
        ),
        b.exec(
            ExecRequest::new(format!("{} & {}; echo never", sleeps[2], sleeps[3]))
                .privileged()
                .timeout(Duration::from_secs(1))
        ),
    );
    for r in [ra, rb] {
        let err = r.unwrap_err();
        assert!(matches!(err, RemoteError::CommandTimeout { .. }), "{err}");
    }
    // TERM is passed on at once; the remote limit (one second later) is the backstop.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for p in &sleeps {
        assert_eq!(processes_like(p), 0, "{p} is still running");
    }
}

/// An interrupted command (Ctrl-C on `rpiprov logs --follow`) is stopped on the host as
/// a whole, under sudo too, and the request says it was interrupted; the caller may exit
/// right after.
#[tokio::test]
async fn interrupted_process_trees_are_stopped_also_under_sudo() {
    let f = fixture();
    let s = sudo_session(&f).await;
    let sleeps = unique_sleeps(53..55);
    let (stop, interrupt) = tokio::sync::watch::channel(false);
    let run = s.exec(
        ExecRequest::new(format!("{} & {}; echo never", sleeps[0], sleeps[1]))
            .privileged()
            .timeout(Duration::from_secs(60))
            .interrupt(interrupt),
    );
    let stopper = async {
        // Both sleeps run before the interruption.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sleeps.iter().any(|p| processes_like(p) == 0) {
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
    };
    let started = std::time::Instant::now();
    let (res, ()) = tokio::join!(run, stopper);
    let err = res.unwrap_err();
    assert!(matches!(err, RemoteError::Interrupted { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    s.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in &sleeps {
        assert_eq!(processes_like(p), 0, "{p} is still running");
    }
}

// ---------------------------------------------------------------- host keys

#[tokio::test]
async fn unknown_host_is_refused_under_strict_and_learned_under_accept_new() {
    let f = fixture_with(SshdConfig::default(), false);
    let fp = {
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(f.sshd.dir.path().join("hostkeys/ssh_host_ed25519_key.pub"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert!(fp.starts_with("SHA256:"));

    let err = connect(&f.target(), &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::UnknownHostKey { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&fp), "{msg}");
    assert!(msg.contains("accept-new"), "{msg}");
    assert!(!f.known_hosts.exists(), "strict must not write known_hosts");

    let s = connect(&f.target(), &f.options(HostKeyPolicy::AcceptNew))
        .await
        .unwrap();
    drop(s);
    let text = fs::read_to_string(&f.known_hosts).unwrap();
    assert_eq!(text, f.sshd.known_hosts_line("ed25519"));
    // OpenSSH itself finds the learned entry under the name it would look up.
    let found = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(f.sshd.known_hosts_name())
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(found.status.success(), "{found:?}");
    assert!(String::from_utf8_lossy(&found.stdout).contains(f.sshd.host_key("ed25519")));
    assert_eq!(
        fs::metadata(&f.known_hosts).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Now known: strict accepts it, and accept-new does not add it twice.
    f.connect().await;
    connect(&f.target(), &f.options(HostKeyPolicy::AcceptNew))
        .await
        .unwrap();
    assert_eq!(fs::read_to_string(&f.known_hosts).unwrap(), text);
}

#[tokio::test]
async fn accept_new_creates_the_known_hosts_folder() {
    let f = fixture_with(SshdConfig::default(), false);
    let kh = f.client.path().join("new/.ssh/known_hosts");
    connect(&f.target(), &options(&kh, HostKeyPolicy::AcceptNew))
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(&kh).unwrap(),
        f.sshd.known_hosts_line("ed25519")
    );
    let mode = fs::metadata(kh.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn a_changed_host_key_is_refused_under_both_policies() {
    let f = fixture_with(SshdConfig::default(), false);
    let impostor = keygen(f.client.path(), "other", "ed25519", "");
    let recorded = format!(
        "# first line\n{} {}\n",
        f.sshd.known_hosts_name(),
        impostor.public
    );
    fs::write(&f.known_hosts, &recorded).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = connect(&f.target(), &f.options(policy)).await.unwrap_err();
        assert!(
            matches!(err, RemoteError::HostKeyChanged { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("HOST KEY CHANGED"), "{err}");
    }
    assert_eq!(fs::read_to_string(&f.known_hosts).unwrap(), recorded);
}

#[tokio::test]
async fn a_host_key_of_another_algorithm_is_refused_under_both_policies() {
    // The host is known by its ed25519 key; the server now offers only ECDSA and RSA.
    let f = fixture_with(
        SshdConfig {
            host_keys: vec!["ecdsa", "rsa"],
            ..Default::default()
        },
        false,
    );
    let old = keygen(f.client.path(), "old", "ed25519", "");
    let recorded = format!("{} {}\n", f.sshd.known_hosts_name(), old.public);
    fs::write(&f.known_hosts, &recorded).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = connect(&f.target(), &f.options(policy)).await.unwrap_err();
        assert!(matches!(err, RemoteError::HostKeyAlgorithm { .. }), "{err}");
        assert!(err.to_string().contains("ssh-ed25519"), "{err}");
    }
    // Nothing was learned.
    assert_eq!(fs::read_to_string(&f.known_hosts).unwrap(), recorded);
}

#[tokio::test]
async fn the_recorded_algorithm_is_negotiated_when_the_server_has_several() {
    // russh would prefer ed25519; known_hosts holds only the ECDSA key: that one must be used.
    let f = fixture_with(
        SshdConfig {
            host_keys: vec!["ed25519", "ecdsa"],
            ..Default::default()
        },
        false,
    );
    fs::write(&f.known_hosts, f.sshd.known_hosts_line("ecdsa")).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        connect(&f.target(), &f.options(policy)).await.unwrap();
    }
    assert_eq!(
        fs::read_to_string(&f.known_hosts).unwrap(),
        f.sshd.known_hosts_line("ecdsa")
    );
}

/// Issue 9, item 3: a `HostKeyAlias` (or `HostName`) that would corrupt known_hosts, or
/// make its line a pattern that vouches for other hosts, is refused before connecting.
#[tokio::test]
async fn a_host_key_alias_that_is_not_a_host_name_is_refused() {
    let f = fixture_with(SshdConfig::default(), false);
    let cfg = f.client.path().join("config");
    let mut t = f.target();
    t.address = "pi7".into();
    t.port = 22;
    let mut o = f.options(HostKeyPolicy::AcceptNew);
    o.ssh_config = Some(cfg.clone());
    for (line, shown) in [
        ("HostKeyAlias \"rack pi-7\"", "HostKeyAlias \"rack pi-7\""),
        ("HostKeyAlias rack pi-7", "HostKeyAlias \"rack pi-7\""),
        ("HostKeyAlias *", "HostKeyAlias \"*\""),
        (
            "HostKeyAlias \"-oProxyCommand=x\"",
            "HostKeyAlias \"-oProxyCommand=x\"",
        ),
        ("HostName 127.0.0.1,pi9", "HostName \"127.0.0.1,pi9\""),
    ] {
        let host_name = if line.starts_with("HostName") {
            String::new()
        } else {
            format!("  HostName {}\n", f.sshd.addr)
        };
        fs::write(
            &cfg,
            format!("Host pi7\n{host_name}  Port {}\n  {line}\n", f.sshd.port),
        )
        .unwrap();
        let err = connect(&t, &o).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "pi-test: ssh config: {}: {shown} cannot name a host in known_hosts: use letters, digits, '.', '-', '_' and ':', not starting with '-'",
                cfg.display()
            )
        );
        assert!(!f.known_hosts.exists(), "known_hosts was written ({line})");
    }
}

/// Issue 9, item 3: under accept-new, a known_hosts path that names another kind of file
/// is an error, and the file is left as it was.
#[tokio::test]
async fn accept_new_adds_nothing_to_a_file_that_is_not_known_hosts() {
    let f = fixture_with(SshdConfig::default(), false);
    let rc = f.client.path().join("bashrc");
    let before = "# my shell setup\nexport EDITOR=vi\n";
    fs::write(&rc, before).unwrap();
    let err = connect(&f.target(), &options(&rc, HostKeyPolicy::AcceptNew))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pi-test: cannot connect to 127.0.0.1:{}: cannot record the host key in {}: line 2 is not a known_hosts entry; refusing to add a key to a file that is not a known_hosts file (check ssh.known_hosts in the inventory)",
            f.sshd.port,
            rc.display()
        )
    );
    assert_eq!(fs::read_to_string(&rc).unwrap(), before);
    // A real known_hosts file, as ssh-keyscan writes it (here for another name), is added to.
    let scan = std::process::Command::new("ssh-keyscan")
        .arg("-p")
        .arg(f.sshd.port.to_string())
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert!(scan.status.success(), "{scan:?}");
    let other = String::from_utf8(scan.stdout)
        .unwrap()
        .replace("[127.0.0.1]", "[127.0.0.2]");
    assert!(other.starts_with("[127.0.0.2]:"), "{other}");
    fs::write(&f.known_hosts, &other).unwrap();
    connect(&f.target(), &f.options(HostKeyPolicy::AcceptNew))
        .await
        .unwrap_or_else(|e| panic!("{e}: {other}"));
    assert_eq!(
        fs::read_to_string(&f.known_hosts).unwrap(),
        other + &f.sshd.known_hosts_line("ed25519")
    );
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_honoured() {
    let f = fixture();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        fs::read_to_string(&f.known_hosts)
            .unwrap()
            .starts_with("|1|")
    );
    f.connect().await;
}

/// Issue 18: the machine's known_hosts (ssh config's `GlobalKnownHostsFile`, or
/// `/etc/ssh/ssh_known_hosts` by default) revokes a key the user's file trusts, against a
/// real sshd.
#[tokio::test]
async fn a_key_revoked_in_the_machines_known_hosts_is_refused() {
    let f = fixture();
    let kind = f.sshd.host_keys[0].0.clone();
    let global = f.client.path().join("ssh_known_hosts");
    fs::write(
        &global,
        format!("# the rack's keys\n@revoked * {}\n", f.sshd.host_key(&kind)),
    )
    .unwrap();
    let cfg = f.client.path().join("config");
    fs::write(
        &cfg,
        format!(
            "Host {}\n  GlobalKnownHostsFile {}\n",
            f.sshd.addr,
            global.display()
        ),
    )
    .unwrap();
    let mut by_config = f.options(HostKeyPolicy::AcceptNew);
    by_config.ssh_config = Some(cfg);
    let mut by_default = f.options(HostKeyPolicy::Strict);
    by_default.global_known_hosts = vec![global.clone()];
    for o in [by_config, by_default] {
        let err = connect(&f.target(), &o).await.unwrap_err();
        assert!(
            matches!(&err, RemoteError::HostKeyRevoked { line: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!(
                "is marked @revoked in known_hosts {} line 2; refusing",
                global.display()
            )),
            "{err}"
        );
    }
    // Without the machine's file, the user's file trusts it.
    f.connect().await;
}

/// Issue 18: under `HashKnownHosts yes`, accept-new learns a hashed entry that a real
/// sshd's key then passes under strict, and that OpenSSH's `ssh-keygen -F` finds.
#[tokio::test]
async fn a_hashed_entry_is_learned_then_accepted() {
    let f = fixture_with(SshdConfig::default(), false);
    let cfg = f.client.path().join("config");
    fs::write(&cfg, "Host *\n  HashKnownHosts yes\n").unwrap();
    let mut o = f.options(HostKeyPolicy::AcceptNew);
    o.ssh_config = Some(cfg);
    connect(&f.target(), &o).await.unwrap();
    let text = fs::read_to_string(&f.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    assert!(!text.contains(&f.sshd.addr), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    let found = std::process::Command::new("ssh-keygen")
        .args(["-F", &f.sshd.known_hosts_name(), "-f"])
        .arg(&f.known_hosts)
        .output()
        .unwrap();
    assert!(found.status.success(), "{found:?}");
    o.policy = HostKeyPolicy::Strict;
    connect(&f.target(), &o).await.unwrap();
    f.connect().await;
    assert_eq!(fs::read_to_string(&f.known_hosts).unwrap(), text);
}

/// Issue 18: when the inventory names no known_hosts file, ssh config's
/// `UserKnownHostsFile` is the one read (and learned into), as for ssh.
#[tokio::test]
async fn user_known_hosts_file_from_ssh_config() {
    let f = fixture();
    let cfg = f.client.path().join("config");
    fs::write(
        &cfg,
        format!("Host *\n  UserKnownHostsFile {}\n", f.known_hosts.display()),
    )
    .unwrap();
    let empty = f.client.path().join("default/known_hosts");
    let mut o = options(&empty, HostKeyPolicy::Strict);
    o.ssh_config = Some(cfg);
    // Named by the inventory: ssh config does not replace it, and the host is unknown.
    let err = connect(&f.target(), &o).await.unwrap_err();
    assert!(matches!(err, RemoteError::UnknownHostKey { .. }), "{err}");
    o.known_hosts_explicit = false;
    connect(&f.target(), &o).await.unwrap();
    assert!(!empty.exists());
}

// ---------------------------------------------------------------- connecting

#[tokio::test]
async fn a_server_that_never_speaks_ssh_fails_within_the_connect_timeout() {
    // A listening socket that is never accepted: TCP completes in the backlog, then silence.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = client_dir();
    let mut o = options(&dir.path().join("known_hosts"), HostKeyPolicy::Strict);
    o.connect_timeout = Duration::from_secs(1);
    let mut t = Target::new("silent", "127.0.0.1", TEST_USER);
    t.port = port;
    let started = Instant::now();
    let err = connect(&t, &o).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, RemoteError::ConnectTimeout { secs: 1, .. }),
        "{err}"
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    drop(listener);
}

/// A TCP relay to a real sshd that passes the version and key exchange, then holds all the
/// server sends after its NEWKEYS message: to the client, the server stalls right after the
/// key exchange, as a frozen sshd does (the kernel still acknowledges, nothing answers).
struct StallingRelay {
    port: u16,
    /// Set once the server's NEWKEYS went through: the key exchange did complete.
    newkeys_passed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingRelay {
    async fn start(upstream_port: u16) -> StallingRelay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const NEWKEYS: u8 = 21;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let newkeys_passed = std::sync::Arc::new(AtomicBool::new(false));
        let passed = newkeys_passed.clone();
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port))
                .await
                .unwrap();
            let (mut client_rd, mut client_wr) = client.into_split();
            let (mut server_rd, mut server_wr) = server.into_split();
            let upstream = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
                // Kept open: the server must not see the client leave either.
                std::future::pending::<()>().await;
            });
            // Server to client: the version line, then cleartext packets (4-byte length,
            // padding length, message type) up to and including NEWKEYS; nothing after.
            let mut pending: Vec<u8> = Vec::new();
            let mut version_done = false;
            let mut buf = [0u8; 4096];
            loop {
                let n = server_rd.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                if passed.load(Ordering::SeqCst) {
                    continue; // held: encrypted traffic after the key exchange
                }
                pending.extend_from_slice(&buf[..n]);
                let mut out = Vec::new();
                if !version_done {
                    let Some(nl) = pending.iter().position(|&b| b == b'\n') else {
                        continue;
                    };
                    out.extend(pending.drain(..=nl));
                    version_done = true;
                }
                while pending.len() >= 6 {
                    let len = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
                    if pending.len() < 4 + len {
                        break;
                    }
                    let msg = pending[5];
                    out.extend(pending.drain(..4 + len));
                    if msg == NEWKEYS {
                        passed.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                client_wr.write_all(&out).await.unwrap();
            }
            upstream.abort();
        });
        StallingRelay {
            port,
            newkeys_passed,
            task,
        }
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Issue 9, item 9: a server that completes the key exchange and then says nothing more
/// fails the connection within the connect timeout, with what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_after_the_key_exchange_fails_within_the_connect_timeout() {
    let f = fixture();
    let relay = StallingRelay::start(f.sshd.port).await;
    // The relay's address serves the sshd's key.
    fs::write(
        &f.known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            relay.port,
            f.sshd.host_key("ed25519")
        ),
    )
    .unwrap();
    let mut t = f.target();
    t.port = relay.port;
    let mut o = f.options(HostKeyPolicy::Strict);
    o.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    // Without a deadline on authentication this waited for the inactivity timeout (60 s).
    let result = tokio::time::timeout(Duration::from_secs(15), connect(&t, &o))
        .await
        .expect("connect hung far past its connect timeout");
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(
        relay
            .newkeys_passed
            .load(std::sync::atomic::Ordering::SeqCst),
        "the key exchange did not complete: {err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "pi-test: 127.0.0.1:{} did not complete authentication as {TEST_USER} within 2s: its SSH server stalls after the key exchange (a frozen or overloaded host, or a slow PAM, DNS or AuthorizedKeysCommand lookup on it); check the host, or raise ssh.connect_timeout in the inventory",
            relay.port
        )
    );
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

// ---------------------------------------------------------------- lost connections

/// The pids of `root`'s descendants (not `root` itself), read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut out: Vec<u32> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Processes of the test's sshd stopped with SIGSTOP (a host that stops answering while
/// the kernel still holds its sockets, as a frozen or unplugged Pi looks from here), and
/// let go again when dropped: a stopped process would otherwise outlive the test.
struct Frozen(Vec<u32>);

impl Frozen {
    fn pids(pids: Vec<u32>) -> Frozen {
        for &p in &pids {
            // SAFETY: a signal to a process of the sshd this test started.
            unsafe { libc::kill(p as i32, libc::SIGSTOP) };
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: as above; they resume and end with their closed connections.
            unsafe { libc::kill(p as i32, libc::SIGCONT) };
        }
    }
}

/// Keepalives every second: a lost connection is noticed in about 4 s.
fn fast_keepalive(f: &Fixture, reconnect: Duration) -> ConnectOptions {
    let mut o = f.options(HostKeyPolicy::Strict);
    o.keepalive_interval = Duration::from_secs(1);
    o.reconnect_timeout = reconnect;
    o.connect_timeout = Duration::from_secs(2);
    o
}

/// Issue 14: a connection that stops answering in the middle of a command is noticed by
/// keepalives within seconds; the command fails saying the connection was lost (it may
/// have run or not), and the next command runs on a new connection. A command marked
/// idempotent runs again on the new connection instead of failing.
#[tokio::test]
async fn a_lost_connection_is_noticed_and_the_next_command_reconnects() {
    let f = fixture();
    let s = connect(&f.target(), &fast_keepalive(&f, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(
        s.exec(ExecRequest::new("echo one"))
            .await
            .unwrap()
            .stdout_str(),
        "one\n"
    );

    let (r, _frozen) = tokio::join!(
        async {
            let started = Instant::now();
            (
                s.exec(ExecRequest::new("sleep 30; echo never")).await,
                started.elapsed(),
            )
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Frozen::pids(descendants(f.sshd.pid()))
        }
    );
    let (r, took) = r;
    let err = r.unwrap_err();
    assert!(matches!(err, RemoteError::ConnectionLost { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "pi-test: connection lost while running sleep 30; echo never (it may or may not have finished there); rpiprov reconnects for the next step, and a rerun repairs what is left"
    );
    assert!(took < Duration::from_secs(10), "noticed after {took:?}");
    assert!(s.is_closed());

    let out = s.exec(ExecRequest::new("echo two")).await.unwrap();
    assert_eq!(out.stdout_str(), "two\n");
    assert_eq!(f.sshd.log().matches("Accepted publickey").count(), 2);

    // The same loss under an idempotent command: it simply runs again.
    let (r, _frozen) = tokio::join!(
        s.exec(ExecRequest::new("sleep 2; echo again").idempotent()),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = descendants(f.sshd.pid());
            Frozen::pids(before)
        }
    );
    assert_eq!(r.unwrap().stdout_str(), "again\n");
    assert_eq!(f.sshd.log().matches("Accepted publickey").count(), 3);
}

/// Issue 14: a host that does not come back within the reconnect time is given up, with
/// since when, long before any command's own time limit; later commands fail at once.
#[tokio::test]
async fn a_host_that_stays_away_is_unreachable_since_the_loss() {
    let f = fixture();
    let s = connect(&f.target(), &fast_keepalive(&f, Duration::from_secs(5)))
        .await
        .unwrap();
    s.exec(ExecRequest::new("true")).await.unwrap();
    // The listener too: new connections get no banner, as from a frozen host.
    let mut pids = vec![f.sshd.pid()];
    pids.extend(descendants(f.sshd.pid()));
    let _frozen = Frozen::pids(pids);
    let started = Instant::now();
    let err = s
        .exec(
            ExecRequest::new("echo x")
                .idempotent()
                .timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(err.is_unreachable(), "{text}");
    assert!(text.starts_with("pi-test unreachable since 20"), "{text}");
    assert!(
        text.contains("did not complete authentication") || text.contains("no answer from"),
        "{text}"
    );
    assert!(
        text.ends_with("check its power and network, then run again"),
        "{text}"
    );
    // Noticed (about 4 s), then 5 s of reconnection, the last attempt up to its 2 s.
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");

    let started = Instant::now();
    let again = s.exec(ExecRequest::new("echo y")).await.unwrap_err();
    assert_eq!(again.to_string(), text);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let port = sshd::free_port("127.0.0.1");
    let dir = client_dir();
    let mut t = Target::new("closed", "127.0.0.1", TEST_USER);
    t.port = port;
    let err = connect(&t, &options(&dir.path().join("kh"), HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("closed: cannot connect to 127.0.0.1:"),
        "{err}"
    );
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn agent_keys_are_used() {
    let dir = client_dir();
    let key = keygen(dir.path(), "agent_key", "ed25519", "");
    let sshd = Sshd::start(SshdConfig {
        authorized: vec![key.public.clone()],
        ..Default::default()
    });
    let kh = dir.path().join("known_hosts");
    fs::write(&kh, sshd.known_hosts_line("ed25519")).unwrap();
    let agent = Agent::start(dir.path());
    agent.add(&key.path);
    // The key file is gone: only the agent can sign.
    fs::remove_file(&key.path).unwrap();

    let mut t = Target::new("agent", &sshd.addr, TEST_USER);
    t.port = sshd.port;
    let mut o = options(&kh, HostKeyPolicy::Strict);
    o.agent_socket = Some(agent.socket.clone());
    let s = connect(&t, &o).await.unwrap();
    assert_eq!(
        s.exec(ExecRequest::new("echo hi"))
            .await
            .unwrap()
            .stdout_str(),
        "hi\n"
    );

    // Without the agent there is nothing to authenticate with, and the error says so.
    o.agent_socket = None;
    let err = connect(&t, &o).await.unwrap_err();
    assert!(matches!(err, RemoteError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(TEST_USER), "{err}");
}

#[tokio::test]
async fn an_encrypted_key_opens_with_the_configured_passphrase() {
    let passphrase = "correct horse battery";
    let dir = client_dir();
    let key = keygen(dir.path(), "id_locked", "ed25519", passphrase);
    let sshd = Sshd::start(SshdConfig {
        authorized: vec![key.public.clone()],
        ..Default::default()
    });
    let kh = dir.path().join("known_hosts");
    fs::write(&kh, sshd.known_hosts_line("ed25519")).unwrap();
    let mut t = Target::new("locked", &sshd.addr, TEST_USER);
    t.port = sshd.port;
    t.identity_files = vec![key.path.clone()];

    let mut o = options(&kh, HostKeyPolicy::Strict);
    o.key_passphrase = Some(Secret::new(passphrase));
    let s = connect(&t, &o).await.unwrap();
    assert!(s.exec(ExecRequest::new("true")).await.unwrap().success());

    o.key_passphrase = Some(Secret::new("wrong passphrase 123"));
    let err = connect(&t, &o).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, RemoteError::Auth { .. }), "{msg}");
    assert!(msg.contains("id_locked"), "{msg}");
    assert!(!msg.contains("wrong passphrase 123"), "{msg}");

    if std::env::var_os("RPIPROV_KEY_PASSPHRASE").is_none() {
        o.key_passphrase = None;
        let err = connect(&t, &o).await.unwrap_err();
        assert!(err.to_string().contains("RPIPROV_KEY_PASSPHRASE"), "{err}");
    }
}

#[tokio::test]
async fn password_authentication_when_allowed() {
    let f = fixture();
    let mut t = f.password_target();
    let s = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap();
    assert!(s.exec(ExecRequest::new("true")).await.unwrap().success());
    assert!(f.sshd.log().contains("Accepted password"));

    t.login_password = Some(Secret::new("not-the-password"));
    let err = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, RemoteError::Auth { .. }), "{msg}");
    assert!(msg.contains("password"), "{msg}");
    assert!(msg.contains("missing_key"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
}

#[tokio::test]
async fn a_key_the_server_does_not_accept_is_an_auth_error_naming_it() {
    let f = fixture();
    let stranger = keygen(f.client.path(), "stranger", "ed25519", "");
    let mut t = f.target();
    t.identity_files = vec![stranger.path.clone()];
    let err = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("stranger"), "{err}");
}

// ---------------------------------------------------------------- ssh config and ProxyJump

#[tokio::test]
async fn proxy_jump_from_ssh_config() {
    let dir = client_dir();
    let key = keygen(dir.path(), "id_jump", "ed25519", "");
    let jump = Sshd::start(SshdConfig {
        authorized: vec![key.public.clone()],
        // DEBUG1 logs each direct-tcpip request: proof that the tunnel went through it.
        extra: vec!["LogLevel DEBUG1".into()],
        ..Default::default()
    });
    let inner = Sshd::start(SshdConfig {
        authorized: vec![key.public.clone()],
        host_keys: vec!["ecdsa"],
        ..Default::default()
    });
    let cfg = dir.path().join("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host rack-pi\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  ProxyJump bastion\n\
             Host bastion\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n",
            inner.addr,
            inner.port,
            key.path.display(),
            jump.addr,
            jump.port,
            key.path.display()
        ),
    )
    .unwrap();
    let kh = dir.path().join("known_hosts");
    fs::write(&kh, jump.known_hosts_line("ed25519")).unwrap();
    let t = Target::new("pi1", "rack-pi", "");
    let mut o = options(&kh, HostKeyPolicy::Strict);
    o.ssh_config = Some(cfg.clone());

    // The target's own key is checked under its own name, not the jump host's.
    let err = connect(&t, &o).await.unwrap_err();
    match &err {
        RemoteError::UnknownHostKey { addr, .. } => {
            assert_eq!(addr, &format!("{}:{}", inner.addr, inner.port));
        }
        other => panic!("expected UnknownHostKey, got {other}"),
    }
    fs::write(
        &kh,
        jump.known_hosts_line("ed25519") + &inner.known_hosts_line("ecdsa"),
    )
    .unwrap();
    let s = connect(&t, &o).await.unwrap();
    assert_eq!(s.user(), TEST_USER);
    let out = s.exec(ExecRequest::new("echo via jump")).await.unwrap();
    assert_eq!(out.stdout_str(), "via jump\n");
    // The jump host opened the tunnel to the target's port.
    let jump_log = jump.log();
    assert!(jump_log.contains("Accepted publickey"), "{jump_log}");
    let tunnel = format!("target {} port {}", inner.addr, inner.port);
    assert!(jump_log.contains(&tunnel), "{jump_log}");
    assert!(
        inner.log().contains("Accepted publickey"),
        "{}",
        inner.log()
    );

    // A jump host that forbids forwarding: the connection cannot be made.
    let closed_jump = Sshd::start(SshdConfig {
        authorized: vec![key.public.clone()],
        extra: vec!["AllowTcpForwarding no".into()],
        ..Default::default()
    });
    fs::write(
        &cfg,
        format!(
            "Host rack-pi\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  ProxyJump {TEST_USER}@{}:{}\n",
            inner.addr,
            inner.port,
            key.path.display(),
            closed_jump.addr,
            closed_jump.port,
        ),
    )
    .unwrap();
    fs::write(
        &kh,
        closed_jump.known_hosts_line("ed25519") + &inner.known_hosts_line("ecdsa"),
    )
    .unwrap();
    // The spec has no IdentityFile of its own: give the key through the agent.
    let agent = Agent::start(dir.path());
    agent.add(&key.path);
    o.agent_socket = Some(agent.socket.clone());
    let err = connect(&t, &o).await.unwrap_err();
    assert!(matches!(err, RemoteError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("jump host"), "{err}");
    assert!(
        closed_jump.log().contains("Accepted publickey"),
        "{}",
        closed_jump.log()
    );
}

#[tokio::test]
async fn ssh_config_supplies_host_name_port_user_and_key() {
    let f = fixture();
    let cfg = f.client.path().join("config");
    fs::write(
        &cfg,
        format!(
            "Host pi-alias\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n",
            f.sshd.addr,
            f.sshd.port,
            f.key.path.display()
        ),
    )
    .unwrap();
    let t = Target::new("pi-test", "pi-alias", "");
    let mut o = f.options(HostKeyPolicy::Strict);
    o.ssh_config = Some(cfg);
    let s = connect(&t, &o).await.unwrap();
    assert_eq!(
        s.exec(ExecRequest::new("whoami"))
            .await
            .unwrap()
            .stdout_str(),
        format!("{TEST_USER}\n")
    );
}

// ---------------------------------------------------------------- sudo

fn assert_no_password(text: &str) {
    assert!(
        !text.contains(test_password()),
        "the password leaked: {text}"
    );
}

#[tokio::test]
async fn sudo_with_a_password_runs_as_root_and_keeps_stdin_intact() {
    let f = fixture();
    let s = connect(
        &f.sudo_target(Some(test_password())),
        &f.options(HostKeyPolicy::Strict),
    )
    .await
    .unwrap();
    let out = s
        .exec(ExecRequest::new("id -u").privileged())
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "0\n");
    assert_eq!(out.stderr_str(), "");
    // Unprivileged commands stay unprivileged.
    let out = s.exec(ExecRequest::new("id -u")).await.unwrap();
    assert_eq!(out.stdout_str().trim(), test_uid().to_string());
    // The command's stdin is exactly the request's: the password went to sudo alone.
    let out = s
        .exec(
            ExecRequest::new("cat; echo; id -un")
                .privileged()
                .stdin(b"first line\nsecond".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "first line\nsecond\nroot\n");
    // Exit status and stderr of the command itself come through.
    let out = s
        .exec(ExecRequest::new("echo oops >&2; exit 4").privileged())
        .await
        .unwrap();
    assert_eq!((out.status, out.stderr_str().as_str()), (4, "oops\n"));
    assert_no_password(&format!("{out:?}"));
    // Several privileged commands at once, each with its own handshake.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.spawn(async move {
            s.exec(ExecRequest::new(format!("echo {i}; id -u")).privileged())
                .await
                .map(|o| (i, o))
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, out) = r.unwrap().unwrap();
        assert_eq!(out.stdout_str(), format!("{i}\n0\n"));
    }
}

/// Issue 11: a long-lived command written to while it runs (what `docker system
/// dial-stdio` needs), as root through sudo with a password: the password goes to sudo
/// alone, each write is answered before the next is sent, and the end is seen.
#[tokio::test]
async fn a_stream_under_sudo_is_written_and_read_while_it_runs() {
    let f = fixture();
    let s = connect(
        &f.sudo_target(Some(test_password())),
        &f.options(HostKeyPolicy::Strict),
    )
    .await
    .unwrap();
    let before = rpiprov::remote::stats::snapshot();
    let mut stream = s
        .open_stream(
            ExecRequest::new(
                "id -un; while IFS= read -r l; do echo \"got $l\"; done; echo bye >&2; exit 3",
            )
            .privileged()
            .timeout(Duration::from_secs(20)),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut read_line = async || {
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            got.extend(stream.reader.read().await.expect("more output"));
        }
        String::from_utf8(got).unwrap()
    };
    assert_eq!(read_line().await, "root\n");
    for word in ["one", "two"] {
        assert!(stream.writer.write(format!("{word}\n").into_bytes()));
        assert_eq!(read_line().await, format!("got {word}\n"));
    }
    // Dropping the writer is EOF: the command ends, and its stderr and status are kept.
    drop(stream.writer);
    assert_eq!(stream.reader.read().await, None);
    let end = stream.reader.end();
    assert_eq!((end.status, end.stderr.as_str()), (Some(3), "bye\n"));
    assert_no_password(&format!("{end:?}"));
    assert!(rpiprov::remote::stats::snapshot().round_trips > before.round_trips);
    // The channel slot is free again: a plain command still runs.
    let out = s.exec(ExecRequest::new("echo ok")).await.unwrap();
    assert_eq!(out.stdout_str(), "ok\n");
}

/// Issue 9, item 6: the sudo password is taken out of what every command of the session
/// returns and streams, privileged or not (a script on the host may echo it).
#[tokio::test]
async fn the_sudo_password_is_redacted_from_output() {
    let f = fixture();
    let pw = test_password();
    let s = connect(&f.sudo_target(Some(pw)), &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap();
    for privileged in [false, true] {
        let mut req = ExecRequest::new(format!("echo out {pw}; echo err {pw}: >&2"));
        req.privileged = privileged;
        let mut lines = Vec::new();
        let out = s
            .exec_streaming(req, &mut |stream, line: &str| {
                lines.push((stream, line.to_string()))
            })
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "out <redacted>\n");
        assert_eq!(out.stderr_str(), "err <redacted>:\n");
        // Two streams: their relative order is not defined.
        lines.sort_by_key(|(stream, _)| *stream == Stream::Stderr);
        assert_eq!(
            lines,
            [
                (Stream::Stdout, "out <redacted>".to_string()),
                (Stream::Stderr, "err <redacted>:".to_string())
            ]
        );
    }
}

#[tokio::test]
async fn sudo_without_or_with_a_wrong_password_is_a_clear_error() {
    let f = fixture();
    let s = connect(&f.sudo_target(None), &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap();
    let err = s
        .exec(
            ExecRequest::new("id -u")
                .privileged()
                .stdin(b"data\n".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Sudo { .. }), "{err}");
    assert!(err.to_string().contains("asks for a password"), "{err}");
    assert!(err.to_string().starts_with("pi-test: "), "{err}");

    let wrong = "wrong-Pw-for-sudo-77";
    let s = connect(
        &f.sudo_target(Some(wrong)),
        &f.options(HostKeyPolicy::Strict),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = s
        .exec(ExecRequest::new("id -u").privileged())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, RemoteError::Sudo { .. }), "{text}");
    assert!(text.contains("rejected the password"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    // sudo delays after a failure; we do not wait for a full second round of its prompts.
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session is still usable afterwards.
    assert!(s.exec(ExecRequest::new("true")).await.unwrap().success());
    assert_no_password(&f.sshd.log());
}

// ---------------------------------------------------------------- upload

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn upload_is_atomic_and_skipped_when_unchanged() {
    let f = fixture();
    let s = f.connect().await;
    let dest = f.user_dir().join("conf dir/sub/app's.json");
    let dest_s = dest.to_str().unwrap().to_string();
    let req = |contents: &[u8], mode| UploadRequest {
        contents: contents.to_vec(),
        dest: dest_s.clone(),
        mode,
        privileged: false,
    };
    assert_eq!(
        s.upload(req(b"{\"v\":1}\n", 0o640)).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(fs::read(&dest).unwrap(), b"{\"v\":1}\n");
    assert_eq!(mode_of(&dest), 0o640);
    assert_eq!(fs::metadata(&dest).unwrap().uid(), test_uid());
    let inode = fs::metadata(&dest).unwrap().ino();

    // Same bytes, same mode: nothing is written (the inode is the same file).
    assert_eq!(
        s.upload(req(b"{\"v\":1}\n", 0o640)).await.unwrap(),
        UploadOutcome::Unchanged
    );
    assert_eq!(fs::metadata(&dest).unwrap().ino(), inode);

    // Same bytes, other mode: the mode is fixed.
    assert_eq!(
        s.upload(req(b"{\"v\":1}\n", 0o600)).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(mode_of(&dest), 0o600);

    // New bytes: a new file is renamed over the old one.
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.upload(req(&big, 0o644)).await.unwrap(),
        UploadOutcome::Written
    );
    assert!(fs::read(&dest).unwrap() == big);
    assert_eq!(mode_of(&dest), 0o644);
    assert_ne!(fs::metadata(&dest).unwrap().ino(), inode);

    // A directory in the way is an error, not a file moved into it.
    let err = s
        .upload(UploadRequest {
            contents: b"x".to_vec(),
            dest: dest.parent().unwrap().to_str().unwrap().into(),
            mode: 0o644,
            privileged: false,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");

    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app's.json"]);
}

#[tokio::test]
async fn upload_where_the_user_may_not_write_fails_cleanly() {
    let f = fixture();
    let s = f.connect().await;
    let root_dir = f.sshd.dir.path().join("root-only");
    fs::create_dir(&root_dir).unwrap();
    fs::set_permissions(&root_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = s
        .upload(UploadRequest {
            contents: b"x".to_vec(),
            dest: root_dir.join("f").to_str().unwrap().into(),
            mode: 0o644,
            privileged: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Upload { .. }), "{err}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
    let err = s
        .upload(UploadRequest {
            contents: b"x".to_vec(),
            dest: "relative/path".into(),
            mode: 0o644,
            privileged: false,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
}

#[tokio::test]
async fn privileged_upload_through_sudo() {
    let f = fixture();
    let s = connect(
        &f.sudo_target(Some(test_password())),
        &f.options(HostKeyPolicy::Strict),
    )
    .await
    .unwrap();
    // A folder only root may enter: reading the old file needs root too.
    let root_dir = f.sshd.dir.path().join("etc-like");
    fs::create_dir(&root_dir).unwrap();
    fs::set_permissions(&root_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let dest = root_dir.join("docker/daemon.json");
    let data: Vec<u8> = b"{\"insecure-registries\":[\"10.0.0.1:5000\"]}\n".to_vec();
    let req = UploadRequest {
        contents: data.clone(),
        dest: dest.to_str().unwrap().into(),
        mode: 0o644,
        privileged: true,
    };
    assert_eq!(s.upload(req.clone()).await.unwrap(), UploadOutcome::Written);
    assert_eq!(fs::read(&dest).unwrap(), data);
    let meta = fs::metadata(&dest).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o7777), (0, 0o644));
    assert_eq!(
        s.upload(req.clone()).await.unwrap(),
        UploadOutcome::Unchanged
    );

    // Binary data through sudo's stdin, byte for byte.
    let bin: Vec<u8> = (0..1_000_003u32).map(|i| (i * 13 % 256) as u8).collect();
    let req = UploadRequest {
        contents: bin.clone(),
        ..req
    };
    assert_eq!(s.upload(req).await.unwrap(), UploadOutcome::Written);
    assert!(fs::read(&dest).unwrap() == bin);

    // Without sudo rights the same upload is refused.
    let plain = f.connect().await;
    let err = plain
        .upload(UploadRequest {
            contents: b"x".to_vec(),
            dest: dest.to_str().unwrap().into(),
            mode: 0o644,
            privileged: true,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Upload { .. }), "{err}");
    assert!(fs::read(&dest).unwrap() == bin);
}

/// Secrets in a shared value must not leak through Debug of the options or target either.
#[test]
fn debug_output_of_options_and_target_is_redacted() {
    let mut o = options(Path::new("kh"), HostKeyPolicy::Strict);
    o.key_passphrase = Some(Secret::new("pass-phrase-x"));
    let mut t = Target::new("a", "b", "c");
    t.sudo_password = Some(Secret::new("sudo-pw-x"));
    t.login_password = Some(Secret::new("login-pw-x"));
    let text = format!("{o:?} {t:?}");
    for s in ["pass-phrase-x", "sudo-pw-x", "login-pw-x"] {
        assert!(!text.contains(s), "{text}");
    }
}

/// With PasswordAuthentication off, the password goes through keyboard-interactive (PAM).
#[tokio::test]
async fn keyboard_interactive_through_pam() {
    let f = fixture_with(
        SshdConfig {
            extra: vec![
                "UsePAM yes".into(),
                "PasswordAuthentication no".into(),
                "KbdInteractiveAuthentication yes".into(),
            ],
            ..Default::default()
        },
        true,
    );
    let mut t = f.password_target();
    let s = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", f.sshd.log()));
    assert_eq!(
        s.exec(ExecRequest::new("id -un"))
            .await
            .unwrap()
            .stdout_str(),
        format!("{TEST_USER}\n")
    );
    assert!(
        f.sshd.log().contains("Accepted keyboard-interactive"),
        "{}",
        f.sshd.log()
    );

    t.login_password = Some(Secret::new("wrong-kbd-pw"));
    let err = connect(&t, &f.options(HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("keyboard-interactive"), "{msg}");
    assert!(!msg.contains("wrong-kbd-pw"), "{msg}");
}

/// RSA keys sign with the SHA-2 hash the server announces; ECDSA keys work as they are.
#[tokio::test]
async fn rsa_and_ecdsa_identity_files_and_agent_keys() {
    let dir = client_dir();
    let rsa = keygen(dir.path(), "id_rsa", "rsa", "");
    let ecdsa = keygen(dir.path(), "id_ecdsa", "ecdsa", "");
    let agent_rsa = keygen(dir.path(), "agent_rsa", "rsa", "");
    let sshd = Sshd::start(SshdConfig {
        authorized: vec![
            rsa.public.clone(),
            ecdsa.public.clone(),
            agent_rsa.public.clone(),
        ],
        ..Default::default()
    });
    let kh = dir.path().join("known_hosts");
    fs::write(&kh, sshd.known_hosts_line("ed25519")).unwrap();
    let mut o = options(&kh, HostKeyPolicy::Strict);
    for key in [&rsa, &ecdsa] {
        let mut t = Target::new("keys", &sshd.addr, TEST_USER);
        t.port = sshd.port;
        t.identity_files = vec![key.path.clone()];
        let s = connect(&t, &o)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.path.display()));
        assert!(s.exec(ExecRequest::new("true")).await.unwrap().success());
    }
    let agent = Agent::start(dir.path());
    agent.add(&agent_rsa.path);
    o.agent_socket = Some(agent.socket.clone());
    let mut t = Target::new("keys", &sshd.addr, TEST_USER);
    t.port = sshd.port;
    t.identity_files = vec![dir.path().join("absent")];
    connect(&t, &o).await.unwrap();
    let log = sshd.log();
    assert!(
        log.contains("Accepted publickey for rpiprov-test from 127.0.0.1"),
        "{log}"
    );
    assert_eq!(log.matches(": RSA SHA256:").count(), 2, "{log}");
    assert_eq!(log.matches(": ECDSA SHA256:").count(), 1, "{log}");
}

/// NOPASSWD sudo (Raspberry Pi OS's default user): no prompt, so a configured password is
/// never sent and cannot end up in the command's stdin.
#[tokio::test]
async fn sudo_without_a_password_prompt() {
    let f = fixture();
    for password in [None, Some(test_password())] {
        let mut t = f.sudo_target(password);
        t.user = sshd::NOPASSWD_USER.into();
        let s = connect(&t, &f.options(HostKeyPolicy::Strict))
            .await
            .unwrap();
        let out = s
            .exec(
                ExecRequest::new("cat; echo; id -u")
                    .privileged()
                    .stdin(b"only this".to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "only this\n0\n");
        assert_eq!(out.stderr_str(), "");
    }
}

/// With `HostKeyAlias`, known_hosts is consulted (and written) under the alias, without a
/// port, as OpenSSH does.
#[tokio::test]
async fn host_key_alias_names_the_known_hosts_entry() {
    let f = fixture_with(SshdConfig::default(), false);
    let cfg = f.client.path().join("config");
    fs::write(
        &cfg,
        format!(
            "Host pi7\n  HostName {}\n  Port {}\n  HostKeyAlias rack-pi-7\n",
            f.sshd.addr, f.sshd.port
        ),
    )
    .unwrap();
    let mut t = f.target();
    t.address = "pi7".into();
    t.port = 22;
    let mut o = f.options(HostKeyPolicy::AcceptNew);
    o.ssh_config = Some(cfg);
    connect(&t, &o).await.unwrap();
    assert_eq!(
        fs::read_to_string(&f.known_hosts).unwrap(),
        format!("rack-pi-7 {}\n", f.sshd.host_key("ed25519"))
    );
    o.policy = HostKeyPolicy::Strict;
    connect(&t, &o).await.unwrap();
}
