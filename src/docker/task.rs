//! Tasks: where each service's tasks run, swarm-wide ([`snapshot`]) and on one node
//! ([`node_poll`]), for `maintain`, which drains a node and must know when its tasks have
//! really moved (`docker node update` returns long before). Both answers parse into one
//! [`Snapshot`]. Task lines are read by [`crate::docker::service::parse_tasks`], replica
//! counts by [`crate::docker::service::parse_replicas`]; the judgement of what a snapshot
//! means for a maintenance is `crate::plan::maintain`'s.

use crate::docker::api::{self, Request};
use crate::docker::http::Response;
use crate::docker::node::{SwarmNode, nodes_inspect, parse_node_list, parse_nodes};
use crate::docker::service::{Task, parse_replicas, parse_tasks};
use crate::shell::quote;

/// `docker service ls` with what a maintenance needs of every service.
const SERVICE_LS: &str =
    "docker service ls --format '{{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}'";

/// The task format [`parse_tasks`] reads.
const TASK_FORMAT: &str =
    "'{{.ID}}\\t{{.Name}}\\t{{.Node}}\\t{{.DesiredState}}\\t{{.CurrentState}}\\t{{.Error}}'";

/// The swarm as a manager sees it, in one round trip: every node, every service with its
/// running and desired counts, and every task swarm wants running (with the node it is
/// on). Parsed by [`parse_snapshot`].
pub fn snapshot() -> String {
    format!(
        "set -e; echo '@@nodes'; {}; echo '@@services'; {SERVICE_LS}; ids=$(docker service ls -q); echo '@@tasks'; if [ -n \"$ids\" ]; then docker service ps --no-trunc --filter desired-state=running --format {TASK_FORMAT} $ids; fi",
        nodes_inspect()
    )
}

/// One node's tasks, old ones included (a task being stopped shows with desired state
/// `shutdown` and current state `running` until it has stopped), and every service's
/// counts: what a drain and a return are judged on. Parsed by [`parse_snapshot`].
pub fn node_poll(node_id: &str) -> String {
    format!(
        "set -e; echo '@@services'; {SERVICE_LS}; echo '@@tasks'; docker node ps --no-trunc --format {TASK_FORMAT} {}",
        quote(node_id)
    )
}

/// A service and its task counts, as `docker service ls` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// Global (one task per eligible node) rather than replicated; jobs are neither.
    pub global: bool,
    /// A replicated service (not a job): `replicas` tasks wherever they fit.
    pub replicated: bool,
    pub running: u64,
    pub desired: u64,
}

/// The swarm as a manager's Engine API tells it, in one round trip: every node, every
/// service with its counts, and every task swarm wants running. Read by [`read`].
pub fn snapshot_reads() -> Vec<Request> {
    vec![api::nodes(), api::services(), api::running_tasks()]
}

/// One node's tasks, old ones included (a task being stopped shows with desired state
/// `shutdown` and current state `running` until it has stopped), the swarm's nodes and
/// every service's counts: what a drain and a return are judged on. Read by [`read`].
pub fn node_poll_reads(node_id: &str) -> Vec<Request> {
    vec![api::nodes(), api::services(), api::node_tasks(node_id)]
}

/// The snapshot the answers to [`snapshot_reads`] or [`node_poll_reads`] make.
pub fn read(answers: &[Response]) -> Result<Snapshot, String> {
    let [nodes, services, tasks] = answers else {
        return Err(format!(
            "the manager answered {} of 3 requests",
            answers.len()
        ));
    };
    api::all_ok(answers)?;
    let nodes = parse_node_list(&nodes.body)?;
    let (services, tasks) = api::parse_swarm_tasks(&services.body, &tasks.body, &nodes)?;
    Ok(Snapshot {
        nodes,
        services,
        tasks,
    })
}

/// What [`snapshot`] or [`node_poll`] found; sections a command does not print are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: Vec<SwarmNode>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

/// Whether a task still holds its place on its node: anything short of an end state.
/// A drained node's tasks go `running` to `shutdown` (after their stop grace period).
pub fn is_live(task: &Task) -> bool {
    !matches!(
        task.state.as_str(),
        "shutdown" | "complete" | "failed" | "rejected" | "orphaned" | "remove" | ""
    )
}

/// Parses the sections of [`snapshot`] and [`node_poll`].
pub fn parse_snapshot(text: &str) -> Result<Snapshot, String> {
    let mut section = "";
    let mut nodes = String::new();
    let mut services = Vec::new();
    let mut tasks = String::new();
    for line in text.lines() {
        match line {
            "@@nodes" | "@@services" | "@@tasks" => section = line,
            _ if line.trim().is_empty() => {}
            _ => match section {
                "@@nodes" => {
                    nodes.push_str(line);
                    nodes.push('\n');
                }
                "@@services" => services.push(parse_service(line)?),
                "@@tasks" => {
                    tasks.push_str(line);
                    tasks.push('\n');
                }
                _ => {}
            },
        }
    }
    Ok(Snapshot {
        nodes: parse_nodes(&nodes)?,
        services,
        tasks: parse_tasks(&tasks),
    })
}

/// One line of `docker service ls --format '{{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}'`.
fn parse_service(line: &str) -> Result<Service, String> {
    let f: Vec<&str> = line.split('\t').collect();
    let [_id, name, mode, replicas] = f[..] else {
        return Err(format!("cannot read a service line: {line}"));
    };
    let (running, desired, _) = parse_replicas(replicas)
        .ok_or_else(|| format!("cannot read the replicas of {name}: {replicas}"))?;
    Ok(Service {
        name: name.to_string(),
        global: mode == "global",
        replicated: mode == "replicated",
        running,
        desired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::syntax_ok;

    #[test]
    fn commands() {
        assert_eq!(
            node_poll("n2"),
            "set -e; echo '@@services'; docker service ls --format '{{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}'; echo '@@tasks'; docker node ps --no-trunc --format '{{.ID}}\\t{{.Name}}\\t{{.Node}}\\t{{.DesiredState}}\\t{{.CurrentState}}\\t{{.Error}}' n2"
        );
        assert!(snapshot().contains(
            "docker service ps --no-trunc --filter desired-state=running --format '{{.ID}}\\t{{.Name}}\\t{{.Node}}"
        ));
        syntax_ok(&snapshot());
        syntax_ok(&node_poll("n2"));
    }

    /// Recorded on the lab (Docker 20.10) while pi2 was being drained: its tasks are
    /// still running though swarm wants them shut down, and the global service counts
    /// 3 running of 2 wanted.
    #[test]
    fn a_drain_in_progress_is_read() {
        let text = "@@services\n\
kimu8gvny01j\tglob\tglobal\t3/2\n\
iaktiu82ic0w\trep\treplicated\t2/2\n\
x1\tonce\treplicated job\t0/1 (1/1 completed)\n\
@@tasks\n\
t1\tglob.b9g4sidwnx08kxwc1jhgdrt9e\tpi2\tShutdown\tRunning 6 seconds ago\t\n\
t2\trep.1\tpi2\tShutdown\tRunning 6 seconds ago\t\n\
t3\trep.3\tpi2\tShutdown\tShutdown 2 minutes ago\t\n";
        let s = parse_snapshot(text).unwrap();
        assert_eq!(
            s.services,
            vec![
                Service {
                    name: "glob".into(),
                    global: true,
                    replicated: false,
                    running: 3,
                    desired: 2
                },
                Service {
                    name: "rep".into(),
                    global: false,
                    replicated: true,
                    running: 2,
                    desired: 2
                },
                Service {
                    name: "once".into(),
                    global: false,
                    replicated: false,
                    running: 0,
                    desired: 1
                },
            ]
        );
        let live: Vec<&str> = s
            .tasks
            .iter()
            .filter(|t| is_live(t))
            .map(|t| t.slot.as_str())
            .collect();
        assert_eq!(live, vec!["glob.b9g4sidwnx08kxwc1jhgdrt9e", "rep.1"]);
        assert_eq!(s.tasks[0].service, "glob");
        assert!(s.nodes.is_empty());
        assert_eq!(
            parse_snapshot("@@services\nbroken\n").unwrap_err(),
            "cannot read a service line: broken"
        );
    }
}
