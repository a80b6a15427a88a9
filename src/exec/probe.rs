//! The probe of one host, both halves at once over its one connection: the shell command
//! (what the host's files tell: [`crate::docker::probe::probe`], and whatever the caller
//! appends to it) and the Engine API, its relay started beside the shell command and then
//! asked [`crate::docker::probe::reads`] and the caller's own requests in one round trip.
//! The relay is the one `docker` process a probe costs the host. A host whose Docker does
//! not answer (not installed, its daemon down, or speaking no API version rpiprov speaks)
//! is probed all the same: its facts say why ([`DockerProblem`]), and the caller decides.

use std::time::Duration;

use crate::docker::api::{self, Request};
use crate::docker::http::Response;
use crate::docker::network::{NetworkInfo, parse_network_list};
use crate::docker::probe::{self, DockerProblem, Facts};
use crate::exec::engine::{EngineError, Engines};
use crate::exec::{StepError, root};
use crate::remote::Remote;

/// What one host answered.
#[derive(Debug, Clone)]
pub struct Probed {
    pub facts: Facts,
    /// The shell half's output: what the caller appended is read from it.
    pub output: String,
    /// The daemon's answers to the probe's requests and then the caller's, in order;
    /// empty when the daemon could not be asked.
    pub answers: Vec<Response>,
}

impl Probed {
    /// The answers to the caller's own requests, when the daemon answered.
    pub fn extra(&self) -> Option<&[Response]> {
        self.answers.get(probe::reads().len()..)
    }

    /// Every network the daemon listed (the facts hold the playbook's only).
    pub fn all_networks(&self) -> Result<Vec<NetworkInfo>, String> {
        match self.answers.get(probe::NETWORKS_ANSWER) {
            Some(r) => api::read(r, parse_network_list),
            None => Ok(vec![]),
        }
    }
}

/// Probes `remote` (`script` as root, its engine from `engines`): the facts of the
/// playbook's `networks` among the rest, and the answers to `extra`. An error only when
/// the shell half failed or the daemon's info could not be read.
pub async fn probe<R: Remote + 'static>(
    remote: &R,
    engines: &Engines<R>,
    script: String,
    networks: &[&str],
    extra: &[Request],
    timeout: Duration,
) -> Result<Probed, StepError> {
    let (shell, engine) = tokio::join!(root(remote, script, timeout), engines.get(remote.host()));
    let output = shell?.stdout_str();
    let mut facts = probe::parse(&output).map_err(StepError)?;
    let mut answers = Vec::new();
    match engine {
        Ok(e) => {
            let mut reqs = probe::reads();
            reqs.extend_from_slice(extra);
            match e.batch(&reqs, timeout).await {
                Ok(all) => {
                    facts
                        .read_daemon(&e.daemon, e.version, &all[..probe::reads().len()], networks)
                        .map_err(StepError)?;
                    answers = all;
                }
                Err(why) => {
                    facts.docker_version = Some(e.daemon.docker.clone());
                    facts.docker_problem = Some(DockerProblem::NotAnswering(why.to_string()));
                }
            }
        }
        Err(EngineError::Unsupported { why, .. }) => {
            facts.docker_version = Some(why.daemon.docker.clone());
            facts.docker_problem = Some(DockerProblem::Unsupported(why.to_string()));
        }
        Err(e) if facts.docker_installed => {
            facts.docker_problem = Some(DockerProblem::NotAnswering(e.to_string()));
        }
        Err(_) => {}
    }
    Ok(Probed {
        facts,
        output,
        answers,
    })
}
