//! The top-level `networks:` of a compose file, judged as `docker stack deploy` judges
//! them: by their real name once interpolated (`name: ${NET}`), only those a service uses
//! (the CLI creates or looks up no other), Docker's own networks (`host`, `bridge`,
//! `none`: [`names::Predefined`]) as Docker's, the others external to the stack as the
//! playbook's, and the stack's own networks by whether their driver spans the swarm.

use std::collections::BTreeSet;

use super::super::model::Compose;
use super::super::names::{self, Predefined};
use super::super::yaml::{Entry, Node};
use super::Checker;

/// The keys of the networks the services use: the CLI makes or looks up only these. A
/// service that lists none is on the stack's `default` network.
pub(super) fn used(top: &[Entry]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let services = top
        .iter()
        .find(|e| e.key == "services")
        .and_then(|s| s.value.entries())
        .unwrap_or_default();
    for svc in services {
        let listed: Vec<String> = match svc.value.get("networks").map(|n| &n.value) {
            Some(Node::Seq { items, .. }) => items
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
            Some(Node::Map { entries, .. }) => entries.iter().map(|e| e.key.clone()).collect(),
            _ => Vec::new(),
        };
        if listed.is_empty() {
            used.insert("default".to_string());
        }
        used.extend(listed);
    }
    used
}

impl Checker<'_> {
    /// One entry of the top-level `networks:`; `used`: the keys services use.
    pub(super) fn network(&mut self, e: &Entry, used: &BTreeSet<String>, compose: &mut Compose) {
        let path = format!("networks.{}", e.key);
        let mark = Some(e.key_mark);
        if !e.value.is_null() && e.value.entries().is_none() {
            self.error(
                mark,
                &path,
                format!("expected a mapping, found {}", e.value.kind()),
            );
            return;
        }
        let explicit_name = e.value.get("name").and_then(|n| n.value.as_str());
        let external = e.value.get("external");
        // `external: { name: X }` is the version 3.0-3.4 spelling of `external: true` + `name: X`.
        let legacy_name = external
            .and_then(|x| x.value.get("name"))
            .and_then(|n| n.value.as_str());
        let is_external =
            external.is_some_and(|x| x.value.is_true() || x.value.entries().is_some());
        // Docker interpolates values, not keys: a name written as a value is judged as
        // Docker will read it.
        let real = match legacy_name.or(explicit_name) {
            None => e.key.clone(),
            Some(text) => match self.interpolate_locally(text) {
                Ok(Some(name)) => name,
                // The value itself is refused by Docker: reported by `variables`.
                Ok(None) => return,
                Err(var) => {
                    self.error(
                        mark,
                        &path,
                        format!("the network's name reads variable {var}, whose value is secret: rpiprov must know the name before deploying; use a variable written in the playbook"),
                    );
                    return;
                }
            },
        };
        let is_used = used.contains(&e.key);
        if is_external {
            self.external_network(&path, e, &real, is_used, compose);
            return;
        }
        if is_used && explicit_name.is_some() && Predefined::of(&real).is_some() {
            self.error(
                mark,
                &path,
                format!("not external: docker stack deploy would create a network named \"{real}\", which is one of Docker's own networks (every node has it, and Docker refuses a second one): add external: true"),
            );
            return;
        }
        if is_used {
            self.network_driver(e, &path);
        }
        if self.ctx.networks.contains(&real) {
            let message = if explicit_name.is_some() {
                format!(
                    "not external: docker stack deploy would create \"{real}\" itself, but the playbook's [[network]] creates it; add external: true"
                )
            } else {
                format!(
                    "not external: the stack creates its own network \"{}_{}\" instead of using the playbook's \"{real}\"; add external: true",
                    self.ctx.stack, e.key
                )
            };
            self.warning(mark, &path, message);
        }
    }

    /// A network declared external: Docker's own, the playbook's, or one no service uses.
    fn external_network(
        &mut self,
        path: &str,
        e: &Entry,
        real: &str,
        is_used: bool,
        compose: &mut Compose,
    ) {
        let mark = Some(e.key_mark);
        match Predefined::of(real) {
            Some(p) if is_used && !p.serves_services() => self.error(
                mark,
                path,
                format!("Docker's \"{real}\" network cannot carry a swarm service: swarm has no \"{real}\" network of its own (\"could not find the corresponding predefined swarm network\"); leave it out of the services' networks"),
            ),
            Some(_) => {}
            None if self.ctx.networks.contains(real) => {
                compose.external_networks.push(real.to_string());
            }
            None if !is_used => self.warning(
                mark,
                path,
                format!("no service uses this network, so docker stack deploy ignores it (\"{real}\" is not a [[network]] of the playbook)"),
            ),
            None => self.error(
                mark,
                path,
                format!("external network \"{real}\" is not declared in the playbook: add a [[network]] named \"{real}\""),
            ),
        }
    }

    /// The driver of a network the stack creates: one that lives on one node cannot carry
    /// a swarm service, and swarm refuses the service (or the network) then.
    fn network_driver(&mut self, e: &Entry, path: &str) {
        let Some(d) = e.value.get("driver") else {
            return;
        };
        let Some(Ok(Some(driver))) = d.value.as_str().map(|t| self.interpolate_locally(t)) else {
            return;
        };
        if !names::local_network_driver(&driver) {
            return;
        }
        let why = if driver == "host" {
            "Docker has one host network per node already and refuses another (\"only one instance of \\\"host\\\" network is allowed\"): use it as an external network (external: true, name: host)".to_string()
        } else {
            format!(
                "a {driver} network lives on one node, and swarm refuses it for a service (\"Only networks scoped to the swarm can be used, such as those created with the overlay driver\"): use driver: overlay, or leave driver: out"
            )
        };
        self.error(
            Some(d.value.mark()),
            &format!("{path}.driver"),
            format!("driver \"{driver}\": {why}"),
        );
    }
}
