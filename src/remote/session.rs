//! One SSH connection per host: connect (directly or through ProxyJump hosts), verify the
//! host key, authenticate, then run every command of the run over channels of that one
//! connection.
//!
//! OpenSSH allows 10 session channels per connection (`MaxSessions`); the 11th is refused.
//! A semaphore keeps rpiprov at [`MAX_CHANNELS`] so that callers can fire off as many
//! commands at once as they like. The connect timeout bounds each hop as a whole: TCP
//! connect, SSH handshake and authentication, except the time a prompt waits for a human
//! (see [`super::auth::AuthClock`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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
    ConnectOptions, ExecRequest, Output, Remote, RemoteError, Stream, Target, UploadOutcome,
    UploadRequest,
};
use crate::secret::Secret;

/// Concurrent channels per connection: OpenSSH's default `MaxSessions` is 10; two stay
/// free as headroom (e.g. for a server that counts a channel until its close is processed).
pub const MAX_CHANNELS: usize = 8;

/// Longest ProxyJump chain followed; a longer one is almost surely a loop in ssh config.
const MAX_JUMPS: usize = 8;

/// A connected, authenticated host. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    user: String,
    link: Link,
    permits: Semaphore,
    sudo: bool,
    sudo_password: Option<Secret>,
    command_timeout: Duration,
}

/// A connection and the jump connections that carry it (which must outlive it).
struct Link {
    handle: Handle<Verifier>,
    _via: Option<Box<Link>>,
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

fn client_config(opts: &ConnectOptions, keys: Vec<russh::keys::Algorithm>) -> Arc<client::Config> {
    let keepalive = if opts.keepalive_interval.is_zero() {
        Duration::from_secs(15)
    } else {
        opts.keepalive_interval
    };
    Arc::new(client::Config {
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        // Without keepalive answers for this long the peer is gone (a Pi lost power).
        inactivity_timeout: Some(Duration::from_secs(60).max(keepalive * 4)),
        nodelay: true,
        preferred: Preferred {
            key: Cow::Owned(keys),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// Connects to `target`, verifies its host key and authenticates.
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Session, RemoteError> {
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
    Ok(Session {
        inner: Arc::new(Inner {
            name: target.name.clone(),
            user: ep.user.clone(),
            link,
            permits: Semaphore::new(MAX_CHANNELS),
            sudo: target.sudo,
            sudo_password: target.sudo_password.clone(),
            command_timeout: opts.command_timeout,
        }),
    })
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
            known_hosts: opts.known_hosts.clone(),
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
            let h = tokio::time::timeout_at(
                deadline,
                client::connect(config, (ep.host.as_str(), ep.port), verifier),
            )
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

    /// Whether the connection is gone (the peer closed it or keepalives went unanswered).
    pub fn is_closed(&self) -> bool {
        self.inner.link.handle.is_closed()
    }

    /// Says goodbye to the server. Other clones of this session stop working.
    pub async fn close(&self) {
        let _ = self
            .inner
            .link
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Runs one request on its own channel, within the channel limit and the time limit.
    pub(crate) async fn run(
        &self,
        req: ExecRequest,
        gate: Option<Gate>,
        on_line: OnLine<'_>,
    ) -> Result<Output, RemoteError> {
        let host = &self.inner.name;
        let timeout = req.timeout.unwrap_or(self.inner.command_timeout);
        // The time limit starts once a channel slot is ours: queueing is not running.
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| RemoteError::Channel {
                host: host.clone(),
                reason: "the session is closed".into(),
            })?;
        let deadline = Instant::now() + timeout;
        let channel = self.open_channel(deadline, timeout, &req.command).await?;
        let use_sudo = req.privileged && self.inner.sudo && self.inner.user != "root";
        let (command, sudo) = exec::command_line(
            &req.command,
            timeout,
            use_sudo,
            self.inner.sudo_password.clone(),
        );
        let plan = Plan {
            command,
            display: req.command,
            sudo,
            stdin: req.stdin,
            gate,
            deadline,
            timeout,
            redact: self.inner.sudo_password.clone(),
        };
        exec::run(host, channel, plan, on_line).await
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
        deadline: Instant,
        timeout: Duration,
        command: &str,
    ) -> Result<russh::Channel<client::Msg>, RemoteError> {
        let host = &self.inner.name;
        let mut backoff = Duration::from_millis(5);
        loop {
            match tokio::time::timeout_at(deadline, self.inner.link.handle.channel_open_session())
                .await
            {
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
}
