//! The Docker Engine API requests rpiprov sends (over `docker system dial-stdio`, see
//! `crate::exec::engine`), and the JSON shapes of the answers it reads: only the fields
//! used. Pure: requests are built as values ([`Request`]) without a version and tested as
//! exact text; the engine puts the version it negotiated on each ([`at`]); answers are
//! parsed from bytes.
//!
//! # The version
//!
//! One unversioned `GET /version` per host ([`version`], [`parse_version`]) says which
//! API versions the daemon speaks: its `ApiVersion` and its `MinAPIVersion`. rpiprov then
//! speaks the newest version both know ([`negotiate`]): the daemon's `ApiVersion`, or
//! [`NEWEST`] when the daemon is newer, never below the daemon's minimum nor below
//! [`OLDEST`]; a daemon with no version in common is refused, both ranges named
//! ([`Unsupported`]). Docker 29.0 to 29.2 refuse clients below 1.44 by default, and any
//! daemon from 25 on does when `DOCKER_MIN_API_VERSION` says so: a fixed version would
//! lose them.
//!
//! What rpiprov reads and sends was checked against moby's API history (its changelog,
//! the swagger file of each version, the daemon's routers) from 1.41 (Docker 20.10) to
//! 1.55 (Docker 29): the fields read of `/version`, `/info`, `/nodes`, `/services`,
//! `/tasks`, `/networks`, `/containers/json` and `/swarm`, and the bodies sent (node,
//! swarm and service updates, the swarm join, a network's creation) mean the same in
//! every one of them. Where the versions differ:
//!
//! - a network's `CheckDuplicate` is deprecated from 1.44 on and gone from the schema
//!   later (the daemon refuses a duplicate name whatever it is sent): sent below 1.44
//!   only ([`network_create`]);
//! - a service or node update is taken at the version it is sent at: moby strips a
//!   service spec of the fields added after that version (`adjustForAPIVersion`:
//!   seccomp and AppArmor settings before 1.44, `OomScoreAdj` and tmpfs options before
//!   1.46, swap limits before 1.52), so a spec read and sent back below the daemon's own
//!   version may lose them. Requests go at the negotiated version, the daemon's own up to
//!   [`NEWEST`], and no service field was added after 1.52;
//! - `/events` answers as `application/x-ndjson` from 1.52 on (before, as
//!   `application/json`, the same lines): rpiprov reads only that an event came.
//!
//! | what | requests | read by |
//! |---|---|---|
//! | the daemon | [`version`], [`info`] | [`parse_version`], [`parse_daemon_info`], [`parse_info`] |
//! | the swarm | [`swarm_inspect`], [`swarm_init`], [`swarm_join`], [`swarm_leave`], [`swarm_rotate_tokens`] | [`parse_swarm`], [`parse_node_id`] |
//! | nodes | [`nodes`], [`node_inspect`], [`node_update`], [`node_availability`], [`node_remove`] | [`node::parse_node_list`], [`node::parse_node`], [`parse_node_specs`], [`parse_node_spec`] |
//! | networks | [`networks`], [`network_create`], [`network_remove`] | `crate::docker::network::parse_network_list` |
//! | stacks | [`stack_services`], [`stack_tasks`] | [`parse_stack_polls`], [`stacks_of`] |
//! | services | [`service_inspect`], [`service_force_update`], [`services`], [`running_tasks`], [`node_tasks`] | [`parse_service_spec`], [`parse_swarm_tasks`] |
//! | what of a playbook exists | [`survey`] | [`parse_survey`] |
//! | what a stack left | [`stack_leftovers`], [`stack_containers`], [`stack_container_removals`] | [`count_list`], [`count_by_stack`] |
//! | shipped images | [`version`], [`info`], [`image_inspect`], [`image_load`], [`image_import`] | [`image::ImageStore::parse`], [`image::parse_inspected`], [`image::parse_progress`] |

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

pub use crate::docker::http::Request;
use crate::docker::http::{Response, encode_query};
use crate::docker::service::{self, Poll, ServiceLine, Task};
use crate::docker::stack::{NAMESPACE_LABEL, Seen};
use crate::docker::swarm::SwarmInfo;
use crate::docker::{image, node};
use crate::secret::Secret;

/// An Engine API version, `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// `1.41`; `None` for anything else.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (a, b) = text.split_once('.')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        Some(ApiVersion::new(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl serde::Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The oldest version rpiprov speaks: Docker 20.10's, the docker.io of Debian 12 and
/// Raspberry Pi OS Bookworm (`GET /services?status=true`, the replica counts without a
/// task list, needs it).
pub const OLDEST: ApiVersion = ApiVersion::new(1, 41);

/// The newest version rpiprov was written for, and checked against (see the module
/// header): Docker 29's.
pub const NEWEST: ApiVersion = ApiVersion::new(1, 55);

/// What a daemon says of itself in answer to [`version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Docker's version, e.g. `20.10.24+dfsg1`.
    pub docker: String,
    /// The newest API version it speaks.
    pub api: ApiVersion,
    /// The oldest it accepts.
    pub min_api: ApiVersion,
}

/// A daemon that shares no API version with rpiprov: both ranges, for the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub daemon: Daemon,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.daemon;
        let what = if d.api < OLDEST {
            "upgrade Docker there (rpiprov needs Docker 20.10 or later)"
        } else {
            "this Docker is newer than rpiprov knows: upgrade rpiprov"
        };
        write!(
            f,
            "Docker {} speaks Engine API {} to {}, rpiprov {OLDEST} to {NEWEST}: no version in common; {what}",
            d.docker, d.min_api, d.api
        )
    }
}

/// The version to speak with a daemon: the newest both know, at least both minimums.
pub fn negotiate(d: &Daemon) -> Result<ApiVersion, Unsupported> {
    let speak = d.api.min(NEWEST);
    if speak < d.min_api.max(OLDEST) {
        return Err(Unsupported { daemon: d.clone() });
    }
    Ok(speak)
}

/// `req` as sent at API version `v`: its path under `/vMAJOR.MINOR`.
pub fn at(req: &Request, v: ApiVersion) -> Request {
    Request {
        path: format!("/v{v}{}", req.path),
        ..req.clone()
    }
}

/// `filters={"label":{"KEY":true}}` (or `KEY=VALUE`), encoded.
fn label_filter(label: &str) -> String {
    let json = serde_json::json!({ "label": { label: true } });
    format!("filters={}", encode_query(&json.to_string()))
}

/// The daemon's versions: the one request sent without a version, which any daemon
/// answers. Read by [`parse_version`].
pub fn version() -> Request {
    Request::get("/version")
}

/// The daemon's word on itself, from [`version`]'s answer. A daemon that leaves out its
/// minimum (before API 1.25) accepts anything back to 1.12.
pub fn parse_version(body: &[u8]) -> Result<Daemon, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default, rename = "Version")]
        version: String,
        #[serde(default, rename = "ApiVersion")]
        api: String,
        #[serde(default, rename = "MinAPIVersion")]
        min_api: String,
    }
    let v: Raw = serde_json::from_slice(body)
        .map_err(|e| format!("cannot read the Engine API version: {e}"))?;
    let api = ApiVersion::parse(&v.api).ok_or_else(|| {
        format!(
            "the daemon's Engine API version is {:?}, not a version",
            v.api
        )
    })?;
    let min_api = match v.min_api.as_str() {
        "" => ApiVersion::new(1, 12),
        m => ApiVersion::parse(m)
            .ok_or_else(|| format!("the daemon's minimum API version is {m:?}, not a version"))?,
    };
    Ok(Daemon {
        docker: v.version,
        api,
        min_api,
    })
}

/// What `docker info` shows: the daemon, and the swarm as this node sees it.
pub fn info() -> Request {
    Request::get("/info")
}

/// The parts of the daemon's info rpiprov reads: the answer to [`info`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DaemonInfo {
    pub server_version: String,
    #[serde(deserialize_with = "crate::docker::null_as_default")]
    pub swarm: SwarmInfo,
    /// Where Docker keeps its data (`data-root`).
    pub docker_root_dir: String,
    /// Whether the kernel lets Docker limit a container's memory (the memory cgroup).
    pub memory_limit: Option<bool>,
}

pub fn parse_daemon_info(body: &[u8]) -> Result<DaemonInfo, String> {
    serde_json::from_slice(body).map_err(|e| format!("cannot read the daemon's info: {e}"))
}

pub fn parse_info(body: &[u8]) -> Result<SwarmInfo, String> {
    parse_daemon_info(body).map(|i| i.swarm)
}

/// The swarm as a manager sees it: its version, spec and join tokens.
pub fn swarm_inspect() -> Request {
    Request::get("/swarm")
}

/// What [`swarm_inspect`] answers. The tokens are secrets from the start.
#[derive(Debug, Clone)]
pub struct SwarmSpec {
    pub version: u64,
    /// The spec as Docker sent it: sent back unchanged to rotate the tokens.
    pub spec: Value,
    pub worker_token: Secret,
    pub manager_token: Secret,
}

pub fn parse_swarm(body: &[u8]) -> Result<SwarmSpec, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        version: RawIndex,
        spec: Value,
        join_tokens: Tokens,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RawIndex {
        index: u64,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tokens {
        worker: String,
        manager: String,
    }
    // The error never quotes the body: it holds the tokens.
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| format!("cannot read the swarm's inspect (line {})", e.line()))?;
    Ok(SwarmSpec {
        version: raw.version.index,
        spec: raw.spec,
        worker_token: Secret::new(raw.join_tokens.worker),
        manager_token: Secret::new(raw.join_tokens.manager),
    })
}

/// Forms a swarm with this node as its first manager, as `docker swarm init` asks for it:
/// listening on every address, advertising `advertise` (an address or an interface
/// name), the swarm's spec left to Docker's defaults, and its networks' subnets taken from
/// `default_addr_pool` in /24s when one is given. Answered by the new node's id
/// ([`parse_node_id`]).
pub fn swarm_init(advertise: &str, default_addr_pool: Option<&str>) -> Request {
    let mut body = serde_json::json!({
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": advertise,
        "Spec": {},
        "SubnetSize": 24,
    });
    if let Some(pool) = default_addr_pool {
        body["DefaultAddrPool"] = serde_json::json!([pool]);
    }
    Request::post("/swarm/init", Some(body.to_string().into_bytes()))
}

/// The node id a swarm init answers (a JSON string).
pub fn parse_node_id(body: &[u8]) -> Result<String, String> {
    serde_json::from_slice(body).map_err(|e| format!("cannot read the new node's id: {e}"))
}

/// Leaves the swarm; `force` for the last manager or a node whose swarm is gone. A node in
/// no swarm is refused (`crate::docker::swarm::in_no_swarm` tells).
pub fn swarm_leave(force: bool) -> Request {
    Request::post(format!("/swarm/leave?force={force}"), None)
}

/// Joins a swarm: the token travels in the body of the request, on the channel's stdin,
/// and is in no process's argv or environment (issue 9, item 2). `advertise` is an
/// address or an interface name, as for `docker swarm join --advertise-addr`. Docker
/// answers once the node joined, or with a 503 whose message says the join goes on in the
/// background: the node's state decides.
pub fn swarm_join(advertise: &str, manager_addr: &str, token: &Secret) -> Request {
    let body = serde_json::json!({
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": advertise,
        "RemoteAddrs": [manager_addr],
        "JoinToken": token.expose(),
    });
    Request::post("/swarm/join", Some(body.to_string().into_bytes()))
}

/// New join tokens for these roles: the old ones, which went to the nodes that joined,
/// stop working (`docker swarm join-token --rotate`). The spec goes back unchanged.
pub fn swarm_rotate_tokens(s: &SwarmSpec, worker: bool, manager: bool) -> Request {
    Request::post(
        format!(
            "/swarm/update?version={}&rotateWorkerToken={worker}&rotateManagerToken={manager}",
            s.version
        ),
        Some(s.spec.to_string().into_bytes()),
    )
}

/// A node as an update needs it: its version (swarm refuses an update made from an older
/// one) and its spec as Docker sent it (everything rpiprov does not change goes back
/// unchanged). From the answer to [`nodes`], beside [`node::parse_node_list`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub id: String,
    pub version: u64,
    pub spec: Value,
}

/// One node of the swarm (`GET /nodes/{id}`): read by [`node::parse_node`] and
/// [`parse_node_spec`].
pub fn node_inspect(id: &str) -> Request {
    Request::get(format!("/nodes/{}", encode_query(id)))
}

/// The spec of the node [`node_inspect`] answered.
pub fn parse_node_spec(body: &[u8]) -> Result<NodeSpec, String> {
    let mut list = body.to_vec();
    list.insert(0, b'[');
    list.push(b']');
    parse_node_specs(&list)?
        .pop()
        .ok_or_else(|| "no node in the answer".to_string())
}

pub fn parse_node_specs(body: &[u8]) -> Result<Vec<NodeSpec>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        #[serde(rename = "ID")]
        id: String,
        version: Index,
        #[serde(default)]
        spec: Value,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Index {
        index: u64,
    }
    let raw: Vec<Raw> =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the nodes: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|r| NodeSpec {
            id: r.id,
            version: r.version.index,
            spec: r.spec,
        })
        .collect())
}

/// Changes a node's role and adds or updates labels (never removes a label set by hand):
/// what `docker node promote`/`demote` and `docker node update --label-add` do, in one
/// update.
pub fn node_update(
    n: &NodeSpec,
    role: Option<crate::config::Role>,
    labels: &[(String, String)],
) -> Request {
    let mut spec = n.spec.clone();
    if !spec.is_object() {
        spec = serde_json::json!({});
    }
    if let Some(role) = role {
        spec["Role"] = role.as_str().into();
    }
    if !labels.is_empty() {
        if !spec["Labels"].is_object() {
            spec["Labels"] = serde_json::json!({});
        }
        for (k, val) in labels {
            spec["Labels"][k] = val.as_str().into();
        }
    }
    Request::post(
        format!(
            "/nodes/{}/update?version={}",
            encode_query(&n.id),
            n.version
        ),
        Some(spec.to_string().into_bytes()),
    )
}

/// Makes a node take new tasks (`active`) or none, its tasks moved elsewhere (`drain`):
/// `docker node update --availability`, the rest of its spec sent back unchanged.
pub fn node_availability(n: &NodeSpec, availability: node::Availability) -> Request {
    let mut spec = n.spec.clone();
    if !spec.is_object() {
        spec = serde_json::json!({});
    }
    spec["Availability"] = availability.as_str().into();
    Request::post(
        format!(
            "/nodes/{}/update?version={}",
            encode_query(&n.id),
            n.version
        ),
        Some(spec.to_string().into_bytes()),
    )
}

/// Removes a node entry (`docker node rm`, `--force` for one swarm still thinks is up).
pub fn node_remove(id: &str, force: bool) -> Request {
    Request::delete(format!("/nodes/{}?force={force}", encode_query(id)))
}

/// Creates a playbook network, labelled as rpiprov's, as sent at API version `v`:
/// `CheckDuplicate` only below 1.44, which made it the daemon's rule and dropped it.
pub fn network_create(net: &crate::config::Network, v: ApiVersion) -> Request {
    let mut body = serde_json::json!({
        "Name": net.name,
        "Driver": net.driver,
        "Scope": "swarm",
        "Attachable": net.attachable,
        "Internal": net.internal,
        "IPAM": {
            "Driver": "default",
            "Config": net.subnet.iter().map(|s| serde_json::json!({ "Subnet": s })).collect::<Vec<_>>(),
        },
        "Labels": { crate::docker::network::MANAGED_LABEL: "true" },
    });
    if net.encrypted {
        body["Options"] = serde_json::json!({ "encrypted": "" });
    }
    if v < ApiVersion::new(1, 44) {
        body["CheckDuplicate"] = true.into();
    }
    Request::post("/networks/create", Some(body.to_string().into_bytes()))
}

/// Every network the node knows: on a manager, the swarm's too. Read by
/// [`crate::docker::network::parse_network_list`].
pub fn networks() -> Request {
    Request::get("/networks")
}

/// Removes a network by name; a failure's message is classified by
/// [`crate::docker::network::rm_failure`].
pub fn network_remove(name: &str) -> Request {
    Request::delete(format!("/networks/{}", encode_query(name)))
}

/// Every stack service (any stack), with its running and desired task counts.
pub fn stack_services() -> Request {
    Request::get(format!(
        "/services?status=true&{}",
        label_filter(NAMESPACE_LABEL)
    ))
}

/// One service, by name or id, as an update needs it: read by [`parse_service_spec`].
pub fn service_inspect(name: &str) -> Request {
    Request::get(format!("/services/{}", encode_query(name)))
}

/// A service as an update needs it: its id, its version (swarm refuses an update made
/// from an older one) and its spec as Docker sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub id: String,
    pub version: u64,
    pub spec: Value,
}

pub fn parse_service_spec(body: &[u8]) -> Result<ServiceSpec, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        #[serde(rename = "ID")]
        id: String,
        version: Index,
        spec: Value,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Index {
        index: u64,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the service: {e}"))?;
    Ok(ServiceSpec {
        id: raw.id,
        version: raw.version.index,
        spec: raw.spec,
    })
}

/// Starts a service's update again, every task replaced by one of the current spec: what
/// `docker service update --force` does (its task template's `ForceUpdate` counter goes
/// up by one, the rest of the spec goes back unchanged; no image is resolved anew).
pub fn service_force_update(s: &ServiceSpec) -> Request {
    let mut spec = s.spec.clone();
    if !spec["TaskTemplate"].is_object() {
        spec["TaskTemplate"] = serde_json::json!({});
    }
    let n = spec["TaskTemplate"]["ForceUpdate"].as_u64().unwrap_or(0);
    spec["TaskTemplate"]["ForceUpdate"] = (n + 1).into();
    Request::post(
        format!(
            "/services/{}/update?version={}",
            encode_query(&s.id),
            s.version
        ),
        Some(spec.to_string().into_bytes()),
    )
}

/// An image as the node holds it: 200 when it has it (for the daemon's own platform),
/// 404 when not. The reference's `/`,
/// `:` and `@` stay as they are in the path, as Docker's own client sends them (its route
/// takes the rest of the path as the name).
pub fn image_inspect(name: &str) -> Request {
    let path: String = name
        .split_inclusive(['/', ':', '@'])
        .map(|part| {
            let (word, sep) = match part.char_indices().last() {
                Some((i, c)) if "/:@".contains(c) => (&part[..i], &part[i..]),
                _ => (part, ""),
            };
            format!("{}{sep}", encode_query(word))
        })
        .collect();
    Request::get(format!("/images/{path}/json"))
}

/// Every task of every stack service, their history included (the errors are there).
pub fn stack_tasks() -> Request {
    Request::get(format!("/tasks?{}", label_filter(NAMESPACE_LABEL)))
}

/// The swarm's nodes: task errors name nodes by host name, as `docker service ps` does.
pub fn nodes() -> Request {
    Request::get("/nodes")
}

/// A stack's services and networks on a manager (what `docker stack rm` leaves until
/// swarm is done): two requests, answered by two lists.
pub fn stack_leftovers(stack: &str) -> [Request; 2] {
    let f = label_filter(&format!("{NAMESPACE_LABEL}={stack}"));
    [
        Request::get(format!("/services?{f}")),
        Request::get(format!("/networks?{f}")),
    ]
}

/// What of a playbook exists on a manager, for a teardown: every stack service and every
/// network (the playbook's own carry no stack label). Read by [`parse_survey`].
pub fn survey() -> [Request; 2] {
    [
        Request::get(format!("/services?{}", label_filter(NAMESPACE_LABEL))),
        Request::get("/networks"),
    ]
}

/// The stacks named by the services' and networks' stack labels, and every network's
/// name, from the answers to [`survey`].
pub fn parse_survey(services: &[u8], networks: &[u8]) -> Result<Seen, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Labels {
        #[serde(default, deserialize_with = "crate::docker::null_as_default")]
        labels: HashMap<String, String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RawService {
        spec: Labels,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RawNetwork {
        name: String,
        #[serde(flatten)]
        labels: Labels,
    }
    let services: Vec<RawService> =
        serde_json::from_slice(services).map_err(|e| format!("cannot read the services: {e}"))?;
    let networks: Vec<RawNetwork> =
        serde_json::from_slice(networks).map_err(|e| format!("cannot read the networks: {e}"))?;
    let mut seen = Seen::default();
    for labels in services
        .iter()
        .map(|s| &s.spec)
        .chain(networks.iter().map(|n| &n.labels))
    {
        if let Some(stack) = labels.labels.get(NAMESPACE_LABEL) {
            seen.stacks.push(stack.clone());
        }
    }
    seen.networks = networks.into_iter().map(|n| n.name).collect();
    Ok(seen)
}

/// The stacks that exist: those named by the stack label of a service listed by
/// [`stack_services`] (what `docker stack ls` lists).
pub fn stacks_of(services: &[u8]) -> Result<std::collections::HashSet<String>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        spec: Labels,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Labels {
        #[serde(default, deserialize_with = "crate::docker::null_as_default")]
        labels: HashMap<String, String>,
    }
    let raw: Vec<Raw> =
        serde_json::from_slice(services).map_err(|e| format!("cannot read the services: {e}"))?;
    Ok(raw
        .into_iter()
        .filter_map(|s| s.spec.labels.get(NAMESPACE_LABEL).cloned())
        .collect())
}

/// Every stack's containers on one node, stopped ones too: counted per stack by
/// [`count_by_stack`].
pub fn stack_containers() -> Request {
    let f = label_filter(NAMESPACE_LABEL);
    Request::get(format!("/containers/json?all=1&{f}"))
}

/// The removal of stack containers on one node, as it happens (`GET /events`, an answer
/// that never ends): what a wait for them to be gone listens to between its polls.
pub fn stack_container_removals() -> Request {
    let filters = serde_json::json!({
        "type": { "container": true },
        "event": { "destroy": true },
        "label": { NAMESPACE_LABEL: true },
    });
    Request::get(format!(
        "/events?filters={}",
        encode_query(&filters.to_string())
    ))
}

/// How many of the listed containers each stack has.
pub fn count_by_stack(body: &[u8]) -> Result<BTreeMap<String, usize>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        #[serde(default, deserialize_with = "crate::docker::null_as_default")]
        labels: HashMap<String, String>,
    }
    let items: Vec<Raw> =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the containers: {e}"))?;
    let mut counts = BTreeMap::new();
    for stack in items.iter().filter_map(|c| c.labels.get(NAMESPACE_LABEL)) {
        *counts.entry(stack.clone()).or_default() += 1;
    }
    Ok(counts)
}

/// How many items a list answer holds.
pub fn count_list(body: &[u8]) -> Result<usize, String> {
    let items: Vec<serde::de::IgnoredAny> =
        serde_json::from_slice(body).map_err(|e| format!("cannot read a list: {e}"))?;
    Ok(items.len())
}

/// An answer's body read by `parse`, or the error Docker gave instead.
pub fn read<T>(r: &Response, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Result<T, String> {
    if r.ok() {
        parse(&r.body)
    } else {
        Err(error_message(r))
    }
}

/// `Ok` when every answer of a batch succeeded, else the error of the first that did not.
pub fn all_ok(answers: &[Response]) -> Result<(), String> {
    match answers.iter().find(|r| !r.ok()) {
        Some(bad) => Err(error_message(bad)),
        None => Ok(()),
    }
}

/// The error Docker gives in a failed answer (`{"message": ...}`), or the body.
pub fn error_message(r: &Response) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(&r.body) {
        Ok(m) => m.message.trim().to_string(),
        Err(_) => format!("status {}: {}", r.status, r.text().trim()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    updated_at: String,
    spec: RawServiceSpec,
    #[serde(default)]
    service_status: Option<RawStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawServiceSpec {
    name: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    task_template: Value,
    #[serde(default)]
    mode: Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawStatus {
    running_tasks: u64,
    desired_tasks: u64,
    completed_tasks: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    created_at: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(default)]
    slot: u64,
    #[serde(default, rename = "NodeID")]
    node_id: String,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    status: RawTaskStatus,
    #[serde(default)]
    desired_state: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawTaskStatus {
    state: String,
    err: String,
}

/// One poll of every stack, from the answers to [`stack_services`] and [`stack_tasks`], and
/// the swarm's nodes (tasks name their nodes by host name, as `docker service ps` does):
/// per stack name, its services' counts and specs and its tasks, each with whether it runs
/// its service's current spec ([`Task::current`]).
pub fn parse_stack_polls(
    services: &[u8],
    tasks: &[u8],
    nodes: &[node::SwarmNode],
) -> Result<BTreeMap<String, Poll>, String> {
    let services_json: Vec<Value> =
        serde_json::from_slice(services).map_err(|e| format!("cannot read the services: {e}"))?;
    let raw_services: Vec<RawService> = serde_json::from_value(Value::Array(services_json.clone()))
        .map_err(|e| format!("cannot read the services: {e}"))?;
    let raw_tasks: Vec<RawTask> =
        serde_json::from_slice(tasks).map_err(|e| format!("cannot read the tasks: {e}"))?;
    let hostnames: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.hostname.as_str()))
        .collect();
    // The spec judgement reads the same JSON `docker service inspect` prints.
    let specs = service::parse_inspect(&Value::Array(services_json).to_string())?;

    let mut polls: BTreeMap<String, Poll> = BTreeMap::new();
    let mut by_id: HashMap<&str, (&RawService, &str)> = HashMap::new();
    for (s, spec) in raw_services.iter().zip(specs) {
        let Some(stack) = s.spec.labels.get(NAMESPACE_LABEL) else {
            continue;
        };
        by_id.insert(s.id.as_str(), (s, stack.as_str()));
        let st = s.service_status.as_ref();
        let job_total = s.spec.mode.get("ReplicatedJob").map(|j| {
            j.get("TotalCompletions")
                .and_then(Value::as_u64)
                .unwrap_or(1)
        });
        let poll = polls.entry(stack.clone()).or_default();
        poll.services.push(ServiceLine {
            name: s.spec.name.clone(),
            running: st.map_or(0, |x| x.running_tasks),
            desired: st.map_or(0, |x| x.desired_tasks),
            completed: job_total.map(|t| (st.map_or(0, |x| x.completed_tasks), t)),
        });
        poll.specs.push(spec);
    }
    for t in &raw_tasks {
        let Some((s, stack)) = by_id.get(t.service_id.as_str()) else {
            continue;
        };
        polls
            .entry(stack.to_string())
            .or_default()
            .tasks
            .push(task_of(t, s, &hostnames));
    }
    Ok(polls)
}

/// A task as rpiprov judges it: named by its slot as `docker service ps` names it
/// (`web_app.1`, a global service's `web_agent.NODEID`), its node by host name.
fn task_of(t: &RawTask, s: &RawService, hostnames: &HashMap<&str, &str>) -> Task {
    let name = &s.spec.name;
    let slot = if s.spec.mode.get("Global").is_some() || t.slot == 0 {
        format!("{name}.{}", t.node_id)
    } else {
        format!("{name}.{}", t.slot)
    };
    let node = hostnames
        .get(t.node_id.as_str())
        .map(|h| h.to_string())
        .unwrap_or_else(|| t.node_id.clone());
    Task {
        id: t.id.clone(),
        service: name.clone(),
        slot,
        node,
        desired: t.desired_state.to_lowercase(),
        state: t.status.state.to_lowercase(),
        error: t.status.err.clone(),
        current: runs_current_spec(t, s),
        settled: false,
    }
}

/// Every service (of a stack or not), with its counts: what a maintenance weighs.
pub fn services() -> Request {
    Request::get("/services?status=true")
}

/// The tasks swarm wants running, swarm-wide (`docker service ps --filter
/// desired-state=running`).
pub fn running_tasks() -> Request {
    let filters = serde_json::json!({ "desired-state": { "running": true } });
    Request::get(format!(
        "/tasks?filters={}",
        encode_query(&filters.to_string())
    ))
}

/// Every task of one node, those being stopped included (`docker node ps NODE`).
pub fn node_tasks(node_id: &str) -> Request {
    let filters = serde_json::json!({ "node": { node_id: true } });
    Request::get(format!(
        "/tasks?filters={}",
        encode_query(&filters.to_string())
    ))
}

/// Every service with its kind and counts, and the tasks, from the answers to
/// [`services`] and [`running_tasks`] or [`node_tasks`] and the swarm's nodes.
pub fn parse_swarm_tasks(
    services: &[u8],
    tasks: &[u8],
    nodes: &[node::SwarmNode],
) -> Result<(Vec<crate::docker::task::Service>, Vec<Task>), String> {
    let raw_services: Vec<RawService> =
        serde_json::from_slice(services).map_err(|e| format!("cannot read the services: {e}"))?;
    let raw_tasks: Vec<RawTask> =
        serde_json::from_slice(tasks).map_err(|e| format!("cannot read the tasks: {e}"))?;
    let hostnames: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.hostname.as_str()))
        .collect();
    let by_id: HashMap<&str, &RawService> =
        raw_services.iter().map(|s| (s.id.as_str(), s)).collect();
    let listed = raw_services
        .iter()
        .map(|s| {
            let st = s.service_status.as_ref();
            crate::docker::task::Service {
                name: s.spec.name.clone(),
                global: s.spec.mode.get("Global").is_some(),
                replicated: s.spec.mode.get("Replicated").is_some(),
                running: st.map_or(0, |x| x.running_tasks),
                desired: st.map_or(0, |x| x.desired_tasks),
            }
        })
        .collect();
    let tasks = raw_tasks
        .iter()
        .filter_map(|t| {
            by_id
                .get(t.service_id.as_str())
                .map(|s| task_of(t, s, &hostnames))
        })
        .collect();
    Ok((listed, tasks))
}

/// Whether a task was made from its service's current spec. Created after the service's
/// last change: surely. Otherwise its spec is compared with the service's task template
/// the way swarm decides a task is outdated (moby's `IsTaskDirty`), leaving out what
/// Docker shows on one side only (`Runtime`) and what swarm changes without replacing a
/// task: placement (a running task stays where it still may run) and pull options.
fn runs_current_spec(t: &RawTask, s: &RawService) -> bool {
    if later(&t.created_at, &s.updated_at) {
        return true;
    }
    normalized(&t.spec) == normalized(&s.spec.task_template)
}

fn normalized(spec: &Value) -> Value {
    let mut v = spec.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("Runtime");
        o.remove("Placement");
        if let Some(c) = o.get_mut("ContainerSpec").and_then(Value::as_object_mut) {
            c.remove("PullOptions");
        }
    }
    drop_nulls(&mut v);
    v
}

/// Null and empty values are absent values: either side may leave them out.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for x in o.values_mut() {
                drop_nulls(x);
            }
            o.retain(|_, x| match x {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Loads a `docker save` archive, sent as the body. The answer is a JSON stream, status
/// 200 even when the load failed ([`image::parse_progress`]). The body goes out as the
/// request builder frames every body, `Content-Type: application/json`: the daemon reads
/// the body as it is, whatever the type says.
pub fn image_load(archive: Vec<u8>) -> Request {
    Request::post("/images/load?quiet=1", Some(archive))
}

/// Imports a root file system tarball, sent as the body, as `name`, with its `CMD`
/// given as a JSON array (exec form: no shell needed in the image). Answered as
/// [`image_load`] is.
pub fn image_import(name: &str, cmd: &[String], rootfs: Vec<u8>) -> Request {
    let (repo, tag) = image::repo_and_tag(name);
    let mut query = format!(
        "fromSrc=-&repo={}&tag={}",
        encode_query(repo),
        encode_query(tag)
    );
    if !cmd.is_empty() {
        let json = serde_json::to_string(cmd).expect("strings serialise");
        query.push_str(&format!(
            "&changes={}",
            encode_query(&format!("CMD {json}"))
        ));
    }
    Request::post(format!("/images/create?{query}"), Some(rootfs))
}

/// `a` is at or after `b`; both RFC 3339 in UTC as Docker writes them (the fraction has
/// no trailing zeros, so it is padded before comparing).
fn later(a: &str, b: &str) -> bool {
    fn key(t: &str) -> Option<(String, u32)> {
        let t = t.strip_suffix('Z')?;
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        Some((secs.to_string(), digits.parse().ok()?))
    }
    match (key(a), key(b)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            stack_services().path,
            "/services?status=true&filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        assert_eq!(
            stack_containers().path,
            "/containers/json?all=1&filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        let rm = network_remove("my net");
        assert_eq!(
            (rm.method, rm.path.as_str()),
            ("DELETE", "/networks/my%20net")
        );
        let [services, networks] = survey();
        assert_eq!(
            services.path,
            "/services?filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        assert_eq!(networks.path, "/networks");
        assert_eq!(
            count_by_stack(br#"[{"Id":"a","Labels":{"com.docker.stack.namespace":"web"}},{"Labels":{"com.docker.stack.namespace":"web"}},{"Labels":{"com.docker.stack.namespace":"api","x":"y"}},{"Labels":null}]"#).unwrap(),
            BTreeMap::from([("api".to_string(), 1), ("web".to_string(), 2)])
        );
        let join = swarm_join(
            "198.18.0.12",
            "198.18.0.11:2377",
            &Secret::new("SWMTKN-1-x"),
        );
        assert_eq!((join.method, join.path.as_str()), ("POST", "/swarm/join"));
        let body: Value = serde_json::from_slice(join.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "198.18.0.12",
                "RemoteAddrs": ["198.18.0.11:2377"], "JoinToken": "SWMTKN-1-x"})
        );
    }

    fn daemon(docker: &str, min: (u32, u32), max: (u32, u32)) -> Daemon {
        Daemon {
            docker: docker.into(),
            api: ApiVersion::new(max.0, max.1),
            min_api: ApiVersion::new(min.0, min.1),
        }
    }

    /// The `/version` answers of the Dockers rpiprov meets, and the version spoken with
    /// each: the daemon's own up to the newest rpiprov knows, never below either floor.
    #[test]
    fn the_version_spoken_is_the_newest_both_know() {
        let got = parse_version(
            br#"{"Platform":{"Name":""},"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux"}"#,
        )
        .unwrap();
        assert_eq!(got, daemon("20.10.24+dfsg1", (1, 12), (1, 41)));
        let v = |d: &Daemon| negotiate(d).map(|v| v.to_string());
        assert_eq!(v(&got), Ok("1.41".into()));
        // Debian 13's docker.io, Debian unstable's, Docker 29.0 (its floor raised to 1.44),
        // and a Docker 29 whose daemon reports more than rpiprov knows.
        assert_eq!(
            v(&daemon("26.1.5+dfsg1", (1, 24), (1, 45))),
            Ok("1.45".into())
        );
        assert_eq!(
            v(&daemon("28.5.2+dfsg1", (1, 24), (1, 51))),
            Ok("1.51".into())
        );
        assert_eq!(v(&daemon("29.0.0", (1, 44), (1, 52))), Ok("1.52".into()));
        assert_eq!(v(&daemon("29.4.0", (1, 40), (1, 55))), Ok("1.55".into()));
        assert_eq!(v(&daemon("30.0.0", (1, 44), (1, 58))), Ok("1.55".into()));
        // The 1.44 floor a daemon's DOCKER_MIN_API_VERSION sets: still its own version.
        assert_eq!(
            v(&daemon("28.5.2+dfsg1", (1, 44), (1, 51))),
            Ok("1.51".into())
        );
        assert_eq!(
            v(&daemon("26.1.5+dfsg1", (1, 44), (1, 45))),
            Ok("1.45".into())
        );
        // Exactly at both edges.
        assert_eq!(v(&daemon("x", (1, 41), (1, 41))), Ok("1.41".into()));
        assert_eq!(v(&daemon("x", (1, 55), (1, 60))), Ok("1.55".into()));
        // A minimum over the maximum: nothing in common.
        assert!(v(&daemon("x", (1, 44), (1, 43))).is_err());
    }

    /// Too old, or too new, for any version in common: refused with both ranges named.
    #[test]
    fn a_daemon_with_no_version_in_common_is_refused_naming_both_ranges() {
        let old = negotiate(&daemon("19.03.15", (1, 12), (1, 40))).unwrap_err();
        assert_eq!(
            old.to_string(),
            "Docker 19.03.15 speaks Engine API 1.12 to 1.40, rpiprov 1.41 to 1.55: no version in common; upgrade Docker there (rpiprov needs Docker 20.10 or later)"
        );
        let new = negotiate(&daemon("31.0.0", (1, 56), (1, 60))).unwrap_err();
        assert_eq!(
            new.to_string(),
            "Docker 31.0.0 speaks Engine API 1.56 to 1.60, rpiprov 1.41 to 1.55: no version in common; this Docker is newer than rpiprov knows: upgrade rpiprov"
        );
        // A daemon that says nothing of its minimum accepts anything back to 1.12.
        assert_eq!(
            parse_version(br#"{"Version":"1.12.6","ApiVersion":"1.24"}"#).unwrap(),
            daemon("1.12.6", (1, 12), (1, 24))
        );
        assert_eq!(
            parse_version(br#"{"Version":"x","ApiVersion":"v1"}"#).unwrap_err(),
            "the daemon's Engine API version is \"v1\", not a version"
        );
        assert!(ApiVersion::parse("1.41 ").is_none() && ApiVersion::parse("1.").is_none());
    }

    /// A node's role, labels and availability change in its spec, the rest sent back as
    /// read, at its version; label values are JSON, whatever they hold.
    #[test]
    fn node_changes_keep_the_rest_of_the_spec() {
        let n = parse_node_spec(
            br#"{"ID":"n2","Version":{"Index":7},"Spec":{"Role":"worker","Availability":"active","Labels":{"own":"x"},"Name":"kept"}}"#,
        )
        .unwrap();
        let r = node_update(
            &n,
            Some(crate::config::Role::Manager),
            &[("zone".into(), "rack 1; rm -rf /".into())],
        );
        assert_eq!(
            (r.method, r.path.as_str()),
            ("POST", "/nodes/n2/update?version=7")
        );
        let body: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Role": "manager", "Availability": "active", "Name": "kept",
                "Labels": {"own": "x", "zone": "rack 1; rm -rf /"}})
        );
        let r = node_availability(&n, node::Availability::Drain);
        let body: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Role": "worker", "Availability": "drain", "Name": "kept",
                "Labels": {"own": "x"}})
        );
        assert_eq!(node_remove("abc", true).path, "/nodes/abc?force=true");
        assert_eq!(node_remove("abc", false).path, "/nodes/abc?force=false");
        assert_eq!(node_inspect("n 1").path, "/nodes/n%201");
        assert_eq!(swarm_leave(false).path, "/swarm/leave?force=false");
        let init: Value = serde_json::from_slice(
            swarm_init("eth0", Some("198.19.0.0/16"))
                .body
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            init,
            serde_json::json!({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "eth0", "Spec": {},
                "SubnetSize": 24, "DefaultAddrPool": ["198.19.0.0/16"]})
        );
        assert_eq!(parse_node_id(br#""n1abc""#).unwrap(), "n1abc");
    }

    /// `docker service update --force`: the counter goes up, the rest goes back as read.
    #[test]
    fn a_forced_update_raises_the_counter_and_keeps_the_spec() {
        let s = parse_service_spec(
            br#"{"ID":"s1","Version":{"Index":42},"Spec":{"Name":"web_web","TaskTemplate":{"ContainerSpec":{"Image":"b"},"ForceUpdate":2},"Mode":{"Global":{}}}}"#,
        )
        .unwrap();
        let r = service_force_update(&s);
        assert_eq!(
            (r.method, r.path.as_str()),
            ("POST", "/services/s1/update?version=42")
        );
        let body: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Name": "web_web", "TaskTemplate": {"ContainerSpec": {"Image": "b"},
                "ForceUpdate": 3}, "Mode": {"Global": {}}})
        );
        assert_eq!(service_inspect("web_web").path, "/services/web_web");
        assert_eq!(
            image_inspect("rpiprov-lab/busybox:1").path,
            "/images/rpiprov-lab/busybox:1/json"
        );
    }

    /// Requests are built without a version; the engine puts it on the path.
    #[test]
    fn a_request_is_sent_at_the_version_negotiated() {
        let r = at(&stack_tasks(), ApiVersion::new(1, 45));
        assert!(r.path.starts_with("/v1.45/tasks?filters="), "{}", r.path);
        assert_eq!(at(&info(), OLDEST).path, "/v1.41/info");
        assert_eq!(at(&version(), NEWEST).path, "/v1.55/version");
        // CheckDuplicate goes below 1.44 only.
        let net = crate::config::Network {
            name: "DATA".into(),
            driver: "overlay".into(),
            attachable: true,
            internal: false,
            subnet: None,
            encrypted: true,
        };
        let body = |v| -> Value {
            serde_json::from_slice(network_create(&net, v).body.as_ref().unwrap()).unwrap()
        };
        assert_eq!(
            body(ApiVersion::new(1, 43)),
            serde_json::json!({"Name": "DATA", "CheckDuplicate": true, "Driver": "overlay",
                "Scope": "swarm", "Attachable": true, "Internal": false,
                "IPAM": {"Driver": "default", "Config": []}, "Options": {"encrypted": ""},
                "Labels": {"io.rpiprov.managed": "true"}})
        );
        assert_eq!(
            body(ApiVersion::new(1, 44)),
            serde_json::json!({"Name": "DATA", "Driver": "overlay",
                "Scope": "swarm", "Attachable": true, "Internal": false,
                "IPAM": {"Driver": "default", "Config": []}, "Options": {"encrypted": ""},
                "Labels": {"io.rpiprov.managed": "true"}})
        );
    }

    #[test]
    fn the_swarm_and_its_rotation() {
        let body = br#"{"ID":"c1","Version":{"Index":17},"Spec":{"Name":"default","Raft":{"SnapshotInterval":10000}},"JoinTokens":{"Worker":"SWMTKN-w","Manager":"SWMTKN-m"}}"#;
        let s = parse_swarm(body).unwrap();
        assert_eq!(s.version, 17);
        assert_eq!(s.worker_token.expose(), "SWMTKN-w");
        let r = swarm_rotate_tokens(&s, true, false);
        assert_eq!(
            r.path,
            "/swarm/update?version=17&rotateWorkerToken=true&rotateManagerToken=false"
        );
        assert_eq!(
            String::from_utf8(r.body.unwrap()).unwrap(),
            r#"{"Name":"default","Raft":{"SnapshotInterval":10000}}"#
        );
        // A bad answer's error does not quote it (it may hold the tokens).
        let e = parse_swarm(br#"{"JoinTokens":{"Worker":"SWMTKN-w"}}"#).unwrap_err();
        assert!(!e.contains("SWMTKN"), "{e}");
    }

    #[test]
    fn timestamps_compare_with_their_fractions() {
        assert!(later("2026-11-29T20:32:36.452Z", "2026-11-29T20:32:36.45Z"));
        assert!(!later(
            "2026-11-29T20:32:36.45Z",
            "2026-11-29T20:32:36.452Z"
        ));
        assert!(later(
            "2026-11-29T20:32:37Z",
            "2026-11-29T20:32:36.999999999Z"
        ));
        assert!(!later("bad", "2026-11-29T20:32:36Z"));
    }

    /// Shapes from Docker 20.10.24 in the lab (trimmed): a replicated service updated
    /// after its tasks were made, one task of the current spec (Docker leaves `Runtime`
    /// out of a task's spec) and one of the previous spec, and a global service.
    #[test]
    fn a_poll_of_every_stack() {
        let services = br#"[
 {"ID":"s1","UpdatedAt":"2026-11-29T20:33:11.67Z","Spec":{"Name":"api_api","Labels":{"com.docker.stack.namespace":"api"},
  "TaskTemplate":{"ContainerSpec":{"Image":"rpiprov-lab/busybox:1","Args":["/bin/httpd"],"Env":["X=1"]},"Resources":{},"Placement":{"MaxReplicas":1},"ForceUpdate":0,"Runtime":"container"},
  "Mode":{"Replicated":{"Replicas":2}}},
  "UpdateStatus":{"State":"updating","Message":"update in progress"},
  "ServiceStatus":{"RunningTasks":2,"DesiredTasks":2,"CompletedTasks":0}},
 {"ID":"s2","UpdatedAt":"2026-11-29T20:32:30Z","Spec":{"Name":"web_web","Labels":{"com.docker.stack.namespace":"web"},
  "TaskTemplate":{"ContainerSpec":{"Image":"b"},"Runtime":"container"},"Mode":{"Global":{}}},
  "ServiceStatus":{"RunningTasks":1,"DesiredTasks":1,"CompletedTasks":0}},
 {"ID":"s3","Spec":{"Name":"other","TaskTemplate":{}, "Mode":{"Replicated":{"Replicas":1}}}}
]"#;
        let tasks = br#"[
 {"ID":"t1","CreatedAt":"2026-11-29T20:33:12Z","ServiceID":"s1","Slot":1,"NodeID":"n1","Spec":{"ContainerSpec":{"Image":"rpiprov-lab/busybox:1","Args":["/bin/httpd"],"Env":["X=1"]},"Resources":{},"Placement":{"MaxReplicas":1},"ForceUpdate":0},
  "Status":{"State":"running","Message":"started"},"DesiredState":"running"},
 {"ID":"t2","CreatedAt":"2026-11-29T20:32:36Z","ServiceID":"s1","Slot":2,"NodeID":"n2","Spec":{"ContainerSpec":{"Image":"rpiprov-lab/busybox:1","Args":["/bin/httpd"]},"Resources":{},"ForceUpdate":0},
  "Status":{"State":"running"},"DesiredState":"running"},
 {"ID":"t3","CreatedAt":"2026-11-29T20:32:31Z","ServiceID":"s2","NodeID":"n2","Spec":{"ContainerSpec":{"Image":"b"}},
  "Status":{"State":"rejected","Err":"No such image: b"},"DesiredState":"shutdown"},
 {"ID":"t4","ServiceID":"s3","Status":{"State":"running"},"DesiredState":"running"}
]"#;
        let nodes = br#"[{"ID":"n1","Description":{"Hostname":"pi1"}},{"ID":"n2","Description":{"Hostname":"pi2"}}]"#;
        let nodes = node::parse_node_list(nodes).unwrap();
        let polls = parse_stack_polls(services, tasks, &nodes).unwrap();
        assert_eq!(polls.keys().collect::<Vec<_>>(), ["api", "web"]);
        let api = &polls["api"];
        assert_eq!(
            api.services,
            vec![ServiceLine {
                name: "api_api".into(),
                running: 2,
                desired: 2,
                completed: None
            }]
        );
        assert_eq!(
            api.specs[0].update,
            Some(("updating".into(), "update in progress".into()))
        );
        let current: Vec<(&str, &str, &str, bool)> = api
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.slot.as_str(), t.node.as_str(), t.current))
            .collect();
        assert_eq!(
            current,
            [
                ("t1", "api_api.1", "pi1", true),
                ("t2", "api_api.2", "pi2", false)
            ]
        );
        let web = &polls["web"].tasks[0];
        assert_eq!(
            (
                web.slot.as_str(),
                web.state.as_str(),
                web.error.as_str(),
                web.current
            ),
            ("web_web.n2", "rejected", "No such image: b", true)
        );
    }
}
