//! The swarm's state on a manager, copied out and put back (`rpiprov backup`,
//! `rpiprov restore`), the way Docker documents it: Docker stopped on that manager, its
//! `swarm` folder (raft log and snapshots, certificates and keys, under the data root
//! `DockerRootDir`) copied or replaced, Docker started again. Also rpiprov's own records
//! on the manager ([`crate::docker::paths`]: every stack's file sets, the link to the one
//! deployed, the deploy record), which go with it.
//!
//! Docker's stop is bounded and its start does not depend on this machine: the stop, the
//! copy (or the swap) and the start run in one script on the Pi, detached from the SSH
//! session ([`snapshot`], [`put_back`]). A Ctrl-C here, a lost connection or a killed
//! `rpiprov` leave it running to its end, and Docker starts again whatever happened to
//! the copy; the session only waits for its `done` file. What it leaves is a stage folder
//! under [`stage_dir`] ([`Stage`]): fetched and removed by the laptop ([`fetch`],
//! [`discard`]), or removed by the next run once done ([`settle`] after an interruption).
//!
//! Pure: builders of remote commands and parsers of what they print; tested as exact
//! strings and run in a real `sh` (`crate::testing::script`).

use crate::docker::engine::{start_docker, stop_docker};
use crate::docker::paths::{ROOT, stacks_dir, stage_dir};
use crate::shell::quote;

/// The swarm folder's name under Docker's data root.
pub const SWARM_DIR: &str = "swarm";

/// The file a snapshot stage holds: the swarm folder, as a gzipped tar of `swarm/...`.
pub const SWARM_FILE: &str = "swarm.tar.gz";

/// The file a records stage holds: `stacks/...` of [`ROOT`], as a gzipped tar.
pub const RECORDS_FILE: &str = "records.tar.gz";

/// Where dockerd says it runs (its default `pidfile`): after the stop it must be gone
/// before the state is touched.
pub const DOCKER_PID: &str = "/var/run/docker.pid";

/// How long the session waits for a detached script (stop, copy or swap, start) before it
/// gives up waiting; the script goes on and starts Docker again by itself.
const WAIT_TICKS: u32 = 3000;

/// What a stage folder is for: its name's prefix under [`stage_dir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A copy of the swarm folder ([`snapshot`]).
    Snapshot,
    /// rpiprov's records, packed ([`pack_records`]).
    Records,
    /// A swarm folder uploaded for a restore ([`put_back`]).
    Restore,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Records => "records",
            Kind::Restore => "restore",
        }
    }
}

/// A stage folder on the Pi, as its script named it: `/var/lib/rpiprov/stage/snapshot.Ab3dE9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage(String);

impl Stage {
    /// The folder, when it is one of the stages of `kind` (what `mktemp` makes there): the
    /// Pi's word is only ever used on that Pi, and never as anything but such a folder.
    pub fn parse(kind: Kind, path: &str) -> Option<Stage> {
        let rest = path
            .strip_prefix(&stage_dir())?
            .strip_prefix('/')?
            .strip_prefix(kind.prefix())?
            .strip_prefix('.')?;
        (!rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Stage(path.to_string()))
    }

    pub fn path(&self) -> &str {
        &self.0
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }
}

/// Runs `limit` seconds at most (GNU or busybox `timeout`), or unbounded where there is no
/// `timeout`: a shell function of the detached scripts.
const LIM: &str = "lim() { s=$1; shift; if command -v timeout >/dev/null 2>&1; then timeout \"$s\" \"$@\"; else \"$@\"; fi; }\n";

/// Docker's stop, checked: `stop=ok` only when the stop succeeded and no dockerd answers
/// to its pid file any more.
fn stop_checked() -> String {
    format!(
        "stop=failed\n\
         if lim 120 sh -c {stop} >>\"$t/log\" 2>&1; then\n\
         \x20 if [ -s {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then echo 'rpiprov: dockerd still runs after the stop' >>\"$t/log\"; else stop=ok; fi\n\
         fi\n",
        stop = quote(&stop_docker()),
        pid = DOCKER_PID,
    )
}

/// Docker's start, whatever came before: `start=ok` once it answers.
fn start_always() -> String {
    format!(
        "start=failed\n\
         if lim 180 sh -c {start} >>\"$t/log\" 2>&1; then start=ok; fi\n",
        start = quote(&start_docker()),
    )
}

/// The detached script's head: its stage in `$t`, its pid, and the signals that must not
/// end it (a hangup of the session it came from; a TERM or INT is noted, and the script
/// still starts Docker again before it ends).
const WORKER_HEAD: &str = "t=$1\n\
     echo $$ >\"$t/pid\"\n\
     trap '' HUP\n\
     trap 'echo \"rpiprov: signal received; Docker is started again first\" >>\"$t/log\"' INT TERM\n";

/// Writes `done` whole (a reader sees no `done` or all of it).
fn worker_done(fields: &[&str]) -> String {
    let format: String = fields.iter().map(|f| format!("{f} %s\\n")).collect();
    let values: Vec<String> = fields.iter().map(|f| format!("\"${f}\"")).collect();
    format!(
        "printf '{format}' {} >\"$t/done.new\"\nmv \"$t/done.new\" \"$t/done\"\n",
        values.join(" ")
    )
}

/// Whether stage `$d` is over: its script wrote `done`, or died without (its pid gone).
const STAGE_OVER: &str = "{ [ -e \"$d/done\" ] || { [ -e \"$d/pid\" ] && ! kill -0 \"$(cat \"$d/pid\")\" 2>/dev/null; }; }";

/// The stage folder of a new script: the stages of this kind that are over are removed
/// first (what an interrupted run left), then a fresh one is made and named (`@@stage`).
fn new_stage(kind: Kind) -> String {
    format!(
        "set -eu\n\
         umask 077\n\
         s={s}\n\
         mkdir -p \"$s\"\n\
         chmod 700 \"$s\"\n\
         for d in \"$s\"/{p}.*; do if {STAGE_OVER}; then rm -rf \"$d\"; fi; done\n\
         t=$(mktemp -d \"$s/{p}.XXXXXX\")\n\
         echo \"@@stage $t\"\n",
        s = quote(&stage_dir()),
        p = kind.prefix(),
    )
}

/// Starts `worker` detached from the session (its own session, stdin from nowhere, output
/// to its log), then waits for its `done` and prints it.
fn run_detached(worker: &str) -> String {
    format!(
        "cat >\"$t/run\" <<'RPIPROV_WORKER'\n\
         {worker}RPIPROV_WORKER\n\
         setsid sh \"$t/run\" \"$t\" </dev/null >>\"$t/log\" 2>&1 &\n\
         i=0\n\
         while [ ! -e \"$t/done\" ]; do\n\
         \x20 i=$((i+1))\n\
         \x20 if [ \"$i\" -gt {WAIT_TICKS} ]; then echo 'rpiprov: the script on this Pi did not end within 600 s; it goes on, and starts Docker again when it ends' >&2; exit 1; fi\n\
         \x20 sleep 0.2\n\
         done\n\
         cat \"$t/done\"\n"
    )
}

/// Copies the swarm folder of Docker's data root `docker_root` into a new stage, Docker
/// stopped for the copy and started again whatever happened to it (see the module
/// header). Prints `@@stage DIR`, then the `done` lines: `stop ok|failed`, `copy
/// ok|failed|skipped`, `start ok|failed`, `sha256 HEX` and `size BYTES` of [`SWARM_FILE`].
/// Read by [`parse_staged`].
pub fn snapshot(docker_root: &str) -> String {
    let root = quote(docker_root);
    let worker = format!(
        "{WORKER_HEAD}{LIM}{stop}copy=skipped\n\
         if [ \"$stop\" = ok ]; then\n\
         \x20 if [ -d {root}/{SWARM_DIR} ] && lim 300 tar -czf \"$t/{SWARM_FILE}\" -C {root} {SWARM_DIR} >>\"$t/log\" 2>&1; then copy=ok; else copy=failed; fi\n\
         fi\n\
         {start}sha256=; size=\n\
         if [ \"$copy\" = ok ]; then sha256=$(sha256sum <\"$t/{SWARM_FILE}\" | cut -c1-64); size=$(wc -c <\"$t/{SWARM_FILE}\" | tr -d ' '); fi\n\
         {done}",
        stop = stop_checked(),
        start = start_always(),
        done = worker_done(&["stop", "copy", "start", "sha256", "size"]),
    );
    format!("{}{}", new_stage(Kind::Snapshot), run_detached(&worker))
}

/// Packs rpiprov's records ([`stacks_dir`]: file sets, links, deploy records) into a new
/// stage; nothing is stopped. Prints `@@stage DIR`, `sha256 HEX`, `size BYTES`.
pub fn pack_records() -> String {
    let stacks = quote(&stacks_dir());
    format!(
        "{}if [ -d {stacks} ]; then tar -czf \"$t/{RECORDS_FILE}\" -C {root} stacks; else tar -czf \"$t/{RECORDS_FILE}\" -T /dev/null; fi\n\
         printf 'sha256 %s\\nsize %s\\n' \"$(sha256sum <\"$t/{RECORDS_FILE}\" | cut -c1-64)\" \"$(wc -c <\"$t/{RECORDS_FILE}\" | tr -d ' ')\"\n\
         touch \"$t/done\"\n",
        new_stage(Kind::Records),
        root = quote(ROOT),
    )
}

/// A staged file, on stdout (for a stream: it may be larger than a command's output).
pub fn fetch(stage: &Stage, file: &str) -> String {
    format!("cat -- {}", quote(&stage.file(file)))
}

/// The end of a stage's log, for an error message.
pub fn log_tail(stage: &Stage) -> String {
    format!(
        "tail -n 8 -- {} 2>/dev/null; true",
        quote(&stage.file("log"))
    )
}

/// Removes a stage.
pub fn discard(stage: &Stage) -> String {
    format!("rm -rf -- {}", quote(stage.path()))
}

/// After an interruption: waits (up to 3 min) for the scripts of `kind` still running to
/// end (they start Docker again), prints the `done` of each, and removes their stages.
/// Read by [`parse_settled`].
pub fn settle(kind: Kind) -> String {
    format!(
        "s={s}\n\
         i=0\n\
         while :; do\n\
         \x20 busy=\n\
         \x20 for d in \"$s\"/{p}.*; do if [ -e \"$d/run\" ] && ! {STAGE_OVER}; then busy=1; fi; done\n\
         \x20 if [ -z \"$busy\" ]; then break; fi\n\
         \x20 i=$((i+1))\n\
         \x20 if [ \"$i\" -gt 900 ]; then echo 'rpiprov: the script on this Pi is still running' >&2; exit 1; fi\n\
         \x20 sleep 0.2\n\
         done\n\
         for d in \"$s\"/{p}.*; do if [ -e \"$d/done\" ]; then echo '@@settled'; cat \"$d/done\"; fi; if [ -d \"$d\" ]; then rm -rf \"$d\"; fi; done\n",
        s = quote(&stage_dir()),
        p = kind.prefix(),
    )
}

/// Receives a gzipped tar of the swarm folder on stdin (checked against `sha256`: a cut
/// connection leaves nothing), unpacks it beside the data root's `swarm` folder, then, in
/// a detached script, stops Docker, swaps the new folder in (the old one goes), and
/// starts Docker again whatever happened. Prints `@@stage DIR`, then `stop`, `swap
/// ok|failed|skipped`, `start`. Nothing is stopped until the new folder is whole.
pub fn put_back(docker_root: &str, sha256: &str) -> String {
    let root = quote(docker_root);
    let new = format!("{root}/.rpiprov-restore");
    let old = format!("{root}/.rpiprov-replaced");
    let worker = format!(
        "{WORKER_HEAD}{LIM}{stop}swap=skipped\n\
         if [ \"$stop\" = ok ]; then\n\
         \x20 swap=failed\n\
         \x20 rm -rf {old}\n\
         \x20 if [ -e {root}/{SWARM_DIR} ]; then mv {root}/{SWARM_DIR} {old}; fi\n\
         \x20 if mv {new}/{SWARM_DIR} {root}/{SWARM_DIR}; then swap=ok; fi\n\
         fi\n\
         {start}rm -rf {new} {old}\n\
         {done}",
        stop = stop_checked(),
        start = start_always(),
        done = worker_done(&["stop", "swap", "start"]),
    );
    format!(
        "{stage}trap 'rm -rf \"$t\" {new}' EXIT\n\
         trap 'rm -rf \"$t\" {new}; exit 1' HUP INT TERM PIPE\n\
         cat >\"$t/{SWARM_FILE}\"\n\
         if [ \"$(sha256sum <\"$t/{SWARM_FILE}\" | cut -c1-64)\" != {sha} ]; then echo 'rpiprov: the swarm state arrived incomplete' >&2; exit 1; fi\n\
         mkdir -p {root}\n\
         rm -rf {new}\n\
         mkdir {new}\n\
         tar -xzf \"$t/{SWARM_FILE}\" -C {new}\n\
         if [ ! -d {new}/{SWARM_DIR} ]; then echo 'rpiprov: the archive holds no swarm folder' >&2; exit 1; fi\n\
         trap - EXIT HUP INT TERM PIPE\n\
         {detached}",
        stage = new_stage(Kind::Restore),
        sha = quote(sha256),
        detached = run_detached(&worker),
    )
}

/// Said by [`put_records`] when the records are in place, and when the manager's own were
/// kept.
pub const RECORDS_RESTORED: &str = "@@restored";
pub const RECORDS_KEPT: &str = "@@kept";

/// Receives rpiprov's records as packed by [`pack_records`] on stdin (checked against
/// `sha256`), and puts them in place of the manager's: unpacked beside them first, then
/// two renames. With `keep_existing`, a manager that holds records already keeps them
/// (a rerun after the swarm came back: they may be newer). Says [`RECORDS_RESTORED`] or
/// [`RECORDS_KEPT`].
pub fn put_records(sha256: &str, keep_existing: bool) -> String {
    let stacks = quote(&stacks_dir());
    let keep = if keep_existing {
        format!(
            "if [ -n \"$(ls -A {stacks} 2>/dev/null)\" ]; then echo {RECORDS_KEPT}; exit 0; fi\n"
        )
    } else {
        String::new()
    };
    format!(
        "set -eu\n\
         umask 077\n\
         r={root}\n\
         mkdir -p \"$r\"\n\
         chmod 700 \"$r\"\n\
         {keep}t=$(mktemp -d \"$r/.records.XXXXXX\")\n\
         trap 'rm -rf \"$t\"' EXIT\n\
         trap 'rm -rf \"$t\"; exit 1' HUP INT TERM PIPE\n\
         cat >\"$t/{RECORDS_FILE}\"\n\
         if [ \"$(sha256sum <\"$t/{RECORDS_FILE}\" | cut -c1-64)\" != {sha} ]; then echo 'rpiprov: the records arrived incomplete' >&2; exit 1; fi\n\
         mkdir \"$t/new\"\n\
         tar -x -o -zf \"$t/{RECORDS_FILE}\" -C \"$t/new\"\n\
         mkdir -p \"$t/new/stacks\"\n\
         chmod 700 \"$t/new/stacks\"\n\
         if [ -e {stacks} ]; then mv {stacks} \"$t/old\"; fi\n\
         mv \"$t/new/stacks\" {stacks}\n\
         echo {RECORDS_RESTORED}\n",
        root = quote(ROOT),
        sha = quote(sha256),
    )
}

/// The first line of the manager's TLS key (`swarm/certificates/swarm-node.key`), whose PEM
/// type says whether the key is encrypted with the unlock key: once autolock is turned
/// off, the manager rewrites it unencrypted, shortly after the change (asynchronously).
/// Read by [`key_encrypted`].
pub fn key_header(docker_root: &str) -> String {
    format!(
        "head -n 1 -- {}/{SWARM_DIR}/certificates/swarm-node.key",
        quote(docker_root)
    )
}

/// Whether [`key_header`] shows an encrypted key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`).
pub fn key_encrypted(header: &str) -> bool {
    header.contains("ENCRYPTED")
}

/// What a staged script said: its stage and its `key value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub stage: Stage,
    pub fields: Vec<(String, String)>,
}

impl Staged {
    /// A field's value (empty when it was printed empty).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the field says `ok`.
    pub fn ok(&self, key: &str) -> bool {
        self.get(key) == Some("ok")
    }

    /// The staged file's sha256 and size, when the script printed both.
    pub fn file(&self) -> Option<(String, u64)> {
        let sha = self
            .get("sha256")
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
        let size = self.get("size")?.parse().ok()?;
        Some((sha.to_ascii_lowercase(), size))
    }
}

/// Reads what [`snapshot`], [`pack_records`] and [`put_back`] print: the stage (one of
/// `kind`'s, else an error), then `key value` lines.
pub fn parse_staged(kind: Kind, text: &str) -> Result<Staged, String> {
    let mut stage = None;
    let mut fields = Vec::new();
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("@@stage ") {
            stage = Some(Stage::parse(kind, path.trim()).ok_or_else(|| {
                format!("the Pi named an unexpected stage folder: {:?}", path.trim())
            })?);
        } else if let Some((k, v)) = line.split_once(' ') {
            fields.push((k.to_string(), v.trim().to_string()));
        } else if !line.trim().is_empty() {
            fields.push((line.trim().to_string(), String::new()));
        }
    }
    let stage = stage.ok_or_else(|| "the Pi named no stage folder".to_string())?;
    Ok(Staged { stage, fields })
}

/// The `done` files [`settle`] found: one field list per script that ended.
pub fn parse_settled(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    for line in text.lines() {
        if line.trim() == "@@settled" {
            out.push(Vec::new());
        } else if let (Some(last), Some((k, v))) = (out.last_mut(), line.split_once(' ')) {
            last.push((k.to_string(), v.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{Ran, ScratchHost, syntax_ok};

    /// A Pi in a scratch folder: rpiprov's root and Docker's data root in there, and a
    /// stand-in `service` that records the daemon's stops and starts (and, with a `hold`
    /// file, waits at the stop until the test creates `go`).
    struct Pi {
        host: ScratchHost,
    }

    const SERVICE: &str = r#"#!/bin/sh
echo "service $*" >> "$FAKE/daemon"
if [ "$2" = stop ] && [ -e "$FAKE/hold" ]; then
  touch "$FAKE/stopping"
  i=0; while [ ! -e "$FAKE/go" ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done
fi
"#;

    impl Pi {
        fn new() -> Pi {
            let host = ScratchHost::new();
            host.stand_in("service", SERVICE);
            std::fs::create_dir_all(host.docker_file("data-root")).unwrap();
            Pi { host }
        }
        fn data_root(&self) -> String {
            self.host
                .docker_file("data-root")
                .to_str()
                .unwrap()
                .to_string()
        }
        /// The command as this Pi runs it: its own pid file for dockerd.
        fn cmd(&self, cmd: &str) -> String {
            cmd.replace(
                DOCKER_PID,
                self.host.docker_file("docker.pid").to_str().unwrap(),
            )
        }
        /// Runs a built command; what it prints names rpiprov's root as the Pi would.
        fn run(&self, cmd: &str, stdin: &[u8]) -> Ran {
            let mut ran = self.host.run(&self.cmd(cmd), stdin);
            ran.stdout = ran.stdout.replace(&self.host.root(), ROOT);
            ran
        }
        fn daemon(&self) -> String {
            std::fs::read_to_string(self.host.docker_file("daemon")).unwrap_or_default()
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.host.docker_file(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        /// A staged file's bytes, read the way the laptop reads it.
        fn fetch(&self, staged: &Staged, file: &str) -> Vec<u8> {
            let path = staged.stage.file(file).replace(ROOT, &self.host.root());
            std::fs::read(path).unwrap()
        }
        fn stages(&self) -> Vec<String> {
            let dir = format!("{}/stage", self.host.root());
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    }

    /// A tar's member names (gzipped).
    fn members(tgz: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
        let mut names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn sha(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn the_small_commands_and_what_they_print() {
        let st = Stage::parse(Kind::Snapshot, "/var/lib/rpiprov/stage/snapshot.Ab3dE9").unwrap();
        assert_eq!(
            fetch(&st, SWARM_FILE),
            "cat -- /var/lib/rpiprov/stage/snapshot.Ab3dE9/swarm.tar.gz"
        );
        assert_eq!(
            discard(&st),
            "rm -rf -- /var/lib/rpiprov/stage/snapshot.Ab3dE9"
        );
        assert_eq!(
            log_tail(&st),
            "tail -n 8 -- /var/lib/rpiprov/stage/snapshot.Ab3dE9/log 2>/dev/null; true"
        );
        // Only a stage of the kind asked, as mktemp names them, is taken from the Pi.
        for bad in [
            "/var/lib/rpiprov/stage/records.Ab3dE9",
            "/var/lib/rpiprov/stage/snapshot.",
            "/var/lib/rpiprov/stage/snapshot.a/../../etc",
            "/etc/snapshot.Ab3dE9",
            "/var/lib/rpiprov/stage/snapshot.Ab3 E9",
        ] {
            assert_eq!(Stage::parse(Kind::Snapshot, bad), None, "{bad}");
        }
        let staged = parse_staged(
            Kind::Snapshot,
            "@@stage /var/lib/rpiprov/stage/snapshot.Ab3dE9\nstop ok\ncopy ok\nstart ok\nsha256 ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\nsize 1234\n",
        )
        .unwrap();
        assert_eq!(staged.stage, st);
        assert!(staged.ok("stop") && staged.ok("copy") && staged.ok("start"));
        assert_eq!(
            staged.file(),
            Some((
                "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789".into(),
                1234
            ))
        );
        let failed = parse_staged(
            Kind::Snapshot,
            "@@stage /var/lib/rpiprov/stage/snapshot.x1\nstop failed\ncopy skipped\nstart ok\nsha256 \nsize \n",
        )
        .unwrap();
        assert!(!failed.ok("stop") && failed.ok("start"));
        assert_eq!((failed.get("copy"), failed.file()), (Some("skipped"), None));
        assert_eq!(
            parse_staged(Kind::Snapshot, "@@stage /tmp/x\n").unwrap_err(),
            "the Pi named an unexpected stage folder: \"/tmp/x\""
        );
        assert_eq!(
            parse_settled("@@settled\nstop ok\nstart ok\n@@settled\nstop failed\n"),
            vec![
                vec![("stop".into(), "ok".into()), ("start".into(), "ok".into())],
                vec![("stop".into(), "failed".into())]
            ]
        );
        assert_eq!(
            key_header("/var/lib/docker"),
            "head -n 1 -- /var/lib/docker/swarm/certificates/swarm-node.key"
        );
        assert!(key_encrypted("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(!key_encrypted("-----BEGIN PRIVATE KEY-----\n"));
        for s in [
            snapshot("/var/lib/docker"),
            pack_records(),
            put_back("/var/lib/docker", "00"),
            put_records("00", true),
            put_records("00", false),
            settle(Kind::Snapshot),
        ] {
            syntax_ok(&s);
        }
    }

    #[test]
    fn the_snapshot_script() {
        assert_eq!(
            snapshot("/srv/docker data"),
            r#"set -eu
umask 077
s=/var/lib/rpiprov/stage
mkdir -p "$s"
chmod 700 "$s"
for d in "$s"/snapshot.*; do if { [ -e "$d/done" ] || { [ -e "$d/pid" ] && ! kill -0 "$(cat "$d/pid")" 2>/dev/null; }; }; then rm -rf "$d"; fi; done
t=$(mktemp -d "$s/snapshot.XXXXXX")
echo "@@stage $t"
cat >"$t/run" <<'RPIPROV_WORKER'
t=$1
echo $$ >"$t/pid"
trap '' HUP
trap 'echo "rpiprov: signal received; Docker is started again first" >>"$t/log"' INT TERM
lim() { s=$1; shift; if command -v timeout >/dev/null 2>&1; then timeout "$s" "$@"; else "$@"; fi; }
stop=failed
if lim 120 sh -c 'if [ -d /run/systemd/system ]; then systemctl stop docker.socket >/dev/null 2>&1 || true; systemctl stop docker.service; else service docker stop || /etc/init.d/docker stop; fi' >>"$t/log" 2>&1; then
  if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then echo 'rpiprov: dockerd still runs after the stop' >>"$t/log"; else stop=ok; fi
fi
copy=skipped
if [ "$stop" = ok ]; then
  if [ -d '/srv/docker data'/swarm ] && lim 300 tar -czf "$t/swarm.tar.gz" -C '/srv/docker data' swarm >>"$t/log" 2>&1; then copy=ok; else copy=failed; fi
fi
start=failed
if lim 180 sh -c 'if [ -d /run/systemd/system ]; then systemctl enable docker >/dev/null 2>&1; systemctl start docker; else service docker start || /etc/init.d/docker start; fi; i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge 60 ]; then echo '\''dockerd did not answer within 60s'\'' >&2; exit 1; fi; sleep 1; done' >>"$t/log" 2>&1; then start=ok; fi
sha256=; size=
if [ "$copy" = ok ]; then sha256=$(sha256sum <"$t/swarm.tar.gz" | cut -c1-64); size=$(wc -c <"$t/swarm.tar.gz" | tr -d ' '); fi
printf 'stop %s\ncopy %s\nstart %s\nsha256 %s\nsize %s\n' "$stop" "$copy" "$start" "$sha256" "$size" >"$t/done.new"
mv "$t/done.new" "$t/done"
RPIPROV_WORKER
setsid sh "$t/run" "$t" </dev/null >>"$t/log" 2>&1 &
i=0
while [ ! -e "$t/done" ]; do
  i=$((i+1))
  if [ "$i" -gt 3000 ]; then echo 'rpiprov: the script on this Pi did not end within 600 s; it goes on, and starts Docker again when it ends' >&2; exit 1; fi
  sleep 0.2
done
cat "$t/done"
"#
        );
    }

    #[test]
    fn a_snapshot_stops_docker_copies_the_swarm_folder_and_starts_docker() {
        let pi = Pi::new();
        pi.write("data-root/swarm/raft/wal-v3-encrypted/0.wal", "raft log");
        pi.write("data-root/swarm/certificates/swarm-node.key", "key");
        let ran = pi.run(&snapshot(&pi.data_root()), b"");
        let staged = parse_staged(Kind::Snapshot, &ran.clone().ok()).unwrap();
        assert!(
            staged.ok("stop") && staged.ok("copy") && staged.ok("start"),
            "{ran:?}"
        );
        assert_eq!(pi.daemon(), "service docker stop\nservice docker start\n");
        let bytes = pi.fetch(&staged, SWARM_FILE);
        assert_eq!(
            staged.file(),
            Some((sha(&bytes), bytes.len() as u64)),
            "{ran:?}"
        );
        assert_eq!(
            members(&bytes),
            [
                "swarm/",
                "swarm/certificates/",
                "swarm/certificates/swarm-node.key",
                "swarm/raft/",
                "swarm/raft/wal-v3-encrypted/",
                "swarm/raft/wal-v3-encrypted/0.wal"
            ]
        );
        // The next snapshot removes this one, which is done.
        let first = pi.stages();
        let again = parse_staged(
            Kind::Snapshot,
            &pi.run(&snapshot(&pi.data_root()), b"").ok(),
        )
        .unwrap();
        assert_eq!(pi.stages().len(), 1);
        assert_ne!(first, pi.stages());
        // The laptop removes its stage once fetched.
        pi.run(&discard(&again.stage), b"").ok();
        assert!(pi.stages().is_empty());
    }

    #[test]
    fn docker_starts_again_when_the_copy_fails_or_the_stop_does() {
        let pi = Pi::new();
        // No swarm folder: nothing to copy, and Docker starts again.
        let staged = parse_staged(
            Kind::Snapshot,
            &pi.run(&snapshot(&pi.data_root()), b"").ok(),
        )
        .unwrap();
        assert!(staged.ok("stop") && staged.ok("start"));
        assert_eq!(staged.get("copy"), Some("failed"));
        assert_eq!(staged.file(), None);
        // A dockerd still running after the stop: the folder is not touched.
        pi.write("data-root/swarm/state.json", "{}");
        let alive = std::process::id().to_string();
        pi.write("docker.pid", &alive);
        let staged = parse_staged(
            Kind::Snapshot,
            &pi.run(&snapshot(&pi.data_root()), b"").ok(),
        )
        .unwrap();
        assert_eq!(
            (staged.get("stop"), staged.get("copy"), staged.get("start")),
            (Some("failed"), Some("skipped"), Some("ok"))
        );
        let log = pi.run(&log_tail(&staged.stage), b"").ok();
        assert!(log.contains("dockerd still runs after the stop"), "{log}");
        assert_eq!(pi.daemon().matches("service docker start").count(), 2);
    }

    /// The session that ran the snapshot vanishes while Docker is stopped (Ctrl-C, a lost
    /// connection: its processes are killed): the script goes on, copies, starts Docker
    /// again, and `settle` then finds it done and removes its stage.
    #[test]
    fn the_script_outlives_its_session() {
        use std::os::unix::process::CommandExt;
        let pi = Pi::new();
        pi.write("data-root/swarm/state.json", "{}");
        pi.write("hold", "");
        let cmd = pi
            .cmd(&snapshot(&pi.data_root()))
            .replace(ROOT, &pi.host.root());
        let path = format!(
            "{}:{}",
            pi.host.docker_file("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut session = std::process::Command::new("sh");
        session
            .args(["-c", &cmd])
            .env("PATH", &path)
            .env("FAKE", pi.host.docker_file(""))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut child = session.spawn().unwrap();
        let wait_for = |name: &str| {
            for _ in 0..600 {
                if pi.host.docker_file(name).exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("{name} never came");
        };
        // Docker is being stopped: the whole session's process group goes.
        wait_for("stopping");
        let pgid = child.id() as i32;
        // SAFETY: a signal to the process group this test made.
        assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        pi.write("go", "");
        let settled = pi.run(&settle(Kind::Snapshot), b"").ok();
        let done = parse_settled(&settled);
        assert_eq!(done.len(), 1, "{settled}");
        assert!(
            done[0].contains(&("copy".into(), "ok".into()))
                && done[0].contains(&("start".into(), "ok".into())),
            "{done:?}"
        );
        assert_eq!(pi.daemon(), "service docker stop\nservice docker start\n");
        assert!(pi.stages().is_empty());
    }

    #[test]
    fn put_back_swaps_the_whole_folder_or_touches_nothing() {
        let from = Pi::new();
        from.write("data-root/swarm/raft/new", "restored");
        let tgz = {
            let staged = parse_staged(
                Kind::Snapshot,
                &from.run(&snapshot(&from.data_root()), b"").ok(),
            )
            .unwrap();
            from.fetch(&staged, SWARM_FILE)
        };
        let pi = Pi::new();
        pi.write("data-root/swarm/raft/old", "replaced");
        // A stream cut short: refused, nothing stopped, the old folder and no stage left.
        let ran = pi.run(
            &put_back(&pi.data_root(), &sha(&tgz)),
            &tgz[..tgz.len() / 2],
        );
        assert_eq!(ran.code, 1, "{ran:?}");
        assert_eq!(ran.stderr, "rpiprov: the swarm state arrived incomplete\n");
        assert_eq!(pi.daemon(), "");
        assert!(pi.stages().is_empty());
        let root = pi.data_root();
        assert!(std::path::Path::new(&format!("{root}/swarm/raft/old")).exists());
        // The whole stream: Docker stopped, the folder swapped, Docker started.
        let ran = pi.run(&put_back(&root, &sha(&tgz)), &tgz);
        let staged = parse_staged(Kind::Restore, &ran.clone().ok()).unwrap();
        assert!(
            staged.ok("stop") && staged.ok("swap") && staged.ok("start"),
            "{ran:?}"
        );
        assert_eq!(pi.daemon(), "service docker stop\nservice docker start\n");
        assert_eq!(
            std::fs::read_to_string(format!("{root}/swarm/raft/new")).unwrap(),
            "restored"
        );
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["swarm"]);
        assert!(!std::path::Path::new(&format!("{root}/swarm/raft/old")).exists());
    }

    #[test]
    fn records_travel_whole_and_a_rerun_keeps_newer_ones() {
        let from = Pi::new();
        let root = from.host.root();
        let set = format!("{root}/stacks/web/releases/00aa/files");
        std::fs::create_dir_all(&set).unwrap();
        std::fs::write(format!("{set}/web.yml"), "services: {}\n").unwrap();
        std::fs::write(format!("{root}/stacks/web/deployed"), "f00d\n").unwrap();
        std::os::unix::fs::symlink("releases/00aa", format!("{root}/stacks/web/current")).unwrap();
        let staged = parse_staged(Kind::Records, &from.run(&pack_records(), b"").ok()).unwrap();
        let tgz = from.fetch(&staged, RECORDS_FILE);
        assert_eq!(staged.file(), Some((sha(&tgz), tgz.len() as u64)));
        assert!(members(&tgz).contains(&"stacks/web/current".to_string()));

        let pi = Pi::new();
        let to = pi.host.root();
        std::fs::create_dir_all(format!("{to}/stacks/old")).unwrap();
        let out = pi.run(&put_records(&sha(&tgz), false), &tgz).ok();
        assert_eq!(out, "@@restored\n");
        assert_eq!(
            std::fs::read_to_string(format!("{to}/stacks/web/current/files/web.yml")).unwrap(),
            "services: {}\n"
        );
        assert!(!std::path::Path::new(&format!("{to}/stacks/old")).exists());
        // Only the stacks folder is left: no temporary one.
        let names: Vec<String> = std::fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["stacks"]);
        // A rerun keeps what is there; a cut stream changes nothing.
        assert_eq!(
            pi.run(&put_records(&sha(&tgz), true), &tgz).ok(),
            "@@kept\n"
        );
        let cut = pi.run(&put_records(&sha(&tgz), false), &tgz[..10]);
        assert_eq!(
            (cut.code, cut.stderr.as_str()),
            (1, "rpiprov: the records arrived incomplete\n")
        );
        assert!(std::path::Path::new(&format!("{to}/stacks/web/deployed")).exists());
        // No records at all: an empty archive, which restores an empty folder.
        let none = Pi::new();
        let staged = parse_staged(Kind::Records, &none.run(&pack_records(), b"").ok()).unwrap();
        assert!(members(&none.fetch(&staged, RECORDS_FILE)).is_empty());
    }
}
