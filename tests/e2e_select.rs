//! End-to-end test of `deploy STACK...` and `teardown STACK...` on a lab of two Docker
//! nodes, checked on the manager itself (inside its namespaces, as root):
//! 1. an unknown stack is a usage error (exit 2) naming the playbook's stacks;
//! 2. with two stacks changed, `plan deploy api` shows api's diff alone, and `deploy api`
//!    redeploys api only: web's service keeps its old stop grace period;
//! 3. `plan teardown api` names api alone; `teardown api` removes it, and web, echo and
//!    the networks they use (DATA, INTERCO) stay.

mod support;

use support::fleet::{Fleet, text};

fn run(fleet: &Fleet, args: &[&str], code: i32) -> String {
    let out = fleet.rpiprov(args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
    all
}

/// A service's stop grace period in its spec, in nanoseconds.
fn grace(fleet: &Fleet, service: &str) -> String {
    fleet
        .inside(
            "pi1",
            &[
                "docker",
                "service",
                "inspect",
                "-f",
                "{{.Spec.TaskTemplate.ContainerSpec.StopGracePeriod}}",
                service,
            ],
        )
        .trim()
        .to_string()
}

#[test]
fn named_stacks_deploy_and_tear_down_alone() {
    let fleet = Fleet::up(&["--nodes", "2", "--bare", "0"]);
    run(&fleet, &["bootstrap"], 0);
    run(&fleet, &["deploy"], 0);
    let before = grace(&fleet, "web_web");
    assert_eq!(grace(&fleet, "api_api"), before);

    // 1.
    let out = run(&fleet, &["deploy", "api", "nope"], 2);
    assert!(
        out.contains("error: no stack nope in ") && out.contains(": its stacks are web, api, echo"),
        "{out}"
    );
    run(&fleet, &["teardown", "--yes", "ghost"], 2);
    run(&fleet, &["plan", "deploy", "ghost"], 2);

    // 2.
    for stack in ["api", "web"] {
        let path = fleet.dir.join(format!("stacks/{stack}.yml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("stop_grace_period: 1s"), "{text}");
        std::fs::write(
            &path,
            text.replace("stop_grace_period: 1s", "stop_grace_period: 3s"),
        )
        .unwrap();
    }
    let plan = run(&fleet, &["plan", "deploy", "api"], 0);
    assert!(
        plan.contains("stack api  docker stack deploy (changed since its last deploy)"),
        "{plan}"
    );
    assert!(plan.contains("+    stop_grace_period: 3s"), "{plan}");
    assert!(!plan.contains("stack web"), "{plan}");
    let out = run(&fleet, &["deploy", "api"], 0);
    assert!(out.contains("stack api  changed"), "{out}");
    assert!(
        !out.contains("stack web") && !out.contains("stack echo"),
        "{out}"
    );
    assert_eq!(grace(&fleet, "api_api"), "3s");
    assert_eq!(grace(&fleet, "web_web"), before);

    // 3.
    let plan = run(&fleet, &["plan", "teardown", "api"], 0);
    assert!(plan.contains("stack api  remove"), "{plan}");
    assert!(
        !plan.contains("network") && !plan.contains("stack web"),
        "{plan}"
    );
    let out = run(&fleet, &["teardown", "--yes", "api"], 0);
    assert!(out.contains("stack api  changed"), "{out}");
    let stacks = fleet.inside("pi1", &["docker", "stack", "ls", "--format", "{{.Name}}"]);
    assert_eq!(stacks, "echo\nweb\n");
    let nets = fleet.inside(
        "pi1",
        &[
            "docker",
            "network",
            "ls",
            "--filter",
            "driver=overlay",
            "--format",
            "{{.Name}}",
        ],
    );
    assert!(
        nets.contains("DATA\n") && nets.contains("INTERCO\n"),
        "{nets}"
    );
    // Idempotent: nothing of api left to remove.
    let again = run(&fleet, &["teardown", "--yes", "api"], 0);
    assert!(!again.contains("changed"), "{again}");
    run(&fleet, &["teardown", "--yes", "--purge"], 0);
}
