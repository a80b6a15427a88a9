//! The local half of `deploy`: reads the stack files (with the files they refer to, as
//! one set: [`super::release`]), image archives and variables once, before any
//! connection, checks what would break a remote command (path-unsafe names, values with
//! newlines), interpolates what must be known before deploying (shipped image names, bind
//! sources, placement constraints) with the values that will be sent, and computes each
//! stack's deploy fingerprint. Its errors are usage errors: nothing was touched.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::images::PreparedImage;
use super::release::{self, Release};
use crate::config::compose::bind_source;
use crate::config::{ImageFormat, Playbook, VariableValue, Volume, interpolate};
use crate::docker::paths::current_release;
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
    pub timeout: Duration,
    /// The compose file's service names (without the stack prefix).
    pub services: Vec<String>,
    /// The shipped images this stack uses.
    pub images: Vec<String>,
    /// The images it pulls from a registry (those the playbook does not ship).
    pub pulled: Vec<String>,
    /// The variables the compose file refers to; only these are sent.
    pub variables: Vec<EnvVar>,
    /// The compose file and the files it refers to, as one set.
    pub release: Release,
    /// The services' bind mounts, interpolated, for the check on the nodes.
    pub binds: Vec<ServiceBinds>,
    /// sha256 of everything the deploy depends on; see [`fingerprint`].
    pub fingerprint: String,
    /// What its compose file needs of the manager's Docker CLI beyond 20.10
    /// (judged by [`super::cli::judge`] before any change).
    pub needs: Vec<crate::config::compose::Need>,
}

/// One service's bind-mount sources (absolute, as `docker stack deploy` makes them on the
/// manager; `~` left for the node's shell) and its placement constraints, interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinds {
    pub service: String,
    pub sources: Vec<String>,
    pub constraints: Vec<String>,
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

/// Reads the playbook's stack files (with the files they refer to), image archives and
/// variables.
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
    // Only what a stack reads is resolved: a command runs when its output is used.
    let used: std::collections::BTreeSet<&str> = playbook
        .stacks
        .iter()
        .flat_map(|s| s.compose.variables.iter().map(String::as_str))
        .collect();
    let mut vars = Vec::new();
    for v in playbook
        .variables
        .iter()
        .filter(|v| used.contains(v.name.as_str()))
    {
        if !is_env_name(&v.name) {
            return Err(format!(
                "variable {:?}: not a valid environment variable name",
                v.name
            ));
        }
        let (value, secret) = match &v.value {
            VariableValue::Plain(s) => (Secret::new(s.clone()), false),
            VariableValue::Dotenv { value, .. } => (Secret::new(value.clone()), true),
            VariableValue::Secret(s) => (s.clone(), true),
            VariableValue::SecretCommand(c) => {
                let value =
                    super::command::run(c).map_err(|e| format!("variable {}: {e}", v.name))?;
                (value, true)
            }
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
        let mut variables: Vec<EnvVar> = vars
            .iter()
            .filter(|v| st.compose.variables.contains(&v.name))
            .cloned()
            .collect();
        variables.extend(from_here(st, &env)?);
        // What `docker stack deploy` will read, with the values it will be sent.
        let lookup = |name: &str| {
            variables
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.value.expose().to_string())
        };
        let interpolate = |text: &str| {
            interpolate::substitute(text, &lookup)
                .map_err(|e| format!("stack {}: {text:?}: {e}", st.name))
        };
        // `image: lab/httpd:${TAG}` names a shipped image once interpolated.
        let mut refs = Vec::new();
        for i in &st.compose.images {
            refs.push(interpolate(i)?);
        }
        let used: Vec<&PreparedImage> = images.iter().filter(|i| refs.contains(&i.name)).collect();
        let release = release::build(&st.name, &st.file, &st.compose, &|p: &Path| read(p))?;
        let compose_dir = format!(
            "{}/{}",
            current_release(&st.name),
            release.compose.rsplit_once('/').map_or("", |(d, _)| d)
        );
        let mut binds = Vec::new();
        for m in &st.compose.mounts {
            let mut sources = Vec::new();
            for v in &m.volumes {
                let text = match v {
                    Volume::Short(t) | Volume::Bind(t) => interpolate(t)?,
                };
                if let Some(src) = bind_source(v, &text) {
                    // Relative sources are the manager's compose folder's, as the CLI
                    // makes them; `~` is the home of whoever runs the check there.
                    let src = if src.starts_with('/') || src.starts_with('~') {
                        src
                    } else {
                        crate::config::normalize_path(&Path::new(&compose_dir).join(&src))
                            .display()
                            .to_string()
                    };
                    if !sources.contains(&src) {
                        sources.push(src);
                    }
                }
            }
            if sources.is_empty() {
                continue;
            }
            let mut constraints = Vec::new();
            for c in &m.constraints {
                constraints.push(interpolate(c)?);
            }
            binds.push(ServiceBinds {
                service: m.service.clone(),
                sources,
                constraints,
            });
        }
        let fingerprint = fingerprint(&st.name, &release.id, &used, &variables);
        stacks.push(PreparedStack {
            name: st.name.clone(),
            timeout: st.timeout,
            services: st.compose.services.clone(),
            images: used.iter().map(|i| i.name.clone()).collect(),
            pulled: refs
                .iter()
                .filter(|r| !used.iter().any(|i| &i.name == *r))
                .cloned()
                .collect(),
            variables,
            release,
            binds,
            fingerprint,
            needs: st.compose.needs.clone(),
        });
    }
    Ok(Prepared {
        networks: playbook.networks.clone(),
        stacks,
        images,
    })
}

/// The values of the stack's `environment:` entries without one, from this machine's
/// environment, as `docker stack deploy` takes them from the shell that runs it: sent
/// with the variables (stdin, never a command line) and, as they may be passwords,
/// redacted from what the manager says. One this machine does not have is not sent.
fn from_here(
    st: &crate::config::Stack,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<EnvVar>, String> {
    let mut out = Vec::new();
    for f in &st.compose.from_here {
        let Some(value) = env(&f.name) else {
            continue;
        };
        if value.contains(['\n', '\0']) {
            return Err(format!(
                "stack {}: {}: {} from this machine's environment contains a newline or NUL byte, which cannot be passed to docker stack deploy",
                st.name, f.place, f.name
            ));
        }
        out.push(EnvVar {
            name: f.name.clone(),
            value: Secret::new(value),
            secret: true,
        });
    }
    Ok(out)
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

/// The deploy fingerprint of a stack: a sha256 over its name, its file set (the compose
/// file and every file it refers to, through the release's id), the archives of the
/// shipped images it uses, and the names and values of the variables it refers to. Values
/// enter only as their own sha256, and the record lives in a root-only file; independent
/// of the order images and variables are given in.
pub fn fingerprint(
    stack: &str,
    release: &str,
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
    field(&["rpiprov-deploy-v2", stack]);
    field(&["release", release]);
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
