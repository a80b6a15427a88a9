//! How paths written in the files become paths on this machine: `~` expansion and
//! resolution against the folder of the file that names them. Lexical only: nothing here
//! touches the file system.

use std::path::{Component, Path, PathBuf};

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
}
