#!/usr/bin/env bash
# The careful shell script rpiprov's bootstrap is measured against: the same work over
# OpenSSH with one ControlMaster connection per host, in the same order, idempotent.
#   scripts/bench/bootstrap.sh LAB_DIR
# Docker where missing (every host at once), the daemon started; swarm init on the first
# host (the manager); the others join (at once); the leader sets the labels and creates
# the lab playbook's networks where missing. A second run changes nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec </dev/null
cd "$1"
# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"
mapfile -t zones < <(sed -n 's/^labels = { zone = "\(.*\)" }/\1/p' inventory.toml)
mapfile -t names < <(sed -n 's/^name = "\(.*\)"/\1/p' inventory.toml)

# Docker on every host at once (the lab's bare node needs the dpkg options docs/LAB.md
# explains; rpiprov gets them from the node's apt configuration the same way).
for a in "${addrs[@]}"; do
  on "$a" 'if ! command -v docker >/dev/null; then export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && apt-get install -y -q docker.io >/dev/null; fi
docker info >/dev/null 2>&1 || { if [ -d /run/systemd/system ]; then systemctl start docker; else service docker start >/dev/null || /etc/init.d/docker start; fi; }
i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 60 ] && exit 1; sleep 1; done' &
done
wait

# The swarm on the manager, then the joins at once.
on "$manager" "[ \"\$(docker info --format '{{.Swarm.LocalNodeState}}')\" = active ] || docker swarm init --advertise-addr $manager --default-addr-pool 198.19.0.0/16 >/dev/null"
token=$(on "$manager" 'docker swarm join-token -q worker')
for a in "${addrs[@]:1}"; do
  on "$a" "[ \"\$(docker info --format '{{.Swarm.LocalNodeState}}')\" = active ] || docker swarm join --advertise-addr $a --token $token $manager:2377 >/dev/null" &
done
wait

# Labels and networks, on the manager, where they differ.
for i in "${!names[@]}"; do
  on "$manager" "id=\$(docker node ls --format '{{.ID}} {{.Hostname}}' | awk '\$2 == \"${names[$i]}\" { print \$1 }'); [ \"\$(docker node inspect --format '{{index .Spec.Labels \"zone\"}}' \$id)\" = ${zones[$i]} ] || docker node update --label-add zone=${zones[$i]} \$id >/dev/null"
done
on "$manager" 'docker network inspect DATA >/dev/null 2>&1 || docker network create --driver overlay --internal --subnet 198.19.10.0/24 --label io.rpiprov.managed=true DATA >/dev/null
docker network inspect INTERCO >/dev/null 2>&1 || docker network create --driver overlay --attachable --subnet 198.19.11.0/24 --label io.rpiprov.managed=true INTERCO >/dev/null'
bench_done
