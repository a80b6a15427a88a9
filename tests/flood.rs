//! Issue 18 item 4: a host that floods rpiprov with output costs a bounded amount of this
//! machine's memory. One test, run alone in this binary so that the process's peak
//! resident memory (`getrusage`) is its own: a 1 GiB answer of the Docker Engine API
//! (chunked, as Go's server sends) is refused with an error once it passes its bound, a
//! 4 MiB body in one-byte chunks is decoded in linear time, and a real OpenSSH server
//! streaming 1 GiB into a stream nobody reads for a while is held back (the queue is
//! bounded; SSH and TCP stop the sender), then read to its end, and one dropped while
//! held back frees its connection. Needs root, for the test
//! sshd (see `support/sshd.rs`).

#[path = "support/sshd.rs"]
mod sshd;

use std::time::{Duration, Instant};

use rpiprov::config::HostKeyPolicy;
use rpiprov::docker::http::{Decoder, Request};
use rpiprov::remote::{ConnectOptions, ExecRequest, Remote, Target, connect};
use sshd::{Sshd, SshdConfig, TEST_USER, keygen};

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// The process's peak resident memory so far, in bytes.
fn peak_rss() -> usize {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    usize::try_from(u.ru_maxrss).unwrap() * 1024
}

/// The process's resident memory now, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Pushes a 1 GiB chunked answer (32 KiB chunks) until the decoder refuses it; returns
/// the error and how many bytes it took.
fn flood_decoder(expect: Option<Request>) -> (String, usize) {
    let mut d = Decoder::default();
    if let Some(r) = &expect {
        d.expect(r);
    }
    d.push(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let mut chunk = b"8000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'x', 0x8000));
    chunk.extend(b"\r\n");
    let mut sent = 0;
    while sent < GIB {
        d.push(&chunk);
        sent += chunk.len();
        match d.next_response() {
            Ok(None) => {}
            Ok(Some(_)) => panic!("a 1 GiB answer was accepted"),
            Err(e) => return (e, sent),
        }
    }
    panic!("1 GiB pushed and no error");
}

fn decoder_floods() {
    let before = peak_rss();
    let (e, sent) = flood_decoder(None);
    assert_eq!(
        e,
        "an answer of more than the 67108864 bytes rpiprov reads for this request"
    );
    assert!(sent < 65 * MIB, "{sent} bytes taken before the error");
    let (e, sent) = flood_decoder(Some(Request::get("/v1.41/info")));
    assert_eq!(
        e,
        "an answer of more than the 1048576 bytes rpiprov reads for this request"
    );
    assert!(sent < 2 * MIB, "{sent} bytes taken before the error");
    // Chunk extensions with no end: refused after the size line's bound.
    let mut d = Decoder::default();
    d.push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    let ext = vec![b'e'; 64 * 1024];
    let mut taken = 0;
    let err = loop {
        d.push(&ext);
        taken += ext.len();
        assert!(taken < GIB);
        if let Err(e) = d.next_response() {
            break e;
        }
    };
    assert_eq!(err, "a chunk-size line longer than 4096 bytes");
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 160 * MIB,
        "decoding the floods took {} MiB",
        grew / MIB
    );
}

/// How long decoding `mib` MiB sent in one-byte chunks takes, delivered as an SSH channel
/// delivers it: 32 KiB at a time, each piece decoded as it comes.
fn decode_one_byte_chunks(mib: usize) -> Duration {
    let mut wire =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..mib * MIB {
        wire.extend(b"1\r\nx\r\n");
    }
    wire.extend(b"0\r\n\r\n");
    let started = Instant::now();
    let mut d = Decoder::default();
    let mut got = None;
    for piece in wire.chunks(32 * 1024) {
        d.push(piece);
        if let Some(r) = d.next_response().unwrap() {
            got = Some(r);
        }
    }
    let took = started.elapsed();
    assert_eq!(got.expect("the answer").body.len(), mib * MIB);
    took
}

/// The measure: 4 MiB in one-byte chunks took 12 s to decode (each new piece
/// decoded everything again: 1 MiB took 2.9 s here, 4 MiB would take sixteen times that).
/// Linear, four times the body takes about four times as long.
fn one_byte_chunks_decode_in_linear_time() {
    let one = decode_one_byte_chunks(1);
    let four = decode_one_byte_chunks(4);
    assert!(
        four < one * 8 + Duration::from_secs(1),
        "1 MiB took {one:?}, 4 MiB {four:?}"
    );
}

/// A real sshd streams 1 GiB of zeroes into a stream that is not read for three seconds:
/// this process's memory grows by the queue's bound, not by the flood; then all of it
/// is read, and the connection still serves commands.
async fn a_stream_nobody_reads_holds_the_host_back() {
    let client = tempfile::tempdir().unwrap();
    let key = keygen(client.path(), "id_ed25519", "ed25519", "");
    let mut cfg = SshdConfig::default();
    cfg.authorized.push(key.public.clone());
    let sshd = Sshd::start(cfg);
    let known_hosts = client.path().join("known_hosts");
    let kind = sshd.host_keys[0].0.clone();
    std::fs::write(&known_hosts, sshd.known_hosts_line(&kind)).unwrap();
    let mut target = Target::new("pi-test", &sshd.addr, TEST_USER);
    target.port = sshd.port;
    target.identity_files = vec![key.path.clone()];
    let mut opts = ConnectOptions::new(known_hosts, HostKeyPolicy::Strict);
    opts.agent_socket = None;
    opts.key_passphrase = None;
    let s = connect(&target, &opts)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", sshd.log()));

    let before = rss();
    let mut stream = s
        .open_stream(
            ExecRequest::new(format!("head -c {GIB} /dev/zero")).timeout(Duration::from_secs(20)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    // Unbounded, the whole GiB would be here within these seconds (loopback).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = rss().saturating_sub(before);
    assert!(
        held < 48 * MIB,
        "{} MiB held for a stream nobody read",
        held / MIB
    );
    let peak_before = peak_rss();
    let mut total = 0;
    while let Some(chunk) = stream.reader.read().await {
        total += chunk.len();
    }
    assert_eq!(total, GIB);
    let grew = peak_rss().saturating_sub(peak_before.max(before + held));
    assert!(grew < 48 * MIB, "reading 1 GiB took {} MiB", grew / MIB);
    let out = s.exec(ExecRequest::new("echo ok")).await.unwrap();
    assert_eq!(out.stdout_str(), "ok\n");

    // A stream dropped while the host is held back: the rest is drained and discarded,
    // and the connection serves commands again.
    let stream = s
        .open_stream(
            ExecRequest::new(format!("head -c {GIB} /dev/zero")).timeout(Duration::from_secs(20)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(stream);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        s.exec(ExecRequest::new("echo again")),
    )
    .await
    .expect("the connection is free again")
    .unwrap();
    assert_eq!(out.stdout_str(), "again\n");
}

#[tokio::test]
async fn floods_cost_bounded_memory() {
    decoder_floods();
    one_byte_chunks_decode_in_linear_time();
    a_stream_nobody_reads_holds_the_host_back().await;
}
