//! Which Docker CLI reads which compose file: the 3.x file formats each CLI release
//! knows, how it reads a file without `version:` or with `version: "3"`, and what a file
//! needs of the CLI that will deploy it ([`Need`]): `check` warns of each need that Debian
//! 12's CLI (20.10) does not meet; `deploy` and `plan deploy` refuse a file whose needs
//! the manager's CLI does not meet, before any change.
//!
//! From docker/cli's history (facts, not its files): the schemas 3.10 to 3.13 came with
//! CLI 23.0, 24.0, 25.0 and 27.0 (27.0.1: 27.0.0 was never tagged); CLI 20.10 reads a file
//! without `version:` as version 1.0 (and refuses it) and `version: "3"` as 3.0, while CLI
//! 23 and later read both as the newest 3.x they know. What each schema added is in
//! `schema.rs`, key by key; a key the CLI added to a schema after its first release
//! (`oom_score_adj`, in 3.13 since CLI 28.0) carries that release there. Job modes
//! (`replicated-job`, `global-job`) are the CLI's converter's since 23.0, in any file
//! version.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A Docker CLI release, as far as compose files care: its major and minor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CliVersion {
    pub major: u16,
    pub minor: u16,
}

impl CliVersion {
    pub const fn new(major: u16, minor: u16) -> CliVersion {
        CliVersion { major, minor }
    }

    /// Reads a CLI's version as `docker version` prints it (`28.2.2`, `20.10.24+dfsg1`) or
    /// as its Debian package names it (`20.10.24+dfsg1-1+deb12u1`,
    /// `5:28.5.2-1~debian.12~bookworm`): the epoch and everything after the numbers go.
    pub fn parse(text: &str) -> Option<CliVersion> {
        let text = text.trim();
        let text = text.split_once(':').map_or(text, |(_, rest)| rest);
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(CliVersion { major, minor })
    }
}

impl fmt::Display for CliVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for CliVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The oldest CLI rpiprov deploys with: Debian 12's `docker.io` (Raspberry Pi OS
/// Bookworm's too). `check`, which knows no manager, warns of what it does not read.
pub const OLDEST: CliVersion = CliVersion::new(20, 10);

/// The first CLI that reads a file without `version:` (and `version: "3"`) as the newest
/// 3.x it knows, rather than as 1.0 (refused) and 3.0.
pub const NEWEST_BY_DEFAULT: CliVersion = CliVersion::new(23, 0);

/// Each 3.x schema from 3.7 on, with the first CLI release that has it. 3.0 to 3.6 are
/// older than any CLI rpiprov deploys with.
const SCHEMAS: &[(u8, CliVersion)] = &[
    (7, CliVersion::new(18, 6)),
    (8, CliVersion::new(19, 3)),
    (9, CliVersion::new(20, 10)),
    (10, CliVersion::new(23, 0)),
    (11, CliVersion::new(24, 0)),
    (12, CliVersion::new(25, 0)),
    (13, CliVersion::new(27, 0)),
];

/// The newest schema any CLI knows (3.13, since CLI 27.0; CLI 29 still has it).
pub const NEWEST_MINOR: u8 = 13;

/// The first CLI release that knows schema 3.`minor` (one that no CLI knows: never).
pub fn schema_since(minor: u8) -> CliVersion {
    let (first, cli) = SCHEMAS[0];
    if minor <= first {
        return cli;
    }
    SCHEMAS
        .iter()
        .find(|(m, _)| *m == minor)
        .map_or(CliVersion::new(u16::MAX, 0), |(_, cli)| *cli)
}

/// The newest schema this CLI knows: 3.9 for 20.10, 3.13 from 27.0 on.
pub fn newest_minor(cli: CliVersion) -> u8 {
    SCHEMAS
        .iter()
        .rev()
        .find(|(_, since)| *since <= cli)
        .map_or(SCHEMAS[0].0, |(m, _)| *m)
}

/// What a file's `version:` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileVersion {
    /// `3.N`.
    Minor(u8),
    /// `3`: 3.0 before CLI 23, the newest 3.x the CLI knows since.
    Major,
    /// No `version:`: 1.0 (refused) before CLI 23, the newest 3.x the CLI knows since.
    #[default]
    Missing,
}

impl FileVersion {
    /// The schema rpiprov validates the file against: its own, or the newest for a file
    /// that leaves the choice to the CLI.
    pub fn checked_as(self) -> u8 {
        match self {
            FileVersion::Minor(m) => m,
            FileVersion::Major | FileVersion::Missing => NEWEST_MINOR,
        }
    }

    /// The schema this CLI reads the file as; `None` when it refuses the file for its
    /// version (a version it does not know; no version before CLI 23).
    pub fn read_as(self, cli: CliVersion) -> Option<u8> {
        match self {
            FileVersion::Minor(m) => (schema_since(m) <= cli).then_some(m),
            FileVersion::Major if cli < NEWEST_BY_DEFAULT => Some(0),
            FileVersion::Missing if cli < NEWEST_BY_DEFAULT => None,
            FileVersion::Major | FileVersion::Missing => Some(newest_minor(cli)),
        }
    }

    /// The first CLI that reads the file at all.
    pub fn floor(self) -> CliVersion {
        match self {
            FileVersion::Minor(m) => schema_since(m),
            FileVersion::Major => OLDEST,
            FileVersion::Missing => NEWEST_BY_DEFAULT,
        }
    }

    /// The first CLI that reads a key of schema 3.`since` in this file: the one whose
    /// reading of the file has it.
    pub fn key_floor(self, since: u8) -> CliVersion {
        match self {
            FileVersion::Minor(_) => OLDEST,
            FileVersion::Major if since == 0 => OLDEST,
            FileVersion::Major | FileVersion::Missing => schema_since(since).max(NEWEST_BY_DEFAULT),
        }
    }
}

impl fmt::Display for FileVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileVersion::Minor(m) => write!(f, "3.{m}"),
            FileVersion::Major => f.write_str("3"),
            FileVersion::Missing => f.write_str("none"),
        }
    }
}

/// Where in a compose file a need comes from, as diagnostics name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key_path: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        Ok(())
    }
}

/// What in a file only some CLI releases read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Feature {
    /// The file has no `version:`.
    NoVersion,
    /// `version: "3.N"`, a schema newer than CLI 20.10's.
    Version { minor: u8 },
    /// A key (or long syntax) of schema 3.`minor` in a file whose `version:` leaves the
    /// schema to the CLI (`"3"`, or none).
    Key { minor: u8, version: FileVersionName },
    /// A key that schema 3.`minor` gained in a later CLI release than its first.
    Added { minor: u8 },
    /// A job deploy mode (`replicated-job`, `global-job`).
    JobMode { mode: String },
    /// `yes`, `on`, `n`...: a boolean to YAML 1.1 (the CLI before 28.0, go-yaml v2), a
    /// string to YAML 1.2 (28.0 and later, go-yaml v3), where a boolean is expected.
    Yaml11Bool { text: String, value: bool },
    /// The same spellings where a string is expected (a key, an environment value): the
    /// CLI before 28.0 reads a boolean there and refuses it.
    Yaml12Str { text: String },
}

/// [`FileVersion`] for the JSON document: `"3"` or `"none"` (a key's need only comes from
/// those two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileVersionName {
    Major,
    Missing,
}

/// Which CLI releases read something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reads {
    /// This release and every later one.
    Since(CliVersion),
    /// Every release before this one.
    Before(CliVersion),
}

impl Reads {
    pub fn by(self, cli: CliVersion) -> bool {
        match self {
            Reads::Since(v) => cli >= v,
            Reads::Before(v) => cli < v,
        }
    }
}

/// The release where the CLI's YAML parser became YAML 1.2 (go-yaml v3): `yes`, `no`, `on`,
/// `off`, `y`, `n` are strings since, booleans before.
pub const YAML_1_2: CliVersion = CliVersion::new(28, 0);

/// Whether a plain scalar is one of the spellings only YAML 1.1 reads as a boolean.
pub fn yaml11_only_bool(text: &str) -> bool {
    matches!(
        text,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// What a compose file needs of the CLI that deploys it, where not every CLI rpiprov
/// deploys with reads it alike: which releases read it, what and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    pub reads: Reads,
    pub feature: Feature,
    pub place: Place,
}

/// "Debian 12's docker.io 20.10": the CLI `check` has in mind.
const OLDEST_NAMED: &str = "Debian 12's docker.io 20.10";

impl Need {
    /// A need of `cli` or later.
    pub fn since(cli: CliVersion, feature: Feature, place: Place) -> Need {
        Need {
            reads: Reads::Since(cli),
            feature,
            place,
        }
    }

    /// The release where the reading changes.
    pub fn cli(&self) -> CliVersion {
        match self.reads {
            Reads::Since(v) | Reads::Before(v) => v,
        }
    }

    /// What the need is, in words that hold whatever the CLI.
    fn what(&self) -> String {
        let cli = self.cli();
        match &self.feature {
            Feature::NoVersion => format!(
                "missing: Docker CLI {cli} and later read a file without version: as the newest 3.x format they know; before {cli} ({OLDEST_NAMED}) the CLI reads it as version 1.0 and refuses it"
            ),
            Feature::Version { minor } => format!(
                "3.{minor} needs Docker CLI {cli} or later; older ones refuse it ({OLDEST_NAMED} reads 3.0 to 3.{})",
                newest_minor(OLDEST)
            ),
            Feature::Key {
                minor,
                version: FileVersionName::Major,
            } => format!(
                "a key of version 3.{minor}: Docker CLI {cli} and later read version: \"3\" as a format that has it; before {NEWEST_BY_DEFAULT} ({OLDEST_NAMED}) version: \"3\" is 3.0, which has no such key, and the file is refused"
            ),
            Feature::Key {
                minor,
                version: FileVersionName::Missing,
            } => format!(
                "a key of version 3.{minor}: a file without version: is read as the newest 3.x format the CLI knows, and only Docker CLI {cli} and later know 3.{minor}"
            ),
            Feature::Added { minor } => {
                format!(
                    "Docker CLI {cli} added this key to version 3.{minor}; older ones refuse it"
                )
            }
            Feature::JobMode { mode } => format!(
                "deploy mode {mode}: Docker CLI {cli} and later deploy jobs from stack files; older ones ({OLDEST_NAMED}) refuse it (\"Unknown mode: {mode}\")"
            ),
            Feature::Yaml11Bool { text, value } => format!(
                "{text} is a boolean to Docker CLI before {cli} (YAML 1.1) but the string {text:?} to {cli} and later (YAML 1.2), which refuse it here: write {value}"
            ),
            Feature::Yaml12Str { text } => format!(
                "{text} is the string {text:?} to Docker CLI {cli} and later (YAML 1.2) but a boolean to older ones (YAML 1.1, {OLDEST_NAMED}), which refuse it here: quote it"
            ),
        }
    }

    /// `check`'s warning: the need, and that deploy holds the manager's CLI to it.
    pub fn warning(&self) -> String {
        let which = match self.reads {
            Reads::Since(v) => format!("older than {v}"),
            Reads::Before(v) => format!("{v} or later"),
        };
        format!(
            "{}; deploy refuses the file where the manager's Docker CLI is {which}",
            self.what()
        )
    }

    /// Why `found` (the manager's CLI) cannot deploy it, with what to do; `None` when it
    /// can.
    pub fn refusal(&self, found: CliVersion) -> Option<String> {
        if self.reads.by(found) {
            return None;
        }
        let cli = self.cli();
        let knows = newest_minor(found);
        let why = match &self.feature {
            Feature::NoVersion => format!(
                "missing: Docker CLI {found} reads a file without version: as version 1.0 and refuses it (Docker CLI {cli} and later read it as the newest 3.x): add version: \"3.{knows}\""
            ),
            Feature::Version { minor } => format!(
                "3.{minor} is unknown to Docker CLI {found}, which reads 3.0 to 3.{knows} (3.{minor} needs {cli} or later)"
            ),
            Feature::Key {
                minor,
                version: FileVersionName::Major,
            } if found < NEWEST_BY_DEFAULT => format!(
                "Docker CLI {found} reads version: \"3\" as 3.0, which has no such key (it is version 3.{minor}'s): write version: \"3.{minor}\""
            ),
            Feature::Key { minor, .. } => format!(
                "Docker CLI {found} reads the file as version 3.{knows}, which has no such key (it is version 3.{minor}'s, Docker CLI {cli} or later)"
            ),
            Feature::Added { minor } if knows < *minor => format!(
                "Docker CLI {found} reads the file as version 3.{knows}, which has no such key (version 3.{minor} has it since Docker CLI {cli})"
            ),
            Feature::Added { minor } => format!(
                "Docker CLI {found}'s version 3.{minor} has no such key (Docker CLI {cli} added it)"
            ),
            Feature::JobMode { mode } => format!(
                "Docker CLI {found} has no deploy mode {mode} in stack files (Docker CLI {cli} or later)"
            ),
            Feature::Yaml11Bool { text, value } => format!(
                "Docker CLI {found} reads YAML 1.2, where {text} is the string {text:?}, not a boolean: write {value}"
            ),
            Feature::Yaml12Str { text } => format!(
                "Docker CLI {found} reads YAML 1.1, where {text} is a boolean, not a string: quote it"
            ),
        };
        Some(format!("{}: {why}", self.place))
    }
}

/// Why a manager whose CLI is `found` cannot deploy a stack of these needs, one line per
/// need it does not meet; empty when it can. A CLI that refuses the file's version reads
/// none of it: that alone is said.
pub fn refusals(needs: &[Need], found: CliVersion) -> Vec<String> {
    let unmet: Vec<&Need> = needs.iter().filter(|n| !n.reads.by(found)).collect();
    let whole = |n: &&Need| matches!(n.feature, Feature::NoVersion | Feature::Version { .. });
    let said: Vec<&Need> = if unmet.iter().any(whole) {
        unmet.into_iter().filter(whole).collect()
    } else {
        unmet
    };
    said.iter().filter_map(|n| n.refusal(found)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16) -> CliVersion {
        CliVersion::new(major, minor)
    }

    #[test]
    fn versions_as_the_cli_and_its_packages_print_them() {
        for (text, want) in [
            ("20.10.24+dfsg1", v(20, 10)),
            ("20.10.24+dfsg1-1+deb12u1+b6", v(20, 10)),
            ("26.1.5+dfsg1-9+b9", v(26, 1)),
            ("5:28.5.2-1~debian.12~bookworm", v(28, 5)),
            ("28.2.2", v(28, 2)),
            ("24.0.7-0ubuntu4.1", v(24, 0)),
            (" 29.1.0\n", v(29, 1)),
        ] {
            assert_eq!(CliVersion::parse(text), Some(want), "{text}");
        }
        for text in ["", "docker", "28", "x.1"] {
            assert_eq!(CliVersion::parse(text), None, "{text}");
        }
        assert_eq!(v(23, 0).to_string(), "23.0");
        assert!(v(20, 10) < v(23, 0) && v(28, 5) > v(27, 0));
    }

    /// The table of docker/cli's history: which release reads which schema.
    #[test]
    fn each_cli_reads_the_schemas_of_its_time() {
        assert_eq!(newest_minor(v(20, 10)), 9);
        assert_eq!(newest_minor(v(23, 0)), 10);
        assert_eq!(newest_minor(v(24, 0)), 11);
        assert_eq!(newest_minor(v(25, 0)), 12);
        assert_eq!(newest_minor(v(26, 1)), 12);
        assert_eq!(newest_minor(v(27, 0)), 13);
        assert_eq!(newest_minor(v(29, 2)), 13);
        assert_eq!(schema_since(0), v(18, 6));
        assert_eq!(schema_since(9), v(20, 10));
        assert_eq!(schema_since(13), v(27, 0));
        assert_eq!(schema_since(14), v(u16::MAX, 0));

        let (none, three) = (FileVersion::Missing, FileVersion::Major);
        assert_eq!(none.read_as(v(20, 10)), None);
        assert_eq!(none.read_as(v(23, 0)), Some(10));
        assert_eq!(none.read_as(v(26, 1)), Some(12));
        assert_eq!(none.read_as(v(28, 5)), Some(13));
        assert_eq!(three.read_as(v(20, 10)), Some(0));
        assert_eq!(three.read_as(v(28, 5)), Some(13));
        assert_eq!(FileVersion::Minor(12).read_as(v(24, 0)), None);
        assert_eq!(FileVersion::Minor(12).read_as(v(25, 0)), Some(12));
        assert_eq!(none.floor(), v(23, 0));
        assert_eq!(FileVersion::Minor(11).floor(), v(24, 0));
        assert_eq!(three.key_floor(0), v(20, 10));
        assert_eq!(three.key_floor(7), v(23, 0));
        assert_eq!(three.key_floor(12), v(25, 0));
        assert_eq!(none.key_floor(13), v(27, 0));
        assert_eq!(FileVersion::Minor(13).key_floor(13), v(20, 10));
    }

    fn need(cli: CliVersion, feature: Feature, key_path: &str) -> Need {
        Need {
            reads: Reads::Since(cli),
            feature,
            place: Place {
                file: "stacks/web.yml".into(),
                line: (!key_path.starts_with("version")).then_some(5),
                column: (!key_path.starts_with("version")).then_some(7),
                key_path: key_path.into(),
            },
        }
    }

    /// The rules per CLI version, as `check` and `deploy` say them.
    #[test]
    fn what_check_warns_and_what_deploy_refuses() {
        let none = need(v(23, 0), Feature::NoVersion, "version");
        assert_eq!(
            none.warning(),
            "missing: Docker CLI 23.0 and later read a file without version: as the newest 3.x format they know; before 23.0 (Debian 12's docker.io 20.10) the CLI reads it as version 1.0 and refuses it; deploy refuses the file where the manager's Docker CLI is older than 23.0"
        );
        assert_eq!(
            none.refusal(v(20, 10)).unwrap(),
            "stacks/web.yml: version: missing: Docker CLI 20.10 reads a file without version: as version 1.0 and refuses it (Docker CLI 23.0 and later read it as the newest 3.x): add version: \"3.9\""
        );
        for ok in [v(23, 0), v(26, 1), v(28, 5)] {
            assert_eq!(none.refusal(ok), None, "{ok}");
        }

        let v12 = need(v(25, 0), Feature::Version { minor: 12 }, "version");
        assert_eq!(
            v12.warning(),
            "3.12 needs Docker CLI 25.0 or later; older ones refuse it (Debian 12's docker.io 20.10 reads 3.0 to 3.9); deploy refuses the file where the manager's Docker CLI is older than 25.0"
        );
        assert_eq!(
            v12.refusal(v(24, 0)).unwrap(),
            "stacks/web.yml: version: 3.12 is unknown to Docker CLI 24.0, which reads 3.0 to 3.11 (3.12 needs 25.0 or later)"
        );
        assert_eq!(v12.refusal(v(26, 1)), None);

        let init = need(
            v(23, 0),
            Feature::Key {
                minor: 7,
                version: FileVersionName::Major,
            },
            "services.app.init",
        );
        assert_eq!(
            init.warning(),
            "a key of version 3.7: Docker CLI 23.0 and later read version: \"3\" as a format that has it; before 23.0 (Debian 12's docker.io 20.10) version: \"3\" is 3.0, which has no such key, and the file is refused; deploy refuses the file where the manager's Docker CLI is older than 23.0"
        );
        assert_eq!(
            init.refusal(v(20, 10)).unwrap(),
            "stacks/web.yml:5:7: services.app.init: Docker CLI 20.10 reads version: \"3\" as 3.0, which has no such key (it is version 3.7's): write version: \"3.7\""
        );
        assert_eq!(init.refusal(v(23, 0)), None);

        let interval = need(
            v(25, 0),
            Feature::Key {
                minor: 12,
                version: FileVersionName::Missing,
            },
            "services.app.healthcheck.start_interval",
        );
        assert_eq!(
            interval.refusal(v(24, 0)).unwrap(),
            "stacks/web.yml:5:7: services.app.healthcheck.start_interval: Docker CLI 24.0 reads the file as version 3.11, which has no such key (it is version 3.12's, Docker CLI 25.0 or later)"
        );
        assert_eq!(interval.refusal(v(25, 0)), None);

        let oom = need(
            v(28, 0),
            Feature::Added { minor: 13 },
            "services.app.oom_score_adj",
        );
        assert_eq!(
            oom.refusal(v(27, 0)).unwrap(),
            "stacks/web.yml:5:7: services.app.oom_score_adj: Docker CLI 27.0's version 3.13 has no such key (Docker CLI 28.0 added it)"
        );
        assert_eq!(oom.refusal(v(28, 5)), None);
        assert_eq!(
            oom.refusal(v(26, 1)).unwrap(),
            "stacks/web.yml:5:7: services.app.oom_score_adj: Docker CLI 26.1 reads the file as version 3.12, which has no such key (version 3.13 has it since Docker CLI 28.0)"
        );

        let job = need(
            v(23, 0),
            Feature::JobMode {
                mode: "replicated-job".into(),
            },
            "services.app.deploy.mode",
        );
        assert_eq!(
            job.warning(),
            "deploy mode replicated-job: Docker CLI 23.0 and later deploy jobs from stack files; older ones (Debian 12's docker.io 20.10) refuse it (\"Unknown mode: replicated-job\"); deploy refuses the file where the manager's Docker CLI is older than 23.0"
        );
        assert_eq!(
            job.refusal(v(20, 10)).unwrap(),
            "stacks/web.yml:5:7: services.app.deploy.mode: Docker CLI 20.10 has no deploy mode replicated-job in stack files (Docker CLI 23.0 or later)"
        );

        let yes = Need {
            reads: Reads::Before(YAML_1_2),
            ..need(
                YAML_1_2,
                Feature::Yaml11Bool {
                    text: "yes".into(),
                    value: true,
                },
                "services.app.read_only",
            )
        };
        assert_eq!(
            yes.warning(),
            "yes is a boolean to Docker CLI before 28.0 (YAML 1.1) but the string \"yes\" to 28.0 and later (YAML 1.2), which refuse it here: write true; deploy refuses the file where the manager's Docker CLI is 28.0 or later"
        );
        assert_eq!(yes.refusal(v(27, 0)), None);
        assert_eq!(
            yes.refusal(v(28, 5)).unwrap(),
            "stacks/web.yml:5:7: services.app.read_only: Docker CLI 28.5 reads YAML 1.2, where yes is the string \"yes\", not a boolean: write true"
        );
        let n = need(
            YAML_1_2,
            Feature::Yaml12Str { text: "n".into() },
            "services.n",
        );
        assert_eq!(
            n.warning(),
            "n is the string \"n\" to Docker CLI 28.0 and later (YAML 1.2) but a boolean to older ones (YAML 1.1, Debian 12's docker.io 20.10), which refuse it here: quote it; deploy refuses the file where the manager's Docker CLI is older than 28.0"
        );
        assert_eq!(
            n.refusal(v(26, 1)).unwrap(),
            "stacks/web.yml:5:7: services.n: Docker CLI 26.1 reads YAML 1.1, where n is a boolean, not a string: quote it"
        );

        let all = [none, v12, init, interval, oom, job, yes, n];
        // 20.10 refuses the version: that alone is said.
        assert_eq!(refusals(&all, v(20, 10)).len(), 2);
        let keys = &all[2..];
        assert_eq!(refusals(keys, v(20, 10)).len(), 5);
        assert_eq!(refusals(&all, v(24, 0)).len(), 1);
        assert_eq!(refusals(keys, v(24, 0)).len(), 3);
        assert_eq!(refusals(&all, v(27, 0)).len(), 2);
        assert_eq!(refusals(&all, v(28, 5)).len(), 1);
    }
}
