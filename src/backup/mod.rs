//! The executor of `rpiprov backup` and of `rpiprov restore`'s own steps: the swarm's
//! state survives its manager's SD card.
//!
//! - [`take`]: what the swarm is (one round trip to the manager `deploy` acts through, and
//!   each manager's word on which node it is), which manager to copy from
//!   ([`choose`]), and the copy itself: Docker stopped there for it and started again by a
//!   script on the Pi (see [`crate::docker::backup`]), then rpiprov's records from the
//!   manager `deploy` keeps them on, under the deploy lock (`crate::cmd::backup`);
//! - [`archive`]: the file both commands share, written 0600 and atomically, read and
//!   checked before anything is done with it;
//! - [`restore`]: onto a Pi with Docker and no swarm, the state put back, the swarm
//!   started again from it (`--force-new-cluster`, through the Engine API), the entries of
//!   nodes that are gone removed, rpiprov's records put back. The joins and repairs of the
//!   other hosts in between are bootstrap's own (`crate::cmd::restore` runs it), and so is
//!   the wait for the stacks (`deploy`'s).
//!
//! Docker is read and the swarm driven through the Engine API ([`crate::exec::engine`]);
//! only Docker's stop and start, the copy and the swap are commands, in one script.

pub mod archive;
pub mod choose;
pub mod restore;
pub mod take;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::docker::api;
use crate::docker::backup::{self as remote, Stage, Staged};
use crate::docker::swarm::SwarmInfo;
use crate::exec::StepError;
use crate::exec::engine::{Engine, EngineError};
use crate::remote::{ExecRequest, Remote};
use crate::secret::Secret;

/// How long a detached stop-copy-start (or stop-swap-start) may take before the session
/// stops waiting for it (the script itself goes on): [`remote::snapshot`]'s own bound,
/// and a little more.
pub const SCRIPT_WAIT: Duration = Duration::from_secs(660);

/// Reads a staged file off the Pi in full, over a stream (it may be larger than what one
/// command's output keeps), and checks it against the sha256 and size the Pi's script
/// printed: what arrives is what was staged, or an error.
pub async fn fetch_staged<R: Remote>(
    remote: &R,
    staged: &Staged,
    file: &str,
    timeout: Duration,
) -> Result<Vec<u8>, StepError> {
    let (sha, size) = staged
        .file()
        .ok_or_else(|| StepError(format!("the Pi gave no sha256 and size of {file}")))?;
    if size > archive::MEMBER_MAX {
        return Err(StepError(format!(
            "{file} is {size} bytes, more than the {} an archive holds",
            archive::MEMBER_MAX
        )));
    }
    let req = ExecRequest::new(remote::fetch(&staged.stage, file))
        .privileged()
        .timeout(timeout);
    let stream = remote.open_stream(req, SCRIPT_WAIT).await?;
    let (writer, mut reader) = (stream.writer, stream.reader);
    drop(writer);
    let mut bytes = Vec::with_capacity(size as usize);
    loop {
        match tokio::time::timeout(timeout, reader.read()).await {
            Ok(Some(chunk)) => {
                bytes.extend(chunk);
                if bytes.len() as u64 > size {
                    return Err(StepError(format!("{file} arrived longer than staged")));
                }
            }
            Ok(None) => break,
            Err(_) => {
                return Err(StepError(format!(
                    "{file} stopped arriving (nothing for {}s)",
                    timeout.as_secs()
                )));
            }
        }
    }
    if bytes.len() as u64 != size || hex::encode(Sha256::digest(&bytes)) != sha {
        let end = reader.end();
        return Err(StepError(format!(
            "{file} arrived incomplete ({} of {size} bytes){}",
            bytes.len(),
            if end.stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", end.stderr.trim())
            }
        )));
    }
    Ok(bytes)
}

/// Removes a stage; a failure only leaves it for the next run to remove.
pub async fn discard<R: Remote>(remote: &R, stage: &Stage, timeout: Duration) {
    let _ = crate::exec::root(remote, remote::discard(stage), timeout).await;
}

/// A failed staged script's error: what it said, and the end of its log.
pub async fn failure<R: Remote>(
    remote: &R,
    staged: &Staged,
    what: &str,
    timeout: Duration,
) -> StepError {
    let log = crate::exec::root(remote, remote::log_tail(&staged.stage), timeout)
        .await
        .map(|o| o.stdout_str())
        .unwrap_or_default();
    let log = log.trim();
    StepError(if log.is_empty() {
        what.to_string()
    } else {
        format!("{what}; its log ends:\n{log}")
    })
}

/// An Engine API failure as a step's error.
pub fn engine_error(e: EngineError) -> StepError {
    StepError(e.to_string())
}

/// What a node's swarm state is waited for after Docker's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Await {
    /// A manager with quorum (alone in its raft, or with its peers up): until it serves
    /// (not `pending`, control available).
    Serving,
    /// A manager whose raft peers are gone: it stays `pending` without a leader, and
    /// only its node has to be running (`--force-new-cluster` comes next).
    Running,
}

/// The node's swarm state once it settled after Docker's start, up to 60 s.
pub async fn settled(
    engine: &Engine,
    timeout: Duration,
    wait: Await,
) -> Result<SwarmInfo, StepError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = engine
            .call(api::info(), timeout)
            .await
            .map_err(String::from)
            .and_then(|r| api::read(&r, api::parse_info))
            .map_err(StepError)?;
        let waiting = match wait {
            Await::Serving => {
                matches!(info.local_node_state.as_str(), "pending" | "")
                    || (info.is_active() && !info.control_available)
            }
            Await::Running => info.local_node_state.is_empty(),
        };
        if !waiting || Instant::now() >= deadline {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Unlocks an autolocked manager whose Docker just started (it is `locked` until then);
/// the key goes in the request's body and out of every error. Its state once settled.
pub async fn unlock(
    engine: &Engine,
    key: &Secret,
    timeout: Duration,
    wait: Await,
) -> Result<SwarmInfo, StepError> {
    let hide = |e: String| e.replace(key.expose(), "<redacted>");
    let answer = engine
        .call(api::swarm_unlock(key), timeout)
        .await
        .map_err(|e| StepError(hide(e.to_string())))?;
    if !answer.ok() {
        return Err(StepError(format!(
            "the swarm did not unlock: {}",
            hide(api::error_message(&answer))
        )));
    }
    settled(engine, timeout, wait).await
}

#[cfg(test)]
mod tests;
