//! The process exit codes, one per kind of ending. Errors are data; each kind maps to one
//! of these, decided once at the end of a command (see [`crate::cmd`]).

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a host or a step failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input or usage: nothing was touched.
pub const EXIT_USAGE: u8 = 2;
