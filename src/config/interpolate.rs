//! Compose variable interpolation, as the Docker CLI (`docker stack deploy`) does it: the
//! one implementation that `check` (undefined variables) and `deploy` (image references,
//! file paths, bind sources, placement constraints) share.
//!
//! The rules follow the CLI's template package, quirks included, so that rpiprov computes
//! what Docker will compute:
//! - `$$` is a literal `$`;
//! - `$NAME` and `${NAME}`, a name being a letter or `_` then letters, digits or `_`
//!   (any case);
//! - after the name, an optional `:` then `-` or `?`, then anything up to the next `}`
//!   (or, without braces, to the end of the string or the next `}`): `${NAME:-default}`
//!   (unset or empty), `${NAME-default}` (unset), `${NAME:?message}` (unset or empty is an
//!   error), `${NAME?message}` (unset is an error);
//! - any other `$` (`$1`, `${}`, `${NAME:x}`, a trailing `$`) is invalid: it becomes
//!   nothing, and makes `docker stack deploy` refuse the file, but only when no valid
//!   expression follows it in the same value: the CLI keeps the outcome of the last
//!   expression only (`echo $1 $HOME` is accepted as `echo 1 /root`, `echo $HOME $1` is
//!   refused; a failed `${A:?msg}` followed by `${B}` is accepted too);
//! - which form applies is decided on the text between the braces in the order `:-`,
//!   `-`, `:?`, `?`, each split at its first occurrence: `${A:?no-way}` therefore reads as
//!   variable `A:?no` with default `way`, as Docker reads it.

/// How one `$` expression takes its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `$NAME`, `${NAME}`: the value, or empty when unset.
    Plain,
    /// `${NAME:-default}`: the default when unset or empty.
    DefaultIfEmpty(String),
    /// `${NAME-default}`: the default when unset.
    DefaultIfUnset(String),
    /// `${NAME:?message}`: an error when unset or empty.
    RequiredNonEmpty(String),
    /// `${NAME?message}`: an error when unset.
    Required(String),
}

impl Form {
    /// The value is never left empty for want of the variable (a default is given).
    pub fn has_default(&self) -> bool {
        matches!(self, Form::DefaultIfEmpty(_) | Form::DefaultIfUnset(_))
    }
}

/// One variable reference in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The variable read, as Docker splits it (see the module's note on `${A:?no-way}`).
    pub name: String,
    pub form: Form,
    /// Byte offset of the `$` in the string.
    pub at: usize,
}

/// Why a string cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A `$` that starts no valid expression, at this byte offset.
    Invalid { at: usize },
    /// A `${NAME:?message}` or `${NAME?message}` whose variable is missing.
    Required { name: String, message: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid { .. } => f.write_str(
                "invalid interpolation format: write $$ for a literal $, or ${NAME} for a variable",
            ),
            Error::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
        }
    }
}

/// A piece of a parsed string.
enum Piece<'a> {
    Text(&'a str),
    Dollar,
    Var(Reference),
    /// A `$` that starts no valid expression, at this byte offset.
    Invalid(usize),
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The substitution text after a name: an optional `:`, then `-` or `?`, then everything
/// up to (not including) the next `}`. Returns its length, 0 when there is none.
fn modifier_len(rest: &[u8]) -> usize {
    let mut i = 0;
    if rest.first() == Some(&b':') {
        i = 1;
    }
    if !matches!(rest.get(i), Some(b'-' | b'?')) {
        return 0;
    }
    i += 1;
    while i < rest.len() && rest[i] != b'}' {
        i += 1;
    }
    i
}

/// Splits `s` at the first `sep`.
fn partition<'s>(s: &'s str, sep: &str) -> (&'s str, &'s str) {
    s.split_once(sep).unwrap_or((s, ""))
}

/// What Docker makes of the text of one expression (`NAME:-x` ...).
fn reference(substitution: &str, at: usize) -> Reference {
    let (name, form) = if substitution.contains(":-") {
        let (n, d) = partition(substitution, ":-");
        (n, Form::DefaultIfEmpty(d.to_string()))
    } else if substitution.contains('-') {
        let (n, d) = partition(substitution, "-");
        (n, Form::DefaultIfUnset(d.to_string()))
    } else if substitution.contains(":?") {
        let (n, m) = partition(substitution, ":?");
        (n, Form::RequiredNonEmpty(m.to_string()))
    } else if substitution.contains('?') {
        let (n, m) = partition(substitution, "?");
        (n, Form::Required(m.to_string()))
    } else {
        (substitution, Form::Plain)
    };
    Reference {
        name: name.to_string(),
        form,
        at,
    }
}

fn parse(text: &str) -> Vec<Piece<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if start < i {
            out.push(Piece::Text(&text[start..i]));
        }
        let at = i;
        let rest = &b[i + 1..];
        let used = if rest.first() == Some(&b'$') {
            out.push(Piece::Dollar);
            1
        } else if rest.first().is_some_and(|c| is_name_start(*c)) {
            let mut n = 1;
            while n < rest.len() && is_name_char(rest[n]) {
                n += 1;
            }
            n += modifier_len(&rest[n..]);
            out.push(Piece::Var(reference(&text[at + 1..at + 1 + n], at)));
            n
        } else if rest.first() == Some(&b'{') && rest.get(1).is_some_and(|c| is_name_start(*c)) {
            let inner = &rest[1..];
            let mut n = 1;
            while n < inner.len() && is_name_char(inner[n]) {
                n += 1;
            }
            n += modifier_len(&inner[n..]);
            if inner.get(n) == Some(&b'}') {
                out.push(Piece::Var(reference(&text[at + 2..at + 2 + n], at)));
                n + 2
            } else {
                out.push(Piece::Invalid(at));
                0
            }
        } else {
            out.push(Piece::Invalid(at));
            0
        };
        i += 1 + used;
        start = i;
    }
    if start < b.len() {
        out.push(Piece::Text(&text[start..]));
    }
    out
}

/// What a string holds: its variable references and its invalid `$`s, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub references: Vec<Reference>,
    /// Byte offsets of `$`s that start no valid expression.
    pub invalid: Vec<usize>,
    /// The last expression of the string is an invalid `$`: Docker refuses the value.
    pub last_invalid: bool,
}

/// The variable references of a string and its invalid `$`s. `$$` is neither.
pub fn scan(text: &str) -> Scan {
    let mut out = Scan::default();
    for p in parse(text) {
        match p {
            Piece::Var(r) => {
                out.references.push(r);
                out.last_invalid = false;
            }
            Piece::Invalid(at) => {
                out.invalid.push(at);
                out.last_invalid = true;
            }
            Piece::Text(_) | Piece::Dollar => {}
        }
    }
    out
}

/// Interpolates `text` with `lookup` (`None`: the variable is unset), as `docker stack
/// deploy` does with its environment: only the last expression's failure counts (see the
/// module's notes).
pub fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut last: Option<Error> = None;
    for piece in parse(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Dollar => out.push('$'),
            Piece::Invalid(at) => last = Some(Error::Invalid { at }),
            Piece::Var(r) => {
                last = None;
                let value = lookup(&r.name);
                let required = |message: String| Error::Required {
                    name: r.name.clone(),
                    message,
                };
                match r.form {
                    Form::Plain => out.push_str(&value.unwrap_or_default()),
                    Form::DefaultIfEmpty(d) => match value.filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&d),
                    },
                    Form::DefaultIfUnset(d) => out.push_str(&value.unwrap_or(d)),
                    Form::RequiredNonEmpty(m) => match value.filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(&v),
                        None => last = Some(required(m)),
                    },
                    Form::Required(m) => match value {
                        Some(v) => out.push_str(&v),
                        None => last = Some(required(m)),
                    },
                }
            }
        }
    }
    match last {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2".into()),
            "EMPTY" => Some(String::new()),
            "REGISTRY" => Some("reg:5000".into()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, Error> {
        substitute(text, &env)
    }

    #[test]
    fn plain_braced_and_escaped() {
        assert_eq!(sub("app:$TAG").unwrap(), "app:1.2");
        assert_eq!(sub("app:${TAG}").unwrap(), "app:1.2");
        assert_eq!(sub("a$$b $${TAG}").unwrap(), "a$b ${TAG}");
        assert_eq!(sub("x${NOPE}y$NOPE").unwrap(), "xy");
        assert_eq!(sub("$TAG/path").unwrap(), "1.2/path");
        // Names are letters, digits and '_' in any case; the name ends at anything else.
        assert_eq!(sub("$tag.$TAG").unwrap(), ".1.2");
        assert_eq!(sub("no dollar").unwrap(), "no dollar");
    }

    #[test]
    fn defaults_and_requirements() {
        assert_eq!(sub("${NOPE:-d}").unwrap(), "d");
        assert_eq!(sub("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(sub("${EMPTY-d}").unwrap(), "");
        assert_eq!(sub("${NOPE-d}").unwrap(), "d");
        assert_eq!(sub("${TAG:-d}").unwrap(), "1.2");
        assert_eq!(sub("${TAG:?set it}").unwrap(), "1.2");
        assert_eq!(sub("${EMPTY?set it}").unwrap(), "");
        assert_eq!(
            sub("${EMPTY:?set it}").unwrap_err().to_string(),
            "required variable EMPTY is missing a value: set it"
        );
        assert_eq!(
            sub("${NOPE?}").unwrap_err(),
            Error::Required {
                name: "NOPE".into(),
                message: String::new()
            }
        );
        // Defaults may hold anything but '}', spaces and '$' included (not expanded).
        assert_eq!(sub("${NOPE:-a b:c}").unwrap(), "a b:c");
    }

    /// Docker's own quirks, kept: without braces the modifier runs to the end of the
    /// string, and `-` wins over `:?` when both are in the text.
    #[test]
    fn docker_quirks_are_kept() {
        assert_eq!(sub("$REGISTRY-app:1").unwrap(), "reg:5000");
        assert_eq!(sub("$NOPE-app:1").unwrap(), "app:1");
        assert_eq!(sub("${NOPE:?no-way}").unwrap(), "way");
        let refs = scan("${A:?no-way}").references;
        assert_eq!(refs[0].name, "A:?no");
        assert_eq!(refs[0].form, Form::DefaultIfUnset("way".into()));
    }

    #[test]
    fn invalid_expressions_are_refused_with_their_offset() {
        for (text, at) in [
            ("echo $1", 5),
            ("${}", 0),
            ("a ${TAG", 2),
            ("${TAG:x}", 0),
            ("price: 5$", 8),
            ("$ {TAG}", 0),
            ("${1A}", 0),
            ("$$1 $1", 4),
        ] {
            assert_eq!(sub(text), Err(Error::Invalid { at }), "{text}");
            assert!(scan(text).last_invalid, "{text}");
        }
    }

    /// As the Docker CLI 20.10 does (checked against it): only the last expression's
    /// outcome counts; an invalid `$` becomes nothing.
    #[test]
    fn only_the_last_expression_decides() {
        assert_eq!(sub("echo $1 $TAG").unwrap(), "echo 1 1.2");
        let s = scan("echo $1 $TAG");
        assert_eq!((s.invalid.as_slice(), s.last_invalid), (&[5][..], false));
        assert_eq!(sub("${NOPE:?x} ${TAG}").unwrap(), " 1.2");
        assert_eq!(
            sub("${TAG} ${NOPE:?x}"),
            Err(Error::Required {
                name: "NOPE".into(),
                message: "x".into()
            })
        );
    }

    #[test]
    fn references_in_order_with_their_forms() {
        let refs = scan("$A ${B:-x} ${C-} $${D} ${E:?m} ${F?}").references;
        let got: Vec<(&str, &Form, usize)> = refs
            .iter()
            .map(|r| (r.name.as_str(), &r.form, r.at))
            .collect();
        assert_eq!(
            got,
            [
                ("A", &Form::Plain, 0),
                ("B", &Form::DefaultIfEmpty("x".into()), 3),
                ("C", &Form::DefaultIfUnset(String::new()), 11),
                ("E", &Form::RequiredNonEmpty("m".into()), 23),
                ("F", &Form::Required(String::new()), 31),
            ]
        );
        assert!(refs[1].form.has_default() && !refs[3].form.has_default());
    }
}
