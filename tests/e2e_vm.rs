//! End-to-end on VM nodes (issue 25): what a namespace lab cannot show, because every
//! namespace node shares this machine's kernel. One lab serves every case (VMs are slow:
//! emulated, at about a Pi's speed): two amd64 machines with Docker preinstalled. rpiprov runs as a user runs it; what it did is checked on the nodes
//! with the system OpenSSH client.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::fleet::{http_get, text};
use support::swarm::Lab;

/// Sends a line to `addr` and reads it back (the echo service), retrying for a while: the
/// routing mesh of a node takes a moment after the service converged.
fn echo(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(format!("{line}\n").as_bytes())?;
            let mut buf = vec![0u8; line.len() + 1];
            s.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })();
        match attempt {
            Ok(back) if back.trim_end() == line => return back,
            _ if Instant::now() > deadline => panic!("no echo from {addr}: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Waits until `cmd` on `node` prints `want` (trimmed), up to `secs`.
fn wait_for(lab: &Lab, node: &str, cmd: &str, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = lab.on_raw(node, cmd);
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd} on {node}: waited {secs} s for {want:?}, last {got:?}:\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn boot_id(lab: &Lab, node: &str) -> String {
    lab.on(node, "cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_string()
}

/// Two amd64 VMs with Docker preinstalled (the arm64 bare worker is not here: the
/// arm64 guest's `apt-get install docker.io` outran bootstrap's 600 s on a loaded 2-core
/// machine): bootstrap forms the swarm; the lab playbook deploys; the global service runs
/// on both; a port published the default way
/// answers on both addresses (the routing mesh, also where no task runs) and a service
/// answers on its virtual IP; `maintain --reboot --on pi2` without `--reboot-command`
/// gives pi2 a new kernel boot id and leaves both nodes Ready and Active; `lab down`
/// leaves no qemu, tap or disk.
#[test]
fn vm_lab_meshes_reboots_for_real_and_goes_away() {
    let mut lab = Lab::up_with(&["--vm", "--nodes", "2", "--bare", "0"]);
    let dir = lab.fleet.dir.clone();

    // Status names the machines; a second up recreates nothing.
    let out = lab.fleet.lab("status", &[]);
    let status = text(&out);
    assert!(out.status.success(), "{status}");
    assert!(status.contains("RELEASE  MACHINE"), "{status}");
    assert_eq!(
        status.matches("up    up      bookworm vm amd64").count(),
        2,
        "{status}"
    );
    let out = lab
        .fleet
        .lab("up", &["--vm", "--nodes", "2", "--bare", "0"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing recreated"),
        "{}",
        text(&out)
    );
    // Each node its own kernel: boot ids differ, and neither is this machine's.
    let host_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let (b1, b2) = (boot_id(&lab, "pi1"), boot_id(&lab, "pi2"));
    assert!(b1 != b2 && b1 != host_boot.trim() && b2 != host_boot.trim());

    // Bootstrap: a swarm of the two machines (Docker preinstalled, Debian's 20.10).
    lab.ok(&["bootstrap"], 0);
    lab.assert_formed();
    let archs = lab.on(
        "pi1",
        "docker node inspect --format '{{.Description.Hostname}} {{.Description.Platform.Architecture}}' $(docker node ls -q) | sort",
    );
    assert_eq!(archs, "pi1 x86_64\npi2 x86_64\n");

    // Deploy the lab playbook: each node gets the busybox of its architecture.
    lab.ok(&["deploy"], 0);
    for node in ["pi1", "pi2"] {
        let arch = lab.on(
            node,
            "docker image inspect --format '{{.Architecture}}' rpiprov-lab/busybox:1",
        );
        assert_eq!(arch.trim(), "amd64", "{node}");
    }
    // The global web service: a task on each node, running.
    wait_for(
        &lab,
        "pi1",
        "docker service ps web_web --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' | cut -d' ' -f1,2 | sort | tr '\\n' ' '",
        "pi1 Running pi2 Running",
        300,
    );
    // Published in the default ingress mode: port 18080 answers on both addresses.
    for node in ["pi1", "pi2"] {
        let body = http_get(&format!("{}:18080", lab.addr(node)));
        assert!(body.contains("rpiprov lab"), "{node}: {body}");
    }
    // The echo service runs on the manager only, yet pi2's address answers: the mesh.
    assert_eq!(
        lab.on(
            "pi1",
            "docker service ps echo_echo --filter desired-state=running --format '{{.Node}}'"
        )
        .trim(),
        "pi1"
    );
    echo(&format!("{}:19000", lab.addr("pi2")), "through the mesh");
    // api has a virtual IP on DATA, and a web task reaches api through it.
    let vip = lab.on(
        "pi1",
        "docker service inspect api_api --format '{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}'",
    );
    let vip = vip.trim().split('/').next().unwrap().to_string();
    assert!(vip.starts_with("198.19.10."), "api's VIP: {vip:?}");
    let got = lab.on(
        "pi1",
        &format!(
            "c=$(docker ps -q -f name=web_web | head -n 1); printf 'GET / HTTP/1.0\\r\\n\\r\\n' | docker exec -i $c /bin/nc -w 10 {vip} 8081"
        ),
    );
    assert!(got.contains("rpiprov lab"), "through the VIP: {got}");

    // A real reboot: systemd's own, the default of maintain; a new kernel boot id.
    let before = boot_id(&lab, "pi2");
    let out = lab.ok(&["maintain", "--reboot", "--on", "pi2"], 0);
    assert!(!out.contains("reboot-command"), "{out}");
    let after = boot_id(&lab, "pi2");
    assert_ne!(before, after, "pi2 kept its boot id");
    wait_for(
        &lab,
        "pi1",
        "docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}' | sort | tr '\\n' ' '",
        "pi1 Ready Active pi2 Ready Active",
        300,
    );

    // Down: no qemu of the lab, no tap, no disk.
    let taps: Vec<String> = std::fs::read_to_string(dir.join("state.json"))
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            v["layout"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["veth"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap();
    let out = lab.fleet.down();
    assert!(out.status.success(), "{}", text(&out));
    for tap in &taps {
        assert!(
            !std::path::Path::new("/sys/class/net").join(tap).exists(),
            "{tap} is left"
        );
    }
    assert!(!dir.exists(), "{} is left", dir.display());
    let dir_s = dir.to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(p.path().join("cwd")).unwrap_or_default();
        let qemu = String::from_utf8_lossy(&cmdline).starts_with("qemu-system");
        assert!(
            !(qemu && cwd.to_string_lossy().starts_with(&dir_s)),
            "a qemu of the lab runs: {:?}",
            p.path()
        );
    }
}
