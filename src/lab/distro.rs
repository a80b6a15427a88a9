//! The Debian release a lab node runs (`lab up --distro sid,trixie,bookworm`): a value type
//! of its own, parsed from the flag as [`super::Subnet`] is, so that every kind of node
//! (namespaces here, VMs elsewhere) reads the same list the same way.
//!
//! Which Docker each release gives is its docker.io (see docs/LAB.md): bookworm 20.10,
//! trixie 26.1, sid 28.5, the Dockers of the Pis of 2023 to 2026.

/// A Debian release the lab can give a node.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Distro {
    /// Debian 12, Raspberry Pi OS of 2023 to 2025: docker.io 20.10. The lab's machine runs
    /// it too, so its Docker nodes run on the machine's own file system (as they always did).
    #[default]
    Bookworm,
    /// Debian 13, Raspberry Pi OS since late 2025: docker.io 26.1.
    Trixie,
    /// Debian unstable: docker.io 28.5.
    Sid,
}

impl Distro {
    pub const ALL: [Distro; 3] = [Distro::Bookworm, Distro::Trixie, Distro::Sid];

    /// The release's name, as debootstrap, apt and `--distro` take it.
    pub fn as_str(self) -> &'static str {
        match self {
            Distro::Bookworm => "bookworm",
            Distro::Trixie => "trixie",
            Distro::Sid => "sid",
        }
    }

    /// A Docker node of this release runs on the lab machine's own `/usr` (a Debian 12
    /// machine: what the lab has always done), not on a root file system of its own.
    pub fn on_host_fs(self) -> bool {
        self == Distro::Bookworm
    }

    /// What a Docker node of this release has installed: docker.io and, from trixie on,
    /// the CLI, which is a package of its own there (docker-cli, only recommended by
    /// docker.io; `apt-get install docker.io` on a Pi brings it).
    pub fn docker_packages(self) -> &'static [&'static str] {
        match self {
            Distro::Bookworm => &["docker.io"],
            Distro::Trixie | Distro::Sid => &["docker.io", "docker-cli"],
        }
    }

    /// Unstable's `Release` is valid for a week only (`Valid-Until`): from a mirror that is
    /// not refreshed, as a CI machine's may be, apt refuses it ("is expired") and nothing
    /// installs. Stable releases carry no such date.
    pub fn release_expires(self) -> bool {
        self == Distro::Sid
    }
}

impl std::fmt::Display for Distro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Distro {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Distro, String> {
        Distro::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a Debian release the lab knows (bookworm, trixie, sid)")
            })
    }
}

/// `--distro LIST`: the releases given to the nodes in node order, the last one repeating.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Distros(Vec<Distro>);

impl Distros {
    /// The release of the `i`-th node (0-based) of those that have one.
    pub fn for_node(&self, i: usize) -> Distro {
        self.0.get(i).or(self.0.last()).copied().unwrap_or_default()
    }

    /// The releases as given (never empty).
    pub fn as_slice(&self) -> &[Distro] {
        &self.0
    }
}

impl Default for Distros {
    fn default() -> Self {
        Distros(vec![Distro::Bookworm])
    }
}

impl std::fmt::Display for Distros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|d| d.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for Distros {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Distros, String> {
        let list = s
            .split(',')
            .map(|item| match item.trim() {
                "" => Err(format!(
                    "{s:?}: an empty name in the list (releases are separated by commas: sid,trixie,bookworm)"
                )),
                name => name.parse(),
            })
            .collect::<std::result::Result<Vec<Distro>, String>>()?;
        Ok(Distros(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_gives_the_nodes_their_releases_in_order_the_last_repeating() {
        let d: Distros = "sid,trixie".parse().unwrap();
        let got: Vec<Distro> = (0..4).map(|i| d.for_node(i)).collect();
        assert_eq!(
            got,
            [Distro::Sid, Distro::Trixie, Distro::Trixie, Distro::Trixie]
        );
        assert_eq!(d.to_string(), "sid,trixie");
        assert_eq!(Distros::default().for_node(7), Distro::Bookworm);
        assert_eq!(Distros::default().to_string(), "bookworm");
        let spaced: Distros = " sid , bookworm".parse().unwrap();
        assert_eq!(spaced.as_slice(), [Distro::Sid, Distro::Bookworm]);
    }

    #[test]
    fn unknown_and_empty_names_are_refused_saying_what_is_known() {
        let e = "sid,bullseye".parse::<Distros>().unwrap_err();
        assert_eq!(
            e,
            "\"bullseye\" is not a Debian release the lab knows (bookworm, trixie, sid)"
        );
        for bad in ["", "sid,,trixie", "sid,", "Trixie", "unstable"] {
            assert!(bad.parse::<Distros>().is_err(), "{bad}");
        }
    }

    #[test]
    fn releases_are_recorded_by_name() {
        assert_eq!(
            serde_json::to_string(&Distro::Trixie).unwrap(),
            "\"trixie\""
        );
        assert!(Distro::Bookworm.on_host_fs() && !Distro::Sid.on_host_fs());
        assert_eq!(Distro::Sid.docker_packages(), ["docker.io", "docker-cli"]);
        assert!(Distro::Sid.release_expires() && !Distro::Trixie.release_expires());
    }
}
