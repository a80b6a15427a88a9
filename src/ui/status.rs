//! `rpiprov status` on a terminal: the nodes, the swarm line, the stacks and their
//! services, then what differs. Remote text (host names, labels, task errors) is made
//! safe for a terminal ([`super::term::clean`]).

use crate::status::Status;

use super::term::clean;

/// Lays out rows as columns two spaces apart; the last column is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Remote text as the table shows it ([`clean`]).
fn clean_s(text: &str) -> String {
    clean(text).into_owned()
}

fn or_dash(v: &Option<String>) -> String {
    v.as_deref().map_or("-".to_string(), clean_s)
}

/// The status as a user reads it.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut rows = vec![
        [
            "NODE", "ADDRESS", "STATE", "DOCKER", "ARCH", "ROLE", "AVAIL", "MANAGER", "LABELS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in &s.nodes {
        let labels: Vec<String> = n
            .labels
            .iter()
            .map(|(k, v)| clean_s(&format!("{k}={v}")))
            .collect();
        rows.push(vec![
            n.host.clone(),
            n.address.clone(),
            n.state.clone(),
            or_dash(&n.docker),
            or_dash(&n.arch),
            or_dash(&n.role),
            or_dash(&n.availability),
            or_dash(&n.manager),
            if labels.is_empty() {
                "-".into()
            } else {
                labels.join(",")
            },
        ]);
    }
    out.push_str(&columns(&rows));

    let sw = &s.swarm;
    match (&sw.seen_from, sw.quorum) {
        (Some(from), Some(quorum)) => out.push_str(&format!(
            "swarm{}: {} manager(s), {} reachable: {} (seen from {from})\n",
            sw.cluster
                .as_deref()
                .map(|c| format!(" {}", clean_s(c)))
                .unwrap_or_default(),
            sw.managers,
            sw.managers_reachable,
            if quorum {
                "quorum holds"
            } else {
                "QUORUM LOST"
            },
        )),
        _ => out.push_str("swarm: unknown (no manager answered as one)\n"),
    }

    if !s.stacks.is_empty() {
        out.push('\n');
        let mut rows = vec![
            ["STACK", "FILES", "SERVICE", "MODE", "REPLICAS", "NOTE"]
                .map(String::from)
                .to_vec(),
        ];
        for st in &s.stacks {
            if st.services.is_empty() {
                rows.push(vec![
                    st.stack.clone(),
                    st.files.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    String::new(),
                ]);
            }
            for (i, svc) in st.services.iter().enumerate() {
                let note = match (&svc.error, &svc.last_task_error) {
                    (Some(e), _) => clean_s(e),
                    (None, Some(e)) => format!("last task error: {}", clean_s(e)),
                    (None, None) => String::new(),
                };
                let (stack, files) = if i == 0 {
                    (st.stack.clone(), st.files.clone())
                } else {
                    (String::new(), String::new())
                };
                rows.push(vec![
                    stack,
                    files,
                    clean_s(&svc.name),
                    svc.mode.clone(),
                    svc.replicas.clone(),
                    note,
                ]);
            }
        }
        out.push_str(&columns(&rows));
    }

    for w in &s.warnings {
        out.push_str(&format!("warning: {}\n", clean_s(w)));
    }
    if s.ok {
        out.push_str(&format!(
            "status: everything matches the playbook ({} nodes, {} stacks)\n",
            s.nodes.len(),
            s.stacks.len()
        ));
    } else {
        out.push_str(&format!("status: {} problem(s)\n", s.problems.len()));
        for p in &s.problems {
            out.push_str(&format!("  {}\n", clean_s(p)));
        }
    }
    out
}
