//! Bind-mount sources as a node holds them: one shell command per node says which of the
//! given paths do not exist there ([`sources_check`], read by [`parse_sources`]); which
//! swarm node it is its Engine API says beside it. Which nodes a service may run on is
//! [`super::service::placement_candidates`]'s.

use crate::shell::quote;

/// On one node, as root: its host name (`@@host NAME`), then `missing PATH` for each path
/// that does not exist. A path starting with `~` is looked up under `$HOME`, as the Docker
/// CLI expands it (the first `~` only). Which swarm node it is comes from its Engine API.
pub fn sources_check(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!(
        "set -e; echo \"@@host $(hostname)\"; for p in {}; do case \"$p\" in '~'*) q=\"$HOME${{p#'~'}}\" ;; *) q=$p ;; esac; if [ ! -e \"$q\" ]; then printf 'missing %s\\n' \"$p\"; fi; done",
        list.join(" ")
    )
}

/// What [`sources_check`] found on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSources {
    /// The host name it reports.
    pub hostname: String,
    pub missing: Vec<String>,
}

pub fn parse_sources(text: &str) -> NodeSources {
    let mut out = NodeSources::default();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@host ") {
            out.hostname = name.trim().to_string();
        } else if let Some(p) = line.strip_prefix("missing ") {
            out.missing.push(p.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::ScratchHost;

    #[test]
    fn the_check_names_the_node_and_the_missing_paths() {
        let paths = vec!["/srv/a b".to_string(), "~/data".to_string()];
        assert_eq!(
            sources_check(&paths),
            "set -e; echo \"@@host $(hostname)\"; for p in '/srv/a b' '~/data'; do case \"$p\" in '~'*) q=\"$HOME${p#'~'}\" ;; *) q=$p ;; esac; if [ ! -e \"$q\" ]; then printf 'missing %s\\n' \"$p\"; fi; done"
        );
        let host = ScratchHost::new();
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("here");
        std::fs::create_dir(&here).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let paths = vec![
            here.display().to_string(),
            dir.path().join("gone").display().to_string(),
            "~/data".to_string(),
            "~/nope".to_string(),
        ];
        let cmd = format!(
            "HOME={}; hostname() {{ echo pi2; }}; {}",
            quote(&dir.path().display().to_string()),
            sources_check(&paths)
        );
        let out = host.run(&cmd, b"").ok();
        assert_eq!(
            parse_sources(&out),
            NodeSources {
                hostname: "pi2".into(),
                missing: vec![paths[1].clone(), "~/nope".into()],
            }
        );
        assert_eq!(host.calls(), "", "no docker process");
    }
}
