//! The leader's swarm settings (stale node entries, roles, labels, the playbook's
//! networks, the rotation of the join tokens) in two round trips over the leader's Docker
//! Engine API, instead of one `docker` call (and a claim check) after another: the first
//! reads the swarm's nodes (and the swarm's spec when the tokens rotate), [`batch`]
//! turns the steps into requests (a pure function of those answers, tested as exact
//! requests), and the second sends them all at once. Docker answers requests on one
//! connection in the order written, so the changes are made in the plan's order, the
//! rotation of the join tokens aside: it goes first (see [`batch`]).
//!
//! What a step-by-step run guaranteed still holds: a host's role or labels change only
//! on the node the leader confirms is that host's ([`node::check_claim`], against the
//! entry read in the first round trip, after every join); each step is reported on its
//! own, a failed one by its description on the leader's row, a refused claim on the
//! target's. One difference, said in the row: the changes are sent together, so one that
//! fails does not stop the others (they are independent), whereas a refused step of the
//! plan still stops the leader before anything after it is sent.

use std::collections::HashMap;

use crate::docker::api::{self, ApiVersion, NodeSpec, Request, SwarmSpec};
use crate::docker::node::{self, NodeEntry, SwarmNode};
use crate::exec::report::RowId;
use crate::plan::{Step, Work};
use crate::remote::Remote;

use super::Shared;

/// What the leader's answers make of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Sent as these requests of the batch (a host's role and labels share one node
    /// update).
    Send(Vec<usize>),
    /// The claim check did not hold: nothing is sent, the target's row says why.
    Unclaimed { target: String, why: String },
    /// Nothing to send (no stale entry left, or the target failed already).
    Nothing,
    /// A step of the plan that refuses: the leader stops here, nothing after it is sent.
    Refused(String),
}

/// The steps' requests, in order, and what became of each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub requests: Vec<Request>,
    /// One per step up to and including the first refusal.
    pub actions: Vec<Action>,
    /// Stale entries left alone, for the host whose row says why ([`node::Stale::Leave`]).
    pub notes: Vec<(String, String)>,
}

/// What the batch is made from: the leader's answers and what rpiprov knows of the hosts.
pub struct Known<'a> {
    pub nodes: &'a [SwarmNode],
    pub specs: &'a [NodeSpec],
    /// `None` when no step rotates the tokens (the swarm is not asked).
    pub swarm: Option<&'a SwarmSpec>,
    /// The leader's host name in the inventory: its own word is as good as its node list.
    pub leader: &'a str,
    /// Host -> the node ID it reports.
    pub node_ids: &'a HashMap<String, String>,
    /// Host -> the host name it reported and its addresses as this machine knows them.
    pub known: &'a HashMap<String, (String, Vec<String>)>,
    /// Hosts whose row failed already: their claim is not checked again.
    pub failed: &'a [String],
    /// The API version the leader is spoken to at (a network's body depends on it).
    pub version: ApiVersion,
}

/// The requests of the leader's settings steps, in the steps' order (pure).
pub fn batch(steps: &[Step], k: &Known) -> Batch {
    let mut requests: Vec<Request> = Vec::new();
    let mut actions = Vec::new();
    // Node id -> its one update: the request's index, the role and labels it sets.
    struct Update {
        index: usize,
        role: Option<crate::config::Role>,
        labels: Vec<(String, String)>,
    }
    let mut updates: HashMap<String, Update> = HashMap::new();
    let mut unclaimed: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let current: Vec<String> = k.node_ids.values().cloned().collect();
    for step in steps {
        let action = match step {
            Step::Refuse(msg) => {
                actions.push(Action::Refused(msg.clone()));
                break;
            }
            Step::PruneStaleNodes { hosts } => {
                let entries: Vec<NodeEntry> = k.nodes.iter().map(NodeEntry::from).collect();
                let owners: Vec<node::Owner> = hosts
                    .iter()
                    .filter_map(|h| {
                        let (host, (hostname, addresses)) = k.known.get_key_value(h)?;
                        Some(node::Owner {
                            host,
                            hostname,
                            addresses,
                        })
                    })
                    .collect();
                let first = requests.len();
                for verdict in node::stale(&entries, &owners, &current) {
                    match verdict {
                        node::Stale::Remove { id, force, .. } => {
                            requests.push(api::node_remove(id, force));
                        }
                        node::Stale::Leave { host, why } => notes.push((host.to_string(), why)),
                    }
                }
                if requests.len() == first {
                    Action::Nothing
                } else {
                    Action::Send((first..requests.len()).collect())
                }
            }
            Step::SetRole { host, .. } | Step::SetLabels { host, .. } => match claimed(host, k) {
                _ if k.failed.contains(host) || unclaimed.contains(host) => Action::Nothing,
                Err(why) => {
                    unclaimed.push(host.clone());
                    Action::Unclaimed {
                        target: host.clone(),
                        why,
                    }
                }
                Ok(None) => Action::Unclaimed {
                    target: host.clone(),
                    why: format!("{host}'s node is not in the leader's list"),
                },
                Ok(Some(spec)) => {
                    let u = updates.entry(spec.id.clone()).or_insert_with(|| {
                        requests.push(api::node_update(spec, None, &[]));
                        Update {
                            index: requests.len() - 1,
                            role: None,
                            labels: Vec::new(),
                        }
                    });
                    match step {
                        Step::SetRole { role, .. } => u.role = Some(*role),
                        Step::SetLabels { labels, .. } => u.labels.extend(labels.iter().cloned()),
                        _ => {}
                    }
                    requests[u.index] = api::node_update(spec, u.role, &u.labels);
                    Action::Send(vec![u.index])
                }
            },
            Step::CreateNetwork(net) => {
                requests.push(api::network_create(net, k.version));
                Action::Send(vec![requests.len() - 1])
            }
            Step::RotateJoinTokens { worker, manager } => match k.swarm {
                Some(s) => {
                    requests.push(api::swarm_rotate_tokens(s, *worker, *manager));
                    Action::Send(vec![requests.len() - 1])
                }
                None => Action::Refused("the swarm's spec was not read".into()),
            },
            other => Action::Refused(format!(
                "{} is not a setting of the leader",
                other.describe()
            )),
        };
        let stop = matches!(action, Action::Refused(_));
        actions.push(action);
        if stop {
            break;
        }
    }
    // The rotation goes first: removing a node changes the swarm's version (swarm
    // blacklists the node's certificate in its spec), and an update made from the
    // version read before would be refused as out of sequence. Nothing else in the
    // batch depends on the tokens: the joins are over.
    if let Some(r) = requests
        .iter()
        .position(|q| q.path.contains("/swarm/update"))
    {
        let rotation = requests.remove(r);
        requests.insert(0, rotation);
        for a in &mut actions {
            if let Action::Send(idx) = a {
                for i in idx.iter_mut() {
                    *i = if *i == r {
                        0
                    } else if *i < r {
                        *i + 1
                    } else {
                        *i
                    };
                }
            }
        }
    }
    Batch {
        requests,
        actions,
        notes,
    }
}

/// The node spec of `host`'s node once the leader's entry confirms the host's claim
/// ([`node::check_claim`]); the leader's own claim is taken as it is.
fn claimed<'a>(host: &str, k: &Known<'a>) -> Result<Option<&'a NodeSpec>, String> {
    let Some(id) = k.node_ids.get(host) else {
        return Err(format!(
            "the swarm node of {host} is not known (did it join?)"
        ));
    };
    let spec = k.specs.iter().find(|s| &s.id == id);
    if host == k.leader {
        return Ok(spec);
    }
    let mut also: Vec<String> = k
        .node_ids
        .iter()
        .filter(|(h, i)| h.as_str() != host && *i == id)
        .map(|(h, _)| h.clone())
        .collect();
    also.sort();
    let (hostname, addresses) = k.known.get(host).cloned().unwrap_or_default();
    let claim = node::Claim {
        host,
        node_id: id,
        hostname: &hostname,
        addresses: &addresses,
        also_claimed_by: &also,
        basis: node::Basis::NodeId,
        stake: node::Stake::RoleAndLabels,
    };
    let entry = k.nodes.iter().find(|n| &n.id == id).map(NodeEntry::from);
    node::check_claim(&claim, entry)?;
    Ok(spec)
}

impl<R: Remote + 'static> Shared<R> {
    /// Runs the leader's settings through its Engine API (see the module header).
    pub(super) async fn settings(&self, work: &Work) {
        let id = RowId::host(&work.host);
        let engine = match self.engines.get(&work.host).await {
            Ok(e) => e,
            Err(e) => {
                self.rows
                    .fail(&id, "read the swarm's nodes", &e.to_string());
                self.rows.close(&id);
                return;
            }
        };
        self.rows.step(&id, "read the swarm's nodes");
        let rotates = work
            .steps
            .iter()
            .any(|s| matches!(s, Step::RotateJoinTokens { .. }));
        let mut asks = vec![api::nodes()];
        if rotates {
            asks.push(api::swarm_inspect());
        }
        // A node that has just joined may be listed before it reported itself: read
        // again, for a while, rather than judge its claim on an empty entry.
        let deadline = tokio::time::Instant::now() + node::REPORTED_WITHIN;
        let read = loop {
            let read = engine
                .batch(&asks, self.command_timeout)
                .await
                .map_err(String::from)
                .and_then(|answers| {
                    api::all_ok(&answers)?;
                    let nodes = node::parse_node_list(&answers[0].body)?;
                    let specs = api::parse_node_specs(&answers[0].body)?;
                    let swarm = answers
                        .get(1)
                        .map(|r| api::parse_swarm(&r.body))
                        .transpose()?;
                    Ok((nodes, specs, swarm))
                });
            let unreported = match &read {
                Ok((nodes, _, _)) => {
                    let ids = self.node_ids.lock().unwrap();
                    nodes
                        .iter()
                        .any(|n| ids.values().any(|i| *i == n.id) && !node::reported(n))
                }
                Err(_) => false,
            };
            if !unreported || tokio::time::Instant::now() >= deadline {
                break read;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        };
        let (nodes, specs, swarm) = match read {
            Ok(x) => x,
            Err(e) => {
                self.rows.fail(&id, "read the swarm's nodes", &e);
                self.rows.close(&id);
                return;
            }
        };
        let node_ids = self.node_ids.lock().unwrap().clone();
        let failed: Vec<String> = self
            .sessions
            .keys()
            .filter(|h| self.rows.failed(&RowId::host(h)) == Some(true))
            .cloned()
            .collect();
        let b = batch(
            &work.steps,
            &Known {
                nodes: &nodes,
                specs: &specs,
                swarm: swarm.as_ref(),
                leader: &work.host,
                node_ids: &node_ids,
                known: &self.known,
                failed: &failed,
                version: engine.version,
            },
        );
        let sending = format!("{} change(s) in one round trip", b.requests.len());
        let answers = if b.requests.is_empty() {
            Ok(Vec::new())
        } else {
            self.rows.step(&id, &sending);
            engine
                .batch(&b.requests, self.command_timeout)
                .await
                .map_err(String::from)
        };
        let answers = match answers {
            Ok(a) => a,
            Err(e) => {
                let what: Vec<String> = work
                    .steps
                    .iter()
                    .zip(&b.actions)
                    .filter(|(_, a)| matches!(a, Action::Send(_)))
                    .map(|(s, _)| s.describe())
                    .collect();
                self.rows.fail(
                    &id,
                    &sending,
                    &format!(
                        "{e}; which of these took effect is not known: {}; run bootstrap again (it changes only what differs)",
                        what.join(", ")
                    ),
                );
                self.rows.close(&id);
                return;
            }
        };
        for (host, why) in &b.notes {
            self.rows.note(&RowId::host(host), why);
        }
        let mut failed = false;
        for (step, action) in work.steps.iter().zip(&b.actions) {
            let desc = step.describe();
            match action {
                Action::Send(idx) => match idx.iter().map(|i| &answers[*i]).find(|r| !r.ok()) {
                    None => self.rows.changed(&id, desc),
                    Some(bad) => {
                        self.rows.fail(&id, &desc, &api::error_message(bad));
                        failed = true;
                    }
                },
                Action::Unclaimed { target, why } => {
                    let row = RowId::host(target);
                    self.rows.fail(&row, &desc, why);
                    self.rows.close(&row);
                }
                Action::Nothing => {}
                Action::Refused(msg) => {
                    self.rows.fail(&id, &desc, msg);
                    failed = true;
                }
            }
        }
        if failed {
            self.rows.close(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Network, Role};

    fn node(id: &str, hostname: &str, addr: &str, version: u64) -> (SwarmNode, NodeSpec) {
        (
            SwarmNode {
                id: id.into(),
                hostname: hostname.into(),
                state: "ready".into(),
                addr: addr.into(),
                ..Default::default()
            },
            NodeSpec {
                id: id.into(),
                version,
                spec: serde_json::json!({"Role": "worker", "Availability": "active", "Labels": {"own": "x"}}),
            },
        )
    }

    fn body(r: &Request) -> serde_json::Value {
        serde_json::from_slice(r.body.as_ref().unwrap()).unwrap()
    }

    /// pi2's role and labels go in one update of its node at its version; pi3 claims
    /// pi2's node and is refused (its row says why, nothing is sent for it); the network
    /// and the rotation follow in the plan's order; a refusal stops what comes after.
    #[test]
    fn the_steps_become_requests_in_order_after_the_claim_check() {
        let (n1, s1) = node("n1", "pi1", "198.18.0.11", 5);
        let (n2, s2) = node("n2", "pi2", "198.18.0.12", 9);
        let (n3, s3) = node("n3", "imposter", "198.18.0.13", 2);
        let (n9, s9) = node("n9", "pi9", "198.18.0.19", 3);
        let nodes = [n1, n2, n3, n9];
        let specs = [s1, s2, s3, s9];
        let swarm = api::parse_swarm(
            br#"{"Version":{"Index":17},"Spec":{"Name":"default"},"JoinTokens":{"Worker":"w","Manager":"m"}}"#,
        )
        .unwrap();
        let node_ids = HashMap::from([
            ("pi1".to_string(), "n1".to_string()),
            ("pi2".to_string(), "n2".to_string()),
            ("pi3".to_string(), "n3".to_string()),
        ]);
        let known = HashMap::from([
            (
                "pi2".to_string(),
                ("pi2".to_string(), vec!["198.18.0.12".to_string()]),
            ),
            (
                "pi3".to_string(),
                ("pi3".to_string(), vec!["198.18.0.13".to_string()]),
            ),
            (
                "pi9".to_string(),
                ("pi9".to_string(), vec!["198.18.0.19".to_string()]),
            ),
        ]);
        let net = Network {
            name: "DATA".into(),
            driver: "overlay".into(),
            attachable: false,
            internal: true,
            subnet: Some("198.19.10.0/24".into()),
            encrypted: false,
        };
        let labels = |host: &str| Step::SetLabels {
            host: host.into(),
            labels: vec![("zone".into(), "a".into())],
        };
        let steps = vec![
            Step::PruneStaleNodes {
                hosts: vec!["pi9".into()],
            },
            Step::SetRole {
                host: "pi2".into(),
                role: Role::Manager,
            },
            labels("pi2"),
            labels("pi3"),
            labels("pi1"),
            Step::CreateNetwork(net),
            Step::RotateJoinTokens {
                worker: true,
                manager: false,
            },
            Step::Refuse("no".into()),
            labels("pi1"),
        ];
        let k = Known {
            nodes: &nodes,
            specs: &specs,
            swarm: Some(&swarm),
            leader: "pi1",
            node_ids: &node_ids,
            known: &known,
            failed: &[],
            version: api::OLDEST,
        };
        let b = batch(&steps, &k);
        let lines: Vec<String> = b
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            lines,
            [
                "POST /swarm/update?version=17&rotateWorkerToken=true&rotateManagerToken=false",
                "DELETE /nodes/n9?force=true",
                "POST /nodes/n2/update?version=9",
                "POST /nodes/n1/update?version=5",
                "POST /networks/create",
            ]
        );
        assert_eq!(
            body(&b.requests[2]),
            serde_json::json!({"Role": "manager", "Availability": "active", "Labels": {"own": "x", "zone": "a"}})
        );
        assert_eq!(
            body(&b.requests[4]),
            serde_json::json!({"Name": "DATA", "CheckDuplicate": true, "Driver": "overlay", "Scope": "swarm",
                "Attachable": false, "Internal": true,
                "IPAM": {"Driver": "default", "Config": [{"Subnet": "198.19.10.0/24"}]},
                "Labels": {"io.rpiprov.managed": "true"}})
        );
        assert_eq!(body(&b.requests[0]), serde_json::json!({"Name": "default"}));
        let Action::Unclaimed { target, why } = &b.actions[3] else {
            panic!("{:?}", b.actions);
        };
        assert_eq!(target, "pi3");
        assert!(
            why.starts_with("pi3 (host name pi3) reports swarm node n3, which the leader lists as host name imposter"),
            "{why}"
        );
        assert_eq!(
            b.actions,
            vec![
                Action::Send(vec![1]),
                Action::Send(vec![2]),
                Action::Send(vec![2]),
                b.actions[3].clone(),
                Action::Send(vec![3]),
                Action::Send(vec![4]),
                Action::Send(vec![0]),
                Action::Refused("no".into()),
            ]
        );

        // No stale entry left, a host whose row failed already: nothing to send.
        let failed = ["pi2".to_string()];
        let b = batch(
            &[
                Step::PruneStaleNodes {
                    hosts: vec!["pi8".into()],
                },
                labels("pi2"),
            ],
            &Known {
                failed: &failed,
                ..k
            },
        );
        assert!(b.requests.is_empty());
        assert_eq!(b.actions, [Action::Nothing, Action::Nothing]);
    }
}
