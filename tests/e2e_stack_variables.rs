//! End-to-end: what a stack takes from the laptop and from Docker's own networks (issue 19
//! items 1, 4 and 6), on a lab of two Docker nodes, checked on the nodes themselves:
//! 1. a global service on the nodes' `host` network, its port published in `mode: host`,
//!    converges with one task per node, and answers on each node's own address;
//! 2. a variable from the playbook's dotenv file, a secret variable from a command's
//!    output and an `environment:` entry without a value (taken from the environment
//!    rpiprov runs in) reach the container; neither secret shows in what rpiprov says;
//! 3. the same run again changes nothing, and `status` and `plan deploy` find nothing
//!    that differs (the host network is Docker's, not compared); a changed value from the environment deploys
//!    the stack again;
//! 4. a command that fails stops the deploy before any connection, naming the variable.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::fleet::{BIN, Fleet, http_get, text};

const TOKEN: &str = "tok-s3cret-from-command";
const LAPTOP: &str = "laptop-only-value";

/// rpiprov with this playbook and `FROM_LAPTOP` in its environment (or not).
fn rpiprov(fleet: &Fleet, laptop: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("-i")
        .arg(fleet.dir.join("inventory.toml"))
        .args(["-p", "vars.toml"])
        .args(args)
        .current_dir(&fleet.dir)
        .env("RPIPROV_SUDO_PASSWORD", fleet.read("sudo-password").trim())
        .env_remove("FROM_LAPTOP")
        .stdin(Stdio::null());
    if let Some(v) = laptop {
        cmd.env("FROM_LAPTOP", v);
    }
    cmd.output().expect("run rpiprov")
}

/// Asserts the exit code and that no secret showed; returns all it said.
fn run(fleet: &Fleet, laptop: Option<&str>, args: &[&str], code: i32) -> String {
    text(&run_out(fleet, laptop, args, code))
}

fn run_out(fleet: &Fleet, laptop: Option<&str>, args: &[&str], code: i32) -> Output {
    let out = rpiprov(fleet, laptop, args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
    for secret in [TOKEN, LAPTOP, "changed-on-laptop"] {
        assert!(!all.contains(secret), "{secret} showed:\n{all}");
    }
    out
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The environment of the running container of `service`, on whichever node runs it.
fn container_env(fleet: &Fleet, service: &str) -> String {
    let find = format!("docker ps -q --filter label=com.docker.swarm.service.name={service}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for node in ["pi1", "pi2"] {
            let id = fleet.inside(node, &["sh", "-c", &find]);
            if let Some(id) = id.lines().next() {
                return fleet.inside(node, &["docker", "exec", id, "env"]);
            }
        }
        assert!(Instant::now() < deadline, "no container of {service}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `deploy --json`'s status of the stack.
fn deployed(fleet: &Fleet, laptop: &str) -> String {
    let out = run_out(fleet, Some(laptop), &["deploy", "--json"], 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    doc["details"][0]["status"].as_str().unwrap().to_string()
}

const PLAYBOOK: &str = r#"env_file = "app/.env"

[[image]]
name = "rpiprov-lab/busybox:1"
archive = "images/busybox.tar"
format = "rootfs"
cmd = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]

[variables]
TOKEN = { command = ["sh", "-c", "printf '%s\n' tok-s3cret-from-command"], secret = true }

[[stack]]
name = "vars"
file = "stacks/vars.yml"
"#;

const STACK: &str = r#"version: "3.8"
services:
  app:
    image: rpiprov-lab/busybox:1
    command: ["/bin/sleep", "3600"]
    stop_grace_period: 1s
    environment:
      GREETING: ${GREETING}
      TOKEN: ${TOKEN}
      FROM_LAPTOP:
    deploy:
      endpoint_mode: dnsrr
  dns:
    image: rpiprov-lab/busybox:1
    command: ["/bin/httpd", "-f", "-p", "18053", "-h", "/www"]
    stop_grace_period: 1s
    ports:
      - target: 18053
        published: 18053
        mode: host
    networks: [hostnet]
    deploy:
      mode: global
networks:
  hostnet:
    external: true
    name: host
"#;

#[test]
fn values_from_the_laptop_and_the_host_network() {
    let fleet = Fleet::up(&["--nodes", "2", "--bare", "0"]);
    let dir = fleet.dir.clone();
    write(&dir, "vars.toml", PLAYBOOK);
    write(&dir, "stacks/vars.yml", STACK);
    write(
        &dir,
        "app/.env",
        "# the stack's settings\nGREETING=\"hello from .env\" # a comment\n",
    );
    run(&fleet, None, &["bootstrap"], 0);

    // check names what it will take, and that this machine lacks it now.
    let said = run(&fleet, None, &["check"], 0);
    assert!(
        said.contains("stack vars: takes from this machine's environment at deploy: FROM_LAPTOP"),
        "{said}"
    );
    assert!(said.contains("FROM_LAPTOP is not set here"), "{said}");

    // 1 and 2.
    assert_eq!(deployed(&fleet, LAPTOP), "deployed");
    let env = container_env(&fleet, "vars_app");
    for want in [
        "GREETING=hello from .env".to_string(),
        format!("TOKEN={TOKEN}"),
        format!("FROM_LAPTOP={LAPTOP}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    for node in ["pi1", "pi2"] {
        let tasks = fleet.inside(
            node,
            &[
                "sh",
                "-c",
                "docker ps -q --filter label=com.docker.swarm.service.name=vars_dns | wc -l",
            ],
        );
        assert_eq!(tasks.trim(), "1", "{node} runs one dns task");
        // Its own address, port 18053: the host network, no routing mesh.
        let got = http_get(&format!("{}:18053", fleet.addr(node)));
        assert!(!got.is_empty(), "{node}:18053 answered nothing");
    }

    // 3. Nothing changed; then the laptop's value changes.
    assert_eq!(deployed(&fleet, LAPTOP), "unchanged");
    // Docker's own host network is neither compared nor created by status and plan.
    let status = run(&fleet, Some(LAPTOP), &["status"], 0);
    assert!(!status.contains("network host"), "{status}");
    let plan = run(&fleet, Some(LAPTOP), &["plan", "deploy"], 0);
    assert!(!plan.contains("network host"), "{plan}");
    assert_eq!(deployed(&fleet, "changed-on-laptop"), "deployed");
    let env = container_env(&fleet, "vars_app");
    assert!(env.contains("FROM_LAPTOP=changed-on-laptop"), "{env}");

    // 4. The command fails: nothing is touched, the variable is named.
    let book = PLAYBOOK.replace(
        "printf '%s\\n' tok-s3cret-from-command",
        "echo 'not in the store' >&2; exit 3",
    );
    write(&dir, "vars.toml", &book);
    let failed = run(&fleet, Some(LAPTOP), &["deploy"], 2);
    assert!(
        failed.contains("variable TOKEN: command `sh -c echo 'not in the store' >&2; exit 3`: exited with status 3: not in the store"),
        "{failed}"
    );
    write(&dir, "vars.toml", PLAYBOOK);
    run(&fleet, Some(LAPTOP), &["teardown", "--yes"], 0);
}
