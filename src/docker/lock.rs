//! The deploy lock's remote half: commands that take, release and remove the folder
//! [`lock_dir`] on the manager. Who holds the lock, the refusal messages, when the lock
//! is taken and on which manager live in [`crate::exec::lock`].
//!
//! Each command is one critical section under `flock` on [`ROOT`] (util-linux, essential
//! on Debian and Raspberry Pi OS): none of them can interleave with another. That is what
//! makes a release a compare-and-remove. Without it, a release that found its own owner
//! file could remove, one instant later, the lock of a run that took it in between (after
//! an `--unlock`): two runs would then deploy at once. `mkdir` alone stays the test of who
//! holds the lock, so a lock taken by an older rpiprov (without `flock`) still counts.

use crate::docker::paths::{ROOT, lock_dir, lock_owner};
use crate::shell::quote;

/// How long a lock command waits for another one's critical section (a few milliseconds
/// each) before it gives up.
const FLOCK_WAIT_SECS: u32 = 30;

/// `body` as one critical section under `flock` on [`ROOT`] (created if missing). The
/// lock is on the folder itself, opened read-only: no file of its own to plant or leave.
fn exclusive(body: &str) -> String {
    format!(
        "mkdir -p {root} && {{ command -v flock >/dev/null || {{ echo 'flock (util-linux) is missing on this manager: install util-linux' >&2; exit 1; }}; flock -w {FLOCK_WAIT_SECS} 9 || {{ echo 'another rpiprov lock command held {root} for {FLOCK_WAIT_SECS}s' >&2; exit 1; }}; {body}; }} 9<{root}",
        root = quote(ROOT),
    )
}

/// Takes the lock: of two runs exactly one creates the folder, and writes the owner file
/// in the same critical section. Prints `@@acquired`, or `@@held` followed by the
/// holder's owner file (empty only when a run was killed between the two).
pub fn lock_acquire(owner_file: &str) -> String {
    exclusive(&take(owner_file))
}

/// The body of [`lock_acquire`], inside a critical section.
fn take(owner_file: &str) -> String {
    format!(
        "if mkdir {dir} 2>/dev/null; then printf '%s' {content} > {owner} && echo '@@acquired'; else echo '@@held'; cat {owner} 2>/dev/null; true; fi",
        dir = quote(&lock_dir()),
        owner = quote(&lock_owner()),
        content = quote(owner_file),
    )
}

/// Releases the lock only if it is still ours (same owner file), comparing and removing
/// in one critical section: a lock another run took after an `--unlock` survives our
/// exit. Prints `@@released` or `@@not-ours`.
pub fn lock_release(owner_file: &str) -> String {
    // `$(cat)` drops trailing newlines, so the comparison is against the trimmed text.
    exclusive(&format!(
        "if [ \"$(cat {owner} 2>/dev/null)\" = {content} ]; then rm -rf {dir} && echo '@@released'; else echo '@@not-ours'; fi",
        owner = quote(&lock_owner()),
        content = quote(owner_file.trim_end_matches('\n')),
        dir = quote(&lock_dir()),
    ))
}

/// Takes over a lock whose holder is gone: removes it only if its owner file still is
/// `stale` (the holder judged gone; another run may have taken it over first), then takes
/// the lock as [`lock_acquire`] does, in the same critical section. Prints what
/// [`lock_acquire`] prints.
pub fn lock_take_over(stale: &str, owner_file: &str) -> String {
    exclusive(&format!(
        "if [ \"$(cat {owner} 2>/dev/null)\" = {stale} ]; then rm -rf {dir}; fi; {acquire}",
        owner = quote(&lock_owner()),
        stale = quote(stale.trim_end_matches('\n')),
        dir = quote(&lock_dir()),
        acquire = take(owner_file),
    ))
}

/// Who holds the lock, changing nothing (`rpiprov plan`): prints `@@held` and the owner
/// file, or `@@none`; what [`lock_acquire`] would have found. Outside the critical
/// section: a read, and a lock being taken right now shows as held by no owner.
pub fn lock_peek() -> String {
    format!(
        "if [ -d {dir} ]; then echo '@@held'; cat {owner} 2>/dev/null; true; else echo '@@none'; fi",
        dir = quote(&lock_dir()),
        owner = quote(&lock_owner()),
    )
}

/// `deploy --unlock`: removes the lock whoever holds it. Prints `@@held` and the owner file
/// it removed, or `@@none`.
pub fn lock_remove() -> String {
    exclusive(&format!(
        "if [ -d {dir} ]; then echo '@@held'; cat {owner} 2>/dev/null; rm -rf {dir}; else echo '@@none'; fi",
        dir = quote(&lock_dir()),
        owner = quote(&lock_owner()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn lock_commands() {
        let owner = "user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n";
        let under_flock = |body: &str| {
            format!(
                "mkdir -p /var/lib/rpiprov && {{ command -v flock >/dev/null || {{ echo 'flock (util-linux) is missing on this manager: install util-linux' >&2; exit 1; }}; flock -w 30 9 || {{ echo 'another rpiprov lock command held /var/lib/rpiprov for 30s' >&2; exit 1; }}; {body}; }} 9</var/lib/rpiprov"
            )
        };
        assert_eq!(
            lock_acquire(owner),
            under_flock(
                "if mkdir /var/lib/rpiprov/lock 2>/dev/null; then printf '%s' 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n' > /var/lib/rpiprov/lock/owner && echo '@@acquired'; else echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; true; fi"
            )
        );
        assert_eq!(
            lock_release(owner),
            under_flock(
                "if [ \"$(cat /var/lib/rpiprov/lock/owner 2>/dev/null)\" = 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy' ]; then rm -rf /var/lib/rpiprov/lock && echo '@@released'; else echo '@@not-ours'; fi"
            )
        );
        assert_eq!(
            lock_remove(),
            under_flock(
                "if [ -d /var/lib/rpiprov/lock ]; then echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; rm -rf /var/lib/rpiprov/lock; else echo '@@none'; fi"
            )
        );
        assert_eq!(
            lock_take_over("user=a\npid=1\n", "user=b\n"),
            under_flock(
                "if [ \"$(cat /var/lib/rpiprov/lock/owner 2>/dev/null)\" = 'user=a\npid=1' ]; then rm -rf /var/lib/rpiprov/lock; fi; if mkdir /var/lib/rpiprov/lock 2>/dev/null; then printf '%s' 'user=b\n' > /var/lib/rpiprov/lock/owner && echo '@@acquired'; else echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; true; fi"
            )
        );
        for s in [
            lock_acquire(owner),
            lock_release(owner),
            lock_remove(),
            lock_take_over(owner, owner),
        ] {
            syntax_ok(&s);
        }
    }

    /// The lock commands, run for real by `sh` in a scratch folder: the second acquire is
    /// refused with the first owner's file, release by a stranger does nothing.
    #[test]
    fn lock_commands_work_in_a_real_shell() {
        let host = ScratchHost::new();
        let run = |script: String| host.run(&script, b"").ok();
        let a = "user=pi\nhost=a\npid=1\n";
        let b = "user=pi\nhost=b\npid=2\n";
        assert_eq!(run(lock_release(a)), "@@not-ours\n", "never taken");
        assert_eq!(run(lock_acquire(a)), "@@acquired\n");
        assert_eq!(run(lock_acquire(b)), format!("@@held\n{a}"));
        assert_eq!(run(lock_release(b)), "@@not-ours\n");
        assert_eq!(run(lock_release(a)), "@@released\n");
        assert_eq!(run(lock_acquire(b)), "@@acquired\n");
        assert_eq!(run(lock_remove()), format!("@@held\n{b}"));
        assert_eq!(run(lock_remove()), "@@none\n");

        // Taking over: only from the holder judged gone, and nothing is left aside.
        let c = "user=pi\nhost=c\npid=3\n";
        assert_eq!(run(lock_acquire(a)), "@@acquired\n");
        assert_eq!(run(lock_take_over(b, c)), format!("@@held\n{a}"));
        assert_eq!(run(lock_take_over(a, c)), "@@acquired\n");
        assert_eq!(run(lock_release(c)), "@@released\n");
        // A free lock is simply taken.
        assert_eq!(run(lock_take_over(a, c)), "@@acquired\n");
        assert_eq!(run(lock_release(c)), "@@released\n");
        let left: Vec<_> = std::fs::read_dir(host.root()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Issue 9 item 10: run A's release is held up just after it found its own owner file,
    /// before it removes the lock. Meanwhile someone runs `--unlock` and run B takes the
    /// lock. A's release must not then remove B's lock: compare and remove are one step,
    /// so the unlock and B's acquire wait for A's release to end, and B holds the lock.
    #[test]
    fn a_release_never_removes_a_lock_taken_while_it_ran() {
        use std::time::{Duration, Instant};
        let host = ScratchHost::new();
        let a = "user=pi\nhost=a\npid=1\n";
        let b = "user=pi\nhost=b\npid=2\n";
        assert_eq!(host.run(&lock_acquire(a), b"").ok(), "@@acquired\n");
        // The first `rm` to find `pause_rm` claims it and waits for `go`; others run on.
        let file = |name: &str| host.docker_file(name);
        host.stand_in(
            "rm",
            "#!/bin/sh\nif mv \"$FAKE/pause_rm\" \"$FAKE/paused\" 2>/dev/null; then\n  i=0; while [ ! -e \"$FAKE/go\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\nfi\nPATH=${PATH#*:} exec rm \"$@\"\n",
        );
        std::fs::write(file("pause_rm"), "").unwrap();
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let (released, unlock, acquire_b) = std::thread::scope(|s| {
            let release_a = s.spawn(|| host.run(&lock_release(a), b"").ok());
            wait_for("A's release reached its rm", &|| file("paused").exists());
            let others = s.spawn(|| {
                let unlock = host.run(&lock_remove(), b"").ok();
                let acquire_b = host.run(&lock_acquire(b), b"").ok();
                (unlock, acquire_b)
            });
            // Let the unlock and B's acquire run now if they can (they could, before the
            // fix); with the fix they wait for A's release.
            let until = Instant::now() + Duration::from_secs(1);
            while !others.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::fs::write(file("go"), "").unwrap();
            let released = release_a.join().unwrap();
            let (unlock, acquire_b) = others.join().unwrap();
            (released, unlock, acquire_b)
        });
        let owner = std::fs::read_to_string(format!("{}/lock/owner", host.root()));
        assert_eq!(
            owner.ok().as_deref(),
            Some(b),
            "B's lock was removed by A's release"
        );
        assert_eq!(released, "@@released\n");
        assert_eq!(
            unlock, "@@none\n",
            "A's release ended before the unlock ran"
        );
        assert_eq!(acquire_b, "@@acquired\n");
    }
}
