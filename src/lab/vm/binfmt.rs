//! Running another architecture's programs on this machine while an image is built: the
//! guest's maintainer scripts run in a chroot under qemu-user (Debian's qemu-user-static),
//! which the kernel calls through binfmt_misc. This machine has neither mounted nor
//! registered by default; the build mounts binfmt_misc and registers its own entry
//! (`rpiprov-<arch>`, the rule of Debian's `/usr/lib/binfmt.d/qemu-<arch>.conf`) for as long
//! as it runs, and removes both again when it ends. Such builds take a machine-wide lock, so
//! one build never removes what another still uses (they run one after the other; a build
//! on 2 cores takes both anyway). An entry the machine already had (binfmt-support,
//! systemd-binfmt) is used and left alone; one a killed build left is removed by the next.

use std::fs;
use std::path::{Path, PathBuf};

use super::super::error::{LabError, Result};
use super::super::net;
use super::super::sys::{self, cmd, run};
use super::Arch;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
/// In the machine directory: held by the build that needs the entry.
const LOCK: &str = "binfmt.lock";
/// Written when a build mounted binfmt_misc, so that it is unmounted after a crash too.
const MOUNTED: &str = "binfmt.mounted";

/// qemu-user's interpreter of an architecture, as Debian's qemu-user-static installs it.
pub fn user_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-x86_64-static",
        Arch::Arm64 => "qemu-aarch64-static",
    }
}

fn qemu_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    }
}

/// Our entry's name.
pub fn entry_name(arch: Arch) -> String {
    format!("rpiprov-{}", qemu_name(arch))
}

/// Debian's rule for `arch` under our own name: `:NAME:M::magic:mask:interpreter:flags`.
pub fn rule(debian_conf: &str, arch: Arch) -> Result<String> {
    let line = debian_conf
        .lines()
        .find(|l| l.starts_with(':'))
        .ok_or_else(|| LabError::Other("no rule in qemu-user-static's binfmt.d file".into()))?;
    let rest = line[1..]
        .split_once(':')
        .map(|(_, rest)| rest)
        .ok_or_else(|| LabError::Other(format!("not a binfmt rule: {line}")))?;
    Ok(format!(":{}:{rest}", entry_name(arch)))
}

/// While it lives, this machine runs `arch`'s programs; dropped, it undoes what it did.
pub struct Foreign {
    arch: Arch,
    _lock: fs::File,
    registered: bool,
}

fn machine_file(name: &str) -> Result<PathBuf> {
    let dir = Path::new(net::MACHINE_DIR);
    sys::private_dir(dir)?;
    Ok(dir.join(name))
}

fn mounted() -> bool {
    Path::new(BINFMT).join("register").exists()
}

/// Makes `arch`'s programs run here (nothing when it is this machine's own).
pub fn enable(arch: Arch) -> Result<Option<Foreign>> {
    if Arch::host() == Some(arch) {
        return Ok(None);
    }
    let lock_path = machine_file(LOCK)?;
    let lock = sys::lock_file(&lock_path, true)?.expect("a waiting lock is taken");
    if !mounted() {
        sys::write_file(&machine_file(MOUNTED)?, b"", 0o600)?;
        run(cmd(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT]))?;
    }
    let debian = Path::new(BINFMT).join(format!("qemu-{}", qemu_name(arch)));
    let ours = Path::new(BINFMT).join(entry_name(arch));
    let registered = !debian.exists();
    if registered && !ours.exists() {
        let conf_path = format!("/usr/lib/binfmt.d/qemu-{}.conf", qemu_name(arch));
        let conf = fs::read_to_string(&conf_path).map_err(|_| {
            LabError::Missing(format!(
                "no {conf_path}: apt-get install qemu-user-static (scripts/deps.sh --vm does) to build {arch} images"
            ))
        })?;
        fs::write(Path::new(BINFMT).join("register"), rule(&conf, arch)?)
            .map_err(|e| LabError::io(BINFMT, e))?;
    }
    Ok(Some(Foreign {
        arch,
        _lock: lock,
        registered,
    }))
}

impl Drop for Foreign {
    fn drop(&mut self) {
        if self.registered {
            let _ = fs::write(Path::new(BINFMT).join(entry_name(self.arch)), "-1");
        }
        let others = fs::read_dir(BINFMT)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| !["register", "status"].contains(&&*e.file_name().to_string_lossy()));
        if let Ok(mark) = machine_file(MOUNTED)
            && mark.exists()
            && !others
        {
            let _ = run(cmd(["umount", BINFMT]));
            let _ = fs::remove_file(mark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_rule_is_registered_under_our_name() {
        let conf = "# comment\n:qemu-aarch64:M::\\x7f\\x45:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n";
        assert_eq!(
            rule(conf, Arch::Arm64).unwrap(),
            ":rpiprov-aarch64:M::\\x7f\\x45:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF"
        );
        assert!(rule("# nothing\n", Arch::Arm64).is_err());
    }
}
