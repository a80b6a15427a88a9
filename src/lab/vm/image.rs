//! The images VM nodes boot, built offline from Debian's packages once per release and
//! architecture, in the cache (`RPIPROV_LAB_CACHE/vm/<release>-<arch>/`):
//!
//! - `system/`: the root file system (debootstrap minbase, systemd, sshd, the guest agent,
//!   the distribution's kernel unpacked with `dpkg-deb -x`), set up by `build.sh system`;
//! - `boot/`: that kernel, the small initramfs of `init.sh` (busybox-static of the arch and
//!   the few modules that reach the disk), and busybox itself (for the lab's container
//!   image of that architecture);
//! - `bare.img`, `docker.img`: ext4 disk images made from a folder with `mkfs.ext4 -d`,
//!   without mounting anything (the second with Debian's docker.io installed first).
//!
//! Each node's disk is a copy-on-write qcow2 over one of them, so an image is never changed
//! once made: a file's presence says it is complete (work is done under `*.partial` names
//! and renamed), and nothing rebuilds it. Debian's own initramfs is not used: its hooks run
//! twice under emulation, some 20 minutes for arm64.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::super::error::{LabError, Result};
use super::super::rootfs::{self, DEFAULT_MIRROR, MIRROR_ENV};
use super::super::sys::{self, cmd, run};
use super::{Arch, binfmt};

pub const BUILD_SCRIPT: &str = include_str!("assets/build.sh");
pub const INIT_SCRIPT: &str = include_str!("assets/init.sh");
/// What a VM node has beyond minbase: systemd as init, udev (modules load as on a Pi),
/// sshd, sudo, iproute2, iptables (`lab filter`, Docker), the guest agent (the lab's way in
/// without the network or sshd).
const INCLUDE: &str = "systemd-sysv,udev,kmod,dbus,openssh-server,sudo,iproute2,iptables,netbase,ca-certificates,procps,qemu-guest-agent";
/// The size of every node's disk (sparse: what is written takes space, no more).
const DISK_SIZE: &str = "8G";

/// A disk image with or without Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// Docker preinstalled (`--nodes`).
    Docker,
    /// No Docker, as a fresh Pi (`--bare`).
    Bare,
}

impl Variant {
    fn file(self) -> &'static str {
        match self {
            Variant::Docker => "docker.img",
            Variant::Bare => "bare.img",
        }
    }
}

/// What a node of one release, architecture and variant boots from.
#[derive(Debug, Clone)]
pub struct Images {
    pub kernel: PathBuf,
    /// The initramfs shared by every node; each node appends its seed.
    pub initrd: PathBuf,
    pub disk: PathBuf,
    /// busybox-static of the architecture.
    pub busybox: PathBuf,
}

/// `CACHE/vm/<release>-<arch>`.
pub fn dir(cache: &Path, release: &str, arch: Arch) -> PathBuf {
    cache.join("vm").join(format!("{release}-{arch}"))
}

/// A release name goes into paths and debootstrap's arguments: letters only.
fn check_release(release: &str) -> Result<()> {
    if !release.is_empty() && release.len() <= 32 && release.bytes().all(|b| b.is_ascii_lowercase())
    {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "{release:?} is not a Debian release (bookworm, trixie, sid)"
        )))
    }
}

/// Makes (once) and returns the images of every `(release, arch, variant)` asked for, one
/// after the other (each build takes both cores).
pub fn ensure_images(
    cache: &Path,
    wanted: &[(String, Arch, Variant)],
    say: &dyn Fn(&str),
) -> Result<Vec<Images>> {
    wanted
        .iter()
        .map(|(release, arch, variant)| ensure(cache, release, *arch, *variant, say))
        .collect()
}

fn ensure(
    cache: &Path,
    release: &str,
    arch: Arch,
    variant: Variant,
    say: &dyn Fn(&str),
) -> Result<Images> {
    check_release(release)?;
    let d = dir(cache, release, arch);
    let images = Images {
        kernel: d.join("boot/vmlinuz"),
        initrd: d.join("boot/initrd.img"),
        disk: d.join(variant.file()),
        busybox: d.join("boot/busybox"),
    };
    if images.disk.is_file() && d.join("system.done").exists() {
        return Ok(images);
    }
    sys::mkdir(cache, 0o755)?;
    // Everything here runs as root and every VM boots from it.
    sys::check_trusted_dir(cache)?;
    sys::mkdir(&d, 0o700)?;
    let _lock = sys::lock_file(&d.join(".lock"), true)?;
    let work = Work {
        dir: &d,
        release,
        arch,
        say,
    };
    work.system()?;
    work.disk(variant)?;
    Ok(images)
}

struct Work<'a> {
    dir: &'a Path,
    release: &'a str,
    arch: Arch,
    say: &'a dyn Fn(&str),
}

impl Work<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Removes what a killed build left under `name` (and the mounts in it).
    fn clear(&self, name: &str) -> Result<PathBuf> {
        let p = self.path(name);
        if fs::symlink_metadata(&p).is_ok() {
            rootfs::unmount_under(&p);
            let removed = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            removed.map_err(|e| LabError::io(&p, e))?;
        }
        Ok(p)
    }

    /// `system/` and `boot/`: debootstrap, then `build.sh system`.
    fn system(&self) -> Result<()> {
        let done = self.path("system.done");
        if done.exists() {
            return Ok(());
        }
        let (root, boot) = (self.clear("system.partial")?, self.clear("boot.partial")?);
        sys::mkdir(&boot, 0o755)?;
        let started = Instant::now();
        let foreign = binfmt::enable(self.arch)?;
        let mirror = std::env::var(MIRROR_ENV).unwrap_or_else(|_| DEFAULT_MIRROR.to_string());
        (self.say)(&format!(
            "building the {} {} VM image from {mirror} into {}: {}, once",
            self.release,
            self.arch,
            self.dir.display(),
            if foreign.is_some() {
                "about 8 minutes under emulation"
            } else {
                "about 2 minutes"
            }
        ));
        let debootstrap = run(cmd([
            "debootstrap",
            "--variant=minbase",
            &format!("--arch={}", self.arch),
            &format!("--include={INCLUDE}"),
            self.release,
            &root.to_string_lossy(),
            &mirror,
        ]));
        if let Err(e) = debootstrap {
            rootfs::unmount_under(&root);
            return Err(e);
        }
        let init = boot.join("init.sh");
        sys::write_file(&init, INIT_SCRIPT.as_bytes(), 0o755)?;
        self.script(&[
            "system",
            &root.to_string_lossy(),
            &boot.to_string_lossy(),
            &init.to_string_lossy(),
        ])?;
        drop(foreign);
        for (from, to) in [(&root, "system"), (&boot, "boot")] {
            let to = self.clear(to)?;
            fs::rename(from, &to).map_err(|e| LabError::io(&to, e))?;
        }
        sys::write_file(&done, b"", 0o644)?;
        (self.say)(&format!(
            "{} {} system built in {:.0} s",
            self.release,
            self.arch,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Runs `build.sh` (written next to the build, readable) with these arguments.
    fn script(&self, args: &[&str]) -> Result<()> {
        let script = self.path("build.sh");
        sys::write_file(&script, BUILD_SCRIPT.as_bytes(), 0o755)?;
        let mut c = cmd(["/bin/sh".to_string(), script.to_string_lossy().into_owned()]);
        c.args(args).env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        run(c).map(drop)
    }

    /// `bare.img` from `system/`; `docker.img` from a copy of it with docker.io installed.
    fn disk(&self, variant: Variant) -> Result<()> {
        let img = self.path(variant.file());
        if img.is_file() {
            return Ok(());
        }
        let started = Instant::now();
        let partial = self.clear(&format!("{}.partial", variant.file()))?;
        let from = match variant {
            Variant::Bare => self.path("system"),
            Variant::Docker => {
                let root = self.clear("docker.partial")?;
                run(cmd([
                    "cp",
                    "-a",
                    &self.path("system").to_string_lossy(),
                    &root.to_string_lossy(),
                ]))?;
                (self.say)(&format!(
                    "installing Debian's docker.io into the {} {} image",
                    self.release, self.arch
                ));
                let foreign = binfmt::enable(self.arch)?;
                self.script(&["docker", &root.to_string_lossy()])?;
                drop(foreign);
                root
            }
        };
        run(cmd([
            "truncate",
            "-s",
            DISK_SIZE,
            &partial.to_string_lossy(),
        ]))?;
        run(cmd([
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "rpiprov-lab",
            "-d",
            &from.to_string_lossy(),
            &partial.to_string_lossy(),
        ]))?;
        fs::rename(&partial, &img).map_err(|e| LabError::io(&img, e))?;
        if variant == Variant::Docker {
            self.clear("docker.partial")?;
        }
        (self.say)(&format!(
            "{} {} {} made in {:.0} s",
            self.release,
            self.arch,
            variant.file(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_plain_names_and_images_live_per_release_and_arch() {
        assert!(check_release("bookworm").is_ok());
        for bad in ["", "../x", "Bookworm", "sid/main"] {
            assert!(
                matches!(check_release(bad), Err(LabError::Usage(_))),
                "{bad}"
            );
        }
        assert_eq!(
            dir(Path::new("/c"), "trixie", Arch::Arm64),
            Path::new("/c/vm/trixie-arm64")
        );
    }

    /// The scripts run in a real `sh`: a syntax error would only show on a machine that
    /// builds an image.
    #[test]
    fn the_build_and_init_scripts_parse() {
        for (name, text) in [("build.sh", BUILD_SCRIPT), ("init.sh", INIT_SCRIPT)] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", text])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Debian's initramfs is never built: no initramfs-tools in the image.
        assert!(!INCLUDE.contains("initramfs") && !INCLUDE.contains("linux-image"));
    }
}
