//! The qemu process of a VM node: its command line (pure), its start, detached from `lab
//! up` as a namespace node's holder is, and the choice of accelerator.
//!
//! Emulation (TCG) unless a short boot test shows that KVM really runs a stock guest: on
//! this project's machines `/dev/kvm` is the host's PVM flavour (no vmx/svm), where qemu
//! aborts at the first MSR and a Debian kernel never gets past its decompressor. The
//! verdict is kept in the machine directory (gone with a reboot of the machine).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::super::error::{LabError, Result};
use super::super::net;
use super::super::sys::{self, ProcId};
use super::Arch;

/// The guest's memory: a Pi 3's, and room for Docker and a few tasks.
pub const MEMORY_MB: u32 = 1024;
/// vCPUs: qemu runs each in a thread of its own (MTTCG); an idle one costs nothing.
pub const CPUS: u32 = 2;
/// qemu's translation cache (MB): its default for system emulation is 1 GiB per VM, of
/// which a guest touches most over time; 256 kept boots as fast here (see docs/LAB.md).
const TB_SIZE_MB: u32 = 256;
/// The file of the guest's serial console in the node directory (the boot log).
pub const CONSOLE: &str = "console.log";
pub const AGENT_SOCKET: &str = "qga.sock";
pub const QMP_SOCKET: &str = "qmp.sock";
const PROBE_LOG: &str = "kvm-probe.log";
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

pub fn system_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-system-x86_64",
        Arch::Arm64 => "qemu-system-aarch64",
    }
}

/// Everything one qemu command line needs.
pub struct Machine<'a> {
    pub name: &'a str,
    pub arch: Arch,
    pub accel: Accel,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    /// The node's disk, relative to the node directory (qemu runs there).
    pub disk: &'a str,
    pub tap: &'a str,
    pub mac: &'a str,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The command line. Sockets and files are relative: qemu runs in the node directory, so
/// that a socket path never passes the 108 bytes a unix socket name may have.
pub fn argv(m: &Machine) -> Vec<String> {
    let (machine, cpu) = match (m.arch, m.accel) {
        (_, Accel::Kvm) => (if m.arch == Arch::Amd64 { "pc" } else { "virt" }, "host"),
        (Arch::Amd64, Accel::Tcg) => ("pc", "max"),
        // A Pi 4's core.
        (Arch::Arm64, Accel::Tcg) => ("virt", "cortex-a72"),
    };
    let accel = match m.accel {
        Accel::Tcg => format!("tcg,thread=multi,tb-size={TB_SIZE_MB}"),
        Accel::Kvm => "kvm".to_string(),
    };
    let mut a = strings(&[
        system_binary(m.arch),
        "-name",
        m.name,
        "-nodefaults",
        "-no-user-config",
    ]);
    a.extend(strings(&[
        "-machine", machine, "-accel", &accel, "-cpu", cpu,
    ]));
    a.extend(strings(&[
        "-smp",
        &CPUS.to_string(),
        "-m",
        &MEMORY_MB.to_string(),
    ]));
    a.extend(strings(&[
        "-kernel",
        &m.kernel.to_string_lossy(),
        "-initrd",
        &m.initrd.to_string_lossy(),
    ]));
    a.extend(strings(&["-append", m.cmdline, "-rtc", "base=utc"]));
    a.extend(strings(&[
        "-drive",
        &format!("file={},if=none,id=disk,format=qcow2", m.disk),
        "-device",
        "virtio-blk-pci,drive=disk",
        "-netdev",
        &format!("tap,id=net,ifname={},script=no,downscript=no", m.tap),
        "-device",
        &format!("virtio-net-pci,netdev=net,mac={},romfile=", m.mac),
        "-device",
        "virtio-rng-pci",
        "-device",
        "virtio-serial-pci",
        "-chardev",
        &format!("socket,id=agent,path={AGENT_SOCKET},server=on,wait=off"),
        "-device",
        "virtserialport,chardev=agent,name=org.qemu.guest_agent.0",
        "-qmp",
        &format!("unix:{QMP_SOCKET},server=on,wait=off"),
        "-serial",
        &format!("file:{CONSOLE}"),
        "-display",
        "none",
    ]));
    a
}

/// Starts qemu in `dir` (its own session, nothing of this process's environment), its
/// output in `qemu.log`; returns its identity. Never waited for: it outlives `lab up`.
pub fn spawn(name: &str, dir: &Path, argv: &[String]) -> Result<ProcId> {
    let log_path = dir.join("qemu.log");
    let log = sys::create_fresh(&log_path, 0o644)?;
    let log2 = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    let _ = sys::create_fresh(&dir.join(CONSOLE), 0o600)?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = c.spawn().map_err(|e| LabError::Node {
        node: name.to_string(),
        message: format!("cannot start {}: {e}", argv[0]),
    })?;
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    drop(child);
    sys::proc_id(pid).ok_or_else(|| LabError::Node {
        node: name.to_string(),
        message: format!("qemu {pid} ended at once; {}", log_path.display()),
    })
}

fn verdict_file(arch: Arch) -> Result<PathBuf> {
    let dir = Path::new(net::MACHINE_DIR);
    sys::private_dir(dir)?;
    Ok(dir.join(format!("accel-{arch}")))
}

/// The accelerator for guests of `arch`: KVM where `/dev/kvm` exists, the guest is of this
/// machine's architecture and a boot test of the image's kernel reached its `/init` under
/// it; else TCG. `work` is a directory of the lab's for the test's files.
pub fn accel(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    work: &Path,
    say: &dyn Fn(&str),
) -> Result<Accel> {
    if Arch::host() != Some(arch) || !Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let file = verdict_file(arch)?;
    if let Ok(v) = fs::read_to_string(&file) {
        return Ok(if v.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        });
    }
    let ok = probe(arch, kernel, initrd, work)?;
    let (accel, word) = if ok {
        (Accel::Kvm, "kvm")
    } else {
        (Accel::Tcg, "tcg")
    };
    say(&if ok {
        format!("/dev/kvm booted the {arch} kernel: VMs use KVM")
    } else {
        format!(
            "/dev/kvm did not boot the {arch} kernel within {} s (PVM, or no vmx/svm): VMs are emulated (TCG)",
            PROBE_TIMEOUT.as_secs()
        )
    });
    sys::write_file(&file, word.as_bytes(), 0o644)?;
    Ok(accel)
}

/// Boots the kernel and initramfs under KVM with `rpiprov.probe` (the initramfs says so and
/// powers off as soon as its modules are in); whether that came within the time.
fn probe(arch: Arch, kernel: &Path, initrd: &Path, work: &Path) -> Result<bool> {
    let log = work.join(PROBE_LOG);
    let _ = fs::remove_file(&log);
    let (machine, console) = match arch {
        Arch::Amd64 => ("pc", "ttyS0"),
        Arch::Arm64 => ("virt", "ttyAMA0"),
    };
    let mut child = Command::new(system_binary(arch))
        .args([
            "-nodefaults",
            "-no-user-config",
            "-machine",
            machine,
            "-accel",
            "kvm",
            "-cpu",
            "host",
        ])
        .args(["-m", "256", "-display", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &format!("console={console} rpiprov.probe")])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LabError::Other(format!("cannot run {}: {e}", system_binary(arch))))?;
    let started = Instant::now();
    let mut seen = false;
    while started.elapsed() < PROBE_TIMEOUT {
        seen = fs::read_to_string(&log).is_ok_and(|t| t.contains("rpiprov-init: probe ok"));
        if seen || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(&log);
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulated_arm64_node_is_a_cortex_a72_on_its_tap_with_the_agent_and_qmp() {
        let m = Machine {
            name: "pi2",
            arch: Arch::Arm64,
            accel: Accel::Tcg,
            kernel: Path::new("/c/vm/bookworm-arm64/boot/vmlinuz"),
            initrd: Path::new("initrd.img"),
            cmdline: "console=ttyAMA0 root=/dev/vda rw",
            disk: "disk.qcow2",
            tap: "rplabcdeft2",
            mac: "52:54:ab:cd:ef:02",
        };
        assert_eq!(
            crate::shell::join(argv(&m)),
            "qemu-system-aarch64 -name pi2 -nodefaults -no-user-config -machine virt \
             -accel tcg,thread=multi,tb-size=256 -cpu cortex-a72 -smp 2 -m 1024 \
             -kernel /c/vm/bookworm-arm64/boot/vmlinuz -initrd initrd.img \
             -append 'console=ttyAMA0 root=/dev/vda rw' -rtc base=utc \
             -drive file=disk.qcow2,if=none,id=disk,format=qcow2 -device virtio-blk-pci,drive=disk \
             -netdev tap,id=net,ifname=rplabcdeft2,script=no,downscript=no \
             -device virtio-net-pci,netdev=net,mac=52:54:ab:cd:ef:02,romfile= \
             -device virtio-rng-pci -device virtio-serial-pci \
             -chardev socket,id=agent,path=qga.sock,server=on,wait=off \
             -device virtserialport,chardev=agent,name=org.qemu.guest_agent.0 \
             -qmp unix:qmp.sock,server=on,wait=off -serial file:console.log -display none"
        );
    }

    #[test]
    fn amd64_is_a_pc_with_every_cpu_feature_or_the_hosts_under_kvm() {
        let mut m = Machine {
            name: "pi1",
            arch: Arch::Amd64,
            accel: Accel::Tcg,
            kernel: Path::new("k"),
            initrd: Path::new("i"),
            cmdline: "c",
            disk: "d",
            tap: "t",
            mac: "m",
        };
        let s = argv(&m).join(" ");
        assert!(s.starts_with("qemu-system-x86_64 -name pi1 "), "{s}");
        assert!(
            s.contains(" -machine pc -accel tcg,thread=multi,tb-size=256 -cpu max "),
            "{s}"
        );
        m.accel = Accel::Kvm;
        assert!(
            argv(&m)
                .join(" ")
                .contains(" -machine pc -accel kvm -cpu host ")
        );
    }
}
