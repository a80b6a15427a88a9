//! `rpiprov status`: the fleet as it is, against the inventory and the playbook, read-only.
//! One connection and one command per host: the probe ([`crate::docker::probe`]), and on
//! the inventory's managers the swarm's overview appended to it
//! ([`crate::docker::overview`]); then [`assess`], a pure function of those answers and
//! the configuration, decides what the status says (`assess.rs`, tested as exact values
//! from given answers). The renderer is `crate::ui::status`.

mod assess;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Host;
use crate::docker::overview::{self, Overview};
use crate::docker::probe::{self, Facts};
use crate::exec::{StepError, parallel_map, root};
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

/// The one command a host is sent: the probe, and on a manager the overview.
pub fn command(networks: &[&str], stacks: &[&str], manager: bool) -> String {
    let mut cmd = probe::probe(networks);
    if manager {
        cmd.push_str(&overview::overview(stacks));
    }
    cmd
}

/// Reads one host's answer.
pub fn parse(output: &str) -> Result<Answer, String> {
    Ok(Answer {
        facts: probe::parse(output)?,
        overview: overview::parse(output)?,
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
    let asked: Vec<(String, String)> = hosts
        .iter()
        .filter(|h| sessions.contains_key(&h.name))
        .map(|h| {
            let manager = h.role == crate::config::Role::Manager;
            (h.name.clone(), command(networks, stacks, manager))
        })
        .collect();
    let results = parallel_map(asked, parallel, |(name, cmd)| {
        let session = sessions[&name].clone();
        async move {
            let res = root(&*session, cmd, timeout)
                .await
                .and_then(|out| parse(&out.stdout_str()).map_err(StepError));
            (name, res.map_err(|e| e.0))
        }
    })
    .await;
    answers.extend(results);
    answers
}

#[cfg(test)]
mod tests;
