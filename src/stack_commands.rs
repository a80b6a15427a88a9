//! Builders of the remote command lines of `deploy` and `teardown`, and the remote paths
//! they use. Pure functions, tested as exact strings; every argument is quoted with
//! [`crate::shell`]. Nothing secret is ever built into a command line: variable values go
//! on stdin (see [`stack_deploy`]).
//!
//! Everything rpiprov keeps on a host lives under [`ROOT`]:
//! - `lock/owner` (manager): the deploy lock, see [`crate::lock`];
//! - `stacks/<stack>/<file>` (manager): the uploaded compose file;
//! - `stacks/<stack>/deployed` (manager): fingerprint of the last converged deploy;
//! - `images/<name>.sha256` (every node): the archive a shipped image was loaded from.

use crate::shell::{join, quote};

/// Where rpiprov keeps its files on a host.
pub const ROOT: &str = "/var/lib/rpiprov";

/// The label `docker stack deploy` puts on everything of a stack.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

pub fn lock_dir() -> String {
    format!("{ROOT}/lock")
}

pub fn stack_dir(stack: &str) -> String {
    format!("{ROOT}/stacks/{stack}")
}

/// The uploaded compose file of a stack. `stack` and `file_name` are checked to be single
/// path components before they get here (see `deploy::prepare`).
pub fn stack_file(stack: &str, file_name: &str) -> String {
    format!("{}/{file_name}", stack_dir(stack))
}

pub fn deployed_record(stack: &str) -> String {
    format!("{}/deployed", stack_dir(stack))
}

/// An image name made safe as a file name: `lab/httpd:1` -> `lab_httpd_1`. Two names may
/// map to the same file; the record holds the full name too, so such a clash only causes a
/// reload, never a wrong skip.
pub fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

pub fn image_record(image: &str) -> String {
    format!("{ROOT}/images/{}.sha256", sanitise(image))
}

/// What an image record holds: the archive's sha256 and the image name.
pub fn image_record_line(sha256: &str, image: &str) -> String {
    format!("{sha256} {image}")
}

// ---------------------------------------------------------------------------------------
// Lock

/// Takes the lock: `mkdir` is atomic, so of two runs exactly one creates the folder. The
/// owner file is written by the same command, right after. Prints `@@acquired`, or
/// `@@held` followed by the holder's owner file (possibly empty: a run killed between the
/// two steps, or one taking the lock this very moment).
pub fn lock_acquire(owner_file: &str) -> String {
    let dir = lock_dir();
    format!(
        "mkdir -p {root} && if mkdir {dir} 2>/dev/null; then printf '%s' {content} > {owner} && echo '@@acquired'; else echo '@@held'; cat {owner} 2>/dev/null; true; fi",
        root = quote(ROOT),
        dir = quote(&dir),
        owner = quote(&format!("{dir}/owner")),
        content = quote(owner_file),
    )
}

/// Releases the lock only if it is still ours (same owner file): a lock another run took
/// after an `--unlock` must survive our exit. Prints `@@released` or `@@not-ours`.
pub fn lock_release(owner_file: &str) -> String {
    let dir = lock_dir();
    // `$(cat)` drops trailing newlines, so the comparison is against the trimmed text.
    format!(
        "if [ \"$(cat {owner} 2>/dev/null)\" = {content} ]; then rm -rf {dir} && echo '@@released'; else echo '@@not-ours'; fi",
        owner = quote(&format!("{dir}/owner")),
        content = quote(owner_file.trim_end_matches('\n')),
        dir = quote(&dir),
    )
}

/// Removes the lock whoever holds it (`deploy --unlock`). Prints `@@none`, or `@@held`
/// followed by the owner file that was removed.
pub fn lock_remove() -> String {
    let dir = lock_dir();
    format!(
        "if [ -d {dir} ]; then echo '@@held'; cat {owner} 2>/dev/null; rm -rf {dir}; else echo '@@none'; fi",
        dir = quote(&dir),
        owner = quote(&format!("{dir}/owner")),
    )
}

// ---------------------------------------------------------------------------------------
// Images

/// An image to check or load on a node.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
}

/// One round trip per node: for each image (by index), `image I present` when the record
/// names the same archive AND Docker still has the image (someone may have removed it),
/// `image I missing` otherwise.
pub fn images_check(images: &[ImageRef<'_>]) -> String {
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            format!(
                "if [ \"$(cat {rec} 2>/dev/null)\" = {line} ] && docker image inspect {name} >/dev/null 2>&1; then echo 'image {i} present'; else echo 'image {i} missing'; fi",
                rec = quote(&image_record(img.name)),
                line = quote(&image_record_line(img.sha256, img.name)),
                name = quote(img.name),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// After a load: check that the archive really provided the image, then record it.
fn image_loaded_tail(img: &ImageRef<'_>) -> String {
    let rec = image_record(img.name);
    format!(
        "docker image inspect {name} >/dev/null 2>&1 || {{ echo {msg} >&2; exit 1; }}; mkdir -p {dir}; printf '%s\\n' {line} > {rec}",
        name = quote(img.name),
        msg = quote(&format!(
            "the archive did not provide the image {}",
            img.name
        )),
        dir = quote(&format!("{ROOT}/images")),
        line = quote(&image_record_line(img.sha256, img.name)),
        rec = quote(&rec),
    )
}

/// Loads a `docker save` archive read from stdin.
pub fn image_load(img: &ImageRef<'_>) -> String {
    format!("set -e; docker load; {}", image_loaded_tail(img))
}

/// Imports a root file system tarball read from stdin as `name`, with its `CMD` given as a
/// JSON array (exec form: no shell needed in the image).
pub fn image_import(img: &ImageRef<'_>, cmd: &[String]) -> String {
    let mut args: Vec<String> = vec!["docker".into(), "import".into()];
    if !cmd.is_empty() {
        let json = serde_json::to_string(cmd).expect("strings serialise");
        args.push("--change".into());
        args.push(format!("CMD {json}"));
    }
    args.push("-".into());
    args.push(img.name.to_string());
    format!("set -e; {}; {}", join(args), image_loaded_tail(img))
}

/// `teardown --purge` on a node: removes each shipped image whose record is there, then
/// the record. Images without a record were not shipped by rpiprov and are left alone.
/// Prints `purged I` per image removed.
pub fn images_purge(names: &[&str]) -> String {
    let mut s = String::from("set -e");
    for (i, name) in names.iter().enumerate() {
        s.push_str(&format!(
            "\nif [ -e {rec} ]; then if docker image inspect {n} >/dev/null 2>&1; then docker image rm {n} >/dev/null; fi; rm -f {rec}; echo 'purged {i}'; fi",
            rec = quote(&image_record(name)),
            n = quote(name),
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Stacks

/// One round trip for the deploy decision: the stacks that exist (`stack NAME`) and the
/// recorded fingerprint of each playbook stack (`deployed NAME FINGERPRINT`, empty when
/// never deployed).
pub fn stacks_state(stacks: &[&str]) -> String {
    let mut s = String::from("set -e; docker stack ls --format 'stack {{.Name}}'");
    for name in stacks {
        s.push_str(&format!(
            "; echo {prefix}\"$(cat {rec} 2>/dev/null || true)\"",
            prefix = quote(&format!("deployed {name} ")),
            rec = quote(&deployed_record(name)),
        ));
    }
    s
}

/// Deploys a stack. Variables arrive on stdin as `NAME=value` lines and are exported
/// before `docker stack deploy` runs, so that their values (secrets among them) never
/// appear on a command line or in a process list. `--resolve-image never` when the stack
/// uses images shipped over SSH: there is no registry to ask about them.
pub fn stack_deploy(stack: &str, file_name: &str, resolve_never: bool) -> String {
    let mut args: Vec<String> = vec![
        "docker".into(),
        "stack".into(),
        "deploy".into(),
        "--prune".into(),
    ];
    if resolve_never {
        args.push("--resolve-image".into());
        args.push("never".into());
    }
    args.push("-c".into());
    args.push(stack_file(stack, file_name));
    args.push(stack.to_string());
    format!(
        "cd {dir} && while IFS= read -r kv; do export \"$kv\"; done; exec {cmd}",
        dir = quote(&stack_dir(stack)),
        cmd = join(args),
    )
}

/// One poll of a stack's convergence, in one round trip: the services with their replica
/// counts, their full `inspect` (mode, restart policy, update status), and their tasks
/// with the reason swarm gives for each. Parsed by [`crate::converge::parse_poll`].
/// A stack with no service prints `Nothing found in stack` on stderr and exits 0: an
/// empty poll, not an error.
pub fn stack_poll(stack: &str) -> String {
    let q = quote(stack);
    format!(
        "set -e; echo '@@services'; docker stack services --format '{{{{.ID}}}}\\t{{{{.Name}}}}\\t{{{{.Mode}}}}\\t{{{{.Replicas}}}}' {q}; ids=$(docker stack services -q {q}); if [ -n \"$ids\" ]; then echo '@@inspect'; docker service inspect $ids; echo '@@tasks'; docker service ps --no-trunc --format '{{{{.Name}}}}\\t{{{{.Node}}}}\\t{{{{.DesiredState}}}}\\t{{{{.CurrentState}}}}\\t{{{{.Error}}}}' $ids; fi"
    )
}

// ---------------------------------------------------------------------------------------
// Teardown

/// What exists on the manager: stacks (`stack NAME`) and networks with their stack label
/// (`network NAME NAMESPACE`, the namespace empty for networks of no stack). A node in no
/// swarm (a fleet already dissolved) prints `@@no-swarm`: nothing of a playbook can
/// exist there, and a second teardown must succeed.
pub fn teardown_survey() -> String {
    format!(
        "set -e; if [ \"$(docker info --format '{{{{.Swarm.LocalNodeState}}}}')\" != active ]; then echo '@@no-swarm'; exit 0; fi; docker stack ls --format 'stack {{{{.Name}}}}'; docker network ls --format 'network {{{{.Name}}}} {{{{.Label \"{NAMESPACE_LABEL}\"}}}}'"
    )
}

pub fn stack_rm(stack: &str) -> String {
    join(["docker", "stack", "rm", stack])
}

/// What is left of a stack on the manager: `service ID` and `network ID` lines.
pub fn stack_leftovers(stack: &str) -> String {
    let filter = quote(&format!("label={NAMESPACE_LABEL}={stack}"));
    format!(
        "set -e; s=$(docker service ls -q --filter {filter}); n=$(docker network ls -q --filter {filter}); for x in $s; do echo \"service $x\"; done; for x in $n; do echo \"network $x\"; done"
    )
}

/// What is left of a stack on one node: `container ID` lines (stopped ones too).
pub fn stack_containers(stack: &str) -> String {
    let filter = quote(&format!("label={NAMESPACE_LABEL}={stack}"));
    format!(
        "set -e; c=$(docker ps -aq --filter {filter}); for x in $c; do echo \"container $x\"; done"
    )
}

pub fn network_rm(name: &str) -> String {
    join(["docker", "network", "rm", name])
}

/// Leaves the swarm; prints `@@inactive` when the node is in no swarm (nothing to do).
/// A manager that is not the last one demotes itself first, then leaves as a worker:
/// Docker refuses a plain `leave` on a manager, and `--force` on one that is not the last
/// could break the quorum of the managers that remain. Demotion takes effect
/// asynchronously, hence the retries.
pub fn swarm_leave(kind: LeaveKind) -> String {
    let leave = match kind {
        LeaveKind::Worker => "docker swarm leave".to_string(),
        LeaveKind::Manager => concat!(
            "id=$(docker info --format '{{.Swarm.NodeID}}'); docker node demote \"$id\" >/dev/null; ",
            "i=0; until docker swarm leave >/dev/null 2>&1; do i=$((i+1)); ",
            "if [ $i -ge 30 ]; then docker swarm leave; exit $?; fi; sleep 1; done"
        )
        .to_string(),
        LeaveKind::LastManager => "docker swarm leave --force".to_string(),
    };
    format!(
        "state=$(docker info --format '{{{{.Swarm.LocalNodeState}}}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else {leave}; fi"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveKind {
    Worker,
    /// A manager other than the last.
    Manager,
    LastManager,
}

/// `teardown --purge` on the manager: the playbook's stack folders (uploaded files and
/// deploy records), and the `stacks` folder itself if that left it empty.
pub fn stacks_purge(stacks: &[&str]) -> String {
    let dirs: Vec<String> = stacks.iter().map(|s| stack_dir(s)).collect();
    format!(
        "set -e; for d in {}; do if [ -e \"$d\" ]; then rm -rf \"$d\"; echo \"purged $d\"; fi; done; rmdir {} 2>/dev/null || true",
        join(&dirs),
        quote(&format!("{ROOT}/stacks"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_syntax_ok(script: &str) {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            stack_file("web", "web.yml"),
            "/var/lib/rpiprov/stacks/web/web.yml"
        );
        assert_eq!(
            deployed_record("web"),
            "/var/lib/rpiprov/stacks/web/deployed"
        );
        assert_eq!(
            image_record("lab/httpd:1"),
            "/var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(sanitise("../x y"), "_x_y");
        assert_eq!(
            sanitise("registry.local:5000/a/b@sha256:00"),
            "registry.local_5000_a_b_sha256_00"
        );
    }

    #[test]
    fn lock_commands() {
        let owner = "user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n";
        assert_eq!(
            lock_acquire(owner),
            "mkdir -p /var/lib/rpiprov && if mkdir /var/lib/rpiprov/lock 2>/dev/null; then printf '%s' 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n' > /var/lib/rpiprov/lock/owner && echo '@@acquired'; else echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; true; fi"
        );
        assert_eq!(
            lock_release(owner),
            "if [ \"$(cat /var/lib/rpiprov/lock/owner 2>/dev/null)\" = 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy' ]; then rm -rf /var/lib/rpiprov/lock && echo '@@released'; else echo '@@not-ours'; fi"
        );
        assert_eq!(
            lock_remove(),
            "if [ -d /var/lib/rpiprov/lock ]; then echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; rm -rf /var/lib/rpiprov/lock; else echo '@@none'; fi"
        );
        for s in [lock_acquire(owner), lock_release(owner), lock_remove()] {
            sh_syntax_ok(&s);
        }
    }

    /// The lock commands, run for real by `sh` in a scratch folder: the second acquire is
    /// refused with the first owner's file, release by a stranger does nothing.
    #[test]
    fn lock_commands_work_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rpiprov");
        let run = |script: String| {
            let script = script.replace(ROOT, root.to_str().unwrap());
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        let a = "user=pi\nhost=a\npid=1\n";
        let b = "user=pi\nhost=b\npid=2\n";
        assert_eq!(run(lock_acquire(a)), "@@acquired\n");
        assert_eq!(run(lock_acquire(b)), format!("@@held\n{a}"));
        assert_eq!(run(lock_release(b)), "@@not-ours\n");
        assert_eq!(run(lock_release(a)), "@@released\n");
        assert_eq!(run(lock_acquire(b)), "@@acquired\n");
        assert_eq!(run(lock_remove()), format!("@@held\n{b}"));
        assert_eq!(run(lock_remove()), "@@none\n");
    }

    #[test]
    fn image_commands() {
        let img = ImageRef {
            name: "lab/httpd:1",
            sha256: "ab12",
        };
        assert_eq!(
            images_check(&[img]),
            "if [ \"$(cat /var/lib/rpiprov/images/lab_httpd_1.sha256 2>/dev/null)\" = 'ab12 lab/httpd:1' ] && docker image inspect lab/httpd:1 >/dev/null 2>&1; then echo 'image 0 present'; else echo 'image 0 missing'; fi"
        );
        assert_eq!(
            image_load(&img),
            "set -e; docker load; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(
            image_import(
                &img,
                &["httpd".into(), "-f".into(), "-p".into(), "it's 8080".into()]
            ),
            "set -e; docker import --change 'CMD [\"httpd\",\"-f\",\"-p\",\"it'\\''s 8080\"]' - lab/httpd:1; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert!(image_import(&img, &[]).starts_with("set -e; docker import - lab/httpd:1; "));
        assert_eq!(
            images_purge(&["lab/httpd:1"]),
            "set -e\nif [ -e /var/lib/rpiprov/images/lab_httpd_1.sha256 ]; then if docker image inspect lab/httpd:1 >/dev/null 2>&1; then docker image rm lab/httpd:1 >/dev/null; fi; rm -f /var/lib/rpiprov/images/lab_httpd_1.sha256; echo 'purged 0'; fi"
        );
        for s in [
            images_check(&[img, img]),
            image_load(&img),
            image_import(&img, &["a b".into()]),
            images_purge(&["a", "b c"]),
        ] {
            sh_syntax_ok(&s);
        }
    }

    #[test]
    fn stack_commands() {
        assert_eq!(
            stacks_state(&["web", "db"]),
            "set -e; docker stack ls --format 'stack {{.Name}}'; echo 'deployed web '\"$(cat /var/lib/rpiprov/stacks/web/deployed 2>/dev/null || true)\"; echo 'deployed db '\"$(cat /var/lib/rpiprov/stacks/db/deployed 2>/dev/null || true)\""
        );
        assert_eq!(
            stack_deploy("web", "web stack.yml", true),
            "cd /var/lib/rpiprov/stacks/web && while IFS= read -r kv; do export \"$kv\"; done; exec docker stack deploy --prune --resolve-image never -c '/var/lib/rpiprov/stacks/web/web stack.yml' web"
        );
        assert_eq!(
            stack_deploy("db", "db.yml", false),
            "cd /var/lib/rpiprov/stacks/db && while IFS= read -r kv; do export \"$kv\"; done; exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/db/db.yml db"
        );
        assert_eq!(
            stack_poll("web"),
            "set -e; echo '@@services'; docker stack services --format '{{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}' web; ids=$(docker stack services -q web); if [ -n \"$ids\" ]; then echo '@@inspect'; docker service inspect $ids; echo '@@tasks'; docker service ps --no-trunc --format '{{.Name}}\\t{{.Node}}\\t{{.DesiredState}}\\t{{.CurrentState}}\\t{{.Error}}' $ids; fi"
        );
        for s in [
            stacks_state(&["a"]),
            stack_deploy("a", "b", true),
            stack_poll("a"),
        ] {
            sh_syntax_ok(&s);
        }
    }

    /// The deploy command's stdin loop exports values byte for byte, shell syntax and
    /// all, without evaluating them.
    #[test]
    fn stdin_variables_reach_the_environment_unevaluated() {
        let cmd = stack_deploy("s", "f.yml", false);
        let (_, tail) = cmd.split_once("&& ").unwrap();
        let script = tail.replace(
            "exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/s/f.yml s",
            "printf '%s|%s' \"$A\" \"$B\"",
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"A= $(id) 'x' \\n \nB=a=b\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            " $(id) 'x' \\n |a=b"
        );
    }

    #[test]
    fn teardown_commands() {
        assert_eq!(
            teardown_survey(),
            "set -e; if [ \"$(docker info --format '{{.Swarm.LocalNodeState}}')\" != active ]; then echo '@@no-swarm'; exit 0; fi; docker stack ls --format 'stack {{.Name}}'; docker network ls --format 'network {{.Name}} {{.Label \"com.docker.stack.namespace\"}}'"
        );
        assert_eq!(stack_rm("my stack"), "docker stack rm 'my stack'");
        assert_eq!(
            stack_leftovers("web"),
            "set -e; s=$(docker service ls -q --filter label=com.docker.stack.namespace=web); n=$(docker network ls -q --filter label=com.docker.stack.namespace=web); for x in $s; do echo \"service $x\"; done; for x in $n; do echo \"network $x\"; done"
        );
        assert_eq!(
            stack_containers("web"),
            "set -e; c=$(docker ps -aq --filter label=com.docker.stack.namespace=web); for x in $c; do echo \"container $x\"; done"
        );
        assert_eq!(network_rm("DATA"), "docker network rm DATA");
        assert_eq!(
            swarm_leave(LeaveKind::Worker),
            "state=$(docker info --format '{{.Swarm.LocalNodeState}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else docker swarm leave; fi"
        );
        assert_eq!(
            swarm_leave(LeaveKind::LastManager),
            "state=$(docker info --format '{{.Swarm.LocalNodeState}}'); if [ \"$state\" = inactive ]; then echo '@@inactive'; else docker swarm leave --force; fi"
        );
        assert!(
            swarm_leave(LeaveKind::Manager)
                .contains("docker node demote \"$id\" >/dev/null; i=0; until docker swarm leave")
        );
        assert_eq!(
            stacks_purge(&["web", "a b"]),
            "set -e; for d in /var/lib/rpiprov/stacks/web '/var/lib/rpiprov/stacks/a b'; do if [ -e \"$d\" ]; then rm -rf \"$d\"; echo \"purged $d\"; fi; done; rmdir /var/lib/rpiprov/stacks 2>/dev/null || true"
        );
        for s in [
            teardown_survey(),
            stack_leftovers("a"),
            stack_containers("a"),
            swarm_leave(LeaveKind::Worker),
            swarm_leave(LeaveKind::Manager),
            swarm_leave(LeaveKind::LastManager),
            stacks_purge(&["a"]),
        ] {
            sh_syntax_ok(&s);
        }
    }

    /// Runs built commands in a real `sh` against a stand-in `docker` on PATH, with
    /// [`ROOT`] moved into a scratch folder: checks the shell logic (records, `set -e`,
    /// the stdin environment) beyond the exact strings.
    struct FakeDocker {
        dir: tempfile::TempDir,
    }

    impl FakeDocker {
        fn new() -> FakeDocker {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            let script = r#"#!/bin/sh
echo "$*" >> "$FAKE/calls"
key=$(printf '%s' "$3" | tr '/:' '__')
case "$1 $2" in
  "image inspect") [ -e "$FAKE/image_$key" ] ;;
  "load "*) cat > "$FAKE/archive"; touch "$FAKE/image_lab_a_1"; echo "Loaded image: lab/a:1" ;;
  "stack deploy") echo "DB_PASSWORD=$DB_PASSWORD"; pwd ;;
  "info --format") cat "$FAKE/state" 2>/dev/null || echo active ;;
  "swarm leave") echo "Node left the swarm." ;;
  "stack ls"|"stack services")
    if [ -e "$FAKE/down" ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi
    echo "stack web" ;;
  *) exit 0 ;;
esac
"#;
            let docker = bin.join("docker");
            std::fs::write(&docker, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
            FakeDocker { dir }
        }

        fn root(&self) -> String {
            self.dir.path().join("root").to_str().unwrap().to_string()
        }

        /// Runs `cmd` with `stdin`; returns (exit code, stdout, stderr).
        fn run(&self, cmd: &str, stdin: &[u8]) -> (i32, String, String) {
            use std::io::Write;
            let cmd = cmd.replace(ROOT, &self.root());
            let path = format!(
                "{}:{}",
                self.dir.path().join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .env("PATH", path)
                .env("FAKE", self.dir.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            let out = child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    }

    #[test]
    fn an_image_is_loaded_recorded_then_found_present() {
        let d = FakeDocker::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        assert_eq!(d.run(&images_check(&[img]), b"").1, "image 0 missing\n");
        let (code, out, _) = d.run(&image_load(&img), b"ARCHIVE");
        assert_eq!((code, out.as_str()), (0, "Loaded image: lab/a:1\n"));
        assert_eq!(
            std::fs::read(d.dir.path().join("archive")).unwrap(),
            b"ARCHIVE"
        );
        let rec = std::fs::read_to_string(format!("{}/images/lab_a_1.sha256", d.root())).unwrap();
        assert_eq!(rec, "ab12 lab/a:1\n");
        assert_eq!(d.run(&images_check(&[img]), b"").1, "image 0 present\n");
        // Another archive under the same name is missing; so is a removed image.
        let other = ImageRef {
            name: "lab/a:1",
            sha256: "cd34",
        };
        assert_eq!(d.run(&images_check(&[other]), b"").1, "image 0 missing\n");
        std::fs::remove_file(d.dir.path().join("image_lab_a_1")).unwrap();
        assert_eq!(d.run(&images_check(&[img]), b"").1, "image 0 missing\n");
        // An archive that does not provide the named image fails, and records nothing.
        let wrong = ImageRef {
            name: "lab/b:1",
            sha256: "ef56",
        };
        let (code, _, err) = d.run(&image_load(&wrong), b"ARCHIVE");
        assert_eq!(code, 1);
        assert_eq!(err, "the archive did not provide the image lab/b:1\n");
        assert!(!std::path::Path::new(&format!("{}/images/lab_b_1.sha256", d.root())).exists());
    }

    #[test]
    fn stack_deploy_runs_in_the_stack_folder_with_the_variables_of_stdin() {
        let d = FakeDocker::new();
        std::fs::create_dir_all(format!("{}/stacks/web", d.root())).unwrap();
        let (code, out, _) = d.run(
            &stack_deploy("web", "web.yml", true),
            b"DB_PASSWORD=p4ss word $(id)\n",
        );
        assert_eq!(code, 0);
        let dir = std::fs::canonicalize(format!("{}/stacks/web", d.root())).unwrap();
        assert_eq!(
            out,
            format!("DB_PASSWORD=p4ss word $(id)\n{}\n", dir.display())
        );
        let calls = std::fs::read_to_string(d.dir.path().join("calls")).unwrap();
        assert!(calls.starts_with("stack deploy --prune --resolve-image never -c "));
        assert!(!calls.contains("p4ss"));
    }

    #[test]
    fn state_and_poll_fail_when_docker_fails() {
        let d = FakeDocker::new();
        std::fs::create_dir_all(format!("{}/stacks/web", d.root())).unwrap();
        std::fs::write(format!("{}/stacks/web/deployed", d.root()), "abc\n").unwrap();
        let (code, out, _) = d.run(&stacks_state(&["web", "db"]), b"");
        assert_eq!(code, 0);
        assert_eq!(out, "stack web\ndeployed web abc\ndeployed db \n");
        std::fs::write(d.dir.path().join("down"), "").unwrap();
        let (code, out, err) = d.run(&stacks_state(&["web"]), b"");
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(err, "Cannot connect to the Docker daemon\n");
        let (code, _, err) = d.run(&stack_poll("web"), b"");
        assert_eq!(code, 1);
        assert!(err.contains("Cannot connect to the Docker daemon"));
    }

    #[test]
    fn leaving_is_skipped_on_a_node_in_no_swarm() {
        let d = FakeDocker::new();
        let (code, out, _) = d.run(&swarm_leave(LeaveKind::Worker), b"");
        assert_eq!((code, out.as_str()), (0, "Node left the swarm.\n"));
        let (code, _, _) = d.run(&swarm_leave(LeaveKind::Manager), b"");
        assert_eq!(code, 0);
        let calls = std::fs::read_to_string(d.dir.path().join("calls")).unwrap();
        assert!(
            calls.contains("node demote active\nswarm leave\n"),
            "{calls}"
        );
        std::fs::write(d.dir.path().join("state"), "inactive\n").unwrap();
        let (code, out, _) = d.run(&swarm_leave(LeaveKind::LastManager), b"");
        assert_eq!((code, out.as_str()), (0, "@@inactive\n"));
    }
}
