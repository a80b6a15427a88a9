//! The validated inventory and playbook: what every command works from once `config` has
//! parsed and checked the files. Nothing here does I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// A host's role in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

/// Where the sudo password comes from. It is never stored in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// sudo needs no password (NOPASSWD), or we are root.
    None,
    /// Ask once on the terminal; an error when not interactive.
    Prompt,
    /// Read from this environment variable.
    Env(String),
}

/// How commands that need root are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    /// Run privileged commands through `sudo`. False when the SSH user is root.
    pub sudo: bool,
    pub password: PasswordSource,
}

/// How Docker is installed where it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    /// Debian's `docker.io` package.
    Distro,
    /// Docker's convenience script (needs internet on the Pi).
    GetDocker,
    /// The user's own shell command, run as root.
    Command(String),
    /// Never install: a missing Docker is an error.
    Skip,
}

/// Docker settings for one host, after defaults were merged.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerSettings {
    pub install: InstallMethod,
    /// Keys to merge into `/etc/docker/daemon.json` (e.g. `insecure-registries`).
    /// Keys the user set on the host and that are not named here are kept.
    pub daemon: serde_json::Map<String, serde_json::Value>,
}

/// The address a node advertises to the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertise {
    /// The address rpiprov reaches the host by (as the host sees it).
    Reach,
    /// An explicit address.
    Address(IpAddr),
    /// The address of this interface on the host (e.g. `eth0`).
    Interface(String),
}

/// Host key policy for SSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Unknown hosts are refused.
    #[default]
    Strict,
    /// Unknown hosts are learned; a changed key is still refused.
    AcceptNew,
}

/// One host, with defaults merged in.
#[derive(Debug, Clone)]
pub struct Host {
    /// Validated: letters, digits, `-`, `_`, `.`; used in output and as the ssh config alias.
    pub name: String,
    /// Host name or IP address to connect to (may be resolved through ~/.ssh/config).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub role: Role,
    /// Swarm node labels.
    pub labels: BTreeMap<String, String>,
    pub become_: Become,
    pub docker: DockerSettings,
    pub advertise: Advertise,
    /// Ask for a password (password / keyboard-interactive) if keys fail; interactive only.
    pub password_auth: bool,
}

/// SSH settings shared by all hosts.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// How long a host whose connection was lost is reconnected to before its steps fail.
    pub reconnect_timeout: Duration,
    /// `~/.ssh/config` or another file; `None` disables it.
    pub config_file: Option<PathBuf>,
    /// How many hosts are worked on at once.
    pub parallel: usize,
}

/// Swarm-wide settings.
#[derive(Debug, Clone, Default)]
pub struct SwarmSettings {
    /// `docker swarm init --default-addr-pool` (the lab keeps everything in 198.18.0.0/15).
    pub default_addr_pool: Option<String>,
}

/// The inventory: hosts and how to reach them.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
    pub ssh: SshSettings,
    pub swarm: SwarmSettings,
    /// The playbook the inventory points at (resolved against the inventory's folder).
    pub playbook: Option<PathBuf>,
}

impl Inventory {
    pub fn managers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Manager)
    }
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// An overlay network the playbook declares; created by `bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Network {
    pub name: String,
    pub driver: String,
    pub attachable: bool,
    pub internal: bool,
    pub subnet: Option<String>,
    pub encrypted: bool,
}

/// What rpiprov needs to know of one compose file.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// Service names, in file order.
    pub services: Vec<String>,
    /// Images the services use, as written (`${TAG}` not interpolated).
    pub images: Vec<String>,
    /// Networks declared `external: true` (their real names).
    pub external_networks: Vec<String>,
    /// The file's `version:` as written (`"3.8"`), empty when missing.
    pub version: String,
    /// What the file needs of the Docker CLI that deploys it, beyond Debian 12's 20.10
    /// (a missing `version:`, a newer file format, keys or modes of newer releases):
    /// `deploy` refuses the file where the manager's CLI does not meet one.
    pub needs: Vec<super::compose::Need>,
    /// The variables the file reads, in order of first use: through its interpolation,
    /// and the playbook's variables that an `environment:` entry without a value names
    /// (filled by `docker stack deploy` from its environment). Only these are sent.
    pub variables: Vec<String>,
    /// The names of `environment:` entries written without a value (`- SECRET`,
    /// `WHITELIST:`) or empty (`- DEBUG=`) that the playbook does not define: `docker
    /// stack deploy` fills them from the environment of the shell that deploys, so
    /// `deploy` takes them from this machine's environment. Each once, in file order.
    pub from_here: Vec<FromHere>,
    /// The local files the compose file refers to (`env_file`, `configs.*.file`,
    /// `secrets.*.file`), resolved against its folder as `docker stack deploy` resolves
    /// them; each once, in file order. They travel with the stack.
    pub files: Vec<ReferencedFile>,
    /// The configs and secrets made from a file that rpiprov names after the file's
    /// content, so that a changed file rolls the services onto a new version.
    pub objects: Vec<FileObject>,
    /// Each service's bind mounts and placement constraints, for the check on the nodes
    /// before deploying (services without bind mounts are left out).
    pub mounts: Vec<ServiceMounts>,
}

/// An `environment:` entry whose value `deploy` takes from this machine's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromHere {
    pub name: String,
    /// Written with an empty value (`- DEBUG=`): Docker keeps it empty unless the
    /// deploying shell has the variable. Without a value (`- SECRET`): the shell's value,
    /// none when it has none.
    pub empty: bool,
    /// Its first place.
    pub place: super::compose::Place,
}

/// A local file a compose file refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencedFile {
    /// Resolved against the compose file's folder (lexically, as Docker does).
    pub path: PathBuf,
    /// A secret's file or an env file: its content is never shown.
    pub secret: bool,
}

/// A config or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Config,
    Secret,
}

impl ObjectKind {
    /// The top-level key of the compose file, and Docker's command (`docker config`).
    pub fn section(self) -> &'static str {
        match self {
            ObjectKind::Config => "configs",
            ObjectKind::Secret => "secrets",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Secret => "secret",
        }
    }
}

/// A config or secret whose content comes from a local file, and that rpiprov names after
/// that content (see [`crate::config::compose::object_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObject {
    pub kind: ObjectKind,
    /// Its key under `configs:` or `secrets:`.
    pub key: String,
    /// The local file (one of [`Compose::files`]).
    pub file: PathBuf,
    /// The entry's keys other than `name`, each with its value written as a YAML flow
    /// value, in file order: the entry is written again with a `name:` added.
    pub fields: Vec<(String, String)>,
}

/// A service's bind mounts, as written (interpolated at deploy, with the values sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMounts {
    pub service: String,
    pub volumes: Vec<Volume>,
    /// `deploy.placement.constraints`, as written.
    pub constraints: Vec<String>,
}

/// One `volumes:` entry of a service that is, or may be once interpolated, a bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// The short syntax, `SOURCE:TARGET[:MODE]`, as written.
    Short(String),
    /// The long syntax with `type: bind`: its `source`, as written.
    Bind(String),
}

/// A stack: one compose file deployed under one name.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    /// Resolved path of the compose file on this machine.
    pub file: PathBuf,
    pub order: i64,
    /// How long `deploy` waits for the stack's services to converge.
    pub timeout: Duration,
    pub compose: Compose,
}

/// How an image archive is loaded on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// `docker save` output, loaded as `docker load` does (`POST /images/load`).
    DockerSave,
    /// A root file system tarball, imported as `docker import` does
    /// (`POST /images/create`).
    Rootfs,
}

/// An image shipped over SSH instead of pulled from a registry.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference the stacks use (`lab/httpd:1`).
    pub name: String,
    pub archive: PathBuf,
    pub format: ImageFormat,
    /// For `rootfs` images: the `CMD` of the import (`docker import --change`'s).
    pub cmd: Vec<String>,
}

/// A variable passed to `docker stack deploy`'s environment.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    /// The value; secret ones are resolved from the environment and never printed.
    pub value: VariableValue,
}

#[derive(Debug, Clone)]
pub enum VariableValue {
    Plain(String),
    /// Read from a dotenv file of the playbook's `env_file`: known before deploying, as
    /// a value written in the playbook is, but redacted from what hosts say (such files
    /// often hold passwords).
    Dotenv {
        value: String,
        file: PathBuf,
    },
    /// Read from this environment variable of the machine running rpiprov, at use.
    SecretEnv(String),
    /// The output of a command run on the machine running rpiprov, at use; never stored.
    SecretCommand(ValueCommand),
    /// A resolved secret.
    Secret(Secret),
}

impl VariableValue {
    /// The value when it is known before deploying (written in the playbook or a dotenv
    /// file); `None` for a secret, read at use.
    pub fn known(&self) -> Option<&str> {
        match self {
            VariableValue::Plain(v) | VariableValue::Dotenv { value: v, .. } => Some(v),
            VariableValue::SecretEnv(_)
            | VariableValue::SecretCommand(_)
            | VariableValue::Secret(_) => None,
        }
    }
}

/// A command whose output is a variable's value (`{ command = ["pass", "show", "pi/db"],
/// secret = true }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueCommand {
    /// The program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// How long it may take.
    pub timeout: Duration,
}

/// The playbook: networks, images and stacks in order.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    pub networks: Vec<Network>,
    /// Sorted by `order`, then by position in the file.
    pub stacks: Vec<Stack>,
    pub images: Vec<Image>,
    pub variables: Vec<Variable>,
}
