//! Dotenv files (`KEY=value` lines, the `.env` that people keep beside a stack), read as
//! Docker Compose reads them (compose-go's `dotenv` package; written from its rules, not
//! a copy):
//!
//! - a UTF-8 byte order mark is dropped; blank lines and lines starting with `#` are
//!   skipped; `export ` before a key is ignored;
//! - a key is letters, digits, `_`, `.`, `-`, `[` and `]`, ended by `=` or `:` (YAML's
//!   way); spaces around it are dropped, a space inside it is an error, and so is any
//!   other character; a key that starts with a digit is left out;
//! - a key alone on its line takes the value of the same name from the environment, and
//!   is left out when the environment has none;
//! - an unquoted value runs to the end of the line, is cut at the first ` #` (a comment)
//!   and loses its trailing spaces;
//! - a value in single quotes is taken as written (it may span lines; `\'` is a quote);
//!   in double quotes, `\n`, `\t`, `\\`, `\"`, `\$` and the like are read as escapes, and
//!   what follows the closing quote on the line is read as the next statement;
//! - unquoted and double-quoted values are interpolated as Compose does: `$NAME`,
//!   `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`, `${NAME+alt}`,
//!   `${NAME:?message}`, `${NAME?message}` (defaults and messages interpolated in their
//!   turn), `$$` for a `$`, any other `$` left as it is (`${}` is an error); a name is looked up in the environment first, then among the
//!   keys read before it; an unknown one is empty.

/// Why a dotenv file cannot be read, at a line (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub message: String,
}

/// One `KEY=value` read, with the line its key is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Reads a dotenv file's text. `env`: the environment names are looked up in first.
/// Later entries of a key replace earlier ones, as in Compose.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Entry>, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        rest: text,
        line: 1,
        out: Vec::new(),
    };
    while p.statement(env)? {}
    let mut out: Vec<Entry> = Vec::new();
    for e in p.out {
        if e.key.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        out.retain(|o| o.key != e.key);
        out.push(e);
    }
    Ok(out)
}

struct Parser<'t> {
    rest: &'t str,
    line: usize,
    out: Vec<Entry>,
}

/// Spaces that do not end a line.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> Error {
        Error {
            line: self.line,
            message: message.into(),
        }
    }

    /// Skips blank space and comments up to the next statement; false at the end.
    fn skip_to_statement(&mut self) -> bool {
        loop {
            let trimmed = self.rest.trim_start_matches(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                c.is_whitespace()
            });
            self.rest = trimmed;
            if self.rest.is_empty() {
                return false;
            }
            if !self.rest.starts_with('#') {
                return true;
            }
            match self.rest.find('\n') {
                Some(i) => self.rest = &self.rest[i..],
                None => {
                    self.rest = "";
                    return false;
                }
            }
        }
    }

    /// One `KEY=value` (or a key alone); false at the end of the text.
    fn statement(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, Error> {
        if !self.skip_to_statement() {
            return Ok(false);
        }
        if let Some(after) = self.rest.strip_prefix("export")
            && after.starts_with(is_space)
        {
            self.rest = after.trim_start_matches(is_space);
        }
        let line = self.line;
        let mut end = None;
        for (i, c) in self.rest.char_indices() {
            match c {
                '=' | ':' | '\n' => {
                    end = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() || is_space(c) => {}
                c => {
                    let first = self.rest.lines().next().unwrap_or_default();
                    return Err(self.err(format!(
                        "unexpected character {c:?} in variable name {first:?}"
                    )));
                }
            }
        }
        // A last line with a key and nothing after it sets nothing (Compose reads it as
        // the value of an empty key).
        let Some((i, sep)) = end else {
            self.rest = "";
            return Ok(false);
        };
        let key = self.rest[..i].trim_matches(is_space).to_string();
        if key.contains(is_space) {
            return Err(self.err("key cannot contain a space"));
        }
        self.rest = self.rest[i + 1..].trim_start_matches(is_space);
        if sep == '\n' {
            self.line += 1;
            if let Some(value) = env(&key) {
                self.out.push(Entry { key, value, line });
            }
            return Ok(true);
        }
        let value = self.value(env)?;
        self.out.push(Entry { key, value, line });
        Ok(true)
    }

    /// The value after `=`, the parser left after it.
    fn value(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                let (value, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
                if self.rest.contains('\n') {
                    self.line += 1;
                }
                self.rest = rest;
                let value = value.split_once(" #").map_or(value, |(v, _)| v);
                return self.interpolate(value.trim_end(), env);
            }
        };
        let start_line = self.line;
        let mut chars = String::new();
        let mut escaped = false;
        for (i, c) in self.rest.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            self.rest = &self.rest[i + c.len_utf8()..];
            if quote == '"' {
                return self.interpolate(&unescape(&chars), env);
            }
            return Ok(chars);
        }
        let first = self.rest.lines().next().unwrap_or_default();
        Err(Error {
            line: start_line,
            message: format!("unterminated quoted value {first}"),
        })
    }

    /// Interpolates a value with the environment, then the keys read so far.
    fn interpolate(
        &self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, Error> {
        let lookup = |name: &str| {
            env(name).or_else(|| {
                self.out
                    .iter()
                    .rev()
                    .find(|e| e.key == name)
                    .map(|e| e.value.clone())
            })
        };
        substitute(text, &lookup).map_err(|m| self.err(m))
    }
}

/// The escapes of a double-quoted value: `\a \b \f \n \r \t \v \\ \"`, `\0` and three
/// octal digits, and `\$` (a literal `$`: `$$` for the interpolation). Any other
/// backslash stays.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&n) = it.peek() else {
            out.push('\\');
            continue;
        };
        let simple = match n {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(r) = simple {
            it.next();
            out.push(r);
        } else if n == '$' {
            it.next();
            out.push_str("$$");
        } else if n == '0' {
            it.next();
            let mut digits = String::new();
            while digits.len() < 3 && it.peek().is_some_and(|d| d.is_ascii_digit()) {
                digits.push(it.next().unwrap_or_default());
            }
            // `\0` then Go's octal escape of three digits (`\0101` is `A`); otherwise,
            // `\0` alone included, the text stays.
            match u8::from_str_radix(&digits, 8) {
                Ok(v) if digits.len() == 3 => out.push(char::from(v)),
                _ => {
                    out.push_str("\\0");
                    out.push_str(&digits);
                }
            }
        } else {
            out.push('\\');
        }
    }
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Compose's interpolation of a dotenv value (see the module's notes): the error names
/// what is wrong.
pub fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let b = text;
    let mut i = 0;
    while let Some(off) = b[i..].find('$') {
        out.push_str(&b[i..i + off]);
        let at = i + off;
        let rest = &b[at + 1..];
        let invalid = || Err(format!("invalid template: {text:?}"));
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            i = b.len() - r.len();
        } else if rest.starts_with(is_name_start) {
            let n = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            out.push_str(&lookup(&rest[..n]).unwrap_or_default());
            i = at + 1 + n;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let Some(close) = closing_brace(inner) else {
                return invalid();
            };
            out.push_str(&braced(&inner[..close], text, lookup)?);
            i = at + 2 + close + 1;
        } else {
            // Compose's pattern matches no other `$` (`$1`, a `$` at the end): it stays.
            out.push('$');
            i = at + 1;
        }
    }
    out.push_str(&b[i..]);
    Ok(out)
}

/// The index of the `}` that closes a `${`, nested `${...}` counted.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 1;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The inside of `${...}`: a name, then nothing or an operator and its text.
fn braced(
    inner: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let invalid = || format!("invalid template: {text:?}");
    if !inner.starts_with(is_name_start) {
        return Err(invalid());
    }
    let n = inner
        .find(|c: char| !is_name_char(c))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(n);
    let value = lookup(name);
    if op.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let mut chars = op.chars();
    let kind = chars.next().ok_or_else(invalid)?;
    let arg = chars.as_str();
    // `:` makes an empty value count as unset.
    let set = value.as_ref().filter(|v| !colon || !v.is_empty());
    match kind {
        '-' => match set {
            Some(_) => Ok(value.unwrap_or_default()),
            None => substitute(arg, lookup),
        },
        '+' => match set {
            Some(_) => substitute(arg, lookup),
            None => Ok(value.unwrap_or_default()),
        },
        '?' => match set {
            Some(v) => Ok(v.clone()),
            None => {
                let why = substitute(arg, lookup)?;
                Err(format!(
                    "required variable {name} is missing a value: {why}"
                ))
            }
        },
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/pi".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn read(text: &str) -> Vec<(String, String, usize)> {
        parse(text, &env)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        read(text).into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lines_comments_and_spaces() {
        assert_eq!(
            read(
                "\u{feff}# a comment\n\nA=1\n  B = two words  \nexport C=3\nD: yaml\nE=x # note\nF=x#y\nG=\n"
            ),
            [
                ("A".into(), "1".into(), 3),
                ("B".into(), "two words".into(), 4),
                ("C".into(), "3".into(), 5),
                ("D".into(), "yaml".into(), 6),
                ("E".into(), "x".into(), 7),
                ("F".into(), "x#y".into(), 8),
                ("G".into(), String::new(), 9),
            ]
        );
        // A later line wins; a key starting with a digit is left out.
        assert_eq!(
            pairs("A=1\nB=2\nA=3\n1X=4\n"),
            kv(&[("B", "2"), ("A", "3")])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            pairs(
                "A='single $HOME \\n'\nB=\"double $HOME\\tq\\\"\\$x\"\nC=\"two\nlines\" # c\nD='it\\'s'\nE=\"\\0101\\0\\012\"\n"
            ),
            kv(&[
                ("A", "single $HOME \\n"),
                ("B", "double /home/pi\tq\"$x"),
                ("C", "two\nlines"),
                ("D", "it's"),
                ("E", "A\\0\\012"),
            ])
        );
        // After a closing quote, the rest of the line is the next statement.
        assert_eq!(pairs("A=\"x\" B=y\n"), kv(&[("A", "x"), ("B", "y")]));
    }

    #[test]
    fn keys_alone_take_the_environment() {
        assert_eq!(
            read("HOME\nNOT_SET\nA=1\nLAST"),
            [
                ("HOME".into(), "/home/pi".into(), 1),
                ("A".into(), "1".into(), 3)
            ]
        );
    }

    #[test]
    fn interpolation_as_compose_does_it() {
        assert_eq!(
            pairs(
                "A=1\nB=${A}-$A-$$A\nC=${NOPE:-${A}x}\nD=${EMPTY:-d}${EMPTY-e}\nE=${A:+set}${NOPE+no}\nF=${HOME}\nG=$NOPE.\n"
            ),
            kv(&[
                ("A", "1"),
                ("B", "1-1-$A"),
                ("C", "1x"),
                ("D", "d"),
                ("E", "set"),
                ("F", "/home/pi"),
                ("G", "."),
            ])
        );
        // The environment comes before the file's own keys.
        assert_eq!(
            pairs("HOME=/x\nH=$HOME\n"),
            kv(&[("HOME", "/x"), ("H", "/home/pi")])
        );
    }

    #[test]
    fn errors_name_their_line() {
        let err = |t: &str| parse(t, &env).unwrap_err();
        assert_eq!(
            err("A=1\nB C=2\n"),
            Error {
                line: 2,
                message: "key cannot contain a space".into()
            }
        );
        assert_eq!(
            err("A=1\nB$=2\n").message,
            "unexpected character '$' in variable name \"B$=2\""
        );
        assert_eq!(
            err("A=1\nB=\"open\nC=2\n"),
            Error {
                line: 2,
                message: "unterminated quoted value \"open".into()
            }
        );
        assert_eq!(
            err("A=${NOPE:?set it}\n").message,
            "required variable NOPE is missing a value: set it"
        );
        assert_eq!(err("A=${}\n").message, "invalid template: \"${}\"");
        assert_eq!(pairs("A=$1 5$\n"), kv(&[("A", "$1 5$")]));
    }
}
