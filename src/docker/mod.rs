//! Docker, as rpiprov speaks to it over SSH: the Engine API's requests and the JSON of its
//! answers ([`api`], over `docker system dial-stdio`: how rpiprov reads Docker and changes
//! its swarm, nodes, networks and services), the few remote command lines that are no
//! API's (installing and starting Docker, `docker stack deploy` and `rm`, `docker service
//! logs`, loading image archives, rpiprov's own files), and pure judgements of what was
//! read, one file per thing Docker manages. Nothing here opens a connection, sleeps or
//! reports progress; the executors (`bootstrap`, `deploy`,
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
//! | [`probe`] | the read-only probe of a host: its shell half, what it asks the daemon, and [`probe::Facts`] read from both |
//! | [`ports`] | the ports swarm needs between nodes, tested from the nodes before it forms |
//! | [`overview`] | what a manager adds to its probe for `status`: deploy records, stacks, networks, services |
//! | [`engine`] | the daemon: install, upgrade, start, restart, `daemon.json` merge |
//! | [`swarm`] | the swarm as one node sees it, and how a node leaves |
//! | [`node`] | swarm nodes: the claim check, quorum, stale entries, the dissolution |
//! | [`bind`] | bind-mount sources as a node holds them |
//! | [`network`] | overlay networks: as listed, and which are missing or differ |
//! | [`stack`] | stacks: deploy records, deploy, remove, the survey of what exists |
//! | [`cli`] | the `docker` command `docker stack deploy` runs on a manager: its release |
//! | [`release`] | a stack's uploaded file set: present or not, extracted whole, recorded, pruned |
//! | [`service`] | a stack's services: the judgement of their convergence |
//! | [`task`] | where tasks run, swarm-wide and on one node: what `maintain` drains and waits on |
//! | [`machine`] | the Pi under Docker: its boot id, a reboot |
//! | [`image`] | images shipped without a registry: check, load, import, purge |
//! | [`manifest`] | images pulled from a registry: their platforms, the nodes that cannot run them |
//! | [`lock`] | the deploy lock's folder on the manager (taken in [`crate::exec::lock`]) |
//! | [`notices`] | Docker's own notices, kept out of error text |
//! | [`paths`] | everything rpiprov keeps on a host, under `/var/lib/rpiprov` |
//! | [`api`] | the Docker Engine API: the version negotiated, requests and the JSON read back |
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

/// Docker prints `null` for an empty list or map in its JSON; read it as empty.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
