//! `rpiprov plan` (and `--dry-run`) on a terminal: each row with something to do and its
//! steps in order, a stack's file diffs under it, then what has nothing to do, what stands
//! in the way, and a count. Remote text (the manager's copy of a file) is made safe by
//! [`super::term`] when printed.

use crate::exec::preview::Preview;

/// The preview as a user reads it.
pub fn render(p: &Preview) -> String {
    let width = p
        .rows
        .iter()
        .map(|r| r.row.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in &p.rows {
        for (i, step) in r.steps.iter().enumerate() {
            let label = if i == 0 { r.row.as_str() } else { "" };
            out.push_str(&format!("{label:<width$}  {step}\n"));
        }
        for f in &r.files {
            out.push_str(&format!("{:width$}  {}: {}\n", "", f.path, f.change));
            if let Some(diff) = &f.diff {
                for line in diff.lines() {
                    out.push_str(&format!("{:width$}    {line}\n", ""));
                }
            }
        }
    }
    if !p.unchanged.is_empty() {
        out.push_str(&format!("nothing to do: {}\n", p.unchanged.join(", ")));
    }
    for problem in &p.problems {
        out.push_str(&format!("problem: {problem}\n"));
    }
    let steps: usize = p.rows.iter().map(|r| r.steps.len()).sum();
    out.push_str(&if steps == 0 {
        format!("plan {}: nothing to do; nothing was changed\n", p.command)
    } else {
        format!(
            "plan {}: {steps} step(s) on {} row(s); nothing was changed\n",
            p.command,
            p.rows.len()
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::preview::{Planned, file_diff};
    use crate::exec::report::RowId;

    #[test]
    fn steps_per_row_diffs_under_their_stack_and_a_count() {
        let mut lead = Planned::new(&RowId::host("pi1"));
        lead.steps = vec!["upload echo/echo.yml".into()];
        let mut echo = Planned::new(&RowId::stack("echo"));
        echo.steps = vec!["docker stack deploy (changed since its last deploy)".into()];
        echo.why = Some("changed since its last deploy".into());
        echo.files = vec![
            file_diff("echo/echo.yml", Some(b"a\nb\n"), b"a\nc\n", false).unwrap(),
            file_diff("echo/db.txt", Some(b"x"), b"y", true).unwrap(),
        ];
        let p = Preview {
            command: "deploy".into(),
            rows: vec![lead, echo],
            unchanged: vec!["pi2".into(), "stack web".into()],
            problems: vec![],
        };
        assert_eq!(
            render(&p),
            "pi1         upload echo/echo.yml\n\
             stack echo  docker stack deploy (changed since its last deploy)\n\
             \x20           echo/echo.yml: changed\n\
             \x20             --- manager/echo/echo.yml\n\
             \x20             +++ local/echo/echo.yml\n\
             \x20             @@ -1,2 +1,2 @@\n\
             \x20              a\n\
             \x20             -b\n\
             \x20             +c\n\
             \x20           echo/db.txt: secret changed\n\
             nothing to do: pi2, stack web\n\
             plan deploy: 2 step(s) on 2 row(s); nothing was changed\n"
        );
        let nothing = Preview {
            command: "teardown".into(),
            problems: vec!["pi1: list what exists: exit 1".into()],
            ..Default::default()
        };
        assert_eq!(
            render(&nothing),
            "problem: pi1: list what exists: exit 1\nplan teardown: nothing to do; nothing was changed\n"
        );
    }
}
