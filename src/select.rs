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
            for raw in value.as_ref().split(',').map(str::trim).filter(|s| !s.is_empty()) {
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
