//! A TOML file kept with its spans: deserializes raw structs while collecting every shape
//! error (unknown key, wrong type) instead of the first, and names the key path of any
//! byte range of the file.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diag::{Diagnostic, Severity, Source, humanize_serde};

/// Shape errors beyond this many in one file are not worth reporting one by one.
const MAX_SHAPE_ERRORS: usize = 100;

pub(crate) struct TomlFile<'a> {
    pub src: &'a Source,
    root: Spanned<DeTable<'a>>,
}

impl<'a> TomlFile<'a> {
    /// Parses the text; syntax errors are reported and give `None`.
    pub fn parse(src: &'a Source, diags: &mut Vec<Diagnostic>) -> Option<Self> {
        let (root, errors) = DeTable::parse_recoverable(&src.text);
        if errors.is_empty() {
            return Some(TomlFile { src, root });
        }
        for e in errors {
            let offset = e.span().map(|s| s.start);
            let path = e.span().map(|s| key_path(&root, &s)).unwrap_or_default();
            let message = format!("invalid TOML: {}", e.message().trim_end());
            diags.push(src.at(Severity::Error, offset, path, message));
        }
        None
    }

    /// Deserializes the whole file into `T`. Each shape error is reported, the key it is
    /// about is dropped from a working copy, and deserialization starts again: a file with
    /// five wrong keys gets five errors, and `T` holds everything else.
    pub fn deserialize<T: DeserializeOwned>(&self, diags: &mut Vec<Diagnostic>) -> Option<T> {
        let span = self.root.span();
        let mut work = DeValue::Table(self.root.get_ref().clone());
        for _ in 0..MAX_SHAPE_ERRORS {
            let de = ValueDeserializer::from(Spanned::new(span.clone(), work.clone()));
            match T::deserialize(de) {
                Ok(value) => return Some(value),
                Err(e) => {
                    let message = humanize_serde(e.message());
                    let Some(err_span) = e.span() else {
                        diags.push(self.src.at(Severity::Error, None, "", message));
                        return None;
                    };
                    diags.push(self.error(&err_span, message));
                    if !remove_entry_containing(&mut work, &err_span) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// The key path of a span of this file.
    pub fn path(&self, span: &Range<usize>) -> String {
        key_path(&self.root, span)
    }

    pub fn error(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Error, span, message)
    }

    pub fn warning(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Warning, span, message)
    }

    fn diag(
        &self,
        severity: Severity,
        span: &Range<usize>,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.src.at(
            severity,
            Some(span.start),
            key_path(&self.root, span),
            message,
        )
    }

    /// A diagnostic about a key the file does not have, reported where its table starts.
    pub fn missing(
        &self,
        table_span: &Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut path = key_path(&self.root, table_span);
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        self.src
            .at(Severity::Error, Some(table_span.start), path, message)
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Removes the deepest table entry whose key or value holds `span`.
fn remove_entry_containing(value: &mut DeValue<'_>, span: &Range<usize>) -> bool {
    match value {
        DeValue::Table(table) => {
            for (_, child) in table.iter_mut() {
                if remove_entry_containing(child.get_mut(), span) {
                    return true;
                }
            }
            let target = table
                .iter()
                .find(|(k, v)| contains(&k.span(), span) || contains(&v.span(), span))
                .map(|(k, _)| k.clone());
            target.is_some_and(|k| table.remove(&k).is_some())
        }
        DeValue::Array(items) => items
            .iter_mut()
            .any(|item| remove_entry_containing(item.get_mut(), span)),
        _ => false,
    }
}

/// The dotted path (`host[2].docker.install`) of the deepest key, value or array element
/// holding `span`; empty when it is outside every key.
pub(crate) fn key_path(root: &Spanned<DeTable<'_>>, span: &Range<usize>) -> String {
    let mut best = String::new();
    walk_table(root.get_ref(), span, "", &mut best);
    best
}

fn walk_table(table: &DeTable<'_>, span: &Range<usize>, prefix: &str, best: &mut String) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        if contains(&key.span(), span) {
            // About the key itself; an `[[array]]` header also holds its first element.
            best.clone_from(&path);
            continue;
        }
        if contains(&value.span(), span) {
            best.clone_from(&path);
        }
        walk_value(value.get_ref(), span, &path, best);
    }
}

fn walk_value(value: &DeValue<'_>, span: &Range<usize>, path: &str, best: &mut String) {
    match value {
        DeValue::Table(t) => walk_table(t, span, path, best),
        DeValue::Array(items) => {
            // Elements follow each other in the file, and all an element holds (even an
            // `[[array]]` element spread over several headers) lies before the next one
            // starts: only the last element starting at or before `span` can hold it. One
            // look instead of a walk of every element, for each diagnostic (8,000 hosts
            // with an error each took minutes).
            let Some(i) = items
                .partition_point(|item| item.span().start <= span.start)
                .checked_sub(1)
            else {
                return;
            };
            let item = &items[i];
            let item_path = format!("{path}[{i}]");
            if contains(&item.span(), span) {
                best.clone_from(&item_path);
            }
            walk_value(item.get_ref(), span, &item_path, best);
        }
        _ => {}
    }
}

/// Appends a key the way TOML would write it: bare when it can be, quoted otherwise.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        item: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: Option<String>,
        port: Option<i64>,
    }

    fn run(text: &str) -> (Option<Doc>, Vec<String>) {
        let src = Source::new("f.toml".into(), text.into());
        let mut diags = Vec::new();
        let file = TomlFile::parse(&src, &mut diags).unwrap();
        let doc = file.deserialize::<Doc>(&mut diags);
        (doc, diags.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_shape_error_is_reported_and_the_rest_is_kept() {
        let (doc, diags) = run(
            "[[item]]\nname = \"a\"\nnmae = 1\n\n[[item]]\nname = \"b\"\nport = \"x\"\n[item.sub]\n",
        );
        assert_eq!(
            diags,
            [
                "f.toml:3:1: item[0].nmae: unknown key, expected one of: name, port",
                "f.toml:7:8: item[1].port: expected an integer, found string \"x\"",
                "f.toml:8:7: item[1].sub: unknown key, expected one of: name, port",
            ]
        );
        let doc = doc.unwrap();
        assert_eq!(doc.item.len(), 2);
        assert_eq!(doc.item[1].name.as_deref(), Some("b"));
        assert_eq!(doc.item[1].port, None);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let src = Source::new("f.toml".into(), "a = \n".into());
        let mut diags = Vec::new();
        assert!(TomlFile::parse(&src, &mut diags).is_none());
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].to_string().starts_with("f.toml:1:"),
            "{}",
            diags[0]
        );
    }

    #[test]
    fn keys_are_quoted_when_not_bare() {
        assert_eq!(join_key("labels", "zone"), "labels.zone");
        assert_eq!(join_key("daemon", "a.b"), "daemon.\"a.b\"");
    }
}
