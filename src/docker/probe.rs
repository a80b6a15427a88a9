//! The read-only probe of a host, in two halves sent at once over its one connection:
//! a shell command that reports what only the host's files tell (OS, `dpkg`
//! architecture, whether Docker is installed, `daemon.json`, the preflight's evidence),
//! and the Engine API's answers ([`reads`]: the daemon's info and swarm state, on a
//! manager its nodes and networks), read by [`Facts::read_daemon`]. Neither starts a
//! `docker` process: the API's relay is the one (`crate::exec::probe` runs both). The
//! parts of an answer that belong to one Docker object are parsed by that object's file
//! ([`swarm`](crate::docker::swarm), [`node`](crate::docker::node),
//! [`network`](crate::docker::network)). Tested on recorded output, and run for real in
//! a shell.

use serde::Serialize;

use crate::docker::api::{self, ApiVersion, Daemon, Request};
use crate::docker::http::Response;
use crate::docker::network::{NetworkInfo, parse_network_list};
use crate::docker::node::{SwarmNode, parse_node_list};
use crate::docker::swarm::SwarmInfo;

/// The shell half of the probe. Runs as root (the preflight reads files only root may
/// read). Each fact is a `key=value` line; multi-line facts sit between `@@begin NAME`
/// and `@@end NAME` so that their contents cannot be mistaken for keys.
///
/// Where Docker keeps its data (for the free space there) is read from `daemon.json`'s
/// `data-root` (Docker's default otherwise), not from the daemon, which answers on the
/// other half at the same time.
pub fn probe() -> String {
    format!(
        r#"export LC_ALL=C
echo "clock=$(date +%s.%N)"
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
echo "docker_package=$(dpkg-query -W -f='${{Status}} ${{Version}}\n' docker.io docker-ce moby-engine 2>/dev/null | sed -n 's/^install ok installed //p' | head -n 1)"
droot=
if [ -e /etc/docker/daemon.json ]; then echo '@@begin daemon_json'; cat /etc/docker/daemon.json; echo; echo '@@end daemon_json'; droot=$(sed -n 's/.*"data-root"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' /etc/docker/daemon.json | head -n 1); fi
{PREFLIGHT}"#
    )
}

/// What the probe asks the daemon, beside its shell half, in one round trip: its info
/// (swarm state included), the swarm's nodes and the networks (these two answer on a
/// manager only; elsewhere their refusal is not read).
pub fn reads() -> Vec<Request> {
    vec![api::info(), api::nodes(), api::networks()]
}

/// Where the networks' answer is among those to [`reads`].
pub const NETWORKS_ANSWER: usize = 2;

/// The preflight's evidence, read without root where it can be and never changing
/// anything: kernel support for vxlan and overlayfs from every place that can tell (the
/// loaded module in `/sys/module`, `/proc/filesystems`, the kernel's own config in
/// `/proc/config.gz` or `/boot/config-RELEASE`, the module tree), the memory cgroup, the
/// free space where Docker keeps its data (the nearest existing folder), the boot id, and
/// whether `perl` is there for the port test. Judged by `crate::plan::preflight`.
const PREFLIGHT: &str = r#"release=$(uname -r)
config=
if [ -r /proc/config.gz ]; then config=$(gzip -dc /proc/config.gz 2>/dev/null); elif [ -r "/boot/config-$release" ]; then config=$(cat "/boot/config-$release"); fi
if [ -n "$config" ]; then echo "kernel_config=yes"; else echo "kernel_config=no"; fi
for opt in VXLAN OVERLAY_FS MEMCG; do v=$(printf '%s\n' "$config" | sed -n "s/^CONFIG_$opt=//p"); echo "config_$opt=$v"; done
if [ -d "/lib/modules/$release" ]; then echo "modules_dir=yes"; else echo "modules_dir=no"; fi
for m in vxlan overlay; do
if [ -e "/sys/module/$m" ]; then echo "loaded_$m=yes"; else echo "loaded_$m=no"; fi
if grep -qs "/$m.ko" "/lib/modules/$release/modules.builtin"; then echo "module_$m=builtin"; elif [ -n "$(find "/lib/modules/$release" -name "$m.ko*" 2>/dev/null | head -n 1)" ]; then echo "module_$m=module"; else echo "module_$m=none"; fi
done
if grep -qw overlay /proc/filesystems 2>/dev/null; then echo "fs_overlay=yes"; else echo "fs_overlay=no"; fi
echo "cgroup_memory=$(awk '$1 == "memory" {print $4}' /proc/cgroups 2>/dev/null)"
echo "cgroup2_controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
echo "cmdline=$(cat /proc/cmdline 2>/dev/null)"
d=${droot:-/var/lib/docker}
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
echo "disk_path=$d"
echo "disk_free_kib=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 {print $4}')"
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
if command -v perl >/dev/null 2>&1; then echo "perl=yes"; else echo "perl=no"; fi
"#;

/// Everything the probe reports of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub os_id: String,
    pub os_version: String,
    /// Userland architecture (`dpkg --print-architecture`): `armhf` on 32-bit Raspberry Pi
    /// OS even though `uname -m` says `aarch64`.
    pub arch: String,
    pub kernel_arch: String,
    pub hostname: String,
    /// The address this host has on the connection rpiprov reached it by.
    pub reach_addr: String,
    pub systemd: bool,
    pub apt: bool,
    pub docker_installed: bool,
    /// Its daemon answers the Engine API at a version rpiprov speaks.
    pub docker_running: bool,
    /// Docker's version, as the daemon says (also when rpiprov cannot speak to it).
    pub docker_version: Option<String>,
    /// The version of the Docker package installed (`docker.io`, `docker-ce` or
    /// `moby-engine`, as `dpkg` has it, its epoch and Debian revision left out: what the
    /// daemon would say), read from the files: what there is to show of a Docker whose
    /// daemon does not answer.
    pub docker_package: Option<String>,
    /// The API version rpiprov speaks with it.
    pub docker_api: Option<ApiVersion>,
    /// Why the daemon could not be read, when Docker is installed.
    pub docker_problem: Option<DockerProblem>,
    /// The text of `/etc/docker/daemon.json`, if the file exists.
    pub daemon_json: Option<String>,
    pub swarm: SwarmInfo,
    /// Filled on managers only.
    pub nodes: Vec<SwarmNode>,
    /// The playbook's networks that exist, as a manager sees them.
    pub networks: Vec<NetworkInfo>,
    /// What the preflight judges (`crate::plan::preflight`).
    pub preflight: PreflightFacts,
}

/// Why a host's Docker could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum DockerProblem {
    /// Its daemon does not answer (not running, or the relay failed): what was said.
    NotAnswering(String),
    /// It answers, and shares no API version with rpiprov (both ranges named).
    Unsupported(String),
}

/// The evidence the preflight judges, as the probe found it. Empty strings and `None`
/// mean the host could not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PreflightFacts {
    /// The host's `date +%s.%N` when the probe started, as printed.
    pub clock: String,
    /// The kernel's own configuration was readable (`/proc/config.gz`, `/boot/config-*`).
    pub kernel_config: bool,
    /// `CONFIG_VXLAN`, `CONFIG_OVERLAY_FS`, `CONFIG_MEMCG`: `y`, `m`, or empty (not set,
    /// or no configuration to read).
    pub config_vxlan: String,
    pub config_overlay_fs: String,
    pub config_memcg: String,
    /// `/lib/modules/RELEASE` exists.
    pub modules_dir: bool,
    /// `/sys/module/vxlan` and `/sys/module/overlay` exist.
    pub loaded_vxlan: bool,
    pub loaded_overlay: bool,
    /// `builtin`, `module` or `none`, from the module tree.
    pub module_vxlan: String,
    pub module_overlay: String,
    /// `overlay` is listed in `/proc/filesystems`.
    pub fs_overlay: bool,
    /// The `enabled` column of `memory` in `/proc/cgroups` (`1`, `0`, or empty).
    pub cgroup_memory: String,
    /// `/sys/fs/cgroup/cgroup.controllers` on a cgroup v2 host.
    pub cgroup2_controllers: String,
    /// Docker's own word on memory limits (`true`/`false`), when it answers.
    pub docker_memory_limit: String,
    pub cmdline: String,
    /// The folder whose free space was measured: Docker's data root (`daemon.json`'s
    /// `data-root`, or `/var/lib/docker`), or its nearest existing parent.
    pub disk_path: String,
    pub disk_free_kib: Option<u64>,
    pub boot_id: String,
    pub perl: bool,
}

impl Facts {
    /// Fills in what the daemon said: its version and the API version negotiated with it,
    /// then from the answers to [`reads`] its info (the swarm state, memory limits) and,
    /// on a manager, the swarm's nodes and those of the playbook's `networks` that exist.
    /// A manager whose nodes or networks could not be read has none listed, as before a
    /// swarm exists.
    pub fn read_daemon(
        &mut self,
        daemon: &Daemon,
        version: ApiVersion,
        answers: &[Response],
        networks: &[&str],
    ) -> Result<(), String> {
        self.docker_version = Some(daemon.docker.clone()).filter(|v| !v.is_empty());
        self.docker_api = Some(version);
        let [info, nodes, nets] = answers else {
            return Err(format!(
                "the daemon answered {} of the probe's 3 requests",
                answers.len()
            ));
        };
        let info = api::read(info, api::parse_daemon_info)
            .map_err(|e| format!("cannot read the daemon's info: {e}"))?;
        self.docker_running = true;
        self.swarm = info.swarm;
        self.preflight.docker_memory_limit =
            info.memory_limit.map(|m| m.to_string()).unwrap_or_default();
        if self.swarm.control_available {
            self.nodes = api::read(nodes, parse_node_list).unwrap_or_default();
            self.networks = api::read(nets, parse_network_list)
                .unwrap_or_default()
                .into_iter()
                .filter(|n| networks.contains(&n.name.as_str()))
                .collect();
        }
        Ok(())
    }
}

/// Parses the probe's output. Unknown keys are ignored so that an older rpiprov can read
/// the probe of a newer one; malformed JSON is an error naming the section.
pub fn parse(output: &str) -> Result<Facts, String> {
    let mut f = Facts::default();
    let (lines, sections) = split(output)?;
    for (name, text) in &sections {
        parse_section(&mut f, name, text);
    }
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "os_id" => f.os_id = value,
            "os_version" => f.os_version = value,
            "arch" => f.arch = value,
            "kernel_arch" => f.kernel_arch = value,
            "hostname" => f.hostname = value,
            "reach_addr" => f.reach_addr = value,
            "init" => f.systemd = value == "systemd",
            "apt" => f.apt = value == "yes",
            "docker_installed" => f.docker_installed = value == "yes",
            "docker_package" => f.docker_package = upstream_version(&value),
            _ => read_preflight(&mut f.preflight, key, value),
        }
    }
    if f.hostname.is_empty() {
        return Err("probe output has no hostname: the probe did not run".to_string());
    }
    Ok(f)
}

fn read_preflight(p: &mut PreflightFacts, key: &str, value: String) {
    let yes = value == "yes";
    match key {
        "clock" => p.clock = value,
        "kernel_config" => p.kernel_config = yes,
        "config_VXLAN" => p.config_vxlan = value,
        "config_OVERLAY_FS" => p.config_overlay_fs = value,
        "config_MEMCG" => p.config_memcg = value,
        "modules_dir" => p.modules_dir = yes,
        "loaded_vxlan" => p.loaded_vxlan = yes,
        "loaded_overlay" => p.loaded_overlay = yes,
        "module_vxlan" => p.module_vxlan = value,
        "module_overlay" => p.module_overlay = value,
        "fs_overlay" => p.fs_overlay = yes,
        "cgroup_memory" => p.cgroup_memory = value,
        "cgroup2_controllers" => p.cgroup2_controllers = value,
        "docker_memory_limit" => p.docker_memory_limit = value,
        "cmdline" => p.cmdline = value,
        "disk_path" => p.disk_path = value,
        "disk_free_kib" => p.disk_free_kib = value.parse().ok(),
        "boot_id" => p.boot_id = value,
        "perl" => p.perl = yes,
        _ => {}
    }
}

/// The upstream part of a Debian package version (`[epoch:]upstream[-revision]`): Docker's
/// own version, as its daemon says it. `20.10.24+dfsg1-1+deb12u1` is `20.10.24+dfsg1`,
/// `5:28.5.2-1~debian.12~bookworm` is `28.5.2`; empty is `None`.
fn upstream_version(v: &str) -> Option<String> {
    let v = v.split_once(':').map_or(v, |(_, rest)| rest);
    let v = v.rsplit_once('-').map_or(v, |(upstream, _)| upstream);
    Some(v.to_string()).filter(|v| !v.is_empty())
}

/// The lines outside any section, and each section's name and text.
pub type Split<'a> = (Vec<&'a str>, Vec<(&'a str, String)>);

/// The parts of a probe's output (or of anything appended to it, as
/// [`crate::docker::overview`] is): the lines outside any section, and each
/// `@@begin NAME` ... `@@end NAME` section's name and text, in order. A section that
/// does not end is an error: the output was cut.
pub fn split(output: &str) -> Result<Split<'_>, String> {
    let mut lines = Vec::new();
    let mut sections = Vec::new();
    let mut section: Option<(&str, Vec<&str>)> = None;
    for line in output.lines() {
        if let Some((name, body)) = section.as_mut() {
            if line.strip_prefix("@@end ") == Some(*name) {
                sections.push((*name, body.join("\n")));
                section = None;
            } else {
                body.push(line);
            }
        } else if let Some(name) = line.strip_prefix("@@begin ") {
            section = Some((name, Vec::new()));
        } else {
            lines.push(line);
        }
    }
    if let Some((name, _)) = section {
        return Err(format!("probe output ended inside section {name}"));
    }
    Ok((lines, sections))
}

fn parse_section(f: &mut Facts, name: &str, text: &str) {
    if name == "daemon_json" {
        // The probe adds a newline after the file in case it has none.
        f.daemon_json = Some(text.strip_suffix('\n').unwrap_or(text).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, sh_env, syntax_ok};

    const MANAGER: &str = r#"os_id=debian
os_version=12
arch=armhf
kernel_arch=aarch64
hostname=pi1
reach_addr=198.18.0.11
init=other
apt=yes
docker_installed=yes
@@begin daemon_json
{"insecure-registries": ["pi1:5000"]}
@@end daemon_json
"#;

    /// The daemon's answers to [`reads`] on a manager, from Docker 20.10.24 in the lab
    /// (trimmed): its info, two nodes, and the networks (the playbook's DATA and others).
    fn manager_answers() -> Vec<Response> {
        let ok = |body: &str| Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        };
        vec![
            ok(
                r#"{"ID":"X","ServerVersion":"20.10.24+dfsg1","MemoryLimit":true,"DockerRootDir":"/var/lib/docker","Swarm":{"NodeID":"n1","NodeAddr":"198.18.0.11","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"n1","Addr":"198.18.0.11:2377"}],"Nodes":2,"Managers":1,"Cluster":{"ID":"c1","Version":{"Index":10}}}}"#,
            ),
            ok(
                r#"[{"ID":"n1","Spec":{"Labels":{"zone":"a"},"Role":"manager","Availability":"active"},"Description":{"Hostname":"pi1"},"Status":{"State":"ready","Addr":"198.18.0.11"}},
                  {"ID":"n2","Spec":{"Labels":{},"Role":"worker","Availability":"active"},"Description":{"Hostname":"pi2"},"Status":{"State":"down","Addr":"198.18.0.12"}}]"#,
            ),
            ok(
                r#"[{"Name":"DATA","Scope":"swarm","Driver":"overlay","IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"198.19.10.0/24","Gateway":"198.19.10.1"}]},"Internal":true,"Attachable":false,"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097","encrypted":""},"Labels":null},
                  {"Name":"bridge","Scope":"local","Driver":"bridge","IPAM":{"Config":[{"Subnet":"172.17.0.0/16"}]},"Options":{},"Labels":{}},
                  {"Name":"web_default","Scope":"swarm","Driver":"overlay","IPAM":{"Config":[]},"Options":{},"Labels":{"com.docker.stack.namespace":"web"}}]"#,
            ),
        ]
    }

    fn docker_20() -> Daemon {
        Daemon {
            docker: "20.10.24+dfsg1".into(),
            api: api::OLDEST,
            min_api: ApiVersion::new(1, 12),
        }
    }

    #[test]
    fn parses_a_manager_probe() {
        let mut f = parse(MANAGER).unwrap();
        assert!(!f.docker_running, "the daemon has not answered yet");
        f.read_daemon(
            &docker_20(),
            api::OLDEST,
            &manager_answers(),
            &["DATA", "INTERCO"],
        )
        .unwrap();
        assert_eq!(f.arch, "armhf");
        assert_eq!(f.kernel_arch, "aarch64");
        assert_eq!(f.reach_addr, "198.18.0.11");
        assert!(!f.systemd);
        assert!(f.docker_running);
        assert_eq!(f.docker_version.as_deref(), Some("20.10.24+dfsg1"));
        assert_eq!(f.docker_api, Some(api::OLDEST));
        assert_eq!(f.preflight.docker_memory_limit, "true");
        assert_eq!(
            f.daemon_json.as_deref(),
            Some(r#"{"insecure-registries": ["pi1:5000"]}"#)
        );
        assert!(f.swarm.is_active());
        assert!(f.swarm.control_available);
        assert_eq!(f.swarm.cluster.id, "c1");
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.nodes[0].labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(f.nodes[1].state, "down");
        assert_eq!(
            f.networks,
            vec![NetworkInfo {
                name: "DATA".into(),
                driver: "overlay".into(),
                scope: "swarm".into(),
                attachable: false,
                internal: true,
                subnets: vec!["198.19.10.0/24".into()],
                encrypted: true,
                stack: String::new(),
            }]
        );
    }

    /// A worker refuses the node list and shows its local networks: neither is read.
    #[test]
    fn parses_a_bare_host_and_an_inactive_swarm() {
        let f = parse("hostname=pi3\ndocker_installed=no\n").unwrap();
        assert!(!f.docker_installed && !f.docker_running);
        assert_eq!(f.swarm, SwarmInfo::default());

        let mut f = parse("hostname=pi2\ndocker_installed=yes\n").unwrap();
        let refused = Response {
            status: 503,
            body: br#"{"message":"This node is not a swarm manager."}"#.to_vec(),
        };
        let answers = vec![
            Response {
                status: 200,
                body: br#"{"Swarm":{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}}"#.to_vec(),
            },
            refused,
            manager_answers().remove(2),
        ];
        f.read_daemon(&docker_20(), api::OLDEST, &answers, &["DATA"])
            .unwrap();
        assert!(f.docker_running && !f.swarm.is_active());
        assert!(f.swarm.remote_managers.is_empty());
        assert!(f.nodes.is_empty() && f.networks.is_empty());
    }

    /// The installed package's version is Docker's own, as its daemon would say it.
    #[test]
    fn the_docker_package_is_read_as_its_upstream_version() {
        let version = |line: &str| {
            parse(&format!("hostname=pi2\n{line}\n"))
                .unwrap()
                .docker_package
        };
        assert_eq!(
            version("docker_package=20.10.24+dfsg1-1+deb12u1").as_deref(),
            Some("20.10.24+dfsg1")
        );
        assert_eq!(
            version("docker_package=5:28.5.2-1~debian.12~bookworm").as_deref(),
            Some("28.5.2")
        );
        assert_eq!(
            version("docker_package=26.1.5+dfsg1").as_deref(),
            Some("26.1.5+dfsg1")
        );
        assert_eq!(version("docker_package="), None);
        assert_eq!(version("docker_installed=no"), None);
    }

    #[test]
    fn broken_output_is_an_error_not_a_guess() {
        assert_eq!(
            parse("sudo: a password is required\n").unwrap_err(),
            "probe output has no hostname: the probe did not run"
        );
        assert_eq!(
            parse("hostname=x\n@@begin daemon_json\n").unwrap_err(),
            "probe output ended inside section daemon_json"
        );
        let mut f = parse("hostname=x\n").unwrap();
        let mut answers = manager_answers();
        answers[0].body = b"{not json".to_vec();
        let e = f
            .read_daemon(&docker_20(), api::OLDEST, &answers, &[])
            .unwrap_err();
        assert!(e.starts_with("cannot read the daemon's info:"), "{e}");
        assert!(!f.docker_running);
    }

    #[test]
    fn the_real_probe_runs_in_a_shell_without_docker() {
        // On a machine without a Docker daemon the probe must still report the basics.
        let ran = sh_env(&probe(), &[("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]);
        let f = parse(&ran.stdout).unwrap();
        assert!(!f.hostname.is_empty());
        assert!(!f.arch.is_empty());
        // The preflight's evidence of this machine, read the same way as on a Pi.
        let p = &f.preflight;
        let clock: f64 = p.clock.parse().expect("date +%s.%N is a number");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((clock - now).abs() < 60.0, "{clock} vs {now}");
        assert!(p.disk_free_kib.is_some_and(|k| k > 0), "{p:?}");
        assert!(!p.disk_path.is_empty());
        assert_eq!(p.boot_id.len(), 36, "{p:?}");
        assert!(p.perl, "perl-base is Essential on Debian");
        assert!(["builtin", "module", "none"].contains(&p.module_vxlan.as_str()));
        if p.kernel_config {
            assert!(["y", "m", ""].contains(&p.config_vxlan.as_str()), "{p:?}");
        }
        // The Docker package, as dpkg has it here (none on a machine without one).
        let dpkg = std::process::Command::new("sh")
            .args(["-c", "dpkg-query -W -f='${Status} ${Version}\\n' docker.io 2>/dev/null | sed -n 's/^install ok installed //p'"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        match dpkg.split_once('-') {
            Some((upstream, _)) => assert_eq!(f.docker_package.as_deref(), Some(upstream)),
            None => assert_eq!(f.docker_package, None, "{dpkg:?}"),
        }
    }

    /// Run by a real shell against the stand-in docker: the probe calls no `docker`
    /// (the daemon answers on the API's relay), and measures the free space where
    /// `daemon.json` puts Docker's data (its nearest existing folder).
    #[test]
    fn the_probe_starts_no_docker_and_measures_the_data_root_of_daemon_json() {
        let d = ScratchHost::new();
        let json = d.docker_file("daemon.json");
        std::fs::write(
            &json,
            "{\n  \"log-driver\": \"json-file\",\n  \"data-root\": \"/srv/docker\"\n}\n",
        )
        .unwrap();
        let script = probe().replace("/etc/docker/daemon.json", json.to_str().unwrap());
        let f = parse(&d.run(&script, b"").ok()).unwrap();
        assert_eq!(d.calls(), "");
        assert!(f.daemon_json.as_deref().unwrap().contains("/srv/docker"));
        assert_ne!(f.preflight.disk_path, "/var/lib/docker");
        assert!("/srv/docker".starts_with(&f.preflight.disk_path), "{f:?}");
        // Without a data-root: Docker's default (or its nearest existing folder).
        let d = ScratchHost::new();
        let script = probe().replace("/etc/docker/daemon.json", "/nonexistent/daemon.json");
        let f = parse(&d.run(&script, b"").ok()).unwrap();
        assert!(
            "/var/lib/docker".starts_with(&f.preflight.disk_path),
            "{f:?}"
        );
        assert_eq!(f.daemon_json, None);
        syntax_ok(&probe());
    }
}
