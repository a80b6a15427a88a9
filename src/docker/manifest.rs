//! Images the stacks pull from a registry (those the playbook does not ship): their
//! manifests as the manager reads them ([`manifests`], `docker manifest inspect -v`), the
//! platforms they are published for ([`parse_manifests`]), and which nodes cannot run
//! them ([`unfit_nodes`]), so that `deploy` says so before swarm leaves their tasks
//! pending with "no suitable node (unsupported platform)".
//!
//! Best effort, and never a refusal: a manifest that cannot be read (no registry from the
//! manager, a private one without login, a CLI without the command) is said, and nothing
//! is decided on a guess. Docker 20.10's CLI has `docker manifest` without the
//! experimental flag (checked on Debian's 20.10.24); older ones need
//! `DOCKER_CLI_EXPERIMENTAL=enabled`, which the command sets.

use serde_json::Value;

use crate::docker::image::{Platform, docker_arch, runs_on};
use crate::docker::node::SwarmNode;
use crate::shell::quote;

/// Seconds one manifest may take (a registry that does not answer is not waited for).
const PER_IMAGE_SECS: u32 = 20;

/// Reads each image's manifest from its registry, on the manager: `@@image NAME`, the
/// output, `@@status CODE` on a line of its own.
pub fn manifests(images: &[&str]) -> String {
    let list: Vec<String> = images.iter().map(|i| quote(i)).collect();
    format!(
        "export DOCKER_CLI_EXPERIMENTAL=enabled; for i in {}; do echo \"@@image $i\"; t=; command -v timeout >/dev/null 2>&1 && t='timeout {PER_IMAGE_SECS}'; $t docker manifest inspect -v \"$i\" 2>&1; s=$?; echo; echo \"@@status $s\"; done",
        list.join(" ")
    )
}

/// What was read of one image's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// The Linux platforms it is published for.
    Platforms(Vec<Platform>),
    /// Why it could not be read (the CLI's first line).
    Unreadable(String),
}

/// Parses [`manifests`]' output: one entry per image, in order.
pub fn parse_manifests(output: &str) -> Vec<(String, Manifest)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("@@image ") {
            current = Some((name.to_string(), Vec::new()));
        } else if let Some(status) = line.strip_prefix("@@status ") {
            let Some((name, body)) = current.take() else {
                continue;
            };
            let text = body.join("\n");
            let m = if status.trim() == "0" {
                match platforms(&text) {
                    Some(p) if !p.is_empty() => Manifest::Platforms(p),
                    _ => Manifest::Unreadable("its manifest names no platform".into()),
                }
            } else {
                let first = text
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no answer")
                    .trim();
                let why = if status.trim() == "124" {
                    format!("no answer within {PER_IMAGE_SECS}s")
                } else {
                    first.to_string()
                };
                Manifest::Unreadable(why)
            };
            out.push((name, m));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    out
}

/// The Linux platforms of `docker manifest inspect -v` (an object for one manifest, an
/// array for a list) or of a plain manifest list (`manifests[].platform`). Attestation
/// entries (`unknown/unknown`) are left out.
fn platforms(json: &str) -> Option<Vec<Platform>> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let mut found = Vec::new();
    let mut take = |p: &Value| {
        let os = p["os"].as_str().unwrap_or_default();
        let arch = p["architecture"].as_str().unwrap_or_default();
        if os == "linux" && !arch.is_empty() && arch != "unknown" {
            let platform = Platform {
                arch: arch.to_string(),
                variant: p["variant"].as_str().unwrap_or_default().to_string(),
                from: "its manifest on the registry".into(),
            };
            if !found.contains(&platform) {
                found.push(platform);
            }
        }
    };
    match &v {
        Value::Array(items) => items
            .iter()
            .for_each(|i| take(&i["Descriptor"]["platform"])),
        Value::Object(o) if o.contains_key("Descriptor") => take(&v["Descriptor"]["platform"]),
        Value::Object(o) if o.contains_key("manifests") => v["manifests"]
            .as_array()?
            .iter()
            .for_each(|m| take(&m["platform"])),
        _ => return None,
    }
    Some(found)
}

/// The nodes (host names, with their architecture) that run none of the platforms.
pub fn unfit_nodes<'a>(platforms: &[Platform], nodes: &'a [SwarmNode]) -> Vec<&'a SwarmNode> {
    nodes
        .iter()
        .filter(|n| !n.architecture.is_empty())
        .filter(|n| !platforms.iter().any(|p| runs_on(p, &n.architecture)))
        .collect()
}

/// What `deploy` says of one image: `None` when every node can run it.
pub fn verdict(
    image: &str,
    manifest: &Manifest,
    nodes: &[SwarmNode],
    manager: &str,
) -> Option<String> {
    match manifest {
        Manifest::Unreadable(why) => Some(format!(
            "the manifest of {image} could not be read from {manager} ({why}): which architectures it is built for is not checked, and nothing is refused for it"
        )),
        Manifest::Platforms(platforms) => {
            let unfit = unfit_nodes(platforms, nodes);
            if unfit.is_empty() {
                return None;
            }
            let published: Vec<String> = platforms.iter().map(|p| format!("linux/{p}")).collect();
            let names: Vec<String> = unfit
                .iter()
                .map(|n| format!("{} ({})", n.hostname, docker_arch(&n.architecture)))
                .collect();
            Some(format!(
                "{image} is published for {} only: {} cannot run it (swarm leaves its tasks there pending: \"no suitable node (unsupported platform)\"); use an image built for them, or keep the service off them with a placement constraint",
                published.join(", "),
                names.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    /// `docker manifest inspect -v` of a multi-platform image (shortened), as Docker
    /// 20.10 prints it: one entry per platform, an attestation among them.
    const LIST: &str = r#"[
  {"Ref": "docker.io/library/nginx:1.25@sha256:aa", "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:aa", "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}},
  {"Ref": "docker.io/library/nginx:1.25@sha256:bb", "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:bb", "size": 1, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}},
  {"Ref": "docker.io/library/nginx:1.25@sha256:cc", "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:cc", "size": 1, "platform": {"architecture": "unknown", "os": "unknown"}}}
]"#;

    /// One image, one platform: an object, its platform read from its config.
    const SINGLE: &str = r#"{"Ref": "registry.lan:5000/app:2", "Descriptor": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": "sha256:dd", "size": 1, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}, "SchemaV2Manifest": {}}"#;

    fn node(host: &str, arch: &str) -> SwarmNode {
        SwarmNode {
            hostname: host.into(),
            architecture: arch.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_command_reads_each_manifest_in_turn() {
        let cmd = manifests(&["nginx:1.25", "registry.lan:5000/app:2"]);
        assert_eq!(
            cmd,
            "export DOCKER_CLI_EXPERIMENTAL=enabled; for i in nginx:1.25 registry.lan:5000/app:2; do echo \"@@image $i\"; t=; command -v timeout >/dev/null 2>&1 && t='timeout 20'; $t docker manifest inspect -v \"$i\" 2>&1; s=$?; echo; echo \"@@status $s\"; done"
        );
        syntax_ok(&cmd);
        // Against the stand-in docker: an answer for every image, the status kept.
        let host = ScratchHost::new();
        host.answer(("manifest", "inspect"), SINGLE);
        let ran = host.run(&cmd, b"").ok();
        let parsed = parse_manifests(&ran);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "nginx:1.25");
        assert!(matches!(&parsed[1].1, Manifest::Platforms(p) if p[0].to_string() == "arm/v7"));
        assert!(
            host.calls()
                .contains("manifest inspect -v registry.lan:5000/app:2")
        );
    }

    #[test]
    fn platforms_and_failures_are_read() {
        let out = format!(
            "@@image nginx:1.25\n{LIST}\n@@status 0\n@@image registry.lan:5000/app:2\n{SINGLE}\n@@status 0\n@@image private/x:1\nno such manifest: docker.io/private/x:1\n@@status 1\n@@image slow/y:1\n@@status 124\n"
        );
        let parsed = parse_manifests(&out);
        let names: Vec<String> = match &parsed[0].1 {
            Manifest::Platforms(p) => p.iter().map(|p| p.to_string()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names, vec!["amd64", "arm64/v8"]);
        assert_eq!(
            parsed[2].1,
            Manifest::Unreadable("no such manifest: docker.io/private/x:1".into())
        );
        assert_eq!(
            parsed[3].1,
            Manifest::Unreadable("no answer within 20s".into())
        );
    }

    /// Issue 13: which nodes cannot run a registry image, when the manager can read its
    /// manifest; and what is said when it cannot.
    #[test]
    fn nodes_of_another_architecture_are_named() {
        let nodes = vec![
            node("pi1", "aarch64"),
            node("pi2", "armv7l"),
            node("pc", "x86_64"),
        ];
        let parsed = parse_manifests(&format!("@@image nginx:1.25\n{LIST}\n@@status 0\n"));
        assert_eq!(
            verdict("nginx:1.25", &parsed[0].1, &nodes, "pi1").unwrap(),
            "nginx:1.25 is published for linux/amd64, linux/arm64/v8 only: pi2 (arm) cannot run it (swarm leaves its tasks there pending: \"no suitable node (unsupported platform)\"); use an image built for them, or keep the service off them with a placement constraint"
        );
        let everywhere = Manifest::Platforms(vec![
            Platform {
                arch: "arm64".into(),
                variant: String::new(),
                from: String::new(),
            },
            Platform {
                arch: "arm".into(),
                variant: "v7".into(),
                from: String::new(),
            },
            Platform {
                arch: "amd64".into(),
                variant: String::new(),
                from: String::new(),
            },
        ]);
        assert_eq!(verdict("x", &everywhere, &nodes, "pi1"), None);
        assert_eq!(
            verdict(
                "private/x:1",
                &Manifest::Unreadable("unauthorized: authentication required".into()),
                &nodes,
                "pi1"
            )
            .unwrap(),
            "the manifest of private/x:1 could not be read from pi1 (unauthorized: authentication required): which architectures it is built for is not checked, and nothing is refused for it"
        );
    }
}
