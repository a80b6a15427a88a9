//! Authentication in OpenSSH's order: the agent's keys, then identity files, then (when the
//! host allows it) password and keyboard-interactive.
//!
//! A failure lists what was tried (key fingerprints, file names, methods), never a secret.
//! Identity files that the agent already offered are not tried again, so a passphrase is
//! not asked for a key the agent holds.
//!
//! Authentication runs against an [`AuthClock`]: a server that stalls after the key
//! exchange (a frozen or overloaded host) must not hang the run, but a human typing a
//! passphrase must not be cut off either, so the clock stands still during prompts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use russh::client::{Handle, Handler, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};

use super::RemoteError;
use super::known_hosts::fingerprint;
use crate::config::local::{self, Limit};
use crate::secret::Secret;

/// Environment variable holding the passphrase of encrypted keys (non-interactive runs).
pub const PASSPHRASE_ENV: &str = "RPIPROV_KEY_PASSPHRASE";

/// The identity files ssh tries when none are configured, in its order.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// What one connection may authenticate with.
pub(crate) struct Credentials<'a> {
    pub agent_socket: Option<&'a Path>,
    /// Explicit identity files; empty means the defaults that exist.
    pub identity_files: &'a [PathBuf],
    pub key_passphrase: Option<Secret>,
    pub interactive: bool,
    /// `Some` when password authentication is allowed: the password, if known.
    pub password: Option<Option<Secret>>,
}

/// A deadline that stands still while it is paused (see [`AuthClock::pause`]).
pub(crate) struct AuthClock {
    state: Mutex<ClockState>,
    changed: Notify,
}

struct ClockState {
    deadline: Instant,
    /// Since when the clock stands still, while a prompt waits for a human.
    paused_at: Option<Instant>,
}

impl AuthClock {
    pub fn new(deadline: Instant) -> Self {
        AuthClock {
            state: Mutex::new(ClockState {
                deadline,
                paused_at: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the deadline has passed, not counting the time spent paused.
    pub async fn expired(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so that a change in between wakes us.
            notified.as_mut().enable();
            let deadline = {
                let s = self.state();
                s.paused_at.is_none().then_some(s.deadline)
            };
            match deadline {
                None => notified.await,
                Some(d) if Instant::now() >= d => return,
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(d) => {}
                        () = &mut notified => {}
                    }
                }
            }
        }
    }

    /// Stops the clock until the returned guard is dropped; the deadline then moves by the
    /// time it stood still.
    pub fn pause(&self) -> Paused<'_> {
        self.state().paused_at.get_or_insert_with(Instant::now);
        self.changed.notify_waiters();
        Paused(self)
    }
}

pub(crate) struct Paused<'a>(&'a AuthClock);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        if let Some(at) = s.paused_at.take() {
            s.deadline += at.elapsed();
        }
        drop(s);
        self.0.changed.notify_waiters();
    }
}

/// What was tried, for the error message.
#[derive(Default)]
struct Tried(Vec<String>);

impl Tried {
    fn push(&mut self, s: impl Into<String>) {
        self.0.push(s.into());
    }
}

/// The server's last word on which methods may continue.
fn allows(methods: &Option<MethodSet>, kind: MethodKind) -> bool {
    methods.as_ref().is_none_or(|m| m.contains(&kind))
}

/// Authenticates; the caller bounds it with `clock` (see [`AuthClock::expired`]), which
/// this pauses while a prompt waits for a human.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    host: &str,
    user: &str,
    creds: &Credentials<'_>,
    clock: &AuthClock,
) -> Result<(), RemoteError> {
    let mut tried = Tried::default();
    let mut remaining: Option<MethodSet> = None;
    let mut offered: Vec<KeyData> = Vec::new();
    let fail = |tried: Tried| RemoteError::Auth {
        host: host.to_string(),
        user: user.to_string(),
        tried: if tried.0.is_empty() {
            "nothing: no agent, no identity file, no password".to_string()
        } else {
            tried.0.join(", ")
        },
    };

    // 1. The agent.
    if let Some(sock) = creds.agent_socket {
        match AgentClient::connect_uds(sock).await {
            Err(e) => tried.push(format!("ssh-agent (unreachable: {e})")),
            Ok(mut agent) => match agent.request_identities().await {
                Err(e) => tried.push(format!("ssh-agent (error: {e})")),
                Ok(ids) if ids.is_empty() => tried.push("ssh-agent (no keys)"),
                Ok(ids) => {
                    for id in ids {
                        if !allows(&remaining, MethodKind::PublicKey) {
                            break;
                        }
                        let key = id.public_key().into_owned();
                        let hash = rsa_hash(handle, &key).await;
                        let fp = fingerprint(&key);
                        offered.push(key.key_data().clone());
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(()),
                            Ok(russh::client::AuthResult::Failure {
                                remaining_methods, ..
                            }) => {
                                tried.push(format!("agent key {fp}"));
                                remaining = Some(remaining_methods);
                            }
                            Ok(_) => tried.push(format!("agent key {fp}")),
                            Err(e) => tried.push(format!("agent key {fp} (agent error: {e})")),
                        }
                        if handle.is_closed() {
                            return Err(fail(tried));
                        }
                    }
                }
            },
        }
    }

    // 2. Identity files.
    let explicit = !creds.identity_files.is_empty();
    let files: Vec<PathBuf> = if explicit {
        creds.identity_files.to_vec()
    } else {
        default_identity_files()
    };
    for path in files {
        if !allows(&remaining, MethodKind::PublicKey) {
            break;
        }
        let shown = path.display().to_string();
        // A regular file of a key's size, read once (never a device or a FIFO).
        let read = local::read(&path, Limit::Key).map_err(|e| e.to_string());
        let text = match read.and_then(|b| String::from_utf8(b).map_err(|_| "not text".into())) {
            Ok(t) => t,
            Err(why) => {
                if explicit {
                    tried.push(format!("{shown} ({why})"));
                }
                continue;
            }
        };
        // The public half of an OpenSSH key file is readable without the passphrase.
        if let Ok(k) = PrivateKey::from_openssh(&text)
            && offered.contains(k.public_key().key_data())
        {
            continue;
        }
        let key = match load_key(&path, &text, creds, clock).await {
            Ok(k) => k,
            Err(why) => {
                tried.push(format!("{shown} ({why})"));
                continue;
            }
        };
        offered.push(key.public_key().key_data().clone());
        let hash = rsa_hash(handle, key.public_key()).await;
        let attempt = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        match handle.authenticate_publickey(user, attempt).await {
            Ok(r) if r.success() => return Ok(()),
            Ok(russh::client::AuthResult::Failure {
                remaining_methods, ..
            }) => {
                tried.push(shown);
                remaining = Some(remaining_methods);
            }
            Ok(_) => tried.push(shown),
            Err(e) => {
                tried.push(format!("{shown} ({e})"));
                return Err(fail(tried));
            }
        }
    }

    // 3. Password, then keyboard-interactive.
    if let Some(given) = &creds.password {
        let password = match given {
            Some(p) => Some(p.clone()),
            None if creds.interactive => Some(
                prompt(format!("Password for {user}@{host}: "), clock)
                    .await
                    .map_err(|e| RemoteError::Auth {
                        host: host.to_string(),
                        user: user.to_string(),
                        tried: format!("password (cannot prompt: {e})"),
                    })?,
            ),
            None => {
                tried.push("password (not asked: no terminal and no password given)");
                None
            }
        };
        if let Some(pw) = password {
            if allows(&remaining, MethodKind::Password) {
                match handle.authenticate_password(user, pw.expose()).await {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(russh::client::AuthResult::Failure {
                        remaining_methods, ..
                    }) => {
                        tried.push("password");
                        remaining = Some(remaining_methods);
                    }
                    Ok(_) => tried.push("password"),
                    Err(e) => tried.push(format!("password ({e})")),
                }
            }
            if allows(&remaining, MethodKind::KeyboardInteractive) && !handle.is_closed() {
                if keyboard_interactive(handle, user, &pw).await {
                    return Ok(());
                }
                tried.push("keyboard-interactive");
            }
        }
    }
    Err(fail(tried))
}

/// Answers every hidden prompt with the password and every round without prompts (PAM
/// sends one after success) with nothing, for a few rounds.
async fn keyboard_interactive<H: Handler>(handle: &mut Handle<H>, user: &str, pw: &Secret) -> bool {
    let mut resp = handle
        .authenticate_keyboard_interactive_start(user, None::<String>)
        .await;
    for _ in 0..5 {
        match resp {
            Ok(KeyboardInteractiveAuthResponse::Success) => return true,
            Ok(KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. }) => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if p.echo {
                            String::new()
                        } else {
                            pw.expose().to_string()
                        }
                    })
                    .collect();
                resp = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await;
            }
            _ => return false,
        }
    }
    false
}

/// The RSA signature hash the server accepts (None for non-RSA keys).
async fn rsa_hash<H: Handler>(handle: &Handle<H>, key: &PublicKey) -> Option<HashAlg> {
    if !matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let ssh = PathBuf::from(home).join(".ssh");
    DEFAULT_KEYS
        .iter()
        .map(|k| ssh.join(k))
        .filter(|p| p.exists())
        .collect()
}

/// Decrypts a key file: plain keys directly; encrypted ones with the configured passphrase
/// (`ConnectOptions::key_passphrase`, else `RPIPROV_KEY_PASSPHRASE`), else a prompt when a
/// terminal is attached (cached per file for the whole run).
async fn load_key(
    path: &Path,
    text: &str,
    creds: &Credentials<'_>,
    clock: &AuthClock,
) -> Result<PrivateKey, String> {
    match russh::keys::decode_secret_key(text, None) {
        Ok(k) => return Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Err(format!("unreadable key: {e}")),
    }
    let configured = creds.key_passphrase.clone().or_else(|| {
        std::env::var(PASSPHRASE_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new)
    });
    if let Some(p) = configured {
        return russh::keys::decode_secret_key(text, Some(p.expose())).map_err(|_| {
            format!(
                "encrypted; the passphrase from {PASSPHRASE_ENV} or the options does not open it"
            )
        });
    }
    if !creds.interactive {
        return Err(format!(
            "encrypted; no terminal to ask for its passphrase: set {PASSPHRASE_ENV} or add the key to ssh-agent"
        ));
    }
    static CACHE: Mutex<Option<HashMap<PathBuf, Secret>>> = Mutex::new(None);
    let cached = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(path)
        .cloned();
    let pass = match cached {
        Some(p) => p,
        None => prompt(format!("Passphrase for {}: ", path.display()), clock)
            .await
            .map_err(|e| format!("encrypted; cannot prompt: {e}"))?,
    };
    let key = russh::keys::decode_secret_key(text, Some(pass.expose()))
        .map_err(|_| "encrypted; wrong passphrase".to_string())?;
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(path.to_path_buf(), pass);
    Ok(key)
}

/// Reads a secret from the terminal. Prompts are serialised: with many hosts connecting at
/// once, two prompts must not interleave on one terminal. `clock` stands still meanwhile,
/// also while another host's prompt holds the terminal: both wait for a human.
async fn prompt(text: String, clock: &AuthClock) -> Result<Secret, String> {
    static TERMINAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _paused = clock.pause();
    let _guard = TERMINAL.lock().await;
    tokio::task::spawn_blocking(move || rpassword::prompt_password(text))
        .await
        .map_err(|e| e.to_string())?
        .map(Secret::new)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The clock runs out at its deadline, but time spent paused (a human at a prompt)
    /// does not count.
    #[tokio::test]
    async fn the_auth_clock_stands_still_while_paused() {
        let started = Instant::now();
        let clock = AuthClock::new(started + Duration::from_millis(300));
        let paused = clock.pause();
        let waited = tokio::time::timeout(Duration::from_millis(600), clock.expired()).await;
        assert!(waited.is_err(), "expired while paused");
        drop(paused);
        clock.expired().await;
        let took = started.elapsed();
        // 600 ms paused, then the 300 ms that were left.
        assert!(took >= Duration::from_millis(880), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");

        let clock = AuthClock::new(Instant::now() + Duration::from_millis(100));
        let started = Instant::now();
        clock.expired().await;
        assert!(started.elapsed() < Duration::from_millis(400));
    }
}
