//! The `rpiprov logs` executor: `docker service logs` of a service, or of every service
//! of a stack, on a manager ([`crate::docker::service::service_logs`]), its lines handed
//! over as they come, until it ends or is interrupted.

use std::time::Duration;

use crate::docker::service::{logs_found_nothing, service_logs};
use crate::exec::check;
use crate::remote::{ExecRequest, Remote, RemoteError, Stream};

pub use crate::docker::service::{LogsRequest, valid_since};

/// How reading the logs ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every line was read (without `--follow`, or the services went away).
    Done,
    /// The interruption fired; the remote command was stopped.
    Interrupted,
    /// Nothing went well: the message says what and where.
    Failed(String),
}

/// Runs [`service_logs`] as root on `manager`, calling `on_line` for each line (without
/// the markers of the command itself); `interrupt` stops it when it turns true.
pub async fn read<R: Remote>(
    manager: &R,
    req: &LogsRequest,
    timeout: Duration,
    interrupt: tokio::sync::watch::Receiver<bool>,
    on_line: &mut (dyn FnMut(Stream, &str) + Send),
) -> Ended {
    let exec = ExecRequest::new(service_logs(req))
        .privileged()
        .timeout(timeout)
        .interrupt(interrupt);
    let mut lines = |stream: Stream, line: &str| {
        if line != "@@none" {
            on_line(stream, line);
        }
    };
    let host = manager.host();
    match manager.exec_streaming(exec, &mut lines).await {
        Ok(out) if logs_found_nothing(&out.stdout_str()) => Ended::Failed(format!(
            "{host}: no service or stack named {:?} (docker service ls, docker stack ls)",
            req.name
        )),
        Ok(out) => match check(out) {
            Ok(_) => Ended::Done,
            Err(e) => Ended::Failed(format!("{host}: docker service logs: {e}")),
        },
        Err(RemoteError::Interrupted { .. }) => Ended::Interrupted,
        Err(e) => Ended::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeRemote, fail, ok};

    async fn run(m: &FakeRemote, name: &str) -> (Ended, Vec<String>) {
        let (_stop, interrupt) = tokio::sync::watch::channel(false);
        let mut seen = Vec::new();
        let req = LogsRequest {
            name: name.into(),
            ..Default::default()
        };
        let ended = read(m, &req, Duration::from_secs(5), interrupt, &mut |s, l| {
            seen.push(format!("{s:?} {l}"))
        })
        .await;
        (ended, seen)
    }

    #[tokio::test]
    async fn lines_come_through_and_an_unknown_name_is_said() {
        let m = FakeRemote::new("pi1");
        m.on("n=echo;", ok("echo_echo.1.ab@pi1    | hello\n"))
            .on("n=nope;", {
                let mut o = ok("@@none\n");
                o.status = 3;
                o
            })
            .on(
                "n=broken;",
                fail(1, "Cannot connect to the Docker daemon\n"),
            );
        let (ended, seen) = run(&m, "echo").await;
        assert_eq!(ended, Ended::Done);
        assert_eq!(seen, vec!["Stdout echo_echo.1.ab@pi1    | hello"]);
        assert!(m.log.lock().unwrap()[0].privileged);

        let (ended, seen) = run(&m, "nope").await;
        assert_eq!(
            ended,
            Ended::Failed(
                "pi1: no service or stack named \"nope\" (docker service ls, docker stack ls)"
                    .into()
            )
        );
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(
            run(&m, "broken").await.0,
            Ended::Failed(
                "pi1: docker service logs: exit 1: Cannot connect to the Docker daemon".into()
            )
        );
    }
}
