//! A scripted [`Remote`] for unit tests of the executors: answers commands by the first
//! matching rule and records every request, so tests assert what was sent where.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::remote::{
    ExecRequest, Output, Remote, RemoteError, Stream, UploadOutcome, UploadRequest,
};

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

impl crate::ui::Reporter for Recorder {
    fn event(&self, host: &str, event: crate::ui::Event) {
        self.0.lock().unwrap().push(format!("{host}: {event:?}"));
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

type Rule = (String, Box<dyn Fn(&ExecRequest) -> Output + Send + Sync>);

/// A fake host. Rules match when the command contains their text; the first wins.
#[derive(Clone)]
pub struct FakeRemote {
    pub name: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    pub log: Arc<Mutex<Vec<ExecRequest>>>,
    pub uploads: Arc<Mutex<Vec<UploadRequest>>>,
    /// What uploads left on the host: an upload of the same bytes is `Unchanged`, as the
    /// real transport's sha256 check makes it.
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

pub fn ok(stdout: &str) -> Output {
    Output {
        stdout: stdout.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn fail(status: u32, stderr: &str) -> Output {
    Output {
        stderr: stderr.as_bytes().to_vec(),
        status,
        ..Default::default()
    }
}

impl FakeRemote {
    pub fn new(name: &str) -> FakeRemote {
        FakeRemote {
            name: name.into(),
            rules: Arc::default(),
            log: Arc::default(),
            uploads: Arc::default(),
            files: Arc::default(),
        }
    }

    pub fn on(&self, contains: &str, out: Output) -> &Self {
        self.on_fn(contains, move |_| out.clone())
    }

    pub fn on_fn(
        &self,
        contains: &str,
        f: impl Fn(&ExecRequest) -> Output + Send + Sync + 'static,
    ) -> &Self {
        self.rules
            .lock()
            .unwrap()
            .push((contains.to_string(), Box::new(f)));
        self
    }

    /// Answers successive matching commands with successive outputs; the last one repeats
    /// (a poll that converges on its third call).
    pub fn on_seq(&self, contains: &str, outs: Vec<Output>) -> &Self {
        assert!(!outs.is_empty());
        let calls = AtomicUsize::new(0);
        self.on_fn(contains, move |_| {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            outs[i.min(outs.len() - 1)].clone()
        })
    }

    /// How many commands containing `text` this host was sent.
    pub fn count(&self, text: &str) -> usize {
        self.commands().iter().filter(|c| c.contains(text)).count()
    }

    /// The commands this host was sent, in order.
    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.command.clone())
            .collect()
    }

    fn answer(&self, req: &ExecRequest) -> Result<Output, RemoteError> {
        self.log.lock().unwrap().push(req.clone());
        let rules = self.rules.lock().unwrap();
        for (pat, f) in rules.iter() {
            if req.command.contains(pat.as_str()) {
                return Ok(f(req));
            }
        }
        Err(RemoteError::Channel {
            host: self.name.clone(),
            reason: format!("fake has no rule for: {}", req.command),
        })
    }
}

impl Remote for FakeRemote {
    fn host(&self) -> &str {
        &self.name
    }

    async fn exec(&self, req: ExecRequest) -> Result<Output, RemoteError> {
        self.answer(&req)
    }

    async fn exec_streaming(
        &self,
        req: ExecRequest,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, RemoteError> {
        let out = self.answer(&req)?;
        for line in out.stdout_str().lines() {
            on_line(Stream::Stdout, line);
        }
        Ok(out)
    }

    async fn upload(&self, req: UploadRequest) -> Result<UploadOutcome, RemoteError> {
        let mut files = self.files.lock().unwrap();
        let outcome = if files.get(&req.dest) == Some(&req.contents) {
            UploadOutcome::Unchanged
        } else {
            files.insert(req.dest.clone(), req.contents.clone());
            UploadOutcome::Written
        };
        self.uploads.lock().unwrap().push(req);
        Ok(outcome)
    }
}

impl FakeRemote {
    pub fn rules_take(&self) -> Vec<Rule> {
        std::mem::take(&mut *self.rules.lock().unwrap())
    }
    pub fn rules_put(&self, rules: Vec<Rule>) {
        *self.rules.lock().unwrap() = rules;
    }
}
