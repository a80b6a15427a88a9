//! Tests of `deploy`: preparation and fingerprints (pure), and the executor against
//! scripted fake hosts.

use std::path::PathBuf;

use super::*;
use crate::config::interpolate::substitute;
use crate::config::{Image, ImageFormat, Playbook, Stack, Variable, VariableValue};
use crate::docker::paths::current_release;
use crate::exec::engine::Engines;
use crate::testing::{FakeRemote, Recorder, fail, ok};

const SECRET: &str = "s3cr3t-VALUE";

/// A stack of the shared builder, whose compose file reads these variables.
fn stack(name: &str, order: i64, services: &[&str], images: &[&str], vars: &[&str]) -> Stack {
    let mut s = crate::testing::stack(name, order, services, images);
    s.compose.variables = vars.iter().map(|v| v.to_string()).collect();
    s
}

fn playbook() -> Playbook {
    Playbook {
        path: PathBuf::from("playbook.toml"),
        networks: vec![],
        stacks: vec![
            stack("web", 1, &["app"], &["lab/httpd:1"], &["TAG"]),
            stack("db", 2, &["pg"], &["postgres:16"], &["DB_PASSWORD"]),
        ],
        images: vec![Image {
            name: "lab/httpd:1".into(),
            archive: PathBuf::from("images/httpd.tar"),
            format: ImageFormat::Rootfs,
            cmd: vec!["httpd".into(), "-f".into()],
        }],
        variables: vec![
            Variable {
                name: "TAG".into(),
                value: VariableValue::Plain("1".into()),
            },
            Variable {
                name: "DB_PASSWORD".into(),
                value: VariableValue::SecretEnv("RPIPROV_TEST_DB".into()),
            },
        ],
    }
}

fn files() -> HashMap<PathBuf, Vec<u8>> {
    [
        (
            "stacks/web.yml",
            "services:\n  app:\n    image: lab/httpd:1\n    environment: [TAG=${TAG}]\n",
        ),
        (
            "stacks/db.yml",
            "services:\n  pg:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD:?}\n",
        ),
        ("images/httpd.tar", "ROOTFS-TAR-BYTES"),
    ]
    .into_iter()
    .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
    .collect()
}

fn prepared_from(pb: &Playbook, files: &HashMap<PathBuf, Vec<u8>>, secret: &str) -> Prepared {
    prepare_with(
        pb,
        |p| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        },
        |k| (k == "RPIPROV_TEST_DB").then(|| secret.to_string()),
    )
    .unwrap()
}

fn prepared() -> Prepared {
    prepared_from(&playbook(), &files(), SECRET)
}

// ---------------------------------------------------------------------------------------
// Preparation and fingerprints

#[test]
fn prepare_reads_files_and_sends_each_stack_only_its_variables() {
    let p = prepared();
    assert_eq!(p.stacks[0].release.compose, "files/web.yml");
    assert_eq!(p.stacks[0].images, vec!["lab/httpd:1"]);
    assert_eq!(p.stacks[1].images, Vec::<String>::new());
    let names = |s: &PreparedStack| {
        s.variables
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&p.stacks[0]), vec!["TAG"]);
    assert_eq!(names(&p.stacks[1]), vec!["DB_PASSWORD"]);
    assert!(p.stacks[1].variables[0].secret);
    assert!(!format!("{p:?}").contains(SECRET));
}

/// Issue 19 item 4: an `environment:` entry without a value takes this machine's value,
/// sent as a secret variable (stdin, redacted); one this machine lacks is not sent; the
/// value is in the fingerprint.
#[test]
fn environment_entries_without_a_value_are_taken_from_here() {
    let mut pb = playbook();
    let place = |k: &str| crate::config::compose::Place {
        file: "stacks/web.yml".into(),
        line: Some(5),
        column: Some(9),
        key_path: format!("services.app.environment.{k}"),
    };
    pb.stacks[0].compose.from_here = ["WHITELIST", "UNSET_HERE"]
        .iter()
        .map(|n| crate::config::FromHere {
            name: n.to_string(),
            empty: false,
            place: place(n),
        })
        .collect();
    let env = |value: &'static str| {
        move |k: &str| match k {
            "WHITELIST" => Some(value.to_string()),
            "RPIPROV_TEST_DB" => Some(SECRET.to_string()),
            _ => None,
        }
    };
    let read = |p: &std::path::Path| Ok(files()[p].clone());
    let p = prepare_with(&pb, read, env("10.0.0.0/8")).unwrap();
    let vars: Vec<(&str, bool)> = p.stacks[0]
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.secret))
        .collect();
    assert_eq!(vars, [("TAG", false), ("WHITELIST", true)]);
    assert_eq!(p.stacks[0].variables[1].value.expose(), "10.0.0.0/8");
    assert!(!format!("{p:?}").contains("10.0.0.0/8"));
    let other = prepare_with(&pb, read, env("192.168.0.0/16")).unwrap();
    assert_ne!(p.stacks[0].fingerprint, other.stacks[0].fingerprint);
    let err = prepare_with(&pb, read, env("a\nb")).unwrap_err();
    assert_eq!(
        err,
        "stack web: stacks/web.yml:5:9: services.app.environment.WHITELIST: WHITELIST from this machine's environment contains a newline or NUL byte, which cannot be passed to docker stack deploy"
    );
}

/// Issue 19 item 6: a command's output is a secret variable, run only when a stack uses
/// it; its failure names the variable.
#[test]
fn a_command_gives_a_secret_variable() {
    let mut pb = playbook();
    let command = |script: &str| {
        VariableValue::SecretCommand(crate::config::ValueCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: std::time::Duration::from_secs(30),
        })
    };
    pb.variables[1].value = command("printf 's3cr3t-VALUE\\n'");
    pb.variables.push(Variable {
        name: "UNUSED".into(),
        value: command("exit 1"),
    });
    let read = |p: &std::path::Path| Ok(files()[p].clone());
    let p = prepare_with(&pb, read, |_| None).unwrap();
    assert_eq!(p.stacks[1].variables[0].value.expose(), SECRET);
    assert!(p.stacks[1].variables[0].secret);
    pb.variables[1].value = command("echo 'gpg: decryption failed' >&2; exit 2");
    let err = prepare_with(&pb, read, |_| None).unwrap_err();
    assert_eq!(
        err,
        "variable DB_PASSWORD: command `sh -c echo 'gpg: decryption failed' >&2; exit 2`: exited with status 2: gpg: decryption failed"
    );
}

#[test]
fn prepare_refuses_bad_values_without_showing_them() {
    let pb = playbook();
    let err = prepare_with(
        &pb,
        |p| Ok(files()[p].clone()),
        |_| Some("line1\nline2".into()),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "variable DB_PASSWORD: its value contains a newline or NUL byte, which cannot be passed to docker stack deploy"
    );
    let err = prepare_with(&pb, |p| Ok(files()[p].clone()), |_| None).unwrap_err();
    assert_eq!(
        err,
        "variable DB_PASSWORD: the environment variable RPIPROV_TEST_DB is not set"
    );
    let mut bad = playbook();
    bad.stacks[0].name = "..".into();
    let err = prepare_with(&bad, |p| Ok(files()[p].clone()), |_| Some("x".into())).unwrap_err();
    assert_eq!(
        err,
        "stack \"..\": the name must be letters, digits, '-', '_' or '.'"
    );
    let err = prepare_with(
        &playbook(),
        |_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        |_| Some("x".into()),
    )
    .unwrap_err();
    assert!(err.starts_with("image lab/httpd:1: cannot read images/httpd.tar"));
}

#[test]
fn fingerprint_is_stable_and_moves_with_every_input() {
    let base = prepared();
    let again = prepared();
    assert_eq!(base.stacks[0].fingerprint, again.stacks[0].fingerprint);
    assert_eq!(base.stacks[0].fingerprint.len(), 64);

    // Variable order does not matter.
    let mut pb = playbook();
    pb.variables.reverse();
    assert_eq!(
        prepared_from(&pb, &files(), SECRET).stacks[1].fingerprint,
        base.stacks[1].fingerprint
    );

    // A changed secret changes only the stack that uses it.
    let other = prepared_from(&playbook(), &files(), "another");
    assert_ne!(other.stacks[1].fingerprint, base.stacks[1].fingerprint);
    assert_eq!(other.stacks[0].fingerprint, base.stacks[0].fingerprint);

    // A changed image archive changes the stack that uses it.
    let mut f = files();
    f.insert(PathBuf::from("images/httpd.tar"), b"NEW-TAR".to_vec());
    let other = prepared_from(&playbook(), &f, SECRET);
    assert_ne!(other.stacks[0].fingerprint, base.stacks[0].fingerprint);
    assert_eq!(other.stacks[1].fingerprint, base.stacks[1].fingerprint);

    // A byte of the compose file.
    let mut f = files();
    f.get_mut(&PathBuf::from("stacks/db.yml"))
        .unwrap()
        .push(b'\n');
    let other = prepared_from(&playbook(), &f, SECRET);
    assert_ne!(other.stacks[1].fingerprint, base.stacks[1].fingerprint);

    // A plain value; and the secret value never appears in the fingerprint input form.
    let mut pb = playbook();
    pb.variables[0].value = VariableValue::Plain("2".into());
    assert_ne!(
        prepared_from(&pb, &files(), SECRET).stacks[0].fingerprint,
        base.stacks[0].fingerprint
    );
}

#[test]
fn image_references_are_interpolated_to_find_shipped_images() {
    let look = |n: &str| (n == "TAG").then(|| "1".to_string());
    assert_eq!(
        substitute("lab/httpd:${TAG}", &look).unwrap(),
        "lab/httpd:1"
    );
    let mut pb = playbook();
    pb.stacks[0].compose.images = vec!["lab/httpd:${TAG}".into()];
    let p = prepared_from(&pb, &files(), SECRET);
    assert_eq!(p.stacks[0].images, vec!["lab/httpd:1"]);
}

#[test]
fn decisions() {
    let mut state = StackState::default();
    assert_eq!(
        decide("aa", &state, "web"),
        Decision::Deploy("not deployed by rpiprov before")
    );
    state.recorded.insert("web".into(), "aa".into());
    assert_eq!(
        decide("aa", &state, "web"),
        Decision::Deploy("stack is missing")
    );
    state.existing.insert("web".into());
    assert_eq!(decide("aa", &state, "web"), Decision::Unchanged);
    assert_eq!(
        decide("bb", &state, "web"),
        Decision::Deploy("changed since its last deploy")
    );
}

// ---------------------------------------------------------------------------------------
// Executor

/// One service as a poll of the manager's Engine API sees it, with its tasks.
#[derive(Clone)]
struct Svc {
    stack: String,
    /// `web_app`.
    name: String,
    global: bool,
    running: u64,
    desired: u64,
    tasks: Vec<Tk>,
}

/// A task: its id, slot (0 for a global service's), node, state, desired state, error.
#[derive(Clone)]
struct Tk {
    id: String,
    slot: u64,
    node: String,
    state: String,
    desired: String,
    error: String,
}

fn tk(id: &str, slot: u64, node: &str, state: &str, desired: &str, error: &str) -> Tk {
    Tk {
        id: id.into(),
        slot,
        node: node.into(),
        state: state.into(),
        desired: desired.into(),
        error: error.into(),
    }
}

impl Svc {
    fn json(&self) -> String {
        let mode = if self.global {
            serde_json::json!({"Global": {}})
        } else {
            serde_json::json!({"Replicated": {"Replicas": self.desired}})
        };
        serde_json::json!({
            "ID": format!("s-{}", self.name),
            "Version": {"Index": 9},
            "Spec": {"Name": self.name, "Labels": {"com.docker.stack.namespace": self.stack},
                "TaskTemplate": {"ContainerSpec": {"Image": "lab/httpd:1"}}, "Mode": mode},
            "ServiceStatus": {"RunningTasks": self.running, "DesiredTasks": self.desired},
        })
        .to_string()
    }

    fn tasks_json(&self) -> Vec<String> {
        self.tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "ID": t.id, "ServiceID": format!("s-{}", self.name), "Slot": t.slot,
                    "NodeID": format!("id-{}", t.node),
                    "Spec": {"ContainerSpec": {"Image": "lab/httpd:1"}},
                    "Status": {"State": t.state, "Err": t.error}, "DesiredState": t.desired,
                })
                .to_string()
            })
            .collect()
    }
}

/// `STACK_SVC`, one replica running on pi1.
fn converged(stack: &str, svc: &str) -> Svc {
    Svc {
        stack: stack.into(),
        name: format!("{stack}_{svc}"),
        global: false,
        running: 1,
        desired: 1,
        tasks: vec![tk(
            &format!("t-{stack}"),
            1,
            "pi1",
            "running",
            "running",
            "",
        )],
    }
}

/// The same, its task still preparing.
fn starting(stack: &str, svc: &str) -> Svc {
    let mut s = converged(stack, svc);
    s.running = 0;
    s.tasks[0].state = "preparing".into();
    s
}

/// The same, its task rejected on pi2 with `error`.
fn rejected(stack: &str, svc: &str, error: &str) -> Svc {
    let mut s = converged(stack, svc);
    s.running = 0;
    s.tasks[0] = tk(
        &format!("t-{stack}"),
        1,
        "pi2",
        "rejected",
        "running",
        error,
    );
    s
}

/// A global service running on pi1 .. pi`running`.
fn global(stack: &str, svc: &str, running: u64) -> Svc {
    Svc {
        stack: stack.into(),
        name: format!("{stack}_{svc}"),
        global: true,
        running,
        desired: running,
        tasks: (1..=running)
            .map(|i| {
                tk(
                    &format!("g{i}"),
                    0,
                    &format!("pi{i}"),
                    "running",
                    "running",
                    "",
                )
            })
            .collect(),
    }
}

/// The manager's swarm over successive polls: each poll a list of services; a poll is
/// counted by its `GET /tasks`, and the last one repeats. `GET /services` (the stacks'
/// state read too) answers the poll to come.
fn serve_polls(m: &FakeRemote, polls: Vec<Vec<Svc>>) {
    let polls = Arc::new(polls);
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let at = |polls: &[Vec<Svc>], k: usize| polls[k.min(polls.len() - 1)].clone();
    let (p, n) = (polls.clone(), seen.clone());
    m.on_api_fn("GET /services?", move |_| {
        let k = n.load(std::sync::atomic::Ordering::SeqCst);
        let all: Vec<String> = at(&p, k).iter().map(Svc::json).collect();
        (200, format!("[{}]", all.join(",")))
    });
    m.on_api_fn("GET /tasks", move |_| {
        let k = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<String> = at(&polls, k).iter().flat_map(Svc::tasks_json).collect();
        (200, format!("[{}]", all.join(",")))
    });
}

/// How many polls the manager was asked for.
fn polls_of(m: &FakeRemote) -> usize {
    m.api_calls("GET /tasks").len()
}

/// The lab's three nodes as the Engine API lists them, `down` ones down in the swarm.
fn swarm_nodes(down: &[&str]) -> String {
    let nodes: Vec<String> = ["pi1", "pi2", "pi3"]
        .iter()
        .map(|n| {
            let state = if down.contains(n) { "down" } else { "ready" };
            format!(
                "{{\"ID\":\"id-{n}\",\"Spec\":{{\"Role\":\"worker\",\"Availability\":\"active\"}},\"Description\":{{\"Hostname\":\"{n}\"}},\"Status\":{{\"State\":\"{state}\"}}}}"
            )
        })
        .collect();
    format!("[{}]", nodes.join(","))
}

/// The playbook's image, as a node's Engine API and records say: `held` when the node
/// has it from the same archive (amd64, on the classic store). The node's engine of the
/// command serves the check and the load; a bind check's `GET /info` (set first) answers
/// the image store's question too.
fn images_on(n: &FakeRemote, held: bool) {
    use sha2::{Digest, Sha256};
    let sha = hex::encode(Sha256::digest(b"ROOTFS-TAR-BYTES"));
    let record = if held {
        format!("record 0 {sha} lab/httpd:1\n")
    } else {
        "record 0 \n".to_string()
    };
    n.on("printf 'record 0", ok(&record))
        .on("mkdir -p /var/lib/rpiprov/images", ok(""));
    let version =
        r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Arch":"amd64"}"#;
    n.on_api("GET /version", 200, version)
        .on_api("GET /info", 200, r#"{"DriverStatus":[]}"#);
    if held {
        n.on_api(
            "GET /images/lab/httpd:1/json",
            200,
            r#"{"Architecture":"amd64"}"#,
        );
    } else {
        n.on_api_once("GET /images/lab/httpd:1/json", 404, "{}")
            .on_api(
                "GET /images/lab/httpd:1/json",
                200,
                r#"{"Architecture":"amd64"}"#,
            );
    }
}

/// A manager that grants the lock and says which stacks are recorded and which file sets
/// it holds (`state`: `deployed NAME FP` and `release NAME ID` lines); its swarm holds the
/// stacks named by `stack NAME` lines, each with one converged service, until the test
/// serves other polls; its three nodes are ready.
fn manager(state: &str) -> FakeRemote {
    let m = FakeRemote::new("pi1");
    images_on(&m, true);
    m.grants_the_lock()
        .on("echo 'deployed ", ok(state))
        .on("tar -x -o", ok("@@extracted\n"))
        .on("docker stack deploy", ok("Creating service x\n"))
        .on(".deployed.new", ok(""))
        .on_api("GET /nodes", 200, &swarm_nodes(&[]))
        .on_api("GET /networks", 200, "[]");
    let existing: Vec<Svc> = state
        .lines()
        .filter_map(|l| l.strip_prefix("stack "))
        .map(|st| converged(st, "app"))
        .collect();
    serve_polls(&m, vec![existing]);
    m
}

/// The commands that recorded a deploy, one per stack.
fn records(m: &FakeRemote) -> Vec<String> {
    m.commands()
        .into_iter()
        .filter(|c| c.contains(".deployed.new"))
        .collect()
}

/// The stacks whose file set was sent, with what was sent.
fn sent_sets(m: &FakeRemote) -> Vec<(String, Vec<u8>)> {
    m.log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.command.contains("tar -x -o"))
        .map(|r| {
            let stack = r
                .command
                .split("/var/lib/rpiprov/stacks/")
                .nth(1)
                .and_then(|x| x.split('/').next())
                .unwrap_or_default()
                .to_string();
            (stack, r.stdin.clone().unwrap_or_default())
        })
        .collect()
}

fn options() -> Options {
    Options {
        parallel: 4,
        command_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(2),
        settle: Duration::from_millis(5),
        owner: crate::testing::lock_owner("deploy"),
        skip_bind_check: false,
    }
}

async fn deploy_on(
    prepared: &Prepared,
    m: &FakeRemote,
    others: &[FakeRemote],
) -> (DeployResult, Vec<String>) {
    deploy_until(prepared, m, others, std::future::pending()).await
}

async fn deploy_until(
    prepared: &Prepared,
    m: &FakeRemote,
    others: &[FakeRemote],
    interrupt: impl Future<Output = ()>,
) -> (DeployResult, Vec<String>) {
    deploy_with(&options(), prepared, m, others, interrupt).await
}

async fn deploy_with(
    opts: &Options,
    prepared: &Prepared,
    m: &FakeRemote,
    others: &[FakeRemote],
    interrupt: impl Future<Output = ()>,
) -> (DeployResult, Vec<String>) {
    let (leader, nodes) = crate::testing::fleet(m, others);
    let engines = Arc::new(Engines::new(&nodes, opts.command_timeout));
    let rec = Arc::new(Recorder::default());
    let res = execute(
        opts,
        prepared,
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

/// The manager's state as a previous successful deploy left it: every stack recorded with
/// its fingerprint, its file set there.
fn already_deployed(p: &Prepared) -> String {
    let mut state = String::new();
    for s in &p.stacks {
        state.push_str(&format!(
            "stack {}\ndeployed {} {}\nrelease {} {}\n",
            s.name, s.name, s.fingerprint, s.name, s.release.id
        ));
    }
    state
}

/// A node that holds the shipped image.
fn worker() -> FakeRemote {
    let w = FakeRemote::new("pi2");
    images_on(&w, true);
    w
}

#[tokio::test]
async fn an_unchanged_playbook_deploys_nothing_and_says_so() {
    let p = prepared();
    let m = manager(&already_deployed(&p));
    let w = worker();
    let (res, events) = deploy_on(&p, &m, std::slice::from_ref(&w)).await;
    assert!(!res.failed() && !res.changed(), "{res:?}");
    assert_eq!(m.count("docker stack deploy"), 0);
    assert_eq!(polls_of(&m), 0);
    // Issue 17: one `docker` process per host, its relay: everything else was read
    // through it or from files.
    for f in [&m, &w] {
        let docker: Vec<String> = f
            .commands()
            .into_iter()
            .filter(|c| crate::remote::stats::docker_calls(c) > 0)
            .collect();
        assert_eq!(docker, ["docker system dial-stdio"], "{}", f.name);
    }
    assert!(sent_sets(&m).is_empty() && records(&m).is_empty());
    assert!(
        res.stacks
            .iter()
            .all(|s| s.status == StackStatus::Unchanged)
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("all 2 stacks unchanged since their last deploy; nothing deployed")),
        "{events:?}"
    );
    // The lock was taken first and released last.
    let cmds = m.commands();
    assert!(cmds[0].contains("mkdir /var/lib/rpiprov/lock"));
    assert!(cmds.last().unwrap().contains("@@released"));
    assert_eq!(
        crate::ui::summary::summary("deploy", &res.rows, Duration::from_secs(1))
            .lines()
            .last()
            .unwrap(),
        "deploy: no change on any host (4 hosts, 1.0s)"
    );
}

#[tokio::test]
async fn only_the_changed_stack_is_redeployed_and_waited_for() {
    let old = prepared_from(&playbook(), &files(), "old-password");
    let p = prepared();
    let m = manager(&already_deployed(&old));
    // The db stack converges on the third poll.
    let web = converged("web", "app");
    serve_polls(
        &m,
        vec![
            vec![web.clone(), starting("db", "pg")],
            vec![web.clone(), starting("db", "pg")],
            vec![web, converged("db", "pg")],
        ],
    );
    let (res, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(!res.failed(), "{res:?}");
    let deploys: Vec<String> = m
        .commands()
        .into_iter()
        .filter(|c| c.contains("docker stack deploy"))
        .collect();
    let id = &p.stacks[1].release.id;
    assert_eq!(
        deploys,
        vec![format!(
            "cd /var/lib/rpiprov/stacks/db && ln -sfn releases/{id} .current.new && mv -T .current.new current && cd /var/lib/rpiprov/stacks/db/current/files && while IFS= read -r kv; do export \"$kv\"; done; exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/db/current/files/db.yml db"
        )]
    );
    // Only a variable changed: the file set is there already, nothing is sent.
    assert!(sent_sets(&m).is_empty());
    // Ready on the third poll; converged on a later one, once its task had been seen
    // running for the settle time.
    assert!(polls_of(&m) >= 4, "{}", polls_of(&m));
    assert_eq!(res.stacks[0].status, StackStatus::Unchanged);
    assert_eq!(res.stacks[1].status, StackStatus::Deployed);
    assert_eq!(
        res.stacks[1].why.as_deref(),
        Some("changed since its last deploy")
    );
    assert_eq!(res.stacks[1].services[0].replicas, "1/1");
    // The new fingerprint is recorded, and the other file sets go.
    let rec = records(&m);
    assert_eq!(rec.len(), 1);
    assert!(
        rec[0].contains(&format!("printf '%s\\n' {} >", p.stacks[1].fingerprint)),
        "{}",
        rec[0]
    );
    assert!(rec[0].contains(&format!("!= /var/lib/rpiprov/stacks/db/releases/{id} ]")));
    // The secret went on stdin only.
    let req = m
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.command.contains("docker stack deploy"))
        .cloned()
        .unwrap();
    assert_eq!(
        req.stdin.as_deref(),
        Some(format!("DB_PASSWORD={SECRET}\n").as_bytes())
    );
    assert!(events.iter().any(|e| e.contains("0/1 services converged")));
    let row = res.rows.iter().find(|r| r.label() == "stack db").unwrap();
    assert_eq!(
        row.changed,
        vec!["deployed (changed since its last deploy); 1 service(s) converged"]
    );
}

#[tokio::test]
async fn a_first_deploy_uploads_ships_and_resolves_no_image() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    serve_polls(
        &m,
        vec![vec![converged("web", "app"), converged("db", "pg")]],
    );
    let w = FakeRemote::new("pi2");
    images_on(&w, false);
    w.on_api("POST /images/create", 200, "{\"status\":\"sha256:abc\"}\n");
    let (res, events) = deploy_on(&p, &m, std::slice::from_ref(&w)).await;
    assert!(!res.failed(), "{res:?}");
    // Each row ends as soon as its part is done, not when the run ends: the node once
    // its image is loaded, each stack once it converged (the next stack deploys as soon
    // as the one before is ready, so a stack may end after the next one started).
    let at = |e: &str| {
        events
            .iter()
            .position(|x| x.starts_with(e))
            .unwrap_or_else(|| panic!("no {e}: {events:#?}"))
    };
    assert!(at("pi2: Done(Changed") < at("stack web: Step(\"upload\")"));
    assert!(at("stack web: Step(\"wait for convergence") < at("stack db: Step(\"upload\")"));
    assert!(at("stack web: Done(Changed") < at("pi1: Step(\"release the deploy lock"));
    assert!(m.commands().iter().any(|c| c.ends_with(
        "exec docker stack deploy --prune --resolve-image never -c /var/lib/rpiprov/stacks/web/current/files/web.yml web"
    )));
    // Each stack's file set went as one tar stream, before its deploy; nothing else was
    // uploaded (the records are written by a command).
    let sets = sent_sets(&m);
    assert_eq!(
        sets.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["web", "db"]
    );
    assert_eq!(sets[0].1, p.stacks[0].release.tar);
    assert!(m.uploads.lock().unwrap().is_empty());
    let cmds = m.commands();
    let pos = |t: &str| cmds.iter().position(|c| c.contains(t)).unwrap();
    assert!(pos("releases/.incoming") < pos("exec docker stack deploy"));
    assert_eq!(records(&m).len(), 2);
    let pi2 = res.rows.iter().find(|r| r.label() == "pi2").unwrap();
    assert_eq!(pi2.changed, vec!["load image lab/httpd:1"]);
    // The archive went as the body of an import on the node's Engine API.
    let imports = w.api_calls("POST /images/create");
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].body, "ROOTFS-TAR-BYTES");
    assert_eq!(imports[0].version.as_deref(), Some("1.41"));
    let pi1 = res.rows.iter().find(|r| r.label() == "pi1").unwrap();
    assert_eq!(
        pi1.changed,
        vec![
            format!(
                "upload web (1 file(s), {} bytes)",
                files()[&PathBuf::from("stacks/web.yml")].len()
            ),
            format!(
                "upload db (1 file(s), {} bytes)",
                files()[&PathBuf::from("stacks/db.yml")].len()
            ),
        ]
    );
}

#[tokio::test]
async fn a_service_that_does_not_converge_is_reported_with_swarm_s_reason() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    serve_polls(
        &m,
        vec![vec![rejected("web", "app", "No such image: lab/httpd:1")]],
    );
    let (res, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(res.failed());
    let web = &res.stacks[0];
    assert_eq!(web.status, StackStatus::Failed);
    assert_eq!(web.failed_step.as_deref(), Some("converge"));
    assert_eq!(
        web.error.as_deref(),
        Some("not converged after 0.2s\nweb_app 0/1: No such image: lab/httpd:1 (on pi2)")
    );
    assert_eq!(
        web.services[0].reasons,
        vec!["No such image: lab/httpd:1 (on pi2)"]
    );
    // The stack after it is not attempted, nothing is recorded, the lock is released.
    assert_eq!(res.stacks[1].status, StackStatus::Skipped);
    assert_eq!(
        res.stacks[1].error.as_deref(),
        Some("not attempted: stack web failed before it")
    );
    assert_eq!(m.count("docker stack deploy"), 1);
    assert!(
        !m.uploads
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.dest.ends_with("/deployed"))
    );
    assert!(m.commands().last().unwrap().contains("@@released"));
    let summary = crate::ui::summary::summary("deploy", &res.rows, Duration::from_secs(1));
    assert!(summary.contains("stack web  FAILED"), "{summary}");
    assert!(summary.contains("web_app 0/1: No such image: lab/httpd:1 (on pi2)"));
    assert!(events.iter().any(|e| e.contains("stack web: Done(Failed")));
    let json = serde_json::to_value(&res).unwrap();
    assert_eq!(json["stacks"][0]["status"], "failed");
    assert_eq!(json["stacks"][0]["services"][0]["replicas"], "0/1");
    assert_eq!(json["stacks"][1]["status"], "skipped");
}

/// Issue 14, measured: a worker's link cut during a deploy; swarm marks it down and counts
/// the global service 2/2. The stack fails naming the node and the service, within its
/// time; the stacks after it still deploy (they do not need a task on a dead node); the
/// node's row fails saying what does not run there.
#[tokio::test]
async fn a_global_service_missing_on_a_down_node_fails_its_stack_and_names_the_node() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    m.on_api_first("GET /nodes", 200, &swarm_nodes(&["pi3"]));
    serve_polls(
        &m,
        vec![vec![global("web", "app", 2), converged("db", "pg")]],
    );
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(res.failed());
    let web = &res.stacks[0];
    assert_eq!(web.status, StackStatus::Failed);
    assert_eq!(web.failed_step.as_deref(), Some("converge"));
    let text = web.error.as_deref().unwrap();
    assert!(
        text.starts_with("global services do not run on nodes down in the swarm"),
        "{text}"
    );
    assert!(
        text.ends_with("\nweb_app 2/2: not running on pi3: the node is down in the swarm"),
        "{text}"
    );
    assert_eq!(res.stacks[1].status, StackStatus::Deployed);
    // Not recorded: the next deploy deploys it again and waits for it.
    assert!(
        !m.uploads
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.dest.ends_with("/web/deployed"))
    );
    let pi3 = res
        .rows
        .iter()
        .find(|r| r.label() == "pi3")
        .expect("pi3's row");
    assert_eq!(
        pi3.detail(),
        "swarm: down in the swarm (swarm says down): web_app not running there; bring the node back (power, network, dockerd), then deploy again"
    );
}

/// The same with nothing to deploy: a deploy that changes nothing still says that the
/// global service does not run on the down node, and exits 1.
#[tokio::test]
async fn an_unchanged_deploy_still_names_a_down_node_and_what_misses_it() {
    let p = prepared();
    let m = manager(&already_deployed(&p));
    m.on_api_first("GET /nodes", 200, &swarm_nodes(&["pi2"]));
    let mut web = global("web", "app", 3);
    web.tasks.remove(1);
    web.running = 2;
    web.desired = 2;
    serve_polls(&m, vec![vec![web, converged("db", "pg")]]);
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(res.failed());
    assert_eq!(m.count("docker stack deploy"), 0);
    assert_eq!(
        res.stacks[0].error.as_deref(),
        Some(
            "global services do not run on nodes down in the swarm\nweb_app 2/2: not running on pi2: the node is down in the swarm"
        )
    );
    assert_eq!(res.stacks[1].status, StackStatus::Unchanged);
    let pi2 = res.rows.iter().find(|r| r.label() == "pi2").unwrap();
    assert!(
        pi2.detail().starts_with("swarm: down in the swarm"),
        "{}",
        pi2.detail()
    );
}

/// Issue 10 item 5: an error that retrying cannot fix, on two attempts, ends the wait
/// long before the stack's timeout, naming the service, the error and the nodes; while
/// waiting, each service's latest error is shown.
#[tokio::test]
async fn an_error_retrying_cannot_fix_ends_the_wait_early() {
    let mut p = prepared();
    p.stacks[0].timeout = Duration::from_secs(60);
    let m = manager("deployed web \ndeployed db \n");
    // Nothing failed yet when the wait begins; then one attempt, then a second.
    let one = rejected("web", "app", "No such image: lab/httpd:1");
    let mut two = one.clone();
    two.tasks.push(tk(
        "t-again",
        1,
        "pi3",
        "rejected",
        "shutdown",
        "No such image: lab/httpd:1",
    ));
    serve_polls(&m, vec![vec![starting("web", "app")], vec![one], vec![two]]);
    let started = std::time::Instant::now();
    let (res, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let web = &res.stacks[0];
    assert_eq!(web.status, StackStatus::Failed);
    assert_eq!(web.failed_step.as_deref(), Some("converge"));
    let error = web.error.as_deref().unwrap();
    assert!(
        error.starts_with("gave up after ")
            && error.ends_with(": swarm rejects the tasks with an error that retrying cannot fix\nweb_app 0/1: No such image: lab/httpd:1 (on pi2, pi3; 2 attempts)"),
        "{error}"
    );
    // The second poll showed one attempt: the error, not yet a verdict.
    assert!(
        events.iter().any(|e| e
            == "stack web: Output(\"0/1 services converged; web_app: No such image: lab/httpd:1 (on pi2)\")"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "stack web: Note(\"web_app: No such image: lab/httpd:1 (on pi2)\")"),
        "{events:?}"
    );
    assert_eq!(polls_of(&m), 3);
}

/// The swarm's nodes as the Engine API lists them: pi1 manager, pi2 and pi3 workers.
const NODES: &str = r#"[{"ID":"n1","Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready"}},
{"ID":"n2","Spec":{"Role":"worker","Availability":"active","Labels":{"disk":"ssd"}},"Description":{"Hostname":"pi2"},"Status":{"State":"ready"}},
{"ID":"n3","Spec":{"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi3"},"Status":{"State":"ready"}}]"#;

fn with_binds(constraints: &[&str]) -> Prepared {
    let mut p = prepared();
    p.stacks[0].binds = vec![crate::deploy::ServiceBinds {
        service: "app".into(),
        sources: vec!["/srv/data".into(), "/srv/conf".into()],
        constraints: constraints.iter().map(|c| c.to_string()).collect(),
    }];
    p
}

/// A node whose daemon says which swarm node it is, and whose shell which paths it lacks.
fn node_with(name: &str, id: &str, missing: &[&str]) -> FakeRemote {
    let n = FakeRemote::new(name);
    lacks(&n, id, missing);
    images_on(&n, true);
    n
}

/// `n` is swarm node `id` and lacks these paths.
fn lacks(n: &FakeRemote, id: &str, missing: &[&str]) {
    let said: String = missing.iter().map(|m| format!("missing {m}\n")).collect();
    // First: the image check's rule for it may be set already.
    n.on("for p in", ok(&said)).on_api_first(
        "GET /info",
        200,
        &format!(r#"{{"Swarm":{{"NodeID":"{id}","LocalNodeState":"active"}}}}"#),
    );
}

/// Issue 10 item 6: a bind source missing on a node where the service may run is
/// reported per path and node before anything is deployed; a node the constraints rule
/// out is not asked about.
#[tokio::test]
async fn a_missing_bind_source_stops_the_deploy_before_any_stack() {
    let p = with_binds(&["node.role == worker"]);
    let m = manager("deployed web \ndeployed db \n");
    m.on_api_first("GET /nodes", 200, NODES);
    lacks(&m, "n1", &["/srv/data", "/srv/conf"]);
    let pi2 = node_with("pi2", "n2", &["/srv/data"]);
    let pi3 = node_with("pi3", "n3", &["/srv/data", "/srv/conf"]);
    let (res, _) = deploy_on(&p, &m, &[pi2.clone(), pi3]).await;
    assert!(res.failed());
    let web = &res.stacks[0];
    assert_eq!(web.status, StackStatus::Failed);
    assert_eq!(web.failed_step.as_deref(), Some("bind check"));
    assert_eq!(
        web.error.as_deref(),
        Some(
            "web_app: bind source /srv/data does not exist on pi2, pi3\nweb_app: bind source /srv/conf does not exist on pi3\nnothing deployed (deploy --skip-bind-check deploys anyway)"
        )
    );
    assert_eq!(res.stacks[1].status, StackStatus::Skipped);
    assert_eq!(
        res.stacks[1].error.as_deref(),
        Some("not attempted: bind mount sources are missing for stack web")
    );
    assert_eq!(m.count("docker stack deploy") + m.count("tar -x -o"), 0);
    // One question per node, all paths at once, and its node id from its daemon (its
    // other `GET /info` is the image check's, which reads the image store).
    assert_eq!(pi2.count("for p in"), 1);
    assert_eq!(pi2.api_calls("GET /info").len(), 2);
    assert_eq!(
        pi2.count("docker system dial-stdio"),
        1,
        "on the same engine"
    );
    assert!(
        pi2.commands()
            .iter()
            .any(|c| c.contains("for p in /srv/data /srv/conf;"))
    );
}

#[tokio::test]
async fn bind_sources_present_where_the_service_may_run_let_it_deploy() {
    // Only pi2 (disk=ssd) may run it, and it has both paths; pi3 lacks them: no matter.
    let p = with_binds(&["node.labels.disk == ssd"]);
    let m = manager("deployed web \ndeployed db \n");
    m.on_api_first("GET /nodes", 200, NODES);
    lacks(&m, "n1", &[]);
    serve_polls(
        &m,
        vec![vec![converged("web", "app"), converged("db", "pg")]],
    );
    let pi2 = node_with("pi2", "n2", &[]);
    let pi3 = node_with("pi3", "n3", &["/srv/data", "/srv/conf"]);
    let (res, _) = deploy_on(&p, &m, &[pi2, pi3]).await;
    assert!(!res.failed(), "{res:?}");
    assert_eq!(m.count("docker stack deploy"), 2);

    // The same with the check skipped: nobody is asked.
    let mut opts = options();
    opts.skip_bind_check = true;
    let p = with_binds(&["node.role == worker"]);
    let m = manager("deployed web \ndeployed db \n");
    serve_polls(
        &m,
        vec![vec![converged("web", "app"), converged("db", "pg")]],
    );
    let pi3 = node_with("pi3", "n3", &["/srv/data"]);
    let (res, _) = deploy_with(
        &opts,
        &p,
        &m,
        std::slice::from_ref(&pi3),
        std::future::pending(),
    )
    .await;
    assert!(!res.failed(), "{res:?}");
    assert_eq!(pi3.count("for p in") + m.count("for p in"), 0);
    // Its daemon is asked only the image check's questions.
    assert_eq!(pi3.api_calls("GET /info").len(), 1);
}

#[tokio::test]
async fn a_held_lock_refuses_with_its_owner_and_touches_nothing() {
    let p = prepared();
    let m = manager("");
    let held = FakeRemote::new("pi1");
    held.on(
        "mkdir /var/lib/rpiprov/lock",
        ok("@@held\nuser=alice\nhost=other-laptop\npid=777\nsince=2026-11-25T15:00:00Z\ncommand=deploy\n"),
    );
    // Rules are matched first-come: put the refusal in front of the manager's.
    m.prepend(&held);
    let w = worker();
    let (res, _) = deploy_on(&p, &m, std::slice::from_ref(&w)).await;
    assert!(res.failed());
    let pi1 = &res.rows[0];
    assert_eq!(pi1.failed_step.as_deref(), Some("lock"));
    assert_eq!(
        pi1.error.as_deref(),
        Some(
            "deploy already running: locked by alice@other-laptop pid 777 since 2026-11-25T15:00:00Z; if that run was killed, clear it with `rpiprov deploy --unlock`"
        )
    );
    assert_eq!(m.commands().len(), 1);
    assert!(m.uploads.lock().unwrap().is_empty());
    assert!(w.commands().is_empty());
    assert!(res.stacks.iter().all(|s| s.status == StackStatus::Skipped));
}

#[tokio::test]
async fn secrets_never_reach_a_command_line_an_event_or_the_report() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    serve_polls(&m, vec![vec![converged("web", "app")]]);
    // Docker echoing the value in an error must not carry it further.
    let failing = FakeRemote::new("pi1");
    failing.on(
        "exec docker stack deploy --prune -c /var/lib/rpiprov/stacks/db/current/files/db.yml db",
        fail(
            1,
            &format!(
                "service pg: invalid interpolation format for POSTGRES_PASSWORD: \"{SECRET}\""
            ),
        ),
    );
    m.prepend(&failing);
    let w = worker();
    let (res, events) = deploy_on(&p, &m, std::slice::from_ref(&w)).await;
    assert_eq!(res.stacks[1].status, StackStatus::Failed);
    assert_eq!(
        res.stacks[1].error.as_deref(),
        Some(
            "exit 1: service pg: invalid interpolation format for POSTGRES_PASSWORD: \"<redacted>\""
        )
    );
    for c in m.commands().iter().chain(w.commands().iter()) {
        assert!(!c.contains(SECRET), "{c}");
    }
    for u in m.uploads.lock().unwrap().iter() {
        assert!(!String::from_utf8_lossy(&u.contents).contains(SECRET));
    }
    assert!(events.iter().all(|e| !e.contains(SECRET)), "{events:?}");
    assert!(!format!("{res:?}").contains(SECRET));
    assert!(!serde_json::to_string(&res).unwrap().contains(SECRET));
    // It did go to the remote, on stdin.
    assert!(m.log.lock().unwrap().iter().any(|r| {
        r.stdin
            .as_deref()
            .is_some_and(|s| s == format!("DB_PASSWORD={SECRET}\n").as_bytes())
    }));
}

#[tokio::test]
async fn an_image_that_failed_to_load_stops_the_stacks_that_use_it() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    let w = FakeRemote::new("pi2");
    images_on(&w, false);
    w.on_api(
        "POST /images/create",
        200,
        "{\"errorDetail\":{\"message\":\"Error processing tar file(exit status 1): unexpected EOF\"}}\n",
    );
    let (res, _) = deploy_on(&p, &m, &[w]).await;
    assert_eq!(res.stacks[0].status, StackStatus::Failed);
    assert_eq!(
        res.stacks[0].error.as_deref(),
        Some("image lab/httpd:1 could not be loaded on pi2; stack not deployed")
    );
    let pi2 = res.rows.iter().find(|r| r.label() == "pi2").unwrap();
    assert_eq!(pi2.failed_step.as_deref(), Some("load image lab/httpd:1"));
    assert_eq!(m.count("docker stack deploy"), 0);
}

#[tokio::test]
async fn ctrl_c_releases_the_lock_and_names_the_interrupted_stack() {
    let p = prepared();
    let mut long = p.clone();
    long.stacks[0].timeout = Duration::from_secs(60);
    let m = manager("deployed web \ndeployed db \n");
    serve_polls(&m, vec![vec![starting("web", "app")]]);
    let (res, _) = deploy_until(
        &long,
        &m,
        &[worker()],
        tokio::time::sleep(Duration::from_millis(50)),
    )
    .await;
    assert!(res.failed());
    assert_eq!(res.stacks[0].status, StackStatus::Failed);
    assert_eq!(
        res.stacks[0].error.as_deref(),
        Some("interrupted during the wait for convergence (deployed; swarm goes on converging it)")
    );
    assert_eq!(
        res.stacks[1].error.as_deref(),
        Some("not attempted: interrupted")
    );
    // The summary says what was done and what not.
    let summary = crate::ui::summary::summary("deploy", &res.rows, Duration::from_secs(1));
    assert!(summary.contains("upload web (1 file(s)"), "{summary}");
    assert!(summary.contains("stack db"), "{summary}");
    assert_eq!(res.rows[0].error.as_deref(), Some("interrupted (Ctrl-C)"));
    assert!(m.commands().last().unwrap().contains("@@released"));
}

#[test]
fn rows_for_the_progress_display() {
    let p = prepared();
    assert_eq!(
        row_names(&p, "pi1", &["pi3".into(), "pi1".into(), "pi2".into()]),
        vec!["pi1", "pi2", "pi3", "stack web", "stack db"]
    );
}

// ---------------------------------------------------------------------------------------
// The playbook's networks (a teardown removes them; a deploy right after must work)

fn with_networks() -> Prepared {
    let mut p = prepared();
    p.networks = vec![crate::config::Network {
        attachable: false,
        internal: true,
        subnet: Some("198.19.10.0/24".into()),
        ..crate::testing::network("DATA")
    }];
    p
}

#[tokio::test]
async fn a_missing_network_is_created_before_any_stack() {
    let p = with_networks();
    let m = manager(&already_deployed(&p));
    // The list holds no DATA: the network was removed by a teardown.
    m.on_api("POST /networks/create", 201, r#"{"Id":"abc","Warning":""}"#);
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(!res.failed(), "{res:?}");
    let created = m.api_calls("POST /networks/create");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].version.as_deref(), Some("1.41"));
    let body: serde_json::Value = serde_json::from_str(&created[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"Name": "DATA", "CheckDuplicate": true, "Driver": "overlay",
            "Scope": "swarm", "Attachable": false, "Internal": true,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "198.19.10.0/24"}]},
            "Labels": {"io.rpiprov.managed": "true"}})
    );
    assert!(
        m.commands()[0].contains("mkdir /var/lib/rpiprov/lock"),
        "lock first"
    );
    assert_eq!(res.rows[0].changed, vec!["create network DATA"]);
}

#[tokio::test]
async fn a_network_with_other_options_stops_the_deploy_before_any_stack() {
    let p = with_networks();
    let m = manager("");
    m.on_api_first(
        "GET /networks",
        200,
        r#"[{"Name":"DATA","Driver":"overlay","Scope":"swarm","Internal":false,"Attachable":false,"IPAM":{"Config":[{"Subnet":"198.19.10.0/24"}]},"Options":{}}]"#,
    );
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(res.failed());
    assert_eq!(m.count("docker stack deploy"), 0);
    assert!(m.api_calls("POST /networks").is_empty());
    assert_eq!(
        res.rows[0].error.as_deref(),
        Some(
            "network DATA exists with other options (internal is false, playbook says true); Docker cannot change a network in place: remove it (docker network rm DATA) or change the playbook"
        )
    );
    assert!(res.stacks.iter().all(|s| s.status == StackStatus::Skipped));
    // The lock is released all the same.
    assert!(m.commands().last().unwrap().contains("@@released"));
}

/// A manager that answers `files_read` from the files it holds, as `od` prints them.
fn serves_its_files(m: &FakeRemote) {
    let files = m.files.clone();
    m.on_fn("od -An -v -tx1", move |req| {
        let held = files.lock().unwrap();
        let mut out = String::new();
        for part in req.command.split("echo '@@begin file ").skip(1) {
            let path = part.split('\'').next().unwrap();
            out.push_str(&format!("@@begin file {path}\n"));
            match held.get(path) {
                Some(bytes) => {
                    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    out.push_str(&format!(" {}\n", hex.join(" ")));
                }
                None => out.push_str("@@missing\n"),
            }
            out.push_str(&format!("@@end file {path}\n"));
        }
        ok(&out)
    });
}

/// `--dry-run`: what would be uploaded and deployed, why, and the diff of the changed
/// file, from the same reads as the run; not one write, no lock.
#[tokio::test]
async fn the_preview_shows_the_changed_stack_with_its_diff_and_writes_nothing() {
    let p = prepared();
    let web = &p.stacks[0];
    // web's deployed set is an older one: its compose file named another image.
    let state = already_deployed(&p)
        .replace(web.fingerprint.as_str(), "an-older-fingerprint")
        .replace(&format!("release web {}\n", web.release.id), "");
    let m = manager(&state);
    let old = String::from_utf8(web.release.entries[0].bytes.clone())
        .unwrap()
        .replace("image: lab/httpd:1", "image: lab/httpd:0");
    for s in &p.stacks {
        for e in &s.release.entries {
            let path = format!("{}/{}", current_release(&s.name), e.path);
            m.files.lock().unwrap().insert(path, e.bytes.clone());
        }
    }
    m.files.lock().unwrap().insert(
        format!("{}/files/web.yml", current_release("web")),
        old.into_bytes(),
    );
    serves_its_files(&m);
    let (leader, nodes) = crate::testing::fleet(&m, &[worker()]);
    let engines = Arc::new(Engines::new(&nodes, Duration::from_secs(5)));
    let preview = preview(&options(), &p, leader, engines, nodes).await;
    assert_eq!(preview.problems, Vec::<String>::new());
    let rows: Vec<(&str, Vec<&str>)> = preview
        .rows
        .iter()
        .map(|r| (r.row.as_str(), r.steps.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "pi1",
                vec![format!("upload web (1 file(s), {} bytes)", web.release.bytes).as_str()]
            ),
            (
                "stack web",
                vec!["docker stack deploy (changed since its last deploy)"]
            ),
        ]
    );
    assert_eq!(preview.unchanged, vec!["pi2", "stack db"]);
    let web = &preview.rows[1];
    assert_eq!(web.files.len(), 1);
    assert_eq!(web.files[0].change, "changed");
    let diff = web.files[0].diff.as_deref().unwrap();
    assert!(
        diff.contains("-    image: lab/httpd:0\n+    image: lab/httpd:1\n"),
        "{diff}"
    );
    // Nothing written, no lock taken, nothing deployed: reads alone on the relay.
    assert!(m.uploads.lock().unwrap().is_empty());
    assert!(
        m.api_log
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.line.starts_with("GET "))
    );
    for c in m.commands() {
        assert!(
            !c.contains("mkdir") && !c.contains("stack deploy") && !c.contains("network create"),
            "{c}"
        );
    }
}

/// Issue 11: where the manager's Engine API is reachable, every convergence poll goes
/// through it (three requests, one round trip, no `docker` process), for every deployed
/// stack at once; a task made before the service's last update with another spec is the
/// previous version, and the stack is not ready until it is replaced.
#[tokio::test]
async fn polls_go_through_the_engine_api_and_a_task_of_the_previous_spec_is_not_ready() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    let service = |id: &str, name: &str, stack: &str| {
        format!(
            r#"{{"ID":"{id}","UpdatedAt":"2026-11-29T20:00:10Z","Spec":{{"Name":"{name}","Labels":{{"com.docker.stack.namespace":"{stack}"}},"TaskTemplate":{{"ContainerSpec":{{"Image":"i:2"}},"Runtime":"container"}},"Mode":{{"Replicated":{{"Replicas":1}}}}}},"ServiceStatus":{{"RunningTasks":1,"DesiredTasks":1}}}}"#
        )
    };
    let services = format!(
        "[{},{}]",
        service("s1", "web_app", "web"),
        service("s2", "db_pg", "db")
    );
    // web's task predates the update and runs the old image; db's is new.
    let tasks = r#"[
 {"ID":"t1","CreatedAt":"2026-11-29T20:00:00Z","ServiceID":"s1","Slot":1,"NodeID":"n1","Spec":{"ContainerSpec":{"Image":"i:1"}},"Status":{"State":"running"},"DesiredState":"running"},
 {"ID":"t2","CreatedAt":"2026-11-29T20:00:11Z","ServiceID":"s2","Slot":1,"NodeID":"n1","Spec":{"ContainerSpec":{"Image":"i:2"}},"Status":{"State":"running"},"DesiredState":"running"}
]"#;
    m.on_api_first("GET /services", 200, &services)
        .on_api_first("GET /tasks", 200, tasks)
        .on_api_first(
            "GET /nodes",
            200,
            r#"[{"ID":"n1","Description":{"Hostname":"pi1"}}]"#,
        );
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    // web never gets a task of its current spec: it fails, saying why, and db is not
    // deployed after it; no poll went through the CLI.
    let web = &res.stacks[0];
    assert_eq!(web.status, StackStatus::Failed, "{res:#?}");
    assert!(
        web.error.as_deref().unwrap_or_default().contains(
            "web_app 1/1: 1 task(s) of the previous spec still running (the update has not reached them)"
        ),
        "{web:#?}"
    );
    assert_eq!(res.stacks[1].status, StackStatus::Skipped);
    assert_eq!(m.count("docker stack services"), 0, "{:#?}", m.commands());
    assert!(m.count("docker system dial-stdio") == 1);
    let polls = m.api_calls("GET /tasks").len();
    assert!(polls >= 2, "{polls}");
    // Every poll, and the read of which stacks exist before the deploys.
    assert_eq!(m.api_calls("GET /services").len(), polls + 1);
}

/// Issue 13: an image a stack pulls from a registry is checked against the nodes'
/// architectures when the manager reads its manifest: the nodes that cannot run it are
/// named; one whose manifest cannot be read is said; neither is refused.
#[tokio::test]
async fn pulled_images_name_the_nodes_that_cannot_run_them_and_refuse_nothing() {
    let p = prepared();
    assert_eq!(p.stacks[1].pulled, vec!["postgres:16"]);
    assert!(p.stacks[0].pulled.is_empty());
    let m = manager("");
    let nodes: Vec<String> = [("pi1", "aarch64"), ("pi2", "armv7l")]
        .iter()
        .map(|(n, arch)| {
            format!(
                "{{\"ID\":\"id-{n}\",\"Spec\":{{\"Role\":\"worker\",\"Availability\":\"active\"}},\"Description\":{{\"Hostname\":\"{n}\",\"Platform\":{{\"Architecture\":\"{arch}\"}}}},\"Status\":{{\"State\":\"ready\"}}}}"
            )
        })
        .collect();
    m.on_api_first("GET /nodes", 200, &format!("[{}]", nodes.join(",")));
    m.first(
        "docker manifest inspect",
        ok("@@image postgres:16\n[{\"Descriptor\":{\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}}},{\"Descriptor\":{\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}}]\n@@status 0\n"),
    );
    serve_polls(&m, vec![vec![converged("web", "app")]]);
    let (_, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(
        events.iter().any(|e| e == "pi1: Note(\"warning: postgres:16 is published for linux/arm64, linux/amd64 only: pi2 (arm) cannot run it (swarm leaves its tasks there pending: \\\"no suitable node (unsupported platform)\\\"); use an image built for them, or keep the service off them with a placement constraint\")"),
        "{events:#?}"
    );
    assert_eq!(m.count("docker manifest inspect -v \"$i\""), 1);
    // Unreadable: said, and the deploy goes on.
    let m = manager("");
    m.first(
        "docker manifest inspect",
        ok("@@image postgres:16\nerror pinging v2 registry: dial tcp: lookup registry-1.docker.io: no such host\n@@status 1\n"),
    );
    serve_polls(&m, vec![vec![converged("web", "app")]]);
    let (_, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(
        events.iter().any(|e| e.contains("warning: the manifest of postgres:16 could not be read from pi1 (error pinging v2 registry: dial tcp: lookup registry-1.docker.io: no such host): which architectures it is built for is not checked, and nothing is refused for it")),
        "{events:#?}"
    );
    assert!(m.count("docker stack deploy") > 0);
}

/// A service whose update swarm paused is updated again with `--force` through the
/// Engine API: its spec read by name and sent back at its version, the task template's
/// counter raised, once; the wait then sees it converge.
#[tokio::test]
async fn a_paused_update_is_forced_again_through_the_engine_api() {
    let p = prepared();
    let m = manager("deployed web \ndeployed db \n");
    let web = converged("web", "app");
    let paused = web.json().replacen(
        "\"ServiceStatus\"",
        r#""UpdateStatus":{"State":"paused","Message":"update paused due to failure or early termination of task t9"},"ServiceStatus""#,
        1,
    );
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = polls.clone();
    let (paused_json, web_json) = (paused.clone(), web.json());
    m.on_api_fn("GET /services?", move |_| {
        let k = n.load(std::sync::atomic::Ordering::SeqCst);
        let web = if k < 2 { &paused_json } else { &web_json };
        (200, format!("[{web},{}]", converged("db", "pg").json()))
    })
    .on_api_first("GET /services/web_app", 200, &paused)
    .on_api_first("POST /services/", 200, r#"{"Warnings":null}"#);
    let tasks: Vec<String> = [converged("web", "app"), converged("db", "pg")]
        .iter()
        .flat_map(Svc::tasks_json)
        .collect();
    let tasks = format!("[{}]", tasks.join(","));
    m.on_api_fn("GET /tasks", move |_| {
        polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (200, tasks.clone())
    });
    let (res, events) = deploy_on(&p, &m, &[worker()]).await;
    assert!(!res.failed(), "{res:#?}");
    let forced = m.api_calls("POST /services/");
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert_eq!(forced[0].line, "POST /services/s-web_app/update?version=9");
    let spec: serde_json::Value = serde_json::from_str(&forced[0].body).unwrap();
    assert_eq!(spec["TaskTemplate"]["ForceUpdate"], 1);
    assert_eq!(spec["Name"], "web_app");
    assert!(
        events.iter().any(|e| e.contains(
            "web_app: swarm paused its update after a task failed (a node away, or an old task still holding its port): updated again with --force"
        )),
        "{events:#?}"
    );
    assert_eq!(m.count("docker service update"), 0);
}

// ---------------------------------------------------------------------------------------
// The manager's Docker CLI and what the stack files need of it (issue 17 item 4)

/// The playbook of [`prepared`], its web stack's file without `version:` (so it needs CLI
/// 23), the manager answering which `docker` it has with `cli`.
fn versionless(cli: &str) -> (Prepared, FakeRemote) {
    let mut p = prepared();
    let (compose, _) = crate::config::compose::check_text(
        std::path::Path::new("stacks/web.yml"),
        "services:\n  app:\n    image: lab/httpd:1\n",
        &[],
        &[],
        std::path::Path::new("."),
    );
    p.stacks[0].needs = compose.needs;
    let m = manager(&already_deployed(&p));
    m.on("dpkg-query", ok(cli));
    (p, m)
}

#[tokio::test]
async fn a_file_the_manager_s_cli_cannot_read_is_refused_before_any_change() {
    let (p, m) = versionless("cli package docker.io 20.10.24+dfsg1-1+deb12u1\n");
    let w = worker();
    let (res, _) = deploy_on(&p, &m, std::slice::from_ref(&w)).await;
    assert!(res.failed());
    assert_eq!(m.commands(), [crate::docker::cli::CLI_PACKAGE]);
    assert!(w.commands().is_empty(), "nothing was asked of the nodes");
    let web = &res.stacks[0];
    assert_eq!(
        (web.status, web.failed_step.as_deref()),
        (StackStatus::Failed, Some("docker cli"))
    );
    assert_eq!(
        web.error.as_deref(),
        Some(
            "pi1's Docker CLI 20.10 (package docker.io 20.10.24+dfsg1-1+deb12u1) cannot deploy this file: stacks/web.yml: version: missing: Docker CLI 20.10 reads a file without version: as version 1.0 and refuses it (Docker CLI 23.0 and later read it as the newest 3.x): add version: \"3.9\""
        )
    );
    assert_eq!(res.stacks[1].status, StackStatus::Skipped);
    assert_eq!(
        res.stacks[1].error.as_deref(),
        Some("not attempted: pi1's Docker CLI 20.10 cannot deploy web; nothing was changed")
    );
}

#[tokio::test]
async fn a_manager_whose_cli_reads_the_file_deploys_it_as_before() {
    let (p, m) = versionless("cli package docker.io 26.1.5+dfsg1-9+b9\n");
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(!res.failed() && !res.changed(), "{res:?}");
    let cmds = m.commands();
    assert_eq!(cmds[0], crate::docker::cli::CLI_PACKAGE);
    assert!(cmds[1].contains("mkdir /var/lib/rpiprov/lock"), "{cmds:?}");
    // A docker no package owns is asked itself.
    let (p, m) = versionless("cli unpackaged /usr/local/bin/docker\n");
    m.on(
        "docker --version",
        ok("Docker version 28.2.2, build e6534b4\n"),
    );
    let (res, _) = deploy_on(&p, &m, &[worker()]).await;
    assert!(!res.failed(), "{res:?}");
    assert_eq!(m.commands()[1], "docker --version");
    // Files every CLI reads: the manager is not asked.
    let p = prepared();
    let m = manager(&already_deployed(&p));
    deploy_on(&p, &m, &[worker()]).await;
    assert_eq!(m.count("dpkg-query") + m.count("docker --version"), 0);
}

#[tokio::test]
async fn the_preview_says_which_file_the_manager_s_cli_refuses() {
    let (p, m) = versionless("cli package docker.io 20.10.24+dfsg1-1+deb12u1\n");
    let (leader, nodes) = crate::testing::fleet(&m, &[worker()]);
    let engines = Arc::new(Engines::new(&nodes, Duration::from_secs(5)));
    let preview = super::preview(&options(), &p, leader, engines, nodes).await;
    assert_eq!(
        preview.problems[0],
        "stack web: pi1's Docker CLI 20.10 (package docker.io 20.10.24+dfsg1-1+deb12u1) cannot deploy this file: stacks/web.yml: version: missing: Docker CLI 20.10 reads a file without version: as version 1.0 and refuses it (Docker CLI 23.0 and later read it as the newest 3.x): add version: \"3.9\"; deploy changes nothing"
    );
}
