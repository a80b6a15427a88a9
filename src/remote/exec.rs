//! Running one command on one channel: stdin in, stdout/stderr/exit status out, with the
//! sudo handshake and an optional "stdin gate" in between.
//!
//! The channel is always read until it closes: russh queues at most 100 messages per
//! channel and an unread queue stalls the whole connection. The exit status may arrive
//! before the last output, so it is only recorded, never taken as the end. Stdin is written
//! concurrently with reading (a command that writes while it reads would otherwise
//! deadlock on a full window), in 256 KiB chunks, then EOF.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, Sig};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::output::{Lines, Tail, redact_str};
use super::sudo::{self, Event, Watch};
use super::{Output, RemoteError, Stream};
use crate::secret::Secret;
use crate::shell::quote;

const STDIN_CHUNK: usize = 256 * 1024;

/// Holds stdin back until the command prints `go` as a stdout line; a `skip` line means
/// the command will not read it (EOF is sent instead). Lets one exec ask "do you need the
/// data?" before a large upload.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub go: String,
    pub skip: Vec<String>,
}

/// The sudo handshake of a command, when it runs through sudo: the watch of its stderr and
/// the password to answer with.
pub(crate) type SudoWatch = Option<(Watch, Option<Secret>)>;

/// How to run one command.
pub(crate) struct Plan {
    /// Sent to the server as is (already wrapped for sudo if needed).
    pub command: String,
    /// The caller's command, for error messages (without any wrapper).
    pub display: String,
    pub sudo: SudoWatch,
    pub stdin: Option<Bytes>,
    pub gate: Option<Gate>,
    pub deadline: Instant,
    pub timeout: Duration,
    /// Taken out of everything returned or streamed (the session's sudo password: a
    /// command, or sudo itself, may echo it).
    pub redact: Option<Secret>,
    /// Stops the command when it turns true (see [`super::ExecRequest::interrupt`]).
    pub interrupt: Option<tokio::sync::watch::Receiver<bool>>,
}

enum ToWriter {
    Password(Secret),
    Start,
    Stop,
}

/// Where output lines go as they arrive. Two lifetimes, so that a caller may lend its
/// callback to several attempts of a command in turn.
pub(crate) type OnLine<'a, 'f> = Option<&'a mut (dyn FnMut(Stream, &str) + Send + 'f)>;

/// Runs `plan` on a freshly opened session channel.
pub(crate) async fn run(
    host: &str,
    channel: Channel<Msg>,
    plan: Plan,
    mut on_line: OnLine<'_, '_>,
) -> Result<Output, RemoteError> {
    let Plan {
        command,
        display,
        sudo,
        stdin,
        gate,
        deadline,
        timeout,
        redact,
        interrupt,
    } = plan;
    let interrupted = async move {
        match interrupt {
            Some(mut rx) => {
                // A dropped sender never interrupts.
                if rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let mut interrupted = pin!(interrupted);
    let secret = redact.as_ref();
    let channel_err = |what: &str, e: russh::Error| RemoteError::Channel {
        host: host.to_string(),
        reason: format!("{what}: {e}"),
    };
    channel
        .exec(true, command.into_bytes())
        .await
        .map_err(|e| channel_err("cannot start the command", e))?;
    let (mut rd, wr) = channel.split();
    let hangup = Hangup {
        wr: Some(wr),
        armed: AtomicBool::new(true),
    };
    let wr = hangup.wr.as_ref().expect("just set");

    let (to_writer, mut from_reader) = mpsc::unbounded_channel::<ToWriter>();
    let wr_ref = wr;
    let writer = async move {
        let stdin = stdin.unwrap_or_default();
        while let Some(msg) = from_reader.recv().await {
            match msg {
                ToWriter::Password(p) => {
                    let line = format!("{}\n", p.expose()).into_bytes();
                    if wr_ref.data_bytes(line).await.is_err() {
                        return;
                    }
                }
                ToWriter::Start => {
                    let mut at = 0;
                    while at < stdin.len() {
                        let end = (at + STDIN_CHUNK).min(stdin.len());
                        // A command that exits without reading all of its stdin closes
                        // the channel; its exit status tells the story, not this error.
                        if wr_ref.data_bytes(stdin.slice(at..end)).await.is_err() {
                            return;
                        }
                        at = end;
                    }
                    let _ = wr_ref.eof().await;
                    return;
                }
                ToWriter::Stop => {
                    let _ = wr_ref.eof().await;
                    return;
                }
            }
        }
    };
    let mut writer = pin!(writer);
    let mut writer_done = false;

    let (mut watch, password) = match sudo {
        Some((w, p)) => (Some(w), p),
        None => (None, None),
    };
    let mut gate = gate;
    if watch.is_none() && gate.is_none() {
        let _ = to_writer.send(ToWriter::Start);
    }

    let mut out = Output::default();
    let (mut stdout_kept, mut stderr_kept) = (Tail::default(), Tail::default());
    let mut status: Option<u32> = None;
    let mut sudo_failure: Option<String> = None;
    let (mut out_lines, mut err_lines, mut gate_lines) =
        (Lines::default(), Lines::default(), Lines::default());
    let mut sleep = pin!(tokio::time::sleep_until(deadline));

    // Command output is kept and streamed here; `gate` is checked on whole stdout lines.
    let mut stdout = |bytes: &[u8], gate: &mut Option<Gate>, on_line: &mut OnLine<'_, '_>| {
        stdout_kept.push(bytes);
        if let Some(f) = on_line.as_deref_mut() {
            out_lines.push(bytes, |l, _| f(Stream::Stdout, &redact_str(l, secret)));
        }
        if gate.is_some() {
            gate_lines.push(bytes, |l, whole| {
                if let Some(g) = gate.as_ref().filter(|_| whole) {
                    if l == g.go {
                        let _ = to_writer.send(ToWriter::Start);
                        *gate = None;
                    } else if g.skip.iter().any(|s| s == l) {
                        let _ = to_writer.send(ToWriter::Stop);
                        *gate = None;
                    }
                }
            });
        }
    };

    loop {
        tokio::select! {
            () = &mut sleep => {
                // Ask the command to stop: TERM reaches `timeout` (see `with_remote_limit`)
                // or sudo, which pass it on to the command's whole process group; if it is
                // ignored, `timeout` kills the group a second later. Then abandon the channel
                // (dropping its read half makes russh discard whatever still arrives).
                let _ = wr.signal(Sig::TERM).await;
                let _ = wr.close().await;
                hangup.armed.store(false, Ordering::Relaxed);
                return Err(RemoteError::CommandTimeout {
                    host: host.to_string(),
                    secs: timeout.as_secs().max(1),
                    command: short(&display),
                });
            }
            () = &mut interrupted => {
                // As at the deadline: the whole remote process group is stopped. Then the
                // channel is read to its end (briefly): the caller may exit right after,
                // and the signal must have reached the server by then.
                let _ = wr.signal(Sig::TERM).await;
                let _ = wr.close().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while rd.wait().await.is_some() {}
                })
                .await;
                return Err(RemoteError::Interrupted {
                    host: host.to_string(),
                    command: short(&display),
                });
            }
            () = &mut writer, if !writer_done => writer_done = true,
            msg = rd.wait() => {
                let Some(msg) = msg else {
                    // Closed by the server: nothing left to hang up.
                    hangup.armed.store(false, Ordering::Relaxed);
                    break;
                };
                match msg {
                    ChannelMsg::Data { data } => stdout(&data, &mut gate, &mut on_line),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        let mut command_err: Vec<u8> = Vec::new();
                        if let Some(w) = watch.as_mut() {
                            let mut started = false;
                            for ev in w.feed(&data) {
                                match ev {
                                    Event::SendPassword => {
                                        if let Some(p) = password.clone() {
                                            let _ = to_writer.send(ToWriter::Password(p));
                                        }
                                    }
                                    Event::NeedsPassword => {
                                        sudo_failure = Some(format!(
                                            "sudo on {host} asks for a password: set the become password for this host (become_password, prompt or environment variable) or allow NOPASSWD sudo"
                                        ));
                                        let _ = to_writer.send(ToWriter::Stop);
                                    }
                                    Event::WrongPassword => {
                                        sudo_failure = Some(format!(
                                            "sudo on {host} rejected the password: check the become password for this host"
                                        ));
                                        let _ = to_writer.send(ToWriter::Stop);
                                    }
                                    Event::Ready(rest) => {
                                        if gate.is_none() {
                                            let _ = to_writer.send(ToWriter::Start);
                                        }
                                        command_err = rest;
                                        started = true;
                                    }
                                }
                            }
                            if started {
                                watch = None;
                            }
                        } else {
                            command_err = data.to_vec();
                        }
                        if !command_err.is_empty() {
                            stderr_kept.push(&command_err);
                            if let Some(f) = on_line.as_deref_mut() {
                                err_lines.push(&command_err, |l, _| {
                                    f(Stream::Stderr, &redact_str(l, secret));
                                });
                            }
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(signal_text(&signal_name));
                    }
                    ChannelMsg::Failure => {
                        return Err(RemoteError::Channel {
                            host: host.to_string(),
                            reason: format!("the server refused to run: {}", short(&display)),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(reason) = sudo_failure {
        return Err(RemoteError::Sudo {
            host: host.to_string(),
            reason,
        });
    }
    if let Some(w) = watch {
        return Err(sudo_ended(host, &w, secret));
    }
    if let Some(f) = on_line {
        out_lines.finish(|l, _| f(Stream::Stdout, &redact_str(l, secret)));
        err_lines.finish(|l, _| f(Stream::Stderr, &redact_str(l, secret)));
    }
    out.stdout = stdout_kept.finish(secret);
    out.stderr = stderr_kept.finish(secret);
    match (status, &out.signal) {
        (Some(s), None) => out.status = s,
        (_, Some(_)) => out.status = 255,
        (None, None) => {
            return Err(RemoteError::Channel {
                host: host.to_string(),
                reason: format!(
                    "the channel closed before the command reported an exit status: {}",
                    short(&display)
                ),
            });
        }
    }
    Ok(out)
}

/// Closes the channel when the command is abandoned before the server closed it: the caller
/// stopped waiting (its future was dropped on Ctrl-C) or the server refused to run it. The
/// command then sees its stdin end, as when rpiprov exits, instead of waiting for data that
/// never comes: an upload's script removes its temporary file right away rather than when
/// the connection ends.
struct Hangup {
    wr: Option<russh::ChannelWriteHalf<Msg>>,
    armed: AtomicBool,
}

impl Drop for Hangup {
    fn drop(&mut self) {
        let Some(wr) = self.wr.take().filter(|_| *self.armed.get_mut()) else {
            return;
        };
        // Dropped outside a runtime only at process exit, when the connection goes anyway.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = wr.eof().await;
                let _ = wr.close().await;
            });
        }
    }
}

/// sudo ended before the command started: what it said, if anything.
pub(crate) fn sudo_ended(host: &str, w: &Watch, secret: Option<&Secret>) -> RemoteError {
    let said = redact_str(&w.said(), secret);
    RemoteError::Sudo {
        host: host.to_string(),
        reason: if said.is_empty() {
            format!("sudo on {host} exited before running the command")
        } else {
            format!("sudo on {host}: {said}")
        },
    }
}

fn signal_text(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}

/// A command line shortened for error messages: long lines are cut (they are built by
/// rpiprov and repeat in logs anyway).
pub(crate) fn short(cmd: &str) -> String {
    const MAX: usize = 160;
    let one_line = cmd.replace('\n', "; ");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let mut s: String = one_line.chars().take(MAX).collect();
        s.push_str("...");
        s
    }
}

/// The remote side's own time limit: a second more than ours, so that normally our
/// deadline fires first and reports [`RemoteError::CommandTimeout`].
fn remote_limit(timeout: Duration) -> u64 {
    timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0) + 1
}

/// Puts a time limit on the remote side too. Closing the channel does not stop a remote
/// command, and a signal sent over SSH reaches only the login shell (not its children, and
/// not root processes under sudo). GNU `timeout` runs the command in its own process group
/// and kills the whole group when time is up — also when the connection was lost. Hosts
/// without `timeout` run the command unlimited.
pub(crate) fn with_remote_limit(command: &str, timeout: Duration) -> String {
    let limit = remote_limit(timeout);
    let cmd = quote(command);
    // `$rpiprov_t` is unquoted on purpose: empty, or split into the `timeout` words.
    format!(
        "rpiprov_t=; command -v timeout >/dev/null 2>&1 && rpiprov_t='timeout -s KILL {limit}'; exec $rpiprov_t sh -c {cmd}"
    )
}

/// The command line sent for a request: time-limited, and wrapped for sudo when it must
/// run as root on a target that needs it.
pub(crate) fn command_line(
    command: &str,
    timeout: Duration,
    use_sudo: bool,
    password: Option<Secret>,
) -> (String, SudoWatch) {
    let limited = with_remote_limit(command, timeout);
    if !use_sudo {
        return (limited, None);
    }
    let wrapped = sudo::wrap(&limited, &sudo::token());
    let watch = Watch::new(&wrapped, password.is_some());
    (wrapped.command, Some((watch, password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_limit_is_a_second_longer_and_the_command_is_quoted() {
        assert_eq!(
            with_remote_limit("echo 'a'", Duration::from_millis(1500)),
            "rpiprov_t=; command -v timeout >/dev/null 2>&1 && rpiprov_t='timeout -s KILL 3'; \
             exec $rpiprov_t sh -c 'echo '\\''a'\\'''"
        );
        assert_eq!(remote_limit(Duration::from_secs(600)), 601);
    }

    /// The wrapper runs in a real shell, keeps stdin, status and output, and kills the
    /// command's children too when time is up.
    #[test]
    fn the_remote_limit_works_in_a_real_shell() {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(with_remote_limit(
                "cat; echo err >&2; exit 5",
                Duration::from_secs(5),
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"in").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(5));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"in"[..], &b"err\n"[..])
        );

        let started = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        let script = format!(
            "(sleep 1.5; touch {}) & sleep 30",
            quote(marker.to_str().unwrap())
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            // A zero local limit gives the shortest remote one: one second.
            .arg(with_remote_limit(&script, Duration::ZERO))
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!out.status.success());
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            !marker.exists(),
            "a child of the command outlived the limit"
        );
    }

    #[test]
    fn long_commands_are_shortened() {
        assert_eq!(short("a\nb"), "a; b");
        let long = "x".repeat(500);
        assert_eq!(short(&long).len(), 163);
    }
}
