//! Builders of remote command lines. Pure functions: they return the exact text sent over
//! SSH, every argument quoted with [`crate::shell`], and are tested as strings without SSH.
//! Nothing secret is built into a command line: join tokens and passwords go on stdin.

use crate::config::{InstallMethod, Network};
use crate::shell::{join, quote};

/// The read-only probe: everything the planner needs, in one round trip. Runs as root
/// (reading the Docker socket needs it). Each fact is a `key=value` line; multi-line facts
/// sit between `@@begin NAME` and `@@end NAME` so that their contents cannot be mistaken
/// for keys. `networks` lists the playbook's network names to inspect.
pub fn probe(networks: &[&str]) -> String {
    let inspect = if networks.is_empty() {
        String::new()
    } else {
        format!(
            "echo '@@begin networks'; docker network inspect --format '{{{{json .}}}}' {} 2>/dev/null; echo '@@end networks'\n",
            join(networks)
        )
    };
    format!(
        r#"export LC_ALL=C
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=${{ID:-unknown}}"
echo "os_version=${{VERSION_ID:-unknown}}"
echo "arch=$(dpkg --print-architecture 2>/dev/null || uname -m)"
echo "kernel_arch=$(uname -m)"
echo "hostname=$(hostname)"
echo "reach_addr=$(echo "${{SSH_CONNECTION:-}}" | cut -d' ' -f3)"
if [ -d /run/systemd/system ]; then echo "init=systemd"; else echo "init=other"; fi
if command -v apt-get >/dev/null 2>&1; then echo "apt=yes"; else echo "apt=no"; fi
if command -v dockerd >/dev/null 2>&1 || command -v docker >/dev/null 2>&1; then echo "docker_installed=yes"; else echo "docker_installed=no"; fi
if [ -e /etc/docker/daemon.json ]; then echo '@@begin daemon_json'; cat /etc/docker/daemon.json; echo; echo '@@end daemon_json'; fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
echo "docker_running=yes"
echo "docker_version=$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null)"
echo '@@begin swarm'; docker info --format '{{{{json .Swarm}}}}'; echo '@@end swarm'
if [ "$(docker info --format '{{{{.Swarm.ControlAvailable}}}}')" = true ]; then
echo '@@begin nodes'; docker node inspect --format '{{{{json .}}}}' $(docker node ls -q) 2>/dev/null; echo '@@end nodes'
{inspect}fi
else echo "docker_running=no"; fi
"#
    )
}

/// Installs Docker by the inventory's method. Runs as root.
pub fn install_docker(method: &InstallMethod) -> Option<String> {
    match method {
        // A stale package list is the usual reason for "Unable to locate package" on a
        // fresh Pi, so the list is always refreshed first.
        InstallMethod::Distro => Some(
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q docker.io"
                .to_string(),
        ),
        InstallMethod::GetDocker => Some(
            "set -e; t=$(mktemp); (curl -fsSL https://get.docker.com || wget -qO- https://get.docker.com) > \"$t\"; sh \"$t\"; rm -f \"$t\""
                .to_string(),
        ),
        InstallMethod::Command(cmd) => Some(format!("sh -c {}", quote(cmd))),
        InstallMethod::Skip => None,
    }
}

/// Enables and starts the daemon, then waits until it answers (up to 60 s). systemd is used
/// only where it is PID 1 (a container or chroot has no systemd even if installed).
pub fn start_docker() -> String {
    concat!(
        "if [ -d /run/systemd/system ]; then systemctl enable docker >/dev/null 2>&1; systemctl start docker; ",
        "else service docker start || /etc/init.d/docker start; fi; ",
        "i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); ",
        "if [ $i -ge 60 ]; then echo 'dockerd did not answer within 60s' >&2; exit 1; fi; sleep 1; done"
    )
    .to_string()
}

/// Restarts the daemon after its settings changed, then waits until it answers.
pub fn restart_docker() -> String {
    concat!(
        "if [ -d /run/systemd/system ]; then systemctl restart docker; ",
        "else service docker restart || /etc/init.d/docker restart; fi; ",
        "i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); ",
        "if [ $i -ge 60 ]; then echo 'dockerd did not answer within 60s' >&2; exit 1; fi; sleep 1; done"
    )
    .to_string()
}

/// `docker swarm init`. The advertise address may be an IP or an interface name; Docker
/// accepts both.
pub fn swarm_init(advertise: &str, default_addr_pool: Option<&str>) -> String {
    let mut args = vec![
        "docker".to_string(),
        "swarm".into(),
        "init".into(),
        "--advertise-addr".into(),
        advertise.to_string(),
    ];
    if let Some(pool) = default_addr_pool {
        args.push("--default-addr-pool".into());
        args.push(pool.to_string());
    }
    join(args)
}

/// Prints the join token for a role. Its output is a secret.
pub fn join_token(manager: bool) -> String {
    format!(
        "docker swarm join-token -q {}",
        if manager { "manager" } else { "worker" }
    )
}

/// `docker swarm join`: the token is read from stdin so that it never appears in a process
/// list, a log line or an error message that echoes the command.
pub fn swarm_join(advertise: &str, manager_addr: &str) -> String {
    format!(
        "IFS= read -r token; docker swarm join --advertise-addr {} --token \"$token\" {}",
        quote(advertise),
        quote(manager_addr)
    )
}

/// Reads the local swarm state after a join; joins are asynchronous and `swarm join` can
/// report a timeout while the join completes in the background.
pub fn local_swarm_state() -> String {
    "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}'".to_string()
}

pub fn swarm_leave(force: bool) -> String {
    if force {
        "docker swarm leave --force".to_string()
    } else {
        "docker swarm leave".to_string()
    }
}

/// Adds or updates node labels (never removes labels the user set by hand).
pub fn node_labels(node_id: &str, labels: &[(String, String)]) -> String {
    let mut args = vec!["docker".to_string(), "node".into(), "update".into()];
    for (k, v) in labels {
        args.push("--label-add".into());
        args.push(format!("{k}={v}"));
    }
    args.push(node_id.to_string());
    join(args)
}

pub fn node_promote(node_id: &str) -> String {
    join(["docker", "node", "promote", node_id])
}

pub fn node_demote(node_id: &str) -> String {
    join(["docker", "node", "demote", node_id])
}

/// Removes a node entry left by a Pi that left or was reinstalled, so that the rejoined Pi
/// does not show twice in `docker node ls`. `force` for an entry swarm still thinks is up
/// (it notices a departure only after the heartbeat times out).
pub fn node_rm(node_id: &str, force: bool) -> String {
    if force {
        join(["docker", "node", "rm", "--force", node_id])
    } else {
        join(["docker", "node", "rm", node_id])
    }
}

/// Every node entry: id, host name, state, address; for pruning stale entries.
pub fn node_entries() -> String {
    "docker node inspect --format '{{.ID}} {{.Description.Hostname}} {{.Status.State}} {{.Status.Addr}}' $(docker node ls -q)".to_string()
}

/// Inspects these networks; missing ones are left out (inspect fails for them, and the
/// status does not matter: the output says which exist).
pub fn network_inspect(names: &[&str]) -> String {
    format!(
        "docker network inspect --format '{{{{json .}}}}' {} 2>/dev/null; true",
        join(names)
    )
}

pub fn network_create(net: &Network) -> String {
    let mut args = vec![
        "docker".to_string(),
        "network".into(),
        "create".into(),
        "--driver".into(),
        net.driver.clone(),
        "--scope".into(),
        "swarm".into(),
    ];
    if net.attachable {
        args.push("--attachable".into());
    }
    if net.internal {
        args.push("--internal".into());
    }
    if let Some(subnet) = &net.subnet {
        args.push("--subnet".into());
        args.push(subnet.clone());
    }
    if net.encrypted {
        args.push("--opt".into());
        args.push("encrypted".into());
    }
    args.push("--label".into());
    args.push("io.rpiprov.managed=true".into());
    args.push(net.name.clone());
    join(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_commands() {
        assert_eq!(
            install_docker(&InstallMethod::Distro).unwrap(),
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q docker.io"
        );
        assert_eq!(
            install_docker(&InstallMethod::Command("curl x | sh -s -- 'a b'".into())).unwrap(),
            "sh -c 'curl x | sh -s -- '\\''a b'\\'''"
        );
        assert_eq!(install_docker(&InstallMethod::Skip), None);
    }

    #[test]
    fn swarm_commands() {
        assert_eq!(
            swarm_init("198.18.0.11", Some("198.19.0.0/16")),
            "docker swarm init --advertise-addr 198.18.0.11 --default-addr-pool 198.19.0.0/16"
        );
        assert_eq!(
            swarm_init("eth0", None),
            "docker swarm init --advertise-addr eth0"
        );
        assert_eq!(
            swarm_join("198.18.0.12", "198.18.0.11:2377"),
            "IFS= read -r token; docker swarm join --advertise-addr 198.18.0.12 --token \"$token\" 198.18.0.11:2377"
        );
        assert_eq!(join_token(false), "docker swarm join-token -q worker");
        assert_eq!(join_token(true), "docker swarm join-token -q manager");
    }

    #[test]
    fn node_removal() {
        assert_eq!(node_rm("abc", false), "docker node rm abc");
        assert_eq!(node_rm("abc", true), "docker node rm --force abc");
    }

    #[test]
    fn label_values_are_quoted() {
        assert_eq!(
            node_labels(
                "abc",
                &[
                    ("zone".into(), "rack 1".into()),
                    ("disk".into(), "ssd".into())
                ]
            ),
            "docker node update --label-add 'zone=rack 1' --label-add disk=ssd abc"
        );
    }

    #[test]
    fn network_create_with_every_option() {
        let net = Network {
            name: "DATA".into(),
            driver: "overlay".into(),
            attachable: true,
            internal: true,
            subnet: Some("10.20.0.0/24".into()),
            encrypted: true,
        };
        assert_eq!(
            network_create(&net),
            "docker network create --driver overlay --scope swarm --attachable --internal --subnet 10.20.0.0/24 --opt encrypted --label io.rpiprov.managed=true DATA"
        );
    }

    #[test]
    fn network_inspect_tolerates_missing_networks() {
        assert_eq!(
            network_inspect(&["DATA", "my net"]),
            "docker network inspect --format '{{json .}}' DATA 'my net' 2>/dev/null; true"
        );
    }

    #[test]
    fn probe_inspects_only_the_named_networks() {
        let p = probe(&["DATA", "INTERCO"]);
        assert!(p.contains("docker network inspect --format '{{json .}}' DATA INTERCO"));
        assert!(!probe(&[]).contains("network inspect"));
        // The probe must be valid shell.
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
