//! The bind-mount check before deploying: every bind source of a service that is about to
//! be deployed must exist on each node where the service may run (its placement
//! constraints evaluated against the swarm's nodes, by
//! [`crate::docker::service::placement_candidates`]).
//! The nodes from the manager's Engine API, then on every node at once its paths and host
//! name (one shell command, [`crate::docker::bind`]) and which swarm node it is (its own
//! Engine API, beside it). What is missing is reported per service, path and node;
//! `deploy --skip-bind-check` skips this. A node's answer names the swarm node it is:
//! that is its word, taken for that node only when the leader's entry confirms it
//! ([`check_claim`]); otherwise the node counts as not checked, saying why.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::PreparedStack;
use crate::docker::api;
use crate::docker::bind::{NodeSources, parse_sources, sources_check};
use crate::docker::node::{Basis, Claim, NodeEntry, Stake, SwarmNode, check_claim};
use crate::docker::service::placement_candidates;
use crate::exec::engine::{Engine, Engines};
use crate::exec::{StepError, parallel_map, root};
use crate::remote::Remote;

/// What the check found for the stacks it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Per stack (by index in the list given): one line per service and missing path,
    /// naming the nodes (`web_app: bind source /srv/data does not exist on pi2, pi3`).
    pub failed: BTreeMap<usize, Vec<String>>,
    /// Nodes that could not be checked, and why (not connected, the check failed).
    pub unchecked: Vec<String>,
}

/// Checks the bind sources of `stacks` on the nodes where their services may run.
/// `nodes`: the sessions by inventory name; `addresses`: each one's addresses as this
/// machine knows them (what the swarm must see its node at). An error only when the
/// manager cannot list the nodes.
pub async fn check<R: Remote + 'static>(
    leader: &Engine,
    engines: &Arc<Engines<R>>,
    nodes: &HashMap<String, Arc<R>>,
    addresses: &HashMap<String, Vec<String>>,
    stacks: &[&PreparedStack],
    parallel: usize,
    timeout: Duration,
) -> Result<Findings, StepError> {
    let swarm = super::wait::nodes(leader, timeout)
        .await
        .map_err(StepError)?;
    let mut findings = Findings::default();

    // Per stack and service: the candidate nodes' IDs, and its sources.
    let mut wanted: Vec<(usize, String, Vec<String>, Vec<&SwarmNode>)> = Vec::new();
    let mut all_paths: Vec<String> = Vec::new();
    for (i, st) in stacks.iter().enumerate() {
        for b in &st.binds {
            let service = format!("{}_{}", st.name, b.service);
            let on = placement_candidates(&b.constraints, &swarm);
            for p in &b.sources {
                if !all_paths.contains(p) {
                    all_paths.push(p.clone());
                }
            }
            wanted.push((i, service, b.sources.clone(), on));
        }
    }
    if wanted.is_empty() {
        return Ok(findings);
    }

    // Every connected node says which node it is and what it lacks.
    let mut sessions: Vec<(String, Arc<R>)> =
        nodes.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
    sessions.sort_by(|a, b| a.0.cmp(&b.0));
    let cmd = sources_check(&all_paths);
    let answers = parallel_map(sessions, parallel, |(name, s)| {
        let cmd = cmd.clone();
        let engines = engines.clone();
        async move {
            let (paths, id) = tokio::join!(root(&*s, cmd, timeout), async {
                let e = engines.get(&name).await?;
                let r = e.call(api::info(), timeout).await?;
                api::read(&r, api::parse_info).map(|i| i.node_id)
            });
            let res = paths.map_err(|e| e.0).and_then(|out| {
                let id = id.map_err(|e: String| e)?;
                Ok((id, parse_sources(&out.stdout_str())))
            });
            (name, res)
        }
    })
    .await;
    let (by_id, refused) = confirmed(answers, &swarm, addresses, &mut findings);
    for (i, service, sources, on) in wanted {
        // path -> nodes where it is missing
        let mut missing: Vec<(String, Vec<String>)> = Vec::new();
        for node in on {
            let Some((name, lacks)) = by_id.get(&node.id) else {
                if refused.contains(&node.id) {
                    continue; // Said already: whose answer was not taken, and why.
                }
                let line = format!("{}: not connected, not checked", node.hostname);
                if !findings.unchecked.contains(&line) {
                    findings.unchecked.push(line);
                }
                continue;
            };
            for p in sources.iter().filter(|p| lacks.contains(p)) {
                match missing.iter_mut().find(|(q, _)| q == p) {
                    Some((_, names)) => names.push(name.clone()),
                    None => missing.push((p.clone(), vec![name.clone()])),
                }
            }
        }
        for (p, mut names) in missing {
            names.sort();
            findings.failed.entry(i).or_default().push(format!(
                "{service}: bind source {p} does not exist on {}",
                names.join(", ")
            ));
        }
    }
    Ok(findings)
}

/// Node ID -> the inventory name whose answer is taken for it, and the paths it lacks.
type ByNode = HashMap<String, (String, Vec<String>)>;

/// A node's answer: the swarm node ID its Engine API reports, and what its shell found.
type Answer = Result<(String, NodeSources), String>;

/// The nodes' answers, by the node ID each names, once the leader's entry confirms the
/// claim ([`check_claim`]); an answer that fails it is a line of `unchecked` and its node
/// ID is returned among the refused: the node counts as not checked.
fn confirmed(
    answers: Vec<(String, Answer)>,
    swarm: &[SwarmNode],
    addresses: &HashMap<String, Vec<String>>,
    findings: &mut Findings,
) -> (ByNode, Vec<String>) {
    let mut said = Vec::new();
    for (name, res) in answers {
        match res {
            Ok(answer) => said.push((name, answer)),
            Err(e) => findings
                .unchecked
                .push(format!("{name}: the check failed: {e}")),
        }
    }
    let mut by_id = HashMap::new();
    let mut refused = Vec::new();
    let none = Vec::new();
    for (name, (node_id, found)) in &said {
        let also: Vec<String> = said
            .iter()
            .filter(|(n, (id, _))| n != name && id == node_id)
            .map(|(n, _)| n.clone())
            .collect();
        let claim = Claim {
            host: name,
            node_id,
            hostname: &found.hostname,
            addresses: addresses.get(name).unwrap_or(&none),
            also_claimed_by: &also,
            basis: Basis::NodeId,
            stake: Stake::Answer,
        };
        let entry = swarm.iter().find(|n| &n.id == node_id);
        match check_claim(&claim, entry.map(NodeEntry::from)) {
            Ok(()) => {
                by_id.insert(node_id.clone(), (name.clone(), found.missing.clone()));
            }
            Err(why) => {
                findings
                    .unchecked
                    .push(format!("{name}: not checked: {why}"));
                refused.push(node_id.clone());
            }
        }
    }
    (by_id, refused)
}
