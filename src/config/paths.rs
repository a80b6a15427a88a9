//! How paths written in the files become paths on this machine: `~` expansion and
//! resolution against the folder of the file that names them (lexical), and the rule of
//! which local files rpiprov may send to a host ([`Containment`]): only those inside the
//! playbook's folder, or inside a folder the user allowed on the command line.

use std::path::{Component, Path, PathBuf};

use super::local::{self, Limit, Opened};

/// Expands a leading `~/` with `home`, then resolves a relative path against `base`
/// (the folder of the file the path was written in).
pub fn resolve(text: &str, base: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    let path = if text == "~" || text.starts_with("~/") {
        let Some(home) = home else {
            return Err(format!("cannot expand {text:?}: HOME is not set"));
        };
        home.join(text.trim_start_matches('~').trim_start_matches('/'))
    } else if text.starts_with('~') {
        return Err(format!(
            "cannot expand {text:?}: only \"~/\" (your own home) is supported"
        ));
    } else {
        base.join(text)
    };
    Ok(normalize(&path))
}

/// The folder a file's relative paths are resolved against (`""` for a bare file name).
pub fn folder_of(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Removes `.` and folds `dir/..` so messages show `playbooks/stacks/web.yml` rather than
/// `playbooks/./stacks/../stacks/web.yml`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

/// Where the local files that rpiprov sends to hosts (stack files, the files they refer
/// to, image archives) may come from: the playbook's folder, and the folders the user
/// allowed with `--allow-outside`. Symbolic links are followed before deciding, so a link
/// inside the folder to a file outside it is outside: a playbook from elsewhere cannot make
/// rpiprov stream an SSH key or a cloud credential to a host. The decision is taken on the
/// descriptor the bytes are read from ([`Containment::read`]), never on a path read again.
#[derive(Debug, Clone, Default)]
pub struct Containment {
    /// The playbook's folder as the user named it, for messages.
    shown: PathBuf,
    /// The same, and each allowed folder, with links resolved (`None`: it does not exist).
    roots: Vec<Option<PathBuf>>,
}

impl Containment {
    /// The playbook's folder `root` (as written) and the allowed folders.
    pub fn new(root: &Path, allowed: &[PathBuf]) -> Containment {
        let real = |p: &Path| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            std::fs::canonicalize(p).ok()
        };
        let mut roots = vec![real(root)];
        roots.extend(allowed.iter().map(|a| real(a)));
        Containment {
            shown: root.to_path_buf(),
            roots,
        }
    }

    /// Checks that `path` names a readable regular file inside one of the roots (see
    /// [`Containment::read`]; the file is opened, not read). The message names the path
    /// as given and says what to do.
    pub fn file(&self, path: &Path, limit: Limit) -> Result<(), String> {
        self.open(path, limit).map(drop)
    }

    /// The bytes of `path`, once the descriptor they are read from is checked: a regular
    /// file within `limit`, open on a file inside one of the roots, links resolved by the
    /// kernel as it opened it. What is checked is what is read: a file replaced by a link
    /// to an outside file after an earlier check is refused here. The message names the
    /// path as given and says what to do.
    pub fn read(&self, path: &Path, limit: Limit) -> Result<Vec<u8>, String> {
        self.open(path, limit)?
            .read()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn open(&self, path: &Path, limit: Limit) -> Result<Opened, String> {
        let shown = path.display();
        let opened = local::open(path, limit).map_err(|e| format!("{shown}: {e}"))?;
        let real = opened
            .real_path()
            .map_err(|e| format!("{shown}: cannot read: {}", super::diag::io_message(&e)))?;
        if self.roots.iter().flatten().any(|r| real.starts_with(r)) {
            return Ok(opened);
        }
        let folder = if self.shown.as_os_str().is_empty() {
            ".".to_string()
        } else {
            self.shown.display().to_string()
        };
        let through_link =
            real != normalize(&std::env::current_dir().unwrap_or_default().join(path));
        let how = if through_link {
            format!(" (it leads to {})", real.display())
        } else {
            String::new()
        };
        Err(format!(
            "{shown}: outside the playbook's folder {folder}{how}: rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR"
        ))
    }
}

/// Whether a file name is sshd's list of keys that may log in (`authorized_keys`, and
/// the older `authorized_keys2`): never a known_hosts file.
pub fn names_authorized_keys(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("authorized_keys"))
}

/// `$HOME`, read once by the caller so that tests can pass their own.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_and_relative_paths() {
        let home = Path::new("/home/u");
        assert_eq!(
            resolve("~/.ssh/id_ed25519", Path::new("lab"), Some(home)).unwrap(),
            PathBuf::from("/home/u/.ssh/id_ed25519")
        );
        assert_eq!(
            resolve("stacks/web.yml", Path::new("playbooks"), Some(home)).unwrap(),
            PathBuf::from("playbooks/stacks/web.yml")
        );
        assert_eq!(
            resolve("../x.yml", Path::new("playbooks"), None).unwrap(),
            PathBuf::from("x.yml")
        );
        assert_eq!(
            resolve("./a", Path::new(""), None).unwrap(),
            PathBuf::from("a")
        );
        assert_eq!(
            resolve("~/k", Path::new(""), None).unwrap_err(),
            "cannot expand \"~/k\": HOME is not set"
        );
        assert!(resolve("~bob/k", Path::new(""), Some(home)).is_err());
        assert_eq!(folder_of(Path::new("inventory.toml")), PathBuf::from(""));
    }

    #[test]
    fn containment_follows_links_and_allowed_folders() {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path().join("book");
        let other = dir.path().join("other");
        std::fs::create_dir_all(book.join("conf")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(book.join("conf/app.env"), "A=1\n").unwrap();
        std::fs::write(other.join("key"), "secret").unwrap();
        std::os::unix::fs::symlink(other.join("key"), book.join("conf/key")).unwrap();
        let c = Containment::new(&book, &[]);
        assert_eq!(c.file(&book.join("conf/app.env"), Limit::Text), Ok(()));
        let b = book.display();
        assert_eq!(
            c.file(&book.join("conf/none"), Limit::Text).unwrap_err(),
            format!("{b}/conf/none: no such file")
        );
        assert_eq!(
            c.file(&book.join("conf"), Limit::Text).unwrap_err(),
            format!("{b}/conf: is a folder, not a file")
        );
        let real = std::fs::canonicalize(other.join("key")).unwrap();
        assert_eq!(
            c.file(&book.join("conf/key"), Limit::Text).unwrap_err(),
            format!(
                "{b}/conf/key: outside the playbook's folder {b} (it leads to {}): rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR",
                real.display()
            )
        );
        assert_eq!(
            c.file(&other.join("key"), Limit::Text).unwrap_err(),
            format!(
                "{}: outside the playbook's folder {b}: rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR",
                other.join("key").display()
            )
        );
        // Read through the same check: the bytes inside; a file swapped for a link
        // outside after the check is refused on the descriptor the bytes would come from.
        assert_eq!(
            c.read(&book.join("conf/app.env"), Limit::Text).unwrap(),
            b"A=1\n"
        );
        std::fs::remove_file(book.join("conf/app.env")).unwrap();
        std::os::unix::fs::symlink(other.join("key"), book.join("conf/app.env")).unwrap();
        assert!(
            c.read(&book.join("conf/app.env"), Limit::Text)
                .unwrap_err()
                .contains("outside the playbook's folder")
        );
        std::fs::remove_file(book.join("conf/app.env")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", book.join("conf/app.env")).unwrap();
        assert_eq!(
            c.read(&book.join("conf/app.env"), Limit::Text).unwrap_err(),
            format!("{b}/conf/app.env: not a regular file (a character device)")
        );
        // An allowed folder admits its files, links into it included.
        let c = Containment::new(&book, std::slice::from_ref(&other));
        assert_eq!(c.file(&book.join("conf/key"), Limit::Text), Ok(()));
        assert_eq!(c.file(&other.join("key"), Limit::Text), Ok(()));
    }
}
