//! The import rules of the module map in `lib.rs`, checked on the source itself: every
//! `crate::NAME` a module's code names is an edge from that module to `NAME` (top-level
//! modules only; comments and `#[cfg(test)]` modules at a file's end are not read, nor is
//! `testing`, which only tests use). The check fails on an edge the table below does not
//! allow, on any cycle, on an executor that names another executor, on `cli` naming
//! `cmd`, and on a top-level module the table does not place. An edge on its way out is
//! listed in `LEAVING`, with who removes it; the check fails once it is gone from the
//! code but not from the list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The executors: each runs one command's remote work, and none may name another.
const EXECUTORS: &[&str] = &[
    "bootstrap",
    "deploy",
    "teardown",
    "status",
    "logs",
    "maintain",
];

/// Each top-level module and the top-level modules its code may name. The direction is
/// `cli <- cmd -> executors -> {plan, docker, exec, remote, config}`, with `ui` reading
/// `exec`'s report types and nothing naming `ui` but `cmd`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("exit", &[]),
    ("shell", &[]),
    ("secret", &[]),
    ("clock", &[]),
    // Only value types its flags parse into (`lab::Subnet`, `lab::Port`, `lab::Distros`).
    ("cli", &["lab"]),
    ("config", &["secret"]),
    ("select", &["config"]),
    ("remote", &["clock", "config", "secret", "shell"]),
    // `secret`: the join request carries the token as a Secret until it is encoded.
    ("docker", &["config", "secret", "shell"]),
    ("exec", &["clock", "docker", "remote", "secret"]),
    ("plan", &["config", "docker"]),
    (
        "bootstrap",
        &["config", "docker", "exec", "plan", "remote", "secret"],
    ),
    ("deploy", &["config", "docker", "exec", "remote", "secret"]),
    ("teardown", &["config", "docker", "exec", "remote"]),
    ("status", &["config", "docker", "exec", "remote"]),
    ("logs", &["docker", "exec", "remote"]),
    ("ui", &["exec", "status"]),
    ("maintain", &["config", "docker", "exec", "plan", "remote"]),
    (
        "lab",
        &["exit", "shell", "config", "remote", "secret", "exec"],
    ),
    (
        "cmd",
        &[
            "cli",
            "exit",
            "config",
            "select",
            "secret",
            "remote",
            "exec",
            "ui",
            "bootstrap",
            "deploy",
            "teardown",
            "status",
            "logs",
            "maintain",
            "lab",
        ],
    ),
];

/// Edges that break the rules today and are on their way out: (from, to, why and who).
/// They are left out of the checks; once one is gone from the code, the check fails until
/// it is gone from here too.
const LEAVING: &[(&str, &str, &str)] = &[];

/// Module -> (module it names -> where, as `file:line`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The top-level modules `lib.rs` declares.
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

/// The top-level module names a piece of code refers to as `crate::NAME` or in a
/// `crate::{A, B::c}` group, with the line of each.
fn references(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line_of = Vec::with_capacity(code.len());
    let mut line = 1;
    for c in code.chars() {
        line_of.push(line);
        if c == '\n' {
            line += 1;
        }
    }
    let chars: Vec<char> = code.chars().collect();
    let ident = |from: usize| -> String {
        chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect()
    };
    let mut i = 0;
    while i + 7 <= chars.len() {
        if chars[i..i + 7].iter().collect::<String>() != "crate::"
            || (i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '$'))
        {
            i += 1;
            continue;
        }
        let at = i + 7;
        if chars.get(at) == Some(&'{') {
            // A group: the first segment of each item at depth 1.
            let mut depth = 0;
            let mut j = at;
            let mut expect = true;
            while j < chars.len() {
                match chars[j] {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            expect = true;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect = true,
                    c if expect && depth == 1 && (c.is_ascii_alphabetic() || c == '_') => {
                        out.push((ident(j), line_of[j]));
                        expect = false;
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j;
        } else {
            let name = ident(at);
            if !name.is_empty() {
                out.push((name, line_of[at]));
            }
            i = at;
        }
    }
    out
}

/// A file's code as the graph reads it: comment lines blanked (so that line numbers
/// hold), and nothing from a trailing `#[cfg(test)] mod ... {` on.
fn code_of(text: &str) -> String {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod ") && n.trim_end().ends_with('{'))
        {
            break;
        }
        out.push(if t.starts_with("//") { "" } else { l });
    }
    out.join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The module graph of the crate in `src`.
fn graph(src: &Path, modules: &[String]) -> Graph {
    let mut g = Graph::new();
    for m in modules.iter().filter(|m| *m != "testing") {
        let mut files = Vec::new();
        let single = src.join(format!("{m}.rs"));
        if single.exists() {
            files.push(single);
        }
        if src.join(m).is_dir() {
            rust_files(&src.join(m), &mut files);
        }
        let edges = g.entry(m.clone()).or_default();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (to, line) in references(&code_of(&text)) {
                if &to != m && modules.contains(&to) {
                    let rel = f.strip_prefix(src).unwrap().display();
                    edges
                        .entry(to)
                        .or_insert_with(|| format!("src/{rel}:{line}"));
                }
            }
        }
    }
    g
}

/// A cycle of the graph, if there is one, as the modules along it.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for to in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, to, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

/// Everything wrong with a graph, one sentence each.
fn violations(
    g: &Graph,
    allowed: &[(&str, &[&str])],
    leaving: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut checked = Graph::new();
    for (from, to, _) in leaving {
        if !g.get(*from).is_some_and(|e| e.contains_key(*to)) {
            out.push(format!(
                "{from} no longer uses {to}: remove that exception from LEAVING (src/testing/layout.rs)"
            ));
        }
    }
    for (from, edges) in g {
        let kept = checked.entry(from.clone()).or_default();
        let Some((_, ok)) = allowed.iter().find(|(m, _)| m == from) else {
            out.push(format!(
                "module {from} has no place in the import rules (src/testing/layout.rs)"
            ));
            continue;
        };
        for (to, at) in edges {
            if leaving.iter().any(|(f, t, _)| f == from && t == to) {
                continue;
            }
            kept.insert(to.clone(), at.clone());
            if EXECUTORS.contains(&from.as_str()) && EXECUTORS.contains(&to.as_str()) {
                out.push(format!(
                    "executor {from} uses executor {to} ({at}): share through docker or exec instead"
                ));
            } else if from == "cli" && to == "cmd" {
                out.push(format!(
                    "cli uses cmd ({at}): cli holds clap definitions only"
                ));
            } else if !ok.contains(&to.as_str()) {
                out.push(format!("{from} may not use {to} ({at})"));
            }
        }
    }
    if let Some(c) = cycle(&checked) {
        out.push(format!("import cycle: {}", c.join(" -> ")));
    }
    out
}

#[test]
fn the_crate_follows_the_import_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = declared(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    for expected in ["cli", "cmd", "docker", "exec", "bootstrap", "deploy", "ui"] {
        assert!(modules.iter().any(|m| m == expected), "{modules:?}");
    }
    let g = graph(&src, &modules);
    // The graph was really read: cmd dispatches to the executors, deploy uses docker.
    assert!(g["cmd"].contains_key("deploy") && g["deploy"].contains_key("docker"));
    let v = violations(&g, ALLOWED, LEAVING);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn the_check_catches_cycles_and_executors_that_use_each_other() {
    let edge = |from: &str, to: &[&str]| {
        (
            from.to_string(),
            to.iter()
                .map(|t| (t.to_string(), format!("src/{from}.rs:1")))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let g: Graph = [
        edge("teardown", &["deploy", "exec"]),
        edge("deploy", &["exec"]),
        edge("exec", &["ui"]),
        edge("ui", &["exec"]),
        edge("cli", &["cmd"]),
        edge("cmd", &["cli"]),
        edge("newcomer", &[]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        violations(
            &g,
            ALLOWED,
            &[("ui", "exec", "on its way out"), ("lab", "cli", "gone")]
        ),
        vec![
            "lab no longer uses cli: remove that exception from LEAVING (src/testing/layout.rs)",
            "cli uses cmd (src/cli.rs:1): cli holds clap definitions only",
            "exec may not use ui (src/exec.rs:1)",
            "module newcomer has no place in the import rules (src/testing/layout.rs)",
            "executor teardown uses executor deploy (src/teardown.rs:1): share through docker or exec instead",
            "import cycle: cli -> cmd -> cli",
        ]
    );
}

#[test]
fn references_are_read_from_paths_and_groups_not_comments() {
    let code = code_of(
        "use crate::docker::{self, paths};\n\
         // crate::ui is only named here\n\
         use crate::{\n    exec::report::Rows,\n    remote::{Remote, Output},\n};\n\
         fn f() { crate::shell::quote(\"x\"); $crate::nope; }\n\
         #[cfg(test)]\nmod tests {\n    use crate::testing::fake;\n}\n",
    );
    let names: Vec<(String, usize)> = references(&code);
    assert_eq!(
        names,
        vec![
            ("docker".to_string(), 1),
            ("exec".to_string(), 4),
            ("remote".to_string(), 5),
            ("shell".to_string(), 7),
        ]
    );
}
