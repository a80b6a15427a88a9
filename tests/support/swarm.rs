//! The lab as the end-to-end tests use rpiprov on it: a fleet ([`Fleet`]), its inventory
//! and playbook loaded, rpiprov run as a user runs it ([`Lab::ok`] checks the exit code and
//! that nothing secret showed), and root commands on a node over the system OpenSSH
//! client ([`Lab::on`]), never through rpiprov.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fleet::{BIN, Fleet, text};

pub struct Lab {
    pub fleet: Fleet,
    pub password: String,
    pub inventory: rpiprov::config::Inventory,
    pub playbook: rpiprov::config::Playbook,
}

/// `(hostname, role, state, labels)` of every node, sorted: duplicates would show.
pub type NodeRow = (String, String, String, String);

impl Lab {
    pub fn up() -> Lab {
        Lab::load(Fleet::up(&[]))
    }

    /// A fleet of these Debian releases ([`Fleet::up_with`]) with these `lab up` arguments.
    pub fn up_with(releases: &[rpiprov::lab::Distro], args: &[&str]) -> Lab {
        Lab::load(Fleet::up_with(releases, args))
    }

    fn load(fleet: Fleet) -> Lab {
        let password = fleet.read("sudo-password").trim().to_string();
        let loaded = rpiprov::config::load(&fleet.dir.join("inventory.toml"), None)
            .unwrap_or_else(|e| panic!("the lab's inventory does not load: {e:?}"));
        Lab {
            password,
            inventory: loaded.inventory,
            playbook: loaded
                .playbook
                .expect("the lab inventory names its playbook"),
            fleet,
        }
    }

    pub fn addr(&self, name: &str) -> String {
        self.inventory.host(name).unwrap().address.clone()
    }

    pub fn rpiprov_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-i")
            .arg(self.fleet.dir.join("inventory.toml"))
            .args(args)
            .env("RPIPROV_SUDO_PASSWORD", &self.password)
            .env("XDG_STATE_HOME", self.fleet.state_home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs rpiprov against the fleet's inventory, as a script would.
    pub fn run(&self, args: &[&str]) -> Output {
        self.rpiprov_cmd(args).output().expect("run rpiprov")
    }

    /// Runs rpiprov and asserts its exit code; returns stdout. Nothing secret may show.
    pub fn ok(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(code), "rpiprov {args:?}:\n{all}");
        assert!(
            !all.contains(&self.password),
            "the sudo password leaked:\n{all}"
        );
        assert!(!all.contains("SWMTKN"), "a join token leaked:\n{all}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A root shell command on a node; the password is offered to sudo on stdin, which
    /// nodes with password-less sudo ignore.
    pub fn on(&self, node: &str, cmd: &str) -> String {
        let out = self.on_raw(node, cmd);
        assert!(out.status.success(), "{cmd} on {node}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn on_raw(&self, node: &str, cmd: &str) -> Output {
        let quoted = rpiprov::shell::quote(cmd);
        self.fleet.ssh(
            &self.addr(node),
            &format!("sudo -S -p '' sh -c {quoted}"),
            Some(&format!("{}\n", self.password)),
        )
    }

    pub fn nodes(&self) -> Vec<NodeRow> {
        let mut rows: Vec<NodeRow> = self
            .on(
                "pi1",
                "docker node inspect --format '{{.Description.Hostname}} {{.Spec.Role}} {{.Status.State}} {{json .Spec.Labels}}' $(docker node ls -q)",
            )
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let mut next = || it.next().unwrap_or("").to_string();
                (next(), next(), next(), next())
            })
            .collect();
        rows.sort();
        rows
    }

    /// Asserts that the swarm is the one the inventory describes: every host once, Ready,
    /// with its role and labels.
    pub fn assert_formed(&self) {
        let mut expected: Vec<NodeRow> = self
            .inventory
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.role.as_str().to_string(),
                    "ready".to_string(),
                    serde_json::to_string(&h.labels).unwrap(),
                )
            })
            .collect();
        expected.sort();
        // A node that just joined may show Down for an instant; give swarm a moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = self.nodes();
            if nodes == expected || Instant::now() > deadline {
                assert_eq!(nodes, expected, "docker node inspect on the manager");
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{stdout}"))
}

pub fn row<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {doc:#}"))
}
