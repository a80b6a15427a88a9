//! The commands: one file per command, each taking the parsed flags ([`crate::cli`]) to
//! the executor that does the work, and this file, which parses the command line and
//! dispatches. What the host-facing commands share (configuration, `--on`, sudo
//! passwords, connections, the end and the exit code) is [`context`].
//!
//! | command | file | executor |
//! |---|---|---|
//! | `check` | [`check`] | none: it connects nowhere |
//! | `bootstrap` | [`bootstrap`] | [`crate::bootstrap`] |
//! | `deploy` | [`deploy`] | [`crate::deploy`] |
//! | `teardown` | [`teardown`] | [`crate::teardown`] |
//! | `run` | [`run`] | itself: one command on every selected host |
//! | `lab` | [`lab`] | [`crate::lab`] |

pub mod bootstrap;
pub mod check;
pub mod context;
pub mod deploy;
pub mod lab;
pub mod run;
pub mod teardown;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::EXIT_USAGE;

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

/// Runs a parsed command line; returns the exit code.
pub fn dispatch(cli: &Cli) -> u8 {
    match &cli.command {
        Command::Check => check::check(&cli.inventory, cli.playbook.as_deref(), cli.json),
        Command::Bootstrap(args) => bootstrap::bootstrap(cli, args),
        Command::Deploy(args) => deploy::deploy(cli, args),
        Command::Teardown(args) => teardown::teardown(cli, args),
        Command::Run(args) => run::run_command(cli, args),
        Command::Lab(command) => lab::lab(command),
    }
}
