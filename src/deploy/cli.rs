//! Whether the manager's Docker CLI reads each stack's compose file, judged before any
//! change (by `deploy` and `plan deploy` alike): what each file needs of the CLI is known
//! here ([`crate::config::compose::Need`], found by `check`'s rules); the manager's
//! release is read only when some file needs more than Debian 12's CLI (20.10) reads, and
//! from the package database where it can be ([`crate::docker::cli`]): no `docker`
//! process on a no-op deploy.

use std::time::Duration;

use super::Prepared;
use crate::config::compose::{CliVersion, refusals};
use crate::docker::cli::{
    CLI_PACKAGE, CLI_VERSION, CliSource, parse_cli_package, parse_cli_version,
};
use crate::exec::{StepError, root};
use crate::remote::Remote;

/// The manager's CLI: its release, and where that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerCli {
    pub cli: CliVersion,
    /// `package docker.io 20.10.24+dfsg1-1+deb12u1`, or `/usr/local/bin/docker --version`.
    pub from: String,
}

/// Whether any stack needs the judgement.
pub fn needed(prepared: &Prepared) -> bool {
    prepared.stacks.iter().any(|s| !s.needs.is_empty())
}

/// Reads the manager's CLI release: the package of root's `docker`, else (a `docker` no
/// package owns) `docker --version`.
pub async fn read<R: Remote>(leader: &R, timeout: Duration) -> Result<ManagerCli, StepError> {
    let out = root(leader, CLI_PACKAGE.to_string(), timeout).await?;
    match parse_cli_package(&out.stdout_str()).map_err(StepError)? {
        CliSource::Package { name, version, cli } => Ok(ManagerCli {
            cli,
            from: format!("package {name} {version}"),
        }),
        CliSource::Unpackaged(path) => {
            let out = root(leader, CLI_VERSION.to_string(), timeout).await?;
            let cli = parse_cli_version(&out.stdout_str()).map_err(StepError)?;
            Ok(ManagerCli {
                cli,
                from: format!("{path} --version"),
            })
        }
        CliSource::None => Err(StepError(
            "no docker command on root's PATH: docker stack deploy cannot run".into(),
        )),
    }
}

/// The stacks (by index) whose file the manager `host`'s CLI does not read, each with
/// why: the CLI's release and where it was read, then each need it does not meet.
pub fn judge(prepared: &Prepared, host: &str, found: &ManagerCli) -> Vec<(usize, String)> {
    prepared
        .stacks
        .iter()
        .enumerate()
        .filter_map(|(i, st)| {
            let lines = refusals(&st.needs, found.cli);
            (!lines.is_empty()).then(|| {
                (
                    i,
                    format!(
                        "{host}'s Docker CLI {} ({}) cannot deploy this file: {}",
                        found.cli,
                        found.from,
                        lines.join("; ")
                    ),
                )
            })
        })
        .collect()
}
