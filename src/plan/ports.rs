//! The port test's judgement: which node must reach which port of which other node
//! ([`expected`]), and, from what the listeners, senders and receivers reported, the
//! [`Finding`]s: a port nothing reaches on a node, a node that reaches no one on a port,
//! or one pair that cannot talk; each names the port and the peers. Pure; the commands
//! are [`crate::docker::ports`]'s and the run is `bootstrap`'s.
//!
//! Swarm needs: 2377/tcp of every manager from every other node (joins, and raft between
//! managers), 7946/tcp and 7946/udp between all nodes (gossip), 4789/udp between all nodes
//! (VXLAN, for overlay networks).
//!
//! What is tested ([`expected`]): 2377/tcp of every manager from every other node, always.
//! The three ports between all nodes, every ordered pair, in a fleet of up to
//! [`PEERS`]` + 1` nodes (9: the lab's 3 and a small rack test exactly what they always
//! did). In a bigger fleet every pair would grow with the square of the nodes (552 pairs
//! of 24 nodes, each three ports); instead each node sends to [`PEERS`] others on each of
//! the three ports, those at the [`offsets`] spread over the fleet in its order (node `i`
//! to node `i + d`, modulo its size): every node is tested as a sender and as a receiver
//! on every port, with [`PEERS`] peers each, so a firewall of one node (in or out) is
//! found and named as in a small fleet; what such a sample cannot see is one pair that
//! cannot talk while both talk to others (a rule between those two alone). The cost per
//! node is bounded: `3 × PEERS` targets and one per manager.

use std::collections::{BTreeMap, HashMap};

use crate::docker::ports::{
    self, GOSSIP_TCP, GOSSIP_UDP, Listening, MANAGEMENT, Port, Proto, Received, Target, VXLAN,
};
use crate::plan::preflight::{Check, Finding, Severity};

/// A node that takes part in the test.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub host: &'a str,
    /// The address the node advertises to the swarm: where the others reach it.
    pub addr: &'a str,
    pub manager: bool,
    /// Already in the swarm: Docker holds its ports, which is expected.
    pub in_swarm: bool,
    /// Docker runs there. A node that left a swarm moments ago still has its overlay's
    /// VXLAN socket on 4789/udp: the kernel keeps it (no process holds it) until the
    /// overlay's last sandbox is gone, so that port being taken is Docker's, not another
    /// program's, and cannot be tested rather than being an error.
    pub docker: bool,
}

/// The ports a node listens on for the test.
pub fn listen_ports(node: &Node) -> Vec<Port> {
    let mut p = vec![GOSSIP_TCP, GOSSIP_UDP, VXLAN];
    if node.manager {
        p.insert(0, MANAGEMENT);
    }
    p
}

/// One reachability the swarm needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub port: Port,
}

/// How many peers each node sends to on each of the three ports in a fleet bigger than
/// `PEERS + 1` (where every pair is tested).
pub const PEERS: usize = 8;

/// The distances, in the fleet's order, from a node to the peers it sends to, among `n`
/// nodes: every other node (1 to n - 1) up to `PEERS + 1` nodes, else `PEERS` distances
/// spread evenly over 1..n-1 (distinct, since (n - 1) / PEERS > 1 there).
pub fn offsets(n: usize) -> Vec<usize> {
    if n <= PEERS + 1 {
        return (1..n).collect();
    }
    (0..PEERS).map(|j| 1 + j * (n - 1) / PEERS).collect()
}

/// Every (from, to, port) the test checks among these nodes (see the module's text): per
/// sender, its targets in the fleet's order, a manager's 2377/tcp first.
pub fn expected<'a>(nodes: &[Node<'a>]) -> Vec<Expected<'a>> {
    let offsets = offsets(nodes.len());
    (0..nodes.len())
        .flat_map(|i| expected_from(nodes, i, &offsets))
        .collect()
}

/// What node `i` sends to: every manager's 2377/tcp, and the three ports of the peers at
/// these distances; `PEERS + managers` peers at most, whatever the fleet's size.
fn expected_from<'a>(nodes: &[Node<'a>], i: usize, offsets: &[usize]) -> Vec<Expected<'a>> {
    let n = nodes.len();
    let peers: Vec<usize> = offsets.iter().map(|d| (i + d) % n).collect();
    let mut to: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(j, t)| t.manager && *j != i)
        .map(|(j, _)| j)
        .chain(peers.iter().copied())
        .collect();
    to.sort_unstable();
    to.dedup();
    let mut out = Vec::new();
    for j in to {
        let mut ports = Vec::new();
        if nodes[j].manager {
            ports.push(MANAGEMENT);
        }
        if peers.contains(&j) {
            ports.extend([GOSSIP_TCP, GOSSIP_UDP, VXLAN]);
        }
        out.extend(ports.into_iter().map(|port| Expected {
            from: nodes[i].host,
            to: nodes[j].host,
            port,
        }));
    }
    out
}

/// What one node sends to: its peers' ports, at the address each advertises.
pub fn targets(nodes: &[Node], from: &str) -> Vec<Target> {
    let Some(i) = nodes.iter().position(|n| n.host == from) else {
        return vec![];
    };
    expected_from(nodes, i, &offsets(nodes.len()))
        .into_iter()
        .map(|e| Target {
            addr: nodes
                .iter()
                .find(|n| n.host == e.to)
                .map_or("", |n| n.addr)
                .to_string(),
            port: e.port,
        })
        .collect()
}

/// What one node sends once the listeners have started: its [`targets`] but the UDP
/// ports our listener could not bind (Docker's own, on a node in the swarm, or another
/// program's, reported on its own): nothing of ours would receive, or acknowledge, them.
pub fn to_send(
    nodes: &[Node],
    from: &str,
    listening: &HashMap<String, Result<Listening, String>>,
) -> Vec<Target> {
    let bound: HashMap<&str, &[Port]> = nodes
        .iter()
        .filter_map(|n| match listening.get(n.host) {
            Some(Ok(l)) => Some((n.addr, l.bound.as_slice())),
            _ => None,
        })
        .collect();
    targets(nodes, from)
        .into_iter()
        .filter(|t| {
            t.port.proto == Proto::Tcp
                || bound
                    .get(t.addr.as_str())
                    .is_some_and(|b| b.contains(&t.port))
        })
        .collect()
}

/// The tag a node's datagrams carry: this run's nonce and the sender.
pub fn tag(nonce: &str, host: &str) -> String {
    format!("{nonce}.{host}")
}

/// What one sender reported: each target, and why it failed (`None`: reached, or sent).
pub type Sent = Vec<(Target, Option<String>)>;

/// What the test gathered from each node; an `Err` says why that part did not run.
#[derive(Debug, Default)]
pub struct Report {
    pub listening: HashMap<String, Result<Listening, String>>,
    pub sent: HashMap<String, Result<Sent, String>>,
    pub received: HashMap<String, Result<Vec<Received>, String>>,
}

/// How one expected reachability went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Ok,
    Failed(String),
    /// Could not be told (the listener or the sender did not run, or the port is held by
    /// the swarm's own Docker).
    Untested,
}

/// Judges the test: errors for what cannot reach what, warnings for what could not be
/// tested. Findings on the receiving node unless a node reaches no one on a port.
pub fn judge(nodes: &[Node], nonce: &str, report: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let by_host: HashMap<&str, &Node> = nodes.iter().map(|n| (n.host, n)).collect();
    for n in nodes {
        let broken = [
            report.listening.get(n.host).and_then(|r| r.as_ref().err()),
            report.sent.get(n.host).and_then(|r| r.as_ref().err()),
        ];
        if let Some(e) = broken.into_iter().flatten().next() {
            out.push(Finding {
                host: n.host.to_string(),
                check: Check::Ports,
                severity: Severity::Warning,
                message: format!("cannot test its ports: {e}"),
                fix: "install perl (the perl-base package) so that the port test can run there, or open 2377/tcp, 7946/tcp+udp and 4789/udp between the Pis by hand".into(),
            });
        }
        if let Some(Ok(l)) = report.listening.get(n.host) {
            for (port, why) in &l.busy {
                let dockers_own = n.in_swarm || (n.docker && *port == VXLAN);
                if !dockers_own {
                    out.push(Finding {
                        host: n.host.to_string(),
                        check: Check::Ports,
                        severity: Severity::Error,
                        message: format!(
                            "its {port} is held by another program ({why}): swarm needs it for {}",
                            ports::purpose(*port)
                        ),
                        fix: format!(
                            "stop what holds it (`sudo ss -lntup 'sport = :{}'` names it)",
                            port.port
                        ),
                    });
                }
            }
        }
    }
    // Each expected reachability, seen or not.
    let mut failed: Vec<(Expected, String)> = Vec::new();
    for e in expected(nodes) {
        let to = by_host[e.to];
        match seen(&e, to, nonce, report) {
            Seen::Failed(why) => failed.push((e, why)),
            Seen::Ok | Seen::Untested => {}
        }
    }
    out.extend(group(nodes, failed));
    out
}

fn seen(e: &Expected, to: &Node, nonce: &str, report: &Report) -> Seen {
    let Some(Ok(listening)) = report.listening.get(e.to) else {
        return Seen::Untested;
    };
    let Some(Ok(sent)) = report.sent.get(e.from) else {
        return Seen::Untested;
    };
    let bound = listening.bound.contains(&e.port);
    if !bound && (e.port.proto == Proto::Udp || !to.in_swarm) {
        // Our listener is not there to receive it: a busy port is reported on its own.
        return Seen::Untested;
    }
    let Some((_, outcome)) = sent
        .iter()
        .find(|(t, _)| t.addr == to.addr && t.port == e.port)
    else {
        return Seen::Untested;
    };
    if let Some(why) = outcome {
        return Seen::Failed(why.clone());
    }
    if e.port.proto == Proto::Tcp {
        return Seen::Ok;
    }
    let Some(Ok(got)) = report.received.get(e.to) else {
        return Seen::Untested;
    };
    let want = tag(nonce, e.from);
    if got.iter().any(|r| r.port == e.port && r.tag == want) {
        Seen::Ok
    } else {
        Seen::Failed("nothing arrived".into())
    }
}

/// Failures grouped the way a user fixes them: a port that nothing reaches on a node (its
/// firewall), a node that reaches no one on a port (its outgoing rules), and single pairs
/// (something between them). A group needs two peers at least; fewer is a pair.
fn group(nodes: &[Node], failed: Vec<(Expected, String)>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut covered = vec![false; failed.len()];
    // Per port and node: (expected count, failed indices) as receiver and as sender.
    let all = expected(nodes);
    let count = |f: &dyn Fn(&Expected) -> bool| all.iter().filter(|e| f(e)).count();
    let mut by_receiver: BTreeMap<(usize, Port), Vec<usize>> = BTreeMap::new();
    let mut by_sender: BTreeMap<(usize, Port), Vec<usize>> = BTreeMap::new();
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.host, i)).collect();
    for (i, (e, _)) in failed.iter().enumerate() {
        by_receiver
            .entry((index[e.to], e.port))
            .or_default()
            .push(i);
        by_sender
            .entry((index[e.from], e.port))
            .or_default()
            .push(i);
    }
    for ((node, port), fails) in &by_receiver {
        let host = nodes[*node].host;
        let want = count(&|e: &Expected| e.to == host && e.port == *port);
        if fails.len() >= 2 && fails.len() == want {
            let peers: Vec<&str> = fails.iter().map(|i| failed[*i].0.from).collect();
            out.push(finding(
                host,
                format!(
                    "nothing reaches its {port} (from {}): swarm needs it for {}",
                    peers.join(", "),
                    ports::purpose(*port)
                ),
                format!("open {port} on {host}: in its firewall, and in any between the Pis"),
            ));
            fails.iter().for_each(|i| covered[*i] = true);
        }
    }
    for ((node, port), fails) in &by_sender {
        let host = nodes[*node].host;
        let want = count(&|e: &Expected| e.from == host && e.port == *port);
        if fails.len() >= 2 && fails.len() == want {
            let peers: Vec<&str> = fails.iter().map(|i| failed[*i].0.to).collect();
            out.push(finding(
                host,
                format!(
                    "it reaches no other node's {port} ({}): swarm needs it for {}",
                    peers.join(", "),
                    ports::purpose(*port)
                ),
                format!("allow {host} to send to {port} (its outgoing firewall rules)"),
            ));
            fails.iter().for_each(|i| covered[*i] = true);
        }
    }
    for (i, (e, why)) in failed.iter().enumerate() {
        if !covered[i] {
            out.push(finding(
                e.to,
                format!(
                    "{} cannot reach its {} ({why}): swarm needs it for {}",
                    e.from,
                    e.port,
                    ports::purpose(e.port)
                ),
                format!(
                    "open {} on {} to {}, and in anything between them",
                    e.port, e.to, e.from
                ),
            ));
        }
    }
    // In the nodes' order, so that a user reads the fleet from the top.
    out.sort_by_key(|f| index.get(f.host.as_str()).copied().unwrap_or(usize::MAX));
    out
}

fn finding(host: &str, message: String, fix: String) -> Finding {
    Finding {
        host: host.to_string(),
        check: Check::Ports,
        severity: Severity::Error,
        message,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each target as `ADDRESS PORT/PROTO`.
    fn shown(targets: &[Target]) -> Vec<String> {
        targets
            .iter()
            .map(|t| format!("{} {}", t.addr, t.port))
            .collect()
    }

    fn fleet() -> Vec<Node<'static>> {
        vec![
            Node {
                host: "pi1",
                addr: "10.0.0.1",
                manager: true,
                in_swarm: false,
                docker: true,
            },
            Node {
                host: "pi2",
                addr: "10.0.0.2",
                manager: false,
                in_swarm: false,
                docker: true,
            },
            Node {
                host: "pi3",
                addr: "10.0.0.3",
                manager: false,
                in_swarm: false,
                docker: true,
            },
        ]
    }

    /// A run where everything arrives, except what `lost(from, to, port)` says.
    fn run(nodes: &[Node], lost: impl Fn(&str, &str, Port) -> bool) -> Report {
        let mut r = Report::default();
        for n in nodes {
            r.listening.insert(
                n.host.into(),
                Ok(Listening {
                    dir: "/tmp/rpiprov-ports.x".into(),
                    bound: listen_ports(n),
                    busy: vec![],
                }),
            );
        }
        for from in nodes {
            let mut sent = Vec::new();
            for t in targets(nodes, from.host) {
                let to = nodes.iter().find(|n| n.addr == t.addr).unwrap();
                let lose = lost(from.host, to.host, t.port);
                let outcome = (t.port.proto == Proto::Tcp && lose)
                    .then(|| "Connection timed out".to_string());
                if t.port.proto == Proto::Udp && !lose {
                    r.received
                        .entry(to.host.into())
                        .or_insert_with(|| Ok(vec![]))
                        .as_mut()
                        .unwrap()
                        .push(Received {
                            port: t.port,
                            from: from.addr.into(),
                            tag: tag("n1", from.host),
                        });
                }
                sent.push((t, outcome));
            }
            r.sent.insert(from.host.into(), Ok(sent));
        }
        for n in nodes {
            r.received
                .entry(n.host.into())
                .or_insert_with(|| Ok(vec![]));
        }
        r
    }

    fn lines(f: &[Finding]) -> Vec<String> {
        f.iter().map(Finding::line).collect()
    }

    #[test]
    fn what_each_node_must_reach() {
        let nodes = fleet();
        assert_eq!(
            shown(&targets(&nodes, "pi2")),
            vec![
                "10.0.0.1 2377/tcp",
                "10.0.0.1 7946/tcp",
                "10.0.0.1 7946/udp",
                "10.0.0.1 4789/udp",
                "10.0.0.3 7946/tcp",
                "10.0.0.3 7946/udp",
                "10.0.0.3 4789/udp",
            ]
        );
        assert_eq!(expected(&nodes).len(), 3 * 2 * 3 + 2);
    }

    #[test]
    fn the_distances_sampled_are_every_peer_up_to_nine_nodes_then_eight_spread_out() {
        assert_eq!(offsets(1), Vec::<usize>::new());
        assert_eq!(offsets(3), vec![1, 2]);
        assert_eq!(offsets(9), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(offsets(10), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(offsets(12), vec![1, 2, 3, 5, 6, 7, 9, 10]);
        assert_eq!(offsets(24), vec![1, 3, 6, 9, 12, 15, 18, 21]);
        assert_eq!(offsets(1000), vec![1, 125, 250, 375, 500, 625, 750, 875]);
    }

    /// `n` hosts pi1..piN, at 10.0.0.1...
    fn named(n: usize) -> Vec<(String, String)> {
        (1..=n)
            .map(|i| (format!("pi{i}"), format!("10.0.{}.{}", i / 250, i % 250)))
            .collect()
    }

    /// Those hosts as nodes, the first `managers` of them managers.
    fn big<'a>(names: &'a [(String, String)], managers: usize) -> Vec<Node<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, (host, addr))| Node {
                host,
                addr,
                manager: i < managers,
                in_swarm: false,
                docker: true,
            })
            .collect()
    }

    /// 24 nodes, 3 managers: 8 peers per node per port, each node a sender and a
    /// receiver on every port, and 2377/tcp of each manager from all 23 others; 645
    /// tests instead of every pair's 1,725.
    #[test]
    fn a_big_fleet_tests_each_node_with_eight_peers_and_every_manager_from_everyone() {
        let names = named(24);
        let nodes = big(&names, 3);
        let all = expected(&nodes);
        assert_eq!(all.len(), 24 * 8 * 3 + 3 * 23);
        for n in &nodes {
            for port in [GOSSIP_TCP, GOSSIP_UDP, VXLAN] {
                let sent = all.iter().filter(|e| e.from == n.host && e.port == port);
                let got = all.iter().filter(|e| e.to == n.host && e.port == port);
                assert_eq!((sent.count(), got.count()), (8, 8), "{} {port}", n.host);
            }
            let managed = all
                .iter()
                .filter(|e| e.to == n.host && e.port == MANAGEMENT);
            assert_eq!(managed.count(), if n.manager { 23 } else { 0 });
        }
        assert_eq!(
            shown(&targets(&nodes, "pi6")),
            vec![
                "10.0.0.1 2377/tcp",
                "10.0.0.2 2377/tcp",
                "10.0.0.3 2377/tcp",
                "10.0.0.3 7946/tcp",
                "10.0.0.3 7946/udp",
                "10.0.0.3 4789/udp",
                "10.0.0.7 7946/tcp",
                "10.0.0.7 7946/udp",
                "10.0.0.7 4789/udp",
                "10.0.0.9 7946/tcp",
                "10.0.0.9 7946/udp",
                "10.0.0.9 4789/udp",
                "10.0.0.12 7946/tcp",
                "10.0.0.12 7946/udp",
                "10.0.0.12 4789/udp",
                "10.0.0.15 7946/tcp",
                "10.0.0.15 7946/udp",
                "10.0.0.15 4789/udp",
                "10.0.0.18 7946/tcp",
                "10.0.0.18 7946/udp",
                "10.0.0.18 4789/udp",
                "10.0.0.21 7946/tcp",
                "10.0.0.21 7946/udp",
                "10.0.0.21 4789/udp",
                "10.0.0.24 7946/tcp",
                "10.0.0.24 7946/udp",
                "10.0.0.24 4789/udp",
            ]
        );
        // Bounded per node whatever the size: 1,000 nodes, 3 managers.
        let names = named(1000);
        let nodes = big(&names, 3);
        assert_eq!(targets(&nodes, "pi500").len(), 8 * 3 + 3);
    }

    /// In the sampled fleet a node's dropped 7946/udp is found and named with the peers
    /// that tried, both ways, as in a small one.
    #[test]
    fn a_big_fleet_names_a_node_whose_gossip_udp_is_dropped() {
        let names = named(24);
        let nodes = big(&names, 3);
        let report = run(&nodes, |from, to, port| {
            port == GOSSIP_UDP && (from == "pi6" || to == "pi6")
        });
        assert_eq!(
            lines(&judge(&nodes, "n1", &report)),
            vec![
                "error: pi6: ports: nothing reaches its 7946/udp (from pi3, pi5, pi9, pi12, pi15, pi18, pi21, pi24): swarm needs it for gossip between the nodes (who is in the swarm); what to do: open 7946/udp on pi6: in its firewall, and in any between the Pis",
                "error: pi6: ports: it reaches no other node's 7946/udp (pi3, pi7, pi9, pi12, pi15, pi18, pi21, pi24): swarm needs it for gossip between the nodes (who is in the swarm); what to do: allow pi6 to send to 7946/udp (its outgoing firewall rules)",
            ]
        );
        assert_eq!(judge(&nodes, "n1", &run(&nodes, |_, _, _| false)), vec![]);
    }

    /// A formed manager's Docker holds its 7946/udp: no datagram goes there (nothing of
    /// ours would answer); its TCP ports are still tried. A node whose listener did not
    /// start gets no datagram either.
    #[test]
    fn no_datagram_goes_where_our_listener_is_not() {
        let nodes = fleet();
        let mut listening = HashMap::new();
        listening.insert(
            "pi1".to_string(),
            Ok(Listening {
                dir: "/tmp/rpiprov-ports.a".into(),
                bound: vec![GOSSIP_TCP, VXLAN],
                busy: vec![(GOSSIP_UDP, "Address already in use".into())],
            }),
        );
        listening.insert("pi3".to_string(), Err("perl: not found".to_string()));
        assert_eq!(
            shown(&to_send(&nodes, "pi2", &listening)),
            vec![
                "10.0.0.1 2377/tcp",
                "10.0.0.1 7946/tcp",
                "10.0.0.1 4789/udp",
                "10.0.0.3 7946/tcp",
            ]
        );
    }

    #[test]
    fn all_reachable_is_silent() {
        let nodes = fleet();
        assert_eq!(judge(&nodes, "n1", &run(&nodes, |_, _, _| false)), vec![]);
    }

    /// The lab's `filter pi2 --drop 7946/udp`: nothing to or from pi2's 7946/udp.
    #[test]
    fn a_node_whose_gossip_udp_is_dropped_is_named_with_the_port_and_the_peers() {
        let nodes = fleet();
        let report = run(&nodes, |from, to, port| {
            port == GOSSIP_UDP && (from == "pi2" || to == "pi2")
        });
        assert_eq!(
            lines(&judge(&nodes, "n1", &report)),
            vec![
                "error: pi2: ports: nothing reaches its 7946/udp (from pi1, pi3): swarm needs it for gossip between the nodes (who is in the swarm); what to do: open 7946/udp on pi2: in its firewall, and in any between the Pis",
                "error: pi2: ports: it reaches no other node's 7946/udp (pi1, pi3): swarm needs it for gossip between the nodes (who is in the swarm); what to do: allow pi2 to send to 7946/udp (its outgoing firewall rules)",
            ]
        );
    }

    #[test]
    fn a_single_pair_and_the_manager_port() {
        let nodes = fleet();
        let report = run(&nodes, |from, to, port| {
            (from == "pi3" && to == "pi1" && port == MANAGEMENT)
                || (from == "pi1" && to == "pi2" && port == VXLAN)
        });
        assert_eq!(
            lines(&judge(&nodes, "n1", &report)),
            vec![
                "error: pi1: ports: pi3 cannot reach its 2377/tcp (Connection timed out): swarm needs it for cluster management (joins, and raft between managers); what to do: open 2377/tcp on pi1 to pi3, and in anything between them",
                "error: pi2: ports: pi1 cannot reach its 4789/udp (nothing arrived): swarm needs it for overlay network traffic (VXLAN); what to do: open 4789/udp on pi2 to pi1, and in anything between them",
            ]
        );
    }

    #[test]
    fn what_cannot_be_tested_is_said_and_swarm_s_own_ports_are_not_errors() {
        let mut nodes = fleet();
        nodes[0].in_swarm = true;
        let mut report = run(&nodes, |_, _, _| false);
        // The formed manager's Docker holds its ports: UDP cannot be tested, TCP can.
        report.listening.insert(
            "pi1".into(),
            Ok(Listening {
                dir: "/tmp/rpiprov-ports.y".into(),
                bound: vec![VXLAN],
                busy: vec![
                    (MANAGEMENT, "Address already in use".into()),
                    (GOSSIP_UDP, "Address already in use".into()),
                ],
            }),
        );
        // Other programs hold pi3's 7946/tcp and, with no Docker there, its 4789/udp;
        // pi2 has no perl.
        nodes[2].docker = false;
        report.listening.insert(
            "pi3".into(),
            Ok(Listening {
                dir: "/tmp/rpiprov-ports.z".into(),
                bound: vec![GOSSIP_UDP],
                busy: vec![
                    (GOSSIP_TCP, "Address already in use".into()),
                    (VXLAN, "Address already in use".into()),
                ],
            }),
        );
        report
            .sent
            .insert("pi2".into(), Err("sh: 1: perl: not found".into()));
        // pi2 left a swarm a moment ago: the kernel still holds its VXLAN port for Docker.
        report.listening.insert(
            "pi2".into(),
            Ok(Listening {
                dir: "/tmp/rpiprov-ports.w".into(),
                bound: vec![GOSSIP_TCP, GOSSIP_UDP],
                busy: vec![(VXLAN, "Address already in use".into())],
            }),
        );
        assert_eq!(
            lines(&judge(&nodes, "n1", &report)),
            vec![
                "warning: pi2: ports: cannot test its ports: sh: 1: perl: not found; what to do: install perl (the perl-base package) so that the port test can run there, or open 2377/tcp, 7946/tcp+udp and 4789/udp between the Pis by hand",
                "error: pi3: ports: its 7946/tcp is held by another program (Address already in use): swarm needs it for gossip between the nodes (who is in the swarm); what to do: stop what holds it (`sudo ss -lntup 'sport = :7946'` names it)",
                "error: pi3: ports: its 4789/udp is held by another program (Address already in use): swarm needs it for overlay network traffic (VXLAN); what to do: stop what holds it (`sudo ss -lntup 'sport = :4789'` names it)",
            ]
        );
    }
}
