//! Planner tests: from given facts, the exact steps.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::*;
use crate::docker::network::NetworkInfo;
use crate::docker::swarm::{ClusterInfo, RemoteManager, SwarmInfo};
use crate::testing::{host, network as net};

fn bare(hostname: &str, addr: &str) -> Facts {
    Facts {
        hostname: hostname.into(),
        reach_addr: addr.into(),
        apt: true,
        ..Default::default()
    }
}

fn docker_up(hostname: &str, addr: &str) -> Facts {
    Facts {
        docker_installed: true,
        docker_running: true,
        swarm: SwarmInfo {
            local_node_state: "inactive".into(),
            ..Default::default()
        },
        ..bare(hostname, addr)
    }
}

/// A node entry as the leader lists it; the swarm sees `piN` at `198.18.0.1N` (the
/// address [`Case::plan`] knows that host by).
fn node(id: &str, hostname: &str, role: &str, state: &str) -> SwarmNode {
    SwarmNode {
        id: id.into(),
        hostname: hostname.into(),
        role: role.into(),
        labels: BTreeMap::new(),
        state: state.into(),
        addr: lab_addr(hostname),
        ..Default::default()
    }
}

/// The lab's address of `piN`: `198.18.0.1N`.
fn lab_addr(name: &str) -> String {
    format!("198.18.0.1{}", name.trim_start_matches("pi"))
}

fn in_swarm(mut f: Facts, id: &str, cluster: &str, manager: bool) -> Facts {
    f.swarm = SwarmInfo {
        node_id: id.into(),
        node_addr: f.reach_addr.clone(),
        local_node_state: "active".into(),
        control_available: manager,
        remote_managers: vec![RemoteManager {
            node_id: "m".into(),
            addr: "198.18.0.11:2377".into(),
        }],
        cluster: ClusterInfo {
            id: if manager {
                cluster.into()
            } else {
                String::new()
            },
        },
    };
    f
}

struct Case {
    hosts: Vec<Host>,
    facts: HashMap<String, Facts>,
    networks: Vec<Network>,
    force: bool,
}

impl Case {
    fn new(hosts: Vec<Host>) -> Case {
        Case {
            hosts,
            facts: HashMap::new(),
            networks: vec![],
            force: false,
        }
    }
    fn facts(mut self, host: &str, f: Facts) -> Case {
        self.facts.insert(host.into(), f);
        self
    }
    fn plan(&self) -> Plan {
        let hosts: Vec<&Host> = self.hosts.iter().collect();
        let managers: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|h| h.role == Role::Manager)
            .collect();
        // Each host is known by its lab address, whatever it says.
        let addresses = self
            .hosts
            .iter()
            .map(|h| (h.name.clone(), vec![lab_addr(&h.name)]))
            .collect();
        plan(&Input {
            hosts: &hosts,
            managers: &managers,
            facts: &self.facts,
            addresses: &addresses,
            networks: &self.networks,
            default_addr_pool: Some("198.19.0.0/16"),
            force: self.force,
        })
    }
}

fn lab_fleet() -> Vec<Host> {
    let mut pi1 = host("pi1", Role::Manager);
    pi1.labels.insert("zone".into(), "a".into());
    vec![pi1, host("pi2", Role::Worker), host("pi3", Role::Worker)]
}

/// The lab's first bootstrap: two nodes with Docker, one bare.
#[test]
fn fresh_fleet_installs_inits_joins_labels_and_creates_networks() {
    let mut case = Case::new(lab_fleet())
        .facts("pi1", docker_up("pi1", "198.18.0.11"))
        .facts("pi2", docker_up("pi2", "198.18.0.12"))
        .facts("pi3", bare("pi3", "198.18.0.13"));
    case.networks = vec![net("DATA")];
    let p = case.plan();
    assert_eq!(p.leader.as_deref(), Some("pi1"));
    type PhaseSummary = (&'static str, bool, Vec<(String, Vec<Step>)>);
    let summary: Vec<PhaseSummary> = p
        .phases
        .iter()
        .map(|ph| {
            (
                ph.name,
                ph.parallel,
                ph.work
                    .iter()
                    .map(|w| (w.host.clone(), w.steps.clone()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "docker",
                true,
                vec![(
                    "pi3".to_string(),
                    vec![
                        Step::InstallDocker(InstallMethod::Distro),
                        Step::StartDocker
                    ]
                )]
            ),
            (
                "swarm init",
                false,
                vec![(
                    "pi1".to_string(),
                    vec![Step::InitSwarm {
                        advertise: "198.18.0.11".into(),
                        default_addr_pool: Some("198.19.0.0/16".into())
                    }]
                )]
            ),
            (
                "worker joins",
                true,
                vec![
                    (
                        "pi2".to_string(),
                        vec![Step::JoinSwarm {
                            role: Role::Worker,
                            advertise: "198.18.0.12".into()
                        }]
                    ),
                    (
                        "pi3".to_string(),
                        vec![Step::JoinSwarm {
                            role: Role::Worker,
                            advertise: "198.18.0.13".into()
                        }]
                    ),
                ]
            ),
            (
                "swarm settings",
                false,
                vec![(
                    "pi1".to_string(),
                    vec![
                        Step::SetLabels {
                            host: "pi1".into(),
                            labels: vec![("zone".into(), "a".into())]
                        },
                        Step::CreateNetwork(net("DATA")),
                        // The token that went to the workers, last.
                        Step::RotateJoinTokens {
                            worker: true,
                            manager: false
                        },
                    ]
                )]
            ),
        ]
    );
    // Joins wait for the leader.
    assert_eq!(p.phases[2].work[0].depends_on, vec!["pi1".to_string()]);
}

fn formed() -> Case {
    let mut m = in_swarm(docker_up("pi1", "198.18.0.11"), "m", "c1", true);
    let mut n1 = node("m", "pi1", "manager", "ready");
    n1.labels.insert("zone".into(), "a".into());
    m.nodes = vec![
        n1,
        node("w2", "pi2", "worker", "ready"),
        node("w3", "pi3", "worker", "ready"),
    ];
    m.networks = vec![NetworkInfo {
        name: "DATA".into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        attachable: true,
        internal: false,
        subnets: vec!["10.0.1.0/24".into()],
        encrypted: false,
        stack: String::new(),
    }];
    let mut case = Case::new(lab_fleet())
        .facts("pi1", m)
        .facts(
            "pi2",
            in_swarm(docker_up("pi2", "198.18.0.12"), "w2", "", false),
        )
        .facts(
            "pi3",
            in_swarm(docker_up("pi3", "198.18.0.13"), "w3", "", false),
        );
    case.networks = vec![net("DATA")];
    case
}

#[test]
fn formed_fleet_needs_nothing() {
    let p = formed().plan();
    assert!(p.is_empty(), "{p:#?}");
    assert_eq!(p.phases, vec![]);
}

#[test]
fn a_stopped_daemon_is_started_and_nothing_else() {
    let mut case = formed();
    case.facts.get_mut("pi2").unwrap().docker_running = false;
    let p = case.plan();
    assert_eq!(p.steps_of("pi2"), vec![&Step::StartDocker]);
    assert_eq!(p.phases.len(), 1);
}

#[test]
fn a_node_of_another_swarm_is_refused_naming_it() {
    let mut case = formed();
    case.facts.insert(
        "pi3".into(),
        in_swarm(docker_up("pi3", "198.18.0.13"), "x9", "", false),
    );
    case.facts.get_mut("pi3").unwrap().swarm.remote_managers[0] = RemoteManager {
        node_id: "other-m".into(),
        addr: "10.9.9.9:2377".into(),
    };
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Refuse(
            "belongs to another swarm (managed by 10.9.9.9:2377); run with --force to make it leave and join this one".into()
        )]
    );
    // The others are left alone.
    assert!(p.steps_of("pi2").is_empty());
}

#[test]
fn force_makes_it_leave_then_join() {
    let mut case = formed();
    let mut other = in_swarm(docker_up("pi3", "198.18.0.13"), "x9", "c-other", true);
    other.swarm.control_available = true;
    case.facts.insert("pi3".into(), other);
    case.force = true;
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![
            &Step::LeaveSwarm {
                reason: "belongs to another swarm (cluster c-other)".into()
            },
            &Step::JoinSwarm {
                role: Role::Worker,
                advertise: "198.18.0.13".into()
            }
        ]
    );
    assert_eq!(
        p.steps_of("pi1"),
        vec![
            &Step::PruneStaleNodes {
                hosts: vec!["pi3".into()]
            },
            &Step::RotateJoinTokens {
                worker: true,
                manager: false
            }
        ]
    );
}

#[test]
fn duplicate_host_names_are_refused_before_any_join() {
    let case = Case::new(lab_fleet())
        .facts("pi1", docker_up("pi1", "198.18.0.11"))
        .facts("pi2", docker_up("raspberrypi", "198.18.0.12"))
        .facts("pi3", docker_up("raspberrypi", "198.18.0.13"));
    let p = case.plan();
    let msg = "host name \"raspberrypi\" is shared by pi2, pi3; give each Pi its own (hostnamectl set-hostname) before it joins, or the swarm confuses them";
    assert_eq!(p.steps_of("pi2"), vec![&Step::Refuse(msg.into())]);
    assert_eq!(p.steps_of("pi3"), vec![&Step::Refuse(msg.into())]);
}

#[test]
fn an_unreachable_manager_plans_no_swarm_step() {
    let case = Case::new(lab_fleet())
        .facts("pi2", docker_up("pi2", "198.18.0.12"))
        .facts("pi3", bare("pi3", "198.18.0.13"));
    let p = case.plan();
    assert_eq!(p.leader, None);
    assert_eq!(p.phases.len(), 1);
    assert_eq!(p.phases[0].name, "docker");
    assert!(p.steps_of("pi2").is_empty());
}

#[test]
fn a_network_with_other_options_is_refused_with_the_difference() {
    let mut case = formed();
    case.networks = vec![Network {
        internal: true,
        subnet: Some("10.0.9.0/24".into()),
        ..net("DATA")
    }];
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi1"),
        vec![&Step::Refuse(
            "network DATA exists with other options (internal is false, playbook says true, subnet is 10.0.1.0/24, playbook says 10.0.9.0/24); Docker cannot change a network in place: remove it (docker network rm DATA) or change the playbook".into()
        )]
    );
}

#[test]
fn role_changes_and_missing_labels_only() {
    let mut case = formed();
    case.hosts[1].role = Role::Manager;
    case.hosts[2].labels.insert("disk".into(), "ssd".into());
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi1"),
        vec![
            &Step::SetRole {
                host: "pi2".into(),
                role: Role::Manager
            },
            &Step::SetLabels {
                host: "pi3".into(),
                labels: vec![("disk".into(), "ssd".into())]
            }
        ]
    );
}

#[test]
fn skip_install_refuses_a_host_without_docker() {
    let mut case = Case::new(lab_fleet())
        .facts("pi1", docker_up("pi1", "198.18.0.11"))
        .facts("pi2", docker_up("pi2", "198.18.0.12"))
        .facts("pi3", bare("pi3", "198.18.0.13"));
    case.hosts[2].docker.install = InstallMethod::Skip;
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Refuse(
            "docker is not installed and the inventory says install = \"skip\"".into()
        )]
    );
}

#[test]
fn changed_daemon_settings_restart_the_daemon() {
    let mut case = formed();
    case.hosts[1]
        .docker
        .daemon
        .insert("insecure-registries".into(), json!(["pi1:5000"]));
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi2"),
        vec![
            &Step::WriteDaemonJson(
                "{\n  \"insecure-registries\": [\n    \"pi1:5000\"\n  ]\n}\n".into()
            ),
            &Step::RestartDocker
        ]
    );
}

#[test]
fn a_reinstalled_pi_rejoins_and_its_old_entry_is_pruned() {
    let mut case = formed();
    // pi3 was reinstalled: Docker runs, no swarm; the manager still lists its old node.
    case.facts
        .insert("pi3".into(), docker_up("pi3", "198.18.0.13"));
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::JoinSwarm {
            role: Role::Worker,
            advertise: "198.18.0.13".into()
        }]
    );
    assert_eq!(
        p.steps_of("pi1"),
        vec![
            &Step::PruneStaleNodes {
                hosts: vec!["pi3".into()]
            },
            &Step::RotateJoinTokens {
                worker: true,
                manager: false
            }
        ]
    );
}

/// Issue 13: a host the preflight stopped loses its work and the leader's steps about it.
#[test]
fn dropped_hosts_lose_their_work_and_their_labels() {
    let mut hosts = lab_fleet();
    hosts[1].labels.insert("zone".into(), "b".into());
    let case = Case::new(hosts)
        .facts("pi1", docker_up("pi1", "198.18.0.11"))
        .facts("pi2", docker_up("pi2", "198.18.0.12"))
        .facts("pi3", docker_up("pi3", "198.18.0.13"));
    let mut p = case.plan();
    assert!(
        p.steps_of("pi1")
            .iter()
            .any(|s| matches!(s, Step::SetLabels { host, .. } if host == "pi2"))
    );
    p.drop_hosts(&["pi2".to_string()]);
    assert_eq!(p.steps_of("pi2"), Vec::<&Step>::new());
    assert!(
        !p.steps_of("pi1")
            .iter()
            .any(|s| matches!(s, Step::SetLabels { host, .. } if host == "pi2"))
    );
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::JoinSwarm {
            role: Role::Worker,
            advertise: "198.18.0.13".into()
        }]
    );
}

/// Issue 13: demoting a manager while another one is down would leave one manager up of
/// two: refused, saying why, unless forced.
#[test]
fn a_demotion_that_would_lose_quorum_is_refused_unless_forced() {
    let mut hosts = vec![
        host("pi1", Role::Manager),
        host("pi2", Role::Worker),
        host("pi3", Role::Manager),
    ];
    hosts.truncate(3);
    let mut lead = in_swarm(docker_up("pi1", "198.18.0.11"), "n1", "c1", true);
    lead.nodes = vec![
        node("n1", "pi1", "manager", "ready"),
        node("n2", "pi2", "manager", "ready"),
        node("n3", "pi3", "manager", "down"),
    ];
    let mut case = Case::new(hosts).facts("pi1", lead).facts(
        "pi2",
        in_swarm(docker_up("pi2", "198.18.0.12"), "n2", "c1", true),
    );
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi1"),
        vec![&Step::Refuse("demoting pi2 to worker refused: the swarm would lose quorum: 1 of its 2 managers would be up (pi3 down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down); or run with --force".into())]
    );
    case.force = true;
    assert_eq!(
        case.plan().steps_of("pi1"),
        vec![&Step::SetRole {
            host: "pi2".into(),
            role: Role::Worker
        }]
    );
}

/// Issue 13: the three ways a node of ours is half-joined, each repaired without
/// `--force` by one step in the joins phase (leave, remove the stale entry, join), its
/// labels set anew on its new node; the leader prunes entries left under its name.
#[test]
fn half_joined_nodes_are_rejoined_without_force() {
    // A join that timed out and still tries: pending, no node id yet, our manager named
    // by address only.
    let mut case = formed();
    let mut pending = docker_up("pi3", "198.18.0.13");
    pending.swarm.local_node_state = "pending".into();
    pending.swarm.remote_managers = vec![RemoteManager {
        node_id: String::new(),
        addr: "198.18.0.11:2377".into(),
    }];
    case.facts.insert("pi3".into(), pending);
    case.facts.get_mut("pi1").unwrap().nodes.pop();
    case.hosts[2].labels.insert("zone".into(), "c".into());
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Rejoin {
            role: Role::Worker,
            advertise: "198.18.0.13".into(),
            stale: None,
            why: "its join did not complete (its swarm state is pending); it is still trying in the background".into()
        }]
    );
    assert_eq!(
        p.steps_of("pi1"),
        vec![&Step::SetLabels {
            host: "pi3".into(),
            labels: vec![("zone".into(), "c".into())]
        }]
    );

    // It believes it is in the swarm; the managers list it down under that id.
    let mut case = formed();
    case.facts.get_mut("pi1").unwrap().nodes[2].state = "down".into();
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Rejoin {
            role: Role::Worker,
            advertise: "198.18.0.13".into(),
            stale: Some("w3".into()),
            why: "the managers list it down under its node id w3 while it answers: it believes it is in the swarm but takes no part".into()
        }]
    );
    assert_eq!(
        p.steps_of("pi1"),
        vec![&Step::PruneStaleNodes {
            hosts: vec!["pi3".into()]
        }]
    );

    // It believes it is a node the swarm no longer lists (removed while it was away).
    let mut case = formed();
    case.facts.get_mut("pi1").unwrap().nodes.pop();
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Rejoin {
            role: Role::Worker,
            advertise: "198.18.0.13".into(),
            stale: None,
            why: "it believes it is node w3 of this swarm, which no longer lists it (its entry was removed while it was away)".into()
        }]
    );
    assert!(p.steps_of("pi2").is_empty());
}

/// A half-joined manager whose stale entry is a manager: removing that entry must keep
/// quorum, or the repair is refused (unless forced).
#[test]
fn a_half_joined_manager_is_repaired_only_while_quorum_holds() {
    let mut case = formed();
    for h in &mut case.hosts {
        h.role = Role::Manager;
    }
    {
        let nodes = &mut case.facts.get_mut("pi1").unwrap().nodes;
        for n in nodes.iter_mut() {
            n.role = "manager".into();
        }
        nodes[1].state = "down".into();
        nodes[2].state = "down".into();
    }
    let p = case.plan();
    assert_eq!(
        p.steps_of("pi3"),
        vec![&Step::Refuse("half-joined (the managers list it down under its node id w3 while it answers: it believes it is in the swarm but takes no part), and removing its manager entry is refused: the swarm would lose quorum: 1 of its 2 managers would be up (pi2 down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down); or run with --force".into())]
    );
    // One of three down: its removal keeps two of two.
    case.facts.get_mut("pi1").unwrap().nodes[1].state = "ready".into();
    let p = case.plan();
    assert!(
        matches!(
            p.steps_of("pi3")[..],
            [Step::Rejoin {
                role: Role::Manager,
                ..
            }]
        ),
        "{p:#?}"
    );
}

/// Issue 18: a half-joined Pi names the node it believes it is; that is its word. A
/// repair removes only an entry the leader lists under that Pi's host name, at its
/// address, and that no other host claims: pi3 naming pi2's node (pending or active),
/// or the leader's, is refused saying why, and no step removes anything.
#[test]
fn a_half_joined_pi_that_names_another_node_has_nothing_removed() {
    let not_removed = "no node is removed (a Pi that reports another node's ID is misconfigured, cloned from another's SD card, or compromised)";
    let lying = |state: &str, id: &str, hostname: &str| {
        let mut case = formed();
        for n in &mut case.facts.get_mut("pi1").unwrap().nodes {
            n.role = "manager".into();
        }
        let mut f = in_swarm(docker_up(hostname, "198.18.0.13"), id, "", false);
        f.swarm.local_node_state = state.into();
        f.swarm.remote_managers[0].node_id = "m".into();
        case.facts.insert("pi3".into(), f);
        case
    };
    let pending = "its join did not complete (its swarm state is pending); it is still trying in the background";
    for (case, why) in [
        (
            {
                // pi2 did not answer: no other host claims w2, the entry's host name tells.
                let mut case = lying("pending", "w2", "pi3");
                case.facts.remove("pi2");
                case
            },
            format!(
                "half-joined ({pending}), and its repair is refused: pi3 (host name pi3) reports swarm node w2, which the leader lists as host name pi2 at 198.18.0.12: {not_removed}"
            ),
        ),
        (
            lying("pending", "m", "pi3"),
            format!(
                "half-joined ({pending}), and its repair is refused: pi3 and pi1 report the same swarm node m: {not_removed}"
            ),
        ),
        (
            {
                // It says pi2's host name too, and pi2 did not answer: its address tells.
                let mut case = lying("pending", "w2", "pi2");
                case.facts.remove("pi2");
                case
            },
            format!(
                "half-joined ({pending}), and its repair is refused: pi3 reports swarm node w2, which the swarm sees at 198.18.0.12, not at pi3's 198.18.0.13: {not_removed}; if 198.18.0.12 is pi3's own address, set `advertise = \"198.18.0.12\"` for it in the inventory"
            ),
        ),
        (
            {
                // Active, naming pi2's node, which the managers list down.
                let mut case = lying("active", "w2", "pi3");
                case.facts.remove("pi2");
                case.facts.get_mut("pi1").unwrap().nodes[1].state = "down".into();
                case
            },
            format!(
                "half-joined (the managers list it down under its node id w2 while it answers: it believes it is in the swarm but takes no part), and its repair is refused: pi3 (host name pi3) reports swarm node w2, which the leader lists as host name pi2 at 198.18.0.12: {not_removed}"
            ),
        ),
    ] {
        let p = case.plan();
        assert_eq!(p.steps_of("pi3"), vec![&Step::Refuse(why)]);
        let removes = |s: &&Step| {
            matches!(
                s,
                Step::Rejoin { stale: Some(_), .. } | Step::PruneStaleNodes { .. }
            )
        };
        for h in ["pi1", "pi2"] {
            assert!(!p.steps_of(h).iter().any(removes), "{p:#?}");
        }
    }
}

/// Issue 18: the same rule for stale entries: pi3 reports pi2's host name while pi2 is
/// down; pi2's entry (down, at pi2's address) is not pruned for it. Its own old entry,
/// at its own address, is.
#[test]
fn a_down_entry_is_pruned_only_for_the_host_it_is_at() {
    let mut case = formed();
    case.facts.remove("pi2");
    case.facts.get_mut("pi1").unwrap().nodes[1].state = "down".into();
    case.facts.get_mut("pi3").unwrap().hostname = "pi2".into();
    let p = case.plan();
    assert!(
        !p.steps_of("pi1")
            .iter()
            .any(|s| matches!(s, Step::PruneStaleNodes { .. })),
        "{p:#?}"
    );

    let mut case = formed();
    let mut old = node("old3", "pi3", "worker", "down");
    old.addr = "198.18.0.13".into();
    case.facts.get_mut("pi1").unwrap().nodes.push(old);
    assert_eq!(
        case.plan().steps_of("pi1"),
        vec![&Step::PruneStaleNodes {
            hosts: vec!["pi3".into()]
        }]
    );
}

/// Issue 17: a host whose Docker speaks no Engine API version rpiprov speaks is refused
/// in the Docker phase, saying both ranges: nothing is installed, started or joined there;
/// the others go on.
#[test]
fn a_docker_rpiprov_cannot_speak_to_is_refused_and_the_others_go_on() {
    let why = "Docker 19.03.15 speaks Engine API 1.12 to 1.40, rpiprov 1.41 to 1.55: no version in common; upgrade Docker there (rpiprov needs Docker 20.10 or later)";
    let mut old = docker_up("pi2", "198.18.0.12");
    old.docker_problem = Some(crate::docker::probe::DockerProblem::Unsupported(why.into()));
    let case = Case::new(lab_fleet())
        .facts("pi1", docker_up("pi1", "198.18.0.11"))
        .facts("pi2", old)
        .facts("pi3", docker_up("pi3", "198.18.0.13"));
    let p = case.plan();
    assert_eq!(p.steps_of("pi2"), vec![&Step::Refuse(why.into())]);
    assert!(
        p.steps_of("pi3")
            .iter()
            .any(|s| matches!(s, Step::JoinSwarm { .. })),
        "{p:#?}"
    );
}
