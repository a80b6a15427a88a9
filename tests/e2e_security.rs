//! A hostile Pi against the real binary, on a lab fleet (real sshd and dockerd per node):
//! what a compromised node prints reaches the terminal as visible text, never as escape
//! sequences (issue 9 item 4), a node that reports another node's swarm ID gets that
//! node neither demoted nor relabelled (item 7), nor removed when it claims to be
//! half-joined under that ID (issue 18 item 1). The lie is its Docker daemon's own answer
//! (a proxy on its socket, [`support::liar`]), so it holds however rpiprov reads it. One
//! fleet of three Docker nodes serves every check; what rpiprov did is read on the nodes
//! themselves over OpenSSH.

mod support;

use std::process::Output;

use support::fleet::{Fleet, text};
use support::liar::Liar;

/// Whether text holds anything a terminal would obey: C0 controls but tab and newline,
/// DEL, C1 controls, bidi controls.
fn obeyable(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// Asserts the exit code and that neither stream holds anything a terminal would obey;
/// returns stdout and stderr.
fn shown(out: &Output, code: i32, what: &str) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(out));
    for (name, s) in [("stdout", &stdout), ("stderr", &stderr)] {
        let found = obeyable(s);
        assert!(found.is_empty(), "{what}: {found:?} on {name}:\n{s:?}");
    }
    (stdout, stderr)
}

/// Sets `key = value` in host `name`'s block of the lab inventory.
fn set_host_key(fleet: &Fleet, name: &str, key: &str, value: &str) {
    let path = fleet.dir.join("inventory.toml");
    let mut inv: toml::Value = toml::from_str(&fleet.read("inventory.toml")).unwrap();
    let host = inv["host"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|h| h["name"].as_str() == Some(name))
        .unwrap();
    host[key] = toml::from_str::<toml::Value>(&format!("v = {value}")).unwrap()["v"].clone();
    std::fs::write(path, toml::to_string(&inv).unwrap()).unwrap();
}

/// OSC 52 (write the clipboard), clear screen, cursor up, a carriage return that
/// overwrites, a title, a right-to-left override (UTF-8 E2 80 AE) and a C1 CSI (C2 9B).
const HOSTILE: &str = r"\033]52;c;cm0gLXJmIH4=\007\033[2J\033[1A\rok \342\200\256deliaf \302\2331m";

#[test]
fn a_hostile_pi_neither_drives_the_terminal_nor_redirects_node_changes() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);

    // 1. `run`: a node's stdout and stderr, escape sequences and all.
    let script = format!("printf '{HOSTILE}\\n'; printf '\\033]0;owned\\007err\\n' >&2; exit 3");
    let out = fleet.rpiprov(&["run", "--on", "pi1", "--", &script]);
    let (stdout, stderr) = shown(&out, 1, "run");
    assert_eq!(
        stdout,
        "pi1: \\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\x1b[1A\\x0dok \\u{202e}deliaf \\u{9b}1m\n"
    );
    assert!(stderr.contains("pi1: \\x1b]0;owned\\x07err\n"), "{stderr}");
    assert!(stderr.contains("pi1: FAILED exit 3"), "{stderr}");
    // --json keeps every byte, escaped so that it too is safe on a terminal.
    let out = fleet.rpiprov(&["run", "--json", "--on", "pi1", "--", &script]);
    let (stdout, _) = shown(&out, 1, "run --json");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        doc["details"]["pi1"]["stdout"],
        "\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2J\u{1b}[1A\rok \u{202e}deliaf \u{9b}1m\n"
    );

    // The swarm, with two managers: pi2 is one that a lie could demote.
    set_host_key(&fleet, "pi2", "role", "\"manager\"");
    let out = fleet.rpiprov(&["bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "bootstrap:\n{}", text(&out));

    // 2. A lock whose owner file is hostile: the refusal and `--unlock` name it, cleaned.
    fleet.root(
        "pi1",
        r"mkdir -p /var/lib/rpiprov/lock && printf 'user=\033]52;c;aGk=\007mallory\nhost=far\033[2K\npid=7\nsince=\342\200\256now\ncommand=deploy\n' > /var/lib/rpiprov/lock/owner",
    );
    let out = fleet.rpiprov(&["deploy"]);
    let (stdout, _) = shown(&out, 1, "deploy against a hostile lock");
    assert!(
        stdout.contains(
            "deploy already running: locked by \\x1b]52;c;aGk=\\x07mallory@far\\x1b[2K pid 7 since \\u{202e}now"
        ),
        "{stdout}"
    );
    let out = fleet.rpiprov(&["deploy", "--unlock"]);
    let (stdout, _) = shown(&out, 0, "deploy --unlock");
    assert_eq!(
        stdout,
        "removed the deploy lock of \\x1b]52;c;aGk=\\x07mallory@far\\x1b[2K pid 7 since \\u{202e}now\n"
    );

    // 3. pi3 (a worker) reports pi2's node ID as its own. Its inventory role (worker) and
    //    a new label would, on its word, demote pi2 and relabel it.
    let id = |node: &str| {
        fleet
            .root(node, "docker info --format '{{.Swarm.NodeID}}'")
            .trim()
            .to_string()
    };
    let (pi2_id, pi3_id) = (id("pi2"), id("pi3"));
    assert!(!pi2_id.is_empty() && pi2_id != pi3_id);
    let lab = rpiprov::lab::Lab::open(&fleet.dir).unwrap();
    // pi3's dockerd answers `GET /info` with pi2's node ID (its socket behind a proxy).
    let claimed = pi2_id.clone();
    let liar = Liar::plant(&lab, "pi3", move |info| {
        info["Swarm"]["NodeID"] = claimed.clone().into();
    });
    assert_eq!(id("pi3"), pi2_id, "pi3 now lies");
    set_host_key(&fleet, "pi3", "labels", "{ zone = \"z\" }");
    let out = fleet.rpiprov(&["bootstrap"]);
    let (stdout, _) = shown(&out, 1, "bootstrap with a lying pi3");
    let pi3_row = line_of(&stdout, "pi3");
    assert!(pi3_row.contains(" FAILED "), "{stdout}");
    assert!(
        pi3_row.contains(&format!(
            "make pi3 a worker: pi3 and pi2 report the same swarm node {pi2_id}: its role and labels are left alone"
        )),
        "{stdout}"
    );
    let node = |what: &str| {
        fleet
            .root(
                "pi1",
                &format!("docker node inspect --format '{what}' {pi2_id}"),
            )
            .trim()
            .to_string()
    };
    assert_eq!(node("{{.Spec.Role}}"), "manager", "pi2 was demoted");
    assert_eq!(
        node("{{json .Spec.Labels}}"),
        r#"{"zone":"b"}"#,
        "pi2 was relabelled"
    );
    drop(liar);
    assert_eq!(id("pi3"), pi3_id, "pi3 tells the truth again");

    // 4. Issue 18: pi3 says its join is pending, as pi2's node. Repairing a half-joined
    //    node removes the entry it names: on its word, pi2 (a manager, whose removal
    //    leaves pi1 a quorum of one) would be demoted and removed.
    let claimed = pi2_id.clone();
    let liar = Liar::plant(&lab, "pi3", move |info| {
        info["Swarm"]["NodeID"] = claimed.clone().into();
        info["Swarm"]["LocalNodeState"] = "pending".into();
    });
    assert_eq!(
        fleet
            .root(
                "pi3",
                "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'"
            )
            .trim(),
        format!("pending {pi2_id}"),
        "pi3 now lies"
    );
    // Without the port test: pi3's own dockerd holds its swarm ports, which would stop
    // a repair before the repair's own rule is reached.
    let out = fleet.rpiprov(&["bootstrap", "--skip-preflight", "ports"]);
    let (stdout, _) = shown(&out, 1, "bootstrap with a pi3 half-joined as pi2");
    // What the swarm holds first: pi2 still a manager, ready, and every node listed.
    drop(liar);
    assert_eq!(
        node("{{.Spec.Role}}"),
        "manager",
        "pi2 was demoted:\n{stdout}"
    );
    assert_eq!(node("{{.Status.State}}"), "ready", "pi2 is gone");
    let listed = fleet.root("pi1", "docker node ls -q");
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(&pi3_id), "pi3's node was removed: {listed}");
    let pi3_row = line_of(&stdout, "pi3");
    assert!(pi3_row.contains(" FAILED "), "{stdout}");
    assert!(
        pi3_row.contains(&format!(
            "its repair is refused: pi3 and pi2 report the same swarm node {pi2_id}: no node is removed"
        )),
        "{stdout}"
    );
    let pi1_row = line_of(&stdout, "pi1");
    assert!(!pi1_row.contains("remove"), "{stdout}");
    assert_eq!(
        fleet
            .root(
                "pi3",
                "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'"
            )
            .trim(),
        format!("active {pi3_id}"),
        "pi3 was made to leave"
    );
}

/// The table row of `node` in a command's output.
fn line_of<'a>(stdout: &'a str, node: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{node} ")))
        .unwrap_or_else(|| panic!("no row of {node}:\n{stdout}"))
}
