//! Accepted by rpiprov = accepted by Docker (issue 10 item 7, issue 17 item 4): every
//! compose file of `tests/fixtures/compose/{valid,invalid,versions}/` goes through `rpiprov
//! check`, through the Docker CLI that Pis run (Debian 12's `docker.io`, 20.10:
//! `/usr/bin/docker` on the lab's nodes; it has no `docker stack config`, so `docker stack
//! deploy`, then `stack rm`, is the oracle) on a one-node lab swarm, and through a current
//! CLI's `docker stack config` (the machine's `/usr/local/bin/docker`, 28.2 here, offline)
//! where there is one. The valid files are accepted by all, the invalid ones refused by
//! rpiprov and 20.10 (a current `stack config` does not convert the services, so what only
//! `stack deploy` refuses passes it: its verdict is shown only). A file of `versions/` says
//! on its first line which releases read it (`# docker >= 23.0: ...`, `# docker < 28.0:
//! ...`): `check` accepts it with warnings whose releases make up exactly that range, and
//! each CLI accepts it as the range says. Every disagreement is listed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rpiprov::config::compose::CliVersion;
use support::fleet::{BIN, Fleet, text};

/// The releases that read a file: at least `from`, before `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    from: Option<CliVersion>,
    before: Option<CliVersion>,
}

impl Range {
    fn reads(&self, cli: CliVersion) -> bool {
        self.from.is_none_or(|f| cli >= f) && self.before.is_none_or(|b| cli < b)
    }
}

/// The range a `versions/` file's first line states.
fn stated(text: &str) -> Range {
    let line = text.lines().next().unwrap_or_default();
    let rest = line
        .strip_prefix("# docker ")
        .expect("a `# docker ...:` first line");
    let (bound, _) = rest.split_once(':').expect("`:` after the bound");
    let (op, v) = bound.split_once(' ').expect("an operator and a release");
    let v = CliVersion::parse(v).expect("a release");
    match op {
        ">=" => Range {
            from: Some(v),
            before: None,
        },
        "<" => Range {
            from: None,
            before: Some(v),
        },
        other => panic!("unknown operator {other}"),
    }
}

/// The range `check`'s warnings make up: each "older than V" raises the floor, each "V or
/// later" lowers the ceiling.
fn warned(stderr: &str) -> Range {
    let mut r = Range {
        from: None,
        before: None,
    };
    for line in stderr.lines() {
        let Some((_, tail)) =
            line.split_once("deploy refuses the file where the manager's Docker CLI is ")
        else {
            continue;
        };
        if let Some(v) = tail.strip_prefix("older than ").and_then(CliVersion::parse) {
            r.from = Some(r.from.map_or(v, |f| f.max(v)));
        } else if let Some(v) = tail.strip_suffix(" or later").and_then(CliVersion::parse) {
            r.before = Some(r.before.map_or(v, |b| b.min(v)));
        }
    }
    r
}

/// `docker stack config -c FILE` of a current CLI, offline, in `dir`: whether it accepts
/// the file, and what it said. Its config folder is a scratch one (nothing left behind).
fn stack_config(cli: &Path, dir: &Path, file: &str) -> (bool, String) {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new(cli)
        .args(["stack", "config", "-c", file])
        .current_dir(dir)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", config.path())
        .env(VARIABLE, VALUE)
        .stdin(Stdio::null())
        .output()
        .expect("run the current docker CLI");
    (out.status.success(), text(&out))
}

/// The one variable the corpus's playbook defines, given to the Docker CLIs alike: an
/// external network's name (issue 19 item 2).
const VARIABLE: &str = "NET_NAME";
const VALUE: &str = "corpus_ext";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `rpiprov check` in a playbook folder, as a user runs it there.
fn check_in(dir: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run rpiprov")
}

/// A command inside node pi1, as root; its output whatever its exit.
fn on_manager(fleet: &Fleet, args: &[&str]) -> Output {
    let lab = rpiprov::lab::Lab::open(&fleet.dir).expect("the lab opens");
    lab.enter("pi1")
        .expect("pi1 exists")
        .args(args)
        .output()
        .expect("run inside pi1")
}

#[test]
fn rpiprov_check_and_docker_stack_deploy_agree_on_every_corpus_file() {
    let fleet = Fleet::up(&["--nodes", "1", "--bare", "0"]);
    let addr = fleet.addr("pi1");
    fleet.swarm_init("pi1");
    fleet.inside(
        "pi1",
        &["docker", "network", "create", "-d", "overlay", "corpus_ext"],
    );
    // The CLI of a Pi: Debian's, where the machine has it (another may come first on PATH).
    let docker = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let version = fleet.inside(
        "pi1",
        &[docker, "version", "--format", "{{.Client.Version}}"],
    );
    eprintln!("oracle: {docker} {}", version.trim());
    let pi_cli = CliVersion::parse(&version).expect("the lab's CLI release");
    // A current CLI on this machine, for `docker stack config`.
    let current = Path::new("/usr/local/bin/docker");
    let current_cli = current
        .exists()
        .then(|| {
            let out = Command::new(current).arg("--version").output().ok()?;
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            CliVersion::parse(said.trim().strip_prefix("Docker version ")?)
        })
        .flatten();
    match current_cli {
        Some(v) => eprintln!("oracle: {} {v} (stack config)", current.display()),
        None => eprintln!(
            "no current CLI at {}: stack config not run",
            current.display()
        ),
    }

    // The corpus where pi1 sees it: its node folder is /run/rpiprov-node inside it.
    let inside = fleet.dir.join("nodes/pi1/corpus");
    copy_tree(&corpus(), &inside);
    // rpiprov checks each file from a playbook at the corpus's root.
    let book = tempfile::tempdir().unwrap();
    copy_tree(&corpus(), book.path());
    std::fs::write(
        book.path().join("inventory.toml"),
        format!("playbook = \"playbook.toml\"\n\n[[host]]\nname = \"pi1\"\naddress = \"{addr}\"\nrole = \"manager\"\n"),
    )
    .unwrap();

    let mut disagree = Vec::new();
    let mut n = 0;
    for kind in ["valid", "invalid", "versions"] {
        let mut files: Vec<String> = std::fs::read_dir(corpus().join(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for file in files {
            n += 1;
            let stack = format!("c{n}");
            std::fs::write(
                book.path().join("playbook.toml"),
                format!("[variables]\n{VARIABLE} = \"{VALUE}\"\n\n[[network]]\nname = \"corpus_ext\"\n\n[[stack]]\nname = \"{stack}\"\nfile = \"{kind}/{file}\"\n"),
            )
            .unwrap();
            let checked = check_in(book.path());
            let rpiprov_ok = checked.status.code() == Some(0);
            let compose = format!("/run/rpiprov-node/corpus/{kind}/{file}");
            let deployed = on_manager(
                &fleet,
                &[
                    "env",
                    &format!("{VARIABLE}={VALUE}"),
                    docker,
                    "stack",
                    "deploy",
                    "--resolve-image",
                    "never",
                    "-c",
                    &compose,
                    &stack,
                ],
            );
            let docker_ok = deployed.status.success();
            if docker_ok {
                on_manager(&fleet, &[docker, "stack", "rm", &stack]);
            }
            let said = |ok: bool| if ok { "accepts" } else { "refuses" };
            let config = current_cli.map(|v| {
                (
                    v,
                    stack_config(current, book.path(), &format!("{kind}/{file}")),
                )
            });
            let shown = config
                .as_ref()
                .map(|(v, (ok, _))| format!(", docker {v} stack config {}", said(*ok)))
                .unwrap_or_default();
            eprintln!(
                "{kind}/{file}: rpiprov {}, docker {pi_cli} {}{shown}",
                said(rpiprov_ok),
                said(docker_ok)
            );
            let mut wrong = Vec::new();
            // What each says, against what the file is.
            let (want_check, want_pi, want_current) = match kind {
                "valid" => (true, true, Some(true)),
                "invalid" => (false, false, None),
                _ => {
                    let range =
                        stated(&std::fs::read_to_string(corpus().join(kind).join(&file)).unwrap());
                    let got = warned(&String::from_utf8_lossy(&checked.stderr));
                    if got != range {
                        wrong.push(format!("check's warnings say {got:?}, the file {range:?}"));
                    }
                    (
                        true,
                        range.reads(pi_cli),
                        current_cli.map(|v| range.reads(v)),
                    )
                }
            };
            // What `check` says it will take from this machine (issue 19 item 4).
            if file == "environment-from-here.yml" {
                let want = format!(
                    "stack {stack}: takes from this machine's environment at deploy: CORPUS_SECRET, CORPUS_EMPTY (if set), CORPUS_WHITELIST"
                );
                let said = text(&checked);
                if !said.contains(&want) || !said.contains("CORPUS_SECRET is not set here") {
                    wrong.push(format!("check does not say {want:?}:\n{said}"));
                }
            }
            if rpiprov_ok != want_check {
                wrong.push(format!(
                    "rpiprov check {}:\n{}",
                    said(rpiprov_ok),
                    text(&checked)
                ));
            }
            if docker_ok != want_pi {
                wrong.push(format!(
                    "docker {pi_cli} stack deploy {}:\n{}",
                    said(docker_ok),
                    text(&deployed)
                ));
            }
            if let (Some(want), Some((v, (ok, out)))) = (want_current, &config)
                && *ok != want
            {
                wrong.push(format!("docker {v} stack config {}:\n{out}", said(*ok)));
            }
            if !wrong.is_empty() {
                disagree.push(format!("{kind}/{file}: {}", wrong.join("\n")));
            }
        }
    }
    assert!(n >= 63, "the corpus holds {n} files");
    assert!(
        disagree.is_empty(),
        "{} of {n} files disagree:\n\n{}",
        disagree.len(),
        disagree.join("\n\n")
    );
}
