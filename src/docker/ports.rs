//! The ports swarm needs between the nodes, tested from the nodes themselves before the
//! swarm forms (when nothing listens on them yet): a listener of ours on each node
//! ([`ports_listen`]), a sender on each node that connects to every peer's TCP ports and
//! sends datagrams to its UDP ports ([`ports_send`]), then what each listener received,
//! and the listener stopped and its folder removed ([`ports_collect`]). `perl` does the
//! network part: `perl-base` is Essential on Debian and Raspberry Pi OS, and its
//! `IO::Socket::INET` listens and sends TCP and UDP. Nothing else: a minbase system (and
//! Raspberry Pi OS Lite) has no module beyond perl-base's (no `Time::HiRes`: waits are
//! `IO::Select`'s, which take fractions of a second). Everything runs as the login user
//! (ports above 1024 need no root), and the listener ends by itself after a time limit,
//! so that a killed run leaves nothing listening. Judged by `crate::plan::ports`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::shell::{join, quote};

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// A port and its protocol: `7946/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Port {
    pub port: u16,
    pub proto: Proto,
}

impl Port {
    pub const fn tcp(port: u16) -> Port {
        Port {
            port,
            proto: Proto::Tcp,
        }
    }
    pub const fn udp(port: u16) -> Port {
        Port {
            port,
            proto: Proto::Udp,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{}/{p}", self.port)
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Port, String> {
        let (n, p) = s
            .split_once('/')
            .ok_or_else(|| format!("not PORT/PROTO: {s}"))?;
        let port = n.parse().map_err(|_| format!("not a port: {s}"))?;
        match p {
            "tcp" => Ok(Port::tcp(port)),
            "udp" => Ok(Port::udp(port)),
            _ => Err(format!("not tcp or udp: {s}")),
        }
    }
}

/// Cluster management: joins, and raft between the managers.
pub const MANAGEMENT: Port = Port::tcp(2377);
/// Node gossip (membership), both protocols.
pub const GOSSIP_TCP: Port = Port::tcp(7946);
pub const GOSSIP_UDP: Port = Port::udp(7946);
/// Overlay network traffic (VXLAN).
pub const VXLAN: Port = Port::udp(4789);

/// What a port is for, in a sentence's end.
pub fn purpose(p: Port) -> &'static str {
    match p {
        MANAGEMENT => "cluster management (joins, and raft between managers)",
        GOSSIP_TCP | GOSSIP_UDP => "gossip between the nodes (who is in the swarm)",
        VXLAN => "overlay network traffic (VXLAN)",
        _ => "swarm",
    }
}

/// How long a listener lives at most, in seconds, whatever happens to this run.
pub const LISTEN_SECS: u32 = 120;

const LISTENER: &str = r#"use strict; use Socket; use IO::Socket::INET; use IO::Select; use POSIX ();
$| = 1;
my ($dir, $secs, @specs) = @ARGV;
my $sel = IO::Select->new; my %what;
for my $spec (@specs) {
  my ($port, $proto) = split m{/}, $spec;
  my $s = IO::Socket::INET->new(LocalPort => $port, Proto => $proto, ($proto eq "tcp" ? (Listen => 16, ReuseAddr => 1) : ()));
  if ($s) { $sel->add($s); $what{fileno $s} = [$port, $proto]; print "bound $port/$proto\n" } else { print "busy $port/$proto $!\n" }
}
my $pid = fork;
die "fork: $!\n" unless defined $pid;
if ($pid) { open my $f, ">", "$dir/pid" or die "$dir/pid: $!\n"; print $f "$pid\n"; close $f; print "pid $pid\n"; exit 0 }
POSIX::setsid();
open STDIN, "<", "/dev/null"; open STDOUT, ">", "/dev/null"; open STDERR, ">", "/dev/null";
open my $log, ">>", "$dir/log" or exit 1; $log->autoflush(1);
my $end = time + $secs;
while (time < $end) {
  for my $s ($sel->can_read(1)) {
    my ($port, $proto) = @{$what{fileno $s}};
    if ($proto eq "tcp") { my $c = $s->accept or next; print $log "got $port/tcp from ", ($c->peerhost // "?"), "\n"; close $c; next }
    my $buf = ""; my $from = recv($s, $buf, 512, 0); next unless defined $from;
    my (undef, $a) = sockaddr_in($from); $buf =~ s/[^\w .:-]//g;
    print $log "got $port/udp from ", inet_ntoa($a), " $buf\n";
    send($s, "ack $1", 0, $from) if $buf =~ /^rpiprov (\S+)$/;
  }
}
"#;

/// Starts the listener on these ports: prints `bound PORT/PROTO` or `busy PORT/PROTO
/// REASON` per port, `dir DIR` (where it logs, for [`ports_collect`]) and `pid PID`,
/// then returns while the listener goes on in the background. Read by [`parse_listen`].
pub fn ports_listen(ports: &[Port]) -> String {
    let specs: Vec<String> = ports.iter().map(Port::to_string).collect();
    format!(
        "set -e; d=$(mktemp -d /tmp/rpiprov-ports.XXXXXX); echo \"dir $d\"; perl -e {} \"$d\" {LISTEN_SECS} {}",
        quote(LISTENER),
        join(&specs)
    )
}

/// What a listener said when it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listening {
    pub dir: String,
    pub bound: Vec<Port>,
    /// Ports another program holds, with the reason.
    pub busy: Vec<(Port, String)>,
}

pub fn parse_listen(output: &str) -> Result<Listening, String> {
    let mut l = Listening::default();
    for line in output.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next()) {
            (Some("dir"), Some(d)) => l.dir = d.to_string(),
            (Some("bound"), Some(p)) => l.bound.push(p.parse()?),
            (Some("busy"), Some(p)) => l.busy.push((p.parse()?, words.next().unwrap_or("").into())),
            _ => {}
        }
    }
    if !l.dir.starts_with("/tmp/rpiprov-ports.") {
        return Err(format!(
            "the port listener did not start: {}",
            output.trim()
        ));
    }
    Ok(l)
}

/// One test a sender makes: connect to `addr`'s TCP port, or send datagrams to its UDP
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: String,
    pub port: Port,
}

const SENDER: &str = r#"use strict; use IO::Socket::INET; use IO::Select;
$| = 1;
my ($tag, @targets) = @ARGV;
my @kids;
for my $t (@targets) {
  my ($addr, $spec) = split / /, $t; my ($port, $proto) = split m{/}, $spec;
  my $pid = fork; die "fork: $!\n" unless defined $pid;
  if ($pid) { push @kids, $pid; next }
  if ($proto eq "tcp") {
    my $s = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port, Proto => "tcp", Timeout => 3);
    if ($s) { close $s; print "$addr $port/tcp ok\n" } else { my $e = $! || $@; print "$addr $port/tcp fail $e\n" }
  } else {
    my $s = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port, Proto => "udp");
    if (!$s) { print "$addr $port/udp fail $!\n"; exit 0 }
    my $sel = IO::Select->new($s); my $acked = 0;
    for (1 .. 5) {
      $s->send("rpiprov $tag");
      my $buf = "";
      if ($sel->can_read(0.2) && defined $s->recv($buf, 512) && $buf eq "ack $tag") { $acked = 1; last }
    }
    print "$addr $port/udp ", ($acked ? "acked" : "sent"), "\n";
  }
  exit 0;
}
waitpid $_, 0 for @kids;
"#;

/// Tests every target at once: prints `ADDR PORT/tcp ok`, `ADDR PORT/tcp fail REASON`,
/// `ADDR PORT/udp acked` or `ADDR PORT/udp sent` (whether it arrived, the receiver says).
/// A datagram is sent up to five times, 0.2 s apart, until our listener answers `ack TAG`
/// (which it does once it has logged it): the ack only ends the sender's wait early (a
/// run where everything arrives waits a round trip; before the acks, 0.9 s of three
/// datagrams and 0.3 s for the last to arrive);
/// the receiver's log is what counts, so an ack lost on the way back, or a reply that
/// comes from another address of the receiver, costs time and nothing else. `tag` goes in every
/// datagram (`rpiprov TAG`) so that the receiver can tell ours from anything else and who
/// sent it: letters, digits, `.`, `-`, `_` and `:` only. Read by [`parse_send`].
pub fn ports_send(tag: &str, targets: &[Target]) -> String {
    let mut args = vec!["perl".to_string(), "-e".into(), SENDER.into(), tag.into()];
    args.extend(targets.iter().map(|t| format!("{} {}", t.addr, t.port)));
    join(args)
}

/// One line of [`ports_send`]: the target, and `None` when it answered (TCP) or was sent
/// (UDP), or the reason it failed.
pub fn parse_send(output: &str) -> Vec<(Target, Option<String>)> {
    output
        .lines()
        .filter_map(|line| {
            let mut w = line.splitn(4, ' ');
            let addr = w.next()?.to_string();
            let port: Port = w.next()?.parse().ok()?;
            let outcome = match w.next()? {
                "ok" | "sent" | "acked" => None,
                "fail" => Some(w.next().unwrap_or("failed").to_string()),
                _ => return None,
            };
            Some((Target { addr, port }, outcome))
        })
        .collect()
}

/// What the listener in `dir` received, then the listener stopped (by the pid it wrote,
/// and only when that process is still the listener of `dir`) and `dir` removed.
/// Refuses any folder that is not one of [`ports_listen`]'s. Read by [`parse_received`].
pub fn ports_collect(dir: &str) -> String {
    format!(
        "d={}; case \"$d\" in /tmp/rpiprov-ports.*) ;; *) echo \"not a port test folder: $d\" >&2; exit 2;; esac; cat \"$d/log\" 2>/dev/null || true; p=$(cat \"$d/pid\" 2>/dev/null || true); if [ -n \"$p\" ] && tr '\\0' ' ' < \"/proc/$p/cmdline\" 2>/dev/null | grep -qF \"$d\"; then kill \"$p\"; fi; rm -rf \"$d\"",
        quote(dir)
    )
}

/// One thing a listener received: on which port, from which address, and the tag of a
/// datagram (empty for a TCP connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub port: Port,
    pub from: String,
    pub tag: String,
}

pub fn parse_received(output: &str) -> Vec<Received> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("got ")?;
            let mut w = rest.splitn(4, ' ');
            let port: Port = w.next()?.parse().ok()?;
            if w.next()? != "from" {
                return None;
            }
            let from = w.next()?.to_string();
            let tag = w
                .next()
                .and_then(|t| t.strip_prefix("rpiprov "))
                .unwrap_or("")
                .to_string();
            Some(Received { port, from, tag })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{Ran, sh, sh_env, syntax_ok};

    #[test]
    fn ports_read_and_print_as_docker_writes_them() {
        assert_eq!("7946/udp".parse::<Port>(), Ok(GOSSIP_UDP));
        assert_eq!(MANAGEMENT.to_string(), "2377/tcp");
        assert!("7946".parse::<Port>().is_err());
        assert!("7946/sctp".parse::<Port>().is_err());
    }

    #[test]
    fn commands_are_quoted_and_valid_shell() {
        let listen = ports_listen(&[GOSSIP_TCP, GOSSIP_UDP]);
        assert!(listen.starts_with(
            "set -e; d=$(mktemp -d /tmp/rpiprov-ports.XXXXXX); echo \"dir $d\"; perl -e 'use strict;"
        ));
        assert!(listen.ends_with("\"$d\" 120 7946/tcp 7946/udp"), "{listen}");
        syntax_ok(&listen);
        let send = ports_send(
            "n1.pi1",
            &[Target {
                addr: "198.18.0.12".into(),
                port: VXLAN,
            }],
        );
        assert!(send.ends_with(" n1.pi1 '198.18.0.12 4789/udp'"), "{send}");
        syntax_ok(&send);
        assert_eq!(
            ports_collect("/tmp/rpiprov-ports.abc"),
            "d=/tmp/rpiprov-ports.abc; case \"$d\" in /tmp/rpiprov-ports.*) ;; *) echo \"not a port test folder: $d\" >&2; exit 2;; esac; cat \"$d/log\" 2>/dev/null || true; p=$(cat \"$d/pid\" 2>/dev/null || true); if [ -n \"$p\" ] && tr '\\0' ' ' < \"/proc/$p/cmdline\" 2>/dev/null | grep -qF \"$d\"; then kill \"$p\"; fi; rm -rf \"$d\""
        );
        let refused = sh(&ports_collect("/etc"));
        assert_eq!(refused.code, 2);
        assert_eq!(refused.stderr, "not a port test folder: /etc\n");
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            parse_listen(
                "dir /tmp/rpiprov-ports.x1\nbound 7946/tcp\nbusy 2377/tcp Address already in use\npid 42\n"
            ),
            Ok(Listening {
                dir: "/tmp/rpiprov-ports.x1".into(),
                bound: vec![GOSSIP_TCP],
                busy: vec![(MANAGEMENT, "Address already in use".into())],
            })
        );
        assert_eq!(
            parse_listen("dir /tmp/rpiprov-ports.x1\nsh: 1: perl: not found\n")
                .unwrap()
                .bound,
            vec![]
        );
        assert!(parse_listen("mktemp: failed\n").is_err());
        assert_eq!(
            parse_send(
                "198.18.0.11 2377/tcp ok\n198.18.0.13 7946/tcp fail Connection refused\n198.18.0.13 7946/udp sent\nnoise\n"
            ),
            vec![
                (
                    Target {
                        addr: "198.18.0.11".into(),
                        port: MANAGEMENT
                    },
                    None
                ),
                (
                    Target {
                        addr: "198.18.0.13".into(),
                        port: GOSSIP_TCP
                    },
                    Some("Connection refused".into())
                ),
                (
                    Target {
                        addr: "198.18.0.13".into(),
                        port: GOSSIP_UDP
                    },
                    None
                ),
            ]
        );
        assert_eq!(
            parse_received(
                "got 7946/udp from 198.18.0.12 rpiprov n1.pi2\ngot 7946/tcp from 198.18.0.12\n"
            ),
            vec![
                Received {
                    port: GOSSIP_UDP,
                    from: "198.18.0.12".into(),
                    tag: "n1.pi2".into()
                },
                Received {
                    port: GOSSIP_TCP,
                    from: "198.18.0.12".into(),
                    tag: String::new()
                },
            ]
        );
    }

    /// What a Debian minbase (and Raspberry Pi OS Lite) has of Perl: perl-base alone. A
    /// module loaded through `PERL5OPT` empties `@INC` of every folder but perl-base's
    /// before the script compiles, so a `use` of anything else (`Time::HiRes`, say) fails
    /// here as it does on a Pi.
    fn perl_base_only() -> (tempfile::TempDir, Vec<(String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("RpiprovPerlBaseOnly.pm"),
            "package RpiprovPerlBaseOnly; sub import { @INC = grep { m{/perl-base$} } @INC; die \"no perl-base folder in \\@INC\\n\" unless @INC } 1;\n",
        )
        .unwrap();
        let env = vec![
            ("PERL5LIB".to_string(), dir.path().display().to_string()),
            ("PERL5OPT".to_string(), "-MRpiprovPerlBaseOnly".to_string()),
        ];
        (dir, env)
    }

    fn sh_perl_base(script: &str, env: &[(String, String)]) -> Ran {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sh_env(script, &env)
    }

    #[test]
    fn the_restriction_to_perl_base_refuses_other_modules() {
        let (_dir, env) = perl_base_only();
        let ran = sh_perl_base("perl -e 'use Time::HiRes; print qq(loaded\\n)'", &env);
        assert_ne!(ran.code, 0, "{ran:?}");
        assert!(ran.stderr.contains("Can't locate Time/HiRes.pm"), "{ran:?}");
        let ran = sh_perl_base("perl -e 'use IO::Socket::INET; print qq(loaded\\n)'", &env);
        assert_eq!(ran.stdout, "loaded\n", "{ran:?}");
    }

    /// The whole exchange on this machine's loopback, with ports no one uses and Perl as
    /// a minbase has it: the listener binds and returns, the sender reaches it (the
    /// datagram acknowledged, so it is in the listener's log already), a port where no
    /// one listens gets no ack, what arrived is collected, nothing is said on stderr, and
    /// nothing is left listening or on disk.
    #[test]
    fn a_real_listener_and_sender_on_loopback_leave_nothing_behind() {
        let (_dir, env) = perl_base_only();
        let free = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = s.local_addr().unwrap().port();
            (p, std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        };
        let (port, tcp_free) = free();
        assert!(tcp_free, "pick another port");
        let ports = [Port::tcp(port), Port::udp(port)];
        let started = sh_perl_base(&ports_listen(&ports), &env);
        assert_eq!(started.stderr, "");
        let l = parse_listen(&started.ok()).unwrap();
        assert_eq!(l.bound, ports.to_vec(), "{l:?}");
        let closed = {
            let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let (silent, _) = free();
        let target = |port| Target {
            addr: "127.0.0.1".into(),
            port,
        };
        let ran = sh_perl_base(
            &ports_send(
                "t1.here",
                &[
                    target(Port::tcp(port)),
                    target(Port::udp(port)),
                    target(Port::tcp(closed)),
                    target(Port::udp(silent)),
                ],
            ),
            &env,
        );
        assert_eq!(ran.stderr, "");
        let out = ran.ok();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        let mut want = vec![
            format!("127.0.0.1 {port}/tcp ok"),
            format!("127.0.0.1 {port}/udp acked"),
            format!("127.0.0.1 {silent}/udp sent"),
        ];
        want.sort();
        assert_eq!(lines.len(), 4, "{out}");
        for w in &want {
            assert!(lines.contains(&w.as_str()), "{w} not in {out}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("127.0.0.1 {closed}/tcp fail "))),
            "{out}"
        );
        let sent = parse_send(&out);
        assert_eq!(
            sent.iter().filter(|(_, e)| e.is_some()).count(),
            1,
            "{sent:?}"
        );
        let got = parse_received(&sh(&ports_collect(&l.dir)).ok());
        assert!(
            got.iter()
                .any(|r| r.port == Port::udp(port) && r.tag == "t1.here" && r.from == "127.0.0.1"),
            "{got:?}"
        );
        assert!(got.iter().any(|r| r.port == Port::tcp(port)), "{got:?}");
        assert!(!std::path::Path::new(&l.dir).exists());
        // The listener is gone: the port can be bound again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener still holds {port}/tcp"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
