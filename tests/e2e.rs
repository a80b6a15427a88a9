//! End-to-end tests of bootstrap, deploy and teardown (tier 3) on the lab's default fleet:
//! a manager and a worker with Docker, a bare worker without it, each with its own sshd
//! and dockerd. rpiprov is run as a user runs it; what it did is checked on the nodes
//! themselves with the system OpenSSH client, never through rpiprov.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rpiprov::lab::Distro;
use serde_json::Value;
use support::fleet::{http_get, text};
use support::swarm::{Lab, json, row};

/// The pid of the sshd that serves a node: the process listening on its port 22 inside
/// its network namespace.
fn sshd_pid(addr: &str) -> u32 {
    for ns in std::fs::read_dir("/run/netns").unwrap() {
        let ns = ns.unwrap().path();
        let run = |args: &[&str]| {
            let out = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        if !run(&["ip", "-4", "-o", "addr"]).contains(&format!(" {addr}/")) {
            continue;
        }
        let listen = run(&["ss", "-Htlnp", "sport = :22"]);
        let pid = listen
            .split("pid=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("no sshd listens in the namespace of {addr}: {listen}"));
        return pid.parse().unwrap();
    }
    panic!("no lab namespace has {addr}");
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// Issue 4: bootstrap forms the swarm, installs Docker on the bare node, is idempotent,
/// survives a frozen node and refuses a node of another swarm.
#[test]
fn bootstrap_end_to_end() {
    let lab = Lab::up();

    // 0. pi2's sudo asks for a password, which comes from the environment: without it,
    //    nothing is touched and the user is told which variable to set.
    let out = lab
        .rpiprov_cmd(&["bootstrap"])
        .env_remove("RPIPROV_SUDO_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: pi2: become_password comes from the environment variable RPIPROV_SUDO_PASSWORD, which is not set\n"
    );
    assert_eq!(
        lab.on("pi1", "docker info --format '{{.Swarm.LocalNodeState}}'")
            .trim(),
        "inactive"
    );

    // 1. The first run: Docker on the bare node, swarm init, joins, labels, networks.
    let out = lab.ok(&["bootstrap"], 0);
    assert!(out.contains("install docker (docker.io package)"), "{out}");
    lab.assert_formed();
    // The bare node got Docker from its package manager, and its daemon runs.
    assert_eq!(
        lab.on("pi3", "dpkg-query -W -f='${Status}' docker.io"),
        "install ok installed"
    );
    assert_eq!(
        lab.on("pi3", "docker info --format '{{.Swarm.LocalNodeState}}'")
            .trim(),
        "active"
    );
    // The playbook's networks exist with their options.
    for net in &lab.playbook.networks {
        let got = lab.on(
            "pi1",
            &format!(
                "docker network inspect --format '{{{{.Driver}}}} {{{{.Scope}}}} {{{{.Attachable}}}} {{{{.Internal}}}} {{{{range .IPAM.Config}}}}{{{{.Subnet}}}}{{{{end}}}}' {}",
                net.name
            ),
        );
        assert_eq!(
            got.trim(),
            format!(
                "overlay swarm {} {} {}",
                net.attachable,
                net.internal,
                net.subnet.clone().unwrap_or_default()
            ),
            "network {}",
            net.name
        );
    }

    // 2. The second run changes nothing, says so, and --json agrees.
    let doc = json(&lab.ok(&["bootstrap", "--json"], 0));
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["changed"], false, "{doc:#}");
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 3);
    for h in doc["hosts"].as_array().unwrap() {
        assert_eq!(h["outcome"], "unchanged", "{h:#}");
        assert_eq!(h["changed"], serde_json::json!([]));
    }
    let out = lab.ok(&["bootstrap"], 0);
    assert!(
        out.contains("bootstrap: no change on any host (3 hosts"),
        "{out}"
    );

    // 3. Daemon settings from the inventory are merged into each node's daemon.json,
    //    keeping the keys already there (the lab's own), and the daemon restarts once.
    let registry = format!("{}:5000", lab.addr("pi1"));
    let inv_path = lab.fleet.dir.join("inventory.toml");
    let inv = std::fs::read_to_string(&inv_path).unwrap();
    assert!(inv.contains("install = \"distro\"\n"), "{inv}");
    std::fs::write(
        &inv_path,
        inv.replacen(
            "install = \"distro\"\n",
            &format!(
                "install = \"distro\"\ndaemon = {{ \"insecure-registries\" = [\"{registry}\"] }}\n"
            ),
            1,
        ),
    )
    .unwrap();
    let doc = json(&lab.ok(&["bootstrap", "--json"], 0));
    for node in ["pi1", "pi2", "pi3"] {
        assert_eq!(
            row(&doc, node)["changed"],
            serde_json::json!(["write /etc/docker/daemon.json", "restart docker"]),
            "{node}: {doc:#}"
        );
        let daemon: Value =
            serde_json::from_str(&lab.on(node, "cat /etc/docker/daemon.json")).unwrap();
        assert_eq!(
            daemon["insecure-registries"],
            serde_json::json!([registry]),
            "{node}"
        );
        assert!(
            lab.on(
                node,
                "docker info --format '{{json .RegistryConfig.IndexConfigs}}'"
            )
            .contains(&registry),
            "{node}: the daemon did not load the new setting"
        );
    }
    let pi1_daemon: Value =
        serde_json::from_str(&lab.on("pi1", "cat /etc/docker/daemon.json")).unwrap();
    assert_eq!(
        pi1_daemon["bip"], "198.18.254.1/24",
        "the lab's own key was dropped"
    );
    lab.assert_formed();
    let doc = json(&lab.ok(&["bootstrap", "--json"], 0));
    assert_eq!(doc["changed"], false, "{doc:#}");

    // 4. Two Pis with the same host name are reported, and nothing is done to them.
    lab.on("pi3", "hostname pi2");
    let out = lab.ok(&["bootstrap"], 1);
    assert!(
        out.contains("host name \"pi2\" is shared by pi2, pi3; give each Pi its own"),
        "{out}"
    );
    lab.on("pi3", "hostname pi3");
    lab.ok(&["bootstrap"], 0);

    // 5. A worker whose sshd is frozen fails within the connect timeout, the others
    //    complete, exit 1; once it answers again, bootstrap converges.
    let pid = sshd_pid(&lab.addr("pi2"));
    signal(pid, "-STOP");
    let t = Instant::now();
    let out = lab.run(&["bootstrap", "--json"]);
    let took = t.elapsed();
    signal(pid, "-CONT");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(row(&doc, "pi2")["outcome"], "failed", "{doc:#}");
    assert_eq!(row(&doc, "pi2")["failed_step"], "connect");
    assert_eq!(row(&doc, "pi1")["outcome"], "unchanged");
    assert_eq!(row(&doc, "pi3")["outcome"], "unchanged");
    let timeout = lab.inventory.ssh.connect_timeout;
    assert!(
        took < timeout + Duration::from_secs(5),
        "took {took:?} with a connect timeout of {timeout:?}"
    );
    lab.ok(&["bootstrap"], 0);
    lab.assert_formed();

    // 6. A node that belongs to another swarm is refused, naming that swarm; --force
    //    makes it leave and join this one.
    let pi3 = lab.addr("pi3");
    lab.on(
        "pi3",
        &format!("docker swarm leave --force >/dev/null && docker swarm init --advertise-addr {pi3} >/dev/null"),
    );
    let cluster = lab.on("pi3", "docker info --format '{{.Swarm.Cluster.ID}}'");
    let out = lab.ok(&["bootstrap"], 1);
    assert!(
        out.contains(&format!(
            "belongs to another swarm (cluster {}); run with --force",
            cluster.trim()
        )),
        "{out}"
    );
    lab.ok(&["bootstrap", "--force"], 0);
    lab.assert_formed();

    // 7. Docker upgraded on pi3, which bootstrap gave the distribution's docker.io: the
    //    node is drained, the distribution's upgrade really runs (apt, the newest already
    //    here, so the same version after), the daemon answers, the node is back and
    //    active again.
    let version = "docker version --format '{{.Server.Version}}'";
    let before = lab.on("pi3", version);
    let out = lab.run(&["-v", "maintain", "--on", "pi3", "--upgrade-docker"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    for step in [
        "pi3: drain",
        "pi3: upgrade docker",
        "pi3: wait until it is back in the swarm",
        "pi3: make it active",
    ] {
        assert!(all.contains(step), "{step:?} not in:\n{all}");
    }
    assert_eq!(lab.on("pi3", version), before);
    let availability = lab.on(
        "pi1",
        "docker node inspect --format '{{.Spec.Availability}}' pi3",
    );
    assert_eq!(availability.trim(), "active");
    lab.assert_formed();
}

/// Issue 5: deploy ships images, deploys in order, waits for convergence, is idempotent,
/// redeploys only what changed, reports what does not converge, holds a lock; teardown
/// leaves nothing, a deploy right after works, and --leave-swarm dissolves the swarm.
#[test]
fn deploy_and_teardown_end_to_end() {
    deploy_and_teardown(Lab::up());
}

/// Issue 17 item 6: the same on a fleet of Debian 13 (Docker 26.1, pi3's installed by
/// bootstrap from trixie's docker.io) and of Debian unstable (28.5), side by side.
#[test]
fn deploy_and_teardown_end_to_end_on_docker_26() {
    deploy_and_teardown(Lab::up_with(&[Distro::Trixie], &[]));
}

#[test]
fn deploy_and_teardown_end_to_end_on_docker_28() {
    deploy_and_teardown(Lab::up_with(&[Distro::Sid], &[]));
}

fn deploy_and_teardown(lab: Lab) {
    lab.ok(&["bootstrap"], 0);
    let dir = &lab.fleet.dir;

    // 1. Deploy: every stack deployed and converged.
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    let stacks = doc["details"].as_array().unwrap();
    let names: Vec<&str> = stacks
        .iter()
        .map(|s| s["stack"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "api", "echo"]);
    for s in stacks {
        assert_eq!(s["status"], "deployed", "{s:#}");
        for svc in s["services"].as_array().unwrap() {
            assert_eq!(svc["converged"], true, "{svc:#}");
        }
    }
    // The global web service runs on every node, the once-bare one included, and answers
    // on each node's published port.
    for node in ["pi1", "pi2", "pi3"] {
        let body = http_get(&format!("{}:18080", lab.addr(node)));
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{node}: {body}"
        );
    }
    // Through the overlay network: from the web container on pi3, an api task (reachable
    // only inside the internal DATA network) answers.
    let via_overlay = lab.on(
        "pi3",
        "c=$(docker ps -q --filter label=com.docker.swarm.service.name=web_web | head -1); \
         for ip in $(docker exec $c nslookup tasks.api_api | awk '/^Address/ && !/:53/ {print $NF}'); do \
           printf 'GET / HTTP/1.0\\r\\n\\r\\n' | docker exec -i $c nc $ip 8081; done",
    );
    assert!(via_overlay.contains("200 OK"), "{via_overlay}");

    // 2. A second deploy redeploys nothing.
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    assert_eq!(doc["changed"], false, "{doc:#}");
    for s in doc["details"].as_array().unwrap() {
        assert_eq!(s["status"], "unchanged", "{s:#}");
    }
    // Issue 17: it started one `docker` process per host, the relay of its Engine API
    // (counted from the command lines sent: dial-stdio is one); so does a status.
    let hosts = lab.inventory.hosts.len() as u64;
    assert!(
        doc["remote"]["docker_cli"].as_u64().unwrap() <= hosts,
        "{:#}",
        doc["remote"]
    );
    let status = json(&lab.ok(&["status", "--json"], 0));
    assert!(
        status["remote"]["docker_cli"].as_u64().unwrap() <= hosts,
        "{:#}",
        status["remote"]
    );

    // 3. Changing one stack file redeploys that stack only.
    let echo = dir.join("stacks/echo.yml");
    let mut compose = std::fs::read_to_string(&echo).unwrap();
    compose = compose.replace(
        "    deploy:\n",
        "    environment:\n      GREETING: changed\n    deploy:\n",
    );
    std::fs::write(&echo, &compose).unwrap();
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    let status: Vec<(&str, &str)> = doc["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stack"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("web", "unchanged"),
            ("api", "unchanged"),
            ("echo", "deployed")
        ]
    );
    assert!(
        lab.on("pi1", "docker service inspect --format '{{json .Spec.TaskTemplate.ContainerSpec.Env}}' echo_echo")
            .contains("GREETING=changed")
    );

    // 4. A deploy started while another holds the lock is refused, naming the holder.
    std::fs::write(
        &echo,
        compose.replace("GREETING: changed", "GREETING: again"),
    )
    .unwrap();
    let first = lab.rpiprov_cmd(&["deploy"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab
        .on_raw("pi1", "test -d /var/lib/rpiprov/lock")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the first deploy never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = lab.run(&["deploy"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "the first deploy:\n{}",
        text(&first)
    );
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(text(&second).contains("locked by"), "{}", text(&second));

    // A lock left by a killed run (its pid no longer runs on this machine) is reported as
    // such, and `deploy --unlock` clears it.
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    lab.on(
        "pi1",
        &format!(
            "mkdir -p /var/lib/rpiprov/lock && printf 'user=ci\\nhost={}\\npid={dead}\\nsince=2026-11-25T10:00:00Z\\ncommand=deploy\\n' > /var/lib/rpiprov/lock/owner",
            here.trim()
        ),
    );
    // `plan` says it too, and leaves the lock as it was: the runs it previews would be
    // refused.
    for command in ["deploy", "teardown"] {
        let planned = lab.ok(&["plan", command], 1);
        assert!(
            planned.contains(&format!(
                "pi1: deploy lock left by a killed run: deploy by ci@{} pid {dead}",
                here.trim()
            )),
            "plan {command}:\n{planned}"
        );
    }
    assert!(
        lab.on_raw("pi1", "test -d /var/lib/rpiprov/lock")
            .status
            .success()
    );
    let out = lab.ok(&["deploy"], 1);
    let all = format!("{out}{}", text(&lab.run(&["deploy"])));
    assert!(
        all.contains(&format!(
            "deploy lock left by a killed run: deploy by ci@{} pid {dead} (no longer running)",
            here.trim()
        )),
        "{all}"
    );
    lab.ok(&["deploy", "--unlock"], 0);
    lab.ok(&["deploy"], 0);

    // 5. A stack whose image exists nowhere is reported with the service and swarm's
    //    reason within its timeout, exit 1.
    std::fs::write(
        dir.join("stacks/ghost.yml"),
        "version: \"3.8\"\nservices:\n  phantom:\n    image: rpiprov-lab/ghost:1\n    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ghost.toml"),
        "[[stack]]\nname = \"ghost\"\nfile = \"stacks/ghost.yml\"\ntimeout = \"25s\"\n",
    )
    .unwrap();
    let ghost = dir.join("ghost.toml");
    let ghost = ghost.to_str().unwrap();
    let t = Instant::now();
    let out = lab.run(&["-p", ghost, "deploy"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        t.elapsed() < Duration::from_secs(90),
        "took {:?}",
        t.elapsed()
    );
    assert!(all.contains("ghost_phantom"), "{all}");
    assert!(all.contains("No such image: rpiprov-lab/ghost:1"), "{all}");
    lab.ok(&["-p", ghost, "teardown", "--yes"], 0);

    // 6. Teardown leaves no stack, service or container on any node, and none of the
    //    playbook's networks.
    let out = lab.ok(&["teardown", "--yes"], 0);
    assert!(out.contains("teardown: "), "{out}");
    assert_eq!(lab.on("pi1", "docker service ls -q"), "");
    assert_eq!(lab.on("pi1", "docker stack ls --format '{{.Name}}'"), "");
    for node in ["pi1", "pi2", "pi3"] {
        assert_eq!(
            lab.on(
                node,
                "docker ps -aq --filter label=com.docker.stack.namespace"
            ),
            "",
            "containers left on {node}"
        );
    }
    let nets = lab.on("pi1", "docker network ls --format '{{.Name}}'");
    for net in &lab.playbook.networks {
        assert!(
            !nets.lines().any(|l| l == net.name),
            "{} left: {nets}",
            net.name
        );
    }
    // Again: nothing to remove, and it says so.
    let out = lab.ok(&["teardown", "--yes"], 0);
    assert!(out.contains("no change on any host"), "{out}");

    // 7. A deploy right after a teardown works: no "network not found" race.
    lab.ok(&["deploy"], 0);
    http_get(&format!("{}:18080", lab.addr("pi3")));

    // 8. teardown --leave-swarm leaves every node outside any swarm; --purge removes what
    //    rpiprov uploaded for this playbook (the ghost stack is another playbook's: kept).
    let uploads = "cd /var/lib/rpiprov && find stacks images -mindepth 1 -maxdepth 1 2>/dev/null | sort; true";
    assert_eq!(
        lab.on("pi1", uploads),
        "images/rpiprov-lab_busybox_1.sha256\nstacks/api\nstacks/echo\nstacks/ghost\nstacks/web\n"
    );
    lab.ok(&["teardown", "--yes", "--leave-swarm", "--purge"], 0);
    assert_eq!(lab.on("pi1", uploads), "stacks/ghost\n");
    assert_eq!(
        lab.on("pi3", "docker image ls -q rpiprov-lab/busybox"),
        "",
        "the shipped image was not purged"
    );
    for node in ["pi1", "pi2", "pi3"] {
        assert_eq!(
            lab.on(node, "docker info --format '{{.Swarm.LocalNodeState}}'")
                .trim(),
            "inactive",
            "{node}"
        );
    }
}
