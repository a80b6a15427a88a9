//! Issue 9, item 2, end to end: the swarm join token never reaches a process list on any
//! node, and a bootstrap that joined nodes leaves the token it used rotated. On a lab of
//! three Docker nodes (no bare node: no apt install, the test is about the join).

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpiprov::lab::Distro;
use support::fleet::{BIN, Fleet, text};

/// Every process of the lab's nodes (those in a node's network namespace: the nodes share
/// this machine's process table, with other labs and other tests), argv and environment
/// as `/proc` shows them: `(pid, argv)` of those that hold `needle`, and the argv of every
/// process that ran `dial-stdio` (the join's relay: proof the watch covered it).
#[derive(Default)]
struct Seen {
    holding: Vec<(String, String)>,
    relays: BTreeSet<String>,
    scans: usize,
}

fn scan(needle: &str, nets: &BTreeSet<String>, seen: &Mutex<Seen>) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut s = seen.lock().unwrap();
    s.scans += 1;
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !nets.contains(&net) {
            continue;
        }
        let read = |f: &str| {
            std::fs::read(format!("/proc/{pid}/{f}"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default()
        };
        let argv = read("cmdline");
        let env = read("environ");
        if argv.contains(needle) || env.contains(needle) {
            s.holding.push((pid.clone(), argv.clone()));
        }
        if argv.contains("system dial-stdio") {
            s.relays.insert(format!("{pid} {argv}"));
        }
    }
}

fn rpiprov(fleet: &Fleet, password: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("-i")
        .arg(fleet.dir.join("inventory.toml"))
        .args(args)
        .env("RPIPROV_SUDO_PASSWORD", password)
        .env("XDG_STATE_HOME", fleet.state_home())
        .stdin(Stdio::null())
        .output()
        .expect("run rpiprov")
}

#[test]
fn the_join_token_is_in_no_process_and_is_rotated_after_the_join() {
    joins_on(Distro::Bookworm);
}

/// Issue 17 item 6: the same on Docker 26.1 (Debian 13) and 28.5 (Debian unstable), whose
/// joins go through the same Engine API; side by side with the one on 20.10.
#[test]
fn the_join_token_is_in_no_process_on_docker_26() {
    joins_on(Distro::Trixie);
}

#[test]
fn the_join_token_is_in_no_process_on_docker_28() {
    joins_on(Distro::Sid);
}

/// Three Docker nodes of `release`: the joins of pi2 and pi3 watched, the token rotated.
fn joins_on(release: Distro) {
    let fleet = Fleet::up_with(&[release], &["--nodes", "3", "--bare", "0"]);
    let want = match release {
        Distro::Bookworm => "20.10.",
        Distro::Trixie => "26.1.",
        Distro::Sid => "28.5.",
    };
    for node in ["pi2", "pi3"] {
        let docker = fleet.root(node, "docker version --format '{{.Server.Version}}'");
        assert!(docker.starts_with(want), "{node}: Docker {docker}");
    }
    let password = fleet.read("sudo-password").trim().to_string();
    let (pi1, pi3) = (fleet.addr("pi1"), fleet.addr("pi3"));
    // The network namespaces of this lab's nodes, from their holder processes.
    let state: serde_json::Value = serde_json::from_str(&fleet.read("state.json")).unwrap();
    let nets: BTreeSet<String> = state["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| {
            let pid = n["holder"]["pid"].as_u64().unwrap();
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(nets.len(), 3, "{nets:?}");

    // A watcher reads every process's argv and environment while bootstrap joins pi2
    // and pi3; any swarm token (they all start with SWMTKN-) found there is a leak.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, nets) = (seen.clone(), stop.clone(), nets.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                scan("SWMTKN-", &nets, &seen);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = rpiprov(&fleet, &password, &["--json", "bootstrap"]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        !all.contains("SWMTKN"),
        "a token in rpiprov's output:\n{all}"
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.holding.is_empty(),
        "a join token in a process's argv or environment: {:?}",
        seen.holding
    );
    // The watch covered the joins: it saw their relays run.
    assert!(
        seen.relays.len() >= 2,
        "the watcher saw {} relay(s) in {} scans: {:?}",
        seen.relays.len(),
        seen.scans,
        seen.relays
    );
    drop(seen);

    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leader = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "pi1")
        .unwrap();
    assert!(
        leader["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "rotate the worker join token"),
        "{leader:#}"
    );
    // What it cost: one connection per host; joins and polls through the API.
    assert_eq!(doc["remote"]["connections"], 3, "{:#}", doc["remote"]);
    assert!(doc["remote"]["api_requests"].as_u64().unwrap() >= 4);
    let nodes = fleet.ssh_ok(
        &pi1,
        "sudo docker node ls --format '{{.Hostname}} {{.Status}}' | sort",
    );
    assert_eq!(nodes, "pi1 Ready\npi2 Ready\npi3 Ready\n");

    // pi3 leaves; the next bootstrap joins it again with the current token and rotates
    // that one too: the token before the run no longer is the swarm's.
    let token = || fleet.ssh_ok(&pi1, "sudo docker swarm join-token -q worker");
    let before = token();
    fleet.ssh_ok(&pi3, "sudo docker swarm leave");
    let out = rpiprov(&fleet, &password, &["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("rotate the worker join token"),
        "{}",
        text(&out)
    );
    let after = token();
    assert_ne!(before, after, "the worker token was not rotated");
    let state = fleet.ssh_ok(
        &pi3,
        "sudo docker info --format '{{.Swarm.LocalNodeState}}'",
    );
    assert_eq!(state.trim(), "active");

    // Nothing joined: nothing rotated.
    let out = rpiprov(&fleet, &password, &["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(token(), after);
}
