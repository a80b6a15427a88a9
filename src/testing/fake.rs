//! The fake transport: a scripted [`Remote`] for unit tests of the executors. It answers
//! commands by the first matching rule and records every request and upload, so tests
//! assert what was sent where. Its Docker daemon ([`FakeRemote::on_api`],
//! [`FakeRemote::daemon`]) answers the Engine API on a relay as Docker does: `GET /version`
//! unversioned, every other request under `/vMAJOR.MINOR` within the daemon's range, or
//! refused with Docker's words; rules match the request without its version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::remote::{
    ExecRequest, ExecStream, Output, Remote, RemoteError, Stream, UploadOutcome, UploadRequest,
};

type Rule = (String, Box<dyn Fn(&ExecRequest) -> Output + Send + Sync>);

/// An Engine API answer: `METHOD PATH` text (without the version) the request contains,
/// and the answer: fixed, once only, or made from the request.
type ApiRule = (String, ApiAnswer);

/// An answer a test's function makes from the request.
type MadeAnswer = Arc<dyn Fn(&ApiCall) -> (u16, String) + Send + Sync>;

#[derive(Clone)]
enum ApiAnswer {
    Always(u16, String),
    Once(u16, String),
    /// Successive answers; the last one repeats.
    Seq(Arc<Mutex<std::collections::VecDeque<(u16, String)>>>),
    /// Made from the request by the test's function (a swarm that changes between polls).
    Made(MadeAnswer),
    /// One answer until the daemon received a request whose line contains the text,
    /// the other after: a state that a request changes (a node's swarm state, a join).
    After {
        trigger: String,
        before: (u16, String),
        after: (u16, String),
    },
}

/// An Engine API request the fake daemon received: `METHOD PATH` without the version,
/// the version it was sent at (`None` for an unversioned one), and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub line: String,
    pub version: Option<String>,
    pub body: String,
}

/// The fake daemon's word on itself: Docker's version and its API range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDaemon {
    pub docker: String,
    pub api: (u32, u32),
    pub min_api: (u32, u32),
}

impl FakeDaemon {
    /// Debian 12's docker.io, the lab's: API 1.12 to 1.41.
    pub fn docker_20() -> FakeDaemon {
        FakeDaemon::new("20.10.24+dfsg1", (1, 12), (1, 41))
    }

    pub fn new(docker: &str, min_api: (u32, u32), api: (u32, u32)) -> FakeDaemon {
        FakeDaemon {
            docker: docker.into(),
            api,
            min_api,
        }
    }

    /// The answer to `GET /version`.
    fn version_json(&self) -> String {
        format!(
            r#"{{"Version":"{}","ApiVersion":"{}.{}","MinAPIVersion":"{}.{}","Os":"linux","Arch":"arm64"}}"#,
            self.docker, self.api.0, self.api.1, self.min_api.0, self.min_api.1
        )
    }

    /// Docker's refusal of a version out of its range (moby's `versionMiddleware`).
    fn refusal(&self, v: (u32, u32)) -> Option<String> {
        let s = |v: (u32, u32)| format!("{}.{}", v.0, v.1);
        if v < self.min_api {
            Some(format!(
                "client version {} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                s(v),
                s(self.min_api)
            ))
        } else if v > self.api {
            Some(format!(
                "client version {} is too new. Maximum supported API version is {}",
                s(v),
                s(self.api)
            ))
        } else {
            None
        }
    }
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
    /// The fake daemon's answers; without any, and without a [`FakeDaemon`], the host has
    /// no stream (no dial-stdio).
    api_rules: Arc<Mutex<Vec<ApiRule>>>,
    daemon: Arc<Mutex<Option<FakeDaemon>>>,
    /// The daemon answers only once a command holding this text ran (Docker installed or
    /// started by then); until, a relay fails as on a host whose daemon is down.
    daemon_after: Arc<Mutex<Option<String>>>,
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
            daemon: Arc::default(),
            daemon_after: Arc::default(),
            api_log: Arc::default(),
        }
    }

    /// The host's Docker daemon speaks this range (without a call, Docker 20.10's once
    /// any API rule is set).
    pub fn daemon(&self, d: FakeDaemon) -> &Self {
        *self.daemon.lock().unwrap() = Some(d);
        self
    }

    /// The host's daemon answers requests whose `METHOD PATH` contains `contains` (the
    /// first rule that matches wins); with any such rule, streams open (`dial-stdio`).
    pub fn on_api(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .push((contains.into(), ApiAnswer::Always(status, body.into())));
        self
    }

    /// As [`FakeRemote::on_api`], before the rules given so far.
    pub fn on_api_first(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .insert(0, (contains.into(), ApiAnswer::Always(status, body.into())));
        self
    }

    /// As [`FakeRemote::on_api_first`], for the first matching request only: later ones
    /// get the other rules' answer (a list that changes between two reads).
    pub fn on_api_once(&self, contains: &str, status: u16, body: &str) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .insert(0, (contains.into(), ApiAnswer::Once(status, body.into())));
        self
    }

    /// Before the rules given so far: requests answered by `f`, from the request.
    pub fn on_api_fn(
        &self,
        contains: &str,
        f: impl Fn(&ApiCall) -> (u16, String) + Send + Sync + 'static,
    ) -> &Self {
        self.api_rules
            .lock()
            .unwrap()
            .insert(0, (contains.into(), ApiAnswer::Made(Arc::new(f))));
        self
    }

    /// The daemon answers once a command holding `command` ran (`apt-get install`,
    /// `service docker start`): a fresh Pi, or a daemon that is down until started.
    pub fn daemon_after(&self, command: &str) -> &Self {
        *self.daemon_after.lock().unwrap() = Some(command.into());
        self
    }

    /// Before the rules given so far: requests get `before` until the daemon received
    /// one whose line contains `trigger`, `after` from then on (`GET /info` says inactive
    /// until `POST /swarm/join`).
    pub fn on_api_after(
        &self,
        contains: &str,
        trigger: &str,
        before: (u16, &str),
        after: (u16, &str),
    ) -> &Self {
        self.api_rules.lock().unwrap().insert(
            0,
            (
                contains.into(),
                ApiAnswer::After {
                    trigger: trigger.into(),
                    before: (before.0, before.1.into()),
                    after: (after.0, after.1.into()),
                },
            ),
        );
        self
    }

    /// Before the rules given so far: successive matching requests get successive
    /// answers, the last one repeating (a poll that converges on its third call).
    pub fn on_api_seq(&self, contains: &str, answers: Vec<(u16, String)>) -> &Self {
        assert!(!answers.is_empty());
        self.api_rules.lock().unwrap().insert(
            0,
            (
                contains.into(),
                ApiAnswer::Seq(Arc::new(Mutex::new(answers.into()))),
            ),
        );
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
        self.log.lock().unwrap().push(req);
        let gate = self.daemon_after.lock().unwrap().clone();
        if let Some(gate) = gate
            && !self.commands().iter().any(|c| c.contains(&gate))
        {
            let (stream, (_written, stdout, end)) = ExecStream::pair();
            end.lock().unwrap().stderr = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n".into();
            end.lock().unwrap().closed = true;
            drop(stdout);
            return Ok(stream);
        }
        let daemon = {
            let set = self.daemon.lock().unwrap().clone();
            match set {
                Some(d) => d,
                None if !self.api_rules.lock().unwrap().is_empty() => FakeDaemon::docker_20(),
                None => {
                    return Err(RemoteError::Channel {
                        host: self.name.clone(),
                        reason: "docker: 'system dial-stdio' is not a docker command".into(),
                    });
                }
            }
        };
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
                        let seen = log.lock().unwrap();
                        answer_api(&daemon, &rules, &call, &seen)
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
    let path = req.path?;
    // `/v1.41/info` is `/info` at 1.41.
    let (version, path) = match path.strip_prefix("/v").and_then(|p| p.split_once('/')) {
        Some((v, rest))
            if v.contains('.') && v.bytes().all(|c| c.is_ascii_digit() || c == b'.') =>
        {
            (Some(v.to_string()), format!("/{rest}"))
        }
        _ => (None, path.to_string()),
    };
    let call = ApiCall {
        line: format!("{} {path}", req.method?),
        version,
        body: String::from_utf8_lossy(&buf[head..head + len]).into_owned(),
    };
    Some((call, head + len))
}

/// The daemon's answer to one request: a version out of its range is refused as Docker
/// refuses it; then the first rule that matches; `GET /version` from the daemon's word
/// on itself; else a 404.
fn answer_api(
    daemon: &FakeDaemon,
    rules: &Mutex<Vec<ApiRule>>,
    call: &ApiCall,
    seen: &[ApiCall],
) -> (u16, String) {
    let message = |m: &str| serde_json::json!({ "message": m }).to_string();
    if let Some(v) = &call.version {
        let parsed = v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        let Some(v) = parsed else {
            return (400, message("bad version"));
        };
        if let Some(refused) = daemon.refusal(v) {
            return (400, message(&refused));
        }
    }
    let mut rules = rules.lock().unwrap();
    if let Some(i) = rules
        .iter()
        .position(|(pat, _)| call.line.contains(pat.as_str()))
    {
        return match rules[i].1.clone() {
            ApiAnswer::Always(st, b) => (st, b),
            ApiAnswer::Once(st, b) => {
                rules.remove(i);
                (st, b)
            }
            ApiAnswer::Seq(q) => {
                let mut q = q.lock().unwrap();
                if q.len() > 1 {
                    q.pop_front().expect("not empty")
                } else {
                    q.front().cloned().expect("not empty")
                }
            }
            ApiAnswer::Made(f) => {
                drop(rules);
                f(call)
            }
            ApiAnswer::After {
                trigger,
                before,
                after,
            } => {
                if seen.iter().any(|c| c.line.contains(&trigger)) {
                    after
                } else {
                    before
                }
            }
        };
    }
    if call.line == "GET /version" {
        return (200, daemon.version_json());
    }
    (404, message("fake: no rule"))
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
