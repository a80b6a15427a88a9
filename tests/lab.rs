//! End-to-end tests of `rpiprov lab` (tier 3): real network namespaces, sshd, dockerd and a
//! debootstrapped bare node, checked from the outside the way rpiprov will use them. They
//! need root (they fail without it); each fleet has its own subnet, and the machine-wide
//! slots of `support::fleet` bound how many run at once.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rpiprov::lab::{Daemon, Distro, Lab};
use support::fleet::{Fleet, http_get, require_root, text};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{argv:?}: {}", text(&out));
    stdout(&out)
}

/// `lab down` of the fleet, then none of what `lab` (opened before) names is left: no
/// netns, link, mount, iptables rule or process, and the lab directory is gone.
fn assert_down_leaves_nothing(fleet: &mut Fleet, lab: &Lab) {
    let netns = lab.netns_names();
    let links = lab.link_names();
    let processes = lab.processes();
    assert!(!processes.is_empty(), "the lab runs no process before down");
    let out = fleet.down();
    assert!(out.status.success(), "{}", text(&out));
    let ns_list = tool(&["ip", "netns", "list"]);
    for n in &netns {
        assert!(!ns_list.contains(n.as_str()), "netns {n} remains");
    }
    let link_list = tool(&["ip", "-o", "link"]);
    for l in &links {
        assert!(!link_list.contains(&format!(" {l}")), "link {l} remains");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let dir = fleet.dir.to_str().unwrap();
    assert!(
        !mounts.contains(dir),
        "mount under {dir} remains:\n{mounts}"
    );
    for n in &netns {
        assert!(
            !mounts.contains(&format!("/run/netns/{n} ")),
            "netns {n} mount remains"
        );
    }
    let rules = tool(&["iptables-save"]);
    assert!(
        !rules.contains(lab.bridge()),
        "iptables rule remains:\n{rules}"
    );
    let subnet = lab.subnet().to_string();
    assert!(!rules.contains(&subnet), "NAT rule remains:\n{rules}");
    let alive: Vec<_> = processes.iter().filter(|p| p.is_alive()).collect();
    assert!(alive.is_empty(), "processes remain: {alive:?}");
    assert!(!fleet.dir.exists());
}

#[test]
fn default_fleet_works_as_three_pis_and_down_leaves_nothing() {
    require_root();
    let mut fleet = Fleet::up(&[]);
    let password = fleet.read("sudo-password").trim().to_string();

    // The files rpiprov reads.
    let addresses = fleet.addresses();
    let addr = |i: usize| addresses[i].clone();
    assert_eq!(addresses.len(), 3);
    assert_eq!(fleet.read("known_hosts").lines().count(), 3);
    for f in [
        "playbook.toml",
        "stacks/web.yml",
        "images/busybox.tar",
        "state.json",
    ] {
        assert!(fleet.dir.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| {
        std::fs::metadata(fleet.dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("sudo-password"), 0o600);
    assert_eq!(mode("id_ed25519"), 0o600);

    // Each node: SSH as pi with the lab key and a verified host key, its own host name.
    for (i, name) in ["pi1", "pi2", "pi3"].iter().enumerate() {
        assert_eq!(fleet.ssh_ok(&addr(i), "hostname").trim(), *name);
        assert_eq!(fleet.ssh_ok(&addr(i), "id -un").trim(), "pi");
    }
    // Docker nodes: their own dockerd, reached via sudo.
    let info = fleet.ssh_ok(&addr(0), "sudo -n docker info --format '{{.Name}}'");
    assert_eq!(info.trim(), "pi1");
    // The node's `docker` is Debian's CLI, as on a Pi, whatever this machine has first in
    // PATH; for sudo and for the user alike.
    for cmd in ["sudo -n docker", "docker"] {
        let client = fleet.ssh_ok(
            &addr(0),
            &format!("{cmd} version --format '{{{{.Client.Version}}}}' 2>/dev/null; true"),
        );
        assert!(client.starts_with("20.10."), "{cmd}: client {client:?}");
    }
    // pi2's sudo wants the password: refused without, accepted with it.
    let no_pw = fleet.ssh(&addr(1), "sudo -n true", None);
    assert!(!no_pw.status.success());
    assert!(
        String::from_utf8_lossy(&no_pw.stderr).contains("password is required"),
        "{}",
        text(&no_pw)
    );
    let with_pw = fleet.ssh(
        &addr(1),
        "sudo -S -p '' docker info --format '{{.Name}}'",
        Some(&format!("{password}\n")),
    );
    assert!(with_pw.status.success(), "{}", text(&with_pw));
    assert_eq!(stdout(&with_pw).trim(), "pi2");
    // Files written on one node do not appear on another (private /etc, /tmp, home).
    fleet.ssh_ok(
        &addr(0),
        "sudo -n touch /etc/docker/only-pi1 && touch /tmp/only-pi1 ~/only-pi1",
    );
    fleet.ssh_ok(
        &addr(1),
        "test ! -e /etc/docker/only-pi1 && test ! -e /tmp/only-pi1 && test ! -e ~/only-pi1",
    );
    // The bare node: no Docker, but apt reaches the Debian mirror through the lab's NAT.
    let docker = fleet.ssh(
        &addr(2),
        "command -v docker || test -e /usr/bin/dockerd",
        None,
    );
    assert!(
        !docker.status.success(),
        "bare node has docker: {}",
        text(&docker)
    );
    fleet.ssh_ok(&addr(2), "sudo -n apt-get update -qq");

    // The lab image works: imported into pi1's dockerd, its httpd answers.
    let lab = Lab::open(&fleet.dir).unwrap();
    lab.load_image("pi1").unwrap();
    fleet.ssh_ok(
        &addr(0),
        "sudo -n docker run -d --name web -p 18080:8080 rpiprov-lab/busybox:1",
    );
    let page = http_get(&format!("{}:18080", addr(0)));
    assert!(page.contains("rpiprov lab"), "{page}");
    // ...and inside a container, busybox nc fetches from another container by address.
    let fetched = fleet.ssh_ok(
        &addr(0),
        "ip=$(sudo -n docker inspect -f '{{.NetworkSettings.IPAddress}}' web); \
         sudo -n docker run --rm rpiprov-lab/busybox:1 sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc $ip 8080\"",
    );
    assert!(fetched.contains("rpiprov lab"), "{fetched}");

    // Down: nothing of the lab remains.
    let processes = lab.processes();
    assert!(
        processes.len() >= 3 + 2,
        "holders, sshd, dockerd: {processes:?}"
    );
    assert_down_leaves_nothing(&mut fleet, &lab);
    assert!(
        support::fleet::cache_dir()
            .join("bookworm-minbase")
            .is_dir(),
        "cache kept"
    );
}

#[test]
fn up_twice_recreates_nothing() {
    require_root();
    let fleet = Fleet::up(&[]);
    let holders = Lab::open(&fleet.dir).unwrap().holders();
    let key = fleet.read("id_ed25519.pub");
    let known = fleet.read("known_hosts");
    let again = fleet.lab("up", &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        stdout(&again).contains("nothing recreated: all 3 nodes already up"),
        "{}",
        text(&again)
    );
    assert_eq!(Lab::open(&fleet.dir).unwrap().holders(), holders);
    assert_eq!(fleet.read("id_ed25519.pub"), key);
    assert_eq!(fleet.read("known_hosts"), known);
    // Another shape in the same directory is a usage error, not a silent rebuild.
    let other = fleet.lab("up", &["--nodes", "1"]);
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    let status = fleet.lab("status", &[]);
    assert!(status.status.success(), "{}", text(&status));
    let s = stdout(&status);
    let line = |name: &str, rest: &str| format!("{name}      {:<15} {rest}", fleet.addr(name));
    assert!(
        s.contains(&line("pi1", "manager  docker     up    up      bookworm\n")),
        "{s}"
    );
    assert!(
        s.contains(&line("pi3", "worker   bare       up    -       bookworm\n")),
        "{s}"
    );
}

/// A plain HTTP/1.0 request to a node's Docker socket (the Engine API as any client speaks
/// it, without the node's CLI and its version negotiation): the status line and the body.
fn engine_get(socket: &std::path::Path, path: &str) -> (String, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The environment of the node's running dockerd, read from its process.
fn dockerd_environ(lab: &Lab, node: &str) -> Vec<String> {
    let pid = lab
        .daemon_pid(node, Daemon::Dockerd)
        .unwrap()
        .expect("dockerd runs");
    let raw = std::fs::read(format!("/proc/{}/environ", pid.pid)).unwrap();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Three Docker nodes of three releases. Three Docker nodes rather than two and a bare one:
/// what `--distro` adds is each release's Docker node (trixie and sid on a root file system
/// of their own, bookworm on this machine's) and the daemon environment set the Debian way
/// on each kind; a bare node of a release is the next test.
#[test]
fn docker_nodes_of_three_releases_run_their_own_docker_and_honour_its_environment() {
    let mut fleet = Fleet::up_with(
        &[Distro::Sid, Distro::Trixie, Distro::Bookworm],
        &["--nodes", "3", "--bare", "0"],
    );
    let lab = Lab::open(&fleet.dir).unwrap();
    // node, release, its os-release name, its Docker, whether DOCKER_MIN_API_VERSION is
    // honoured (Docker 25 and later: moby's cmd/dockerd reads it since v25.0.0).
    let nodes = [
        (
            "pi1",
            Distro::Sid,
            "Debian GNU/Linux forky/sid",
            "28.5.",
            true,
        ),
        (
            "pi2",
            Distro::Trixie,
            "Debian GNU/Linux 13 (trixie)",
            "26.1.",
            true,
        ),
        (
            "pi3",
            Distro::Bookworm,
            "Debian GNU/Linux 12 (bookworm)",
            "20.10.",
            false,
        ),
    ];
    let status = stdout(&fleet.lab("status", &[]));
    for (node, release, pretty, docker, floor) in nodes {
        assert_eq!(fleet.release(node), release);
        let row = status.lines().find(|l| l.starts_with(node)).unwrap();
        assert!(
            row.ends_with(&format!("up    up      {release}")),
            "{status}"
        );
        let os = fleet.ssh_ok(
            &fleet.addr(node),
            ". /etc/os-release; echo \"$PRETTY_NAME\"",
        );
        assert_eq!(os.trim(), pretty);
        // What a Pi of that release says: its docker.io's client and server, through sudo
        // and, for the client, as the user.
        let v = fleet.root(
            node,
            "docker version --format '{{.Client.Version}} {{.Server.Version}}'",
        );
        let (client, server) = v.trim().split_once(' ').unwrap();
        assert!(
            client.starts_with(docker) && server.starts_with(docker),
            "{node}: {v}"
        );
        let user = fleet.ssh_ok(
            &fleet.addr(node),
            "docker version --format '{{.Client.Version}}' 2>/dev/null; true",
        );
        assert!(user.starts_with(docker), "{node}: client {user:?}");

        // The daemon's environment, set in /etc/default/docker and Docker restarted.
        let socket = lab.docker_socket(node).unwrap();
        assert!(engine_get(&socket, "/v1.41/version").0.ends_with(" 200 OK"));
        let before = lab.daemon_pid(node, Daemon::Dockerd).unwrap().unwrap();
        lab.set_docker_env(node, "DOCKER_MIN_API_VERSION", Some("1.44"))
            .unwrap();
        assert_ne!(lab.daemon_pid(node, Daemon::Dockerd).unwrap(), Some(before));
        let file = fleet.root(node, "cat /etc/default/docker");
        assert!(
            file.contains("\nDOCKER_MIN_API_VERSION=1.44\nexport DOCKER_MIN_API_VERSION\n"),
            "{node}: {file}"
        );
        let env = dockerd_environ(&lab, node);
        assert!(
            env.contains(&"DOCKER_MIN_API_VERSION=1.44".to_string()),
            "{node}: {env:?}"
        );
        let (line, body) = engine_get(&socket, "/v1.41/version");
        let (_, version) = engine_get(&socket, "/version");
        let version: serde_json::Value = serde_json::from_str(&version).unwrap();
        if floor {
            assert!(line.ends_with(" 400 Bad Request"), "{node}: {line} {body}");
            assert!(
                body.contains(
                    "client version 1.41 is too old. Minimum supported API version is 1.44"
                ),
                "{node}: {body}"
            );
            assert_eq!(version["MinAPIVersion"], "1.44", "{node}");
        } else {
            // Docker 20.10 knows no such variable: its floor stays 1.12.
            assert!(line.ends_with(" 200 OK"), "{node}: {line}");
            assert_eq!(version["MinAPIVersion"], "1.12", "{node}");
        }
        // The node's own CLI negotiates, and still works.
        assert!(fleet.root(node, "docker info --format '{{.Name}}'").trim() == node);
    }
    // Removed again: out of the file and of dockerd's environment, the old floor back.
    lab.set_docker_env("pi1", "DOCKER_MIN_API_VERSION", None)
        .unwrap();
    assert!(
        !fleet
            .root("pi1", "cat /etc/default/docker")
            .contains("DOCKER_MIN_API_VERSION")
    );
    assert!(
        !dockerd_environ(&lab, "pi1")
            .iter()
            .any(|v| v.starts_with("DOCKER_MIN_API_VERSION="))
    );
    let socket = lab.docker_socket("pi1").unwrap();
    assert!(engine_get(&socket, "/v1.41/version").0.ends_with(" 200 OK"));

    // The same releases again change nothing; other releases are a usage error.
    let again = fleet.lab(
        "up",
        &[
            "--nodes",
            "3",
            "--bare",
            "0",
            "--distro",
            "sid,trixie,bookworm",
        ],
    );
    assert!(
        stdout(&again).contains("nothing recreated: all 3 nodes already up"),
        "{}",
        text(&again)
    );
    let other = fleet.lab("up", &["--nodes", "3", "--bare", "0", "--distro", "sid"]);
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains(
            "holds a lab of other releases (pi1 sid, pi2 trixie, pi3 bookworm), not --distro sid"
        ),
        "{}",
        text(&other)
    );
    assert_down_leaves_nothing(&mut fleet, &lab);
    for tree in [
        "sid-minbase",
        "sid-docker",
        "trixie-minbase",
        "trixie-docker",
    ] {
        assert!(
            support::fleet::cache_dir().join(tree).is_dir(),
            "{tree} kept"
        );
    }
}

/// A bare node of trixie is a fresh Pi of Raspberry Pi OS trixie: `apt-get install
/// docker.io` (recommended packages and all, as bootstrap runs it) gives trixie's Docker.
#[test]
fn a_bare_trixie_node_installs_trixies_docker_from_the_mirror() {
    let fleet = Fleet::up_with(&[Distro::Trixie], &["--nodes", "0", "--bare", "1"]);
    let pi1 = fleet.addr("pi1");
    let os = fleet.ssh_ok(&pi1, ". /etc/os-release; echo \"$VERSION_CODENAME\"");
    assert_eq!(os.trim(), "trixie");
    let none = fleet.ssh(&pi1, "command -v docker || test -e /usr/sbin/dockerd", None);
    assert!(!none.status.success(), "{}", text(&none));
    let v = fleet.ssh_ok(
        &pi1,
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
         && sudo -n service docker start >/dev/null \
         && for i in $(seq 100); do sudo -n docker info >/dev/null 2>&1 && break; sleep 0.2; done \
         && sudo -n docker version --format '{{.Client.Version}} {{.Server.Version}}'",
    );
    let (client, server) = v.trim().split_once(' ').unwrap();
    assert!(
        client.starts_with("26.1.") && server.starts_with("26.1."),
        "{v}"
    );
    let status = stdout(&fleet.lab("status", &[]));
    assert!(
        status.contains(&format!(
            "pi1      {pi1:<15} manager  bare       up    up      trixie\n"
        )),
        "{status}"
    );
}

#[test]
fn fifty_sshd_only_nodes_all_answer_ssh() {
    require_root();
    const N: usize = 50;
    let fleet = Fleet::up(&["--sshd-only", &N.to_string()]);
    let hosts = fleet.hosts();
    assert_eq!(hosts.len(), N);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for chunk in hosts.chunks(N / 10) {
            let (fleet, failures) = (&fleet, &failures);
            s.spawn(move || {
                for (name, address) in chunk {
                    let out = fleet.ssh(address, "hostname", None);
                    if !out.status.success() || stdout(&out).trim() != name {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{name} {address}: {}", text(&out)));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What `bootstrap` and `deploy` will do, done by hand over SSH: the bare node gets Docker
/// from the Debian mirror, the three nodes form a swarm, and the lab playbook's networks,
/// image and stacks work, including on the once-bare node.
#[test]
fn lab_playbook_deploys_on_a_hand_made_swarm() {
    require_root();
    let fleet = Fleet::up(&[]);
    let pw = format!("{}\n", fleet.read("sudo-password").trim());
    let (pi1, pi2, pi3) = (fleet.addr("pi1"), fleet.addr("pi2"), fleet.addr("pi3"));
    let (pi1, pi2, pi3) = (pi1.as_str(), pi2.as_str(), pi3.as_str());

    fleet.ssh_ok(
        pi3,
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
         && sudo -n service docker start \
         && for i in $(seq 100); do sudo -n docker info >/dev/null 2>&1 && break; sleep 0.2; done \
         && sudo -n docker info --format '{{.ServerVersion}}'",
    );
    let token = fleet.ssh_ok(
        pi1,
        &format!(
            "sudo -n docker swarm init --advertise-addr {pi1} --default-addr-pool 198.19.0.0/16 >/dev/null \
             && sudo -n docker swarm join-token -q worker"
        ),
    );
    let join = format!("docker swarm join --token {} {pi1}:2377", token.trim());
    let out = fleet.ssh(pi2, &format!("sudo -S -p '' {join}"), Some(&pw));
    assert!(out.status.success(), "{}", text(&out));
    fleet.ssh_ok(pi3, &format!("sudo -n {join}"));

    let lab = Lab::open(&fleet.dir).unwrap();
    for node in ["pi1", "pi2", "pi3"] {
        lab.load_image(node).unwrap();
    }
    fleet.ssh_ok(
        pi1,
        "sudo -n docker network create -d overlay --internal --subnet 198.19.10.0/24 DATA >/dev/null \
         && sudo -n docker network create -d overlay --attachable --subnet 198.19.11.0/24 INTERCO >/dev/null \
         && mkdir -p stacks",
    );
    for stack in ["web", "api", "echo"] {
        let file = fleet.read(&format!("stacks/{stack}.yml"));
        let out = fleet.ssh(pi1, &format!("cat > stacks/{stack}.yml"), Some(&file));
        assert!(out.status.success(), "{}", text(&out));
        fleet.ssh_ok(
            pi1,
            &format!(
                "sudo -n docker stack deploy --resolve-image never -c stacks/{stack}.yml {stack}"
            ),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ls = fleet.ssh_ok(
            pi1,
            "sudo -n docker service ls --format '{{.Name}} {{.Replicas}}'",
        );
        let want = ["api_api 2/2", "echo_echo 1/1", "web_web 3/3"];
        if want.iter().all(|w| ls.lines().any(|l| l.starts_with(w))) {
            break;
        }
        assert!(Instant::now() < deadline, "stacks did not converge:\n{ls}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // web answers on every node's own port (host mode), the once-bare node included.
    for node in [pi1, pi2, pi3] {
        assert!(
            http_get(&format!("{node}:18080")).contains("rpiprov lab"),
            "{node}"
        );
    }
    // echo on the manager.
    let mut s = TcpStream::connect((pi1, 19000)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    // api is reachable over DATA from the web task of the once-bare node, by its dnsrr name.
    let got = fleet.ssh_ok(
        pi3,
        "c=$(sudo -n docker ps -q -f name=web_web); \
         ip=$(sudo -n docker exec $c /bin/nslookup tasks.api | awk '/^Address/ && !/:53/ {print $2}' | tail -1); \
         sudo -n docker exec $c /bin/sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/nc $ip 8081\"",
    );
    assert!(got.contains("rpiprov lab"), "{got}");
}

/// Two labs at once on one machine: each in its own subnet with its own host keys, neither
/// reaches the other's nodes, and taking one down leaves the other working.
#[test]
fn two_labs_run_side_by_side_and_down_of_one_leaves_the_other() {
    let (mut a, b) = Fleet::up_pair(&["--sshd-only", "2"], &["--sshd-only", "2"]);
    let (lab_a, lab_b) = (Lab::open(&a.dir).unwrap(), Lab::open(&b.dir).unwrap());
    assert!(
        !lab_a.subnet().overlaps(&lab_b.subnet()),
        "{} and {}",
        lab_a.subnet(),
        lab_b.subnet()
    );
    let state: serde_json::Value = serde_json::from_str(&a.read("state.json")).unwrap();
    assert_eq!(
        format!(
            "{}/{}",
            state["layout"]["network"].as_str().unwrap(),
            state["layout"]["prefix"]
        ),
        lab_a.subnet().to_string(),
        "the subnet is recorded in state.json"
    );
    for fleet in [&a, &b] {
        let lab = Lab::open(&fleet.dir).unwrap();
        let known = fleet.read("known_hosts");
        for (name, address) in fleet.hosts() {
            assert!(lab.subnet().contains(address.parse().unwrap()), "{address}");
            assert!(known.starts_with(&address) || known.contains(&format!("\n{address} ")));
            // Strict checking against this lab's known_hosts: the node has its own key.
            assert_eq!(fleet.ssh_ok(&address, "hostname").trim(), name);
        }
    }
    let keys = |f: &Fleet| -> Vec<String> {
        f.read("known_hosts")
            .lines()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect()
    };
    let (keys_a, keys_b) = (keys(&a), keys(&b));
    assert!(
        keys_a.iter().all(|k| !keys_b.contains(k)),
        "shared host keys"
    );
    // One lab's known_hosts does not vouch for the other's nodes.
    let b1 = b.addr("pi1");
    let cross = a.ssh(&b1, "hostname", None);
    assert!(!cross.status.success(), "{}", text(&cross));
    // A node of one lab cannot open a connection to a node of the other (the host can).
    let probe =
        |to: &str| format!("timeout 3 bash -c '</dev/tcp/{to}/22' && echo open || echo closed");
    assert_eq!(
        a.ssh_ok(&a.addr("pi1"), &probe(&a.addr("pi2"))).trim(),
        "open"
    );
    assert_eq!(a.ssh_ok(&a.addr("pi1"), &probe(&b1)).trim(), "closed");
    assert_eq!(b.ssh_ok(&b1, &probe(&a.addr("pi2"))).trim(), "closed");

    let out = a.down();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!a.dir.exists());
    let links = tool(&["ip", "-o", "link"]);
    assert!(!links.contains(lab_a.bridge()), "{links}");
    assert!(links.contains(lab_b.bridge()), "{links}");
    assert_eq!(tool(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(), "1");
    for (name, address) in b.hosts() {
        assert_eq!(b.ssh_ok(&address, "hostname").trim(), name);
    }
    // The survivor's NAT and FORWARD rules are still there.
    let rules = tool(&["iptables-save"]);
    assert_eq!(
        rules.lines().filter(|l| l.contains(lab_b.bridge())).count(),
        5,
        "the other lab's rules:\n{rules}"
    );
}

/// Issue 9, item 5: the lab works as root in its folder, so it refuses a folder that another
/// user owns or may write, and a name planted in its own folder (a symlink at `.lock`) is
/// never followed: nothing outside the lab is truncated.
#[test]
fn lab_refuses_folders_it_cannot_trust_and_follows_no_planted_link() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let run = |args: &[&str], dir: &std::path::Path| {
        let mut full = args.to_vec();
        full.extend(["--dir", dir.to_str().unwrap()]);
        let out = support::fleet::lab(&full);
        if args[0] == "up" && out.status.success() {
            // Never expected; leave nothing behind if it happens.
            support::fleet::lab(&["down", "--dir", dir.to_str().unwrap()]);
        }
        out
    };

    // A folder of another user: up, down and status refuse it, naming the owner.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    for args in [&["up", "--sshd-only", "1"][..], &["down"], &["status"]] {
        let out = run(args, &foreign);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("belongs to uid 65534, not to you"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 0);

    // A folder anyone may write (someone could plant names in it).
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&["down"], &open);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("writable by everyone"),
        "{}",
        text(&out)
    );

    // A folder of ours in which someone planted `.lock` -> the victim: `down` refuses to
    // follow it, and the victim keeps its content.
    let planted = tmp.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&victim, planted.join(".lock")).unwrap();
    let out = run(&["down"], &planted);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(".lock is a symlink"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// A TCP connection from this host to `addr`, within `ms` milliseconds.
fn connects(addr: &str, port: u16, ms: u64) -> bool {
    let addr = std::net::SocketAddr::new(addr.parse().unwrap(), port);
    TcpStream::connect_timeout(&addr, Duration::from_millis(ms)).is_ok()
}

/// The SSH banner of `addr`, if it comes within a second (a frozen sshd accepts the TCP
/// connection in the kernel but never speaks).
fn ssh_banner(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect((addr, 22)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// From inside node `from` (over SSH), whether a TCP connection to `to:port` opens.
fn opens_from(fleet: &Fleet, from: &str, to: &str, port: u16) -> bool {
    let out = fleet.ssh_ok(
        from,
        &format!(
            "timeout 3 bash -c '</dev/tcp/{to}/{port}' 2>/dev/null && echo open || echo closed"
        ),
    );
    out.trim() == "open"
}

/// How many of `n` parallel connections from this host to `addr:22` open.
fn opened_of(addr: &str, n: usize) -> usize {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| s.spawn(|| connects(addr, 22, 400)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|o| *o)
            .count()
    })
}

fn seconds_on(fleet: &Fleet, addr: &str, command: &str) -> i64 {
    fleet.ssh_ok(addr, command).trim().parse().unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Faults and Pi realities, each on one node of the default fleet, checked by their real
/// effect: a cut link, dropped ports and random loss, frozen/killed/restarted daemons, a
/// reboot with a new boot id, a skewed clock. The commands and the library API both.
#[test]
fn faults_act_on_one_node_and_are_undone() {
    let fleet = Fleet::up(&[]);
    let lab = Lab::open(&fleet.dir).unwrap();
    let (pi1, pi2, pi3) = (fleet.addr("pi1"), fleet.addr("pi2"), fleet.addr("pi3"));
    let password = format!("{}\n", fleet.read("sudo-password").trim());
    let ok = |args: &[&str]| {
        let out = fleet.lab(args[0], &args[1..]);
        assert!(out.status.success(), "lab {args:?}: {}", text(&out));
        stdout(&out)
    };

    // Link: cut, nothing answers; restored, SSH works again.
    assert_eq!(ok(&["link", "down", "pi3"]), "lab: pi3: link down\n");
    assert!(!connects(&pi3, 22, 1000), "pi3 answers with its link cut");
    assert!(!opens_from(&fleet, &pi1, &pi3, 22));
    ok(&["link", "up", "pi3"]);
    assert_eq!(fleet.ssh_ok(&pi3, "hostname").trim(), "pi3");

    // Packet filters in pi2's namespace: a dropped port fails from another node and from
    // here; the rest of pi2 and the other nodes are untouched; cleared, it works again.
    let out = ok(&["filter", "pi2", "--drop", "22/tcp", "--drop", "7946/udp"]);
    assert!(out.contains("--dport 22 -j DROP"), "{out}");
    assert!(out.contains("-p udp -m udp --dport 7946 -j DROP"), "{out}");
    assert!(
        !opens_from(&fleet, &pi1, &pi2, 22),
        "22/tcp still open on pi2"
    );
    assert!(!connects(&pi2, 22, 1000));
    assert!(opens_from(&fleet, &pi1, &pi3, 22));
    assert_eq!(ok(&["filter", "pi2", "--clear"]), "lab: pi2: no filter\n");
    assert!(opens_from(&fleet, &pi1, &pi2, 22));
    // Random loss: all, some, none (each connection needs a SYN in and a SYN-ACK out).
    lab.set_loss("pi2", 100.0).unwrap();
    assert_eq!(opened_of(&pi2, 20), 0);
    lab.set_loss("pi2", 50.0).unwrap();
    assert_eq!(
        lab.filters("pi2").unwrap().len(),
        1,
        "a new rate replaces the old"
    );
    let some = opened_of(&pi2, 60);
    assert!((1..60).contains(&some), "{some} of 60 opened at 50 % loss");
    lab.clear_filters("pi2").unwrap();
    assert_eq!(opened_of(&pi2, 20), 20);

    // Daemons. A frozen sshd accepts connections but never speaks; thawed, it does.
    assert!(ssh_banner(&pi1).is_some_and(|b| b.starts_with("SSH-2.0-")));
    assert_eq!(
        ok(&["daemon", "freeze", "sshd", "pi1"]),
        "lab: pi1: sshd frozen\n"
    );
    assert_eq!(ssh_banner(&pi1), None);
    ok(&["daemon", "thaw", "sshd", "pi1"]);
    assert!(ssh_banner(&pi1).is_some_and(|b| b.starts_with("SSH-2.0-")));
    // A frozen dockerd does not answer `docker info`; a killed one is down until started.
    lab.freeze("pi1", Daemon::Dockerd).unwrap();
    let frozen = fleet.ssh(&pi1, "timeout 3 sudo -n docker info >/dev/null", None);
    assert_eq!(frozen.status.code(), Some(124), "{}", text(&frozen));
    lab.thaw("pi1", Daemon::Dockerd).unwrap();
    fleet.ssh_ok(&pi1, "timeout 10 sudo -n docker info >/dev/null");
    ok(&["daemon", "kill", "dockerd", "pi1"]);
    assert!(stdout(&fleet.lab("status", &[])).contains(&format!(
        "pi1      {pi1:<15} manager  docker     up    down"
    )));
    let dead = fleet.ssh(&pi1, "sudo -n docker info >/dev/null 2>&1", None);
    assert!(!dead.status.success());
    ok(&["daemon", "start", "dockerd", "pi1"]);
    fleet.ssh_ok(&pi1, "sudo -n docker info >/dev/null");
    // A killed sshd refuses connections; started again, SSH works.
    lab.kill("pi3", Daemon::Sshd).unwrap();
    assert!(!connects(&pi3, 22, 1000));
    lab.start("pi3", Daemon::Sshd).unwrap();
    assert_eq!(fleet.ssh_ok(&pi3, "hostname").trim(), "pi3");

    // Boot ids: each node its own, none the host's; a reboot gives a new one, and sshd and
    // dockerd come back.
    let boot_id = |addr: &str| fleet.ssh_ok(addr, "cat /proc/sys/kernel/random/boot_id");
    let host_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let before: Vec<String> = [&pi1, &pi2, &pi3].iter().map(|a| boot_id(a)).collect();
    assert!(before[0] != before[1] && before[1] != before[2] && before[0] != before[2]);
    assert!(
        !before.contains(&host_id),
        "a node shows the host's boot id"
    );
    let out = ok(&["reboot", "pi2"]);
    let after = boot_id(&pi2);
    assert_ne!(after, before[1]);
    assert_eq!(
        out,
        format!("lab: pi2: rebooted (boot id {})\n", after.trim())
    );
    assert_eq!(after.trim(), lab.boot_id("pi2").unwrap());
    let docker = fleet.ssh(
        &pi2,
        "sudo -S -p '' docker info --format '{{.Name}}'",
        Some(&password),
    );
    assert_eq!(stdout(&docker).trim(), "pi2", "{}", text(&docker));
    assert_eq!(boot_id(&pi1), before[0], "another node rebooted");
    let again = lab.reboot("pi3").unwrap();
    assert_eq!(boot_id(&pi3).trim(), again);
    assert_ne!(boot_id(&pi3), before[2]);

    // Clock: skewed for the sessions' commands (sudo included), on that node only.
    lab.skew_clock("pi3", 3600).unwrap();
    let skew = seconds_on(&fleet, &pi3, "date +%s") - now();
    assert!((3595..=3605).contains(&skew), "pi3 is {skew} s off");
    let skew = seconds_on(&fleet, &pi3, "sudo -n date +%s") - now();
    assert!((3595..=3605).contains(&skew), "sudo on pi3 is {skew} s off");
    assert!((seconds_on(&fleet, &pi1, "date +%s") - now()).abs() <= 5);
    assert_eq!(
        ok(&["clock", "pi1", "--skew", "-600"]),
        "lab: pi1: clock -600 s\n"
    );
    let skew = seconds_on(&fleet, &pi1, "date +%s") - now();
    assert!((-605..=-595).contains(&skew), "pi1 is {skew} s off");
    fleet.ssh_ok(&pi1, "sudo -n docker info >/dev/null");
    ok(&["clock", "pi1", "--clear"]);
    lab.clear_clock("pi3").unwrap();
    for a in [&pi1, &pi3] {
        assert!(
            (seconds_on(&fleet, a, "date +%s") - now()).abs() <= 5,
            "{a}"
        );
    }

    // Only this lab's nodes: an unknown node is a usage error.
    let out = fleet.lab("reboot", &["pi9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no node pi9 in this lab"),
        "{}",
        text(&out)
    );
}

/// `--cpu`: each node in a cgroup capped at that share of one CPU, its sessions, dockerd and
/// containers included; a busy loop is throttled; another `--cpu` changes the cap in place;
/// `down` removes the cgroups.
#[test]
fn cpu_cap_throttles_everything_of_a_node() {
    let mut fleet = Fleet::up(&["--nodes", "1", "--bare", "0", "--cpu", "0.25"]);
    let lab = Lab::open(&fleet.dir).unwrap();
    let pi1 = fleet.addr("pi1");
    let cg = lab.cpu_cgroup("pi1").unwrap().expect("a cpu cgroup");
    let quota = |cg: &std::path::Path| {
        std::fs::read_to_string(cg.join("cpu.cfs_quota_us"))
            .or_else(|_| std::fs::read_to_string(cg.join("cpu.max")))
            .unwrap()
    };
    assert!(quota(&cg).starts_with("25000"), "{}", quota(&cg));
    let node_cgroup = format!(
        ":{}",
        cg.to_str()
            .unwrap()
            .rsplit_once("/rpiprov-lab/")
            .map(|(_, t)| format!("/rpiprov-lab/{t}"))
            .unwrap()
    );
    // The session, dockerd, and a container are all under the node's cgroup.
    let session = fleet.ssh_ok(&pi1, "cat /proc/self/cgroup");
    assert!(
        session.contains(&node_cgroup),
        "{node_cgroup} not in\n{session}"
    );
    let dockerd = lab.daemon_pid("pi1", Daemon::Dockerd).unwrap().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", dockerd.pid)).unwrap();
    assert!(cgroups.contains(&node_cgroup), "{cgroups}");
    lab.load_image("pi1").unwrap();
    let pid = fleet.ssh_ok(
        &pi1,
        "sudo -n docker run -d --name spin rpiprov-lab/busybox:1 sleep 600 >/dev/null \
         && sudo -n docker inspect -f '{{.State.Pid}}' spin",
    );
    let container = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
    assert!(
        container.contains(&format!("{node_cgroup}/")),
        "the container is not under the node's cgroup:\n{container}"
    );
    // A busy loop of 3 s gets about a quarter of a CPU.
    let times = fleet.ssh_ok(
        &pi1,
        "bash -c 'TIMEFORMAT=\"%R %U %S\"; time timeout 3 sh -c \"while :; do :; done\"; true' 2>&1",
    );
    let t: Vec<f64> = times
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (real, cpu) = (t[0], t[1] + t[2]);
    assert!(real >= 2.9, "{times}");
    assert!(
        cpu <= 3.0 * 0.25 * 1.5,
        "not throttled: {cpu} s of CPU in {real} s"
    );
    let stat = std::fs::read_to_string(cg.join("cpu.stat")).unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled > 0, "{stat}");
    // Another cap, in place.
    let out = fleet.lab("up", &["--nodes", "1", "--bare", "0", "--cpu", "1"]);
    assert!(
        stdout(&out).contains("cpu cap 1 (was 0.25)"),
        "{}",
        text(&out)
    );
    assert!(quota(&cg).starts_with("100000"), "{}", quota(&cg));
    let out = fleet.down();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.cgroups(), Vec::<std::path::PathBuf>::new());
}
