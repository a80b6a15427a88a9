use super::*;
use crate::testing::{FakeRemote, Recorder, fail, lock_owner, ok};

/// The swarm's nodes as the manager lists them: pi1 manager, pi2 and pi3 workers.
const NODES: &str = r#"[{"ID":"n1","Version":{"Index":3},"Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"10.0.0.1"},"ManagerStatus":{"Leader":true}},
{"ID":"n2","Version":{"Index":3},"Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2"},"Status":{"State":"ready","Addr":"10.0.0.2"}},
{"ID":"n3","Version":{"Index":3},"Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"10.0.0.3"}}]"#;

/// Every service: `api` replicated 2/2, `web` global 3/3.
const SERVICES: &str = r#"[{"ID":"s1","Spec":{"Name":"api","Mode":{"Replicated":{"Replicas":2}}},"ServiceStatus":{"RunningTasks":2,"DesiredTasks":2}},
{"ID":"s2","Spec":{"Name":"web","Mode":{"Global":{}}},"ServiceStatus":{"RunningTasks":3,"DesiredTasks":3}}]"#;

/// A task of `api` (`api.N`) or of `web` (global: `web.nID`), on `node`.
fn task(id: &str, slot: &str, node: &str, desired: &str, state: &str) -> String {
    let (service, slot) = match slot.split_once('.') {
        Some(("api", n)) => ("s1", n.parse::<u64>().unwrap()),
        _ => ("s2", 0),
    };
    format!(
        r#"{{"ID":"{id}","ServiceID":"{service}","Slot":{slot},"NodeID":"{}","Status":{{"State":"{state}"}},"DesiredState":"{desired}"}}"#,
        node.replace("pi", "n")
    )
}

/// The tasks swarm wants running: api on pi2 and pi3, web on every node.
fn running() -> String {
    format!(
        "[{}]",
        [
            task("t1", "api.1", "pi2", "running", "running"),
            task("t2", "api.2", "pi3", "running", "running"),
            task("t3", "web.n1", "pi1", "running", "running"),
            task("t4", "web.n2", "pi2", "running", "running"),
            task("t5", "web.n3", "pi3", "running", "running"),
        ]
        .join(",")
    )
}

/// What the order of a maintenance shows on the manager: the lock (`lock`, `release`),
/// node updates through its Engine API (`drain N`, `active N`) and node polls (`poll`).
type Journal = Arc<Mutex<Vec<String>>>;

/// The manager of NODES, SERVICES and their running tasks, its lock and node updates
/// written to `j`.
fn manager_journal(j: &Journal) -> FakeRemote {
    let m = FakeRemote::new("pi1");
    m.grants_the_lock()
        .on_api(
            "GET /info",
            200,
            r#"{"Swarm":{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true}}"#,
        )
        .on_api("GET /nodes", 200, NODES)
        .on_api("GET /services", 200, SERVICES)
        .on_api("GET /tasks", 200, &running());
    for id in ["n1", "n2", "n3"] {
        m.on_api_first(
            &format!("GET /nodes/{id}"),
            200,
            &format!(
                r#"{{"ID":"{id}","Version":{{"Index":3}},"Spec":{{"Role":"worker","Availability":"active"}},"Description":{{"Hostname":"{}"}},"Status":{{"State":"ready"}}}}"#,
                id.replace('n', "pi")
            ),
        );
    }
    let jn = j.clone();
    m.on_api_fn("POST /nodes/", move |c| {
        let spec: serde_json::Value = serde_json::from_str(&c.body).unwrap();
        let id = c.line.split('/').nth(2).unwrap_or_default().to_string();
        jn.lock()
            .unwrap()
            .push(format!("{} {id}", spec["Availability"].as_str().unwrap()));
        (200, String::new())
    });
    let front = FakeRemote::new("pi1");
    let (jl, jr) = (j.clone(), j.clone());
    front
        .on_fn("mkdir /var/lib/rpiprov/lock", move |_| {
            jl.lock().unwrap().push("lock".into());
            ok("@@acquired\n")
        })
        .on_fn("@@released", move |_| {
            jr.lock().unwrap().push("release".into());
            ok("@@released\n")
        });
    m.prepend(&front);
    m
}

/// Node polls of `host` in turn (the last repeats): its tasks as given, each poll
/// written to the journal.
fn polls(m: &FakeRemote, j: &Journal, host: &str, each: Vec<Vec<(&str, &str, &str)>>) {
    let answers: Vec<String> = each
        .iter()
        .enumerate()
        .map(|(k, tasks)| {
            let all: Vec<String> = tasks
                .iter()
                .map(|(slot, desired, state)| {
                    task(&format!("p{k}-{slot}"), slot, host, desired, state)
                })
                .collect();
            format!("[{}]", all.join(","))
        })
        .collect();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let j = j.clone();
    m.on_api_fn("GET /tasks?filters=%7B%22node%22", move |_| {
        j.lock().unwrap().push("poll".into());
        let k = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (200, answers[k.min(answers.len() - 1)].clone())
    });
}

/// A worker whose daemon says it is node `id`.
fn worker(name: &str, id: &str) -> FakeRemote {
    let w = FakeRemote::new(name);
    w.on_api(
        "GET /info",
        200,
        &format!(r#"{{"Swarm":{{"NodeID":"{id}","LocalNodeState":"active"}}}}"#),
    );
    w
}

/// The node updates a manager was asked for, as `drain N` / `active N`.
fn updates(j: &Journal) -> Vec<String> {
    j.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("drain") || l.starts_with("active"))
        .cloned()
        .collect()
}

fn options(hosts: &[&str], work: Work) -> Options {
    Options {
        work,
        hosts: hosts
            .iter()
            .map(|h| (h.to_string(), InstallMethod::Distro))
            .collect(),
        managers: vec!["pi1".into()],
        batch: 1,
        max_unavailable: 1,
        force: false,
        timeout: Duration::from_secs(5),
        poll: Duration::from_millis(1),
        command_timeout: Duration::from_secs(5),
        owner: lock_owner("maintain"),
    }
}

fn sessions(all: &[&FakeRemote]) -> HashMap<String, Arc<FakeRemote>> {
    all.iter()
        .map(|f| (f.name.clone(), Arc::new((*f).clone())))
        .collect()
}

fn no_reconnect() -> Connect<FakeRemote> {
    Arc::new(|host| {
        Box::pin(async move {
            Err(RemoteError::Channel {
                host,
                reason: "no reconnection in this test".into(),
            })
        })
    })
}

/// Issue 13: drain, wait until the tasks really moved (not when `docker node update`
/// returns), do the work, back, active, the global service running there again; the
/// order and every step on the manager, under the lock.
#[tokio::test]
async fn a_node_is_drained_worked_on_and_brought_back_in_order() {
    let j = Journal::default();
    let pi1 = manager_journal(&j);
    let pi2 = worker("pi2", "n2");
    pi2.on("apt-get clean", ok("cleaned\n"));
    polls(
        &pi1,
        &j,
        "pi2",
        vec![
            // Just drained: still running there.
            vec![
                ("api.1", "shutdown", "running"),
                ("web.n2", "shutdown", "running"),
            ],
            // Stopped.
            vec![
                ("api.1", "shutdown", "shutdown"),
                ("web.n2", "shutdown", "shutdown"),
            ],
            // Active again, the global task not started yet, then running.
            vec![("web.n2", "running", "assigned")],
            vec![("web.n2", "running", "running")],
        ],
    );
    let rec = Arc::new(Recorder::default());
    let res = execute(
        &options(&["pi2"], Work::Command("apt-get clean".into())),
        sessions(&[&pi1, &pi2]),
        no_reconnect(),
        rec.clone(),
        std::future::pending(),
    )
    .await;
    assert_eq!(res.order, vec![vec!["pi2".to_string()]]);
    assert_eq!(res.done, vec!["pi2"]);
    assert!(res.stopped.is_none());
    let row = res.rows.iter().find(|r| r.label() == "pi2").unwrap();
    assert_eq!(
        row.changed,
        vec!["drained", "run the command", "active again"]
    );
    assert_eq!(
        *j.lock().unwrap(),
        vec![
            "lock",
            "drain n2",
            "poll",
            "poll",
            "active n2",
            "poll",
            "poll",
            "release",
        ]
    );
    // Through the Engine API only: no docker command on the manager but its relay.
    assert!(
        pi1.commands()
            .iter()
            .all(|c| crate::remote::stats::docker_calls(c) == 0 || c == "docker system dial-stdio"),
        "{:?}",
        pi1.commands()
    );
    // The work ran on pi2, as root, after the tasks had moved.
    let log = pi2.log.lock().unwrap().clone();
    let work = log.iter().find(|r| r.command == "apt-get clean").unwrap();
    assert!(work.privileged);
    assert!(
        rec.events()
            .contains(&"pi2: Output(\"cleaned\")".to_string()),
        "{:?}",
        rec.events()
    );
}

/// The first failure stops the run: that node stays drained, says so and what to do;
/// the next is not touched.
#[tokio::test]
async fn the_first_failure_stops_and_leaves_the_node_drained() {
    let j = Journal::default();
    let pi1 = manager_journal(&j);
    polls(&pi1, &j, "pi2", vec![vec![]]);
    let pi2 = worker("pi2", "n2");
    pi2.on("false", fail(3, "it broke"));
    let pi3 = worker("pi3", "n3");
    let res = execute(
        &options(&["pi2", "pi3"], Work::Command("false".into())),
        sessions(&[&pi1, &pi2, &pi3]),
        no_reconnect(),
        Arc::new(Recorder::default()),
        std::future::pending(),
    )
    .await;
    let stopped = res.stopped.unwrap();
    assert_eq!(stopped.host, "pi2");
    assert_eq!(
        stopped.error,
        "exit 3: it broke; pi2 is left drained (it takes no tasks): once fixed, run rpiprov maintain --on pi2 again, or make it take tasks with `docker node update --availability active n2` on a manager"
    );
    assert_eq!(updates(&j), ["drain n2"]);
    let pi3_row = res.rows.iter().find(|r| r.label() == "pi3").unwrap();
    assert_eq!(
        pi3_row.error.as_deref(),
        Some("not attempted: maintenance stopped at pi2")
    );
    // The lock is released all the same.
    assert_eq!(pi1.count("@@released"), 1);
}

/// A reboot is over when the node answers with a new boot id on a new connection, which
/// then replaces the old one; the same boot id is no reboot yet.
#[tokio::test]
async fn a_reboot_is_confirmed_by_a_new_boot_id() {
    const OLD: &str = "11111111-1111-4111-8111-111111111111";
    const NEW: &str = "22222222-2222-4222-8222-222222222222";
    let j = Journal::default();
    let pi1 = manager_journal(&j);
    polls(
        &pi1,
        &j,
        "pi2",
        vec![vec![], vec![("web.n2", "running", "running")]],
    );
    let pi2 = worker("pi2", "n2");
    pi2.on("random/boot_id", ok(&format!("{OLD}\n")))
        .on("@@rebooting", ok("@@rebooting\n"));
    // The first reconnection finds the node not rebooted yet, the second a new boot.
    let before = worker("pi2", "n2");
    before.on("random/boot_id", ok(&format!("{OLD}\n")));
    let after = worker("pi2", "n2");
    after.on("random/boot_id", ok(&format!("{NEW}\n")));
    let answers = Arc::new(Mutex::new(vec![after.clone(), before.clone()]));
    let reconnect: Connect<FakeRemote> = Arc::new(move |_| {
        let next = answers.lock().unwrap().pop().unwrap();
        Box::pin(async move { Ok(next) })
    });
    let res = execute(
        &options(&["pi2"], Work::Reboot { command: None }),
        sessions(&[&pi1, &pi2]),
        reconnect,
        Arc::new(Recorder::default()),
        std::future::pending(),
    )
    .await;
    assert!(res.stopped.is_none(), "{:?}", res.stopped);
    assert_eq!(res.done, vec!["pi2"]);
    // After the reboot, the node is asked through its new connection only (a relay of
    // its own there).
    assert_eq!(pi2.api_calls("GET /info").len(), 1, "{:?}", pi2.commands());
    assert_eq!(
        after.api_calls("GET /info").len(),
        1,
        "{:?}",
        after.commands()
    );
    assert_eq!(after.count("dial-stdio"), 1);
    assert!(before.api_calls("GET /info").is_empty());
}

/// A manager whose absence loses quorum is refused before anything is drained.
#[tokio::test]
async fn the_only_manager_is_refused_without_force() {
    let j = Journal::default();
    let pi1 = manager_journal(&j);
    let res = execute(
        &options(&["pi1"], Work::UpgradeDocker),
        sessions(&[&pi1]),
        no_reconnect(),
        Arc::new(Recorder::default()),
        std::future::pending(),
    )
    .await;
    let row = res.rows.iter().find(|r| r.label() == "pi1").unwrap();
    assert_eq!(row.failed_step.as_deref(), Some("plan"));
    assert!(
        row.error
            .as_deref()
            .unwrap()
            .starts_with("taking it down is refused: the swarm would lose quorum"),
        "{row:?}"
    );
    assert_eq!(updates(&j), Vec::<String>::new());
    assert_eq!(pi1.count("@@released"), 1);
}

/// Ctrl-C while a node is drained: the work stops, the lock is released, and the node's
/// row says it is left drained and what to do.
#[tokio::test]
async fn ctrl_c_names_the_node_left_drained() {
    let j = Journal::default();
    let pi1 = manager_journal(&j);
    // The tasks never move: the drain wait goes on until interrupted.
    polls(
        &pi1,
        &j,
        "pi2",
        vec![vec![("api.1", "shutdown", "running")]],
    );
    let pi2 = worker("pi2", "n2");
    let res = execute(
        &options(&["pi2"], Work::Command("true".into())),
        sessions(&[&pi1, &pi2]),
        no_reconnect(),
        Arc::new(Recorder::default()),
        tokio::time::sleep(Duration::from_millis(300)),
    )
    .await;
    let row = res.rows.iter().find(|r| r.label() == "pi2").unwrap();
    assert_eq!(
        row.error.as_deref(),
        Some(
            "interrupted (Ctrl-C) while pi2 was drained: it is left drained; run rpiprov maintain --on pi2 again, or make it take tasks with `docker node update --availability active n2` on a manager"
        )
    );
    assert_eq!(updates(&j), ["drain n2"]);
    assert_eq!(pi1.count("@@released"), 1);
    assert!(res.done.is_empty());
}
