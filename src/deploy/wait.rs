//! The convergence wait of one deployed stack: polls the manager until every service has
//! converged, twice in a row, or the stack's timeout has passed, showing progress on the
//! stack's row. Whether a service converged, and why not, is judged by
//! [`crate::docker::service`]; this file only decides when to ask again and when to stop.

use std::time::{Duration, Instant};

use crate::docker::service::{self, ServiceState};
use crate::exec::report::{RowId, Rows, secs};
use crate::exec::{StepError, root};
use crate::remote::Remote;

use super::PreparedStack;

/// Polls until every service converged or the stack's timeout passed. On timeout: the
/// last states and the failure text, one line per failing service.
pub async fn converge<R: Remote>(
    leader: &R,
    st: &PreparedStack,
    rows: &Rows,
    command_timeout: Duration,
    poll_interval: Duration,
) -> Result<Vec<ServiceState>, (Vec<ServiceState>, String)> {
    let row = RowId::stack(&st.name);
    rows.step(&row, "wait for convergence");
    let deadline = Instant::now() + st.timeout;
    let mut states: Vec<ServiceState> = Vec::new();
    let mut last_error: Option<String>;
    let mut seen_converged = false;
    loop {
        let poll = root(leader, service::stack_poll(&st.name), command_timeout)
            .await
            .and_then(|o| service::parse_poll(&o.stdout_str()).map_err(StepError));
        match poll {
            Ok(p) => {
                states = service::assess(&st.name, &st.services, &p);
                last_error = None;
                if service::all_converged(&states) {
                    // Twice in a row: right after `stack deploy` swarm may not have
                    // started the update yet (old tasks still running, no update
                    // status), and a crash-looping task can look running once.
                    if seen_converged {
                        return Ok(states);
                    }
                    seen_converged = true;
                } else {
                    seen_converged = false;
                }
                let done = states.iter().filter(|s| s.converged).count();
                rows.output(&row, &format!("{done}/{} services converged", states.len()));
            }
            // A poll that fails (a manager busy electing) is retried until the end.
            Err(e) => last_error = Some(e.0),
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
    Err((states, text))
}
