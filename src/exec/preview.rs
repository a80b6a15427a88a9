//! What a command would do, without doing it (`rpiprov plan`, `--dry-run`): per row (a
//! host, a stack, a network), the steps in the order they would run, why, and for a stack
//! the diff of each of its files between the manager and this machine. Each executor
//! builds its [`Preview`] from the same probe and the same decisions as its real run; the
//! renderer is `crate::ui::plan`, and `--json` is this document.

use serde::Serialize;

use super::lock::Peeked;
use super::report::{RowId, RowKind};

/// What a command would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Preview {
    /// `bootstrap`, `deploy` or `teardown`.
    pub command: String,
    /// The rows with something to do, in the order the command works on them.
    pub rows: Vec<Planned>,
    /// Rows with nothing to do, by label: said, so that a reader knows they were looked at.
    pub unchanged: Vec<String>,
    /// What stops the command, or would make it fail: unreachable hosts, refusals,
    /// conflicts. The exit code is 1 when there is any.
    pub problems: Vec<String>,
}

/// One row's planned work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// How the row is shown: `pi1`, `stack web`, `network DATA`.
    pub row: String,
    pub kind: RowKind,
    /// The steps, as the command's summary names them once done.
    pub steps: Vec<String>,
    /// Why (a stack's redeploy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// For a stack: what differs in its files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDiff>,
}

impl Preview {
    /// What the deploy lock would do to the run ([`crate::exec::lock::peek`]): a lock
    /// held stops it (a problem); one that a run now gone left is taken over, the
    /// leader's first step. `Err`: the lock could not be read, which the run would meet
    /// too.
    pub fn add_lock(&mut self, leader: &str, peeked: Result<Option<Peeked>, String>) {
        match peeked {
            Ok(None) => {}
            Ok(Some(Peeked::Held(why))) => self.problems.push(format!("{leader}: {why}")),
            Ok(Some(Peeked::TakenOver(said))) => {
                let label = RowId::host(leader).label();
                let at = match self.rows.iter().position(|r| r.row == label) {
                    Some(at) => at,
                    None => {
                        self.unchanged.retain(|u| *u != label);
                        self.rows.insert(0, Planned::new(&RowId::host(leader)));
                        0
                    }
                };
                let step = said.replacen("took over", "take over", 1);
                self.rows[at].steps.insert(0, step);
            }
            Err(e) => self
                .problems
                .push(format!("{leader}: read the deploy lock: {e}")),
        }
    }
}

impl Planned {
    pub fn new(id: &RowId) -> Planned {
        Planned {
            row: id.label(),
            kind: id.kind,
            steps: vec![],
            why: None,
            files: vec![],
        }
    }
}

/// One file of a stack that differs between the manager and here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// The file as the playbook names it (`stacks/web.yml`).
    pub path: String,
    /// `changed`, `new` (not on the manager yet) or `secret changed` (never shown).
    pub change: String,
    /// A unified diff, manager first; `None` for a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// How far a diff shows unchanged lines around each change.
const CONTEXT: usize = 3;

/// What differs between the manager's copy of a file (`None`: it has none) and the local
/// one; `None` when they are the same. A secret's content is never put in a diff.
pub fn file_diff(
    path: &str,
    remote: Option<&[u8]>,
    local: &[u8],
    secret: bool,
) -> Option<FileDiff> {
    if remote == Some(local) {
        return None;
    }
    let change = match (remote, secret) {
        (_, true) => "secret changed",
        (None, false) => "new",
        (Some(_), false) => "changed",
    };
    let diff = (!secret).then(|| {
        let old = String::from_utf8_lossy(remote.unwrap_or_default());
        let new = String::from_utf8_lossy(local);
        similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
            .unified_diff()
            .context_radius(CONTEXT)
            .header(&format!("manager/{path}"), &format!("local/{path}"))
            .to_string()
    });
    Some(FileDiff {
        path: path.to_string(),
        change: change.to_string(),
        diff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_stops_the_run_or_is_its_first_step() {
        let base = Preview {
            command: "deploy".into(),
            rows: vec![Planned {
                steps: vec!["docker stack deploy (new)".into()],
                ..Planned::new(&RowId::stack("web"))
            }],
            unchanged: vec!["pi1".into()],
            problems: vec![],
        };
        let mut p = base.clone();
        p.add_lock("pi1", Ok(None));
        assert_eq!(p, base);
        p.add_lock(
            "pi1",
            Ok(Some(Peeked::Held("deploy already running".into()))),
        );
        assert_eq!(p.problems, ["pi1: deploy already running"]);
        let mut p = base.clone();
        p.add_lock(
            "pi1",
            Ok(Some(Peeked::TakenOver(
                "took over the deploy lock left by a run that is gone: x".into(),
            ))),
        );
        assert!(p.unchanged.is_empty() && p.problems.is_empty());
        assert_eq!(p.rows[0].row, "pi1");
        assert_eq!(
            p.rows[0].steps,
            ["take over the deploy lock left by a run that is gone: x"]
        );
        let mut p = base;
        p.add_lock("pi1", Err("exit 1".into()));
        assert_eq!(p.problems, ["pi1: read the deploy lock: exit 1"]);
    }

    #[test]
    fn a_changed_file_is_a_unified_diff_manager_first() {
        let old = b"services:\n  web:\n    image: a:1\n    deploy:\n      replicas: 1\n";
        let new = b"services:\n  web:\n    image: a:2\n    deploy:\n      replicas: 1\n";
        let d = file_diff("stacks/web.yml", Some(old), new, false).unwrap();
        assert_eq!(d.change, "changed");
        assert_eq!(
            d.diff.unwrap(),
            "--- manager/stacks/web.yml\n+++ local/stacks/web.yml\n@@ -1,5 +1,5 @@\n services:\n   web:\n-    image: a:1\n+    image: a:2\n     deploy:\n       replicas: 1\n"
        );
        assert_eq!(file_diff("stacks/web.yml", Some(new), new, false), None);
    }

    #[test]
    fn a_new_file_and_a_secret() {
        let d = file_diff("stacks/web.yml", None, b"a\n", false).unwrap();
        assert_eq!(
            (d.change.as_str(), d.diff.as_deref()),
            (
                "new",
                Some("--- manager/stacks/web.yml\n+++ local/stacks/web.yml\n@@ -0,0 +1 @@\n+a\n")
            )
        );
        let d = file_diff("secrets/db.txt", Some(b"hunter2\n"), b"hunter3\n", true).unwrap();
        assert_eq!(d.change, "secret changed");
        assert_eq!(d.diff, None);
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("hunter"), "{json}");
    }
}
