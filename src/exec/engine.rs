//! The Docker Engine API of one host, over one SSH channel: `docker system dial-stdio`
//! (as root, through sudo where the host needs it) relays the daemon's socket on the
//! channel's stdin and stdout, and [`Engine`] speaks HTTP/1.1 on it (requests and answers
//! are [`crate::docker::api`]'s and [`crate::docker::http`]'s).
//!
//! Why: a `docker` CLI call costs a Pi 0.2-0.5 s of CPU; a request on this channel costs
//! the daemon's work only, and no process. One channel serves a whole command: opened
//! once per host, every poll is then one round trip ([`Engine::batch`] writes its
//! requests together and reads the answers in order).
//!
//! [`Engine::open`] fails (and callers drive the `docker` CLI instead, saying so) when the
//! host has no `dial-stdio` (Docker before 18.09) or its daemon speaks an API older than
//! [`crate::docker::api::VERSION`]. A request that times out or finds the channel closed
//! leaves the engine broken (answers could no longer be matched to requests): every later
//! request fails at once with the first error.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;

use crate::docker::api::{self, Request};
use crate::docker::http::{Decoder, Response};
use crate::remote::{ExecRequest, ExecStream, Remote, StreamReader, StreamWriter, stats};

/// How long the relay may live on the host: longer than any command (its remote time
/// limit only matters for a relay whose connection died without closing its stdin).
const LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The command on the host.
pub const DIAL_STDIO: &str = "docker system dial-stdio";

/// Starts `dial-stdio` on the host, as root; `timeout` bounds the start (sudo included).
async fn relay<R: Remote>(remote: &R, timeout: Duration) -> Result<ExecStream, String> {
    remote
        .open_stream(
            ExecRequest::new(DIAL_STDIO).privileged().timeout(timeout),
            LIFETIME,
        )
        .await
        .map_err(|e| e.to_string())
}

/// One host's Engine API.
pub struct Engine {
    host: String,
    writer: StreamWriter,
    reader: AsyncMutex<(StreamReader, Decoder)>,
    broken: Mutex<Option<String>>,
    /// The daemon's version, e.g. `20.10.24`.
    pub docker_version: String,
    /// The Engine API version the daemon speaks, e.g. `1.41`.
    pub api_version: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("host", &self.host).finish()
    }
}

impl Engine {
    /// Starts the relay and asks the daemon's version (which proves the relay works).
    /// `timeout` bounds the start (sudo included) and that first answer. The daemon must
    /// speak [`api::VERSION`].
    pub async fn open<R: Remote>(remote: &R, timeout: Duration) -> Result<Engine, String> {
        Engine::start(remote, timeout, true).await
    }

    /// [`Engine::open`] for the unversioned requests only (the swarm join and the local
    /// node's state, the same since API 1.24): any daemon with `dial-stdio` will do.
    pub async fn open_any<R: Remote>(remote: &R, timeout: Duration) -> Result<Engine, String> {
        Engine::start(remote, timeout, false).await
    }

    async fn start<R: Remote>(
        remote: &R,
        timeout: Duration,
        current_api: bool,
    ) -> Result<Engine, String> {
        let host = remote.host().to_string();
        let stream = relay(remote, timeout).await?;
        let engine = Engine {
            host,
            writer: stream.writer,
            reader: AsyncMutex::new((stream.reader, Decoder::default())),
            broken: Mutex::new(None),
            docker_version: String::new(),
            api_version: String::new(),
        };
        let answer = engine.call(api::version(), timeout).await?;
        if !answer.ok() {
            return Err(format!(
                "the Engine API answered {}",
                api::error_message(&answer)
            ));
        }
        let (docker, api_version) = api::parse_version(&answer.body)?;
        if current_api && !api::supported(&api_version) {
            return Err(format!(
                "Docker {docker} speaks Engine API {api_version}; rpiprov's API client needs {} (Docker 20.10)",
                api::VERSION
            ));
        }
        Ok(Engine {
            docker_version: docker,
            api_version,
            ..engine
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the daemon speaks [`api::VERSION`] (an engine opened by
    /// [`Engine::open_any`] may not).
    pub fn current_api(&self) -> bool {
        api::supported(&self.api_version)
    }

    /// One request, one answer.
    pub async fn call(&self, req: Request, timeout: Duration) -> Result<Response, String> {
        let mut v = self.batch(std::slice::from_ref(&req), timeout).await?;
        Ok(v.remove(0))
    }

    /// Several requests in one round trip: written together, answered in order.
    pub async fn batch(
        &self,
        reqs: &[Request],
        timeout: Duration,
    ) -> Result<Vec<Response>, String> {
        if let Some(e) = self.broken.lock().unwrap().clone() {
            return Err(e);
        }
        let mut guard = self.reader.lock().await;
        let (reader, decoder) = &mut *guard;
        let mut bytes = Vec::new();
        for r in reqs {
            // Each answer's body is bounded by its request's kind (issue 18).
            decoder.expect(r);
            bytes.extend(r.encode());
        }
        stats::api_batch(reqs.len());
        if !self.writer.write(bytes) {
            return Err(self.break_with(reader, "the channel is closed"));
        }
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
            Ok(Err(e)) => Err(self.break_with(reader, &e)),
            Err(_) => Err(self.break_with(
                reader,
                &format!("no answer within {}s", timeout.as_secs().max(1)),
            )),
        }
    }

    /// Marks the engine broken; the error names the host and what the relay said.
    fn break_with(&self, reader: &StreamReader, what: &str) -> String {
        let end = reader.end();
        let said = end
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(" ({})", l.trim()))
            .unwrap_or_default();
        let e = format!(
            "{}: Docker Engine API over `{DIAL_STDIO}`: {what}{said}",
            self.host
        );
        *self.broken.lock().unwrap() = Some(e.clone());
        e
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
    /// Starts the relay and subscribes; `timeout` bounds the start and the answer's head
    /// (sent at once by the daemon, before any event).
    pub async fn open<R: Remote>(
        remote: &R,
        req: Request,
        timeout: Duration,
    ) -> Result<Watch, String> {
        let stream = relay(remote, timeout).await?;
        Watch::subscribe(remote.host(), stream, req, timeout).await
    }

    /// Sends the request on a relay and reads the answer's head.
    async fn subscribe(
        host: &str,
        stream: ExecStream,
        req: Request,
        timeout: Duration,
    ) -> Result<Watch, String> {
        let (writer, mut reader) = (stream.writer, stream.reader);
        if !writer.write(req.encode()) {
            return Err(format!("{host}: the events relay closed"));
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
            Ok(Err(e)) => return Err(format!("{host}: {e}")),
            Err(_) => {
                return Err(format!(
                    "{host}: no answer to the events request within {}s",
                    timeout.as_secs().max(1)
                ));
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

    /// A fake daemon on a stream pair: answers each request it reads with the next
    /// canned answer, in order.
    fn fake(answers: Vec<&'static str>) -> (Engine, tokio::task::JoinHandle<Vec<String>>) {
        let (stream, (mut written, stdout, _end)) = ExecStream::pair();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            while let Some(bytes) = written.recv().await {
                let text = String::from_utf8(bytes).unwrap();
                for req in text.split("GET ").filter(|r| !r.is_empty()) {
                    seen.push(req.lines().next().unwrap().to_string());
                    match answers.next() {
                        Some(a) => {
                            // Cut in two chunks, as a channel may deliver it.
                            let (x, y) = a.as_bytes().split_at(a.len() / 2);
                            let _ = stdout.send(x.to_vec());
                            let _ = stdout.send(y.to_vec());
                        }
                        None => return seen,
                    }
                }
            }
            seen
        });
        let engine = Engine {
            host: "pi1".into(),
            writer: stream.writer,
            reader: AsyncMutex::new((stream.reader, Decoder::default())),
            broken: Mutex::new(None),
            docker_version: "20.10.24".into(),
            api_version: "1.41".into(),
        };
        (engine, task)
    }

    #[tokio::test]
    async fn a_batch_is_answered_in_order_in_one_round_trip() {
        let (engine, task) = fake(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1]\r\n0\r\n\r\n",
        ]);
        let before = stats::snapshot();
        let got = engine
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
        let after = stats::snapshot();
        assert!(after.round_trips > before.round_trips);
        drop(engine);
        assert_eq!(task.await.unwrap(), ["/a HTTP/1.1", "/b HTTP/1.1"]);
    }

    /// A watch on a fake relay: `said` is what the daemon answers first.
    async fn watch(said: &str) -> (Result<Watch, String>, crate::remote::FarEnd) {
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

    #[tokio::test]
    async fn a_watch_wakes_on_each_event_and_ends_with_its_stream() {
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
            w.err().unwrap(),
            "pi1: the events request was answered HTTP/1.1 400 Bad Request"
        );
    }

    #[tokio::test]
    async fn a_closed_channel_breaks_the_engine_and_says_what_the_relay_said() {
        let (stream, (written, stdout, end)) = ExecStream::pair();
        end.lock().unwrap().stderr =
            "docker: 'system dial-stdio' is not a docker command.\n".into();
        drop(stdout);
        let engine = Engine {
            host: "pi1".into(),
            writer: stream.writer,
            reader: AsyncMutex::new((stream.reader, Decoder::default())),
            broken: Mutex::new(None),
            docker_version: String::new(),
            api_version: String::new(),
        };
        let e = engine
            .call(Request::get("/version"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "pi1: Docker Engine API over `docker system dial-stdio`: the channel closed (docker: 'system dial-stdio' is not a docker command.)"
        );
        // Every later request fails the same way, at once.
        let again = engine
            .call(Request::get("/version"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(again, e);
        drop(written);
    }
}
