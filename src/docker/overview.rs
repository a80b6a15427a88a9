//! What a manager sees of the swarm beyond the probe, for `rpiprov status`: the stacks
//! that exist and rpiprov's deploy records ([`crate::docker::stack::stacks_state`]), the
//! swarm-scoped networks with the stack they belong to, and each playbook stack's
//! services and tasks ([`crate::docker::service::stack_poll`]). [`overview`] is appended
//! to the probe on the inventory's managers, so that a status costs one round trip per
//! host; it prints nothing on a host that does not manage a swarm. [`parse`] reads its
//! sections back from the same output.

use std::collections::BTreeMap;

use crate::docker::probe::split;
use crate::docker::service::{Poll, parse_poll, stack_poll};
use crate::docker::stack::{NAMESPACE_LABEL, StackState, parse_state, stacks_state};

/// The manager's view, read-only. Runs as root, after the probe, in the same command: the
/// probe's `docker info` already said whether this host manages a swarm
/// (`swarm_manager=yes`), which is not asked again.
pub fn overview(stacks: &[&str]) -> String {
    let mut s = String::from("if [ \"${swarm_manager:-}\" = yes ]; then\n");
    // Each part in a subshell: their `set -e` must not end the rest.
    s.push_str(&format!(
        "echo '@@begin records'; ({}); echo '@@end records'\n",
        stacks_state(stacks)
    ));
    s.push_str(&format!(
        "echo '@@begin swarm_networks'; docker network ls --filter scope=swarm --format '{{{{.Name}}}}\\t{{{{.Label \"{NAMESPACE_LABEL}\"}}}}'; echo '@@end swarm_networks'\n"
    ));
    for name in stacks {
        s.push_str(&format!(
            "echo '@@begin poll {name}'; ({}) 2>&1; echo '@@end poll {name}'\n",
            stack_poll(name)
        ));
    }
    s.push_str("fi\n");
    s
}

/// What [`overview`] reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// The stacks that exist, and the fingerprints rpiprov recorded of its deploys.
    pub state: StackState,
    /// Every swarm-scoped network: its name, and the stack it belongs to (empty for none).
    pub networks: Vec<(String, String)>,
    /// Each playbook stack's services and tasks, by stack name, or why they could not
    /// be read (one stack's odd answer does not hide the others).
    pub polls: BTreeMap<String, Result<Poll, String>>,
}

/// Reads [`overview`]'s sections from the output it was appended to; `None` when the host
/// manages no swarm (no section at all).
pub fn parse(output: &str) -> Result<Option<Overview>, String> {
    let (_, sections) = split(output)?;
    let mut found = false;
    let mut o = Overview::default();
    for (name, text) in sections {
        if name == "records" {
            found = true;
            o.state = parse_state(&text);
        } else if name == "swarm_networks" {
            o.networks = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let (name, ns) = l.split_once('\t').unwrap_or((l, ""));
                    (name.trim().to_string(), ns.trim().to_string())
                })
                .collect();
        } else if let Some(stack) = name.strip_prefix("poll ") {
            // A stack that does not exist prints "Nothing found in stack" and no section.
            let poll = if text.contains("@@services") {
                parse_poll(&text)
            } else {
                Ok(Poll::default())
            };
            o.polls.insert(stack.to_string(), poll);
        }
    }
    Ok(found.then_some(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::ScratchHost;

    #[test]
    fn the_overview_command() {
        let o = overview(&["web"]);
        assert_eq!(
            o,
            "if [ \"${swarm_manager:-}\" = yes ]; then\n\
             echo '@@begin records'; (set -e; docker stack ls --format 'stack {{.Name}}'; echo 'deployed web '\"$(cat /var/lib/rpiprov/stacks/web/deployed 2>/dev/null || true)\"); echo '@@end records'\n\
             echo '@@begin swarm_networks'; docker network ls --filter scope=swarm --format '{{.Name}}\\t{{.Label \"com.docker.stack.namespace\"}}'; echo '@@end swarm_networks'\n\
             echo '@@begin poll web'; (set -e; echo '@@services'; docker stack services --format '{{.ID}}\\t{{.Name}}\\t{{.Mode}}\\t{{.Replicas}}' web; ids=$(docker stack services -q web); if [ -n \"$ids\" ]; then echo '@@inspect'; docker service inspect $ids; echo '@@tasks'; docker service ps --no-trunc --format '{{.ID}}\\t{{.Name}}\\t{{.Node}}\\t{{.DesiredState}}\\t{{.CurrentState}}\\t{{.Error}}' $ids; fi) 2>&1; echo '@@end poll web'\n\
             fi\n"
        );
        crate::testing::script::syntax_ok(&o);
    }

    /// Run by a real shell against the stand-in docker: a manager reports every section,
    /// a host that manages no swarm nothing.
    #[test]
    fn a_manager_reports_its_view_and_a_worker_nothing() {
        let d = ScratchHost::new();
        let root = d.root();
        std::fs::create_dir_all(format!("{root}/stacks/web")).unwrap();
        std::fs::write(format!("{root}/stacks/web/deployed"), "fp1\n").unwrap();
        d.answer(("network", "ls"), "DATA\t\nweb_default\tweb\nold\t\n");
        let out = d
            .run(
                &format!("swarm_manager=yes\n{}", overview(&["web", "db"])),
                b"",
            )
            .ok();
        let o = parse(&out).unwrap().expect("a manager's view");
        assert!(o.state.existing.contains("web"), "{out}");
        assert_eq!(o.state.recorded.get("web").map(String::as_str), Some("fp1"));
        assert_eq!(o.state.recorded.get("db"), None);
        assert_eq!(
            o.networks,
            vec![
                ("DATA".to_string(), String::new()),
                ("web_default".to_string(), "web".to_string()),
                ("old".to_string(), String::new()),
            ]
        );
        assert_eq!(o.polls.len(), 2, "{out}");
        // The stand-in's `stack services` answer is no service line: said, not fatal.
        assert_eq!(
            o.polls["web"],
            Err("cannot read a service line: stack web".to_string())
        );

        let worker = format!("swarm_manager=no\n{}", overview(&["web"]));
        assert_eq!(parse(&d.run(&worker, b"").ok()).unwrap(), None);
    }

    #[test]
    fn a_recorded_poll_is_read_per_stack() {
        let out = "hostname=pi1\n@@begin records\nstack web\ndeployed web fp\n@@end records\n\
                   @@begin poll web\n@@services\na1\tweb_web\tglobal\t3/3\n@@inspect\n\
                   [{\"Spec\": {\"Name\": \"web_web\", \"Mode\": {\"Global\": {}}}}]\n@@tasks\n\
                   t1\tweb_web.n1\tpi1\tRunning\tRunning 1 minute ago\t\n@@end poll web\n\
                   @@begin poll api\nNothing found in stack: api\n@@end poll api\n";
        let o = parse(out).unwrap().unwrap();
        let web = o.polls["web"].as_ref().unwrap();
        assert_eq!(web.services.len(), 1);
        assert_eq!(web.tasks[0].node, "pi1");
        assert_eq!(o.polls["api"], Ok(Poll::default()));
    }
}
