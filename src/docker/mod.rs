//! Docker, as rpiprov speaks to it over SSH: pure builders of the remote command lines and
//! pure parsers of their output, one file per thing Docker manages; and where the Engine
//! API is reachable (`docker system dial-stdio`), the API's requests and answers ([`api`]). Nothing here opens a
//! connection, sleeps or reports progress; the executors (`bootstrap`, `deploy`,
//! `teardown`) run these commands through [`crate::exec`] and decide what to do with the
//! parsed answers.
//!
//! Every argument is quoted with [`crate::shell`] (or validated before it gets here), and
//! nothing secret is ever built into a command line: join tokens and variable values go on
//! stdin. Builders are tested as exact strings and, where they hold shell logic, run in a
//! real `sh` against a stand-in `docker` (see `crate::testing::script`).
//!
//! | file | what Docker manages |
//! |---|---|
//! | [`probe`] | the read-only probe of a host, and [`probe::Facts`] parsed from it |
//! | [`ports`] | the ports swarm needs between nodes, tested from the nodes before it forms |
//! | [`overview`] | what a manager adds to its probe for `status`: stacks, records, networks, services |
//! | [`engine`] | the daemon: install, upgrade, start, restart, `daemon.json` merge |
//! | [`swarm`] | the swarm: init, join tokens, join, leave, the local node's state |
//! | [`node`] | swarm nodes: labels, promote/demote, removal of stale entries |
//! | [`bind`] | bind-mount sources as a node holds them |
//! | [`network`] | overlay networks: inspect, create, remove, and which are missing or differ |
//! | [`stack`] | stacks: state and deploy records, deploy, remove, what is left, the survey |
//! | [`cli`] | the `docker` command `docker stack deploy` runs on a manager: its release |
//! | [`release`] | a stack's uploaded file set: present or not, extracted whole, recorded, pruned |
//! | [`service`] | a stack's services: the convergence poll and its judgement |
//! | [`task`] | where tasks run, swarm-wide and on one node: what `maintain` drains and waits on |
//! | [`machine`] | the Pi under Docker: its boot id, a reboot |
//! | [`image`] | images shipped without a registry: check, load, import, purge |
//! | [`manifest`] | images pulled from a registry: their platforms, the nodes that cannot run them |
//! | [`lock`] | the deploy lock's folder on the manager (taken in [`crate::exec::lock`]) |
//! | [`notices`] | Docker's own notices, kept out of error text |
//! | [`paths`] | everything rpiprov keeps on a host, under `/var/lib/rpiprov` |
//! | [`api`] | the same things through the Docker Engine API: requests and the JSON read back |
//! | [`http`] | HTTP/1.1 framing of those requests and answers, for the API's byte stream |

pub mod api;
pub mod bind;
pub mod cli;
pub mod engine;
pub mod http;
pub mod image;
pub mod lock;
pub mod machine;
pub mod manifest;
pub mod network;
pub mod node;
pub mod notices;
pub mod overview;
pub mod paths;
pub mod ports;
pub mod probe;
pub mod release;
pub mod service;
pub mod stack;
pub mod swarm;
pub mod task;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Docker prints `null` for an empty list or map in its JSON; read it as empty.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses Docker's `--format '{{json .}}'` output: one object per line, blank lines
/// skipped. `what` names the command in the error (`docker node inspect`).
pub(crate) fn json_lines<T: DeserializeOwned>(text: &str, what: &str) -> Result<Vec<T>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| format!("cannot read {what}: {e}")))
        .collect()
}
