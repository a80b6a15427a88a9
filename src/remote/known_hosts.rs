//! Host key verification against an OpenSSH `known_hosts` file.
//!
//! rpiprov reads the file itself instead of using russh's helpers, because those split
//! lines on single spaces only (tabs break them), ignore `@revoked`, know no wildcards or
//! negations, and report "a key of another algorithm is recorded" the same way as "host
//! unknown" — which, under trust on first use, would append an attacker's key.
//!
//! The name looked up follows OpenSSH: the `HostKeyAlias` from ssh config if there is one
//! (without a port), else the host name actually dialled (after ssh config's `HostName`),
//! written `[host]:port` when the port is not 22. Learned entries are appended in the same
//! form (hashed when ssh config says `HashKnownHosts yes`), so `ssh` and rpiprov share one
//! file.
//!
//! The files read are OpenSSH's: the user's (the inventory's `ssh.known_hosts`, or ssh
//! config's `UserKnownHostsFile`; learned keys go to the first) and the machine's
//! (`/etc/ssh/ssh_known_hosts`, or `GlobalKnownHostsFile`), whose `@revoked` lines apply
//! as the user's do. A `@cert-authority` line says the host proves itself with a
//! certificate, which rpiprov does not check: such a host is refused unless one of its own
//! keys is recorded, and never learned as a plain key.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

use super::RemoteError;
use crate::config::HostKeyPolicy;
use crate::config::local::{self, Limit, Refused};

/// Checks that a host name, address or `HostKeyAlias` can stand in a known_hosts line as
/// itself: no whitespace or control character (it would end the field or the line), none
/// of the pattern syntax (`*?!,` would make a wildcard or a list that vouches for other
/// hosts, `[]` another host's port, `|` a hashed name, `#` a comment, `@` a marker), and
/// no leading `-` (it would read as an option in the `ssh-keygen`/`ssh-keyscan` commands
/// rpiprov suggests). Letters, digits, `.`, `-`, `_` and `:` (IPv6) remain.
/// Nor an option of sshd's authorized_keys lines that takes no argument: a known_hosts
/// line starting with one, were it ever read as authorized_keys, would be a login entry
/// for the host's own key (sshd(8), AUTHORIZED_KEYS FILE FORMAT; options compare
/// without case).
pub(crate) fn check_host_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !ok {
        return Err("use letters, digits, '.', '-', '_' and ':', not starting with '-'".into());
    }
    if AUTHORIZED_KEYS_OPTIONS
        .iter()
        .any(|o| o.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "{name} is an option of sshd's authorized_keys lines, not a host (a line that starts with it grants a login)"
        ));
    }
    Ok(())
}

/// sshd's authorized_keys options without an argument (OpenSSH 9.x `auth-options.c`).
const AUTHORIZED_KEYS_OPTIONS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-user-rc",
    "no-x11-forwarding",
    "no-touch-required",
    "port-forwarding",
    "pty",
    "restrict",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// The known_hosts name for a host: `host`, or `[host]:port` when the port is not 22.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// What a line's marker makes of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// The host's own key.
    None,
    /// `@revoked`: this key is refused, for every host.
    Revoked,
    /// `@cert-authority`: a CA that signs the host's certificates.
    CertAuthority,
}

/// One known_hosts line that names the host.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Where it was read: the file and its 1-based line, as `ssh-keygen -R` counts.
    pub at: Where,
    pub key: PublicKey,
    pub marker: Marker,
}

/// A line of a known_hosts file, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Where {
    pub file: PathBuf,
    pub line: usize,
}

impl Entry {
    fn live(&self) -> bool {
        self.marker == Marker::None
    }
}

/// The entries of `path` whose host patterns match `name` (see [`lookup_name`]).
/// A missing file has no entries; a FIFO, a device or a file larger than rpiprov reads
/// is an error ([`local::read`]).
pub(crate) fn entries_for(path: &Path, name: &str) -> std::io::Result<Vec<Entry>> {
    let bytes = match local::read(path, Limit::Text) {
        Ok(b) => b,
        Err(Refused::Missing) => return Ok(Vec::new()),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|_| std::io::Error::other("not text"))?;
    let mut entries = parse_entries(&text, name);
    for e in &mut entries {
        e.at.file = path.to_path_buf();
    }
    Ok(entries)
}

/// What is wrong with `path` as a known_hosts file, for `rpiprov check`: a name that is
/// sshd's authorized_keys, a file rpiprov cannot read (not a regular file, too large, not
/// text), or a line that is not known_hosts syntax. A missing file is fine (accept-new
/// creates it).
pub fn known_hosts_problem(path: &Path) -> Option<String> {
    if let Err(why) = not_authorized_keys(path) {
        return Some(why);
    }
    let bytes = match local::read(path, Limit::Text) {
        Ok(b) => b,
        Err(Refused::Missing) => return None,
        Err(e) => return Some(e.to_string()),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Some("not text: not a known_hosts file".into());
    };
    first_foreign_line(text).map(|n| {
        format!("line {n} is not a known_hosts entry: this is not a known_hosts file (rpiprov reads host keys from it, and adds keys only to a known_hosts file)")
    })
}

/// Refuses a path whose file name is sshd's list of login keys (`authorized_keys`,
/// `authorized_keys2`): a host key added there would let its holder log in.
fn not_authorized_keys(path: &Path) -> Result<(), String> {
    if crate::config::names_authorized_keys(path) {
        return Err(
            "names an authorized_keys file (sshd's list of keys that may log in), not a known_hosts file: rpiprov never adds host keys to it".into(),
        );
    }
    Ok(())
}

/// The number of the first line of `text` that is not known_hosts syntax: not empty, not a
/// comment and not `[@marker] patterns keytype base64 [comment]` whose key blob names its
/// type (or an old SSH1 `patterns bits exponent modulus` line). rpiprov appends only to
/// files that pass, so that an inventory pointing `known_hosts` at, say, `~/.bashrc` gets
/// an error instead of a line added to it.
fn first_foreign_line(text: &str) -> Option<usize> {
    let is_entry = |line: &str| -> bool {
        let mut fields = line.split_whitespace();
        let mut patterns = fields.next().unwrap_or_default();
        if patterns.starts_with('@') {
            if !matches!(patterns, "@revoked" | "@cert-authority") {
                return false;
            }
            patterns = fields.next().unwrap_or_default();
        }
        let pattern_chars = |c: char| c.is_ascii_alphanumeric() || ".-_:*?!,[]|+/=%".contains(c);
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            return false;
        };
        if patterns.is_empty() || !patterns.chars().all(pattern_chars) {
            return false;
        }
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if digits(kind) && digits(blob) {
            return fields.next().is_some_and(digits);
        }
        // The blob starts with the key type as an SSH string: a 4-byte length, then it.
        BASE64.decode(blob.as_bytes()).is_ok_and(|b| {
            b.len() >= 4 + kind.len()
                && b[..4] == (kind.len() as u32).to_be_bytes()
                && &b[4..4 + kind.len()] == kind.as_bytes()
        })
    };
    text.lines()
        .map(str::trim)
        .position(|line| !(line.is_empty() || line.starts_with('#') || is_entry(line)))
        .map(|i| i + 1)
}

fn parse_entries(text: &str, name: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut marker = Marker::None;
        if let Some(word) = first.strip_prefix('@') {
            marker = match word {
                "revoked" => Marker::Revoked,
                // Kept as what it is, never read as a plain key of the host.
                "cert-authority" => Marker::CertAuthority,
                // An unknown marker: OpenSSH skips the line.
                _ => continue,
            };
            first = fields.next().unwrap_or_default();
        }
        let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, name) {
            continue;
        }
        // A line rpiprov cannot parse (a newer key type, garbage) is skipped as OpenSSH does.
        let Ok(key) = PublicKey::from_openssh(&format!("{kind} {b64}")) else {
            continue;
        };
        out.push(Entry {
            at: Where {
                file: PathBuf::new(),
                line: i + 1,
            },
            key,
            marker,
        });
    }
    out
}

/// OpenSSH semantics for the host field: comma-separated patterns with `*` and `?`, a
/// negated pattern (`!pat`) that matches vetoes the line, and hashed `|1|salt|hmac` names.
fn patterns_match(field: &str, name: &str) -> bool {
    let mut matched = false;
    for pat in field.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if wildcard_match(&neg.to_ascii_lowercase(), name) {
                return false;
            }
        } else if pat.starts_with("|1|") {
            matched |= hashed_match(pat, name);
        } else {
            matched |= wildcard_match(&pat.to_ascii_lowercase(), name);
        }
    }
    matched
}

fn hashed_match(pat: &str, name: &str) -> bool {
    let mut parts = pat.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// Glob match with `*` (any run) and `?` (one character), as OpenSSH's `match_pattern`.
fn wildcard_match(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The SHA256 fingerprint as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Key algorithms compare by family for RSA (the hash is a signature detail, the key is
/// the same) and exactly otherwise (an ECDSA P-256 and a P-384 key are different types).
fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. }))
}

/// What the recorded entries say about an offered key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known,
    Unknown,
    /// No key of the host's own is recorded, but a CA is said to sign its certificates.
    CertAuthority(Where),
    Changed(Where),
    OtherAlgorithm {
        recorded: Vec<String>,
    },
    Revoked(Where),
}

pub(crate) fn judge(entries: &[Entry], offered: &PublicKey) -> Verdict {
    if let Some(e) = entries
        .iter()
        .find(|e| e.marker == Marker::Revoked && e.key.key_data() == offered.key_data())
    {
        return Verdict::Revoked(e.at.clone());
    }
    let live: Vec<&Entry> = entries.iter().filter(|e| e.live()).collect();
    if live.iter().any(|e| e.key.key_data() == offered.key_data()) {
        return Verdict::Known;
    }
    if let Some(e) = live
        .iter()
        .find(|e| same_type(&e.key.algorithm(), &offered.algorithm()))
    {
        return Verdict::Changed(e.at.clone());
    }
    if live.is_empty() {
        // Learning the plain key would replace the CA's word with the first comer's.
        return match entries.iter().find(|e| e.marker == Marker::CertAuthority) {
            Some(e) => Verdict::CertAuthority(e.at.clone()),
            None => Verdict::Unknown,
        };
    }
    let recorded: BTreeSet<String> = live.iter().map(|e| e.key.algorithm().to_string()).collect();
    Verdict::OtherAlgorithm {
        recorded: recorded.into_iter().collect(),
    }
}

/// The host key algorithms to offer in key exchange: those already recorded for the host
/// first, so that a server with several host keys proves the one we know (as OpenSSH
/// orders `HostKeyAlgorithms`), then the rest.
pub(crate) fn preferred_algorithms(entries: &[Entry], defaults: &[Algorithm]) -> Vec<Algorithm> {
    let recorded: Vec<Algorithm> = entries
        .iter()
        .filter(|e| e.live())
        .map(|e| e.key.algorithm())
        .collect();
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = defaults
        .iter()
        .cloned()
        .partition(|a| recorded.iter().any(|r| same_type(r, a)));
    first.extend(rest);
    first
}

/// Everything needed to verify one server's key, captured before connecting because
/// russh's handler is not told which host it talks to.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyCheck {
    /// Inventory name, for messages.
    pub host: String,
    /// The address dialled, for messages and the `ssh-keyscan` hint.
    pub address: String,
    pub port: u16,
    /// The known_hosts name (see [`lookup_name`]).
    pub name: String,
    /// The user's file, read, and where accept-new adds keys.
    pub known_hosts: PathBuf,
    /// The other files read, in OpenSSH's order: the user's other files, then the
    /// machine's (`/etc/ssh/ssh_known_hosts`...). Missing ones count as empty.
    pub also_read: Vec<PathBuf>,
    /// Learned entries are written hashed (`HashKnownHosts yes`).
    pub hash: bool,
    pub policy: HostKeyPolicy,
}

impl HostKeyCheck {
    fn addr(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.known_hosts).chain(&self.also_read)
    }

    /// The entries of every file for this host; an unreadable file names itself.
    fn read_all(&self) -> Result<Vec<Entry>, (PathBuf, std::io::Error)> {
        let mut all = Vec::new();
        for file in self.files() {
            all.extend(entries_for(file, &self.name).map_err(|e| (file.clone(), e))?);
        }
        Ok(all)
    }

    pub fn entries(&self) -> Vec<Entry> {
        // An unreadable file is treated as empty here; `verify` reports it properly.
        self.read_all().unwrap_or_default()
    }

    /// Accepts the key, learns it (accept-new, unknown host), or says why not.
    pub fn verify(&self, offered: &PublicKey) -> Result<(), RemoteError> {
        // Serialises read-check-append so that parallel connections to one new host
        // append it once.
        static LEARN: Mutex<()> = Mutex::new(());
        let _guard = LEARN.lock().unwrap_or_else(|e| e.into_inner());
        let entries = self.read_all().map_err(|(file, e)| RemoteError::Connect {
            host: self.host.clone(),
            addr: self.addr(),
            reason: format!("cannot read known_hosts {}: {e}", file.display()),
        })?;
        let fingerprint = fingerprint(offered);
        let known_hosts = self.known_hosts.display().to_string();
        match judge(&entries, offered) {
            Verdict::Known => Ok(()),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(RemoteError::UnknownHostKey {
                    host: self.host.clone(),
                    addr: self.addr(),
                    address: self.address.clone(),
                    port: self.port,
                    fingerprint,
                    known_hosts,
                }),
                HostKeyPolicy::AcceptNew => {
                    append(&self.known_hosts, &self.name, offered, self.hash).map_err(|e| {
                        RemoteError::Connect {
                            host: self.host.clone(),
                            addr: self.addr(),
                            reason: format!("cannot record the host key in {known_hosts}: {e}"),
                        }
                    })
                }
            },
            Verdict::CertAuthority(at) => Err(RemoteError::HostKeyCertAuthority {
                host: self.host.clone(),
                addr: self.addr(),
                fingerprint,
                at: format!("{} line {}", at.file.display(), at.line),
                keyscan: format!(
                    "ssh-keyscan -p {} {} >> {known_hosts}",
                    self.port, self.address
                ),
            }),
            Verdict::Changed(at) => Err(RemoteError::HostKeyChanged {
                host: self.host.clone(),
                addr: self.addr(),
                fingerprint,
                known_hosts: at.file.display().to_string(),
                line: at.line,
            }),
            Verdict::OtherAlgorithm { recorded } => Err(RemoteError::HostKeyAlgorithm {
                host: self.host.clone(),
                addr: self.addr(),
                offered: offered.algorithm().to_string(),
                recorded: recorded.join(", "),
                known_hosts: self
                    .files()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            Verdict::Revoked(at) => Err(RemoteError::HostKeyRevoked {
                host: self.host.clone(),
                addr: self.addr(),
                fingerprint,
                known_hosts: at.file.display().to_string(),
                line: at.line,
            }),
        }
    }
}

/// The host field of a learned line: `name` itself, or hashed as OpenSSH's
/// `HashKnownHosts` writes it: `|1|` base64(salt) `|` base64(HMAC-SHA1(salt, name)), with a
/// fresh 20-byte salt.
fn host_field(name: &str, hash: bool) -> std::io::Result<String> {
    if !hash {
        return Ok(name.to_string());
    }
    let mut salt = [0u8; 20];
    // SAFETY: getrandom writes at most `salt.len()` bytes into the buffer given.
    let n = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if usize::try_from(n).ok() != Some(salt.len()) {
        return Err(std::io::Error::other("no random bytes for a hashed entry"));
    }
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .chain_update(name.as_bytes())
        .finalize()
        .into_bytes();
    Ok(format!(
        "|1|{}|{}",
        BASE64.encode(&salt),
        BASE64.encode(&mac)
    ))
}

/// Appends `name key` (the name hashed if `hash`) to the file, creating its folder (0700) and the file (0600) if missing.
/// `name` is a [`lookup_name`]; a host part that [`check_host_name`] refuses, a file named
/// authorized_keys, a symbolic link (dangling or not: the file is opened without following
/// one, or created anew, never through one), or a file that is not known_hosts syntax (see
/// [`first_foreign_line`]) is an error and nothing is written.
pub(crate) fn append(path: &Path, name: &str, key: &PublicKey, hash: bool) -> std::io::Result<()> {
    let host = match name.strip_prefix('[').and_then(|n| n.rsplit_once("]:")) {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => name,
    };
    check_host_name(host).map_err(|why| {
        std::io::Error::other(format!("refusing to write the host name {host:?}: {why}"))
    })?;
    not_authorized_keys(path).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = open_for_append(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let limit = Limit::Text.bytes();
    if meta.len() > limit {
        return Err(std::io::Error::other(
            Refused::TooLarge {
                size: meta.len(),
                limit,
            }
            .to_string(),
        ));
    }
    let mut text = Vec::new();
    (&mut file).take(limit).read_to_end(&mut text)?;
    let foreign = match std::str::from_utf8(&text) {
        Ok(text) => {
            first_foreign_line(text).map(|n| format!("line {n} is not a known_hosts entry"))
        }
        Err(_) => Some("it is not text".to_string()),
    };
    if let Some(what) = foreign {
        return Err(std::io::Error::other(format!(
            "{what}; refusing to add a key to a file that is not a known_hosts file (check ssh.known_hosts in the inventory)"
        )));
    }
    // A file whose last line lacks its newline would glue our entry onto it.
    let needs_newline = text.last().is_some_and(|&b| b != b'\n');
    let key = PublicKey::new(key.key_data().clone(), "");
    let text = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let field = host_field(name, hash)?;
    let line = format!("{}{field} {text}\n", if needs_newline { "\n" } else { "" });
    file.write_all(line.as_bytes())
}

/// The file to append to: opened without following a link, or created anew (`O_EXCL`:
/// never through a dangling link, whose target would be made wherever it points). A FIFO
/// opens without waiting (and is then refused by the caller).
fn open_for_append(path: &Path) -> std::io::Result<fs::File> {
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    loop {
        let existing = OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(flags)
            .open(path);
        match existing {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(std::io::Error::other(
                    "it is a symbolic link: rpiprov adds host keys only to a file it opens itself, never through a link (point ssh.known_hosts at the file itself)",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => return Ok(f),
            // Made meanwhile (or a dangling link): judged again as an existing file.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn at(line: usize) -> Where {
        Where {
            file: PathBuf::new(),
            line,
        }
    }

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn keygen(dir: &Path, name: &str, kind: &str) -> PublicKey {
        let path = dir.join(name);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        key(fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim())
    }

    #[test]
    fn port_22_is_bare_and_others_are_bracketed() {
        assert_eq!(lookup_name("Pi1.local", 22), "pi1.local");
        assert_eq!(lookup_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
    }

    #[test]
    fn plain_lines_with_tabs_lists_and_comments() {
        let text = format!(
            "# comment\n\npi1,10.0.0.5\t{ED1} root@pi1\n[10.0.0.6]:2222 {ED2}\n10.0.0.6 {ED1}\n"
        );
        let e = parse_entries(&text, "10.0.0.5");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].at.line, 3);
        assert_eq!(e[0].key.key_data(), key(ED1).key_data());
        // The port matters: port 22 and port 2222 are different entries.
        let e = parse_entries(&text, &lookup_name("10.0.0.6", 2222));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.key_data(), key(ED2).key_data());
        assert_eq!(
            parse_entries(&text, &lookup_name("10.0.0.6", 22))[0]
                .at
                .line,
            5
        );
        assert!(parse_entries(&text, "10.0.0.7").is_empty());
    }

    #[test]
    fn wildcards_and_negations() {
        let text = format!("*.rack,!bad.rack {ED1}\n");
        assert_eq!(parse_entries(&text, "pi1.rack").len(), 1);
        assert!(parse_entries(&text, "bad.rack").is_empty());
        assert!(parse_entries(&text, "pi1.other").is_empty());
        assert!(wildcard_match("pi?", "pi7"));
        assert!(!wildcard_match("pi?", "pi10"));
        assert!(wildcard_match("[10.0.0.*]:2222", "[10.0.0.9]:2222"));
    }

    /// Hashed entries as written by the real `ssh-keygen -H`, for port 22 and a bracketed port.
    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("pi1.rack {ED1}\n[127.0.0.1]:2200 {ED2}\n")).unwrap();
        let st = Command::new("ssh-keygen")
            .args(["-q", "-H", "-f"])
            .arg(&kh)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        let text = fs::read_to_string(&kh).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        assert!(!text.contains("pi1.rack"));
        assert_eq!(first_foreign_line(&text), None, "{text}");
        let e = entries_for(&kh, "pi1.rack").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.key_data(), key(ED1).key_data());
        let e = entries_for(&kh, &lookup_name("127.0.0.1", 2200)).unwrap();
        assert_eq!(e[0].key.key_data(), key(ED2).key_data());
        assert!(entries_for(&kh, "127.0.0.1").unwrap().is_empty());
        assert!(entries_for(&kh, "pi2.rack").unwrap().is_empty());
    }

    #[test]
    fn verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let ecdsa = keygen(dir.path(), "e", "ecdsa");
        let rsa = keygen(dir.path(), "r", "rsa");
        let text = format!("h {ED1}\nr {}\n", rsa.to_openssh().unwrap());
        let h = parse_entries(&text, "h");
        assert_eq!(judge(&h, &key(ED1)), Verdict::Known);
        assert_eq!(judge(&h, &key(ED2)), Verdict::Changed(at(1)));
        assert_eq!(
            judge(&h, &ecdsa),
            Verdict::OtherAlgorithm {
                recorded: vec!["ssh-ed25519".into()]
            }
        );
        assert_eq!(
            judge(&parse_entries(&text, "x"), &key(ED1)),
            Verdict::Unknown
        );
        let other_rsa = keygen(dir.path(), "r2", "rsa");
        assert_eq!(judge(&parse_entries(&text, "r"), &rsa), Verdict::Known);
        assert_eq!(
            judge(&parse_entries(&text, "r"), &other_rsa),
            Verdict::Changed(at(2))
        );
        let revoked = format!("@revoked * {ED2}\nh {ED2}\n");
        assert_eq!(
            judge(&parse_entries(&revoked, "h"), &key(ED2)),
            Verdict::Revoked(at(1))
        );
    }

    #[test]
    fn recorded_algorithms_are_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = keygen(dir.path(), "r", "rsa");
        let entries = parse_entries(&format!("h {}\n", rsa.to_openssh().unwrap()), "h");
        let defaults = russh::Preferred::DEFAULT.key.to_vec();
        let order = preferred_algorithms(&entries, &defaults);
        assert!(
            order[..3]
                .iter()
                .all(|a| matches!(a, Algorithm::Rsa { .. }))
        );
        assert_eq!(order.len(), defaults.len());
        assert_eq!(preferred_algorithms(&[], &defaults), defaults);
    }

    #[test]
    fn accept_new_learns_then_strict_accepts_and_a_changed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("sub/known_hosts");
        let mut check = HostKeyCheck {
            host: "pi1".into(),
            address: "127.0.0.1".into(),
            port: 2222,
            name: lookup_name("127.0.0.1", 2222),
            known_hosts: kh.clone(),
            also_read: Vec::new(),
            hash: false,
            policy: HostKeyPolicy::Strict,
        };
        let err = check.verify(&key(ED1)).unwrap_err().to_string();
        assert!(err.contains(&fingerprint(&key(ED1))), "{err}");
        assert!(err.contains("SHA256:"), "{err}");
        check.policy = HostKeyPolicy::AcceptNew;
        check.verify(&key(ED1)).unwrap();
        check.verify(&key(ED1)).unwrap();
        let text = fs::read_to_string(&kh).unwrap();
        assert_eq!(text, format!("[127.0.0.1]:2222 {ED1}\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&kh).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(kh.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        check.policy = HostKeyPolicy::Strict;
        check.verify(&key(ED1)).unwrap();
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
            check.policy = policy;
            let err = check.verify(&key(ED2)).unwrap_err();
            assert!(
                matches!(err, RemoteError::HostKeyChanged { line: 1, .. }),
                "{err}"
            );
        }
    }

    /// Issue 9, item 3: names that would corrupt a known_hosts line, or turn it into a
    /// pattern for other hosts, are refused.
    #[test]
    fn host_names_for_known_hosts() {
        for ok in [
            "pi1",
            "pi-1.rack.lan",
            "10.0.0.5",
            "fe80::1",
            "my_pi",
            "PI7",
        ] {
            assert_eq!(check_host_name(ok), Ok(()), "{ok}");
        }
        let why = "use letters, digits, '.', '-', '_' and ':', not starting with '-'";
        for bad in [
            "",
            "rack pi",
            "pi\t1",
            "pi\n1",
            "pi\u{1b}[2J",
            "*",
            "pi?",
            "!pi",
            "a,b",
            "[pi]:22",
            "|1|x",
            "#pi",
            "@revoked",
            "-oProxyCommand=x",
            "pi\u{e9}",
        ] {
            assert_eq!(check_host_name(bad), Err(why.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn what_counts_as_known_hosts_syntax() {
        let ok = format!(
            "# comment\n\n  \npi1,10.0.0.5\t{ED1} root@pi1\r\n@revoked * {ED2}\n\
             |1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= {ED1}\n\
             [10.0.0.6]:2222,!bad.* {ED2}\nold.host 1024 35 1234567\n"
        );
        assert_eq!(first_foreign_line(&ok), None);
        assert_eq!(first_foreign_line(""), None);
        let bashrc = "# ~/.bashrc\nexport PATH=$HOME/bin:$PATH\n";
        assert_eq!(first_foreign_line(bashrc), Some(2));
        // authorized_keys: the first field is a key type, the second no type name.
        let authorized = format!("{ED1} me@laptop\n");
        assert_eq!(first_foreign_line(&authorized), Some(1));
        let options = format!("command=\"id\" {ED1}\n");
        assert_eq!(first_foreign_line(&options), Some(1));
        // A blob that does not name the type written before it.
        let mismatch = format!("h ssh-rsa {}\n", ED1.split(' ').nth(1).unwrap());
        assert_eq!(first_foreign_line(&mismatch), Some(1));
    }

    /// Issue 9, item 3: accept-new adds nothing to a file that is not known_hosts syntax,
    /// nor a name that is not a host name, and does not block on a FIFO.
    #[test]
    fn append_refuses_foreign_files_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("bashrc");
        let before = format!("pi0 {ED2}\nalias ll='ls -l'\n");
        fs::write(&rc, &before).unwrap();
        assert_eq!(
            append(&rc, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            "line 2 is not a known_hosts entry; refusing to add a key to a file that is not a known_hosts file (check ssh.known_hosts in the inventory)"
        );
        fs::write(&rc, b"\x7fELF\x02\x01\xff\xfe").unwrap();
        assert_eq!(
            append(&rc, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            "it is not text; refusing to add a key to a file that is not a known_hosts file (check ssh.known_hosts in the inventory)"
        );
        let kh = dir.path().join("known_hosts");
        for name in ["rack pi", "*", "[a b]:2222"] {
            let err = append(&kh, name, &key(ED1), false).unwrap_err().to_string();
            assert!(err.starts_with("refusing to write the host name"), "{err}");
        }
        assert!(!kh.exists());
        append(&kh, "[fe80::1]:2222", &key(ED1), false).unwrap();

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo has no other precondition.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            entries_for(&fifo, "pi1").unwrap_err().to_string(),
            "not a regular file (a FIFO)"
        );
        assert_eq!(
            append(&fifo, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            "not a regular file"
        );
    }

    /// Issue 18 item 3: accept-new never writes into an authorized_keys file (where
    /// `restrict KEY` would be a login entry for the server's key), never through a
    /// link (a dangling one would create its target wherever it points), and a name that
    /// is an authorized_keys option is no host name.
    #[test]
    fn append_refuses_authorized_keys_links_and_option_names() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        let authorized = ssh.join("authorized_keys");
        fs::write(&authorized, "").unwrap();
        assert_eq!(
            append(&authorized, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            "names an authorized_keys file (sshd's list of keys that may log in), not a known_hosts file: rpiprov never adds host keys to it"
        );
        assert_eq!(fs::read_to_string(&authorized).unwrap(), "");
        assert!(known_hosts_problem(&authorized).is_some());
        for name in ["restrict", "RESTRICT", "no-pty", "cert-authority"] {
            let err = check_host_name(name).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{name} is an option of sshd's authorized_keys lines, not a host (a line that starts with it grants a login)"
                )
            );
            assert!(append(&ssh.join("known_hosts"), name, &key(ED1), false).is_err());
        }
        assert!(!ssh.join("known_hosts").exists());

        let link_err = "it is a symbolic link: rpiprov adds host keys only to a file it opens itself, never through a link (point ssh.known_hosts at the file itself)";
        let outside = dir.path().join("elsewhere/made-by-the-link");
        let dangling = ssh.join("dangling");
        std::os::unix::fs::symlink(&outside, &dangling).unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        assert_eq!(
            append(&dangling, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            link_err
        );
        assert!(!outside.exists(), "the link's target was created");
        let real = ssh.join("real_known_hosts");
        fs::write(&real, format!("pi0 {ED2}\n")).unwrap();
        let link = ssh.join("linked");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            append(&link, "pi1", &key(ED1), false)
                .unwrap_err()
                .to_string(),
            link_err
        );
        // Read through a link all the same.
        assert_eq!(entries_for(&link, "pi0").unwrap().len(), 1);
        assert_eq!(known_hosts_problem(&link), None);
        assert_eq!(
            known_hosts_problem(Path::new("/dev/zero")).as_deref(),
            Some("not a regular file (a character device)")
        );
        // A file it creates itself: 0600, one line.
        let new = ssh.join("known_hosts");
        append(&new, "pi1", &key(ED1), false).unwrap();
        assert_eq!(fs::read_to_string(&new).unwrap(), format!("pi1 {ED1}\n"));
    }

    #[test]
    fn append_adds_a_missing_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("a {ED2}")).unwrap();
        append(&kh, "b", &key(ED1), false).unwrap();
        assert_eq!(
            fs::read_to_string(&kh).unwrap(),
            format!("a {ED2}\nb {ED1}\n")
        );
    }

    fn check_for(name: &str, known_hosts: PathBuf, also_read: Vec<PathBuf>) -> HostKeyCheck {
        HostKeyCheck {
            host: "pi1".into(),
            address: "10.0.0.5".into(),
            port: 22,
            name: name.into(),
            known_hosts,
            also_read,
            hash: false,
            policy: HostKeyPolicy::AcceptNew,
        }
    }

    /// Issue 18: the machine's known_hosts (`/etc/ssh/ssh_known_hosts`, or what
    /// `GlobalKnownHostsFile` names) vouches for a key and revokes one as OpenSSH's does, and
    /// is never written.
    #[test]
    fn the_machines_file_vouches_and_revokes_and_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user/known_hosts");
        let global = dir.path().join("etc/ssh_known_hosts");
        fs::create_dir_all(global.parent().unwrap()).unwrap();
        fs::write(&global, format!("pi1.rack {ED1}\n@revoked * {ED2}\n")).unwrap();
        let mut check = check_for("pi1.rack", user.clone(), vec![global.clone()]);
        check.policy = HostKeyPolicy::Strict;
        check.verify(&key(ED1)).unwrap();
        // Revoked there, though the user's file records it for this host.
        fs::create_dir_all(user.parent().unwrap()).unwrap();
        fs::write(&user, format!("pi1.rack {ED2}\n")).unwrap();
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
            check.policy = policy;
            let err = check.verify(&key(ED2)).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "pi1: host key of 10.0.0.5:22 ({}) is marked @revoked in known_hosts {} line 2; refusing",
                    fingerprint(&key(ED2)),
                    global.display()
                )
            );
        }
        // A host the machine's file does not know is learned into the user's file only.
        let other = check_for("pi2.rack", user.clone(), vec![global.clone()]);
        other.verify(&key(ED1)).unwrap();
        assert_eq!(
            fs::read_to_string(&user).unwrap(),
            format!("pi1.rack {ED2}\npi2.rack {ED1}\n")
        );
        assert_eq!(
            fs::read_to_string(&global).unwrap(),
            format!("pi1.rack {ED1}\n@revoked * {ED2}\n")
        );
    }

    /// Issue 18: a host whose keys a CA signs (`@cert-authority`) is refused under both
    /// policies unless its own key is recorded, and the CA's key, or the offered key, is
    /// never learned as a plain key.
    #[test]
    fn a_cert_authority_line_is_never_replaced_by_a_learned_plain_key() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let before = format!("@cert-authority *.rack {ED2}\n");
        fs::write(&kh, &before).unwrap();
        let mut check = check_for("pi1.rack", kh.clone(), Vec::new());
        for policy in [HostKeyPolicy::AcceptNew, HostKeyPolicy::Strict] {
            check.policy = policy;
            // Offered: the host's own key, and (a server showing the CA key) the CA's.
            for offered in [ED1, ED2] {
                let err = check.verify(&key(offered)).unwrap_err();
                assert!(
                    matches!(&err, RemoteError::HostKeyCertAuthority { .. }),
                    "{err}"
                );
                assert_eq!(
                    err.to_string(),
                    format!(
                        "pi1: host key of 10.0.0.5:22 is not known ({}), and known_hosts {kh} line 1 says its keys are signed by a certificate authority (@cert-authority): rpiprov does not check host certificates, so it neither trusts nor learns a plain key for this host.\n  Check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add its own key with: ssh-keyscan -p 22 10.0.0.5 >> {kh}",
                        fingerprint(&key(offered)),
                        kh = kh.display()
                    )
                );
            }
        }
        assert_eq!(fs::read_to_string(&kh).unwrap(), before);
        // Another host, outside the CA's patterns, is learned as usual.
        check_for("pi1.lan", kh.clone(), Vec::new())
            .verify(&key(ED1))
            .unwrap();
        // The host's own key, recorded, is trusted as OpenSSH trusts it.
        fs::write(&kh, format!("{before}pi1.rack {ED1}\n")).unwrap();
        check.verify(&key(ED1)).unwrap();
        let e = parse_entries(&before, "pi1.rack");
        assert_eq!(e[0].marker, Marker::CertAuthority);
        assert_eq!(judge(&e, &key(ED2)), Verdict::CertAuthority(at(1)));
        // The CA's key type does not steer key exchange.
        let defaults = russh::Preferred::DEFAULT.key.to_vec();
        assert_eq!(preferred_algorithms(&e, &defaults), defaults);
    }

    /// Issue 18: `HashKnownHosts yes` writes the learned name hashed, in the form that
    /// OpenSSH's own `ssh-keygen -F` finds, with a new salt for every line.
    #[test]
    fn learned_entries_are_hashed_when_asked_and_ssh_keygen_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        for name in ["pi1.rack", "[10.0.0.5]:2222"] {
            let mut check = check_for(name, kh.clone(), Vec::new());
            check.hash = true;
            check.verify(&key(ED1)).unwrap();
            check.policy = HostKeyPolicy::Strict;
            check.verify(&key(ED1)).unwrap();
            let out = Command::new("ssh-keygen")
                .args(["-F", name, "-f"])
                .arg(&kh)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(ED1),
                "{name}: {out:?}"
            );
        }
        let text = fs::read_to_string(&kh).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert!(line.starts_with("|1|") && line.ends_with(ED1), "{line}");
        }
        assert!(
            !text.contains("pi1") && !text.contains("10.0.0.5"),
            "{text}"
        );
        assert_ne!(lines[0][..31], lines[1][..31], "the same salt twice");
        assert_eq!(first_foreign_line(&text), None);
        assert!(entries_for(&kh, "pi2.rack").unwrap().is_empty());
    }
}
