//! What `lab up` writes into DIR for rpiprov itself: the inventory, known_hosts, the keys,
//! the sudo password, and the lab playbook with its stack files (embedded in the binary).

use std::fmt::Write as _;
use std::path::Path;

use super::error::{LabError, Result};
use super::layout::Layout;
use super::sys::{self, cmd, run};

pub const CLIENT_KEY: &str = "id_ed25519";
pub const PASSWORD_FILE: &str = "sudo-password";
pub const PASSWORD_ENV: &str = "RPIPROV_SUDO_PASSWORD";
pub const SWARM_POOL: &str = "198.19.0.0/16";

pub const PLAYBOOK: &str = include_str!("assets/playbook.toml");
pub const STACKS: &[(&str, &str)] = &[
    ("stacks/web.yml", include_str!("assets/stacks/web.yml")),
    ("stacks/api.yml", include_str!("assets/stacks/api.yml")),
    ("stacks/echo.yml", include_str!("assets/stacks/echo.yml")),
];
/// A VM lab's playbook: the same networks, image and stacks, published the ordinary way.
/// `@ARCHIVES@` becomes the table of the image's archive per architecture.
pub const VM_PLAYBOOK: &str = include_str!("vm/assets/playbook.toml");
pub const VM_STACKS: &[(&str, &str)] = &[
    ("stacks/web.yml", include_str!("vm/assets/stacks/web.yml")),
    ("stacks/api.yml", include_str!("vm/assets/stacks/api.yml")),
    ("stacks/echo.yml", include_str!("vm/assets/stacks/echo.yml")),
];

/// An ed25519 key pair without passphrase; nothing is done when the private key exists.
/// ssh-keygen writes into a fresh directory of a random name (it would follow a symlink
/// planted at the key's name); the pair is then renamed into place, public half first.
pub fn ensure_key(path: &Path, comment: &str) -> Result<bool> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let work = sys::temp_dir(parent, "keygen")?;
    let key = work.join("key");
    let made = run(cmd([
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        &key.to_string_lossy(),
    ]))
    .and_then(|_| {
        let public = path.with_file_name(format!(
            "{}.pub",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::rename(work.join("key.pub"), &public).map_err(|e| LabError::io(&public, e))?;
        std::fs::rename(&key, path).map_err(|e| LabError::io(path, e))
    });
    let _ = std::fs::remove_dir_all(&work);
    made.map(|()| true)
}

pub fn ensure_password(dir: &Path) -> Result<bool> {
    let path = dir.join(PASSWORD_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    let pw = sys::random_token(20)?;
    sys::write_file(&path, format!("{pw}\n").as_bytes(), 0o600)?;
    Ok(true)
}

pub fn inventory(layout: &Layout) -> String {
    let mut s = String::from(
        "# The lab fleet, written by `rpiprov lab up`; paths are relative to this file.\n\
         # Node pi2's sudo asks for the password in `sudo-password`:\n\
         #   RPIPROV_SUDO_PASSWORD=$(cat sudo-password) rpiprov -i inventory.toml bootstrap\n\
         playbook = \"playbook.toml\"\n\n\
         [ssh]\n\
         known_hosts = \"known_hosts\"\n\
         host_key_policy = \"strict\"\n\
         connect_timeout = \"@TIMEOUT@\"\n\n",
    );
    // An emulated machine on a busy 2-core host takes more than 5 s to finish an SSH
    // login (seen: bootstrap's connect to a VM node at load average 19).
    let vm = layout.nodes.iter().any(|n| n.vm.is_some());
    s = s.replace("@TIMEOUT@", if vm { "30s" } else { "5s" });
    let _ = write!(
        s,
        "[swarm]\ndefault_addr_pool = \"{SWARM_POOL}\"\n\n\
         [defaults]\nuser = \"pi\"\nidentity_files = [\"{CLIENT_KEY}\"]\nbecome = \"sudo\"\n\n\
         [defaults.docker]\ninstall = \"distro\"\n"
    );
    for n in &layout.nodes {
        let _ = write!(
            s,
            "\n[[host]]\nname = \"{}\"\naddress = \"{}\"\nrole = \"{}\"\nlabels = {{ zone = \"{}\" }}\n",
            n.name, n.address, n.role, n.zone
        );
        if n.sudo_password {
            let _ = writeln!(s, "become_password = {{ env = \"{PASSWORD_ENV}\" }}");
        }
    }
    s
}

/// One `ADDRESS KEYTYPE KEY` line per node, from the host keys the lab generated: nothing is
/// learnt over the network, so strict checking is real verification.
pub fn known_hosts(layout: &Layout, dir: &Path) -> Result<String> {
    let mut s = String::new();
    for n in &layout.nodes {
        let path = super::node::node_dir(dir, &n.name).join("ssh_host_ed25519_key.pub");
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
        let mut words = text.split_whitespace();
        let (Some(kind), Some(key)) = (words.next(), words.next()) else {
            return Err(LabError::Other(format!(
                "{}: not a public key",
                path.display()
            )));
        };
        let _ = writeln!(s, "{} {kind} {key}", n.address);
    }
    Ok(s)
}

/// The VM lab's playbook, its image archive per architecture filled in.
pub fn vm_playbook(archives: &[(super::Arch, String)]) -> String {
    let table: Vec<String> = archives
        .iter()
        .map(|(arch, rel)| format!("{arch} = \"{rel}\""))
        .collect();
    VM_PLAYBOOK.replace("@ARCHIVES@", &format!("{{ {} }}", table.join(", ")))
}

/// Writes the playbook and stack files, replacing older copies: they belong to the binary.
/// A VM lab (`archives` per architecture) gets the VM lab's.
pub fn write_playbook(dir: &Path, archives: Option<&[(super::Arch, String)]>) -> Result<()> {
    let (playbook, stacks) = match archives {
        Some(a) => (vm_playbook(a), VM_STACKS),
        None => (PLAYBOOK.to_string(), STACKS),
    };
    sys::write_file(&dir.join("playbook.toml"), playbook.as_bytes(), 0o644)?;
    sys::mkdir(&dir.join("stacks"), 0o755)?;
    for (rel, text) in stacks {
        sys::write_file(&dir.join(rel), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Shape, plan};
    use yaml_rust2::{Yaml, YamlLoader};

    #[test]
    fn inventory_matches_the_agreed_shape() {
        let l = plan(
            Path::new("/x"),
            Shape {
                docker: 2,
                bare: 1,
                sshd_only: 0,
            },
            "198.18.0.0/24".parse().unwrap(),
            &crate::lab::Distros::default(),
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&inventory(&l)).unwrap();
        assert_eq!(v["playbook"].as_str(), Some("playbook.toml"));
        assert_eq!(v["ssh"]["known_hosts"].as_str(), Some("known_hosts"));
        assert_eq!(v["ssh"]["host_key_policy"].as_str(), Some("strict"));
        assert_eq!(
            v["swarm"]["default_addr_pool"].as_str(),
            Some("198.19.0.0/16")
        );
        assert_eq!(v["defaults"]["become"].as_str(), Some("sudo"));
        let hosts = v["host"].as_array().unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0]["role"].as_str(), Some("manager"));
        assert_eq!(hosts[1]["address"].as_str(), Some("198.18.0.12"));
        assert_eq!(
            hosts[1]["become_password"]["env"].as_str(),
            Some("RPIPROV_SUDO_PASSWORD")
        );
        assert!(hosts[2].get("become_password").is_none());
        assert_eq!(v["ssh"]["connect_timeout"].as_str(), Some("5s"));
        // VM nodes: an emulated login on a busy machine takes longer.
        let mut l = l;
        crate::lab::vm::apply(&mut l, &crate::lab::VmOptions::default()).unwrap();
        let v: toml::Value = toml::from_str(&inventory(&l)).unwrap();
        assert_eq!(v["ssh"]["connect_timeout"].as_str(), Some("30s"));
    }

    #[test]
    fn a_key_is_never_written_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, d.path().join("id_ed25519")).unwrap();
        assert!(ensure_key(&d.path().join("id_ed25519"), "test").unwrap());
        assert!(!elsewhere.exists(), "ssh-keygen followed the link");
        let m = std::fs::symlink_metadata(d.path().join("id_ed25519")).unwrap();
        assert!(m.is_file());
        let public = std::fs::read_to_string(d.path().join("id_ed25519.pub")).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        // Kept when it exists; no work directory left.
        assert!(!ensure_key(&d.path().join("id_ed25519"), "test").unwrap());
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    /// Every shipped file parses, names files that ship, and keeps to what this kernel can do.
    #[test]
    fn lab_playbook_and_stacks_parse_and_publish_in_host_mode() {
        let pb: toml::Value = toml::from_str(PLAYBOOK).unwrap();
        let networks: Vec<&str> = pb["network"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(networks, ["DATA", "INTERCO"]);
        let stacks = pb["stack"].as_array().unwrap();
        assert!(stacks.len() >= 3);
        let mut global = 0;
        for st in stacks {
            let file = st["file"].as_str().unwrap();
            let (_, text) = STACKS
                .iter()
                .find(|(p, _)| *p == file)
                .expect("stack ships");
            let doc = &YamlLoader::load_from_str(text).unwrap()[0];
            for (name, svc) in doc["services"].as_hash().unwrap() {
                let deploy = &svc["deploy"];
                assert_eq!(deploy["endpoint_mode"].as_str(), Some("dnsrr"), "{name:?}");
                if deploy["mode"].as_str() == Some("global") {
                    global += 1;
                }
                if let Some(ports) = svc["ports"].as_vec() {
                    for p in ports {
                        assert_eq!(p["mode"].as_str(), Some("host"), "{name:?}");
                    }
                }
                for net in svc["networks"].as_vec().unwrap() {
                    let net = net.as_str().unwrap();
                    assert!(networks.contains(&net));
                    assert_eq!(doc["networks"][net]["external"], Yaml::Boolean(true));
                }
            }
        }
        assert_eq!(global, 1);
    }

    /// A VM lab's playbook: the same networks, image and stacks as a namespace lab's, but
    /// ports published through the routing mesh and services with virtual IPs; the image's
    /// archive per architecture.
    #[test]
    fn vm_lab_playbook_publishes_the_ordinary_way_with_an_archive_per_architecture() {
        use crate::lab::Arch;
        let text = vm_playbook(&[
            (Arch::Amd64, "images/busybox-amd64.tar".into()),
            (Arch::Arm64, "images/busybox-arm64.tar".into()),
        ]);
        let pb: toml::Value = toml::from_str(&text).unwrap();
        let ns: toml::Value = toml::from_str(PLAYBOOK).unwrap();
        assert_eq!(pb["network"], ns["network"]);
        assert_eq!(pb["stack"], ns["stack"]);
        assert_eq!(
            pb["image"][0]["archive"]["arm64"].as_str(),
            Some("images/busybox-arm64.tar")
        );
        assert_eq!(pb["image"][0]["cmd"], ns["image"][0]["cmd"]);
        let mut published = Vec::new();
        for ((vm_rel, vm_text), (ns_rel, _)) in VM_STACKS.iter().zip(STACKS) {
            assert_eq!(vm_rel, ns_rel);
            let doc = &YamlLoader::load_from_str(vm_text).unwrap()[0];
            for (_, svc) in doc["services"].as_hash().unwrap() {
                assert!(
                    svc["deploy"]["endpoint_mode"].is_badvalue(),
                    "the default: a VIP"
                );
                for p in svc["ports"].as_vec().into_iter().flatten() {
                    published.push(p.as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(published, ["18080:8080", "19000:9000"]);
    }
}
