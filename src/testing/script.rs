//! The one runner for scripts under test: every command builder that holds shell logic is
//! tested as an exact string AND run here, by a real `sh`, either bare ([`sh`], [`sh_env`],
//! [`syntax_ok`]) or on a [`ScratchHost`]: a scratch folder standing in for
//! [`ROOT`](crate::docker::paths::ROOT) and a stand-in `docker` on `PATH` that records
//! its calls and answers from files the test writes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::docker::paths::ROOT;

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The output of a script that must succeed.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "script failed: {}", self.stderr);
        self.stdout
    }
}

fn spawn(args: &[&str], script: &str, stdin: &[u8], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new("sh");
    cmd.args(args)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("sh runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    // A script that never reads its stdin may exit before the write: not an error.
    match input.write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write to sh: {e}"),
        _ => {}
    }
    drop(input);
    let out = child.wait_with_output().expect("sh ends");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `script` in `sh -c`, with this process's environment and an empty stdin.
pub fn sh(script: &str) -> Ran {
    spawn(&[], script, b"", &[])
}

/// Runs `script` in `sh -c` with these variables set (`PATH`, say).
pub fn sh_env(script: &str, env: &[(&str, &str)]) -> Ran {
    spawn(&[], script, b"", env)
}

/// Asserts that `script` is valid shell (`sh -n`), without running it.
pub fn syntax_ok(script: &str) {
    let ran = spawn(&["-n"], script, b"", &[]);
    assert_eq!(ran.code, 0, "{script}\n{}", ran.stderr);
}

/// The stand-in `docker`: appends its arguments to `$FAKE/calls`, then answers the few
/// subcommands the builders use, from files in `$FAKE` that a test writes or removes
/// (`docker service inspect NAME` succeeds when `service_NAME` exists); any
/// other `docker A B ...` prints `$FAKE/answer_A_B` if there is one (see
/// [`ScratchHost::answer`]).
const STAND_IN_DOCKER: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE/calls"
key=$(printf '%s' "$3" | tr '/:' '__')
case "$1 $2" in
  "image inspect") [ -e "$FAKE/image_$key" ] ;;
  "service inspect") if [ "$3" = "--format" ] || [ -e "$FAKE/service_$3" ]; then cat "$FAKE/answer_service_inspect" 2>/dev/null; true; else echo "Error: no such service: $3" >&2; exit 1; fi ;;
  "load "*) cat > "$FAKE/archive"; touch "$FAKE/image_lab_a_1"; echo "Loaded image: lab/a:1" ;;
  "stack deploy") echo "DB_PASSWORD=$DB_PASSWORD"; pwd ;;
  "stack services")
    if [ -e "$FAKE/down" ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi
    echo "stack web" ;;
  *) if [ -e "$FAKE/answer_$1_$2" ]; then cat "$FAKE/answer_$1_$2"; fi ;;
esac
"#;

/// A host in a scratch folder: built commands run with [`ROOT`] moved into it and the
/// stand-in `docker` first on `PATH`. Checks the shell logic (records, `set -e`, stdin)
/// beyond the exact strings.
pub struct ScratchHost {
    dir: tempfile::TempDir,
}

impl Default for ScratchHost {
    fn default() -> Self {
        Self::new()
    }
}

impl ScratchHost {
    pub fn new() -> ScratchHost {
        let dir = tempfile::tempdir().expect("scratch folder");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin folder");
        let docker = bin.join("docker");
        std::fs::write(&docker, STAND_IN_DOCKER).expect("stand-in docker");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755))
            .expect("stand-in docker is executable");
        ScratchHost { dir }
    }

    /// Where [`ROOT`] points on this host.
    pub fn root(&self) -> String {
        self.dir.path().join("root").to_str().unwrap().to_string()
    }

    /// A file of the stand-in `docker` (`calls`, `down`, `image_<name>` ...).
    pub fn docker_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What the stand-in `docker` answers to `docker A B ...` (`("ps", "-aq")`), for the
    /// subcommands it has no answer of its own to.
    pub fn answer(&self, (a, b): (&str, &str), text: &str) {
        std::fs::write(self.docker_file(&format!("answer_{a}_{b}")), text).expect("answer file");
    }

    /// Puts a stand-in for the command `name` first on `PATH`: a test holds a script at a
    /// point of its choosing (say, a release just before it removes). The real command is
    /// the next one on `PATH`: `PATH=${PATH#*:} exec NAME "$@"` runs it.
    pub fn stand_in(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, script).expect("stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("stand-in is executable");
    }

    /// What the stand-in `docker` was called with, one call per line.
    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.docker_file("calls")).unwrap_or_default()
    }

    /// Runs a built command with `stdin`.
    pub fn run(&self, cmd: &str, stdin: &[u8]) -> Ran {
        let cmd = cmd.replace(ROOT, &self.root());
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let fake = self.dir.path().to_str().unwrap().to_string();
        spawn(&[], &cmd, stdin, &[("PATH", &path), ("FAKE", &fake)])
    }
}
