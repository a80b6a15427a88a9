//! What `~/.ssh/config` (or the file given in `ConnectOptions::ssh_config`) contributes.
//!
//! Precedence: the inventory is explicit, so its values win; ssh config fills what the
//! inventory leaves at its default, the way `ssh -p`/`-l`/`-i` beat the config file:
//! - the host to look up is `Target::address` (it may be an alias such as `pi1`); the
//!   inventory `name` is looked up too when it differs, filling only what is still unset
//!   (never `HostName` or `HostKeyAlias`: the inventory's address stays the one dialled);
//! - `HostName` replaces the address to dial (`%h` expands to the looked-up name);
//! - `Port` applies when the inventory port is 22 (the default), `User` when the inventory
//!   user is empty, `IdentityFile` when the inventory lists none;
//! - `ProxyJump` and `HostKeyAlias` come from ssh config only (`ProxyJump none` disables).
//!
//! Parsing uses ssh2-config with its relaxed rules, so options it does not model are kept
//! aside instead of rejecting real-world files. A missing file counts as empty, as for ssh.

use std::path::{Path, PathBuf};

use ssh2_config::{HostParams, ParseRule, SshConfig};

use super::{RemoteError, Target, known_hosts};
use crate::config::local::{self, Limit, Refused};

/// Where and how to reach one SSH server, after ssh config was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The inventory name (or the jump spec), for messages.
    pub label: String,
    /// The host name or address dialled.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Explicit identity files; empty means the default `~/.ssh/id_*` files.
    pub identity_files: Vec<PathBuf>,
    /// Jump hosts in order: the first is dialled directly.
    pub jumps: Vec<JumpSpec>,
    /// The name used in known_hosts instead of the host name (without port).
    pub host_key_alias: Option<String>,
    /// `UserKnownHostsFile`, when set (`none`: no file).
    pub user_known_hosts: Option<Vec<PathBuf>>,
    /// `GlobalKnownHostsFile`, when set (`none`: no file).
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// `HashKnownHosts yes`: learned entries are written hashed.
    pub hash_known_hosts: bool,
}

/// One `ProxyJump` hop as written: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JumpSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// A parsed config file, or none.
#[derive(Debug, Default)]
pub(crate) struct Config {
    parsed: Option<SshConfig>,
    /// The file, for messages.
    path: Option<PathBuf>,
}

impl Config {
    pub fn load(path: Option<&Path>, host: &str) -> Result<Config, RemoteError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        // A regular file of bounded size, read once (`/dev/zero` is refused at once).
        let bytes = match local::read(path, Limit::Text) {
            Ok(b) => b,
            Err(Refused::Missing) => return Ok(Config::default()),
            Err(e) => {
                return Err(RemoteError::Config {
                    host: host.to_string(),
                    reason: format!("{}: {e}", path.display()),
                });
            }
        };
        // ssh2-config opens the files an `Include` names itself, without a bound: each is
        // checked first, as this one was.
        let text = String::from_utf8_lossy(&bytes);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        check_includes(&text, home.as_deref(), 0).map_err(|reason| RemoteError::Config {
            host: host.to_string(),
            reason: format!("{}: {reason}", path.display()),
        })?;
        Self::parse(&mut &bytes[..], host, path)
    }

    fn parse(
        reader: &mut impl std::io::BufRead,
        host: &str,
        path: &Path,
    ) -> Result<Config, RemoteError> {
        SshConfig::default()
            .parse(
                reader,
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map(|c| Config {
                parsed: Some(c),
                path: Some(path.to_path_buf()),
            })
            .map_err(|e| RemoteError::Config {
                host: host.to_string(),
                reason: format!("{}: {e}", path.display()),
            })
    }

    fn query(&self, name: &str) -> Option<HostParams> {
        self.parsed.as_ref().map(|c| c.query(name))
    }

    /// Applies the config to an inventory target (see the module comment for precedence).
    pub fn resolve_target(&self, t: &Target) -> Result<Endpoint, RemoteError> {
        let mut params = self.query(&t.address);
        if t.name != t.address
            && let (Some(p), Some(mut by_name)) = (params.as_mut(), self.query(&t.name))
        {
            // The inventory's address is explicit: the name's block must not redirect it.
            by_name.host_name = None;
            by_name.unsupported_fields.remove("hostkeyalias");
            p.overwrite_if_none(&by_name);
        }
        let explicit_port = (t.port != 22).then_some(t.port);
        let explicit_user = (!t.user.is_empty()).then(|| t.user.clone());
        self.endpoint(
            &t.name,
            &t.address,
            params,
            explicit_user,
            explicit_port,
            t.identity_files.clone(),
        )
    }

    /// Resolves a jump host: the spec's user and port win, the rest comes from its own
    /// Host block (including its own ProxyJump, which the caller may override).
    pub fn resolve_jump(&self, spec: &JumpSpec) -> Result<Endpoint, RemoteError> {
        let params = self.query(&spec.host);
        self.endpoint(
            &spec.to_string(),
            &spec.host,
            params,
            spec.user.clone(),
            spec.port,
            Vec::new(),
        )
    }

    fn endpoint(
        &self,
        label: &str,
        alias: &str,
        params: Option<HostParams>,
        user: Option<String>,
        port: Option<u16>,
        identity_files: Vec<PathBuf>,
    ) -> Result<Endpoint, RemoteError> {
        let p = params.unwrap_or_else(|| HostParams::new(&Default::default()));
        let host = p
            .host_name
            .as_deref()
            .map(|h| h.replace("%h", alias))
            .unwrap_or_else(|| alias.to_string());
        let jumps = match &p.proxy_jump {
            None => Vec::new(),
            Some(list) if list.iter().any(|j| j.eq_ignore_ascii_case("none")) => Vec::new(),
            Some(list) => list
                .iter()
                .flat_map(|j| j.split(','))
                .map(|j| {
                    JumpSpec::parse(j).ok_or_else(|| RemoteError::Config {
                        host: label.to_string(),
                        reason: format!("cannot read ProxyJump {j:?}"),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        // ssh2-config keeps the arguments of options it does not model as written: quoted
        // ones with their quotes, several ones apart (OpenSSH refuses those; joined here, the
        // check below refuses them).
        let host_key_alias = p
            .unsupported_fields
            .get("hostkeyalias")
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.iter()
                    .map(|a| {
                        a.strip_prefix('"')
                            .and_then(|a| a.strip_suffix('"'))
                            .unwrap_or(a)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        // Both end up in known_hosts lines (and in suggested commands): a value that would
        // corrupt a line, or make it a pattern for other hosts, is refused before connecting.
        let what = if p.host_name.is_some() {
            "HostName"
        } else {
            "host name"
        };
        for (what, value) in std::iter::once((what, &host))
            .chain(host_key_alias.as_ref().map(|a| ("HostKeyAlias", a)))
        {
            known_hosts::check_host_name(value).map_err(|why| RemoteError::Config {
                host: label.to_string(),
                reason: format!(
                    "{}{what} {value:?} cannot name a host in known_hosts: {why}",
                    self.path
                        .as_ref()
                        .map(|p| format!("{}: ", p.display()))
                        .unwrap_or_default()
                ),
            })?;
        }
        let in_file = |e: String| RemoteError::Config {
            host: label.to_string(),
            reason: format!(
                "{}{e}",
                self.path
                    .as_ref()
                    .map(|p| format!("{}: ", p.display()))
                    .unwrap_or_default()
            ),
        };
        let user_known_hosts = known_hosts_files(&p, "userknownhostsfile").map_err(in_file)?;
        let global_known_hosts = known_hosts_files(&p, "globalknownhostsfile").map_err(in_file)?;
        let hash_known_hosts = p
            .unsupported_fields
            .get("hashknownhosts")
            .and_then(|v| v.first())
            .is_some_and(|v| v.trim_matches('"').eq_ignore_ascii_case("yes"));
        Ok(Endpoint {
            label: label.to_string(),
            host,
            port: port.or(p.port).unwrap_or(22),
            user: user.or(p.user).unwrap_or_else(local_user),
            identity_files: if identity_files.is_empty() {
                p.identity_file.unwrap_or_default()
            } else {
                identity_files
            },
            jumps,
            host_key_alias,
            user_known_hosts,
            global_known_hosts,
            hash_known_hosts,
        })
    }
}

/// The files of `UserKnownHostsFile` or `GlobalKnownHostsFile` (`key` in lower case), as
/// OpenSSH reads them: several, space-separated, `~/` meaning the home folder, `none` no
/// file at all. OpenSSH's `%` tokens and `${VAR}`s are refused rather than misread as a
/// file name.
fn known_hosts_files(p: &HostParams, key: &str) -> Result<Option<Vec<PathBuf>>, String> {
    let Some(args) = p.unsupported_fields.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.trim_matches('"'))
        .filter(|a| !a.is_empty())
        .collect();
    if args.len() == 1 && args[0].eq_ignore_ascii_case("none") {
        return Ok(Some(Vec::new()));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    args.iter()
        .map(|a| {
            if a.contains('%') || a.contains("${") {
                return Err(format!(
                    "{key} {a:?}: rpiprov does not expand ssh's %-tokens or ${{}} variables; write the path out"
                ));
            }
            match (a.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => Ok(h.join(rest)),
                _ if a.starts_with('~') => Err(format!(
                    "{key} {a:?}: only ~/ (your home folder) is understood"
                )),
                _ => Ok(PathBuf::from(a)),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How deep `Include`s may nest (OpenSSH allows 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Checks every file an ssh config includes (its `Include` lines, resolved and globbed as
/// ssh2-config does: `~/`, absolute, else under `~/.ssh`), recursively: each must be a
/// regular file of bounded size ([`local::read`]). `Err` names the file and the line.
fn check_includes(text: &str, home: Option<&Path>, depth: usize) -> Result<(), String> {
    for line in text.lines() {
        let line = line.trim();
        let (key, rest) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or((line, ""));
        if !key.eq_ignore_ascii_case("include") {
            continue;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!("Includes nest deeper than {MAX_INCLUDE_DEPTH}"));
        }
        let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        for arg in rest.split_whitespace().map(|a| a.trim_matches('"')) {
            let pattern = match (arg.strip_prefix("~/"), home) {
                _ if arg.starts_with('/') => arg.to_string(),
                (Some(rest), Some(h)) => h.join(rest).display().to_string(),
                (None, Some(h)) => h.join(".ssh").join(arg).display().to_string(),
                (_, None) => continue,
            };
            let Ok(paths) = glob::glob(&pattern) else {
                return Err(format!("cannot read Include {arg:?}"));
            };
            for p in paths.flatten() {
                let bytes = local::read(&p, Limit::Text)
                    .map_err(|e| format!("Include {arg}: {}: {e}", p.display()))?;
                check_includes(&String::from_utf8_lossy(&bytes), home, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The local user name, ssh's default login name.
fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

impl JumpSpec {
    pub fn parse(s: &str) -> Option<JumpSpec> {
        let s = s.trim();
        let s = s.strip_prefix("ssh://").unwrap_or(s);
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return None,
            None => (None, s),
        };
        // `[v6addr]:port`, `host:port` or `host`.
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (h.to_string(), port)
        } else if let Some((h, p)) = rest.rsplit_once(':') {
            (h.to_string(), Some(p.parse().ok()?))
        } else {
            (rest.to_string(), None)
        };
        if host.is_empty() {
            return None;
        }
        Some(JumpSpec { user, host, port })
    }
}

impl std::fmt::Display for JumpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(&mut text.as_bytes(), "t", Path::new("cfg")).unwrap()
    }

    fn target(name: &str, address: &str) -> Target {
        Target::new(name, address, "")
    }

    const CFG: &str = "
# Options before the first Host line and options ssh2-config does not model must not fail.
ServerAliveInterval 30
Host pi1
    HostName 10.0.0.11
    Port 2201
    User pi
    IdentityFile /keys/pi1
    ProxyJump admin@bastion:2222
    ControlMaster auto
    HostKeyAlias pi1.rack
Host bastion
    HostName 192.0.2.1
    User jumper
Host *.lan
    HostName %h.example
Host direct
    ProxyJump none
Host *
    User fallback
";

    #[test]
    fn config_fills_what_the_inventory_leaves_default() {
        let c = config(CFG);
        let e = c.resolve_target(&target("pi1", "pi1")).unwrap();
        assert_eq!(e.host, "10.0.0.11");
        assert_eq!(e.port, 2201);
        assert_eq!(e.user, "pi");
        assert_eq!(e.identity_files, vec![PathBuf::from("/keys/pi1")]);
        assert_eq!(e.host_key_alias.as_deref(), Some("pi1.rack"));
        assert_eq!(
            e.jumps,
            vec![JumpSpec {
                user: Some("admin".into()),
                host: "bastion".into(),
                port: Some(2222)
            }]
        );
    }

    #[test]
    fn explicit_inventory_values_win() {
        let c = config(CFG);
        let mut t = target("pi1", "pi1");
        t.port = 2022;
        t.user = "ops".into();
        t.identity_files = vec![PathBuf::from("/inv/key")];
        let e = c.resolve_target(&t).unwrap();
        assert_eq!((e.port, e.user.as_str()), (2022, "ops"));
        assert_eq!(e.identity_files, vec![PathBuf::from("/inv/key")]);
        // HostName still applies: the address is an alias.
        assert_eq!(e.host, "10.0.0.11");
    }

    #[test]
    fn the_name_fills_gaps_when_the_address_has_no_block() {
        let c = config(CFG);
        let e = c.resolve_target(&target("pi1", "10.9.9.9")).unwrap();
        // `Host *` already gave a User for the address: first value wins.
        assert_eq!(e.user, "fallback");
        assert_eq!(e.port, 2201);
        assert_eq!(e.jumps.len(), 1);
        // The explicit address is dialled, and known_hosts uses it, not the name's alias.
        assert_eq!(e.host, "10.9.9.9");
        assert_eq!(e.host_key_alias, None);
    }

    #[test]
    fn wildcards_percent_h_none_and_no_file() {
        let c = config(CFG);
        assert_eq!(
            c.resolve_target(&target("x", "node.lan")).unwrap().host,
            "node.lan.example"
        );
        assert!(
            c.resolve_target(&target("d", "direct"))
                .unwrap()
                .jumps
                .is_empty()
        );
        let none = Config::load(Some(Path::new("/nonexistent/rpiprov/config")), "t").unwrap();
        let mut t = target("a", "10.1.1.1");
        t.user = "u".into();
        let e = none.resolve_target(&t).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("10.1.1.1", 22, "u")
        );
        assert!(e.jumps.is_empty() && e.identity_files.is_empty());
    }

    #[test]
    fn jump_hosts_use_their_own_block() {
        let c = config(CFG);
        let j = c
            .resolve_jump(&JumpSpec::parse("bastion").unwrap())
            .unwrap();
        assert_eq!(
            (j.host.as_str(), j.port, j.user.as_str()),
            ("192.0.2.1", 22, "jumper")
        );
        let j = c
            .resolve_jump(&JumpSpec::parse("admin@bastion:2222").unwrap())
            .unwrap();
        assert_eq!((j.port, j.user.as_str()), (2222, "admin"));
    }

    #[test]
    fn jump_specs() {
        let p = |s| JumpSpec::parse(s);
        assert_eq!(
            p("ssh://u@h:2").unwrap(),
            JumpSpec {
                user: Some("u".into()),
                host: "h".into(),
                port: Some(2)
            }
        );
        assert_eq!(p("[::1]:22").unwrap().host, "::1");
        assert_eq!(p("h").unwrap().port, None);
        assert!(p("h:notaport").is_none());
        assert!(p("@h").is_none());
        assert_eq!(p("u@[::1]:2200").unwrap().to_string(), "u@[::1]:2200");
    }

    #[test]
    fn a_broken_file_is_a_config_error() {
        let err = Config::parse(
            &mut "Host a\n  Port notanumber\n".as_bytes(),
            "pi1",
            Path::new("cfg"),
        )
        .unwrap_err();
        assert!(matches!(err, RemoteError::Config { .. }), "{err}");
    }

    /// Issue 18: the known_hosts files and hashing that ssh config chooses, per host.
    #[test]
    fn known_hosts_options() {
        let c = config(
            "Host a\n  UserKnownHostsFile /kh/one \"/kh/two\"\n  GlobalKnownHostsFile none\n  HashKnownHosts yes\n\
             Host b\n  UserKnownHostsFile ~/mine\n  GlobalKnownHostsFile /etc/rack_known_hosts\n\
             Host t\n  UserKnownHostsFile ~/.ssh/known_hosts_%h\n\
             Host *\n  HashKnownHosts no\n",
        );
        let a = c.resolve_target(&target("a", "a")).unwrap();
        assert_eq!(
            a.user_known_hosts,
            Some(vec![PathBuf::from("/kh/one"), PathBuf::from("/kh/two")])
        );
        assert_eq!(a.global_known_hosts, Some(Vec::new()));
        assert!(a.hash_known_hosts);
        let b = c.resolve_target(&target("b", "b")).unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(b.user_known_hosts, Some(vec![home.join("mine")]));
        assert_eq!(
            b.global_known_hosts,
            Some(vec![PathBuf::from("/etc/rack_known_hosts")])
        );
        assert!(!b.hash_known_hosts);
        let other = c.resolve_target(&target("x", "x")).unwrap();
        assert_eq!(
            (other.user_known_hosts, other.global_known_hosts),
            (None, None)
        );
        assert_eq!(
            c.resolve_target(&target("t", "t")).unwrap_err().to_string(),
            "t: ssh config: cfg: userknownhostsfile \"~/.ssh/known_hosts_%h\": rpiprov does not expand ssh's %-tokens or ${} variables; write the path out"
        );
    }
}
