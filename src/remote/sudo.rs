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

/// Watches stderr until the command starts. Feed it stderr chunks as they arrive (markers
/// may be split across chunks).
#[derive(Debug)]
pub(crate) struct Watch {
    prompt: Vec<u8>,
    ready_line: Vec<u8>,
    has_password: bool,
    buf: Vec<u8>,
    scanned: usize,
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
            scanned: 0,
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
        while let Some(at) = find(&self.buf[self.scanned..], &self.prompt) {
            self.scanned += at + self.prompt.len();
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
        if let Some(at) = find(&self.buf, &self.ready_line) {
            let rest = self.buf.split_off(at + self.ready_line.len());
            self.buf.truncate(at);
            self.finished = true;
            events.push(Event::Ready(rest));
        }
        events
    }

    /// What sudo said before failing, without the prompt markers, for the error message.
    pub fn said(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        let prompt = String::from_utf8_lossy(&self.prompt);
        let text = text.replace(prompt.as_ref(), "");
        let text = text.trim();
        let mut out: String = text.chars().take(400).collect();
        if out.len() < text.len() {
            out.push_str("...");
        }
        out
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

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
        assert_eq!(token().len(), 16);
    }
}
