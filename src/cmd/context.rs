//! What every command that works on hosts shares, from the parsed command line to the
//! exit code: load and check the configuration (exit 2 on bad input, before any
//! connection), select the hosts (`--on`), resolve the sudo passwords, connect, and at the
//! end render the rows (summary table, tally or `--json`) and decide the exit code once.
//! A command says what it needs ([`Needs`]) and how its end is shown ([`Style`]); nothing
//! here knows a command by its name.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::PolicyArg;
use crate::config::{self, Diagnostic, Host, HostKeyPolicy, Loaded, PasswordSource};
use crate::exec::report::{Reporter, Row, any_failed};
use crate::exit::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE};
use crate::remote::{self, ConnectOptions, Target};
use crate::secret::Secret;
use crate::select::Selection;
use crate::ui::{self, term};

/// The options of a command, those given before it and its own merged
/// ([`crate::cmd::dispatch`]).
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// `-i`; `None` is `inventory.toml`.
    pub inventory: Option<PathBuf>,
    pub playbook: Option<PathBuf>,
    pub on: Vec<String>,
    pub verbose: bool,
    pub json: bool,
    pub host_key_policy: Option<PolicyArg>,
    pub parallel: Option<usize>,
    /// `--allow-outside`: folders local files may come from besides the playbook's.
    pub allow_outside: Vec<PathBuf>,
}

impl Opts {
    /// The inventory file: `-i`, or `inventory.toml`.
    pub fn inventory_path(&self) -> PathBuf {
        self.inventory
            .clone()
            .unwrap_or_else(|| PathBuf::from("inventory.toml"))
    }

    /// How the configuration is read: what the command line allows.
    pub fn config_options(&self) -> config::Options {
        config::Options {
            allow_outside: self.allow_outside.clone(),
        }
    }
}

/// What a command needs of the fleet.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// It acts on the whole swarm: `--on` is refused.
    pub whole_swarm: bool,
    /// The managers are connected too, whatever `--on` selects (joins and labels go
    /// through them).
    pub managers: bool,
    /// It runs something as root: sudo passwords are resolved before connecting.
    pub root: bool,
}

/// What a command that works on hosts gets.
pub struct Ctx {
    pub json: bool,
    pub loaded: Loaded,
    /// Selected hosts' names, in inventory order.
    pub selected: Vec<String>,
    pub connect: ConnectOptions,
    pub targets: HashMap<String, Target>,
    pub parallel: usize,
    pub verbose: bool,
}

/// How the end of a command is shown on a terminal (`--json` is the same for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The summary table of every row ([`ui::summary::summary`]).
    Table,
    /// The command's output was the result: only the failures and a count
    /// ([`ui::summary::tally`]).
    Tally,
}

/// How a command body ended.
pub enum Done {
    /// Rows to show, how, and details for `--json`.
    Rows {
        rows: Vec<Row>,
        details: Option<serde_json::Value>,
        style: Style,
    },
    /// Stop with this exit code; what to say was already said.
    Exit(u8),
}

/// Prints configuration diagnostics on stderr, errors first.
pub fn print_diagnostics(diags: &[Diagnostic], kind: &str) {
    for d in diags {
        term::errln(&format!("{kind}: {d}"));
    }
}

/// Loads the configuration or says why not. Errors are printed; `Err` holds the exit code.
pub fn load(opts: &Opts) -> Result<Loaded, u8> {
    let inventory = opts.inventory_path();
    match config::load_with(&inventory, opts.playbook.as_deref(), &opts.config_options()) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings, "warning");
            Ok(loaded)
        }
        Err(errors) => {
            print_diagnostics(&errors, "error");
            term::errln(&format!(
                "{}: {} error(s); nothing was touched",
                inventory.display(),
                errors.len()
            ));
            Err(EXIT_USAGE)
        }
    }
}

impl Ctx {
    /// The hosts to connect to, in inventory order.
    pub fn ordered_targets(&self) -> Vec<String> {
        self.loaded
            .inventory
            .hosts
            .iter()
            .filter(|h| self.targets.contains_key(&h.name))
            .map(|h| h.name.clone())
            .collect()
    }

    /// The end of a command shown as a table: hosts that could not be reached first,
    /// then the command's rows; `details` goes into `--json`.
    pub fn done(
        &self,
        unreachable: Vec<(String, String)>,
        rows: Vec<Row>,
        details: &impl serde::Serialize,
    ) -> Done {
        let mut all = unreached_rows(unreachable);
        all.extend(rows);
        Done::Rows {
            rows: all,
            details: self.details(details),
            style: Style::Table,
        }
    }

    /// `details` for `--json`, or nothing without it.
    pub fn details(&self, details: &impl serde::Serialize) -> Option<serde_json::Value> {
        self.json
            .then(|| serde_json::to_value(details).expect("results serialise"))
    }

    /// A progress reporter with these rows (hosts, or stacks for deploy).
    pub fn reporter(&self, rows: &[String]) -> Arc<dyn Reporter> {
        Arc::from(ui::reporter(rows, self.verbose))
    }

    /// The playbook, or a usage error saying how to name one.
    pub fn playbook(&self) -> Result<&config::Playbook, u8> {
        self.loaded.playbook.as_ref().ok_or_else(|| {
            term::errln(&format!(
                "error: {}: no playbook: set `playbook = \"FILE\"` in the inventory or pass -p FILE",
                self.loaded.inventory.path.display()
            ));
            EXIT_USAGE
        })
    }

    /// The playbook cut down to `stacks` (all when empty; see
    /// [`config::Playbook::select_stacks`]); an unknown name is a usage error.
    pub fn playbook_of(
        &self,
        stacks: &[String],
        purpose: config::Purpose,
    ) -> Result<config::Playbook, u8> {
        self.playbook()?
            .select_stacks(stacks, purpose)
            .map_err(|e| {
                term::errln(&format!("error: {e}"));
                EXIT_USAGE
            })
    }

    pub fn host(&self, name: &str) -> &Host {
        self.loaded
            .inventory
            .host(name)
            .expect("selected hosts come from the inventory")
    }

    /// The inventory's managers, by name.
    pub fn manager_names(&self) -> Vec<String> {
        self.loaded
            .inventory
            .managers()
            .map(|m| m.name.clone())
            .collect()
    }
}

pub type CommandFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + 'a>>;

/// Loads, selects, resolves secrets, then runs `body` on a tokio runtime and shows its
/// end. `command` names the command in the summary and `--json`.
pub fn with_fleet(
    opts: &Opts,
    command: &str,
    needs: Needs,
    body: impl FnOnce(&Ctx) -> CommandFuture<'_>,
) -> u8 {
    let loaded = match load(opts) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let selection = match Selection::parse(&opts.on) {
        Ok(s) => s,
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    if needs.whole_swarm && !selection.is_all() {
        term::errln("error: deploy and teardown act on the whole swarm; --on is not accepted");
        return EXIT_USAGE;
    }
    let selected: Vec<String> = match selection.apply(&loaded.inventory.hosts) {
        Ok(hosts) => hosts.iter().map(|h| h.name.clone()).collect(),
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    let inv = &loaded.inventory;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut connect = ConnectOptions::from_settings(&inv.ssh, interactive);
    if let Some(p) = opts.host_key_policy {
        connect.policy = match p {
            PolicyArg::Strict => HostKeyPolicy::Strict,
            PolicyArg::AcceptNew => HostKeyPolicy::AcceptNew,
        };
    }
    let needed: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| {
            selected.contains(&h.name) || (needs.managers && h.role == config::Role::Manager)
        })
        .collect();
    let targets = match targets_for(&needed, interactive, needs.root) {
        Ok(t) => t,
        Err(e) => {
            term::errln(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    let parallel = opts.parallel.unwrap_or(inv.ssh.parallel).max(1);
    let ctx = Ctx {
        json: opts.json,
        loaded,
        selected,
        connect,
        targets,
        parallel,
        verbose: opts.verbose,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    match rt.block_on(body(&ctx)) {
        Done::Rows {
            rows,
            details,
            style,
        } => {
            let code = finish(command, &rows, details, style, start.elapsed(), opts.json);
            if opts.verbose {
                term::errln(&format!("{command}: {}", remote::stats::snapshot().line()));
            }
            code
        }
        Done::Exit(code) => code,
    }
}

/// Prints the end (JSON, or the table or tally) and returns the exit code.
fn finish(
    command: &str,
    rows: &[Row],
    details: Option<serde_json::Value>,
    style: Style,
    elapsed: Duration,
    json: bool,
) -> u8 {
    let ok = !any_failed(rows);
    if json {
        let doc = ui::json::JsonResult {
            command,
            ok,
            changed: rows.iter().any(|r| !r.changed.is_empty()),
            seconds: elapsed.as_secs_f64(),
            hosts: rows,
            details,
            remote: serde_json::to_value(remote::stats::snapshot()).ok(),
        };
        ui::json::print(&doc, true);
    } else {
        match style {
            Style::Table => term::out(&ui::summary::summary(command, rows, elapsed)),
            Style::Tally => term::err(&ui::summary::tally(command, rows, elapsed)),
        }
    }
    if crate::exit::interrupted() {
        EXIT_INTERRUPTED
    } else if ok {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Builds the SSH targets, resolving sudo passwords from the environment or a prompt.
fn targets_for(
    hosts: &[&Host],
    interactive: bool,
    needs_root: bool,
) -> Result<HashMap<String, Target>, String> {
    let mut prompted: Option<Secret> = None;
    let mut out = HashMap::new();
    for h in hosts {
        let sudo = h.become_.sudo && h.user != "root";
        let sudo_password = if !sudo || !needs_root {
            None
        } else {
            match &h.become_.password {
                PasswordSource::None => None,
                PasswordSource::Env(var) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                    _ => {
                        return Err(format!(
                            "{}: become_password comes from the environment variable {var}, which is not set",
                            h.name
                        ));
                    }
                },
                PasswordSource::Prompt => {
                    if prompted.is_none() {
                        if !interactive {
                            return Err(format!(
                                "{}: become_password = \"prompt\" needs a terminal; set it from the environment instead",
                                h.name
                            ));
                        }
                        let p = rpassword::prompt_password(format!(
                            "sudo password for {} (used for every host that asks): ",
                            h.user
                        ))
                        .map_err(|e| format!("cannot read the sudo password: {e}"))?;
                        prompted = Some(Secret::new(p));
                    }
                    prompted.clone()
                }
            }
        };
        let mut target = Target::from_host(h);
        target.sudo = sudo;
        target.sudo_password = sudo_password;
        out.insert(h.name.clone(), target);
    }
    Ok(out)
}

/// Each host's addresses as this machine knows them, not as the host says: the
/// inventory's `address`, what it resolves to here (when it is a name), and `advertise`
/// when it is an address. What a swarm node entry's address is compared with before the
/// node is changed for that host ([`crate::docker::node::check_claim`]). A name that does
/// not resolve within `timeout` counts as itself only.
pub async fn known_addresses(hosts: &[&Host], timeout: Duration) -> HashMap<String, Vec<String>> {
    let mut lookups = tokio::task::JoinSet::new();
    let mut out = HashMap::new();
    for h in hosts {
        let mut addresses = vec![h.address.clone()];
        if let config::Advertise::Address(ip) = &h.advertise {
            addresses.push(ip.to_string());
        }
        out.insert(h.name.clone(), addresses);
        if h.address.parse::<std::net::IpAddr>().is_err() {
            let (name, address, port) = (h.name.clone(), h.address.clone(), h.port);
            lookups.spawn(async move {
                let found = tokio::time::timeout(
                    timeout,
                    tokio::net::lookup_host((address.as_str(), port)),
                )
                .await;
                let ips: Vec<String> = match found {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip().to_string()).collect(),
                    _ => vec![],
                };
                (name, ips)
            });
        }
    }
    while let Some(Ok((name, ips))) = lookups.join_next().await {
        if let Some(addresses) = out.get_mut(&name) {
            addresses.extend(ips);
        }
    }
    out
}

/// Connects to these hosts, bounded by `--parallel`.
pub async fn connect(
    ctx: &Ctx,
    names: &[String],
    reporter: &Arc<dyn Reporter>,
) -> (HashMap<String, Arc<remote::Session>>, Vec<(String, String)>) {
    let targets: Vec<(String, Target)> = names
        .iter()
        .map(|n| (n.clone(), ctx.targets[n].clone()))
        .collect();
    let opts = Arc::new(ctx.connect.clone());
    crate::exec::connect_all(targets, ctx.parallel, reporter.clone(), move |t| {
        let opts = opts.clone();
        async move { remote::connect(&t, &opts).await }
    })
    .await
}

/// The sessions of a command that acts through the swarm's leader.
pub struct Swarm {
    /// The first manager of the inventory that said it serves the swarm
    /// ([`crate::exec::pick_manager`]); the deploy lock is on it.
    pub leader: Arc<remote::Session>,
    /// Every host that answered, the leader included.
    pub sessions: HashMap<String, Arc<remote::Session>>,
    /// Their Engine APIs, the leader's open already (it said it serves through it).
    pub engines: Arc<crate::exec::engine::Engines<remote::Session>>,
    /// The hosts that did not, with the reason.
    pub unreachable: Vec<(String, String)>,
}

/// Connects to every host and picks the manager to act through: the first of the
/// inventory that says it serves the swarm (a manager reachable over SSH whose Docker
/// hangs is passed over).
/// When none does, the command ends here with the hosts that could not be reached.
pub async fn connect_swarm(ctx: &Ctx, reporter: &Arc<dyn Reporter>) -> Result<Swarm, Done> {
    let names = ctx.ordered_targets();
    let (sessions, unreachable) = connect(ctx, &names, reporter).await;
    let managers: Vec<(String, Arc<remote::Session>)> = ctx
        .loaded
        .inventory
        .managers()
        .filter_map(|m| sessions.get(&m.name).map(|s| (m.name.clone(), s.clone())))
        .collect();
    let reached = !managers.is_empty();
    let engines = Arc::new(crate::exec::engine::Engines::new(
        &sessions,
        ctx.connect.command_timeout,
    ));
    match crate::exec::pick_manager(&engines, managers, crate::exec::MANAGER_ANSWER).await {
        Ok(leader) => Ok(Swarm {
            leader,
            sessions,
            engines,
            unreachable,
        }),
        Err(why) => {
            reporter.finish();
            if reached {
                let each: Vec<String> = why.iter().map(|(m, w)| format!("{m}: {w}")).collect();
                term::errln(&format!(
                    "error: no manager serves the swarm ({}); with fewer than half of the managers up the swarm has lost quorum: bring managers back",
                    each.join("; ")
                ));
            } else {
                term::errln("error: no manager could be reached");
            }
            Err(unreached(unreachable))
        }
    }
}

/// The end of a `--dry-run` (or `rpiprov plan`): the preview as a table, or with `--json`
/// as one document; exit 1 when something stands in the way, 0 otherwise.
pub fn show_preview(ctx: &Ctx, preview: &crate::exec::preview::Preview) -> Done {
    if ctx.json {
        ui::json::print(preview, true);
    } else {
        term::out(&ui::plan::render(preview));
    }
    Done::Exit(if preview.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// Ctrl-C: the locking commands stop and release the lock when it fires.
pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
    crate::exit::set_interrupted();
}

/// A row per host that could not be reached, saying why.
pub fn unreached_rows(unreachable: Vec<(String, String)>) -> Vec<Row> {
    unreachable
        .into_iter()
        .map(|(h, e)| Row::connect_failed(&h, e))
        .collect()
}

/// The end of a command that reached none of the hosts it needed: their rows alone.
pub fn unreached(unreachable: Vec<(String, String)>) -> Done {
    Done::Rows {
        rows: unreached_rows(unreachable),
        details: None,
        style: Style::Table,
    }
}
