//! End-to-end tests of `rpiprov lab` (tier 3): real network namespaces, sshd, dockerd and a
//! debootstrapped bare node, checked from the outside the way rpiprov will use them. They
//! need root (they fail without it); each fleet has its own subnet, and the machine-wide
//! slots of `support::fleet` bound how many run at once.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rpiprov::lab::Lab;
use support::fleet::{Fleet, http_get, require_root, text};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{argv:?}: {}", text(&out));
    stdout(&out)
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
    let netns = lab.netns_names();
    let links = lab.link_names();
    let processes = lab.processes();
    assert!(
        processes.len() >= 3 + 2,
        "holders, sshd, dockerd: {processes:?}"
    );
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
        s.contains(&line("pi1", "manager  docker     up    up")),
        "{s}"
    );
    assert!(
        s.contains(&line("pi3", "worker   bare       up    -")),
        "{s}"
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
