//! Running the host tools the lab is made of (`ip`, `iptables`, `ssh-keygen`...), and
//! looking at processes through `/proc`. Every command is an argv, never a shell string.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{LabError, Result};

/// Builds a command from argv tokens.
pub fn cmd<I, S>(argv: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut it = argv.into_iter();
    let mut c = Command::new(it.next().expect("empty argv"));
    c.args(it);
    c
}

fn describe(c: &Command) -> String {
    let mut parts = vec![c.get_program().to_string_lossy().into_owned()];
    parts.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    crate::shell::join(parts)
}

/// Runs to completion; stdout on success, an error carrying stderr otherwise.
pub fn run(mut c: Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Other(format!("cannot run `{}`: {e}", describe(&c))))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: describe(&c),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs and only reports whether it succeeded (probes such as `iptables -C`).
pub fn succeeds(mut c: Command) -> bool {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Opens a file the lab creates, never following a symlink planted at its name, and
/// failing when the name exists already (`O_CREAT | O_EXCL | O_NOFOLLOW`).
fn create_new(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(mode)
        .open(path)
}

/// Writes a file atomically (a temporary file of a random name, then rename) with the given
/// mode, so a crash never leaves half a state file or half a key, and a name planted in the
/// directory (a symlink to some other file) is never written through.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(".{name}.{}{TMP_SUFFIX}", random_token(12)?));
        match create_new(&tmp, mode) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(LabError::io(&tmp, e)),
        }
    };
    let written = f
        .write_all(contents)
        // `mode` at creation is filtered by the umask; set it exactly.
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(LabError::io(path, e));
    }
    Ok(())
}

/// How the temporary files of [`write_file`] end, for `down` to find what a crash left.
pub const TMP_SUFFIX: &str = ".lab-tmp";

/// Writes `contents` to a new file, unless the name exists already (kept as it is).
pub fn write_if_absent(path: &Path, contents: &[u8]) -> Result<()> {
    match create_new(path, 0o600) {
        Ok(mut f) => f.write_all(contents).map_err(|e| LabError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(LabError::io(path, e)),
    }
}

/// A lock file: opened (created if missing) without following a symlink and without
/// truncating, then `flock`ed. `None` when `wait` is false and someone else holds it.
pub fn lock_file(path: &Path, wait: bool) -> Result<Option<fs::File>> {
    use std::os::fd::AsRawFd;
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(LabError::Usage(format!(
            "{} is a symlink, which the lab never makes (someone else prepared this folder?); not following it: remove it",
            path.display()
        )));
    }
    // O_NOFOLLOW still refuses one planted between that check and the open.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(|e| LabError::io(path, e))?;
    let meta = f.metadata().map_err(|e| LabError::io(path, e))?;
    if !meta.is_file() {
        return Err(LabError::Usage(format!(
            "{} is not a regular file; remove it",
            path.display()
        )));
    }
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(LabError::io(path, e));
    }
    Ok(Some(f))
}

/// A directory only root (this process's user) may write: created 0700 when missing;
/// refused when it is a symlink, belongs to someone else or others may write it.
pub fn private_dir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(LabError::io(path, e)),
    }
    check_trusted_dir(path)
}

/// Whose directories the lab trusts: root's, this process's user's, and under sudo, the
/// user who ran sudo (a `.lab` they made in their project before `sudo rpiprov lab up`).
fn trusted_owners() -> Vec<u32> {
    // SAFETY: plain syscall without arguments.
    let mut owners = vec![0, unsafe { libc::geteuid() }];
    owners.extend(
        std::env::var("SUDO_UID")
            .ok()
            .and_then(|u| u.parse::<u32>().ok()),
    );
    owners
}

fn untrusted(path: &Path, problem: String) -> LabError {
    LabError::Usage(format!(
        "{} {problem}: the lab works there as root and trusts only a folder that is yours and that no one else can write or swap; choose another or fix it (chown, chmod go-w)",
        path.display()
    ))
}

/// The lab directory: a real directory (not a symlink), owned by a trusted user, writable
/// by no one else; and no directory above it lets another user swap it (world- or
/// group-writable without the sticky bit, or owned by someone else). Otherwise whoever can
/// write there could plant names (a symlink at `.lock`, at a temporary file) that the lab
/// would follow, or delete, as root. Both the path as given and its real path are checked.
pub fn check_trusted_dir(path: &Path) -> Result<()> {
    let owners = trusted_owners();
    let meta = fs::symlink_metadata(path).map_err(|e| LabError::io(path, e))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(untrusted(path, "is not a directory (a symlink?)".into()));
    }
    check_dir_meta(path, &meta, &owners, false)?;
    let real = path.canonicalize().map_err(|e| LabError::io(path, e))?;
    for chain in [path, real.as_path()] {
        for dir in chain.ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let link = fs::symlink_metadata(dir).map_err(|e| LabError::io(dir, e))?;
            if link.file_type().is_symlink() && !owners.contains(&link.uid()) {
                return Err(untrusted(
                    path,
                    format!(
                        "lies under {}, a symlink of uid {}",
                        dir.display(),
                        link.uid()
                    ),
                ));
            }
            let meta = fs::metadata(dir).map_err(|e| LabError::io(dir, e))?;
            if check_dir_meta(dir, &meta, &owners, true).is_err() {
                return Err(untrusted(
                    path,
                    format!("lies under {}, which others may change", dir.display()),
                ));
            }
        }
    }
    Ok(())
}

fn check_dir_meta(dir: &Path, meta: &fs::Metadata, owners: &[u32], sticky_ok: bool) -> Result<()> {
    let mode = meta.mode();
    let problem = if !owners.contains(&meta.uid()) {
        Some(format!("belongs to uid {}, not to you", meta.uid()))
    } else if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        Some(format!(
            "is writable by {} (mode {:o})",
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            mode & 0o7777
        ))
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(untrusted(dir, p)))
}

/// Creates a directory (and its parents) and sets its mode; refuses a symlink planted at
/// its name (`chmod` would follow it).
pub fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| LabError::io(path, e))?;
    let meta = fs::symlink_metadata(path).map_err(|e| LabError::io(path, e))?;
    if !meta.is_dir() {
        return Err(LabError::Other(format!(
            "{} is not a directory (a symlink?); not using it",
            path.display()
        )));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| LabError::io(path, e))
}

/// Opens a file for writing from scratch: a name already there (a symlink someone planted,
/// an old log) is removed, never followed or truncated in place.
pub fn create_fresh(path: &Path, mode: u32) -> Result<fs::File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io(path, e)),
    }
    create_new(path, mode).map_err(|e| LabError::io(path, e))
}

/// A new directory of a random name under `parent` (`mkdir` fails on any existing name,
/// symlinks included), for work files that are renamed into place afterwards.
pub fn temp_dir(parent: &Path, prefix: &str) -> Result<std::path::PathBuf> {
    loop {
        let d = parent.join(format!(".{prefix}.{}{TMP_SUFFIX}", random_token(12)?));
        match fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(LabError::io(&d, e)),
        }
    }
}

/// A process as the lab recorded it: the pid alone could be reused by an unrelated
/// process after a reboot or a long time, the start time (in clock ticks since boot) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start: u64,
}

impl ProcId {
    /// Still the same running process (see [`alive`]).
    pub fn is_alive(self) -> bool {
        alive(self)
    }
}

/// Fields of `/proc/PID/stat` after the command name: (ppid, start time).
fn stat_fields(pid: i32) -> Option<(i32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

pub fn proc_id(pid: i32) -> Option<ProcId> {
    stat_fields(pid).map(|(_, start)| ProcId { pid, start })
}

/// True when the recorded process still runs (same pid, same start time) and is no zombie.
pub fn alive(p: ProcId) -> bool {
    if stat_fields(p.pid).map(|(_, s)| s) != Some(p.start) {
        return false;
    }
    let state = fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap_or_default();
    let zombie = state
        .rfind(')')
        .and_then(|i| state.get(i + 2..i + 3))
        .is_some_and(|s| s == "Z");
    !zombie
}

pub fn signal(p: ProcId, sig: i32) {
    if alive(p) {
        // SAFETY: plain syscall on a pid we just checked is the recorded process.
        unsafe {
            libc::kill(p.pid, sig);
        }
    }
}

/// Every process on the machine with its parent, and the inode of its net and mount
/// namespaces (0 when unreadable).
pub struct ProcInfo {
    pub id: ProcId,
    pub ppid: i32,
    pub net_ns: u64,
    pub mnt_ns: u64,
    pub comm: String,
}

pub fn processes() -> Vec<ProcInfo> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some((ppid, start)) = stat_fields(pid) else {
            continue;
        };
        let ns = |kind: &str| {
            fs::metadata(format!("/proc/{pid}/ns/{kind}"))
                .map(|m| m.ino())
                .unwrap_or(0)
        };
        out.push(ProcInfo {
            id: ProcId { pid, start },
            ppid,
            net_ns: ns("net"),
            mnt_ns: ns("mnt"),
            comm: fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string(),
        });
    }
    out
}

/// Inode of a namespace file (`/run/netns/NAME`, `/proc/PID/ns/mnt`): how processes inside
/// that namespace are recognised.
pub fn ns_inode(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// `which`, without a shell.
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    // root's usual sbin directories, in case PATH came from a non-root environment (sudo).
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(d.into());
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// Random printable secret from the kernel, for the sudo password.
pub fn random_token(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = vec![0u8; len];
    let mut f = fs::File::open("/dev/urandom").map_err(|e| LabError::io("/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| LabError::io("/dev/urandom", e))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn victim(dir: &Path) -> PathBuf {
        let v = dir.join("victim");
        fs::write(&v, "precious\n").unwrap();
        v
    }

    #[test]
    fn write_file_never_writes_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let v = victim(d.path());
        // The temporary name older versions used, and the final name itself.
        symlink(&v, d.path().join("state.tmp-write")).unwrap();
        symlink(&v, d.path().join("state.json")).unwrap();
        write_file(&d.path().join("state.json"), b"{}", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&v).unwrap(), "precious\n");
        let m = fs::symlink_metadata(d.path().join("state.json")).unwrap();
        assert!(m.is_file() && m.mode() & 0o777 == 0o600);
        assert_eq!(
            fs::read_to_string(d.path().join("state.json")).unwrap(),
            "{}"
        );
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(TMP_SUFFIX))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_lock_file_planted_as_a_symlink_is_refused_and_truncates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let v = victim(d.path());
        symlink(&v, d.path().join(".lock")).unwrap();
        let e = lock_file(&d.path().join(".lock"), false).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(fs::read_to_string(&v).unwrap(), "precious\n");
        // A regular lock file is taken, and a second taker is told it is held.
        let other = d.path().join("other.lock");
        let held = lock_file(&other, false).unwrap();
        assert!(held.is_some());
        assert!(lock_file(&other, false).unwrap().is_none());
    }

    #[test]
    fn create_fresh_replaces_a_planted_symlink_instead_of_truncating_its_target() {
        let d = tempfile::tempdir().unwrap();
        let v = victim(d.path());
        symlink(&v, d.path().join("boot.log")).unwrap();
        let mut f = create_fresh(&d.path().join("boot.log"), 0o644).unwrap();
        f.write_all(b"log").unwrap();
        assert_eq!(fs::read_to_string(&v).unwrap(), "precious\n");
        assert_eq!(
            fs::read_to_string(d.path().join("boot.log")).unwrap(),
            "log"
        );
    }

    #[test]
    fn only_a_folder_no_one_else_may_write_is_trusted() {
        let d = tempfile::tempdir().unwrap();
        let lab = d.path().join("lab");
        fs::create_dir(&lab).unwrap();
        for (mode, ok, says) in [
            (0o700, true, ""),
            (0o755, true, ""),
            (0o770, false, "writable by its group (mode 770)"),
            (0o777, false, "writable by everyone (mode 777)"),
            (0o1777, false, "writable by everyone (mode 1777)"),
        ] {
            fs::set_permissions(&lab, fs::Permissions::from_mode(mode)).unwrap();
            let got = check_trusted_dir(&lab);
            assert_eq!(got.is_ok(), ok, "{mode:o}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains(says), "{e}");
                assert!(e.to_string().contains("chmod go-w"), "{e}");
            }
        }
        fs::set_permissions(&lab, fs::Permissions::from_mode(0o700)).unwrap();
        // A symlink to a good folder is not the folder.
        symlink(&lab, d.path().join("link")).unwrap();
        let e = check_trusted_dir(&d.path().join("link")).unwrap_err();
        assert!(e.to_string().contains("a symlink"), "{e}");
        // Nor is a folder under one that anyone may change.
        let open = d.path().join("open");
        fs::create_dir_all(open.join("lab")).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_trusted_dir(&open.join("lab")).unwrap_err();
        assert!(e.to_string().contains("which others may change"), "{e}");
    }
}
