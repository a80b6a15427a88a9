//! `DIR/state.json`: everything the lab created, written BEFORE each resource is created so
//! that `lab down` can remove a half-made lab after a crash. Removal tolerates entries whose
//! resource never came to exist.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::error::{LabError, Result};
use super::layout::{Layout, Shape};
use super::sys::{self, ProcId};

pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

/// One iptables rule as `iptables -t TABLE -C/-D CHAIN SPEC...` takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub spec: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeState {
    /// `ip netns add` was (about to be) run.
    pub netns: bool,
    /// The host-side veth was (about to be) created.
    pub veth: bool,
    /// The node's first process, which holds its mount and UTS namespaces.
    pub holder: Option<ProcId>,
    /// Inode of the holder's mount namespace: every process of the node shares it.
    pub mnt_ns: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub version: u32,
    /// Absolute lab directory.
    pub dir: PathBuf,
    pub shape: Shape,
    pub layout: Layout,
    /// Where the debootstrap base of bare nodes lives (kept by `down` when outside `dir`).
    pub cache: Option<PathBuf>,
    pub bridge: bool,
    /// `/proc/sys/net/ipv4/ip_forward` before the lab set it to 1; restored by `down`.
    pub ip_forward_before: Option<String>,
    pub rules: Vec<Rule>,
    /// `--cpu`: each node's share of one CPU; its cgroups exist (or are about to).
    #[serde(default)]
    pub cpu: Option<f64>,
    /// `--registry`: the lab's registry (recorded before its process is spawned).
    #[serde(default)]
    pub registry: Option<super::registry::RegistryState>,
    pub nodes: std::collections::BTreeMap<String, NodeState>,
}

impl State {
    pub fn new(dir: &Path, shape: Shape, layout: Layout) -> Self {
        State {
            version: VERSION,
            dir: dir.to_path_buf(),
            shape,
            layout,
            cache: None,
            bridge: false,
            ip_forward_before: None,
            rules: Vec::new(),
            cpu: None,
            registry: None,
            nodes: Default::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(&path, e)),
        };
        let state: State = serde_json::from_str(&text)
            .map_err(|e| LabError::Other(format!("{}: {e}", path.display())))?;
        if state.version != VERSION {
            return Err(LabError::Other(format!(
                "{}: state version {} is not {VERSION}",
                path.display(),
                state.version
            )));
        }
        Ok(Some(state))
    }

    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("state serialises");
        sys::write_file(&self.dir.join(STATE_FILE), text.as_bytes(), 0o600)
    }
}

/// The state shared by the threads that bring nodes up: each change is saved at once.
pub struct Shared(Mutex<State>);

impl Shared {
    pub fn new(state: State) -> Self {
        Shared(Mutex::new(state))
    }

    /// Applies a change and writes the file before returning, so the caller may then create
    /// the resource it just recorded.
    pub fn record(&self, change: impl FnOnce(&mut State)) -> Result<()> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut s);
        s.save()
    }

    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
