//! Commands whose output is a variable's value (`{ command = ["pass", "show", "pi/db"],
//! secret = true }`), run on this machine when the value is needed, without a shell: the
//! output is held as a [`Secret`] and never stored or shown. Bounded in time (the
//! variable's `timeout`, then the command is killed) and in size ([`MAX_OUTPUT`]); one
//! trailing line end is dropped, as a shell's `$(...)` would; a value of more lines cannot
//! be sent to `docker stack deploy` and is refused. Its standard input is empty and its
//! standard error is kept (its end only) for the message of a failure.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::config::ValueCommand;
use crate::secret::Secret;

/// The most a command may print (a password or a token is far less).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How much of its standard error a failure shows at most.
const ERROR_TAIL: usize = 300;

enum Said {
    Out(std::io::Result<Vec<u8>>),
    Err(Vec<u8>),
    Exit(std::io::Result<ExitStatus>),
}

/// Runs the command; the error says what went wrong, never the output.
pub fn run(cmd: &ValueCommand) -> Result<Secret, String> {
    let shown = cmd.argv.join(" ");
    let fail = |why: String| format!("command `{shown}`: {why}");
    let mut child = Command::new(&cmd.argv[0])
        .args(&cmd.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t = tx.clone();
    // One byte more than allowed says it printed too much; the pipe closes after it.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = (&mut out).take(MAX_OUTPUT as u64 + 1).read_to_end(&mut buf);
        let _ = t.send(Said::Out(r.map(|_| buf)));
    });
    let t = tx.clone();
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut chunk) {
            tail.extend_from_slice(&chunk[..n]);
            let cut = tail.len().saturating_sub(4096);
            tail.drain(..cut);
        }
        let _ = t.send(Said::Err(tail));
    });
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(Said::Exit(child.wait()));
    });
    let deadline = Instant::now() + cmd.timeout;
    let (mut stdout, mut stderr, mut status) = (None, None, None);
    while stdout.is_none() || stderr.is_none() || status.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Said::Out(o)) => stdout = Some(o),
            Ok(Said::Err(e)) => stderr = Some(e),
            Ok(Said::Exit(s)) => status = Some(s),
            Err(_) => {
                if status.is_none() {
                    // SAFETY: a signal to the child we started, which no one has reaped
                    // yet (its waiter has not answered).
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                return Err(fail(format!(
                    "did not finish within {} (stopped)",
                    crate::config::duration::format(cmd.timeout)
                )));
            }
        }
    }
    let bytes = stdout
        .expect("received")
        .map_err(|e| fail(format!("cannot read its output: {e}")))?;
    // Before the status: the pipe closed after the limit may have killed the writer.
    if bytes.len() > MAX_OUTPUT {
        return Err(fail(format!("printed more than {MAX_OUTPUT} bytes")));
    }
    let status = status
        .expect("received")
        .map_err(|e| fail(format!("{e}")))?;
    if !status.success() {
        let tail = last_line(&stderr.unwrap_or_default());
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(fail(if tail.is_empty() {
            how
        } else {
            format!("{how}: {tail}")
        }));
    }
    value(bytes).map_err(fail)
}

/// The output as a value: one line end dropped; more lines, NUL bytes, text that is not
/// UTF-8 or too much of it refused.
fn value(bytes: Vec<u8>) -> Result<Secret, String> {
    if bytes.len() > MAX_OUTPUT {
        return Err(format!("printed more than {MAX_OUTPUT} bytes"));
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|_| "printed something that is not UTF-8 text".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.contains(['\n', '\0']) {
        return Err("printed more than one line (or a NUL byte), which cannot be passed to docker stack deploy: make it print the value alone".into());
    }
    Ok(Secret::new(text))
}

/// The last non-empty line of a command's standard error, without control characters,
/// shortened.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    match clean.char_indices().nth(ERROR_TAIL) {
        Some((i, _)) => format!("{}...", &clean[..i]),
        None => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str, timeout: Duration) -> Result<Secret, String> {
        run(&ValueCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout,
        })
    }

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn the_output_is_the_value_without_its_line_end() {
        assert_eq!(sh("printf 'hunter2\\n'", LONG).unwrap().expose(), "hunter2");
        assert_eq!(sh("printf 'a b\\r\\n'", LONG).unwrap().expose(), "a b");
        assert_eq!(sh("printf 'x'; echo oops >&2", LONG).unwrap().expose(), "x");
        assert_eq!(sh("true", LONG).unwrap().expose(), "");
    }

    #[test]
    fn failures_say_why_and_never_the_output() {
        let err = sh("echo s3cr3t; echo 'not in the store' >&2; exit 3", LONG).unwrap_err();
        assert_eq!(
            err,
            "command `sh -c echo s3cr3t; echo 'not in the store' >&2; exit 3`: exited with status 3: not in the store"
        );
        let err = sh("printf 'a\\nb\\n'", LONG).unwrap_err();
        assert!(err.ends_with("printed more than one line (or a NUL byte), which cannot be passed to docker stack deploy: make it print the value alone"), "{err}");
        let err = sh("head -c 70000 /dev/zero | tr '\\0' x", LONG).unwrap_err();
        assert!(err.ends_with("printed more than 65536 bytes"), "{err}");
        let err = run(&ValueCommand {
            argv: vec!["/nonexistent/pass".into()],
            timeout: LONG,
        })
        .unwrap_err();
        assert!(
            err.starts_with("command `/nonexistent/pass`: cannot run it: "),
            "{err}"
        );
    }

    /// A command that never ends is stopped at its timeout (far shorter than it runs).
    #[test]
    fn a_command_is_stopped_at_its_timeout() {
        let err = sh("exec sleep 600", Duration::from_millis(200)).unwrap_err();
        assert_eq!(
            err,
            "command `sh -c exec sleep 600`: did not finish within 200ms (stopped)"
        );
    }
}
