//! End-to-end tests of two Pi realities on a lab of three Docker nodes (issue 13 items 1
//! and 4), on one fleet:
//! - clocks: a node whose clock reads two hours ahead (the lab's libfaketime skew) is
//!   refused by bootstrap with the offset named, one 30 s ahead only gets a warning;
//!   put right, the first joins;
//! - half-joined nodes, made for real: with their links cut, the managers list pi2 and
//!   pi3 down and their entries are removed (as one prunes dead nodes); back on the
//!   network, pi3 believes it is still a node of the swarm, and pi2, its dockerd
//!   restarted, is stuck `pending` under its old id. One bootstrap, without --force,
//!   makes both leave and join again; each is listed once, ready, with its labels.

mod support;

use std::time::{Duration, Instant};

use rpiprov::lab::Lab;
use support::fleet::{Fleet, in_node as inside, json_of as json, row_of as row, run_in, text};

fn swarm_state(lab: &Lab, node: &str) -> String {
    inside(
        lab,
        node,
        &[
            "docker",
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
        ],
    )
    .trim()
    .to_string()
}

/// `HOSTNAME STATUS` of every node the manager pi1 lists, sorted.
fn listed(lab: &Lab) -> Vec<String> {
    let mut l: Vec<String> = inside(
        lab,
        "pi1",
        &[
            "docker",
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Status}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    l.sort();
    l
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn far_off_clocks_are_refused_and_half_joined_nodes_are_rejoined() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    let lab = Lab::open(&fleet.dir).expect("the lab opens");

    // Clocks: pi3 two hours ahead is refused with its offset; pi2 30 s ahead is warned.
    lab.skew_clock("pi3", 7200).unwrap();
    lab.skew_clock("pi2", 30).unwrap();
    let out = fleet.rpiprov(&["bootstrap", "--json"]);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    let pi3 = row(&doc, "pi3");
    assert_eq!(pi3["failed_step"], "preflight", "{doc:#}");
    let error = pi3["error"].as_str().unwrap();
    let offset: f64 = error
        .strip_prefix("clock: its clock is ")
        .and_then(|e| e.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {error:?}"));
    assert!((offset - 7200.0).abs() < 5.0, "{error}");
    assert!(
        error.contains("s ahead of this machine's") && error.contains("CertBackdate"),
        "{error}"
    );
    let warned: Vec<&serde_json::Value> = doc["details"]["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["host"] == "pi2" && f["check"] == "clock")
        .collect();
    assert_eq!(warned.len(), 1, "{doc:#}");
    assert_eq!(warned[0]["severity"], "warning");
    let said = warned[0]["message"].as_str().unwrap();
    let offset: f64 = said
        .strip_prefix("its clock is ")
        .and_then(|e| e.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {said:?}"));
    assert!(
        (offset - 30.0).abs() < 5.0 && said.contains("s ahead"),
        "{said}"
    );
    assert_eq!(row(&doc, "pi2")["outcome"], "changed", "{doc:#}");
    // (The node's own docker commands read the skewed clock too: asked once put right.)
    lab.clear_clock("pi3").unwrap();
    lab.clear_clock("pi2").unwrap();
    assert!(swarm_state(&lab, "pi2").starts_with("active "));
    assert_eq!(swarm_state(&lab, "pi3"), "inactive");
    // Put right, pi3 joins.
    let out = fleet.rpiprov(&["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(listed(&lab), ["pi1 Ready", "pi2 Ready", "pi3 Ready"]);

    // Half-joined, for real: cut off, listed down, their entries removed while away.
    let ids: Vec<String> = ["pi2", "pi3"]
        .iter()
        .map(|n| swarm_state(&lab, n).split(' ').nth(1).unwrap().to_string())
        .collect();
    for n in ["pi2", "pi3"] {
        lab.set_link(n, false).unwrap();
    }
    wait_until("pi2 and pi3 listed down", || {
        listed(&lab) == ["pi1 Ready", "pi2 Down", "pi3 Down"]
    });
    for id in &ids {
        inside(&lab, "pi1", &["docker", "node", "rm", "--force", id]);
    }
    for n in ["pi2", "pi3"] {
        lab.set_link(n, true).unwrap();
    }
    inside(&lab, "pi2", &["service", "docker", "restart"]);
    // (Its dockerd answers again a moment after the restart.)
    let format = "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}";
    wait_until("pi2 pending under its old id", || {
        run_in(&lab, "pi2", &["docker", "info", "--format", format])
            .is_some_and(|s| s.trim() == format!("pending {}", ids[0]))
    });
    // pi3 still believes it is its old node; the swarm lists neither.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(swarm_state(&lab, "pi3"), format!("active {}", ids[1]));
    assert_eq!(listed(&lab), ["pi1 Ready"]);

    // One bootstrap, no --force: both leave, and join again with their labels.
    let out = fleet.rpiprov(&["-v", "bootstrap"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("pi2: half-joined: its join did not complete (its swarm state is pending)"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "pi3: half-joined: it believes it is node {} of this swarm, which no longer lists it",
            ids[1]
        )),
        "{all}"
    );
    for n in ["pi2", "pi3"] {
        assert!(
            all.contains(&format!(
                "{n}: changed rejoin swarm as worker (it was half-joined)"
            )),
            "{all}"
        );
    }
    assert_eq!(listed(&lab), ["pi1 Ready", "pi2 Ready", "pi3 Ready"]);
    let zones = inside(
        &lab,
        "pi1",
        &[
            "sh",
            "-c",
            "docker node inspect --format '{{.Description.Hostname}} {{index .Spec.Labels \"zone\"}}' $(docker node ls -q) | sort",
        ],
    );
    assert_eq!(zones, "pi1 a\npi2 b\npi3 c\n");
    // And a second run changes nothing.
    let out = fleet.rpiprov(&["bootstrap"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("no change on any host"), "{all}");
}
