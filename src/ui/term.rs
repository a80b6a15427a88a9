//! The one way text reaches stdout and stderr. Everything rpiprov shows passes here, so
//! that no path can forget either of two rules:
//!
//! - **Remote text is shown, never obeyed.** A Pi's output, errors, lock owner and node
//!   names are printed through [`clean`]: control characters other than tab and newline
//!   become visible escapes (`\x1b`, `\u{9b}`), so a compromised Pi cannot move the
//!   cursor, rewrite `FAILED` as `ok`, set the terminal title or write the clipboard
//!   (OSC 52). `--json` is escaped by its own rules (`crate::ui::json`).
//! - **A closed pipe ends the output, not the run.** `rpiprov check | head -1` closes
//!   stdout early; a write that fails (`EPIPE`, or a terminal gone: `EIO`) marks that
//!   stream closed and later writes to it are dropped, without a panic or a message (there
//!   is nowhere to write one). The command goes on to its end (a deploy that lost its
//!   pager still finishes and releases its lock) and exits with its own code.
//!
//! `lib.rs` denies `print!`-style macros (clippy's `print_stdout`, `print_stderr`): they
//! panic on a closed pipe and skip [`clean`]. The lab (`crate::lab`), which may not use
//! `ui`, writes only its own local text and ignores write errors likewise.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Unicode's bidirectional formatting characters. In a terminal that implements bidi
/// (VTE, Konsole, mlterm) they reorder what follows them on the line, so a line can read
/// differently from what it holds (CVE-2021-42574, "Trojan Source"); provisioning output
/// has no use for them. Other invisible characters (zero-width space, joiners) cannot
/// move or hide text and are left alone, so that names in any script show as they are.
const BIDI: &[char] = &[
    '\u{061c}', // ARABIC LETTER MARK
    '\u{200e}', // LEFT-TO-RIGHT MARK
    '\u{200f}', // RIGHT-TO-LEFT MARK
    '\u{202a}', // LEFT-TO-RIGHT EMBEDDING
    '\u{202b}', // RIGHT-TO-LEFT EMBEDDING
    '\u{202c}', // POP DIRECTIONAL FORMATTING
    '\u{202d}', // LEFT-TO-RIGHT OVERRIDE
    '\u{202e}', // RIGHT-TO-LEFT OVERRIDE
    '\u{2066}', // LEFT-TO-RIGHT ISOLATE
    '\u{2067}', // RIGHT-TO-LEFT ISOLATE
    '\u{2068}', // FIRST STRONG ISOLATE
    '\u{2069}', // POP DIRECTIONAL ISOLATE
];

/// Whether a character must not reach a terminal as it is: C0 controls but tab and
/// newline (ESC starts every escape sequence; CR returns to the line's start and
/// overwrites it; BS erases a character; BEL ends OSC sequences), DEL, the C1 controls
/// (U+0080 to U+009F: U+009B is CSI and U+009D OSC on terminals that decode them from
/// UTF-8, as xterm does), and the bidi controls ([`BIDI`]).
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || BIDI.contains(&c)
}

/// Text made safe for a terminal: each unsafe character ([`is_unsafe`]) is replaced by
/// a visible escape, `\xHH` below U+0080 and `\u{HHHH}` above, so that what a Pi sent
/// can still be read and reported. A CR right before a newline (CRLF line ends) is
/// dropped. Text without such characters is returned as it is.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if !is_unsafe(c) {
            out.push(c);
        } else if c.is_ascii() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Stdout,
    Stderr,
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes bytes as they are; a failed write closes the stream for the rest of the run.
fn write_raw(to: To, bytes: &[u8]) {
    let closed = match to {
        To::Stdout => &STDOUT_CLOSED,
        To::Stderr => &STDERR_CLOSED,
    };
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let written = match to {
        To::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        To::Stderr => std::io::stderr().lock().write_all(bytes),
    };
    if written.is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// Prints text on stdout, [cleaned](clean), as it is otherwise (no newline added).
pub fn out(text: &str) {
    write_raw(To::Stdout, clean(text).as_bytes());
}

/// Prints a line on stdout, [cleaned](clean).
pub fn outln(line: &str) {
    out(&format!("{line}\n"));
}

/// Prints text on stderr, [cleaned](clean), as it is otherwise (no newline added).
pub fn err(text: &str) {
    write_raw(To::Stderr, clean(text).as_bytes());
}

/// Prints a line on stderr, [cleaned](clean).
pub fn errln(line: &str) {
    err(&format!("{line}\n"));
}

/// Prints text on stdout exactly as given, for text rpiprov makes itself and that must
/// not change: `--json` (escaped by its own rules), completion scripts, the manual page.
/// Never for remote text.
pub fn out_verbatim(text: &str) {
    write_raw(To::Stdout, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        // OSC 52 (write the clipboard), a colour, a title, a cursor move.
        assert_eq!(
            clean("\x1b]52;c;cm0gLXJmIH4=\x07 \x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2A"),
            "\\x1b]52;c;cm0gLXJmIH4=\\x07 \\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 \\x1b[2A"
        );
        // C1 controls as UTF-8 (CSI, OSC) and DEL.
        assert_eq!(
            clean("\u{9b}31m \u{9d}0;t\u{9c} a\u{7f}"),
            "\\u{9b}31m \\u{9d}0;t\\u{9c} a\\x7f"
        );
    }

    #[test]
    fn what_could_rewrite_a_line_is_shown_not_obeyed() {
        // CR would overwrite "FAILED" with "ok    "; BS would erase it letter by letter.
        assert_eq!(clean("FAILED\rok    "), "FAILED\\x0dok    ");
        assert_eq!(
            clean("FAILED\x08\x08\x08\x08\x08\x08ok"),
            "FAILED\\x08\\x08\\x08\\x08\\x08\\x08ok"
        );
        // A right-to-left override would show "ok" reversed into a line; isolates too.
        assert_eq!(clean("x\u{202e}deliaf"), "x\\u{202e}deliaf");
        assert_eq!(clean("\u{2067}a\u{2069}"), "\\u{2067}a\\u{2069}");
        assert_eq!(clean("nul\0"), "nul\\x00");
    }

    #[test]
    fn ordinary_text_is_left_as_it_is() {
        let plain = "pi1: changed\tswarm init\nnext line, ünïcödé, 日本, zero\u{200b}width";
        assert!(matches!(clean(plain), Cow::Borrowed(_)));
        assert_eq!(clean(plain), plain);
        // Windows line ends lose their CR only.
        assert_eq!(clean("a\r\nb\r\n\u{1b}"), "a\nb\n\\x1b");
    }

    #[test]
    fn every_control_but_tab_and_newline_is_unsafe() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert_eq!(is_unsafe(c), c != '\t' && c != '\n', "{c:?}");
            assert!(!clean(&c.to_string()).contains(|d: char| is_unsafe(d)));
        }
        assert!(!is_unsafe(' ') && !is_unsafe('~') && !is_unsafe('\u{a0}'));
    }
}
