#!/usr/bin/env bash
# The careful shell script rpiprov's deploy and teardown are measured against: the lab
# playbook's work, done over OpenSSH with one ControlMaster connection per host, in the
# same order and with the same guarantees (see the README's benchmark section).
#   scripts/bench/stacks.sh LAB_DIR deploy     networks, images, files, stacks in order,
#                                              each converged before the next
#   scripts/bench/stacks.sh LAB_DIR teardown   stacks in reverse order, each one's services
#                                              and networks gone before the next; then
#                                              their containers on every node, all at
#                                              once; then the networks, until really gone
# Convergence, as rpiprov checks it: every service at its replicas (running/desired),
# no update in progress, and still so a second later (a task that dies at once).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Commands read stdin only where given a file.
exec </dev/null
lab=$1
job=$2
cd "$lab"
# shellcheck source=scripts/bench/lib.sh
. "$here/lib.sh"
stacks=(web api echo)

# Every `running/desired` at its count, every update state `completed` (or none).
converged() {
  [ -n "$1" ] && echo "$1" | awk '{ for (i = 1; i <= NF; i++) { if ($i ~ /^[0-9]+\/[0-9]+$/) { split($i, r, "/"); if (r[1] != r[2]) bad = 1 } else if ($i != "completed") bad = 1 } } END { exit bad }'
}

deploy() {
  on "$manager" 'docker network inspect DATA >/dev/null 2>&1 || docker network create --driver overlay --internal --subnet 198.19.10.0/24 --label io.rpiprov.managed=true DATA >/dev/null
docker network inspect INTERCO >/dev/null 2>&1 || docker network create --driver overlay --attachable --subnet 198.19.11.0/24 --label io.rpiprov.managed=true INTERCO >/dev/null'
  for a in "${addrs[@]}"; do
    if ! on "$a" 'docker image inspect rpiprov-lab/busybox:1 >/dev/null 2>&1'; then
      on "$a" "docker import --change 'CMD [\"/bin/httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]' - rpiprov-lab/busybox:1 >/dev/null" <images/busybox.tar
    fi
  done
  for s in "${stacks[@]}"; do
    on "$manager" "mkdir -p /var/lib/bench/$s && cat > /var/lib/bench/$s/$s.yml" <"stacks/$s.yml"
  done
  for s in "${stacks[@]}"; do
    on "$manager" "cd /var/lib/bench/$s && docker stack deploy --prune --resolve-image never -c $s.yml $s >/dev/null"
    local seen=0
    for _ in $(seq 1 240); do
      state=$(on "$manager" "docker stack services --format '{{.Replicas}}' $s | cut -d' ' -f1; for id in \$(docker stack services -q $s); do docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' \$id; done")
      if converged "$state"; then
        seen=$((seen + 1))
        # Converged on three polls in a row, over a second: as rpiprov's settle time.
        [ "$seen" -ge 3 ] && break
      else
        seen=0
      fi
      sleep 0.5
    done
    [ "$seen" -ge 3 ] || { echo "stack $s did not converge" >&2; exit 1; }
  done
}

# Reverse order: each stack's services and networks gone from the swarm before the
# previous stack is removed; then the containers of every removed stack, on every node
# at once, until none is left; then the networks, until really gone. What rpiprov's
# teardown does (see the README's benchmark section).
teardown() {
  local removed=()
  for s in echo api web; do
    on "$manager" "docker stack rm $s >/dev/null 2>&1 || true"
    for _ in $(seq 1 240); do
      left=$(on "$manager" "docker service ls -q --filter label=com.docker.stack.namespace=$s; docker network ls -q --filter label=com.docker.stack.namespace=$s")
      [ -z "$left" ] && break
      sleep 0.5
    done
    [ -z "$left" ] || { echo "stack $s is not gone" >&2; exit 1; }
    removed+=("-e" "$s")
  done
  local out
  out=$(mktemp -d)
  for _ in $(seq 1 240); do
    local pids=()
    for a in "${addrs[@]}"; do
      on "$a" "docker ps -a --filter label=com.docker.stack.namespace --format '{{.Label \"com.docker.stack.namespace\"}}'" >"$out/$a" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    left=$(cat "$out"/* | grep -x "${removed[@]}" || true)
    [ -z "$left" ] && break
    sleep 0.5
  done
  rm -rf "$out"
  [ -z "$left" ] || { echo "containers left: $left" >&2; exit 1; }
  for n in INTERCO DATA; do
    for _ in $(seq 1 120); do
      on "$manager" "docker network rm $n >/dev/null 2>&1; ! docker network inspect $n >/dev/null 2>&1" && break
      sleep 0.5
    done
  done
}

"$job"
bench_done
