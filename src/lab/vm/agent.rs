//! The lab's ways into a VM that need neither its network nor its sshd (a cut link, a
//! frozen or killed daemon): the QEMU guest agent (Debian's qemu-guest-agent in the image,
//! on a virtio serial port whose host end is `qga.sock` in the node directory) runs
//! commands as root, and QMP (`qmp.sock`) resets the machine. Both are JSON lines; each
//! socket takes one client at a time, so the lab's own users take turns through a lock file
//! per socket. Every read has a timeout.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use data_encoding::BASE64;
use serde_json::{Value, json};

use super::super::error::{LabError, Result};
use super::super::sys;
use super::qemu::{AGENT_SOCKET, QMP_SOCKET};

/// What a command run by the agent gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// An open connection to one of a node's sockets, held with its lock.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    deadline: Instant,
    _lock: fs::File,
}

/// Connects to `socket` in `dir` through `/proc/self/fd` (a unix socket's name may not pass
/// 108 bytes; the lab directory's path may).
fn connect(dir: &Path, socket: &str, timeout: Duration) -> Result<Conn> {
    let lock = sys::lock_file(&dir.join(format!("{socket}.lock")), true)?
        .expect("a waiting lock is taken");
    let d = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| LabError::io(dir, e))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{socket}", d.as_raw_fd()));
    let stream = UnixStream::connect(&path).map_err(|e| LabError::io(dir.join(socket), e))?;
    let writer = stream
        .try_clone()
        .map_err(|e| LabError::io(dir.join(socket), e))?;
    writer
        .set_write_timeout(Some(timeout))
        .map_err(|e| LabError::io(dir.join(socket), e))?;
    Ok(Conn {
        reader: BufReader::new(stream),
        writer,
        deadline: Instant::now() + timeout,
        _lock: lock,
    })
}

/// A read that timed out is the agent not answering, said once.
fn io_err(e: std::io::Error) -> LabError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            LabError::Other("the guest agent did not answer in time".into())
        }
        _ => LabError::Other(format!("agent socket: {e}")),
    }
}

impl Conn {
    fn left(&self) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LabError::Other(
                "the guest agent did not answer in time".into(),
            ));
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(io_err)?;
        Ok(left)
    }

    fn send(&mut self, prefix: &[u8], msg: &Value) -> Result<()> {
        let mut line = prefix.to_vec();
        line.extend(serde_json::to_vec(msg).expect("json serialises"));
        line.push(b'\n');
        self.writer.write_all(&line).map_err(io_err)
    }

    /// The next JSON object that answers a command (`return` or `error`), skipping events.
    fn answer(&mut self) -> Result<Value> {
        loop {
            self.left()?;
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).map_err(io_err)?;
            if n == 0 {
                return Err(LabError::Other("the agent socket closed".into()));
            }
            let Ok(v) = serde_json::from_str::<Value>(line.trim_start_matches('\u{ff}')) else {
                continue;
            };
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(LabError::Other(format!(
                    "guest: {}",
                    e["desc"].as_str().unwrap_or("error")
                )));
            }
        }
    }

    fn call(&mut self, execute: &str, arguments: Value) -> Result<Value> {
        self.send(b"", &json!({"execute": execute, "arguments": arguments}))?;
        self.answer()
    }

    /// The agent's resynchronisation: a 0xFF resets its parser, its answer comes after a
    /// 0xFF of its own; whatever an earlier client left unread is skipped.
    fn sync(&mut self) -> Result<()> {
        // Distinct per call: an answer to an earlier client's sync is not taken for ours.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = (u64::from(std::process::id()) << 32) | u64::from(nanos);
        self.send(
            b"\xff",
            &json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}),
        )?;
        loop {
            self.left()?;
            let mut junk = Vec::new();
            self.reader.read_until(0xff, &mut junk).map_err(io_err)?;
            if junk.last() != Some(&0xff) {
                return Err(LabError::Other("the agent socket closed".into()));
            }
            if self.answer()? == json!(id) {
                return Ok(());
            }
        }
    }
}

/// The guest agent of one VM node.
pub struct Agent {
    dir: PathBuf,
}

impl Agent {
    pub fn new(node_dir: &Path) -> Agent {
        Agent {
            dir: node_dir.to_path_buf(),
        }
    }

    fn open(&self, timeout: Duration) -> Result<Conn> {
        let mut c = connect(&self.dir, AGENT_SOCKET, timeout)?;
        c.sync()?;
        Ok(c)
    }

    /// Runs `sh -c SCRIPT sh ARGS...` as root in the guest, `input` on its stdin; waits for
    /// its end up to `timeout`.
    pub fn exec(
        &self,
        script: &str,
        args: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOut> {
        let mut c = self.open(timeout)?;
        let mut argv = vec!["-c", script, "sh"];
        argv.extend_from_slice(args);
        let mut a = json!({"path": "/bin/sh", "arg": argv, "capture-output": true});
        if let Some(bytes) = input {
            a["input-data"] = BASE64.encode(bytes).into();
        }
        let pid = c.call("guest-exec", a)?["pid"]
            .as_i64()
            .ok_or_else(|| LabError::Other("guest-exec gave no pid".into()))?;
        loop {
            let st = c.call("guest-exec-status", json!({ "pid": pid }))?;
            if st["exited"].as_bool() == Some(true) {
                let text = |k: &str| {
                    let b = BASE64
                        .decode(st[k].as_str().unwrap_or("").as_bytes())
                        .unwrap_or_default();
                    String::from_utf8_lossy(&b).into_owned()
                };
                let code = st["exitcode"]
                    .as_i64()
                    .or_else(|| st["signal"].as_i64().map(|s| 128 + s))
                    .unwrap_or(-1);
                return Ok(ExecOut {
                    code: i32::try_from(code).unwrap_or(-1),
                    stdout: text("out-data"),
                    stderr: text("err-data"),
                });
            }
            if c.left().is_err() {
                return Err(LabError::Other(format!(
                    "{} still runs in the guest after {} s",
                    script.lines().next().unwrap_or(script),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// As [`Agent::exec`], the script's stdout when it exited 0, else an error with its
    /// stderr.
    pub fn run(
        &self,
        script: &str,
        args: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<String> {
        let out = self.exec(script, args, input, timeout)?;
        if out.code == 0 {
            Ok(out.stdout)
        } else {
            Err(LabError::Other(format!(
                "{} (exit {}): {}",
                script.lines().next().unwrap_or(script),
                out.code,
                out.stderr.trim()
            )))
        }
    }

    /// Asks the guest to reboot (systemd's clean reboot: `shutdown -r now`). The agent
    /// answers nothing on success: it is going down.
    pub fn reboot(&self) -> Result<()> {
        let mut c = self.open(Duration::from_secs(10))?;
        c.send(
            b"",
            &json!({"execute": "guest-shutdown", "arguments": {"mode": "reboot"}}),
        )
    }
}

/// Resets the machine through QMP, as its reset button (or a power cycle whose disk stays).
pub fn reset(node_dir: &Path) -> Result<()> {
    let mut c = connect(node_dir, QMP_SOCKET, Duration::from_secs(10))?;
    // The greeting first, then capabilities: only then does QMP take commands.
    c.left()?;
    let mut greeting = String::new();
    c.reader
        .read_line(&mut greeting)
        .map_err(|e| LabError::Other(format!("qmp: {e}")))?;
    c.call("qmp_capabilities", json!({}))?;
    c.call("system_reset", json!({}))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake agent on a socket: stale output first, then the sync answer after its 0xFF,
    /// then an exec whose status is read twice.
    #[test]
    fn exec_syncs_past_stale_output_and_decodes_the_result() {
        let d = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(d.path().join(AGENT_SOCKET)).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line).unwrap();
            assert_eq!(line[0], 0xff);
            let req: Value = serde_json::from_slice(&line[1..]).unwrap();
            assert_eq!(req["execute"], "guest-sync-delimited");
            let id = req["arguments"]["id"].clone();
            w.write_all(b"{\"return\": {\"pid\": 1}}\n\xff{\"return\": 7}\n\xff")
                .unwrap();
            w.write_all(format!("{}\n", json!({"return": id})).as_bytes())
                .unwrap();
            let mut asked = Vec::new();
            for answer in [
                json!({"return": {"pid": 42}}),
                json!({"return": {"exited": false}}),
                json!({"return": {"exited": true, "exitcode": 3, "out-data": BASE64.encode(b"out\n"), "err-data": BASE64.encode(b"bad")}}),
            ] {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                asked.push(serde_json::from_str::<Value>(&l).unwrap());
                w.write_all(format!("{answer}\n").as_bytes()).unwrap();
            }
            asked
        });
        let out = Agent::new(d.path())
            .exec("echo $1", &["x y"], Some(b"in"), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            out,
            ExecOut {
                code: 3,
                stdout: "out\n".into(),
                stderr: "bad".into()
            }
        );
        let asked = server.join().unwrap();
        assert_eq!(
            asked[0],
            json!({"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", "echo $1", "sh", "x y"], "capture-output": true, "input-data": "aW4="}})
        );
        assert_eq!(asked[2]["arguments"]["pid"], 42);
    }

    #[test]
    fn a_silent_agent_is_a_timeout_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let _listener = UnixListener::bind(d.path().join(AGENT_SOCKET)).unwrap();
        let e = Agent::new(d.path())
            .exec("true", &[], None, Duration::from_millis(300))
            .unwrap_err();
        assert_eq!(e.to_string(), "lab: the guest agent did not answer in time");
    }
}
