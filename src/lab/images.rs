//! The lab's container image, built offline from the host's busybox-static (no registry is
//! reachable): a root file system tarball in `docker import` format, plus loading an image
//! into one node's dockerd (until `deploy` ships images itself, and for the tests).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;

use super::error::{LabError, Result};
use super::sys::{self, cmd, run};

pub const IMAGE_NAME: &str = "rpiprov-lab/busybox:1";
pub const IMAGE_ARCHIVE: &str = "images/busybox.tar";
pub const IMAGE_CMD: &[&str] = &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"];

/// Applets linked in /bin. No `wget`: busybox-static's crashes in containers (static glibc
/// and name lookups); `nc` serves for HTTP checks.
const APPLETS: &[&str] = &[
    "sh", "httpd", "nc", "cat", "echo", "sleep", "ls", "hostname", "env", "printf", "ps", "true",
    "false", "test", "[", "mkdir", "rm", "date", "grep", "ip", "ifconfig", "nslookup", "id",
];

pub const INDEX_HTML: &str = "<html><body><h1>rpiprov lab</h1></body></html>\n";

/// Writes `DIR/images/busybox.tar` if it is not there; returns whether it was built.
pub fn ensure_busybox(lab_dir: &Path) -> Result<bool> {
    if lab_dir.join(IMAGE_ARCHIVE).exists() {
        return Ok(false);
    }
    let busybox = sys::find_in_path("busybox").ok_or_else(|| {
        LabError::Missing("no busybox binary (apt-get install busybox-static)".into())
    })?;
    ensure_archive(lab_dir, &busybox, IMAGE_ARCHIVE)
}

/// Writes the image archive `rel` (under `DIR/images/`) from this `busybox` binary (of any
/// architecture: VM labs have one per architecture) if it is not there; whether it was.
pub fn ensure_archive(lab_dir: &Path, busybox: &Path, rel: &str) -> Result<bool> {
    let archive = lab_dir.join(rel);
    if archive.exists() {
        return Ok(false);
    }
    let images = lab_dir.join("images");
    sys::mkdir(&images, 0o755)?;
    // Built in a fresh directory of a random name, then renamed into place; `down` removes
    // one a crash left.
    let work = sys::temp_dir(&images, "busybox")?;
    let built = build_archive(busybox, &work, &archive);
    let _ = fs::remove_dir_all(&work);
    built.map(|()| true)
}

fn build_archive(busybox: &Path, work: &Path, archive: &Path) -> Result<()> {
    let stage = work.join("root");
    for d in ["bin", "www", "tmp", "etc"] {
        sys::mkdir(&stage.join(d), if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    let bin = stage.join("bin/busybox");
    fs::copy(busybox, &bin).map_err(|e| LabError::io(&bin, e))?;
    for applet in APPLETS {
        let link = stage.join("bin").join(applet);
        symlink("busybox", &link).map_err(|e| LabError::io(&link, e))?;
    }
    sys::write_file(&stage.join("www/index.html"), INDEX_HTML.as_bytes(), 0o644)?;
    // Containers resolve users by name in a few applets (ps, id).
    sys::write_file(
        &stage.join("etc/passwd"),
        b"root:x:0:0:root:/:/bin/sh\n",
        0o644,
    )?;
    sys::write_file(&stage.join("etc/group"), b"root:x:0:\n", 0o644)?;
    let tmp = work.join("busybox.tar");
    // Reproducible: same bytes on every run and machine with the same busybox.
    run(cmd([
        "tar",
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@0",
        "-C",
        &stage.to_string_lossy(),
        "-cf",
        &tmp.to_string_lossy(),
        ".",
    ]))?;
    fs::rename(&tmp, archive).map_err(|e| LabError::io(archive, e))
}

/// `CMD [...]` for `docker import --change`, as JSON (exec form).
pub fn cmd_change(argv: &[&str]) -> String {
    format!(
        "CMD {}",
        serde_json::to_string(argv).expect("strings serialise")
    )
}

/// Imports a rootfs archive into the dockerd of the node entered by `enter`.
pub fn import(
    mut enter: std::process::Command,
    archive: &Path,
    name: &str,
    argv: &[&str],
) -> Result<()> {
    let file = fs::File::open(archive).map_err(|e| LabError::io(archive, e))?;
    enter.args(["docker", "import", "--change", &cmd_change(argv), "-", name]);
    enter.stdin(Stdio::from(file));
    let out = enter
        .output()
        .map_err(|e| LabError::Other(format!("docker import: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Other(format!(
            "docker import {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_change_is_exec_form_json() {
        assert_eq!(
            cmd_change(IMAGE_CMD),
            r#"CMD ["/bin/httpd","-f","-p","8080","-h","/www"]"#
        );
    }
}
