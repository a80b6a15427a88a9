//! The playbook file: overlay networks, stacks in order (each compose file checked by
//! [`super::compose`]), images shipped as archives, and deploy variables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Diagnostic, Severity, Source};
use super::model::{
    Compose, Image, ImageFormat, Network, Playbook, Stack, ValueCommand, Variable, VariableValue,
};
use super::paths::Containment;
use super::toml_file::TomlFile;
use super::{compose, dotenv, duration, names, paths};

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
    env_file: Option<Spanned<toml::Value>>,
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
    command: Option<Spanned<toml::Value>>,
    secret: Option<Spanned<bool>>,
    timeout: Option<Spanned<String>>,
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
    env: &dyn Fn(&str) -> Option<String>,
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
    let mut variables = p.variables(&raw);
    let from_files = p.dotenv(raw.env_file.as_ref(), &variables, env);
    variables.extend(from_files);
    let values: BTreeMap<String, Option<String>> = variables
        .iter()
        .map(|v| (v.name.clone(), v.value.known().map(String::from)))
        .collect();
    let stacks = p.stacks(&raw.stack, &declared, &values);
    for st in &stacks {
        unset_here(&st.compose, &|k| env(k).is_some(), p.diags);
    }
    let images = p.images(&raw.image, &stacks);

    let errors_after = diags.iter().filter(|d| d.is_error()).count();
    (errors_after == errors_before).then(|| Playbook {
        path: path.to_path_buf(),
        networks,
        stacks,
        images,
        variables,
    })
}

/// A warning for each `environment:` entry without a value that `deploy` would take
/// from this machine's environment, where this machine does not have it.
fn unset_here(compose: &Compose, is_set: &dyn Fn(&str) -> bool, diags: &mut Vec<Diagnostic>) {
    for f in compose
        .from_here
        .iter()
        .filter(|f| !f.empty && !is_set(&f.name))
    {
        let name = &f.name;
        diags.push(Diagnostic {
            severity: Severity::Warning,
            file: f.place.file.clone(),
            line: f.place.line,
            column: f.place.column,
            key_path: f.place.key_path.clone(),
            message: format!("{name} has no value in the file: docker stack deploy takes it from the environment of the shell that deploys, and rpiprov's deploy sends this machine's; {name} is not set here, so the service would get no value for it"),
        });
    }
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
            } else if let Some(p) = names::Predefined::of(name.get_ref()) {
                let p = p.name();
                self.err(
                    &name.span(),
                    format!("\"{p}\" is one of Docker's own networks (host, bridge, none): every node has it already, and Docker can neither create nor remove it; a stack uses it without a [[network]], as external: true with name: {p}"),
                );
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
            if let Err(e) = self.containment.file(&path) {
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
            if let Err(e) = self.containment.file(&path) {
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
            if let Some(v) = self.variable(name, Spec::of_value(value)) {
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
            let given = [r.value.is_some(), r.env.is_some(), r.command.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                self.diags.push(self.file.missing(
                    &v.span(),
                    "value",
                    "set exactly one of value = \"...\", env = \"VAR\" or command = [\"PROGRAM\", \"ARG\"...]",
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
            let spec = Spec {
                value: r.value.as_ref().map(|x| (x.get_ref(), x.span())),
                env: r.env.as_ref().map(|x| (x.get_ref().as_str(), x.span())),
                command: r.command.as_ref().map(|x| (x.get_ref(), x.span())),
                secret: r.secret.as_ref().map(|x| (*x.get_ref(), x.span())),
                timeout: r.timeout.as_ref().map(|x| (x.get_ref().as_str(), x.span())),
            };
            if let Some(var) = self.variable(name, Ok(spec)) {
                out.push((v.span().start, var));
            }
        }
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// One variable, from `[variables]` (a value, or an inline `{ env, command, secret,
    /// timeout }` table) or from a `[[variable]]`.
    fn variable(
        &mut self,
        name: &Spanned<String>,
        spec: Result<Spec, Range<usize>>,
    ) -> Option<Variable> {
        if let Err(e) = names::variable_name(name.get_ref()) {
            self.err(&name.span(), e);
            return None;
        }
        let spec = match spec {
            Ok(s) => s,
            Err(span) => {
                self.err(
                    &span,
                    "expected a value, { env = \"VAR\", secret = true } or { command = [\"PROGRAM\", \"ARG\"...], secret = true }",
                );
                return None;
            }
        };
        let variable = |value| Variable {
            name: name.get_ref().clone(),
            value,
        };
        if let Some((_, at)) = spec.timeout.as_ref().filter(|_| spec.command.is_none()) {
            self.err(
                at,
                "timeout is only for a command's output: command = [...]",
            );
            return None;
        }
        if let Some((env, span)) = spec.env {
            return self.env_variable(env, &span, spec.secret).map(variable);
        }
        if let Some((command, span)) = spec.command {
            return self
                .command_variable(command, &span, spec.secret, spec.timeout)
                .map(variable);
        }
        let (value, span) = spec.value?;
        let plain = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                self.err(&span, "expected a string, a number, true or false");
                return None;
            }
        };
        if spec.secret.is_some_and(|(s, _)| s) {
            self.err(
                &span,
                "a secret must not be written in the playbook: use env = \"VAR\" or command = [...] with secret = true",
            );
            return None;
        }
        Some(variable(VariableValue::Plain(plain)))
    }

    fn env_variable(
        &mut self,
        env: &str,
        span: &Range<usize>,
        secret: Option<(bool, Range<usize>)>,
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

    /// `command = ["pass", "show", "pi/db"]`: run without a shell, on this machine, when
    /// the value is needed; its output is a secret.
    fn command_variable(
        &mut self,
        command: &toml::Value,
        span: &Range<usize>,
        secret: Option<(bool, Range<usize>)>,
        timeout: Option<(&str, Range<usize>)>,
    ) -> Option<VariableValue> {
        let argv: Option<Vec<String>> = command
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect());
        let Some(argv) = argv.filter(|a| a.first().is_some_and(|p| !p.is_empty())) else {
            self.err(
                span,
                "command: expected a list of strings, the program first: [\"pass\", \"show\", \"pi/db\"]",
            );
            return None;
        };
        if let Some((false, at)) = secret {
            self.err(
                &at,
                "a command's output is always treated as secret: remove secret = false, or write the value in the playbook",
            );
            return None;
        }
        let timeout = match timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some((t, at)) => match duration::parse(t) {
                Ok(d) => d,
                Err(e) => {
                    self.err(&at, e);
                    return None;
                }
            },
        };
        Some(VariableValue::SecretCommand(ValueCommand { argv, timeout }))
    }

    /// The playbook's `env_file`: one dotenv file or a list, relative to its folder, read
    /// as Docker Compose reads them (`env` for keys alone and `${VAR}`). A name the
    /// playbook defines keeps the playbook's value; a later file wins over an earlier one.
    fn dotenv(
        &mut self,
        raw: Option<&Spanned<toml::Value>>,
        defined: &[Variable],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Variable> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let span = raw.span();
        let files: Option<Vec<&str>> = match raw.get_ref() {
            toml::Value::String(s) => Some(vec![s.as_str()]),
            toml::Value::Array(a) => a.iter().map(toml::Value::as_str).collect(),
            _ => None,
        };
        let Some(files) = files else {
            self.err(&span, "expected a file name or a list of file names");
            return Vec::new();
        };
        let mut out: Vec<Variable> = Vec::new();
        for f in files {
            for (name, value, path) in self.dotenv_file(f, &span, env) {
                if defined.iter().any(|d| d.name == name) {
                    continue;
                }
                out.retain(|v| v.name != name);
                out.push(Variable {
                    name,
                    value: VariableValue::Dotenv {
                        value,
                        file: path.clone(),
                    },
                });
            }
        }
        out
    }

    /// One dotenv file's variables, each with the file.
    fn dotenv_file(
        &mut self,
        text: &str,
        span: &Range<usize>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(String, String, PathBuf)> {
        let path = match paths::resolve(text, &self.base, self.home) {
            Ok(p) => p,
            Err(e) => {
                self.err(span, e);
                return Vec::new();
            }
        };
        let src = match Source::read(&path) {
            Ok(src) => src,
            Err(d) => {
                self.err(span, format!("{}: {}", path.display(), d.message));
                return Vec::new();
            }
        };
        let at = |line: usize, key: &str, severity, message: String| Diagnostic {
            severity,
            file: path.clone(),
            line: Some(line),
            column: None,
            key_path: key.to_string(),
            message,
        };
        let entries = match dotenv::parse(&src.text, env) {
            Ok(e) => e,
            Err(e) => {
                self.diags.push(at(e.line, "", Severity::Error, e.message));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for e in entries {
            if let Err(why) = names::variable_name(&e.key) {
                let message = format!("{why}: docker stack deploy cannot be given it; left out");
                self.diags
                    .push(at(e.line, &e.key, Severity::Warning, message));
                continue;
            }
            out.push((e.key, e.value, path.clone()));
        }
        out
    }
}

/// How long a command that gives a variable's value may take by default: long enough for
/// a password manager to ask for its passphrase.
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a variable is read from, as written: one of `value`, `env` and `command`, with
/// `secret` and `timeout`, each with its place.
struct Spec<'v> {
    value: Option<(&'v toml::Value, Range<usize>)>,
    env: Option<(&'v str, Range<usize>)>,
    command: Option<(&'v toml::Value, Range<usize>)>,
    secret: Option<(bool, Range<usize>)>,
    timeout: Option<(&'v str, Range<usize>)>,
}

impl<'v> Spec<'v> {
    /// A value of `[variables]`: written, or an inline table (whose keys have no places of
    /// their own: the table's is theirs). `Err`: the table's place, when it is not one.
    fn of_value(value: &'v Spanned<toml::Value>) -> Result<Spec<'v>, Range<usize>> {
        let span = value.span();
        let toml::Value::Table(t) = value.get_ref() else {
            return Ok(Spec {
                value: Some((value.get_ref(), span)),
                env: None,
                command: None,
                secret: None,
                timeout: None,
            });
        };
        let known = t
            .keys()
            .all(|k| matches!(k.as_str(), "env" | "command" | "secret" | "timeout"));
        let env = t.get("env").map(|e| e.as_str());
        let secret = t.get("secret").map(toml::Value::as_bool);
        let timeout = t.get("timeout").map(toml::Value::as_str);
        let command = t.get("command");
        let one = usize::from(env.is_some()) + usize::from(command.is_some()) == 1;
        if !known
            || !one
            || matches!(env, Some(None))
            || matches!(secret, Some(None))
            || matches!(timeout, Some(None))
        {
            return Err(span);
        }
        Ok(Spec {
            value: None,
            env: env.flatten().map(|e| (e, span.clone())),
            command: command.map(|c| (c, span.clone())),
            secret: secret.flatten().map(|s| (s, span.clone())),
            timeout: timeout.flatten().map(|t| (t, span.clone())),
        })
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
        let playbook = load(
            &path,
            None,
            None,
            &[],
            &|k| (k == "SET_HERE").then(|| "here".to_string()),
            &mut diags,
        );
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

[[variable]]
name = "API_KEY"
command = ["pass", "show", "pi/api"]
secret = true
timeout = "2m"
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
                VariableValue::Dotenv { value, file } => format!(
                    "{}={value} ({})",
                    v.name,
                    file.strip_prefix(dir.path()).unwrap().display()
                ),
                VariableValue::SecretCommand(c) => {
                    format!("{}=$({}) {:?}", v.name, c.argv.join(" "), c.timeout)
                }
                VariableValue::Secret(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            vars,
            [
                "DOMAIN=example.org",
                "REPLICAS=2",
                "TOKEN=$WEB_TOKEN",
                "DB_PASSWORD=$DB_PASSWORD",
                "API_KEY=$(pass show pi/api) 120s",
            ]
        );
    }

    /// Issue 19 item 6: dotenv files as Compose reads them, and which source wins: the
    /// playbook's own variables, then the later file, then the earlier one.
    #[test]
    fn variables_from_dotenv_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yml"), WEB).unwrap();
        std::fs::create_dir(dir.path().join("stacks")).unwrap();
        std::fs::write(
            dir.path().join("stacks/.env"),
            "# the stack's settings\nDOMAIN=example.org\nexport TAG='1.2'\nDB_PASSWORD=\"p w\" # secret\nSET_HERE\nNOT_SET\nURL=https://${DOMAIN}/x\nBAD.NAME=1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("override.env"), "TAG=2\n").unwrap();
        let path = dir.path().join("playbook.toml");
        std::fs::write(
            &path,
            "env_file = [\"stacks/.env\", \"override.env\"]\n[variables]\nDOMAIN = \"pi.lan\"\n[[stack]]\nname = \"web\"\nfile = \"web.yml\"\n",
        )
        .unwrap();
        let mut diags = Vec::new();
        let env = |k: &str| (k == "SET_HERE").then(|| "from here".to_string());
        let p = load(&path, None, None, &[], &env, &mut diags).unwrap();
        let shown: Vec<String> = p
            .variables
            .iter()
            .map(|v| match &v.value {
                VariableValue::Plain(s) => format!("{}={s}", v.name),
                VariableValue::Dotenv { value, file } => format!(
                    "{}={value} ({})",
                    v.name,
                    file.strip_prefix(dir.path()).unwrap().display()
                ),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "DOMAIN=pi.lan",
                "DB_PASSWORD=p w (stacks/.env)",
                "SET_HERE=from here (stacks/.env)",
                "URL=https://example.org/x (stacks/.env)",
                "TAG=2 (override.env)",
            ]
        );
        let diags: Vec<String> = diags
            .iter()
            .map(|d| {
                d.to_string()
                    .replace(&format!("{}/", dir.path().display()), "")
            })
            .collect();
        assert_eq!(
            diags,
            [
                "stacks/.env:8: BAD.NAME: invalid variable name \"BAD.NAME\": use letters, digits and '_', not starting with a digit: docker stack deploy cannot be given it; left out"
            ]
        );
        // A file that is missing or that Compose cannot read is an error at its place.
        std::fs::write(dir.path().join("bad.env"), "A=1\nB=\"open\n").unwrap();
        std::fs::write(&path, "env_file = [\"bad.env\", \"gone.env\"]\n").unwrap();
        let mut diags = Vec::new();
        assert!(load(&path, None, None, &[], &env, &mut diags).is_none());
        let diags: Vec<String> = diags
            .iter()
            .map(|d| {
                d.to_string()
                    .replace(&format!("{}/", dir.path().display()), "")
            })
            .collect();
        assert_eq!(
            diags,
            [
                "bad.env:2: unterminated quoted value \"open",
                "playbook.toml:1:12: env_file: gone.env: cannot read: No such file or directory",
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
                "[[network]]\nname = \"host\"",
                &[
                    "error: 2:8: network[0].name: \"host\" is one of Docker's own networks (host, bridge, none): every node has it already, and Docker can neither create nor remove it; a stack uses it without a [[network]], as external: true with name: host",
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
                    "error: 1:1: variable[0].value: set exactly one of value = \"...\", env = \"VAR\" or command = [\"PROGRAM\", \"ARG\"...]",
                ],
            ),
            (
                "[variables]\nA = [1]\nB = { env = \"X\", other = 1 }\n\"C D\" = \"x\"",
                &[
                    "error: 2:5: variables.A: expected a string, a number, true or false",
                    "error: 3:5: variables.B: expected a value, { env = \"VAR\", secret = true } or { command = [\"PROGRAM\", \"ARG\"...], secret = true }",
                    "error: 4:1: variables.\"C D\": invalid variable name \"C D\": use letters, digits and '_', not starting with a digit",
                ],
            ),
            (
                "[variables]\nA = { command = [] }\nB = { command = [\"x\"], secret = false }\nC = { env = \"X\", timeout = \"1s\" }\nD = { command = [\"x\"], timeout = \"soon\" }",
                &[
                    "error: 2:5: variables.A: command: expected a list of strings, the program first: [\"pass\", \"show\", \"pi/db\"]",
                    "error: 3:5: variables.B: a command's output is always treated as secret: remove secret = false, or write the value in the playbook",
                    "error: 4:5: variables.C: timeout is only for a command's output: command = [...]",
                    "error: 5:5: variables.D: invalid duration \"soon\": use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\"",
                ],
            ),
            (
                "[[stacks]]\nname = \"web\"",
                &[
                    "error: 1:3: stacks: unknown key, expected one of: network, stack, image, variable, variables, env_file",
                ],
            ),
        ];
        for (text, expected) in cases {
            let (_dir, _, diags) = load_text(text);
            assert_eq!(diags, *expected, "{text}");
        }
    }
}
