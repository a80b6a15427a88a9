//! `rpiprov lab`: a virtual Pi fleet on one Linux machine (network namespaces, one sshd and
//! one dockerd per node), for the end-to-end tests and for rehearsing a playbook.
//!
//! `up` records every resource in `DIR/state.json` before creating it, brings nodes up in
//! parallel and is idempotent; `down` removes what the state names; `status` reports.
//! See docs/LAB.md for the design and the traps of this kind of machine.

mod cgroup;
mod distro;
mod docker_env;
mod down;
mod error;
mod fault;
mod files;
mod images;
mod layout;
mod net;
mod node;
mod procs;
mod rootfs;
mod state;
mod status;
mod sys;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use distro::{Distro, Distros};
pub use error::{LabError, Result};
pub use fault::{Daemon, Port, Proto};
pub use files::{CLIENT_KEY, PASSWORD_ENV, PASSWORD_FILE};
pub use images::{IMAGE_ARCHIVE, IMAGE_CMD, IMAGE_NAME};
pub use layout::{Kind, NodeSpec, Shape, Subnet};
pub use rootfs::CACHE_ENV;
use state::{Shared, State};
pub use sys::ProcId;

fn say(msg: &str) {
    print_line(&format!("lab: {msg}"));
}

/// A line on stdout. The lab writes only text of its own making, never a node's, so it
/// has nothing to clean; like every output of rpiprov (`crate::ui::term`, which the lab
/// may not use), a closed pipe or terminal ends the output quietly, never with a panic.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A line on stderr, as [`print_line`].
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// What `lab up` is asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab directory, as the user named it.
    pub dir: PathBuf,
    pub shape: Shape,
    /// `--subnet`: otherwise the first free /24 (see [`layout::choose_subnet`]).
    pub subnet: Option<Subnet>,
    /// `--cpu`: each node's share of one CPU.
    pub cpu: Option<f64>,
    /// `--distro`: the Debian releases of the Docker and bare nodes, in node order.
    pub distros: Distros,
}

/// Prints a lab command's error and turns its result into the process exit code.
pub fn exit_code(result: Result<()>) -> u8 {
    match result {
        Ok(()) => crate::exit::EXIT_OK,
        Err(e) => {
            warn(&e.to_string());
            e.exit_code()
        }
    }
}

/// `lab down`: removes everything the lab in `dir` made (nothing to do when there is none).
pub fn down_dir(dir: &Path) -> Result<()> {
    preflight(&[])?;
    let Some(dir) = trusted_existing(dir)? else {
        say(&format!("no lab in {} (nothing to do)", dir.display()));
        return Ok(());
    };
    let _lock = lock_dir(&dir)?;
    down::down(&dir, &say)
}

/// `lab status`: one line per node; an error when a node is down.
pub fn status_dir(dir: &Path) -> Result<()> {
    let real = trusted_existing(dir)?
        .ok_or_else(|| LabError::Usage(format!("no lab in {}", dir.display())))?;
    if status::status(&real)? {
        Ok(())
    } else {
        Err(LabError::Other("some nodes are down".into()))
    }
}

/// Runs a fault command on each node named, in order, under the lab's lock (not during an
/// `up` or `down` of the same lab); says what it did per node (`f` returns that), stops at
/// the first failure. Every name is checked to be one of this lab's nodes first.
pub fn on_nodes(
    dir: &Path,
    nodes: &[String],
    f: impl Fn(&Lab, &str) -> Result<String>,
) -> Result<()> {
    preflight(&[])?;
    let lab = Lab::open(dir)?;
    let _lock = lock_dir(&lab.dir)?;
    for node in nodes {
        lab.node(node)?;
    }
    for node in nodes {
        let done = f(&lab, node).map_err(|e| match e {
            LabError::Node { .. } | LabError::Usage(_) => e,
            other => LabError::Node {
                node: node.clone(),
                message: other.to_string().trim_start_matches("lab: ").to_string(),
            },
        })?;
        say(&format!("{node}: {done}"));
    }
    Ok(())
}

/// Checks everything `up` needs before touching anything, and names all that is missing.
fn preflight(extra: &[&str]) -> Result<()> {
    if !cfg!(target_os = "linux") {
        return Err(LabError::Missing(
            "the lab needs Linux (network namespaces)".into(),
        ));
    }
    // SAFETY: plain syscall without arguments.
    let root = unsafe { libc::geteuid() } == 0;
    let tools: Vec<&str> = ["ip", "iptables", "nsenter", "unshare", "mount", "umount"]
        .iter()
        .chain(extra)
        .copied()
        .filter(|t| sys::find_in_path(t).is_none())
        .collect();
    missing_error(root, &tools).map_or(Ok(()), Err)
}

/// Everything missing, in one message, so that one round of fixes is enough.
fn missing_error(root: bool, tools: &[&str]) -> Option<LabError> {
    let mut missing = Vec::new();
    if !root {
        missing.push("root (run with sudo)".to_string());
    }
    missing.extend(tools.iter().map(|t| format!("`{t}`")));
    (!missing.is_empty()).then(|| LabError::Missing(format!("missing {}", missing.join(", "))))
}

/// Runs `f` on every item with at most `workers` at once; results in item order.
fn parallel<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item ran")
        })
        .collect()
}

/// The lab directory, created 0700 (sshd's StrictModes and the private key want it so).
/// An existing directory must be empty or hold a lab: `down` deletes what is in it.
fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    check_path(dir)?;
    if trusted_existing(dir)?.is_some() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| LabError::io(dir, e))?;
        let is_lab = dir.join(state::STATE_FILE).exists();
        if !is_lab && entries.next().is_some() {
            return Err(LabError::Usage(format!(
                "{} exists and is not a lab (no state.json); choose an empty or new directory",
                dir.display()
            )));
        }
    }
    sys::mkdir(dir, 0o700)?;
    sys::check_trusted_dir(dir)?;
    let dir = dir.canonicalize().map_err(|e| LabError::io(dir, e))?;
    check_path(&dir)?;
    Ok(dir)
}

/// The canonical lab directory if it exists, once it is known to be one the lab may trust
/// (see [`sys::check_trusted_dir`]); `None` when there is nothing at that path.
fn trusted_existing(dir: &Path) -> Result<Option<PathBuf>> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(None);
    }
    sys::check_trusted_dir(dir)?;
    dir.canonicalize()
        .map(Some)
        .map_err(|e| LabError::io(dir, e))
}

/// Paths end up in overlayfs options (where `,` and `:` separate fields) and in boot
/// scripts; rather than escape for both, the lab accepts only plain path characters.
fn check_path(path: &Path) -> Result<()> {
    let plain = path.to_str().is_some_and(|s| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
    });
    if plain {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "{}: the lab needs a path of letters, digits and / . _ - + @ only (it goes into mount options)",
            path.display()
        )))
    }
}

/// Serialises `up` and `down` on one lab directory (two at once would both create nodes).
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    sys::lock_file(&dir.join(".lock"), false)?.ok_or_else(|| {
        LabError::Usage(format!(
            "another `rpiprov lab` command is working on {}",
            dir.display()
        ))
    })
}

/// A node already running as recorded (holder, sshd, and dockerd where it belongs).
fn node_is_up(state: &Shared, dir: &Path, spec: &NodeSpec) -> bool {
    let Some(holder) = state.read(|s| s.nodes.get(&spec.name).and_then(|n| n.holder)) else {
        return false;
    };
    node::node_dir(dir, &spec.name).join("ready").exists()
        && node::sshd_running(holder)
        && (spec.kind != Kind::Docker || node::dockerd_running(holder))
}

/// Starts one node (after removing what a previous, broken start left); returns its holder.
fn start_node(state: &Shared, dir: &Path, cache: Option<&Path>, spec: &NodeSpec) -> Result<ProcId> {
    let layout = state.read(|s| s.layout.clone());
    if let Some(old) = state.read(|s| s.nodes.get(&spec.name).cloned()) {
        // A node that was up once and is broken now: its processes and network go, its
        // disk (the node directory) stays, as after a reboot of a real Pi.
        let mut t = procs::Targets::default();
        if let Some(ino) = sys::ns_inode(&Path::new("/run/netns").join(&spec.netns)) {
            t.net_ns.insert(ino);
        }
        t.mnt_ns.extend(old.mnt_ns);
        t.holders.extend(old.holder);
        procs::stop(t);
        net::remove_node_net(spec);
        state.record(|s| {
            let n = s.nodes.entry(spec.name.clone()).or_default();
            n.holder = None;
            n.mnt_ns = None;
        })?;
    }
    let nd = node::node_dir(dir, &spec.name);
    node::prepare_dirs(spec, &nd)?;
    files::ensure_key(
        &nd.join("ssh_host_ed25519_key"),
        &format!("root@{}", spec.name),
    )?;
    sys::write_file(
        &nd.join("sshd_config"),
        node::sshd_config(spec).as_bytes(),
        0o644,
    )?;
    // Copies of what the node needs from the lab directory: the node sees only its own.
    let client_pub = dir.join(format!("{CLIENT_KEY}.pub"));
    let key = std::fs::read(&client_pub).map_err(|e| LabError::io(&client_pub, e))?;
    sys::write_file(&nd.join("authorized_keys"), &key, 0o644)?;
    if spec.sudo_password {
        let pw_path = dir.join(PASSWORD_FILE);
        let pw = std::fs::read(&pw_path).map_err(|e| LabError::io(&pw_path, e))?;
        sys::write_file(&nd.join(PASSWORD_FILE), &pw, 0o600)?;
    }
    let cpu = state.read(|s| s.cpu);
    let parent = cpu.map(|_| cgroup::node_path(&layout.tag, &spec.name));
    if let Some(json) = node::daemon_json(spec.kind, parent.as_deref()) {
        sys::write_file(&nd.join("daemon.json"), json.as_bytes(), 0o644)?;
    }
    let cgroup_procs = match cpu {
        Some(fraction) => {
            let h = cgroup::detect()?;
            h.create(&layout.tag, &spec.name, fraction)?;
            Some(h.procs_file(&layout.tag, &spec.name))
        }
        None => None,
    };
    let lower = match cache {
        Some(c) if spec.own_root() => rootfs::lower_dirs(c, spec.distro, spec.kind == Kind::Docker),
        _ => Vec::new(),
    };
    let script = node::boot_script(
        spec,
        &node::BootInputs {
            node_dir: &nd,
            lower: &lower,
        },
    );
    sys::write_file(&nd.join("boot.sh"), script.as_bytes(), 0o700)?;
    net::create_node_net(state, &layout, spec)?;
    let holder = node::spawn(spec, &nd, cgroup_procs.as_deref())?;
    state.record(|s| s.nodes.entry(spec.name.clone()).or_default().holder = Some(holder))?;
    Ok(holder)
}

/// What `lab up` needs of this machine for the fleet asked: Docker where nodes run on its
/// file system, debootstrap and friends where they have their own root.
fn needed_tools(shape: Shape, distros: &Distros) -> Vec<&'static str> {
    let mut tools = vec!["sshd", "ssh-keygen", "tar", "busybox"];
    let docker: Vec<Distro> = (0..shape.docker).map(|i| distros.for_node(i)).collect();
    if docker.iter().any(|d| d.on_host_fs()) {
        tools.extend(["dockerd", "docker"]);
    }
    if shape.bare > 0 || docker.iter().any(|d| !d.on_host_fs()) {
        tools.extend(["debootstrap", "chroot", "pivot_root"]);
    }
    tools
}

/// An `up` in a directory that holds a lab must ask for that lab: another shape, subnet,
/// cap or set of releases is a usage error (nothing is rebuilt behind the user's back).
fn same_lab(s: &State, args: &UpOptions) -> Result<()> {
    let dir = s.dir.display();
    let down = format!("run `rpiprov lab down --dir {}` first", args.dir.display());
    if s.shape != args.shape {
        return Err(LabError::Usage(format!(
            "{dir} holds a lab of another shape ({} docker, {} bare, {} sshd-only); {down}",
            s.shape.docker, s.shape.bare, s.shape.sshd_only,
        )));
    }
    if let Some(n) = args.subnet.filter(|n| *n != s.layout.subnet()) {
        return Err(LabError::Usage(format!(
            "{dir} holds a lab in {}, not {n}; {down} to move it",
            s.layout.subnet()
        )));
    }
    if args.cpu.is_some() && s.cpu.is_none() {
        return Err(LabError::Usage(format!(
            "{dir} holds a lab made without --cpu; {down} to cap it"
        )));
    }
    let with_release = s.layout.nodes.iter().filter(|n| n.kind != Kind::SshdOnly);
    let differs = with_release
        .clone()
        .enumerate()
        .any(|(i, n)| n.distro != args.distros.for_node(i));
    if differs {
        let now: Vec<String> = with_release
            .map(|n| format!("{} {}", n.name, n.distro))
            .collect();
        return Err(LabError::Usage(format!(
            "{dir} holds a lab of other releases ({}), not --distro {}; {down}",
            now.join(", "),
            args.distros
        )));
    }
    Ok(())
}

/// The cached root file systems of the nodes that have their own, built where missing;
/// the cache directory (recorded in the state) when there are such nodes.
fn ensure_roots(state: &Shared, dir: &Path, layout: &layout::Layout) -> Result<Option<PathBuf>> {
    let wanted: std::collections::BTreeSet<(Distro, bool)> = layout
        .nodes
        .iter()
        .filter(|n| n.own_root())
        .map(|n| (n.distro, n.kind == Kind::Docker))
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let cache = rootfs::cache_dir(dir)?;
    check_path(&cache)?;
    state.record(|s| s.cache = Some(cache.clone()))?;
    rootfs::ensure(&cache, &wanted, &say)?;
    Ok(Some(cache))
}

/// `lab up`: creates the fleet, or what of it is missing (idempotent).
pub fn up(args: &UpOptions) -> Result<()> {
    let shape = args.shape;
    layout::validate(shape)?;
    layout::validate_distros(shape, &args.distros)?;
    preflight(&needed_tools(shape, &args.distros))?;
    let started = Instant::now();
    let dir = absolute_dir(&args.dir)?;
    let _lock = lock_dir(&dir)?;
    if let Some(s) = args.subnet {
        layout::validate_subnet(s, shape)?;
    }
    if let Some(f) = args.cpu {
        cgroup::validate(f)?;
        cgroup::detect()?;
    }
    let mut created: Vec<String> = Vec::new();
    // Under the machine lock, from choosing the subnet until the bridge holds it: a `lab up`
    // of another directory at the same time would otherwise pick the same free /24.
    let machine = net::machine_lock()?;
    let state = match State::load(&dir)? {
        Some(s) => {
            same_lab(&s, args)?;
            s
        }
        None => {
            let taken = net::taken_subnets("")?;
            let subnet = layout::choose_subnet(args.subnet, shape, &taken).inspect_err(|_| {
                // Refused before anything was made: leave no lock file or empty directory.
                let _ = std::fs::remove_file(dir.join(".lock"));
                let _ = std::fs::remove_dir(&dir);
            })?;
            let mut s = State::new(
                &dir,
                shape,
                layout::plan(&dir, shape, subnet, &args.distros)?,
            );
            // Recorded before any cgroup is made, like every other resource.
            s.cpu = args.cpu;
            s.save()?;
            s
        }
    };
    let layout = state.layout.clone();
    let state = Shared::new(state);
    let bridge_created = net::ensure_bridge(&state, &layout)?;
    let forward_set = net::ensure_ip_forward(&state)?;
    drop(machine);

    if files::ensure_key(&dir.join(CLIENT_KEY), "rpiprov-lab")? {
        created.push("client key".into());
    }
    if files::ensure_password(&dir)? {
        created.push("sudo password".into());
    }
    let cache = ensure_roots(&state, &dir, &layout)?;
    if images::ensure_busybox(&dir)? {
        created.push(IMAGE_ARCHIVE.into());
    }
    files::write_playbook(&dir)?;
    if bridge_created {
        created.push(format!("bridge {} ({})", layout.bridge, layout.subnet()));
    }
    if forward_set {
        created.push("ip_forward=1".into());
    }
    let n = net::ensure_rules(&state, &layout)?;
    if n > 0 {
        created.push(format!("{n} iptables rules"));
    }
    // Another --cpu for a capped lab: a Pi of another speed, without a restart.
    if let (Some(new), Some(old)) = (args.cpu, state.read(|s| s.cpu))
        && new != old
    {
        state.record(|s| s.cpu = Some(new))?;
        let h = cgroup::detect()?;
        for spec in &layout.nodes {
            h.set(&layout.tag, &spec.name, new)?;
        }
        created.push(format!("cpu cap {new} (was {old})"));
    }

    // Phase 1, in parallel: namespaces, veths and boot processes of the nodes not up.
    let t1 = Instant::now();
    let todo: Vec<&NodeSpec> = layout
        .nodes
        .iter()
        .filter(|n| !node_is_up(&state, &dir, n))
        .collect();
    let already = layout.nodes.len() - todo.len();
    if already > 0 {
        say(&format!("{already} nodes already up"));
    }
    if !todo.is_empty() {
        say(&format!("starting {} nodes", todo.len()));
    }
    let started_count = std::sync::atomic::AtomicUsize::new(0);
    let spawned = parallel(&todo, 8, |spec| {
        let r = start_node(&state, &dir, cache.as_deref(), spec).map(|h| (*spec, h));
        let k = started_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if todo.len() > 20 && k.is_multiple_of(50) {
            say(&format!(
                "{k}/{} nodes started after {:.1} s",
                todo.len(),
                t1.elapsed().as_secs_f64()
            ));
        }
        r
    });
    // Phase 2: wait for every boot script's `ready`, in the order the nodes come up.
    let mut failures = Vec::new();
    let mut waiting = Vec::new();
    for r in spawned {
        match r {
            Ok(x) => waiting.push(x),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let results = parallel(&waiting, 32, |(spec, holder)| {
        let nd = node::node_dir(&dir, &spec.name);
        let timeout = Duration::from_secs(if spec.kind == Kind::Docker { 180 } else { 120 });
        node::wait_ready(spec, &nd, *holder, timeout)?;
        let mnt = sys::ns_inode(Path::new(&format!("/proc/{}/ns/mnt", holder.pid)));
        state.record(|s| s.nodes.entry(spec.name.clone()).or_default().mnt_ns = mnt)?;
        if todo.len() <= 20 {
            say(&format!(
                "{} up ({}, {}) after {:.1} s",
                spec.name,
                spec.kind.as_str(),
                spec.address,
                t1.elapsed().as_secs_f64()
            ));
        }
        Ok::<_, LabError>(())
    });
    let up_now = results.iter().filter(|r| r.is_ok()).count();
    failures.extend(
        results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string())),
    );
    if up_now > 0 {
        created.push(format!(
            "{up_now} node{}",
            if up_now == 1 { "" } else { "s" }
        ));
        if todo.len() > 20 {
            say(&format!(
                "{up_now} nodes up after {:.1} s",
                t1.elapsed().as_secs_f64()
            ));
        }
    }

    let known = files::known_hosts(&layout, &dir)?;
    sys::write_file(&dir.join("known_hosts"), known.as_bytes(), 0o644)?;
    sys::write_file(
        &dir.join("inventory.toml"),
        files::inventory(&layout).as_bytes(),
        0o644,
    )?;

    if !failures.is_empty() {
        for f in &failures {
            warn(f);
        }
        return Err(LabError::Other(format!(
            "{} of {} nodes failed to come up; `rpiprov lab down --dir {}` removes the lab",
            failures.len(),
            layout.nodes.len(),
            args.dir.display()
        )));
    }
    if created.is_empty() {
        say(&format!(
            "nothing recreated: all {} nodes already up ({})",
            layout.nodes.len(),
            dir.display()
        ));
    } else {
        say(&format!(
            "created {} in {:.1} s",
            created.join(", "),
            started.elapsed().as_secs_f64()
        ));
    }
    say(&format!(
        "inventory {}; try: ssh -i {d}/{CLIENT_KEY} -o UserKnownHostsFile={d}/known_hosts pi@{}",
        dir.join("inventory.toml").display(),
        layout.nodes[0].address,
        d = dir.display()
    ));
    Ok(())
}

/// A lab as seen by code that runs after `lab up` (the tests, and `deploy` until it ships
/// images itself).
pub struct Lab {
    dir: PathBuf,
    state: State,
}

impl Lab {
    pub fn open(dir: &Path) -> Result<Lab> {
        let dir = trusted_existing(dir)?
            .ok_or_else(|| LabError::Usage(format!("no lab in {}", dir.display())))?;
        let state = State::load(&dir)?
            .ok_or_else(|| LabError::Usage(format!("no lab in {}", dir.display())))?;
        Ok(Lab { dir, state })
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.state.layout.nodes
    }

    pub fn node(&self, name: &str) -> Result<&NodeSpec> {
        self.nodes()
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Usage(format!("no node {name} in this lab")))
    }

    /// Recorded processes that hold the nodes' namespaces.
    pub fn holders(&self) -> Vec<ProcId> {
        self.state.nodes.values().filter_map(|n| n.holder).collect()
    }

    /// Names of everything the lab made in the host's kernel: netns, links, rules (for tests
    /// that check `down` left nothing).
    pub fn netns_names(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.netns.clone()).collect()
    }

    pub fn link_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nodes().iter().map(|n| n.veth.clone()).collect();
        v.push(self.state.layout.bridge.clone());
        v
    }

    pub fn bridge(&self) -> &str {
        &self.state.layout.bridge
    }

    /// The lab's subnet (each lab of the machine has its own).
    pub fn subnet(&self) -> Subnet {
        self.state.layout.subnet()
    }

    /// Processes still alive in the lab's namespaces (holders included).
    pub fn processes(&self) -> Vec<ProcId> {
        procs::remaining(down::targets(&self.state))
    }

    /// A command that runs inside the node (its namespaces and root file system).
    pub fn enter(&self, name: &str) -> Result<std::process::Command> {
        self.node(name)?;
        let holder = self
            .state
            .nodes
            .get(name)
            .and_then(|n| n.holder)
            .ok_or_else(|| LabError::Usage(format!("node {name} was never started")))?;
        let cgroup_procs = match self.state.cpu {
            Some(_) => Some(cgroup::detect()?.procs_file(&self.state.layout.tag, name)),
            None => None,
        };
        node::enter(holder, cgroup_procs.as_deref())
    }

    fn holder(&self, name: &str) -> Result<ProcId> {
        self.node(name)?;
        self.state
            .nodes
            .get(name)
            .and_then(|n| n.holder)
            .filter(|h| h.is_alive())
            .ok_or_else(|| {
                LabError::Usage(format!(
                    "node {name} is not running; `rpiprov lab up` restarts it"
                ))
            })
    }

    /// The node's cgroups, in every hierarchy (empty without `--cpu`).
    pub fn cgroups(&self) -> Vec<PathBuf> {
        cgroup::remaining(&self.state.layout.tag)
    }

    /// The node's cpu cgroup directory, with `--cpu`.
    pub fn cpu_cgroup(&self, name: &str) -> Result<Option<PathBuf>> {
        self.node(name)?;
        match self.state.cpu {
            Some(_) => Ok(Some(cgroup::detect()?.dir(&self.state.layout.tag, name))),
            None => Ok(None),
        }
    }

    /// Cuts (`up` false) or restores the node's network link (its veth goes down/up).
    pub fn set_link(&self, name: &str, up: bool) -> Result<()> {
        net::set_link(&self.node(name)?.veth, up)
    }

    /// Drops a port in the node, both ways (`7946/udp`, `2377/tcp`).
    pub fn drop_port(&self, name: &str, port: Port) -> Result<()> {
        fault::drop_port(&self.node(name)?.netns, port)
    }

    /// Drops `percent` % of the node's packets at random (0 stops it).
    pub fn set_loss(&self, name: &str, percent: f64) -> Result<()> {
        fault::loss(&self.node(name)?.netns, percent)
    }

    /// Removes every dropped port and the loss of the node.
    pub fn clear_filters(&self, name: &str) -> Result<()> {
        fault::clear_filters(&self.node(name)?.netns)
    }

    /// The node's filters as `iptables -S` shows them.
    pub fn filters(&self, name: &str) -> Result<Vec<String>> {
        fault::list_filters(&self.node(name)?.netns)
    }

    /// The running daemon's process, read from its pid file inside the node.
    pub fn daemon_pid(&self, name: &str, daemon: Daemon) -> Result<Option<ProcId>> {
        Ok(node::pid_in_node(self.holder(name)?, daemon.pid_file()))
    }

    fn signal_daemon(&self, name: &str, daemon: Daemon, sig: i32) -> Result<()> {
        let pid = self
            .daemon_pid(name, daemon)?
            .ok_or_else(|| LabError::Usage(format!("{} does not run on {name}", daemon.name())))?;
        sys::signal(pid, sig);
        Ok(())
    }

    /// Freezes the daemon (SIGSTOP): it holds its sockets and answers nothing.
    pub fn freeze(&self, name: &str, daemon: Daemon) -> Result<()> {
        self.signal_daemon(name, daemon, libc::SIGSTOP)
    }

    /// Thaws a frozen daemon (SIGCONT).
    pub fn thaw(&self, name: &str, daemon: Daemon) -> Result<()> {
        self.signal_daemon(name, daemon, libc::SIGCONT)
    }

    /// Kills the daemon (SIGKILL), as a crash would; waits until it is gone.
    pub fn kill(&self, name: &str, daemon: Daemon) -> Result<()> {
        let pid = self.daemon_pid(name, daemon)?;
        self.signal_daemon(name, daemon, libc::SIGKILL)?;
        fault::wait_for(
            &format!("{} on {name} still runs", daemon.name()),
            Duration::from_secs(10),
            || pid.is_none_or(|p| !p.is_alive()),
        )
    }

    /// Starts the daemon if it is not running, and waits until it answers (sshd: port 22
    /// accepts; dockerd: `docker info`).
    pub fn start(&self, name: &str, daemon: Daemon) -> Result<()> {
        let spec = self.node(name)?;
        if self.daemon_pid(name, daemon)?.is_none() {
            self.remove_stale_pid_files(name, daemon)?;
            fault::run_in(self.enter(name)?, daemon.start_script(), &[], None)?;
        }
        match daemon {
            Daemon::Sshd => fault::wait_for(
                &format!("sshd on {name} does not answer"),
                Duration::from_secs(30),
                || {
                    std::net::TcpStream::connect_timeout(
                        &std::net::SocketAddr::from((spec.address, 22)),
                        Duration::from_secs(1),
                    )
                    .is_ok()
                },
            ),
            Daemon::Dockerd => self.wait_dockerd(name),
        }
    }

    /// A killed daemon (and dockerd's containerd, killed with it) may linger as a zombie
    /// until the machine's init reaps it; Debian's init script and dockerd take a zombie's
    /// pid file for a running daemon and wait on it forever: such files go.
    fn remove_stale_pid_files(&self, name: &str, daemon: Daemon) -> Result<()> {
        let holder = self.holder(name)?;
        for stale in daemon.pid_files() {
            if node::pid_in_node(holder, stale).is_none() {
                let root = PathBuf::from(format!("/proc/{}/root", holder.pid));
                let _ = std::fs::remove_file(root.join(stale));
            }
        }
        Ok(())
    }

    /// Waits until the node's dockerd answers `docker info`.
    fn wait_dockerd(&self, name: &str) -> Result<()> {
        fault::wait_for(
            &format!("dockerd on {name} does not answer"),
            Duration::from_secs(120),
            || {
                self.enter(name).is_ok_and(|mut c| {
                    c.args(["docker", "info"]);
                    sys::succeeds(c)
                })
            },
        )
    }

    /// Sets `var` to `value` in the environment of the node's dockerd (`None`: removes it),
    /// as one does on Debian: in the node's `/etc/default/docker` (assigned and exported,
    /// so both Debian's init script and systemd's `EnvironmentFile=` pass it on), then
    /// `service docker restart`; returns once Docker answers again. With
    /// `DOCKER_MIN_API_VERSION=1.44`, a Docker 25 or later refuses API versions below 1.44
    /// (Docker 29.0's own floor); Docker 20.10 knows no such variable.
    pub fn set_docker_env(&self, name: &str, var: &str, value: Option<&str>) -> Result<()> {
        self.holder(name)?;
        let current = fault::run_in(
            self.enter(name)?,
            "cat /etc/default/docker 2>/dev/null || true",
            &[],
            None,
        )?;
        let text = docker_env::with_var(&current, var, value).map_err(LabError::Usage)?;
        self.remove_stale_pid_files(name, Daemon::Dockerd)?;
        fault::run_in_feeding(
            self.enter(name)?,
            docker_env::RESTART_SCRIPT,
            &[],
            text.as_bytes(),
        )
        .map_err(|e| LabError::Node {
            node: name.to_string(),
            message: e.to_string().trim_start_matches("lab: ").to_string(),
        })?;
        self.wait_dockerd(name)
    }

    /// The node's Docker socket, reached from this machine through the node's own root
    /// (a test may speak the Engine API to it directly).
    pub fn docker_socket(&self, name: &str) -> Result<PathBuf> {
        let holder = self.holder(name)?;
        Ok(PathBuf::from(format!(
            "/proc/{}/root/run/docker.sock",
            holder.pid
        )))
    }

    /// The boot id the node shows in `/proc/sys/kernel/random/boot_id`.
    pub fn boot_id(&self, name: &str) -> Result<String> {
        self.node(name)?;
        let path = node::node_dir(&self.dir, name).join(node::BOOT_ID);
        Ok(std::fs::read_to_string(&path)
            .map_err(|e| LabError::io(&path, e))?
            .trim()
            .to_string())
    }

    /// Reboots the node: every process of it stops (dockerd first, which stops its
    /// containers), it gets a new boot id, then sshd and (where installed) dockerd start
    /// again, as after a power cycle of a Pi whose disk stays. Returns the new boot id.
    pub fn reboot(&self, name: &str) -> Result<String> {
        let spec = self.node(name)?;
        let holder = self.holder(name)?;
        let mut t = procs::Targets::default();
        t.net_ns
            .extend(sys::ns_inode(&Path::new("/run/netns").join(&spec.netns)));
        t.mnt_ns
            .extend(self.state.nodes.get(name).and_then(|n| n.mnt_ns));
        t.keep.push(holder);
        procs::stop(t);
        let id = fault::new_boot_id(&node::node_dir(&self.dir, name).join(node::BOOT_ID))?;
        self.start(name, Daemon::Sshd)?;
        let root = PathBuf::from(format!("/proc/{}/root", holder.pid));
        if spec.kind == Kind::Docker || root.join("etc/init.d/docker").exists() {
            self.start(name, Daemon::Dockerd)?;
        }
        Ok(id)
    }

    /// Makes the node's clock read `seconds` off (negative: behind) for the commands run
    /// in its sessions: libfaketime, preloaded through the node's own /etc. The daemons
    /// keep real time.
    pub fn skew_clock(&self, name: &str, seconds: i64) -> Result<()> {
        let lib = fault::host_libfaketime()?;
        fault::run_in(
            self.enter(name)?,
            fault::SKEW_SCRIPT,
            &[&fault::faketime_offset(seconds)],
            Some(&lib),
        )?;
        self.restart_sshd(name)
    }

    /// Puts the node's clock right again.
    pub fn clear_clock(&self, name: &str) -> Result<()> {
        fault::run_in(self.enter(name)?, fault::CLEAR_CLOCK_SCRIPT, &[], None)?;
        self.restart_sshd(name)
    }

    /// A new sshd listener (open sessions stay): one started before libfaketime was
    /// preloaded lets its connection processes die in the seccomp sandbox (measured: every
    /// login failed), one started after it, with the lab's FAKETIME_SKIP_CMDS, works.
    fn restart_sshd(&self, name: &str) -> Result<()> {
        if let Some(pid) = self.daemon_pid(name, Daemon::Sshd)? {
            sys::signal(pid, libc::SIGTERM);
            fault::wait_for(
                &format!("sshd on {name} did not stop"),
                Duration::from_secs(10),
                || !pid.is_alive(),
            )?;
        }
        self.start(name, Daemon::Sshd)
    }

    /// Loads the lab image (`images/busybox.tar`) into a node's dockerd, as `deploy` will.
    pub fn load_image(&self, name: &str) -> Result<()> {
        images::import(
            self.enter(name)?,
            &self.dir.join(IMAGE_ARCHIVE),
            IMAGE_NAME,
            IMAGE_CMD,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_prerequisites_are_named_together() {
        assert!(missing_error(true, &[]).is_none());
        let e = missing_error(false, &["sshd", "debootstrap"]).unwrap();
        assert_eq!(
            e.to_string(),
            "lab: this machine cannot run a lab: missing root (run with sudo), `sshd`, `debootstrap`"
        );
        assert_eq!(e.exit_code(), crate::exit::EXIT_FAILED);
    }

    #[test]
    fn paths_that_would_break_mount_options_are_refused() {
        assert!(check_path(Path::new("/home/me/project/.lab")).is_ok());
        for bad in ["/tmp/a b", "/tmp/a,b", "/tmp/a:b", "/tmp/$x"] {
            assert!(
                matches!(check_path(Path::new(bad)), Err(LabError::Usage(_))),
                "{bad}"
            );
        }
    }
}
