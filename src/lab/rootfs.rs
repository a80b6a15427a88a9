//! The root file systems of the nodes that have their own (bare nodes, and Docker nodes of a
//! release other than the machine's), made once and shared read-only as the lower layers of
//! each node's overlay. They live in `RPIPROV_LAB_CACHE` when set (CI and tests reuse them
//! across labs), else in `DIR/cache`:
//!
//! - `<release>-minbase/`: `debootstrap --variant=minbase` of the release, with sshd, sudo,
//!   iproute2...: a fresh Pi, what bare nodes boot.
//! - `<release>-docker/`: the release's docker.io (and what it depends on: containerd, runc,
//!   iptables, tini; its CLI; perl), installed by apt over the minbase, kept as an overlay layer of its own
//!   (the upper directory of that install): Docker nodes boot `docker:minbase`, so the
//!   minbase is on disk once and the layer costs one `apt-get install` (about 10 s).
//!
//! Each is built under a temporary name (`.partial`) and renamed into place, then marked
//! done (`<name>.done`, which holds what the layer was made from: another list of packages
//! builds it again); everything happens under the cache's lock, which the build's own
//! processes inherit, so a `lab up` that dies mid-build keeps it until they are gone, and the
//! next one throws the half-made tree away. The builds' mounts are made in a mount
//! namespace of their own and vanish with it, whatever becomes of `lab up`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::distro::Distro;
use super::error::{LabError, Result};
use super::sys::{self, cmd, run};

pub const CACHE_ENV: &str = "RPIPROV_LAB_CACHE";
pub const MIRROR_ENV: &str = "RPIPROV_LAB_MIRROR";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const INCLUDE: &str = "openssh-server,sudo,iproute2,ca-certificates,procps";
/// What the lab writes into the base of a release whose `Release` file expires (sid).
pub const APT_VALID_UNTIL: &str = "etc/apt/apt.conf.d/99rpiprov-lab-mirror";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// The release's debootstrap base (`bookworm-minbase`, as it has always been named).
pub fn base_dir(cache: &Path, distro: Distro) -> PathBuf {
    cache.join(format!("{distro}-minbase"))
}

/// The release's Docker layer, over its base.
pub fn docker_layer_dir(cache: &Path, distro: Distro) -> PathBuf {
    cache.join(format!("{distro}-docker"))
}

fn done_mark(tree: &Path) -> PathBuf {
    let mut name = tree.file_name().unwrap_or_default().to_os_string();
    name.push(".done");
    tree.with_file_name(name)
}

/// The tree is built, and from `recipe` (what its mark holds): a tree made from another
/// list of packages is built again.
fn is_done(tree: &Path, recipe: &str) -> bool {
    fs::read_to_string(done_mark(tree)).is_ok_and(|r| r == recipe) && tree.is_dir()
}

/// What a base's mark holds: nothing (as it always has).
const BASE_RECIPE: &str = "";

/// Besides the release's Docker: perl, which this machine's bookworm Docker nodes have
/// from the machine. Bootstrap's port test once needed its Time::HiRes and now runs on
/// perl-base alone; the list stays, since a changed list rebuilds every cache's layer.
const LAYER_EXTRA: &[&str] = &["perl"];

/// The packages of the release's Docker layer.
fn layer_packages(distro: Distro) -> Vec<&'static str> {
    let mut p = distro.docker_packages().to_vec();
    p.extend_from_slice(LAYER_EXTRA);
    p
}

/// What a Docker layer's mark holds.
fn layer_recipe(distro: Distro) -> String {
    format!(
        "apt-get install --no-install-recommends {}\n",
        layer_packages(distro).join(" ")
    )
}

/// A tree's work names: the tree being built, and what else its build needs.
fn sibling(tree: &Path, suffix: &str) -> PathBuf {
    let mut name = tree.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    tree.with_file_name(name)
}

/// The root file system a node of `distro` boots, as overlay lower directories (uppermost
/// first): the base alone for a bare node, the Docker layer over it for a Docker node.
pub fn lower_dirs(cache: &Path, distro: Distro, docker: bool) -> Vec<PathBuf> {
    let base = base_dir(cache, distro);
    if docker {
        vec![docker_layer_dir(cache, distro), base]
    } else {
        vec![base]
    }
}

/// Unmounts (lazily, deepest first) whatever is still mounted under `dir` in this mount
/// namespace: debootstrap run by an older rpiprov (outside a namespace of its own) mounted
/// /proc and /sys in its target, and a killed run left them.
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

/// Makes sure the root file systems of `wanted` (release, with Docker) exist, building what
/// is missing, the releases side by side. Returns at once when everything is there.
pub fn ensure(
    cache: &Path,
    wanted: &BTreeSet<(Distro, bool)>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let ready = |(d, docker): &(Distro, bool)| {
        is_done(&base_dir(cache, *d), BASE_RECIPE)
            && (!docker || is_done(&docker_layer_dir(cache, *d), &layer_recipe(*d)))
    };
    if wanted.iter().all(ready) {
        return Ok(());
    }
    sys::mkdir(cache, 0o755)?;
    // debootstrap and apt run as root in there, and nodes boot from it.
    sys::check_trusted_dir(cache)?;
    let lock_path = cache.join(".lock");
    let lock = match sys::lock_file(&lock_path, false)? {
        Some(l) => l,
        None => {
            say(&format!(
                "waiting for another `lab up` building in {}",
                cache.display()
            ));
            sys::lock_file(&lock_path, true)?.expect("a blocking lock is taken")
        }
    };
    // One release per thread: debootstrap is half downloads, half dpkg.
    let mut releases: Vec<(Distro, bool)> = Vec::new();
    for (d, docker) in wanted.iter().filter(|w| !ready(w)) {
        match releases.iter_mut().find(|(r, _)| r == d) {
            Some(r) => r.1 |= *docker,
            None => releases.push((*d, *docker)),
        }
    }
    let results = super::parallel(&releases, releases.len(), |(d, docker)| {
        build_base(cache, *d, &lock, say)?;
        if *docker {
            build_docker_layer(cache, *d, &lock, say)?;
        }
        Ok::<_, LabError>(())
    });
    results.into_iter().collect()
}

/// Runs a build command holding the cache's lock in every process it starts (the
/// descriptor is inherited): if `lab up` dies, the lock is held until the build's
/// processes are gone too, so no other `lab up` removes a tree they still write.
fn run_locked(mut c: std::process::Command, lock: &fs::File) -> Result<String> {
    use std::os::fd::AsRawFd;
    let fd = lock.as_raw_fd();
    // SAFETY: only fcntl (async-signal-safe) between fork and exec, on a descriptor that
    // stays open in the parent until the command ends.
    unsafe {
        c.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(c)
}

/// `unshare --mount --propagation private ARGV...`: mounts made by the command stay in a
/// namespace of its own and vanish with it.
fn in_private_mounts<I, S>(argv: I) -> std::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = cmd(["unshare", "--mount", "--propagation", "private", "--"]);
    c.args(argv);
    c
}

/// Removes what a build that did not finish left of `tree` (and the tree itself, which is
/// not done): the caller builds it anew.
fn clear_leftovers(tree: &Path, extra: &[&str]) -> Result<()> {
    let mut paths = vec![tree.to_path_buf(), sibling(tree, ".partial")];
    paths.extend(extra.iter().map(|s| sibling(tree, s)));
    for p in paths {
        if fs::symlink_metadata(&p).is_ok() {
            unmount_under(&p);
            fs::remove_dir_all(&p).map_err(|e| LabError::io(&p, e))?;
        }
    }
    Ok(())
}

/// Puts a finished build in place: its data on disk first, then the rename, then the mark.
fn finish(partial: &Path, tree: &Path, recipe: &str) -> Result<()> {
    if let Ok(f) = fs::File::open(partial) {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
    fs::rename(partial, tree).map_err(|e| LabError::io(tree, e))?;
    sys::write_file(&done_mark(tree), recipe.as_bytes(), 0o644)
}

/// `debootstrap --variant=minbase` of the release, unless it is done.
fn build_base(cache: &Path, distro: Distro, lock: &fs::File, say: &dyn Fn(&str)) -> Result<()> {
    let base = base_dir(cache, distro);
    if is_done(&base, BASE_RECIPE) {
        return Ok(());
    }
    // A Docker layer made over an earlier base of this name belongs to that base.
    let layer = docker_layer_dir(cache, distro);
    let _ = fs::remove_file(done_mark(&layer));
    clear_leftovers(&base, &[])?;
    let partial = sibling(&base, ".partial");
    let mirror = std::env::var(MIRROR_ENV).unwrap_or_else(|_| DEFAULT_MIRROR.to_string());
    say(&format!(
        "debootstrap {distro} (minbase) into {} from {mirror}: about a minute, once",
        cache.display()
    ));
    let started = Instant::now();
    let include = format!("--include={INCLUDE}");
    run_locked(
        in_private_mounts([
            "debootstrap",
            "--variant=minbase",
            &include,
            distro.as_str(),
            &partial.to_string_lossy(),
            &mirror,
        ]),
        lock,
    )?;
    // Nothing of the build host's apt cache belongs in every node.
    let _ = run(cmd([
        "chroot",
        &partial.to_string_lossy(),
        "apt-get",
        "clean",
    ]));
    if distro.release_expires() {
        sys::write_file(
            &partial.join(APT_VALID_UNTIL),
            apt_valid_until_conf().as_bytes(),
            0o644,
        )?;
    }
    finish(&partial, &base, BASE_RECIPE)?;
    say(&format!(
        "debootstrap {distro} done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The apt setting of [`APT_VALID_UNTIL`] (lab-only: a Pi's mirror is current).
pub fn apt_valid_until_conf() -> String {
    "// rpiprov lab: unstable's Release file is valid for a week; the mirror this lab\n\
     // uses may be older than that. Not needed on a Pi.\n\
     Acquire::Check-Valid-Until \"false\";\n"
        .to_string()
}

/// Installs the release's Docker packages over its base in an overlay whose upper
/// directory becomes the layer. Run with `sh -c` in a mount namespace of its own, with
/// `$1` the base, `$2` the upper directory, `$3` the overlay's work directory, `$4` the
/// mount point and the packages after them. No service starts (policy-rc.d says no).
/// dpkg skips its fsync of every file (`--force-unsafe-io`: 12 s instead of 18-25 s here):
/// a build that does not finish is thrown away, one that does is synced before it is
/// renamed into place.
pub const DOCKER_LAYER_SCRIPT: &str = r#"set -eu
B=$1 U=$2 W=$3 M=$4
shift 4
mount -t overlay rpiprov-lab-build -o lowerdir=$B,upperdir=$U,workdir=$W,redirect_dir=off,metacopy=off $M
mount -t proc proc $M/proc
mount --rbind /dev $M/dev
mount --rbind /sys $M/sys
mount -t tmpfs -o mode=0755 lab-build-run $M/run
cp -L /etc/resolv.conf $M/etc/resolv.conf
printf '#!/bin/sh\nexit 101\n' > $M/usr/sbin/policy-rc.d
chmod 755 $M/usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
chroot $M apt-get update -q
chroot $M apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io "$@"
chroot $M apt-get clean
rm -f $M/usr/sbin/policy-rc.d
"#;

/// The release's Docker layer over its base, unless it is done.
fn build_docker_layer(
    cache: &Path,
    distro: Distro,
    lock: &fs::File,
    say: &dyn Fn(&str),
) -> Result<()> {
    let layer = docker_layer_dir(cache, distro);
    let recipe = layer_recipe(distro);
    if is_done(&layer, &recipe) {
        return Ok(());
    }
    clear_leftovers(&layer, &[".work", ".mnt"])?;
    let (partial, work, mnt) = (
        sibling(&layer, ".partial"),
        sibling(&layer, ".work"),
        sibling(&layer, ".mnt"),
    );
    for d in [&partial, &work, &mnt] {
        sys::mkdir(d, 0o755)?;
    }
    let packages = layer_packages(distro);
    say(&format!(
        "installing {distro}'s {} into {}: some 10 s, once",
        packages.join(" "),
        layer.display()
    ));
    let started = Instant::now();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        DOCKER_LAYER_SCRIPT.into(),
        "sh".into(),
        s(&base_dir(cache, distro)),
        s(&partial),
        s(&work),
        s(&mnt),
    ];
    argv.extend(packages.iter().map(|p| p.to_string()));
    let mut c = in_private_mounts(argv);
    // Nothing of `lab up`'s environment (a sudo password, say) reaches apt's scripts.
    c.env_clear().env("PATH", PATH).env("LANG", "C.UTF-8");
    run_locked(c, lock)?;
    for bin in ["usr/sbin/dockerd", "usr/bin/docker", "etc/init.d/docker"] {
        if !partial.join(bin).exists() {
            return Err(LabError::Other(format!(
                "{distro}'s {} gave no /{bin}",
                packages.join(" ")
            )));
        }
    }
    for d in [&work, &mnt] {
        fs::remove_dir_all(d).map_err(|e| LabError::io(d, e))?;
    }
    finish(&partial, &layer, &recipe)?;
    say(&format!(
        "{distro}'s Docker layer done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_release_has_its_trees_and_docker_nodes_boot_the_layer_over_the_base() {
        let c = Path::new("/c");
        assert_eq!(
            base_dir(c, Distro::Bookworm),
            Path::new("/c/bookworm-minbase")
        );
        assert_eq!(
            done_mark(&base_dir(c, Distro::Bookworm)),
            Path::new("/c/bookworm-minbase.done")
        );
        assert_eq!(
            lower_dirs(c, Distro::Sid, true),
            [Path::new("/c/sid-docker"), Path::new("/c/sid-minbase")]
        );
        assert_eq!(
            lower_dirs(c, Distro::Trixie, false),
            [Path::new("/c/trixie-minbase")]
        );
        assert_eq!(
            sibling(&docker_layer_dir(c, Distro::Sid), ".partial"),
            Path::new("/c/sid-docker.partial")
        );
    }

    #[test]
    fn a_layer_is_done_only_when_made_from_todays_list_of_packages() {
        assert_eq!(
            layer_recipe(Distro::Sid),
            "apt-get install --no-install-recommends docker.io docker-cli perl\n"
        );
        let tmp = tempfile::tempdir().unwrap();
        let layer = docker_layer_dir(tmp.path(), Distro::Trixie);
        fs::create_dir(&layer).unwrap();
        assert!(!is_done(&layer, &layer_recipe(Distro::Trixie)));
        fs::write(done_mark(&layer), "apt-get install docker.io\n").unwrap();
        assert!(!is_done(&layer, &layer_recipe(Distro::Trixie)));
        fs::write(done_mark(&layer), layer_recipe(Distro::Trixie)).unwrap();
        assert!(is_done(&layer, &layer_recipe(Distro::Trixie)));
        // A base's mark is empty, as the bookworm base's has always been.
        let base = base_dir(tmp.path(), Distro::Bookworm);
        fs::create_dir(&base).unwrap();
        fs::write(done_mark(&base), "").unwrap();
        assert!(is_done(&base, BASE_RECIPE));
    }

    #[test]
    fn the_docker_layer_is_installed_without_starting_anything_and_stays_small() {
        let s = DOCKER_LAYER_SCRIPT;
        assert!(
            s.contains("lowerdir=$B,upperdir=$U,workdir=$W,redirect_dir=off,metacopy=off $M\n")
        );
        // No daemon starts in the build; the policy file is gone from the layer after.
        let policy = s.find("exit 101").unwrap();
        assert!(policy < s.find("apt-get install").unwrap());
        assert!(s.ends_with("rm -f $M/usr/sbin/policy-rc.d\n"));
        assert!(s.contains(
            "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io \"$@\"\n"
        ));
        assert!(s.contains("chroot $M apt-get clean\n"));
        assert!(apt_valid_until_conf().contains("Acquire::Check-Valid-Until \"false\";\n"));
    }
}
