//! The preflight's remote half: the port test between the nodes (listeners of ours, then
//! every node sending to its peers, then what arrived, listeners stopped: three round
//! trips per node, all nodes at once), run through
//! [`crate::docker::ports`]'s commands and judged by [`crate::plan::ports`]. The rest of
//! the preflight comes from the probe bootstrap runs anyway (`crate::plan::preflight`).
//! `rpiprov doctor` runs it alone; bootstrap runs it before forming or joining.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::docker::ports::{self, Target};
use crate::exec::{check, parallel_map};
use crate::plan::ports::{Node, Report, listen_ports, tag, to_send};
use crate::plan::preflight::{Finding, Window};
use crate::remote::{ExecRequest, Remote};

/// Time for one command of the test; the sender's TCP connects give up after 3 s.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// This machine's clock, in seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time around a remote command, for the clock check.
pub fn window(sent: f64) -> Window {
    Window {
        sent,
        received: now(),
    }
}

/// A nonce for one run's datagrams: that they are this run's, not a stray packet's.
fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", t ^ (u128::from(std::process::id()) << 64))
}

async fn run<R: Remote>(remote: &R, cmd: String) -> Result<String, String> {
    let out = remote
        .exec(ExecRequest::new(cmd).timeout(STEP_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    check(out).map(|o| o.stdout_str()).map_err(|e| e.0)
}

/// Runs the port test among these nodes (those without a session are left out) and
/// judges it. Every listener that started is stopped, whatever happened in between.
pub async fn ports<R: Remote + 'static>(
    sessions: &HashMap<String, Arc<R>>,
    nodes: &[Node<'_>],
    parallel: usize,
) -> Vec<Finding> {
    let nodes: Vec<Node> = nodes
        .iter()
        .filter(|n| sessions.contains_key(n.host))
        .cloned()
        .collect();
    if nodes.len() < 2 {
        return vec![];
    }
    let nonce = nonce();
    let mut report = Report::default();
    let started = parallel_map(
        nodes
            .iter()
            .map(|n| (n.host.to_string(), listen_ports(n)))
            .collect(),
        parallel,
        |(host, ports)| {
            let s = sessions[&host].clone();
            async move {
                let got = run(&*s, ports::ports_listen(&ports))
                    .await
                    .and_then(|out| ports::parse_listen(&out));
                (host, got)
            }
        },
    )
    .await;
    report.listening = started.into_iter().collect();
    let sends: Vec<(String, Vec<Target>)> = nodes
        .iter()
        .map(|n| {
            (
                n.host.to_string(),
                to_send(&nodes, n.host, &report.listening),
            )
        })
        .collect();
    let sent = parallel_map(sends, parallel, |(host, targets)| {
        let s = sessions[&host].clone();
        let cmd = ports::ports_send(&tag(&nonce, &host), &targets);
        async move {
            let got = run(&*s, cmd).await.map(|out| ports::parse_send(&out));
            (host, got)
        }
    })
    .await;
    // No wait before the collection: a datagram that arrived was acknowledged once it was
    // in its listener's log, and one that was not had its sender wait 1 s for the ack.
    report.sent = sent.into_iter().collect();
    let dirs: Vec<(String, String)> = report
        .listening
        .iter()
        .filter_map(|(h, l)| l.as_ref().ok().map(|l| (h.clone(), l.dir.clone())))
        .collect();
    let received = parallel_map(dirs, parallel, |(host, dir)| {
        let s = sessions[&host].clone();
        async move {
            let got = run(&*s, ports::ports_collect(&dir))
                .await
                .map(|out| ports::parse_received(&out));
            (host, got)
        }
    })
    .await;
    report.received = received.into_iter().collect();
    crate::plan::ports::judge(&nodes, &nonce, &report)
}
