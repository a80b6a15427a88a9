//! Runs a parsed command line: loads and checks the configuration (exit 2 on bad input,
//! before any connection), selects the hosts, connects, runs the command, prints the
//! summary or JSON, and decides the exit code once, at the end.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Cli, Command, PolicyArg};
use crate::config::{self, Diagnostic, Host, HostKeyPolicy, Loaded, PasswordSource};
use crate::error::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::remote::{self, ConnectOptions, Remote, Target};
use crate::secret::Secret;
use crate::select::Selection;
use crate::ui::{self, HostReport, Reporter};

pub fn run(cli: Cli) -> u8 {
    match &cli.command {
        Command::Check => crate::check::run(&cli.inventory, cli.playbook.as_deref(), cli.json),
        Command::Bootstrap(args) => {
            let force = args.force;
            with_fleet(&cli, "bootstrap", |ctx| Box::pin(bootstrap(ctx, force)))
        }
        Command::Deploy(args) => {
            let unlock = args.unlock;
            with_fleet(&cli, "deploy", |ctx| Box::pin(deploy(ctx, unlock)))
        }
        Command::Teardown(args) => {
            let (yes, leave, purge) = (args.yes, args.leave_swarm, args.purge);
            with_fleet(&cli, "teardown", |ctx| {
                Box::pin(teardown(ctx, yes, leave, purge))
            })
        }
        Command::Run(args) => {
            let command = args.command.join(" ");
            let sudo = args.sudo;
            with_fleet(&cli, "run", |ctx| Box::pin(run_command(ctx, command, sudo)))
        }
        Command::Lab(lab) => crate::lab::run(lab),
    }
}

/// Prints configuration diagnostics on stderr, errors first.
pub fn print_diagnostics(diags: &[Diagnostic], kind: &str) {
    for d in diags {
        eprintln!("{kind}: {d}");
    }
}

/// Loads the configuration or says why not. Errors are printed; `Err` holds the exit code.
pub fn load(cli: &Cli) -> Result<Loaded, u8> {
    match config::load(&cli.inventory, cli.playbook.as_deref()) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings, "warning");
            Ok(loaded)
        }
        Err(errors) => {
            print_diagnostics(&errors, "error");
            eprintln!(
                "{}: {} error(s); nothing was touched",
                cli.inventory.display(),
                errors.len()
            );
            Err(EXIT_USAGE)
        }
    }
}

/// What a command that works on hosts gets.
pub struct Ctx {
    pub cli_json: bool,
    pub loaded: Loaded,
    /// Selected hosts' names, in inventory order.
    pub selected: Vec<String>,
    pub connect: ConnectOptions,
    pub targets: HashMap<String, Target>,
    pub parallel: usize,
    pub verbose: bool,
}

/// How a command body ended.
pub enum Done {
    /// Reports to summarise, and details for `--json`.
    Reports(Vec<HostReport>, Option<serde_json::Value>),
    /// Stop with this exit code; what to say was already said.
    Exit(u8),
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

    /// The end of a command: hosts that could not be reached first, then the command's
    /// rows; `details` goes into `--json`.
    pub fn done(
        &self,
        unreachable: Vec<(String, String)>,
        rows: Vec<HostReport>,
        details: &impl serde::Serialize,
    ) -> Done {
        let mut hosts: Vec<HostReport> = unreachable
            .into_iter()
            .map(|(h, e)| failed_report(&h, "connect", e))
            .collect();
        hosts.extend(rows);
        let details = self
            .cli_json
            .then(|| serde_json::to_value(details).expect("results serialise"));
        Done::Reports(hosts, details)
    }

    /// A progress reporter with these rows (hosts, or stacks for deploy).
    pub fn reporter(&self, rows: &[String]) -> Arc<dyn Reporter> {
        Arc::from(ui::reporter(rows, self.verbose))
    }

    /// The playbook, or a usage error saying how to name one.
    pub fn playbook(&self) -> Result<&config::Playbook, u8> {
        self.loaded.playbook.as_ref().ok_or_else(|| {
            eprintln!(
                "error: {}: no playbook: set `playbook = \"FILE\"` in the inventory or pass -p FILE",
                self.loaded.inventory.path.display()
            );
            EXIT_USAGE
        })
    }

    pub fn host(&self, name: &str) -> &Host {
        self.loaded
            .inventory
            .host(name)
            .expect("selected hosts come from the inventory")
    }
}

type CommandFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + 'a>>;

/// Loads, selects, resolves secrets, then runs `body` on a tokio runtime and reports.
fn with_fleet(cli: &Cli, name: &str, body: impl FnOnce(&Ctx) -> CommandFuture<'_>) -> u8 {
    let loaded = match load(cli) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let selection = match Selection::parse(&cli.on) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let whole_swarm = matches!(cli.command, Command::Deploy(_) | Command::Teardown(_));
    if whole_swarm && !selection.is_all() {
        eprintln!("error: deploy and teardown act on the whole swarm; --on is not accepted");
        return EXIT_USAGE;
    }
    let selected: Vec<String> = match selection.apply(&loaded.inventory.hosts) {
        Ok(hosts) => hosts.iter().map(|h| h.name.clone()).collect(),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let inv = &loaded.inventory;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut connect = ConnectOptions::from_settings(&inv.ssh, interactive);
    if let Some(p) = cli.host_key_policy {
        connect.policy = match p {
            PolicyArg::Strict => HostKeyPolicy::Strict,
            PolicyArg::AcceptNew => HostKeyPolicy::AcceptNew,
        };
    }
    // Managers are always connected for swarm commands: joins and labels go through them.
    let with_managers = !matches!(cli.command, Command::Run(_));
    let needed: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| {
            selected.contains(&h.name) || (with_managers && h.role == config::Role::Manager)
        })
        .collect();
    // Only a command that runs something as root needs the sudo passwords.
    let needs_root = !matches!(&cli.command, Command::Run(r) if !r.sudo);
    let targets = match targets_for(&needed, interactive, needs_root) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let parallel = cli.parallel.unwrap_or(inv.ssh.parallel).max(1);
    let ctx = Ctx {
        cli_json: cli.json,
        loaded,
        selected,
        connect,
        targets,
        parallel,
        verbose: cli.verbose > 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    match rt.block_on(body(&ctx)) {
        Done::Reports(reports, details) => {
            finish(name, &reports, details, start.elapsed(), cli.json)
        }
        Done::Exit(code) => code,
    }
}

/// Prints the summary (or JSON) and returns the exit code.
pub fn finish(
    name: &str,
    reports: &[HostReport],
    details: Option<serde_json::Value>,
    elapsed: Duration,
    json: bool,
) -> u8 {
    let ok = reports.iter().all(|r| !r.failed());
    if json {
        let doc = ui::JsonResult {
            command: name,
            ok,
            changed: reports.iter().any(|r| !r.changed.is_empty()),
            seconds: elapsed.as_secs_f64(),
            hosts: reports,
            details,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("reports serialise")
        );
    } else if name == "run" {
        // The hosts' own output is the result; only failures need a line of their own.
        for r in reports.iter().filter(|r| r.failed()) {
            eprintln!("{}: FAILED {}", r.host, r.error.as_deref().unwrap_or(""));
        }
        let failed = reports.iter().filter(|r| r.failed()).count();
        eprintln!(
            "run: {} ok, {failed} failed ({:.1}s)",
            reports.len() - failed,
            elapsed.as_secs_f64()
        );
    } else {
        print!("{}", ui::summary(name, reports, elapsed));
    }
    if ok { EXIT_OK } else { EXIT_FAILED }
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
    crate::run::connect_all(targets, ctx.parallel, reporter.clone(), move |t| {
        let opts = opts.clone();
        async move { remote::connect(&t, &opts).await }
    })
    .await
}

async fn bootstrap(ctx: &Ctx, force: bool) -> Done {
    let inv = &ctx.loaded.inventory;
    let names = ctx.ordered_targets();
    let reporter = ctx.reporter(&names);
    let (sessions, failed) = connect(ctx, &names, &reporter).await;
    let hosts: Vec<&Host> = ctx.selected.iter().map(|n| ctx.host(n)).collect();
    let managers: Vec<&Host> = inv.managers().collect();
    let networks = ctx
        .loaded
        .playbook
        .as_ref()
        .map(|p| p.networks.as_slice())
        .unwrap_or_default();
    let opts = crate::bootstrap::Options {
        hosts,
        managers,
        networks,
        default_addr_pool: inv.swarm.default_addr_pool.as_deref(),
        force,
        parallel: ctx.parallel,
        command_timeout: ctx.connect.command_timeout,
    };
    let (reports, facts) = crate::bootstrap::run(&opts, sessions, failed, reporter.clone()).await;
    reporter.finish();
    let details = ctx.cli_json.then(|| {
        let facts: std::collections::BTreeMap<_, _> = facts.into_iter().collect();
        serde_json::json!({ "facts": facts })
    });
    Done::Reports(reports, details)
}

/// Connects to every host and picks the leader: the first manager that answered.
async fn connect_swarm(
    ctx: &Ctx,
    reporter: &Arc<dyn Reporter>,
) -> Result<
    (
        Arc<remote::Session>,
        HashMap<String, Arc<remote::Session>>,
        Vec<(String, String)>,
    ),
    Done,
> {
    let names = ctx.ordered_targets();
    let (sessions, failed) = connect(ctx, &names, reporter).await;
    let leader = ctx
        .loaded
        .inventory
        .managers()
        .find_map(|m| sessions.get(&m.name).cloned());
    match leader {
        Some(l) => Ok((l, sessions, failed)),
        None => {
            reporter.finish();
            let reports = failed
                .into_iter()
                .map(|(h, e)| failed_report(&h, "connect", e))
                .collect();
            eprintln!("error: no manager could be reached");
            Err(Done::Reports(reports, None))
        }
    }
}

fn failed_report(host: &str, step: &str, error: String) -> HostReport {
    let mut r = HostReport::new(host);
    r.outcome = ui::Outcome::Failed;
    r.failed_step = Some(step.to_string());
    r.error = Some(error);
    r
}

/// Ctrl-C: the deploy and teardown executors release the lock when it fires.
async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn deploy(ctx: &Ctx, unlock: bool) -> Done {
    let playbook = match ctx.playbook() {
        Ok(p) => p,
        Err(code) => return Done::Exit(code),
    };
    // Local files and variables first: a missing secret is a usage error, and nothing
    // remote has been touched yet.
    let prepared = match crate::deploy::prepare(playbook) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Done::Exit(EXIT_USAGE);
        }
    };
    if unlock {
        let reporter = ctx.reporter(&[]);
        let (leader, _, _) = match connect_swarm(ctx, &reporter).await {
            Ok(x) => x,
            Err(done) => return done,
        };
        return match crate::lock::unlock(&*leader, ctx.connect.command_timeout).await {
            Ok(msg) => {
                println!("{msg}");
                Done::Exit(EXIT_OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Done::Exit(EXIT_FAILED)
            }
        };
    }
    let names = ctx.ordered_targets();
    let leader_name = ctx
        .loaded
        .inventory
        .managers()
        .next()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let rows = crate::deploy::row_names(&prepared, &leader_name, &names);
    let reporter = ctx.reporter(&rows);
    let (leader, sessions, failed) = match connect_swarm(ctx, &reporter).await {
        Ok(x) => x,
        Err(done) => return done,
    };
    let opts = crate::deploy::Options::new(ctx.parallel, ctx.connect.command_timeout);
    let res = crate::deploy::run(
        &opts,
        &prepared,
        leader,
        sessions,
        reporter.clone(),
        ctrl_c(),
    )
    .await;
    reporter.finish();
    ctx.done(failed, res.hosts.clone(), &res.stacks)
}

async fn teardown(ctx: &Ctx, yes: bool, leave_swarm: bool, purge: bool) -> Done {
    let playbook = match ctx.playbook() {
        Ok(p) => p,
        Err(code) => return Done::Exit(code),
    };
    let interactive = std::io::stdin().is_terminal();
    if !yes && !interactive {
        eprintln!(
            "error: teardown removes stacks and networks: confirm with --yes when not on a terminal"
        );
        return Done::Exit(EXIT_USAGE);
    }
    let quiet: Arc<dyn Reporter> = Arc::new(ui::Plain::quiet());
    let (leader, sessions, failed) = match connect_swarm(ctx, &quiet).await {
        Ok(x) => x,
        Err(done) => return done,
    };
    let found = match crate::teardown::survey(&*leader, playbook, ctx.connect.command_timeout).await
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Done::Exit(EXIT_FAILED);
        }
    };
    let mut what = found.describe();
    if leave_swarm {
        what.push_str("; then dissolve the swarm (every node leaves)");
    }
    if purge {
        what.push_str("; and purge what rpiprov uploaded");
    }
    if !yes {
        eprint!("{what}\nProceed? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("teardown: cancelled, nothing was removed");
            return Done::Exit(EXIT_FAILED);
        }
    } else {
        eprintln!("teardown: {what}");
    }
    let managers: Vec<String> = ctx
        .loaded
        .inventory
        .managers()
        .map(|m| m.name.clone())
        .collect();
    let opts = crate::teardown::Options::new(
        ctx.parallel,
        ctx.connect.command_timeout,
        managers,
        leave_swarm,
        purge,
    );
    let node_names: Vec<String> = sessions.keys().cloned().collect();
    let rows = crate::teardown::row_names(&found, leader.host(), &node_names, &opts);
    let reporter = ctx.reporter(&rows);
    let res = crate::teardown::run(
        &opts,
        playbook,
        leader,
        sessions,
        reporter.clone(),
        ctrl_c(),
    )
    .await;
    reporter.finish();
    ctx.done(failed, res.hosts.clone(), &res)
}

/// `rpiprov run`: one command on every selected host; output printed per host, in
/// inventory order, once all are done (interleaved lines from many hosts are unreadable).
async fn run_command(ctx: &Ctx, command: String, sudo: bool) -> Done {
    // The hosts' own output is what the user asked for: no progress lines around it.
    let reporter: Arc<dyn Reporter> = if ctx.verbose {
        ctx.reporter(&ctx.selected)
    } else {
        Arc::new(ui::Plain::quiet())
    };
    let (sessions, failed) = connect(ctx, &ctx.selected, &reporter).await;
    reporter.finish();
    let mut reports: HashMap<String, HostReport> = HashMap::new();
    for (host, err) in failed {
        let mut r = HostReport::new(&host);
        r.outcome = ui::Outcome::Failed;
        r.failed_step = Some("connect".into());
        r.error = Some(err);
        reports.insert(host, r);
    }
    let start = Instant::now();
    let names: Vec<String> = ctx
        .selected
        .iter()
        .filter(|n| sessions.contains_key(*n))
        .cloned()
        .collect();
    let timeout = ctx.connect.command_timeout;
    let results = crate::run::parallel_map(names, ctx.parallel, |name| {
        let s = sessions[&name].clone();
        let mut req = crate::remote::ExecRequest::new(command.clone()).timeout(timeout);
        req.privileged = sudo;
        async move {
            use crate::remote::Remote;
            let out = s.exec(req).await;
            (name, out)
        }
    })
    .await;
    let mut outputs = serde_json::Map::new();
    for (name, out) in results {
        let mut r = HostReport::new(&name);
        r.seconds = start.elapsed().as_secs_f64();
        match out {
            Ok(o) => {
                if !o.success() {
                    r.outcome = ui::Outcome::Failed;
                    r.error = Some(match &o.signal {
                        Some(s) => format!("killed by signal {s}"),
                        None => format!("exit {}", o.status),
                    });
                }
                outputs.insert(
                    name.clone(),
                    serde_json::json!({"status": o.status, "stdout": o.stdout_str(), "stderr": o.stderr_str()}),
                );
                if !ctx.cli_json {
                    for line in o.stdout_str().lines() {
                        println!("{name}: {line}");
                    }
                    for line in o.stderr_str().lines() {
                        eprintln!("{name}: {line}");
                    }
                }
            }
            Err(e) => {
                r.outcome = ui::Outcome::Failed;
                r.error = Some(e.to_string());
            }
        }
        reports.insert(name, r);
    }
    let ordered = ctx
        .selected
        .iter()
        .filter_map(|n| reports.remove(n))
        .collect();
    let details = ctx.cli_json.then_some(serde_json::Value::Object(outputs));
    Done::Reports(ordered, details)
}
