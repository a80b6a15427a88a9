//! One SSH connection per host: connect (directly or through ProxyJump hosts), verify the
//! host key, authenticate, then run every command of the run over channels of that one
//! connection.
//!
//! OpenSSH allows 10 session channels per connection (`MaxSessions`); the 11th is refused.
//! A semaphore keeps rpiprov at [`MAX_CHANNELS`] so that callers can fire off as many
//! commands at once as they like. The connect timeout bounds each hop as a whole: TCP
//! connect, SSH handshake and authentication, except the time a prompt waits for a human
//! (see [`super::auth::AuthClock`]).
//!
//! A connection can die in the middle of a run (a pulled cable, a Pi losing power, a
//! laptop's Wi-Fi): keepalives notice it within seconds of the host's last word (TCP alone
//! would wait many minutes). The session then reconnects, with backoff, for at most
//! [`ConnectOptions::reconnect_timeout`] from the moment the loss was noticed, and swaps
//! the new connection in for every later command. A command the loss interrupted fails
//! with [`RemoteError::ConnectionLost`] (it may have run on the host or not), unless it is
//! marked [idempotent](ExecRequest::idempotent): then it runs again on the new connection.
//! A host that cannot be reached again within that time is given up for the rest of the
//! run: its commands fail at once with [`RemoteError::Unreachable`], which says since when.

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelOpenFailure, Disconnect, Preferred};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::auth::{self, AuthClock, Credentials};
use super::exec::{self, Gate, OnLine, Plan};
use super::known_hosts::{HostKeyCheck, lookup_name, preferred_algorithms};
use super::ssh_config::{Config, Endpoint};
use super::{
    ConnectOptions, ExecRequest, ExecStream, KEEPALIVE_MAX, Output, Remote, RemoteError, Stream,
    Target, UploadOutcome, UploadRequest,
};
use crate::clock::rfc3339;
use crate::secret::Secret;

/// Concurrent channels per connection: OpenSSH's default `MaxSessions` is 10; two stay
/// free as headroom (e.g. for a server that counts a channel until its close is processed).
pub const MAX_CHANNELS: usize = 8;

/// Longest ProxyJump chain followed; a longer one is almost surely a loop in ssh config.
const MAX_JUMPS: usize = 8;

/// Waits between reconnection attempts: doubling from the first to the last.
const RECONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An error's text without the `HOST: ` it starts with (the message around it names the
/// host already).
fn without_host(text: &str, host: &str) -> String {
    text.strip_prefix(host)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(text)
        .to_string()
}

/// A connected, authenticated host. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    user: String,
    /// The connection commands use now; replaced after a loss by a new one.
    link: Mutex<Arc<Link>>,
    /// How to connect again: the target and options of the first connection.
    target: Target,
    opts: ConnectOptions,
    /// Held while reconnecting, so that commands that find the connection dead at the
    /// same time make one reconnection and share its result.
    redialing: tokio::sync::Mutex<()>,
    /// When the current loss was noticed (monotonic, and wall clock for messages); `None`
    /// while connected.
    lost: Mutex<Option<(Instant, SystemTime)>>,
    /// Set when reconnecting gave up: every later command fails with it at once.
    gave_up: Mutex<Option<RemoteError>>,
    /// [`Session::close`] was called: no reconnection.
    closed: AtomicBool,
    permits: Arc<Semaphore>,
    sudo: bool,
    sudo_password: Option<Secret>,
    command_timeout: Duration,
}

/// A connection and the jump connections that carry it (which must outlive it).
struct Link {
    handle: Handle<Verifier>,
    _via: Option<Box<Link>>,
}

impl Link {
    /// The peer closed it, keepalives went unanswered, or a jump host's connection died.
    fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.name)
            .field("user", &self.inner.user)
            .finish_non_exhaustive()
    }
}

/// russh's callbacks: only host key verification is ours.
pub(crate) struct Verifier {
    check: HostKeyCheck,
}

#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    Refused(Box<RemoteError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.check
            .verify(&key.public_key())
            .map(|()| true)
            .map_err(|e| HandlerError::Refused(Box::new(e)))
    }
}

/// The known_hosts files for `ep`, as OpenSSH chooses them: the user's (the inventory's
/// file when it names one, else ssh config's `UserKnownHostsFile`, else `~/.ssh/known_hosts`
/// and `known_hosts2`), the first of which learns keys, then the machine's
/// (`GlobalKnownHostsFile`, else `/etc/ssh/ssh_known_hosts` and `ssh_known_hosts2`).
/// `UserKnownHostsFile none` leaves the inventory's file to learn in, read as empty would
/// be: it is still read (a missing file is empty).
fn known_hosts_files(ep: &Endpoint, opts: &ConnectOptions) -> (PathBuf, Vec<PathBuf>) {
    let mut user = match &ep.user_known_hosts {
        Some(files) if !opts.known_hosts_explicit && !files.is_empty() => files.clone(),
        _ if opts.known_hosts_explicit => vec![opts.known_hosts.clone()],
        _ => vec![
            opts.known_hosts.clone(),
            opts.known_hosts.with_file_name("known_hosts2"),
        ],
    };
    let first = user.remove(0);
    let global = ep
        .global_known_hosts
        .clone()
        .unwrap_or_else(|| opts.global_known_hosts.clone());
    user.extend(global);
    (first, user)
}

fn client_config(opts: &ConnectOptions, keys: Vec<russh::keys::Algorithm>) -> Arc<client::Config> {
    let keepalive = if opts.keepalive_interval.is_zero() {
        Duration::from_secs(15)
    } else {
        opts.keepalive_interval
    };
    // russh sends a keepalive after `keepalive` of silence and gives up after
    // `KEEPALIVE_MAX` more: the loss is noticed `keepalive * (KEEPALIVE_MAX + 1)` after the
    // host's last word.
    Arc::new(client::Config {
        keepalive_interval: Some(keepalive),
        keepalive_max: KEEPALIVE_MAX,
        // Keepalives decide first; this only bounds a connection stuck some other way.
        inactivity_timeout: Some(Duration::from_secs(60).max(keepalive * 4)),
        nodelay: true,
        preferred: Preferred {
            key: Cow::Owned(keys),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// How long after the host's last word a connection counts as lost (see
/// [`client_config`]).
fn lost_after(opts: &ConnectOptions) -> Duration {
    let keepalive = if opts.keepalive_interval.is_zero() {
        Duration::from_secs(15)
    } else {
        opts.keepalive_interval
    };
    keepalive * (KEEPALIVE_MAX as u32 + 1)
}

/// Keepalives cannot notice a link cut while data is being sent (an upload, an image):
/// russh waits for its writes to drain before it looks at its keepalive timer, and they
/// never drain, so the loss would wait for the inactivity timeout. The kernel can tell:
/// `TCP_USER_TIMEOUT` fails the socket when what it sent stays unacknowledged this long
/// (a slow link still acknowledges, a cut one does not).
fn unacked_timeout(socket: &tokio::net::TcpStream, after: Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let ms = libc::c_uint::try_from(after.as_millis()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: setsockopt on a socket we own, with a pointer to a local of the size given.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&raw const ms).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, after);
}

/// Connects to `target`, verifies its host key and authenticates.
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Session, RemoteError> {
    let (link, user) = dial(target, opts).await?;
    Ok(Session {
        inner: Arc::new(Inner {
            name: target.name.clone(),
            user,
            link: Mutex::new(Arc::new(link)),
            target: target.clone(),
            opts: opts.clone(),
            redialing: tokio::sync::Mutex::new(()),
            lost: Mutex::new(None),
            gave_up: Mutex::new(None),
            closed: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(MAX_CHANNELS)),
            sudo: target.sudo,
            sudo_password: target.sudo_password.clone(),
            command_timeout: opts.command_timeout,
        }),
    })
}

/// One connection to `target` (through its jump hosts), and the user logged in as.
async fn dial(target: &Target, opts: &ConnectOptions) -> Result<(Link, String), RemoteError> {
    let cfg = Config::load(opts.ssh_config.as_deref(), &target.name)?;
    let ep = cfg.resolve_target(target)?;
    let creds = Credentials {
        agent_socket: opts.agent_socket.as_deref(),
        identity_files: &ep.identity_files,
        key_passphrase: opts.key_passphrase.clone(),
        interactive: opts.interactive,
        password: target.password_auth.then(|| target.login_password.clone()),
    };
    let link = establish(&cfg, &ep, &target.name, opts, &creds, 0).await?;
    super::stats::connection();
    Ok((link, ep.user.clone()))
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens the SSH connection to `ep`: over TCP, or through its last jump host (itself
/// reached the same way), then verifies and authenticates.
fn establish<'a>(
    cfg: &'a Config,
    ep: &'a Endpoint,
    label: &'a str,
    opts: &'a ConnectOptions,
    creds: &'a Credentials<'a>,
    depth: usize,
) -> Boxed<'a, Result<Link, RemoteError>> {
    Box::pin(async move {
        let (known_hosts, also_read) = known_hosts_files(ep, opts);
        let check = HostKeyCheck {
            host: label.to_string(),
            address: ep.host.clone(),
            port: ep.port,
            // OpenSSH: HostKeyAlias replaces name and port.
            name: ep
                .host_key_alias
                .as_deref()
                .map(|a| lookup_name(a, 22))
                .unwrap_or_else(|| lookup_name(&ep.host, ep.port)),
            known_hosts,
            also_read,
            hash: ep.hash_known_hosts,
            policy: opts.policy,
        };
        let config = client_config(
            opts,
            preferred_algorithms(&check.entries(), &Preferred::DEFAULT.key),
        );
        let verifier = Verifier { check };
        let addr = format!("{}:{}", ep.host, ep.port);
        let secs = opts.connect_timeout.as_secs().max(1);
        let deadline = Instant::now() + opts.connect_timeout;
        let timed_out = || RemoteError::ConnectTimeout {
            host: label.to_string(),
            addr: addr.clone(),
            secs,
        };
        let failed = |e: HandlerError| match e {
            HandlerError::Refused(e) => *e,
            HandlerError::Ssh(e) => RemoteError::Connect {
                host: label.to_string(),
                addr: addr.clone(),
                reason: e.to_string(),
            },
        };

        let (mut handle, via, deadline) = if ep.jumps.is_empty() {
            let h = tokio::time::timeout_at(deadline, async {
                let socket = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
                    .await
                    .map_err(|e| HandlerError::Ssh(e.into()))?;
                let _ = socket.set_nodelay(config.nodelay);
                unacked_timeout(&socket, lost_after(opts));
                client::connect_stream(config, socket, verifier).await
            })
            .await
            .map_err(|_| timed_out())?
            .map_err(failed)?;
            (h, None, deadline)
        } else {
            if depth >= MAX_JUMPS {
                return Err(RemoteError::Config {
                    host: label.to_string(),
                    reason: format!("more than {MAX_JUMPS} ProxyJump hops: is there a loop?"),
                });
            }
            let (last, before) = ep.jumps.split_last().expect("jumps is not empty");
            let mut jump_ep = cfg.resolve_jump(last)?;
            // `ProxyJump a,b`: b is reached through a, whatever b's own block says.
            if !before.is_empty() {
                jump_ep.jumps = before.to_vec();
            }
            let jump_label = format!("{label} (jump host {last})");
            let jump_creds = Credentials {
                agent_socket: creds.agent_socket,
                identity_files: &jump_ep.identity_files,
                key_passphrase: creds.key_passphrase.clone(),
                interactive: creds.interactive,
                // A jump host's password can only come from a prompt.
                password: (creds.password.is_some() && creds.interactive).then_some(None),
            };
            let jump = establish(cfg, &jump_ep, &jump_label, opts, &jump_creds, depth + 1).await?;
            // This hop's time starts once the jump host is ready (it had its own).
            let deadline = Instant::now() + opts.connect_timeout;
            let h = tokio::time::timeout_at(deadline, async {
                let channel = jump
                    .handle
                    .channel_open_direct_tcpip(ep.host.as_str(), u32::from(ep.port), "127.0.0.1", 0)
                    .await
                    .map_err(|e| RemoteError::Connect {
                        host: label.to_string(),
                        addr: addr.clone(),
                        reason: format!("jump host {last} cannot reach it: {e}"),
                    })?;
                client::connect_stream(config, channel.into_stream(), verifier)
                    .await
                    .map_err(failed)
            })
            .await
            .map_err(|_| timed_out())??;
            (h, Some(Box::new(jump)), deadline)
        };
        // Authentication shares the hop's deadline: a server that stalls after the key
        // exchange fails here instead of hanging the run.
        let clock = AuthClock::new(deadline);
        tokio::select! {
            biased;
            r = auth::authenticate(&mut handle, label, &ep.user, creds, &clock) => r?,
            () = clock.expired() => {
                return Err(RemoteError::AuthTimeout {
                    host: label.to_string(),
                    addr,
                    user: ep.user.clone(),
                    secs,
                });
            }
        }
        Ok(Link { handle, _via: via })
    })
}

impl Session {
    /// The user logged in as (after ssh config).
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// Whether the connection in use is gone (the peer closed it or keepalives went
    /// unanswered). The next command reconnects.
    pub fn is_closed(&self) -> bool {
        self.current().is_closed()
    }

    /// Says goodbye to the server. Other clones of this session stop working: no command
    /// reconnects after this.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let _ = self
            .current()
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    fn current(&self) -> Arc<Link> {
        self.inner
            .link
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that the connection was found dead now, unless an earlier moment is known.
    fn notice_loss(&self) -> (Instant, SystemTime) {
        *self
            .inner
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| (Instant::now(), SystemTime::now()))
    }

    /// A live connection: the current one, or a new one when it died. Reconnects with
    /// backoff until [`ConnectOptions::reconnect_timeout`] after the loss was noticed;
    /// then the host is given up for the rest of the run ([`RemoteError::Unreachable`]).
    /// An error that waiting cannot mend (a changed host key, refused authentication)
    /// gives up at once, with that error.
    async fn link(&self) -> Result<Arc<Link>, RemoteError> {
        let host = &self.inner.name;
        let closed = || RemoteError::Channel {
            host: host.clone(),
            reason: "the session is closed".into(),
        };
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(closed());
        }
        let link = self.current();
        if !link.is_closed() {
            return Ok(link);
        }
        let _one_at_a_time = self.inner.redialing.lock().await;
        let link = self.current();
        if !link.is_closed() {
            return Ok(link);
        }
        if let Some(e) = self
            .inner
            .gave_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(e);
        }
        let (noticed, since) = self.notice_loss();
        let window_end = noticed + self.inner.opts.reconnect_timeout;
        let mut backoff = RECONNECT_BACKOFF_FIRST;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let error = match dial(&self.inner.target, &self.inner.opts).await {
                Ok((link, _)) => {
                    let link = Arc::new(link);
                    *self.inner.link.lock().unwrap_or_else(|e| e.into_inner()) = link.clone();
                    *self.inner.lost.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(link);
                }
                Err(e) => e,
            };
            let waiting_helps = matches!(
                error,
                RemoteError::Connect { .. }
                    | RemoteError::ConnectTimeout { .. }
                    | RemoteError::AuthTimeout { .. }
            );
            let next = Instant::now() + backoff;
            if !waiting_helps || next >= window_end {
                let given_up = if waiting_helps {
                    RemoteError::Unreachable {
                        host: host.clone(),
                        since: rfc3339(since),
                        attempts,
                        secs: noticed.elapsed().as_secs(),
                        reason: without_host(&error.to_string(), host),
                    }
                } else {
                    error
                };
                *self.inner.gave_up.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(given_up.clone());
                return Err(given_up);
            }
            tokio::time::sleep_until(next).await;
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    }

    /// Runs one request on its own channel, within the channel limit and the time limit;
    /// again on a new connection when the connection died under an idempotent request.
    pub(crate) async fn run(
        &self,
        req: ExecRequest,
        gate: Option<Gate>,
        mut on_line: OnLine<'_, '_>,
    ) -> Result<Output, RemoteError> {
        let host = &self.inner.name;
        let timeout = req.timeout.unwrap_or(self.inner.command_timeout);
        // Shared, not copied, by the attempts (image archives are large).
        let stdin = req.stdin.map(Bytes::from);
        loop {
            let link = self.link().await?;
            let attempt = self
                .run_on(
                    &link,
                    &req.command,
                    req.privileged,
                    stdin.clone(),
                    timeout,
                    gate.clone(),
                    req.interrupt.clone(),
                    on_line.as_deref_mut(),
                )
                .await;
            match attempt {
                Err(e) if link.is_closed() && !matches!(e, RemoteError::CommandTimeout { .. }) => {
                    self.notice_loss();
                    if req.idempotent && !self.inner.closed.load(Ordering::SeqCst) {
                        continue;
                    }
                    return Err(RemoteError::ConnectionLost {
                        host: host.clone(),
                        command: exec::short(&req.command),
                    });
                }
                other => return other,
            }
        }
    }

    /// One attempt of a request on `link`.
    #[allow(clippy::too_many_arguments)]
    async fn run_on(
        &self,
        link: &Link,
        command: &str,
        privileged: bool,
        stdin: Option<Bytes>,
        timeout: Duration,
        gate: Option<Gate>,
        interrupt: Option<tokio::sync::watch::Receiver<bool>>,
        on_line: OnLine<'_, '_>,
    ) -> Result<Output, RemoteError> {
        let host = &self.inner.name;
        // The time limit starts once a channel slot is ours: queueing is not running.
        let _permit = self.permit().await?;
        let deadline = Instant::now() + timeout;
        let (channel, wrapped, sudo) = self
            .start(link, command, privileged, deadline, timeout, timeout)
            .await?;
        let plan = Plan {
            command: wrapped,
            display: command.to_string(),
            sudo,
            stdin,
            gate,
            deadline,
            timeout,
            redact: self.inner.sudo_password.clone(),
            interrupt,
        };
        exec::run(host, channel, plan, on_line).await
    }

    /// Starts a long-lived command and hands out its two halves (see `super::stream`).
    /// `lifetime` bounds the command on the remote side (as [`ExecRequest::timeout`] does
    /// for others); the sudo handshake must be done within the request's timeout. Not run
    /// again after a lost connection: the stream ends, and its owner decides.
    pub(crate) async fn stream(
        &self,
        req: ExecRequest,
        lifetime: Duration,
    ) -> Result<ExecStream, RemoteError> {
        let link = self.link().await?;
        let permit = self.permit().await?;
        let timeout = req.timeout.unwrap_or(self.inner.command_timeout);
        let deadline = Instant::now() + timeout;
        let (channel, command, sudo) = self
            .start(
                &link,
                &req.command,
                req.privileged,
                deadline,
                timeout,
                lifetime,
            )
            .await?;
        super::stream::open(
            &self.inner.name,
            channel,
            command,
            sudo,
            deadline,
            self.inner.sudo_password.clone(),
            permit,
        )
        .await
    }

    /// A slot of the connection's channel limit, held until dropped.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RemoteError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RemoteError::Channel {
                host: self.inner.name.clone(),
                reason: "the session is closed".into(),
            })
    }

    /// Opens the channel of a command and the command line to send on it: limited to
    /// `limit` on the remote side, wrapped for sudo when it runs as root.
    async fn start(
        &self,
        link: &Link,
        command: &str,
        privileged: bool,
        deadline: Instant,
        timeout: Duration,
        limit: Duration,
    ) -> Result<(russh::Channel<client::Msg>, String, exec::SudoWatch), RemoteError> {
        let channel = self.open_channel(link, deadline, timeout, command).await?;
        super::stats::command(command);
        let use_sudo = privileged && self.inner.sudo && self.inner.user != "root";
        let (wrapped, sudo) =
            exec::command_line(command, limit, use_sudo, self.inner.sudo_password.clone());
        Ok((channel, wrapped, sudo))
    }

    /// Opens a session channel, retrying while the server refuses for lack of sessions.
    ///
    /// sshd frees a session slot only some time after both sides closed its channel, so
    /// right after a burst of short commands it may still count closed ones against
    /// `MaxSessions` and refuse a new channel although fewer than [`MAX_CHANNELS`] are
    /// open on our side. Such refusals are retried with a short backoff until the deadline;
    /// the same makes servers configured with a lower `MaxSessions` work, only slower.
    async fn open_channel(
        &self,
        link: &Link,
        deadline: Instant,
        timeout: Duration,
        command: &str,
    ) -> Result<russh::Channel<client::Msg>, RemoteError> {
        let host = &self.inner.name;
        let mut backoff = Duration::from_millis(5);
        loop {
            match tokio::time::timeout_at(deadline, link.handle.channel_open_session()).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(russh::Error::ChannelOpenFailure(
                    ChannelOpenFailure::ConnectFailed | ChannelOpenFailure::ResourceShortage,
                ))) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
                Ok(Err(e)) => {
                    return Err(RemoteError::Channel {
                        host: host.clone(),
                        reason: format!("cannot open a channel: {e}"),
                    });
                }
                Err(_) => {
                    return Err(RemoteError::CommandTimeout {
                        host: host.clone(),
                        secs: timeout.as_secs().max(1),
                        command: exec::short(command),
                    });
                }
            }
        }
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }
}

impl Remote for Session {
    fn host(&self) -> &str {
        &self.inner.name
    }

    async fn exec(&self, req: ExecRequest) -> Result<Output, RemoteError> {
        self.run(req, None, None).await
    }

    async fn exec_streaming(
        &self,
        req: ExecRequest,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<Output, RemoteError> {
        self.run(req, None, Some(on_line)).await
    }

    async fn upload(&self, req: UploadRequest) -> Result<UploadOutcome, RemoteError> {
        super::upload::upload(self, req).await
    }

    async fn answers(&self, within: Duration) -> bool {
        if self.inner.closed.load(Ordering::SeqCst) {
            return false;
        }
        let link = self.current();
        if link.is_closed() {
            return false;
        }
        // russh's ping also returns when the connection dies meanwhile: look again.
        tokio::time::timeout(within, link.handle.send_ping())
            .await
            .is_ok_and(|r| r.is_ok())
            && !link.is_closed()
    }

    async fn open_stream(
        &self,
        req: ExecRequest,
        lifetime: Duration,
    ) -> Result<ExecStream, RemoteError> {
        self.stream(req, lifetime).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostKeyPolicy;

    fn endpoint(user: Option<Vec<&str>>, global: Option<Vec<&str>>) -> Endpoint {
        let paths = |v: Vec<&str>| v.into_iter().map(PathBuf::from).collect();
        Endpoint {
            label: "pi1".into(),
            host: "10.0.0.5".into(),
            port: 22,
            user: "pi".into(),
            identity_files: Vec::new(),
            jumps: Vec::new(),
            host_key_alias: None,
            user_known_hosts: user.map(paths),
            global_known_hosts: global.map(paths),
            hash_known_hosts: false,
        }
    }

    /// Issue 18: which files are read and which learns, as OpenSSH chooses them.
    #[test]
    fn known_hosts_files_as_openssh_chooses_them() {
        let mut opts = ConnectOptions::new("/h/.ssh/known_hosts".into(), HostKeyPolicy::Strict);
        let p = PathBuf::from;
        let etc = || {
            vec![
                p("/etc/ssh/ssh_known_hosts"),
                p("/etc/ssh/ssh_known_hosts2"),
            ]
        };
        // The inventory named its file: ssh config's UserKnownHostsFile does not replace it.
        let ep = endpoint(Some(vec!["/c/kh"]), None);
        assert_eq!(
            known_hosts_files(&ep, &opts),
            (p("/h/.ssh/known_hosts"), etc())
        );
        opts.known_hosts_explicit = false;
        assert_eq!(known_hosts_files(&ep, &opts), (p("/c/kh"), etc()));
        let ep = endpoint(Some(vec!["/c/kh", "/c/kh2"]), Some(vec!["/rack/kh"]));
        assert_eq!(
            known_hosts_files(&ep, &opts),
            (p("/c/kh"), vec![p("/c/kh2"), p("/rack/kh")])
        );
        let mut defaults = vec![p("/h/.ssh/known_hosts2")];
        defaults.extend(etc());
        let ep = endpoint(None, None);
        assert_eq!(
            known_hosts_files(&ep, &opts),
            (p("/h/.ssh/known_hosts"), defaults)
        );
        let ep = endpoint(None, Some(Vec::new()));
        assert_eq!(
            known_hosts_files(&ep, &opts),
            (p("/h/.ssh/known_hosts"), vec![p("/h/.ssh/known_hosts2")])
        );
    }
}
