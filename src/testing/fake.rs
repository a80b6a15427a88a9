//! The fake transport: a scripted [`Remote`] for unit tests of the executors. It answers
//! commands by the first matching rule and records every request and upload, so tests
//! assert what was sent where.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::remote::{
    ExecRequest, Output, Remote, RemoteError, Stream, UploadOutcome, UploadRequest,
};

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
    /// Puts `other`'s rules in front of this host's: they answer first.
    pub fn prepend(&self, other: &FakeRemote) {
        let mut rules = std::mem::take(&mut *other.rules.lock().unwrap());
        let mut mine = self.rules.lock().unwrap();
        rules.append(&mut mine);
        *mine = rules;
    }

    /// A rule that wins over the ones already set.
    pub fn first(&self, contains: &str, out: Output) -> &Self {
        let front = FakeRemote::new(&self.name);
        front.on(contains, out);
        self.prepend(&front);
        self
    }
}
