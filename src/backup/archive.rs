//! The archive `rpiprov backup` writes and `rpiprov restore` reads: one tar file,
//! self-describing and versioned. Its first member is `manifest.json` ([`Manifest`]: the
//! format and its version, the swarm, where and when it was taken, the nodes, the stacks,
//! and the sha256 of every other member), so that `backup --list` reads that member alone;
//! then the swarm folder ([`crate::docker::backup::SWARM_FILE`]) and rpiprov's records
//! ([`crate::docker::backup::RECORDS_FILE`]), each a gzipped tar as the Pi made it.
//!
//! The swarm's secrets and configs are in the raft log, encrypted as Docker keeps them
//! there; the node's TLS key is in the swarm folder too, which is why the file is written
//! mode 0600 from its first byte ([`write`]: a new temporary file of that mode beside the
//! destination, renamed over it once whole; a link at the destination is refused, never
//! followed). An autolock key is never in it.
//!
//! Reading checks everything before anything is done with it: the format and version, each
//! member's size and sha256 against the manifest, and the member names inside the two
//! inner tars (relative, no `..`, under `swarm/` or `stacks/`, no device or hard link), so
//! that a damaged or altered archive is refused here, not half-extracted on a Pi.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::docker::api::ResetOnInit;
use crate::docker::backup::{RECORDS_FILE, SWARM_FILE};

/// What the manifest's `format` says.
pub const FORMAT: &str = "rpiprov-backup";

/// The version of the format this rpiprov writes and reads.
pub const VERSION: u32 = 1;

/// The first member.
pub const MANIFEST: &str = "manifest.json";

/// The largest manifest read.
const MANIFEST_MAX: u64 = 1 << 20;

/// The largest member read (the swarm folder of a small cluster is a few MB gzipped; its
/// raft log's preallocated segments are zeros).
pub const MEMBER_MAX: u64 = 1 << 30;

/// What an archive says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The rpiprov that wrote it.
    pub rpiprov: String,
    /// When the copy was taken, RFC 3339 in UTC.
    pub created: String,
    pub swarm: SwarmPart,
    /// The manager the swarm state was copied from.
    pub source: Source,
    /// The manager rpiprov's records came from (the one `deploy` acts through).
    pub records_from: String,
    pub nodes: Vec<NodePart>,
    pub stacks: Vec<StackPart>,
    /// Every member after the manifest.
    pub files: Vec<FilePart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmPart {
    /// The swarm's cluster id.
    pub id: String,
    pub managers: usize,
    /// Autolock and the CA's rotation counter, kept as they were by the restore.
    #[serde(flatten)]
    pub keep: ResetOnInit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its inventory name.
    pub host: String,
    pub node_id: String,
    pub address: String,
    /// It led the raft when the copy was taken.
    pub leader: bool,
    pub docker_version: String,
    /// Docker's data root there (`DockerRootDir`).
    pub docker_root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePart {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub address: String,
    pub state: String,
    pub availability: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackPart {
    pub name: String,
    /// Its services, without the stack prefix.
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl FilePart {
    pub fn of(name: &str, bytes: &[u8]) -> FilePart {
        FilePart {
            name: name.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// A whole archive in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    pub manifest: Manifest,
    /// [`SWARM_FILE`]: `swarm/...`, gzipped.
    pub swarm: Vec<u8>,
    /// [`RECORDS_FILE`]: `stacks/...`, gzipped.
    pub records: Vec<u8>,
}

/// The default file name, after the swarm and the time: `rpiprov-backup-<12 of the
/// swarm id>-20261207T101500Z.tar`.
pub fn default_name(swarm_id: &str, created: &str) -> String {
    let id: String = swarm_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let when: String = created.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("rpiprov-backup-{id}-{when}.tar")
}

/// Whether a file may be written at `path`: not a link (it is never followed), not
/// anything but a regular file, in a folder that exists. Checked before anything is
/// copied, and again when the file is written.
pub fn check_destination(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{}: is a symbolic link; rpiprov does not write through one: name the file itself",
                path.display()
            ));
        }
        Ok(m) if !m.is_file() => {
            return Err(format!("{}: exists and is not a file", path.display()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let dir = folder_of(path);
    if !dir.is_dir() {
        return Err(format!("{}: no such folder", dir.display()));
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes the archive to `path`: a temporary file beside it, created mode 0600, written
/// whole and synced, then renamed over `path` (which is replaced, never written through).
/// Returns the file's size.
pub fn write(path: &Path, archive: &Archive) -> Result<u64, String> {
    check_destination(path)?;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = folder_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".rpiprov-backup-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    let manifest = serde_json::to_vec_pretty(&archive.manifest).expect("a manifest serialises");
    {
        let mut tar = tar::Builder::new(tmp.as_file_mut());
        for (name, bytes) in [
            (MANIFEST, manifest.as_slice()),
            (SWARM_FILE, archive.swarm.as_slice()),
            (RECORDS_FILE, archive.records.as_slice()),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o600);
            h.set_size(bytes.len() as u64);
            h.set_mtime(0);
            tar.append_data(&mut h, name, bytes).map_err(err)?;
        }
        tar.finish().map_err(err)?;
    }
    tmp.as_file_mut().flush().map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    let size = tmp.as_file().metadata().map_err(err)?.len();
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename itself, on disk.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

/// Reads the manifest alone (the first member), checked: what `backup --list` shows.
pub fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut entries = tar.entries().map_err(|e| unreadable(path, e))?;
    let first = entries
        .next()
        .ok_or_else(|| not_ours(path, &"it is empty"))?
        .map_err(|e| unreadable(path, e))?;
    manifest_of(path, first)
}

/// A tar that cannot be read: its own error may quote the file's bytes, which are not shown.
fn unreadable(path: &Path, _: std::io::Error) -> String {
    not_ours(path, &"it cannot be read as a tar archive")
}

fn not_ours(path: &Path, why: &dyn std::fmt::Display) -> String {
    format!("{}: not an rpiprov backup ({why})", path.display())
}

fn manifest_of<R: Read>(path: &Path, mut entry: tar::Entry<'_, R>) -> Result<Manifest, String> {
    let name = entry.path().map_err(|e| unreadable(path, e))?;
    if name != Path::new(MANIFEST) {
        return Err(not_ours(
            path,
            &format!("its first member is not {MANIFEST}"),
        ));
    }
    if entry.size() > MANIFEST_MAX {
        return Err(not_ours(path, &"its manifest is too large"));
    }
    let mut text = Vec::new();
    entry
        .by_ref()
        .take(MANIFEST_MAX)
        .read_to_end(&mut text)
        .map_err(|e| unreadable(path, e))?;
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| not_ours(path, &format!("manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(not_ours(path, &format!("its format is {:?}", m.format)));
    }
    if m.version != VERSION {
        return Err(format!(
            "{}: an rpiprov backup of format version {}, which this rpiprov ({}) does not read (it reads version {VERSION}): use a newer rpiprov",
            path.display(),
            m.version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    if m.swarm.id.is_empty() || !m.swarm.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_ours(path, &"its swarm id is not one"));
    }
    Ok(m)
}

/// Reads and checks the whole archive: the manifest, each member against it, and the
/// names inside the two inner tars.
pub fn read(path: &Path) -> Result<Archive, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut entries = tar.entries().map_err(|e| unreadable(path, e))?;
    let first = entries
        .next()
        .ok_or_else(|| not_ours(path, &"it is empty"))?
        .map_err(|e| unreadable(path, e))?;
    let manifest = manifest_of(path, first)?;
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| unreadable(path, e))?;
        let name = entry
            .path()
            .map_err(|e| unreadable(path, e))?
            .to_string_lossy()
            .into_owned();
        let Some(want) = manifest.files.iter().find(|f| f.name == name) else {
            return Err(not_ours(
                path,
                &format!("member {name:?} is not in its manifest"),
            ));
        };
        if entry.size() != want.size || want.size > MEMBER_MAX {
            return Err(damaged(path, &name));
        }
        let mut bytes = Vec::with_capacity(want.size as usize);
        entry
            .by_ref()
            .take(MEMBER_MAX)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(path, e))?;
        if FilePart::of(&name, &bytes) != *want {
            return Err(damaged(path, &name));
        }
        members.insert(name, bytes);
    }
    let mut take = |name: &str| members.remove(name).ok_or_else(|| damaged(path, name));
    let swarm = take(SWARM_FILE)?;
    let records = take(RECORDS_FILE)?;
    check_members(&swarm, "swarm", false)
        .map_err(|e| format!("{}: {SWARM_FILE}: {e}", path.display()))?;
    check_members(&records, "stacks", true)
        .map_err(|e| format!("{}: {RECORDS_FILE}: {e}", path.display()))?;
    Ok(Archive {
        manifest,
        swarm,
        records,
    })
}

fn damaged(path: &Path, member: &str) -> String {
    format!(
        "{}: {member} is damaged or missing (its size or sha256 differs from the manifest's): the archive cannot be trusted",
        path.display()
    )
}

/// A relative path without `..`, under `top`.
fn inside(p: &Path, top: &str) -> bool {
    let mut parts = p.components();
    matches!(parts.next(), Some(Component::Normal(c)) if c == top)
        && parts.all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Every member of a gzipped tar is a folder or a file under `top` (and, with `links`, a
/// symbolic link to a relative path inside the folder it sits in: a stack's `current`).
fn check_members(tgz: &[u8], top: &str, links: bool) -> Result<(), String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if !inside(&path, top) {
            return Err(format!("member {} is outside {top}/", path.display()));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink if links => {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                if !target
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(format!(
                        "link {} points outside its folder ({})",
                        path.display(),
                        target.display()
                    ));
                }
            }
            other => {
                return Err(format!(
                    "member {} is a {other:?}, which rpiprov's archives never hold",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod samples {
    //! Archives for the tests of this module and of the executor.
    use super::*;

    /// A gzipped tar with these members (a link when a target is given), the names and
    /// targets written as they are (`..` included: the tar crate would refuse them).
    pub fn tgz(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, link) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_mode(0o600);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                    h.set_size(0);
                    h.set_cksum();
                    b.append(&h, &b""[..]).unwrap();
                }
                None => {
                    h.set_size(1);
                    h.set_cksum();
                    b.append(&h, &b"x"[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    pub fn sample() -> Archive {
        let swarm = tgz(&[("swarm/raft/wal", None), ("swarm/state.json", None)]);
        let records = tgz(&[
            ("stacks/web/deployed", None),
            ("stacks/web/current", Some("releases/00aa")),
        ]);
        Archive {
            manifest: Manifest {
                format: FORMAT.into(),
                version: VERSION,
                rpiprov: "0.1.0".into(),
                created: "2026-12-07T10:15:00Z".into(),
                swarm: SwarmPart {
                    id: "zgg1nt9l53jti48c9tyokrwzu".into(),
                    managers: 1,
                    keep: ResetOnInit {
                        autolock: true,
                        ca_force_rotate: 0,
                    },
                },
                source: Source {
                    host: "pi1".into(),
                    node_id: "n1".into(),
                    address: "198.18.0.11".into(),
                    leader: true,
                    docker_version: "20.10.24".into(),
                    docker_root: "/var/lib/docker".into(),
                },
                records_from: "pi1".into(),
                nodes: vec![NodePart {
                    id: "n1".into(),
                    hostname: "pi1".into(),
                    role: "manager".into(),
                    address: "198.18.0.11".into(),
                    state: "ready".into(),
                    availability: "active".into(),
                    labels: BTreeMap::from([("zone".into(), "a".into())]),
                }],
                stacks: vec![StackPart {
                    name: "web".into(),
                    services: vec!["web".into()],
                }],
                files: vec![
                    FilePart::of(SWARM_FILE, &swarm),
                    FilePart::of(RECORDS_FILE, &records),
                ],
            },
            swarm,
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samples::{sample, tgz};

    #[test]
    fn an_archive_is_written_0600_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        let a = sample();
        let size = write(&path, &a).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), size);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&path).unwrap(), a);
        assert_eq!(read_manifest(&path).unwrap(), a.manifest);
        // Nothing but the archive is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Written again, it replaces the file (a nightly backup to one name).
        write(&path, &a).unwrap();
        assert_eq!(read(&path).unwrap(), a);
        assert_eq!(
            default_name(&a.manifest.swarm.id, &a.manifest.created),
            "rpiprov-backup-zgg1nt9l53jt-20261207T101500Z.tar"
        );
    }

    #[test]
    fn a_link_at_the_destination_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("b.tar");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write(&link, &sample()).unwrap_err();
        assert!(
            e.ends_with(
                "is a symbolic link; rpiprov does not write through one: name the file itself"
            ),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(check_destination(&dir.path().join("no/such/b.tar")).is_err());
        assert!(check_destination(dir.path()).is_err());
        assert!(check_destination(&dir.path().join("new.tar")).is_ok());
    }

    #[test]
    fn a_damaged_or_foreign_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        write(&path, &sample()).unwrap();
        // A member whose bytes are not those the manifest names.
        let mut changed = sample();
        changed.swarm[20] ^= 1;
        write(&path, &changed).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("swarm.tar.gz is damaged or missing"), "{e}");
        // The manifest alone is still read (`--list` shows what it says).
        assert_eq!(read_manifest(&path).unwrap(), changed.manifest);
        // A newer format version.
        let mut newer = sample();
        newer.manifest.version = 2;
        write(&path, &newer).unwrap();
        let e = read_manifest(&path).unwrap_err();
        assert!(e.contains("format version 2, which this rpiprov"), "{e}");
        // Not an archive of ours at all.
        std::fs::write(&path, b"hello").unwrap();
        assert!(
            read_manifest(&path)
                .unwrap_err()
                .contains("not an rpiprov backup")
        );
        // Members that would land outside their folder.
        let mut escaping = sample();
        escaping.swarm = tgz(&[("swarm/../../etc/passwd", None)]);
        escaping.manifest.files[0] = FilePart::of(SWARM_FILE, &escaping.swarm);
        write(&path, &escaping).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("is outside swarm/"), "{e}");
        let mut link = sample();
        link.records = tgz(&[("stacks/web/current", Some("../../../etc"))]);
        link.manifest.files[1] = FilePart::of(RECORDS_FILE, &link.records);
        write(&path, &link).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("points outside its folder"), "{e}");
    }
}
