//! The process exit codes, one per kind of ending. Errors are data; each kind maps to one
//! of these, decided once at the end of a command (see [`crate::cmd`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a host or a step failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input or usage: nothing was touched.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a run ended by Ctrl-C (128 + SIGINT, what a shell reports for a command
/// the signal ended): also when rpiprov caught it, stopped cleanly and released the lock.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Set by the one Ctrl-C handler of the commands that stop cleanly (`cmd::context::ctrl_c`):
/// their end is then [`EXIT_INTERRUPTED`] whatever their rows say.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The user pressed Ctrl-C and the command is stopping because of it.
pub fn set_interrupted() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`set_interrupted`] was called in this process.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
