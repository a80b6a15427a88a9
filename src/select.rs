//! `--on` host selection: host names, globs (`pi-0*`), and roles (`@manager`, `@worker`).

use globset::{Glob, GlobMatcher};

use crate::config::{Host, Role};

/// One `--on` term.
#[derive(Debug, Clone)]
enum Term {
    Role(Role),
    Glob(GlobMatcher),
}

/// A parsed `--on` selection. Empty means every host.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    terms: Vec<(String, Term)>,
}

impl Selection {
    /// Parses the `--on` values; each may hold several terms separated by commas.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Selection, String> {
        let mut terms = Vec::new();
        for value in values {
            for raw in value
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let term = match raw {
                    "@manager" | "@managers" => Term::Role(Role::Manager),
                    "@worker" | "@workers" => Term::Role(Role::Worker),
                    s if s.starts_with('@') => {
                        return Err(format!(
                            "--on {s}: unknown group; the groups are @manager and @worker"
                        ));
                    }
                    s => Term::Glob(
                        Glob::new(s)
                            .map_err(|e| format!("--on {s}: {e}"))?
                            .compile_matcher(),
                    ),
                };
                terms.push((raw.to_string(), term));
            }
        }
        Ok(Selection { terms })
    }

    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, host: &Host) -> bool {
        self.is_all()
            || self.terms.iter().any(|(_, t)| match t {
                Term::Role(r) => host.role == *r,
                Term::Glob(g) => g.is_match(&host.name),
            })
    }

    /// The selected hosts, in inventory order. A term that selects nothing is an error, so
    /// that a typo in a name does not silently act on nothing.
    pub fn apply<'a>(&self, hosts: &'a [Host]) -> Result<Vec<&'a Host>, String> {
        for (raw, term) in &self.terms {
            let hit = hosts.iter().any(|h| match term {
                Term::Role(r) => h.role == *r,
                Term::Glob(g) => g.is_match(&h.name),
            });
            if !hit {
                return Err(format!("--on {raw}: matches no host in the inventory"));
            }
        }
        Ok(hosts.iter().filter(|h| self.matches(h)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::host;

    fn fleet() -> Vec<Host> {
        vec![
            host("pi-01", Role::Manager),
            host("pi-02", Role::Worker),
            host("pi-03", Role::Worker),
            host("nas", Role::Worker),
        ]
    }

    /// The names `--on` selects, in inventory order.
    fn on(values: &[&str]) -> Result<Vec<String>, String> {
        let hosts = fleet();
        let s = Selection::parse(values)?;
        Ok(s.apply(&hosts)?.iter().map(|h| h.name.clone()).collect())
    }

    #[test]
    fn no_on_selects_every_host() {
        assert!(Selection::parse::<&str>(&[]).unwrap().is_all());
        assert_eq!(on(&[]).unwrap(), vec!["pi-01", "pi-02", "pi-03", "nas"]);
        // Empty terms (a trailing comma) select nothing more and are no error.
        assert!(Selection::parse(&[" , "]).unwrap().is_all());
    }

    #[test]
    fn names_and_globs() {
        assert_eq!(on(&["nas"]).unwrap(), vec!["nas"]);
        assert_eq!(on(&["pi-0*"]).unwrap(), vec!["pi-01", "pi-02", "pi-03"]);
        assert_eq!(on(&["pi-0[23]"]).unwrap(), vec!["pi-02", "pi-03"]);
        assert_eq!(on(&["?as"]).unwrap(), vec!["nas"]);
    }

    #[test]
    fn groups_and_their_plurals() {
        assert_eq!(on(&["@manager"]).unwrap(), vec!["pi-01"]);
        assert_eq!(on(&["@managers"]).unwrap(), vec!["pi-01"]);
        assert_eq!(on(&["@worker"]).unwrap(), vec!["pi-02", "pi-03", "nas"]);
        assert_eq!(on(&["@workers"]).unwrap(), vec!["pi-02", "pi-03", "nas"]);
    }

    #[test]
    fn commas_and_repeats_add_up_in_inventory_order() {
        assert_eq!(on(&["nas, @manager"]).unwrap(), vec!["pi-01", "nas"]);
        assert_eq!(on(&["nas", "pi-02"]).unwrap(), vec!["pi-02", "nas"]);
        // A host named twice is selected once.
        assert_eq!(on(&["pi-02,pi-0*", "@worker"]).unwrap().len(), 4);
    }

    #[test]
    fn unknown_groups_and_names_that_match_nothing_are_errors() {
        assert_eq!(
            on(&["@storage"]).unwrap_err(),
            "--on @storage: unknown group; the groups are @manager and @worker"
        );
        assert_eq!(
            on(&["nas,pi-9"]).unwrap_err(),
            "--on pi-9: matches no host in the inventory"
        );
        assert_eq!(
            on(&["pi-1*"]).unwrap_err(),
            "--on pi-1*: matches no host in the inventory"
        );
        assert!(on(&["pi-[0"]).unwrap_err().starts_with("--on pi-[0: "));
    }

    #[test]
    fn a_group_with_no_host_is_an_error_too() {
        let hosts = vec![host("pi-01", Role::Manager)];
        let s = Selection::parse(&["@worker"]).unwrap();
        assert_eq!(
            s.apply(&hosts).unwrap_err(),
            "--on @worker: matches no host in the inventory"
        );
    }
}
