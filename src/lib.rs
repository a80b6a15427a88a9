//! rpiprov: provisions a Docker Swarm on a rack of Raspberry Pis over SSH.
//!
//! The layers, from the outside in: `cli` (flags only) -> `config` (inventory and playbook,
//! validated before any connection) -> `facts` (one read-only probe per host) -> `plan`
//! (pure: config + facts -> steps) -> `run` (executes steps over `remote`, in parallel,
//! emitting events) -> `ui` (renders events). `commands` and `shell` build remote command
//! lines as pure functions.
//!
//! Stacks: `deploy` and `teardown` are executors over `stack_commands` (pure builders and
//! remote paths), `lock` (the deploy lock on the manager), `images` (archives shipped over
//! SSH) and `converge` (pure parsing and judgement of a stack's services).

pub mod app;
pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod converge;
pub mod deploy;
pub mod error;
pub mod facts;
#[cfg(test)]
pub mod fake;
pub mod images;
pub mod lab;
pub mod lock;
pub mod plan;
pub mod remote;
pub mod run;
pub mod secret;
pub mod select;
pub mod shell;
pub mod stack_commands;
pub mod teardown;
pub mod ui;
