//! `rpiprov status`: the fleet as it is, against the inventory and the playbook, read-only.
//! One connection per host, and on it the probe ([`crate::exec::probe`]: its shell
//! command and its Engine API at once; the relay is the one `docker` process a host
//! runs for it), and on the inventory's managers the swarm's overview in the same two
//! halves ([`crate::docker::overview`]); then [`assess`], a pure function of those answers
//! and the configuration, decides what the status says (`assess.rs`, tested as exact
//! values from given answers). The renderer is `crate::ui::status`.

mod assess;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Host;
use crate::docker::overview::{self, Overview};
use crate::docker::probe::{self, Facts};
use crate::exec::engine::Engines;
use crate::exec::parallel_map;
use crate::exec::probe::Probed;
use crate::remote::Remote;

pub use assess::{
    Drift, Input, NodeStatus, ServiceStatus, StackStatus, Status, SwarmStatus, assess,
};

/// What one host answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub facts: Facts,
    /// The swarm as this host manages it; `None` on a host that manages none.
    pub overview: Option<Overview>,
}

/// The shell half a host is sent: the probe, and on a manager the deploy records.
pub fn command(stacks: &[&str], manager: bool) -> String {
    let mut cmd = probe::probe();
    if manager {
        cmd.push_str(&overview::records(stacks));
    }
    cmd
}

/// One host's answer, from its probe: on a manager of the inventory that manages the
/// swarm, its overview too.
pub fn answer(probed: Probed, manager: bool, stacks: &[&str]) -> Result<Answer, String> {
    let overview = match probed.extra() {
        Some(extra) if manager && probed.facts.swarm.control_available => Some(overview::read(
            &probed.output,
            extra,
            &probed.facts.nodes,
            &probed.all_networks()?,
            stacks,
        )?),
        _ => None,
    };
    Ok(Answer {
        facts: probed.facts,
        overview,
    })
}

/// Asks every connected host, at most `parallel` at once. `failed` are the hosts that
/// could not be reached, with the reason; every host of `hosts` gets an answer or a
/// reason.
pub async fn gather<R: Remote + 'static>(
    hosts: &[&Host],
    networks: &[&str],
    stacks: &[&str],
    sessions: &HashMap<String, Arc<R>>,
    failed: Vec<(String, String)>,
    parallel: usize,
    timeout: Duration,
) -> HashMap<String, Result<Answer, String>> {
    let mut answers: HashMap<String, Result<Answer, String>> =
        failed.into_iter().map(|(h, e)| (h, Err(e))).collect();
    let engines = Arc::new(Engines::new(sessions, timeout));
    let asked: Vec<(String, bool)> = hosts
        .iter()
        .filter(|h| sessions.contains_key(&h.name))
        .map(|h| (h.name.clone(), h.role == crate::config::Role::Manager))
        .collect();
    let networks: Arc<Vec<String>> = Arc::new(networks.iter().map(|n| n.to_string()).collect());
    let stacks: Arc<Vec<String>> = Arc::new(stacks.iter().map(|s| s.to_string()).collect());
    let results = parallel_map(asked, parallel, |(name, manager)| {
        let session = sessions[&name].clone();
        let (engines, networks, stacks) = (engines.clone(), networks.clone(), stacks.clone());
        async move {
            let stacks: Vec<&str> = stacks.iter().map(String::as_str).collect();
            let networks: Vec<&str> = networks.iter().map(String::as_str).collect();
            let extra = if manager { overview::reads() } else { vec![] };
            let probed = crate::exec::probe::probe(
                &*session,
                &engines,
                command(&stacks, manager),
                &networks,
                &extra,
                timeout,
            )
            .await;
            let res = probed
                .map_err(|e| e.0)
                .and_then(|p| answer(p, manager, &stacks));
            (name, res)
        }
    })
    .await;
    answers.extend(results);
    answers
}

#[cfg(test)]
mod tests;
