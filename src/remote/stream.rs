//! A long-lived, two-way remote command: bytes written while the command runs, output
//! read as it comes, over one SSH channel. What `docker system dial-stdio` needs to carry
//! the Docker Engine API (see `crate::exec::engine`), and the only kind of exec whose
//! stdin is not all known at the start.
//!
//! The channel is drained by a task of its own from the moment the command starts, into a
//! bounded queue ([`QUEUED_BYTES`]): a host cannot make this machine hold more of its
//! output than that, whatever it sends. The bound counts bytes, not packets, so that a
//! stream of many small messages (the daemon's events) has room for thousands of them. russh reopens a channel's
//! window as packets arrive, whether anyone reads them or not, so the bound is the back
//! pressure: once the queue is full the task waits for the owner to read, russh's own
//! queue of the channel fills, its connection stops reading the socket, and TCP stops the
//! host (the command blocks on its stdout). That holds up this host's connection only,
//! until its stream is read (or dropped: the task then drains and discards to the end).
//! What the command prints on stderr is kept as a bounded tail for the error message; its
//! exit status too. The sudo handshake (see `super::sudo`) is done
//! before the stream is handed out: the caller's first byte goes to the command, never to
//! sudo.
//!
//! Dropping the writer sends EOF; the command then ends (dial-stdio does) and the channel
//! closes, which ends the drain task and frees the channel slot it holds.

use std::sync::{Arc, Mutex};

use russh::ChannelMsg;
use russh::client::Msg;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::RemoteError;
use super::output::Tail;
use super::sudo::{Event, Watch};
use crate::secret::Secret;

/// Most of a stream's stderr kept for its error message.
const STDERR_KEPT: usize = 4096;

/// Bytes of stdout queued for the stream's owner before the host is held back.
pub const QUEUED_BYTES: usize = 8 << 20;

/// The two halves of a running command.
pub struct ExecStream {
    pub writer: StreamWriter,
    pub reader: StreamReader,
}

/// Writes to the command's stdin. Dropping it sends EOF.
#[derive(Debug)]
pub struct StreamWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl StreamWriter {
    /// Queues bytes for the command's stdin; false when the command is gone.
    pub fn write(&self, bytes: Vec<u8>) -> bool {
        self.tx.send(bytes).is_ok()
    }
}

/// How the command ended, once it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// `None` while it runs, or when the channel closed without an exit status.
    pub status: Option<u32>,
    /// The end of what it printed on stderr (redacted).
    pub stderr: String,
    pub closed: bool,
}

/// Reads the command's stdout as it arrives.
pub struct StreamReader {
    rx: Queue,
    end: Arc<Mutex<StreamEnd>>,
}

/// Where the stdout waits: bounded for a host ([`open`]); as the caller feeds it for
/// [`ExecStream::pair`].
enum Queue {
    /// The bytes queued hold permits of the semaphore, given back as they are read.
    Bounded(mpsc::UnboundedReceiver<Vec<u8>>, Arc<Semaphore>),
    Fed(mpsc::UnboundedReceiver<Vec<u8>>),
}

impl Drop for StreamReader {
    /// No one will read: the drain task, which may be waiting for room, goes on
    /// discarding to the channel's end.
    fn drop(&mut self) {
        if let Queue::Bounded(_, room) = &self.rx {
            room.close();
        }
    }
}

/// The permits `bytes` hold of a [`QUEUED_BYTES`] semaphore.
fn permits(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len().clamp(1, QUEUED_BYTES)).unwrap_or(u32::MAX)
}

impl StreamReader {
    /// The next chunk of stdout; `None` once the command's stdout is closed.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        match &mut self.rx {
            Queue::Bounded(rx, room) => {
                let chunk = rx.recv().await?;
                room.add_permits(permits(&chunk) as usize);
                Some(chunk)
            }
            Queue::Fed(rx) => rx.recv().await,
        }
    }

    /// How the command ended (so far): for error messages after `read` returned `None`.
    pub fn end(&self) -> StreamEnd {
        self.end.lock().unwrap().clone()
    }
}

/// The far end of [`ExecStream::pair`]: what was written, stdout to feed, the end to set.
pub type FarEnd = (
    mpsc::UnboundedReceiver<Vec<u8>>,
    mpsc::UnboundedSender<Vec<u8>>,
    Arc<Mutex<StreamEnd>>,
);

impl ExecStream {
    /// A stream whose far end is in the caller's hands: the returned receiver gets what
    /// is written, the sender feeds stdout, and the `end` is set by the caller. For
    /// transports other than SSH (the tests' fakes).
    pub fn pair() -> (ExecStream, FarEnd) {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let end = Arc::new(Mutex::new(StreamEnd::default()));
        (
            ExecStream {
                writer: StreamWriter { tx: in_tx },
                reader: StreamReader {
                    rx: Queue::Fed(out_rx),
                    end: end.clone(),
                },
            },
            (in_rx, out_tx, end),
        )
    }
}

/// Starts `command` on `channel` (already wrapped for sudo when `sudo` is set), does the
/// sudo handshake before `deadline`, then hands out the stream. `permit` (a slot of the
/// connection's channel limit) is held until the channel closes.
pub(crate) async fn open(
    host: &str,
    channel: russh::Channel<Msg>,
    command: String,
    sudo: Option<(Watch, Option<Secret>)>,
    deadline: Instant,
    redact: Option<Secret>,
    permit: OwnedSemaphorePermit,
) -> Result<ExecStream, RemoteError> {
    let channel_err = |reason: String| RemoteError::Channel {
        host: host.to_string(),
        reason,
    };
    channel
        .exec(true, command.into_bytes())
        .await
        .map_err(|e| channel_err(format!("cannot start the command: {e}")))?;
    let (mut rd, wr) = channel.split();
    let mut early_stdout: Vec<Vec<u8>> = Vec::new();
    let mut early_stderr: Vec<u8> = Vec::new();
    let mut early_status: Option<u32> = None;
    if let Some((mut watch, password)) = sudo {
        let mut sent = false;
        loop {
            let msg = tokio::time::timeout_at(deadline, rd.wait())
                .await
                .map_err(|_| RemoteError::Sudo {
                    host: host.to_string(),
                    reason: format!("sudo on {host} did not start the command in time"),
                })?;
            let Some(msg) = msg else {
                return Err(super::exec::sudo_ended(host, &watch, redact.as_ref()));
            };
            match msg {
                ChannelMsg::Data { data } => early_stdout.push(data.to_vec()),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    let mut ready = false;
                    for ev in watch.feed(&data) {
                        match ev {
                            Event::SendPassword if !sent => {
                                sent = true;
                                if let Some(p) = &password {
                                    let line = format!("{}\n", p.expose()).into_bytes();
                                    wr.data_bytes(line).await.map_err(|e| {
                                        channel_err(format!("cannot answer sudo: {e}"))
                                    })?;
                                }
                            }
                            Event::SendPassword | Event::WrongPassword => {
                                return Err(RemoteError::Sudo {
                                    host: host.to_string(),
                                    reason: format!(
                                        "sudo on {host} rejected the password: check the become password for this host"
                                    ),
                                });
                            }
                            Event::NeedsPassword => {
                                return Err(RemoteError::Sudo {
                                    host: host.to_string(),
                                    reason: format!(
                                        "sudo on {host} asks for a password: set the become password for this host (become_password, prompt or environment variable) or allow NOPASSWD sudo"
                                    ),
                                });
                            }
                            Event::Ready(rest) => {
                                early_stderr = rest;
                                ready = true;
                            }
                        }
                    }
                    if ready {
                        break;
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => early_status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(channel_err("the server refused to run the command".into()));
                }
                _ => {}
            }
        }
    }

    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let room = Arc::new(Semaphore::new(QUEUED_BYTES));
    let end = Arc::new(Mutex::new(StreamEnd {
        status: early_status,
        ..Default::default()
    }));
    for chunk in early_stdout {
        // A few lines at most, from the sudo handshake: they take their room at once.
        if let Ok(p) = room.try_acquire_many(permits(&chunk)) {
            p.forget();
        }
        let _ = out_tx.send(chunk);
    }
    // Writer: stdin in order, then EOF when the caller drops its half.
    tokio::spawn(async move {
        while let Some(bytes) = in_rx.recv().await {
            if wr.data_bytes(bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.eof().await;
        // Keeping `wr` until here keeps the channel open for the reader.
    });
    // Reader: drains the channel to its end, whoever listens.
    let end_w = end.clone();
    let room_w = room.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut stderr = Tail::new(STDERR_KEPT);
        stderr.push(&early_stderr);
        while let Some(msg) = rd.wait().await {
            match msg {
                // Waits while the queue is full (the back pressure); a reader gone
                // (the room closed) makes it discard, still draining the channel.
                ChannelMsg::Data { data } => {
                    if out_tx.is_closed() {
                        continue;
                    }
                    if let Ok(p) = room_w.acquire_many(permits(&data)).await {
                        p.forget();
                    }
                    let _ = out_tx.send(data.to_vec());
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.push(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    end_w.lock().unwrap().status = Some(exit_status);
                }
                ChannelMsg::ExitSignal { .. } => {
                    end_w.lock().unwrap().status.get_or_insert(255);
                }
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&stderr.finish(redact.as_ref())).into_owned();
        let mut e = end_w.lock().unwrap();
        e.stderr = text;
        e.closed = true;
        // `out_tx` drops here: the reader's `read` returns `None` after the last chunk.
    });
    Ok(ExecStream {
        writer: StreamWriter { tx: in_tx },
        reader: StreamReader {
            rx: Queue::Bounded(out_rx, room),
            end,
        },
    })
}
