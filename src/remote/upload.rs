//! Atomic uploads over a plain exec (no sftp: it works through sudo too), in one channel.
//!
//! The remote script first compares the file's sha256 (and mode) with ours; when they
//! match it says so and the data is never sent. Otherwise it creates the folder and a
//! temporary file next to the destination, says "send", receives the bytes on stdin,
//! checks their sha256 (a cut connection must not install half a file), sets the mode and
//! renames over the destination: readers see the old file or the new one, never a mix.
//! The temporary file is removed on every other way out: a failed check, and the signals
//! a lost or abandoned session brings (the client killed or interrupted: sshd closes the
//! pipes, and the script's next write to them raises SIGPIPE).

use sha2::{Digest, Sha256};

use super::exec::Gate;
use super::session::Session;
use super::{ExecRequest, RemoteError, UploadOutcome, UploadRequest};
use crate::shell::quote;

const SEND: &str = "rpiprov-upload:send";
const UNCHANGED: &str = "rpiprov-upload:unchanged";
const CHMOD: &str = "rpiprov-upload:chmod";
const WRITTEN: &str = "rpiprov-upload:written";

/// Splits an absolute file path into folder and file name.
fn split(dest: &str) -> Option<(&str, &str)> {
    if !dest.starts_with('/') || dest.ends_with('/') {
        return None;
    }
    let (dir, name) = dest.rsplit_once('/')?;
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((if dir.is_empty() { "/" } else { dir }, name))
}

/// The remote script for one upload (pure, so that it can be checked without SSH).
pub(crate) fn script(dest: &str, mode: u32, sha256: &str) -> Option<String> {
    let (dir, name) = split(dest)?;
    let mode = format!("{:o}", mode & 0o7777);
    let template = if dir == "/" {
        format!("/.{name}.rpiprov-tmp.XXXXXX")
    } else {
        format!("{dir}/.{name}.rpiprov-tmp.XXXXXX")
    };
    let (f, d, t, m, h) = (
        quote(dest),
        quote(dir),
        quote(&template),
        quote(&mode),
        quote(sha256),
    );
    Some(format!(
        "set -e
f={f}
if [ -f \"$f\" ] && [ \"$(sha256sum <\"$f\" | cut -c1-64)\" = {h} ]; then
  if [ \"$(stat -c %a \"$f\")\" = {m} ]; then echo {UNCHANGED}; else chmod {m} \"$f\"; echo {CHMOD}; fi
  exit 0
fi
if [ -d \"$f\" ]; then echo \"rpiprov: $f is a directory\" >&2; exit 1; fi
mkdir -p {d}
t=
trap 'rm -f \"$t\"' EXIT
trap 'rm -f \"$t\"; exit 1' HUP INT TERM PIPE
t=$(mktemp {t})
echo {SEND}
cat >\"$t\"
if [ \"$(sha256sum <\"$t\" | cut -c1-64)\" != {h} ]; then echo 'rpiprov: the data arrived incomplete' >&2; exit 1; fi
chmod {m} \"$t\"
mv -f \"$t\" \"$f\"
trap - EXIT HUP INT TERM PIPE
echo {WRITTEN}
"
    ))
}

pub(crate) async fn upload(s: &Session, req: UploadRequest) -> Result<UploadOutcome, RemoteError> {
    use super::Remote;
    let host = s.host().to_string();
    let dest = req.dest.clone();
    let err = |reason: String| RemoteError::Upload {
        host: host.clone(),
        dest: dest.clone(),
        reason,
    };
    let sha = hex::encode(Sha256::digest(&req.contents));
    let script = script(&req.dest, req.mode, &sha)
        .ok_or_else(|| err("the destination must be an absolute file path".into()))?;
    let exec = ExecRequest {
        command: script,
        privileged: req.privileged,
        // Image archives can be large: moved, not copied.
        stdin: Some(req.contents),
        timeout: Some(s.command_timeout()),
        // The sha256 check makes a second run of the script harmless.
        idempotent: true,
        interrupt: None,
    };
    let gate = Gate {
        go: SEND.into(),
        skip: vec![UNCHANGED.into(), CHMOD.into()],
    };
    let out = s.run(exec, Some(gate), None).await.map_err(|e| match e {
        // The script is long; the destination says more.
        RemoteError::CommandTimeout { host, secs, .. } => RemoteError::CommandTimeout {
            host,
            secs,
            command: format!("upload to {dest}"),
        },
        other => other,
    })?;
    let stdout = out.stdout_str();
    let said = |m: &str| stdout.lines().any(|l| l == m);
    if !out.success() {
        let mut reason = out.stderr_str().trim().to_string();
        if reason.is_empty() {
            reason = format!("exit status {}", out.status);
        }
        return Err(err(reason));
    }
    if said(UNCHANGED) {
        Ok(UploadOutcome::Unchanged)
    } else if said(WRITTEN) || said(CHMOD) {
        Ok(UploadOutcome::Written)
    } else {
        Err(err(format!(
            "unexpected answer from the remote side: {}",
            stdout.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The script for `dest`, run by a local `sh` as the remote side would, its three
    /// streams piped.
    fn start(dest: &std::path::Path, mode: u32, sha: &str) -> std::process::Child {
        Command::new("sh")
            .arg("-c")
            .arg(script(dest.to_str().unwrap(), mode, sha).unwrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn destinations_must_be_absolute_files() {
        assert_eq!(
            split("/etc/docker/daemon.json"),
            Some(("/etc/docker", "daemon.json"))
        );
        assert_eq!(split("/x"), Some(("/", "x")));
        assert_eq!(split("etc/x"), None);
        assert_eq!(split("/etc/"), None);
        assert_eq!(split("/etc/.."), None);
        assert!(script("relative", 0o644, "00").is_none());
    }

    #[test]
    fn script_quotes_the_path() {
        let s = script("/tmp/a b/it's", 0o640, "ab").unwrap();
        assert!(s.contains("f='/tmp/a b/it'\\''s'"), "{s}");
        assert!(s.contains("mkdir -p '/tmp/a b'"), "{s}");
        assert!(
            s.contains("mktemp '/tmp/a b/.it'\\''s.rpiprov-tmp.XXXXXX'"),
            "{s}"
        );
        assert!(s.contains("chmod 640 \"$t\""), "{s}");
    }

    /// Runs the script with a local `sh`, as the remote side would, and checks the disk.
    #[test]
    fn script_writes_atomically_then_skips() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("new dir/conf.json");
        let data = b"{\"a\":1}\n".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        let run = |stdin: &[u8]| {
            use std::io::Write;
            let mut child = start(&dest, 0o600, &sha);
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            child.wait_with_output().unwrap()
        };
        let out = run(&data);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{SEND}\n{WRITTEN}\n")
        );
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let out = run(b"");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{UNCHANGED}\n")
        );
        // Only the destination is left in the folder: no temporary file.
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    /// What a session that vanished mid-upload leaves: sshd closes the script's pipes, so
    /// its stdin ends early and its next write to stderr raises SIGPIPE. The old file
    /// stays, and no temporary file.
    #[test]
    fn an_upload_cut_off_with_its_pipes_closed_leaves_the_old_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("web.yml");
        std::fs::write(&dest, b"old").unwrap();
        let sha = hex::encode(Sha256::digest(b"the full new contents"));
        use std::io::{Read, Write};
        let mut child = start(&dest, 0o644, &sha);
        let mut stdout = child.stdout.take().unwrap();
        let mut said = [0u8; SEND.len() + 1];
        stdout.read_exact(&mut said).unwrap();
        assert_eq!(&said[..SEND.len()], SEND.as_bytes());
        // The temporary file exists now, half written.
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"the full")
            .unwrap();
        drop(child.stderr.take());
        drop(stdout);
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["web.yml"]);
    }

    #[test]
    fn truncated_data_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(&dest, b"old").unwrap();
        let sha = hex::encode(Sha256::digest(b"the full new contents"));
        use std::io::Write;
        let mut child = start(&dest, 0o644, &sha);
        child.stdin.take().unwrap().write_all(b"the full").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
