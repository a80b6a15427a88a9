//! Status tests: from given answers, the exact status and the exact table.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::config::{Playbook, Role};
use crate::docker::network::NetworkInfo;
use crate::docker::node::SwarmNode;
use crate::docker::probe::DockerProblem;
use crate::docker::stack::StackState;
use crate::docker::swarm::{ClusterInfo, SwarmInfo};
use crate::testing::{host, network, stack};

fn inventory() -> Vec<crate::config::Host> {
    let mut pi1 = host("pi1", Role::Manager);
    pi1.labels.insert("zone".into(), "a".into());
    let mut hosts = vec![pi1, host("pi2", Role::Worker), host("pi3", Role::Worker)];
    for (i, h) in hosts.iter_mut().enumerate() {
        h.address = format!("198.18.0.{}", 11 + i);
    }
    hosts
}

fn playbook() -> Playbook {
    Playbook {
        path: "playbook.toml".into(),
        containment: Default::default(),
        networks: vec![network("DATA")],
        stacks: vec![
            stack("web", 0, &["web"], &[]),
            stack("api", 1, &["api"], &[]),
        ],
        images: vec![],
        variables: vec![],
    }
}

fn swarm_node(id: &str, hostname: &str, role: &str, manager: &str) -> SwarmNode {
    SwarmNode {
        id: id.into(),
        hostname: hostname.into(),
        role: role.into(),
        state: "ready".into(),
        addr: String::new(),
        availability: "active".into(),
        manager: manager.into(),
        engine_version: "20.10.24+dfsg1".into(),
        architecture: "aarch64".into(),
        ..Default::default()
    }
}

fn facts(hostname: &str, node_id: &str) -> Facts {
    Facts {
        hostname: hostname.into(),
        arch: "arm64".into(),
        docker_installed: true,
        docker_running: true,
        docker_version: Some("20.10.24+dfsg1".into()),
        swarm: SwarmInfo {
            node_id: node_id.into(),
            local_node_state: "active".into(),
            control_available: node_id == "n1",
            cluster: ClusterInfo { id: "c1".into() },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One service's poll as a manager's Engine API answers it: its counts, and its tasks as
/// `(id, slot, node, desired state, state, error)`, each of its current spec.
fn poll(
    service: &str,
    mode: &str,
    (running, desired): (u64, u64),
    tasks: &[(&str, u64, &str, &str, &str, &str)],
) -> crate::docker::service::Poll {
    let stack = service.split('_').next().unwrap();
    let spec_mode = if mode == "global" {
        serde_json::json!({"Global": {}})
    } else {
        serde_json::json!({"Replicated": {"Replicas": 2}})
    };
    let services = serde_json::json!([{
        "ID": "s", "Spec": {"Name": service, "Labels": {"com.docker.stack.namespace": stack},
            "Mode": spec_mode, "TaskTemplate": {}},
        "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired},
    }]);
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|(id, slot, node, desired, state, err)| {
            serde_json::json!({"ID": id, "ServiceID": "s", "Slot": slot, "NodeID": format!("id-{node}"),
                "Spec": {}, "Status": {"State": state, "Err": err}, "DesiredState": desired})
        })
        .collect();
    let nodes: Vec<SwarmNode> = ["pi1", "pi2", "pi3"]
        .iter()
        .map(|h| SwarmNode {
            id: format!("id-{h}"),
            hostname: h.to_string(),
            ..Default::default()
        })
        .collect();
    crate::docker::api::parse_stack_polls(
        services.to_string().as_bytes(),
        serde_json::to_string(&tasks).unwrap().as_bytes(),
        &nodes,
    )
    .unwrap()
    .remove(stack)
    .unwrap()
}

/// The lab's fleet, converged: every node ready, both stacks deployed from the current
/// files, the playbook's network as it should be.
fn converged() -> HashMap<String, Result<Answer, String>> {
    let mut manager = facts("pi1", "n1");
    let mut n1 = swarm_node("n1", "pi1", "manager", "leader");
    n1.labels.insert("zone".into(), "a".into());
    manager.nodes = vec![
        n1,
        swarm_node("n2", "pi2", "worker", ""),
        swarm_node("n3", "pi3", "worker", ""),
    ];
    manager.networks = vec![NetworkInfo {
        name: "DATA".into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        attachable: true,
        internal: false,
        subnets: vec![],
        encrypted: false,
        stack: String::new(),
    }];
    let overview = Overview {
        state: StackState {
            existing: ["web".to_string(), "api".to_string()].into(),
            recorded: [
                ("web".to_string(), "fp-web".to_string()),
                ("api".to_string(), "fp-api".to_string()),
            ]
            .into(),
        },
        networks: vec![
            ("ingress".into(), String::new()),
            ("DATA".into(), String::new()),
            ("web_default".into(), "web".into()),
        ],
        polls: [
            (
                "web".to_string(),
                Ok(poll(
                    "web_web",
                    "global",
                    (3, 3),
                    &[("s1", 0, "pi1", "running", "running", "")],
                )),
            ),
            (
                "api".to_string(),
                Ok(poll(
                    "api_api",
                    "replicated",
                    (2, 2),
                    &[
                        ("s2", 1, "pi2", "running", "running", ""),
                        (
                            "s3",
                            1,
                            "pi2",
                            "shutdown",
                            "failed",
                            "task: non-zero exit (1)",
                        ),
                        ("s4", 2, "pi3", "running", "running", ""),
                    ],
                )),
            ),
        ]
        .into(),
    };
    [
        (
            "pi1".to_string(),
            Ok(Answer {
                facts: manager,
                overview: Some(overview),
            }),
        ),
        (
            "pi2".to_string(),
            Ok(Answer {
                facts: facts("pi2", "n2"),
                overview: None,
            }),
        ),
        (
            "pi3".to_string(),
            Ok(Answer {
                facts: facts("pi3", "n3"),
                overview: None,
            }),
        ),
    ]
    .into()
}

fn local() -> BTreeMap<String, Result<String, String>> {
    [
        ("web".to_string(), Ok("fp-web".to_string())),
        ("api".to_string(), Ok("fp-api".to_string())),
    ]
    .into()
}

fn status_of(answers: &HashMap<String, Result<Answer, String>>) -> Status {
    let hosts = inventory();
    let pb = playbook();
    assess(&Input {
        hosts: &hosts,
        playbook: Some(&pb),
        local: &local(),
        answers,
    })
}

fn overview_of(answers: &mut HashMap<String, Result<Answer, String>>) -> &mut Overview {
    answers
        .get_mut("pi1")
        .unwrap()
        .as_mut()
        .unwrap()
        .overview
        .as_mut()
        .unwrap()
}

#[test]
fn a_converged_fleet_is_ok_and_every_field_is_shown() {
    let s = status_of(&converged());
    assert!(s.ok, "{:#?}", s.problems);
    assert_eq!(
        s.nodes[0],
        NodeStatus {
            host: "pi1".into(),
            address: "198.18.0.11".into(),
            reachable: true,
            state: "ready".into(),
            why: None,
            docker: Some("20.10.24+dfsg1".into()),
            arch: Some("arm64".into()),
            role: Some("manager".into()),
            availability: Some("active".into()),
            manager: Some("leader".into()),
            labels: [("zone".to_string(), "a".to_string())].into(),
        }
    );
    assert_eq!(
        s.swarm,
        SwarmStatus {
            seen_from: Some("pi1".into()),
            cluster: Some("c1".into()),
            managers: 1,
            managers_reachable: 1,
            quorum: Some(true),
        }
    );
    assert_eq!(s.drift, Drift::default());
    assert_eq!(
        s.stacks[1].services,
        vec![ServiceStatus {
            name: "api_api".into(),
            mode: "replicated".into(),
            replicas: "2/2".into(),
            converged: true,
            error: None,
            last_task_error: Some("task: non-zero exit (1)".into()),
        }]
    );
    assert_eq!(
        crate::ui::status::render(&s),
        "NODE  ADDRESS      STATE  DOCKER          ARCH   ROLE     AVAIL   MANAGER  LABELS\n\
         pi1   198.18.0.11  ready  20.10.24+dfsg1  arm64  manager  active  leader   zone=a\n\
         pi2   198.18.0.12  ready  20.10.24+dfsg1  arm64  worker   active  -        -\n\
         pi3   198.18.0.13  ready  20.10.24+dfsg1  arm64  worker   active  -        -\n\
         swarm c1: 1 manager(s), 1 reachable: quorum holds (seen from pi1)\n\
         \n\
         STACK  FILES    SERVICE  MODE        REPLICAS  NOTE\n\
         web    current  web_web  global      3/3\n\
         api    current  api_api  replicated  2/2       last task error: task: non-zero exit (1)\n\
         status: everything matches the playbook (3 nodes, 2 stacks)\n"
    );
}

#[test]
fn a_worker_whose_docker_is_stopped_or_that_cannot_be_reached_is_down() {
    let mut answers = converged();
    if let Ok(a) = answers.get_mut("pi2").unwrap() {
        a.facts.docker_running = false;
        a.facts.docker_version = None;
        a.facts.docker_problem = Some(DockerProblem::NotAnswering(
            "pi2: Docker Engine API over `docker system dial-stdio`: the channel closed (Cannot connect to the Docker daemon)".into(),
        ));
    }
    answers.insert(
        "pi3".into(),
        Err("pi3: no answer from 198.18.0.13 within 10s".into()),
    );
    let s = status_of(&answers);
    assert!(!s.ok);
    assert_eq!(
        (s.nodes[1].state.as_str(), s.nodes[1].why.as_deref()),
        ("down", Some("dockerd is not running"))
    );
    // What the swarm knows of a host that did not answer is still shown: its Docker's
    // version as it last told the managers, too.
    assert_eq!(s.nodes[2].state, "unreachable");
    assert!(!s.nodes[2].reachable);
    assert_eq!(s.nodes[2].arch.as_deref(), Some("aarch64"));
    assert_eq!(s.nodes[1].docker.as_deref(), Some("20.10.24+dfsg1"));
    assert_eq!(s.nodes[2].docker.as_deref(), Some("20.10.24+dfsg1"));
    // Outside the swarm, a Docker that does not answer shows its package's version.
    if let Ok(a) = answers.get_mut("pi2").unwrap() {
        a.facts.docker_package = Some("26.1.5+dfsg1".into());
    }
    answers.remove("pi1");
    let s2 = status_of(&answers);
    assert_eq!(
        (s2.nodes[1].state.as_str(), s2.nodes[1].docker.as_deref()),
        ("down", Some("26.1.5+dfsg1"))
    );
    assert_eq!(
        s.problems,
        vec![
            "pi2: down: dockerd is not running",
            "pi3: unreachable: pi3: no answer from 198.18.0.13 within 10s",
        ]
    );
}

#[test]
fn an_edited_stack_file_shows_that_stack_changed() {
    let mut l = local();
    l.insert("api".into(), Ok("fp-api-edited".into()));
    let hosts = inventory();
    let pb = playbook();
    let s = assess(&Input {
        hosts: &hosts,
        playbook: Some(&pb),
        local: &l,
        answers: &converged(),
    });
    let files: Vec<(&str, &str)> = s
        .stacks
        .iter()
        .map(|s| (s.stack.as_str(), s.files.as_str()))
        .collect();
    assert_eq!(files, [("web", "current"), ("api", "changed")]);
    assert_eq!(
        s.problems,
        vec!["stack api: its files changed since its last deploy (rpiprov deploy redeploys it)"]
    );
}

#[test]
fn drift_names_what_the_configuration_does_not() {
    let mut answers = converged();
    let ov = overview_of(&mut answers);
    ov.state.existing.insert("old".into());
    ov.state.existing.remove("api");
    ov.networks.push(("LEGACY".into(), String::new()));
    ov.networks.push(("old_default".into(), "old".into()));
    if let Ok(a) = answers.get_mut("pi1").unwrap() {
        a.facts.networks.clear();
        a.facts.nodes.push(swarm_node("n9", "stray", "worker", ""));
        a.facts.nodes[1].labels.insert("x".into(), "y".into());
    }
    let s = status_of(&answers);
    assert_eq!(
        s.drift,
        Drift {
            networks_missing: vec!["DATA".into()],
            networks_different: vec![],
            stacks_unknown: vec!["old".into()],
            networks_unknown: vec!["LEGACY".into()],
            nodes_unknown: vec!["stray".into()],
        }
    );
    assert_eq!(
        s.problems,
        vec![
            "node stray is in the swarm but not in the inventory",
            "network DATA: missing (rpiprov bootstrap or deploy creates it)",
            "network LEGACY is in the swarm but not in the playbook",
            "stack old is in the swarm but not in the playbook",
            "stack api: not deployed (rpiprov deploy deploys it)",
        ]
    );
}

#[test]
fn quorum_is_lost_when_half_the_managers_are_unreachable_and_even_counts_warn() {
    let mut answers = converged();
    if let Ok(a) = answers.get_mut("pi1").unwrap() {
        a.facts.nodes[1] = swarm_node("n2", "pi2", "manager", "unreachable");
    }
    let mut hosts = inventory();
    hosts[1].role = Role::Manager;
    let pb = playbook();
    let s = assess(&Input {
        hosts: &hosts,
        playbook: Some(&pb),
        local: &local(),
        answers: &answers,
    });
    assert_eq!(s.swarm.quorum, Some(false));
    assert_eq!((s.swarm.managers, s.swarm.managers_reachable), (2, 1));
    assert!(s.problems.contains(
        &"swarm: quorum lost: 1 of 2 managers reachable; the swarm cannot be changed until more than half are back".to_string()
    ));
    assert_eq!(
        s.warnings,
        vec![
            "swarm: 2 managers, an even number: they tolerate no more failures than 1; use an odd number"
        ]
    );
    assert!(crate::ui::status::render(&s).contains("QUORUM LOST"));
}

#[test]
fn a_fleet_without_a_swarm_says_so() {
    let mut answers = converged();
    for a in answers.values_mut() {
        let a = a.as_mut().unwrap();
        a.overview = None;
        a.facts.swarm = SwarmInfo::default();
        a.facts.nodes.clear();
    }
    let s = status_of(&answers);
    assert_eq!(
        s.problems,
        vec!["swarm: there is no swarm (rpiprov bootstrap forms it)"]
    );
    assert_eq!(s.nodes[0].state, "no swarm");
    assert!(s.stacks.is_empty());
}

#[test]
fn a_service_that_does_not_converge_shows_swarm_s_reason() {
    let mut answers = converged();
    overview_of(&mut answers).polls.insert(
        "api".into(),
        Ok(poll(
            "api_api",
            "replicated",
            (0, 2),
            &[(
                "s5",
                1,
                "pi2",
                "running",
                "rejected",
                "No such image: lab/api:1",
            )],
        )),
    );
    let s = status_of(&answers);
    assert_eq!(
        s.stacks[1].services[0].error.as_deref(),
        Some("No such image: lab/api:1 (on pi2)")
    );
    assert_eq!(
        s.problems,
        vec!["stack api: service api_api 0/2: No such image: lab/api:1 (on pi2)"]
    );
}

/// Issue 17: a mixed swarm shows each node's own Docker (its daemon's word where it
/// answered, the swarm's otherwise), one that rpiprov cannot speak to as such with both
/// ranges, and a global service missing on a node down in the swarm as deploy judges it.
#[test]
fn every_node_shows_its_docker_and_a_global_service_misses_a_down_node() {
    let mut answers = converged();
    if let Ok(a) = answers.get_mut("pi1").unwrap() {
        a.facts.docker_version = Some("28.5.2+dfsg1".into());
        a.facts.nodes[2].state = "down".into();
        a.facts.nodes[2].engine_version = "26.1.5+dfsg1".into();
    }
    let unsupported = "Docker 19.03.15 speaks Engine API 1.12 to 1.40, rpiprov 1.41 to 1.55: no version in common; upgrade Docker there (rpiprov needs Docker 20.10 or later)";
    if let Ok(a) = answers.get_mut("pi2").unwrap() {
        a.facts.docker_running = true;
        a.facts.docker_version = Some("19.03.15".into());
        a.facts.docker_problem = Some(DockerProblem::Unsupported(unsupported.into()));
    }
    answers.insert("pi3".into(), Err("pi3: no answer within 10s".into()));
    let s = status_of(&answers);
    let docker: Vec<(&str, Option<&str>)> = s
        .nodes
        .iter()
        .map(|n| (n.state.as_str(), n.docker.as_deref()))
        .collect();
    assert_eq!(
        docker,
        [
            ("ready", Some("28.5.2+dfsg1")),
            ("unsupported", Some("19.03.15")),
            ("unreachable", Some("26.1.5+dfsg1")),
        ]
    );
    assert_eq!(
        s.problems,
        vec![
            format!("pi2: unsupported: {unsupported}"),
            "pi3: unreachable: pi3: no answer within 10s".into(),
            "stack web: service web_web 3/3: not running on pi3: the node is down in the swarm"
                .into(),
        ]
    );
}

#[test]
fn remote_text_is_made_safe_for_the_terminal() {
    let mut answers = converged();
    if let Ok(a) = answers.get_mut("pi1").unwrap() {
        a.facts.nodes[0]
            .labels
            .insert("zone".into(), "a\u{1b}[2J".into());
    }
    let s = status_of(&answers);
    let text = crate::ui::status::render(&s);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("zone=a\\x1b[2J"), "{text}");
}

/// Issue 17: each host costs one `docker` process, the relay of its Engine API, beside
/// the probe's shell command; everything else is requests on it at the version its daemon
/// speaks. A daemon that does not answer, and one too old, are said as such.
#[tokio::test]
async fn each_host_is_read_by_its_probe_and_one_relay() {
    use crate::testing::FakeRemote;
    use crate::testing::fake::FakeDaemon;
    let probe = |name: &str| {
        crate::testing::ok(&format!(
            "hostname={name}\nreach_addr=x\ndocker_installed=yes\n@@begin records\ndeployed web fp-web\ndeployed api \n@@end records\n"
        ))
    };
    let m = FakeRemote::new("pi1");
    m.on("@@begin", probe("pi1"))
        .daemon(FakeDaemon::new("28.5.2+dfsg1", (1, 24), (1, 51)))
        .on_api(
            "GET /info",
            200,
            r#"{"Swarm":{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true,"Cluster":{"ID":"c1"}}}"#,
        )
        .on_api(
            "GET /nodes",
            200,
            r#"[{"ID":"n1","Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1","Engine":{"EngineVersion":"28.5.2+dfsg1"}},"Status":{"State":"ready"},"ManagerStatus":{"Leader":true}},
                {"ID":"n2","Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2","Engine":{"EngineVersion":"20.10.24+dfsg1"}},"Status":{"State":"ready"}}]"#,
        )
        .on_api(
            "GET /networks",
            200,
            r#"[{"Name":"DATA","Scope":"swarm","Driver":"overlay","Attachable":true},{"Name":"web_default","Scope":"swarm","Driver":"overlay","Labels":{"com.docker.stack.namespace":"web"}}]"#,
        )
        .on_api(
            "GET /services",
            200,
            r#"[{"ID":"s1","Spec":{"Name":"web_web","Labels":{"com.docker.stack.namespace":"web"},"Mode":{"Global":{}}},"ServiceStatus":{"RunningTasks":1,"DesiredTasks":1}}]"#,
        )
        .on_api(
            "GET /tasks",
            200,
            r#"[{"ID":"t1","ServiceID":"s1","NodeID":"n1","Status":{"State":"running"},"DesiredState":"running"}]"#,
        );
    let down = FakeRemote::new("pi2");
    down.on("@@begin", probe("pi2"))
        .daemon_after("never started");
    let old = FakeRemote::new("pi3");
    old.on("@@begin", probe("pi3"))
        .daemon(FakeDaemon::new("19.03.15", (1, 12), (1, 40)));
    let sessions: HashMap<String, std::sync::Arc<FakeRemote>> = [&m, &down, &old]
        .iter()
        .map(|f| (f.name.clone(), std::sync::Arc::new((*f).clone())))
        .collect();
    let hosts = inventory();
    let refs: Vec<&crate::config::Host> = hosts.iter().collect();
    let answers = gather(
        &refs,
        &["DATA"],
        &["web", "api"],
        &sessions,
        vec![],
        4,
        std::time::Duration::from_secs(5),
    )
    .await;
    for f in [&m, &down, &old] {
        assert_eq!(
            f.commands()[1..],
            ["docker system dial-stdio"],
            "{}",
            f.name
        );
        assert!(
            f.commands()[0].contains("@@begin daemon_json"),
            "{}",
            f.name
        );
    }
    // Only the manager's shell half reads the records.
    assert!(m.commands()[0].contains("stacks/web/deployed"));
    assert!(!down.commands()[0].contains("deployed"));
    let calls: Vec<(String, Option<String>)> = m
        .api_log
        .lock()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.line.split('?').next().unwrap().to_string(),
                c.version.clone(),
            )
        })
        .collect();
    let at = |p: &str| (p.to_string(), Some("1.51".to_string()));
    assert_eq!(
        calls,
        [
            ("GET /version".to_string(), None),
            at("GET /info"),
            at("GET /nodes"),
            at("GET /networks"),
            at("GET /services"),
            at("GET /tasks"),
        ]
    );
    let pi1 = answers["pi1"].as_ref().unwrap();
    assert_eq!(
        pi1.facts.docker_api,
        Some(crate::docker::api::ApiVersion::new(1, 51))
    );
    let o = pi1.overview.as_ref().unwrap();
    assert_eq!(o.state.existing, ["web".to_string()].into());
    assert_eq!(
        o.state.recorded.get("web").map(String::as_str),
        Some("fp-web")
    );
    assert_eq!(o.polls["web"].as_ref().unwrap().tasks[0].node, "pi1");
    assert_eq!(
        o.networks[1],
        ("web_default".to_string(), "web".to_string())
    );
    let pi2 = &answers["pi2"].as_ref().unwrap().facts;
    assert!(!pi2.docker_running);
    assert!(
        matches!(&pi2.docker_problem, Some(DockerProblem::NotAnswering(e)) if e.contains("Cannot connect to the Docker daemon")),
        "{pi2:?}"
    );
    let pi3 = &answers["pi3"].as_ref().unwrap().facts;
    assert_eq!(pi3.docker_version.as_deref(), Some("19.03.15"));
    assert_eq!(
        pi3.docker_problem,
        Some(DockerProblem::Unsupported(
            "Docker 19.03.15 speaks Engine API 1.12 to 1.40, rpiprov 1.41 to 1.55: no version in common; upgrade Docker there (rpiprov needs Docker 20.10 or later)".into()
        ))
    );
    // What the status makes of it.
    let pb = playbook();
    let s = assess(&Input {
        hosts: &hosts,
        playbook: Some(&pb),
        local: &local(),
        answers: &answers,
    });
    let states: Vec<(&str, &str, Option<&str>)> = s
        .nodes
        .iter()
        .map(|n| (n.host.as_str(), n.state.as_str(), n.docker.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            ("pi1", "ready", Some("28.5.2+dfsg1")),
            ("pi2", "down", Some("20.10.24+dfsg1")),
            ("pi3", "unsupported", Some("19.03.15")),
        ]
    );
}
