//! Issue 17 item 5, end to end: one swarm of a Debian unstable manager (Docker 28.5) with a
//! Debian 13 worker (26.1) and a Debian 12 worker (20.10). Bootstrap forms it, the lab
//! playbook plus a stack file without `version:` deploys and converges, `status` shows every
//! node's Docker, a no-op deploy and `status` start at most one `docker` process per host
//! (the Engine API's relay); with the daemons of the manager and the 26.1 worker raised to a
//! minimum API of 1.44 (what Docker 29.0 does by default), `status` still exits 0, a no-op
//! deploy still starts at most one per host, `maintain` drains and returns a worker, and
//! teardown leaves nothing.

mod support;

use std::time::{Duration, Instant};

use rpiprov::lab::Distro;
use serde_json::Value;
use support::swarm::{Lab, json};

/// A stack file as most published today: no `version:` (Docker CLI 23 and later read it as
/// the newest 3.x they know; 28.5's CLI deploys it).
const PLAIN: &str = "services:\n  plain:\n    image: rpiprov-lab/busybox:1\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    networks: [INTERCO]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 2\n      endpoint_mode: dnsrr\nnetworks:\n  INTERCO:\n    external: true\n";

fn node<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["host"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {doc:#}"))
}

/// `--json`'s count of `docker` processes started, at most one per host.
fn one_docker_per_host(lab: &Lab, what: &str, doc: &Value) -> u64 {
    let n = doc["remote"]["docker_cli"].as_u64().unwrap();
    let hosts = lab.inventory.hosts.len() as u64;
    assert!(n <= hosts, "{what}: {:#}", doc["remote"]);
    n
}

/// A no-op deploy: nothing redeployed, its cost in `docker` processes and time.
fn no_op_deploy(lab: &Lab, what: &str) {
    let t = Instant::now();
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    let took = t.elapsed();
    assert_eq!(doc["changed"], false, "{what}: {doc:#}");
    for s in doc["details"].as_array().unwrap() {
        assert_eq!(s["status"], "unchanged", "{what}: {s:#}");
    }
    let n = one_docker_per_host(lab, what, &doc);
    eprintln!(
        "{what}: no-op deploy {took:?}, {n} docker process(es), {}",
        doc["remote"]
    );
}

/// `status --json` once it exits 0 (a restarted daemon's tasks come back within the
/// deadline), its cost checked and said.
fn status_ok(lab: &Lab, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = Instant::now();
        let out = lab.run(&["status", "--json"]);
        let took = t.elapsed();
        if out.status.code() == Some(0) || Instant::now() > deadline {
            let doc = json(&lab.ok(&["status", "--json"], 0));
            let n = one_docker_per_host(lab, what, &doc);
            eprintln!(
                "{what}: status {took:?}, {n} docker process(es), {}",
                doc["remote"]
            );
            return doc;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn a_swarm_of_docker_28_26_and_20_10() {
    let lab = Lab::up_with(
        &[Distro::Sid, Distro::Trixie, Distro::Bookworm],
        &["--nodes", "3", "--bare", "0"],
    );
    let engines = [("pi1", "28.5."), ("pi2", "26.1."), ("pi3", "20.10.")];
    for (name, v) in engines {
        let got = lab.on(name, "docker version --format '{{.Server.Version}}'");
        assert!(got.starts_with(v), "{name}: {got}");
    }

    // Bootstrap forms one swarm of the three.
    lab.ok(&["bootstrap"], 0);
    lab.assert_formed();

    // The lab playbook and a stack without version: deploy and converge.
    let dir = &lab.fleet.dir;
    std::fs::write(dir.join("stacks/plain.yml"), PLAIN).unwrap();
    let book = dir.join("playbook.toml");
    let mut text = std::fs::read_to_string(&book).unwrap();
    text.push_str("\n[[stack]]\nname = \"plain\"\nfile = \"stacks/plain.yml\"\n");
    std::fs::write(&book, text).unwrap();
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    for s in doc["details"].as_array().unwrap() {
        assert_eq!(s["status"], "deployed", "{s:#}");
        for svc in s["services"].as_array().unwrap() {
            assert_eq!(svc["converged"], true, "{svc:#}");
        }
    }
    assert_eq!(
        lab.on(
            "pi1",
            "docker service ls --filter name=plain_plain --format '{{.Replicas}}'"
        )
        .trim(),
        "2/2"
    );
    // The global web service answers on every node, whatever its Docker.
    for (name, _) in engines {
        let body = support::fleet::http_get(&format!("{}:18080", lab.addr(name)));
        assert!(body.contains(" 200 "), "{name}: {body}");
    }

    // status shows every node's Docker as its daemon says it.
    let doc = status_ok(&lab, "mixed");
    for (name, _) in engines {
        let version = lab.on(name, "docker version --format '{{.Server.Version}}'");
        assert_eq!(node(&doc, name)["docker"], version.trim(), "{doc:#}");
    }
    no_op_deploy(&lab, "mixed");

    // Docker 29.0's floor on the manager and the 26.1 worker: API 1.44 at the least.
    let raw = rpiprov::lab::Lab::open(dir).unwrap();
    for name in ["pi1", "pi2"] {
        raw.set_docker_env(name, "DOCKER_MIN_API_VERSION", Some("1.44"))
            .unwrap();
        let min = lab.on(name, "docker version --format '{{.Server.MinAPIVersion}}'");
        assert_eq!(min.trim(), "1.44", "{name}");
    }
    status_ok(&lab, "floor 1.44");
    no_op_deploy(&lab, "floor 1.44");

    // maintain drains the 20.10 worker, runs the command, and returns it.
    let out = lab.ok(&["maintain", "--on", "pi3", "--", "true"], 0);
    assert!(out.contains("pi3"), "{out}");
    assert_eq!(
        lab.on(
            "pi1",
            "docker node inspect --format '{{.Spec.Availability}}' pi3"
        )
        .trim(),
        "active"
    );

    // Teardown leaves no service, stack, container or playbook network on any node.
    lab.ok(&["teardown", "--yes"], 0);
    assert_eq!(lab.on("pi1", "docker service ls -q"), "");
    for (name, _) in engines {
        assert_eq!(
            lab.on(
                name,
                "docker ps -aq --filter label=com.docker.stack.namespace"
            ),
            "",
            "containers left on {name}"
        );
        let nets = lab.on(name, "docker network ls --format '{{.Name}}'");
        for net in ["DATA", "INTERCO"] {
            assert!(!nets.lines().any(|l| l == net), "{name}: {nets}");
        }
    }
}
