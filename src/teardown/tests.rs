//! Tests of `teardown`: the survey (pure) and the executor against scripted fake hosts.

use std::path::PathBuf;

use super::*;
use crate::config::{Compose, Image, ImageFormat, Stack};
use crate::docker::stack::parse_survey;
use crate::exec::report::Outcome;
use crate::remote::Output;
use crate::testing::{FakeRemote, Recorder, fail, network, ok};

fn stack(name: &str, order: i64) -> Stack {
    Stack {
        name: name.into(),
        file: PathBuf::from(format!("{name}.yml")),
        order,
        timeout: Duration::from_millis(200),
        compose: Compose::default(),
    }
}

fn playbook() -> Playbook {
    Playbook {
        path: PathBuf::from("playbook.toml"),
        containment: Default::default(),
        networks: vec![network("DATA"), network("INTERCO")],
        stacks: vec![stack("web", 1), stack("db", 2)],
        images: vec![Image {
            name: "lab/httpd:1".into(),
            archive: PathBuf::from("httpd.tar"),
            format: ImageFormat::Rootfs,
            cmd: vec![],
        }],
        variables: vec![],
    }
}

/// Everything exists, plus a stack and a network the playbook does not declare.
const SURVEY: &str = "stack db\nstack other\nstack web\nnetwork bridge \nnetwork DATA \nnetwork INTERCO \nnetwork foreign \nnetwork web_default web\nnetwork ingress \n";

#[test]
fn the_survey_lists_only_what_the_playbook_declares_in_removal_order() {
    let s = parse_survey(SURVEY, &playbook());
    assert_eq!(s.stacks, vec!["db", "web"]);
    assert_eq!(s.networks, vec!["INTERCO", "DATA"]);
    assert_eq!(
        s.describe(),
        "will remove, in this order: stacks db, web; then networks INTERCO, DATA"
    );
    // A stack whose services are gone but whose network lingers still counts.
    let s = parse_survey("network web_default web\n", &playbook());
    assert_eq!(s.stacks, vec!["web"]);
    let s = parse_survey("network bridge \n", &playbook());
    assert!(s.is_empty());
    assert!(parse_survey("@@no-swarm\n", &playbook()).is_empty());
    assert_eq!(
        s.describe(),
        "nothing to remove: no stack or network of the playbook exists"
    );
}

#[test]
fn the_engine_api_survey_finds_what_the_cli_survey_finds() {
    // SURVEY's swarm as the Engine API lists it (services without labels have null).
    let services = br#"[
        {"ID": "s1", "Spec": {"Name": "db_pg", "Labels": {"com.docker.stack.namespace": "db"}}},
        {"ID": "s2", "Spec": {"Name": "other_x", "Labels": {"com.docker.stack.namespace": "other"}}},
        {"ID": "s3", "Spec": {"Name": "web_web", "Labels": {"com.docker.stack.namespace": "web"}}}
    ]"#;
    let networks = br#"[
        {"Name": "bridge", "Labels": {}},
        {"Name": "DATA", "Labels": {"io.rpiprov.managed": "true"}},
        {"Name": "INTERCO", "Labels": null},
        {"Name": "foreign"},
        {"Name": "web_default", "Labels": {"com.docker.stack.namespace": "web"}},
        {"Name": "ingress", "Labels": {}}
    ]"#;
    let seen = crate::docker::api::parse_survey(services, networks).unwrap();
    assert_eq!(seen.survey(&playbook()), parse_survey(SURVEY, &playbook()));
    // A stack whose services are gone but whose network lingers still counts.
    let seen = crate::docker::api::parse_survey(
        b"[]",
        br#"[{"Name": "web_default", "Labels": {"com.docker.stack.namespace": "web"}}]"#,
    )
    .unwrap();
    assert_eq!(seen.survey(&playbook()).stacks, vec!["web"]);
    assert!(crate::docker::api::parse_survey(b"{}", b"[]").is_err());
}

#[test]
fn rows_for_the_progress_display() {
    let s = parse_survey(SURVEY, &playbook());
    let mut opts = options();
    let nodes = vec!["pi2".to_string(), "pi1".to_string()];
    assert_eq!(
        row_names(&s, "pi1", &nodes, &opts),
        vec![
            "pi1",
            "stack db",
            "stack web",
            "network INTERCO",
            "network DATA"
        ]
    );
    opts.purge = true;
    assert_eq!(row_names(&s, "pi1", &nodes, &opts)[..2], ["pi1", "pi2"]);
}

/// `--dry-run`: what exists, in the order the run removes it, then purge and leave as
/// asked, each on the host that does it.
#[test]
fn the_preview_follows_the_run_s_order() {
    let s = parse_survey(SURVEY, &playbook());
    let nodes = vec!["pi3".to_string(), "pi1".to_string(), "pi2".to_string()];
    let mut opts = options();
    opts.managers = vec!["pi1".into(), "pi2".into()];
    let p = preview_of(&s, &playbook(), &opts, "pi1", &nodes);
    let rows: Vec<(&str, Vec<&str>)> = p
        .rows
        .iter()
        .map(|r| (r.row.as_str(), r.steps.iter().map(String::as_str).collect()))
        .collect();
    let remove = "remove (docker stack rm, then wait until gone)";
    let net = "remove (docker network rm)";
    assert_eq!(
        rows,
        vec![
            ("stack db", vec![remove]),
            ("stack web", vec![remove]),
            ("network INTERCO", vec![net]),
            ("network DATA", vec![net]),
        ]
    );
    opts.purge = true;
    opts.leave_swarm = true;
    let p = preview_of(&s, &playbook(), &opts, "pi1", &nodes);
    let hosts: Vec<(&str, Vec<&str>)> = p
        .rows
        .iter()
        .skip(4)
        .map(|r| (r.row.as_str(), r.steps.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (
                "pi1",
                vec![
                    "purge stack files and deploy records",
                    "purge shipped images",
                    "leave the swarm (last manager)"
                ]
            ),
            ("pi2", vec!["purge shipped images", "leave the swarm"]),
            ("pi3", vec!["purge shipped images", "leave the swarm"]),
        ]
    );
    assert!(
        preview_of(&Survey::default(), &playbook(), &options(), "pi1", &nodes)
            .rows
            .is_empty()
    );
}

fn options() -> Options {
    Options {
        parallel: 4,
        command_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(2),
        network_timeout: Duration::from_millis(300),
        leave_swarm: false,
        force: false,
        purge: false,
        managers: vec!["pi1".into()],
        owner: crate::testing::lock_owner("teardown"),
    }
}

/// Every command of every fake host, in the order they were answered.
type Journal = Arc<Mutex<Vec<String>>>;

/// A rule that also writes `label` to the journal when it answers.
fn journal_rule(f: &FakeRemote, contains: &str, journal: &Journal, label: &str, out: Output) {
    let j = journal.clone();
    let label = label.to_string();
    f.on_fn(contains, move |_| {
        j.lock().unwrap().push(label.clone());
        out.clone()
    });
}

fn manager(survey: &str) -> FakeRemote {
    let m = FakeRemote::new("pi1");
    m.grants_the_lock()
        .on("docker stack ls --format 'stack", ok(survey))
        .on("docker stack rm", ok("Removing service x\n"))
        .on("docker ps -a --filter", ok(""))
        .on("docker network rm", ok(""))
        .on("docker service ls -q", ok(""));
    m
}

fn worker(name: &str) -> FakeRemote {
    let w = FakeRemote::new(name);
    w.on("docker ps -a --filter", ok(""));
    w
}

/// The host's Docker says it is node `id` of an active swarm (or in none, for "").
fn is_node(f: &FakeRemote, id: &str) {
    let answer = if id.is_empty() {
        "inactive\n".to_string()
    } else {
        format!("active {id}\n")
    };
    f.first("{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}", ok(&answer));
}

/// The leader's list of nodes: (id, host name, role, state).
fn lists(m: &FakeRemote, nodes: &[(&str, &str, &str, &str)]) {
    let text: String = nodes
        .iter()
        .map(|(id, host, role, state)| {
            format!(
                "{{\"ID\":\"{id}\",\"Spec\":{{\"Role\":\"{role}\"}},\"Description\":{{\"Hostname\":\"{host}\"}},\"Status\":{{\"State\":\"{state}\"}}}}\n"
            )
        })
        .collect();
    m.first("docker node inspect --format '{{json .}}'", ok(&text));
}

async fn teardown_with(
    opts: &Options,
    m: &FakeRemote,
    others: &[FakeRemote],
) -> (TeardownResult, Vec<String>) {
    let (leader, nodes) = crate::testing::fleet(m, others);
    let rec = Arc::new(Recorder::default());
    let res = execute(
        opts,
        &playbook(),
        leader,
        None,
        nodes,
        rec.clone(),
        std::future::pending(),
    )
    .await;
    let events = rec.0.lock().unwrap().clone();
    (res, events)
}

#[tokio::test]
async fn an_empty_fleet_has_nothing_to_remove_and_succeeds() {
    let m = manager("network bridge \nnetwork ingress \n");
    let (res, events) = teardown_with(&options(), &m, &[worker("pi2")]).await;
    assert!(!res.failed() && !res.changed(), "{res:?}");
    assert!(res.found.is_empty());
    assert!(
        events
            .iter()
            .any(|e| e.contains("nothing to remove: no stack or network of the playbook exists")),
        "{events:?}"
    );
    assert_eq!(m.count("docker stack rm"), 0);
    assert_eq!(m.count("docker network rm"), 0);
    assert!(m.commands().last().unwrap().contains("@@released"));
}

#[tokio::test]
async fn moby_29293_30942_stacks_go_in_reverse_order_and_networks_only_once_gone() {
    let journal: Journal = Arc::default();
    let m = manager(SURVEY);
    let w = worker("pi2");
    // db still has a service and a network on the first check; pi2 still runs one of
    // web's containers on the first check; DATA still has endpoints once.
    let front = FakeRemote::new("pi1");
    {
        let j = journal.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        front.on_fn("label=com.docker.stack.namespace=db); n=", move |_| {
            j.lock().unwrap().push("pi1 leftovers db".into());
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                ok("service abc\nnetwork def\n")
            } else {
                ok("")
            }
        });
        let j = journal.clone();
        front.on_fn("label=com.docker.stack.namespace=web); n=", move |_| {
            j.lock().unwrap().push("pi1 leftovers web".into());
            ok("")
        });
        let j = journal.clone();
        front.on_fn("docker stack rm", move |r| {
            j.lock().unwrap().push(format!("pi1 {}", r.command));
            ok("")
        });
        let j = journal.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        front.on_fn("docker network rm DATA", move |r| {
            j.lock().unwrap().push(format!("pi1 {}", r.command));
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                fail(
                    1,
                    "Error response from daemon: error while removing network: network DATA id 3k2 has active endpoints",
                )
            } else {
                ok("DATA\n")
            }
        });
        let j = journal.clone();
        front.on_fn("docker network rm", move |r| {
            j.lock().unwrap().push(format!("pi1 {}", r.command));
            ok("")
        });
    }
    m.prepend(&front);
    let wf = FakeRemote::new("pi2");
    {
        let j = journal.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        wf.on_fn("docker ps -a --filter", move |_| {
            j.lock().unwrap().push("pi2 containers".into());
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                ok("container web\ncontainer db\n")
            } else if n.load(std::sync::atomic::Ordering::SeqCst) == 2 {
                ok("container web\n")
            } else {
                ok("")
            }
        });
    }
    w.prepend(&wf);

    let (res, _) = teardown_with(&options(), &m, std::slice::from_ref(&w)).await;
    assert!(!res.failed(), "{res:#?}");
    let j = journal.lock().unwrap().clone();
    let pos = |s: &str| {
        j.iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} not in {j:?}"))
    };
    let last = |s: &str| j.iter().rposition(|l| l == s).unwrap();
    // Reverse order: each stack's services and networks gone before the next is
    // removed; the containers of both are waited for together, after the last removal.
    assert!(pos("pi1 docker stack rm db") < last("pi1 leftovers db"));
    assert!(last("pi1 leftovers db") < pos("pi1 docker stack rm web"));
    assert!(pos("pi1 docker stack rm web") < pos("pi2 containers"));
    // Networks only after the last container on pi2 is gone (three polls: db's and
    // web's, web's, none); DATA retried.
    let first_net = j
        .iter()
        .position(|l| l.contains("docker network rm"))
        .unwrap();
    assert_eq!(j.iter().filter(|l| *l == "pi2 containers").count(), 3);
    assert!(last("pi2 containers") < first_net);
    assert_eq!(
        j[first_net..],
        [
            "pi1 docker network rm INTERCO",
            "pi1 docker network rm DATA",
            "pi1 docker network rm DATA"
        ]
    );
    // Nothing the playbook does not declare was touched.
    assert!(
        !j.iter()
            .any(|l| l.contains("other") || l.contains("foreign"))
    );
    assert_eq!(res.removed_stacks, vec!["db", "web"]);
    assert_eq!(res.removed_networks, vec!["INTERCO", "DATA"]);
    let names: Vec<String> = res.rows.iter().map(|r| r.label()).collect();
    assert_eq!(
        names,
        vec![
            "pi1",
            "stack db",
            "stack web",
            "network INTERCO",
            "network DATA"
        ]
    );
}

#[tokio::test]
async fn a_stack_that_does_not_go_keeps_the_networks() {
    let m = manager(SURVEY);
    let front = FakeRemote::new("pi1");
    front.on(
        "label=com.docker.stack.namespace=db); n=",
        ok("service abc\n"),
    );
    m.prepend(&front);
    let mut opts = options();
    opts.leave_swarm = true;
    opts.purge = true;
    let w = worker("pi2");
    is_node(&m, "n1");
    is_node(&w, "n2");
    lists(
        &m,
        &[
            ("n1", "pi1", "manager", "ready"),
            ("n2", "pi2", "worker", "ready"),
        ],
    );
    let (res, _) = teardown_with(&opts, &m, std::slice::from_ref(&w)).await;
    assert!(res.failed());
    // Neither purge nor swarm dissolution follows a stack that would not go.
    assert_eq!(
        res.rows[0].error.as_deref(),
        Some("not attempted: an earlier step failed")
    );
    assert_eq!(
        res.rows[0].failed_step.as_deref(),
        Some("purge and leave swarm")
    );
    for c in m.commands().iter().chain(w.commands().iter()) {
        assert!(!c.contains("swarm leave") && !c.contains("purged"), "{c}");
    }
    let db = res.rows.iter().find(|r| r.label() == "stack db").unwrap();
    assert_eq!(db.failed_step.as_deref(), Some("wait until gone"));
    assert_eq!(
        db.error.as_deref(),
        Some("still present after 0.2s: 1 service(s)")
    );
    let data = res
        .rows
        .iter()
        .find(|r| r.label() == "network DATA")
        .unwrap();
    assert_eq!(data.outcome, Outcome::Skipped);
    assert_eq!(
        data.error.as_deref(),
        Some("not attempted: stack db is not gone")
    );
    assert_eq!(m.count("docker network rm"), 0);
    assert!(m.commands().last().unwrap().contains("@@released"));
}

/// The containers of the removed stacks are waited for together: web's go, and web's
/// row ends removed; one of db's stays on pi2, and db's row fails when its time is up,
/// naming it; the networks are not attempted.
#[tokio::test]
async fn a_container_that_stays_fails_its_stack_alone_and_keeps_the_networks() {
    let m = manager(SURVEY);
    let w = worker("pi2");
    w.first("docker ps -a --filter", ok("container db\n"));
    let (res, events) = teardown_with(&options(), &m, std::slice::from_ref(&w)).await;
    let row = |name: &str| res.rows.iter().find(|r| r.label() == name).unwrap().clone();
    let db = row("stack db");
    assert_eq!(db.failed_step.as_deref(), Some("wait until gone"));
    assert_eq!(
        db.error.as_deref(),
        Some("still present after 0.2s: 1 container(s) on pi2")
    );
    assert_eq!(row("stack web").outcome, Outcome::Changed);
    assert_eq!(res.removed_stacks, vec!["web"]);
    // web's row ended as soon as its containers were gone, before db's time was up.
    let end = |name: &str| {
        events
            .iter()
            .position(|e| e.starts_with(&format!("stack {name}: Done")))
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    assert!(end("web") < end("db"), "{events:#?}");
    assert_eq!(
        row("network DATA").error.as_deref(),
        Some("not attempted: stack db is not gone")
    );
    assert_eq!(m.count("docker network rm"), 0);
}

#[tokio::test]
async fn leave_and_purge_workers_first_then_managers_then_the_last_with_force() {
    let mut opts = options();
    opts.leave_swarm = true;
    opts.purge = true;
    opts.managers = vec!["pi1".into(), "pi3".into()];
    let journal: Journal = Arc::default();
    let m = manager("network bridge \n");
    let m3 = worker("pi3");
    let w = worker("pi2");
    let gone = worker("pi4");
    for f in [&m, &m3, &w, &gone] {
        let front = FakeRemote::new(&f.name);
        let out = if f.name == "pi4" { "@@inactive\n" } else { "" };
        journal_rule(
            &front,
            "swarm leave",
            &journal,
            &format!("{} leave", f.name),
            ok(out),
        );
        f.prepend(&front);
    }
    m.on(
        "set -e; for d in",
        ok("purged /var/lib/rpiprov/stacks/web\n"),
    )
    .on("purged 0", ok("purged 0\n"));
    w.on("purged 0", ok(""));
    m3.on("purged 0", ok("purged 0\n"));
    gone.on("purged 0", ok(""));
    for (f, id) in [(&m, "n1"), (&w, "n2"), (&m3, "n3"), (&gone, "")] {
        is_node(f, id);
    }
    lists(
        &m,
        &[
            ("n1", "pi1", "manager", "ready"),
            ("n2", "pi2", "worker", "ready"),
            ("n3", "pi3", "manager", "ready"),
        ],
    );
    let (res, _) = teardown_with(&opts, &m, &[w.clone(), m3.clone(), gone.clone()]).await;
    assert!(!res.failed(), "{res:#?}");
    let leave = |f: &FakeRemote| {
        f.commands()
            .into_iter()
            .find(|c| c.contains("swarm leave"))
            .unwrap()
    };
    assert!(leave(&w).ends_with("else docker swarm leave; fi"));
    assert!(leave(&m3).contains("docker node demote"));
    assert!(leave(&m).ends_with("else docker swarm leave --force; fi"));
    // Workers first, then the other manager, then the leader; pi4, in no swarm, is not
    // asked to leave.
    let j = journal.lock().unwrap().clone();
    assert_eq!(j, ["pi2 leave", "pi3 leave", "pi1 leave"]);
    let row = |n: &str| res.rows.iter().find(|r| r.label() == n).unwrap().clone();
    assert_eq!(
        row("pi1").changed,
        vec![
            "purge /var/lib/rpiprov/stacks/web",
            "remove image lab/httpd:1",
            "left the swarm"
        ]
    );
    assert_eq!(row("pi2").changed, vec!["left the swarm"]);
    assert_eq!(
        row("pi3").changed,
        vec!["remove image lab/httpd:1", "left the swarm"]
    );
    assert_eq!(row("pi4").outcome, Outcome::Unchanged);
}

#[tokio::test]
async fn a_network_still_in_use_is_retried_then_reported() {
    let m = manager("network DATA \n");
    let front = FakeRemote::new("pi1");
    front.on(
        "docker network rm DATA",
        fail(
            1,
            "Error response from daemon: rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y",
        ),
    );
    m.prepend(&front);
    let (res, _) = teardown_with(&options(), &m, &[]).await;
    let data = res
        .rows
        .iter()
        .find(|r| r.label() == "network DATA")
        .unwrap();
    assert_eq!(data.outcome, Outcome::Failed);
    assert_eq!(
        data.error.as_deref(),
        Some(
            "still in use after 0.3s: exit 1: Error response from daemon: rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y"
        )
    );
    assert!(m.count("docker network rm DATA") > 2);
    // A network already gone is no error.
    let m = manager("network DATA \n");
    let front = FakeRemote::new("pi1");
    front.on(
        "docker network rm DATA",
        fail(1, "Error: No such network: DATA"),
    );
    m.prepend(&front);
    let (res, _) = teardown_with(&options(), &m, &[]).await;
    assert!(!res.failed());
}

#[tokio::test]
async fn ctrl_c_during_a_wait_releases_the_lock() {
    let m = manager(SURVEY);
    let front = FakeRemote::new("pi1");
    front.on(
        "label=com.docker.stack.namespace=db); n=",
        ok("service abc\n"),
    );
    m.prepend(&front);
    let mut pb = playbook();
    pb.stacks[1].timeout = Duration::from_secs(60);
    let leader = Arc::new(m.clone());
    let nodes = HashMap::from([("pi1".to_string(), leader.clone())]);
    let res = execute(
        &options(),
        &pb,
        leader,
        None,
        nodes,
        Arc::new(Recorder::default()),
        tokio::time::sleep(Duration::from_millis(40)),
    )
    .await;
    assert_eq!(res.rows[0].error.as_deref(), Some("interrupted (Ctrl-C)"));
    assert!(m.commands().last().unwrap().contains("@@released"));
    assert_eq!(m.count("docker network rm"), 0);
}

#[tokio::test]
async fn a_held_lock_refuses_teardown_and_removes_nothing() {
    let m = manager(SURVEY);
    let held = FakeRemote::new("pi1");
    held.on(
        "mkdir /var/lib/rpiprov/lock",
        ok("@@held\nuser=bob\nhost=desk\npid=5\nsince=2026-11-25T10:00:00Z\ncommand=deploy\n"),
    );
    m.prepend(&held);
    let (res, _) = teardown_with(&options(), &m, &[worker("pi2")]).await;
    assert!(res.failed());
    assert_eq!(
        res.rows[0].error.as_deref(),
        Some(
            "deploy already running: locked by bob@desk pid 5 since 2026-11-25T10:00:00Z; if that run was killed, clear it with `rpiprov deploy --unlock`"
        )
    );
    assert_eq!(m.commands().len(), 1);
}

/// Issue 13: with one of three managers frozen (listed down, its Docker silent), the
/// swarm is dissolved in an order that keeps quorum: the leader demotes the frozen one
/// first, the other manager leaves, the leader last; the frozen one's row says it could
/// not leave and what to do.
#[tokio::test]
async fn a_frozen_manager_is_demoted_first_and_the_others_leave_keeping_quorum() {
    let mut opts = options();
    opts.leave_swarm = true;
    opts.managers = vec!["pi1".into(), "pi2".into(), "pi3".into()];
    let journal: Journal = Arc::default();
    let m = manager("network bridge \n");
    let frozen = worker("pi2");
    frozen.on(
        "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
        fail(137, "killed by timeout"),
    );
    let m3 = worker("pi3");
    is_node(&m, "n1");
    is_node(&m3, "n3");
    for f in [&m, &m3] {
        let front = FakeRemote::new(&f.name);
        journal_rule(
            &front,
            "swarm leave",
            &journal,
            &format!("{} leave", f.name),
            ok(""),
        );
        f.prepend(&front);
    }
    journal_rule(&m, "docker node demote n2", &journal, "demote pi2", ok(""));
    lists(
        &m,
        &[
            ("n1", "pi1", "manager", "ready"),
            ("n2", "pi2", "manager", "down"),
            ("n3", "pi3", "manager", "ready"),
        ],
    );
    let (res, _) = teardown_with(&opts, &m, &[frozen.clone(), m3.clone()]).await;
    let j = journal.lock().unwrap().clone();
    assert_eq!(j, ["demote pi2", "pi3 leave", "pi1 leave"]);
    assert_eq!(frozen.count("swarm leave"), 0);
    let row = |n: &str| res.rows.iter().find(|r| r.label() == n).unwrap().clone();
    assert_eq!(
        row("pi1").changed,
        vec!["demote pi2 (it cannot leave by itself)", "left the swarm"]
    );
    assert_eq!(
        row("pi2").error.as_deref(),
        Some(
            "its Docker did not answer (exit 137: killed by timeout): it still believes it is in the swarm; once it answers, run `docker swarm leave --force` on it"
        )
    );
    assert!(res.failed());
}

/// With two of three managers down, quorum is gone and no order keeps it: teardown
/// --leave-swarm is refused before anything is removed, unless forced.
#[tokio::test]
async fn a_dissolution_that_loses_quorum_is_refused_before_anything_is_removed() {
    let mut opts = options();
    opts.leave_swarm = true;
    let m = manager(SURVEY);
    is_node(&m, "n1");
    lists(
        &m,
        &[
            ("n1", "pi1", "manager", "ready"),
            ("n2", "pi2", "manager", "down"),
            ("n3", "pi3", "manager", "down"),
        ],
    );
    let (res, _) = teardown_with(&opts, &m, &[]).await;
    assert_eq!(res.rows[0].failed_step.as_deref(), Some("leave the swarm"));
    assert_eq!(
        res.rows[0].error.as_deref(),
        Some(
            "refused: when pi2 stops being a manager, the swarm would lose quorum: 1 of its 2 managers would be up (pi3 down already), and raft needs 2; bring managers back or add some first (3 managers keep quorum with one down); bring the managers back first, or run with --force to dissolve what can be"
        )
    );
    assert_eq!(m.count("docker stack rm"), 0);
    assert_eq!(m.count("swarm leave"), 0);
    // Forced: it goes on (the stacks first).
    opts.force = true;
    let (_, _) = teardown_with(&opts, &m, &[]).await;
    assert!(m.count("docker stack rm") > 0);
}
