//! A VM node's seed: what makes the shared image this node (host name, address, host key,
//! the lab's client key, sudo and its password, Docker's ranges, the modules it lacks).
//! The files go into a small cpio archive appended to the image's initramfs (the kernel
//! unpacks concatenated archives into one), and the initramfs' `/init` applies them to the
//! node's disk on every boot, before systemd starts. Nothing of it is on any command line
//! (`/proc/cmdline` is readable by every user of the guest).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use super::super::error::{LabError, Result};
use super::super::files::{CLIENT_KEY, PASSWORD_FILE};
use super::super::layout::{Kind, NodeSpec};
use super::super::node::daemon_json;
use super::super::sys;
use super::VmNode;

/// systemd-networkd's file: the node's static address on `eth0` (`net.ifnames=0`), the
/// bridge as its gateway, and no IPv6 (the lab has none, and no traffic leaves it unasked).
pub fn network(address: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> String {
    format!(
        "# Written by `rpiprov lab up --vm`: the node's address on the lab's bridge.\n\
         [Match]\nName=eth0\n\n\
         [Network]\nAddress={address}/{prefix}\nGateway={gateway}\n\
         LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
}

/// The sudoers line of user `pi`: the node that asks for a password, as namespace nodes.
pub fn sudoers(spec: &NodeSpec) -> &'static str {
    if spec.sudo_password {
        "pi ALL=(ALL) ALL\n"
    } else {
        "pi ALL=(ALL) NOPASSWD: ALL\n"
    }
}

/// The seed's files, by name, with their modes.
pub fn files(
    spec: &NodeSpec,
    vm: &VmNode,
    lab_dir: &Path,
    node_dir: &Path,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<Vec<(&'static str, Vec<u8>, u32)>> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| LabError::io(p, e));
    let mut f: Vec<(&'static str, Vec<u8>, u32)> = vec![
        ("hostname", format!("{}\n", spec.name).into_bytes(), 0o644),
        (
            "network",
            network(spec.address, prefix, gateway).into_bytes(),
            0o644,
        ),
        // The machine's resolver, as bare namespace nodes have it: apt reaches the mirror.
        ("resolv.conf", read(Path::new("/etc/resolv.conf"))?, 0o644),
        (
            "ssh_host_ed25519_key",
            read(&node_dir.join("ssh_host_ed25519_key"))?,
            0o600,
        ),
        (
            "ssh_host_ed25519_key.pub",
            read(&node_dir.join("ssh_host_ed25519_key.pub"))?,
            0o644,
        ),
        (
            "authorized_keys",
            read(&lab_dir.join(format!("{CLIENT_KEY}.pub")))?,
            0o644,
        ),
        ("sudoers", sudoers(spec).as_bytes().to_vec(), 0o440),
    ];
    if spec.sudo_password {
        let pw = read(&lab_dir.join(PASSWORD_FILE))?;
        let line = format!("pi:{}\n", String::from_utf8_lossy(&pw).trim());
        f.push(("password", line.into_bytes(), 0o600));
    }
    if spec.kind == Kind::Docker
        && let Some(json) = daemon_json(Kind::Docker, None)
    {
        f.push(("daemon.json", json.into_bytes(), 0o644));
    }
    if !vm.without_modules.is_empty() {
        let list = vm.without_modules.join("\n") + "\n";
        f.push(("without-modules", list.into_bytes(), 0o644));
    }
    Ok(f)
}

/// The node's initramfs: the image's, padded to the 4-byte boundary at which the kernel
/// looks for the next archive, then the seed.
pub fn initrd(base: &[u8], seed_cpio: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    out.resize(base.len().next_multiple_of(4), 0);
    out.extend_from_slice(seed_cpio);
    out
}

/// Writes the seed's files under `stage/seed` and returns them as a newc cpio archive,
/// owned by root (the kernel keeps owners and modes).
pub fn archive(stage: &Path, files: &[(&'static str, Vec<u8>, u32)]) -> Result<Vec<u8>> {
    sys::mkdir(&stage.join("seed"), 0o700)?;
    let mut list = String::from("seed\n");
    for (name, bytes, mode) in files {
        sys::write_file(&stage.join("seed").join(name), bytes, *mode)?;
        list.push_str(&format!("seed/{name}\n"));
    }
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(stage)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Other(format!("cannot run cpio: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(list.as_bytes())
            .map_err(|e| LabError::Other(format!("cpio: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Other(format!("cpio: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Other(format!(
            "cpio ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_file_is_the_node_address_through_the_bridge() {
        assert_eq!(
            network(
                Ipv4Addr::new(198, 18, 3, 12),
                24,
                Ipv4Addr::new(198, 18, 3, 1)
            ),
            "# Written by `rpiprov lab up --vm`: the node's address on the lab's bridge.\n\
             [Match]\nName=eth0\n\n[Network]\nAddress=198.18.3.12/24\nGateway=198.18.3.1\n\
             LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        );
    }

    #[test]
    fn the_seed_follows_a_base_archive_at_a_4_byte_boundary() {
        assert_eq!(initrd(b"abcde", b"XY"), b"abcde\0\0\0XY");
        assert_eq!(initrd(b"abcd", b"XY"), b"abcdXY");
    }

    /// The archive is a real newc cpio that cpio itself lists back, owned by root.
    #[test]
    fn the_archive_holds_every_file_with_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let a = archive(
            d.path(),
            &[
                ("hostname", b"pi1\n".to_vec(), 0o644),
                ("password", b"pi:x\n".to_vec(), 0o600),
            ],
        )
        .unwrap();
        assert!(a.starts_with(b"070701"), "newc magic");
        let mut list = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        list.stdin.take().unwrap().write_all(&a).unwrap();
        let out = String::from_utf8(list.wait_with_output().unwrap().stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].starts_with("-rw-r--r--   1 root     root")
                && lines[1].ends_with("seed/hostname"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("-rw-------") && lines[2].ends_with("seed/password"),
            "{out}"
        );
    }
}
