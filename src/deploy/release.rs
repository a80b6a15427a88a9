//! The file set of a stack, built locally: the compose file and every file it refers to,
//! kept in their relative layout, plus the file that names its configs and secrets after
//! their content. It travels as one tar stream and is extracted on the manager into a
//! release folder named after the set ([`Release::id`]), so that a deploy never runs
//! against half of an old set and half of a new one, and an unchanged set is never sent
//! again (the release already exists).
//!
//! Layout of the stream (and of the release folder):
//! - `files/...`: the compose file and its referenced files, relative to the deepest folder
//!   that holds them all (so `../common.env` next to `stacks/web.yml` stays `../common.env`
//!   from the compose file's folder, as `docker stack deploy` resolves it);
//! - `names.yml`: the second compose file given to `docker stack deploy`, which sets
//!   `name: <stack>_<key>_<hash>` on each config and secret made from a file (see
//!   [`crate::config::compose::object_name`]); absent when there is none.
//!
//! Every file is 0600 and every folder 0700, owned by root once extracted: env files and
//! secrets are readable by root only.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::compose::object_name;
use crate::config::{Compose, ObjectKind};

/// The name of the file that names configs and secrets, in the release folder.
pub const NAMES_FILE: &str = "names.yml";

/// One file of a set.
#[derive(Clone, PartialEq, Eq)]
pub struct SetFile {
    /// Its path in the set (`files/stacks/web.yml`, `names.yml`); on the manager it is
    /// under the stack's current set (`crate::docker::paths::current_release`).
    pub path: String,
    /// Where it was read here; empty for `names.yml`, which rpiprov writes.
    pub local: PathBuf,
    pub bytes: Vec<u8>,
    /// A secret's file or an env file: its content is never shown.
    pub secret: bool,
}

impl std::fmt::Debug for SetFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents stay out of debug output: env files and secrets are among them.
        f.debug_struct("SetFile")
            .field("path", &self.path)
            .field("local", &self.local)
            .field("bytes", &self.bytes.len())
            .field("secret", &self.secret)
            .finish()
    }
}

/// A stack's file set, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Release {
    /// Names the set: the first 16 hex digits of a sha256 over every path and content.
    pub id: String,
    /// The compose file, relative to the release folder (`files/stacks/web.yml`).
    pub compose: String,
    /// [`NAMES_FILE`], when some config or secret is named by rpiprov.
    pub names: Option<String>,
    /// The configs and secrets named by rpiprov: kind and name.
    pub objects: Vec<(ObjectKind, String)>,
    /// The set's files, in path order (the tar stream holds the same).
    pub entries: Vec<SetFile>,
    /// The tar stream.
    pub tar: Vec<u8>,
    /// sha256 of the tar stream, checked on the manager before extracting.
    pub sha256: String,
    /// Files in the set (the compose file included, `names.yml` not) and their total size.
    pub files: usize,
    pub bytes: u64,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("id", &self.id)
            .field("compose", &self.compose)
            .field("names", &self.names)
            .field("objects", &self.objects)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// The deepest folder holding every path (all absolute and normalised).
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component<'_>> = match paths.first().and_then(|p| p.parent()) {
        Some(p) => p.components().collect(),
        None => return PathBuf::from("/"),
    };
    for p in &paths[1..] {
        let folder: Vec<Component<'_>> = p
            .parent()
            .map(|f| f.components().collect())
            .unwrap_or_default();
        let n = common
            .iter()
            .zip(folder.iter())
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(n);
    }
    common.iter().collect()
}

/// A path relative to `root`, with '/' separators; `None` when it is not below it or is
/// not valid UTF-8 (tar names are sent as UTF-8).
fn relative(path: &Path, root: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    parts.filter(|p| !p.is_empty()).map(|p| p.join("/"))
}

/// The `names.yml` text: for each config and secret named by rpiprov, its entry as written
/// (every key but `name`) and the name. Its `version` is the compose file's, as the Docker
/// CLI requires of every file of one deploy.
/// `files` holds (path as given, absolute path, bytes).
fn names_file(
    stack: &str,
    compose: &Compose,
    files: &[(PathBuf, PathBuf, Vec<u8>)],
) -> Option<(String, Vec<(ObjectKind, String)>)> {
    let contents = |p: &Path| -> &[u8] {
        files
            .iter()
            .find(|(given, _, _)| given == p)
            .map_or(&[][..], |(_, _, b)| b.as_slice())
    };
    if compose.objects.is_empty() {
        return None;
    }
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut named = Vec::new();
    let mut sections = Vec::new();
    for kind in [ObjectKind::Config, ObjectKind::Secret] {
        let mut entries = Vec::new();
        for o in compose.objects.iter().filter(|o| o.kind == kind) {
            let name = object_name(stack, &o.key, contents(&o.file));
            let mut fields: Vec<String> = o
                .fields
                .iter()
                .map(|(k, v)| format!("{}: {v}", quoted(k)))
                .collect();
            fields.push(format!("\"name\": {}", quoted(&name)));
            entries.push(format!("{}: {{{}}}", quoted(&o.key), fields.join(", ")));
            named.push((kind, name));
        }
        if !entries.is_empty() {
            sections.push(format!(
                "{}: {{{}}}",
                quoted(kind.section()),
                entries.join(", ")
            ));
        }
    }
    let text = format!(
        "# Written by rpiprov: names each config and secret made from a file after its content.\n{{\"version\": {}, {}}}\n",
        quoted(&compose.version),
        sections.join(", ")
    );
    Some((text, named))
}

/// Builds the file set of a stack from its compose file (`compose_path`) and the files it
/// refers to; `read` gives a file's bytes (the caller reads each once), or an error that
/// names the file.
pub fn build(
    stack: &str,
    compose_path: &Path,
    compose: &Compose,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> Result<Release, String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let absolute = |p: &Path| crate::config::normalize_path(&cwd.join(p));
    let mut paths = vec![(compose_path.to_path_buf(), false)];
    for f in &compose.files {
        if !paths.iter().any(|(p, _)| *p == f.path) {
            paths.push((f.path.clone(), f.secret));
        }
    }
    // (path as given, absolute path, bytes)
    let mut files: Vec<(PathBuf, PathBuf, Vec<u8>)> = Vec::new();
    for (p, _) in &paths {
        let bytes = read(p).map_err(|e| format!("stack {stack}: {e}"))?;
        files.push((p.clone(), absolute(p), bytes));
    }
    let absolutes: Vec<PathBuf> = files.iter().map(|(_, a, _)| a.clone()).collect();
    let root = common_folder(&absolutes);
    let rel = |abs: &Path, shown: &Path| {
        relative(abs, &root).ok_or_else(|| {
            format!(
                "stack {stack}: {} cannot be sent: its path is not UTF-8",
                shown.display()
            )
        })
    };
    let compose_rel = format!("files/{}", rel(&files[0].1, &files[0].0)?);
    let names = names_file(stack, compose, &files);

    // Entries in a fixed order, so that the same set makes the same stream and id.
    let count = files.len();
    let bytes = files.iter().map(|(_, _, b)| b.len() as u64).sum();
    let mut entries: Vec<SetFile> = Vec::new();
    for ((given, abs, content), (_, secret)) in files.into_iter().zip(&paths) {
        entries.push(SetFile {
            path: format!("files/{}", rel(&abs, &given)?),
            local: given,
            bytes: content,
            secret: *secret,
        });
    }
    let (names, objects) = match names {
        Some((text, objects)) => {
            entries.push(SetFile {
                path: NAMES_FILE.to_string(),
                local: PathBuf::new(),
                bytes: text.into_bytes(),
                secret: false,
            });
            (Some(NAMES_FILE.to_string()), objects)
        }
        None => (None, Vec::new()),
    };
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let mut id = Sha256::new();
    for e in &entries {
        id.update(e.path.as_bytes());
        id.update([0u8]);
        id.update(Sha256::digest(&e.bytes));
    }
    let id = hex::encode(id.finalize())[..16].to_string();

    let tar =
        tar_stream(&entries).map_err(|e| format!("stack {stack}: cannot pack its files: {e}"))?;
    let sha256 = hex::encode(Sha256::digest(&tar));
    Ok(Release {
        id,
        compose: compose_rel,
        names,
        objects,
        entries,
        tar,
        sha256,
        files: count,
        bytes,
    })
}

/// A tar stream of these files (sorted paths), with their folders: root-owned, files
/// 0600, folders 0700, no timestamps.
fn tar_stream(entries: &[SetFile]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut folders: Vec<String> = Vec::new();
    for SetFile { path, bytes, .. } in entries {
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 1..parts.len() {
            let folder = parts[..depth].join("/");
            if folders.contains(&folder) {
                continue;
            }
            folders.push(folder.clone());
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            b.append_data(&mut h, format!("{folder}/"), std::io::empty())?;
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, path, bytes.as_slice())?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileObject, ReferencedFile};
    use std::collections::HashMap;

    fn compose_with(files: &[&str], objects: Vec<FileObject>) -> Compose {
        Compose {
            version: "3.8".into(),
            files: files
                .iter()
                .map(|f| ReferencedFile {
                    path: PathBuf::from(f),
                    secret: f.ends_with(".env"),
                })
                .collect(),
            objects,
            ..Default::default()
        }
    }

    fn reader(files: &HashMap<&str, &str>) -> impl Fn(&Path) -> Result<Vec<u8>, String> {
        let files: HashMap<PathBuf, Vec<u8>> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.as_bytes().to_vec()))
            .collect();
        move |p| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| format!("{}: no such file", p.display()))
        }
    }

    /// The entries of a tar stream: path, mode, type and content.
    fn unpack(tar: &[u8]) -> Vec<(String, u32, bool, String)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.entry_type().is_dir(),
                    s,
                )
            })
            .collect()
    }

    #[test]
    fn the_set_keeps_its_relative_layout_and_names_its_objects() {
        let files: HashMap<&str, &str> = [
            ("/book/stacks/web.yml", "version: \"3.8\"\n"),
            ("/book/common.env", "A=1\n"),
            ("/book/stacks/conf/nginx.conf", "events {}\n"),
        ]
        .into();
        let compose = compose_with(
            &["/book/common.env", "/book/stacks/conf/nginx.conf"],
            vec![FileObject {
                kind: ObjectKind::Config,
                key: "nginx_conf".into(),
                file: "/book/stacks/conf/nginx.conf".into(),
                fields: vec![("file".into(), "\"./conf/nginx.conf\"".into())],
            }],
        );
        let r = build(
            "web",
            Path::new("/book/stacks/web.yml"),
            &compose,
            &reader(&files),
        )
        .unwrap();
        assert_eq!(r.compose, "files/stacks/web.yml");
        assert_eq!(r.names.as_deref(), Some("names.yml"));
        let name = object_name("web", "nginx_conf", b"events {}\n");
        assert_eq!(r.objects, vec![(ObjectKind::Config, name.clone())]);
        assert_eq!((r.files, r.bytes), (3, 29));
        let entries: Vec<(&str, &str, bool)> = r
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.local.to_str().unwrap(), e.secret))
            .collect();
        assert_eq!(
            entries,
            [
                ("files/common.env", "/book/common.env", true),
                (
                    "files/stacks/conf/nginx.conf",
                    "/book/stacks/conf/nginx.conf",
                    false
                ),
                ("files/stacks/web.yml", "/book/stacks/web.yml", false),
                ("names.yml", "", false),
            ]
        );
        assert!(
            !format!("{r:?}").contains("A=1"),
            "contents stay out of debug output"
        );
        assert_eq!(r.id.len(), 16);
        assert_eq!(r.sha256, hex::encode(Sha256::digest(&r.tar)));
        assert_eq!(
            unpack(&r.tar),
            vec![
                ("files/".into(), 0o700, true, String::new()),
                ("files/common.env".into(), 0o600, false, "A=1\n".into()),
                ("files/stacks/".into(), 0o700, true, String::new()),
                ("files/stacks/conf/".into(), 0o700, true, String::new()),
                (
                    "files/stacks/conf/nginx.conf".into(),
                    0o600,
                    false,
                    "events {}\n".into()
                ),
                (
                    "files/stacks/web.yml".into(),
                    0o600,
                    false,
                    "version: \"3.8\"\n".into()
                ),
                (
                    "names.yml".into(),
                    0o600,
                    false,
                    format!(
                        "# Written by rpiprov: names each config and secret made from a file after its content.\n{{\"version\": \"3.8\", \"configs\": {{\"nginx_conf\": {{\"file\": \"./conf/nginx.conf\", \"name\": \"{name}\"}}}}}}\n"
                    )
                ),
            ]
        );
    }

    #[test]
    fn the_id_moves_with_any_file_and_only_with_files() {
        let mut files: HashMap<&str, &str> =
            [("/b/web.yml", "services: {}\n"), ("/b/app.env", "A=1\n")].into();
        let compose = compose_with(&["/b/app.env"], vec![]);
        let build_it = |f: &HashMap<&str, &str>| {
            build("web", Path::new("/b/web.yml"), &compose, &reader(f)).unwrap()
        };
        let a = build_it(&files);
        assert_eq!(a, build_it(&files), "the same set makes the same stream");
        assert_eq!(a.names, None);
        assert_eq!(a.compose, "files/web.yml");
        files.insert("/b/app.env", "A=2\n");
        assert_ne!(build_it(&files).id, a.id);
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let compose = compose_with(&["/b/gone.env"], vec![]);
        let files: HashMap<&str, &str> = [("/b/web.yml", "x")].into();
        let err = build("web", Path::new("/b/web.yml"), &compose, &reader(&files)).unwrap_err();
        assert_eq!(err, "stack web: /b/gone.env: no such file");
    }

    #[test]
    fn common_folders() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            common_folder(&p(&["/a/b/c.yml", "/a/d.env"])),
            PathBuf::from("/a")
        );
        assert_eq!(common_folder(&p(&["/a/b/c.yml"])), PathBuf::from("/a/b"));
        assert_eq!(common_folder(&p(&["/a/c.yml", "/x/d"])), PathBuf::from("/"));
    }
}
