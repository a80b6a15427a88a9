//! The `docker` command of a manager: which release `docker stack deploy` runs there, for
//! the judgement of what its compose files need ([`crate::config::compose::Need`]).
//!
//! Read from the package database first: the `docker` that root's `PATH` finds (the one
//! `docker stack deploy` will run), or a file that is the same file (a symbolic link, a
//! bind mount as the lab makes), belongs to a package (`docker.io`, `docker-cli`,
//! `docker-ce-cli`) whose version is the CLI's. That costs no `docker` process: on a Pi,
//! one is 0.2-0.5 s of CPU, and a no-op deploy starts none but its Engine API relay. Only
//! a `docker` no package owns (a static binary, another system) is asked itself:
//! [`CLI_VERSION`], `docker --version`, which does not contact the daemon.

use crate::config::compose::CliVersion;

/// Where root's `docker` comes from: `cli package NAME VERSION`, `cli unpackaged PATH`, or
/// `cli none`. Read by [`parse_cli_package`].
pub const CLI_PACKAGE: &str = r#"p=$(command -v docker) || { echo 'cli none'; exit 0; }
for f in "$p" "$(readlink -f "$p")" /usr/bin/docker /bin/docker; do
  [ -e "$f" ] && [ "$f" -ef "$p" ] || continue
  o=$(dpkg-query -S "$f" 2>/dev/null | sed -n '/^diversion /!{p;q;}'); [ -n "$o" ] || continue
  pkg=${o%%: *}; pkg=${pkg%%,*}; pkg=${pkg%%:*}
  v=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null) || continue
  echo "cli package $pkg $v"; exit 0
done
echo "cli unpackaged $p""#;

/// The CLI's own answer, for a `docker` no package owns. Read by [`parse_cli_version`].
pub const CLI_VERSION: &str = "docker --version";

/// What [`CLI_PACKAGE`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliSource {
    /// A package's `docker`: its name, its version as the package says it, the release.
    Package {
        name: String,
        version: String,
        cli: CliVersion,
    },
    /// A `docker` that no package owns, at this path: ask it ([`CLI_VERSION`]).
    Unpackaged(String),
    /// No `docker` on root's `PATH`.
    None,
}

/// Reads [`CLI_PACKAGE`]'s answer; a package version that names no release is an error.
pub fn parse_cli_package(output: &str) -> Result<CliSource, String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("cli "))
        .ok_or_else(|| format!("no answer about the docker command: {:?}", output.trim()))?;
    let mut words = line.split_whitespace();
    match words.next() {
        Some("none") => Ok(CliSource::None),
        Some("unpackaged") => Ok(CliSource::Unpackaged(words.collect::<Vec<_>>().join(" "))),
        Some("package") => {
            let name = words.next().unwrap_or_default().to_string();
            let version = words.next().unwrap_or_default().to_string();
            match CliVersion::parse(&version) {
                Some(cli) => Ok(CliSource::Package { name, version, cli }),
                None => Err(format!(
                    "the package {name} of the docker command has version {version:?}, which names no Docker release"
                )),
            }
        }
        _ => Err(format!("no answer about the docker command: {line:?}")),
    }
}

/// Reads `docker --version` (`Docker version 28.2.2, build e6534b4`).
pub fn parse_cli_version(output: &str) -> Result<CliVersion, String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Docker version "))
        .and_then(CliVersion::parse)
        .ok_or_else(|| format!("docker --version said {:?}", output.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    /// A `dpkg-query` that owns `$FAKE/bin/docker` for `docker.io`.
    const DPKG: &str = r#"#!/bin/sh
case "$1" in
  -S) [ "$2" = "$FAKE/bin/docker" ] && echo "docker.io: $2" || { echo "dpkg-query: no path found matching pattern $2" >&2; exit 1; } ;;
  -W) [ "$4" = docker.io ] && printf '%s' '20.10.24+dfsg1-1+deb12u1' ;;
esac
"#;

    #[test]
    fn the_package_of_the_docker_on_path() {
        syntax_ok(CLI_PACKAGE);
        // What `--json`'s remote.docker_cli counts: the package read starts no docker.
        assert_eq!(crate::remote::stats::docker_calls(CLI_PACKAGE), 0);
        assert_eq!(crate::remote::stats::docker_calls(CLI_VERSION), 1);
        let host = ScratchHost::new();
        host.stand_in("dpkg-query", DPKG);
        let out = host.run(CLI_PACKAGE, b"").ok();
        assert_eq!(out, "cli package docker.io 20.10.24+dfsg1-1+deb12u1\n");
        assert_eq!(
            parse_cli_package(&out),
            Ok(CliSource::Package {
                name: "docker.io".into(),
                version: "20.10.24+dfsg1-1+deb12u1".into(),
                cli: CliVersion::new(20, 10),
            })
        );
        // A docker no package owns: asked itself, by the second command.
        host.stand_in("dpkg-query", "#!/bin/sh\nexit 1\n");
        let out = host.run(CLI_PACKAGE, b"").ok();
        let CliSource::Unpackaged(path) = parse_cli_package(&out).unwrap() else {
            panic!("{out}");
        };
        assert!(path.ends_with("/bin/docker"), "{path}");
        assert_eq!(host.calls(), "", "no docker process was started");
    }

    #[test]
    fn answers_of_every_kind() {
        assert_eq!(parse_cli_package("cli none\n"), Ok(CliSource::None));
        assert_eq!(
            parse_cli_package("cli package docker-ce-cli 5:28.5.2-1~debian.12~bookworm\n").map(
                |s| match s {
                    CliSource::Package { cli, .. } => cli,
                    _ => CliVersion::new(0, 0),
                }
            ),
            Ok(CliVersion::new(28, 5))
        );
        assert_eq!(
            parse_cli_package("cli package docker.io git\n"),
            Err("the package docker.io of the docker command has version \"git\", which names no Docker release".into())
        );
        assert!(parse_cli_package("sudo: a password is required\n").is_err());
        assert_eq!(
            parse_cli_version("Docker version 28.2.2, build e6534b4\n"),
            Ok(CliVersion::new(28, 2))
        );
        assert_eq!(
            parse_cli_version("Docker version 20.10.24+dfsg1, build 297e128\n"),
            Ok(CliVersion::new(20, 10))
        );
        assert!(parse_cli_version("sh: docker: not found").is_err());
    }
}
