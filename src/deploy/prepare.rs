//! The local half of `deploy`: reads the stack files, image archives and variables once,
//! before any connection, checks what would break a remote command (path-unsafe names,
//! values with newlines), and computes each stack's deploy fingerprint. Its errors are
//! usage errors: nothing was touched.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::images::PreparedImage;
use crate::config::{ImageFormat, Playbook, VariableValue};
use crate::secret::Secret;

/// A variable for `docker stack deploy`'s environment. Every value is held as a
/// [`Secret`] so that none is printed by accident; `secret` says which ones must also be
/// redacted from remote error text.
#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: Secret,
    pub secret: bool,
}

/// A stack ready to deploy.
#[derive(Debug, Clone)]
pub struct PreparedStack {
    pub name: String,
    /// The compose file's name, kept on the manager under the stack's folder.
    pub file_name: String,
    pub contents: Vec<u8>,
    pub timeout: Duration,
    /// The compose file's service names (without the stack prefix).
    pub services: Vec<String>,
    /// The shipped images this stack uses.
    pub images: Vec<String>,
    /// The variables the compose file refers to; only these are sent.
    pub variables: Vec<EnvVar>,
    /// sha256 of everything the deploy depends on; see [`fingerprint`].
    pub fingerprint: String,
}

/// Everything `deploy` needs from this machine, read once before any connection.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The playbook's networks: deploy recreates missing ones (a teardown removes them).
    pub networks: Vec<crate::config::Network>,
    /// In playbook order.
    pub stacks: Vec<PreparedStack>,
    pub images: Vec<PreparedImage>,
}

/// Reads the playbook's stack files, image archives and variables.
pub fn prepare(playbook: &Playbook) -> Result<Prepared, String> {
    prepare_with(playbook, |p| std::fs::read(p), |k| std::env::var(k).ok())
}

/// [`prepare`] with the file reader and the environment given (for tests).
pub fn prepare_with(
    playbook: &Playbook,
    read: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Prepared, String> {
    let mut images = Vec::new();
    for img in &playbook.images {
        let bytes = read(&img.archive).map_err(|e| {
            format!(
                "image {}: cannot read {}: {e}",
                img.name,
                img.archive.display()
            )
        })?;
        images.push(PreparedImage::new(
            &img.name,
            img.format,
            img.cmd.clone(),
            bytes,
        ));
    }
    let mut vars = Vec::new();
    for v in &playbook.variables {
        if !is_env_name(&v.name) {
            return Err(format!(
                "variable {:?}: not a valid environment variable name",
                v.name
            ));
        }
        let (value, secret) = match &v.value {
            VariableValue::Plain(s) => (Secret::new(s.clone()), false),
            VariableValue::Secret(s) => (s.clone(), true),
            VariableValue::SecretEnv(var) => match env(var) {
                Some(s) => (Secret::new(s), true),
                None => {
                    return Err(format!(
                        "variable {}: the environment variable {var} is not set",
                        v.name
                    ));
                }
            },
        };
        // One `NAME=value` per stdin line: a newline would end the value early (and
        // could forge another variable). The value itself is never shown.
        if value.expose().contains(['\n', '\0']) {
            return Err(format!(
                "variable {}: its value contains a newline or NUL byte, which cannot be passed to docker stack deploy",
                v.name
            ));
        }
        vars.push(EnvVar {
            name: v.name.clone(),
            value,
            secret,
        });
    }
    let mut stacks = Vec::new();
    for st in &playbook.stacks {
        if !is_path_component(&st.name) {
            return Err(format!(
                "stack {:?}: the name must be letters, digits, '-', '_' or '.'",
                st.name
            ));
        }
        let file_name = st
            .file
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                format!(
                    "stack {}: {} has no usable file name",
                    st.name,
                    st.file.display()
                )
            })?
            .to_string();
        let contents = read(&st.file)
            .map_err(|e| format!("stack {}: cannot read {}: {e}", st.name, st.file.display()))?;
        let text = String::from_utf8_lossy(&contents);
        let variables: Vec<EnvVar> = vars
            .iter()
            .filter(|v| refers_to(&text, &v.name))
            .cloned()
            .collect();
        // `image: lab/httpd:${TAG}` names a shipped image once interpolated.
        let lookup = |name: &str| {
            vars.iter()
                .find(|v| v.name == name)
                .map(|v| v.value.expose().to_string())
        };
        let refs: Vec<String> = st
            .compose
            .images
            .iter()
            .map(|i| interpolate(i, &lookup))
            .collect();
        let used: Vec<&PreparedImage> = images.iter().filter(|i| refs.contains(&i.name)).collect();
        let fingerprint = fingerprint(&st.name, &contents, &used, &variables);
        stacks.push(PreparedStack {
            name: st.name.clone(),
            file_name,
            contents,
            timeout: st.timeout,
            services: st.compose.services.clone(),
            images: used.iter().map(|i| i.name.clone()).collect(),
            variables,
            fingerprint,
        });
    }
    Ok(Prepared {
        networks: playbook.networks.clone(),
        stacks,
        images,
    })
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A name usable as one remote path component.
fn is_path_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

/// Whether compose interpolation in `text` may read `name`: `$NAME` or `${NAME...}`.
/// A false positive (`$NAMESPACE` for `NAME`) only sends one variable too many.
fn refers_to(text: &str, name: &str) -> bool {
    text.contains(&format!("${name}")) || text.contains(&format!("${{{name}"))
}

/// Compose-style interpolation of one value, enough for image references: `$NAME`,
/// `${NAME}`, `${NAME:-default}` / `${NAME-default}` (unset -> default), `$$` for `$`.
/// Unknown variables become empty, as compose makes them.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let inner = &r[..end];
            let (name, op) = match inner.find([':', '-', '?']) {
                Some(k) => (&inner[..k], &inner[k..]),
                None => (inner, ""),
            };
            let value = lookup(name);
            // `:-` replaces an unset or empty value, `-` only an unset one.
            let value = if let Some(d) = op.strip_prefix(":-") {
                value
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| d.to_string())
            } else if let Some(d) = op.strip_prefix('-') {
                value.unwrap_or_else(|| d.to_string())
            } else {
                value.unwrap_or_default()
            };
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..n]).unwrap_or_default());
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

/// The deploy fingerprint of a stack: a sha256 over its name, its compose file's bytes,
/// the archives of the shipped images it uses, and the names and values of the variables
/// it refers to. Values enter only as their own sha256, and the record lives in a
/// root-only file; independent of the order images and variables are given in.
pub fn fingerprint(
    stack: &str,
    compose: &[u8],
    images: &[&PreparedImage],
    variables: &[EnvVar],
) -> String {
    let mut h = Sha256::new();
    let mut field = |parts: &[&str]| {
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        h.update(b"\n");
    };
    field(&["rpiprov-deploy-v1", stack]);
    field(&["compose", &hex::encode(Sha256::digest(compose))]);
    let mut imgs: Vec<&&PreparedImage> = images.iter().collect();
    imgs.sort_by(|a, b| a.name.cmp(&b.name));
    for i in imgs {
        let format = match i.format {
            ImageFormat::DockerSave => "docker-save",
            ImageFormat::Rootfs => "rootfs",
        };
        let cmd = serde_json::to_string(&i.cmd).expect("strings serialise");
        field(&["image", &i.name, &i.sha256, format, &cmd]);
    }
    let mut vars: Vec<&EnvVar> = variables.iter().collect();
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    for v in vars {
        let value = hex::encode(Sha256::digest(v.value.expose().as_bytes()));
        field(&["var", &v.name, &value]);
    }
    hex::encode(h.finalize())
}
