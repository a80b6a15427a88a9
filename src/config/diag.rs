//! Diagnostics: what `config` reports about the files it reads (errors and warnings with a
//! file, a position and a key path), and the source text positions are computed from.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a [`Diagnostic`] is: errors stop every command, warnings are only shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about one place of one file.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes. `key_path`
/// names the value in the file's own terms: `host[2].role` (array indexes are 0-based, in
/// file order), `services.web.build` for compose files. It is empty when the finding is
/// about the whole file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key_path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A finding about a whole file (no position, no key).
    pub(crate) fn file_error(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: None,
            column: None,
            key_path: String::new(),
            message: message.into(),
        }
    }
}

/// `FILE:LINE:COL: KEY_PATH: MESSAGE`, leaving out the parts that are unknown.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// The text of a file that was read, with what it takes to turn byte offsets into
/// line and column.
#[derive(Debug)]
pub(crate) struct Source {
    /// The path as the user gave it (or as joined from another file's folder), so that
    /// messages show paths the user recognises.
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// Reads a file, a regular one of bounded size ([`super::local`]); the error is a
    /// ready-made diagnostic without the OS error number.
    pub fn read(path: &Path) -> Result<Self, Diagnostic> {
        use super::local::{Limit, Refused};
        match super::local::read(path, Limit::Text) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Ok(Source::new(path.to_path_buf(), text)),
                Err(_) => Err(Diagnostic::file_error(path, "cannot read: not UTF-8 text")),
            },
            Err(Refused::Missing) => Err(Diagnostic::file_error(
                path,
                "cannot read: No such file or directory",
            )),
            Err(e) => Err(Diagnostic::file_error(path, e.to_string())),
        }
    }

    /// 1-based line and character column of a byte offset (clamped to the text).
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    pub fn at(
        &self,
        severity: Severity,
        offset: Option<usize>,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = match offset.map(|o| self.position(o)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        Diagnostic {
            severity,
            file: self.path.clone(),
            line,
            column,
            key_path: key_path.into(),
            message: message.into(),
        }
    }
}

/// The OS's text for an I/O error, without Rust's ` (os error N)` suffix that means
/// nothing to a user.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Turns serde's wording into the terms of a configuration file (keys, tables, arrays).
pub(crate) fn humanize_serde(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once("`, ").map_or("", |(_, e)| e);
        let names: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        return if names.is_empty() {
            "unknown key".to_string()
        } else {
            format!("unknown key, expected one of: {}", names.join(", "))
        };
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            kind_name(expected),
            found_name(found)
        );
    }
    message.to_string()
}

fn kind_name(serde_expected: &str) -> String {
    let s = serde_expected.trim();
    if s.starts_with("struct ") || s == "a map" {
        return "a table".to_string();
    }
    match s {
        "i64" | "u64" | "i32" | "u32" | "u16" | "usize" => "an integer".to_string(),
        "a sequence" => "an array".to_string(),
        "a boolean" => "true or false".to_string(),
        other => other.to_string(),
    }
}

fn found_name(serde_found: &str) -> String {
    match serde_found {
        "map" => "a table".to_string(),
        "sequence" => "an array".to_string(),
        other => other.replace('`', ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_every_known_part() {
        let mut d = Diagnostic::file_error(
            Path::new("inventory.toml"),
            "expected \"manager\" or \"worker\"",
        );
        assert_eq!(
            d.to_string(),
            "inventory.toml: expected \"manager\" or \"worker\""
        );
        d.line = Some(14);
        d.column = Some(8);
        d.key_path = "host[2].role".into();
        assert_eq!(
            d.to_string(),
            "inventory.toml:14:8: host[2].role: expected \"manager\" or \"worker\""
        );
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("f".into(), "ab\né = 1\n".into());
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(3), (2, 1));
        // `=` comes after a two-byte `é` and a space.
        assert_eq!(s.position(6), (2, 3));
        assert_eq!(s.position(999), (3, 1));
    }

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            humanize_serde("unknown field `rol`, expected one of `name`, `role`"),
            "unknown key, expected one of: name, role"
        );
        assert_eq!(
            humanize_serde("unknown field `x`, expected `install`"),
            "unknown key, expected one of: install"
        );
        assert_eq!(
            humanize_serde("invalid type: string \"22\", expected i64"),
            "expected an integer, found string \"22\""
        );
        assert_eq!(
            humanize_serde("invalid type: integer `5`, expected a string"),
            "expected a string, found integer 5"
        );
        assert_eq!(
            humanize_serde("invalid type: sequence, expected a map"),
            "expected a table, found an array"
        );
    }

    #[test]
    fn io_messages_drop_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "No such file or directory");
    }
}
