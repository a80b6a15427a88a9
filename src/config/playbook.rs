//! The playbook file: overlay networks, stacks in order (each compose file checked by
//! [`super::compose`]), images shipped as archives, and deploy variables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Diagnostic, Source};
use super::local::Limit;
use super::model::{Image, ImageFormat, Network, Playbook, Stack, Variable, VariableValue};
use super::paths::Containment;
use super::toml_file::TomlFile;
use super::{compose, duration, names, paths};

const DEFAULT_STACK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    #[serde(default)]
    network: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    stack: Vec<Spanned<RawStack>>,
    #[serde(default)]
    image: Vec<Spanned<RawImage>>,
    #[serde(default)]
    variable: Vec<Spanned<RawVariable>>,
    variables: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: Option<Spanned<String>>,
    driver: Option<Spanned<String>>,
    attachable: Option<bool>,
    internal: Option<bool>,
    subnet: Option<Spanned<String>>,
    encrypted: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    name: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    order: Option<i64>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Option<Spanned<String>>,
    archive: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    cmd: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    name: Option<Spanned<String>>,
    value: Option<Spanned<toml::Value>>,
    env: Option<Spanned<String>>,
    secret: Option<Spanned<bool>>,
}

/// Reads and checks the playbook and every compose file it names. `None` when anything
/// is wrong (the reasons are in `diags`).
///
/// `named_at` is where the inventory names the playbook: a playbook that cannot be read
/// is reported there.
pub(crate) fn load(
    path: &Path,
    named_at: Option<&Diagnostic>,
    home: Option<&Path>,
    allow_outside: &[PathBuf],
    diags: &mut Vec<Diagnostic>,
) -> Option<Playbook> {
    let src = match Source::read(path) {
        Ok(src) => src,
        Err(d) => {
            diags.push(match named_at {
                Some(at) => Diagnostic {
                    message: format!("{}: {}", path.display(), d.message),
                    ..at.clone()
                },
                None => d,
            });
            return None;
        }
    };
    let file = TomlFile::parse(&src, diags)?;
    let raw = file.deserialize::<RawPlaybook>(diags)?;
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let base = paths::folder_of(path);
    let containment = Containment::new(&base, allow_outside);
    let mut p = Checker {
        file: &file,
        diags,
        base,
        home,
        containment: &containment,
    };

    let networks = p.networks(&raw.network);
    let declared: BTreeSet<String> = networks.iter().map(|n| n.name.clone()).collect();
    let variables = p.variables(&raw);
    let values: BTreeMap<String, Option<String>> = variables
        .iter()
        .map(|v| {
            let value = match &v.value {
                VariableValue::Plain(s) => Some(s.clone()),
                VariableValue::SecretEnv(_) | VariableValue::Secret(_) => None,
            };
            (v.name.clone(), value)
        })
        .collect();
    let stacks = p.stacks(&raw.stack, &declared, &values);
    let images = p.images(&raw.image, &stacks);

    let errors_after = diags.iter().filter(|d| d.is_error()).count();
    (errors_after == errors_before).then(|| Playbook {
        path: path.to_path_buf(),
        containment,
        networks,
        stacks,
        images,
        variables,
    })
}

struct Checker<'f, 'a, 'd> {
    file: &'f TomlFile<'a>,
    diags: &'d mut Vec<Diagnostic>,
    base: PathBuf,
    home: Option<&'f Path>,
    /// Where the files it names (and those they name) may come from.
    containment: &'f Containment,
}

impl Checker<'_, '_, '_> {
    fn err(&mut self, span: &std::ops::Range<usize>, message: impl Into<String>) {
        self.diags.push(self.file.error(span, message));
    }

    /// A required string, reported at the table when missing.
    fn required<'s>(
        &mut self,
        table: &Spanned<impl Sized>,
        value: &'s Option<Spanned<String>>,
        key: &str,
    ) -> Option<&'s Spanned<String>> {
        if value.is_none() {
            self.diags.push(
                self.file
                    .missing(&table.span(), key, "required key is missing"),
            );
        }
        value.as_ref()
    }

    /// Reports the second and later uses of a name.
    fn unique(&mut self, seen: &mut HashMap<String, String>, name: &Spanned<String>, what: &str) {
        let here = self.file.path(&name.span());
        let here = here
            .rsplit_once('.')
            .map_or(here.clone(), |(table, _)| table.to_string());
        if let Some(first) = seen.get(name.get_ref()) {
            let message = format!(
                "duplicate {what} name \"{}\" (first in {first})",
                name.get_ref()
            );
            self.err(&name.span(), message);
        } else {
            seen.insert(name.get_ref().clone(), here);
        }
    }

    fn networks(&mut self, raw: &[Spanned<RawNetwork>]) -> Vec<Network> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for n in raw {
            let r = n.get_ref();
            let Some(name) = self.required(n, &r.name, "name") else {
                continue;
            };
            let mut ok = true;
            if let Err(e) = names::network_name(name.get_ref()) {
                self.err(&name.span(), e);
                ok = false;
            }
            self.unique(&mut seen, name, "network");
            let driver = r
                .driver
                .as_ref()
                .map_or("overlay", |d| d.get_ref().as_str());
            if driver != "overlay"
                && let Some(d) = &r.driver
            {
                self.err(
                    &d.span(),
                    format!("driver \"{driver}\" is not supported: only \"overlay\" networks span the swarm"),
                );
                ok = false;
            }
            if let Some(s) = &r.subnet
                && let Err(e) = names::cidr(s.get_ref())
            {
                self.err(&s.span(), e);
                ok = false;
            }
            if ok {
                out.push(Network {
                    name: name.get_ref().clone(),
                    driver: driver.to_string(),
                    attachable: r.attachable.unwrap_or(false),
                    internal: r.internal.unwrap_or(false),
                    subnet: r.subnet.as_ref().map(|s| s.get_ref().clone()),
                    encrypted: r.encrypted.unwrap_or(false),
                });
            }
        }
        out
    }

    fn stacks(
        &mut self,
        raw: &[Spanned<RawStack>],
        declared: &BTreeSet<String>,
        variables: &BTreeMap<String, Option<String>>,
    ) -> Vec<Stack> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (position, s) in raw.iter().enumerate() {
            let r = s.get_ref();
            let name = self.required(s, &r.name, "name");
            let file = self.required(s, &r.file, "file");
            let (Some(name), Some(file)) = (name, file) else {
                continue;
            };
            let name_ok = match names::stack_name(name.get_ref()) {
                Ok(()) => true,
                Err(e) => {
                    self.err(&name.span(), e);
                    false
                }
            };
            self.unique(&mut seen, name, "stack");
            let timeout = match &r.timeout {
                None => DEFAULT_STACK_TIMEOUT,
                Some(t) => match duration::parse(t.get_ref()) {
                    Ok(d) => d,
                    Err(e) => {
                        self.err(&t.span(), e);
                        DEFAULT_STACK_TIMEOUT
                    }
                },
            };
            let path = match paths::resolve(file.get_ref(), &self.base, self.home) {
                Ok(p) => p,
                Err(e) => {
                    self.err(&file.span(), e);
                    continue;
                }
            };
            if let Err(e) = self.containment.file(&path, Limit::Text) {
                self.err(&file.span(), e);
                continue;
            }
            let compose = match Source::read(&path) {
                Ok(src) => {
                    let ctx = compose::Context {
                        stack: if name_ok { name.get_ref().as_str() } else { "" },
                        networks: declared,
                        variables,
                        containment: self.containment,
                    };
                    compose::check(&src, &ctx, self.diags)
                }
                Err(d) => {
                    self.err(&file.span(), format!("{}: {}", path.display(), d.message));
                    continue;
                }
            };
            out.push(Stack {
                name: name.get_ref().clone(),
                file: path,
                order: r
                    .order
                    .unwrap_or(i64::try_from(position).unwrap_or(i64::MAX)),
                timeout,
                compose,
            });
        }
        // A stable sort keeps file order among equal `order`s.
        out.sort_by_key(|s| s.order);
        out
    }

    fn images(&mut self, raw: &[Spanned<RawImage>], stacks: &[Stack]) -> Vec<Image> {
        let used: BTreeSet<&str> = stacks
            .iter()
            .flat_map(|s| s.compose.images.iter().map(String::as_str))
            .collect();
        // `${TAG}` references can name any image: nothing can be said then.
        let templated = used.iter().any(|i| i.contains('$'));
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for i in raw {
            let r = i.get_ref();
            let name = self.required(i, &r.name, "name");
            let archive = self.required(i, &r.archive, "archive");
            let (Some(name), Some(archive)) = (name, archive) else {
                continue;
            };
            let name_ok = names::image_reference(name.get_ref())
                .map_err(|e| self.err(&name.span(), e))
                .is_ok();
            self.unique(&mut seen, name, "image");
            if name_ok && !templated && !used.contains(name.get_ref().as_str()) {
                let message = format!("no stack uses image \"{}\"", name.get_ref());
                self.diags.push(self.file.warning(&name.span(), message));
            }
            let format = match r.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
                None | Some((_, "docker-save")) => ImageFormat::DockerSave,
                Some((_, "rootfs")) => ImageFormat::Rootfs,
                Some((f, _)) => {
                    self.err(&f.span(), "expected \"docker-save\" or \"rootfs\"");
                    continue;
                }
            };
            if let Some(cmd) = &r.cmd
                && format == ImageFormat::DockerSave
            {
                self.err(&cmd.span(), "cmd is only used with format = \"rootfs\" (a docker-save archive keeps its own)");
            }
            let path = match paths::resolve(archive.get_ref(), &self.base, self.home) {
                Ok(p) => p,
                Err(e) => {
                    self.err(&archive.span(), e);
                    continue;
                }
            };
            if let Err(e) = self.containment.file(&path, Limit::Image) {
                self.err(&archive.span(), e);
            }
            out.push(Image {
                name: name.get_ref().clone(),
                archive: path,
                format,
                cmd: r
                    .cmd
                    .as_ref()
                    .map(|c| c.get_ref().clone())
                    .unwrap_or_default(),
            });
        }
        out
    }

    fn variables(&mut self, raw: &RawPlaybook) -> Vec<Variable> {
        let mut seen = BTreeSet::new();
        let mut out: Vec<(usize, Variable)> = Vec::new();
        for (name, value) in raw.variables.iter().flatten() {
            if let Some(v) = self.variable(name, Some(value), None, None) {
                if !seen.insert(name.get_ref().clone()) {
                    continue;
                }
                out.push((name.span().start, v));
            }
        }
        for v in &raw.variable {
            let r = v.get_ref();
            let Some(name) = self.required(v, &r.name, "name") else {
                continue;
            };
            if r.value.is_some() == r.env.is_some() {
                self.diags.push(self.file.missing(
                    &v.span(),
                    "value",
                    "set exactly one of value = \"...\" or env = \"VAR\"",
                ));
                continue;
            }
            if !seen.insert(name.get_ref().clone()) {
                self.err(
                    &name.span(),
                    format!("duplicate variable name \"{}\"", name.get_ref()),
                );
                continue;
            }
            if let Some(var) =
                self.variable(name, r.value.as_ref(), r.env.as_ref(), r.secret.as_ref())
            {
                out.push((v.span().start, var));
            }
        }
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// One variable, from `[variables]` (`value` only, maybe an inline `{ env, secret }`
    /// table) or from a `[[variable]]` (`value` or `env`, and `secret`).
    fn variable(
        &mut self,
        name: &Spanned<String>,
        value: Option<&Spanned<toml::Value>>,
        env: Option<&Spanned<String>>,
        secret: Option<&Spanned<bool>>,
    ) -> Option<Variable> {
        if let Err(e) = names::variable_name(name.get_ref()) {
            self.err(&name.span(), e);
            return None;
        }
        let variable = |value| Variable {
            name: name.get_ref().clone(),
            value,
        };
        if let Some(env) = env {
            return self
                .env_variable(
                    env.get_ref(),
                    &env.span(),
                    secret.map(|s| (*s.get_ref(), s.span())),
                )
                .map(variable);
        }
        let value = value?;
        let span = value.span();
        let plain = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Table(t) => {
                let env = t.get("env").and_then(toml::Value::as_str);
                let secret = t.get("secret").map(|s| s.as_bool());
                let known = t.keys().all(|k| k == "env" || k == "secret");
                return match (env, secret, known) {
                    (Some(env), None | Some(Some(_)), true) => {
                        let secret = secret.flatten().map(|s| (s, span.clone()));
                        self.env_variable(env, &span, secret).map(variable)
                    }
                    _ => {
                        self.err(
                            &span,
                            "expected a value or { env = \"VAR\", secret = true }",
                        );
                        None
                    }
                };
            }
            _ => {
                self.err(&span, "expected a string, a number, true or false");
                return None;
            }
        };
        if secret.is_some_and(|s| *s.get_ref()) {
            self.err(
                &span,
                "a secret must not be written in the playbook: use env = \"VAR\" with secret = true",
            );
            return None;
        }
        // One `NAME=value` per line of `docker stack deploy`'s stdin (see deploy's
        // preparation, which refuses it too): said by `check`, not first at deploy.
        if plain.contains(['\n', '\0']) {
            self.err(
                &span,
                "the value contains a newline or NUL byte, which cannot be passed to docker stack deploy",
            );
            return None;
        }
        Some(variable(VariableValue::Plain(plain)))
    }

    fn env_variable(
        &mut self,
        env: &str,
        span: &std::ops::Range<usize>,
        secret: Option<(bool, std::ops::Range<usize>)>,
    ) -> Option<VariableValue> {
        if let Err(e) = names::variable_name(env) {
            self.err(span, e);
            return None;
        }
        if let Some((false, at)) = secret {
            self.err(
                &at,
                "a variable read from the environment is always treated as secret: remove secret = false, or write the value in the playbook",
            );
            return None;
        }
        Some(VariableValue::SecretEnv(env.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "version: \"3.8\"\nservices:\n  web:\n    image: lab/httpd:1\n";

    /// Writes the playbook and `web.yml` in a new folder and loads the playbook.
    fn load_text(text: &str) -> (tempfile::TempDir, Option<Playbook>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yml"), WEB).unwrap();
        std::fs::write(dir.path().join("httpd.tar"), "").unwrap();
        let path = dir.path().join("playbook.toml");
        std::fs::write(&path, text).unwrap();
        let mut diags = Vec::new();
        let playbook = load(&path, None, None, &[], &mut diags);
        let lines = diags
            .iter()
            .map(|d| {
                let kind = if d.is_error() { "error" } else { "warning" };
                format!(
                    "{kind}: {}:{}: {}: {}",
                    d.line.unwrap_or(0),
                    d.column.unwrap_or(0),
                    d.key_path,
                    d.message
                )
            })
            .collect();
        (dir, playbook, lines)
    }

    #[test]
    fn stacks_are_sorted_by_order_then_position() {
        let (dir, p, diags) = load_text(
            r#"
[[stack]]
name = "c"
file = "web.yml"
order = 20
[[stack]]
name = "a"
file = "./web.yml"
[[stack]]
name = "b"
file = "web.yml"
timeout = "90s"
[[stack]]
name = "d"
file = "web.yml"
order = 1
"#,
        );
        assert_eq!(diags, Vec::<String>::new());
        let p = p.unwrap();
        let names: Vec<(&str, i64)> = p
            .stacks
            .iter()
            .map(|s| (s.name.as_str(), s.order))
            .collect();
        assert_eq!(names, [("a", 1), ("d", 1), ("b", 2), ("c", 20)]);
        assert_eq!(p.stacks[0].file, dir.path().join("web.yml"));
        assert_eq!(p.stacks[0].timeout, Duration::from_secs(300));
        assert_eq!(p.stacks[2].timeout, Duration::from_secs(90));
        assert_eq!(p.stacks[0].compose.services, ["web"]);
        assert_eq!(p.stacks[0].compose.images, ["lab/httpd:1"]);
    }

    #[test]
    fn networks_images_and_variables() {
        let (dir, p, diags) = load_text(
            r#"
[[network]]
name = "DATA"
internal = true
subnet = "10.30.0.0/24"
encrypted = true

[[image]]
name = "lab/httpd:1"
archive = "httpd.tar"
format = "rootfs"
cmd = ["httpd-foreground"]

[[stack]]
name = "web"
file = "web.yml"

[variables]
DOMAIN = "example.org"
REPLICAS = 2
TOKEN = { env = "WEB_TOKEN", secret = true }

[[variable]]
name = "DB_PASSWORD"
env = "DB_PASSWORD"
"#,
        );
        assert_eq!(diags, Vec::<String>::new());
        let p = p.unwrap();
        assert_eq!(
            p.networks,
            [Network {
                name: "DATA".into(),
                driver: "overlay".into(),
                attachable: false,
                internal: true,
                subnet: Some("10.30.0.0/24".into()),
                encrypted: true,
            }]
        );
        assert_eq!(p.images.len(), 1);
        assert_eq!(p.images[0].archive, dir.path().join("httpd.tar"));
        assert_eq!(p.images[0].format, ImageFormat::Rootfs);
        assert_eq!(p.images[0].cmd, ["httpd-foreground"]);
        let vars: Vec<String> = p
            .variables
            .iter()
            .map(|v| match &v.value {
                VariableValue::Plain(s) => format!("{}={s}", v.name),
                VariableValue::SecretEnv(e) => format!("{}=${e}", v.name),
                VariableValue::Secret(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            vars,
            [
                "DOMAIN=example.org",
                "REPLICAS=2",
                "TOKEN=$WEB_TOKEN",
                "DB_PASSWORD=$DB_PASSWORD"
            ]
        );
    }

    #[test]
    fn each_error_message() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[[stack]]\nfile = \"web.yml\"",
                &["error: 1:1: stack[0].name: required key is missing"],
            ),
            (
                "[[stack]]\nname = \"web\"\nfile = \"web.yml\"\ntimeout = \"soon\"",
                &[
                    "error: 4:11: stack[0].timeout: invalid duration \"soon\": use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\"",
                ],
            ),
            (
                "[[stack]]\nname = \"web\"\nfile = \"web.yml\"\norder = \"1\"",
                &["error: 4:9: stack[0].order: expected an integer, found string \"1\""],
            ),
            (
                "[[network]]\nname = \"my.net\"",
                &[
                    "error: 2:8: network[0].name: invalid network name \"my.net\": use letters, digits, '-' and '_', starting and ending with a letter or digit",
                ],
            ),
            (
                "[[image]]\nname = \"x:1\"\narchive = \"httpd.tar\"\nformat = \"oci\"",
                &[
                    "warning: 2:8: image[0].name: no stack uses image \"x:1\"",
                    "error: 4:10: image[0].format: expected \"docker-save\" or \"rootfs\"",
                ],
            ),
            (
                "[[image]]\nname = \"lab/httpd:1\"\narchive = \"httpd.tar\"\ncmd = [\"x\"]\n[[stack]]\nname = \"web\"\nfile = \"web.yml\"",
                &[
                    "error: 4:7: image[0].cmd: cmd is only used with format = \"rootfs\" (a docker-save archive keeps its own)",
                ],
            ),
            (
                "[[image]]\nname = \"other:1\"\narchive = \"httpd.tar\"",
                &["warning: 2:8: image[0].name: no stack uses image \"other:1\""],
            ),
            (
                "[[variable]]\nname = \"A\"\nvalue = \"1\"\nenv = \"B\"",
                &[
                    "error: 1:1: variable[0].value: set exactly one of value = \"...\" or env = \"VAR\"",
                ],
            ),
            (
                "[variables]\nA = [1]\nB = { env = \"X\", other = 1 }\n\"C D\" = \"x\"",
                &[
                    "error: 2:5: variables.A: expected a string, a number, true or false",
                    "error: 3:5: variables.B: expected a value or { env = \"VAR\", secret = true }",
                    "error: 4:1: variables.\"C D\": invalid variable name \"C D\": use letters, digits and '_', not starting with a digit",
                ],
            ),
            // Issue 18: said by check, not first at deploy.
            (
                "[variables]\nA = \"one\\ntwo\"\n[[variable]]\nname = \"B\"\nvalue = \"x\\u0000\"",
                &[
                    "error: 2:5: variables.A: the value contains a newline or NUL byte, which cannot be passed to docker stack deploy",
                    "error: 5:9: variable[0].value: the value contains a newline or NUL byte, which cannot be passed to docker stack deploy",
                ],
            ),
            (
                "[[stacks]]\nname = \"web\"",
                &[
                    "error: 1:3: stacks: unknown key, expected one of: network, stack, image, variable, variables",
                ],
            ),
        ];
        for (text, expected) in cases {
            let (_dir, _, diags) = load_text(text);
            assert_eq!(diags, *expected, "{text}");
        }
    }
}
