//! Stacks, as `docker stack` deploys and removes them on the manager: rpiprov's records of
//! its deploys ([`records_read`] and [`parse_state`]; which stacks exist the Engine API
//! says, `crate::docker::api::stacks_of`), the deploy itself with the variables on stdin
//! ([`stack_deploy`]), removal ([`stack_rm`]), what of a playbook exists for a teardown
//! ([`Survey`], from the Engine API's answers: `crate::docker::api::parse_survey`), and
//! `--purge` of the uploaded files. A stack's services and their convergence are in
//! [`crate::docker::service`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::config::Playbook;
use crate::docker::paths::{current_release, deployed_record, stack_dir, stacks_dir};
use crate::shell::{join, quote};

/// The label `docker stack deploy` puts on everything of a stack.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The recorded fingerprint of each of these stacks (`deployed NAME FINGERPRINT`, empty
/// when never deployed): files on the manager, read by [`parse_state`]; which stacks exist
/// the Engine API says (`crate::docker::api::stacks_of`).
pub fn records_read(stacks: &[&str]) -> String {
    if stacks.is_empty() {
        return "true".into();
    }
    stacks
        .iter()
        .map(|name| {
            format!(
                "echo {prefix}\"$(cat {rec} 2>/dev/null || true)\"",
                prefix = quote(&format!("deployed {name} ")),
                rec = quote(&deployed_record(name)),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the manager says of the stacks: those that exist (its Engine API's word), and
/// the fingerprints rpiprov recorded (files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackState {
    pub existing: HashSet<String>,
    pub recorded: HashMap<String, String>,
}

/// The records [`records_read`] printed (which stacks exist is left empty).
pub fn parse_state(text: &str) -> StackState {
    let mut s = StackState::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("deployed ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(fp)) = (it.next(), it.next()) {
                s.recorded.insert(name.to_string(), fp.to_string());
            }
        }
    }
    s
}

/// The files a deploy reads, in the stack's uploaded set (see [`super::release`]).
#[derive(Debug, Clone, Copy)]
pub struct DeployFiles<'a> {
    /// The set's id (hex digits).
    pub release: &'a str,
    /// The compose file, relative to the set's folder (`files/stacks/web.yml`).
    pub compose: &'a str,
    /// The file that names configs and secrets, relative to the set's folder.
    pub names: Option<&'a str>,
}

/// Switches the stack's `current` link to the uploaded set (one atomic rename) and deploys
/// from it, through the link, so that the paths the CLI resolves stay the same from one set
/// to the next. Variables arrive on stdin as `NAME=value` lines and are exported before
/// `docker stack deploy` runs, so that their values (secrets among them) never appear on
/// a command line or in a process list. `--resolve-image never` when the stack uses images
/// shipped over SSH: there is no registry to ask about them.
pub fn stack_deploy(stack: &str, files: &DeployFiles, resolve_never: bool) -> String {
    let current = current_release(stack);
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
    args.push(format!("{current}/{}", files.compose));
    if let Some(names) = files.names {
        args.push("-c".into());
        args.push(format!("{current}/{names}"));
    }
    args.push(stack.to_string());
    let compose_dir = match files.compose.rsplit_once('/') {
        Some((dir, _)) => format!("{current}/{dir}"),
        None => current.clone(),
    };
    format!(
        "cd {dir} && ln -sfn {target} .current.new && mv -T .current.new current && cd {compose_dir} && while IFS= read -r kv; do export \"$kv\"; done; exec {cmd}",
        dir = quote(&stack_dir(stack)),
        target = quote(&format!("releases/{}", files.release)),
        compose_dir = quote(&compose_dir),
        cmd = join(args),
    )
}

pub fn stack_rm(stack: &str) -> String {
    join(["docker", "stack", "rm", stack])
}

/// What exists of the playbook on the swarm, in the order a teardown removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Survey {
    /// Stacks that exist (services or networks under their name), reverse playbook order.
    pub stacks: Vec<String>,
    /// The playbook's networks that exist, reverse declaration order.
    pub networks: Vec<String>,
}

impl Survey {
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.networks.is_empty()
    }

    /// For the confirmation prompt.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "nothing to remove: no stack or network of the playbook exists".into();
        }
        let mut parts = Vec::new();
        if !self.stacks.is_empty() {
            parts.push(format!("stacks {}", self.stacks.join(", ")));
        }
        if !self.networks.is_empty() {
            parts.push(format!("networks {}", self.networks.join(", ")));
        }
        format!("will remove, in this order: {}", parts.join("; then "))
    }
}

/// The stack and network names found on a manager by the Engine API
/// (`crate::docker::api::survey`): a stack is named by its services' or its networks'
/// stack label (a stack whose services are gone but whose networks linger, an
/// interrupted `stack rm`, counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub stacks: Vec<String>,
    pub networks: Vec<String>,
}

impl Seen {
    /// What of the playbook exists, in the order a teardown removes it.
    pub fn survey(&self, playbook: &Playbook) -> Survey {
        Survey {
            stacks: playbook
                .stacks
                .iter()
                .rev()
                .filter(|s| self.stacks.contains(&s.name))
                .map(|s| s.name.clone())
                .collect(),
            networks: playbook
                .networks
                .iter()
                .rev()
                .filter(|n| self.networks.contains(&n.name))
                .map(|n| n.name.clone())
                .collect(),
        }
    }
}

/// `teardown --purge` on the manager: the playbook's stack folders (uploaded files and
/// deploy records), and the `stacks` folder itself if that left it empty. Prints `purged
/// FOLDER` per folder removed; read by [`parse_purged`].
pub fn stacks_purge(stacks: &[&str]) -> String {
    let dirs: Vec<String> = stacks.iter().map(|s| stack_dir(s)).collect();
    format!(
        "set -e; for d in {}; do if [ -e \"$d\" ]; then rm -rf \"$d\"; echo \"purged $d\"; fi; done; rmdir {} 2>/dev/null || true",
        join(&dirs),
        quote(&stacks_dir())
    )
}

/// The folders [`stacks_purge`] removed.
pub fn parse_purged(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("purged "))
        .collect()
}

/// Reads files on the manager, for `deploy --dry-run`'s diffs: each between
/// `@@begin file PATH` and `@@end file PATH`, as hexadecimal bytes (`od`, in every
/// userland, and safe for any content), or `@@missing`. Read by [`parse_files`].
pub fn files_read(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| {
            let q = quote(p);
            format!(
                "echo {begin}; if [ -f {q} ]; then od -An -v -tx1 {q}; else echo '@@missing'; fi; echo {end}",
                begin = quote(&format!("@@begin file {p}")),
                end = quote(&format!("@@end file {p}")),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The files [`files_read`] found, by path: their bytes, or `None` when missing.
pub fn parse_files(output: &str) -> Result<HashMap<String, Option<Vec<u8>>>, String> {
    let (_, sections) = crate::docker::probe::split(output)?;
    let mut files = HashMap::new();
    for (name, text) in sections {
        let Some(path) = name.strip_prefix("file ") else {
            continue;
        };
        let bytes = if text.trim() == "@@missing" {
            None
        } else {
            let bytes: Result<Vec<u8>, _> = text
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16))
                .collect();
            Some(bytes.map_err(|e| format!("cannot read {path} from the manager: {e}"))?)
        };
        files.insert(path.to_string(), bytes);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn stack_commands() {
        assert_eq!(
            records_read(&["web", "db"]),
            "echo 'deployed web '\"$(cat /var/lib/rpiprov/stacks/web/deployed 2>/dev/null || true)\"; echo 'deployed db '\"$(cat /var/lib/rpiprov/stacks/db/deployed 2>/dev/null || true)\""
        );
        assert_eq!(records_read(&[]), "true");
        let files = DeployFiles {
            release: "00aa",
            compose: "files/stacks/web stack.yml",
            names: Some("names.yml"),
        };
        assert_eq!(
            stack_deploy("web", &files, true),
            "cd /var/lib/rpiprov/stacks/web && ln -sfn releases/00aa .current.new && mv -T .current.new current && cd /var/lib/rpiprov/stacks/web/current/files/stacks && while IFS= read -r kv; do export \"$kv\"; done; exec docker stack deploy --prune --resolve-image never -c '/var/lib/rpiprov/stacks/web/current/files/stacks/web stack.yml' -c /var/lib/rpiprov/stacks/web/current/names.yml web"
        );
        let files = DeployFiles {
            release: "11bb",
            compose: "db.yml",
            names: None,
        };
        assert_eq!(
            stack_deploy("db", &files, false),
            "cd /var/lib/rpiprov/stacks/db && ln -sfn releases/11bb .current.new && mv -T .current.new current && cd /var/lib/rpiprov/stacks/db/current && while IFS= read -r kv; do export \"$kv\"; done; exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/db/current/db.yml db"
        );
        for s in [records_read(&["a"]), stack_deploy("a", &files, true)] {
            syntax_ok(&s);
        }
    }

    #[test]
    fn state_output_is_parsed() {
        let s = parse_state("deployed web abc123\ndeployed db \n");
        assert!(s.existing.is_empty());
        assert_eq!(s.recorded.get("web").map(String::as_str), Some("abc123"));
        assert_eq!(s.recorded.get("db"), None);
    }

    /// The deploy command's stdin loop exports values byte for byte, shell syntax and
    /// all, without evaluating them.
    #[test]
    fn stdin_variables_reach_the_environment_unevaluated() {
        let files = DeployFiles {
            release: "00aa",
            compose: "f.yml",
            names: None,
        };
        let cmd = stack_deploy("s", &files, false);
        let (_, tail) = cmd.split_once("current && ").unwrap();
        let (_, tail) = tail.split_once("&& ").unwrap();
        let script = tail.replace(
            "exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/s/current/f.yml s",
            "printf '%s|%s' \"$A\" \"$B\"",
        );
        let host = ScratchHost::new();
        assert_eq!(
            host.run(&script, b"A= $(id) 'x' \\n \nB=a=b\n").ok(),
            " $(id) 'x' \\n |a=b"
        );
    }

    /// Read back through a real shell: any byte survives, a missing file says so.
    #[test]
    fn files_are_read_back_byte_for_byte() {
        let d = ScratchHost::new();
        let root = d.root();
        std::fs::create_dir_all(format!("{root}/stacks/web")).unwrap();
        let content: Vec<u8> = (0..=255u8).chain(*b"\n@@end file x\n").collect();
        std::fs::write(format!("{root}/stacks/web/web.yml"), &content).unwrap();
        let file = |name: &str| format!("{}/{name}", stack_dir("web"));
        let paths = vec![file("web.yml"), file("gone.yml")];
        assert_eq!(
            files_read(&paths[..1]),
            "echo '@@begin file /var/lib/rpiprov/stacks/web/web.yml'; if [ -f /var/lib/rpiprov/stacks/web/web.yml ]; then od -An -v -tx1 /var/lib/rpiprov/stacks/web/web.yml; else echo '@@missing'; fi; echo '@@end file /var/lib/rpiprov/stacks/web/web.yml'"
        );
        let out = d.run(&files_read(&paths), b"").ok();
        // The scratch host moved ROOT: map its paths back.
        let files = parse_files(&out.replace(&root, crate::docker::paths::ROOT)).unwrap();
        assert_eq!(files[&paths[0]], Some(content));
        assert_eq!(files[&paths[1]], None);
    }

    #[test]
    fn purge_removes_the_playbook_s_stack_folders_and_says_which() {
        let d = ScratchHost::new();
        let root = d.root();
        std::fs::create_dir_all(format!("{root}/stacks/web")).unwrap();
        std::fs::write(format!("{root}/stacks/web/deployed"), "abc\n").unwrap();
        let out = d.run(&stacks_purge(&["web", "db"]), b"").ok();
        assert_eq!(parse_purged(&out), vec![format!("{root}/stacks/web")]);
        // The stacks folder went with its last stack; a second purge finds nothing.
        assert!(!std::path::Path::new(&format!("{root}/stacks")).exists());
        assert_eq!(d.run(&stacks_purge(&["web"]), b"").ok(), "");
    }

    #[test]
    fn stack_deploy_switches_to_the_set_and_runs_there_with_the_variables_of_stdin() {
        let d = ScratchHost::new();
        let stack = format!("{}/stacks/web", d.root());
        std::fs::create_dir_all(format!("{stack}/releases/00aa/files")).unwrap();
        std::fs::create_dir_all(format!("{stack}/releases/old")).unwrap();
        std::os::unix::fs::symlink("releases/old", format!("{stack}/current")).unwrap();
        let files = DeployFiles {
            release: "00aa",
            compose: "files/web.yml",
            names: None,
        };
        let ran = d.run(
            &stack_deploy("web", &files, true),
            b"DB_PASSWORD=p4ss word $(id)\n",
        );
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        // Run from the compose file's folder, reached through the switched link.
        assert_eq!(
            ran.stdout,
            format!("DB_PASSWORD=p4ss word $(id)\n{stack}/current/files\n")
        );
        assert_eq!(
            std::fs::read_link(format!("{stack}/current")).unwrap(),
            std::path::PathBuf::from("releases/00aa")
        );
        assert!(!std::path::Path::new(&format!("{stack}/.current.new")).exists());
        let calls = d.calls();
        assert!(calls.starts_with("stack deploy --prune --resolve-image never -c "));
        assert!(!calls.contains("p4ss"));
    }

    /// The records are files: no `docker` process reads them.
    #[test]
    fn records_are_read_without_docker() {
        let d = ScratchHost::new();
        std::fs::create_dir_all(format!("{}/stacks/web", d.root())).unwrap();
        std::fs::write(format!("{}/stacks/web/deployed", d.root()), "abc\n").unwrap();
        let ran = d.run(&records_read(&["web", "db"]), b"");
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "deployed web abc\ndeployed db \n")
        );
        assert_eq!(d.calls(), "");
    }
}
