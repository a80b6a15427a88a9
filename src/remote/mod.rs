//! The SSH transport, on russh: one connection per host, reused for every step of a
//! command, with channels multiplexed within OpenSSH's default `MaxSessions` of 10.
//!
//! The [`Remote`] trait is what the rest of rpiprov uses; [`Session`] implements it over
//! SSH, and unit tests implement it with a fake.
//!
//! Files, one concept each: `session` (connect, jump hosts, channel limit), `known_hosts`
//! (host key verification), `auth` (agent, keys, passwords), `ssh_config` (what
//! `~/.ssh/config` contributes), `exec` (running one command on a channel), `output` (what
//! is kept of its output: a bounded tail, lines, redaction), `stream` (a long-lived command
//! written to and read from while it runs: `docker system dial-stdio`), `sudo` (the
//! privileged wrapper and its password handshake), `upload` (atomic file writes), `stats`
//! (connections, round trips and `docker` calls of the whole command).

mod auth;
mod exec;
mod known_hosts;
mod output;
mod session;
mod ssh_config;
pub mod stats;
mod stream;
mod sudo;
mod upload;

pub use session::{MAX_CHANNELS, Session, connect};
pub use stream::{ExecStream, FarEnd, StreamEnd, StreamReader, StreamWriter};

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Diagnostic, Host, HostKeyPolicy, Inventory, Severity, SshSettings};
use crate::secret::Secret;

/// What `rpiprov check` can tell of the SSH files without connecting: known_hosts that is
/// no known_hosts file ([`known_hosts::known_hosts_problem`]), and an ssh config that
/// cannot be read or whose `HostName` or `HostKeyAlias` for a host cannot name a host in
/// known_hosts (what connecting would refuse). Errors, on the inventory's keys.
pub fn check_ssh_files(inventory: &Inventory) -> Vec<Diagnostic> {
    let error = |key_path: String, message: String| Diagnostic {
        severity: Severity::Error,
        file: inventory.path.clone(),
        line: None,
        column: None,
        key_path,
        message,
    };
    let ssh = &inventory.ssh;
    let mut out = Vec::new();
    if let Some(why) = known_hosts::known_hosts_problem(&ssh.known_hosts) {
        out.push(error(
            "ssh.known_hosts".into(),
            format!("{}: {why}", ssh.known_hosts.display()),
        ));
    }
    if ssh.config_file.is_none() {
        return out;
    }
    match ssh_config::Config::load(ssh.config_file.as_deref(), "ssh config") {
        Err(RemoteError::Config { reason, .. }) => out.push(error("ssh.config".into(), reason)),
        Err(e) => out.push(error("ssh.config".into(), e.to_string())),
        Ok(config) => {
            // The files ssh config names instead of the inventory's, each judged once.
            let mut seen = std::collections::BTreeSet::new();
            for (i, h) in inventory.hosts.iter().enumerate() {
                match config.resolve_target(&Target::from_host(h)) {
                    Err(e) => out.push(error(format!("host[{i}]"), e.to_string())),
                    Ok(ep) if !ssh.known_hosts_explicit => {
                        for file in ep.user_known_hosts.into_iter().flatten() {
                            if seen.insert(file.clone())
                                && let Some(why) = known_hosts::known_hosts_problem(&file)
                            {
                                out.push(error(
                                    "ssh.config".into(),
                                    format!("UserKnownHostsFile {}: {why}", file.display()),
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    out
}

/// Keepalive after this much silence: with [`KEEPALIVE_MAX`], a lost connection is noticed
/// about 12 s after the host's last word, where TCP alone would wait for many minutes.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);

/// Unanswered keepalives in a row after which the connection counts as lost.
pub const KEEPALIVE_MAX: usize = 3;

/// How long reconnections are tried once a connection was lost (`ssh.reconnect_timeout`).
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// OpenSSH's default `GlobalKnownHostsFile`.
pub const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// How to connect: settings shared by all hosts of a run.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub known_hosts: PathBuf,
    /// `known_hosts` was chosen (in the inventory): ssh config's `UserKnownHostsFile` does
    /// not replace it. When it was not, `known_hosts2` beside it is read too, as OpenSSH's
    /// default is.
    pub known_hosts_explicit: bool,
    /// The machine's known_hosts files (OpenSSH's `GlobalKnownHostsFile`), read for keys and
    /// `@revoked` lines, never written; ssh config's `GlobalKnownHostsFile` replaces them.
    pub global_known_hosts: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// Default limit for one remote command; a request may set its own.
    pub command_timeout: Duration,
    /// Silence after which a keepalive is sent; [`KEEPALIVE_MAX`] unanswered ones in a row
    /// mean the connection is lost (a pulled cable, a Pi without power).
    pub keepalive_interval: Duration,
    /// How long a host whose connection was lost may stay unreachable: reconnections are
    /// tried with backoff until then, after which its commands fail at once
    /// ([`RemoteError::Unreachable`]).
    pub reconnect_timeout: Duration,
    /// `~/.ssh/config` or another file; `None` disables it.
    pub ssh_config: Option<PathBuf>,
    /// A terminal is attached: passphrases and passwords may be prompted for.
    pub interactive: bool,
    /// The ssh-agent socket to authenticate with; `None` skips the agent. A field rather than
    /// a read of `SSH_AUTH_SOCK` at connect time, so that callers (and parallel tests) can
    /// choose per connection; [`ConnectOptions::new`] fills it from the environment.
    pub agent_socket: Option<PathBuf>,
    /// Passphrase for encrypted identity files when no terminal is attached. When `None`,
    /// the `RPIPROV_KEY_PASSPHRASE` environment variable is read at connect time.
    pub key_passphrase: Option<Secret>,
}

impl ConnectOptions {
    /// Options from the inventory's SSH settings; the agent from `SSH_AUTH_SOCK`.
    pub fn from_settings(ssh: &SshSettings, interactive: bool) -> Self {
        ConnectOptions {
            connect_timeout: ssh.connect_timeout,
            command_timeout: ssh.command_timeout,
            reconnect_timeout: ssh.reconnect_timeout,
            ssh_config: ssh.config_file.clone(),
            interactive,
            known_hosts_explicit: ssh.known_hosts_explicit,
            ..ConnectOptions::new(ssh.known_hosts.clone(), ssh.host_key_policy)
        }
    }

    /// Options with rpiprov's defaults: 10 s connect timeout, 10 min per command, keepalive
    /// after 3 s of silence, reconnections for 30 s, no ssh config, not interactive, the
    /// agent from `SSH_AUTH_SOCK`.
    pub fn new(known_hosts: PathBuf, policy: HostKeyPolicy) -> Self {
        ConnectOptions {
            known_hosts,
            known_hosts_explicit: true,
            global_known_hosts: GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from).collect(),
            policy,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            ssh_config: None,
            interactive: false,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            key_passphrase: None,
        }
    }
}

/// One host to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The inventory's name for the host: used in messages and as the ssh config alias.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// Try password / keyboard-interactive authentication (prompting) after keys.
    pub password_auth: bool,
    /// Privileged commands go through sudo.
    pub sudo: bool,
    /// The sudo password, when sudo asks for one.
    pub sudo_password: Option<Secret>,
    /// The login password for password / keyboard-interactive authentication when
    /// `password_auth` is set; without it, the password is prompted for (interactive only).
    pub login_password: Option<Secret>,
}

impl Target {
    /// The target for an inventory host. The sudo password is left for the caller to
    /// resolve from `host.become_.password` (prompt or environment).
    pub fn from_host(host: &Host) -> Self {
        Target {
            name: host.name.clone(),
            address: host.address.clone(),
            port: host.port,
            user: host.user.clone(),
            identity_files: host.identity_files.clone(),
            password_auth: host.password_auth,
            sudo: host.become_.sudo,
            sudo_password: None,
            login_password: None,
        }
    }

    /// A target reached at `address` on port 22 as `user`, keys from the defaults, no sudo.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Target {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_files: Vec::new(),
            password_auth: false,
            sudo: false,
            sudo_password: None,
            login_password: None,
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One remote command.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command line, already quoted (see [`crate::shell`]).
    pub command: String,
    /// Run as root (through sudo when the target needs it).
    pub privileged: bool,
    /// Bytes written to the command's stdin, then EOF.
    pub stdin: Option<Vec<u8>>,
    /// Overrides [`ConnectOptions::command_timeout`].
    pub timeout: Option<Duration>,
    /// Running it twice does no harm (a read, or a command that converges on a state):
    /// when the connection is lost while it runs, the session reconnects and runs it
    /// again instead of failing with [`RemoteError::ConnectionLost`].
    pub idempotent: bool,
    /// Stops the command when this becomes true (Ctrl-C on `logs --follow`): as at a
    /// timeout, the remote command and its children are stopped (TERM to its process
    /// group), then the channel is closed; the request ends with
    /// [`RemoteError::Interrupted`].
    pub interrupt: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            ..Default::default()
        }
    }
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// See [`ExecRequest::idempotent`].
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
    pub fn interrupt(mut self, rx: tokio::sync::watch::Receiver<bool>) -> Self {
        self.interrupt = Some(rx);
        self
    }
}

/// What a finished remote command left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit status; 255 plus a signal name in `signal` when killed by a signal.
    pub status: u32,
    pub signal: Option<String>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The file was written (atomically: temporary file in the same folder, then rename).
    Written,
    /// The remote file already had the same sha256; nothing was sent.
    Unchanged,
}

/// A file to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub contents: Vec<u8>,
    /// Absolute remote path. Its folder is created if missing.
    pub dest: String,
    /// File mode, e.g. 0o644.
    pub mode: u32,
    /// Write as root (through sudo when the target needs it).
    pub privileged: bool,
}

/// Transport errors. Each says which host and what happened; none carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("{host}: cannot connect to {addr}: {reason}")]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error("{host}: no answer from {addr} within {secs}s")]
    ConnectTimeout {
        host: String,
        addr: String,
        secs: u64,
    },
    #[error(
        "{host}: host key of {addr} is not known ({fingerprint}).\n  To trust it, check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run once with --host-key-policy accept-new, or add it with: ssh-keyscan -p {port} {address} >> {known_hosts}"
    )]
    UnknownHostKey {
        host: String,
        addr: String,
        address: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "{host}: HOST KEY CHANGED for {addr} ({fingerprint}); known_hosts {known_hosts} line {line} holds another key. This may be an attack; if the host was reinstalled, remove that line (ssh-keygen -R) and check the new key."
    )]
    HostKeyChanged {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error(
        "{host}: {addr} offered a {offered} host key, but known_hosts {known_hosts} records only {recorded} for it; refusing (a changed key type may be an attack)"
    )]
    HostKeyAlgorithm {
        host: String,
        addr: String,
        offered: String,
        recorded: String,
        known_hosts: String,
    },
    #[error(
        "{host}: host key of {addr} is not known ({fingerprint}), and known_hosts {at} says its keys are signed by a certificate authority (@cert-authority): rpiprov does not check host certificates, so it neither trusts nor learns a plain key for this host.\n  Check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add its own key with: {keyscan}"
    )]
    HostKeyCertAuthority {
        host: String,
        addr: String,
        fingerprint: String,
        /// `FILE line N`: the @cert-authority line.
        at: String,
        /// The `ssh-keyscan` command that records the host's own key.
        keyscan: String,
    },
    #[error(
        "{host}: host key of {addr} ({fingerprint}) is marked @revoked in known_hosts {known_hosts} line {line}; refusing"
    )]
    HostKeyRevoked {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error(
        "{host}: {addr} did not complete authentication as {user} within {secs}s: its SSH server stalls after the key exchange (a frozen or overloaded host, or a slow PAM, DNS or AuthorizedKeysCommand lookup on it); check the host, or raise ssh.connect_timeout in the inventory"
    )]
    AuthTimeout {
        host: String,
        addr: String,
        user: String,
        secs: u64,
    },
    #[error("{host}: authentication as {user} failed (tried: {tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    #[error("{host}: sudo failed: {reason}")]
    Sudo { host: String, reason: String },
    #[error("{host}: command timed out after {secs}s: {command}")]
    CommandTimeout {
        host: String,
        secs: u64,
        command: String,
    },
    #[error("{host}: {reason}")]
    Channel { host: String, reason: String },
    #[error("{host}: interrupted: {command}")]
    Interrupted { host: String, command: String },
    #[error("{host}: ssh config: {reason}")]
    Config { host: String, reason: String },
    #[error("{host}: upload to {dest} failed: {reason}")]
    Upload {
        host: String,
        dest: String,
        reason: String,
    },
    /// The connection died while this command ran: it may or may not have run to its end
    /// on the host. The next command reconnects.
    #[error(
        "{host}: connection lost while running {command} (it may or may not have finished there); rpiprov reconnects for the next step, and a rerun repairs what is left"
    )]
    ConnectionLost { host: String, command: String },
    /// The connection was lost and could not be made again within
    /// [`ConnectOptions::reconnect_timeout`]; every later command on the host fails with
    /// this at once.
    #[error(
        "{host} unreachable since {since} ({attempts} reconnection attempt(s) in {secs}s; last: {reason}); check its power and network, then run again"
    )]
    Unreachable {
        host: String,
        /// When the loss was noticed, RFC 3339 in UTC.
        since: String,
        attempts: u32,
        secs: u64,
        reason: String,
    },
}

impl RemoteError {
    /// The host is gone for the rest of the run: waiting for it is pointless.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }

    /// A failure of the connection rather than of the command or the host's answer: the
    /// host may well come back (after a reconnection).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::ConnectionLost { .. }
                | RemoteError::Connect { .. }
                | RemoteError::ConnectTimeout { .. }
        )
    }
}

/// What the rest of rpiprov needs from a connected host.
pub trait Remote: Send + Sync {
    /// The inventory name of the host.
    fn host(&self) -> &str;

    /// Runs a command to the end and returns its output.
    fn exec(&self, req: ExecRequest) -> impl Future<Output = Result<Output, RemoteError>> + Send;

    /// Runs a command, calling `on_line` for each output line as it arrives.
    fn exec_streaming(
        &self,
        req: ExecRequest,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> impl Future<Output = Result<Output, RemoteError>> + Send;

    /// Writes a file atomically, skipping it when the remote sha256 already matches.
    fn upload(
        &self,
        req: UploadRequest,
    ) -> impl Future<Output = Result<UploadOutcome, RemoteError>> + Send;

    /// Whether the host answers within `within`, on the connection in use: a lost one is
    /// not made again. The SSH transport asks with a ping of the protocol (no process on
    /// the host); the default runs `true`, where an error of the command still counts as
    /// an answer and a failure of the connection does not.
    fn answers(&self, within: Duration) -> impl Future<Output = bool> + Send {
        async move {
            let req = ExecRequest::new("true".to_string()).timeout(within);
            tokio::time::timeout(within, self.exec(req))
                .await
                .is_ok_and(|r| r.is_ok() || r.is_err_and(|e| !e.is_connection()))
        }
    }

    /// Starts a long-lived command whose stdin is written while it runs (`req.stdin` is
    /// ignored); `lifetime` bounds it on the remote side. Transports without streams (the
    /// default) say so, and callers fall back to one command per request.
    fn open_stream(
        &self,
        req: ExecRequest,
        lifetime: Duration,
    ) -> impl Future<Output = Result<ExecStream, RemoteError>> + Send {
        let _ = (req, lifetime);
        let host = self.host().to_string();
        async move {
            Err(RemoteError::Channel {
                host,
                reason: "this transport cannot stream".into(),
            })
        }
    }
}
