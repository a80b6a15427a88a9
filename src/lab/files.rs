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
         connect_timeout = \"5s\"\n\n",
    );
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

/// Writes the playbook and stack files, replacing older copies: they belong to the binary.
pub fn write_playbook(dir: &Path) -> Result<()> {
    sys::write_file(&dir.join("playbook.toml"), PLAYBOOK.as_bytes(), 0o644)?;
    sys::mkdir(&dir.join("stacks"), 0o755)?;
    for (rel, text) in STACKS {
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
}
