//! Tests of `teardown`: the survey (pure) and the executor against scripted fake hosts.

use std::path::PathBuf;

use super::*;
use crate::config::{Compose, Image, ImageFormat, Stack};
use crate::exec::report::Outcome;
use crate::testing::{FakeRemote, Recorder, network, ok};

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
            by_arch: vec![],
            format: ImageFormat::Rootfs,
            cmd: vec![],
        }],
        variables: vec![],
    }
}

/// What a teardown of SERVICES and NETWORKS finds: everything of the playbook, plus a
/// stack and a network it does not declare (left alone).
fn found() -> Survey {
    crate::docker::api::parse_survey(SERVICES.as_bytes(), NETWORKS.as_bytes())
        .unwrap()
        .survey(&playbook())
}

#[test]
fn the_survey_lists_only_what_the_playbook_declares_in_removal_order() {
    let s = found();
    assert_eq!(s.stacks, vec!["db", "web"]);
    assert_eq!(s.networks, vec!["INTERCO", "DATA"]);
    assert_eq!(
        s.describe(),
        "will remove, in this order: stacks db, web; then networks INTERCO, DATA"
    );
    // A stack whose services are gone but whose network lingers still counts.
    let seen = crate::docker::api::parse_survey(
        b"[]",
        br#"[{"Name": "web_default", "Labels": {"com.docker.stack.namespace": "web"}}]"#,
    )
    .unwrap();
    assert_eq!(seen.survey(&playbook()).stacks, vec!["web"]);
    let s = crate::docker::api::parse_survey(b"[]", br#"[{"Name": "bridge"}]"#)
        .unwrap()
        .survey(&playbook());
    assert!(s.is_empty());
    assert_eq!(
        s.describe(),
        "nothing to remove: no stack or network of the playbook exists"
    );
    assert!(crate::docker::api::parse_survey(b"{}", b"[]").is_err());
}

#[test]
fn rows_for_the_progress_display() {
    let s = found();
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
    let s = found();
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

/// Every request of every fake host that matters to the order, as it was answered.
type Journal = Arc<Mutex<Vec<String>>>;

fn note(j: &Journal, label: &str) {
    j.lock().unwrap().push(label.to_string());
}

/// The services of SURVEY's swarm as the manager lists them.
const SERVICES: &str = r#"[
    {"ID": "s1", "Spec": {"Name": "db_pg", "Labels": {"com.docker.stack.namespace": "db"}}},
    {"ID": "s2", "Spec": {"Name": "other_x", "Labels": {"com.docker.stack.namespace": "other"}}},
    {"ID": "s3", "Spec": {"Name": "web_web", "Labels": {"com.docker.stack.namespace": "web"}}}
]"#;

/// Its networks.
const NETWORKS: &str = r#"[
    {"Name": "bridge", "Labels": {}},
    {"Name": "DATA", "Labels": {"io.rpiprov.managed": "true"}},
    {"Name": "INTERCO", "Labels": null},
    {"Name": "foreign"},
    {"Name": "web_default", "Labels": {"com.docker.stack.namespace": "web"}},
    {"Name": "ingress", "Labels": {}}
]"#;

/// What a stack's leftovers are asked with: its label, encoded in the filter.
fn of_stack(stack: &str) -> String {
    format!("com.docker.stack.namespace%3D{stack}%22")
}

/// The host's daemon says it is node `id` of an active swarm (a manager when `manager`),
/// or in none for "".
fn is_node(f: &FakeRemote, id: &str, manager: bool) {
    let info = if id.is_empty() {
        r#"{"Swarm":{"LocalNodeState":"inactive"}}"#.to_string()
    } else {
        format!(
            r#"{{"Swarm":{{"NodeID":"{id}","LocalNodeState":"active","ControlAvailable":{manager}}}}}"#
        )
    };
    f.on_api_first("GET /info", 200, &info);
}

/// A manager whose swarm holds these services and networks; the stacks go at once (no
/// service or network of theirs is left once removed), networks are removed, no
/// container is left on it.
fn manager(services: &str, networks: &str) -> FakeRemote {
    let m = FakeRemote::new("pi1");
    m.grants_the_lock()
        .on("docker stack rm", ok("Removing service x\n"))
        .on_api("GET /services?filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue", 200, services)
        .on_api("GET /services?", 200, "[]")
        .on_api("GET /networks?", 200, "[]")
        .on_api("GET /networks", 200, networks)
        .on_api("GET /containers/json", 200, "[]")
        .on_api("DELETE /networks/", 204, "")
        .on_api("GET /nodes/", 200, r#"{"ID":"n1","Version":{"Index":4},"Spec":{"Role":"manager","Availability":"active"}}"#)
        .on_api("POST /nodes/", 200, "")
        .on_api("POST /swarm/leave", 200, "");
    is_node(&m, "n1", true);
    m
}

fn worker(name: &str) -> FakeRemote {
    let w = FakeRemote::new(name);
    w.on_api("GET /containers/json", 200, "[]")
        .on_api("POST /swarm/leave", 200, "");
    w
}

/// The leader's list of nodes: (id, host name, role, state).
fn lists(m: &FakeRemote, nodes: &[(&str, &str, &str, &str)]) {
    let all: Vec<String> = nodes
        .iter()
        .map(|(id, host, role, state)| {
            format!(
                "{{\"ID\":\"{id}\",\"Version\":{{\"Index\":4}},\"Spec\":{{\"Role\":\"{role}\"}},\"Description\":{{\"Hostname\":\"{host}\"}},\"Status\":{{\"State\":\"{state}\"}}}}"
            )
        })
        .collect();
    m.on_api_first("GET /nodes", 200, &format!("[{}]", all.join(",")));
}

/// The requests that change something a host's daemon received, as `METHOD PATH`.
fn changes(f: &FakeRemote) -> Vec<String> {
    f.api_log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| !c.line.starts_with("GET "))
        .map(|c| c.line.clone())
        .collect()
}

async fn teardown_with(
    opts: &Options,
    m: &FakeRemote,
    others: &[FakeRemote],
) -> (TeardownResult, Vec<String>) {
    teardown_until(opts, &playbook(), m, others, std::future::pending()).await
}

async fn teardown_until(
    opts: &Options,
    playbook: &Playbook,
    m: &FakeRemote,
    others: &[FakeRemote],
    interrupt: impl Future<Output = ()>,
) -> (TeardownResult, Vec<String>) {
    let (leader, nodes) = crate::testing::fleet(m, others);
    let engines = Arc::new(Engines::new(&nodes, opts.command_timeout));
    let rec = Arc::new(Recorder::default());
    let res = execute(
        opts,
        playbook,
        leader,
        engines,
        nodes,
        rec.clone(),
        interrupt,
    )
    .await;
    let events = rec.0.lock().unwrap().clone();
    (res, events)
}

#[tokio::test]
async fn an_empty_fleet_has_nothing_to_remove_and_succeeds() {
    let m = manager("[]", r#"[{"Name":"bridge"},{"Name":"ingress"}]"#);
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
    assert_eq!(changes(&m), Vec::<String>::new());
    assert!(m.commands().last().unwrap().contains("@@released"));
}

/// A manager in no swarm (a fleet dissolved already): nothing of the playbook exists.
#[tokio::test]
async fn a_manager_in_no_swarm_holds_nothing_of_the_playbook() {
    let m = manager(SERVICES, NETWORKS);
    is_node(&m, "", false);
    let (res, _) = teardown_with(&options(), &m, &[]).await;
    assert!(!res.failed() && res.found.is_empty(), "{res:?}");
    assert_eq!(m.count("docker stack rm"), 0);
    assert_eq!(changes(&m), Vec::<String>::new());
}

#[tokio::test]
async fn moby_29293_30942_stacks_go_in_reverse_order_and_networks_only_once_gone() {
    let journal: Journal = Arc::default();
    let m = manager(SERVICES, NETWORKS);
    let w = worker("pi2");
    // db still has a service and a network on the first check; pi2 still runs one of
    // web's containers on the first check; DATA still has endpoints once.
    {
        let j = journal.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        m.on_api_fn(
            &format!(
                "GET /services?filters=%7B%22label%22%3A%7B%22{}",
                of_stack("db")
            ),
            move |_| {
                note(&j, "pi1 leftovers db");
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    (200, r#"[{"ID":"abc"}]"#.into())
                } else {
                    (200, "[]".into())
                }
            },
        );
        let n = std::sync::atomic::AtomicUsize::new(0);
        m.on_api_fn(
            &format!(
                "GET /networks?filters=%7B%22label%22%3A%7B%22{}",
                of_stack("db")
            ),
            move |_| {
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    (200, r#"[{"Name":"db_default"}]"#.into())
                } else {
                    (200, "[]".into())
                }
            },
        );
        let j = journal.clone();
        m.on_api_fn(
            &format!(
                "GET /services?filters=%7B%22label%22%3A%7B%22{}",
                of_stack("web")
            ),
            move |_| {
                note(&j, "pi1 leftovers web");
                (200, "[]".into())
            },
        );
        let j = journal.clone();
        m.first("docker stack rm", ok(""));
        let jr = j.clone();
        let front = FakeRemote::new("pi1");
        front.on_fn("docker stack rm", move |r| {
            note(&jr, &format!("pi1 {}", r.command));
            ok("")
        });
        m.prepend(&front);
        let n = std::sync::atomic::AtomicUsize::new(0);
        m.on_api_fn("DELETE /networks/", move |c| {
            note(&j, &format!("pi1 {}", c.line));
            if c.line.ends_with("/DATA") && n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                (
                    403,
                    r#"{"message":"error while removing network: network DATA id 3k2 has active endpoints"}"#.into(),
                )
            } else {
                (204, String::new())
            }
        });
    }
    {
        let j = journal.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        w.on_api_fn("GET /containers/json", move |_| {
            note(&j, "pi2 containers");
            let label = |s: &str| format!(r#"{{"Labels":{{"com.docker.stack.namespace":"{s}"}}}}"#);
            match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => (200, format!("[{},{}]", label("web"), label("db"))),
                1 => (200, format!("[{}]", label("web"))),
                _ => (200, "[]".into()),
            }
        });
    }

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
        .position(|l| l.contains("DELETE /networks"))
        .unwrap();
    assert_eq!(j.iter().filter(|l| *l == "pi2 containers").count(), 3);
    assert!(last("pi2 containers") < first_net);
    assert_eq!(
        j[first_net..],
        [
            "pi1 DELETE /networks/INTERCO",
            "pi1 DELETE /networks/DATA",
            "pi1 DELETE /networks/DATA"
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
    // Issue 17: a `docker` process per host for its relay (and the watch of its
    // containers' removals), and the stacks' removals; every read and change else went
    // through the Engine API.
    let docker = |f: &FakeRemote| -> Vec<String> {
        f.commands()
            .into_iter()
            .filter(|c| crate::remote::stats::docker_calls(c) > 0)
            .collect()
    };
    assert_eq!(
        docker(&w),
        ["docker system dial-stdio", "docker system dial-stdio"]
    );
    let on_m = docker(&m);
    assert!(
        on_m.iter()
            .all(|c| c == "docker system dial-stdio" || c.starts_with("docker stack rm")),
        "{on_m:?}"
    );
}

#[tokio::test]
async fn a_stack_that_does_not_go_keeps_the_networks() {
    let m = manager(SERVICES, NETWORKS);
    m.on_api_first(
        &format!(
            "GET /services?filters=%7B%22label%22%3A%7B%22{}",
            of_stack("db")
        ),
        200,
        r#"[{"ID":"abc"}]"#,
    );
    let mut opts = options();
    opts.leave_swarm = true;
    opts.purge = true;
    let w = worker("pi2");
    is_node(&w, "n2", false);
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
        assert!(!c.contains("purged"), "{c}");
    }
    assert!(m.api_calls("/swarm/leave").is_empty() && w.api_calls("/swarm/leave").is_empty());
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
    assert!(m.api_calls("DELETE /networks").is_empty());
    assert!(m.commands().last().unwrap().contains("@@released"));
}

/// The containers of the removed stacks are waited for together: web's go, and web's
/// row ends removed; one of db's stays on pi2, and db's row fails when its time is up,
/// naming it; the networks are not attempted.
#[tokio::test]
async fn a_container_that_stays_fails_its_stack_alone_and_keeps_the_networks() {
    let m = manager(SERVICES, NETWORKS);
    let w = worker("pi2");
    w.on_api_first(
        "GET /containers/json",
        200,
        r#"[{"Labels":{"com.docker.stack.namespace":"db"}}]"#,
    );
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
    assert!(m.api_calls("DELETE /networks").is_empty());
}

#[tokio::test]
async fn leave_and_purge_workers_first_then_managers_then_the_last_with_force() {
    let mut opts = options();
    opts.leave_swarm = true;
    opts.purge = true;
    opts.managers = vec!["pi1".into(), "pi3".into()];
    let journal: Journal = Arc::default();
    let m = manager("[]", r#"[{"Name":"bridge"}]"#);
    let m3 = worker("pi3");
    m3.on_api(
        "GET /nodes/n3",
        200,
        r#"{"ID":"n3","Version":{"Index":8},"Spec":{"Role":"manager","Availability":"active"}}"#,
    )
    .on_api("POST /nodes/", 200, "");
    let w = worker("pi2");
    let gone = worker("pi4");
    for f in [&m, &m3, &w, &gone] {
        let j = journal.clone();
        let label = format!("{} leave", f.name);
        f.on_api_fn("POST /swarm/leave", move |_| {
            note(&j, &label);
            (200, String::new())
        });
    }
    m.on(
        "set -e; for d in",
        ok("purged /var/lib/rpiprov/stacks/web\n"),
    )
    .on("purged 0", ok("purged 0\n"));
    w.on("purged 0", ok(""));
    m3.on("purged 0", ok("purged 0\n"));
    gone.on("purged 0", ok(""));
    is_node(&w, "n2", false);
    is_node(&m3, "n3", true);
    is_node(&gone, "", false);
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
    assert_eq!(changes(&w), ["POST /swarm/leave?force=false"]);
    // The other manager demotes itself, then leaves as a worker.
    assert_eq!(
        changes(&m3),
        [
            "POST /nodes/n3/update?version=8",
            "POST /swarm/leave?force=false"
        ]
    );
    let demoted: serde_json::Value =
        serde_json::from_str(&m3.api_calls("POST /nodes/n3/update")[0].body).unwrap();
    assert_eq!(demoted["Role"], "worker");
    assert_eq!(changes(&m), ["POST /swarm/leave?force=true"]);
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
    let m = manager("[]", r#"[{"Name":"DATA"}]"#);
    m.on_api_first(
        "DELETE /networks/DATA",
        500,
        r#"{"message":"rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y"}"#,
    );
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
            "still in use after 0.3s: rpc error: code = FailedPrecondition desc = network 3k2 is in use by task x7y"
        )
    );
    assert!(m.api_calls("DELETE /networks/DATA").len() > 2);
    // A network already gone is no error.
    let m = manager("[]", r#"[{"Name":"DATA"}]"#);
    m.on_api_first(
        "DELETE /networks/DATA",
        404,
        r#"{"message":"network DATA not found"}"#,
    );
    let (res, _) = teardown_with(&options(), &m, &[]).await;
    assert!(!res.failed());
}

#[tokio::test]
async fn ctrl_c_during_a_wait_releases_the_lock() {
    let m = manager(SERVICES, NETWORKS);
    m.on_api_first(
        &format!(
            "GET /services?filters=%7B%22label%22%3A%7B%22{}",
            of_stack("db")
        ),
        200,
        r#"[{"ID":"abc"}]"#,
    );
    let mut pb = playbook();
    pb.stacks[1].timeout = Duration::from_secs(60);
    let (res, _) = teardown_until(
        &options(),
        &pb,
        &m,
        &[],
        tokio::time::sleep(Duration::from_millis(40)),
    )
    .await;
    assert_eq!(res.rows[0].error.as_deref(), Some("interrupted (Ctrl-C)"));
    assert!(m.commands().last().unwrap().contains("@@released"));
    assert!(m.api_calls("DELETE /networks").is_empty());
}

#[tokio::test]
async fn a_held_lock_refuses_teardown_and_removes_nothing() {
    let m = manager(SERVICES, NETWORKS);
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
    let m = manager("[]", r#"[{"Name":"bridge"}]"#);
    let frozen = worker("pi2");
    frozen.daemon_after("its daemon never answers again");
    let m3 = worker("pi3");
    m3.on_api(
        "GET /nodes/n3",
        200,
        r#"{"ID":"n3","Version":{"Index":8},"Spec":{"Role":"manager"}}"#,
    )
    .on_api("POST /nodes/", 200, "");
    is_node(&m3, "n3", true);
    for f in [&m, &m3] {
        let j = journal.clone();
        let label = format!("{} leave", f.name);
        f.on_api_fn("POST /swarm/leave", move |_| {
            note(&j, &label);
            (200, String::new())
        });
    }
    {
        let j = journal.clone();
        m.on_api_fn("POST /nodes/n2/update", move |_| {
            note(&j, "demote pi2");
            (200, String::new())
        });
    }
    lists(
        &m,
        &[
            ("n1", "pi1", "manager", "ready"),
            ("n2", "pi2", "manager", "down"),
            ("n3", "pi3", "manager", "ready"),
        ],
    );
    // After the list: `GET /nodes/n2` would match its rule too.
    m.on_api_first(
        "GET /nodes/n2",
        200,
        r#"{"ID":"n2","Version":{"Index":5},"Spec":{"Role":"manager"}}"#,
    );
    let (res, _) = teardown_with(&opts, &m, &[frozen.clone(), m3.clone()]).await;
    let j = journal.lock().unwrap().clone();
    assert_eq!(j, ["demote pi2", "pi3 leave", "pi1 leave"]);
    assert!(frozen.api_calls("/swarm/leave").is_empty());
    let row = |n: &str| res.rows.iter().find(|r| r.label() == n).unwrap().clone();
    assert_eq!(
        row("pi1").changed,
        vec!["demote pi2 (it cannot leave by itself)", "left the swarm"]
    );
    assert_eq!(
        row("pi2").error.as_deref(),
        Some(
            "its Docker did not answer (pi2: Docker Engine API over `docker system dial-stdio`: the channel is closed (Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?)): it still believes it is in the swarm; once it answers, run `docker swarm leave --force` on it"
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
    let m = manager(SERVICES, NETWORKS);
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
    assert!(m.api_calls("/swarm/leave").is_empty());
    // Forced: it goes on (the stacks first).
    opts.force = true;
    let (_, _) = teardown_with(&opts, &m, &[]).await;
    assert!(m.count("docker stack rm") > 0);
}
