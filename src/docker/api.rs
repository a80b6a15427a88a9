//! The Docker Engine API requests rpiprov sends (over `docker system dial-stdio`, see
//! `crate::exec::engine`), and the JSON shapes of the answers it reads: only the fields
//! used. Pure: requests are built as values ([`Request`]) and tested as exact text;
//! answers are parsed from bytes.
//!
//! rpiprov speaks API version [`VERSION`] (Docker 20.10, the docker.io of Debian 12 and
//! Raspberry Pi OS Bookworm): `GET /services?status=true` (the replica counts without a
//! task list) needs it. A daemon that speaks less is driven through the `docker` CLI
//! instead ([`supported`]).
//!
//! | what | requests | read by |
//! |---|---|---|
//! | the daemon | [`version`], [`info`] | [`parse_version`], [`parse_info`] |
//! | the swarm | [`swarm_inspect`], [`swarm_join`], [`swarm_rotate_tokens`] | [`parse_swarm`] |
//! | nodes | [`nodes`], [`node_update`], [`node_remove`] | [`parse_node_specs`], [`node::parse_node_list`] |
//! | networks | [`network_create`], [`network_remove`] | |
//! | stacks | [`stack_services`], [`stack_tasks`], [`nodes`] | [`parse_stack_polls`] |
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

/// The API version rpiprov speaks.
pub const VERSION: &str = "1.41";

fn v(path: &str) -> String {
    format!("/v{VERSION}{path}")
}

/// `filters={"label":{"KEY":true}}` (or `KEY=VALUE`), encoded.
fn label_filter(label: &str) -> String {
    let json = serde_json::json!({ "label": { label: true } });
    format!("filters={}", encode_query(&json.to_string()))
}

/// The daemon's versions; unversioned, so that any daemon answers.
pub fn version() -> Request {
    Request::get("/version")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawVersion {
    #[serde(default)]
    version: String,
    #[serde(default, rename = "ApiVersion")]
    api_version: String,
}

/// `(docker version, API version)` from [`version`]'s answer.
pub fn parse_version(body: &[u8]) -> Result<(String, String), String> {
    let v: RawVersion = serde_json::from_slice(body)
        .map_err(|e| format!("cannot read the Engine API version: {e}"))?;
    Ok((v.version, v.api_version))
}

/// Whether an API version is at least [`VERSION`].
pub fn supported(api_version: &str) -> bool {
    let num = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match (num(api_version), num(VERSION)) {
        (Some(have), Some(want)) => have >= want,
        _ => false,
    }
}

/// What `docker info` shows. Unversioned: the same on every daemon (see
/// `crate::exec::engine::Engine::open_any`).
pub fn info() -> Request {
    Request::get("/info")
}

/// The parts of the daemon's info rpiprov reads: the answer to [`info`], and the same
/// object `docker info --format '{{json .}}'` prints (the probe's, one `docker` call for
/// all of it: [`crate::docker::probe`]).
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
    Request::get(v("/swarm"))
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

/// Joins a swarm: the token travels in the body of the request, on the channel's stdin,
/// and is in no process's argv or environment (issue 9, item 2). `advertise` is an
/// address or an interface name, as for `docker swarm join --advertise-addr`.
/// Unversioned, like [`info`]. Docker answers once the node joined, or with a 503 whose
/// message says the join goes on in the background: the node's state decides.
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
        v(&format!(
            "/swarm/update?version={}&rotateWorkerToken={worker}&rotateManagerToken={manager}",
            s.version
        )),
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
        v(&format!(
            "/nodes/{}/update?version={}",
            encode_query(&n.id),
            n.version
        )),
        Some(spec.to_string().into_bytes()),
    )
}

/// Removes a node entry (`docker node rm`, `--force` for one swarm still thinks is up).
pub fn node_remove(id: &str, force: bool) -> Request {
    Request::delete(v(&format!("/nodes/{}?force={force}", encode_query(id))))
}

/// Creates a playbook network, labelled as rpiprov's: what
/// [`crate::docker::network::network_create`] asks the `docker` CLI for.
pub fn network_create(net: &crate::config::Network) -> Request {
    let mut body = serde_json::json!({
        "Name": net.name,
        "CheckDuplicate": true,
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
    Request::post(v("/networks/create"), Some(body.to_string().into_bytes()))
}

/// Removes a network by name: what [`crate::docker::network::network_rm`] asks the
/// `docker` CLI for; a failure's message is classified by
/// [`crate::docker::network::rm_failure`] the same way.
pub fn network_remove(name: &str) -> Request {
    Request::delete(v(&format!("/networks/{}", encode_query(name))))
}

/// Every stack service (any stack), with its running and desired task counts.
pub fn stack_services() -> Request {
    Request::get(v(&format!(
        "/services?status=true&{}",
        label_filter(NAMESPACE_LABEL)
    )))
}

/// Every task of every stack service, their history included (the errors are there).
pub fn stack_tasks() -> Request {
    Request::get(v(&format!("/tasks?{}", label_filter(NAMESPACE_LABEL))))
}

/// The swarm's nodes: task errors name nodes by host name, as `docker service ps` does.
pub fn nodes() -> Request {
    Request::get(v("/nodes"))
}

/// A stack's services and networks on a manager (what `docker stack rm` leaves until
/// swarm is done): two requests, answered by two lists.
pub fn stack_leftovers(stack: &str) -> [Request; 2] {
    let f = label_filter(&format!("{NAMESPACE_LABEL}={stack}"));
    [
        Request::get(v(&format!("/services?{f}"))),
        Request::get(v(&format!("/networks?{f}"))),
    ]
}

/// What of a playbook exists on a manager, for a teardown: every stack service and every
/// network (the playbook's own carry no stack label). Read by [`parse_survey`].
pub fn survey() -> [Request; 2] {
    [
        Request::get(v(&format!("/services?{}", label_filter(NAMESPACE_LABEL)))),
        Request::get(v("/networks")),
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

/// Every stack's containers on one node, stopped ones too: counted per stack by
/// [`count_by_stack`].
pub fn stack_containers() -> Request {
    let f = label_filter(NAMESPACE_LABEL);
    Request::get(v(&format!("/containers/json?all=1&{f}")))
}

/// The removal of stack containers on one node, as it happens (`GET /events`, an answer
/// that never ends): what a wait for them to be gone listens to between its polls.
pub fn stack_container_removals() -> Request {
    let filters = serde_json::json!({
        "type": { "container": true },
        "event": { "destroy": true },
        "label": { NAMESPACE_LABEL: true },
    });
    Request::get(v(&format!(
        "/events?filters={}",
        encode_query(&filters.to_string())
    )))
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

/// One poll of every stack, from the answers to [`stack_services`], [`stack_tasks`] and
/// [`nodes`]: per stack name, the same [`Poll`] the CLI's poll gives
/// ([`crate::docker::service::stack_poll`]), plus what only the API tells: whether each
/// task runs the service's current spec ([`Task::current`]).
pub fn parse_stack_polls(
    services: &[u8],
    tasks: &[u8],
    nodes: &[u8],
) -> Result<BTreeMap<String, Poll>, String> {
    let services_json: Vec<Value> =
        serde_json::from_slice(services).map_err(|e| format!("cannot read the services: {e}"))?;
    let raw_services: Vec<RawService> = serde_json::from_value(Value::Array(services_json.clone()))
        .map_err(|e| format!("cannot read the services: {e}"))?;
    let raw_tasks: Vec<RawTask> =
        serde_json::from_slice(tasks).map_err(|e| format!("cannot read the tasks: {e}"))?;
    let nodes = node::parse_node_list(nodes)?;
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
        polls
            .entry(stack.to_string())
            .or_default()
            .tasks
            .push(Task {
                id: t.id.clone(),
                service: name.clone(),
                slot,
                node,
                desired: t.desired_state.to_lowercase(),
                state: t.status.state.to_lowercase(),
                error: t.status.err.clone(),
                current: runs_current_spec(t, s),
                settled: false,
            });
    }
    Ok(polls)
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

/// An image, as the daemon holds it for its own platform (404 when it has none of that
/// name).
pub fn image_inspect(name: &str) -> Request {
    Request::get(v(&format!("/images/{}/json", encode_path(name))))
}

/// Loads a `docker save` archive, sent as the body. The answer is a JSON stream, status
/// 200 even when the load failed ([`image::parse_progress`]). The body goes out as the
/// request builder frames every body, `Content-Type: application/json`: the daemon reads
/// the body as it is, whatever the type says.
pub fn image_load(archive: Vec<u8>) -> Request {
    Request::post(v("/images/load?quiet=1"), Some(archive))
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
    Request::post(v(&format!("/images/create?{query}")), Some(rootfs))
}

/// An image name in a path: its `/` and `:` stay (the daemon's route takes them), the
/// rest of what a reference may not hold is encoded.
fn encode_path(name: &str) -> String {
    name.split('/')
        .map(|part| {
            part.split(':')
                .map(encode_query)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect::<Vec<_>>()
        .join("/")
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
            "/v1.41/services?status=true&filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        assert_eq!(
            stack_containers().path,
            "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        let rm = network_remove("my net");
        assert_eq!(
            (rm.method, rm.path.as_str()),
            ("DELETE", "/v1.41/networks/my%20net")
        );
        let [services, networks] = survey();
        assert_eq!(
            services.path,
            "/v1.41/services?filters=%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
        assert_eq!(networks.path, "/v1.41/networks");
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
        assert!(supported("1.41") && supported("1.43") && supported("2.0"));
        assert!(!supported("1.40") && !supported("x"));
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
            "/v1.41/swarm/update?version=17&rotateWorkerToken=true&rotateManagerToken=false"
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
        let polls = parse_stack_polls(services, tasks, nodes).unwrap();
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
