#!/usr/bin/env bash
# The shell script a Pi owner writes by hand, the second baseline beside the careful one
# (bootstrap.sh, stacks.sh): the same work over the same ControlMaster connections, with
# the waits such a script has and no more.
#   scripts/bench/hand.sh LAB_DIR bootstrap   Docker where missing (every host at once),
#                                             swarm init, the joins at once, the labels
#                                             and networks set (their errors ignored)
#   scripts/bench/hand.sh LAB_DIR deploy      networks, images, files; each stack deployed,
#                                             then `docker stack services` polled until its
#                                             replica counts match, once
#   scripts/bench/hand.sh LAB_DIR teardown    stacks removed in reverse order at once, then
#                                             each network removed in a loop until it goes
# What it leaves out, and rpiprov and the careful script keep: no check that an update
# has finished or that the services stay up a second later, no wait for the removed
# stacks' containers on every node (a redeploy right after may meet them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec </dev/null
cd "$1"
job=$2
# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"
stacks=(web api echo)

networks() {
  on "$manager" 'docker network create --driver overlay --internal --subnet 198.19.10.0/24 --label io.rpiprov.managed=true DATA >/dev/null 2>&1
docker network create --driver overlay --attachable --subnet 198.19.11.0/24 --label io.rpiprov.managed=true INTERCO >/dev/null 2>&1; true'
}

bootstrap() {
  mapfile -t zones < <(sed -n 's/^labels = { zone = "\(.*\)" }/\1/p' inventory.toml)
  mapfile -t names < <(sed -n 's/^name = "\(.*\)"/\1/p' inventory.toml)
  for a in "${addrs[@]}"; do
    on "$a" 'command -v docker >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && apt-get install -y -q docker.io >/dev/null; }
docker info >/dev/null 2>&1 || service docker start >/dev/null 2>&1 || /etc/init.d/docker start
until docker info >/dev/null 2>&1; do sleep 1; done' &
  done
  wait
  on "$manager" "docker swarm init --advertise-addr $manager --default-addr-pool 198.19.0.0/16 >/dev/null 2>&1 || true"
  token=$(on "$manager" 'docker swarm join-token -q worker')
  for a in "${addrs[@]:1}"; do
    on "$a" "docker swarm join --advertise-addr $a --token $token $manager:2377 >/dev/null 2>&1 || true" &
  done
  wait
  local cmd=""
  for i in "${!names[@]}"; do cmd+="docker node update --label-add zone=${zones[$i]} ${names[$i]} >/dev/null; "; done
  on "$manager" "$cmd"
  networks
}

deploy() {
  networks
  for a in "${addrs[@]}"; do
    on "$a" 'docker image inspect rpiprov-lab/busybox:1 >/dev/null 2>&1' ||
      on "$a" "docker import --change 'CMD [\"/bin/httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]' - rpiprov-lab/busybox:1 >/dev/null" <images/busybox.tar
  done
  for s in "${stacks[@]}"; do
    on "$manager" "mkdir -p /var/lib/bench/$s && cat > /var/lib/bench/$s/$s.yml" <"stacks/$s.yml"
  done
  for s in "${stacks[@]}"; do
    on "$manager" "cd /var/lib/bench/$s && docker stack deploy --prune --resolve-image never -c $s.yml $s >/dev/null"
    for _ in $(seq 1 240); do
      on "$manager" "docker stack services --format '{{.Replicas}}' $s" |
        awk '{ split($1, r, "/"); if (r[1] != r[2]) bad = 1 } END { exit bad }' && break
      sleep 0.5
    done
  done
}

teardown() {
  on "$manager" 'docker stack rm echo api web >/dev/null 2>&1; true'
  for n in INTERCO DATA; do
    until on "$manager" "docker network rm $n >/dev/null 2>&1 || ! docker network inspect $n >/dev/null 2>&1"; do sleep 0.5; done
  done
}

"$job"
bench_done
