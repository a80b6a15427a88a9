//! End-to-end tests of the preflight (issue 13 item 1) on a lab of three Docker nodes:
//! the port test between the nodes finds a node whose 7946/udp is dropped (an iptables
//! rule in its own network namespace, as a Pi's firewall would), `doctor` and `bootstrap`
//! name the port and the peers, bootstrap refuses that node and forms the swarm without
//! it; once the rule is gone, bootstrap joins it, and a formed fleet's second bootstrap
//! runs no port test. Nothing is left listening on any node. Then an image archive built
//! for arm64 is refused by deploy before it is shipped to these amd64 nodes.

mod support;

use std::process::Output;

use support::fleet::{Fleet, text};

fn rpiprov(fleet: &Fleet, args: &[&str]) -> Output {
    fleet.rpiprov(args)
}

/// Runs a command inside a lab node's namespaces, as root.
fn inside(fleet: &Fleet, node: &str, args: &[&str]) -> String {
    fleet.inside(node, args)
}

fn swarm_state(fleet: &Fleet, node: &str) -> String {
    inside(
        fleet,
        node,
        &["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
    )
    .trim()
    .to_string()
}

#[test]
fn a_node_whose_gossip_port_is_dropped_is_refused_with_the_port_and_the_peers() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    // pi2's firewall drops 7946/udp both ways.
    for chain in ["PREROUTING", "OUTPUT"] {
        inside(
            &fleet,
            "pi2",
            &[
                "iptables", "-t", "raw", "-I", chain, "-p", "udp", "--dport", "7946", "-j", "DROP",
            ],
        );
    }

    // doctor: exit 1, the port and the peers named, nothing changed.
    let out = rpiprov(&fleet, &["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stdout,
        "error: pi2: ports: nothing reaches its 7946/udp (from pi1, pi3): swarm needs it for gossip between the nodes (who is in the swarm); what to do: open 7946/udp on pi2: in its firewall, and in any between the Pis\n\
         error: pi2: ports: it reaches no other node's 7946/udp (pi1, pi3): swarm needs it for gossip between the nodes (who is in the swarm); what to do: allow pi2 to send to 7946/udp (its outgoing firewall rules)\n"
    );
    assert_eq!(swarm_state(&fleet, "pi1"), "inactive");

    // bootstrap: pi2 fails at preflight and does not join; the others form the swarm.
    let out = rpiprov(&fleet, &["bootstrap", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |name: &str| {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row {name}: {doc:#}"))
    };
    assert_eq!(row("pi2")["failed_step"], "preflight", "{doc:#}");
    assert!(
        row("pi2")["error"]
            .as_str()
            .unwrap()
            .starts_with("ports: nothing reaches its 7946/udp (from pi1, pi3)"),
        "{doc:#}"
    );
    assert_eq!(row("pi1")["outcome"], "changed", "{doc:#}");
    assert_eq!(row("pi3")["outcome"], "changed", "{doc:#}");
    assert_eq!(doc["details"]["preflight"][0]["check"], "ports", "{doc:#}");
    assert_eq!(swarm_state(&fleet, "pi1"), "active");
    assert_eq!(swarm_state(&fleet, "pi2"), "inactive");

    // The rule gone, pi2 joins; then a second run changes nothing and tests no port.
    inside(&fleet, "pi2", &["iptables", "-t", "raw", "-F"]);
    let out = rpiprov(&fleet, &["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(swarm_state(&fleet, "pi2"), "active");
    let out = rpiprov(&fleet, &["-v", "bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("no change on any host"), "{all}");
    assert!(!all.contains("test ports"), "{all}");

    // An archive of another architecture is refused before it is shipped: a root file
    // system whose busybox is an arm64 ELF binary.
    let mut elf = [0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(elf.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    tar.append_data(&mut h, "bin/busybox", &elf[..]).unwrap();
    std::fs::write(
        fleet.dir.join("images/arm64.tar"),
        tar.into_inner().unwrap(),
    )
    .unwrap();
    std::fs::write(
        fleet.dir.join("stacks/arm.yml"),
        "version: \"3.8\"\nservices:\n  web:\n    image: rpiprov-lab/arm64:1\n    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\n",
    )
    .unwrap();
    std::fs::write(
        fleet.dir.join("arm.toml"),
        "[[image]]\nname = \"rpiprov-lab/arm64:1\"\narchive = \"images/arm64.tar\"\nformat = \"rootfs\"\ncmd = [\"/bin/busybox\"]\n\n[[stack]]\nname = \"arm\"\nfile = \"stacks/arm.yml\"\n",
    )
    .unwrap();
    let arm = fleet.dir.join("arm.toml");
    let out = rpiprov(&fleet, &["deploy", "-p", arm.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("the archive is built for arm64 (the ELF header of bin/busybox), and pi1 runs amd64: not shipped"),
        "{all}"
    );
    for node in ["pi1", "pi2", "pi3"] {
        let images = inside(
            &fleet,
            node,
            &["docker", "image", "ls", "-q", "rpiprov-lab/arm64"],
        );
        assert_eq!(images, "", "{node} got the image");
    }
    assert_eq!(
        inside(
            &fleet,
            "pi1",
            &["docker", "stack", "ls", "--format", "{{.Name}}"]
        ),
        "",
        "the stack was deployed"
    );

    // No listener of the test is left on any node (the swarm's own are dockerd's and the
    // kernel's VXLAN socket), nor its folder.
    for node in ["pi1", "pi2", "pi3"] {
        let left = inside(
            &fleet,
            node,
            &[
                "sh",
                "-c",
                "ls -d /tmp/rpiprov-ports.* 2>/dev/null; ss -Hlntup | grep perl; true",
            ],
        );
        assert_eq!(left, "", "{node}");
    }
}

/// The port test runs on a stock system (issue 21 item 1): the default lab's pi3 is a bare
/// Debian minbase, whose Perl is perl-base alone, as Raspberry Pi OS Lite's; `doctor`
/// before any bootstrap tests every port between the three nodes, warns of nothing and
/// exits 0, and leaves no listener (the node shares this machine's process table, so
/// its sockets are what tell).
#[test]
fn doctor_tests_the_ports_of_a_bare_minbase_node_without_a_warning() {
    let fleet = Fleet::up(&[]);
    // What makes pi3 a stock system: perl runs, and a module beyond perl-base's is absent.
    assert_eq!(
        fleet.try_inside("pi3", &["perl", "-e", "use IO::Socket::INET; print 1"]),
        Some("1".to_string())
    );
    assert_eq!(
        fleet.try_inside("pi3", &["perl", "-e", "use Time::HiRes; print 1"]),
        None,
        "pi3 has more than perl-base"
    );
    let out = rpiprov(&fleet, &["doctor"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "doctor: nothing to report\n",
        "{all}"
    );
    assert!(!all.contains("warning"), "{all}");
    for node in ["pi1", "pi2", "pi3"] {
        let left = inside(
            &fleet,
            node,
            &[
                "sh",
                "-c",
                "ls -d /tmp/rpiprov-ports.* 2>/dev/null; ss -Hlntup | grep perl; true",
            ],
        );
        assert_eq!(left, "", "{node}");
    }
}
