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
use crate::remote::{self, ConnectOptions, Target};
use crate::secret::Secret;
use crate::select::Selection;
use crate::ui::{self, HostReport, Reporter};

pub fn run(cli: Cli) -> u8 {
    match &cli.command {
        Command::Bootstrap(args) => {
            let force = args.force;
            with_fleet(&cli, "bootstrap", |ctx| Box::pin(bootstrap(ctx, force)))
        }
        Command::Run(args) => {
            let command = args.command.join(" ");
            let sudo = args.sudo;
            with_fleet(&cli, "run", |ctx| Box::pin(run_command(ctx, command, sudo)))
        }
        Command::Check => crate::check::run(&cli.inventory, cli.playbook.as_deref(), cli.json),
        _ => {
            eprintln!("error: not wired yet");
            EXIT_USAGE
        }
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
    pub reporter: Arc<dyn Reporter>,
}

impl Ctx {
    pub fn host(&self, name: &str) -> &Host {
        self.loaded
            .inventory
            .host(name)
            .expect("selected hosts come from the inventory")
    }
}

type CommandFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Vec<HostReport>, Option<serde_json::Value>)> + 'a>,
>;

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
    let selected: Vec<String> = match selection.apply(&loaded.inventory.hosts) {
        Ok(hosts) => hosts.iter().map(|h| h.name.clone()).collect(),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let inv = &loaded.inventory;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    // Start from the transport's defaults so that settings it adds later need no change here.
    let mut connect = ConnectOptions::defaults();
    connect.known_hosts = inv.ssh.known_hosts.clone();
    connect.policy = match cli.host_key_policy {
        Some(PolicyArg::Strict) => HostKeyPolicy::Strict,
        Some(PolicyArg::AcceptNew) => HostKeyPolicy::AcceptNew,
        None => inv.ssh.host_key_policy,
    };
    connect.connect_timeout = inv.ssh.connect_timeout;
    connect.command_timeout = inv.ssh.command_timeout;
    connect.ssh_config = inv.ssh.config_file.clone();
    connect.interactive = interactive;
    // Managers are always connected for swarm commands: joins and labels go through them.
    let with_managers = !matches!(cli.command, Command::Run(_));
    let needed: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| {
            selected.contains(&h.name) || (with_managers && h.role == config::Role::Manager)
        })
        .collect();
    let targets = match targets_for(&needed, interactive) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let parallel = cli.parallel.unwrap_or(inv.ssh.parallel).max(1);
    let names: Vec<String> = needed.iter().map(|h| h.name.clone()).collect();
    let reporter: Arc<dyn Reporter> = Arc::from(ui::reporter(&names, cli.verbose > 0));
    let ctx = Ctx {
        cli_json: cli.json,
        loaded,
        selected,
        connect,
        targets,
        parallel,
        reporter: reporter.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let (reports, details) = rt.block_on(body(&ctx));
    reporter.finish();
    finish(name, &reports, details, start.elapsed(), cli.json)
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
fn targets_for(hosts: &[&Host], interactive: bool) -> Result<HashMap<String, Target>, String> {
    let mut prompted: Option<Secret> = None;
    let mut out = HashMap::new();
    for h in hosts {
        let sudo = h.become_.sudo && h.user != "root";
        let sudo_password = if !sudo {
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
        out.insert(
            h.name.clone(),
            Target {
                name: h.name.clone(),
                address: h.address.clone(),
                port: h.port,
                user: h.user.clone(),
                identity_files: h.identity_files.clone(),
                password_auth: h.password_auth,
                sudo,
                sudo_password,
            },
        );
    }
    Ok(out)
}

/// Connects to these hosts, bounded by `--parallel`.
pub async fn connect(
    ctx: &Ctx,
    names: &[String],
) -> (HashMap<String, Arc<remote::Session>>, Vec<(String, String)>) {
    let targets: Vec<(String, Target)> = names
        .iter()
        .map(|n| (n.clone(), ctx.targets[n].clone()))
        .collect();
    let opts = Arc::new(ctx.connect.clone());
    crate::run::connect_all(targets, ctx.parallel, ctx.reporter.clone(), move |t| {
        let opts = opts.clone();
        async move { remote::connect(&t, &opts).await }
    })
    .await
}

async fn bootstrap(ctx: &Ctx, force: bool) -> (Vec<HostReport>, Option<serde_json::Value>) {
    let inv = &ctx.loaded.inventory;
    let names: Vec<String> = ctx.targets.keys().cloned().collect();
    let (sessions, failed) = connect(ctx, &names).await;
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
    let (reports, facts) =
        crate::bootstrap::run(&opts, sessions, failed, ctx.reporter.clone()).await;
    let details = if ctx.cli_json {
        let mut facts: Vec<_> = facts.into_iter().collect();
        facts.sort_by(|a, b| a.0.cmp(&b.0));
        Some(
            serde_json::json!({ "facts": facts.into_iter().collect::<std::collections::BTreeMap<_, _>>() }),
        )
    } else {
        None
    };
    (reports, details)
}

/// `rpiprov run`: one command on every selected host; output printed per host, in
/// inventory order, once all are done (interleaved lines from many hosts are unreadable).
async fn run_command(
    ctx: &Ctx,
    command: String,
    sudo: bool,
) -> (Vec<HostReport>, Option<serde_json::Value>) {
    let (sessions, failed) = connect(ctx, &ctx.selected).await;
    let mut reports: HashMap<String, HostReport> = HashMap::new();
    for (host, err) in failed {
        let mut r = HostReport::new(&host);
        r.outcome = ui::Outcome::Failed;
        r.failed_step = Some("connect".into());
        r.error = Some(err);
        reports.insert(host, r);
    }
    let start = Instant::now();
    let names: Vec<String> = sessions.keys().cloned().collect();
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
                    ctx.reporter.finish();
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
    (ordered, details)
}
