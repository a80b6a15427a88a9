//! Runs a parsed command line: loads the configuration, picks the hosts, calls the command.

use crate::cli::{Cli, Command};
use crate::error::EXIT_USAGE;

pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check => {
            eprintln!("check: not wired yet");
            EXIT_USAGE
        }
        Command::Lab(ref lab) => crate::lab::run(lab),
        _ => {
            eprintln!("not wired yet");
            EXIT_USAGE
        }
    }
}
