//! Running work across hosts: bounded parallelism ([`parallel_map`], [`connect_all`]),
//! one outcome per host, failures counted rather than propagated so that one host's
//! failure never stops the others, and the one way a remote command's failure becomes a
//! step error ([`run_ok`], [`root`], [`check`]).
//!
//! - [`report`]: what a command reports: rows, outcomes, progress events, the
//!   `Reporter` they go to, and [`report::Rows`], the per-row
//!   bookkeeping every command uses;
//! - [`lock`]: the deploy lock, and [`lock::with_lock`]: take it, watch Ctrl-C,
//!   release it, for every command that locks;
//! - [`preview`]: what a command would do (`rpiprov plan`, `--dry-run`), per row, with
//!   the diff of a stack's files;
//! - [`engine`]: a host's Docker Engine API over one SSH channel (`docker system
//!   dial-stdio`), its version negotiated: how every executor reads Docker and changes
//!   its swarm, without a `docker` process per request;
//! - [`probe`]: the probe of a host, its shell command and its Engine API at once.
//!
//! The executors (`bootstrap`, `deploy`, `teardown`, and `rpiprov run` in
//! `crate::cmd::run`) are built on this; renderers (`crate::ui`) read its report types.

pub mod engine;
pub mod lock;
pub mod preview;
pub mod probe;
pub mod report;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::remote::{ExecRequest, Output, Remote, RemoteError};
use report::{Event, Reporter};

/// The longest time between two polls of remote state (a stack converging, a stack going
/// away, a network still in use): polls start at a tenth of a second after a change and
/// back off to this.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `f` on every item with at most `limit` at once; results come back in item order.
/// With a limit of one the items run in their order (managers join in the inventory's
/// order, as the user wrote it), not in whichever order spawned tasks reach the semaphore.
pub async fn parallel_map<T, F, Fut, O>(items: Vec<T>, limit: usize, f: F) -> Vec<O>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = O> + Send + 'static,
    O: Send + 'static,
{
    if limit <= 1 {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(f(item).await);
        }
        return out;
    }
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let fut = f(item);
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<O>> = (0..n).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, o)) => out[i] = Some(o),
            // A panic in one host's task is a bug; surface it rather than hide a host.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out.into_iter()
        .map(|o| o.expect("every task reported"))
        .collect()
}

/// Connects to every target with at most `limit` connection starts at once (opening
/// hundreds of SSH handshakes together makes sshd drop some: see Kamal #326). Returns the
/// sessions and, for each host that could not be reached, the reason.
pub async fn connect_all<T, R, F, Fut>(
    targets: Vec<(String, T)>,
    limit: usize,
    reporter: Arc<dyn Reporter>,
    connect: F,
) -> (
    std::collections::HashMap<String, Arc<R>>,
    Vec<(String, String)>,
)
where
    T: Send + 'static,
    R: Send + Sync + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
{
    let results = parallel_map(targets, limit, |(name, target)| {
        let fut = connect(target);
        let reporter = reporter.clone();
        async move {
            reporter.event(&name, Event::Step("connect".into()));
            (name, fut.await)
        }
    })
    .await;
    let mut sessions = std::collections::HashMap::new();
    let mut failed = Vec::new();
    for (name, res) in results {
        match res {
            Ok(s) => {
                sessions.insert(name, Arc::new(s));
            }
            Err(e) => failed.push((name, e.to_string())),
        }
    }
    (sessions, failed)
}

/// How long a manager has to say it serves the swarm before another is asked.
pub const MANAGER_ANSWER: Duration = Duration::from_secs(8);

/// How long, once a manager said it serves, the managers before it in the inventory still
/// have to say so too.
pub const EARLIER_MANAGER_GRACE: Duration = Duration::from_secs(1);

/// The manager a command acts through: of `managers` (in inventory order, those with a
/// session), the first in inventory order that says it manages an active swarm, all asked
/// at once through their Engine API (`GET /info`; each one's engine is kept in `engines`
/// for the rest of the command, and its relay is the one `docker` process the question
/// costs). Inventory order, not the first to answer: the deploy lock is on this manager
/// (`exec::lock`), so runs that all reach the same managers must pick the same one. A
/// manager whose Docker hangs (frozen, or cut from the others' quorum) is passed over
/// rather than holding the command: once a later manager serves, the earlier ones have
/// [`EARLIER_MANAGER_GRACE`] more; and none waits past `wait`. `Err` names why each one was
/// not taken.
pub async fn pick_manager<R: Remote + 'static>(
    engines: &Arc<engine::Engines<R>>,
    managers: Vec<(String, Arc<R>)>,
    wait: Duration,
) -> Result<Arc<R>, Vec<(String, String)>> {
    let count = managers.len();
    let mut set = JoinSet::new();
    for (i, (name, remote)) in managers.into_iter().enumerate() {
        let engines = engines.clone();
        set.spawn(async move {
            let asked = tokio::time::timeout(wait, async {
                let e = engines.get(&name).await.map_err(|e| e.to_string())?;
                let answer = e.call(crate::docker::api::info(), wait).await?;
                crate::docker::api::read(&answer, crate::docker::api::parse_info)
            })
            .await;
            let verdict = match asked {
                Err(_) => Err(format!(
                    "docker did not answer within {}",
                    report::secs(wait)
                )),
                Ok(Err(e)) => Err(e),
                Ok(Ok(info)) => info.serving(),
            };
            (i, name, remote, verdict)
        });
    }
    // Per manager, in inventory order: not answered yet (`None`), serving, or why not.
    type Answer<R> = Result<Arc<R>, (String, String)>;
    let mut answers: Vec<Option<Answer<R>>> = (0..count).map(|_| None).collect();
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        // The first that serves, once every one before it has said it does not.
        for a in &answers {
            match a {
                None => break,
                Some(Ok(remote)) => {
                    set.abort_all();
                    return Ok(remote.clone());
                }
                Some(Err(_)) => {}
            }
        }
        let grace_over = async {
            match grace {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = set.join_next() => {
                let Some(done) = done else { break };
                let (i, name, remote, verdict) = match done {
                    Ok(d) => d,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                answers[i] = Some(verdict.map(|()| remote).map_err(|why| (name, why)));
                if answers[i].as_ref().is_some_and(Result::is_ok) && grace.is_none() {
                    grace = Some(tokio::time::Instant::now() + EARLIER_MANAGER_GRACE);
                }
            }
            () = grace_over => {
                // The earlier ones took too long: the first that serves.
                set.abort_all();
                let first = answers.iter().flatten().find_map(|a| a.as_ref().ok());
                return Ok(first.expect("a manager served").clone());
            }
        }
    }
    Err(answers
        .into_iter()
        .flatten()
        .filter_map(Result::err)
        .collect())
}

/// A failed remote step: what the user needs to see to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(pub String);

impl From<RemoteError> for StepError {
    fn from(e: RemoteError) -> Self {
        // The host is already named by the report the error lands in.
        let text = e.to_string();
        StepError(text)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs a command and turns a non-zero exit into an error carrying the remote stderr.
pub async fn run_ok<R: Remote>(remote: &R, req: ExecRequest) -> Result<Output, StepError> {
    let out = remote.exec(req).await?;
    check(out)
}

/// Runs a command as root with a time limit; a non-zero exit is an error carrying the
/// remote stderr. Most of what the executors send is this.
pub async fn root<R: Remote>(
    remote: &R,
    cmd: String,
    timeout: Duration,
) -> Result<Output, StepError> {
    run_ok(remote, ExecRequest::new(cmd).privileged().timeout(timeout)).await
}

/// Why a read (a command that changes nothing) failed.
#[derive(Debug)]
pub enum ReadError {
    /// This time: the next poll may do better.
    Failed(StepError),
    /// The transport gave the host up: no poll will.
    Unreachable(Box<RemoteError>),
}

/// A read as root with a time limit, run again after a lost connection (it changes
/// nothing); tells a host the transport gave up on from a failure of this time.
pub async fn read<R: Remote>(
    remote: &R,
    cmd: String,
    timeout: Duration,
) -> Result<String, ReadError> {
    let req = ExecRequest::new(cmd)
        .privileged()
        .timeout(timeout)
        .idempotent();
    match remote.exec(req).await {
        Ok(out) => check(out)
            .map(|o| o.stdout_str())
            .map_err(ReadError::Failed),
        Err(e) if e.is_unreachable() => Err(ReadError::Unreachable(Box::new(e))),
        Err(e) => Err(ReadError::Failed(e.into())),
    }
}

/// Turns a non-zero exit into an error with the exit code and the end of stderr (or stdout,
/// when stderr is empty: apt and the init scripts write errors to stdout), without Docker's
/// notices ([`crate::docker::notices`]) unless they are all there is.
pub fn check(out: Output) -> Result<Output, StepError> {
    if out.success() {
        return Ok(out);
    }
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        out.stderr_str()
    } else {
        out.stdout_str()
    };
    let text = crate::docker::notices::without_notices(&text);
    let tail: Vec<&str> = text.trim_end().lines().collect();
    let tail = tail[tail.len().saturating_sub(8)..].join("\n");
    let head = match &out.signal {
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exit {}", out.status),
    };
    Err(StepError(if tail.is_empty() {
        head
    } else {
        format!("{head}: {tail}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parallel_map_keeps_order_and_bounds_concurrency() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = parallel_map((0..20).collect(), 3, |i: u64| {
            let running = running.clone();
            let peak = peak.clone();
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(5 * (20 - i))).await;
                running.fetch_sub(1, SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// One at a time means in the items' order, even when every item is ready at once
    /// (the managers' joins: the e2e test saw pi3 join before pi2 without this).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_map_with_a_limit_of_one_runs_items_in_order() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = parallel_map((0..10).collect(), 1, |i: u64| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10 - i)).await;
                i
            }
        })
        .await;
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    }

    /// Issue 13: with the first manager's Docker frozen, the command goes through another
    /// one instead of waiting on it. Each manager is asked through its Engine API.
    #[tokio::test]
    async fn the_first_manager_that_serves_is_picked_not_the_first_listed() {
        use crate::remote::{ExecStream, Stream, UploadOutcome, UploadRequest};
        use crate::testing::FakeRemote;
        /// A host whose relay takes this long to start (a frozen dockerd never answers).
        struct Slow(FakeRemote, Duration);
        impl Remote for Slow {
            fn host(&self) -> &str {
                &self.0.name
            }
            async fn exec(&self, req: ExecRequest) -> Result<Output, RemoteError> {
                self.0.exec(req).await
            }
            async fn exec_streaming(
                &self,
                req: ExecRequest,
                _: &mut (dyn FnMut(Stream, &str) + Send),
            ) -> Result<Output, RemoteError> {
                self.exec(req).await
            }
            async fn upload(&self, req: UploadRequest) -> Result<UploadOutcome, RemoteError> {
                self.0.upload(req).await
            }
            async fn open_stream(
                &self,
                req: ExecRequest,
                lifetime: Duration,
            ) -> Result<ExecStream, RemoteError> {
                tokio::time::sleep(self.1).await;
                self.0.open_stream(req, lifetime).await
            }
        }
        let host = |name: &str, manager: bool, delay: u64| {
            let f = FakeRemote::new(name);
            f.on_api(
                "GET /info",
                200,
                &format!(
                    r#"{{"Swarm":{{"LocalNodeState":"active","ControlAvailable":{manager}}}}}"#
                ),
            );
            (
                name.to_string(),
                Arc::new(Slow(f, Duration::from_millis(delay))),
            )
        };
        let pick = |managers: Vec<(String, Arc<Slow>)>, wait: Duration| async move {
            let sessions = managers.iter().cloned().collect();
            let engines = Arc::new(engine::Engines::new(&sessions, wait));
            let picked = pick_manager(&engines, managers, wait).await;
            (picked, engines)
        };
        let managers = vec![
            host("pi1", true, 60_000),
            host("pi2", false, 0),
            host("pi3", true, 10),
        ];
        let t = std::time::Instant::now();
        let (picked, engines) = pick(managers.clone(), Duration::from_secs(5)).await;
        assert_eq!(picked.unwrap().host(), "pi3");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Its engine is kept: the command goes on on the same relay.
        let e = engines.get("pi3").await.unwrap();
        assert_eq!(e.version, crate::docker::api::OLDEST);
        assert_eq!(managers[2].1.0.count("dial-stdio"), 1);
        // Every manager healthy, the first a little slower than the third: the first is
        // picked all the same, as every run picks it (the deploy lock is there).
        let healthy = vec![
            host("pi1", true, 300),
            host("pi2", false, 0),
            host("pi3", true, 10),
        ];
        let (picked, _) = pick(healthy, Duration::from_secs(5)).await;
        assert_eq!(picked.unwrap().host(), "pi1");
        // None serves: each one's reason, in inventory order.
        let (err, _) = pick(managers[..2].to_vec(), Duration::from_millis(200)).await;
        assert_eq!(
            err.err().unwrap(),
            vec![
                (
                    "pi1".to_string(),
                    "docker did not answer within 0.2s".to_string()
                ),
                ("pi2".to_string(), "not a manager of its swarm".to_string())
            ]
        );
    }

    #[test]
    fn check_reports_exit_code_and_stderr_tail() {
        let out = Output {
            stdout: b"Reading package lists...\n".to_vec(),
            stderr: b"E: Unable to locate package docker.io\n".to_vec(),
            status: 100,
            signal: None,
        };
        assert_eq!(
            check(out).unwrap_err().0,
            "exit 100: E: Unable to locate package docker.io"
        );
        let out = Output {
            stdout: b"Starting Docker: docker failed!\n".to_vec(),
            stderr: vec![],
            status: 1,
            signal: None,
        };
        assert_eq!(
            check(out).unwrap_err().0,
            "exit 1: Starting Docker: docker failed!"
        );
    }

    #[test]
    fn docker_s_notices_stay_out_of_the_error() {
        let out = Output {
            stderr: b"Since --detach=false was not specified, tasks will be created in the background.\n\
In a future release, --detach=false will become the default.\n\
failed to update service web_web: Error response from daemon: rpc error: code = Unknown desc = update out of sequence\n"
                .to_vec(),
            status: 1,
            ..Default::default()
        };
        assert_eq!(
            check(out).unwrap_err().0,
            "exit 1: failed to update service web_web: Error response from daemon: rpc error: code = Unknown desc = update out of sequence"
        );
    }
}
