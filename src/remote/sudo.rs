//! Privileged commands through `sudo`, with the password (when sudo asks for one) fed on
//! stdin without ever mixing it into the command's own stdin.
//!
//! Why a handshake instead of "password as the first stdin line": sudo only reads a
//! password when it needs one (NOPASSWD rules, cached credentials, root), and a password
//! line it does not read becomes the command's first line of input; a stdin line it reads
//! as a password when none was expected (no password configured) would swallow the
//! command's data. So the wrapper is
//!
//! ```text
//! sudo -S -p '<prompt marker>' -- sh -c 'printf "%s\n" <ready marker> >&2
//! <command>'
//! ```
//!
//! and the client watches stderr: the prompt marker means "sudo wants the password now"
//! (sent once; a second prompt means it was wrong), the ready marker means "sudo is done,
//! the command runs": only then is the request's stdin sent. Everything sudo printed before
//! the ready marker (prompts, the lecture) is kept out of the command's output. Checking
//! `sudo -n true` first would cost a round trip and still race with credential caching.

use crate::shell::quote;

/// A command wrapped for sudo, with the markers to watch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrapped {
    pub command: String,
    pub prompt: String,
    pub ready: String,
}

/// Wraps `command` (a shell command line) to run as root. `token` makes the markers unique
/// per run so that no text sudo prints can be mistaken for them.
pub(crate) fn wrap(command: &str, token: &str) -> Wrapped {
    // `%` would be expanded by sudo's -p (%u, %h, ...): the markers avoid it.
    let prompt = format!("[rpiprov-sudo-password:{token}]");
    let ready = format!("rpiprov-sudo-ready:{token}");
    let script = format!("printf '%s\\n' {} >&2\n{command}", quote(&ready));
    Wrapped {
        command: format!("sudo -S -p {} -- sh -c {}", quote(&prompt), quote(&script)),
        prompt,
        ready,
    }
}

/// A fresh marker token: unique within the process and unpredictable enough that command
/// output cannot collide with it by accident.
pub(crate) fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

/// What sudo's stderr means so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// sudo prompts: send the password line.
    SendPassword,
    /// sudo prompts but no password is configured.
    NeedsPassword,
    /// sudo prompts again after the password was sent.
    WrongPassword,
    /// The command started; these bytes already belong to its stderr.
    Ready(Vec<u8>),
}

/// Most of what sudo says before the command starts that is kept for the error message;
/// a host printing more (sudo never does) cannot make rpiprov hold it all.
const SAID_MAX: usize = 4096;

/// Watches stderr until the command starts. Feed it stderr chunks as they arrive (markers
/// may be split across chunks). Each byte is searched once per marker (plus an overlap of
/// a marker's length at chunk boundaries), however the output is chunked.
#[derive(Debug)]
pub(crate) struct Watch {
    prompt: Vec<u8>,
    ready_line: Vec<u8>,
    has_password: bool,
    /// What sudo printed so far (its last [`SAID_MAX`] bytes at least), markers included.
    buf: Vec<u8>,
    /// Where in `buf` the next search for each marker starts.
    prompt_from: usize,
    ready_from: usize,
    prompts: usize,
    finished: bool,
}

impl Watch {
    pub fn new(w: &Wrapped, has_password: bool) -> Self {
        Watch {
            prompt: w.prompt.as_bytes().to_vec(),
            ready_line: format!("{}\n", w.ready).into_bytes(),
            has_password,
            buf: Vec::new(),
            prompt_from: 0,
            ready_from: 0,
            prompts: 0,
            finished: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if self.finished {
            return events;
        }
        self.buf.extend_from_slice(bytes);
        // The ready line ends what sudo says: a prompt marker after it is the command's
        // own output (the command can read the marker from its process list) and must
        // never be answered with the password.
        let ready_at =
            find(&self.buf[self.ready_from..], &self.ready_line).map(|at| at + self.ready_from);
        let sudo_end = ready_at.unwrap_or(self.buf.len());
        while let Some(at) = find(
            self.buf.get(self.prompt_from..sudo_end).unwrap_or_default(),
            &self.prompt,
        ) {
            self.prompt_from += at + self.prompt.len();
            self.prompts += 1;
            let ev = match (self.prompts, self.has_password) {
                (1, true) => Event::SendPassword,
                (1, false) => Event::NeedsPassword,
                _ => Event::WrongPassword,
            };
            let terminal = ev != Event::SendPassword;
            events.push(ev);
            if terminal {
                self.finished = true;
                return events;
            }
        }
        match ready_at {
            Some(at) => {
                let rest = self.buf.split_off(at + self.ready_line.len());
                self.buf.truncate(at);
                self.finished = true;
                events.push(Event::Ready(rest));
            }
            None => {
                // A marker may be cut by the end of the chunk: search its length back again.
                let len = self.buf.len();
                self.ready_from = len.saturating_sub(self.ready_line.len() - 1);
                self.prompt_from = self
                    .prompt_from
                    .max(len.saturating_sub(self.prompt.len() - 1));
                self.trim();
            }
        }
        events
    }

    /// Drops the head of `buf` beyond [`SAID_MAX`] bytes, in batches so that each byte is
    /// moved a bounded number of times.
    fn trim(&mut self) {
        if self.buf.len() <= 2 * SAID_MAX {
            return;
        }
        let cut = self.buf.len() - SAID_MAX;
        self.buf.drain(..cut);
        // Both search starts are within a marker's length of the end, so inside what is kept.
        self.prompt_from -= cut;
        self.ready_from -= cut;
    }

    /// What sudo said before failing, without the prompt markers, for the error message:
    /// its last 400 characters (sudo's verdict comes last, after any lecture).
    pub fn said(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        let prompt = String::from_utf8_lossy(&self.prompt);
        let text = text.replace(prompt.as_ref(), "");
        let text = text.trim();
        const SHOWN: usize = 400;
        let count = text.chars().count();
        if count <= SHOWN {
            return text.to_string();
        }
        let tail: String = text.chars().skip(count - SHOWN).collect();
        format!("...{tail}")
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_is_exact_and_quoted() {
        let w = wrap("echo 'a b' | tee /etc/x", "ab12");
        assert_eq!(w.prompt, "[rpiprov-sudo-password:ab12]");
        assert_eq!(w.ready, "rpiprov-sudo-ready:ab12");
        assert_eq!(
            w.command,
            "sudo -S -p '[rpiprov-sudo-password:ab12]' -- sh -c 'printf '\\''%s\\n'\\'' \
             rpiprov-sudo-ready:ab12 >&2\necho '\\''a b'\\'' | tee /etc/x'"
        );
    }

    /// The wrapper is valid shell: with a stand-in `sudo` that just runs its command, the
    /// ready marker reaches stderr first and the command sees its stdin untouched.
    #[test]
    fn wrapped_command_runs_in_a_real_shell() {
        let w = wrap("cat; echo done", "t1");
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("sudo");
        std::fs::write(
            &fake,
            "#!/bin/sh\n# drop -S -p PROMPT --\nshift 3; shift\nexec \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&w.command)
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"payload\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "payload\ndone\n");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "rpiprov-sudo-ready:t1\n"
        );
    }

    #[test]
    fn password_then_ready_split_across_chunks() {
        let w = wrap("true", "x");
        let mut watch = Watch::new(&w, true);
        assert_eq!(watch.feed(b"[rpiprov-sudo-pass"), vec![]);
        assert_eq!(watch.feed(b"word:x]"), vec![Event::SendPassword]);
        assert_eq!(watch.feed(b"rpiprov-sudo-re"), vec![]);
        assert_eq!(
            watch.feed(b"ady:x\ncommand err\n"),
            vec![Event::Ready(b"command err\n".to_vec())]
        );
        // After the command started nothing is interpreted any more.
        assert_eq!(watch.feed(b"[rpiprov-sudo-password:x]"), vec![]);
    }

    #[test]
    fn no_prompt_when_sudo_needs_no_password() {
        let w = wrap("true", "x");
        let mut watch = Watch::new(&w, true);
        assert_eq!(
            watch.feed(b"rpiprov-sudo-ready:x\n"),
            vec![Event::Ready(Vec::new())]
        );
    }

    #[test]
    fn missing_and_wrong_passwords() {
        let w = wrap("true", "x");
        let mut watch = Watch::new(&w, false);
        assert_eq!(
            watch.feed(b"[rpiprov-sudo-password:x]"),
            vec![Event::NeedsPassword]
        );
        let mut watch = Watch::new(&w, true);
        assert_eq!(
            watch.feed(b"[rpiprov-sudo-password:x]Sorry, try again.\n[rpiprov-sudo-password:x]"),
            vec![Event::SendPassword, Event::WrongPassword]
        );
        assert_eq!(watch.said(), "Sorry, try again.");
    }

    /// Issue 9, item 6: once the ready marker is in, everything after it is the command's
    /// stderr. A prompt marker there (the command printed it: it can read the marker from
    /// its own process list) must not make the client send the password to its stdin.
    #[test]
    fn a_prompt_marker_after_the_ready_marker_is_command_output() {
        let w = wrap("true", "x");
        let mut watch = Watch::new(&w, true);
        assert_eq!(
            watch.feed(b"rpiprov-sudo-ready:x\nerr [rpiprov-sudo-password:x]\n"),
            vec![Event::Ready(b"err [rpiprov-sudo-password:x]\n".to_vec())]
        );
        // The same with the ready line completed by the chunk that carries the marker.
        let mut watch = Watch::new(&w, true);
        assert_eq!(watch.feed(b"rpiprov-sudo-ready:x"), vec![]);
        assert_eq!(
            watch.feed(b"\n[rpiprov-sudo-password:x]"),
            vec![Event::Ready(b"[rpiprov-sudo-password:x]".to_vec())]
        );
        // A genuine prompt before the ready marker in the same chunk is still answered.
        let mut watch = Watch::new(&w, true);
        assert_eq!(
            watch.feed(b"[rpiprov-sudo-password:x]rpiprov-sudo-ready:x\n[rpiprov-sudo-password:x]"),
            vec![
                Event::SendPassword,
                Event::Ready(b"[rpiprov-sudo-password:x]".to_vec())
            ]
        );
    }

    /// Issue 9, item 8: 20 MiB on stderr before the ready marker (a hostile host) is not
    /// all held, and each chunk is searched once, not the whole buffer again.
    #[test]
    fn a_flood_before_the_ready_marker_is_bounded() {
        let w = wrap("true", "x");
        let mut watch = Watch::new(&w, true);
        let chunk = vec![b'y'; 32 * 1024];
        for _ in 0..640 {
            assert_eq!(watch.feed(&chunk), vec![]);
            assert!(watch.buf.len() <= 2 * SAID_MAX, "{}", watch.buf.len());
        }
        // The marker still counts when a chunk boundary cuts it.
        assert_eq!(watch.feed(b"rpiprov-sudo-re"), vec![]);
        assert_eq!(
            watch.feed(b"ady:x\nafter"),
            vec![Event::Ready(b"after".to_vec())]
        );
        let said = watch.said();
        assert_eq!(said, format!("...{}", "y".repeat(400)));
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
        assert_eq!(token().len(), 16);
    }
}
