//! Faults and Pi realities on a VM node, with the same commands as on namespace nodes,
//! done the way they happen to a machine of its own, through its guest agent (so they
//! work with the node's link cut or its sshd down):
//!
//! - filters: the same raw-table chains and rules, in the guest's own kernel;
//! - daemons: systemd's units (`ssh.service`, `docker.service`): freeze and thaw signal
//!   the unit's main process; kill is a crash that stays down (SIGKILL with a runtime
//!   drop-in `Restart=no`, and Docker's socket stopped, which would start it again) until
//!   `start` removes the drop-in and starts the unit;
//! - clock: the guest's system clock itself, read by every process, daemons included (a
//!   Pi without a battery); a reboot takes the time of the machine again (its RTC);
//! - reboot: systemd's clean reboot (the agent's `guest-shutdown`), QMP's reset where the
//!   agent does not answer; a new kernel boot id.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::error::{LabError, Result};
use super::super::fault::{Daemon, Iptables};
use super::super::images;
use super::super::layout::NodeSpec;
use super::super::sys::{self, ProcId};
use super::agent::{self, Agent};
use super::node::{self, dir_of};

/// Long enough for a command under emulation on a busy machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A reboot under emulation: 40-84 s measured, more on a loaded machine.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The systemd unit of a daemon in the guest.
pub fn unit(d: Daemon) -> &'static str {
    match d {
        Daemon::Sshd => "ssh.service",
        Daemon::Dockerd => "docker.service",
    }
}

/// `$1` the unit, `$2` the signal.
const SIGNAL_SCRIPT: &str = "pid=$(systemctl show -p MainPID --value \"$1\")\n\
     [ \"${pid:-0}\" -gt 0 ] || { echo \"$1 does not run\" >&2; exit 3; }\n\
     kill -s \"$2\" \"$pid\"\n";

/// `$1` the unit: killed, and kept down (see the module header).
const KILL_SCRIPT: &str = "set -e\n\
     pid=$(systemctl show -p MainPID --value \"$1\")\n\
     [ \"${pid:-0}\" -gt 0 ] || { echo \"$1 does not run\" >&2; exit 3; }\n\
     mkdir -p \"/run/systemd/system/$1.d\"\n\
     printf '[Service]\\nRestart=no\\n' > \"/run/systemd/system/$1.d/rpiprov-lab-killed.conf\"\n\
     systemctl daemon-reload\n\
     kill -s KILL \"$pid\"\n\
     i=0; while kill -0 \"$pid\" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ]; sleep 0.1; done\n\
     if [ \"$1\" = docker.service ]; then systemctl stop docker.socket; fi\n";

/// `$1` the unit: started unless it runs.
const START_SCRIPT: &str = "set -e\n\
     rm -f \"/run/systemd/system/$1.d/rpiprov-lab-killed.conf\"\n\
     systemctl daemon-reload\n\
     if [ \"$(systemctl show -p MainPID --value \"$1\")\" -gt 0 ]; then exit 0; fi\n\
     systemctl reset-failed \"$1\" 2>/dev/null || true\n\
     if [ \"$1\" = docker.service ]; then systemctl start docker.socket; fi\n\
     systemctl start \"$1\"\n";

/// `$1` seconds to add to the clock.
const SKEW_SCRIPT: &str = "date -s \"@$(( $(date +%s) + $1 ))\" >/dev/null";
/// `$1` this machine's time, `SECONDS.NANOS` since the epoch.
const SET_CLOCK_SCRIPT: &str = "date -s \"@$1\" >/dev/null";

/// One VM node of a lab, for the fault commands and the tests.
pub struct Guest {
    lab_dir: PathBuf,
    spec: NodeSpec,
    holder: Option<ProcId>,
    agent: Agent,
}

impl Guest {
    pub fn new(lab_dir: &Path, spec: &NodeSpec, holder: Option<ProcId>) -> Guest {
        Guest {
            lab_dir: lab_dir.to_path_buf(),
            spec: spec.clone(),
            holder,
            agent: Agent::new(&dir_of(lab_dir, spec)),
        }
    }

    fn running(&self) -> Result<ProcId> {
        self.holder.filter(|h| sys::alive(*h)).ok_or_else(|| {
            LabError::Usage(format!(
                "node {} is not running; `rpiprov lab up` restarts it",
                self.spec.name
            ))
        })
    }

    /// Runs a shell script as root in the guest; its stdout.
    pub fn run(&self, script: &str, args: &[&str]) -> Result<String> {
        self.running()?;
        self.agent.run(script, args, None, COMMAND_TIMEOUT)
    }

    pub fn freeze(&self, d: Daemon) -> Result<()> {
        self.run(SIGNAL_SCRIPT, &[unit(d), "STOP"]).map(drop)
    }

    pub fn thaw(&self, d: Daemon) -> Result<()> {
        self.run(SIGNAL_SCRIPT, &[unit(d), "CONT"]).map(drop)
    }

    pub fn kill(&self, d: Daemon) -> Result<()> {
        self.run(KILL_SCRIPT, &[unit(d)]).map(drop)
    }

    /// Starts the daemon unless it runs, and waits until it answers (sshd: port 22 from
    /// here; dockerd: `docker info`).
    pub fn start(&self, d: Daemon) -> Result<()> {
        self.run(START_SCRIPT, &[unit(d)])?;
        let what = format!("{} on {} does not answer", d.name(), self.spec.name);
        match d {
            Daemon::Sshd => super::super::fault::wait_for(&what, Duration::from_secs(60), || {
                node::ssh_login(&self.lab_dir, &self.spec)
            }),
            Daemon::Dockerd => {
                super::super::fault::wait_for(&what, Duration::from_secs(120), || {
                    self.run("docker info >/dev/null", &[]).is_ok()
                })
            }
        }
    }

    pub fn boot_id(&self) -> Result<String> {
        Ok(self
            .run("cat /proc/sys/kernel/random/boot_id", &[])?
            .trim()
            .to_string())
    }

    /// A real reboot: the guest's systemd shuts down and its kernel boots again (QMP's
    /// reset when the agent does not answer); returns the new boot id once `pi` logs in
    /// and, where installed, dockerd answers.
    pub fn reboot(&self) -> Result<String> {
        let holder = self.running()?;
        let old = self.boot_id().ok();
        if old.is_none() || self.agent.reboot().is_err() {
            agent::reset(&dir_of(&self.lab_dir, &self.spec))?;
        }
        node::wait_boot(
            &self.lab_dir,
            &self.spec,
            holder,
            REBOOT_TIMEOUT,
            old.as_deref(),
        )
    }

    pub fn skew_clock(&self, seconds: i64) -> Result<()> {
        self.run(SKEW_SCRIPT, &[&seconds.to_string()]).map(drop)
    }

    /// The guest's clock set to this machine's.
    pub fn clear_clock(&self) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let at = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        self.run(SET_CLOCK_SCRIPT, &[&at]).map(drop)
    }

    /// `docker import` of a rootfs archive into the guest's dockerd.
    pub fn import_image(&self, archive: &Path, name: &str, argv: &[&str]) -> Result<()> {
        self.running()?;
        let bytes = std::fs::read(archive).map_err(|e| LabError::io(archive, e))?;
        self.agent
            .run(
                "docker import --change \"$1\" - \"$2\" >/dev/null",
                &[&images::cmd_change(argv), name],
                Some(&bytes),
                COMMAND_TIMEOUT,
            )
            .map(drop)
    }
}

impl Iptables for Guest {
    fn raw(&self, args: &[String]) -> Result<String> {
        let mut all: Vec<&str> = Vec::with_capacity(args.len());
        all.extend(args.iter().map(String::as_str));
        self.run("exec iptables -w -t raw \"$@\"", &all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts in a real `sh`, against a stand-in `systemctl` that names the unit's
    /// main process: a killed unit gets its drop-in, a frozen one its signal.
    #[test]
    fn the_daemon_scripts_signal_the_units_main_process_and_keep_a_killed_one_down() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let run_dir = d.path().join("run");
        let fake = format!(
            "#!/bin/sh\necho \"$@\" >> {log}\ncase \"$1\" in show) cat {pidf} ;; esac\n",
            log = d.path().join("systemctl.log").display(),
            pidf = d.path().join("pid").display()
        );
        std::fs::write(bin.join("systemctl"), fake).unwrap();
        sys_chmod(&bin.join("systemctl"));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        std::fs::write(d.path().join("pid"), format!("{pid}\n")).unwrap();
        let script = |s: &str, args: &[&str]| {
            let s = s.replace("/run/systemd/system", &run_dir.to_string_lossy());
            let out = std::process::Command::new("sh")
                .args(["-c", &s, "sh"])
                .args(args)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(script(SIGNAL_SCRIPT, &["ssh.service", "STOP"]).0, Some(0));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(state.contains(") T "), "{state}");
        assert_eq!(script(SIGNAL_SCRIPT, &["ssh.service", "CONT"]).0, Some(0));
        // Reaped as soon as it dies, as the guest's systemd would.
        let reaper = std::thread::spawn(move || sleeper.wait().unwrap());
        assert_eq!(script(KILL_SCRIPT, &["docker.service"]).0, Some(0));
        assert!(!reaper.join().unwrap().success());
        let dropin = run_dir.join("docker.service.d/rpiprov-lab-killed.conf");
        assert_eq!(
            std::fs::read_to_string(&dropin).unwrap(),
            "[Service]\nRestart=no\n"
        );
        let log = std::fs::read_to_string(d.path().join("systemctl.log")).unwrap();
        assert!(
            log.ends_with("daemon-reload\nstop docker.socket\n"),
            "{log}"
        );
        // Nothing runs: refused, saying so.
        std::fs::write(d.path().join("pid"), "0\n").unwrap();
        let (code, err) = script(SIGNAL_SCRIPT, &["ssh.service", "STOP"]);
        assert_eq!((code, err.trim()), (Some(3), "ssh.service does not run"));
        assert_eq!(script(START_SCRIPT, &["docker.service"]).0, Some(0));
        assert!(!dropin.exists());
        let log = std::fs::read_to_string(d.path().join("systemctl.log")).unwrap();
        assert!(
            log.ends_with("start docker.socket\nstart docker.service\n"),
            "{log}"
        );
    }

    fn sys_chmod(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
