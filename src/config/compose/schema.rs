//! Which keys a compose file may hold and of which types, per file version 3.0 to 3.13, as
//! the Docker CLI validates a file before `docker stack deploy` does anything: its JSON
//! schema for that version, then the decoding of durations, sizes and port specs. Written
//! from the CLI's schema files (20.10's 3.0 to 3.9, then 3.10 to 3.13 of CLI 23 to 29) and
//! checked against the CLI itself (`tests/e2e_compose_corpus.rs` runs every file of
//! `tests/fixtures/compose/` through both); not a copy of them.
//!
//! A file that says `version: "3"`, or nothing, is checked against the newest schema, and
//! each key it holds that an older CLI's reading of it lacks is a [`Need`] of the CLI
//! (see `versions.rs`): `check` warns of it, `deploy` holds the manager's CLI to it.
//!
//! What the CLI does, kept: a value is typed as its YAML 1.1 parser types it (`n` is a
//! boolean, `3.8` a float), after interpolation, where `${VAR}` in a few integer and
//! boolean fields becomes a number or a boolean ([`CASTS`]); `x-` keys are free where the
//! version allows them; some objects accept unknown keys (the schema does not close them).

use super::super::yaml::{Mark, Node, Ty};
use super::Checker;
use super::versions::{CliVersion, Feature, FileVersion, FileVersionName, Need, Reads, YAML_1_2};

/// What a value may be.
pub(super) enum Shape {
    /// A scalar of one of these types; `Ty::Float` admits integers too (JSON's number).
    Scalar(&'static [Ty]),
    /// A string in Go's duration syntax (`10s`, `1m30s`).
    Duration,
    /// A size (`512M`, or a number of bytes).
    Size,
    /// A port spec (`8080:80/udp`), or a number.
    Port,
    /// One of these strings.
    Enum(&'static [&'static str]),
    List {
        item: &'static Shape,
        unique: bool,
    },
    Object(&'static Object),
    /// A mapping whose keys follow `key` and whose values are `value`; other keys are
    /// refused when `closed`, left unchecked otherwise.
    Dict {
        key: fn(&str) -> bool,
        value: &'static Shape,
        closed: bool,
    },
    /// The alternative that takes the value's type.
    OneOf(&'static [&'static Shape]),
}

/// A mapping with known keys.
pub(super) struct Object {
    /// The first minor version that has this object (a long syntax: ports in 3.2).
    pub since: u8,
    pub props: &'static [Prop],
    pub required: &'static [&'static str],
    /// Keys not in `props` are refused (else they are not checked).
    pub closed: bool,
    /// A closed object that no longer is from this minor version on (`build` in 3.11).
    pub open_since: Option<u8>,
    /// `x-` keys are allowed from this minor version.
    pub x: Option<u8>,
    /// `null` is accepted for it (`deploy:` alone).
    pub nullable: bool,
}

pub(super) struct Prop {
    pub name: &'static str,
    /// The first minor version (3.N) that has the key.
    pub since: u8,
    pub shape: &'static Shape,
    /// The CLI release that added the key to schema 3.`since`, when that is later than
    /// the schema's first release (`oom_score_adj`: 3.13, CLI 28.0).
    pub added: Option<CliVersion>,
}

const fn p(name: &'static str, since: u8, shape: &'static Shape) -> Prop {
    Prop {
        name,
        since,
        shape,
        added: None,
    }
}

const fn obj(props: &'static [Prop]) -> Object {
    Object {
        since: 0,
        props,
        required: &[],
        closed: true,
        open_since: None,
        x: None,
        nullable: false,
    }
}

const fn open(props: &'static [Prop]) -> Object {
    Object {
        closed: false,
        ..obj(props)
    }
}

static STR: Shape = Shape::Scalar(&[Ty::Str]);
static INT: Shape = Shape::Scalar(&[Ty::Int]);
static NUM: Shape = Shape::Scalar(&[Ty::Int, Ty::Float]);
static BOOL: Shape = Shape::Scalar(&[Ty::Bool]);
static DURATION: Shape = Shape::Duration;
static STR_OR_NULL: Shape = Shape::Scalar(&[Ty::Str, Ty::Null]);
static SCALAR_VALUE: Shape = Shape::Scalar(&[Ty::Str, Ty::Int, Ty::Float, Ty::Null]);
static OPT_VALUE: Shape = Shape::Scalar(&[Ty::Str, Ty::Int, Ty::Float]);

static LIST_OF_STRINGS: Shape = Shape::List {
    item: &STR,
    unique: true,
};
static STRINGS: Shape = Shape::List {
    item: &STR,
    unique: false,
};
static STRING_OR_LIST: Shape = Shape::OneOf(&[&STR, &LIST_OF_STRINGS]);
static COMMAND: Shape = Shape::OneOf(&[&STR, &STRINGS]);

fn non_empty(k: &str) -> bool {
    !k.is_empty()
}

/// `^[a-zA-Z0-9._-]+$`: names of services, networks, volumes, secrets and configs.
fn name_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

fn lowercase_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|c| c.is_ascii_lowercase())
}

static DICT_OF_VALUES: Shape = Shape::Dict {
    key: non_empty,
    value: &SCALAR_VALUE,
    closed: true,
};
static LIST_OR_DICT: Shape = Shape::OneOf(&[&DICT_OF_VALUES, &LIST_OF_STRINGS]);
static DRIVER_OPTS: Shape = Shape::Dict {
    key: non_empty,
    value: &OPT_VALUE,
    closed: false,
};

// Swarm ignores `build`: from 3.11 on the CLI leaves its other keys unchecked.
static BUILD_OBJECT: Object = Object {
    open_since: Some(11),
    ..obj(&[
        p("context", 0, &STR),
        p("dockerfile", 0, &STR),
        p("args", 0, &LIST_OR_DICT),
        p("labels", 3, &LIST_OR_DICT),
        p("cache_from", 2, &LIST_OF_STRINGS),
        p("network", 4, &STR),
        p("target", 4, &STR),
        p("shm_size", 5, &Shape::Scalar(&[Ty::Int, Ty::Str])),
        p("extra_hosts", 9, &LIST_OR_DICT),
    ])
};
static BUILD: Shape = Shape::OneOf(&[&STR, &Shape::Object(&BUILD_OBJECT)]);

static CREDENTIAL_SPEC: Object = obj(&[
    p("config", 8, &STR),
    p("file", 0, &STR),
    p("registry", 0, &STR),
]);

static OBJECT_REF: Object = open(&[
    p("source", 0, &STR),
    p("target", 0, &STR),
    p("uid", 0, &STR),
    p("gid", 0, &STR),
    p("mode", 0, &NUM),
]);
static OBJECT_REFS: Shape = Shape::List {
    item: &Shape::OneOf(&[&STR, &Shape::Object(&OBJECT_REF)]),
    unique: false,
};

static HEALTHCHECK: Object = obj(&[
    p("disable", 0, &BOOL),
    p("interval", 0, &DURATION),
    p("retries", 0, &NUM),
    p("test", 0, &COMMAND),
    p("timeout", 0, &DURATION),
    p("start_period", 4, &DURATION),
    p("start_interval", 12, &DURATION),
]);

static LOGGING: Object = obj(&[
    p("driver", 0, &STR),
    p(
        "options",
        0,
        &Shape::Dict {
            key: non_empty,
            value: &SCALAR_VALUE,
            closed: false,
        },
    ),
]);

static SERVICE_NETWORK: Object = obj(&[
    p("aliases", 0, &LIST_OF_STRINGS),
    // The endpoint's driver options (3.13).
    p(
        "driver_opts",
        13,
        &Shape::Dict {
            key: non_empty,
            value: &Shape::Scalar(&[Ty::Str, Ty::Int, Ty::Float]),
            closed: false,
        },
    ),
    p("ipv4_address", 0, &STR),
    p("ipv6_address", 0, &STR),
]);
static SERVICE_NETWORKS: Shape = Shape::OneOf(&[
    &LIST_OF_STRINGS,
    &Shape::Dict {
        key: name_key,
        value: &Shape::OneOf(&[
            &Shape::Object(&SERVICE_NETWORK),
            &Shape::Scalar(&[Ty::Null]),
        ]),
        closed: true,
    },
]);

static PORT_LONG: Object = Object {
    since: 2,
    ..obj(&[
        p("mode", 0, &STR),
        p("target", 0, &INT),
        p("published", 0, &INT),
        p("protocol", 0, &STR),
    ])
};
static PORTS: Shape = Shape::List {
    item: &Shape::OneOf(&[&Shape::Port, &Shape::Object(&PORT_LONG)]),
    unique: true,
};

static ULIMIT: Object = Object {
    required: &["soft", "hard"],
    ..obj(&[p("hard", 0, &INT), p("soft", 0, &INT)])
};
static ULIMITS: Shape = Shape::Dict {
    key: lowercase_key,
    value: &Shape::OneOf(&[&INT, &Shape::Object(&ULIMIT)]),
    closed: false,
};

static VOLUME_LONG: Object = Object {
    since: 2,
    required: &["type"],
    ..obj(&[
        p("type", 0, &STR),
        p("source", 0, &STR),
        p("target", 0, &STR),
        p("read_only", 0, &BOOL),
        p("consistency", 0, &STR),
        p(
            "bind",
            0,
            &Shape::Object(&open(&[p("propagation", 0, &STR)])),
        ),
        p("volume", 0, &Shape::Object(&open(&[p("nocopy", 0, &BOOL)]))),
        p("tmpfs", 6, &Shape::Object(&open(&[p("size", 0, &INT)]))),
    ])
};
static SERVICE_VOLUMES: Shape = Shape::List {
    item: &Shape::OneOf(&[&STR, &Shape::Object(&VOLUME_LONG)]),
    unique: false,
};

static UPDATE_CONFIG: Object = obj(&[
    p("parallelism", 0, &INT),
    p("delay", 0, &DURATION),
    p("failure_action", 0, &STR),
    p("monitor", 0, &DURATION),
    p("max_failure_ratio", 0, &NUM),
    p("order", 4, &Shape::Enum(&["start-first", "stop-first"])),
]);

static GENERIC_RESOURCE: Object = obj(&[p(
    "discrete_resource_spec",
    0,
    &Shape::Object(&obj(&[p("kind", 0, &STR), p("value", 0, &NUM)])),
)]);
static RESOURCES: Object = obj(&[
    p(
        "limits",
        0,
        &Shape::Object(&obj(&[
            p("cpus", 0, &STR),
            p("memory", 0, &Shape::Size),
            p("pids", 9, &INT),
        ])),
    ),
    p(
        "reservations",
        0,
        &Shape::Object(&obj(&[
            p("cpus", 0, &STR),
            p("memory", 0, &Shape::Size),
            p(
                "generic_resources",
                5,
                &Shape::List {
                    item: &Shape::Object(&GENERIC_RESOURCE),
                    unique: false,
                },
            ),
        ])),
    ),
]);

static RESTART_POLICY: Object = obj(&[
    p("condition", 0, &STR),
    p("delay", 0, &DURATION),
    p("max_attempts", 0, &INT),
    p("window", 0, &DURATION),
]);

static PLACEMENT: Object = obj(&[
    p("constraints", 0, &STRINGS),
    p(
        "preferences",
        3,
        &Shape::List {
            item: &Shape::Object(&obj(&[p("spread", 0, &STR)])),
            unique: false,
        },
    ),
    p("max_replicas_per_node", 8, &INT),
]);

static DEPLOYMENT: Object = Object {
    nullable: true,
    ..obj(&[
        p("mode", 0, &STR),
        p("endpoint_mode", 2, &STR),
        p("replicas", 0, &INT),
        p("labels", 0, &LIST_OR_DICT),
        p("rollback_config", 7, &Shape::Object(&UPDATE_CONFIG)),
        p("update_config", 0, &Shape::Object(&UPDATE_CONFIG)),
        p("resources", 0, &Shape::Object(&RESOURCES)),
        p("restart_policy", 0, &Shape::Object(&RESTART_POLICY)),
        p("placement", 0, &Shape::Object(&PLACEMENT)),
    ])
};

static SERVICE: Object = Object {
    x: Some(7),
    ..obj(&[
        p("deploy", 0, &Shape::Object(&DEPLOYMENT)),
        p("build", 0, &BUILD),
        p("cap_add", 0, &LIST_OF_STRINGS),
        p("cap_drop", 0, &LIST_OF_STRINGS),
        p("cgroupns_mode", 9, &STR),
        p("cgroup_parent", 0, &STR),
        p("command", 0, &COMMAND),
        p("configs", 3, &OBJECT_REFS),
        p("container_name", 0, &STR),
        p("credential_spec", 3, &Shape::Object(&CREDENTIAL_SPEC)),
        p("depends_on", 0, &LIST_OF_STRINGS),
        p("devices", 0, &LIST_OF_STRINGS),
        p("dns", 0, &STRING_OR_LIST),
        p("dns_search", 0, &STRING_OR_LIST),
        p("domainname", 0, &STR),
        p("entrypoint", 0, &COMMAND),
        p("env_file", 0, &STRING_OR_LIST),
        p("environment", 0, &LIST_OR_DICT),
        p(
            "expose",
            0,
            &Shape::List {
                item: &Shape::Scalar(&[Ty::Str, Ty::Int, Ty::Float]),
                unique: true,
            },
        ),
        p("external_links", 0, &LIST_OF_STRINGS),
        p("extra_hosts", 0, &LIST_OR_DICT),
        p("healthcheck", 0, &Shape::Object(&HEALTHCHECK)),
        p("hostname", 0, &STR),
        p("image", 0, &STR),
        p("init", 7, &BOOL),
        p("ipc", 0, &STR),
        p("isolation", 5, &STR),
        p("labels", 0, &LIST_OR_DICT),
        p("links", 0, &LIST_OF_STRINGS),
        p("logging", 0, &Shape::Object(&LOGGING)),
        p("mac_address", 0, &STR),
        p("network_mode", 0, &STR),
        p("networks", 0, &SERVICE_NETWORKS),
        Prop {
            added: Some(CliVersion::new(28, 0)),
            ..p("oom_score_adj", 13, &INT)
        },
        p("pid", 0, &STR_OR_NULL),
        p("ports", 0, &PORTS),
        p("privileged", 0, &BOOL),
        p("read_only", 0, &BOOL),
        p("restart", 0, &STR),
        p("security_opt", 0, &LIST_OF_STRINGS),
        p("shm_size", 0, &Shape::Size),
        p("secrets", 1, &OBJECT_REFS),
        p("sysctls", 0, &LIST_OR_DICT),
        p("stdin_open", 0, &BOOL),
        p("stop_grace_period", 0, &DURATION),
        p("stop_signal", 0, &STR),
        p("tmpfs", 0, &STRING_OR_LIST),
        p("tty", 0, &BOOL),
        p("ulimits", 0, &ULIMITS),
        p("user", 0, &STR),
        p("userns_mode", 0, &STR),
        p("volumes", 0, &SERVICE_VOLUMES),
        p("working_dir", 0, &STR),
    ])
};

static EXTERNAL_CLOSED: Shape = Shape::OneOf(&[&BOOL, &Shape::Object(&obj(&[p("name", 0, &STR)]))]);
static EXTERNAL_OPEN: Shape = Shape::OneOf(&[&BOOL, &Shape::Object(&open(&[p("name", 0, &STR)]))]);

static NETWORK: Object = Object {
    x: Some(7),
    nullable: true,
    ..obj(&[
        p("name", 5, &STR),
        p("driver", 0, &STR),
        p("driver_opts", 0, &DRIVER_OPTS),
        p(
            "ipam",
            0,
            &Shape::Object(&obj(&[
                p("driver", 0, &STR),
                p(
                    "config",
                    0,
                    &Shape::List {
                        item: &Shape::Object(&obj(&[p("subnet", 0, &STR)])),
                        unique: false,
                    },
                ),
            ])),
        ),
        p("external", 0, &EXTERNAL_CLOSED),
        p("internal", 0, &BOOL),
        p("attachable", 2, &BOOL),
        p("labels", 0, &LIST_OR_DICT),
    ])
};

/// A cluster (CSI) volume's spec, typed by the schema from 3.10 on (an `x-` key, free in
/// older versions). Its objects are open.
static CLUSTER_SPEC: Object = open(&[
    p("group", 0, &STR),
    p(
        "access_mode",
        0,
        &Shape::Object(&open(&[
            p("scope", 0, &STR),
            p("sharing", 0, &STR),
            p("block_volume", 0, &Shape::Object(&open(&[]))),
            p(
                "mount_volume",
                0,
                &Shape::Object(&open(&[
                    p("fs_type", 0, &STR),
                    p("mount_flags", 0, &STRINGS),
                ])),
            ),
        ])),
    ),
    p(
        "accessibility_requirements",
        0,
        &Shape::Object(&open(&[
            p("requisite", 0, &TOPOLOGIES),
            p("preferred", 0, &TOPOLOGIES),
        ])),
    ),
    p(
        "capacity_range",
        0,
        &Shape::Object(&open(&[
            p("required_bytes", 0, &STR),
            p("limit_bytes", 0, &STR),
        ])),
    ),
    p("availability", 0, &STR),
]);
static TOPOLOGIES: Shape = Shape::List {
    item: &Shape::Object(&open(&[p("segments", 0, &LIST_OR_DICT)])),
    unique: false,
};

static VOLUME: Object = Object {
    x: Some(7),
    nullable: true,
    ..obj(&[
        p("name", 4, &STR),
        p("driver", 0, &STR),
        p("driver_opts", 0, &DRIVER_OPTS),
        p("external", 0, &EXTERNAL_CLOSED),
        p("labels", 0, &LIST_OR_DICT),
        p("x-cluster-spec", 10, &Shape::Object(&CLUSTER_SPEC)),
    ])
};

static SECRET: Object = Object {
    x: Some(7),
    ..obj(&[
        p("name", 5, &STR),
        p("file", 0, &STR),
        p("external", 0, &EXTERNAL_OPEN),
        p("labels", 0, &LIST_OR_DICT),
        p("driver", 8, &STR),
        p("driver_opts", 8, &DRIVER_OPTS),
        p("template_driver", 8, &STR),
    ])
};

static CONFIG: Object = Object {
    x: Some(7),
    ..obj(&[
        p("name", 5, &STR),
        p("file", 0, &STR),
        p("external", 0, &EXTERNAL_OPEN),
        p("labels", 0, &LIST_OR_DICT),
        p("template_driver", 8, &STR),
    ])
};

/// A top-level section: named entries of one shape (`services:`, `networks:`...).
const fn section(value: &'static Shape, closed: bool) -> Shape {
    Shape::Dict {
        key: name_key,
        value,
        closed,
    }
}

static SERVICES: Shape = section(&Shape::Object(&SERVICE), true);
// The schema leaves other keys of `networks:` unchecked.
static NETWORKS: Shape = section(&Shape::Object(&NETWORK), false);
static VOLUMES: Shape = section(&Shape::Object(&VOLUME), true);
static SECRETS: Shape = section(&Shape::Object(&SECRET), true);
static CONFIGS: Shape = section(&Shape::Object(&CONFIG), true);

/// The whole file. A missing `version:` is the caller's to judge (3.0 to 3.9 require it;
/// from 3.10 on it is the CLI's to choose).
pub(super) static FILE: Object = Object {
    x: Some(4),
    ..obj(&[
        p("version", 0, &STR),
        p("services", 0, &SERVICES),
        p("networks", 0, &NETWORKS),
        p("volumes", 0, &VOLUMES),
        p("secrets", 1, &SECRETS),
        p("configs", 3, &CONFIGS),
    ])
};

/// Where interpolation turns a string into a number or a boolean (the CLI's cast table):
/// `*` is any key, `[]` any list item.
const CASTS: &[(&str, Ty)] = &[
    ("services.*.configs.[].mode", Ty::Int),
    ("services.*.secrets.[].mode", Ty::Int),
    ("services.*.healthcheck.retries", Ty::Int),
    ("services.*.healthcheck.disable", Ty::Bool),
    ("services.*.deploy.replicas", Ty::Int),
    ("services.*.deploy.update_config.parallelism", Ty::Int),
    (
        "services.*.deploy.update_config.max_failure_ratio",
        Ty::Float,
    ),
    ("services.*.deploy.rollback_config.parallelism", Ty::Int),
    (
        "services.*.deploy.rollback_config.max_failure_ratio",
        Ty::Float,
    ),
    ("services.*.deploy.restart_policy.max_attempts", Ty::Int),
    ("services.*.deploy.placement.max_replicas_per_node", Ty::Int),
    ("services.*.ports.[].target", Ty::Int),
    ("services.*.ports.[].published", Ty::Int),
    ("services.*.ulimits.*", Ty::Int),
    ("services.*.ulimits.*.hard", Ty::Int),
    ("services.*.ulimits.*.soft", Ty::Int),
    ("services.*.privileged", Ty::Bool),
    ("services.*.oom_score_adj", Ty::Int),
    ("services.*.read_only", Ty::Bool),
    ("services.*.stdin_open", Ty::Bool),
    ("services.*.tty", Ty::Bool),
    ("services.*.volumes.[].read_only", Ty::Bool),
    ("services.*.volumes.[].volume.nocopy", Ty::Bool),
    ("networks.*.external", Ty::Bool),
    ("networks.*.internal", Ty::Bool),
    ("networks.*.attachable", Ty::Bool),
    ("volumes.*.external", Ty::Bool),
    ("secrets.*.external", Ty::Bool),
    ("configs.*.external", Ty::Bool),
];

fn cast_for(pattern_path: &[String]) -> Option<Ty> {
    CASTS.iter().find_map(|(p, ty)| {
        let parts: Vec<&str> = p.split('.').collect();
        (parts.len() == pattern_path.len()
            && parts
                .iter()
                .zip(pattern_path)
                .all(|(a, b)| *a == "*" || a == b))
        .then_some(*ty)
    })
}

/// Go's `time.ParseDuration`: an optional sign, then numbers (with an optional fraction)
/// each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); `0` alone too.
pub(super) fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// go-units' `RAMInBytes`: `^(\d+(\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$`, so `512`,
/// `512M`, `1.5GiB`, `64mb` (binary units).
pub(super) fn is_size(s: &str) -> bool {
    let mut t = s;
    if let Some(r) = t.strip_suffix(['b', 'B']) {
        t = r;
    }
    if let Some(r) = t.strip_suffix(['i', 'I']) {
        t = r;
    }
    if let Some(r) = t.strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P']) {
        t = r;
    }
    if let Some(r) = t.strip_suffix(' ') {
        t = r;
    }
    !t.is_empty()
        && t.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
}

/// A port range `N` or `N-M` of ports 1 to 65535 (0 allowed for a published port).
fn port_range(s: &str, zero: bool) -> bool {
    let ok = |p: &str| {
        p.parse::<u32>()
            .is_ok_and(|n| n <= 65535 && (zero || n > 0))
    };
    match s.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(s),
    }
}

/// Docker's port spec: `[[IP:]HOST:]CONTAINER[/PROTO]`, each port part a port or a range.
pub(super) fn is_port_spec(spec: &str) -> bool {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (spec, None),
    };
    if proto.is_some_and(|p| !matches!(p.to_lowercase().as_str(), "tcp" | "udp" | "sctp")) {
        return false;
    }
    let parts: Vec<&str> = ports.split(':').collect();
    match parts[..] {
        [container] => port_range(container, false),
        [host, container] => {
            (host.is_empty() || port_range(host, true)) && port_range(container, false)
        }
        [ip, host, container] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<std::net::IpAddr>().is_ok()
                && (host.is_empty() || port_range(host, true))
                && port_range(container, false)
        }
        _ => false,
    }
}

fn describe(t: Ty) -> &'static str {
    match t {
        Ty::Null => "null",
        Ty::Bool => "a boolean",
        Ty::Int => "an integer",
        Ty::Float => "a number",
        Ty::Str => "a string",
        Ty::List => "a list",
        Ty::Map => "a mapping",
    }
}

impl Shape {
    /// Whether a value of this type is this shape's to check.
    fn takes(&self, ty: Ty) -> bool {
        match self {
            Shape::Scalar(types) => {
                types.contains(&ty) || (ty == Ty::Int && types.contains(&Ty::Float))
            }
            Shape::Duration | Shape::Enum(_) => ty == Ty::Str,
            Shape::Size | Shape::Port => matches!(ty, Ty::Str | Ty::Int | Ty::Float),
            Shape::List { .. } => ty == Ty::List,
            Shape::Object(o) => ty == Ty::Map || (o.nullable && ty == Ty::Null),
            Shape::Dict { .. } => ty == Ty::Map,
            Shape::OneOf(alts) => alts.iter().any(|a| a.takes(ty)),
        }
    }

    /// What the shape expects, for messages.
    fn expected(&self) -> String {
        match self {
            Shape::Scalar(types) => {
                let names: Vec<&str> = types
                    .iter()
                    .filter(|t| !(**t == Ty::Int && types.contains(&Ty::Float)))
                    .map(|t| describe(*t))
                    .collect();
                names.join(" or ")
            }
            Shape::Duration => "a duration such as \"10s\" or \"1m30s\"".into(),
            Shape::Size => "a size such as \"512M\"".into(),
            Shape::Port => "a port spec such as \"8080:80\"".into(),
            Shape::Enum(values) => format!("one of {}", values.join(", ")),
            Shape::List { item, .. } => match item {
                Shape::Scalar([Ty::Str]) => "a list of strings".into(),
                _ => "a list".into(),
            },
            Shape::Object(_) | Shape::Dict { .. } => "a mapping".into(),
            Shape::OneOf(alts) => {
                let all: Vec<String> = alts.iter().map(|a| a.expected()).collect();
                all.join(" or ")
            }
        }
    }
}

/// Walks a file against [`FILE`] for its version, collecting what it needs of the CLI.
pub(super) struct Walk<'c, 'a> {
    pub c: &'c mut Checker<'a>,
    pub version: FileVersion,
    /// The schema checked against: [`FileVersion::checked_as`].
    pub minor: u8,
    pub needs: &'c mut Vec<Need>,
}

impl Walk<'_, '_> {
    fn error(&mut self, mark: Mark, path: &str, message: String) {
        self.c.error(Some(mark), path, message);
    }

    /// Something of schema 3.`since` (a key, a long syntax, `x-` keys, unchecked keys),
    /// added by CLI `added` when later than the schema, was accepted at `path`: a need of
    /// the CLI when the file's reading by an older CLI lacks it.
    fn since(&mut self, since: u8, added: Option<CliVersion>, mark: Mark, path: &str) {
        let floor = self.version.floor();
        let by_version = self.version.key_floor(since);
        let cli = added.map_or(by_version, |a| a.max(by_version));
        if cli <= floor || cli <= super::versions::OLDEST {
            return;
        }
        let feature = match (added, self.version) {
            (Some(a), _) if a >= by_version => Feature::Added { minor: since },
            (_, FileVersion::Major) => Feature::Key {
                minor: since,
                version: FileVersionName::Major,
            },
            _ => Feature::Key {
                minor: since,
                version: FileVersionName::Missing,
            },
        };
        let place = self.c.place(Some(mark), path);
        self.needs.push(Need::since(cli, feature, place));
    }

    /// The value's type once interpolated: a string holding `${...}` in a field that the
    /// CLI casts becomes a number or a boolean.
    fn ty(&self, node: &Node, pattern: &[String]) -> Ty {
        let ty = node.ty();
        if ty == Ty::Str
            && node.as_str().is_some_and(|s| s.contains('$'))
            && let Some(cast) = cast_for(pattern)
        {
            return cast;
        }
        ty
    }

    /// `yes`, `on`, `n`...: a boolean to the CLI before 28.0, a string since. Where the
    /// shape takes only one of the two, the CLIs disagree: a need either way; the type
    /// the shape takes is the one checked further.
    fn yaml_type(&mut self, node: &Node, ty: Ty, shape: &Shape, path: &str) -> Ty {
        let text = match node {
            Node::Scalar {
                value, plain: true, ..
            } if ty == Ty::Bool && super::versions::yaml11_only_bool(value) => value,
            _ => return ty,
        };
        let (reads, feature, ty) = match (shape.takes(Ty::Bool), shape.takes(Ty::Str)) {
            (true, false) => (
                Reads::Before(YAML_1_2),
                Feature::Yaml11Bool {
                    text: text.clone(),
                    value: node.is_true(),
                },
                Ty::Bool,
            ),
            (false, true) => (
                Reads::Since(YAML_1_2),
                Feature::Yaml12Str { text: text.clone() },
                Ty::Str,
            ),
            _ => return ty,
        };
        let place = self.c.place(Some(node.mark()), path);
        self.needs.push(Need {
            reads,
            feature,
            place,
        });
        ty
    }

    /// An item as the CLI compares it for uniqueness: its schema check runs after the
    /// interpolation, so with the playbook's values, each value typed as the CLI casts it
    /// (`"${P}:80"` and `"8080:80"` are the same item when P is 8080; JSON's equality:
    /// a mapping's order does not count, `80` and `"80"` differ). `None` when it reads a
    /// secret, known at deploy only.
    fn unique_key(&self, node: &Node, pattern: &[String]) -> Option<String> {
        match node {
            Node::Scalar { .. } => {
                let ty = self.ty(node, pattern);
                let text = match node.as_str() {
                    Some(t) if t.contains('$') => self.c.interpolate_locally(t).ok()??,
                    Some(t) => t.to_string(),
                    None => String::new(),
                };
                Some(format!("{ty:?}{}", serde_json::to_string(&text).ok()?))
            }
            Node::Seq { items, .. } => {
                let mut pat = pattern.to_vec();
                pat.push("[]".into());
                let items: Option<Vec<String>> =
                    items.iter().map(|i| self.unique_key(i, &pat)).collect();
                Some(format!("[{}]", items?.join(",")))
            }
            Node::Map { entries, .. } => {
                let mut out: Vec<String> = Vec::new();
                for e in entries {
                    let mut pat = pattern.to_vec();
                    pat.push(e.key.clone());
                    let value = self.unique_key(&e.value, &pat)?;
                    out.push(format!("{}:{value}", serde_json::to_string(&e.key).ok()?));
                }
                out.sort();
                Some(format!("{{{}}}", out.join(",")))
            }
        }
    }

    /// Checks `node` at `path` (`pattern`: the same with `[]` for list items).
    pub fn node(&mut self, node: &Node, shape: &Shape, path: &str, pattern: &[String]) {
        let ty = self.ty(node, pattern);
        let ty = self.yaml_type(node, ty, shape, path);
        self.typed(node, ty, shape, path, pattern);
    }

    /// [`Walk::node`] once the value's type is known.
    fn typed(&mut self, node: &Node, ty: Ty, shape: &Shape, path: &str, pattern: &[String]) {
        let mark = node.mark();
        if !shape.takes(ty) {
            let found = match node.as_str() {
                Some(s) if ty != Ty::Map && ty != Ty::List => format!("{} ({s:?})", describe(ty)),
                _ => describe(ty).to_string(),
            };
            self.error(
                mark,
                path,
                format!("expected {}, found {found}", shape.expected()),
            );
            return;
        }
        // Interpolated values are known at deploy only: their formats are not checked.
        let literal = node.as_str().filter(|s| !s.contains('$'));
        match shape {
            Shape::Scalar(_) => {}
            Shape::Duration => {
                if let Some(s) = literal.filter(|s| !is_duration(s)) {
                    self.error(
                        mark,
                        path,
                        format!("invalid duration {s:?}: use a number and a unit (ns, us, ms, s, m, h), e.g. \"10s\" or \"1m30s\""),
                    );
                }
            }
            Shape::Size => {
                if let Some(s) = literal.filter(|s| ty == Ty::Str && !is_size(s)) {
                    self.error(
                        mark,
                        path,
                        format!("invalid size {s:?}: use a number and a unit (k, m, g...), e.g. \"512M\""),
                    );
                }
            }
            Shape::Port => {
                if let Some(s) = literal.filter(|s| ty == Ty::Str && !is_port_spec(s)) {
                    self.error(
                        mark,
                        path,
                        format!("invalid port spec {s:?}: use [[IP:]PUBLISHED:]TARGET[/tcp|udp|sctp], e.g. \"8080:80\""),
                    );
                }
            }
            Shape::Enum(values) => {
                if let Some(s) = literal.filter(|s| !values.contains(s)) {
                    self.error(
                        mark,
                        path,
                        format!("{s:?} is not one of {}", values.join(", ")),
                    );
                }
            }
            Shape::List { item, unique } => {
                let Node::Seq { items, .. } = node else {
                    return;
                };
                let mut seen: Vec<(usize, String)> = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let mut pat = pattern.to_vec();
                    pat.push("[]".into());
                    self.node(it, item, &format!("{path}[{i}]"), &pat);
                    if *unique && let Some(key) = self.unique_key(it, &pat) {
                        if let Some((first, _)) = seen.iter().find(|(_, k)| *k == key) {
                            let how = if super::super::yaml::flow(it).contains('$') {
                                " once interpolated"
                            } else {
                                ""
                            };
                            let message =
                                format!("the same as item {first}{how}: items must be unique");
                            self.error(it.mark(), &format!("{path}[{i}]"), message);
                        } else {
                            seen.push((i, key));
                        }
                    }
                }
            }
            Shape::Object(o) => self.object(node, o, path, pattern),
            Shape::Dict { key, value, closed } => {
                for e in node.entries().unwrap_or_default() {
                    let sub = join(path, &e.key);
                    if key(&e.key) {
                        let mut pat = pattern.to_vec();
                        pat.push(e.key.clone());
                        self.node(&e.value, value, &sub, &pat);
                    } else if *closed {
                        self.error(
                            e.key_mark,
                            &sub,
                            format!(
                                "invalid name {:?}: use letters, digits, '.', '_' and '-'",
                                e.key
                            ),
                        );
                    }
                }
            }
            Shape::OneOf(alts) => {
                if let Some(alt) = alts.iter().find(|a| a.takes(ty)) {
                    self.typed(node, ty, alt, path, pattern);
                }
            }
        }
    }

    fn object(&mut self, node: &Node, o: &Object, path: &str, pattern: &[String]) {
        let Some(entries) = node.entries() else {
            return;
        };
        if self.minor < o.since {
            self.error(
                node.mark(),
                path,
                format!(
                    "this long syntax needs version: \"3.{}\" or later (the file says 3.{})",
                    o.since, self.minor
                ),
            );
            return;
        }
        if o.since > 0 {
            self.since(o.since, None, node.mark(), path);
        }
        let free_x =
            |key: &str, minor: u8| key.starts_with("x-") && o.x.is_some_and(|v| minor >= v);
        for e in entries {
            let sub = join(path, &e.key);
            match o.props.iter().find(|p| p.name == e.key) {
                // An `x-` key that a later schema types (`x-cluster-spec`) is free before.
                Some(prop) if self.minor < prop.since && free_x(&e.key, self.minor) => {
                    self.since(o.x.unwrap_or_default(), None, e.key_mark, &sub);
                }
                Some(prop) if self.minor < prop.since => self.error(
                    e.key_mark,
                    &sub,
                    format!(
                        "needs version: \"3.{}\" or later (the file says 3.{})",
                        prop.since, self.minor
                    ),
                ),
                Some(prop) => {
                    self.since(prop.since, prop.added, e.key_mark, &sub);
                    let mut pat = pattern.to_vec();
                    pat.push(e.key.clone());
                    self.node(&e.value, prop.shape, &sub, &pat);
                }
                None if free_x(&e.key, self.minor) => {
                    self.since(o.x.unwrap_or_default(), None, e.key_mark, &sub);
                }
                None if o.open_since.is_some_and(|v| self.minor >= v) => {
                    self.since(o.open_since.unwrap_or_default(), None, e.key_mark, &sub);
                }
                None if o.closed => {
                    let known_later = e.key.starts_with("x-") && o.x.is_some();
                    let message = if known_later {
                        format!(
                            "extension keys (x-) need version: \"3.{}\" or later here (the file says 3.{})",
                            o.x.unwrap_or_default(),
                            self.minor
                        )
                    } else {
                        format!(
                            "unknown key: docker stack deploy refuses it (file format 3.{} has no such key here)",
                            self.minor
                        )
                    };
                    self.error(e.key_mark, &sub, message);
                }
                None => {}
            }
        }
        for r in o.required {
            if !entries.iter().any(|e| e.key == *r) {
                self.error(node.mark(), path, format!("{r}: required key is missing"));
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_reads_them() {
        for d in [
            "10s",
            "1m30s",
            "1.5h",
            "300ms",
            "2us",
            "0",
            "-1s",
            "1h2m3s4ms",
        ] {
            assert!(is_duration(d), "{d}");
        }
        for d in ["10", "", "s", "1x", "1.2.3s", "1 s", "m1"] {
            assert!(!is_duration(d), "{d}");
        }
    }

    #[test]
    fn sizes_and_ports() {
        for s in ["512", "512M", "512m", "1.5GiB", "64mb", "1 G", "10k"] {
            assert!(is_size(s), "{s}");
        }
        for s in ["abc", "M", "1.2.", "12 MBB", "-1M"] {
            assert!(!is_size(s), "{s}");
        }
        for s in [
            "80",
            "8080:80",
            "8080:80/udp",
            "127.0.0.1:8080:80",
            "127.0.0.1::80",
            "9000-9010:9000-9010",
            ":80",
        ] {
            assert!(is_port_spec(s), "{s}");
        }
        for s in [
            "abc",
            "70000:80",
            "80:80:80:80",
            "80/ftp",
            "0",
            "a.b.c.d:80:80",
        ] {
            assert!(!is_port_spec(s), "{s}");
        }
    }

    #[test]
    fn casts_follow_the_cli_s_table() {
        let path = |p: &str| p.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cast_for(&path("services.web.deploy.replicas")),
            Some(Ty::Int)
        );
        assert_eq!(
            cast_for(&path("services.web.ports.[].published")),
            Some(Ty::Int)
        );
        assert_eq!(
            cast_for(&path("services.web.ulimits.nofile")),
            Some(Ty::Int)
        );
        assert_eq!(cast_for(&path("networks.front.external")), Some(Ty::Bool));
        assert_eq!(cast_for(&path("services.web.image")), None);
    }
}
