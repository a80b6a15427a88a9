//! `deploy STACK...` and `teardown STACK...`: the playbook cut down to the stacks named,
//! in playbook order. What a teardown of some stacks may remove besides them is only what
//! no other stack of the playbook uses: a network or a shipped image another stack names
//! stays.

use std::collections::BTreeSet;

use super::model::Playbook;

/// What the selection is for: a deploy keeps every network and image of the playbook (it
/// creates missing networks and ships images as it always does); a teardown keeps only
/// those the named stacks use and the others do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Deploy,
    Teardown,
}

impl Playbook {
    /// The playbook with only the stacks `names` (all of them when `names` is empty); an
    /// unknown name is an error naming the playbook's stacks.
    pub fn select_stacks(&self, names: &[String], purpose: Purpose) -> Result<Playbook, String> {
        if names.is_empty() {
            return Ok(self.clone());
        }
        let known: Vec<&str> = self.stacks.iter().map(|s| s.name.as_str()).collect();
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !known.contains(n))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "no stack {} in {}: its stacks are {}",
                unknown.join(", "),
                self.path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        let mut out = self.clone();
        out.stacks.retain(|s| names.contains(&s.name));
        if purpose == Purpose::Teardown {
            let others = self.stacks.iter().filter(|s| !names.contains(&s.name));
            let kept_nets: BTreeSet<&str> = others
                .clone()
                .flat_map(|s| s.compose.external_networks.iter().map(String::as_str))
                .collect();
            let kept_images: BTreeSet<&str> = others
                .flat_map(|s| s.compose.images.iter().map(String::as_str))
                .collect();
            let uses = |f: &dyn Fn(&super::model::Stack) -> bool| out.stacks.iter().any(f);
            let nets = self.networks.iter().filter(|n| {
                !kept_nets.contains(n.name.as_str())
                    && uses(&|s| s.compose.external_networks.contains(&n.name))
            });
            let images = self.images.iter().filter(|i| {
                !kept_images.contains(i.name.as_str())
                    && uses(&|s| s.compose.images.contains(&i.name))
            });
            let (nets, images) = (nets.cloned().collect(), images.cloned().collect());
            out.networks = nets;
            out.images = images;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Compose, Image, ImageFormat, Network, Stack};
    use std::path::PathBuf;
    use std::time::Duration;

    fn stack(name: &str, nets: &[&str], images: &[&str]) -> Stack {
        Stack {
            name: name.into(),
            file: PathBuf::from(format!("stacks/{name}.yml")),
            order: 0,
            timeout: Duration::from_secs(300),
            compose: Compose {
                external_networks: nets.iter().map(|s| s.to_string()).collect(),
                images: images.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    fn net(name: &str) -> Network {
        Network {
            name: name.into(),
            driver: "overlay".into(),
            attachable: false,
            internal: false,
            subnet: None,
            encrypted: false,
        }
    }

    fn lab_book() -> Playbook {
        Playbook {
            path: PathBuf::from("playbook.toml"),
            networks: vec![net("DATA"), net("INTERCO"), net("ALONE")],
            stacks: vec![
                stack("web", &["DATA", "INTERCO"], &["lab/busybox:1"]),
                stack("api", &["DATA", "ALONE"], &["lab/busybox:1", "lab/api:1"]),
                stack("echo", &["INTERCO"], &["lab/busybox:1"]),
            ],
            images: ["lab/busybox:1", "lab/api:1"]
                .iter()
                .map(|n| Image {
                    name: n.to_string(),
                    archive: PathBuf::from("x.tar"),
                    by_arch: Vec::new(),
                    format: ImageFormat::DockerSave,
                    cmd: Vec::new(),
                })
                .collect(),
            variables: Vec::new(),
            containment: Default::default(),
        }
    }

    fn names(p: &Playbook) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            p.stacks.iter().map(|s| s.name.clone()).collect(),
            p.networks.iter().map(|n| n.name.clone()).collect(),
            p.images.iter().map(|i| i.name.clone()).collect(),
        )
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stacks_named_in_playbook_order() {
        let p = lab_book()
            .select_stacks(&strings(&["echo", "web"]), Purpose::Deploy)
            .unwrap();
        let (stacks, nets, images) = names(&p);
        assert_eq!(stacks, ["web", "echo"]);
        assert_eq!(nets, ["DATA", "INTERCO", "ALONE"]);
        assert_eq!(images, ["lab/busybox:1", "lab/api:1"]);
        let all = lab_book().select_stacks(&[], Purpose::Teardown).unwrap();
        assert_eq!(names(&all), names(&lab_book()));
    }

    #[test]
    fn a_teardown_keeps_what_other_stacks_use() {
        let p = lab_book()
            .select_stacks(&strings(&["api"]), Purpose::Teardown)
            .unwrap();
        let (stacks, nets, images) = names(&p);
        assert_eq!(stacks, ["api"]);
        // DATA is web's too; ALONE only api's.
        assert_eq!(nets, ["ALONE"]);
        assert_eq!(images, ["lab/api:1"]);
        let p = lab_book()
            .select_stacks(&strings(&["web", "echo"]), Purpose::Teardown)
            .unwrap();
        assert_eq!(names(&p).1, ["INTERCO"]);
        assert!(names(&p).2.is_empty());
    }

    #[test]
    fn an_unknown_stack_names_the_playbooks() {
        let e = lab_book()
            .select_stacks(&strings(&["web", "nope", "db"]), Purpose::Deploy)
            .unwrap_err();
        assert_eq!(
            e,
            "no stack nope, db in playbook.toml: its stacks are web, api, echo"
        );
    }
}
