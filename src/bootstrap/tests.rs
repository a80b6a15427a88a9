//! Tests of the bootstrap executor against scripted fake hosts.

use super::*;
use crate::exec::report::Outcome;
use crate::testing::{FakeRemote, Recorder, fail, host, ok};

const INACTIVE: &str = "@@begin info\n{\"Swarm\":{\"LocalNodeState\":\"inactive\"}}\n@@end info\n";

fn probe_of(hostname: &str, addr: &str, docker: bool) -> String {
    if docker {
        format!(
            "hostname={hostname}\nreach_addr={addr}\ndocker_installed=yes\ndocker_running=yes\n{INACTIVE}"
        )
    } else {
        format!("hostname={hostname}\nreach_addr={addr}\ndocker_installed=no\ndocker_running=no\n")
    }
}

const TOKEN: &str = "SWMTKN-1-secret-token-value";

/// A node's daemon as the join sees it through the Engine API: the join "times out"
/// although the node joined (the state decides), and its error quotes the token.
fn joins_as(w: &FakeRemote, node_id: &str) {
    w.on_api(
        "GET /version",
        200,
        r#"{"Version":"20.10.24","ApiVersion":"1.41"}"#,
    )
    .on_api(
        "POST /swarm/join",
        503,
        &format!(r#"{{"message":"Timeout was reached before node joined (token {TOKEN})"}}"#),
    )
    .on_api(
        "GET /info",
        200,
        &format!(r#"{{"Swarm":{{"LocalNodeState":"active","NodeID":"{node_id}"}}}}"#),
    );
}

async fn bootstrap(
    fakes: &[FakeRemote],
    hosts: &[Host],
    unreachable: Vec<(String, String)>,
) -> (Vec<Row>, Vec<String>) {
    let all: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    bootstrap_on(fakes, hosts, &all, unreachable).await
}

/// As [`bootstrap`], acting on the hosts `on` names (`--on`); managers are always there.
async fn bootstrap_on(
    fakes: &[FakeRemote],
    hosts: &[Host],
    on: &[&str],
    unreachable: Vec<(String, String)>,
) -> (Vec<Row>, Vec<String>) {
    let opts = options_on(hosts, on);
    let sessions = sessions_of(fakes);
    let rec = Arc::new(Recorder::default());
    let reports = execute(&opts, sessions, unreachable, rec.clone())
        .await
        .rows;
    let events = rec.0.lock().unwrap().clone();
    (reports, events)
}

/// The options of a run acting on the hosts `on` names, the port test skipped (the fakes
/// do not answer it).
fn options_on<'a>(hosts: &'a [Host], on: &[&str]) -> Options<'a> {
    Options {
        hosts: hosts
            .iter()
            .filter(|h| on.contains(&h.name.as_str()))
            .collect(),
        managers: hosts.iter().filter(|h| h.role == Role::Manager).collect(),
        networks: &[],
        default_addr_pool: None,
        force: false,
        parallel: 4,
        command_timeout: Duration::from_secs(5),
        skip: vec![Check::Ports],
        preflight_only: false,
        rejoin_grace: Duration::from_millis(10),
        addresses: hosts
            .iter()
            .map(|h| (h.name.clone(), vec![h.address.clone()]))
            .collect(),
    }
}

/// A host at its lab address (`piN` at `198.18.0.1N`): what rpiprov knows it by.
fn at_lab(name: &str, role: Role) -> Host {
    let mut h = host(name, role);
    h.address = format!("198.18.0.1{}", name.trim_start_matches("pi"));
    h
}

fn sessions_of(fakes: &[FakeRemote]) -> HashMap<String, Arc<FakeRemote>> {
    fakes
        .iter()
        .map(|f| (f.name.clone(), Arc::new(f.clone())))
        .collect()
}

fn fleet() -> (Vec<FakeRemote>, Vec<Host>) {
    let m = FakeRemote::new("pi1");
    m.on("@@begin", ok(&probe_of("pi1", "198.18.0.11", true)))
        .on("swarm init", ok(""))
        .on("{{.Swarm.NodeAddr}}", ok("198.18.0.11 n1\n"))
        .on("join-token --rotate", ok(""))
        .on("join-token -q worker", ok(&format!("{TOKEN}\n")));
    let w = FakeRemote::new("pi2");
    w.on("@@begin", ok(&probe_of("pi2", "198.18.0.12", false)))
        .on("apt-get install", ok("Setting up docker.io\n"))
        .on("docker info >/dev/null", ok(""));
    joins_as(&w, "n2");
    (
        vec![m, w],
        vec![host("pi1", Role::Manager), host("pi2", Role::Worker)],
    )
}

#[tokio::test]
async fn installs_inits_joins_through_the_api_and_rotates_the_token() {
    let (fakes, hosts) = fleet();
    let (reports, events) = bootstrap(&fakes, &hosts, vec![]).await;
    assert_eq!(reports[0].outcome, Outcome::Changed);
    assert_eq!(
        reports[0].changed,
        vec![
            "swarm init (advertise 198.18.0.11)",
            "rotate the worker join token"
        ]
    );
    assert_eq!(
        fakes[0].commands().last().map(String::as_str),
        Some("docker swarm join-token --rotate -q worker >/dev/null")
    );
    assert_eq!(reports[1].outcome, Outcome::Changed, "{:?}", reports[1]);
    assert_eq!(
        reports[1].changed,
        vec![
            "install docker (docker.io package)",
            "start docker",
            "join swarm as worker"
        ]
    );
    // Every command ran as root, the relay too; no command line holds the token, the
    // body of the API request does.
    let log = fakes[1].log.lock().unwrap().clone();
    assert!(log.iter().all(|r| r.privileged));
    assert!(log.iter().any(|r| r.command == "docker system dial-stdio"));
    assert!(log.iter().all(|r| !r.command.contains(TOKEN)));
    let join = fakes[1].api_calls("POST /swarm/join");
    assert_eq!(join.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&join[0].body).unwrap();
    assert_eq!(body["JoinToken"], TOKEN);
    assert_eq!(body["RemoteAddrs"][0], "198.18.0.11:2377");
    assert_eq!(body["AdvertiseAddr"], "198.18.0.12");
    // The token appears in no event and no report.
    assert!(events.iter().all(|e| !e.contains(TOKEN)), "{events:?}");
    assert!(!format!("{reports:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_failed_manager_stops_the_swarm_steps_before_any_worker_joins() {
    let (fakes, hosts) = fleet();
    fakes[0].first(
        "swarm init",
        fail(
            1,
            "Error response from daemon: could not choose an IP address",
        ),
    );
    let (reports, events) = bootstrap(&fakes, &hosts, vec![]).await;
    assert_eq!(reports[0].outcome, Outcome::Failed);
    assert_eq!(
        reports[0].failed_step.as_deref(),
        Some("swarm init (advertise 198.18.0.11)")
    );
    assert_eq!(
        reports[0].error.as_deref(),
        Some("exit 1: Error response from daemon: could not choose an IP address")
    );
    // The worker still got Docker (it does not depend on the manager) but did not join.
    assert_eq!(reports[1].outcome, Outcome::Skipped);
    assert_eq!(
        reports[1].error.as_deref(),
        Some("manager pi1 failed; swarm steps not attempted")
    );
    assert!(fakes[1].api_calls("/swarm/join").is_empty());
    assert!(
        fakes[1]
            .commands()
            .iter()
            .any(|c| c.contains("apt-get install"))
    );
    assert!(events.iter().any(|e| e.contains("pi2: Done(Skipped")));
}

#[tokio::test]
async fn an_unreachable_worker_fails_alone() {
    let (fakes, hosts) = fleet();
    let (reports, _) = bootstrap(
        &fakes[..1],
        &hosts,
        vec![(
            "pi2".into(),
            "no answer from 198.18.0.12:22 within 2s".into(),
        )],
    )
    .await;
    assert_eq!(reports[0].outcome, Outcome::Changed);
    assert_eq!(reports[1].outcome, Outcome::Failed);
    assert_eq!(reports[1].failed_step.as_deref(), Some("connect"));
}

#[tokio::test]
async fn a_rejoining_pi_replaces_its_old_entry_but_never_a_live_namesake() {
    let (fakes, _) = fleet();
    let hosts = ["pi1", "pi2", "pi3"].map(|n| {
        at_lab(
            n,
            if n == "pi1" {
                Role::Manager
            } else {
                Role::Worker
            },
        )
    });
    // The manager leads a swarm that still lists pi3's old node (up: it left seconds
    // ago) and a live machine elsewhere that is also called pi3.
    let m = FakeRemote::new("pi1");
    m.on(
        "@@begin",
        ok(&format!(
            "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n@@begin nodes\n{}\n{}\n{}\n@@end nodes\n",
            r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
            r#"{"ID":"n1","Spec":{"Role":"manager"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"198.18.0.11"}}"#,
            r#"{"ID":"old3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"198.18.0.13"}}"#,
            r#"{"ID":"far3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"10.0.0.3"}}"#,
        )),
    )
    .on("join-token -q worker", ok(&format!("{TOKEN}\n")))
    .on("join-token --rotate", ok(""))
    .on(
        "{{.Status.Addr}}",
        ok("n1 pi1 ready 198.18.0.11\nold3 pi3 ready 198.18.0.13\nfar3 pi3 ready 10.0.0.3\nnew3 pi3 ready 198.18.0.13\n"),
    )
    .on("docker node rm", ok(""));
    let w3 = FakeRemote::new("pi3");
    w3.on("@@begin", ok(&probe_of("pi3", "198.18.0.13", true)));
    joins_as(&w3, "new3");
    let (reports, _) = bootstrap(&[m.clone(), w3, fakes[1].clone()], &hosts[..], vec![]).await;
    let pi2 = reports.iter().find(|r| r.id.name == "pi2").unwrap();
    assert_eq!(pi2.outcome, Outcome::Changed, "{pi2:?}");
    let removals: Vec<String> = m
        .commands()
        .into_iter()
        .filter(|c| c.contains("node rm"))
        .collect();
    assert_eq!(removals, vec!["docker node rm --force old3"]);
}

/// Issue 13: a worker whose clock is two hours ahead fails at `preflight`, naming the
/// offset, and nothing is done to it; the manager still forms the swarm.
#[tokio::test]
async fn a_far_off_clock_stops_that_host_before_anything_is_done_to_it() {
    let (fakes, hosts) = fleet();
    let ahead = preflight::now() + 7200.0;
    fakes[1].first(
        "@@begin",
        ok(&format!(
            "clock={ahead:.3}\n{}",
            probe_of("pi2", "198.18.0.12", false)
        )),
    );
    let (reports, _) = bootstrap(&fakes, &hosts, vec![]).await;
    assert_eq!(reports[0].outcome, Outcome::Changed);
    assert_eq!(reports[1].outcome, Outcome::Failed);
    assert_eq!(reports[1].failed_step.as_deref(), Some("preflight"));
    let error = reports[1].error.clone().unwrap();
    assert!(
        error.starts_with("clock: its clock is 7200.0 s ahead of this machine's (±0.0 s)")
            || error.starts_with("clock: its clock is 7199.9 s ahead of this machine's"),
        "{error}"
    );
    assert_eq!(fakes[1].commands().len(), 1, "only the probe ran on pi2");
}

/// `doctor`: the probe and the port test, and nothing else. Here no datagram arrives
/// anywhere (the listeners received nothing), while TCP connects: each UDP port is named
/// with its node and the peer that could not reach it.
#[tokio::test]
async fn doctor_tests_ports_between_the_nodes_and_changes_nothing() {
    let (fakes, hosts) = fleet();
    let refs: Vec<&Host> = hosts.iter().collect();
    let managers: Vec<&Host> = hosts.iter().filter(|h| h.role == Role::Manager).collect();
    let listening = |ports: &str| {
        ok(&format!(
            "dir /tmp/rpiprov-ports.t\n{}pid 7\n",
            ports
                .split(' ')
                .map(|p| format!("bound {p}\n"))
                .collect::<String>()
        ))
    };
    fakes[0]
        .first(
            "mktemp -d",
            listening("2377/tcp 7946/tcp 7946/udp 4789/udp"),
        )
        .first(
            "perl -e 'use strict; use IO::Socket::INET; use Time",
            ok("198.18.0.12 7946/tcp ok\n198.18.0.12 7946/udp sent\n198.18.0.12 4789/udp sent\n"),
        )
        .first("cat \"$d/log\"", ok(""));
    // pi2 receives pi1's VXLAN datagrams but not its gossip ones.
    fakes[1]
        .first("mktemp -d", listening("7946/tcp 7946/udp 4789/udp"))
        .first(
            "perl -e 'use strict; use IO::Socket::INET; use Time",
            ok("198.18.0.11 2377/tcp ok\n198.18.0.11 7946/tcp ok\n198.18.0.11 7946/udp sent\n198.18.0.11 4789/udp sent\n"),
        )
        .first("cat \"$d/log\"", ok(""));
    let opts = Options {
        hosts: refs,
        managers,
        networks: &[],
        default_addr_pool: None,
        force: false,
        parallel: 4,
        command_timeout: Duration::from_secs(5),
        skip: vec![],
        preflight_only: true,
        rejoin_grace: Duration::from_millis(10),
        addresses: HashMap::new(),
    };
    let sessions = fakes
        .iter()
        .map(|f| (f.name.clone(), Arc::new(f.clone())))
        .collect();
    let done = execute(&opts, sessions, vec![], Arc::new(Recorder::default())).await;
    let lines: Vec<String> = done
        .findings
        .iter()
        .filter(|f| f.check == Check::Ports)
        .map(|f| f.line())
        .collect();
    assert_eq!(
        lines,
        vec![
            "error: pi1: ports: pi2 cannot reach its 7946/udp (nothing arrived): swarm needs it for gossip between the nodes (who is in the swarm); what to do: open 7946/udp on pi1 to pi2, and in anything between them",
            "error: pi1: ports: pi2 cannot reach its 4789/udp (nothing arrived): swarm needs it for overlay network traffic (VXLAN); what to do: open 4789/udp on pi1 to pi2, and in anything between them",
            "error: pi2: ports: pi1 cannot reach its 7946/udp (nothing arrived): swarm needs it for gossip between the nodes (who is in the swarm); what to do: open 7946/udp on pi2 to pi1, and in anything between them",
            "error: pi2: ports: pi1 cannot reach its 4789/udp (nothing arrived): swarm needs it for overlay network traffic (VXLAN); what to do: open 4789/udp on pi2 to pi1, and in anything between them",
        ]
    );
    let pi2 = &done.rows[1];
    assert_eq!(pi2.failed_step.as_deref(), Some("preflight"));
    // Nothing was changed anywhere: no install, no init, no join.
    for f in &fakes {
        assert!(
            f.commands().iter().all(|c| !c.contains("swarm init")
                && !c.contains("apt-get install")
                && !c.contains("swarm join")),
            "{:?}",
            f.commands()
        );
        // Every listener that started was collected (and so stopped).
        assert_eq!(f.count("mktemp -d"), 1);
        assert_eq!(f.count("cat \"$d/log\""), 1);
    }
}

/// A node entry as `docker node inspect --format '{{json .}}'` prints it.
fn node_json(id: &str, hostname: &str, role: &str, zone: &str, addr: &str) -> String {
    format!(
        r#"{{"ID":"{id}","Spec":{{"Role":"{role}","Labels":{{"zone":"{zone}"}}}},"Description":{{"Hostname":"{hostname}"}},"Status":{{"State":"ready","Addr":"{addr}"}}}}"#
    )
}

/// The leader of a formed swarm of three nodes, labelled as the inventory wants: pi1
/// (manager, n1), pi2 and pi3 (workers, n2 and n3).
fn formed_leader() -> FakeRemote {
    let nodes = [
        node_json("n1", "pi1", "manager", "a", "198.18.0.11"),
        node_json("n2", "pi2", "worker", "b", "198.18.0.12"),
        node_json("n3", "pi3", "worker", "c", "198.18.0.13"),
    ];
    let m = FakeRemote::new("pi1");
    m.on(
        "@@begin",
        ok(&format!(
            "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n@@begin nodes\n{}\n@@end nodes\n",
            r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
            nodes.join("\n")
        )),
    );
    for (i, n) in nodes.iter().enumerate() {
        m.on(
            &format!("node inspect --format '{{{{json .}}}}' n{}", i + 1),
            ok(&format!("{n}\n")),
        );
    }
    m.on("docker node", ok(""));
    m
}

/// [`formed_leader`] whose Docker speaks the Engine API: its settings go there, in two
/// round trips (the nodes, then every change), and no `docker node` command runs.
fn formed_leader_api() -> FakeRemote {
    let m = formed_leader();
    let nodes = [
        ("n1", "pi1", "manager", "a", "198.18.0.11"),
        ("n2", "pi2", "worker", "b", "198.18.0.12"),
        ("n3", "pi3", "worker", "c", "198.18.0.13"),
    ]
    .map(|(id, h, role, zone, addr)| {
        node_json(id, h, role, zone, addr).replacen('{', r#"{"Version":{"Index":7},"#, 1)
    });
    m.on_api(
        "GET /version",
        200,
        r#"{"Version":"20.10.24","ApiVersion":"1.41"}"#,
    )
    .on_api("GET /v1.41/nodes", 200, &format!("[{}]", nodes.join(",")))
    .on_api("POST /v1.41/nodes/", 200, "");
    m
}

/// The node changes a leader was asked for: `docker node` commands (CLI) or node
/// updates through its Engine API (the path and the labels sent).
fn changes_of(leader: &FakeRemote) -> Vec<String> {
    let mut all = node_changes(leader);
    for c in leader.api_calls("/update") {
        let spec: serde_json::Value = serde_json::from_str(&c.body).unwrap();
        all.push(format!("{} {}", c.line, spec["Labels"]));
    }
    all
}

/// A worker whose Docker says it is node `id`, under the host name `hostname`.
fn worker_claiming(name: &str, hostname: &str, id: &str) -> FakeRemote {
    let w = FakeRemote::new(name);
    w.on(
        "@@begin",
        ok(&format!(
            "hostname={hostname}\nreach_addr=whatever-it-says\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{{\"NodeID\":\"{id}\",\"LocalNodeState\":\"active\",\"Cluster\":{{\"ID\":\"c1\"}}}}}}\n@@end info\n"
        )),
    );
    w
}

/// The inventory: pi1 manager, pi2 and pi3 workers, zones a, b, c; pi2 wants `pi2_zone`.
fn lab_hosts(pi2_zone: &str) -> Vec<Host> {
    [
        ("pi1", Role::Manager, "a"),
        ("pi2", Role::Worker, pi2_zone),
        ("pi3", Role::Worker, "c"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, role, zone))| {
        let mut h = host(name, *role);
        h.address = format!("198.18.0.1{}", i + 1);
        h.labels.insert("zone".into(), zone.to_string());
        h
    })
    .collect()
}

/// The commands that would change a node.
fn node_changes(leader: &FakeRemote) -> Vec<String> {
    leader
        .commands()
        .into_iter()
        .filter(|c| {
            c.contains("node demote") || c.contains("node promote") || c.contains("node update")
        })
        .collect()
}

const LEFT_ALONE: &str = "its role and labels are left alone (a Pi that reports another node's ID is misconfigured, cloned from another's SD card, or compromised)";

/// Issue 9 item 7: pi2 (a worker) says it is pi1's node. Acting on its word would demote
/// the manager and label it as pi2's.
#[tokio::test]
async fn a_pi_that_claims_the_managers_node_demotes_and_labels_nothing() {
    for m in [formed_leader(), formed_leader_api()] {
        claims_the_managers_node(m).await;
    }
}

async fn claims_the_managers_node(m: FakeRemote) {
    let w = worker_claiming("pi2", "pi2", "n1");
    let (reports, _) =
        bootstrap_on(&[m.clone(), w], &lab_hosts("b"), &["pi1", "pi2"], vec![]).await;
    assert_eq!(changes_of(&m), Vec::<String>::new());
    let pi2 = reports.iter().find(|r| r.id.name == "pi2").unwrap();
    assert_eq!(pi2.outcome, Outcome::Failed, "{pi2:?}");
    assert_eq!(pi2.failed_step.as_deref(), Some("make pi2 a worker"));
    assert_eq!(
        pi2.error.as_deref(),
        Some(format!("pi2 and pi1 report the same swarm node n1: {LEFT_ALONE}").as_str())
    );
    // The leader did nothing wrong and went on.
    let pi1 = reports.iter().find(|r| r.id.name == "pi1").unwrap();
    assert!(!pi1.failed(), "{pi1:?}");
}

/// With `--on pi2`, no other connected host names pi3's node: the leader's entry tells,
/// by host name, and by address when pi2 lies about its host name too.
#[tokio::test]
async fn a_pi_that_claims_a_node_of_another_host_labels_nothing() {
    for (hostname, why) in [
        (
            "pi2",
            format!(
                "pi2 (host name pi2) reports swarm node n3, which the leader lists as host name pi3 at 198.18.0.13: {LEFT_ALONE}"
            ),
        ),
        (
            "pi3",
            format!(
                "pi2 reports swarm node n3, which the swarm sees at 198.18.0.13, not at pi2's 198.18.0.12: {LEFT_ALONE}; if 198.18.0.13 is pi2's own address, set `advertise = \"198.18.0.13\"` for it in the inventory"
            ),
        ),
    ] {
        for m in [formed_leader(), formed_leader_api()] {
            let w = worker_claiming("pi2", hostname, "n3");
            let (reports, _) =
                bootstrap_on(&[m.clone(), w], &lab_hosts("z"), &["pi2"], vec![]).await;
            assert_eq!(changes_of(&m), Vec::<String>::new());
            let pi2 = reports.iter().find(|r| r.id.name == "pi2").unwrap();
            assert_eq!(pi2.failed_step.as_deref(), Some("label pi2 zone=z"));
            assert_eq!(pi2.error.as_deref(), Some(why.as_str()));
        }
    }
}

/// The same check lets an honest node be labelled, and says nothing.
#[tokio::test]
async fn a_pi_whose_node_the_leader_confirms_is_labelled() {
    let m = formed_leader();
    let w = worker_claiming("pi2", "pi2", "n2");
    let (reports, _) =
        bootstrap_on(&[m.clone(), w], &lab_hosts("z"), &["pi1", "pi2"], vec![]).await;
    assert_eq!(
        node_changes(&m),
        vec!["docker node update --label-add zone=z n2"]
    );
    let pi1 = reports.iter().find(|r| r.id.name == "pi1").unwrap();
    assert_eq!(pi1.changed, vec!["label pi2 zone=z"]);
    assert!(!reports.iter().any(Row::failed), "{reports:?}");

    // Through the Engine API: the node read once, its update sent at its version with
    // the label added to those it had, reported as the same step; no docker call.
    let m = formed_leader_api();
    let w = worker_claiming("pi2", "pi2", "n2");
    let (reports, _) =
        bootstrap_on(&[m.clone(), w], &lab_hosts("z"), &["pi1", "pi2"], vec![]).await;
    assert_eq!(
        changes_of(&m),
        vec![r#"POST /v1.41/nodes/n2/update?version=7 {"zone":"z"}"#]
    );
    assert_eq!(m.api_calls("GET /v1.41/nodes").len(), 1);
    let pi1 = reports.iter().find(|r| r.id.name == "pi1").unwrap();
    assert_eq!(pi1.changed, vec!["label pi2 zone=z"]);
    assert!(!reports.iter().any(Row::failed), "{reports:?}");
    // The probe, and the relay that carried everything else.
    assert_eq!(m.commands().len(), 2, "{:?}", m.commands());
    assert_eq!(m.commands()[1], "docker system dial-stdio");
}

/// A node that has just joined is listed by the leader before it reported its host name
/// and address (seen in CI): its claim is judged once the entry is filled in, not refused
/// for a host name of "".
#[tokio::test]
async fn a_node_listed_before_it_reported_itself_is_read_again() {
    let unreported = node_json("n2", "", "worker", "b", "");
    // The docker CLI: node inspect answers the empty entry first.
    let m = formed_leader();
    let front = FakeRemote::new("pi1");
    front.on_seq(
        "node inspect --format '{{json .}}' n2",
        vec![
            ok(&format!("{unreported}\n")),
            ok(&format!(
                "{}\n",
                node_json("n2", "pi2", "worker", "b", "198.18.0.12")
            )),
        ],
    );
    m.prepend(&front);
    let w = worker_claiming("pi2", "pi2", "n2");
    let (reports, _) =
        bootstrap_on(&[m.clone(), w], &lab_hosts("z"), &["pi1", "pi2"], vec![]).await;
    assert!(!reports.iter().any(Row::failed), "{reports:?}");
    assert_eq!(
        node_changes(&m),
        vec!["docker node update --label-add zone=z n2"]
    );
    assert_eq!(m.count("node inspect --format '{{json .}}' n2"), 2);

    // The Engine API: the node list read again.
    let m = formed_leader_api();
    let listed = [
        node_json("n1", "pi1", "manager", "a", "198.18.0.11"),
        unreported.clone(),
        node_json("n3", "pi3", "worker", "c", "198.18.0.13"),
    ]
    .map(|n| n.replacen('{', r#"{"Version":{"Index":7},"#, 1));
    m.on_api_once("GET /v1.41/nodes", 200, &format!("[{}]", listed.join(",")));
    let w = worker_claiming("pi2", "pi2", "n2");
    let (reports, _) =
        bootstrap_on(&[m.clone(), w], &lab_hosts("z"), &["pi1", "pi2"], vec![]).await;
    assert!(!reports.iter().any(Row::failed), "{reports:?}");
    assert_eq!(
        changes_of(&m),
        vec![r#"POST /v1.41/nodes/n2/update?version=7 {"zone":"z"}"#]
    );
    assert_eq!(m.api_calls("GET /v1.41/nodes").len(), 2);
}

/// A change the leader's Docker refuses fails that step on the leader's row, named;
/// the other changes, sent with it, are still reported as made.
#[tokio::test]
async fn a_refused_change_is_named_and_the_others_still_count() {
    let m = formed_leader_api();
    // The leader's probe lists the three nodes without labels: each gets one.
    let bare = |id: &str, h: &str, role: &str, addr: &str| {
        node_json(id, h, role, "-", addr).replace(r#"{"zone":"-"}"#, "{}")
    };
    m.first(
        "@@begin",
        ok(&format!(
            "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n@@begin nodes\n{}\n{}\n{}\n@@end nodes\n",
            r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
            bare("n1", "pi1", "manager", "198.18.0.11"),
            bare("n2", "pi2", "worker", "198.18.0.12"),
            bare("n3", "pi3", "worker", "198.18.0.13"),
        )),
    );
    let bad = r#"{"message":"update out of sequence"}"#;
    m.on_api_first("POST /v1.41/nodes/n2/update", 500, bad);
    let w2 = worker_claiming("pi2", "pi2", "n2");
    let w3 = worker_claiming("pi3", "pi3", "n3");
    let (reports, _) = bootstrap(&[m.clone(), w2, w3], &lab_hosts("b")[..], vec![]).await;
    let pi1 = reports.iter().find(|r| r.id.name == "pi1").unwrap();
    assert_eq!(pi1.outcome, Outcome::Failed, "{pi1:?}");
    assert_eq!(pi1.failed_step.as_deref(), Some("label pi2 zone=b"));
    assert_eq!(pi1.error.as_deref(), Some("update out of sequence"));
    assert_eq!(pi1.changed, vec!["label pi1 zone=a", "label pi3 zone=c"]);
    assert_eq!(m.api_calls("/update").len(), 3);
}

/// `--dry-run`: the same probe, preflight and plan as the run, shown per host; only the
/// probe is sent (the port test is skipped here, as in the other tests); what the run
/// then does is what the preview said.
#[tokio::test]
async fn the_preview_lists_the_steps_the_run_then_takes_and_sends_only_the_probe() {
    let (fakes, hosts) = fleet();
    let opts = options_on(&hosts, &["pi1", "pi2"]);
    let failed = vec![("pi9".to_string(), "no answer".to_string())];
    let (p, facts) = preview(&opts, sessions_of(&fakes), failed).await;
    assert_eq!(facts.len(), 2);
    let steps: Vec<(&str, Vec<&str>)> = p
        .rows
        .iter()
        .map(|r| (r.row.as_str(), r.steps.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (
                "pi2",
                vec![
                    "install docker (docker.io package)",
                    "start docker",
                    "join swarm as worker"
                ]
            ),
            (
                "pi1",
                vec![
                    "swarm init (advertise 198.18.0.11)",
                    "rotate the worker join token"
                ]
            ),
        ]
    );
    assert_eq!(p.problems, vec!["pi9: connect: no answer"]);
    for f in &fakes {
        let cmds = f.commands();
        assert_eq!(cmds.len(), 1, "{}: {cmds:?}", f.name);
        assert!(cmds[0].contains("@@begin"), "{cmds:?}");
    }
    // The run on the same facts does exactly those steps.
    let (fakes, hosts) = fleet();
    let (reports, _) = bootstrap(&fakes, &hosts, vec![]).await;
    let done: Vec<(String, Vec<String>)> = reports
        .iter()
        .map(|r| (r.label(), r.changed.clone()))
        .collect();
    for (row, planned) in steps {
        let did = &done.iter().find(|(l, _)| l == row).unwrap().1;
        assert_eq!(did, &planned, "{row}");
    }
}

/// Issue 12, section 4: the manager and the workers that have Docker do not wait for the
/// slowest Docker install: the swarm is initialised and pi2 joins while pi3 installs;
/// pi3 joins once its install is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_with_docker_join_while_a_fresh_pi_installs_it() {
    let (fakes, mut hosts) = fleet();
    // pi2 has Docker; pi3 is the fresh Pi, and its apt takes a while.
    let pi2 = FakeRemote::new("pi2");
    pi2.on("@@begin", ok(&probe_of("pi2", "198.18.0.12", true)));
    joins_as(&pi2, "n2");
    let pi3 = FakeRemote::new("pi3");
    pi3.on("@@begin", ok(&probe_of("pi3", "198.18.0.13", false)))
        .on_fn("apt-get install", |_| {
            std::thread::sleep(Duration::from_millis(400));
            ok("Setting up docker.io\n")
        })
        .on("docker info >/dev/null", ok(""));
    joins_as(&pi3, "n3");
    hosts.push(host("pi3", Role::Worker));
    let (reports, events) = bootstrap(&[fakes[0].clone(), pi2, pi3], &hosts, vec![]).await;
    assert!(
        reports.iter().all(|r| r.outcome == Outcome::Changed),
        "{reports:#?}"
    );
    let at = |e: &str| {
        events
            .iter()
            .position(|x| x.starts_with(e))
            .unwrap_or_else(|| panic!("no {e}: {events:#?}"))
    };
    let installed = at("pi3: Step(\"start docker\")");
    assert!(at("pi1: Step(\"swarm init") < installed, "{events:#?}");
    assert!(
        at("pi2: Step(\"join swarm as worker") < installed,
        "{events:#?}"
    );
    assert!(installed < at("pi3: Step(\"join swarm as worker"));
}

/// Issue 13: a node the managers list down while it answers (it believes it is in the
/// swarm) is given the grace period, then leaves, its stale entry goes, and it joins
/// again, without --force; the row says why.
#[tokio::test]
async fn a_half_joined_node_leaves_loses_its_stale_entry_and_joins_again() {
    let m = FakeRemote::new("pi1");
    m.on(
        "@@begin",
        ok(&format!(
            "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n@@begin nodes\n{}\n{}\n@@end nodes\n",
            r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
            r#"{"ID":"n1","Spec":{"Role":"manager"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"198.18.0.11"}}"#,
            r#"{"ID":"n3","Spec":{"Role":"worker"},"Description":{"Hostname":"pi3"},"Status":{"State":"down","Addr":"198.18.0.13"}}"#,
        )),
    )
    .on("join-token -q worker", ok(&format!("{TOKEN}\n")))
    .on("{{.Status.State}} {{.Spec.Availability}}", ok("down active\n"))
    .on(
        "{{.Status.Addr}}",
        ok("n1 pi1 ready 198.18.0.11\nnew3 pi3 ready 198.18.0.13\n"),
    )
    .on("docker node", ok(""));
    let w3 = FakeRemote::new("pi3");
    w3.on(
        "@@begin",
        ok(&format!(
            "hostname=pi3\nreach_addr=198.18.0.13\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n",
            r#"{"NodeID":"n3","NodeAddr":"198.18.0.13","LocalNodeState":"active","ControlAvailable":false,"RemoteManagers":[{"NodeID":"n1","Addr":"198.18.0.11:2377"}]}"#
        )),
    )
    .on("swarm leave", ok("Node left the swarm.\n"))
    .on(
        "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
        ok("active n3\n"),
    );
    joins_as(&w3, "new3");
    let hosts = vec![at_lab("pi1", Role::Manager), at_lab("pi3", Role::Worker)];
    let (reports, events) = bootstrap(&[m.clone(), w3.clone()], &hosts, vec![]).await;
    let pi3 = reports.iter().find(|r| r.id.name == "pi3").unwrap();
    assert_eq!(pi3.outcome, Outcome::Changed, "{pi3:?}");
    assert_eq!(
        pi3.changed,
        vec!["rejoin swarm as worker (it was half-joined)"]
    );
    // It leaves, then joins (through its Engine API, the stream opened after).
    let on_pi3 = w3.commands();
    let left = on_pi3
        .iter()
        .position(|c| c.contains("docker swarm leave --force"))
        .expect("it leaves");
    let joined = on_pi3
        .iter()
        .position(|c| c.contains("dial-stdio"))
        .expect("it joins");
    assert!(left < joined, "{on_pi3:?}");
    assert_eq!(w3.api_calls("POST /swarm/join").len(), 1);
    let removals: Vec<String> = m
        .commands()
        .into_iter()
        .filter(|c| c.contains("node rm") || c.contains("node demote"))
        .collect();
    assert_eq!(
        removals,
        vec!["docker node demote n3", "docker node rm --force n3"]
    );
    assert!(
        events.iter().any(|e| e.contains(
            "half-joined: the managers list it down under its node id n3 while it answers"
        )),
        "{events:?}"
    );
}

/// Issue 18: pi3 says its join is pending as node n2, the node of the manager pi2 (down
/// for this run). Acting on its word would demote and remove pi2's node: nothing is
/// sent to remove or demote any node, on the CLI or the Engine API, and pi3's row says
/// why.
#[tokio::test]
async fn a_half_joined_pi_naming_another_managers_node_removes_nothing() {
    for api in [false, true] {
        let m = if api {
            formed_leader_api()
        } else {
            formed_leader()
        };
        let w3 = FakeRemote::new("pi3");
        w3.on(
            "@@begin",
            ok(&format!(
                "hostname=pi3\nreach_addr=198.18.0.12\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n",
                r#"{"NodeID":"n2","NodeAddr":"198.18.0.12","LocalNodeState":"pending","RemoteManagers":[{"NodeID":"n1","Addr":"198.18.0.11:2377"}]}"#
            )),
        )
        .on("swarm leave", ok("Node left the swarm.\n"))
        .on(
            "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
            ok("pending n2\n"),
        )
        .on("docker node", ok(""));
        joins_as(&w3, "new3");
        let mut hosts = lab_hosts("b");
        hosts[1].role = Role::Manager;
        let unreachable = vec![("pi2".to_string(), "no answer".to_string())];
        let (reports, _) = bootstrap_on(
            &[m.clone(), w3.clone()],
            &hosts,
            &["pi1", "pi3"],
            unreachable,
        )
        .await;
        let removals: Vec<String> = m
            .commands()
            .into_iter()
            .filter(|c| c.contains("node rm") || c.contains("node demote"))
            .chain(m.api_calls("DELETE ").into_iter().map(|c| c.line))
            .chain(m.api_calls("/update").into_iter().map(|c| c.line))
            .collect();
        assert_eq!(removals, Vec::<String>::new(), "api: {api}");
        assert!(
            !w3.commands().iter().any(|c| c.contains("swarm leave")),
            "{:?}",
            w3.commands()
        );
        let pi3 = reports.iter().find(|r| r.id.name == "pi3").unwrap();
        assert_eq!(pi3.outcome, Outcome::Failed, "{pi3:?}");
        assert_eq!(
            pi3.error.as_deref(),
            Some(
                "half-joined (its join did not complete (its swarm state is pending); it is still trying in the background), and its repair is refused: pi3 (host name pi3) reports swarm node n2, which the leader lists as host name pi2 at 198.18.0.12: no node is removed (a Pi that reports another node's ID is misconfigured, cloned from another's SD card, or compromised)"
            )
        );
    }
}

/// Issue 18: pi3 reports the host name of pi2 (down, not answering): pi2's entry is not
/// removed as a stale entry of pi3's, and pi3's row says why.
#[tokio::test]
async fn a_pi_reporting_a_down_nodes_host_name_has_it_pruned_never() {
    for api in [false, true] {
        let m = if api {
            formed_leader_api()
        } else {
            formed_leader()
        };
        let down2 = node_json("n2", "pi2", "worker", "b", "198.18.0.12")
            .replace(r#""State":"ready""#, r#""State":"down""#);
        let listed = [node_json("n1", "pi1", "manager", "a", "198.18.0.11"), down2];
        m.first(
            "@@begin",
            ok(&format!(
                "hostname=pi1\nreach_addr=198.18.0.11\ndocker_installed=yes\ndocker_running=yes\n@@begin info\n{{\"Swarm\":{}}}\n@@end info\n@@begin nodes\n{}\n@@end nodes\n",
                r#"{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}"#,
                listed.join("\n")
            )),
        )
        .first(
            "{{.Status.Addr}}",
            ok("n1 pi1 ready 198.18.0.11\nn2 pi2 down 198.18.0.12\nn3 pi2 ready 198.18.0.13\n"),
        );
        if api {
            let versioned = listed.map(|n| n.replacen('{', r#"{"Version":{"Index":7},"#, 1));
            m.on_api_first("GET /v1.41/nodes", 200, &format!("[{}]", versioned.join(",")))
                .on_api(
                    "GET /v1.41/swarm",
                    200,
                    &format!(r#"{{"Version":{{"Index":17}},"Spec":{{}},"JoinTokens":{{"Worker":"{TOKEN}","Manager":"m"}}}}"#),
                )
                .on_api("POST /v1.41/swarm/update", 200, "");
        }
        // pi3 left the swarm and joins again, under pi2's name.
        let w3 = FakeRemote::new("pi3");
        w3.on("@@begin", ok(&probe_of("pi2", "198.18.0.13", true)));
        joins_as(&w3, "n3");
        m.on("join-token", ok(&format!("{TOKEN}\n")));
        let (reports, events) = bootstrap_on(
            &[m.clone(), w3.clone()],
            &lab_hosts("b"),
            &["pi1", "pi3"],
            vec![("pi2".to_string(), "no answer".to_string())],
        )
        .await;
        let removals: Vec<String> = m
            .commands()
            .into_iter()
            .filter(|c| c.contains("node rm"))
            .chain(m.api_calls("DELETE ").into_iter().map(|c| c.line))
            .collect();
        assert_eq!(removals, Vec::<String>::new(), "api: {api}: {reports:?}");
        assert!(
            events.iter().any(|e| e.starts_with("pi3: Note(\"pi3 reports host name pi2, under which the leader lists node n2, which the swarm sees at 198.18.0.12, not at pi3's 198.18.0.13: no node is removed")),
            "api: {api}: {events:#?}"
        );
    }
}
