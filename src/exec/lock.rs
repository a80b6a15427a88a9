//! The deploy lock on the manager, so that two runs (two laptops, or two terminals) never
//! interleave their deploys or teardowns: an atomic `mkdir` of
//! `/var/lib/rpiprov/lock` with an `owner` file that says who holds it (the commands are
//! in [`crate::docker::lock`]). This is where the lock is taken: [`with_lock`] takes it,
//! runs a command's work while watching for Ctrl-C, and releases it on every path; every
//! command that locks goes through it.
//!
//! A refused run names the holder. A lock whose holder is provably gone is taken over,
//! saying so: the holder was a process of this very machine (the same machine id and the
//! same installation of rpiprov, [`installation_id`], and the same host name: a VM or
//! laptop cloned from another shares its machine id, and its other boot id must not read
//! as "this machine restarted") and it no longer runs (no such pid, a pid that now belongs to a
//! process started later, or the machine restarted since). Nothing else clears a lock: a
//! lock of another machine, or one written without a machine id, may belong to a live run
//! that cannot be checked from here, and `rpiprov deploy --unlock` clears it on request
//! ([`unlock`]). Taking, taking over, releasing and removing the lock are each one atomic
//! step on the manager (under `flock`, see [`crate::docker::lock`]): a release removes
//! the lock only if it is still ours, a takeover only if it still is the dead holder's,
//! and no other run's lock command can come between the check and the change.
//!
//! # Which manager holds the lock
//!
//! The lock is on one manager: the one `deploy` and `teardown` act through, the first
//! manager of the inventory, in inventory order, that answers and says it serves the swarm
//! ([`crate::exec::pick_manager`]; one whose Docker hangs is passed over after a moment).
//! With one manager, or while the first one serves everyone, every run locks the same
//! folder. It is not a lock of the whole swarm: a run that cannot reach the first manager
//! (down, frozen, or cut from that run's machine only) locks the next one, and neither run
//! sees the other's lock. Then two runs can both proceed; the swarm stays consistent (Raft
//! orders the changes), and what ends up deployed is the last run's.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::clock::rfc3339;

use crate::docker::{self, paths};
use crate::exec::report::{RowId, Rows};
use crate::exec::{StepError, root, run_ok};
use crate::remote::ExecRequest;
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
    /// This machine, as a hash of its machine id and this installation's id
    /// ([`installation_id`]) made for rpiprov's locks (the machine id itself is not to be
    /// shared); empty where either is missing.
    pub machine: String,
    /// The boot id of the machine when the lock was taken: a process of an earlier boot
    /// is gone whatever its pid.
    pub boot: String,
    /// The process's start time (clock ticks since boot): a pid reused by a later process
    /// is told from the holder.
    pub start: String,
}

impl LockOwner {
    /// This process, now.
    pub fn current(command: &str) -> LockOwner {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let here = Here::now();
        let pid = std::process::id();
        LockOwner {
            user,
            host: here.host,
            pid,
            since: rfc3339(SystemTime::now()),
            command: command.to_string(),
            machine: here.machine,
            boot: here.boot,
            start: process_start(pid).unwrap_or_default(),
        }
    }

    /// The owner file's text. Values never hold a newline (it would forge a key).
    pub fn to_file(&self) -> String {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "user={}\nhost={}\npid={}\nsince={}\ncommand={}\nmachine={}\nboot={}\nstart={}\n",
            clean(&self.user),
            clean(&self.host),
            self.pid,
            clean(&self.since),
            clean(&self.command),
            clean(&self.machine),
            clean(&self.boot),
            clean(&self.start),
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
            machine: String::new(),
            boot: String::new(),
            start: String::new(),
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
                "machine" => o.machine = v.to_string(),
                "boot" => o.boot = v.to_string(),
                "start" => o.start = v.to_string(),
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

/// What this machine is, for telling its own processes apart from others'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Here {
    pub host: String,
    /// See [`LockOwner::machine`].
    pub machine: String,
    pub boot: String,
}

impl Here {
    /// This machine now. On systems without `/etc/machine-id` or `/proc` (macOS), or
    /// without a folder for the installation id, the machine and boot are empty, and no
    /// lock is ever taken over from there.
    pub fn now() -> Here {
        let read = |p: &str| read_small(std::path::Path::new(p)).unwrap_or_default();
        let id = read("/etc/machine-id");
        let installation = this_installation();
        Here {
            host: local_hostname(),
            machine: match installation {
                Some(inst) if !id.is_empty() => machine_hash(&id, &inst),
                _ => String::new(),
            },
            boot: read("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// The machine id and the installation id as locks record them: hashed with rpiprov's
/// own prefix, so that the lock file does not give away the id other software may use
/// (systemd's advice).
pub fn machine_hash(machine_id: &str, installation: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("rpiprov deploy lock\n{machine_id}\n{installation}"));
    hex::encode(&digest[..16])
}

/// A small file of the system's or of rpiprov's (a machine id, a boot id, the
/// installation id), trimmed: a regular file, at most 4 KiB, the installation id's not
/// through a link. `None` otherwise.
fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let flags = if path.ends_with("installation-id") {
        flags | libc::O_NOFOLLOW
    } else {
        flags
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    // `/proc` files say they are empty: their size is no bound, the read is.
    if !meta.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    Some(text.trim().to_string())
}

/// This installation's id ([`installation_id`]). The unit tests use a fixed one: they
/// must not write into the home of whoever runs them.
fn this_installation() -> Option<String> {
    if cfg!(test) {
        return Some("00000000000000000000000000000000".into());
    }
    state_dir().and_then(|d| installation_id(&d))
}

/// rpiprov's folder of the user's state: `$XDG_STATE_HOME/rpiprov`, else
/// `~/.local/state/rpiprov`.
fn state_dir() -> Option<std::path::PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| std::path::PathBuf::from(h).join(".local/state"))
    };
    Some(xdg.or_else(home)?.join("rpiprov"))
}

/// This installation's id: 128 random bits made once, in `dir/installation-id` (0600 in
/// a 0700 folder, created without following a link). A machine cloned from another
/// before it ever ran rpiprov makes its own, so the two are told apart although they
/// share a machine id. `None` when it cannot be read or made (no lock is taken over then).
pub fn installation_id(dir: &std::path::Path) -> Option<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = dir.join("installation-id");
    let valid =
        |s: String| (s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())).then_some(s);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => return read_small(&path).and_then(valid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ok()?;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .ok()?;
    let id = hex::encode(bytes);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    match created {
        Ok(mut f) => {
            f.write_all(format!("{id}\n").as_bytes()).ok()?;
            Some(id)
        }
        // Made meanwhile by another run: that one is the id.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_small(&path).and_then(valid)
        }
        Err(_) => None,
    }
}

/// What can be said of a lock's holder from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// The holder may be running: a process of this machine that runs, or a process of
    /// another machine (which cannot be checked from here).
    Maybe,
    /// The holder was a process of this machine and is provably gone (the text says why):
    /// the lock may be taken over.
    Gone(&'static str),
    /// The holder's host name is this machine's and its pid does not run, but the lock
    /// names no machine id (an older rpiprov wrote it, or a machine without one): a killed
    /// run most likely, not proven; `--unlock` clears it.
    LikelyGone,
}

/// Judges a holder. `start_of(pid)` is the start time of a running process of this machine
/// (empty when unknown), `None` when no process has that pid.
pub fn holding(
    holder: &LockOwner,
    here: &Here,
    start_of: impl Fn(u32) -> Option<String>,
) -> Holding {
    if holder.pid == 0 {
        return Holding::Maybe;
    }
    if holder.machine.is_empty() || here.machine.is_empty() {
        return if holder.host == here.host && start_of(holder.pid).is_none() {
            Holding::LikelyGone
        } else {
            Holding::Maybe
        };
    }
    if holder.machine != here.machine || holder.host != here.host {
        return Holding::Maybe;
    }
    if !holder.boot.is_empty() && !here.boot.is_empty() && holder.boot != here.boot {
        return Holding::Gone("this machine restarted since");
    }
    match start_of(holder.pid) {
        None => Holding::Gone("no longer running"),
        Some(start) if !holder.start.is_empty() && !start.is_empty() && start != holder.start => {
            Holding::Gone("no longer running; its pid is another process's now")
        }
        Some(_) => Holding::Maybe,
    }
}

/// [`holding`] of the holder a lock command found; an owner file that was empty (a run
/// killed while taking the lock, or taking it right now) may belong to a live run.
fn judge(
    holder: Option<&LockOwner>,
    here: &Here,
    start_of: impl Fn(u32) -> Option<String>,
) -> Holding {
    holder.map_or(Holding::Maybe, |h| holding(h, here, start_of))
}

/// Who a holder is, for messages: `deploy by pi@laptop pid 1234`.
fn who(h: &LockOwner) -> String {
    let what = if h.command.is_empty() {
        "deploy"
    } else {
        h.command.as_str()
    };
    format!("{what} by {}@{} pid {}", h.user, h.host, h.pid)
}

/// What a run says when it takes over the lock of a holder that is gone: killed, or
/// ended without reaching the manager to release it (its link cut), so not "killed".
pub fn takeover_message(holder: &LockOwner, why: &str) -> String {
    format!(
        "took over the deploy lock left by a run that is gone: {} ({why}) since {}",
        who(holder),
        holder.since
    )
}

/// The refusal message for a held lock. `holder` is `None` when the owner file was empty.
pub fn held_message(holder: Option<&LockOwner>, holding: &Holding) -> String {
    const HINT: &str = "rpiprov deploy --unlock";
    let Some(h) = holder else {
        return format!(
            "deploy lock {} is held but names no owner (a run is taking it right now, or was killed while taking it); if no other run is going on, clear it with `{HINT}`",
            paths::lock_dir()
        );
    };
    match holding {
        Holding::LikelyGone => format!(
            "deploy lock left by a killed run: {} (no longer running) since {}; clear it with `{HINT}`",
            who(h),
            h.since
        ),
        Holding::Maybe | Holding::Gone(_) => {
            let what = if h.command.is_empty() {
                "deploy"
            } else {
                h.command.as_str()
            };
            format!(
                "{what} already running: locked by {}@{} pid {} since {}; if that run was killed, clear it with `{HINT}`",
                h.user, h.host, h.pid, h.since
            )
        }
    }
}

/// How the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// It was free (or already ours: the answer to an earlier attempt was lost).
    Free,
    /// From a holder that is gone; the message says whose.
    TakenOver(String),
}

/// Takes the lock on the manager, or says who holds it; takes it over from a holder that
/// is provably gone.
pub async fn acquire<R: Remote>(
    remote: &R,
    owner: &LockOwner,
    timeout: Duration,
) -> Result<Taken, LockError> {
    let holder = match try_lock(
        remote,
        docker::lock::lock_acquire(&owner.to_file()),
        timeout,
    )
    .await?
    {
        None => return Ok(Taken::Free),
        Some(h) => h,
    };
    // Our own owner file: an earlier attempt took it, and its answer was lost with the
    // connection (the acquire is rerun after a reconnection).
    if holder.as_ref() == Some(owner) {
        return Ok(Taken::Free);
    }
    let here = Here::now();
    let judged = judge(holder.as_ref(), &here, process_start);
    if let (Some(h), Holding::Gone(why)) = (&holder, &judged) {
        let cmd = docker::lock::lock_take_over(&h.to_file(), &owner.to_file());
        match try_lock(remote, cmd, timeout).await? {
            None => return Ok(Taken::TakenOver(takeover_message(h, why))),
            // Another run was quicker: it holds the lock now.
            Some(other) => {
                let judged = judge(other.as_ref(), &here, process_start);
                return Err(LockError::Held(held_message(other.as_ref(), &judged)));
            }
        }
    }
    Err(LockError::Held(held_message(holder.as_ref(), &judged)))
}

/// What a run would find of the lock, when it is not free (see [`peek`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    /// The run would be refused: the sentence it would say.
    Held(String),
    /// The run would take it over from a holder that is gone: what it would say.
    TakenOver(String),
}

/// What a deploy or teardown started now would find of the lock, changing nothing (for
/// `rpiprov plan`): `None` when it is free.
pub async fn peek<R: Remote>(remote: &R, timeout: Duration) -> Result<Option<Peeked>, StepError> {
    let out = root(remote, docker::lock::lock_peek(), timeout).await?;
    Ok(peeked(&out.stdout_str(), &Here::now(), process_start))
}

/// [`peek`]'s judgement of the owner file it read, as [`acquire`] judges it.
pub fn peeked(
    output: &str,
    here: &Here,
    start_of: impl Fn(u32) -> Option<String>,
) -> Option<Peeked> {
    let rest = output.strip_prefix("@@held")?;
    let holder = LockOwner::parse(rest);
    let judged = judge(holder.as_ref(), here, start_of);
    Some(match (&holder, &judged) {
        (Some(h), Holding::Gone(why)) => Peeked::TakenOver(takeover_message(h, why)),
        _ => Peeked::Held(held_message(holder.as_ref(), &judged)),
    })
}

/// Runs a command that takes the lock: `None` when it did, else the holder it found
/// (`Some(None)` when the holder's file was empty).
async fn try_lock<R: Remote>(
    remote: &R,
    cmd: String,
    timeout: Duration,
) -> Result<Option<Option<LockOwner>>, LockError> {
    // Safe to repeat: a second attempt finds our own owner file (see `acquire`).
    let req = ExecRequest::new(cmd)
        .privileged()
        .timeout(timeout)
        .idempotent();
    let out = run_ok(remote, req)
        .await
        .map_err(|e| LockError::Remote(format!("cannot take the deploy lock: {e}")))?;
    let text = out.stdout_str();
    if text.lines().next() == Some("@@acquired") {
        return Ok(None);
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
    Ok(Some(LockOwner::parse(rest)))
}

/// Releases the lock if it is still ours. Safe to call when it was never taken (after a
/// refusal, or on Ctrl-C at any point): another run's lock is never removed. Returns
/// whether a lock was removed.
pub async fn release<R: Remote>(
    remote: &R,
    owner: &LockOwner,
    timeout: Duration,
) -> Result<bool, StepError> {
    // Safe to repeat: it removes the lock only while it is ours.
    let req = ExecRequest::new(docker::lock::lock_release(&owner.to_file()))
        .privileged()
        .timeout(timeout)
        .idempotent();
    let out = run_ok(remote, req).await?;
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
        match acquire(remote, owner, timeout).await {
            Ok(Taken::Free) => {}
            Ok(Taken::TakenOver(said)) => {
                rows.note(row, &said);
                rows.changed(row, said);
            }
            Err(e) => {
                rows.fail(row, "lock", &e.to_string());
                return None;
            }
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
            &format!(
                "{e}; the next run from this machine takes the lock over (from another machine, clear it with `rpiprov deploy --unlock`)"
            ),
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

/// When a process of this machine started (clock ticks since boot, field 22 of
/// `/proc/PID/stat`): `None` when no process has that pid; empty when it runs but the
/// system has no `/proc` to tell more.
pub fn process_start(pid: u32) -> Option<String> {
    if !pid_alive(pid) {
        return None;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some(String::new());
    };
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; fields count on
    // after its last `)`, where the state is field 3.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    Some(
        after
            .split_whitespace()
            .nth(19)
            .unwrap_or_default()
            .to_string(),
    )
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
            "user=pi\nhost=laptop\npid=1234\nsince=2026-11-25T16:00:00Z\ncommand=deploy\nmachine=0123456789abcdef0123456789abcdef\nboot=b0\nstart=4242\n"
        );
        assert_eq!(LockOwner::parse(&o.to_file()), Some(o));
        assert_eq!(LockOwner::parse(""), None);
        let mut forged = owner();
        forged.user = "pi\npid=1".into();
        assert_eq!(LockOwner::parse(&forged.to_file()).unwrap().pid, 1234);
        // A file of an older rpiprov, without machine, boot and start, still reads.
        let old = LockOwner::parse("user=pi\nhost=laptop\npid=7\n").unwrap();
        assert_eq!((old.pid, old.machine.as_str()), (7, ""));
    }

    fn laptop() -> Here {
        Here {
            host: "laptop".into(),
            machine: owner().machine,
            boot: "b0".into(),
        }
    }

    /// Issue 14: only a holder of this very machine that provably no longer runs is gone.
    #[test]
    fn a_holder_is_gone_only_when_this_machine_can_tell() {
        let o = owner();
        let here = laptop();
        let runs = |start: &'static str| move |p: u32| (p == 1234).then(|| start.to_string());
        let none = |_: u32| None;
        assert_eq!(holding(&o, &here, runs("4242")), Holding::Maybe);
        assert_eq!(holding(&o, &here, none), Holding::Gone("no longer running"));
        assert_eq!(
            holding(&o, &here, runs("9999")),
            Holding::Gone("no longer running; its pid is another process's now")
        );
        // Without /proc (macOS) the start is unknown: a running pid is the holder.
        assert_eq!(holding(&o, &here, runs("")), Holding::Maybe);
        let rebooted = Here {
            boot: "b1".into(),
            ..laptop()
        };
        assert_eq!(
            holding(&o, &rebooted, runs("4242")),
            Holding::Gone("this machine restarted since")
        );
        // Another machine, even one with the same host name: never gone from here.
        let twin = Here {
            machine: "fedcba9876543210fedcba9876543210".into(),
            ..laptop()
        };
        assert_eq!(holding(&o, &twin, none), Holding::Maybe);
        // A lock without a machine id (an older rpiprov): a dead pid of the same host
        // name is likely a killed run, not proven.
        let old = LockOwner {
            machine: String::new(),
            boot: String::new(),
            start: String::new(),
            ..owner()
        };
        assert_eq!(holding(&old, &here, none), Holding::LikelyGone);
        assert_eq!(holding(&old, &here, runs("")), Holding::Maybe);
        let desktop = Here {
            host: "desktop".into(),
            ..laptop()
        };
        assert_eq!(holding(&old, &desktop, none), Holding::Maybe);
        assert_eq!(
            machine_hash("3d1219c7c4c5404aaa1f6d2a48adfda4", "i").len(),
            32,
            "128 bits, in hex"
        );
        assert_ne!(machine_hash("a", "i"), machine_hash("b", "i"));
        // Issue 18: a clone (same machine id) installed on its own is another machine,
        // and so is one with the same machine hash under another host name.
        assert_ne!(machine_hash("a", "i"), machine_hash("a", "j"));
        let renamed = Here {
            host: "laptop-2".into(),
            ..rebooted
        };
        assert_eq!(holding(&o, &renamed, none), Holding::Maybe);
    }

    /// Issue 18: the installation id is made once, kept, and read back; a planted link or
    /// a file that is not one is no id.
    #[test]
    fn the_installation_id_is_made_once() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("state/rpiprov");
        let id = installation_id(&dir).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(installation_id(&dir), Some(id.clone()));
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("installation-id")), 0o600);
        let other = home.path().join("other");
        assert_ne!(installation_id(&other), Some(id));
        std::fs::write(other.join("installation-id"), "not an id\n").unwrap();
        assert_eq!(installation_id(&other), None);
        let linked = home.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(
            home.path().join("elsewhere"),
            linked.join("installation-id"),
        )
        .unwrap();
        assert_eq!(installation_id(&linked), None);
        assert!(!home.path().join("elsewhere").exists());
    }

    #[test]
    fn plan_says_what_a_run_would_find_of_the_lock() {
        let here = laptop();
        let none = |_: u32| None;
        let runs = |p: u32| (p == 1234).then(|| "4242".to_string());
        assert_eq!(peeked("@@none\n", &here, none), None);
        let file = format!("@@held\n{}", owner().to_file());
        assert_eq!(
            peeked(&file, &here, runs),
            Some(Peeked::Held(held_message(Some(&owner()), &Holding::Maybe)))
        );
        assert_eq!(
            peeked(&file, &here, none),
            Some(Peeked::TakenOver(
                "took over the deploy lock left by a run that is gone: deploy by pi@laptop pid 1234 (no longer running) since 2026-11-25T16:00:00Z".into()
            ))
        );
        // Being taken right now: no owner yet.
        assert_eq!(
            peeked("@@held\n", &here, none),
            Some(Peeked::Held(held_message(None, &Holding::Maybe)))
        );
    }

    #[test]
    fn messages_for_a_held_lock() {
        let o = owner();
        assert_eq!(
            held_message(Some(&o), &Holding::Maybe),
            "deploy already running: locked by pi@laptop pid 1234 since 2026-11-25T16:00:00Z; if that run was killed, clear it with `rpiprov deploy --unlock`"
        );
        let mut t = owner();
        t.command = "teardown".into();
        // Kamal #656: a lock left by a killed run is named as such.
        assert_eq!(
            held_message(Some(&t), &Holding::LikelyGone),
            "deploy lock left by a killed run: teardown by pi@laptop pid 1234 (no longer running) since 2026-11-25T16:00:00Z; clear it with `rpiprov deploy --unlock`"
        );
        assert_eq!(
            held_message(None, &Holding::Maybe),
            "deploy lock /var/lib/rpiprov/lock is held but names no owner (a run is taking it right now, or was killed while taking it); if no other run is going on, clear it with `rpiprov deploy --unlock`"
        );
        assert_eq!(
            takeover_message(&t, "no longer running"),
            "took over the deploy lock left by a run that is gone: teardown by pi@laptop pid 1234 (no longer running) since 2026-11-25T16:00:00Z"
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
        let mine = process_start(std::process::id()).unwrap();
        assert!(mine.parse::<u64>().is_ok(), "{mine:?}");
        assert_eq!(process_start(4_194_305), None);
        // A child started later has a later start time, never ours.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let theirs = process_start(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(theirs.parse::<u64>().unwrap() >= mine.parse::<u64>().unwrap());
        assert_eq!(process_start(child.id()), None);
    }

    /// A pid that ran on this machine and is gone now.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// What `with_lock` leaves on a manager's row, and whether the work ran. The manager
    /// answers commands that contain a rule's text with its answer (the first that
    /// matches), and grants a release.
    async fn locked(
        rules: &[(&str, &str)],
        interrupt: impl Future<Output = ()>,
    ) -> (Locked<&'static str>, Vec<String>, Row) {
        use crate::testing::{FakeRemote, Recorder, ok};
        use std::sync::Arc;
        let m = FakeRemote::new("pi1");
        for (text, answer) in rules {
            m.on(text, ok(answer));
        }
        m.on("@@released", ok("@@released\n"));
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

    const ACQUIRE: &str = "mkdir /var/lib/rpiprov/lock";
    const TAKE_OVER: &str = "then rm -rf /var/lib/rpiprov/lock; fi";

    #[tokio::test]
    async fn with_lock_releases_on_every_path_and_never_a_lock_it_did_not_take() {
        let (end, cmds, _) = locked(&[(ACQUIRE, "@@acquired\n")], std::future::pending()).await;
        assert_eq!(end, Locked::Done("worked"));
        assert_eq!(cmds.len(), 2);
        assert!(cmds[1].contains("@@released"));

        // Ctrl-C during the work.
        let ctrl_c = tokio::time::sleep(Duration::from_millis(5));
        let (end, cmds, row) = locked(&[(ACQUIRE, "@@acquired\n")], ctrl_c).await;
        assert_eq!(end, Locked::Interrupted);
        assert_eq!(cmds.len(), 2, "released after Ctrl-C");
        assert!(cmds[1].contains("@@released"));
        assert_eq!(row.detail(), "interrupted: interrupted (Ctrl-C)");

        // Held by another run (another machine's: nothing can be said of it from here).
        let other = LockOwner {
            host: "desktop".into(),
            machine: "fedcba9876543210fedcba9876543210".into(),
            ..owner()
        };
        let held = format!("@@held\n{}", other.to_file());
        let (end, cmds, row) = locked(&[(ACQUIRE, &held)], std::future::pending()).await;
        assert_eq!(end, Locked::Refused);
        assert_eq!(cmds.len(), 1, "the holder's lock is left alone");
        assert_eq!(
            row.detail(),
            "lock: deploy already running: locked by pi@desktop pid 1234 since 2026-11-25T16:00:00Z; if that run was killed, clear it with `rpiprov deploy --unlock`"
        );

        // Our own owner file: an earlier attempt took it and its answer was lost.
        let ours = format!("@@held\n{}", owner().to_file());
        let (end, cmds, _) = locked(&[(ACQUIRE, &ours)], std::future::pending()).await;
        assert_eq!(end, Locked::Done("worked"));
        assert_eq!(cmds.len(), 2);
    }

    /// Issue 14: the lock of a run of this machine that was killed is taken over, saying
    /// so on the manager's row; only while the owner file is still the dead holder's.
    #[tokio::test]
    async fn the_lock_of_a_killed_run_of_this_machine_is_taken_over() {
        let here = Here::now();
        assert!(!here.machine.is_empty(), "this test needs /etc/machine-id");
        let killed = LockOwner {
            host: here.host.clone(),
            machine: here.machine.clone(),
            boot: here.boot.clone(),
            pid: dead_pid(),
            start: "1".into(),
            ..owner()
        };
        let held = format!("@@held\n{}", killed.to_file());
        let rules = [(TAKE_OVER, "@@acquired\n"), (ACQUIRE, held.as_str())];
        let (end, cmds, row) = locked(&rules, std::future::pending()).await;
        assert_eq!(end, Locked::Done("worked"));
        assert_eq!(cmds.len(), 3, "{cmds:#?}");
        assert_eq!(
            cmds[1],
            crate::docker::lock::lock_take_over(&killed.to_file(), &owner().to_file())
        );
        assert_eq!(
            row.detail(),
            format!(
                "took over the deploy lock left by a run that is gone: deploy by pi@{} pid {} (no longer running) since 2026-11-25T16:00:00Z",
                here.host, killed.pid
            )
        );
        assert!(cmds[2].contains("@@released"));

        // Another run took the lock over first: refused, naming that run.
        let quicker = LockOwner {
            host: "desktop".into(),
            machine: "fedcba9876543210fedcba9876543210".into(),
            ..owner()
        };
        let quicker_held = format!("@@held\n{}", quicker.to_file());
        let rules = [(TAKE_OVER, quicker_held.as_str()), (ACQUIRE, held.as_str())];
        let (end, cmds, row) = locked(&rules, std::future::pending()).await;
        assert_eq!(end, Locked::Refused);
        assert_eq!(cmds.len(), 2);
        assert!(
            row.detail().contains("locked by pi@desktop"),
            "{}",
            row.detail()
        );
    }
}
