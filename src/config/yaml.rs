//! A YAML document as a small tree whose keys keep their line and column, built from
//! yaml-rust2's marked events. Anchors, aliases and `<<` merge keys are resolved;
//! duplicate keys are reported, as Docker's YAML parser refuses them.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Mark {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A scalar; `plain` is false for quoted and block scalars, which are never null.
    Scalar {
        value: String,
        plain: bool,
        mark: Mark,
    },
    Seq {
        items: Vec<Node>,
        mark: Mark,
    },
    Map {
        entries: Vec<Entry>,
        mark: Mark,
    },
}

/// Aliases may copy at most this many values in one file, and this many bytes of keys and
/// scalars: far more than any compose file needs, far less than what exhausts memory (a
/// 1 MiB scalar repeated by 20,000 aliases is 20 GiB).
const MAX_ALIAS_NODES: usize = 100_000;
const MAX_ALIAS_BYTES: usize = 8 << 20;

/// Mappings and sequences may nest this deep: a compose file needs about ten levels.
/// yaml-rust2's own loader recurses once per level (50,000 levels overflow the stack), so
/// the events are read here, one at a time, and refused past this depth.
pub(crate) const MAX_DEPTH: usize = 64;

/// What an alias copies: values and bytes of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    const ONE: Size = Size { nodes: 1, bytes: 0 };

    fn add(self, other: Size) -> Size {
        Size {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_mark: Mark,
    /// The key's type: Docker refuses a key that is not a string (`n:` is `false`).
    pub key_ty: Ty,
    pub value: Node,
}

impl Node {
    pub fn mark(&self) -> Mark {
        match self {
            Node::Scalar { mark, .. } | Node::Seq { mark, .. } | Node::Map { mark, .. } => *mark,
        }
    }

    /// How many values the node holds, itself included, and the bytes of their text
    /// (keys and scalars).
    fn size(&self) -> Size {
        match self {
            Node::Scalar { value, .. } => Size {
                nodes: 1,
                bytes: value.len(),
            },
            Node::Seq { items, .. } => items.iter().map(Node::size).fold(Size::ONE, Size::add),
            Node::Map { entries, .. } => entries
                .iter()
                .map(|e| {
                    Size {
                        nodes: 1,
                        bytes: e.key.len(),
                    }
                    .add(e.value.size())
                })
                .fold(Size::ONE, Size::add),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, plain: true, .. } if value.is_empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } if !self.is_null() => Some(value),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match self {
            Node::Map { entries, .. } => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// The YAML 1.1 spellings Docker's parser reads as true (`y`, `yes`, `on`, `true`...).
    pub fn is_true(&self) -> bool {
        self.ty() == Ty::Bool
            && matches!(self, Node::Scalar { value, .. } if matches!(value.as_str(), "y" | "Y" | "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON"))
    }

    /// The type Docker's YAML parser (YAML 1.1, go-yaml v2) gives the value: a quoted or
    /// block scalar is a string; a plain one may be null, a boolean, an integer or a float.
    pub fn ty(&self) -> Ty {
        match self {
            Node::Seq { .. } => Ty::List,
            Node::Map { .. } => Ty::Map,
            Node::Scalar { plain: false, .. } => Ty::Str,
            Node::Scalar { value, .. } => plain_type(value),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_null() => "null",
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// The node written again as a YAML flow value that a YAML 1.1 parser (Docker's) reads as
/// the same value: strings double-quoted (JSON escapes are YAML escapes), plain scalars
/// that may be numbers, booleans or null kept plain (their text is unchanged, so they
/// resolve as they did), nulls as `null`, lists and mappings in flow style.
pub(crate) fn flow(node: &Node) -> String {
    fn quoted(s: &str) -> String {
        serde_json::to_string(s).expect("a string serialises")
    }
    match node {
        _ if node.is_null() => "null".to_string(),
        // `-` alone would read as a list's dash.
        Node::Scalar {
            value, plain: true, ..
        } if value != "-"
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c)) =>
        {
            value.clone()
        }
        Node::Scalar { value, .. } => quoted(value),
        Node::Seq { items, .. } => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Node::Map { entries, .. } => {
            let entries: Vec<String> = entries
                .iter()
                .map(|e| format!("{}: {}", quoted(&e.key), flow(&e.value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// A value's type as JSON schema sees it once Docker parsed the YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str,
    List,
    Map,
}

/// What go-yaml v2 makes of a plain scalar: null (`~`, `null`, empty), a boolean (`y`,
/// `n`, `yes`, `no`, `on`, `off`, `true`, `false`, in three cases each), an integer (Go's
/// `ParseInt` with base prefixes, `_` ignored), a float (`1.5`, `1e3`, `.inf`, `.nan`),
/// else a string.
pub(crate) fn plain_type(v: &str) -> Ty {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Ty::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "true" | "True"
        | "TRUE" | "false" | "False" | "FALSE" | "on" | "On" | "ON" | "off" | "Off" | "OFF" => {
            return Ty::Bool;
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => return Ty::Float,
        _ => {}
    }
    let plain: String = v.chars().filter(|c| *c != '_').collect();
    let digits = plain.trim_start_matches(['+', '-']);
    let int = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        !b.is_empty() && b.chars().all(|c| c == '0' || c == '1')
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        !o.is_empty() && o.chars().all(|c| ('0'..='7').contains(&c))
    } else if digits.len() > 1 && digits.starts_with('0') {
        digits.chars().all(|c| ('0'..='7').contains(&c))
    } else {
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    };
    // A sign only once, and only in front.
    let signs = plain.len() - digits.len();
    if int && signs <= 1 {
        return Ty::Int;
    }
    // `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let whole = i - start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if whole == 0 && i == f {
            return Ty::Str;
        }
    } else if whole == 0 {
        return Ty::Str;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return Ty::Str;
        }
    }
    if i == b.len() { Ty::Float } else { Ty::Str }
}

/// A problem found while reading the YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub mark: Mark,
    /// The dotted key path where it happened, when known.
    pub key_path: String,
    pub message: String,
}

/// Parses the first document. `Ok(None)` for an empty file. Duplicate keys, unknown
/// aliases and aliases past their budget come back as errors alongside the tree; nesting
/// deeper than [`MAX_DEPTH`] stops the parse.
pub(crate) fn parse(text: &str) -> Result<(Option<Node>, Vec<YamlError>), YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (ev, marker) = parser.next_token().map_err(|e| YamlError {
            mark: Mark::from(*e.marker()),
            key_path: String::new(),
            message: e.info().to_string(),
        })?;
        match ev {
            // The first document only, as before.
            Event::StreamEnd | Event::DocumentEnd => break,
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(YamlError {
                        mark: Mark::from(marker),
                        key_path: builder.key_path(),
                        message: format!(
                            "mappings and lists nested deeper than {MAX_DEPTH} levels"
                        ),
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        builder.on_event(ev, marker);
    }
    Ok((builder.doc, builder.errors))
}

enum Frame {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// The keys of `entries`, so that a duplicate is found without a scan of them all
        /// (400,000 keys took minutes).
        seen: std::collections::HashSet<String>,
        key: Option<(String, Mark, Ty)>,
        mark: Mark,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchor's node and what an alias of it copies.
    anchors: HashMap<usize, (Node, Size)>,
    doc: Option<Node>,
    errors: Vec<YamlError>,
    /// Keys of the open mappings, to name where a duplicate key is.
    path: Vec<String>,
    /// Values and bytes copied by aliases so far, against "billion laughs" files.
    expanded: Size,
    too_many_aliases: bool,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        let here = self.key_path();
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.doc.is_none() {
                    self.doc = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, seen, key, ..
            }) => match key.take() {
                None => {
                    let mark = node.mark();
                    let ty = node.ty();
                    let text = match &node {
                        Node::Scalar { value, .. } => value.clone(),
                        _ => {
                            self.errors.push(YamlError {
                                mark,
                                key_path: here.clone(),
                                message: "a mapping key must be a plain value".into(),
                            });
                            String::new()
                        }
                    };
                    *key = Some((text, mark, ty));
                }
                Some((text, key_mark, key_ty)) => {
                    if text != "<<" && !seen.insert(text.clone()) {
                        let mut path = here.clone();
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&text);
                        self.errors.push(YamlError {
                            mark: key_mark,
                            key_path: path,
                            message: format!("duplicate key \"{text}\""),
                        });
                    }
                    entries.push(Entry {
                        key: text,
                        key_mark,
                        key_ty,
                        value: node,
                    });
                }
            },
        }
    }

    fn key_path(&self) -> String {
        let parts: Vec<&str> = self
            .path
            .iter()
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect();
        parts.join(".")
    }

    /// The key that the next node will be the value of, for paths in error messages.
    fn pending_key(&self) -> Option<String> {
        match self.stack.last() {
            Some(Frame::Map {
                key: Some((k, _, _)),
                ..
            }) => Some(k.clone()),
            _ => None,
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        let mark = Mark::from(marker);
        match ev {
            Event::Scalar(value, style, anchor, _) => {
                let plain = style == TScalarStyle::Plain;
                self.push(Node::Scalar { value, plain, mark }, anchor);
            }
            Event::Alias(id) => {
                let here = self.key_path();
                let size = self.anchors.get(&id).map_or(Size::default(), |(_, s)| *s);
                self.expanded = self.expanded.add(size);
                let over = if self.expanded.nodes > MAX_ALIAS_NODES {
                    Some("aliases expand to too many values".to_string())
                } else if self.expanded.bytes > MAX_ALIAS_BYTES {
                    Some(format!(
                        "aliases expand to more than {} MiB of text",
                        MAX_ALIAS_BYTES >> 20
                    ))
                } else {
                    None
                };
                if let Some(message) = over {
                    if !self.too_many_aliases {
                        self.too_many_aliases = true;
                        self.errors.push(YamlError {
                            mark,
                            key_path: here,
                            message,
                        });
                    }
                    self.push(
                        Node::Scalar {
                            value: String::new(),
                            plain: true,
                            mark,
                        },
                        0,
                    );
                    return;
                }
                let node = self
                    .anchors
                    .get(&id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_else(|| {
                        self.errors.push(YamlError {
                            mark,
                            key_path: here,
                            message: "unknown alias".into(),
                        });
                        Node::Scalar {
                            value: String::new(),
                            plain: true,
                            mark,
                        }
                    });
                self.push(node, 0);
            }
            Event::SequenceStart(anchor, _) => {
                let key = self.pending_key();
                self.path.push(key.unwrap_or_default());
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    mark,
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                let key = self.pending_key();
                self.path.push(key.unwrap_or_default());
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    seen: Default::default(),
                    key: None,
                    mark,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.path.pop();
                match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        mark,
                        anchor,
                    }) => self.push(Node::Seq { items, mark }, anchor),
                    Some(Frame::Map {
                        entries,
                        mark,
                        anchor,
                        ..
                    }) => self.push(
                        Node::Map {
                            entries: merge_keys(entries),
                            mark,
                        },
                        anchor,
                    ),
                    None => {}
                }
            }
            _ => {}
        }
    }
}

/// Resolves `<<: *anchor` (or a list of anchors): keys written in the mapping win over
/// merged ones, earlier merged mappings over later ones.
fn merge_keys(entries: Vec<Entry>) -> Vec<Entry> {
    if !entries.iter().any(|e| e.key == "<<") {
        return entries;
    }
    let (merges, mut own): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.key == "<<");
    for merge in merges {
        let sources = match merge.value {
            Node::Seq { items, .. } => items,
            other => vec![other],
        };
        for source in sources {
            if let Node::Map { entries, .. } = source {
                for e in entries {
                    if !own.iter().any(|o| o.key == e.key) {
                        own.push(e);
                    }
                }
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        let (node, errors) = parse(text).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        node.unwrap()
    }

    #[test]
    fn keys_keep_their_position() {
        let n = doc("version: \"3.8\"\nservices:\n  web:\n    image: httpd\n");
        let services = n.get("services").unwrap();
        assert_eq!(services.key_mark, Mark { line: 2, column: 1 });
        let web = services.value.get("web").unwrap();
        assert_eq!(web.key_mark, Mark { line: 3, column: 3 });
        assert_eq!(
            web.value.get("image").unwrap().value.as_str(),
            Some("httpd")
        );
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let n =
            doc("x: &base\n  image: a\n  user: u\nweb:\n  <<: *base\n  image: b\nother: *base\n");
        let web = &n.get("web").unwrap().value;
        assert_eq!(web.get("image").unwrap().value.as_str(), Some("b"));
        assert_eq!(web.get("user").unwrap().value.as_str(), Some("u"));
        assert_eq!(
            n.get("other")
                .unwrap()
                .value
                .get("image")
                .unwrap()
                .value
                .as_str(),
            Some("a")
        );
    }

    #[test]
    fn nulls_and_booleans() {
        let n = doc("a:\nb: ~\nc: \"\"\nd: true\ne: \"true\"\n");
        assert!(n.get("a").unwrap().value.is_null());
        assert!(n.get("b").unwrap().value.is_null());
        assert!(!n.get("c").unwrap().value.is_null());
        assert!(n.get("d").unwrap().value.is_true());
        assert!(!n.get("e").unwrap().value.is_true());
    }

    #[test]
    fn plain_scalars_take_yaml_1_1_types() {
        for (v, t) in [
            ("", Ty::Null),
            ("~", Ty::Null),
            ("n", Ty::Bool),
            ("Yes", Ty::Bool),
            ("off", Ty::Bool),
            ("nope", Ty::Str),
            ("42", Ty::Int),
            ("-7", Ty::Int),
            ("0x1F", Ty::Int),
            ("0755", Ty::Int),
            ("1_000", Ty::Int),
            ("3.8", Ty::Float),
            ("1e3", Ty::Float),
            (".5", Ty::Float),
            ("-.inf", Ty::Float),
            ("1.2.3", Ty::Str),
            ("512M", Ty::Str),
            ("0.5s", Ty::Str),
            ("+-1", Ty::Str),
            ("e3", Ty::Str),
        ] {
            assert_eq!(plain_type(v), t, "{v:?}");
        }
        let n = doc("a: \"3.8\"\nb: 3.8\nc: |\n  x\n");
        assert_eq!(n.get("a").unwrap().value.ty(), Ty::Str);
        assert_eq!(n.get("b").unwrap().value.ty(), Ty::Float);
        assert_eq!(n.get("c").unwrap().value.ty(), Ty::Str);
        assert!(doc("a: y\n").get("a").unwrap().value.is_true());
    }

    #[test]
    fn flow_keeps_every_value() {
        let n = doc(
            "a: \"x: y\"\nb: 5\nc: true\nd:\ne: [1, \"two\", {f: 'g\"h'}]\ng: |\n  line 1\n  line 2\nh: -1.5e3\ni: \"$X\"\n",
        );
        assert_eq!(
            flow(&n),
            r#"{"a": "x: y", "b": 5, "c": true, "d": null, "e": [1, "two", {"f": "g\"h"}], "g": "line 1\nline 2\n", "h": -1.5e3, "i": "$X"}"#
        );
        // Read back, it is the same tree.
        let again = doc(&flow(&n));
        assert_eq!(flow(&again), flow(&n));
        assert_eq!(
            again.get("g").unwrap().value.as_str(),
            Some("line 1\nline 2\n")
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = (b'a' + i - 1) as char;
            let this = (b'a' + i) as char;
            text.push_str(&format!("{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let (_, errors) = parse(&text).unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "aliases expand to too many values");
    }

    /// Issue 18 item 5: a 1 MiB scalar repeated by aliases passes the values' budget but
    /// not the bytes' (it took 4 GiB and aborted).
    #[test]
    fn aliases_of_a_large_scalar_are_refused() {
        let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(1 << 20));
        text.push_str(&"*a, ".repeat(20_000));
        text.push_str("*a]\n");
        let (_, errors) = parse(&text).unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            "aliases expand to more than 8 MiB of text"
        );
        // The ninth alias: eight copies are 8 MiB.
        assert_eq!(
            errors[0].mark,
            Mark {
                line: 2,
                column: 37
            }
        );
    }

    /// Issue 18 item 5: 50,000 nested lists overflowed the stack (an abort); now an
    /// error at the level past the limit, block or flow.
    #[test]
    fn deep_nesting_is_refused() {
        let block = format!("x:\n  {}y\n", "- ".repeat(50_000));
        let e = parse(&block).unwrap_err();
        assert_eq!(e.message, "mappings and lists nested deeper than 64 levels");
        assert_eq!((e.mark.line, e.key_path.as_str()), (2, "x"));
        // Flow collections: yaml-rust2's scanner has a limit of its own, met first.
        let flow = format!("x: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
        assert_eq!(
            parse(&flow).unwrap_err().message,
            "recursion limit exceeded"
        );
        let fine = format!("x: {}{}\n", "[".repeat(60), "]".repeat(60));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn duplicate_keys_and_syntax_errors() {
        let (_, errors) = parse("services:\n  web:\n    image: a\n    image: b\n").unwrap();
        assert_eq!(
            errors,
            [YamlError {
                mark: Mark { line: 4, column: 5 },
                key_path: "services.web.image".into(),
                message: "duplicate key \"image\"".into(),
            }]
        );
        let e = parse("services:\n  web:\n    image: [a\n  db: 1\n").unwrap_err();
        assert_eq!(e.mark.line, 4);
        assert!(parse("").unwrap().0.is_none());
    }
}
