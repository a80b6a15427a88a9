//! Tasks: where each service's tasks run, swarm-wide ([`snapshot_reads`]) and on one node
//! ([`node_poll_reads`]), for `maintain`, which drains a node and must know when its tasks
//! have really moved (a node update is answered long before). Both are requests to a
//! manager's Engine API, whose answers [`read`] makes into one [`Snapshot`]; the judgement
//! of what a snapshot means for a maintenance is `crate::plan::maintain`'s.

use crate::docker::api::{self, Request};
use crate::docker::http::Response;
use crate::docker::node::{SwarmNode, parse_node_list};
use crate::docker::service::Task;

/// A service and its task counts.
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

/// What a manager said of the swarm.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn requests() {
        let node = node_poll_reads("n2");
        assert_eq!(
            node[2].path,
            "/tasks?filters=%7B%22node%22%3A%7B%22n2%22%3Atrue%7D%7D"
        );
        let all = snapshot_reads();
        assert_eq!(
            all.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            [
                "/nodes",
                "/services?status=true",
                "/tasks?filters=%7B%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D"
            ]
        );
    }

    /// As a manager answers while pi2 is being drained (Docker 20.10's shapes, trimmed):
    /// its tasks still run though swarm wants them shut down, and the global service
    /// counts 3 running of 2 wanted.
    #[test]
    fn a_drain_in_progress_is_read() {
        let nodes = ok(
            r#"[{"ID":"b9g4","Spec":{"Role":"worker","Availability":"drain"},"Description":{"Hostname":"pi2"},"Status":{"State":"ready"}}]"#,
        );
        let services = ok(
            r#"[{"ID":"kimu","Spec":{"Name":"glob","Mode":{"Global":{}}},"ServiceStatus":{"RunningTasks":3,"DesiredTasks":2}},
                {"ID":"iakt","Spec":{"Name":"rep","Mode":{"Replicated":{"Replicas":2}}},"ServiceStatus":{"RunningTasks":2,"DesiredTasks":2}},
                {"ID":"x1","Spec":{"Name":"once","Mode":{"ReplicatedJob":{"TotalCompletions":1}}},"ServiceStatus":{"RunningTasks":0,"DesiredTasks":1,"CompletedTasks":1}}]"#,
        );
        let tasks = ok(
            r#"[{"ID":"t1","ServiceID":"kimu","NodeID":"b9g4","Status":{"State":"running"},"DesiredState":"shutdown"},
                {"ID":"t2","ServiceID":"iakt","Slot":1,"NodeID":"b9g4","Status":{"State":"running"},"DesiredState":"shutdown"},
                {"ID":"t3","ServiceID":"iakt","Slot":3,"NodeID":"b9g4","Status":{"State":"shutdown"},"DesiredState":"shutdown"}]"#,
        );
        let s = read(&[nodes, services, tasks]).unwrap();
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
        assert_eq!(live, vec!["glob.b9g4", "rep.1"]);
        assert_eq!(
            (s.tasks[0].service.as_str(), s.tasks[0].node.as_str()),
            ("glob", "pi2")
        );
        assert_eq!(s.nodes[0].availability, "drain");
        let refused = Response {
            status: 503,
            body: br#"{"message":"This node is not a swarm manager."}"#.to_vec(),
        };
        assert_eq!(
            read(&[refused.clone(), refused.clone(), refused]).unwrap_err(),
            "This node is not a swarm manager."
        );
    }
}
