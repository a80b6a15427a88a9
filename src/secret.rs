//! A value that must never reach a terminal, a log or JSON: join tokens, sudo passwords.
//!
//! Nor another process of the same user: while any secret lives, the process is not
//! dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core file holds it, and no process of the
//! user may attach to this one or read its memory (`ptrace`, `/proc/PID/mem`), only root.
//! The last secret gone, the process is dumpable again; each one's bytes are overwritten
//! when it goes.

use std::fmt;
use std::sync::Mutex;

/// Holds a secret string. `Debug` and `Display` print a fixed placeholder, and it has no
/// `Serialize`, so the only way to the text is the explicit [`Secret::expose`].
#[derive(PartialEq, Eq)]
pub struct Secret(String);

/// How many secrets live: the process is dumpable only at zero.
static HELD: Mutex<usize> = Mutex::new(0);

fn hold() {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if *held == 0 {
        set_dumpable(false);
    }
    *held += 1;
}

fn release() {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    *held = held.saturating_sub(1);
    if *held == 0 {
        set_dumpable(true);
    }
}

#[cfg(target_os = "linux")]
fn set_dumpable(on: bool) {
    // SAFETY: PR_SET_DUMPABLE takes a plain integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_dumpable(_on: bool) {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        hold();
        Secret(value.into())
    }

    /// The secret text, for the one place that must send it (a remote stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret::new(self.0.clone())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // SAFETY: zero bytes are valid UTF-8; volatile writes are not optimised away.
        for b in unsafe { self.0.as_bytes_mut() } {
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        release();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("SWMTKN-1-abc");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{s:#?}").contains("SWMTKN"));
        assert_eq!(s.expose(), "SWMTKN-1-abc");
    }
}
