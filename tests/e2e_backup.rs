//! End-to-end tests of `rpiprov backup` and `rpiprov restore` (issue 22) on the lab, checked
//! on the nodes themselves:
//! 1. one manager, a stack with a config and a secret, the swarm autolocked: `backup`
//!    without `--yes` and no terminal is a usage error; `backup -o FILE --yes` writes a
//!    0600 archive that `--list` describes; `lab wipe pi1` leaves pi1 a new SD card;
//!    `restore` without the unlock key is a usage error, with it brings back 3 Ready
//!    nodes, the stack's container prints its config and secret again, `status` exits 0,
//!    `deploy` finds nothing to do, and a second `restore` changes nothing;
//! 2. three managers: the copy is taken from a manager that does not lead, and every
//!    service keeps answering during it (the published ports polled on the nodes that
//!    stay up, the swarm's control plane asked), the source's Docker up again after.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpiprov::lab::Lab;
use support::fleet::{BIN, Fleet, json_of, row_of, run_in, text};

const SECRET: &str = "s3cret-pw";

const FILES_STACK: &str = r#"version: "3.8"
services:
  app:
    image: rpiprov-lab/busybox:1
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
    configs:
      - source: site
        target: /etc/site.conf
    secrets:
      - db_password
    stop_grace_period: 1s
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
configs:
  site:
    file: ../app/site.conf
secrets:
  db_password:
    file: ../app/db_password
"#;

/// rpiprov with the lab's inventory, no terminal, these extra variables.
fn rpiprov_env(fleet: &Fleet, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("-i")
        .arg(fleet.dir.join("inventory.toml"))
        .args(args)
        .env("RPIPROV_SUDO_PASSWORD", fleet.read("sudo-password").trim())
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rpiprov")
}

/// Runs rpiprov, asserts its exit code and that no secret showed; returns its output.
fn run(fleet: &Fleet, args: &[&str], env: &[(&str, &str)], code: i32, secrets: &[&str]) -> Output {
    let out = rpiprov_env(fleet, args, env);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
    for s in secrets.iter().chain(&[SECRET]) {
        assert!(
            !all.contains(s),
            "a secret showed in rpiprov {args:?}:\n{all}"
        );
    }
    out
}

fn sh(fleet: &Fleet, node: &str, script: &str) -> String {
    fleet.inside(node, &["sh", "-c", script])
}

/// What the running container of `service` prints for `script`, wherever it runs.
fn in_container(fleet: &Fleet, service: &str, script: &str) -> String {
    let find = format!("docker ps -q --filter label=com.docker.swarm.service.name={service}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for node in ["pi1", "pi2", "pi3"] {
            if let Some(id) = sh(fleet, node, &find).lines().next() {
                return fleet.inside(node, &["docker", "exec", id, "/bin/sh", "-c", script]);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no running container of {service}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn one_manager_survives_its_sd_card() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    let dir = fleet.dir.clone();
    run(&fleet, &["bootstrap"], &[], 0, &[]);
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/site.conf"), "site config v1\n").unwrap();
    std::fs::write(dir.join("app/db_password"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("stacks/files.yml"), FILES_STACK).unwrap();
    let playbook = dir.join("playbook.toml");
    let mut book = std::fs::read_to_string(&playbook).unwrap();
    book.push_str("\n[[stack]]\nname = \"files\"\nfile = \"stacks/files.yml\"\n");
    std::fs::write(&playbook, book).unwrap();
    run(&fleet, &["deploy"], &[], 0, &[]);
    let swarm_id = sh(
        &fleet,
        "pi1",
        "docker info --format '{{.Swarm.Cluster.ID}}'",
    );
    let swarm_id = swarm_id.trim();
    sh(
        &fleet,
        "pi1",
        "docker swarm update --autolock=true >/dev/null",
    );
    let key = sh(&fleet, "pi1", "docker swarm unlock-key -q");
    let key = key.trim();
    assert!(key.starts_with("SWMKEY-"), "{key}");

    // The only manager's Docker stops for the copy: not without --yes off a terminal.
    let archive = dir.join("swarm.tar");
    let file = archive.to_str().unwrap();
    let out = run(&fleet, &["backup", "-o", file], &[], 2, &[key]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("confirm with --yes when not on a terminal"),
        "{}",
        text(&out)
    );
    assert!(!archive.exists());
    let t = Instant::now();
    let out = run(
        &fleet,
        &["backup", "-o", file, "--yes", "--json"],
        &[],
        0,
        &[key],
    );
    eprintln!(
        "backup took {:?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(&archive).unwrap().len()
    );
    let said = text(&out);
    assert!(said.contains("pi1 is the swarm's only manager"), "{said}");
    assert!(
        said.contains("the swarm is autolocked: the copy's manager is unlocked again")
            && said.contains("pi1: unlocked again (the swarm is autolocked)"),
        "{said}"
    );
    let doc = json_of(&out);
    assert_eq!(
        doc["details"]["manifest"]["source"]["host"], "pi1",
        "{doc:#}"
    );
    assert_eq!(doc["details"]["manifest"]["swarm"]["autolock"], true);
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let raw = std::fs::read(&archive).unwrap();
    assert!(
        !raw.windows(key.len()).any(|w| w == key.as_bytes()),
        "the unlock key is in the archive"
    );
    // Docker runs again on pi1, and the copy left no stage there.
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "docker info --format '{{.Swarm.LocalNodeState}}'"
        ),
        "active\n"
    );
    assert_eq!(sh(&fleet, "pi1", "ls -A /var/lib/rpiprov/stage"), "");
    let list = run(&fleet, &["backup", "--list", file], &[], 0, &[]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.starts_with(&format!("swarm    {swarm_id} (1 manager; autolocked")),
        "{list}"
    );
    assert!(
        list.contains("files (app)") && list.contains("pi3 (worker, ready)"),
        "{list}"
    );

    // A new SD card in pi1.
    let out = fleet.lab("wipe", &["pi1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "docker info --format '{{.Swarm.LocalNodeState}}'"
        ),
        "inactive\n"
    );
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "ls /var/lib/rpiprov 2>/dev/null; docker images -q"
        ),
        ""
    );

    let out = run(&fleet, &["restore", file], &[], 2, &[]);
    assert!(text(&out).contains("RPIPROV_UNLOCK_KEY"), "{}", text(&out));
    let t = Instant::now();
    let out = run(
        &fleet,
        &["restore", file, "--json"],
        &[("RPIPROV_UNLOCK_KEY", key)],
        0,
        &[key],
    );
    eprintln!("restore took {:?}", t.elapsed());
    let doc = json_of(&out);
    let changed = row_of(&doc, "pi1")["changed"].to_string();
    assert!(
        changed.contains("swarm unlocked")
            && changed.contains("autolocked, back at its own address")
            && changed.contains("the unlock key unchanged"),
        "{doc:#}"
    );
    let nodes = sh(
        &fleet,
        "pi1",
        "docker node ls --format '{{.Hostname}} {{.Status}}' | sort",
    );
    assert_eq!(nodes, "pi1 Ready\npi2 Ready\npi3 Ready\n");
    assert_eq!(
        in_container(
            &fleet,
            "files_app",
            "cat /etc/site.conf /run/secrets/db_password"
        ),
        format!("site config v1\n{SECRET}\n")
    );
    assert_eq!(
        sh(
            &fleet,
            "pi1",
            "docker info --format '{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}'"
        ),
        "true\n",
        "the restored swarm is no longer autolocked"
    );
    run(&fleet, &["status"], &[], 0, &[]);
    // rpiprov's records came back: deploy has nothing to do.
    let out = run(&fleet, &["deploy", "--json"], &[], 0, &[]);
    assert_eq!(json_of(&out)["changed"], false, "{}", text(&out));
    // A second restore changes nothing, and says so.
    let out = run(
        &fleet,
        &["restore", file, "--json"],
        &[("RPIPROV_UNLOCK_KEY", key)],
        0,
        &[key],
    );
    let doc = json_of(&out);
    assert_eq!(doc["changed"], false, "{doc:#}");
    assert_eq!(doc["details"]["put_back"], "already running");
}

/// An echo over TCP: the echo stack answers what it is sent.
fn echoes(addr: &str) -> bool {
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping\n"
}

fn answers_http(addr: &str) -> bool {
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut body = String::new();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_string(&mut body).is_ok()
        && body.starts_with("HTTP/1")
}

#[test]
fn three_managers_keep_every_service_up_during_the_backup() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    let inventory = fleet
        .read("inventory.toml")
        .replace("role = \"worker\"", "role = \"manager\"");
    std::fs::write(fleet.dir.join("inventory.toml"), inventory).unwrap();
    run(&fleet, &["bootstrap"], &[], 0, &[]);
    run(&fleet, &["deploy"], &[], 0, &[]);
    let echo_node = sh(
        &fleet,
        "pi1",
        "docker service ps echo_echo --filter desired-state=running --format '{{.Node}}'",
    );
    let echo_node = echo_node.trim().to_string();

    // Every node's web, echo where it runs, and the control plane, polled all along.
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<(String, String)> = fleet.hosts();
    let sampler = {
        let stop = stop.clone();
        let dir = fleet.dir.clone();
        let echo_addr = format!("{}:19000", fleet.addr(&echo_node));
        std::thread::spawn(move || {
            let lab = Lab::open(&dir).unwrap();
            // (node, what, ok)
            let mut samples: Vec<(String, &'static str, bool)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for (name, addr) in &addrs {
                    samples.push((name.clone(), "web", answers_http(&format!("{addr}:18080"))));
                    let ls = run_in(&lab, name, &["timeout", "5", "docker", "node", "ls", "-q"]);
                    samples.push((name.clone(), "control", ls.is_some()));
                }
                samples.push(("echo".into(), "echo", echoes(&echo_addr)));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let archive = fleet.dir.join("swarm.tar");
    let t = Instant::now();
    let out = run(
        &fleet,
        &["backup", "-o", archive.to_str().unwrap(), "--json"],
        &[],
        0,
        &[],
    );
    eprintln!("backup of 3 managers took {:?}", t.elapsed());
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    let doc = json_of(&out);
    let source = doc["details"]["manifest"]["source"].clone();
    let from = source["host"].as_str().unwrap().to_string();
    assert_eq!(source["leader"], false, "{doc:#}");
    assert_ne!(
        from, echo_node,
        "the copy stopped the only echo task's node"
    );
    assert!(
        text(&out).contains("a manager that does not lead: 2 of the 3 managers stay up"),
        "{}",
        text(&out)
    );
    // Every service answered all along on the nodes that stayed up, and so did the
    // swarm's control plane; the source's own web went down for the copy.
    let failed: Vec<_> = samples
        .iter()
        .filter(|(node, _, ok)| *node != from && !ok)
        .collect();
    assert!(failed.is_empty(), "down during the backup: {failed:?}");
    assert!(
        samples
            .iter()
            .filter(|(n, w, _)| *n == "echo" && *w == "echo")
            .count()
            >= 10,
        "too few samples: {samples:?}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, w, ok)| *n == from && *w == "web" && !ok),
        "{from}'s web never went down: was its Docker stopped? {samples:?}"
    );
    assert_eq!(
        sh(
            &fleet,
            &from,
            "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'"
        ),
        "active true\n"
    );
    let list = run(
        &fleet,
        &["backup", "--list", archive.to_str().unwrap()],
        &[],
        0,
        &[],
    );
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&format!("from {from} (")),
        "{}",
        text(&list)
    );
}
