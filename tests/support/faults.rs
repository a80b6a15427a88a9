//! Helpers of the fault suite (issue 14, `tests/faults_*.rs`): a fault is injected while a
//! command runs, so the command runs in the background ([`Running`]) with its output read
//! as it comes, and the test acts when a given line appears (a step starting on a host or
//! stack); then what the command said, how long it took, and what the manager holds.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fleet::{BIN, Fleet, text};

/// Short timeouts for the suite's inventory and playbook: each fault then ends the command
/// within seconds rather than Docker's or SSH's defaults (minutes), and the suite stays fast.
pub const RECONNECT_TIMEOUT: &str = "8s";
pub const COMMAND_TIMEOUT: &str = "90s";
pub const STACK_TIMEOUT: &str = "60s";

/// Rewrites the lab's inventory and playbook with the suite's short timeouts.
pub fn short_timeouts(fleet: &Fleet) {
    let inventory = fleet.read("inventory.toml").replacen(
        "[ssh]\n",
        &format!(
            "[ssh]\nreconnect_timeout = \"{RECONNECT_TIMEOUT}\"\ncommand_timeout = \"{COMMAND_TIMEOUT}\"\n"
        ),
        1,
    );
    std::fs::write(fleet.dir.join("inventory.toml"), inventory).unwrap();
    let playbook = fleet.read("playbook.toml").replace(
        ".yml\"\n",
        &format!(".yml\"\ntimeout = \"{STACK_TIMEOUT}\"\n"),
    );
    std::fs::write(fleet.dir.join("playbook.toml"), playbook).unwrap();
}

/// A command of the real binary running in the background, its stdout and stderr
/// collected as they come.
pub struct Running {
    args: String,
    child: Child,
    started: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a [`Running`] command did: its output and how long it took.
pub struct Ended {
    pub out: Output,
    pub elapsed: Duration,
}

impl Ended {
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Status, stdout and stderr, for assertion messages and searches.
    pub fn all(&self) -> String {
        text(&self.out)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Asserts the exit code, showing everything when it differs.
    pub fn expect_code(&self, code: i32) -> &Ended {
        assert_eq!(
            self.code(),
            Some(code),
            "after {:?}:\n{}",
            self.elapsed,
            self.all()
        );
        self
    }

    /// Asserts that the output says `words`, showing everything when it does not.
    pub fn says(&self, words: &str) -> &Ended {
        let all = self.all();
        assert!(all.contains(words), "{words:?} not said:\n{all}");
        self
    }

    /// Asserts that the command ended within `bound` of its start.
    pub fn within(&self, bound: Duration) -> &Ended {
        assert!(
            self.elapsed < bound,
            "took {:?} (bound {bound:?}):\n{}",
            self.elapsed,
            self.all()
        );
        self
    }
}

fn reader(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Running {
    /// Starts the real binary with `-i` the lab's inventory and plain progress lines (`-v`
    /// where the caller passes it), as [`Fleet::rpiprov`] does, without waiting.
    pub fn start(fleet: &Fleet, args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .arg("-i")
            .arg(fleet.dir.join("inventory.toml"))
            .args(args)
            .env("RPIPROV_SUDO_PASSWORD", fleet.read("sudo-password").trim())
            .env("XDG_STATE_HOME", fleet.state_home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rpiprov");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            reader(child.stdout.take().unwrap(), stdout.clone()),
            reader(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running {
            args: args.join(" "),
            child,
            started: Instant::now(),
            stdout,
            stderr,
            readers,
        }
    }

    /// What it printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stderr holds `needle`; panics (the command killed) when it does not
    /// within `within`, or when the command ended first.
    pub fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr_so_far().contains(needle) {
                return;
            }
            let ended = self.child.try_wait().unwrap();
            if ended.is_some() || Instant::now() > deadline {
                if ended.is_none() {
                    self.child.kill().ok();
                }
                let _ = self.child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{needle:?} not said within {within:?} ({}):\n{}",
                    if ended.is_some() {
                        "the command ended"
                    } else {
                        "the command was killed"
                    },
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the command (the process this test started, by its pid).
    pub fn signal(&self, signal: i32) {
        // SAFETY: a signal to our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the command to end, at most `within` from its start: a command that
    /// hangs longer is killed and the test fails, saying what it had printed.
    pub fn finish(mut self, within: Duration) -> Ended {
        let deadline = self.started + within;
        let status: ExitStatus = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                let _ = self.child.wait();
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                panic!(
                    "still running after {within:?}, killed:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = Output {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
        };
        // Shown with the test's output when it fails (or with --nocapture): what each
        // command of the case said, in order.
        eprintln!(
            "=== rpiprov {} ended after {elapsed:.1?}:\n{}",
            self.args,
            text(&out)
        );
        Ended { out, elapsed }
    }
}

/// Runs a command to its end (at most `within`), measured.
pub fn run(fleet: &Fleet, args: &[&str], within: Duration) -> Ended {
    Running::start(fleet, args).finish(within)
}

/// Waits until `ok` holds, polling; fails the test after `within`, naming `what`.
pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Limits what reaches node `name` to `kbit` kbit/s (a token bucket on the host side of its
/// veth, the lab's own interface): a shipping or an upload to it then lasts long enough to
/// be cut in the middle. `None` lifts the limit.
pub fn throttle(fleet: &Fleet, name: &str, kbit: Option<u32>) {
    let lab = rpiprov::lab::Lab::open(&fleet.dir).expect("the lab opens");
    let veth = lab.node(name).expect("the node exists").veth.clone();
    let args: Vec<String> = match kbit {
        Some(k) => [
            "qdisc",
            "replace",
            "dev",
            &veth,
            "root",
            "tbf",
            "rate",
            &format!("{k}kbit"),
            "burst",
            "16kb",
            "latency",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        None => ["qdisc", "del", "dev", &veth, "root"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let out = Command::new("tc").args(&args).output().expect("run tc");
    assert!(out.status.success(), "tc {args:?}: {}", text(&out));
}

/// A root shell command inside node `name` (no SSH: works with its link cut).
pub fn sh(fleet: &Fleet, name: &str, script: &str) -> String {
    fleet.inside(name, &["sh", "-c", script])
}

/// rpiprov's temporary files and folders on node `name` (an upload's `.NAME.rpiprov-tmp.*`,
/// a file set's `.incoming.*`): none may be left visible after any run, however it ended.
pub fn temp_files(fleet: &Fleet, name: &str) -> String {
    sh(
        fleet,
        name,
        "find /var/lib/rpiprov \\( -name '*.rpiprov-tmp.*' -o -name '.incoming.*' \\) 2>/dev/null | sort",
    )
}

/// Whether the deploy lock is held on node `name`.
pub fn lock_held(fleet: &Fleet, name: &str) -> bool {
    fleet
        .try_inside(name, &["test", "-e", "/var/lib/rpiprov/lock"])
        .is_some()
}

/// A file of the set a stack's `current` link names on the manager (the set the stack
/// is deployed from), found by its name.
pub fn current_compose(fleet: &Fleet, manager: &str, stack: &str, file: &str) -> String {
    sh(
        fleet,
        manager,
        &format!(
            "f=$(find -L /var/lib/rpiprov/stacks/{stack}/current/ -name {file}); test -n \"$f\" && cat $f"
        ),
    )
}

/// `NAME RUNNING/DESIRED` of every service, sorted, as manager `name` counts them.
pub fn replicas(fleet: &Fleet, name: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        fleet,
        name,
        "docker service ls --format '{{.Name}} {{.Replicas}}'",
    )
    .lines()
    // (Docker adds "(max 1 per node)" to api's count.)
    .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
    .collect();
    v.sort();
    v
}

/// The lab playbook's services, each running everywhere it should on a fleet of three
/// Docker nodes (web is global).
pub const CONVERGED: [&str; 3] = ["api_api 2/2", "echo_echo 1/1", "web_web 3/3"];

/// The nodes that run a task of `service` now, sorted.
pub fn running_on(fleet: &Fleet, manager: &str, service: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        fleet,
        manager,
        &format!(
            "docker service ps --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}' {service}"
        ),
    )
    .lines()
    .filter(|l| l.contains(" Running"))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .collect();
    v.sort();
    v
}

/// Adds an environment variable to a stack file of the lab: the stack's set and spec
/// change, so the next deploy redeploys it (and uploads a new set).
pub fn touch_stack(fleet: &Fleet, stack: &str, value: &str) {
    let path = fleet.dir.join(format!("stacks/{stack}.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let text = match text.find("    environment:\n      FAULT: ") {
        Some(at) => {
            let end = at + text[at..].find("\n    deploy:").unwrap();
            format!(
                "{}    environment:\n      FAULT: \"{value}\"{}",
                &text[..at],
                &text[end..]
            )
        }
        None => text.replacen(
            "    deploy:\n",
            &format!("    environment:\n      FAULT: \"{value}\"\n    deploy:\n"),
            1,
        ),
    };
    std::fs::write(&path, text).unwrap();
}

/// Waits until manager `manager` lists node `node` with this status (`Ready`, `Down`).
pub fn wait_listed(fleet: &Fleet, manager: &str, node: &str, status: &str) {
    wait_until(
        &format!("{manager} lists {node} {status}"),
        Duration::from_secs(90),
        || {
            fleet
                .try_inside(
                    manager,
                    &[
                        "docker",
                        "node",
                        "ls",
                        "--format",
                        "{{.Hostname}} {{.Status}}",
                    ],
                )
                .is_some_and(|ls| ls.lines().any(|l| l == format!("{node} {status}")))
        },
    );
}

/// Waits until the lab playbook's services run everywhere they should.
pub fn wait_converged(fleet: &Fleet) {
    wait_until("every service converged", Duration::from_secs(90), || {
        replicas(fleet, "pi1") == CONVERGED
    });
}

/// What the manager must hold after any run, however it ended: no temporary file on any
/// node, no lock.
pub fn clean(fleet: &Fleet) {
    for node in ["pi1", "pi2", "pi3"] {
        assert_eq!(
            temp_files(fleet, node),
            "",
            "temporary files left on {node}"
        );
    }
    assert!(!lock_held(fleet, "pi1"), "the deploy lock is still held");
}

/// The rerun after recovery: exit 0 within `within`, every service at its count (as
/// `replicas` lists them: `converged`), nothing left behind.
pub fn rerun_converges(fleet: &Fleet, within: Duration, converged: &[&str]) -> Ended {
    let ended = run(fleet, &["-v", "deploy"], within);
    ended.expect_code(0);
    // After an outage of the manager swarm may briefly run one task too many (api 3/2)
    // while it reconciles, on its own: every service at its count within seconds.
    wait_until(
        "every service at its count",
        Duration::from_secs(30),
        || replicas(fleet, "pi1") == converged,
    );
    clean(fleet);
    ended
}
