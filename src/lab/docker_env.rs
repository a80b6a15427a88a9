//! dockerd's environment on a lab node, set the Debian way: in the node's
//! `/etc/default/docker`, then `service docker restart` (`Lab::set_docker_env`).
//!
//! What Debian does with that file (bookworm, trixie and sid ship the same init script; sid's
//! runs under bash): `/etc/init.d/docker` *sources* it, so only variables it `export`s reach
//! dockerd (start-stop-daemon passes its environment on), and `DOCKER_OPTS` is appended to
//! dockerd's arguments; systemd's `docker.service` reads it as `EnvironmentFile=`, where every
//! `NAME=value` line is in dockerd's environment. The lab writes both forms, so the same
//! file means the same on a Pi with systemd and on a lab node (which has no systemd).
//! `service` runs the init script with a clean environment: nothing of the caller's leaks in.

use crate::shell::quote;

/// The first line of what [`with_var`] writes for `name`, so that it finds its own lines.
fn marker(name: &str) -> String {
    format!(
        "# Lab::set_docker_env {name}: in dockerd's environment (exported for /etc/init.d/docker)"
    )
}

/// A variable name as the shell and systemd take it.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `current` (the node's `/etc/default/docker`) with `name` set to `value`, or removed with
/// `None`: every earlier assignment or export of it goes, the rest of the file stays.
pub fn with_var(current: &str, name: &str, value: Option<&str>) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not an environment variable name (letters, digits, _)"
        ));
    }
    if value.is_some_and(|v| v.contains(['\n', '\0'])) {
        return Err(format!("the value of {name} holds a newline or a NUL"));
    }
    let assign = format!("{name}=");
    let export = format!("export {name}");
    let ours = marker(name);
    let mut out: String = current
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l == ours
                || l.starts_with(&assign)
                || l == export
                || l.starts_with(&format!("{export}=")))
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if let Some(v) = value {
        out.push_str(&format!("{ours}\n{name}={}\nexport {name}\n", quote(v)));
    }
    Ok(out)
}

/// Run in the node with the new file on stdin: it replaces `/etc/default/docker` (written
/// beside it, then renamed: never half a file) and Docker restarts through its init script.
pub const RESTART_SCRIPT: &str = "set -e\n\
     [ -x /etc/init.d/docker ] || { echo 'Docker is not installed on this node' >&2; exit 3; }\n\
     cat > /etc/default/docker.lab-new\n\
     chmod 644 /etc/default/docker.lab-new\n\
     mv -f /etc/default/docker.lab-new /etc/default/docker\n\
     service docker restart >>/run/rpiprov-node/dockerd.log 2>&1 </dev/null\n";

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str =
        "# Here in Debian, this file is sourced by:\n#   - /etc/init.d/docker (sysvinit)\n";

    #[test]
    fn a_variable_is_assigned_and_exported_once_and_removed_again() {
        let set = with_var(DEBIAN, "DOCKER_MIN_API_VERSION", Some("1.44")).unwrap();
        assert_eq!(
            set,
            format!(
                "{DEBIAN}# Lab::set_docker_env DOCKER_MIN_API_VERSION: in dockerd's environment (exported for /etc/init.d/docker)\n\
                 DOCKER_MIN_API_VERSION=1.44\nexport DOCKER_MIN_API_VERSION\n"
            )
        );
        // Set again: the old value goes, one assignment stays.
        let again = with_var(&set, "DOCKER_MIN_API_VERSION", Some("1.40")).unwrap();
        assert_eq!(again.matches("DOCKER_MIN_API_VERSION=").count(), 1);
        assert!(again.contains("DOCKER_MIN_API_VERSION=1.40\n"));
        // Another variable, and a hand-written assignment of the first, are handled alike.
        let two = with_var(&again, "HTTP_PROXY", Some("http://198.18.0.1:3128 x")).unwrap();
        assert!(two.contains("HTTP_PROXY='http://198.18.0.1:3128 x'\nexport HTTP_PROXY\n"));
        assert!(two.contains("DOCKER_MIN_API_VERSION=1.40\n"));
        let by_hand = format!("{DEBIAN}export DOCKER_MIN_API_VERSION=1.30\n");
        let gone = with_var(&by_hand, "DOCKER_MIN_API_VERSION", None).unwrap();
        assert_eq!(gone, DEBIAN);
        assert_eq!(with_var(&two, "HTTP_PROXY", None).unwrap(), again);
    }

    #[test]
    fn names_and_values_that_would_break_the_file_are_refused() {
        for bad in ["", "1X", "A-B", "A B", "A;B"] {
            assert!(with_var("", bad, Some("1")).is_err(), "{bad}");
        }
        assert!(with_var("", "A", Some("1\nexport B=2")).is_err());
        assert!(with_var("", "_A1", Some("")).is_ok());
    }

    #[test]
    fn the_file_is_replaced_whole_before_docker_restarts() {
        let mv = RESTART_SCRIPT
            .find("mv -f /etc/default/docker.lab-new /etc/default/docker\n")
            .unwrap();
        assert!(mv < RESTART_SCRIPT.find("service docker restart").unwrap());
    }
}
