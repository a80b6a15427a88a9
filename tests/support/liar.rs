//! A lab node whose Docker lies about itself: a proxy on the node's Docker socket, in front
//! of its real dockerd, that passes every request and answer through unchanged but one:
//! the daemon's `GET /info` (any API version), which it rewrites with a given edit. What
//! reads the node's facts, the `docker` CLI or the Engine API over `docker system
//! dial-stdio`, gets the daemon's own answer, edited: what root on a compromised Pi (or
//! a Pi cloned from another's SD card) would show, and nothing else on the node changes.
//!
//! How it is planted, from this process (which runs the proxy): the node's socket
//! (`/run/docker.sock` in its own mount namespace, reached through its dockerd's
//! `/proc/PID/root`) gets a second name (a hard link; dockerd keeps listening on the same
//! socket), its first name goes, and the proxy listens there. Dropping the guard stops
//! the proxy and gives the socket its name back.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rpiprov::lab::{Daemon, Lab};
use serde_json::Value;

type Edit = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// The proxy in front of one node's dockerd; dropping it restores the node.
pub struct Liar {
    socket: PathBuf,
    real: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Liar {
    /// Makes `node`'s Docker answer `GET /info` edited by `edit`.
    pub fn plant(lab: &Lab, node: &str, edit: impl Fn(&mut Value) + Send + Sync + 'static) -> Liar {
        let pid = lab
            .daemon_pid(node, Daemon::Dockerd)
            .expect("the node exists")
            .unwrap_or_else(|| panic!("dockerd does not run on {node}"))
            .pid;
        let run = PathBuf::from(format!("/proc/{pid}/root/run"));
        let (socket, real) = (run.join("docker.sock"), run.join("docker-real.sock"));
        std::fs::hard_link(&socket, &real).expect("a second name for the socket");
        std::fs::remove_file(&socket).expect("the socket's first name goes");
        let listener = UnixListener::bind(&socket).expect("the proxy listens");
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let edit: Edit = Arc::new(edit);
        let accept = {
            let (stop, real) = (stop.clone(), real.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (real, edit) = (real.clone(), edit.clone());
                            std::thread::spawn(move || {
                                let _ = client.set_nonblocking(false);
                                let _ = serve(client, &real, &*edit);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Liar {
            socket,
            real,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::rename(&self.real, &self.socket);
    }
}

/// A request's or an answer's head: its first line, its headers (names in lower case),
/// and its bytes as they came.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an answer only).
    Close,
}

fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            break;
        }
        lines.push(text);
    }
    let first = lines.first().cloned().unwrap_or_default();
    let headers = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        first,
        headers,
        raw,
    }))
}

fn framing(head: &Head, answer: bool) -> Framing {
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(n) = head.header("content-length") {
        Framing::Length(n.parse().unwrap_or(0))
    } else if answer {
        Framing::Close
    } else {
        Framing::None
    }
}

/// Copies a body as it comes, flushing each piece (streams such as events stay live).
fn copy_body(r: &mut impl BufRead, w: &mut impl Write, framing: Framing) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => {
            io::copy(&mut r.take(n), w)?;
            w.flush()
        }
        Framing::Close => {
            let mut buf = [0u8; 8192];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return w.flush();
                }
                w.write_all(&buf[..n])?;
                w.flush()?;
            }
        }
        Framing::Chunked => loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" || t.is_empty() {
                        return w.flush();
                    }
                }
            }
            io::copy(&mut r.take(size + 2), w)?;
            w.flush()?;
        },
    }
}

/// A whole body, its chunks joined.
fn read_body(r: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut wire = Vec::new();
    let chunked = matches!(framing, Framing::Chunked);
    copy_body(r, &mut wire, framing)?;
    if !chunked {
        return Ok(wire);
    }
    let mut body = Vec::new();
    let mut rest = &wire[..];
    loop {
        let eol = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or(0);
        rest = &rest[(eol + 1).min(rest.len())..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Whether the request asks for the daemon's information (`GET /info`, `GET /v1.41/info`).
fn asks_info(request: &Head) -> bool {
    let mut parts = request.first.split(' ');
    let (method, target) = (parts.next(), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    method == Some("GET")
        && (path == "/info"
            || path
                .strip_prefix("/v")
                .and_then(|p| p.split_once('/'))
                .is_some_and(|(_, rest)| rest == "info"))
}

/// One client connection: requests and answers in turn, `GET /info` answered edited; an
/// upgraded connection (attach, exec) or an answer that ends with the connection is
/// passed through as bytes.
fn serve(client: UnixStream, real: &std::path::Path, edit: &dyn Fn(&mut Value)) -> io::Result<()> {
    let upstream = UnixStream::connect(real)?;
    let mut cr = BufReader::new(client.try_clone()?);
    let mut cw = client;
    let mut ur = BufReader::new(upstream.try_clone()?);
    let mut uw = upstream;
    while let Some(request) = read_head(&mut cr)? {
        uw.write_all(&request.raw)?;
        copy_body(&mut cr, &mut uw, framing(&request, false))?;
        let answer = read_head(&mut ur)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let status: u16 = answer
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 101 {
            cw.write_all(&answer.raw)?;
            let (mut up, mut down) = (uw, cw.try_clone()?);
            let to_daemon = std::thread::spawn(move || {
                let _ = io::copy(&mut cr, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
            let _ = io::copy(&mut ur, &mut down);
            let _ = to_daemon.join();
            return Ok(());
        }
        let bodiless =
            request.first.starts_with("HEAD ") || status == 204 || status == 304 || status < 200;
        let body_framing = if bodiless {
            Framing::None
        } else {
            framing(&answer, true)
        };
        if asks_info(&request) && status == 200 {
            let body = read_body(&mut ur, body_framing)?;
            let mut doc: Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
            edit(&mut doc);
            let body = serde_json::to_vec(&doc)?;
            let mut head = format!("{}\r\n", answer.first);
            for (n, v) in &answer.headers {
                if n != "content-length" && n != "transfer-encoding" {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
            }
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            cw.write_all(head.as_bytes())?;
            cw.write_all(&body)?;
            cw.flush()?;
        } else {
            cw.write_all(&answer.raw)?;
            let close = matches!(body_framing, Framing::Close);
            copy_body(&mut ur, &mut cw, body_framing)?;
            if close {
                return Ok(());
            }
        }
    }
    Ok(())
}
