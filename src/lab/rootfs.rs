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
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
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
/// share a cache do not debootstrap into the same place at once).
pub fn ensure_base(cache: &Path, say: &dyn Fn(&str)) -> Result<PathBuf> {
    let base = base_dir(cache);
    if done_mark(cache).exists() && base.is_dir() {
        return Ok(base);
    }
    sys::mkdir(cache, 0o755)?;
    // debootstrap runs as root in there, and every bare node boots from it.
    sys::check_trusted_dir(cache)?;
    let lock_path = cache.join(".lock");
    let _lock = sys::lock_file(&lock_path, true)?;
    if done_mark(cache).exists() && base.is_dir() {
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
