//! The Pi under Docker, for `maintain --reboot`: its boot id ([`boot_id`]), which a reboot
//! changes (the SSH port answering again proves nothing: a Pi that never went down
//! answers too), and the reboot itself ([`reboot`]), started detached so that the command
//! returns its answer before the connection drops.

use crate::shell::quote;

/// The kernel's boot id: a new random UUID at every boot.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Prints the boot id. No root needed.
pub fn boot_id() -> String {
    format!("cat {BOOT_ID}")
}

/// Reads [`boot_id`]'s answer: a UUID, or `None` when it is not one.
pub fn parse_boot_id(output: &str) -> Option<&str> {
    let id = output.trim();
    let ok = id.len() == 36
        && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && id.matches('-').count() == 4;
    ok.then_some(id)
}

/// Reboots the host, as root, two seconds after the command returned (`setsid -f`: the
/// reboot does not belong to the SSH session, which it ends). `custom` is the user's own
/// command (`maintain --reboot-command`); without one, `systemctl reboot` where systemd
/// runs. Where it does not (a container, the lab's nodes) nothing is run: prints
/// `@@no-systemd` (see [`parse_reboot`]) rather than guess at a `reboot` that might reach
/// another machine's kernel.
pub fn reboot(custom: Option<&str>) -> String {
    let detached = |cmd: &str| {
        format!(
            "setsid -f sh -c {} >/dev/null 2>&1 </dev/null; echo '@@rebooting'",
            quote(&format!("sleep 2; {cmd}"))
        )
    };
    match custom {
        Some(cmd) => detached(cmd),
        None => format!(
            "if [ -d /run/systemd/system ]; then {}; else echo '@@no-systemd'; fi",
            detached("systemctl reboot")
        ),
    }
}

/// Whether [`reboot`] started a reboot; `Err` says why not and what to do.
pub fn parse_reboot(output: &str) -> Result<(), String> {
    if output.contains("@@rebooting") {
        Ok(())
    } else if output.contains("@@no-systemd") {
        Err("systemd does not run there, so rpiprov does not know how it reboots: give the command with --reboot-command".into())
    } else {
        Err(format!("the reboot command said: {}", output.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn reboot_commands() {
        assert_eq!(
            reboot(None),
            "if [ -d /run/systemd/system ]; then setsid -f sh -c 'sleep 2; systemctl reboot' >/dev/null 2>&1 </dev/null; echo '@@rebooting'; else echo '@@no-systemd'; fi"
        );
        assert_eq!(
            reboot(Some("touch /tmp/x")),
            "setsid -f sh -c 'sleep 2; touch /tmp/x' >/dev/null 2>&1 </dev/null; echo '@@rebooting'"
        );
        syntax_ok(&reboot(None));
        assert_eq!(boot_id(), "cat /proc/sys/kernel/random/boot_id");
    }

    /// The command returns at once with its answer; the reboot runs detached afterwards.
    #[test]
    fn the_reboot_runs_detached_after_the_answer() {
        let host = ScratchHost::new();
        let mark = host.docker_file("rebooted");
        let t = std::time::Instant::now();
        let ran = host.run(&reboot(Some(&format!("touch {}", mark.display()))), b"");
        assert_eq!(ran.stdout, "@@rebooting\n");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert!(!mark.exists(), "ran before the answer");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !mark.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(mark.exists(), "the detached command never ran");
        assert_eq!(parse_reboot(&ran.stdout), Ok(()));
        assert_eq!(
            parse_reboot("@@no-systemd\n"),
            Err("systemd does not run there, so rpiprov does not know how it reboots: give the command with --reboot-command".into())
        );
    }

    #[test]
    fn boot_ids_are_read() {
        assert_eq!(
            parse_boot_id("0f3c5f0e-8a4b-4c1e-9d2a-6b7e8f9a0b1c\n"),
            Some("0f3c5f0e-8a4b-4c1e-9d2a-6b7e8f9a0b1c")
        );
        assert_eq!(parse_boot_id("cat: no such file\n"), None);
        assert_eq!(parse_boot_id(""), None);
    }
}
