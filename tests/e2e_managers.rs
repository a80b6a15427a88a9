//! End-to-end tests of three managers on a lab of three Docker nodes, every one a manager
//! (issue 13 items 2 and 3), on one fleet:
//! - bootstrap joins the managers one at a time (each is in before the next begins);
//! - `maintain --reboot` takes one node at a time through a real drain and a lab reboot
//!   (every process of the node restarted, a new boot id), while this test samples the
//!   replicated `api` service from the managers and finds it never below its replicas
//!   minus one; every node is back, active, with a new boot id; a failing command stops
//!   `maintain` and leaves its node drained, and a run that succeeds makes it active;
//! - with one manager's dockerd frozen, the swarm keeps serving and `deploy` works through
//!   another manager (whose try at reading the manifest of an image no registry serves
//!   is said, and refuses nothing);
//! - `teardown --leave-swarm` with that manager frozen keeps quorum to the end: the leader
//!   demotes the frozen one first, the other leaves, the leader last.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpiprov::lab::{Daemon, Lab};
use support::fleet::{Fleet, http_get, json_of as json, row_of as row, run_in as inside, text};

const NODES: [&str; 3] = ["pi1", "pi2", "pi3"];
/// What the nodes' reboot command leaves for the power button below.
const REBOOT_REQUEST: &str = "/tmp/rpiprov-reboot";

/// Waits until `node`'s dockerd lists `who` with this status (`Ready`, `Down`).
fn wait_listed(lab: &Lab, node: &str, who: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ls = inside(
            lab,
            node,
            &[
                "docker",
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}}",
            ],
        )
        .unwrap_or_default();
        if ls.lines().any(|l| l == format!("{who} {status}")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} does not list {who} {status}: {ls}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn three_managers_keep_the_swarm_serving_through_maintenance_and_a_frozen_manager() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    let inventory = fleet
        .read("inventory.toml")
        .replace("role = \"worker\"", "role = \"manager\"");
    std::fs::write(fleet.dir.join("inventory.toml"), inventory).unwrap();
    let lab = Lab::open(&fleet.dir).expect("the lab opens");

    // Managers join one at a time: each one is in before the next one's join begins.
    let out = fleet.rpiprov(&["-v", "bootstrap"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let at = |needle: &str| {
        all.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the output:\n{all}"))
    };
    let order = [
        at("pi1: swarm init"),
        at("pi2: join swarm as manager"),
        at("pi2: joined; a manager now"),
        at("pi3: join swarm as manager"),
        at("pi3: joined; a manager now"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{all}");
    let out = fleet.rpiprov(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The power button: a node whose reboot command ran is rebooted by the lab (every
    // process but its holder stops, a new boot id, sshd and dockerd start again).
    let stop = Arc::new(AtomicBool::new(false));
    let button = {
        let stop = stop.clone();
        let dir = fleet.dir.clone();
        std::thread::spawn(move || {
            let lab = Lab::open(&dir).unwrap();
            let mut rebooted = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for node in NODES {
                    let asked = format!("test -e {REBOOT_REQUEST} && rm -f {REBOOT_REQUEST}");
                    if inside(&lab, node, &["sh", "-c", &asked]).is_some() {
                        lab.reboot(node).expect("the lab reboots the node");
                        rebooted.push(node.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            rebooted
        })
    };
    // The sampler: api's running/desired tasks, from whichever manager answers.
    let sampler = {
        let stop = stop.clone();
        let dir = fleet.dir.clone();
        std::thread::spawn(move || {
            let lab = Lab::open(&dir).unwrap();
            let mut samples: Vec<(u64, u64)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for node in NODES {
                    let args = [
                        "timeout",
                        "3",
                        "docker",
                        "service",
                        "ls",
                        "--filter",
                        "name=api_api",
                        "--format",
                        "{{.Replicas}}",
                    ];
                    let Some(text) = inside(&lab, node, &args) else {
                        continue;
                    };
                    let counts = text.split_whitespace().next().and_then(|c| {
                        let (r, d) = c.split_once('/')?;
                        Some((r.parse().ok()?, d.parse().ok()?))
                    });
                    if let Some(c) = counts {
                        samples.push(c);
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            samples
        })
    };
    let boot_before: Vec<String> = NODES.iter().map(|n| lab.boot_id(n).unwrap()).collect();
    let out = fleet.rpiprov(&[
        "maintain",
        "--json",
        "--reboot",
        "--reboot-command",
        &format!("touch {REBOOT_REQUEST}"),
    ]);
    stop.store(true, Ordering::SeqCst);
    let rebooted = button.join().unwrap();
    let samples = sampler.join().unwrap();
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}\n{}", text(&out));
    // pi1, the first manager, is the one acted through and holding the lock: last.
    assert_eq!(
        doc["details"]["order"],
        serde_json::json!([["pi2"], ["pi3"], ["pi1"]]),
        "{doc:#}"
    );
    assert_eq!(
        doc["details"]["done"],
        serde_json::json!(["pi2", "pi3", "pi1"])
    );
    for node in NODES {
        assert_eq!(
            row(&doc, node)["changed"],
            serde_json::json!(["drained", "reboot", "active again"]),
            "{doc:#}"
        );
    }
    assert_eq!(rebooted, ["pi2", "pi3", "pi1"]);
    for (node, before) in NODES.iter().zip(&boot_before) {
        assert_ne!(
            &lab.boot_id(node).unwrap(),
            before,
            "{node} kept its boot id"
        );
    }
    // The service never went below its replicas minus one.
    assert!(samples.len() >= 20, "too few samples: {samples:?}");
    assert!(samples.iter().all(|(_, d)| *d == 2), "{samples:?}");
    let least = samples.iter().map(|(r, _)| *r).min().unwrap();
    assert!(least >= 1, "api fell to {least} running: {samples:?}");
    // Every node ready and active again.
    for node in NODES {
        wait_listed(&lab, "pi1", node, "Ready");
    }
    let availability = inside(
        &lab,
        "pi1",
        &["docker", "node", "ls", "--format", "{{.Availability}}"],
    )
    .unwrap();
    assert_eq!(availability, "Active\nActive\nActive\n");

    // A failing command stops the run and leaves its node drained, saying so; a run that
    // succeeds makes it active again.
    let availability_of = |node: &str| {
        inside(
            &lab,
            "pi1",
            &[
                "docker",
                "node",
                "inspect",
                "--format",
                "{{.Spec.Availability}}",
                node,
            ],
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let out = fleet.rpiprov(&["maintain", "--on", "pi3", "--", "exit 3"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("run the command: exit 3") && all.contains("pi3 is left drained"),
        "{all}"
    );
    assert_eq!(availability_of("pi3"), "drain");
    let out = fleet.rpiprov(&["maintain", "--on", "pi3", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(availability_of("pi3"), "active");
    // The rerun found pi3 drained, running nothing: it still ends only once pi3 runs the
    // global service it ran before (its history says so), not as soon as it is active.
    let running = inside(
        &lab,
        "pi3",
        &[
            "docker",
            "ps",
            "--filter",
            "label=com.docker.swarm.service.name=web_web",
            "--filter",
            "status=running",
            "--format",
            "{{.Names}}",
        ],
    )
    .unwrap();
    assert!(
        running.starts_with("web_web."),
        "pi3 runs no web task: {running:?}"
    );

    // One manager frozen: the swarm keeps serving, and deploy goes through another one.
    lab.freeze("pi1", Daemon::Dockerd).unwrap();
    wait_listed(&lab, "pi2", "pi1", "Down");
    for node in ["pi2", "pi3"] {
        let body = http_get(&format!("{}:18080", fleet.addr(node)));
        assert!(
            body.lines().next().is_some_and(|l| l.contains(" 200 ")),
            "{node}: {body}"
        );
    }
    std::fs::write(
        fleet.dir.join("stacks/extra.yml"),
        "version: \"3.8\"\nservices:\n  extra:\n    image: rpiprov-lab/busybox:1\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8082\", \"-h\", \"/www\"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\n",
    )
    .unwrap();
    std::fs::write(
        fleet.dir.join("extra.toml"),
        "[[stack]]\nname = \"extra\"\nfile = \"stacks/extra.yml\"\n",
    )
    .unwrap();
    let extra = fleet.dir.join("extra.toml");
    let extra = extra.to_str().unwrap();
    let out = fleet.rpiprov(&["deploy", "--json", "-p", extra]);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}\n{}", text(&out));
    assert_eq!(row(&doc, "stack extra")["outcome"], "changed", "{doc:#}");
    // Its image is not shipped by that playbook, so it would come from a registry, and
    // the lab has none: said, and nothing refused on a guess.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "pi2: warning: the manifest of rpiprov-lab/busybox:1 could not be read from pi2 ("
        ) && said.contains("nothing is refused for it"),
        "{said}"
    );
    let replicas = inside(
        &lab,
        "pi2",
        &[
            "docker",
            "service",
            "ls",
            "--filter",
            "name=extra_extra",
            "--format",
            "{{.Replicas}}",
        ],
    )
    .unwrap();
    assert_eq!(replicas.trim(), "1/1");

    // The stacks go while every node answers (teardown waits for their containers on
    // every node); then, pi1 frozen again, the swarm is dissolved: pi2 (the first manager
    // that serves) demotes it first, pi3 leaves, pi2 last; pi1 is named, with what to do.
    lab.thaw("pi1", Daemon::Dockerd).unwrap();
    wait_listed(&lab, "pi2", "pi1", "Ready");
    for args in [
        vec!["teardown", "--yes", "-p", extra],
        vec!["teardown", "--yes"],
    ] {
        let out = fleet.rpiprov(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    lab.freeze("pi1", Daemon::Dockerd).unwrap();
    wait_listed(&lab, "pi2", "pi1", "Down");
    let out = fleet.rpiprov(&["-v", "teardown", "--yes", "--leave-swarm", "-p", extra]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let order = [
        at_in(&all, "pi2: demote pi1 (it cannot leave by itself)"),
        at_in(&all, "pi3: leave the swarm"),
        at_in(&all, "pi2: leave the swarm (last manager)"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{all}");
    assert!(
        all.contains("its Docker did not answer") && all.contains("docker swarm leave --force"),
        "{all}"
    );
    for node in ["pi2", "pi3"] {
        let state = inside(
            &lab,
            node,
            &["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        )
        .unwrap();
        assert_eq!(state.trim(), "inactive", "{node}");
    }
    lab.thaw("pi1", Daemon::Dockerd).unwrap();
}

fn at_in(all: &str, needle: &str) -> usize {
    all.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the output:\n{all}"))
}
