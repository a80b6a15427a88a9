//! The convergence wait of one deployed stack: polls the manager until every service has
//! converged, twice in a row, or the stack's timeout has passed, showing progress on the
//! stack's row. Whether a service converged, and why not, is judged by
//! [`crate::docker::service`]; this file only decides when to ask again and when to stop.
//!
//! It stops early when waiting cannot help: the manager unreachable (the transport gave
//! up reconnecting), or a global service missing on nodes down in the swarm for
//! [`DOWN_NODE_GRACE`] (a node that rebooted is back well within it).

use std::time::{Duration, Instant};

use crate::docker::node::{self, SwarmNode};
use crate::docker::service::{self, ServiceState};
use crate::exec::report::{RowId, Rows, secs};
use crate::exec::{StepError, check};
use crate::remote::{ExecRequest, Remote, RemoteError};

use super::PreparedStack;

/// How long a global service may miss nodes that swarm marks down before the wait gives
/// up on it: swarm notices a node is back within seconds of its dockerd answering.
pub const DOWN_NODE_GRACE: Duration = Duration::from_secs(20);

/// Why a read of the manager failed.
#[derive(Debug)]
pub enum ReadError {
    /// This time: the next poll may do better.
    Failed(StepError),
    /// The transport gave the manager up: no poll will.
    Unreachable(Box<RemoteError>),
}

/// A read on the manager, run again after a lost connection.
async fn read<R: Remote>(leader: &R, cmd: String, timeout: Duration) -> Result<String, ReadError> {
    let req = ExecRequest::new(cmd)
        .privileged()
        .timeout(timeout)
        .idempotent();
    match leader.exec(req).await {
        Ok(out) => check(out)
            .map(|o| o.stdout_str())
            .map_err(ReadError::Failed),
        Err(e) if e.is_unreachable() => Err(ReadError::Unreachable(Box::new(e))),
        Err(e) => Err(ReadError::Failed(e.into())),
    }
}

/// The swarm's nodes, for the judgement of global services.
pub async fn nodes<R: Remote>(leader: &R, timeout: Duration) -> Result<Vec<SwarmNode>, ReadError> {
    let text = read(leader, node::nodes_inspect(), timeout).await?;
    node::parse_nodes(&text).map_err(|e| ReadError::Failed(StepError(e)))
}

/// Why a stack did not converge.
#[derive(Debug, Clone)]
pub struct NotConverged {
    /// The services as the last poll saw them.
    pub states: Vec<ServiceState>,
    /// What the user reads: the cause, then one line per failing service.
    pub text: String,
    /// Only global services missing on nodes down in the swarm: the stack runs everywhere
    /// else, and the stacks after it may still be deployed.
    pub nodes_down: bool,
}

fn not_converged(states: Vec<ServiceState>, text: String) -> NotConverged {
    NotConverged {
        states,
        text,
        nodes_down: false,
    }
}

/// Polls until every service converged or the stack's timeout passed. On timeout: the
/// last states and the failure text, one line per failing service.
pub async fn converge<R: Remote>(
    leader: &R,
    st: &PreparedStack,
    rows: &Rows,
    command_timeout: Duration,
    poll_interval: Duration,
) -> Result<Vec<ServiceState>, NotConverged> {
    let row = RowId::stack(&st.name);
    rows.step(&row, "wait for convergence");
    let deadline = Instant::now() + st.timeout;
    let mut states: Vec<ServiceState> = Vec::new();
    let mut last_error: Option<String>;
    let mut seen_converged = false;
    // Since when swarm's count was complete but global services missed down nodes.
    let mut blocked_since: Option<Instant> = None;
    let unreachable = |states: Vec<ServiceState>, e: RemoteError| {
        let mut text = format!("{e}; the stack's state there is unknown");
        let failing = service::failure_text(&states);
        if !failing.is_empty() {
            text.push_str(&format!("\nat the last poll:\n{failing}"));
        }
        Err(not_converged(states, text))
    };
    loop {
        let poll = read(leader, service::stack_poll(&st.name), command_timeout)
            .await
            .and_then(|o| service::parse_poll(&o).map_err(|e| ReadError::Failed(StepError(e))));
        match poll {
            Ok(p) => {
                states = service::assess(&st.name, &st.services, &p);
                last_error = None;
                if service::all_converged(&states) {
                    // Swarm's count leaves out nodes it marks down: ask which they are.
                    let down = match nodes(leader, command_timeout).await {
                        Ok(nodes) => service::judge_down_nodes(&mut states, &p.specs, &nodes),
                        Err(ReadError::Unreachable(e)) => return unreachable(states, *e),
                        // Swarm's count stands alone: a node list that cannot be read
                        // must not hold a converged stack back.
                        Err(ReadError::Failed(e)) => {
                            rows.note(&row, &format!("cannot read the swarm's nodes: {e}"));
                            false
                        }
                    };
                    if down {
                        seen_converged = false;
                        let since = *blocked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= DOWN_NODE_GRACE.min(st.timeout) {
                            let mut text = format!(
                                "global services do not run on nodes down in the swarm (for {})",
                                secs(since.elapsed())
                            );
                            text.push('\n');
                            text.push_str(&service::failure_text(&states));
                            return Err(NotConverged {
                                states,
                                text,
                                nodes_down: true,
                            });
                        }
                    } else {
                        // Twice in a row: right after `stack deploy` swarm may not have
                        // started the update yet (old tasks still running, no update
                        // status), and a crash-looping task can look running once.
                        if seen_converged {
                            return Ok(states);
                        }
                        seen_converged = true;
                        blocked_since = None;
                    }
                } else {
                    seen_converged = false;
                    blocked_since = None;
                }
                let done = states.iter().filter(|s| s.converged).count();
                rows.output(&row, &format!("{done}/{} services converged", states.len()));
            }
            Err(ReadError::Unreachable(e)) => return unreachable(states, *e),
            // A poll that fails (a manager busy electing) is retried until the end.
            Err(ReadError::Failed(e)) => last_error = Some(e.0),
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(poll_interval.min(deadline - now)).await;
    }
    let mut text = format!("not converged after {}", secs(st.timeout));
    let failing = service::failure_text(&states);
    if !failing.is_empty() {
        text.push('\n');
        text.push_str(&failing);
    }
    if let Some(e) = last_error {
        text.push_str(&format!("\nlast poll failed: {e}"));
    }
    Err(not_converged(states, text))
}
