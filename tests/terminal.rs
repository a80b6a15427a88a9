//! What every command does when its output goes away, through the real binary (issue 9,
//! item 11): `rpiprov check 2>&1 | head -1` closes the pipe after a line, a terminal can
//! hang up. A closed stdout or stderr ends that output quietly, as other Unix tools do:
//! never a panic (exit 101, "failed printing to stdout"), the command still runs to its
//! end and exits with its own code. No root, no network beyond a closed loopback port.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rpiprov");

/// A pipe whose reading end is already closed: the first write fails with EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

/// An inventory of one host on a loopback port where nothing listens (connection refused
/// at once), whose known_hosts lies outside its folder (`check` warns about that on
/// stderr), and a broken one.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(port: u16) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inv")).unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        std::fs::write(
            dir.path().join("inv/inventory.toml"),
            format!(
                "[ssh]\nknown_hosts = \"../known_hosts\"\nconnect_timeout = \"2s\"\n\n\
                 [defaults]\nuser = \"pi\"\n\n\
                 [[host]]\nname = \"pi1\"\naddress = \"127.0.0.1\"\nport = {port}\nrole = \"manager\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("inv/broken.toml"),
            "[[host]]\nname = \"pi 1\"\nadress = \"x\"\n",
        )
        .unwrap();
        Files { dir }
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("inv/inventory.toml")
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_string()
    }
}

/// A loopback port with nothing behind it.
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every command, each writing on stdout, stderr or both.
fn cases(f: &Files) -> Vec<Vec<String>> {
    let inv = f.inventory().to_str().unwrap().to_string();
    let with_inv = |args: &[&str]| {
        let mut v = vec!["-i".to_string(), inv.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    vec![
        with_inv(&["check"]),
        with_inv(&["check", "--json"]),
        vec!["-i".into(), f.path("inv/broken.toml"), "check".into()],
        vec!["--help".into()],
        vec!["completions".into(), "bash".into()],
        vec!["man".into()],
        vec!["bootstrap".into(), "--no-such-flag".into()],
        with_inv(&["bootstrap"]),
        with_inv(&["-v", "bootstrap"]),
        with_inv(&["--json", "bootstrap"]),
        with_inv(&["run", "--", "true"]),
        with_inv(&["doctor"]),
        with_inv(&["deploy"]),
        with_inv(&["teardown", "--yes"]),
        vec![
            "lab".into(),
            "status".into(),
            "--dir".into(),
            f.path("no-lab-here"),
        ],
    ]
}

/// The binary with `args`; its state (the lock's installation id) in `f`'s folder, never
/// in the home of whoever runs the tests.
fn run(f: &Files, args: &[String], stdout: Stdio, stderr: Stdio) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XDG_STATE_HOME", f.path("state"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env_remove("RPIPROV_SUDO_PASSWORD")
        .output()
        .expect("run rpiprov")
}

/// Output with each number masked as `0`: times (and their digit counts) differ from
/// one run to the next.
fn masked(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('0') {
            out.push('0');
        }
    }
    out
}

#[test]
fn issue_9_item_11_a_closed_stdout_or_stderr_ends_that_output_quietly() {
    let files = Files::new(refused_port());
    for args in cases(&files) {
        let open = run(&files, &args, Stdio::piped(), Stdio::piped());
        let code = open.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "rpiprov {args:?} did not run as expected: {open:?}"
        );
        assert!(
            !open.stdout.is_empty() || !open.stderr.is_empty(),
            "rpiprov {args:?} wrote nothing, so it checks nothing"
        );

        // stdout closed: the same exit code, and stderr says exactly what it said.
        let out_closed = run(&files, &args, closed_pipe().into(), Stdio::piped());
        assert_eq!(
            out_closed.status.code(),
            code,
            "rpiprov {args:?} with stdout closed:\n{}",
            String::from_utf8_lossy(&out_closed.stderr)
        );
        assert_eq!(
            masked(&out_closed.stderr),
            masked(&open.stderr),
            "rpiprov {args:?}: stderr with stdout closed"
        );

        // stderr closed: the same exit code, and stdout holds all it held.
        let err_closed = run(&files, &args, Stdio::piped(), closed_pipe().into());
        assert_eq!(
            err_closed.status.code(),
            code,
            "rpiprov {args:?} with stderr closed:\n{}",
            String::from_utf8_lossy(&err_closed.stdout)
        );
        assert_eq!(
            masked(&err_closed.stdout),
            masked(&open.stdout),
            "rpiprov {args:?}: stdout with stderr closed"
        );

        // `2>&1 | head -1` once head has gone: both into the same closed pipe.
        let both = closed_pipe();
        let again = both.try_clone().unwrap();
        let both_closed = run(&files, &args, both.into(), again.into());
        assert_eq!(
            both_closed.status.code(),
            code,
            "rpiprov {args:?} with stdout and stderr closed"
        );
    }
}

/// A server that accepts connections and never says a word: the SSH handshake waits
/// until the connect timeout.
fn silent_server() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors it opened into the integers we pass; name,
    // termios and window size are optional and left null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are open and now owned by these files alone.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

/// The progress bars (indicatif, on a terminal) lose their terminal mid-run: the run goes
/// on to its summary and its own exit code.
#[test]
fn issue_9_item_11_progress_bars_survive_a_terminal_that_hangs_up() {
    let (_listener, port) = silent_server();
    let files = Files::new(port);
    let (mut master, slave) = pty();
    let child = Command::new(BIN)
        .env("XDG_STATE_HOME", files.path("state"))
        .arg("-i")
        .arg(files.inventory())
        .arg("bootstrap")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(slave)
        .spawn()
        .expect("run rpiprov");
    // The bars draw on the terminal while the handshake waits...
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("pi1") {
                break;
            }
        }
        // ...then the terminal goes away: dropping the master hangs it up.
        drop(master);
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let drawn = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the progress bars were drawn on the terminal");
    assert!(drawn.contains("pi1"), "{drawn:?}");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout.contains("pi1   FAILED"), "{stdout}");
    assert!(
        stdout.contains("bootstrap: 0 changed, 0 unchanged, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn the_inventory_of_these_tests_loads() {
    let files = Files::new(refused_port());
    let loaded = rpiprov::config::load(Path::new(&files.inventory()), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(loaded.inventory.hosts.len(), 1);
    assert!(
        !loaded.warnings.is_empty(),
        "check must have something to say on stderr"
    );
}
