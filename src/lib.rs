//! rpiprov: provisions a Docker Swarm on a rack of Raspberry Pis over SSH.
//!
//! # The modules, and which way they import
//!
//! ```text
//!  main.rs ──> cmd ──> cli                      (flags only)
//!               │
//!               ├──> bootstrap, deploy, teardown, status, logs,  (executors: never each other)
//!               │    maintain
//!               │        │
//!               │        ├──> plan                 (pure: facts -> steps; bootstrap's)
//!               │        ├──> docker               (pure: API requests, command lines, parsers)
//!               │        ├──> exec                 (parallelism, rows, lock, Engine API) ──> docker, remote
//!               │        └──> remote, config
//!               ├──> ui ──> exec::report, status   (renderers only)
//!               └──> lab                           (the virtual fleet)
//!  shell, secret, select, exit, clock: leaves everyone may use
//! ```
//!
//! | module | what it owns |
//! |---|---|
//! | [`cli`] | clap definitions of the flags and subcommands; no logic |
//! | [`cmd`] | one file per command (`check`, `bootstrap`, `doctor`, `deploy`, `teardown`, `status`, `logs`, `maintain`, `run`, `lab`, `completions`/`man`), the dispatch (with `plan X` as `X --dry-run`), and [`cmd::context`]: configuration, `--on`, sudo passwords, connections, the end of a command and its exit code |
//! | [`exit`] | the exit codes |
//! | [`config`] | the inventory and playbook: read, validated, errors with file, line and key |
//! | [`select`] | the `--on` grammar |
//! | [`remote`] | the SSH transport: connect, verify host keys, sudo, exec, streams, upload; what a command cost ([`remote::stats`]) |
//! | [`docker`] | the Engine API's requests and answers, the version negotiated ([`docker::api`]); the remote command lines that are no API's (install, `stack deploy`/`rm`, `service logs`, images, rpiprov's files); pure judgements of what was read, one file per thing Docker manages |
//! | [`exec`] | running work across hosts: parallelism, step errors, the report rows and events ([`exec::report`]), the deploy lock ([`exec::lock`]), what a command would do ([`exec::preview`], for `plan` and `--dry-run`), a host's Docker Engine API over one SSH channel, its version negotiated ([`exec::engine`]), the probe of a host ([`exec::probe`]) |
//! | [`plan`] | the bootstrap planner: facts to phases of steps, one function per phase; the preflight's and `maintain`'s decisions |
//! | [`bootstrap`], [`deploy`], [`teardown`], [`maintain`] | the executors: a command's remote work, from [`docker`] commands through [`exec`] |
//! | [`logs`] | the executor of `rpiprov logs`: `docker service logs` on a manager, streamed, interruptible |
//! | [`status`] | the read-only executor of `rpiprov status`: one probe per host, and what the status says, a pure function of the answers |
//! | [`ui`] | progress bars, plain lines, the summary table, the status and plan tables, the `--json` document |
//! | [`lab`] | the virtual Pi fleet (`rpiprov lab`) |
//! | [`shell`], [`secret`] | shell quoting; a value that never reaches output |
//! | [`clock`] | wall-clock times in messages (RFC 3339, UTC) |
//! | `testing` | tests only: the fake transport, the one script runner, shared builders, and the check of these import rules |
//!
//! The direction is checked by a test (`testing::layout`): `cli` imports nothing of the
//! crate but the value types its flags parse into (`lab::Subnet`, `lab::Port`, `lab::Distros`), no module
//! imports `cmd`, no executor imports another, nothing below `cmd` imports `ui`, and there
//! is no cycle.
//!
//! # Where to look
//!
//! - Where is a network created? [`docker::api::network_create`] builds the request, and
//!   [`docker::network::compare`] decides which playbook networks are missing or differ,
//!   for `bootstrap`'s planner, `deploy` and `status` alike.
//! - Where is a stack's convergence judged? [`docker::service`]: per service whether it is
//!   ready and converged, and why not, and whether it still can converge
//!   ([`docker::service::doomed`]), from a poll the Engine API answers
//!   ([`docker::api::parse_stack_polls`]) (`deploy/wait.rs` only polls until then, every
//!   deployed stack in one round trip).
//! - What does `check` know of a compose file? [`config::compose`]: its keys and types per
//!   file version, the files it refers to, its variables ([`config::interpolate`], shared
//!   with `deploy`), its bind mounts.
//! - Where does a variable's value come from? The playbook ([`config`]: written, `env`,
//!   `command`, its `env_file` read by [`config::dotenv`]); a command runs at deploy
//!   ([`deploy::command`]); `environment:` entries without a value take this machine's
//!   ([`config::FromHere`]).
//! - Which Docker reads a stack file? [`config::compose`] knows which CLI release reads
//!   what (file versions, keys, job modes, YAML 1.1 booleans): each difference is a
//!   [`config::compose::Need`], warned of by `check`; [`deploy::cli`] holds the manager's
//!   release ([`docker::cli`]) to them before any change.
//! - How do shipped images reach the nodes? [`deploy::images`]: records and the Engine
//!   API ([`docker::image`] reads both image stores' answers and an archive's platforms).
//! - How do a stack's files reach the manager? As one set: [`deploy::release`] builds it
//!   here (the layout, the tar stream, the names of configs and secrets),
//!   [`docker::release`] extracts, records and prunes it there.
//! - How does rpiprov talk to Docker without a `docker` process per question?
//!   [`exec::engine::Engine`]: `docker system dial-stdio` on one SSH channel
//!   ([`remote::Remote::open_stream`]), HTTP on it ([`docker::http`], [`docker::api`]); one
//!   per host for a whole command ([`exec::engine::Engines`]). The `docker` CLI is left to
//!   installing and starting Docker, `docker stack deploy`/`rm` and `docker service logs`.
//! - Where is the lock taken? [`exec::lock`]: [`exec::lock::with_lock`] takes it, watches
//!   Ctrl-C and releases it, for `deploy` and `teardown`.
//! - What does `rpiprov run` do? [`cmd::run`]: one command on every selected host, output
//!   per host in inventory order.
//! - What does `plan` (`--dry-run`) share with the command? The same reads and decisions:
//!   `bootstrap::preview` runs bootstrap's own probe, preflight and planner;
//!   `deploy::preview` the same network, image and stack checks and [`deploy::decide`];
//!   `teardown::preview` the same survey. None takes the lock or writes.
//! - What does `status` show? [`status::assess`], a pure function of each host's probe
//!   ([`exec::probe`]) and a manager's overview ([`docker::overview`]), rendered by
//!   `ui::status`.
//! - Which Engine API version is spoken? [`docker::api::negotiate`], once per host, from
//!   its `GET /version`; [`exec::engine::Engine`] puts it on every request.

// Output goes through `ui::term` (cleaned of what a terminal would obey; a closed pipe is
// no panic): the print macros would skip both.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod exec;
pub mod exit;
pub mod lab;
pub mod logs;
pub mod maintain;
pub mod plan;
pub mod remote;
pub mod secret;
pub mod select;
pub mod shell;
pub mod status;
pub mod teardown;
#[cfg(test)]
pub mod testing;
pub mod ui;
