//! The local files a compose file refers to, and the configs and secrets made of them.
//!
//! `docker stack deploy` reads `env_file` (a string or a list), `configs.*.file` and
//! `secrets.*.file` relative to the compose file's folder, on the machine it runs on: the
//! manager. So these files travel with the stack, and must exist, be files, and come from
//! the playbook's folder (or a folder the user allowed). An absolute path would be read on
//! the manager itself, not from the uploaded set, so it is refused.
//!
//! Docker refuses to change a config or a secret in place ("only updates to Labels are
//! allowed"): rpiprov names each one made from a file after that file's content
//! ([`object_name`], through the entry's `name:` key, which needs file format 3.5 or
//! later), so that a changed file makes a new version and the services roll onto it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::model::{Compose, FileObject, ObjectKind, ReferencedFile};
use super::super::paths;
use super::super::yaml::{self, Entry, Mark, Node};
use super::Checker;

/// How many hex digits of the content's sha256 a config or secret name carries.
pub const HASH_LEN: usize = 10;

/// Swarm's limit for a config or secret name.
const MAX_NAME: usize = 64;

/// The name rpiprov gives a config or secret made from a file: `<stack>_<key>_<hash>`,
/// the hash being the first [`HASH_LEN`] hex digits of the content's sha256. The same
/// content keeps its name (Docker finds it unchanged); another makes a new one.
pub fn object_name(stack: &str, key: &str, content: &[u8]) -> String {
    let hash = hex::encode(Sha256::digest(content));
    format!("{stack}_{key}_{}", &hash[..HASH_LEN])
}

/// Whether a `version:` is 3.5 or later (a config's or secret's `name:` is allowed). A
/// file without one is deployed only by CLI 23 and later, which read it as the newest
/// 3.x; `version: "3"` is 3.0 to CLI 20.10, so it cannot.
fn names_allowed(version: &str) -> bool {
    if version.is_empty() {
        return true;
    }
    let minor = version
        .strip_prefix("3.")
        .and_then(|m| m.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 5)
}

impl Checker<'_> {
    /// Every referenced file: checked, and listed once in `compose.files`; then the
    /// configs and secrets rpiprov will name after their content.
    pub(super) fn files(&mut self, top: &[Entry], compose: &mut Compose) {
        if let Some(services) = top
            .iter()
            .find(|e| e.key == "services")
            .and_then(|s| s.value.entries())
        {
            for svc in services {
                let Some(env) = svc.value.get("env_file") else {
                    continue;
                };
                let path = format!("services.{}.env_file", svc.key);
                match &env.value {
                    Node::Seq { items, .. } => {
                        for (i, item) in items.iter().enumerate() {
                            self.env_file(item, &format!("{path}[{i}]"), compose);
                        }
                    }
                    node => self.env_file(node, &path, compose),
                }
            }
        }
        for kind in [ObjectKind::Config, ObjectKind::Secret] {
            let Some(section) = top
                .iter()
                .find(|e| e.key == kind.section())
                .and_then(|s| s.value.entries())
            else {
                continue;
            };
            for entry in section {
                self.object(kind, entry, compose);
            }
        }
    }

    fn env_file(&mut self, node: &Node, key_path: &str, compose: &mut Compose) {
        match node.as_str() {
            Some(text) => {
                // An env file holds values such as passwords: kept as a secret.
                self.referenced(text, node.mark(), key_path, true, compose);
            }
            None => self.error(
                Some(node.mark()),
                key_path,
                format!("expected a file name, found {}", node.kind()),
            ),
        }
    }

    /// One referenced file: interpolated, resolved against the compose file's folder,
    /// checked. The local path, when it is fine.
    fn referenced(
        &mut self,
        text: &str,
        mark: Mark,
        key_path: &str,
        secret: bool,
        compose: &mut Compose,
    ) -> Option<PathBuf> {
        let text = match self.interpolate_locally(text) {
            Ok(Some(t)) => t,
            // The value itself is refused by Docker: reported by `variables`.
            Ok(None) => return None,
            Err(var) => {
                self.error(
                    Some(mark),
                    key_path,
                    format!("the path reads variable {var}, whose value is secret: a file path may only use variables written in the playbook"),
                );
                return None;
            }
        };
        if text.is_empty() {
            self.error(Some(mark), key_path, "empty file name");
            return None;
        }
        if Path::new(&text).is_absolute() {
            self.error(
                Some(mark),
                key_path,
                format!("{text}: an absolute path is read on the manager itself and does not travel with the stack: write it relative to the compose file's folder"),
            );
            return None;
        }
        let path = paths::normalize(&paths::folder_of(&self.src.path).join(&text));
        if let Err(e) = self.ctx.containment.file(&path) {
            self.error(Some(mark), key_path, e);
            return None;
        }
        match compose.files.iter_mut().find(|f| f.path == path) {
            Some(f) => f.secret |= secret,
            None => compose.files.push(ReferencedFile {
                path: path.clone(),
                secret,
            }),
        }
        Some(path)
    }

    /// Swarm's bounds on a config's or secret's data (swarmkit: at least one byte, less
    /// than 1000 KiB for a config, 500 KiB for a secret); `docker stack deploy` creates
    /// every one the file declares, used or not, and fails on the first out of bounds.
    fn object_size(&mut self, kind: ObjectKind, local: &Path, mark: Mark, key_path: &str) {
        let Ok(len) = std::fs::metadata(local).map(|m| m.len()) else {
            return;
        };
        let limit: u64 = match kind {
            ObjectKind::Config => 1000 * 1024,
            ObjectKind::Secret => 500 * 1024,
        };
        let noun = kind.noun();
        let why = if len == 0 {
            "the file is empty".to_string()
        } else if len >= limit {
            format!("the file holds {len} bytes")
        } else {
            return;
        };
        self.error(
            Some(mark),
            key_path,
            format!("{why}, and swarm refuses it (\"{noun} data must be larger than 0 and less than {limit} bytes\")"),
        );
    }

    /// One entry of `configs:` or `secrets:`.
    fn object(&mut self, kind: ObjectKind, entry: &Entry, compose: &mut Compose) {
        let path = format!("{}.{}", kind.section(), entry.key);
        let external = entry
            .value
            .get("external")
            .is_some_and(|x| x.value.is_true() || x.value.entries().is_some());
        let Some(file) = entry.value.get("file") else {
            return;
        };
        if external {
            return;
        }
        let Some(text) = file.value.as_str() else {
            self.error(
                Some(file.key_mark),
                &format!("{path}.file"),
                format!("expected a file name, found {}", file.value.kind()),
            );
            return;
        };
        let secret = kind == ObjectKind::Secret;
        let Some(local) = self.referenced(
            text,
            file.value.mark(),
            &format!("{path}.file"),
            secret,
            compose,
        ) else {
            return;
        };
        self.object_size(kind, &local, file.value.mark(), &format!("{path}.file"));
        // A name the user chose is kept: then changing the file is theirs to manage.
        if entry.value.get("name").is_some() || entry.value.get("driver").is_some() {
            return;
        }
        let noun = kind.noun();
        if !names_allowed(&compose.version) {
            let version = if compose.version.is_empty() {
                "a file without version:".to_string()
            } else {
                format!("version {}", compose.version)
            };
            self.warning(
                Some(entry.key_mark),
                &path,
                format!("{version} cannot name a {noun}, so rpiprov cannot give it a new name when its file changes, and Docker refuses to change a {noun} in place (\"only updates to Labels are allowed\"): use version: \"3.5\" or later"),
            );
            return;
        }
        let stack = self.ctx.stack;
        let longest = stack.len() + entry.key.len() + 2 + HASH_LEN;
        if !stack.is_empty() && longest > MAX_NAME {
            self.error(
                Some(entry.key_mark),
                &path,
                format!("the {noun}'s name would be \"{stack}_{}_<{HASH_LEN} hex digits>\", {longest} characters; Docker allows {MAX_NAME}: use a shorter key", entry.key),
            );
            return;
        }
        let fields = entry
            .value
            .entries()
            .unwrap_or_default()
            .iter()
            .filter(|e| e.key != "name")
            .map(|e| (e.key.clone(), yaml::flow(&e.value)))
            .collect();
        compose.objects.push(FileObject {
            kind,
            key: entry.key.clone(),
            file: local,
            fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compose::check_text;

    /// A playbook folder `book/` with `stacks/web.yml` (the text given), files beside it,
    /// and a file outside it.
    fn run(text: &str) -> (tempfile::TempDir, Compose, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path().join("book");
        for (p, c) in [
            ("stacks/app.env", "A=1\n"),
            ("stacks/conf/nginx.conf", "events {}\n"),
            ("secrets/db_password", "hunter2\n"),
            ("common.env", "B=2\n"),
        ] {
            let p = book.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        std::fs::write(dir.path().join("outside.env"), "C=3\n").unwrap();
        let compose_path = book.join("stacks/web.yml");
        std::fs::write(&compose_path, text).unwrap();
        let vars = [("CONF", Some("nginx")), ("PW", None)];
        let (c, diags) = check_text(&compose_path, text, &[], &vars, &book);
        let prefix = format!("{}/", book.display());
        let diags = diags
            .iter()
            .map(|d| d.to_string().replace(&prefix, ""))
            .collect();
        (dir, c, diags)
    }

    /// Issue 19 item 3: swarm refuses an empty config or secret, and one too large;
    /// `docker stack deploy` creates every one the file declares, used or not.
    #[test]
    fn empty_and_oversized_objects_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; 500 * 1024]).unwrap();
        let path = dir.path().join("web.yml");
        let text = "version: \"3.8\"\nservices:\n  web:\n    image: nginx\nconfigs:\n  c:\n    file: ./empty\n  big:\n    file: big\nsecrets:\n  s:\n    file: empty\n  big:\n    file: big\n";
        let (_, diags) = check_text(&path, text, &[], &[], dir.path());
        let prefix = format!("{}/", dir.path().display());
        let diags: Vec<String> = diags
            .iter()
            .map(|d| d.to_string().replace(&prefix, ""))
            .collect();
        assert_eq!(
            diags,
            [
                "web.yml:7:11: configs.c.file: the file is empty, and swarm refuses it (\"config data must be larger than 0 and less than 1024000 bytes\")",
                "web.yml:12:11: secrets.s.file: the file is empty, and swarm refuses it (\"secret data must be larger than 0 and less than 512000 bytes\")",
                "web.yml:14:11: secrets.big.file: the file holds 512000 bytes, and swarm refuses it (\"secret data must be larger than 0 and less than 512000 bytes\")",
            ]
        );
    }

    #[test]
    fn referenced_files_are_resolved_against_the_compose_folder() {
        let (dir, c, diags) = run(
            "version: \"3.8\"\nservices:\n  web:\n    image: nginx\n    env_file: app.env\n  db:\n    image: postgres\n    env_file: [../common.env, ./app.env]\n    secrets: [db_password]\nconfigs:\n  nginx_conf:\n    file: ./conf/${CONF}.conf\n    labels: {role: \"front\"}\nsecrets:\n  db_password:\n    file: ../secrets/db_password\n  external_one:\n    external: true\n",
        );
        assert_eq!(diags, Vec::<String>::new());
        let book = dir.path().join("book");
        let files: Vec<(PathBuf, bool)> =
            c.files.iter().map(|f| (f.path.clone(), f.secret)).collect();
        assert_eq!(
            files,
            [
                (book.join("stacks/app.env"), true),
                (book.join("common.env"), true),
                (book.join("stacks/conf/nginx.conf"), false),
                (book.join("secrets/db_password"), true),
            ]
        );
        assert_eq!(
            c.objects,
            [
                FileObject {
                    kind: ObjectKind::Config,
                    key: "nginx_conf".into(),
                    file: book.join("stacks/conf/nginx.conf"),
                    fields: vec![
                        ("file".into(), "\"./conf/${CONF}.conf\"".into()),
                        ("labels".into(), "{\"role\": \"front\"}".into()),
                    ],
                },
                FileObject {
                    kind: ObjectKind::Secret,
                    key: "db_password".into(),
                    file: book.join("secrets/db_password"),
                    fields: vec![("file".into(), "\"../secrets/db_password\"".into())],
                },
            ]
        );
        assert_eq!(c.variables, ["CONF"]);
    }

    #[test]
    fn each_problem_with_a_referenced_file() {
        let (dir, c, diags) = run(
            "version: \"3.8\"\nservices:\n  web:\n    image: nginx\n    env_file:\n      - missing.env\n      - conf\n      - ../../outside.env\n      - /etc/app.env\n      - ${PW}.env\nconfigs:\n  c1:\n    file: [a]\n",
        );
        assert!(c.files.is_empty());
        let outside = dir.path().join("outside.env");
        let book = dir.path().join("book");
        assert_eq!(
            diags,
            [
                "stacks/web.yml:6:9: services.web.env_file[0]: stacks/missing.env: no such file".to_string(),
                "stacks/web.yml:7:9: services.web.env_file[1]: stacks/conf: is a folder, not a file".into(),
                format!(
                    "stacks/web.yml:8:9: services.web.env_file[2]: {}: outside the playbook's folder {}: rpiprov sends only files from there; move the file into it, or allow its folder with --allow-outside DIR",
                    outside.display(),
                    book.display()
                ),
                "stacks/web.yml:9:9: services.web.env_file[3]: /etc/app.env: an absolute path is read on the manager itself and does not travel with the stack: write it relative to the compose file's folder".into(),
                "stacks/web.yml:10:9: services.web.env_file[4]: the path reads variable PW, whose value is secret: a file path may only use variables written in the playbook".into(),
                "stacks/web.yml:13:5: configs.c1.file: expected a file name, found a list".into(),
            ]
        );
    }

    #[test]
    fn rotation_needs_3_5_and_a_short_enough_name() {
        let (_d, c, diags) = run(
            "version: \"3.4\"\nservices:\n  web:\n    image: nginx\nconfigs:\n  nginx_conf:\n    file: conf/nginx.conf\n",
        );
        assert!(c.objects.is_empty());
        assert_eq!(
            diags,
            [
                "stacks/web.yml:6:3: configs.nginx_conf: version 3.4 cannot name a config, so rpiprov cannot give it a new name when its file changes, and Docker refuses to change a config in place (\"only updates to Labels are allowed\"): use version: \"3.5\" or later"
            ]
        );
        let key = "k".repeat(50);
        let (_d, _, diags) = run(&format!(
            "version: \"3.5\"\nservices:\n  web:\n    image: nginx\nsecrets:\n  {key}:\n    file: app.env\n  named:\n    file: app.env\n    name: my_secret\n"
        ));
        assert_eq!(
            diags,
            [format!(
                "stacks/web.yml:6:3: secrets.{key}: the secret's name would be \"web_{key}_<10 hex digits>\", 65 characters; Docker allows 64: use a shorter key"
            )]
        );
    }

    #[test]
    fn names_carry_the_content_hash() {
        assert_eq!(
            object_name("web", "nginx_conf", b"events {}\n"),
            format!(
                "web_nginx_conf_{}",
                &hex::encode(Sha256::digest(b"events {}\n"))[..10]
            )
        );
        assert_ne!(object_name("web", "k", b"a"), object_name("web", "k", b"b"));
        assert!(names_allowed("3.5") && names_allowed("3.10") && !names_allowed("3.4"));
        // Without version:, only CLI 23 and later deploy it, as the newest 3.x.
        assert!(!names_allowed("3") && names_allowed(""));
    }
}
