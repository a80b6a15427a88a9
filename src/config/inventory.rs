//! The inventory file: its raw TOML shape, `[defaults]` merged into every `[[host]]`, and
//! the checks that turn it into an [`Inventory`]. No network I/O; the only file system
//! access is reading the file and looking whether named key and config files exist.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Diagnostic, Source};
use super::local::{self, Limit, Refused};
use super::model::{
    Advertise, Become, DockerSettings, Host, HostKeyPolicy, InstallMethod, Inventory,
    PasswordSource, Role, SshSettings, SwarmSettings,
};
use super::toml_file::{TomlFile, join_key};
use super::{duration, names, paths};

const DEFAULT_PORT: u16 = 22;
const DEFAULT_USER: &str = "pi";
const DEFAULT_PARALLEL: usize = 16;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    playbook: Option<Spanned<String>>,
    defaults: Option<Spanned<RawHost>>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
    ssh: Option<RawSsh>,
    swarm: Option<RawSwarm>,
}

/// One `[[host]]`, or `[defaults]` (where `name` and `address` are refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    identity_files: Option<Vec<Spanned<String>>>,
    role: Option<Spanned<String>>,
    labels: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(rename = "become")]
    become_: Option<Spanned<String>>,
    become_password: Option<Spanned<toml::Value>>,
    password_auth: Option<Spanned<bool>>,
    advertise: Option<Spanned<String>>,
    docker: Option<RawDocker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    install: Option<Spanned<toml::Value>>,
    daemon: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    known_hosts: Option<Spanned<String>>,
    host_key_policy: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    command_timeout: Option<Spanned<String>>,
    reconnect_timeout: Option<Spanned<String>>,
    config: Option<Spanned<toml::Value>>,
    parallel: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwarm {
    default_addr_pool: Option<Spanned<String>>,
}

/// Host settings from one table, each already checked where it is written, so that an
/// error in `[defaults]` is reported once and not once per host.
#[derive(Debug, Default, Clone)]
struct Settings {
    port: Option<u16>,
    user: Option<String>,
    identity_files: Option<Vec<PathBuf>>,
    role: Option<Role>,
    labels: BTreeMap<String, String>,
    sudo: Option<bool>,
    password: Option<PasswordSource>,
    password_auth: Option<bool>,
    advertise: Option<Advertise>,
    install: Option<InstallMethod>,
    daemon: serde_json::Map<String, serde_json::Value>,
    /// `role` was written, valid or not: a wrong role is reported once, not also as missing.
    role_written: bool,
}

impl Settings {
    /// `self` (a host) over `defaults`: scalar values of the host win; `labels` and
    /// `docker.daemon` are merged key by key, the host's value winning.
    fn over(self, defaults: &Settings) -> Settings {
        let mut labels = defaults.labels.clone();
        labels.extend(self.labels);
        let mut daemon = defaults.daemon.clone();
        daemon.extend(self.daemon);
        Settings {
            port: self.port.or(defaults.port),
            user: self.user.or_else(|| defaults.user.clone()),
            identity_files: self
                .identity_files
                .or_else(|| defaults.identity_files.clone()),
            role: self.role.or(defaults.role),
            labels,
            sudo: self.sudo.or(defaults.sudo),
            password: self.password.or_else(|| defaults.password.clone()),
            password_auth: self.password_auth.or(defaults.password_auth),
            advertise: self.advertise.or_else(|| defaults.advertise.clone()),
            install: self.install.or_else(|| defaults.install.clone()),
            daemon,
            role_written: self.role_written || defaults.role_written,
        }
    }
}

/// The inventory, and the playbook it names (already resolved), when it could be read.
pub(crate) struct InventoryOutcome {
    pub inventory: Option<Inventory>,
    pub playbook: Option<PathBuf>,
    /// Where `playbook` is written, to report an unreadable playbook there.
    pub playbook_at: Option<Diagnostic>,
}

pub(crate) fn load(
    path: &Path,
    home: Option<&Path>,
    diags: &mut Vec<Diagnostic>,
) -> InventoryOutcome {
    let nothing = InventoryOutcome {
        inventory: None,
        playbook: None,
        playbook_at: None,
    };
    let src = match Source::read(path) {
        Ok(src) => src,
        Err(mut d) => {
            d.message.push_str(" (use -i FILE)");
            diags.push(d);
            return nothing;
        }
    };
    let Some(file) = TomlFile::parse(&src, diags) else {
        return nothing;
    };
    let Some(raw) = file.deserialize::<RawInventory>(diags) else {
        return nothing;
    };
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let ctx = Ctx {
        file: &file,
        base: paths::folder_of(path),
        home,
    };

    let playbook = raw.playbook.as_ref().and_then(|p| {
        if p.get_ref().is_empty() {
            diags.push(file.error(&p.span(), "must not be empty"));
            return None;
        }
        ctx.path(p, diags)
    });

    let defaults = match &raw.defaults {
        Some(d) => {
            for (key, value) in [
                ("name", &d.get_ref().name),
                ("address", &d.get_ref().address),
            ] {
                if let Some(v) = value {
                    diags.push(file.error(
                        &v.span(),
                        format!("\"{key}\" belongs in each [[host]], not in [defaults]"),
                    ));
                }
            }
            ctx.settings(d.get_ref(), diags)
        }
        None => Settings::default(),
    };

    let mut hosts = Vec::new();
    for raw_host in &raw.host {
        if let Some(host) = ctx.host(raw_host, &defaults, diags) {
            hosts.push(host);
        }
    }
    check_fleet(&file, &raw, &hosts, diags);

    let ssh = ctx.ssh(raw.ssh.as_ref(), diags);
    let swarm = SwarmSettings {
        default_addr_pool: raw
            .swarm
            .as_ref()
            .and_then(|s| s.default_addr_pool.as_ref())
            .and_then(|p| match names::cidr(p.get_ref()) {
                Ok(()) => Some(p.get_ref().clone()),
                Err(e) => {
                    diags.push(file.error(&p.span(), e));
                    None
                }
            }),
    };

    let errors_after = diags.iter().filter(|d| d.is_error()).count();
    let inventory = (errors_after == errors_before).then(|| Inventory {
        path: path.to_path_buf(),
        hosts,
        ssh,
        swarm,
        playbook: playbook.clone(),
    });
    InventoryOutcome {
        inventory,
        playbook,
        playbook_at: raw.playbook.as_ref().map(|p| file.error(&p.span(), "")),
    }
}

/// Fleet-wide rules: hosts exist, at least one manager, names and endpoints unique.
fn check_fleet(
    file: &TomlFile<'_>,
    raw: &RawInventory,
    hosts: &[Host],
    diags: &mut Vec<Diagnostic>,
) {
    if raw.host.is_empty() {
        diags.push(file.src.at(
            super::diag::Severity::Error,
            None,
            "host",
            "no hosts: add at least one [[host]] table",
        ));
        return;
    }
    let every_host_parsed = hosts.len() == raw.host.len();
    if every_host_parsed && !hosts.iter().any(|h| h.role == Role::Manager) {
        diags.push(file.src.at(
            super::diag::Severity::Error,
            None,
            "host",
            "no host has role = \"manager\"; a swarm needs at least one manager",
        ));
    }
    // Raft needs a majority of the managers: an even number tolerates no more managers
    // down than one fewer would, and a split in two halves leaves neither with quorum.
    let managers = hosts.iter().filter(|h| h.role == Role::Manager).count();
    if every_host_parsed && managers >= 2 && managers % 2 == 0 {
        let down = (managers - 1) / 2;
        diags.push(file.src.at(
            super::diag::Severity::Warning,
            None,
            "host",
            format!(
                "{managers} managers: the swarm keeps quorum with {down} of them down, no more than with {} managers, and a split into two halves stops both; make it {} or {}",
                managers - 1,
                managers - 1,
                managers + 1
            ),
        ));
    }
    let default_port = raw
        .defaults
        .as_ref()
        .and_then(|d| d.get_ref().port.as_ref())
        .and_then(|p| u16::try_from(*p.get_ref()).ok());
    let mut by_name: HashMap<&str, String> = HashMap::new();
    let mut by_endpoint: HashMap<(String, u16), String> = HashMap::new();
    // Raw values, so that a host with another error is still compared with the others.
    // The path of the i-th `[[host]]` is `host[i]`: naming it from its span would walk
    // the whole file for each host (quadratic: 8,000 hosts took minutes).
    for (i, raw_host) in raw.host.iter().enumerate() {
        let here = format!("host[{i}]");
        let r = raw_host.get_ref();
        if let Some(name) = &r.name {
            if let Some(first) = by_name.get(name.get_ref().as_str()) {
                diags.push(file.error(
                    &name.span(),
                    format!(
                        "duplicate host name \"{}\" (first in {first})",
                        name.get_ref()
                    ),
                ));
            } else {
                by_name.insert(name.get_ref(), here.clone());
            }
        }
        if let Some(address) = &r.address {
            let port = r
                .port
                .as_ref()
                .and_then(|p| u16::try_from(*p.get_ref()).ok())
                .or(default_port)
                .unwrap_or(DEFAULT_PORT);
            let endpoint = (address.get_ref().to_ascii_lowercase(), port);
            if let Some(first) = by_endpoint.get(&endpoint) {
                diags.push(file.error(
                    &address.span(),
                    format!(
                        "duplicate address {}:{port} (first in {first})",
                        address.get_ref()
                    ),
                ));
            } else {
                by_endpoint.insert(endpoint, here);
            }
        }
    }
}

struct Ctx<'f, 'a> {
    file: &'f TomlFile<'a>,
    base: PathBuf,
    home: Option<&'f Path>,
}

impl Ctx<'_, '_> {
    fn err(&self, span: &Range<usize>, message: impl Into<String>, diags: &mut Vec<Diagnostic>) {
        diags.push(self.file.error(span, message));
    }

    fn path(&self, p: &Spanned<String>, diags: &mut Vec<Diagnostic>) -> Option<PathBuf> {
        match paths::resolve(p.get_ref(), &self.base, self.home) {
            Ok(path) => Some(path),
            Err(e) => {
                self.err(&p.span(), e, diags);
                None
            }
        }
    }

    fn host(
        &self,
        raw: &Spanned<RawHost>,
        defaults: &Settings,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Host> {
        let span = raw.span();
        let r = raw.get_ref();
        let mut ok = true;
        let name = match &r.name {
            None => {
                diags.push(self.file.missing(&span, "name", "required key is missing"));
                ok = false;
                String::new()
            }
            Some(n) => {
                if let Err(e) = names::host_name(n.get_ref()) {
                    self.err(&n.span(), e, diags);
                    ok = false;
                }
                n.get_ref().clone()
            }
        };
        let address = match &r.address {
            None => {
                diags.push(
                    self.file
                        .missing(&span, "address", "required key is missing"),
                );
                ok = false;
                String::new()
            }
            Some(a) => {
                if let Err(e) = names::address(a.get_ref()) {
                    self.err(&a.span(), e, diags);
                    ok = false;
                }
                a.get_ref().clone()
            }
        };
        let errors = diags.len();
        let own = self.settings(r, diags);
        ok &= diags[errors..].iter().all(|d| !d.is_error());
        let s = own.over(defaults);
        let Some(role) = s.role else {
            if s.role_written {
                return None;
            }
            diags.push(self.file.missing(
                &span,
                "role",
                "required key is missing (set \"manager\" or \"worker\" here or in [defaults])",
            ));
            return None;
        };
        if !ok {
            return None;
        }
        let user = s.user.unwrap_or_else(|| DEFAULT_USER.to_string());
        let sudo = s.sudo.unwrap_or(user != "root");
        Some(Host {
            name,
            address,
            port: s.port.unwrap_or(DEFAULT_PORT),
            user,
            identity_files: s.identity_files.unwrap_or_default(),
            role,
            labels: s.labels,
            become_: Become {
                sudo,
                password: s.password.unwrap_or(PasswordSource::None),
            },
            docker: DockerSettings {
                install: s.install.unwrap_or(InstallMethod::Distro),
                daemon: s.daemon,
            },
            advertise: s.advertise.unwrap_or(Advertise::Reach),
            password_auth: s.password_auth.unwrap_or(false),
        })
    }

    /// Checks every setting of one `[[host]]` or `[defaults]` table where it is written.
    fn settings(&self, r: &RawHost, diags: &mut Vec<Diagnostic>) -> Settings {
        let mut s = Settings::default();
        if let Some(p) = &r.port {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => s.port = Some(port),
                _ => self.err(&p.span(), "expected a port number from 1 to 65535", diags),
            }
        }
        if let Some(u) = &r.user {
            match names::user_name(u.get_ref()) {
                Ok(()) => s.user = Some(u.get_ref().clone()),
                Err(e) => self.err(&u.span(), e, diags),
            }
        }
        if let Some(files) = &r.identity_files {
            let mut resolved = Vec::new();
            for f in files {
                let Some(path) = self.path(f, diags) else {
                    continue;
                };
                // A key file rpiprov would read: a regular file of a key's size.
                match local::open(&path, Limit::Key) {
                    Ok(_) => {}
                    Err(Refused::Missing) => diags.push(
                        self.file
                            .warning(&f.span(), format!("no such file: {}", path.display())),
                    ),
                    Err(e) => self.err(&f.span(), format!("{}: {e}", path.display()), diags),
                }
                resolved.push(path);
            }
            s.identity_files = Some(resolved);
        }
        if let Some(role) = &r.role {
            s.role_written = true;
            match role.get_ref().as_str() {
                "manager" => s.role = Some(Role::Manager),
                "worker" => s.role = Some(Role::Worker),
                _ => self.err(&role.span(), "expected \"manager\" or \"worker\"", diags),
            }
        }
        for (k, v) in r.labels.iter().flatten() {
            let key_ok = names::label_key(k.get_ref()).map_err(|e| self.err(&k.span(), e, diags));
            let value_ok =
                names::label_value(v.get_ref()).map_err(|e| self.err(&v.span(), e, diags));
            if key_ok.is_ok() && value_ok.is_ok() {
                s.labels.insert(k.get_ref().clone(), v.get_ref().clone());
            }
        }
        if let Some(b) = &r.become_ {
            match b.get_ref().as_str() {
                "sudo" => s.sudo = Some(true),
                "none" => s.sudo = Some(false),
                _ => self.err(&b.span(), "expected \"sudo\" or \"none\"", diags),
            }
        }
        if let Some(p) = &r.become_password {
            s.password = self.password(p, diags);
        }
        s.password_auth = r.password_auth.as_ref().map(|p| *p.get_ref());
        if let Some(a) = &r.advertise {
            let text = a.get_ref();
            if text == "reach" {
                s.advertise = Some(Advertise::Reach);
            } else if let Ok(ip) = text.parse::<IpAddr>() {
                s.advertise = Some(Advertise::Address(ip));
            } else if names::interface_name(text) {
                s.advertise = Some(Advertise::Interface(text.clone()));
            } else {
                self.err(
                    &a.span(),
                    "expected \"reach\", an IP address or an interface name like \"eth0\"",
                    diags,
                );
            }
        }
        if let Some(docker) = &r.docker {
            if let Some(i) = &docker.install {
                s.install = self.install(i, diags);
            }
            if let Some(d) = &docker.daemon {
                match to_json_object(d.get_ref(), "") {
                    Ok(map) => {
                        if let Some(why) = open_api(&map) {
                            diags.push(self.file.warning(&d.span(), why));
                        }
                        s.daemon = map;
                    }
                    Err(e) => self.err(&d.span(), e, diags),
                }
            }
        }
        s
    }

    fn password(
        &self,
        p: &Spanned<toml::Value>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<PasswordSource> {
        let expected = "expected \"prompt\", \"none\" or { env = \"VAR\" }";
        match p.get_ref() {
            toml::Value::String(s) if s == "prompt" => Some(PasswordSource::Prompt),
            toml::Value::String(s) if s == "none" => Some(PasswordSource::None),
            toml::Value::String(_) => {
                self.err(
                    &p.span(),
                    "a password must not be written in the inventory: use become_password = \"prompt\" or { env = \"VAR\" }",
                    diags,
                );
                None
            }
            toml::Value::Table(t) => match (t.get("env"), t.len()) {
                (Some(toml::Value::String(var)), 1) => match names::variable_name(var) {
                    Ok(()) => Some(PasswordSource::Env(var.clone())),
                    Err(e) => {
                        self.err(&p.span(), e, diags);
                        None
                    }
                },
                _ => {
                    self.err(&p.span(), expected, diags);
                    None
                }
            },
            _ => {
                self.err(&p.span(), expected, diags);
                None
            }
        }
    }

    fn install(
        &self,
        i: &Spanned<toml::Value>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<InstallMethod> {
        match i.get_ref() {
            toml::Value::String(s) if s == "distro" => return Some(InstallMethod::Distro),
            toml::Value::String(s) if s == "get-docker" => return Some(InstallMethod::GetDocker),
            toml::Value::String(s) if s == "skip" => return Some(InstallMethod::Skip),
            toml::Value::Table(t) if t.len() == 1 => {
                if let Some(toml::Value::String(cmd)) = t.get("command") {
                    if cmd.trim().is_empty() {
                        self.err(&i.span(), "the install command must not be empty", diags);
                        return None;
                    }
                    return Some(InstallMethod::Command(cmd.clone()));
                }
            }
            _ => {}
        }
        self.err(
            &i.span(),
            "expected \"distro\", \"get-docker\", \"skip\" or { command = \"...\" }",
            diags,
        );
        None
    }

    fn ssh(&self, raw: Option<&RawSsh>, diags: &mut Vec<Diagnostic>) -> SshSettings {
        let default_known_hosts = self
            .home
            .map(|h| h.join(".ssh/known_hosts"))
            .unwrap_or_else(|| PathBuf::from(".ssh/known_hosts"));
        let default_config = self
            .home
            .map(|h| h.join(".ssh/config"))
            .filter(|p| p.is_file());
        let mut ssh = SshSettings {
            known_hosts: default_known_hosts,
            known_hosts_explicit: false,
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            config_file: default_config,
            parallel: DEFAULT_PARALLEL,
        };
        let Some(raw) = raw else { return ssh };
        if let Some(p) = &raw.host_key_policy {
            match p.get_ref().as_str() {
                "strict" => ssh.host_key_policy = HostKeyPolicy::Strict,
                "accept-new" => ssh.host_key_policy = HostKeyPolicy::AcceptNew,
                _ => self.err(&p.span(), "expected \"strict\" or \"accept-new\"", diags),
            }
        }
        if let Some(k) = &raw.known_hosts
            && let Some(p) = self.path(k, diags)
        {
            if paths::names_authorized_keys(&p) {
                self.err(
                    &k.span(),
                    format!(
                        "{} names an authorized_keys file (sshd's list of keys that may log in), not a known_hosts file: rpiprov never reads host keys from it nor adds keys to it",
                        p.display()
                    ),
                    diags,
                );
            } else {
                self.warn_if_foreign(
                    &k.span(),
                    &p,
                    "rpiprov checks host keys against it and, with --host-key-policy accept-new, adds keys to it",
                    diags,
                );
                self.warn_if_link(&k.span(), &p, ssh.host_key_policy, diags);
            }
            ssh.known_hosts = p;
            ssh.known_hosts_explicit = true;
        }
        for (raw_value, slot) in [
            (&raw.connect_timeout, &mut ssh.connect_timeout),
            (&raw.command_timeout, &mut ssh.command_timeout),
            (&raw.reconnect_timeout, &mut ssh.reconnect_timeout),
        ] {
            if let Some(t) = raw_value {
                match duration::parse(t.get_ref()) {
                    Ok(d) => *slot = d,
                    Err(e) => self.err(&t.span(), e, diags),
                }
            }
        }
        if let Some(c) = &raw.config {
            match c.get_ref() {
                toml::Value::Boolean(false) => ssh.config_file = None,
                toml::Value::Boolean(true) => {}
                toml::Value::String(s) if s == "none" => ssh.config_file = None,
                toml::Value::String(s) if !s.is_empty() => {
                    let text = Spanned::new(c.span(), s.clone());
                    if let Some(p) = self.path(&text, diags) {
                        if p.is_file() {
                            self.warn_if_foreign(
                                &c.span(),
                                &p,
                                "rpiprov takes host names, ports, users, keys and jump hosts from it",
                                diags,
                            );
                            ssh.config_file = Some(p);
                        } else {
                            self.err(&c.span(), format!("no such file: {}", p.display()), diags);
                        }
                    }
                }
                _ => self.err(&c.span(), "expected a file path, false or \"none\"", diags),
            }
        }
        if let Some(p) = &raw.parallel {
            match usize::try_from(*p.get_ref()) {
                Ok(n) if n >= 1 => ssh.parallel = n,
                _ => self.err(&p.span(), "expected a number of hosts, at least 1", diags),
            }
        }
        ssh
    }

    /// Warns when an SSH file the inventory names lies outside the inventory's folder and
    /// `~/.ssh`: a borrowed inventory could otherwise make rpiprov read, or append to, any
    /// file of the user's (symlinks are followed for the check).
    fn warn_if_foreign(
        &self,
        span: &Range<usize>,
        path: &Path,
        use_: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        let real = real_path(path);
        let trusted = std::iter::once(self.base.clone())
            .chain(self.home.map(|h| h.join(".ssh")))
            .any(|folder| real.starts_with(real_path(&folder)));
        if !trusted {
            diags.push(self.file.warning(
                span,
                format!(
                    "{} is outside this inventory's folder and ~/.ssh: {use_}; make sure you trust this inventory",
                    path.display()
                ),
            ));
        }
    }
}

impl Ctx<'_, '_> {
    /// Warns when known_hosts is a symbolic link that accept-new would not write through:
    /// dangling (nothing to read, and rpiprov never creates a file through a link), or
    /// any link when the inventory asks for accept-new.
    fn warn_if_link(
        &self,
        span: &Range<usize>,
        path: &Path,
        policy: HostKeyPolicy,
        diags: &mut Vec<Diagnostic>,
    ) {
        let Ok(target) = std::fs::read_link(path) else {
            return;
        };
        let message = if !path.exists() {
            format!(
                "{} is a symbolic link to {}, which does not exist: rpiprov finds no host keys there, and never creates a file through a link (accept-new cannot record keys)",
                path.display(),
                target.display()
            )
        } else if policy == HostKeyPolicy::AcceptNew {
            format!(
                "{} is a symbolic link to {}: rpiprov reads host keys through it, but adds keys only to a file it opens itself, never through a link (accept-new cannot record keys); name the file itself",
                path.display(),
                target.display()
            )
        } else {
            return;
        };
        diags.push(self.file.warning(span, message));
    }
}

/// `path` made absolute, with symlinks resolved as far as it exists (a known_hosts file
/// may not exist yet).
fn real_path(path: &Path) -> PathBuf {
    let abs = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return paths::normalize(&real.join(rest.into_iter().rev().collect::<PathBuf>()));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return paths::normalize(&abs),
        }
    }
}

/// Whether daemon.json's `hosts` makes Docker listen on TCP without verifying its
/// clients' certificates (`tlsverify`): whoever reaches that port drives the daemon, which
/// is root on the Pi (dockerd(8), "Daemon socket option"). Says why, naming the address.
fn open_api(daemon: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let tcp: Vec<&str> = daemon
        .get("hosts")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .filter(|h| h.starts_with("tcp://") || h.starts_with("tcp:"))
        .collect();
    let verified = daemon.get("tlsverify") == Some(&serde_json::Value::Bool(true));
    let first = tcp.first()?;
    if verified {
        return None;
    }
    Some(format!(
        "hosts: {first} opens Docker's Engine API on the network without TLS client verification: whoever reaches the port is root on the Pi; set tlsverify = true with tlscacert, tlscert and tlskey, or keep to the unix socket (rpiprov needs no TCP socket)"
    ))
}

/// `docker.daemon` is written to daemon.json; TOML dates and non-finite floats have no
/// JSON form.
fn to_json_object(
    table: &toml::Table,
    prefix: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut map = serde_json::Map::new();
    for (key, value) in table {
        let path = join_key(prefix, key);
        map.insert(key.clone(), to_json(value, &path)?);
    }
    Ok(map)
}

fn to_json(value: &toml::Value, path: &str) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{path}: {f} has no JSON form"))?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(_) => return Err(format!("{path}: a date has no JSON form")),
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => serde_json::Value::Object(to_json_object(t, path)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Severity, load_with_home};

    /// Writes `text` as `inventory.toml` in a new folder and loads it with `~` = that
    /// folder's `home`.
    fn load_text(text: &str) -> (tempfile::TempDir, Result<Inventory, Vec<String>>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let path = dir.path().join("inventory.toml");
        std::fs::write(&path, text).unwrap();
        let home = dir.path().join("home");
        let result = load_with_home(&path, None, Some(&home))
            .map(|l| l.inventory)
            .map_err(|diags| {
                diags
                    .iter()
                    .map(|d| {
                        let line = d
                            .line
                            .map(|l| format!("{l}:{}: ", d.column.unwrap_or(0)))
                            .unwrap_or_default();
                        format!("{line}{}: {}", d.key_path, d.message)
                    })
                    .collect()
            });
        (dir, result)
    }

    fn errors(text: &str) -> Vec<String> {
        load_text(text).1.expect_err("expected errors")
    }

    const HOST: &str =
        "[[host]]\nname = \"pi1\"\naddress = \"198.18.255.254\"\nrole = \"manager\"\n";

    #[test]
    fn defaults_are_merged_into_every_host_and_host_values_win() {
        let (dir, inv) = load_text(
            r#"
[defaults]
user = "admin"
port = 2222
role = "worker"
labels = { rack = "r1", shelf = "1" }
become_password = "prompt"
identity_files = ["~/.ssh/id_ed25519"]

[defaults.docker]
install = "get-docker"
daemon = { "insecure-registries" = ["10.0.0.1:5000"], "log-level" = "warn" }

[[host]]
name = "pi1"
address = "198.18.255.254"
role = "manager"
port = 22
labels = { shelf = "2" }
docker = { daemon = { "log-level" = "debug" } }

[[host]]
name = "pi2"
address = "198.18.255.253"
"#,
        );
        let inv = inv.unwrap();
        let home = dir.path().join("home");
        let (pi1, pi2) = (&inv.hosts[0], &inv.hosts[1]);
        assert_eq!(
            (pi1.role, pi1.port, pi1.user.as_str()),
            (Role::Manager, 22, "admin")
        );
        assert_eq!(
            (pi2.role, pi2.port, pi2.user.as_str()),
            (Role::Worker, 2222, "admin")
        );
        assert_eq!(
            pi1.labels,
            BTreeMap::from([("rack".into(), "r1".into()), ("shelf".into(), "2".into())])
        );
        assert_eq!(pi2.labels["shelf"], "1");
        assert_eq!(pi1.identity_files, [home.join(".ssh/id_ed25519")]);
        assert_eq!(
            pi2.become_,
            Become {
                sudo: true,
                password: PasswordSource::Prompt
            }
        );
        assert_eq!(pi1.docker.install, InstallMethod::GetDocker);
        assert_eq!(
            serde_json::Value::Object(pi1.docker.daemon.clone()),
            serde_json::json!({ "insecure-registries": ["10.0.0.1:5000"], "log-level": "debug" })
        );
        assert_eq!(pi2.docker.daemon["log-level"], "warn");
    }

    #[test]
    fn built_in_defaults() {
        let (dir, inv) = load_text(HOST);
        let inv = inv.unwrap();
        let h = &inv.hosts[0];
        assert_eq!(
            (h.port, h.user.as_str(), h.password_auth),
            (22, "pi", false)
        );
        assert!(h.identity_files.is_empty());
        assert_eq!(
            h.become_,
            Become {
                sudo: true,
                password: PasswordSource::None
            }
        );
        assert_eq!(h.advertise, Advertise::Reach);
        assert_eq!(h.docker.install, InstallMethod::Distro);
        assert!(h.docker.daemon.is_empty());
        let ssh = &inv.ssh;
        assert_eq!(ssh.known_hosts, dir.path().join("home/.ssh/known_hosts"));
        assert_eq!(ssh.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(ssh.connect_timeout, Duration::from_secs(10));
        assert_eq!(ssh.command_timeout, Duration::from_secs(600));
        assert_eq!(ssh.reconnect_timeout, Duration::from_secs(30));
        // No ~/.ssh/config in this home: none is used.
        assert_eq!(ssh.config_file, None);
        assert_eq!(ssh.parallel, 16);
        assert_eq!(inv.swarm.default_addr_pool, None);
        assert_eq!(inv.playbook, None);
    }

    #[test]
    fn root_needs_no_sudo() {
        let (_dir, inv) = load_text(&format!("{HOST}user = \"root\"\n"));
        assert!(!inv.unwrap().hosts[0].become_.sudo);
    }

    #[test]
    fn explicit_settings() {
        let (dir, inv) = load_text(&format!(
            r#"
[ssh]
known_hosts = "lab/known_hosts"
host_key_policy = "accept-new"
connect_timeout = "3s"
command_timeout = "1h"
reconnect_timeout = "2m"
config = "none"
parallel = 4
[swarm]
default_addr_pool = "198.18.0.0/15"
{HOST}become = "none"
become_password = {{ env = "PI_SUDO" }}
advertise = "eth0"
password_auth = true
docker = {{ install = {{ command = "apk add docker" }} }}
"#
        ));
        let inv = inv.unwrap();
        assert_eq!(inv.ssh.known_hosts, dir.path().join("lab/known_hosts"));
        assert_eq!(inv.ssh.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(inv.ssh.connect_timeout, Duration::from_secs(3));
        assert_eq!(inv.ssh.command_timeout, Duration::from_secs(3600));
        assert_eq!(inv.ssh.reconnect_timeout, Duration::from_secs(120));
        assert_eq!(inv.ssh.config_file, None);
        assert_eq!(inv.ssh.parallel, 4);
        assert_eq!(
            inv.swarm.default_addr_pool.as_deref(),
            Some("198.18.0.0/15")
        );
        let h = &inv.hosts[0];
        assert_eq!(
            h.become_,
            Become {
                sudo: false,
                password: PasswordSource::Env("PI_SUDO".into())
            }
        );
        assert_eq!(h.advertise, Advertise::Interface("eth0".into()));
        assert!(h.password_auth);
        assert_eq!(
            h.docker.install,
            InstallMethod::Command("apk add docker".into())
        );

        let (_dir, inv) = load_text(&format!(
            "{HOST}advertise = \"10.0.0.7\"\ndocker = {{ install = \"skip\" }}\n"
        ));
        let h = &inv.unwrap().hosts[0];
        assert_eq!(h.advertise, Advertise::Address("10.0.0.7".parse().unwrap()));
        assert_eq!(h.docker.install, InstallMethod::Skip);
    }

    #[test]
    fn ssh_config_default_and_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/config"), "").unwrap();
        let path = dir.path().join("inventory.toml");
        std::fs::write(&path, HOST).unwrap();
        let inv = load_with_home(&path, None, Some(&home)).unwrap().inventory;
        assert_eq!(inv.ssh.config_file, Some(home.join(".ssh/config")));
        std::fs::write(&path, format!("[ssh]\nconfig = false\n{HOST}")).unwrap();
        let inv = load_with_home(&path, None, Some(&home)).unwrap().inventory;
        assert_eq!(inv.ssh.config_file, None);
    }

    /// Issue 9, item 3: a symlink in the inventory's folder does not make a file elsewhere
    /// count as inside it; `~/.ssh` and the folder itself are fine.
    #[test]
    fn ssh_files_behind_a_symlink_are_outside() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("link")).unwrap();
        let path = dir.path().join("inventory.toml");
        let warnings = |ssh: &str| -> Vec<String> {
            std::fs::write(&path, format!("[ssh]\n{ssh}\n{HOST}")).unwrap();
            load_with_home(&path, None, Some(&home))
                .unwrap()
                .warnings
                .iter()
                .map(|d| format!("{}: {}", d.key_path, d.message))
                .collect()
        };
        assert_eq!(
            warnings("known_hosts = \"link/known_hosts\""),
            [format!(
                "ssh.known_hosts: {}/link/known_hosts is outside this inventory's folder and ~/.ssh: rpiprov checks host keys against it and, with --host-key-policy accept-new, adds keys to it; make sure you trust this inventory",
                dir.path().display()
            )]
        );
        assert!(warnings("known_hosts = \"~/.ssh/known_hosts\"").is_empty());
        assert!(warnings("known_hosts = \"lab/new/known_hosts\"").is_empty());
    }

    #[test]
    fn each_error_message() {
        let cases: &[(&str, &str)] = &[
            (
                "port = 0",
                "5:8: host[0].port: expected a port number from 1 to 65535",
            ),
            (
                "user = \"p i\"",
                "5:8: host[0].user: invalid user name \"p i\": use letters, digits, '-', '_' and '.', starting with a letter or '_'",
            ),
            (
                "become = \"doas\"",
                "5:10: host[0].become: expected \"sudo\" or \"none\"",
            ),
            (
                "become_password = \"pw\"",
                "5:19: host[0].become_password: a password must not be written in the inventory: use become_password = \"prompt\" or { env = \"VAR\" }",
            ),
            (
                "become_password = { file = \"x\" }",
                "5:19: host[0].become_password: expected \"prompt\", \"none\" or { env = \"VAR\" }",
            ),
            (
                "become_password = { env = \"1X\" }",
                "5:19: host[0].become_password: invalid variable name \"1X\": use letters, digits and '_', not starting with a digit",
            ),
            (
                "advertise = \"eth 0\"",
                "5:13: host[0].advertise: expected \"reach\", an IP address or an interface name like \"eth0\"",
            ),
            (
                "docker = { install = \"apt\" }",
                "5:22: host[0].docker.install: expected \"distro\", \"get-docker\", \"skip\" or { command = \"...\" }",
            ),
            (
                "docker = { install = { command = \" \" } }",
                "5:22: host[0].docker.install: the install command must not be empty",
            ),
            (
                "docker = { daemon = { a = [1979-05-27] } }",
                "5:21: host[0].docker.daemon: a[0]: a date has no JSON form",
            ),
            (
                "identity_files = [\"~bob/key\"]",
                "5:19: host[0].identity_files[0]: cannot expand \"~bob/key\": only \"~/\" (your own home) is supported",
            ),
            (
                "address2 = \"x\"",
                "5:1: host[0].address2: unknown key, expected one of: name, address, port, user, identity_files, role, labels, become, become_password, password_auth, advertise, docker",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(errors(&format!("{HOST}{line}\n")), [*expected], "{line}");
        }
    }

    #[test]
    fn host_level_errors() {
        assert_eq!(
            errors("[[host]]\nrole = \"manager\"\n"),
            [
                "1:1: host[0].name: required key is missing",
                "1:1: host[0].address: required key is missing",
            ]
        );
        assert_eq!(
            errors("[[host]]\nname = \"pi 1\"\naddress = \"a b\"\nrole = \"manager\"\n"),
            [
                "2:8: host[0].name: invalid host name \"pi 1\": use letters, digits, '-', '_' and '.', starting with a letter or digit",
                "3:11: host[0].address: invalid address \"a b\": expected an IP address or a host name",
            ]
        );
        assert_eq!(
            errors("playbook = \"\"\n"),
            [
                "host: no hosts: add at least one [[host]] table",
                "1:12: playbook: must not be empty"
            ]
        );
        let (dir, result) = load_text(&format!("playbook = \"pb.toml\"\n{HOST}"));
        assert_eq!(
            result.unwrap_err(),
            [format!(
                "1:12: playbook: {}: cannot read: No such file or directory",
                dir.path().join("pb.toml").display()
            )]
        );
        assert_eq!(
            errors(&format!("[defaults]\naddress = \"x\"\n{HOST}")),
            ["2:11: defaults.address: \"address\" belongs in each [[host]], not in [defaults]"]
        );
        assert_eq!(
            errors(&format!(
                "[ssh]\nhost_key_policy = \"tofu\"\nconfig = 1\nparallel = -1\n{HOST}"
            )),
            [
                "2:19: ssh.host_key_policy: expected \"strict\" or \"accept-new\"",
                "3:10: ssh.config: expected a file path, false or \"none\"",
                "4:12: ssh.parallel: expected a number of hosts, at least 1",
            ]
        );
    }

    #[test]
    fn an_even_number_of_managers_is_a_warning() {
        let two = "[[host]]\nname = \"pi1\"\naddress = \"a\"\nrole = \"manager\"\n\
                   [[host]]\nname = \"pi2\"\naddress = \"b\"\nrole = \"manager\"\n";
        let load = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("inventory.toml");
            std::fs::write(&path, text).unwrap();
            load_with_home(&path, None, None).unwrap()
        };
        let loaded = load(two);
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.warnings[0].key_path, "host");
        assert_eq!(
            loaded.warnings[0].message,
            "2 managers: the swarm keeps quorum with 0 of them down, no more than with 1 managers, and a split into two halves stops both; make it 1 or 3"
        );
        let three = format!("{two}[[host]]\nname = \"pi3\"\naddress = \"c\"\nrole = \"manager\"\n");
        assert!(load(&three).warnings.is_empty());
    }

    /// Issue 18: Docker's API on TCP without client verification is a warning, naming
    /// the address and the risk; with tlsverify it is not.
    #[test]
    fn docker_s_api_open_to_the_network_is_a_warning() {
        let load = |daemon: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("inventory.toml");
            std::fs::write(&path, format!("{HOST}docker = {{ daemon = {daemon} }}\n")).unwrap();
            load_with_home(&path, None, None)
                .unwrap()
                .warnings
                .iter()
                .map(|d| format!("{}: {}", d.key_path, d.message))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            load(r#"{ hosts = ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"] }"#),
            [
                "host[0].docker.daemon: hosts: tcp://0.0.0.0:2375 opens Docker's Engine API on the network without TLS client verification: whoever reaches the port is root on the Pi; set tlsverify = true with tlscacert, tlscert and tlskey, or keep to the unix socket (rpiprov needs no TCP socket)"
            ]
        );
        assert_eq!(
            load(r#"{ hosts = ["tcp://0.0.0.0:2376"], tls = true }"#).len(),
            1
        );
        assert!(load(r#"{ hosts = ["tcp://0.0.0.0:2376"], tlsverify = true }"#).is_empty());
        assert!(load(r#"{ hosts = ["unix:///var/run/docker.sock"] }"#).is_empty());
    }

    #[test]
    fn a_missing_identity_file_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.toml");
        std::fs::write(&path, format!("{HOST}identity_files = [\"keys/pi\"]\n")).unwrap();
        let loaded = load_with_home(&path, None, None).unwrap();
        assert_eq!(
            loaded.inventory.hosts[0].identity_files,
            [dir.path().join("keys/pi")]
        );
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.warnings[0].severity, Severity::Warning);
        assert_eq!(loaded.warnings[0].key_path, "host[0].identity_files[0]");
        assert_eq!(
            loaded.warnings[0].message,
            format!("no such file: {}", dir.path().join("keys/pi").display())
        );
    }
}
