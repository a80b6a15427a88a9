//! The Docker Engine API of one host, over one SSH channel: `docker system dial-stdio`
//! (as root, through sudo where the host needs it) relays the daemon's socket on the
//! channel's stdin and stdout, and [`Engine`] speaks HTTP/1.1 on it (requests and answers
//! are [`crate::docker::api`]'s and [`crate::docker::http`]'s). This is how rpiprov reads
//! Docker and changes its swarm, nodes, networks and services; the `docker` CLI is left
//! to installing and starting Docker, `docker stack deploy`/`rm` and `docker service logs`.
//!
//! Why: a `docker` CLI call costs a Pi 0.2-0.5 s of CPU; a request on this channel costs
//! the daemon's work only, and no process. One channel serves a whole command: opened
//! once per host (its relay is the one `docker` process rpiprov starts there for it),
//! every poll is then one round trip ([`Engine::batch`] writes its requests together and
//! reads the answers in order).
//!
//! [`Engine::open`] asks the daemon's versions first (`GET /version`, the only request
//! sent without a version) and negotiates the version every later request carries
//! ([`crate::docker::api::negotiate`]); a daemon with none in common is refused
//! ([`EngineError::Unsupported`]). A request that times out or finds the channel closed
//! drops the relay (answers could no longer be matched to requests): that request fails,
//! and the next one starts a new relay over the connection the transport keeps (made again
//! after a cut link), at the version already negotiated. [`Engines`] keeps each host's
//! engine for a whole command, opened at its first use.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;

use crate::docker::api::{self, ApiVersion, Daemon, Request, Unsupported};
use crate::docker::http::{Decoder, Response};
use crate::remote::{
    ExecRequest, ExecStream, Remote, RemoteError, StreamReader, StreamWriter, stats,
};

/// How long the relay may live on the host: longer than any command (its remote time
/// limit only matters for a relay whose connection died without closing its stdin).
const LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The command on the host.
pub const DIAL_STDIO: &str = "docker system dial-stdio";

/// Starts a relay on a host; the argument bounds the start (sudo included).
pub type Dial = Arc<
    dyn Fn(Duration) -> Pin<Box<dyn Future<Output = Result<ExecStream, RemoteError>> + Send>>
        + Send
        + Sync,
>;

/// How relays start on this host: `dial-stdio`, as root.
pub fn dialer<R: Remote + 'static>(remote: Arc<R>) -> Dial {
    Arc::new(move |timeout| {
        let remote = remote.clone();
        Box::pin(async move {
            remote
                .open_stream(
                    ExecRequest::new(DIAL_STDIO).privileged().timeout(timeout),
                    LIFETIME,
                )
                .await
        })
    })
}

/// Why the Engine API of a host could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The relay did not start or stopped carrying requests: no `docker` there, its
    /// daemon down, the channel closed, no answer in time. What the relay said is in
    /// `what`. A later request may do better.
    Relay { host: String, what: String },
    /// The transport could not start the relay (its words name the host);
    /// `unreachable` when it gave the host up for the rest of the run.
    Transport { text: String, unreachable: bool },
    /// The daemon answered and speaks no API version rpiprov speaks.
    Unsupported { host: String, why: Unsupported },
}

impl EngineError {
    /// The host is gone for the rest of the run: no request will reach it.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            EngineError::Transport {
                unreachable: true,
                ..
            }
        )
    }

    fn transport(e: RemoteError) -> EngineError {
        EngineError::Transport {
            unreachable: e.is_unreachable(),
            text: e.to_string(),
        }
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Relay { host, what } => {
                write!(f, "{host}: Docker Engine API over `{DIAL_STDIO}`: {what}")
            }
            EngineError::Transport { text, .. } => f.write_str(text),
            EngineError::Unsupported { host, why } => write!(f, "{host}: {why}"),
        }
    }
}

impl From<EngineError> for String {
    fn from(e: EngineError) -> String {
        e.to_string()
    }
}

/// An open relay.
struct Conn {
    writer: StreamWriter,
    reader: StreamReader,
    decoder: Decoder,
    /// Requests were written and their answers not all read: the exchange's future was
    /// dropped midway (a caller's timeout or `select!`). Answers still coming would be
    /// read as the next request's, so the relay is not used again.
    in_flight: bool,
}

impl Conn {
    fn new(stream: ExecStream) -> Conn {
        Conn {
            writer: stream.writer,
            reader: stream.reader,
            decoder: Decoder::default(),
            in_flight: false,
        }
    }

    /// Writes `reqs` and reads as many answers within `timeout`.
    async fn exchange(
        &mut self,
        host: &str,
        reqs: &[Request],
        timeout: Duration,
    ) -> Result<Vec<Response>, EngineError> {
        let mut bytes = Vec::new();
        for r in reqs {
            // Each answer's body is bounded by its request's kind (issue 18).
            self.decoder.expect(r);
            bytes.extend(r.encode());
        }
        if !self.writer.write(bytes) {
            return Err(self.broken(host, "the channel is closed"));
        }
        let (reader, decoder) = (&mut self.reader, &mut self.decoder);
        let read_all = async {
            let mut out = Vec::with_capacity(reqs.len());
            while out.len() < reqs.len() {
                match decoder.next_response() {
                    Ok(Some(r)) => {
                        out.push(r);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("cannot read the answer: {e}")),
                }
                match reader.read().await {
                    Some(chunk) => decoder.push(&chunk),
                    None => return Err("the channel closed".to_string()),
                }
            }
            Ok(out)
        };
        match tokio::time::timeout(timeout, read_all).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.broken(host, &e)),
            Err(_) => Err(self.broken(
                host,
                &format!("no answer within {}s", timeout.as_secs().max(1)),
            )),
        }
    }

    /// The error of a relay that cannot go on, with the last thing it said on stderr.
    fn broken(&self, host: &str, what: &str) -> EngineError {
        let end = self.reader.end();
        let said = end
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(" ({})", l.trim()))
            .unwrap_or_default();
        EngineError::Relay {
            host: host.to_string(),
            what: format!("{what}{said}"),
        }
    }
}

async fn dial(dial: &Dial, timeout: Duration) -> Result<Conn, EngineError> {
    dial(timeout)
        .await
        .map(Conn::new)
        .map_err(EngineError::transport)
}

/// One host's Engine API.
pub struct Engine {
    host: String,
    /// What the daemon said of itself.
    pub daemon: Daemon,
    /// The API version every request is sent at.
    pub version: ApiVersion,
    relay: AsyncMutex<Option<Conn>>,
    dial: Dial,
    /// Bounds the start of a relay opened again.
    dial_timeout: Duration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .field("version", &self.version)
            .finish()
    }
}

impl Engine {
    /// Starts the relay, asks the daemon's versions and negotiates the one to speak.
    /// `timeout` bounds the start (sudo included) and that first answer.
    pub async fn open<R: Remote + 'static>(
        remote: Arc<R>,
        timeout: Duration,
    ) -> Result<Engine, EngineError> {
        let host = remote.host().to_string();
        Engine::start(host, dialer(remote), timeout).await
    }

    /// [`Engine::open`] with the relay started by `dial`.
    pub async fn start(
        host: String,
        dial_with: Dial,
        timeout: Duration,
    ) -> Result<Engine, EngineError> {
        let mut conn = dial(&dial_with, timeout).await?;
        stats::api_batch(1);
        let answer = conn
            .exchange(&host, &[api::version()], timeout)
            .await?
            .remove(0);
        let bad = |what: String| EngineError::Relay {
            host: host.clone(),
            what,
        };
        if !answer.ok() {
            return Err(bad(format!(
                "the daemon's version could not be read: {}",
                api::error_message(&answer)
            )));
        }
        let daemon = api::parse_version(&answer.body).map_err(bad)?;
        let version = api::negotiate(&daemon).map_err(|why| EngineError::Unsupported {
            host: host.clone(),
            why,
        })?;
        Ok(Engine {
            host,
            daemon,
            version,
            relay: AsyncMutex::new(Some(conn)),
            dial: dial_with,
            dial_timeout: timeout,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// One request, one answer.
    pub async fn call(&self, req: Request, timeout: Duration) -> Result<Response, EngineError> {
        let mut v = self.batch(std::slice::from_ref(&req), timeout).await?;
        Ok(v.remove(0))
    }

    /// Several requests in one round trip: written together, answered in order, each at
    /// the negotiated version.
    pub async fn batch(
        &self,
        reqs: &[Request],
        timeout: Duration,
    ) -> Result<Vec<Response>, EngineError> {
        let mut relay = self.relay.lock().await;
        // A relay that ended while nothing was asked of it (its daemon restarted): a new
        // one carries this batch, as nothing was sent on the old one.
        if relay
            .as_ref()
            .is_some_and(|c| c.reader.end().closed || c.in_flight)
        {
            *relay = None;
        }
        if relay.is_none() {
            *relay = Some(dial(&self.dial, self.dial_timeout).await?);
        }
        let conn = relay.as_mut().expect("opened above");
        let reqs: Vec<Request> = reqs.iter().map(|r| api::at(r, self.version)).collect();
        stats::api_batch(reqs.len());
        conn.in_flight = true;
        let answers = conn.exchange(&self.host, &reqs, timeout).await;
        match &answers {
            Ok(_) => conn.in_flight = false,
            Err(_) => *relay = None,
        }
        answers
    }

    /// [`Engine::open`], and beside it a watch of the daemon's events (`req`): both
    /// relays start at once, and the watch subscribes once the version is known.
    pub async fn open_watching<R: Remote + 'static>(
        remote: Arc<R>,
        req: &Request,
        timeout: Duration,
    ) -> Result<(Engine, Result<Watch, EngineError>), EngineError> {
        let host = remote.host().to_string();
        let dial_with = dialer(remote);
        let (engine, relay) = tokio::join!(
            Engine::start(host.clone(), dial_with.clone(), timeout),
            dial_with(timeout)
        );
        let engine = engine?;
        let watch = match relay {
            Ok(stream) => {
                Watch::subscribe(&host, stream, api::at(req, engine.version), timeout).await
            }
            Err(e) => Err(EngineError::transport(e)),
        };
        Ok((engine, watch))
    }

    /// A watch of the daemon's events (`req`, at the negotiated version) on a relay of
    /// its own: see [`Watch`].
    pub async fn watch(&self, req: &Request, timeout: Duration) -> Result<Watch, EngineError> {
        let stream = (self.dial)(timeout).await.map_err(EngineError::transport)?;
        Watch::subscribe(&self.host, stream, api::at(req, self.version), timeout).await
    }
}

/// Each host's engine for a whole command, opened at its first use and kept; an open
/// that failed is tried again at the next use (Docker may have been installed or started
/// meanwhile).
/// A host's engine once opened; locked while it opens, so that it opens once.
type Slot = AsyncMutex<Option<Arc<Engine>>>;

pub struct Engines<R> {
    sessions: HashMap<String, Arc<R>>,
    open: HashMap<String, Slot>,
    timeout: Duration,
}

impl<R: Remote + 'static> Engines<R> {
    /// The engines of these hosts; `timeout` bounds each relay's start.
    pub fn new(sessions: &HashMap<String, Arc<R>>, timeout: Duration) -> Engines<R> {
        Engines {
            open: sessions
                .keys()
                .map(|h| (h.clone(), AsyncMutex::new(None)))
                .collect(),
            sessions: sessions.clone(),
            timeout,
        }
    }

    /// The host's engine slot and its session; an error for a host not connected.
    fn slot(&self, host: &str) -> Result<(&Slot, &Arc<R>), EngineError> {
        match (self.open.get(host), self.sessions.get(host)) {
            (Some(cell), Some(remote)) => Ok((cell, remote)),
            _ => Err(EngineError::Transport {
                text: format!("{host} is not connected"),
                unreachable: false,
            }),
        }
    }

    /// The host's engine, opened now if it is not yet.
    pub async fn get(&self, host: &str) -> Result<Arc<Engine>, EngineError> {
        let (cell, remote) = self.slot(host)?;
        let mut slot = cell.lock().await;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Arc::new(Engine::open(remote.clone(), self.timeout).await?);
        *slot = Some(e.clone());
        Ok(e)
    }

    /// The host's engine and beside it a watch of its daemon's events (`req`), their
    /// relays started at once when the engine is not open yet ([`Engine::open_watching`]).
    pub async fn get_watching(
        &self,
        host: &str,
        req: &Request,
    ) -> Result<(Arc<Engine>, Result<Watch, EngineError>), EngineError> {
        let (cell, remote) = self.slot(host)?;
        let mut slot = cell.lock().await;
        if let Some(e) = slot.as_ref() {
            let e = e.clone();
            drop(slot);
            let w = e.watch(req, self.timeout).await;
            return Ok((e, w));
        }
        let (e, w) = Engine::open_watching(remote.clone(), req, self.timeout).await?;
        let e = Arc::new(e);
        *slot = Some(e.clone());
        Ok((e, w))
    }

    /// Drops the host's engine (its daemon restarted): the next use opens a new one.
    pub async fn forget(&self, host: &str) {
        if let Some(cell) = self.open.get(host) {
            *cell.lock().await = None;
        }
    }

    /// The hosts' names.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.sessions.keys()
    }
}

/// A stream of the daemon's events (`GET /events` with a filter), on a channel and relay
/// of its own: an events answer never ends, so it cannot share an [`Engine`]'s channel.
/// Nothing of an event is read: [`Watch::next`] says that the daemon reported one (or
/// several) since the last call, which is all a wait needs to look again at once rather
/// than at its next poll. Dropping it ends the relay (EOF; the daemon ends the answer
/// when its client goes).
pub struct Watch {
    reader: StreamReader,
    _writer: StreamWriter,
    /// Bytes that came with the answer's head: an event already.
    pending: bool,
}

impl Watch {
    /// Sends the request on a relay and reads the answer's head (sent at once by the
    /// daemon, before any event) within `timeout`.
    pub async fn subscribe(
        host: &str,
        stream: ExecStream,
        req: Request,
        timeout: Duration,
    ) -> Result<Watch, EngineError> {
        let (writer, mut reader) = (stream.writer, stream.reader);
        let fail = |what: String| EngineError::Relay {
            host: host.to_string(),
            what,
        };
        if !writer.write(req.encode()) {
            return Err(fail("the events relay closed".into()));
        }
        let head = async {
            let mut bytes = Vec::new();
            loop {
                match reader.read().await {
                    Some(chunk) => bytes.extend(chunk),
                    None => return Err("the events relay closed".to_string()),
                }
                if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&bytes[..end]);
                    let status = head.lines().next().unwrap_or_default();
                    if status.split_whitespace().nth(1) != Some("200") {
                        return Err(format!("the events request was answered {status}"));
                    }
                    return Ok(bytes.len() > end + 4);
                }
            }
        };
        let pending = match tokio::time::timeout(timeout, head).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => {
                return Err(fail(format!(
                    "no answer to the events request within {}s",
                    timeout.as_secs().max(1)
                )));
            }
        };
        Ok(Watch {
            reader,
            _writer: writer,
            pending,
        })
    }

    /// Waits until the daemon reports an event; `false` once the stream ended (the host
    /// lost, or its daemon gone): no event will come from it any more.
    pub async fn next(&mut self) -> bool {
        if std::mem::take(&mut self.pending) {
            return true;
        }
        self.reader.read().await.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The daemon's side of a relay: each request read is answered with the next canned
    /// answer; the request lines seen are kept.
    fn daemon(far: crate::remote::FarEnd, answers: Vec<String>, seen: Arc<Mutex<Vec<String>>>) {
        let (mut written, stdout, _end) = far;
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Some(bytes) = written.recv().await {
                let text = String::from_utf8(bytes).unwrap();
                for req in text.split("GET ").filter(|r| !r.is_empty()) {
                    seen.lock()
                        .unwrap()
                        .push(req.lines().next().unwrap().to_string());
                    let Some(a) = answers.next() else { return };
                    // Cut in two chunks, as a channel may deliver it.
                    let (x, y) = a.as_bytes().split_at(a.len() / 2);
                    let _ = stdout.send(x.to_vec());
                    let _ = stdout.send(y.to_vec());
                }
            }
        });
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    const DOCKER_26: &str =
        r#"{"Version":"26.1.5+dfsg1","ApiVersion":"1.45","MinAPIVersion":"1.24"}"#;

    /// A dial whose every relay is a fresh fake daemon answering `answers` in turn (one
    /// list per relay); `dials` counts the relays started.
    fn dial_to(
        relays: Vec<Vec<String>>,
        seen: Arc<Mutex<Vec<String>>>,
    ) -> (Dial, Arc<Mutex<usize>>) {
        let relays = Arc::new(Mutex::new(relays.into_iter()));
        let dials = Arc::new(Mutex::new(0));
        let count = dials.clone();
        let dial: Dial = Arc::new(move |_| {
            *count.lock().unwrap() += 1;
            let answers = relays.lock().unwrap().next();
            let seen = seen.clone();
            Box::pin(async move {
                let Some(answers) = answers else {
                    return Err(RemoteError::Channel {
                        host: "pi1".into(),
                        reason: "no more relays".into(),
                    });
                };
                let (stream, far) = ExecStream::pair();
                daemon(far, answers, seen);
                Ok(stream)
            })
        });
        (dial, dials)
    }

    /// The version is asked once, unversioned; every later request carries the version
    /// negotiated (Debian 13's Docker: 1.45), several in one round trip, answered in order.
    #[tokio::test]
    async fn the_version_is_asked_once_and_every_request_carries_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (dial, _) = dial_to(
            vec![vec![
                ok(DOCKER_26),
                ok("[]"),
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1]\r\n0\r\n\r\n".into(),
            ]],
            seen.clone(),
        );
        let e = Engine::start("pi1".into(), dial, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(e.version, ApiVersion::new(1, 45));
        assert_eq!(e.daemon.docker, "26.1.5+dfsg1");
        let before = stats::snapshot();
        let got = e
            .batch(
                &[Request::get("/a"), Request::get("/b")],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|r| r.text()).collect::<Vec<_>>(),
            ["[]", "[1]"]
        );
        assert!(stats::snapshot().round_trips > before.round_trips);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "/version HTTP/1.1",
                "/v1.45/a HTTP/1.1",
                "/v1.45/b HTTP/1.1"
            ]
        );
    }

    /// A daemon with no version in common is refused at the start, naming both ranges;
    /// its own word on itself is kept in the error.
    #[tokio::test]
    async fn a_daemon_too_old_is_refused_at_the_start() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (dial, _) = dial_to(
            vec![vec![ok(
                r#"{"Version":"19.03.15","ApiVersion":"1.40","MinAPIVersion":"1.12"}"#,
            )]],
            seen,
        );
        let e = Engine::start("pi1".into(), dial, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pi1: Docker 19.03.15 speaks Engine API 1.12 to 1.40, rpiprov 1.41 to 1.55: no version in common; upgrade Docker there (rpiprov needs Docker 20.10 or later)"
        );
        let EngineError::Unsupported { why, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(why.daemon.docker, "19.03.15");
    }

    #[tokio::test]
    async fn a_watch_wakes_on_each_event_and_ends_with_its_stream() {
        async fn watch(said: &str) -> (Result<Watch, EngineError>, crate::remote::FarEnd) {
            let (stream, far) = ExecStream::pair();
            let _ = far.1.send(said.as_bytes().to_vec());
            let w = Watch::subscribe(
                "pi1",
                stream,
                Request::get("/events"),
                Duration::from_secs(5),
            )
            .await;
            (w, far)
        }
        let (w, (_written, stdout, _end)) =
            watch("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        let mut w = w.unwrap();
        // Nothing yet: no wake-up.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.next())
                .await
                .is_err()
        );
        let _ =
            stdout.send(b"5c\r\n{\"Type\":\"container\",\"Action\":\"destroy\"}\n\r\n".to_vec());
        assert!(w.next().await);
        drop(stdout);
        assert!(!w.next().await);
        // An event that came with the head counts.
        let (w, _far) = watch("HTTP/1.1 200 OK\r\n\r\n5c\r\n{}").await;
        assert!(w.unwrap().next().await);
        // A refused subscription says so.
        let (w, _far) = watch("HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}").await;
        assert_eq!(
            w.err().unwrap().to_string(),
            "pi1: Docker Engine API over `docker system dial-stdio`: the events request was answered HTTP/1.1 400 Bad Request"
        );
    }

    /// A relay that closes fails the request in flight with what the relay said; the
    /// next request starts a new relay, at the version already negotiated, without asking
    /// it again.
    #[tokio::test]
    async fn a_closed_relay_fails_its_request_and_the_next_one_opens_another() {
        let (stream, (written, stdout, end)) = ExecStream::pair();
        let first = Arc::new(Mutex::new(Some(stream)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (again, dials) = dial_to(vec![vec![ok("{}")]], seen.clone());
        let dial: Dial = Arc::new(move |t| match first.lock().unwrap().take() {
            Some(s) => Box::pin(async move { Ok(s) }),
            None => again(t),
        });
        let _ = stdout.send(ok(DOCKER_26).into_bytes());
        let e = Engine::start("pi1".into(), dial, Duration::from_secs(5))
            .await
            .unwrap();
        end.lock().unwrap().stderr = "error during connect: the daemon went away\n".into();
        drop(stdout);
        let err = e
            .call(Request::get("/info"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pi1: Docker Engine API over `docker system dial-stdio`: the channel closed (error during connect: the daemon went away)"
        );
        let r = e
            .call(Request::get("/info"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.text(), "{}");
        assert_eq!(*dials.lock().unwrap(), 1);
        assert_eq!(*seen.lock().unwrap(), ["/v1.45/info HTTP/1.1"]);
        drop(written);
    }
}

#[cfg(test)]
mod against_the_fake_daemon {
    use super::*;
    use crate::testing::{FakeRemote, fake::FakeDaemon};

    /// Docker 29.0's default floor (or any daemon's `DOCKER_MIN_API_VERSION=1.44`): what
    /// a client of a fixed 1.41 sends is refused there in Docker's words; the engine
    /// speaks the daemon's own version and is answered.
    #[tokio::test]
    async fn a_daemon_whose_floor_is_1_44_is_spoken_to_at_its_own_version() {
        let host = FakeRemote::new("pi1");
        host.daemon(FakeDaemon::new("29.0.0", (1, 44), (1, 52)))
            .on_api("GET /info", 200, "{}");
        let relay = host
            .open_stream(ExecRequest::new(DIAL_STDIO), LIFETIME)
            .await
            .unwrap();
        let mut fixed = Conn::new(relay);
        let req = api::at(&api::info(), api::OLDEST);
        let r = fixed
            .exchange("pi1", &[req], Duration::from_secs(5))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (r.status, api::error_message(&r)),
            (
                400,
                "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version".to_string()
            )
        );

        let e = Engine::open(Arc::new(host.clone()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(e.version, ApiVersion::new(1, 52));
        let r = e.call(api::info(), Duration::from_secs(5)).await.unwrap();
        assert_eq!((r.status, r.text()), (200, "{}".to_string()));
        let calls: Vec<(String, Option<String>)> = host
            .api_log
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.line.clone(), c.version.clone()))
            .collect();
        assert_eq!(
            calls,
            [
                ("GET /info".to_string(), Some("1.41".to_string())),
                ("GET /version".to_string(), None),
                ("GET /info".to_string(), Some("1.52".to_string())),
            ]
        );
    }
}
