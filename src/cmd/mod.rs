//! The commands: one file per command, each taking the parsed flags ([`crate::cli`]) to
//! the executor that does the work, and this file, which parses the command line, merges
//! the options given before the command with the command's own ([`Opts`]) and
//! dispatches. What the host-facing commands share (configuration, `--on`, sudo
//! passwords, connections, the end and the exit code) is [`context`].
//!
//! | command | file | executor |
//! |---|---|---|
//! | `check` | [`check`] | none: it connects nowhere |
//! | `bootstrap` (and `plan bootstrap`) | [`bootstrap`] | [`crate::bootstrap`] |
//! | `doctor` | [`doctor`] | [`crate::bootstrap`], its preflight alone |
//! | `deploy` (and `plan deploy`) | [`deploy`] | [`crate::deploy`] |
//! | `teardown` (and `plan teardown`) | [`teardown`] | [`crate::teardown`] |
//! | `status` | [`status`] | [`crate::status`] |
//! | `logs` | [`logs`] | [`crate::logs`]: one `docker service logs` on a manager |
//! | `maintain` | [`maintain`] | [`crate::maintain`] |
//! | `run` | [`run`] | itself: one command on every selected host |
//! | `backup` (and `backup --list`) | [`backup`] | [`crate::backup`] |
//! | `restore` | [`restore`] | [`crate::backup`], then [`crate::bootstrap`]'s joins and [`crate::deploy`]'s image shipping and wait |
//! | `completions`, `man` | [`docs`] | none: generated from [`crate::cli`] |
//! | `lab` | [`lab`] | [`crate::lab`] |

pub mod backup;
pub mod bootstrap;
pub mod check;
pub mod context;
pub mod deploy;
pub mod docs;
pub mod doctor;
pub mod lab;
pub mod logs;
pub mod maintain;
pub mod restore;
pub mod run;
pub mod status;
pub mod teardown;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    Before, Cli, Command, ConfigArgs, ConnectArgs, FleetArgs, HostsArgs, InventoryArg, PlanArgs,
    PlanCommand,
};
use crate::exit::EXIT_USAGE;
use crate::ui::term;

pub use context::Opts;

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(dispatch(&cli))
}

/// Which of the options written before the command a command reads.
#[derive(Default, Clone, Copy)]
struct Reads {
    inventory: bool,
    playbook: bool,
    on: bool,
    verbose: bool,
    json: bool,
    connect: bool,
}

impl Reads {
    const NONE: Reads = Reads {
        inventory: false,
        playbook: false,
        on: false,
        verbose: false,
        json: false,
        connect: false,
    };
    const FLEET: Reads = Reads {
        inventory: true,
        playbook: true,
        on: false,
        verbose: true,
        json: true,
        connect: true,
    };
}

/// The options given before the command that it does not read: a usage error rather than
/// silently ignored (`rpiprov --on pi1 deploy` must not look like it deployed to pi1 only).
fn unread(before: &Before, reads: Reads) -> Vec<&'static str> {
    let given = [
        (
            "-i/--inventory",
            before.inventory.is_some(),
            reads.inventory,
        ),
        ("-p/--playbook", before.playbook.is_some(), reads.playbook),
        ("--on", !before.on.is_empty(), reads.on),
        ("-v/--verbose", before.verbose > 0, reads.verbose),
        ("--json", before.json, reads.json),
        (
            "--host-key-policy",
            before.host_key_policy.is_some(),
            reads.connect,
        ),
        ("--parallel", before.parallel.is_some(), reads.connect),
    ];
    given
        .into_iter()
        .filter(|(_, set, read)| *set && !*read)
        .map(|(name, _, _)| name)
        .collect()
}

impl Opts {
    /// The options given before the command; the command's own are merged in by the
    /// builders below, and win.
    fn before(b: &Before) -> Opts {
        Opts {
            inventory: b.inventory.clone(),
            playbook: b.playbook.clone(),
            on: b.on.clone(),
            verbose: b.verbose > 0,
            json: b.json,
            host_key_policy: b.host_key_policy,
            parallel: b.parallel,
            allow_outside: Vec::new(),
        }
    }
    fn config(mut self, c: &ConfigArgs) -> Opts {
        self.inventory = c.inventory.clone().or(self.inventory);
        self.playbook = c.playbook.clone().or(self.playbook);
        self.allow_outside.extend(c.allow_outside.iter().cloned());
        self
    }
    fn inventory(mut self, i: &InventoryArg) -> Opts {
        self.inventory = i.inventory.clone().or(self.inventory);
        self
    }
    fn connect(mut self, c: &ConnectArgs) -> Opts {
        self.host_key_policy = c.host_key_policy.or(self.host_key_policy);
        self.parallel = c.parallel.or(self.parallel);
        self
    }
    fn on(mut self, on: &[String]) -> Opts {
        self.on.extend(on.iter().cloned());
        self
    }
    fn json(mut self, json: bool) -> Opts {
        self.json |= json;
        self
    }
    fn verbose(mut self, verbose: u8) -> Opts {
        self.verbose |= verbose > 0;
        self
    }
    fn plan(self, p: &PlanArgs) -> Opts {
        self.config(&p.config).connect(&p.connect).json(p.json.json)
    }
    fn hosts(self, h: &HostsArgs) -> Opts {
        self.inventory(&h.inventory)
            .connect(&h.connect)
            .on(&h.on.on)
            .json(h.json.json)
            .verbose(h.verbose.verbose)
    }
    fn fleet(self, f: &FleetArgs) -> Opts {
        self.config(&f.config)
            .connect(&f.connect)
            .json(f.json.json)
            .verbose(f.verbose.verbose)
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn dispatch(cli: &Cli) -> u8 {
    let before = Opts::before(&cli.before);
    let reads = match &cli.command {
        Command::Check(_) => Reads {
            inventory: true,
            playbook: true,
            json: true,
            ..Reads::NONE
        },
        Command::Bootstrap(_) | Command::Doctor(_) => Reads {
            on: true,
            ..Reads::FLEET
        },
        Command::Plan(PlanCommand::Bootstrap(_)) => Reads {
            on: true,
            verbose: false,
            ..Reads::FLEET
        },
        Command::Deploy(_) | Command::Teardown(_) => Reads::FLEET,
        Command::Plan(PlanCommand::Deploy(_) | PlanCommand::Teardown(_)) => Reads {
            verbose: false,
            ..Reads::FLEET
        },
        Command::Status(_) => Reads {
            verbose: false,
            ..Reads::FLEET
        },
        Command::Logs(_) => Reads {
            inventory: true,
            connect: true,
            ..Reads::NONE
        },
        Command::Run(_) | Command::Maintain(_) => Reads {
            playbook: false,
            on: true,
            ..Reads::FLEET
        },
        Command::Backup(_) | Command::Restore(_) => Reads::FLEET,
        Command::Completions(_) | Command::Man | Command::Lab(_) => Reads::NONE,
    };
    let unread = unread(&cli.before, reads);
    if !unread.is_empty() {
        term::errln(&format!(
            "error: {} {} not read by this command (see its --help)",
            unread.join(", "),
            if unread.len() == 1 { "is" } else { "are" }
        ));
        return EXIT_USAGE;
    }
    match &cli.command {
        Command::Check(args) => {
            let o = before.config(&args.config).json(args.json.json);
            check::check(
                &o.inventory_path(),
                o.playbook.as_deref(),
                &o.config_options(),
                o.json,
            )
        }
        Command::Bootstrap(args) => {
            let o = before.fleet(&args.fleet).on(&args.on.on);
            bootstrap::bootstrap(&o, args.force, &args.skip_preflight, args.dry_run)
        }
        Command::Doctor(args) => {
            let o = before.fleet(&args.fleet).on(&args.on.on);
            doctor::doctor(&o, &args.skip_preflight)
        }
        Command::Deploy(args) => {
            let o = before.fleet(&args.fleet);
            deploy::deploy(
                &o,
                args.unlock,
                args.dry_run,
                args.skip_bind_check,
                &args.stacks,
            )
        }
        Command::Teardown(args) => {
            let o = before.fleet(&args.fleet);
            let t = teardown::Asked {
                yes: args.yes,
                leave_swarm: args.leave_swarm,
                purge: args.purge,
                force: args.force,
            };
            teardown::teardown(&o, t, args.dry_run, &args.stacks)
        }
        Command::Plan(PlanCommand::Bootstrap(args)) => {
            let o = before.plan(&args.fleet).on(&args.on.on);
            bootstrap::bootstrap(&o, args.force, &args.skip_preflight, true)
        }
        Command::Plan(PlanCommand::Deploy(args)) => {
            deploy::deploy(&before.plan(&args.fleet), false, true, false, &args.stacks)
        }
        Command::Plan(PlanCommand::Teardown(args)) => {
            let t = teardown::Asked {
                yes: true,
                leave_swarm: args.leave_swarm,
                purge: args.purge,
                force: false,
            };
            teardown::teardown(&before.plan(&args.fleet), t, true, &args.stacks)
        }
        Command::Status(args) => {
            let o = before
                .config(&args.config)
                .connect(&args.connect)
                .json(args.json.json);
            status::status(&o)
        }
        Command::Logs(args) => {
            let o = before.inventory(&args.inventory).connect(&args.connect);
            logs::logs(&o, args)
        }
        Command::Run(args) => run::run_command(&before.hosts(&args.hosts), args),
        Command::Maintain(args) => maintain::maintain(&before.hosts(&args.hosts), args),
        Command::Backup(args) => backup::backup(&before.fleet(&args.fleet), args),
        Command::Restore(args) => restore::restore(&before.fleet(&args.fleet), args),
        Command::Completions(args) => docs::completions(args.shell),
        Command::Man => docs::man(),
        Command::Lab(command) => lab::lab(command),
    }
}

#[cfg(test)]
mod tests;
