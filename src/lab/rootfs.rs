//! The Debian bookworm base of bare nodes, made once with debootstrap and shared read-only
//! (as the lower layer of each bare node's overlay). It lives in `RPIPROV_LAB_CACHE` when set
//! (CI and tests reuse it across labs), else in `DIR/cache`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::{LabError, Result};
use super::sys::{self, cmd, run};

pub const CACHE_ENV: &str = "RPIPROV_LAB_CACHE";
pub const MIRROR_ENV: &str = "RPIPROV_LAB_MIRROR";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const SUITE: &str = "bookworm";
const INCLUDE: &str = "openssh-server,sudo,iproute2,ca-certificates,procps";
const BASE: &str = "bookworm-minbase";

pub fn cache_dir(lab_dir: &Path) -> Result<PathBuf> {
    match std::env::var_os(CACHE_ENV) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(v);
            if p.is_absolute() {
                Ok(p)
            } else {
                let cwd = std::env::current_dir().map_err(|e| LabError::io(".", e))?;
                Ok(cwd.join(p))
            }
        }
        _ => Ok(lab_dir.join("cache")),
    }
}

pub fn base_dir(cache: &Path) -> PathBuf {
    cache.join(BASE)
}

fn done_mark(cache: &Path) -> PathBuf {
    cache.join(format!("{BASE}.done"))
}

/// The base was made (its mark is there, and it is a folder: links are not followed).
fn done(cache: &Path) -> bool {
    let is = |p: &Path, dir: bool| {
        fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink() && m.is_dir() == dir)
    };
    is(&done_mark(cache), false) && is(&base_dir(cache), true)
}

/// Unmounts (lazily, deepest first) whatever is still mounted under `dir` in this mount
/// namespace: debootstrap mounts /proc and /sys in its target and a killed run leaves them.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        // /proc/mounts escapes spaces as \040.
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run(cmd(["umount", "-l", &p]));
    }
}

/// Returns the base directory, making it first if needed (under a lock, so two labs that
/// share a cache do not debootstrap into the same place at once). A cache found made is
/// checked as a new one is (the folder and the base in it trusted, as the lab folder is):
/// every bare node boots from it as root, so a cache that someone else could write, or
/// swap for a link, would be their root file system on the nodes.
pub fn ensure_base(cache: &Path, say: &dyn Fn(&str)) -> Result<PathBuf> {
    let base = base_dir(cache);
    if done(cache) {
        sys::check_trusted_dir(cache)?;
        sys::check_trusted_dir(&base)?;
        return Ok(base);
    }
    sys::mkdir(cache, 0o755)?;
    // debootstrap runs as root in there, and every bare node boots from it.
    sys::check_trusted_dir(cache)?;
    let lock_path = cache.join(".lock");
    let _lock = sys::lock_file(&lock_path, true)?;
    if done(cache) {
        sys::check_trusted_dir(&base)?;
        return Ok(base);
    }
    let partial = cache.join(format!("{BASE}.partial"));
    if partial.exists() {
        unmount_under(&partial);
        fs::remove_dir_all(&partial).map_err(|e| LabError::io(&partial, e))?;
    }
    let mirror = std::env::var(MIRROR_ENV).unwrap_or_else(|_| DEFAULT_MIRROR.to_string());
    say(&format!(
        "debootstrap {SUITE} (minbase) into {} from {mirror}: about a minute, once",
        cache.display()
    ));
    let started = Instant::now();
    let include = format!("--include={INCLUDE}");
    let result = run(cmd([
        "debootstrap",
        "--variant=minbase",
        &include,
        SUITE,
        &partial.to_string_lossy(),
        &mirror,
    ]));
    if let Err(e) = result {
        unmount_under(&partial);
        return Err(e);
    }
    // Nothing of the build host's apt cache belongs in every bare node.
    let _ = run(cmd([
        "chroot",
        &partial.to_string_lossy(),
        "apt-get",
        "clean",
    ]));
    if base.exists() {
        fs::remove_dir_all(&base).map_err(|e| LabError::io(&base, e))?;
    }
    fs::rename(&partial, &base).map_err(|e| LabError::io(&base, e))?;
    sys::write_file(&done_mark(cache), b"", 0o644)?;
    say(&format!(
        "debootstrap done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 18: a cache found made (`RPIPROV_LAB_CACHE`) gets the lab folder's check:
    /// one that others may write, or whose base they may write, is refused, never booted.
    #[test]
    fn a_reused_cache_is_checked_as_the_lab_folder_is() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        fs::create_dir_all(base_dir(&cache)).unwrap();
        fs::write(done_mark(&cache), "").unwrap();
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
        let say = |_: &str| {};
        assert_eq!(ensure_base(&cache, &say).unwrap(), base_dir(&cache));
        for open in [cache.clone(), base_dir(&cache)] {
            fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
            let e = ensure_base(&cache, &say).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "lab: {} is writable by everyone (mode 777): the lab works there as root and trusts only a folder that is yours and that no one else can write or swap; choose another or fix it (chown, chmod go-w)",
                    open.display()
                )
            );
            fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
