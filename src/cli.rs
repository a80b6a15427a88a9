//! The command line's flags and subcommands (clap derive), and nothing else: no logic,
//! and nothing of the rest of the crate but the value types flags parse into
//! (`lab::Subnet`, `lab::Port`). Parsing and dispatch are in [`crate::cmd`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rpiprov",
    version,
    about = "Provision a Docker Swarm on a rack of Raspberry Pis over SSH",
    long_about = "Provision a Docker Swarm on a rack of Raspberry Pis over SSH.\n\n\
rpiprov reads an inventory of Pis (inventory.toml) and a playbook of Docker stack files, \
then installs Docker where it is missing, forms the swarm, creates the overlay networks, \
and deploys or removes the stacks. Every command is idempotent.",
    after_help = "Each command lists the options it reads (rpiprov COMMAND --help); they may also \
come before the command, as in `rpiprov -i lab/inventory.toml deploy`.\n\
Exit codes: 0 success, 1 a host or step failed (for status: something differs or is down), 2 bad input or usage, \
130 interrupted by Ctrl-C (after a clean stop: the deploy lock released)."
)]
pub struct Cli {
    /// The options of the commands, given before the command (`rpiprov -i FILE deploy`):
    /// hidden here, each command shows those it reads. Merged by [`Cli::options`].
    #[command(flatten)]
    pub before: Before,

    #[command(subcommand)]
    pub command: Command,
}

/// Options written before the command name, as in earlier versions where they were global.
/// A command that does not read one of them refuses it (`cmd::dispatch`).
#[derive(Debug, Default, Args)]
pub struct Before {
    #[arg(short, long, value_name = "FILE", hide = true)]
    pub inventory: Option<PathBuf>,
    #[arg(short, long, value_name = "FILE", hide = true)]
    pub playbook: Option<PathBuf>,
    #[arg(long, value_name = "HOSTS", hide = true)]
    pub on: Vec<String>,
    #[arg(short, long, action = clap::ArgAction::Count, hide = true)]
    pub verbose: u8,
    #[arg(long, hide = true)]
    pub json: bool,
    #[arg(long, value_enum, value_name = "POLICY", hide = true)]
    pub host_key_policy: Option<PolicyArg>,
    #[arg(long, value_name = "N", hide = true)]
    pub parallel: Option<usize>,
}

/// The inventory (and the playbook it names), for every command that reads them.
#[derive(Debug, Default, Clone, Args)]
pub struct ConfigArgs {
    /// Inventory file [default: inventory.toml].
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Playbook file; overrides the inventory's `playbook`.
    #[arg(short, long, value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// Local files (stack files, the files they refer to, image archives) may also come
    /// from this folder, not only from the playbook's; repeat for several.
    #[arg(long, value_name = "DIR")]
    pub allow_outside: Vec<PathBuf>,
}

/// The inventory alone, for commands that use no playbook.
#[derive(Debug, Default, Clone, Args)]
pub struct InventoryArg {
    /// Inventory file [default: inventory.toml].
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
}

/// How hosts are reached.
#[derive(Debug, Default, Clone, Args)]
pub struct ConnectArgs {
    /// Overrides the inventory's host key policy.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub host_key_policy: Option<PolicyArg>,
    /// How many hosts are worked on at once (default: the inventory's, or 16).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

/// Which hosts.
#[derive(Debug, Default, Clone, Args)]
pub struct OnArg {
    /// Only these hosts: names, globs (`pi-0*`), `@manager`, `@worker`; repeat or separate with commas.
    #[arg(long, value_name = "HOSTS")]
    pub on: Vec<String>,
}

/// `--json`.
#[derive(Debug, Default, Clone, Args)]
pub struct JsonArg {
    /// Print a machine-readable result on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `-v`.
#[derive(Debug, Default, Clone, Args)]
pub struct VerboseArg {
    /// Print every step as a plain line, and remote output on failure.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What every command that connects to hosts reads: inventory and playbook, how to
/// connect, `--json` and `-v`.
#[derive(Debug, Default, Clone, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub verbose: VerboseArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    Strict,
    AcceptNew,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the inventory, the playbook and its stack files, without connecting to any host.
    #[command(after_help = "Example:\n  rpiprov check\n  rpiprov check -i lab/inventory.toml")]
    Check(CheckArgs),

    /// Install Docker where missing, form the swarm, create the playbook's networks.
    #[command(
        after_help = "Examples:\n  rpiprov bootstrap\n  rpiprov bootstrap --on @manager,pi-02\n  rpiprov bootstrap --dry-run   # the steps it would take, nothing done\n  rpiprov bootstrap --json > result.json"
    )]
    Bootstrap(BootstrapArgs),

    /// Upload the stack files, deploy the stacks in order, wait until they converge.
    #[command(
        after_help = "Examples:\n  rpiprov deploy\n  rpiprov deploy --dry-run   # what would be deployed, and why, with a diff\n  rpiprov deploy --unlock    # clear a lock left by a killed run"
    )]
    Deploy(DeployArgs),

    /// Remove the stacks in reverse order, wait until they are gone, remove the networks.
    #[command(
        after_help = "Examples:\n  rpiprov teardown\n  rpiprov teardown --dry-run\n  rpiprov teardown --yes --leave-swarm --purge"
    )]
    Teardown(TeardownArgs),

    /// Check the Pis before a swarm forms: clock, kernel (vxlan, overlayfs), memory cgroup,
    /// disk, architecture, and the swarm's ports between every pair of nodes. Changes nothing.
    #[command(
        after_help = "Examples:\n  rpiprov doctor\n  rpiprov doctor --on pi-03 --json\n\nExit code 1 when a check finds an error (one bootstrap would refuse)."
    )]
    Doctor(DoctorArgs),

    /// Show the fleet: nodes, swarm, quorum, stacks and their services, and what differs from the playbook.
    #[command(
        after_help = "Read-only: one connection per host, nothing is changed.\n\
Exit codes: 0 everything matches the playbook and is up, 1 something differs or is down, 2 bad input.\n\n\
Examples:\n  rpiprov status\n  rpiprov status --json | jq .swarm"
    )]
    Status(StatusArgs),

    /// Show what bootstrap, deploy or teardown would do, without changing anything.
    #[command(
        subcommand,
        after_help = "The same probe and the same decisions as the command itself; nothing is written, \
no lock is taken. `rpiprov plan deploy` is `rpiprov deploy --dry-run`.\n\n\
Examples:\n  rpiprov plan bootstrap\n  rpiprov plan deploy --json"
    )]
    Plan(PlanCommand),

    /// Print a service's logs (or every service of a stack), from the manager.
    #[command(
        after_help = "Lines are prefixed with the task and the node they come from. With --follow, \
Ctrl-C ends it: the remote `docker service logs` is stopped and rpiprov exits with 130.\n\n\
Examples:\n  rpiprov logs web            # every service of stack web\n  rpiprov logs web_web --since 10m\n  rpiprov logs echo --follow"
    )]
    Logs(LogsArgs),

    /// Rolling maintenance, one node at a time: drain it, wait until its tasks moved, reboot
    /// it (or upgrade Docker, or run a command), wait until it is back, make it active.
    #[command(
        after_help = "Examples:\n  rpiprov maintain --reboot\n  rpiprov maintain --on @worker --batch 2 --upgrade-docker\n  rpiprov maintain --on pi-03 -- apt-get -y full-upgrade\n\nThe first failure stops the run and leaves that node drained, saying so. Managers go one at a time (or more while quorum holds); the only manager is taken only with --force."
    )]
    Maintain(MaintainArgs),

    /// Run a shell command on the selected hosts, in parallel, and print each host's output.
    #[command(
        after_help = "Examples:\n  rpiprov run -- uptime\n  rpiprov run --on @manager --sudo -- docker node ls"
    )]
    Run(RunArgs),

    /// Print a shell completion script for bash, zsh or fish.
    #[command(
        after_help = "Examples:\n  rpiprov completions bash > /etc/bash_completion.d/rpiprov\n  rpiprov completions zsh > \"${fpath[1]}/_rpiprov\"\n  rpiprov completions fish > ~/.config/fish/completions/rpiprov.fish"
    )]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), generated from these definitions.
    #[command(after_help = "Example:\n  rpiprov man > rpiprov.1 && man ./rpiprov.1")]
    Man,

    /// A virtual Pi fleet on this Linux machine (root): network namespaces, sshd, dockerd.
    #[command(
        subcommand,
        after_help = "Example:\n  sudo rpiprov lab up && rpiprov bootstrap -i .lab/inventory.toml"
    )]
    Lab(LabCommand),
}

/// The preflight's checks, as `--skip-preflight` names them.
pub const PREFLIGHT_CHECKS: [&str; 7] = [
    "clock",
    "kernel",
    "memory-cgroup",
    "disk",
    "arch",
    "docker",
    "ports",
];

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub on: OnArg,
    /// A node that belongs to another swarm leaves it first (otherwise that is an error).
    #[arg(long)]
    pub force: bool,
    /// Go on despite this preflight check's errors (repeat for several); `ports` also
    /// skips the port test.
    #[arg(long, value_name = "CHECK", value_parser = PREFLIGHT_CHECKS)]
    pub skip_preflight: Vec<String>,
    /// Print the steps it would take, per host, and change nothing (= `rpiprov plan bootstrap`).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub on: OnArg,
    /// Leave this check out (repeat for several); `ports` skips the port test.
    #[arg(long, value_name = "CHECK", value_parser = PREFLIGHT_CHECKS)]
    pub skip_preflight: Vec<String>,
}

/// What the commands that act on selected hosts without a playbook read (`run`,
/// `maintain`): the inventory, how to connect, `--on`, `--json`, `-v`.
#[derive(Debug, Default, Clone, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub on: OnArg,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub verbose: VerboseArg,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub hosts: HostsArgs,
    /// Run as root (through sudo where the inventory says so).
    #[arg(long)]
    pub sudo: bool,
    /// The command, run by the remote user's shell as written (it is yours: not quoted).
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("work").required(true).args(["reboot", "upgrade_docker", "command"])))]
pub struct MaintainArgs {
    #[command(flatten)]
    pub hosts: HostsArgs,
    /// Reboot each node; it is back when its boot id changed.
    #[arg(long)]
    pub reboot: bool,
    /// How a node reboots, run as root [default: `systemctl reboot`; without systemd,
    /// this is required].
    #[arg(long, value_name = "COMMAND", requires = "reboot")]
    pub reboot_command: Option<String>,
    /// Upgrade Docker by the host's install method.
    #[arg(long)]
    pub upgrade_docker: bool,
    /// Nodes taken out at once, as long as quorum and --max-unavailable allow.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: usize,
    /// Tasks of one replicated service that a batch may take down at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_unavailable: u64,
    /// Take a manager whose absence loses quorum (the only one) anyway.
    #[arg(long)]
    pub force: bool,
    /// How long each wait may last (tasks moving, a node coming back).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub timeout: String,
    /// A command to run as root on each node while it is drained.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Remove a deploy lock left on the manager by a killed run, then exit.
    #[arg(long, conflicts_with = "dry_run")]
    pub unlock: bool,
    /// Print what it would do, per stack, why, and a diff of each file; change nothing
    /// (= `rpiprov plan deploy`).
    #[arg(long)]
    pub dry_run: bool,
    /// Deploy without first checking that bind-mount sources exist on the nodes where
    /// each service may run.
    #[arg(long)]
    pub skip_bind_check: bool,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Also dissolve the swarm: workers leave, then managers one at a time, in an order
    /// that keeps quorum (a manager whose Docker does not answer is demoted first).
    #[arg(long)]
    pub leave_swarm: bool,
    /// With --leave-swarm: dissolve what can be even when that loses quorum (refused
    /// otherwise).
    #[arg(long, requires = "leave_swarm")]
    pub force: bool,
    /// Also remove what rpiprov uploaded to the manager.
    #[arg(long)]
    pub purge: bool,
    /// Print what it would remove, in order, and change nothing (= `rpiprov plan teardown`).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `rpiprov plan COMMAND`: the command's own options, less those that only matter when
/// it acts.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// The steps bootstrap would take, per host.
    Bootstrap(PlanBootstrapArgs),
    /// What deploy would do, per stack, why, and a diff of each file.
    Deploy(PlanDeployArgs),
    /// What teardown would remove, in order.
    Teardown(PlanTeardownArgs),
}

/// What a plan reads: the configuration, how to connect, `--json` (it shows no progress).
#[derive(Debug, Default, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct PlanBootstrapArgs {
    #[command(flatten)]
    pub fleet: PlanArgs,
    #[command(flatten)]
    pub on: OnArg,
    /// Plan as `bootstrap --force` would.
    #[arg(long)]
    pub force: bool,
    /// Plan as `bootstrap --skip-preflight CHECK` would.
    #[arg(long, value_name = "CHECK", value_parser = PREFLIGHT_CHECKS)]
    pub skip_preflight: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanDeployArgs {
    #[command(flatten)]
    pub fleet: PlanArgs,
}

#[derive(Debug, Args)]
pub struct PlanTeardownArgs {
    #[command(flatten)]
    pub fleet: PlanArgs,
    /// Plan as `teardown --leave-swarm` would.
    #[arg(long)]
    pub leave_swarm: bool,
    /// Plan as `teardown --purge` would.
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// A service (`web_web`) or a stack (`web`: every service of it).
    #[arg(value_name = "SERVICE|STACK")]
    pub name: String,
    /// Keep printing new lines until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since this time: a duration (`10m`, `1h30m`) or a timestamp (`2026-11-25T16:00:00`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each task (default: all).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create the fleet (idempotent).
    #[command(
        after_help = "Examples:\n  rpiprov lab up\n  rpiprov lab up --nodes 3 --bare 2\n  rpiprov lab up --distro sid,trixie,bookworm    # Docker 28.5, 26.1 and a bare bookworm node\n  rpiprov lab up --nodes 3 --bare 0 --distro trixie\n  rpiprov lab up --sshd-only 200\n  rpiprov lab up --dir /tmp/lab2 --subnet 198.18.9.0/24"
    )]
    Up(LabUpArgs),
    /// Remove everything the lab created, from its state file.
    #[command(after_help = "Example:\n  rpiprov lab down")]
    Down(LabDirArg),
    /// Show the nodes and whether their sshd and dockerd run.
    #[command(after_help = "Example:\n  rpiprov lab status")]
    Status(LabDirArg),
    /// Cut or restore nodes' network links (the node's veth goes down or up).
    #[command(after_help = "Examples:\n  rpiprov lab link down pi2\n  rpiprov lab link up pi2")]
    Link(LabLinkArgs),
    /// Packet filters inside nodes: drop ports, lose packets at random, or clear them.
    #[command(
        after_help = "Examples:\n  rpiprov lab filter pi2 --drop 7946/udp --drop 2377/tcp\n  rpiprov lab filter pi2 --loss 30\n  rpiprov lab filter pi2 --clear"
    )]
    Filter(LabFilterArgs),
    /// Freeze, thaw, kill or start nodes' sshd or dockerd.
    #[command(
        after_help = "Examples:\n  rpiprov lab daemon freeze dockerd pi2\n  rpiprov lab daemon thaw dockerd pi2\n  rpiprov lab daemon kill sshd pi3\n  rpiprov lab daemon start sshd pi3"
    )]
    Daemon(LabDaemonArgs),
    /// Reboot nodes: all their processes stop, a new boot id, sshd and dockerd start again.
    #[command(after_help = "Example:\n  rpiprov lab reboot pi2")]
    Reboot(LabNodesArgs),
    /// Set nodes' clocks off by SECONDS for the commands of their sessions, or clear that.
    #[command(
        after_help = "Examples:\n  rpiprov lab clock pi3 --skew 300\n  rpiprov lab clock pi3 --skew -90\n  rpiprov lab clock pi3 --clear"
    )]
    Clock(LabClockArgs),
}

#[derive(Debug, Args)]
pub struct LabNodesArgs {
    /// Node names (pi1, pi2...).
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub dir: LabDirArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkState {
    Up,
    Down,
}

#[derive(Debug, Args)]
pub struct LabLinkArgs {
    #[arg(value_enum)]
    pub state: LinkState,
    #[command(flatten)]
    pub nodes: LabNodesArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("filter").required(true).multiple(true).args(["drop", "loss", "clear"])))]
pub struct LabFilterArgs {
    #[command(flatten)]
    pub nodes: LabNodesArgs,
    /// Drop this port, both ways (repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub drop: Vec<crate::lab::Port>,
    /// Drop this percentage of packets at random (0 stops it).
    #[arg(long, value_name = "PERCENT")]
    pub loss: Option<f64>,
    /// Remove the dropped ports and the loss (first, when given with others).
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DaemonAction {
    Freeze,
    Thaw,
    Kill,
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DaemonArg {
    Sshd,
    Dockerd,
}

#[derive(Debug, Args)]
pub struct LabDaemonArgs {
    #[arg(value_enum)]
    pub action: DaemonAction,
    #[arg(value_enum)]
    pub daemon: DaemonArg,
    #[command(flatten)]
    pub nodes: LabNodesArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("clock").required(true).args(["skew", "clear"])))]
pub struct LabClockArgs {
    #[command(flatten)]
    pub nodes: LabNodesArgs,
    /// Seconds ahead (negative: behind).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub skew: Option<i64>,
    /// Put the clock right again.
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct LabDirArg {
    /// Where the lab keeps its state.
    #[arg(long, default_value = ".lab", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub dir: LabDirArg,
    /// Nodes that already run Docker; the first is the manager.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub nodes: usize,
    /// Bare workers without Docker, as a fresh Pi is.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub bare: usize,
    /// Only N sshd nodes (no Docker), for scale tests of the SSH layer.
    #[arg(long, value_name = "N", conflicts_with_all = ["nodes", "bare"])]
    pub sshd_only: Option<usize>,
    /// The lab's subnet (default: the first free /24 of 198.18.0.0/17, or 198.18.0.0/16
    /// past 244 nodes).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<crate::lab::Subnet>,
    /// Cap each node at this share of one CPU (0.25: a quarter), sessions, dockerd and
    /// containers included, to feel a Pi's speed.
    #[arg(long, value_name = "FRACTION")]
    pub cpu: Option<f64>,
    /// Debian releases of the nodes, comma-separated (bookworm: Docker 20.10, trixie: 26.1,
    /// sid: 28.5), given in node order (Docker nodes first, then bare ones), the last one
    /// repeating: `--distro sid,trixie,bookworm` makes pi1 sid, pi2 trixie, pi3 bookworm.
    #[arg(
        long,
        value_name = "LIST",
        default_value_t,
        conflicts_with = "sshd_only"
    )]
    pub distro: crate::lab::Distros,
}
