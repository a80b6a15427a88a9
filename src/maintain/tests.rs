use super::*;
use crate::testing::{FakeRemote, Recorder, fail, lock_owner, ok};

const SNAPSHOT: &str = r#"@@nodes
{"ID":"n1","Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"10.0.0.1"}}
{"ID":"n2","Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2"},"Status":{"State":"ready","Addr":"10.0.0.2"}}
{"ID":"n3","Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready","Addr":"10.0.0.3"}}
@@services
s1	api	replicated	2/2
s2	web	global	3/3
@@tasks
t1	api.1	pi2	Running	Running 1 hour ago	
t2	api.2	pi3	Running	Running 1 hour ago	
t3	web.n1	pi1	Running	Running 1 hour ago	
t4	web.n2	pi2	Running	Running 1 hour ago	
t5	web.n3	pi3	Running	Running 1 hour ago	
"#;

fn manager() -> FakeRemote {
    let m = FakeRemote::new("pi1");
    m.on_api(
        "GET /info",
        200,
        r#"{"Swarm":{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true}}"#,
    )
    .on("ControlAvailable", ok("active true\n"))
    .on("Swarm.NodeID", ok("active n1\n"))
    .grants_the_lock()
    .on("@@nodes", ok(SNAPSHOT))
    .on("--availability", ok(""))
    .on("Spec.Availability", ok("ready drain\n"));
    m
}

/// A node poll of `host`: its tasks as given, and the swarm's services.
fn poll(host: &str, tasks: &[(&str, &str, &str)]) -> crate::remote::Output {
    let mut text =
        "@@services\ns1\tapi\treplicated\t2/2\ns2\tweb\tglobal\t3/3\n@@tasks\n".to_string();
    for (slot, desired, state) in tasks {
        text.push_str(&format!(
            "t-{slot}\t{slot}\t{host}\t{desired}\t{state} 1 second ago\t\n"
        ));
    }
    ok(&text)
}

fn worker(name: &str, id: &str) -> FakeRemote {
    let w = FakeRemote::new(name);
    w.on("Swarm.NodeID", ok(&format!("active {id}\n")));
    w
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
    let pi1 = manager();
    let pi2 = worker("pi2", "n2");
    pi2.on("apt-get clean", ok("cleaned\n"));
    pi1.on_seq(
        "docker node ps",
        vec![
            // Just drained: still running there.
            poll(
                "pi2",
                &[
                    ("api.1", "Shutdown", "Running"),
                    ("web.n2", "Shutdown", "Running"),
                ],
            ),
            // Stopped.
            poll(
                "pi2",
                &[
                    ("api.1", "Shutdown", "Shutdown"),
                    ("web.n2", "Shutdown", "Shutdown"),
                ],
            ),
            // Active again, the global task not started yet, then running.
            poll("pi2", &[("web.n2", "Running", "Assigned")]),
            poll("pi2", &[("web.n2", "Running", "Running")]),
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
    let on_manager: Vec<String> = pi1
        .commands()
        .into_iter()
        .filter(|c| c.contains("availability") || c.contains("node ps") || c.contains("lock"))
        .map(|c| {
            if c.contains("node ps") {
                "poll".to_string()
            } else if c.contains("@@released") {
                "release".to_string()
            } else if c.contains("lock") {
                "lock".to_string()
            } else {
                c
            }
        })
        .collect();
    assert_eq!(
        on_manager,
        vec![
            "lock",
            "docker node update --availability drain n2",
            "poll",
            "poll",
            "docker node update --availability active n2",
            "poll",
            "poll",
            "release",
        ]
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
    let pi1 = manager();
    pi1.on("docker node ps", poll("pi2", &[]));
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
    assert_eq!(pi1.count("--availability active"), 0);
    assert_eq!(pi1.count("--availability drain n3"), 0);
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
    let pi1 = manager();
    pi1.on_seq(
        "docker node ps",
        vec![
            poll("pi2", &[]),
            poll("pi2", &[("web.n2", "Running", "Running")]),
        ],
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
    // After the reboot, the node is asked through its new connection only.
    assert_eq!(pi2.count("LocalNodeState"), 1, "{:?}", pi2.commands());
    assert_eq!(after.count("LocalNodeState"), 1, "{:?}", after.commands());
    assert_eq!(before.count("LocalNodeState"), 0);
}

/// A manager whose absence loses quorum is refused before anything is drained.
#[tokio::test]
async fn the_only_manager_is_refused_without_force() {
    let pi1 = manager();
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
    assert_eq!(pi1.count("--availability"), 0);
    assert_eq!(pi1.count("@@released"), 1);
}

/// Ctrl-C while a node is drained: the work stops, the lock is released, and the node's
/// row says it is left drained and what to do.
#[tokio::test]
async fn ctrl_c_names_the_node_left_drained() {
    let pi1 = manager();
    // The tasks never move: the drain wait goes on until interrupted.
    pi1.on(
        "docker node ps",
        poll("pi2", &[("api.1", "Shutdown", "Running")]),
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
    assert_eq!(pi1.count("--availability active"), 0);
    assert_eq!(pi1.count("@@released"), 1);
    assert!(res.done.is_empty());
}
