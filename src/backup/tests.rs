//! Tests of the backup executor against scripted fake hosts, and of its pure judgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::archive::Archive;
use super::archive::samples::sample;
use super::restore::{self, Onto, PutBack, Verdict, judge_others, judge_target};
use super::take;
use crate::config::{Host, Role};
use crate::docker::api;
use crate::docker::http::Response;
use crate::docker::node::SwarmNode;
use crate::docker::probe;
use crate::docker::swarm::SwarmInfo;
use crate::exec::StepError;
use crate::exec::engine::Engines;
use crate::exec::report::{Outcome, Rows, Silent};
use crate::testing::{FakeRemote, host, ok};

const T: Duration = Duration::from_secs(5);

/// A probe's facts: its shell half, then (when Docker runs) the daemon's `info`.
fn facts(installed: bool, running: bool, info: &str) -> probe::Facts {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut f = probe::parse(&format!(
        "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed={}\n",
        yes(installed)
    ))
    .unwrap();
    if running {
        let answer = |status: u16, body: &str| Response {
            status,
            body: body.as_bytes().to_vec(),
        };
        let daemon = api::Daemon {
            docker: "20.10.24".into(),
            api: api::OLDEST,
            min_api: api::ApiVersion::new(1, 12),
        };
        let answers = [
            answer(200, info),
            answer(503, r#"{"message":"This node is not a swarm manager."}"#),
            answer(200, "[]"),
        ];
        f.read_daemon(&daemon, api::OLDEST, &answers, &[]).unwrap();
    }
    f
}

/// The command's engines over these fake hosts.
fn engines_of(hosts: &[&FakeRemote]) -> Arc<Engines<FakeRemote>> {
    let sessions: HashMap<String, Arc<FakeRemote>> = hosts
        .iter()
        .map(|f| (f.name.clone(), Arc::new((*f).clone())))
        .collect();
    Arc::new(Engines::new(&sessions, T))
}

const INACTIVE: &str = r#"{"Swarm":{"LocalNodeState":"inactive"}}"#;
const MANAGER_OF_C1: &str = r#"{"Swarm":{"LocalNodeState":"active","NodeID":"n1","ControlAvailable":true,"Cluster":{"ID":"c1"}}}"#;
const WORKER: &str = r#"{"Swarm":{"LocalNodeState":"active","NodeID":"n9","RemoteManagers":[{"NodeID":"m","Addr":"10.0.0.5:2377"}]}}"#;

#[test]
fn the_target_must_run_docker_and_be_in_no_swarm_unless_forced() {
    assert!(matches!(
        judge_target("pi1", &facts(false, false, INACTIVE), "c1", false),
        Verdict::Refused(why) if why.starts_with("pi1 has no Docker: a restore needs a Pi with Docker installed and running")
    ));
    assert!(matches!(
        judge_target("pi1", &facts(true, false, INACTIVE), "c1", true),
        Verdict::Refused(why) if why.starts_with("Docker does not run on pi1")
    ));
    assert_eq!(
        judge_target("pi1", &facts(true, true, INACTIVE), "c1", false),
        Verdict::Free
    );
    // A rerun: it manages the archive's swarm already.
    assert_eq!(
        judge_target("pi1", &facts(true, true, MANAGER_OF_C1), "c1", false),
        Verdict::Running
    );
    // Another swarm, named; replaced only with --force.
    assert_eq!(
        judge_target("pi1", &facts(true, true, MANAGER_OF_C1), "c2", false),
        Verdict::Refused(
            "pi1 is a manager of swarm c1: a restore replaces its swarm state; run with --force to do that"
                .into()
        )
    );
    assert_eq!(
        judge_target("pi1", &facts(true, true, MANAGER_OF_C1), "c2", true),
        Verdict::Replace("a manager of swarm c1".into())
    );
    assert_eq!(
        judge_target("pi1", &facts(true, true, WORKER), "c1", false),
        Verdict::Refused(
            "pi1 is a worker of a swarm (its managers: 10.0.0.5:2377): a restore replaces its swarm state; run with --force to do that"
                .into()
        )
    );
}

#[test]
fn no_other_manager_may_still_serve_a_swarm() {
    let serving = |id: &str| SwarmInfo {
        local_node_state: "active".into(),
        control_available: true,
        cluster: crate::docker::swarm::ClusterInfo { id: id.into() },
        ..Default::default()
    };
    let idle = SwarmInfo {
        local_node_state: "inactive".into(),
        ..Default::default()
    };
    assert_eq!(
        judge_others(&[("pi2".into(), idle.clone())], "c1", false),
        Ok(())
    );
    let alive = judge_others(&[("pi2".into(), serving("c1"))], "c1", false).unwrap_err();
    assert!(
        alive.starts_with(
            "the archive's swarm c1 is alive: pi2 serves it; a restore would start a second swarm"
        ),
        "{alive}"
    );
    let other = judge_others(&[("pi3".into(), serving("c9"))], "c1", false).unwrap_err();
    assert!(
        other.starts_with("pi3 serves another swarm (c9)"),
        "{other}"
    );
    assert_eq!(
        judge_others(&[("pi2".into(), serving("c1"))], "c1", true),
        Ok(())
    );
}

#[test]
fn gone_nodes_are_down_nobody_s_now_and_no_unreachable_host_s() {
    let node = |id: &str, hostname: &str, addr: &str, state: &str| SwarmNode {
        id: id.into(),
        hostname: hostname.into(),
        addr: addr.into(),
        state: state.into(),
        ..Default::default()
    };
    let nodes = [
        node("a", "pi1", "10.0.0.1", "ready"),
        node("b", "pi2", "10.0.0.2", "down"),
        node("c", "pi3", "10.0.0.3", "down"),
        node("d", "old-pi", "10.0.0.9", "down"),
        node("e", "pi4", "10.0.0.4", "unknown"),
    ];
    // pi2 answered under a new node (b is its old entry); pi3 did not answer.
    let mut away = host("pi3", Role::Worker);
    away.address = "10.0.0.3".into();
    let gone: Vec<&str> = restore::gone(&nodes, &["a".into(), "b2".into()], &[&away])
        .iter()
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(gone, ["b", "d"]);
}

/// The manager `deploy` acts through, as the survey reads it: one manager that leads
/// (pi1) and two that do not; echo's only task runs on pi2.
fn swarm_of_three(records: &FakeRemote) {
    let node = |id: &str, host: &str, leader: bool| {
        format!(
            r#"{{"ID":"{id}","Version":{{"Index":1}},"Spec":{{"Role":"manager","Availability":"active"}},"Description":{{"Hostname":"{host}"}},"Status":{{"State":"ready","Addr":"198.18.0.{}"}},"ManagerStatus":{{"Leader":{leader},"Reachability":"reachable"}}}}"#,
            &id[1..]
        )
    };
    records
        .on_api(
            "GET /nodes",
            200,
            &format!(
                "[{},{},{}]",
                node("n11", "pi1", true),
                node("n12", "pi2", false),
                node("n13", "pi3", false)
            ),
        )
        .on_api(
            "GET /swarm",
            200,
            r#"{"ID":"c1","Version":{"Index":3},"Spec":{"Name":"default"},"JoinTokens":{"Worker":"SWMTKN-w","Manager":"SWMTKN-m"}}"#,
        )
        .on_api(
            "GET /services",
            200,
            r#"[{"ID":"s1","Spec":{"Name":"echo_echo","Labels":{"com.docker.stack.namespace":"echo"},"TaskTemplate":{},"Mode":{"Replicated":{"Replicas":1}}},"ServiceStatus":{"RunningTasks":1,"DesiredTasks":1}}]"#,
        )
        .on_api(
            "GET /tasks",
            200,
            r#"[{"ID":"t1","ServiceID":"s1","Slot":1,"NodeID":"n12","Status":{"State":"running"},"DesiredState":"running"}]"#,
        );
}

fn daemon(f: &FakeRemote, node_id: &str) {
    f.on_api(
        "GET /info",
        200,
        &format!(
            r#"{{"ServerVersion":"20.10.24","DockerRootDir":"/var/lib/docker","Swarm":{{"LocalNodeState":"active","NodeID":"{node_id}","ControlAvailable":true,"Cluster":{{"ID":"c1"}}}}}}"#
        ),
    );
}

#[tokio::test]
async fn the_survey_copies_from_a_confirmed_follower_that_runs_no_service_alone() {
    let (pi1, pi2, pi3) = (
        FakeRemote::new("pi1"),
        FakeRemote::new("pi2"),
        FakeRemote::new("pi3"),
    );
    swarm_of_three(&pi1);
    daemon(&pi1, "n11");
    daemon(&pi2, "n12");
    daemon(&pi3, "n13");
    let managers: Vec<(String, Arc<FakeRemote>)> = [&pi1, &pi2, &pi3]
        .iter()
        .map(|f| (f.name.clone(), Arc::new((*f).clone())))
        .collect();
    let addresses: HashMap<String, Vec<String>> = (1..=3)
        .map(|i| (format!("pi{i}"), vec![format!("198.18.0.1{i}")]))
        .collect();
    let engines = engines_of(&[&pi1, &pi2, &pi3]);
    let s = take::survey(&pi1, &engines, &managers, &addresses, T)
        .await
        .unwrap();
    assert_eq!(s.swarm_id, "c1");
    assert_eq!(s.choice.host, "pi3", "{}", s.choice.why);
    assert!(s.passed_over.is_empty(), "{:?}", s.passed_over);
    assert_eq!(
        (s.source.docker_root.as_str(), s.source.leader),
        ("/var/lib/docker", false)
    );
    assert_eq!(s.stacks[0].services, ["echo"]);
    assert!(s.unlock_key.is_none());

    // pi3 says it is n13, which the swarm sees elsewhere: not believed, and pi2 (which
    // stops echo) is the one left.
    let liar: HashMap<String, Vec<String>> = [
        ("pi1".to_string(), vec!["198.18.0.11".to_string()]),
        ("pi2".into(), vec!["198.18.0.12".into()]),
        ("pi3".into(), vec!["10.9.9.9".into()]),
    ]
    .into();
    let s = take::survey(&pi1, &engines, &managers, &liar, T)
        .await
        .unwrap();
    assert_eq!(s.choice.host, "pi2");
    assert_eq!(s.choice.stopped, ["echo_echo"]);
    assert_eq!(
        s.passed_over,
        [(
            "pi3".to_string(),
            "it reports swarm node n13, which the swarm sees at 198.18.0.13, not at pi3's 10.9.9.9"
                .to_string()
        )]
    );
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A Pi whose snapshot script says `done` as given, and whose staged files are `bytes`.
fn staged_pi(name: &str, done: &str, bytes: &'static [u8]) -> FakeRemote {
    let f = FakeRemote::new(name);
    f.on(
        "RPIPROV_WORKER",
        ok(&format!(
            "@@stage /var/lib/rpiprov/stage/snapshot.Ab12Cd\n{done}sha256 {}\nsize {}\n",
            sha(bytes),
            bytes.len()
        )),
    )
    .on(
        "records.tar.gz\" -T /dev/null",
        ok(&format!(
            "@@stage /var/lib/rpiprov/stage/records.Ef34Gh\nsha256 {}\nsize {}\n",
            sha(b"records"),
            7
        )),
    )
    .on(
        "cat -- /var/lib/rpiprov/stage/snapshot.Ab12Cd/swarm.tar.gz",
        ok(std::str::from_utf8(bytes).unwrap()),
    )
    .on(
        "cat -- /var/lib/rpiprov/stage/records.Ef34Gh/records.tar.gz",
        ok("records"),
    )
    .on("tail -n 8", ok("tar: swarm: Cannot stat\n"))
    .on("rm -rf -- /var/lib/rpiprov/stage/", ok(""));
    f
}

fn survey_from(source: &str) -> take::Survey {
    let m = sample().manifest;
    take::Survey {
        swarm_id: m.swarm.id,
        keep: Default::default(),
        nodes: vec![],
        stacks: m.stacks,
        choice: crate::backup::choose::Choice {
            host: source.into(),
            node_id: "n1".into(),
            leader: true,
            quorum: crate::backup::choose::Quorum::Lost,
            why: String::new(),
            stopped: vec![],
        },
        source: m.source,
        records_from: source.into(),
        passed_over: vec![],
        unlock_key: None,
    }
}

#[tokio::test]
async fn the_copy_arrives_checked_and_its_stages_are_removed() {
    let pi = staged_pi("pi1", "stop ok\ncopy ok\nstart ok\n", b"swarm bytes");
    let rows = Rows::new(Arc::new(Silent), &[]);
    let taken = take::take(&pi, &pi, &engines_of(&[&pi]), &survey_from("pi1"), &rows, T)
        .await
        .unwrap();
    assert_eq!(
        (taken.swarm.as_slice(), taken.records.as_slice()),
        (&b"swarm bytes"[..], &b"records"[..])
    );
    assert_eq!(pi.count("rm -rf -- /var/lib/rpiprov/stage/"), 2);
    let row = rows.finish().remove(0);
    assert_eq!(row.outcome, Outcome::Changed);
    assert!(
        row.changed[0]
            .starts_with("Docker stopped, its swarm state copied (11 bytes), Docker started again"),
        "{:?}",
        row.changed
    );
}

#[tokio::test]
async fn a_failed_copy_says_why_and_leaves_no_stage() {
    let pi = staged_pi("pi1", "stop ok\ncopy failed\nstart ok\n", b"x");
    let rows = Rows::new(Arc::new(Silent), &[]);
    assert!(
        take::take(&pi, &pi, &engines_of(&[&pi]), &survey_from("pi1"), &rows, T)
            .await
            .is_none()
    );
    let row = rows.finish().remove(0);
    assert_eq!(row.failed_step.as_deref(), Some("copy"));
    assert_eq!(
        row.error.as_deref(),
        Some(
            "the copy of /var/lib/docker/swarm on pi1 failed (Docker runs again); its log ends:\ntar: swarm: Cannot stat"
        )
    );
    assert_eq!(
        pi.count("rm -rf -- /var/lib/rpiprov/stage/snapshot.Ab12Cd"),
        1
    );
    // Docker did not start again: that is what is said first.
    let pi = staged_pi("pi1", "stop ok\ncopy ok\nstart failed\n", b"x");
    let rows = Rows::new(Arc::new(Silent), &[]);
    assert!(
        take::take(&pi, &pi, &engines_of(&[&pi]), &survey_from("pi1"), &rows, T)
            .await
            .is_none()
    );
    let error = rows.finish().remove(0).error.unwrap();
    assert!(
        error.starts_with("Docker did not start again on pi1 after the copy"),
        "{error}"
    );
    // A copy that arrives damaged is refused.
    let pi = staged_pi("pi1", "stop ok\ncopy ok\nstart ok\n", b"swarm bytes");
    pi.first(
        "cat -- /var/lib/rpiprov/stage/snapshot.Ab12Cd/swarm.tar.gz",
        ok("swarm byte"),
    );
    let rows = Rows::new(Arc::new(Silent), &[]);
    assert!(
        take::take(&pi, &pi, &engines_of(&[&pi]), &survey_from("pi1"), &rows, T)
            .await
            .is_none()
    );
    let error = rows.finish().remove(0).error.unwrap();
    assert_eq!(error, "swarm.tar.gz arrived incomplete (10 of 11 bytes)");
}

/// The restore's target: pi1, a manager at 198.18.0.11, with Docker installed and in no
/// swarm, whose put-back script stops, swaps and starts.
fn free_pi() -> (Host, FakeRemote) {
    let mut target = host("pi1", Role::Manager);
    target.address = "198.18.0.11".into();
    let pi = FakeRemote::new("pi1");
    pi.on(
        "@@begin",
        ok("hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\n"),
    )
    .on(
        "RPIPROV_WORKER",
        ok("@@stage /var/lib/rpiprov/stage/restore.Zz9\nstop ok\nswap ok\nstart ok\n"),
    )
    .on("rm -rf -- /var/lib/rpiprov/stage/restore.Zz9", ok(""));
    (target, pi)
}

/// `restore::put_back` of `archive` onto `pi` alone (no other manager, no --force, no key).
async fn put_back_on(
    target: &Host,
    pi: &FakeRemote,
    archive: &Archive,
    rows: &Rows,
) -> Result<PutBack, StepError> {
    let onto = Onto {
        host: target,
        remote: pi,
        engines: &engines_of(&[pi]),
        others: &[],
        force: false,
        key: None,
        timeout: T,
    };
    restore::put_back(&onto, archive, rows).await
}

/// Restore onto a free Pi: the swarm folder goes in with the archive's bytes on stdin, and
/// the swarm starts again at the host's address with autolock and the CA as they were.
#[tokio::test]
async fn a_restore_puts_the_state_back_and_starts_the_swarm_at_the_host_s_address() {
    let a = sample();
    let (target, pi) = free_pi();
    daemon(&pi, "n1");
    pi.on_api("POST /swarm/init", 200, r#""n1""#)
        .on_api("GET /nodes", 200, "[]");
    // The probe's read, before any other: a Docker in no swarm.
    pi.on_api_once("GET /info", 200, INACTIVE);
    let mut unlocked = a.clone();
    unlocked.manifest.swarm.keep.autolock = false;
    let rows = Rows::new(Arc::new(Silent), &[]);
    let done = put_back_on(&target, &pi, &unlocked, &rows).await.unwrap();
    assert_eq!(done, PutBack::Restored);
    let sent = pi
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.command.contains("RPIPROV_WORKER"))
        .and_then(|r| r.stdin.clone())
        .unwrap();
    assert_eq!(sent, unlocked.swarm);
    let init = pi.api_calls("POST /swarm/init");
    let body: serde_json::Value = serde_json::from_str(&init[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "198.18.0.11",
            "ForceNewCluster": true,
            "Spec": {"EncryptionConfig": {"AutoLockManagers": false}, "CAConfig": {"ForceRotate": 0}}})
    );
    let row = rows.finish().remove(0);
    assert_eq!(row.outcome, Outcome::Changed, "{row:?}");
    assert_eq!(row.changed.len(), 2, "{:?}", row.changed);
}

/// A copy of a swarm of three managers: its raft never gets quorum back on the target, so
/// the swarm is not waited for before `--force-new-cluster` (which Docker refuses while the
/// node's manager is still starting, and is sent again then).
#[tokio::test]
async fn a_copy_of_several_managers_is_started_again_without_waiting_for_quorum() {
    let mut a = sample();
    a.manifest.swarm.managers = 3;
    a.manifest.swarm.keep.autolock = false;
    let (target, pi) = free_pi();
    daemon(&pi, "n1");
    let pending = r#"{"ServerVersion":"20.10.24","DockerRootDir":"/var/lib/docker","Swarm":{"LocalNodeState":"pending","NodeID":"n1"}}"#;
    // The data root's read, then the state after Docker's start: pending, no leader.
    pi.on_api_once("GET /info", 200, pending)
        .on_api_once("GET /info", 200, pending)
        .on_api("POST /swarm/init", 200, r#""n1""#)
        .on_api_once(
            "POST /swarm/init",
            503,
            r#"{"message":"This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."}"#,
        )
        .on_api("GET /nodes", 200, "[]");
    // The probe's read, before any other: a Docker in no swarm.
    pi.on_api_once("GET /info", 200, INACTIVE);
    let rows = Rows::new(Arc::new(Silent), &[]);
    let done = put_back_on(&target, &pi, &a, &rows).await.unwrap();
    assert_eq!(done, PutBack::Restored);
    assert_eq!(pi.api_calls("POST /swarm/init").len(), 2);
    // The probe's, the data root, the one pending state (not waited on), the state after
    // the init.
    assert_eq!(pi.api_calls("GET /info").len(), 4);
    let row = rows.finish().remove(0);
    assert_eq!(row.outcome, Outcome::Changed, "{row:?}");
}

/// A Pi in another swarm is refused, naming it, before anything is sent to it.
#[tokio::test]
async fn a_pi_in_another_swarm_is_refused_before_anything_is_touched() {
    let target = host("pi1", Role::Manager);
    let pi = FakeRemote::new("pi1");
    pi.on(
        "@@begin",
        ok("hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\n"),
    )
    .on_api("GET /info", 200, MANAGER_OF_C1);
    let rows = Rows::new(Arc::new(Silent), &[]);
    let e = put_back_on(&target, &pi, &sample(), &rows)
        .await
        .unwrap_err();
    assert!(e.0.starts_with("pi1 is a manager of swarm c1"), "{e}");
    // The probe's shell half is the one command, beside its Engine API's relay.
    let commands: Vec<String> = pi
        .commands()
        .into_iter()
        .filter(|c| c != "docker system dial-stdio")
        .collect();
    assert_eq!(commands.len(), 1, "{commands:?}");
    // Only the probe's reads reached its daemon: nothing was changed there.
    assert!(
        pi.api_calls("").iter().all(|c| c.line.starts_with("GET ")),
        "{:?}",
        pi.api_calls("")
    );
}

/// Ctrl-C during a copy: the Pi's script is waited for and its end said; a Docker that
/// did not start again is the row's failure, with what to do.
#[tokio::test]
async fn after_an_interruption_the_pi_s_script_is_waited_for_and_its_end_said() {
    let survey = survey_from("pi1");
    for (settled, failed) in [
        ("@@settled\nstop ok\ncopy ok\nstart ok\n", None),
        (
            "@@settled\nstop ok\ncopy ok\nstart failed\n",
            Some(
                "Docker did not start again after the interrupted copy: start it (`sudo systemctl start docker`, or `sudo service docker start`)",
            ),
        ),
    ] {
        let pi = FakeRemote::new("pi1");
        pi.on("@@settled", ok(settled));
        let rows = Rows::new(Arc::new(Silent), &[]);
        take::after_interrupt(&pi, &engines_of(&[&pi]), &survey, &rows, T).await;
        assert_eq!(pi.count("@@settled"), 1);
        let row = rows.finish().pop();
        assert_eq!(row.and_then(|r| r.error).as_deref(), failed);
    }
}
