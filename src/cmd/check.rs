//! `rpiprov check`: loads the configuration and reports it, without connecting to any
//! host. The exit code is 0 when there is no error (warnings allowed), 2 otherwise.

use std::path::Path;

use crate::config::{self, Diagnostic, Loaded, Role, Severity};
use crate::exit::{EXIT_OK, EXIT_USAGE};
use crate::ui::{json, term};

pub fn check(
    inventory: &Path,
    playbook: Option<&Path>,
    options: &config::Options,
    json: bool,
) -> u8 {
    let result = config::load_with(inventory, playbook, options);
    if json {
        return print_json(&result);
    }
    match result {
        Ok(loaded) => {
            for w in &loaded.warnings {
                term::errln(&format!("warning: {w}"));
            }
            for line in summary(&loaded) {
                term::outln(&line);
            }
            EXIT_OK
        }
        Err(diags) => {
            for d in &diags {
                term::errln(&format!("{}: {d}", label(d.severity)));
            }
            // An unreadable inventory says all there is to say.
            if diags.len() == 1
                && diags[0].file == inventory
                && diags[0].message.starts_with("cannot read")
            {
                return EXIT_USAGE;
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let warnings = diags.len() - errors;
            if warnings > 0 {
                term::errln(&format!(
                    "check failed: {}, {}",
                    plural(errors, "error", "errors"),
                    plural(warnings, "warning", "warnings")
                ));
            } else {
                term::errln(&format!(
                    "check failed: {}",
                    plural(errors, "error", "errors")
                ));
            }
            EXIT_USAGE
        }
    }
}

fn label(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line per file: what it holds.
pub fn summary(loaded: &Loaded) -> Vec<String> {
    let inv = &loaded.inventory;
    let managers = inv.hosts.iter().filter(|h| h.role == Role::Manager).count();
    let workers = inv.hosts.len() - managers;
    let mut lines = vec![format!(
        "{}: {} ({}, {})",
        inv.path.display(),
        plural(inv.hosts.len(), "host", "hosts"),
        plural(managers, "manager", "managers"),
        plural(workers, "worker", "workers"),
    )];
    match &loaded.playbook {
        Some(p) => {
            let mut line = format!(
                "{}: {}, {}",
                p.path.display(),
                plural(p.networks.len(), "network", "networks"),
                plural(p.stacks.len(), "stack", "stacks"),
            );
            if !p.images.is_empty() {
                line.push_str(&format!(", {}", plural(p.images.len(), "image", "images")));
            }
            if !p.variables.is_empty() {
                line.push_str(&format!(
                    ", {}",
                    plural(p.variables.len(), "variable", "variables")
                ));
            }
            lines.push(line);
            for st in &p.stacks {
                if st.compose.from_here.is_empty() {
                    continue;
                }
                let names: Vec<String> = st
                    .compose
                    .from_here
                    .iter()
                    .map(|f| {
                        if f.empty {
                            format!("{} (if set)", f.name)
                        } else {
                            f.name.clone()
                        }
                    })
                    .collect();
                lines.push(format!(
                    "stack {}: takes from this machine's environment at deploy: {}",
                    st.name,
                    names.join(", ")
                ));
            }
        }
        None => lines
            .push("no playbook: set playbook = \"FILE\" in the inventory or use -p FILE".into()),
    }
    lines
}

fn print_json(result: &Result<Loaded, Vec<Diagnostic>>) -> u8 {
    let (ok, diags): (bool, &[Diagnostic]) = match result {
        Ok(loaded) => (true, &loaded.warnings),
        Err(diags) => (false, diags),
    };
    let (errors, warnings): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        diags.iter().partition(|d| d.is_error());
    let mut out = serde_json::json!({ "ok": ok, "errors": errors, "warnings": warnings });
    if let Ok(loaded) = result {
        out["summary"] = serde_json::json!(summary(loaded));
    }
    json::print(&out, false);
    if ok { EXIT_OK } else { EXIT_USAGE }
}
