//! What a manager adds to its probe for `status`: rpiprov's deploy records, files read by
//! the probe's shell half ([`records`]); and from its Engine API, in the probe's one round
//! trip ([`reads`]), every stack service with its counts and every stack task, which with
//! the probe's nodes and networks make the stacks that exist, the swarm-scoped networks
//! with the stack each belongs to, and each playbook stack's poll ([`read`]). A status
//! costs the manager its probe's shell command and relay: no `docker` process else.

use std::collections::BTreeMap;

use crate::docker::api::{self, Request};
use crate::docker::http::Response;
use crate::docker::network::NetworkInfo;
use crate::docker::node::SwarmNode;
use crate::docker::probe::split;
use crate::docker::service::Poll;
use crate::docker::stack::{StackState, parse_state, records_read};

/// The records of these stacks, appended to the probe's shell half on a manager.
pub fn records(stacks: &[&str]) -> String {
    // In a subshell: its `set -e`, if any, must not end the probe.
    format!(
        "echo '@@begin records'; ({}); echo '@@end records'\n",
        records_read(stacks)
    )
}

/// What the manager's daemon is asked beside the probe's own requests.
pub fn reads() -> Vec<Request> {
    vec![api::stack_services(), api::stack_tasks()]
}

/// What [`records`] and [`reads`] reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// The stacks that exist, and the fingerprints rpiprov recorded of its deploys.
    pub state: StackState,
    /// Every swarm-scoped network: its name, and the stack it belongs to (empty for none).
    pub networks: Vec<(String, String)>,
    /// Each playbook stack's services and tasks, by stack name, or why they could not
    /// be read.
    pub polls: BTreeMap<String, Result<Poll, String>>,
}

/// The overview of a manager: `output` is its probe's shell output (with [`records`]),
/// `answers` the answers to [`reads`], `nodes` and `networks` what its probe read. An
/// error when the records or the services could not be read.
pub fn read(
    output: &str,
    answers: &[Response],
    nodes: &[SwarmNode],
    networks: &[NetworkInfo],
    stacks: &[&str],
) -> Result<Overview, String> {
    let (_, sections) = split(output)?;
    let records = sections
        .iter()
        .find(|(name, _)| *name == "records")
        .map(|(_, text)| text.as_str())
        .ok_or("the manager's probe holds no deploy records")?;
    let [services, tasks] = answers else {
        return Err(format!(
            "the manager answered {} of its 2 requests",
            answers.len()
        ));
    };
    let mut state = parse_state(records);
    state.existing = api::read(services, api::stacks_of)?;
    let polls = api::read(tasks, |t| api::parse_stack_polls(&services.body, t, nodes));
    Ok(Overview {
        state,
        networks: networks
            .iter()
            .filter(|n| n.scope == "swarm")
            .map(|n| (n.name.clone(), n.stack.clone()))
            .collect(),
        polls: stacks
            .iter()
            .map(|s| {
                let poll = match &polls {
                    Ok(all) => Ok(all.get(*s).cloned().unwrap_or_default()),
                    Err(e) => Err(e.clone()),
                };
                (s.to_string(), poll)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_records_are_files_read_by_the_shell() {
        let r = records(&["web"]);
        assert_eq!(
            r,
            "echo '@@begin records'; (echo 'deployed web '\"$(cat /var/lib/rpiprov/stacks/web/deployed 2>/dev/null || true)\"); echo '@@end records'\n"
        );
        syntax_ok(&r);
        let d = ScratchHost::new();
        std::fs::create_dir_all(format!("{}/stacks/web", d.root())).unwrap();
        std::fs::write(format!("{}/stacks/web/deployed", d.root()), "fp1\n").unwrap();
        let out = d.run(&records(&["web", "db"]), b"").ok();
        assert_eq!(
            out,
            "@@begin records\ndeployed web fp1\ndeployed db \n@@end records\n"
        );
        assert_eq!(d.calls(), "", "no docker process");
    }

    /// From a manager's answers (Docker 20.10's shapes, trimmed): the stacks that exist
    /// are those of the services, each playbook stack gets its poll (empty for one not
    /// deployed), and the swarm's networks carry their stack.
    #[test]
    fn a_manager_s_view_from_its_answers() {
        let output =
            "hostname=pi1\n@@begin records\ndeployed web fp1\ndeployed db \n@@end records\n";
        let services = ok(
            r#"[{"ID":"s1","Spec":{"Name":"web_web","Labels":{"com.docker.stack.namespace":"web"},"Mode":{"Global":{}}},"ServiceStatus":{"RunningTasks":1,"DesiredTasks":1}}]"#,
        );
        let tasks = ok(
            r#"[{"ID":"t1","ServiceID":"s1","NodeID":"n1","Status":{"State":"running"},"DesiredState":"running"}]"#,
        );
        let nodes = vec![SwarmNode {
            id: "n1".into(),
            hostname: "pi1".into(),
            ..Default::default()
        }];
        let net = |name: &str, scope: &str, stack: &str| NetworkInfo {
            name: name.into(),
            driver: "overlay".into(),
            scope: scope.into(),
            attachable: false,
            internal: false,
            subnets: vec![],
            encrypted: false,
            stack: stack.into(),
        };
        let networks = vec![
            net("DATA", "swarm", ""),
            net("bridge", "local", ""),
            net("web_default", "swarm", "web"),
        ];
        let o = read(
            output,
            &[services, tasks],
            &nodes,
            &networks,
            &["web", "db"],
        )
        .unwrap();
        assert_eq!(o.state.existing, ["web".to_string()].into());
        assert_eq!(o.state.recorded.get("web").map(String::as_str), Some("fp1"));
        assert_eq!(o.state.recorded.get("db"), None);
        assert_eq!(
            o.networks,
            vec![
                ("DATA".to_string(), String::new()),
                ("web_default".to_string(), "web".to_string()),
            ]
        );
        let web = o.polls["web"].as_ref().unwrap();
        assert_eq!(web.services[0].name, "web_web");
        assert_eq!(web.tasks[0].node, "pi1");
        assert_eq!(o.polls["db"], Ok(Poll::default()));

        // The tasks could not be read: said per stack, the rest stands.
        let refused = Response {
            status: 500,
            body: br#"{"message":"rpc error: code = Unknown desc = The swarm does not have a leader"}"#.to_vec(),
        };
        let services = ok("[]");
        let o = read(output, &[services, refused], &nodes, &networks, &["web"]).unwrap();
        assert_eq!(
            o.polls["web"],
            Err("rpc error: code = Unknown desc = The swarm does not have a leader".into())
        );
        assert!(read("hostname=pi1\n", &[], &nodes, &networks, &["web"]).is_err());
    }
}
