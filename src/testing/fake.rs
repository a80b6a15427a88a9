//! The fake transport: a scripted [`Remote`] for unit tests of the executors. It answers
//! commands by the first matching rule and records every request and upload, so tests
//! assert what was sent where.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::remote::{
    ExecRequest, ExecStream, Output, Remote, RemoteError, Stream, UploadOutcome, UploadRequest,
};

type Rule = (String, Box<dyn Fn(&ExecRequest) -> Output + Send + Sync>);

/// An Engine API answer: `(method and path contains, status, body)`.
/// `METHOD PATH` text, status, body, and whether the rule answers once only.
type ApiRule = (String, u16, String, bool);

/// An Engine API request the fake daemon received: `METHOD PATH` and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub line: String,
    pub body: String,
}

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
    /// The fake daemon's answers; without any, the host has no stream (no dial-stdio).
    api_rules: Arc<Mutex<Vec<ApiRule>>>,
    /// Every API request received, in order.
    pub api_log: Arc<Mutex<Vec<ApiCall>>>,
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
            api_rules: Arc::default(),
            api_log: Arc::default(),
        }
    }

    /// The host's daemon answers requests whose `METHOD PATH` contains `contains` (the
    /// first rule that matches wins); with any such rule, streams open (`dial-stdio`).
    pub fn on_api(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .push((contains.into(), status, body.into(), false));
        self
    }

    /// As [`FakeRemote::on_api`], before the rules given so far.
    pub fn on_api_first(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .insert(0, (contains.into(), status, body.into(), false));
        self
    }

    /// As [`FakeRemote::on_api_first`], for the first matching request only: later ones
    /// get the other rules' answer (a list that changes between two reads).
    pub fn on_api_once(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .insert(0, (contains.into(), status, body.into(), true));
        self
    }

    /// The API requests received whose `METHOD PATH` contains `text`.
    pub fn api_calls(&self, text: &str) -> Vec<ApiCall> {
        self.api_log
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.line.contains(text))
            .cloned()
            .collect()
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

    async fn open_stream(
        &self,
        req: ExecRequest,
        _lifetime: std::time::Duration,
    ) -> Result<ExecStream, RemoteError> {
        if !req.command.contains("dial-stdio") {
            // Any other long-lived command (a staged file read out): its rule's stdout,
            // then the end of the stream with its status.
            let out = self.answer(&req)?;
            let (stream, (_written, stdout, end)) = ExecStream::pair();
            let _ = stdout.send(out.stdout.clone());
            let mut e = end.lock().unwrap();
            e.status = Some(out.status);
            e.stderr = out.stderr_str();
            e.closed = true;
            return Ok(stream);
        }
        self.log.lock().unwrap().push(req);
        if self.api_rules.lock().unwrap().is_empty() {
            return Err(RemoteError::Channel {
                host: self.name.clone(),
                reason: "docker: 'system dial-stdio' is not a docker command".into(),
            });
        }
        let (stream, (mut written, stdout, _end)) = ExecStream::pair();
        let rules = self.api_rules.clone();
        let log = self.api_log.clone();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(bytes) = written.recv().await {
                buf.extend(bytes);
                while let Some((call, used)) = parse_request(&buf) {
                    buf.drain(..used);
                    let (status, body) = {
                        let mut rules = rules.lock().unwrap();
                        match rules
                            .iter()
                            .position(|(pat, ..)| call.line.contains(pat.as_str()))
                        {
                            Some(i) => {
                                let (_, st, b, once) = rules[i].clone();
                                if once {
                                    rules.remove(i);
                                }
                                (st, b)
                            }
                            None => (404, "{\"message\":\"fake: no rule\"}".into()),
                        }
                    };
                    log.lock().unwrap().push(call);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stdout.send(answer.into_bytes());
                }
            }
        });
        Ok(stream)
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

/// One whole request at the start of `buf`, and its length.
fn parse_request(buf: &[u8]) -> Option<(ApiCall, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let len: usize = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .unwrap_or(0);
    if buf.len() < head + len {
        return None;
    }
    let call = ApiCall {
        line: format!("{} {}", req.method?, req.path?),
        body: String::from_utf8_lossy(&buf[head..head + len]).into_owned(),
    };
    Some((call, head + len))
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
