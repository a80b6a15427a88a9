//! The `--json` document: one per command, on stdout, written by [`print`]. Strings are
//! escaped as JSON wants, and beyond: the characters a terminal would obey that JSON
//! leaves as they are (DEL, the C1 controls, the bidi controls: see
//! [`term::is_unsafe`](super::term::is_unsafe)) are written as `\uXXXX` escapes, so a
//! document holding a Pi's output is safe to print on a terminal and reads back the same.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter, Serializer};

use super::term;
use crate::exec::report::Row;

/// The `--json` document. `hosts` holds every row (hosts, and stacks and networks for
/// `deploy` and `teardown`: see [`Row`]); `details` what the command adds of its own.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a, T: Serialize> {
    pub command: &'a str,
    pub ok: bool,
    pub changed: bool,
    pub seconds: f64,
    pub hosts: &'a [Row],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<T>,
    /// What the command cost the hosts: connections, round trips, `docker` CLI calls and
    /// Engine API requests (`crate::remote::stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<serde_json::Value>,
}

/// Serialises `value` (indented when `pretty`), every string terminal-safe.
pub fn to_text(value: &impl Serialize, pretty: bool) -> String {
    fn with<F: Formatter>(value: &impl Serialize, f: F) -> String {
        let mut buf = Vec::new();
        let mut ser = Serializer::with_formatter(&mut buf, TerminalSafe(f));
        value.serialize(&mut ser).expect("documents serialise");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }
    if pretty {
        with(value, PrettyFormatter::new())
    } else {
        with(value, CompactFormatter)
    }
}

/// Prints `value` on stdout as one JSON document and a newline.
pub fn print(value: &impl Serialize, pretty: bool) {
    term::out_verbatim(&format!("{}\n", to_text(value, pretty)));
}

/// A formatter that escapes what a terminal would obey, around another that lays out.
struct TerminalSafe<F>(F);

impl<F: Formatter> Formatter for TerminalSafe<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if term::is_unsafe(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                // Every such character is in the Basic Multilingual Plane: one escape.
                write!(w, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    // The layout is the inner formatter's.
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_obey_is_escaped_and_reads_back_the_same() {
        let remote = "\u{1b}]52;c;eA==\u{7} \u{9b}2J \u{7f} \u{202e}ko \t\r\n ünï";
        let doc = serde_json::json!({ "stdout": remote, "n": [1, 2] });
        let compact = to_text(&doc, false);
        assert_eq!(
            compact,
            r#"{"n":[1,2],"stdout":"\u001b]52;c;eA==\u0007 \u009b2J \u007f \u202eko \t\r\n ünï"}"#
        );
        let pretty = to_text(&doc, true);
        assert_eq!(
            pretty,
            "{\n  \"n\": [\n    1,\n    2\n  ],\n  \"stdout\": \"\\u001b]52;c;eA==\\u0007 \\u009b2J \\u007f \\u202eko \\t\\r\\n ünï\"\n}"
        );
        for text in [compact, pretty] {
            assert!(!text.contains(term::is_unsafe), "{text:?}");
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["stdout"], remote);
        }
    }

    #[test]
    fn keys_are_escaped_too() {
        let doc = serde_json::json!({ "a\u{9d}b": 1 });
        assert_eq!(to_text(&doc, false), r#"{"a\u009db":1}"#);
    }
}
