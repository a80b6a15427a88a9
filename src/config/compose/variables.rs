//! `${VAR}` in a compose file, checked against the playbook's variables. rpiprov sends
//! `docker stack deploy` the playbook's variables and nothing else, so a variable the
//! playbook does not define is empty on the manager: Docker puts an empty string there
//! without a word. `check` says so, at the value that reads it.

use super::super::interpolate::{self, Form};
use super::super::model::{Compose, FromHere};
use super::super::names;
use super::super::yaml::{Entry, Mark, Node};
use super::Checker;

/// A name the environment can hold: what `compose.variables` may list.
fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Every scalar value of the tree with its key path (`services.web.command[0]`); keys are
/// not values (Docker does not interpolate them).
pub(super) fn scalars<'n>(node: &'n Node, path: &str, out: &mut Vec<(String, &'n Node)>) {
    match node {
        Node::Scalar { .. } => out.push((path.to_string(), node)),
        Node::Seq { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                scalars(item, &format!("{path}[{i}]"), out);
            }
        }
        Node::Map { entries, .. } => {
            for e in entries {
                let p = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                scalars(&e.value, &p, out);
            }
        }
    }
}

impl Checker<'_> {
    /// Reports invalid `$` expressions and variables the playbook does not define, and
    /// lists the variables the file reads.
    pub(super) fn variables(&mut self, root: &Node, compose: &mut Compose) {
        let mut values = Vec::new();
        scalars(root, "", &mut values);
        for (path, node) in values {
            let Some(text) = node.as_str().filter(|t| t.contains('$')) else {
                continue;
            };
            let mark = Some(node.mark());
            let scan = interpolate::scan(text);
            if scan.last_invalid {
                self.error(
                    mark,
                    &path,
                    format!("invalid interpolation format in {text:?}: docker stack deploy refuses it; write $$ for a literal $, or ${{NAME}} for a variable"),
                );
            } else if !scan.invalid.is_empty() {
                self.warning(
                    mark,
                    &path,
                    format!("{text:?} has a $ that starts no variable: docker stack deploy drops it; write $$ for a literal $"),
                );
            }
            for r in scan.references {
                if !is_name(&r.name) {
                    // `${A:?no-way}`: Docker reads the '-' as a default's start.
                    self.warning(
                        mark,
                        &path,
                        format!("{text:?}: docker stack deploy reads this as variable {:?} with a default (a '-' in the message of ${{NAME:?message}} starts a default)", r.name),
                    );
                    continue;
                }
                if !compose.variables.contains(&r.name) {
                    compose.variables.push(r.name.clone());
                }
                let defined = self.ctx.variables.get(&r.name);
                let name = &r.name;
                match (&r.form, defined) {
                    (Form::Plain, None) => self.error(
                        mark,
                        &path,
                        format!("variable {name} is not defined in the playbook: docker stack deploy would put an empty string here; define it under [variables], or write ${{{name}:-default}}"),
                    ),
                    (Form::Required(m) | Form::RequiredNonEmpty(m), None) => self.error(
                        mark,
                        &path,
                        format!("variable {name} is not defined in the playbook, and docker stack deploy refuses the file without it (\"{m}\"): define it under [variables]"),
                    ),
                    (Form::RequiredNonEmpty(m), Some(Some(v))) if v.is_empty() => self.error(
                        mark,
                        &path,
                        format!("variable {name} is empty in the playbook, and docker stack deploy refuses the file then (\"{m}\")"),
                    ),
                    _ => {}
                }
            }
        }
    }

    /// `environment:` entries without a value (`- SECRET`, `WHITELIST:`) or with an empty
    /// one (`- DEBUG=`): `docker stack deploy` fills them from its own environment (the
    /// CLI's `updateEnvironment`), which rpiprov makes of the playbook's variables and,
    /// for the other names, this machine's environment. A playbook variable of the name
    /// is sent (so listed in `compose.variables`); a name the deploy on the manager
    /// needs for itself is never sent from here; any other is a [`FromHere`].
    pub(super) fn environment_from_here(&mut self, top: &[Entry], compose: &mut Compose) {
        let services = top
            .iter()
            .find(|e| e.key == "services")
            .and_then(|s| s.value.entries())
            .unwrap_or_default();
        for svc in services {
            let Some(env) = svc.value.get("environment") else {
                continue;
            };
            let path = format!("services.{}.environment", svc.key);
            // (name, empty rather than absent, where, its key path)
            let entries: Vec<(String, bool, Mark, String)> = match &env.value {
                Node::Seq { items, .. } => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        let text = item.as_str()?;
                        let (name, empty) = match text.split_once('=') {
                            None => (text, false),
                            Some((name, "")) => (name, true),
                            Some(_) => return None,
                        };
                        Some((name.to_string(), empty, item.mark(), format!("{path}[{i}]")))
                    })
                    .collect(),
                Node::Map { entries, .. } => entries
                    .iter()
                    .filter_map(|e| {
                        let empty = match e.value.as_str() {
                            None if e.value.is_null() => false,
                            Some("") => true,
                            _ => return None,
                        };
                        Some((
                            e.key.clone(),
                            empty,
                            e.key_mark,
                            format!("{path}.{}", e.key),
                        ))
                    })
                    .collect(),
                Node::Scalar { .. } => Vec::new(),
            };
            for (name, empty, mark, key_path) in entries {
                self.take_from_here(name, empty, mark, &key_path, compose);
            }
        }
    }

    fn take_from_here(
        &mut self,
        name: String,
        empty: bool,
        mark: Mark,
        key_path: &str,
        compose: &mut Compose,
    ) {
        if !is_name(&name) {
            return;
        }
        if self.ctx.variables.contains_key(&name) {
            if !compose.variables.contains(&name) {
                compose.variables.push(name);
            }
            return;
        }
        if names::deploy_own_variable(&name) {
            if !empty {
                self.warning(
                    Some(mark),
                    key_path,
                    format!("{name} has no value here, and rpiprov does not send this machine's: the deploy on the manager needs its own {name}, and docker stack deploy gives the service the manager's, if any; write the value"),
                );
            }
            return;
        }
        match compose.from_here.iter_mut().find(|f| f.name == name) {
            Some(f) => f.empty &= empty,
            None => compose.from_here.push(FromHere {
                name,
                empty,
                place: self.place(Some(mark), key_path),
            }),
        }
    }

    /// A value interpolated with the playbook's written values, for what `check` must
    /// read locally (file paths). `Err` when it reads a variable whose value is a secret
    /// (not known before deploy), naming it; unknown variables are empty, as in Docker
    /// (and reported by [`Checker::variables`]).
    pub(super) fn interpolate_locally(&self, text: &str) -> Result<Option<String>, String> {
        for r in interpolate::scan(text).references {
            if let Some(None) = self.ctx.variables.get(&r.name) {
                return Err(r.name);
            }
        }
        let lookup = |name: &str| self.ctx.variables.get(name).cloned().flatten();
        Ok(interpolate::substitute(text, &lookup).ok())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compose::check_text;
    use std::path::Path;

    fn run(text: &str) -> (Vec<String>, Vec<String>) {
        let vars = [
            ("TAG", Some("1")),
            ("EMPTY", Some("")),
            ("DB_PASSWORD", None),
        ];
        let (c, diags) = check_text(Path::new("web.yml"), text, &[], &vars, Path::new("."));
        (c.variables, diags.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn undefined_variables_without_default_are_errors_with_their_place() {
        let (vars, diags) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: \"lab/app:${TAG}\"\n    environment:\n      DB: ${DB_HOST}\n      PW: ${DB_PASSWORD}\n      MODE: ${MODE:-prod}\n      LEVEL: ${LEVEL-info}\n      URL: $${NOT_A_VAR}\n    command: [\"run\", \"${NEEDED:?set NEEDED}\", \"${EMPTY:?must not be empty}\"]\n",
        );
        assert_eq!(
            vars,
            [
                "TAG",
                "DB_HOST",
                "DB_PASSWORD",
                "MODE",
                "LEVEL",
                "NEEDED",
                "EMPTY"
            ]
        );
        assert_eq!(
            diags,
            [
                "web.yml:6:11: services.app.environment.DB: variable DB_HOST is not defined in the playbook: docker stack deploy would put an empty string here; define it under [variables], or write ${DB_HOST:-default}",
                "web.yml:11:22: services.app.command[1]: variable NEEDED is not defined in the playbook, and docker stack deploy refuses the file without it (\"set NEEDED\"): define it under [variables]",
                "web.yml:11:47: services.app.command[2]: variable EMPTY is empty in the playbook, and docker stack deploy refuses the file then (\"must not be empty\")",
            ]
        );
    }

    /// Issue 19 item 4: entries without a value are filled by `docker stack deploy` from
    /// its environment: a playbook variable is sent, a name the deploy needs for itself
    /// is not, any other is taken from this machine.
    #[test]
    fn environment_entries_without_a_value() {
        let text = "version: \"3.8\"\nservices:\n  app:\n    image: a\n    environment:\n      - SECRET\n      - WHITELIST=\n      - TAG\n      - PATH\n      - A=1\n  db:\n    image: b\n    environment:\n      MAPPED:\n      EMPTYMAP: \"\"\n      SECRET: ~\n      X: 1\n      DOCKER_HOST:\n";
        let vars = [("TAG", Some("1"))];
        let (c, diags) = check_text(Path::new("web.yml"), text, &[], &vars, Path::new("."));
        let from_here: Vec<String> = c
            .from_here
            .iter()
            .map(|f| format!("{} {} {}", f.name, f.empty, f.place))
            .collect();
        assert_eq!(
            from_here,
            [
                "SECRET false web.yml:6:9: services.app.environment[0]",
                "WHITELIST true web.yml:7:9: services.app.environment[1]",
                "MAPPED false web.yml:14:7: services.db.environment.MAPPED",
                "EMPTYMAP true web.yml:15:7: services.db.environment.EMPTYMAP",
            ]
        );
        assert_eq!(c.variables, ["TAG"]);
        let diags: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            diags,
            [
                "web.yml:9:9: services.app.environment[3]: PATH has no value here, and rpiprov does not send this machine's: the deploy on the manager needs its own PATH, and docker stack deploy gives the service the manager's, if any; write the value",
                "web.yml:18:7: services.db.environment.DOCKER_HOST: DOCKER_HOST has no value here, and rpiprov does not send this machine's: the deploy on the manager needs its own DOCKER_HOST, and docker stack deploy gives the service the manager's, if any; write the value",
            ]
        );
    }

    #[test]
    fn invalid_dollars() {
        let (_, diags) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    command: sh -c 'echo $1'\n    entrypoint: echo $1 $TAG\n",
        );
        assert_eq!(
            diags,
            [
                "web.yml:5:14: services.app.command: invalid interpolation format in \"sh -c 'echo $1'\": docker stack deploy refuses it; write $$ for a literal $, or ${NAME} for a variable",
                "web.yml:6:17: services.app.entrypoint: \"echo $1 $TAG\" has a $ that starts no variable: docker stack deploy drops it; write $$ for a literal $",
            ]
        );
    }
}
