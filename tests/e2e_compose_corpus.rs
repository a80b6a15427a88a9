//! Accepted by rpiprov = accepted by Docker (issue 10 item 7): every compose file of
//! `tests/fixtures/compose/{valid,invalid}/` goes through `rpiprov check` and through the
//! Docker CLI that Pis run (Debian 12's `docker.io`, 20.10: `/usr/bin/docker` on the lab's
//! nodes; it has no `docker stack config`, so `docker stack deploy`, then `stack rm`, is the
//! oracle) on a one-node lab swarm. Both must accept the valid files and refuse the invalid
//! ones; every disagreement is listed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::fleet::{BIN, Fleet, text};

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
    fleet.inside(
        "pi1",
        &[
            "docker",
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--default-addr-pool",
            "198.19.0.0/16",
        ],
    );
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
    for kind in ["valid", "invalid"] {
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
                format!("[[network]]\nname = \"corpus_ext\"\n\n[[stack]]\nname = \"{stack}\"\nfile = \"{kind}/{file}\"\n"),
            )
            .unwrap();
            let checked = check_in(book.path());
            let rpiprov_ok = checked.status.code() == Some(0);
            let compose = format!("/run/rpiprov-node/corpus/{kind}/{file}");
            let deployed = on_manager(
                &fleet,
                &[
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
            let expected = kind == "valid";
            eprintln!(
                "{kind}/{file}: rpiprov {}, docker {}",
                if rpiprov_ok { "accepts" } else { "refuses" },
                if docker_ok { "accepts" } else { "refuses" }
            );
            if rpiprov_ok != expected || docker_ok != expected {
                disagree.push(format!(
                    "{kind}/{file}: expected {}; rpiprov check {}:\n{}\ndocker stack deploy {}:\n{}",
                    if expected { "accepted" } else { "refused" },
                    if rpiprov_ok { "accepts" } else { "refuses" },
                    text(&checked),
                    if docker_ok { "accepts" } else { "refuses" },
                    text(&deployed)
                ));
            }
        }
    }
    assert!(n >= 40, "the corpus holds {n} files");
    assert!(
        disagree.is_empty(),
        "{} of {n} files disagree:\n\n{}",
        disagree.len(),
        disagree.join("\n\n")
    );
}
