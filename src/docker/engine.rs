//! The Docker daemon on a host: installing it by the inventory's method, starting it,
//! restarting it after its settings changed, stopping it for a copy of its swarm state, and merging the inventory's settings into
//! [`DAEMON_JSON`] without losing the keys the user set by hand.

use serde_json::{Map, Value};

use crate::config::InstallMethod;
use crate::shell::quote;

/// The daemon's settings file.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

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

/// Upgrades Docker by the inventory's install method, for `maintain --upgrade-docker`
/// (the node is drained first). The packages' own scripts restart the daemon; `maintain`
/// then waits until it answers and the node is back in the swarm. `None` for `skip`:
/// rpiprov does not manage that Docker.
pub fn upgrade_docker(method: &InstallMethod) -> Option<String> {
    const APT: &str = "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --only-upgrade -o Dpkg::Options::=--force-confold";
    match method {
        InstallMethod::Distro => Some(format!("{APT} docker.io")),
        // get.docker.com installs Docker's own packages from its apt repository.
        InstallMethod::GetDocker => Some(format!(
            "{APT} docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin"
        )),
        // The user's installer, run again: it is theirs to install the newest.
        InstallMethod::Command(_) => install_docker(method),
        InstallMethod::Skip => None,
    }
}

/// Waits until the daemon answers, up to 60 s.
const WAIT_FOR_DAEMON: &str = concat!(
    "i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); ",
    "if [ $i -ge 60 ]; then echo 'dockerd did not answer within 60s' >&2; exit 1; fi; sleep 1; done"
);

/// Enables and starts the daemon, then waits until it answers (up to 60 s). systemd is used
/// only where it is PID 1 (a container or chroot has no systemd even if installed).
pub fn start_docker() -> String {
    format!(
        "if [ -d /run/systemd/system ]; then systemctl enable docker >/dev/null 2>&1; systemctl start docker; else service docker start || /etc/init.d/docker start; fi; {WAIT_FOR_DAEMON}"
    )
}

/// Stops the daemon (and, under systemd, the socket that would start it again at the next
/// client's knock), for a copy of its state (`rpiprov backup`, `restore`). Returns once
/// it is down: both systemctl and Debian's init script wait for the process to end.
pub fn stop_docker() -> String {
    "if [ -d /run/systemd/system ]; then systemctl stop docker.socket >/dev/null 2>&1 || true; systemctl stop docker.service; else service docker stop || /etc/init.d/docker stop; fi".to_string()
}

/// Restarts the daemon after its settings changed, then waits until it answers.
pub fn restart_docker() -> String {
    format!(
        "if [ -d /run/systemd/system ]; then systemctl restart docker; else service docker restart || /etc/init.d/docker restart; fi; {WAIT_FOR_DAEMON}"
    )
}

/// Merges the inventory's daemon settings into the host's `daemon.json`. Keys the user set
/// and the inventory does not name are kept; lists are united (a registry the user added by
/// hand stays); objects merge key by key. Returns the new text, or `None` when the file
/// already says all of it.
pub fn merge_daemon_json(
    current: Option<&str>,
    wanted: &Map<String, Value>,
) -> Result<Option<String>, String> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut doc = match current.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(format!(
                    "{DAEMON_JSON} is not a JSON object; fix it by hand"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{DAEMON_JSON} is not valid JSON ({e}); fix it by hand, rpiprov will not overwrite it"
                ));
            }
        },
    };
    let before = Value::Object(doc.clone());
    merge_into(&mut doc, wanted);
    let after = Value::Object(doc);
    if after == before {
        return Ok(None);
    }
    let mut text = serde_json::to_string_pretty(&after).expect("JSON values serialise");
    text.push('\n');
    Ok(Some(text))
}

fn merge_into(doc: &mut Map<String, Value>, wanted: &Map<String, Value>) {
    for (k, v) in wanted {
        match (doc.get_mut(k), v) {
            (Some(Value::Object(have)), Value::Object(want)) => merge_into(have, want),
            (Some(Value::Array(have)), Value::Array(want)) => {
                for item in want {
                    if !have.contains(item) {
                        have.push(item.clone());
                    }
                }
            }
            _ => {
                doc.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_follow_the_install_method() {
        assert_eq!(
            upgrade_docker(&InstallMethod::Distro).unwrap(),
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --only-upgrade -o Dpkg::Options::=--force-confold docker.io"
        );
        assert!(
            upgrade_docker(&InstallMethod::GetDocker)
                .unwrap()
                .ends_with("--only-upgrade -o Dpkg::Options::=--force-confold docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin")
        );
        assert_eq!(
            upgrade_docker(&InstallMethod::Command("my-installer --latest".into())).unwrap(),
            "sh -c 'my-installer --latest'"
        );
        assert_eq!(upgrade_docker(&InstallMethod::Skip), None);
    }
    use serde_json::json;

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
    fn daemon_commands() {
        assert_eq!(
            start_docker(),
            "if [ -d /run/systemd/system ]; then systemctl enable docker >/dev/null 2>&1; systemctl start docker; else service docker start || /etc/init.d/docker start; fi; i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge 60 ]; then echo 'dockerd did not answer within 60s' >&2; exit 1; fi; sleep 1; done"
        );
        assert_eq!(
            restart_docker(),
            "if [ -d /run/systemd/system ]; then systemctl restart docker; else service docker restart || /etc/init.d/docker restart; fi; i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge 60 ]; then echo 'dockerd did not answer within 60s' >&2; exit 1; fi; sleep 1; done"
        );
        assert_eq!(
            stop_docker(),
            "if [ -d /run/systemd/system ]; then systemctl stop docker.socket >/dev/null 2>&1 || true; systemctl stop docker.service; else service docker stop || /etc/init.d/docker stop; fi"
        );
        for s in [start_docker(), restart_docker(), stop_docker()] {
            crate::testing::script::syntax_ok(&s);
        }
    }

    #[test]
    fn daemon_json_merge_keeps_user_keys_and_unites_lists() {
        let wanted = json!({"insecure-registries": ["pi1:5000"], "log-driver": "journald"});
        let wanted = wanted.as_object().unwrap();
        let merged = merge_daemon_json(
            Some(r#"{"insecure-registries": ["mine:5000"], "debug": true}"#),
            wanted,
        )
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            v,
            json!({"insecure-registries": ["mine:5000", "pi1:5000"], "debug": true, "log-driver": "journald"})
        );
        // Already there: no change, no restart.
        assert_eq!(merge_daemon_json(Some(&merged), wanted).unwrap(), None);
        assert_eq!(merge_daemon_json(None, &Map::new()).unwrap(), None);
        assert_eq!(
            merge_daemon_json(Some("{oops"), wanted).unwrap_err(),
            "/etc/docker/daemon.json is not valid JSON (key must be a string at line 1 column 2); fix it by hand, rpiprov will not overwrite it"
        );
    }
}
