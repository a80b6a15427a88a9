//! What a command cost the hosts: SSH connections, remote round trips, `docker` CLI
//! processes and Docker Engine API requests, counted for the whole process (one rpiprov
//! command per process). `-v` prints them at the end and `--json` carries them
//! (`remote`), so that a benchmark can say what each command asks of a Pi: every `docker`
//! CLI call costs a Pi 0.2-0.5 s of CPU, an API request on an open channel almost nothing.
//!
//! A round trip is one command sent and answered (an exec, an upload, opening a stream) or
//! one batch of API requests written together and answered together. `docker` calls are
//! counted from the command lines sent, where `docker` stands as a command: a loop counts
//! once however often it turns, so the figure is a floor.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static DOCKER_CLI: AtomicU64 = AtomicU64::new(0);
static API_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The counters, as `--json` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub connections: u64,
    pub round_trips: u64,
    pub docker_cli: u64,
    pub api_requests: u64,
}

impl Stats {
    /// One line for `-v`.
    pub fn line(&self) -> String {
        format!(
            "{} connection(s), {} round trip(s), {} docker CLI call(s), {} Engine API request(s)",
            self.connections, self.round_trips, self.docker_cli, self.api_requests
        )
    }
}

/// The counts so far.
pub fn snapshot() -> Stats {
    Stats {
        connections: CONNECTIONS.load(Relaxed),
        round_trips: ROUND_TRIPS.load(Relaxed),
        docker_cli: DOCKER_CLI.load(Relaxed),
        api_requests: API_REQUESTS.load(Relaxed),
    }
}

pub(crate) fn connection() {
    CONNECTIONS.fetch_add(1, Relaxed);
}

/// A command sent: one round trip, and its `docker` calls.
pub(crate) fn command(line: &str) {
    ROUND_TRIPS.fetch_add(1, Relaxed);
    DOCKER_CLI.fetch_add(docker_calls(line), Relaxed);
}

/// `requests` API requests sent together in one round trip.
pub fn api_batch(requests: usize) {
    ROUND_TRIPS.fetch_add(1, Relaxed);
    API_REQUESTS.fetch_add(requests as u64, Relaxed);
}

/// How many times `docker` stands as a command in a shell command line.
pub fn docker_calls(line: &str) -> u64 {
    let mut spaced = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            ';' | '|' | '&' | '(' | ')' | '`' | '\n' => {
                spaced.push(' ');
                spaced.push(c);
                spaced.push(' ');
            }
            _ => spaced.push(c),
        }
    }
    const STARTS: [&str; 16] = [
        ";", "|", "&", "(", "`", "\n", "then", "do", "else", "exec", "if", "until", "while", "!",
        "$", "{",
    ];
    let mut prev: Option<&str> = None;
    let mut n = 0;
    for word in spaced.split([' ', '\t']) {
        if word.is_empty() {
            continue;
        }
        if word == "docker" && prev.is_none_or(|p| STARTS.contains(&p)) {
            n += 1;
        }
        prev = Some(word);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_commands_are_counted_where_they_stand_as_commands() {
        assert_eq!(docker_calls("docker info"), 1);
        assert_eq!(
            docker_calls(
                "set -e; s=$(docker service ls -q); n=$(docker network ls -q); for x in $s; do echo \"service $x\"; done"
            ),
            2
        );
        assert_eq!(
            docker_calls("cd /x && while read kv; do export kv; done; exec docker stack deploy"),
            1
        );
        assert_eq!(
            docker_calls("i=0; until docker info >/dev/null 2>&1; do sleep 1; done"),
            1
        );
        assert_eq!(docker_calls("if [ x ]; then docker swarm leave; fi"), 1);
        // Words, file names and quoted text are not calls.
        assert_eq!(
            docker_calls("cat /etc/docker/daemon.json; echo docker; apt-get install docker.io"),
            0
        );
        assert_eq!(docker_calls("sudo docker ps"), 0);
    }
}
