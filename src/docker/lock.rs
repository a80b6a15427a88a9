//! The deploy lock's remote half: commands that take, release and remove the folder
//! [`lock_dir`] on the manager. Who holds the lock, the refusal messages and when the lock
//! is taken live in [`crate::exec::lock`].

use crate::docker::paths::{ROOT, lock_dir, lock_owner};
use crate::shell::quote;

/// Takes the lock: `mkdir` is atomic, so of two runs exactly one creates the folder. The
/// owner file is written by the same command, right after. Prints `@@acquired`, or
/// `@@held` followed by the holder's owner file (possibly empty: a run killed between the
/// two steps, or one taking the lock this very moment).
pub fn lock_acquire(owner_file: &str) -> String {
    format!(
        "mkdir -p {root} && if mkdir {dir} 2>/dev/null; then printf '%s' {content} > {owner} && echo '@@acquired'; else echo '@@held'; cat {owner} 2>/dev/null; true; fi",
        root = quote(ROOT),
        dir = quote(&lock_dir()),
        owner = quote(&lock_owner()),
        content = quote(owner_file),
    )
}

/// Releases the lock only if it is still ours (same owner file): a lock another run took
/// after an `--unlock` must survive our exit. Prints `@@released` or `@@not-ours`.
pub fn lock_release(owner_file: &str) -> String {
    // `$(cat)` drops trailing newlines, so the comparison is against the trimmed text.
    format!(
        "if [ \"$(cat {owner} 2>/dev/null)\" = {content} ]; then rm -rf {dir} && echo '@@released'; else echo '@@not-ours'; fi",
        owner = quote(&lock_owner()),
        content = quote(owner_file.trim_end_matches('\n')),
        dir = quote(&lock_dir()),
    )
}

/// `deploy --unlock`: removes the lock whoever holds it. Prints `@@held` and the owner file
/// it removed, or `@@none`.
pub fn lock_remove() -> String {
    format!(
        "if [ -d {dir} ]; then echo '@@held'; cat {owner} 2>/dev/null; rm -rf {dir}; else echo '@@none'; fi",
        dir = quote(&lock_dir()),
        owner = quote(&lock_owner()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn lock_commands() {
        let owner = "user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n";
        assert_eq!(
            lock_acquire(owner),
            "mkdir -p /var/lib/rpiprov && if mkdir /var/lib/rpiprov/lock 2>/dev/null; then printf '%s' 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy\n' > /var/lib/rpiprov/lock/owner && echo '@@acquired'; else echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; true; fi"
        );
        assert_eq!(
            lock_release(owner),
            "if [ \"$(cat /var/lib/rpiprov/lock/owner 2>/dev/null)\" = 'user=pi\nhost=lap top\npid=42\nsince=2026-11-25T16:00:00Z\ncommand=deploy' ]; then rm -rf /var/lib/rpiprov/lock && echo '@@released'; else echo '@@not-ours'; fi"
        );
        assert_eq!(
            lock_remove(),
            "if [ -d /var/lib/rpiprov/lock ]; then echo '@@held'; cat /var/lib/rpiprov/lock/owner 2>/dev/null; rm -rf /var/lib/rpiprov/lock; else echo '@@none'; fi"
        );
        for s in [lock_acquire(owner), lock_release(owner), lock_remove()] {
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
        assert_eq!(run(lock_acquire(a)), "@@acquired\n");
        assert_eq!(run(lock_acquire(b)), format!("@@held\n{a}"));
        assert_eq!(run(lock_release(b)), "@@not-ours\n");
        assert_eq!(run(lock_release(a)), "@@released\n");
        assert_eq!(run(lock_acquire(b)), "@@acquired\n");
        assert_eq!(run(lock_remove()), format!("@@held\n{b}"));
        assert_eq!(run(lock_remove()), "@@none\n");
    }
}
