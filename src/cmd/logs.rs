//! `rpiprov logs SERVICE|STACK [--follow] [--since WHEN] [--tail N]`: what it does is all
//! here. It connects to the inventory's managers, and on the first that answers runs
//! `docker service logs` ([`crate::docker::service::service_logs`]), which collects the
//! lines of every task on every node, each prefixed by Docker with its task and node.
//! Lines are printed as they come, made safe for the terminal
//! ([`crate::ui::term`]): the task's stdout on stdout, its stderr on stderr.
//!
//! Ctrl-C ends it cleanly: the remote `docker service logs` (and everything it started)
//! is stopped, the channel closed, and rpiprov exits with 130 (128 + SIGINT, what a shell
//! reports for a command ended by Ctrl-C), so that a script can tell it from a log that
//! ended (0) or a failure (1).

use std::sync::Arc;
use std::time::Duration;

use super::context::{Ctx, Done, Needs, Opts, connect, ctrl_c, with_fleet};
use crate::cli::LogsArgs;
use crate::exec::report::Reporter;
use crate::exit::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE};
use crate::logs::{Ended, LogsRequest, read, valid_since};
use crate::remote::Stream;
use crate::ui::Plain;
use crate::ui::term;

/// How long `--follow` may run: `docker service logs` is stopped after that (the remote
/// side is always time-limited, see `remote::exec`), long enough to read a month of logs.
const FOLLOW_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Reads Docker's socket on a manager (root), changes nothing. Only the managers are
/// selected (`--on @manager`), so that no worker's sudo password is asked for.
const NEEDS: Needs = Needs {
    whole_swarm: false,
    managers: true,
    root: true,
};

pub fn logs(opts: &Opts, args: &LogsArgs) -> u8 {
    if let Some(since) = &args.since
        && !valid_since(since)
    {
        term::errln(&format!(
            "error: --since {since:?}: expected a duration (10m, 1h30m) or a timestamp (2026-11-25T16:00:00)"
        ));
        return EXIT_USAGE;
    }
    let req = LogsRequest {
        name: args.name.clone(),
        follow: args.follow,
        since: args.since.clone(),
        tail: args.tail,
    };
    let opts = Opts {
        on: vec!["@manager".into()],
        ..opts.clone()
    };
    with_fleet(&opts, "logs", NEEDS, |ctx| Box::pin(body(ctx, req)))
}

async fn body(ctx: &Ctx, req: LogsRequest) -> Done {
    let quiet: Arc<dyn Reporter> = Arc::new(Plain::quiet());
    let managers = ctx.manager_names();
    let (sessions, failed) = connect(ctx, &managers, &quiet).await;
    let Some(manager) = managers.iter().find_map(|m| sessions.get(m)) else {
        for (host, e) in failed {
            term::errln(&format!("error: {host}: {e}"));
        }
        term::errln("error: no manager could be reached: the logs are read on a manager");
        return Done::Exit(EXIT_FAILED);
    };
    let (stop, interrupt) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        ctrl_c().await;
        let _ = stop.send(true);
    });
    let timeout = if req.follow {
        FOLLOW_LIMIT
    } else {
        ctx.connect.command_timeout
    };
    // Remote text: made safe for the terminal by `term`.
    let mut print = |stream: Stream, line: &str| match stream {
        Stream::Stdout => term::outln(line),
        Stream::Stderr => term::errln(line),
    };
    let ended = read(&**manager, &req, timeout, interrupt, &mut print).await;
    // Said goodbye before exiting, so that the server ends the session at once.
    manager.close().await;
    match ended {
        Ended::Done => Done::Exit(EXIT_OK),
        Ended::Interrupted => Done::Exit(EXIT_INTERRUPTED),
        Ended::Failed(e) => {
            term::errln(&format!("error: {e}"));
            Done::Exit(EXIT_FAILED)
        }
    }
}
