//! `rpiprov lab up|down|status`: hands over to the virtual fleet ([`crate::lab`]).

use crate::cli::LabCommand;

pub fn lab(command: &LabCommand) -> u8 {
    crate::lab::run(command)
}
