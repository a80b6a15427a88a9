//! The fault suite (issue 14), nodes failing during bootstrap and teardown, and between
//! commands, on one lab of three Docker nodes (pi1 the manager):
//! - pi3's link cut during its join: bootstrap ends within its timeouts naming pi3; the
//!   link restored, the next bootstrap joins it (once) and exits 0;
//! - pi2 rebooted between bootstrap and deploy (sshd and dockerd restarted, a new boot id):
//!   the deploy converges;
//! - pi3's link cut during teardown's wait for the containers: the wait does not hang on
//!   it; restored, the next teardown exits 0 and nothing of the playbook is left anywhere.

mod support;

use std::time::Duration;

use rpiprov::lab::Lab;
use support::faults::{
    CONVERGED, Running, lock_held, replicas, run, sh, short_timeouts, temp_files, wait_listed,
    wait_until,
};
use support::fleet::Fleet;

const SECOND: Duration = Duration::from_secs(1);
const NODES: [&str; 3] = ["pi1", "pi2", "pi3"];

/// `HOSTNAME STATUS` of every node pi1 lists, sorted (a node joined twice would show).
fn listed(fleet: &Fleet) -> Vec<String> {
    let mut l: Vec<String> = sh(
        fleet,
        "pi1",
        "docker node ls --format '{{.Hostname}} {{.Status}}'",
    )
    .lines()
    .map(str::to_string)
    .collect();
    l.sort();
    l
}

/// The playbook's containers on `node` (any state).
fn containers(fleet: &Fleet, node: &str) -> String {
    sh(
        fleet,
        node,
        "docker ps -aq --filter label=com.docker.stack.namespace",
    )
}

#[test]
fn nodes_cut_or_rebooted_around_bootstrap_and_teardown_are_repaired_by_the_rerun() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    short_timeouts(&fleet);
    let lab = Lab::open(&fleet.dir).expect("the lab opens");

    // 1. pi3's link cut as it joins: the run ends within its timeouts and names pi3.
    let mut bootstrap = Running::start(&fleet, &["-v", "bootstrap"]);
    bootstrap.wait_for("pi3: join swarm as worker", 60 * SECOND);
    lab.set_link("pi3", false).unwrap();
    let ended = bootstrap.finish(150 * SECOND);
    ended
        .expect_code(1)
        .within(45 * SECOND)
        .says("pi3: FAILED join swarm as worker: pi3");
    // The relay to pi3's Docker broke with the connection: said as such, not as an old
    // Docker to upgrade.
    let all = ended.all();
    assert!(
        all.contains("pi3 unreachable since") || all.contains("pi3: connection lost"),
        "{all}"
    );
    assert!(!all.contains("upgrade Docker"), "{all}");
    lab.set_link("pi3", true).unwrap();
    let ended = run(&fleet, &["-v", "bootstrap"], 150 * SECOND);
    ended.expect_code(0);
    wait_until("every node listed once, ready", 60 * SECOND, || {
        listed(&fleet) == ["pi1 Ready", "pi2 Ready", "pi3 Ready"]
    });
    let again = run(&fleet, &["bootstrap"], 60 * SECOND);
    again.expect_code(0).says("no change on any host");

    // 2. pi2 rebooted before the deploy: a new boot id, its daemons restarted.
    let before = lab.boot_id("pi2").unwrap();
    let after = lab.reboot("pi2").unwrap();
    assert_ne!(before, after);
    let ended = run(&fleet, &["-v", "deploy"], 150 * SECOND);
    ended.expect_code(0);
    assert_eq!(replicas(&fleet, "pi1"), CONVERGED, "{}", ended.all());

    // 3. pi3's link cut while teardown waits for the containers to go: the wait ends on
    //    the unreachable node within ssh.reconnect_timeout, not the command timeout.
    let mut teardown = Running::start(&fleet, &["-v", "teardown", "--yes"]);
    teardown.wait_for("wait until its containers are gone", 60 * SECOND);
    lab.set_link("pi3", false).unwrap();
    let ended = teardown.finish(150 * SECOND);
    ended.expect_code(1).within(45 * SECOND).says(
        "wait until gone: whether its containers are gone there is unknown: pi3 unreachable since",
    );
    assert!(!lock_held(&fleet, "pi1"), "{}", ended.all());
    lab.set_link("pi3", true).unwrap();
    wait_listed(&fleet, "pi1", "pi3", "Ready");
    // The rerun also waits for what pi3 still ran of the stacks already gone from the
    // swarm (its dockerd removes them once it hears from the managers again).
    let ended = run(&fleet, &["-v", "teardown", "--yes"], 150 * SECOND);
    ended.expect_code(0);
    assert_eq!(sh(&fleet, "pi1", "docker service ls -q"), "");
    for node in NODES {
        assert_eq!(containers(&fleet, node), "", "containers left on {node}");
        assert_eq!(temp_files(&fleet, node), "", "temporary files on {node}");
    }
    let networks = sh(&fleet, "pi1", "docker network ls --format '{{.Name}}'");
    assert!(
        !networks.lines().any(|n| n == "DATA" || n == "INTERCO"),
        "{networks}"
    );
    assert!(!lock_held(&fleet, "pi1"));
}
