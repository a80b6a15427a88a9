//! End-to-end tests of real-world stacks (issue 10) on a lab of three Docker nodes, one
//! fleet for the whole story, checked on the nodes themselves (inside their namespaces,
//! as root), never through rpiprov:
//! 1. a stack with an env file, a config file and a secret file converges, and its
//!    container sees all three contents; on the manager the uploaded secret is root's,
//!    mode 0600;
//! 2. editing the config file and deploying again redeploys that stack only, rolls its
//!    service onto the new content, and leaves no unused config version;
//! 3. a stack whose bind source is missing on one worker is refused before anything is
//!    deployed, naming the node and the path; once the path exists it deploys;
//! 4. a stack with an image that cannot be pulled ends in well under a minute with the
//!    default timeout, naming the image and the error;
//! 5. `teardown --purge` removes the uploaded file sets and every config and secret.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fleet::{Fleet, text};

/// Runs rpiprov and asserts its exit code; returns stdout and stderr together.
fn run(fleet: &Fleet, args: &[&str], code: i32) -> String {
    let out = fleet.rpiprov(args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
    assert!(
        !all.contains("s3cret-pw"),
        "the secret file's content showed:\n{all}"
    );
    all
}

/// `deploy --json`'s status of each stack.
fn statuses(fleet: &Fleet, args: &[&str]) -> Vec<(String, String)> {
    let out = fleet.rpiprov(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    doc["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stack"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A shell command inside a node, as root.
fn sh(fleet: &Fleet, node: &str, script: &str) -> String {
    fleet.inside(node, &["sh", "-c", script])
}

/// What the running container of `service` prints for `script`, on whichever node runs
/// it (waiting for it to be up: the deploy converged, but `docker ps` may lag).
fn in_container(fleet: &Fleet, service: &str, script: &str) -> String {
    let find = format!("docker ps -q --filter label=com.docker.swarm.service.name={service}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for node in ["pi1", "pi2", "pi3"] {
            let id = sh(fleet, node, &find);
            if let Some(id) = id.lines().next() {
                return fleet.inside(node, &["docker", "exec", id, "/bin/sh", "-c", script]);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no running container of {service}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const FILES_STACK: &str = r#"version: "3.8"
services:
  app:
    image: rpiprov-lab/busybox:1
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
    env_file: ../app/app.env
    configs:
      - source: site
        target: /etc/site.conf
    secrets:
      - db_password
    # busybox runs as PID 1 and ignores SIGTERM: without this, every stop waits 10 s.
    stop_grace_period: 1s
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
configs:
  site:
    file: ../app/conf/site.conf
secrets:
  db_password:
    file: ../app/db_password
"#;

#[test]
fn real_world_stacks_travel_rotate_are_checked_and_fail_fast() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    let dir = fleet.dir.clone();
    run(&fleet, &["bootstrap"], 0);

    // 1. A stack with an env file, a config file and a secret file, beside the lab's.
    write(&dir, "app/app.env", "GREETING=hello from the env file\n");
    write(&dir, "app/conf/site.conf", "site config v1\n");
    write(&dir, "app/db_password", "s3cret-pw\n");
    write(&dir, "stacks/files.yml", FILES_STACK);
    let playbook = dir.join("playbook.toml");
    let mut book = std::fs::read_to_string(&playbook).unwrap();
    book.push_str("\n[[stack]]\nname = \"files\"\nfile = \"stacks/files.yml\"\n");
    std::fs::write(&playbook, &book).unwrap();
    run(&fleet, &["check"], 0);
    let first = statuses(&fleet, &["deploy", "--json"]);
    assert!(first.iter().all(|(_, s)| s == "deployed"), "{first:?}");
    assert_eq!(
        in_container(
            &fleet,
            "files_app",
            "cat /etc/site.conf /run/secrets/db_password; echo \"$GREETING\""
        ),
        "site config v1\ns3cret-pw\nhello from the env file\n"
    );
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "stat -c '%a %U' /var/lib/rpiprov/stacks/files/current/files/app/db_password /var/lib/rpiprov/stacks/files/current/files"
        ),
        "600 root\n700 root\n"
    );
    let configs = || {
        sh(
            &fleet,
            "pi1",
            "docker config ls --format '{{.Name}}' | sort",
        )
    };
    let v1 = configs();
    assert!(
        v1.starts_with("files_site_") && v1.lines().count() == 1,
        "{v1}"
    );

    // 2. The config file changes: that stack only is deployed again, its service rolls
    //    onto the new content, and the old version is gone.
    write(&dir, "app/conf/site.conf", "site config v2\n");
    let second = statuses(&fleet, &["deploy", "--json"]);
    assert_eq!(
        second,
        [
            ("web".to_string(), "unchanged".to_string()),
            ("api".into(), "unchanged".into()),
            ("echo".into(), "unchanged".into()),
            ("files".into(), "deployed".into()),
        ]
    );
    assert_eq!(
        in_container(&fleet, "files_app", "cat /etc/site.conf"),
        "site config v2\n"
    );
    let v2 = configs();
    assert!(
        v2.starts_with("files_site_") && v2.lines().count() == 1,
        "{v2}"
    );
    assert_ne!(v1, v2);
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "ls /var/lib/rpiprov/stacks/files/releases | wc -l"
        )
        .trim(),
        "1",
        "the older file set was not removed"
    );

    // 3. A bind source that exists on pi1 and pi2 only: refused before deploying, naming
    //    pi3 and the path; nothing of the stack exists. Once it exists there, it deploys.
    write(
        &dir,
        "stacks/shared.yml",
        "version: \"3.8\"\nservices:\n  reader:\n    image: rpiprov-lab/busybox:1\n    command: [\"/bin/sleep\", \"3600\"]\n    volumes:\n      - /var/srv/shared:/shared:ro\n    stop_grace_period: 1s\n    deploy:\n      mode: global\n      endpoint_mode: dnsrr\n",
    );
    write(
        &dir,
        "shared.toml",
        // The image is on every node already (shipped by the first deploy); not named
        // here, so that purging this playbook does not remove it from under the others.
        "[[stack]]\nname = \"shared\"\nfile = \"stacks/shared.yml\"\n",
    );
    for node in ["pi1", "pi2"] {
        sh(&fleet, node, "mkdir -p /var/srv/shared");
    }
    let shared = dir.join("shared.toml");
    let shared = shared.to_str().unwrap();
    let out = run(&fleet, &["-p", shared, "deploy"], 1);
    assert!(
        out.contains(
            "bind check: shared_reader: bind source /var/srv/shared does not exist on pi3"
        ),
        "{out}"
    );
    assert!(out.contains("nothing deployed"), "{out}");
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "docker service ls -q --filter label=com.docker.stack.namespace=shared"
        ),
        ""
    );
    sh(&fleet, "pi3", "mkdir -p /var/srv/shared");
    run(&fleet, &["-p", shared, "deploy"], 0);
    run(&fleet, &["-p", shared, "teardown", "--yes", "--purge"], 0);

    // 4. An image that exists nowhere, with the default timeout (5 minutes): the deploy
    //    gives up once swarm rejected the tasks twice, naming the image and the error.
    write(
        &dir,
        "stacks/ghost.yml",
        "version: \"3.8\"\nservices:\n  phantom:\n    image: rpiprov-lab/ghost:1\n    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\n",
    );
    write(
        &dir,
        "ghost.toml",
        "[[stack]]\nname = \"ghost\"\nfile = \"stacks/ghost.yml\"\n",
    );
    let ghost = dir.join("ghost.toml");
    let ghost = ghost.to_str().unwrap();
    let t = Instant::now();
    let out = run(&fleet, &["-p", ghost, "deploy"], 1);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(45), "took {took:?}:\n{out}");
    assert!(
        out.contains("swarm rejects the tasks with an error that retrying cannot fix"),
        "{out}"
    );
    assert!(
        out.contains("ghost_phantom 0/1: No such image: rpiprov-lab/ghost:1 (on "),
        "{out}"
    );
    run(&fleet, &["-p", ghost, "teardown", "--yes", "--purge"], 0);

    // 5. teardown --purge: no file set, config or secret is left.
    run(&fleet, &["teardown", "--yes", "--purge"], 0);
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "ls /var/lib/rpiprov/stacks 2>/dev/null; docker config ls -q; docker secret ls -q"
        ),
        ""
    );
}
