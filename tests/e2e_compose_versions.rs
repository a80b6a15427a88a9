//! Issue 17 item 4, end to end on a one-node lab whose Docker CLI is Debian 12's (20.10):
//! a stack file without `version:` is refused by `deploy` before any change (no network
//! created, no image loaded, no lock, no file set uploaded), naming the manager's CLI
//! release and the file, and `plan deploy` says the same; once the file says
//! `version: "3.9"`, the same playbook deploys and converges. On a Debian 13 node (CLI
//! 26.1), the file without `version:` deploys (read as 3.12, `start_interval` and all),
//! and one with `oom_score_adj` (CLI 28's) is refused before any change, naming 26.1.

mod support;

use std::path::Path;

use support::fleet::{Fleet, json_of, text};

/// What a deploy could change on the node: networks (but `docker_gwbridge`, which swarm
/// makes on its own some moments after `swarm init`), services, images, rpiprov's files.
fn snapshot(fleet: &Fleet) -> String {
    fleet.inside(
        "pi1",
        &[
            "sh",
            "-c",
            "docker network ls --format '{{.Name}}' | grep -vx docker_gwbridge | sort; docker service ls --format '{{.Name}}'; \
             docker image ls --format '{{.Repository}}:{{.Tag}}' | sort; \
             find /var/lib/rpiprov 2>/dev/null | sort; true",
        ],
    )
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const PLAYBOOK: &str = r#"[[network]]
name = "VNET"
driver = "overlay"
attachable = true
subnet = "198.19.20.0/24"

[[image]]
name = "rpiprov-lab/busybox:1"
archive = "images/busybox.tar"
format = "rootfs"
cmd = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]

[[stack]]
name = "hello"
file = "stacks/hello.yml"
"#;

/// The stack, with the `version:` line given (or none).
fn hello(version: &str) -> String {
    format!(
        "{version}services:\n  hello:\n    image: rpiprov-lab/busybox:1\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    networks: [VNET]\n    stop_grace_period: 1s\n    deploy:\n      endpoint_mode: dnsrr\nnetworks:\n  VNET:\n    external: true\n"
    )
}

#[test]
fn a_file_without_version_is_refused_by_a_20_10_manager_before_any_change() {
    let fleet = Fleet::up(&["--nodes", "1", "--bare", "0"]);
    fleet.swarm_init("pi1");
    let client = fleet.inside(
        "pi1",
        &["docker", "version", "--format", "{{.Client.Version}}"],
    );
    assert!(client.starts_with("20.10."), "the lab's CLI is {client}");

    write(&fleet.dir, "versions.toml", PLAYBOOK);
    write(&fleet.dir, "stacks/hello.yml", &hello(""));
    let book = fleet.dir.join("versions.toml");
    let book = book.to_str().unwrap();
    let before = snapshot(&fleet);

    // check accepts it, warning of the CLIs that refuse it.
    let out = fleet.rpiprov(&["-p", book, "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stacks/hello.yml: version: missing: Docker CLI 23.0 and later read a file without version: as the newest 3.x format they know"),
        "{}",
        text(&out)
    );

    // deploy refuses it, naming the CLI and the file; nothing changed.
    let refusal = "pi1's Docker CLI 20.10 (package docker.io 20.10.24+dfsg1-1+deb12u1";
    let why = "stacks/hello.yml: version: missing: Docker CLI 20.10 reads a file without version: as version 1.0 and refuses it (Docker CLI 23.0 and later read it as the newest 3.x): add version: \"3.9\"";
    let out = fleet.rpiprov(&["-p", book, "--json", "deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json_of(&out);
    let stack = &doc["details"][0];
    assert_eq!(stack["status"], "failed", "{doc:#}");
    assert_eq!(stack["failed_step"], "docker cli");
    let error = stack["error"].as_str().unwrap();
    assert!(
        error.starts_with(refusal) && error.ends_with(why),
        "{error}"
    );
    assert_eq!(
        snapshot(&fleet),
        before,
        "the refused deploy changed the node"
    );
    eprintln!("refused deploy: {}", doc["remote"]);

    // plan deploy says the same.
    let out = fleet.rpiprov(&["-p", book, "--json", "plan", "deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json_of(&out);
    let problems: Vec<&str> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("stack hello: {refusal}")) && p.contains(why)),
        "{problems:#?}"
    );
    assert_eq!(snapshot(&fleet), before, "plan deploy changed the node");

    // With a version 20.10 reads, the same playbook deploys and converges.
    write(&fleet.dir, "stacks/hello.yml", &hello("version: \"3.9\"\n"));
    let out = fleet.rpiprov(&["-p", book, "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let services = fleet.service_replicas("pi1");
    assert_eq!(services.trim(), "hello_hello 1/1");
}

/// A one-node lab of this release, its swarm formed by hand.
fn swarm_of(release: rpiprov::lab::Distro) -> Fleet {
    let fleet = Fleet::up_with(&[release], &["--nodes", "1", "--bare", "0"]);
    fleet.swarm_init("pi1");
    fleet
}

#[test]
fn a_file_without_version_deploys_on_docker_26_and_a_key_of_28_is_refused() {
    let fleet = swarm_of(rpiprov::lab::Distro::Trixie);
    let client = fleet.inside(
        "pi1",
        &["docker", "version", "--format", "{{.Client.Version}}"],
    );
    assert!(client.starts_with("26.1."), "trixie's CLI is {client}");
    write(&fleet.dir, "versions.toml", PLAYBOOK);
    // Without version: and with 3.12's start_interval: 26.1 reads it as 3.12.
    let interval = "    healthcheck:\n      test: [\"CMD\", \"true\"]\n      start_interval: 2s\n";
    write(
        &fleet.dir,
        "stacks/hello.yml",
        &hello("").replace(
            "    stop_grace_period: 1s\n",
            &format!("    stop_grace_period: 1s\n{interval}"),
        ),
    );
    let book = fleet.dir.join("versions.toml");
    let book = book.to_str().unwrap();
    let out = fleet.rpiprov(&["-p", book, "--json", "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let services = fleet.service_replicas("pi1");
    assert_eq!(services.trim(), "hello_hello 1/1");
    eprintln!("deploy on 26.1: {}", json_of(&out)["remote"]);

    // oom_score_adj: CLI 28's, refused before any change.
    write(
        &fleet.dir,
        "stacks/hello.yml",
        &hello("").replace(
            "    stop_grace_period: 1s\n",
            "    stop_grace_period: 1s\n    oom_score_adj: 100\n",
        ),
    );
    let before = snapshot(&fleet);
    let out = fleet.rpiprov(&["-p", book, "--json", "deploy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json_of(&out);
    let error = doc["details"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("pi1's Docker CLI 26.1 (package docker-cli 26.1.5")
            && error.ends_with("stacks/hello.yml:7:5: services.hello.oom_score_adj: Docker CLI 26.1 reads the file as version 3.12, which has no such key (version 3.13 has it since Docker CLI 28.0)"),
        "{error}"
    );
    assert_eq!(
        snapshot(&fleet),
        before,
        "the refused deploy changed the node"
    );
}
