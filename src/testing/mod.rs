//! Shared test helpers, compiled for tests only: the fake transport ([`fake`]), the one
//! runner for scripts under test ([`script`]), the import rules of `lib.rs` checked
//! ([`layout`]), and the builders the executors' tests share: an inventory host, a
//! playbook network, a lock owner, a fleet of fake sessions, a recording reporter.

pub mod fake;
pub mod layout;
pub mod script;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::exec::lock::LockOwner;
use crate::exec::report::{Event, Reporter};
pub use fake::{FakeRemote, fail, ok};

/// An inventory host as the lab's defaults make it: user `pi`, sudo without a password,
/// Docker from Debian's package, advertising the address it is reached by.
pub fn host(name: &str, role: crate::config::Role) -> crate::config::Host {
    use crate::config::{Advertise, Become, DockerSettings, InstallMethod, PasswordSource};
    crate::config::Host {
        name: name.into(),
        address: format!("addr-{name}"),
        port: 22,
        user: "pi".into(),
        identity_files: vec![],
        role,
        labels: Default::default(),
        become_: Become {
            sudo: true,
            password: PasswordSource::None,
        },
        docker: DockerSettings {
            install: InstallMethod::Distro,
            daemon: Default::default(),
        },
        advertise: Advertise::Reach,
        password_auth: false,
    }
}

/// A playbook network with Docker's defaults for an attachable overlay.
pub fn network(name: &str) -> crate::config::Network {
    crate::config::Network {
        name: name.into(),
        driver: "overlay".into(),
        attachable: true,
        internal: false,
        subnet: None,
        encrypted: false,
    }
}

/// A playbook stack with these services and images, file `stacks/NAME.yml`, a 200 ms
/// timeout.
pub fn stack(name: &str, order: i64, services: &[&str], images: &[&str]) -> crate::config::Stack {
    crate::config::Stack {
        name: name.into(),
        file: std::path::PathBuf::from(format!("stacks/{name}.yml")),
        order,
        timeout: std::time::Duration::from_millis(200),
        compose: crate::config::Compose {
            services: services.iter().map(|s| s.to_string()).collect(),
            images: images.iter().map(|s| s.to_string()).collect(),
            version: "3.8".into(),
            ..Default::default()
        },
    }
}

/// The sessions an executor gets: the leader, and every node (the leader among them).
pub fn fleet(
    leader: &FakeRemote,
    others: &[FakeRemote],
) -> (Arc<FakeRemote>, HashMap<String, Arc<FakeRemote>>) {
    let leader = Arc::new(leader.clone());
    let mut nodes = HashMap::new();
    nodes.insert(leader.name.clone(), leader.clone());
    for o in others {
        nodes.insert(o.name.clone(), Arc::new(o.clone()));
    }
    (leader, nodes)
}

/// Records every progress event as `host: Event`, to check what a user would see.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<String>>);

impl Reporter for Recorder {
    fn event(&self, row: &str, event: Event) {
        self.0.lock().unwrap().push(format!("{row}: {event:?}"));
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A fixed lock owner: `pi@laptop` pid 1234, running `command`.
pub fn lock_owner(command: &str) -> LockOwner {
    LockOwner {
        user: "pi".into(),
        host: "laptop".into(),
        pid: 1234,
        since: "2026-11-25T16:00:00Z".into(),
        command: command.into(),
        machine: "0123456789abcdef0123456789abcdef".into(),
        boot: "b0".into(),
        start: "4242".into(),
    }
}

impl FakeRemote {
    /// A manager that grants the deploy lock and lets it be released.
    pub fn grants_the_lock(&self) -> &Self {
        self.on("mkdir /var/lib/rpiprov/lock", ok("@@acquired\n"))
            .on("@@released", ok("@@released\n"))
            .on("true; else echo '@@none'", ok("@@none\n"))
    }
}
