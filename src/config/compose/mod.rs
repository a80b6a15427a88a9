//! What `docker stack deploy` will make of one compose file, found before deploying: it
//! parses as a version 3 file with a `services` mapping, names are valid, every network a
//! service uses is declared, external networks are the playbook's, and keys that swarm
//! mode ignores or refuses are reported.
//!
//! Beside this file, one concern each:
//! - `files`: the local files the compose file refers to (`env_file`, `configs.*.file`,
//!   `secrets.*.file`), resolved as `docker stack deploy` resolves them, and the configs
//!   and secrets rpiprov names after their content ([`object_name`]);
//! - `variables`: `${VAR}` interpolation, checked against the playbook's variables
//!   (the rules are [`super::interpolate`]'s, shared with `deploy`);
//! - `mounts`: bind mounts and placement constraints, for the check on the nodes;
//! - `schema`: the keys and types of each file format version (3.0 to 3.13), as the
//!   Docker CLI validates them;
//! - `versions`: which Docker CLI reads which file format, and what a file needs of the
//!   CLI that deploys it ([`Need`]): `check` warns of what Debian 12's CLI (20.10) does not
//!   read, `deploy` refuses what the manager's CLI does not.

mod files;
mod mounts;
mod networks;
mod schema;
mod variables;
mod versions;

use std::collections::{BTreeMap, BTreeSet};

use super::diag::{Diagnostic, Severity, Source};
use super::model::Compose;
use super::names;
use super::paths::Containment;
use super::yaml::{self, Entry, Mark, Node, Ty};

pub use files::{HASH_LEN, object_name};
pub use mounts::bind_source;
pub use versions::{
    CliVersion, Feature, FileVersion, FileVersionName, NEWEST_BY_DEFAULT, Need, OLDEST, Place,
    Reads, YAML_1_2, newest_minor, refusals,
};

/// What a compose file is checked against: the playbook around it.
pub(crate) struct Context<'a> {
    /// The stack's name (empty when the name itself is invalid).
    pub stack: &'a str,
    /// The playbook's network names.
    pub networks: &'a BTreeSet<String>,
    /// The playbook's variables: the value when it is written in the playbook, `None`
    /// when it is read from the environment at deploy (a secret).
    pub variables: &'a BTreeMap<String, Option<String>>,
    /// Where the files it refers to may come from.
    pub containment: &'a Containment,
}

/// Service keys `docker stack deploy` ignores, with what to do instead. The list follows
/// the Docker CLI's compose loader (its unsupported and deprecated properties) and what
/// its converter to swarm services never reads (`depends_on`, `tmpfs`).
const IGNORED: &[(&str, &str)] = &[
    (
        "build",
        "images are not built; build and push the image, or ship it with an [[image]]",
    ),
    ("cgroup_parent", "not supported in swarm mode"),
    ("cgroupns_mode", "not supported in swarm mode"),
    ("container_name", "swarm names the containers itself"),
    (
        "depends_on",
        "swarm starts services in no particular order; make the service wait or retry",
    ),
    ("devices", "not supported in swarm mode"),
    ("domainname", "not supported in swarm mode"),
    (
        "expose",
        "services on a shared network reach each other on any port",
    ),
    ("external_links", "use a shared overlay network"),
    ("ipc", "not supported in swarm mode"),
    (
        "links",
        "services on a shared network reach each other by service name",
    ),
    ("mac_address", "not supported in swarm mode"),
    (
        "network_mode",
        "services attach to overlay networks; use networks:",
    ),
    ("pid", "not supported in swarm mode"),
    ("privileged", "not supported in swarm mode"),
    ("security_opt", "not supported in swarm mode"),
    ("shm_size", "not supported in swarm mode"),
    ("tmpfs", "use a volumes entry with type: tmpfs"),
    ("userns_mode", "not supported in swarm mode"),
];

/// Service keys that make `docker stack deploy` fail, with the Docker CLI's advice.
const REFUSED: &[(&str, &str)] = &[
    ("cpu_quota", "set resource limits under deploy.resources"),
    ("cpu_shares", "set resource limits under deploy.resources"),
    ("cpuset", "set resource limits under deploy.resources"),
    ("extends", "extends is not supported"),
    ("mem_limit", "set resource limits under deploy.resources"),
    (
        "memswap_limit",
        "set resource limits under deploy.resources",
    ),
    (
        "volume_driver",
        "define the volume under the top-level volumes: with its driver",
    ),
    (
        "volumes_from",
        "define a top-level volume and mount it in each service",
    ),
];

/// Checks one compose file of a stack. Returns what the rest of rpiprov needs to know of
/// the file.
pub(crate) fn check(src: &Source, ctx: &Context, diags: &mut Vec<Diagnostic>) -> Compose {
    let stack = ctx.stack;
    let mut c = Checker { src, ctx, diags };
    let mut compose = Compose::default();
    let root = match yaml::parse(&src.text) {
        Err(e) => {
            c.error(Some(e.mark), "", format!("invalid YAML: {}", e.message));
            return compose;
        }
        Ok((root, errors)) => {
            for e in errors {
                c.error(Some(e.mark), &e.key_path, e.message);
            }
            root
        }
    };
    let Some(root) = root.filter(|r| !r.is_null()) else {
        c.error(
            None,
            "",
            "empty file: expected a compose file with a services: mapping",
        );
        return compose;
    };
    let Some(top) = root.entries() else {
        c.error(
            Some(root.mark()),
            "",
            format!("expected a mapping at the top level, found {}", root.kind()),
        );
        return compose;
    };

    let version = c.version(top, &mut compose);

    let networks = top.iter().find(|e| e.key == "networks");
    let mut defined = BTreeSet::new();
    if let Some(n) = networks {
        match n.value.entries() {
            Some(entries) => {
                let used = networks::used(top);
                for e in entries {
                    defined.insert(e.key.clone());
                    c.network(e, &used, &mut compose);
                }
            }
            None if n.value.is_null() => {}
            None => c.error(
                Some(n.key_mark),
                "networks",
                format!("expected a mapping, found {}", n.value.kind()),
            ),
        }
    }

    match top.iter().find(|e| e.key == "services") {
        None => c.error(
            None,
            "services",
            "missing: a compose file for a stack needs a services: mapping",
        ),
        Some(s) => match s.value.entries() {
            Some(services) if !services.is_empty() => {
                for e in services {
                    c.service(e, stack, &defined, &mut compose);
                    c.deploy_semantics(e, top, version, &mut compose.needs);
                }
            }
            Some(_) => c.error(
                Some(s.key_mark),
                "services",
                "no services: a stack needs at least one",
            ),
            None => c.error(
                Some(s.key_mark),
                "services",
                format!("expected a mapping of services, found {}", s.value.kind()),
            ),
        },
    }
    c.variables(&root, &mut compose);
    c.environment_from_here(top, &mut compose);
    c.files(top, &mut compose);
    c.mounts(top, &mut compose);
    c.non_string_keys(&root, "", &mut compose.needs);
    if let Some(version) = version {
        c.schema(&root, version, &mut compose.needs);
    }
    for n in &compose.needs {
        let mark = n
            .place
            .line
            .zip(n.place.column)
            .map(|(line, column)| Mark { line, column });
        c.warning(mark, &n.place.key_path, n.warning());
    }
    compose
}

fn describe(node: &Node) -> String {
    match node.as_str() {
        Some(s) => format!("{s:?}"),
        None => node.kind().to_string(),
    }
}

struct Checker<'a> {
    src: &'a Source,
    ctx: &'a Context<'a>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        mark: Option<Mark>,
        key_path: &str,
        message: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            file: self.src.path.clone(),
            line: mark.map(|m| m.line),
            column: mark.map(|m| m.column),
            key_path: key_path.to_string(),
            message: message.into(),
        });
    }

    fn error(&mut self, mark: Option<Mark>, key_path: &str, message: impl Into<String>) {
        self.push(Severity::Error, mark, key_path, message);
    }

    fn warning(&mut self, mark: Option<Mark>, key_path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, mark, key_path, message);
    }

    /// Keys Docker's YAML parser does not read as strings (`80:` is a number): the CLI
    /// refuses the file. `n:` is `false` to the CLI before 28.0 (YAML 1.1) and the string
    /// `n` since: a need.
    fn non_string_keys(&mut self, node: &Node, path: &str, needs: &mut Vec<Need>) {
        match node {
            Node::Map { entries, .. } => {
                for e in entries {
                    let sub = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    if e.key_ty == Ty::Bool && versions::yaml11_only_bool(&e.key) {
                        let feature = Feature::Yaml12Str {
                            text: e.key.clone(),
                        };
                        let place = self.place(Some(e.key_mark), &sub);
                        needs.push(Need::since(YAML_1_2, feature, place));
                    } else if e.key_ty != Ty::Str && e.key != "<<" {
                        self.error(
                            Some(e.key_mark),
                            &sub,
                            format!("YAML reads the key {:?} as {}, not a string, and docker stack deploy refuses it: quote it", e.key, match e.key_ty {
                                Ty::Bool => "a boolean",
                                Ty::Null => "null",
                                _ => "a number",
                            }),
                        );
                    }
                    self.non_string_keys(&e.value, &sub, needs);
                }
            }
            Node::Seq { items, .. } => {
                for (i, it) in items.iter().enumerate() {
                    self.non_string_keys(it, &format!("{path}[{i}]"), needs);
                }
            }
            Node::Scalar { .. } => {}
        }
    }

    /// The file's `version:`: what it says (also in `compose.version` as written), and
    /// the need of a CLI newer than 20.10 that it makes. `None` when no CLI reads it.
    fn version(&mut self, top: &[Entry], compose: &mut Compose) -> Option<FileVersion> {
        let Some(v) = top.iter().find(|e| e.key == "version") else {
            self.need(
                &mut compose.needs,
                NEWEST_BY_DEFAULT,
                Feature::NoVersion,
                None,
                "version",
            );
            return Some(FileVersion::Missing);
        };
        let Some(text) = v
            .value
            .as_str()
            .filter(|t| *t == "3" || t.starts_with("3."))
        else {
            self.error(
                Some(v.key_mark),
                "version",
                format!(
                    "docker stack deploy needs a version 3 file, found {}",
                    describe(&v.value)
                ),
            );
            return None;
        };
        compose.version = text.to_string();
        if v.value.ty() != Ty::Str {
            self.error(
                Some(v.key_mark),
                "version",
                format!("must be a string: docker stack deploy refuses a number; write version: \"{text}\""),
            );
        }
        let version = match text.strip_prefix("3.").map(|m| m.parse::<u8>()) {
            None => FileVersion::Major,
            Some(Ok(m)) if m <= versions::NEWEST_MINOR => FileVersion::Minor(m),
            Some(_) => {
                let newest = versions::NEWEST_MINOR;
                self.error(
                    Some(v.key_mark),
                    "version",
                    format!(
                        "version {text} is unknown to Docker: the CLI reads 3.0 to 3.{newest} (3.{newest} since CLI {}): use version: \"3.{newest}\" or lower",
                        versions::schema_since(newest)
                    ),
                );
                return None;
            }
        };
        if let FileVersion::Minor(minor) = version {
            let cli = versions::schema_since(minor);
            let feature = Feature::Version { minor };
            self.need(
                &mut compose.needs,
                cli,
                feature,
                Some(v.key_mark),
                "version",
            );
        }
        Some(version)
    }

    fn place(&self, mark: Option<Mark>, key_path: &str) -> Place {
        Place {
            file: self.src.path.clone(),
            line: mark.map(|m| m.line),
            column: mark.map(|m| m.column),
            key_path: key_path.to_string(),
        }
    }

    /// Records a need of a CLI later than 20.10 (any other is met everywhere).
    fn need(
        &self,
        needs: &mut Vec<Need>,
        cli: CliVersion,
        feature: Feature,
        mark: Option<Mark>,
        key_path: &str,
    ) {
        if cli <= OLDEST {
            return;
        }
        needs.push(Need::since(cli, feature, self.place(mark, key_path)));
    }

    /// The file against the keys and types of its version (the newest for `"3"` or none),
    /// collecting what it needs of the CLI. A place the checks above already found in
    /// error is not reported twice.
    fn schema(&mut self, root: &Node, version: FileVersion, needs: &mut Vec<Need>) {
        let before = self.diags.len();
        schema::Walk {
            c: self,
            version,
            minor: version.checked_as(),
            needs,
        }
        .node(root, &schema::Shape::Object(&schema::FILE), "", &[]);
        let found = self.diags.split_off(before);
        for d in found {
            let known = self
                .diags
                .iter()
                .any(|k| k.file == d.file && k.key_path == d.key_path && k.is_error());
            if !known {
                self.diags.push(d);
            }
        }
    }

    /// What the CLI refuses when it turns a service into a swarm service, beyond the
    /// schema: a deploy mode or restart condition swarm does not have, `replicas` on a
    /// global service, a secret or config the file does not declare. A job mode is a need
    /// of CLI 23 (met by any CLI that reads a file without `version:`).
    fn deploy_semantics(
        &mut self,
        e: &Entry,
        top: &[Entry],
        version: Option<FileVersion>,
        needs: &mut Vec<Need>,
    ) {
        let path = format!("services.{}", e.key);
        let literal = |n: &Node| n.as_str().filter(|s| !s.contains('$')).map(str::to_string);
        if let Some(deploy) = e.value.get("deploy") {
            let mode = deploy.value.get("mode");
            let mode_text = mode.and_then(|m| literal(&m.value));
            let mode_path = format!("{path}.deploy.mode");
            if let (Some(m), Some(text)) = (mode, &mode_text) {
                match text.as_str() {
                    "replicated" | "global" => {}
                    "replicated-job" | "global-job" => {
                        if version.is_some_and(|v| v.floor() < NEWEST_BY_DEFAULT) {
                            let feature = Feature::JobMode { mode: text.clone() };
                            let mark = Some(m.value.mark());
                            self.need(needs, NEWEST_BY_DEFAULT, feature, mark, &mode_path);
                        }
                    }
                    _ => self.error(
                        Some(m.value.mark()),
                        &mode_path,
                        format!("unknown deploy mode {text:?}: use replicated or global (or, with Docker CLI 23 or later, replicated-job or global-job)"),
                    ),
                }
            }
            if matches!(mode_text.as_deref(), Some("global" | "global-job"))
                && let Some(r) = deploy.value.get("replicas")
            {
                self.error(
                    Some(r.key_mark),
                    &format!("{path}.deploy.replicas"),
                    "replicas can only be used with mode: replicated or replicated-job",
                );
            }
            if let Some(c) = deploy
                .value
                .get("restart_policy")
                .and_then(|r| r.value.get("condition"))
                && let Some(text) = literal(&c.value)
                && !matches!(text.as_str(), "none" | "on-failure" | "any")
            {
                self.error(
                    Some(c.value.mark()),
                    &format!("{path}.deploy.restart_policy.condition"),
                    format!("unknown restart condition {text:?}: use none, on-failure or any"),
                );
            }
        }
        for kind in ["secrets", "configs"] {
            let declared: Vec<&str> = top
                .iter()
                .find(|t| t.key == kind)
                .and_then(|t| t.value.entries())
                .map(|es| es.iter().map(|x| x.key.as_str()).collect())
                .unwrap_or_default();
            let Some(Node::Seq { items, .. }) = e.value.get(kind).map(|x| &x.value) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let source = match item {
                    Node::Map { .. } => item.get("source").and_then(|s| s.value.as_str()),
                    _ => item.as_str(),
                };
                if let Some(name) = source
                    && !declared.contains(&name)
                {
                    self.error(
                        Some(item.mark()),
                        &format!("{path}.{kind}[{i}]"),
                        format!(
                            "{} {name:?} is not declared in the top-level {kind}: of this file",
                            &kind[..kind.len() - 1]
                        ),
                    );
                }
            }
        }
    }

    /// One service: its name, image, networks, and the keys swarm ignores or refuses.
    fn service(
        &mut self,
        e: &Entry,
        stack: &str,
        defined: &BTreeSet<String>,
        compose: &mut Compose,
    ) {
        let path = format!("services.{}", e.key);
        if let Err(msg) = names::service_name(&e.key, stack) {
            self.error(Some(e.key_mark), &path, msg);
        }
        compose.services.push(e.key.clone());
        let Some(keys) = e.value.entries() else {
            self.error(
                Some(e.key_mark),
                &path,
                format!("expected a mapping, found {}", e.value.kind()),
            );
            return;
        };
        for k in keys {
            let key_path = format!("{path}.{}", k.key);
            if let Some((_, why)) = IGNORED.iter().find(|(name, _)| *name == k.key) {
                self.warning(
                    Some(k.key_mark),
                    &key_path,
                    format!("ignored by docker stack deploy: {why}"),
                );
            } else if k.key == "restart" {
                self.warning(
                    Some(k.key_mark),
                    &key_path,
                    "docker stack deploy reports it as unsupported and only falls back to it without deploy.restart_policy; use deploy.restart_policy",
                );
            } else if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == k.key) {
                self.error(
                    Some(k.key_mark),
                    &key_path,
                    format!("refused by docker stack deploy: {why}"),
                );
            }
        }
        match e.value.get("image") {
            None => self.error(
                Some(e.key_mark),
                &path,
                "no image: docker stack deploy does not build images, set image:",
            ),
            Some(img) => match img.value.as_str() {
                Some(reference) => {
                    // `${TAG}` is substituted by docker from the deploy environment.
                    if !reference.contains('$')
                        && let Err(msg) = names::image_reference(reference)
                    {
                        self.error(Some(img.key_mark), &format!("{path}.image"), msg);
                    }
                    if !compose.images.iter().any(|i| i == reference) {
                        compose.images.push(reference.to_string());
                    }
                }
                None => self.error(
                    Some(img.key_mark),
                    &format!("{path}.image"),
                    format!("expected an image reference, found {}", img.value.kind()),
                ),
            },
        }
        if let Some(nets) = e.value.get("networks") {
            let used: Vec<(String, Mark, String)> = match &nets.value {
                Node::Seq { items, .. } => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| {
                        n.as_str()
                            .map(|s| (s.to_string(), n.mark(), format!("{path}.networks[{i}]")))
                    })
                    .collect(),
                Node::Map { entries, .. } => entries
                    .iter()
                    .map(|n| {
                        (
                            n.key.clone(),
                            n.key_mark,
                            format!("{path}.networks.{}", n.key),
                        )
                    })
                    .collect(),
                other => {
                    self.error(
                        Some(nets.key_mark),
                        &format!("{path}.networks"),
                        format!("expected a list or a mapping, found {}", other.kind()),
                    );
                    Vec::new()
                }
            };
            for (name, mark, key_path) in used {
                // Docker creates the stack's `default` network on demand.
                if name != "default" && !defined.contains(&name) {
                    self.error(
                        Some(mark),
                        &key_path,
                        format!("network \"{name}\" is not declared in the top-level networks: of this file"),
                    );
                }
            }
        }
    }
}

/// Checks `text` as the compose file `path` of stack `web`, with these playbook networks
/// and variables (`None`: a secret), files allowed from `root`: for the tests of this
/// module and its files.
#[cfg(test)]
pub(crate) fn check_text(
    path: &std::path::Path,
    text: &str,
    networks: &[&str],
    variables: &[(&str, Option<&str>)],
    root: &std::path::Path,
) -> (Compose, Vec<Diagnostic>) {
    let src = Source::new(path.to_path_buf(), text.into());
    let networks = networks.iter().map(ToString::to_string).collect();
    let variables = variables
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(String::from)))
        .collect();
    let containment = Containment::new(root, &[]);
    let ctx = Context {
        stack: "web",
        networks: &networks,
        variables: &variables,
        containment: &containment,
    };
    let mut diags = Vec::new();
    let compose = check(&src, &ctx, &mut diags);
    (compose, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, declared: &[&str]) -> (Compose, Vec<String>) {
        let (compose, diags) = check_text(
            std::path::Path::new("web.yml"),
            text,
            declared,
            &[],
            std::path::Path::new("."),
        );
        let lines = diags
            .iter()
            .map(|d| format!("{}: {d}", if d.is_error() { "error" } else { "warning" }))
            .collect();
        (compose, lines)
    }

    #[test]
    fn a_valid_file_fills_compose() {
        let (c, diags) = run(
            "version: \"3.8\"\nservices:\n  httpd:\n    image: httpd:2.4\n    networks: [INTERCO]\n  db:\n    image: postgis/postgis\n    networks:\n      DATA:\nnetworks:\n  INTERCO:\n    external: true\n  DATA:\n    external: true\n",
            &["DATA", "INTERCO"],
        );
        assert_eq!(diags, Vec::<String>::new());
        assert_eq!(c.services, ["httpd", "db"]);
        assert_eq!(c.images, ["httpd:2.4", "postgis/postgis"]);
        assert_eq!(c.external_networks, ["INTERCO", "DATA"]);
    }

    #[test]
    fn ignored_and_refused_keys() {
        let (_, diags) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    build: .\n    restart: always\n    mem_limit: 1g\n",
            &[],
        );
        assert_eq!(
            diags,
            [
                "warning: web.yml:5:5: services.app.build: ignored by docker stack deploy: images are not built; build and push the image, or ship it with an [[image]]",
                "warning: web.yml:6:5: services.app.restart: docker stack deploy reports it as unsupported and only falls back to it without deploy.restart_policy; use deploy.restart_policy",
                "error: web.yml:7:5: services.app.mem_limit: refused by docker stack deploy: set resource limits under deploy.resources",
            ]
        );
    }

    #[test]
    fn network_rules() {
        let (_, diags) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    networks: [front, DATA, back]\nnetworks:\n  DATA:\n  back:\n    external: true\n    name: BACK\n",
            &["DATA"],
        );
        assert_eq!(
            diags,
            [
                "warning: web.yml:7:3: networks.DATA: not external: the stack creates its own network \"web_DATA\" instead of using the playbook's \"DATA\"; add external: true",
                "error: web.yml:8:3: networks.back: external network \"BACK\" is not declared in the playbook: add a [[network]] named \"BACK\"",
                "error: web.yml:5:16: services.app.networks[0]: network \"front\" is not declared in the top-level networks: of this file",
            ]
        );
    }

    #[test]
    fn a_named_network_that_is_not_external() {
        let (_, diags) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    networks: [back]\nnetworks:\n  back:\n    name: DATA\n",
            &["DATA"],
        );
        assert_eq!(
            diags,
            [
                "warning: web.yml:7:3: networks.back: not external: docker stack deploy would create \"DATA\" itself, but the playbook's [[network]] creates it; add external: true"
            ]
        );
    }

    /// Issue 19 items 1 to 3: Docker's own networks, names read once interpolated, only
    /// the networks services use, drivers that do not span the swarm.
    #[test]
    fn predefined_networks_interpolated_names_and_drivers() {
        let vars = [
            ("NET", Some("DATA")),
            ("HOSTNET", Some("host")),
            ("PW", None),
        ];
        let run = |text: &str| {
            let (_, d) = check_text(
                std::path::Path::new("web.yml"),
                text,
                &["DATA"],
                &vars,
                std::path::Path::new("."),
            );
            d.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        // Pi-hole's way: the node's host network, by name or by a variable; bridge too.
        let d = run(
            "version: \"3.8\"\nservices:\n  dns:\n    image: a\n    networks: [hostnet, b, back]\nnetworks:\n  hostnet:\n    external: true\n    name: host\n  b:\n    external: {name: bridge}\n  back:\n    external: true\n    name: ${NET}\n  h2:\n    external: true\n    name: ${HOSTNET}\n",
        );
        assert_eq!(d, Vec::<String>::new());
        let d = run(
            "version: \"3.8\"\nservices:\n  a:\n    image: a\n    networks: [nothing, own, lan, h, secret]\n  b:\n    image: a\nnetworks:\n  nothing:\n    external: true\n    name: none\n  own:\n    name: host\n  lan:\n    driver: bridge\n  h:\n    driver: host\n  secret:\n    external: true\n    name: ${PW}\n  default:\n    driver: macvlan\n  unused:\n    driver: bridge\n  gone:\n    external: true\n  host:\n    name: bridge\n",
        );
        assert_eq!(
            d,
            [
                "web.yml:9:3: networks.nothing: Docker's \"none\" network cannot carry a swarm service: swarm has no \"none\" network of its own (\"could not find the corresponding predefined swarm network\"); leave it out of the services' networks",
                "web.yml:12:3: networks.own: not external: docker stack deploy would create a network named \"host\", which is one of Docker's own networks (every node has it, and Docker refuses a second one): add external: true",
                "web.yml:15:13: networks.lan.driver: driver \"bridge\": a bridge network lives on one node, and swarm refuses it for a service (\"Only networks scoped to the swarm can be used, such as those created with the overlay driver\"): use driver: overlay, or leave driver: out",
                "web.yml:17:13: networks.h.driver: driver \"host\": Docker has one host network per node already and refuses another (\"only one instance of \\\"host\\\" network is allowed\"): use it as an external network (external: true, name: host)",
                "web.yml:18:3: networks.secret: the network's name reads variable PW, whose value is secret: rpiprov must know the name before deploying; use a variable written in the playbook",
                "web.yml:22:13: networks.default.driver: driver \"macvlan\": a macvlan network lives on one node, and swarm refuses it for a service (\"Only networks scoped to the swarm can be used, such as those created with the overlay driver\"): use driver: overlay, or leave driver: out",
                "web.yml:25:3: networks.gone: no service uses this network, so docker stack deploy ignores it (\"gone\" is not a [[network]] of the playbook)",
            ]
        );
    }

    /// Issue 19 item 3: list items equal once interpolated are refused, as the CLI
    /// validates the interpolated file; an item that reads a secret is not compared.
    #[test]
    fn items_equal_after_interpolation() {
        let vars = [("P", Some("8080")), ("IP", Some("10.0.0.5")), ("PW", None)];
        let (_, d) = check_text(
            std::path::Path::new("web.yml"),
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    ports:\n      - \"${P}:80\"\n      - \"8080:80\"\n      - {target: 81, published: \"${P}\"}\n      - {published: 8080, target: 81}\n      - \"${PW}:82\"\n      - \"${PW}:82\"\n    extra_hosts:\n      - \"db:${IP}\"\n      - db:10.0.0.5\n    cap_add: [NET_ADMIN, \"NET_ADMIN\"]\n",
            &[],
            &vars,
            std::path::Path::new("."),
        );
        let d: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                "web.yml:7:9: services.app.ports[1]: the same as item 0: items must be unique",
                "web.yml:9:9: services.app.ports[3]: the same as item 2: items must be unique",
                "web.yml:14:9: services.app.extra_hosts[1]: the same as item 0: items must be unique",
                "web.yml:15:26: services.app.cap_add[1]: the same as item 0: items must be unique",
            ]
        );
    }

    /// Issue 10 item 7: keys and types per file version, with the CLI's own reading of
    /// YAML (booleans such as `n`, integers that are not strings) and of interpolation.
    #[test]
    fn the_schema_of_each_version() {
        let (_, d) = run(
            "version: \"3.4\"\nservices:\n  app:\n    image: a\n    init: true\n    replica: 2\n    cap_add: [A, A]\n    deploy:\n      replicas: \"2\"\n      update_config:\n        order: sideways\n    healthcheck:\n      interval: \"10\"\n    ports: [{target: 80}]\n    ulimits:\n      nofile: {soft: 1}\n  n:\n    image: a\n",
            &[],
        );
        assert_eq!(
            d,
            [
                "error: web.yml:5:5: services.app.init: needs version: \"3.7\" or later (the file says 3.4)",
                "error: web.yml:6:5: services.app.replica: unknown key: docker stack deploy refuses it (file format 3.4 has no such key here)",
                "error: web.yml:7:18: services.app.cap_add[1]: the same as item 0: items must be unique",
                "error: web.yml:9:17: services.app.deploy.replicas: expected an integer, found a string (\"2\")",
                "error: web.yml:11:16: services.app.deploy.update_config.order: \"sideways\" is not one of start-first, stop-first",
                "error: web.yml:13:17: services.app.healthcheck.interval: invalid duration \"10\": use a number and a unit (ns, us, ms, s, m, h), e.g. \"10s\" or \"1m30s\"",
                "error: web.yml:16:15: services.app.ulimits.nofile: hard: required key is missing",
                "warning: web.yml:17:3: services.n: n is the string \"n\" to Docker CLI 28.0 and later (YAML 1.2) but a boolean to older ones (YAML 1.1, Debian 12's docker.io 20.10), which refuse it here: quote it; deploy refuses the file where the manager's Docker CLI is older than 28.0",
            ]
        );
        // Interpolated, `replicas` becomes a number; long ports are 3.2's; x- keys 3.7's.
        let (_, d) = run(
            "version: \"3.8\"\nx-base: {a: 1}\nservices:\n  app:\n    image: a\n    x-note: 1\n    deploy:\n      replicas: ${N:-2}\n    ports: [{target: 80, published: 8080}]\n",
            &[],
        );
        assert_eq!(d, Vec::<String>::new());
    }

    fn needs(text: &str) -> (Vec<String>, Vec<String>) {
        let (c, diags) = run(text, &[]);
        let needs = c
            .needs
            .iter()
            .map(|n| format!("{} {}", n.cli(), n.place))
            .collect();
        (needs, diags)
    }

    /// Issue 17 item 4: a file without version: is the newest 3.x schema, accepted with a
    /// warning that Docker CLI before 23 refuses it; what newer schemas and CLIs added is
    /// a need of the CLI that deploys it, warned of.
    #[test]
    fn a_file_without_version_is_the_newest_schema() {
        let (n, d) = needs(
            "services:\n  app:\n    image: a\n    init: true\n    deploy:\n      mode: replicated-job\n",
        );
        assert_eq!(n, ["23.0 web.yml: version"]);
        assert_eq!(
            d,
            [
                "warning: web.yml: version: missing: Docker CLI 23.0 and later read a file without version: as the newest 3.x format they know; before 23.0 (Debian 12's docker.io 20.10) the CLI reads it as version 1.0 and refuses it; deploy refuses the file where the manager's Docker CLI is older than 23.0"
            ]
        );
        // Keys of 3.11 to 3.13, and one CLI 28 added to 3.13: each its own need.
        let (n, d) = needs(
            "services:\n  app:\n    image: a\n    build: {context: ., platforms: [linux/arm64]}\n    healthcheck:\n      start_interval: 5s\n    oom_score_adj: 100\n    networks:\n      back:\n        driver_opts: {com.docker.network.endpoint.ifname: eth9}\nnetworks:\n  back:\n",
        );
        assert_eq!(
            n,
            [
                "23.0 web.yml: version",
                "24.0 web.yml:4:25: services.app.build.platforms",
                "25.0 web.yml:6:7: services.app.healthcheck.start_interval",
                "28.0 web.yml:7:5: services.app.oom_score_adj",
                "27.0 web.yml:10:9: services.app.networks.back.driver_opts",
            ]
        );
        assert_eq!(
            d[0],
            "warning: web.yml:4:5: services.app.build: ignored by docker stack deploy: images are not built; build and push the image, or ship it with an [[image]]"
        );
        assert_eq!(
            d[3],
            "warning: web.yml:6:7: services.app.healthcheck.start_interval: a key of version 3.12: a file without version: is read as the newest 3.x format the CLI knows, and only Docker CLI 25.0 and later know 3.12; deploy refuses the file where the manager's Docker CLI is older than 25.0"
        );
        assert_eq!(
            d[4],
            "warning: web.yml:7:5: services.app.oom_score_adj: Docker CLI 28.0 added this key to version 3.13; older ones refuse it; deploy refuses the file where the manager's Docker CLI is older than 28.0"
        );
        assert_eq!(d.len(), 6, "{d:#?}");
    }

    /// `version: "3"` is 3.0 to CLI 20.10 and the newest 3.x since 23: a key of a later
    /// version is a need of 23 (or of the CLI that brought its schema).
    #[test]
    fn version_3_is_the_newest_schema_since_cli_23() {
        let (n, d) = needs(
            "version: \"3\"\nx-common: &c {image: a}\nservices:\n  app:\n    <<: *c\n    init: true\n    ports: [{target: 80}]\n    healthcheck: {start_interval: 1s}\n",
        );
        assert_eq!(
            n,
            [
                "23.0 web.yml:2:1: x-common",
                "23.0 web.yml:6:5: services.app.init",
                "23.0 web.yml:7:13: services.app.ports[0]",
                "25.0 web.yml:8:19: services.app.healthcheck.start_interval",
            ]
        );
        assert_eq!(
            d[1],
            "warning: web.yml:6:5: services.app.init: a key of version 3.7: Docker CLI 23.0 and later read version: \"3\" as a format that has it; before 23.0 (Debian 12's docker.io 20.10) version: \"3\" is 3.0, which has no such key, and the file is refused; deploy refuses the file where the manager's Docker CLI is older than 23.0"
        );
        // 3.0's own keys need nothing.
        let (n, d) =
            needs("version: \"3\"\nservices:\n  app:\n    image: a\n    deploy: {replicas: 2}\n");
        assert_eq!((n, d), (vec![], vec![]));
    }

    /// A file that names its version is checked against it: a key of a later one is an
    /// error; the version itself and what CLIs added since are needs.
    #[test]
    fn a_named_version_and_the_cli_that_reads_it() {
        let (n, d) = needs(
            "version: \"3.12\"\nservices:\n  app:\n    image: a\n    networks:\n      back: {driver_opts: {a: 1}}\nnetworks:\n  back:\n",
        );
        assert_eq!(n, ["25.0 web.yml:1:1: version"]);
        assert_eq!(
            d,
            [
                "error: web.yml:6:14: services.app.networks.back.driver_opts: needs version: \"3.13\" or later (the file says 3.12)",
                "warning: web.yml:1:1: version: 3.12 needs Docker CLI 25.0 or later; older ones refuse it (Debian 12's docker.io 20.10 reads 3.0 to 3.9); deploy refuses the file where the manager's Docker CLI is older than 25.0",
            ]
        );
        let (n, _) = needs(
            "version: \"3.13\"\nservices:\n  app:\n    image: a\n    oom_score_adj: ${ADJ:-0}\n    deploy: {mode: global-job}\n",
        );
        assert_eq!(
            n,
            [
                "27.0 web.yml:1:1: version",
                "28.0 web.yml:5:5: services.app.oom_score_adj",
            ]
        );
        // A job in a 3.9 file: the mode needs CLI 23.
        let (n, d) = needs(
            "version: \"3.9\"\nservices:\n  app:\n    image: a\n    deploy: {mode: global-job, replicas: 2}\n",
        );
        assert_eq!(n, ["23.0 web.yml:5:20: services.app.deploy.mode"]);
        assert_eq!(
            d,
            [
                "error: web.yml:5:32: services.app.deploy.replicas: replicas can only be used with mode: replicated or replicated-job",
                "warning: web.yml:5:20: services.app.deploy.mode: deploy mode global-job: Docker CLI 23.0 and later deploy jobs from stack files; older ones (Debian 12's docker.io 20.10) refuse it (\"Unknown mode: global-job\"); deploy refuses the file where the manager's Docker CLI is older than 23.0",
            ]
        );
        let (n, d) = needs("version: \"3.14\"\nservices:\n  app:\n    image: a\n");
        assert_eq!(n, Vec::<String>::new());
        assert_eq!(
            d,
            [
                "error: web.yml:1:1: version: version 3.14 is unknown to Docker: the CLI reads 3.0 to 3.13 (3.13 since CLI 27.0): use version: \"3.13\" or lower"
            ]
        );
        // An x- key that 3.10 types is free before it.
        let (n, d) = needs(
            "version: \"3.9\"\nservices:\n  app: {image: a}\nvolumes:\n  data:\n    x-cluster-spec: 1\n",
        );
        assert_eq!((n, d), (vec![], vec![]));
        let (_, d) = needs(
            "version: \"3.10\"\nservices:\n  app: {image: a}\nvolumes:\n  data:\n    x-cluster-spec: 1\n",
        );
        assert_eq!(
            d[0],
            "error: web.yml:6:21: volumes.data.x-cluster-spec: expected a mapping, found an integer (\"1\")"
        );
    }

    /// CLI 28.0 reads YAML 1.2: `yes` where a boolean is expected is refused from 28.0
    /// on, where a string is expected before it; `true` and quoted text are read alike.
    #[test]
    fn yaml_1_1_booleans_and_the_cli_that_reads_them() {
        let (c, d) = run(
            "version: \"3.8\"\nservices:\n  app:\n    image: a\n    read_only: yes\n    tty: true\n    environment: {DEBUG: on, QUIET: \"no\"}\n    dns: n\n",
            &[],
        );
        let reads: Vec<String> = c
            .needs
            .iter()
            .map(|n| format!("{:?} {}", n.reads, n.place))
            .collect();
        assert_eq!(
            reads,
            [
                "Before(CliVersion { major: 28, minor: 0 }) web.yml:5:16: services.app.read_only",
                "Since(CliVersion { major: 28, minor: 0 }) web.yml:7:26: services.app.environment.DEBUG",
                "Since(CliVersion { major: 28, minor: 0 }) web.yml:8:10: services.app.dns",
            ]
        );
        assert_eq!(
            d[0],
            "warning: web.yml:5:16: services.app.read_only: yes is a boolean to Docker CLI before 28.0 (YAML 1.1) but the string \"yes\" to 28.0 and later (YAML 1.2), which refuse it here: write true; deploy refuses the file where the manager's Docker CLI is 28.0 or later"
        );
        assert_eq!(d.len(), 3, "{d:#?}");
    }

    #[test]
    fn shape_errors() {
        let (_, d) = run("version: \"2.4\"\nservices: []\n", &[]);
        assert_eq!(
            d,
            [
                "error: web.yml:1:1: version: docker stack deploy needs a version 3 file, found \"2.4\"",
                "error: web.yml:2:1: services: expected a mapping of services, found a list",
            ]
        );
        let (_, d) = run(
            "version: \"3\"\nservices:\n  web.app:\n    command: x\n",
            &[],
        );
        assert_eq!(
            d,
            [
                "error: web.yml:3:3: services.web.app: invalid service name \"web.app\": use letters, digits, '-' and '_', starting and ending with a letter or digit",
                "error: web.yml:3:3: services.web.app: no image: docker stack deploy does not build images, set image:",
            ]
        );
        let (_, d) = run("version: \"3\"\nservices:\n  a: [\n", &[]);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].starts_with("error: web.yml:4:1: invalid YAML: "),
            "{}",
            d[0]
        );
    }
}
