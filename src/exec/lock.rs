//! The deploy lock on the manager, so that two runs (two laptops, or two terminals) never
//! interleave their deploys or teardowns: an atomic `mkdir` of
//! `/var/lib/rpiprov/lock` with an `owner` file that says who holds it (the commands are
//! in [`crate::docker::lock`]). This is where the lock is taken: [`with_lock`] takes it,
//! runs a command's work while watching for Ctrl-C, and releases it on every path; every
//! command that locks goes through it.
//!
//! A refused run names the holder; when the holder is a run of this same machine whose
//! process is gone, it says the lock was left by a killed run. Nothing clears a lock
//! silently: `rpiprov deploy --unlock` does it on request ([`unlock`]). Taking, releasing
//! and removing the lock are each one atomic step on the manager (under `flock`, see
//! [`crate::docker::lock`]): a release removes the lock only if it is still ours, and no
//! other run's lock command can come between the check and the removal.
//!
//! # Which manager holds the lock
//!
//! The lock is on one manager: the first manager of the inventory, in inventory order,
//! that answered (`deploy` and `teardown` pick it the same way, as the one they act
//! through; see `cmd::context::connect_swarm`). With one manager, or while the first one
//! answers everyone, every run locks the same folder. It is not a lock of the whole swarm:
//! a run that cannot reach the first manager locks the next one, and does not see a lock
//! held on the first (nor a run that reaches the first see its lock). So when a manager is
//! down or reachable from some machines only, two runs can both proceed; the swarm itself
//! stays consistent (Raft orders the changes) but what ends up deployed is the last run's.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::clock::rfc3339;

use crate::docker::{self, paths};
use crate::exec::report::{RowId, Rows};
use crate::exec::{StepError, root};
use crate::remote::Remote;

/// Who holds (or wants) the lock. Written to the owner file as `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockOwner {
    pub user: String,
    /// Host name of the machine running rpiprov.
    pub host: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub since: String,
    /// `deploy` or `teardown`.
    pub command: String,
}

impl LockOwner {
    /// This process, now.
    pub fn current(command: &str) -> LockOwner {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        LockOwner {
            user,
            host: local_hostname(),
            pid: std::process::id(),
            since: rfc3339(SystemTime::now()),
            command: command.to_string(),
        }
    }

    /// The owner file's text. Values never hold a newline (it would forge a key).
    pub fn to_file(&self) -> String {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "user={}\nhost={}\npid={}\nsince={}\ncommand={}\n",
            clean(&self.user),
            clean(&self.host),
            self.pid,
            clean(&self.since),
            clean(&self.command)
        )
    }

    /// Reads an owner file; `None` when it is empty or not one of ours.
    pub fn parse(text: &str) -> Option<LockOwner> {
        let mut o = LockOwner {
            user: String::new(),
            host: String::new(),
            pid: 0,
            since: String::new(),
            command: String::new(),
        };
        let mut any = false;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            any = true;
            match k {
                "user" => o.user = v.to_string(),
                "host" => o.host = v.to_string(),
                "pid" => o.pid = v.trim().parse().unwrap_or(0),
                "since" => o.since = v.to_string(),
                "command" => o.command = v.to_string(),
                _ => {}
            }
        }
        any.then_some(o)
    }
}

/// Why the lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// Another run holds it; the message names it and says how to clear it.
    Held(String),
    /// The manager could not be asked.
    Remote(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(m) | LockError::Remote(m) => f.write_str(m),
        }
    }
}

/// True when the holder is a process of this machine that no longer runs: a run killed
/// before it could release. A holder on another machine cannot be checked from here.
pub fn is_stale(holder: &LockOwner, local_host: &str, alive: impl Fn(u32) -> bool) -> bool {
    holder.host == local_host && holder.pid != 0 && !alive(holder.pid)
}

/// The refusal message for a held lock. `holder` is `None` when the owner file was empty.
pub fn held_message(
    holder: Option<&LockOwner>,
    local_host: &str,
    alive: impl Fn(u32) -> bool,
) -> String {
    const HINT: &str = "rpiprov deploy --unlock";
    let Some(h) = holder else {
        return format!(
            "deploy lock {} is held but names no owner (a run is taking it right now, or was killed while taking it); if no other run is going on, clear it with `{HINT}`",
            paths::lock_dir()
        );
    };
    let what = if h.command.is_empty() {
        "deploy".to_string()
    } else {
        h.command.clone()
    };
    if is_stale(h, local_host, alive) {
        format!(
            "deploy lock left by a killed run: {what} by {}@{} pid {} (no longer running) since {}; clear it with `{HINT}`",
            h.user, h.host, h.pid, h.since
        )
    } else {
        format!(
            "{what} already running: locked by {}@{} pid {} since {}; if that run was killed, clear it with `{HINT}`",
            h.user, h.host, h.pid, h.since
        )
    }
}

/// Takes the lock on the manager, or says who holds it.
pub async fn acquire<R: Remote>(
    remote: &R,
    owner: &LockOwner,
    timeout: Duration,
) -> Result<(), LockError> {
    let out = root(
        remote,
        docker::lock::lock_acquire(&owner.to_file()),
        timeout,
    )
    .await
    .map_err(|e| LockError::Remote(format!("cannot take the deploy lock: {e}")))?;
    let text = out.stdout_str();
    if text.lines().next() == Some("@@acquired") {
        return Ok(());
    }
    let Some(rest) = text
        .strip_prefix("@@held\n")
        .or(text.strip_prefix("@@held"))
    else {
        return Err(LockError::Remote(format!(
            "unexpected answer to the lock command: {}",
            text.trim()
        )));
    };
    let holder = LockOwner::parse(rest);
    Err(LockError::Held(held_message(
        holder.as_ref(),
        &local_hostname(),
        pid_alive,
    )))
}

/// Releases the lock if it is still ours. Safe to call when it was never taken (after a
/// refusal, or on Ctrl-C at any point): another run's lock is never removed. Returns
/// whether a lock was removed.
pub async fn release<R: Remote>(
    remote: &R,
    owner: &LockOwner,
    timeout: Duration,
) -> Result<bool, StepError> {
    let out = root(
        remote,
        docker::lock::lock_release(&owner.to_file()),
        timeout,
    )
    .await?;
    Ok(out.stdout_str().trim() == "@@released")
}

/// How a locked run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked<T> {
    /// The work ran to its end; the lock was then released.
    Done(T),
    /// Another run holds the lock (or the manager could not be asked): the work did not
    /// start, and the holder's lock was left alone.
    Refused,
    /// Ctrl-C: the work was stopped where it was; the lock was then released.
    Interrupted,
}

/// The lock as one run holds it: on which manager, whose, and where its story is told.
pub struct Holder<'a, R> {
    pub remote: &'a R,
    pub owner: &'a LockOwner,
    pub timeout: Duration,
    pub rows: &'a Rows,
    /// The manager's row: the lock's steps and failures are reported there.
    pub row: &'a RowId,
}

/// Takes the lock, runs `work` under it, and releases it, on every path: success, failure,
/// interruption. `interrupt` ends the run early when it completes (the command passes
/// Ctrl-C, tests a timer); it is watched from the first remote command on, the lock
/// included: a Ctrl-C while the lock is being taken must not leave it behind. A refused
/// lock is reported on the manager's row (`lock`), as are an interruption
/// (`interrupted`) and a failed release (`release lock`).
pub async fn with_lock<R: Remote, T>(
    lock: Holder<'_, R>,
    interrupt: impl Future<Output = ()>,
    work: impl Future<Output = T>,
) -> Locked<T> {
    let Holder {
        remote,
        owner,
        timeout,
        rows,
        row,
    } = lock;
    let guarded = async {
        rows.step(row, "take the deploy lock");
        if let Err(e) = acquire(remote, owner, timeout).await {
            rows.fail(row, "lock", &e.to_string());
            return None;
        }
        Some(work.await)
    };
    let end = tokio::select! {
        done = guarded => match done {
            Some(t) => Locked::Done(t),
            None => return Locked::Refused,
        },
        () = interrupt => {
            rows.fail(row, "interrupted", "interrupted (Ctrl-C)");
            // Maybe taken: releasing only removes a lock that is ours.
            Locked::Interrupted
        }
    };
    rows.step(row, "release the deploy lock");
    if let Err(e) = release(remote, owner, timeout).await {
        rows.fail(
            row,
            "release lock",
            &format!("{e}; clear it with `rpiprov deploy --unlock`"),
        );
    }
    end
}

/// `deploy --unlock`: removes the lock whoever holds it. Returns a sentence for the user:
/// whose lock was removed, or that there was none.
pub async fn unlock<R: Remote>(remote: &R, timeout: Duration) -> Result<String, StepError> {
    let out = root(remote, docker::lock::lock_remove(), timeout).await?;
    Ok(unlock_message(&out.stdout_str()))
}

/// What `--unlock` tells the user, from the remove command's output.
pub fn unlock_message(output: &str) -> String {
    match output.strip_prefix("@@held") {
        None => "no deploy lock was held".to_string(),
        Some(rest) => match LockOwner::parse(rest) {
            Some(h) => format!(
                "removed the deploy lock of {}@{} pid {} since {}",
                h.user, h.host, h.pid, h.since
            ),
            None => "removed a deploy lock that named no owner".to_string(),
        },
    }
}

/// Whether a process of this machine runs. `kill(pid, 0)` checks without signalling;
/// EPERM means it exists but belongs to someone else.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name, as the lock records it.
pub fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within
    // it or truncates, and we stop at the first NUL either way.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::report::Row;

    fn owner() -> LockOwner {
        crate::testing::lock_owner("deploy")
    }

    #[test]
    fn owner_file_round_trips() {
        let o = owner();
        assert_eq!(
            o.to_file(),
            "user=pi\nhost=laptop\npid=1234\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n"
        );
        assert_eq!(LockOwner::parse(&o.to_file()), Some(o));
        assert_eq!(LockOwner::parse(""), None);
        let mut forged = owner();
        forged.user = "pi\npid=1".into();
        assert_eq!(LockOwner::parse(&forged.to_file()).unwrap().pid, 1234);
    }

    #[test]
    fn held_by_a_running_or_remote_process() {
        let o = owner();
        let msg = held_message(Some(&o), "laptop", |_| true);
        assert_eq!(
            msg,
            "deploy already running: locked by pi@laptop pid 1234 since 2026-11-25T16:00:00Z; if that run was killed, clear it with `rpiprov deploy --unlock`"
        );
        // Another machine: its pid cannot be checked from here, so never called stale.
        let msg = held_message(Some(&o), "desktop", |_| false);
        assert!(msg.starts_with("deploy already running: locked by pi@laptop"));
    }

    #[test]
    fn kamal_656_held_by_a_killed_run_of_this_machine() {
        let mut o = owner();
        o.command = "teardown".into();
        assert!(is_stale(&o, "laptop", |_| false));
        assert!(!is_stale(&o, "laptop", |p| p == 1234));
        assert_eq!(
            held_message(Some(&o), "laptop", |_| false),
            "deploy lock left by a killed run: teardown by pi@laptop pid 1234 (no longer running) since 2026-11-25T16:00:00Z; clear it with `rpiprov deploy --unlock`"
        );
    }

    #[test]
    fn held_without_an_owner_file() {
        assert_eq!(
            held_message(None, "laptop", |_| true),
            "deploy lock /var/lib/rpiprov/lock is held but names no owner (a run is taking it right now, or was killed while taking it); if no other run is going on, clear it with `rpiprov deploy --unlock`"
        );
    }

    #[test]
    fn unlock_messages() {
        assert_eq!(unlock_message("@@none\n"), "no deploy lock was held");
        assert_eq!(
            unlock_message(&format!("@@held\n{}", owner().to_file())),
            "removed the deploy lock of pi@laptop pid 1234 since 2026-11-25T16:00:00Z"
        );
        assert_eq!(
            unlock_message("@@held\n"),
            "removed a deploy lock that named no owner"
        );
    }

    #[test]
    fn pid_checks_on_this_machine() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        // Above the kernel's pid_max (at most 2^22): never a live process.
        assert!(!pid_alive(4_194_305));
        assert!(!local_hostname().is_empty());
    }

    /// What `with_lock` leaves on a manager's row, and whether the work ran.
    async fn locked(
        answer: &str,
        interrupt: impl Future<Output = ()>,
    ) -> (Locked<&'static str>, Vec<String>, Row) {
        use crate::testing::{FakeRemote, Recorder, ok};
        use std::sync::Arc;
        let m = FakeRemote::new("pi1");
        m.on("mkdir /var/lib/rpiprov/lock", ok(answer))
            .on("@@released", ok("@@released\n"));
        let row = RowId::host("pi1");
        let rows = Rows::new(Arc::new(Recorder::default()), std::slice::from_ref(&row));
        let o = owner();
        let holder = Holder {
            remote: &m,
            owner: &o,
            timeout: Duration::from_secs(5),
            rows: &rows,
            row: &row,
        };
        let work = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            "worked"
        };
        let end = with_lock(holder, interrupt, work).await;
        let row = rows.finish().into_iter().next().expect("the manager's row");
        (end, m.commands(), row)
    }

    #[tokio::test]
    async fn with_lock_releases_on_every_path_and_never_a_lock_it_did_not_take() {
        let (end, cmds, _) = locked("@@acquired\n", std::future::pending()).await;
        assert_eq!(end, Locked::Done("worked"));
        assert_eq!(cmds.len(), 2);
        assert!(cmds[1].contains("@@released"));

        // Ctrl-C during the work.
        let ctrl_c = tokio::time::sleep(Duration::from_millis(5));
        let (end, cmds, row) = locked("@@acquired\n", ctrl_c).await;
        assert_eq!(end, Locked::Interrupted);
        assert_eq!(cmds.len(), 2, "released after Ctrl-C");
        assert!(cmds[1].contains("@@released"));
        assert_eq!(row.detail(), "interrupted: interrupted (Ctrl-C)");

        let held = format!("@@held\n{}", owner().to_file());
        let (end, cmds, row) = locked(&held, std::future::pending()).await;
        assert_eq!(end, Locked::Refused);
        assert_eq!(cmds.len(), 1, "the holder's lock is left alone");
        let detail = row.detail();
        assert!(detail.starts_with("lock: "), "{detail}");
        assert!(
            detail.contains("deploy by pi@laptop pid 1234")
                || detail.contains("locked by pi@laptop pid 1234"),
            "{detail}"
        );
    }
}
