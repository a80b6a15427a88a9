//! End to end on the lab's default fleet (issue 12): `rpiprov status` on a fleet without a
//! swarm, on a converged one (every field checked against the nodes themselves), after a
//! stack file is edited locally and after a worker's dockerd is stopped; and `rpiprov
//! logs` of the lab's echo service, once and `--follow` ended by Ctrl-C. One fleet: none
//! of these changes what the others look at, except where the test puts it back.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use rpiprov::lab::Distro;
use serde_json::{Value, json as j};
use support::fleet::text;
use support::swarm::{Lab, json};

fn node<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["host"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {doc:#}"))
}

/// Sends a line to the echo service and reads it back.
fn echo(lab: &Lab, line: &str) {
    let addr = format!("{}:19000", lab.addr("pi1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("{line}\n").as_bytes())?;
            let mut buf = vec![0u8; line.len() + 1];
            s.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })();
        match attempt {
            Ok(back) if back.trim_end() == line => return,
            _ if Instant::now() > deadline => panic!("no echo from {addr}: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[test]
fn status_reports_the_fleet_and_logs_show_what_the_echo_service_was_sent() {
    status_on(Lab::up());
}

/// Issue 17 item 6: the same on a fleet of Debian 13 (Docker 26.1, installed by bootstrap
/// on pi3 from trixie's docker.io) and of Debian unstable (28.5), side by side.
#[test]
fn status_reports_the_fleet_on_docker_26() {
    status_on(Lab::up_with(&[Distro::Trixie], &[]));
}

#[test]
fn status_reports_the_fleet_on_docker_28() {
    status_on(Lab::up_with(&[Distro::Sid], &[]));
}

fn status_on(lab: Lab) {
    // 0. No swarm yet: said, exit 1; status changed nothing.
    let doc = json(&lab.ok(&["status", "--json"], 1));
    assert_eq!(
        doc["problems"],
        j!([
            "pi3: no docker: Docker is not installed (rpiprov bootstrap installs it)",
            "swarm: there is no swarm (rpiprov bootstrap forms it)"
        ]),
        "{doc:#}"
    );
    assert_eq!(node(&doc, "pi3")["state"], "no docker", "{doc:#}");
    assert_eq!(
        lab.on("pi1", "docker info --format '{{.Swarm.LocalNodeState}}'")
            .trim(),
        "inactive"
    );

    lab.ok(&["bootstrap"], 0);
    lab.ok(&["deploy"], 0);

    // 1. A converged fleet: exit 0, and every field as the nodes themselves say.
    let doc = json(&lab.ok(&["status", "--json"], 0));
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert_eq!(doc["problems"], j!([]));
    for h in &lab.inventory.hosts {
        let n = node(&doc, &h.name);
        let version = lab.on(&h.name, "docker version --format '{{.Server.Version}}'");
        let arch = lab.on(&h.name, "dpkg --print-architecture");
        assert_eq!(
            n,
            &j!({
                "host": h.name,
                "address": h.address,
                "reachable": true,
                "state": "ready",
                "why": null,
                "docker": version.trim(),
                "arch": arch.trim(),
                "role": h.role.as_str(),
                "availability": "active",
                "manager": if h.role.as_str() == "manager" { j!("leader") } else { j!(null) },
                "labels": h.labels,
            }),
            "{}",
            h.name
        );
    }
    let cluster = lab.on("pi1", "docker info --format '{{.Swarm.Cluster.ID}}'");
    assert_eq!(
        doc["swarm"],
        j!({"seen_from": "pi1", "cluster": cluster.trim(), "managers": 1,
            "managers_reachable": 1, "quorum": true})
    );
    let replicas = lab.on(
        "pi1",
        "docker service ls --format '{{.Name}} {{.Replicas}}'",
    );
    for st in &lab.playbook.stacks {
        let s = doc["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stack"] == st.name.as_str())
            .unwrap();
        assert_eq!((&s["deployed"], &s["files"]), (&j!(true), &j!("current")));
        for svc in s["services"].as_array().unwrap() {
            assert_eq!(svc["converged"], true, "{svc:#}");
            let line = format!(
                "{} {}",
                svc["name"].as_str().unwrap(),
                svc["replicas"].as_str().unwrap()
            );
            // Docker adds notes such as `(max 1 per node)` after the counts.
            assert!(
                replicas
                    .lines()
                    .any(|l| l == line || l.starts_with(&format!("{line} ("))),
                "{line} not in:\n{replicas}"
            );
        }
    }
    assert_eq!(
        doc["drift"],
        j!({"networks_missing": [], "networks_different": [], "stacks_unknown": [],
            "networks_unknown": [], "nodes_unknown": []})
    );
    let table = lab.ok(&["status"], 0);
    assert!(
        table.ends_with("status: everything matches the playbook (3 nodes, 3 stacks)\n"),
        "{table}"
    );
    assert!(table.starts_with("NODE  ADDRESS"), "{table}");

    // 2. The echo service's logs hold what it was sent, prefixed by task and node.
    echo(&lab, "hello from the status test");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = lab.ok(&["logs", "echo"], 0);
        let found = logs.lines().any(|l| {
            l.starts_with("echo_echo.1.")
                && l.contains("@pi1")
                && l.ends_with("| hello from the status test")
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "not in the logs:\n{logs}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = lab.run(&["logs", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no service or stack named \"no-such-thing\""));

    // `--follow` shows a line sent after it started; Ctrl-C ends it with 130 and leaves
    // no `docker service logs` on the manager.
    let mut follow = lab
        .rpiprov_cmd(&["logs", "echo", "--follow", "--since", "1s"])
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    'seen: loop {
        echo(&lab, "followed line");
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if line.ends_with("| followed line") {
                break 'seen;
            }
        }
        assert!(Instant::now() < deadline, "--follow never showed the line");
    }
    let pid = follow.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = follow.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left = lab.on("pi1", "ps -eo args | grep '^docker service logs' || true");
    assert_eq!(left, "", "the remote logs command outlived Ctrl-C");

    // 3. A stack file edited here: that stack is shown changed, the others current.
    let echo_yml = lab.fleet.dir.join("stacks/echo.yml");
    let original = std::fs::read_to_string(&echo_yml).unwrap();
    std::fs::write(
        &echo_yml,
        original.replace("replicas: 1", "replicas: 1\n      labels: {edited: \"1\"}"),
    )
    .unwrap();
    let doc = json(&lab.ok(&["status", "--json"], 1));
    let files: Vec<(String, String)> = doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stack"].as_str().unwrap().into(),
                s["files"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("web".into(), "current".into()),
            ("api".into(), "current".into()),
            ("echo".into(), "changed".into())
        ]
    );
    assert_eq!(
        doc["problems"],
        j!(["stack echo: its files changed since its last deploy (rpiprov deploy redeploys it)"])
    );
    std::fs::write(&echo_yml, original).unwrap();
    lab.ok(&["status"], 0);

    // 4. A worker's dockerd stopped: that node is down, exit 1; started again, all is well.
    lab.on("pi2", "service docker stop >/dev/null");
    let out = lab.run(&["status", "--json"]);
    lab.on("pi2", "service docker start >/dev/null");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (&node(&doc, "pi2")["state"], &node(&doc, "pi2")["why"]),
        (&j!("down"), &j!("dockerd is not running")),
        "{doc:#}"
    );
    assert_eq!(node(&doc, "pi1")["state"], "ready");
    // Its Docker's version is still shown, as it last told the managers.
    assert!(node(&doc, "pi2")["docker"].is_string(), "{doc:#}");
    assert_eq!(node(&doc, "pi2")["docker"], node(&doc, "pi1")["docker"]);
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .contains(&j!("pi2: down: dockerd is not running")),
        "{doc:#}"
    );
    // Back: the node rejoins on its own, and status says all is well again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = lab.run(&["status"]);
        if out.status.code() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_secs(1));
    }
}
