//! End-to-end: one-shot services (issue 19 item 5) on a trixie node (Docker CLI 26.1,
//! which deploys jobs from stack files): a `replicated-job` whose task completes and a
//! service of `replicas: 0` converge, and `deploy` says so without waiting out its
//! timeout; the same run again changes nothing; a job whose task exits non-zero fails
//! the deploy at once, naming the exit code and the node; teardown removes them.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::fleet::{BIN, Fleet, text};

fn rpiprov(fleet: &Fleet, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-i")
        .arg(fleet.dir.join("inventory.toml"))
        .args(["-p", "jobs.toml"])
        .args(args)
        .current_dir(&fleet.dir)
        .env("RPIPROV_SUDO_PASSWORD", fleet.read("sudo-password").trim())
        .stdin(Stdio::null())
        .output()
        .expect("run rpiprov")
}

/// `deploy --json`'s status of the stack, and how long the deploy took.
fn deployed(fleet: &Fleet) -> (String, Duration, String) {
    let start = Instant::now();
    let out = rpiprov(fleet, &["deploy", "--json"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    let status = doc["details"][0]["status"].as_str().unwrap().to_string();
    (status, took, text(&out))
}

const PLAYBOOK: &str = r#"[[image]]
name = "rpiprov-lab/busybox:1"
archive = "images/busybox.tar"
format = "rootfs"
cmd = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]

[[stack]]
name = "jobs"
file = "stacks/jobs.yml"
timeout = "2m"
"#;

const STACK: &str = r#"version: "3.8"
services:
  migrate:
    image: rpiprov-lab/busybox:1
    command: ["/bin/sh", "-c", "echo migrated"]
    deploy:
      mode: replicated-job
  spare:
    image: rpiprov-lab/busybox:1
    command: ["/bin/sleep", "3600"]
    deploy:
      replicas: 0
"#;

#[test]
fn a_job_and_zero_replicas_converge() {
    let fleet = Fleet::up_with(
        &[rpiprov::lab::Distro::Trixie],
        &["--nodes", "1", "--bare", "0"],
    );
    std::fs::write(fleet.dir.join("jobs.toml"), PLAYBOOK).unwrap();
    std::fs::create_dir_all(fleet.dir.join("stacks")).unwrap();
    std::fs::write(fleet.dir.join("stacks/jobs.yml"), STACK).unwrap();
    let out = rpiprov(&fleet, &["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let (status, took, said) = deployed(&fleet);
    assert_eq!(status, "deployed", "{said}");
    // Far less than the stack's 2 minutes: the wait saw the job complete.
    assert!(
        took < Duration::from_secs(60),
        "deploy took {took:?}:\n{said}"
    );
    let tasks = fleet.inside(
        "pi1",
        &[
            "docker",
            "service",
            "ps",
            "--format",
            "{{.CurrentState}}",
            "jobs_migrate",
        ],
    );
    assert!(tasks.starts_with("Complete"), "{tasks}");
    let (again, _, said) = deployed(&fleet);
    assert_eq!(again, "unchanged", "{said}");

    // A job that fails: deploy fails early, naming the exit code and the node.
    std::fs::write(
        fleet.dir.join("stacks/jobs.yml"),
        STACK.replace("echo migrated", "echo failing; exit 3"),
    )
    .unwrap();
    let start = Instant::now();
    let out = rpiprov(&fleet, &["deploy"]);
    let took = start.elapsed();
    let said = text(&out);
    eprintln!("failing job: {took:?}\n{said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        took < Duration::from_secs(60),
        "deploy took {took:?}:\n{said}"
    );
    assert!(
        said.contains("non-zero exit (3)") && said.contains("pi1"),
        "{said}"
    );

    let out = rpiprov(&fleet, &["teardown", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left = fleet.inside("pi1", &["docker", "service", "ls", "-q"]);
    assert_eq!(left, "", "services left behind");
}
