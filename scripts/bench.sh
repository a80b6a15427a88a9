#!/usr/bin/env bash
# The benchmark of the whole job, as root: rpiprov beside a careful shell script over
# OpenSSH ControlMaster (scripts/bench/bootstrap.sh, stacks.sh: the same work, in the same
# order, with the same waits), the script a person writes by hand (scripts/bench/hand.sh:
# replica counts polled, networks removed in a retry loop, no other wait) and Ansible
# with community.docker (scripts/bench/ansible/), each on a lab of its own of the same
# shape, one after another; one table from one run.
#
#   scripts/bench.sh [CPU]      CPU: also at Pi speed, each node capped to this fraction
#                               of a core (`lab up --cpu`, when the lab has it), e.g. 0.25
#   RPIPROV_BENCH_PARTS=1       only these parts (a list: 1 2 3), all by default
#
# Parts:
#   1. 3 nodes (pi1 manager and pi2 with Docker, pi3 bare): bootstrap cold and no-op;
#      deploy cold (image shipped), no-op, one stack changed; teardown. Full speed, then at
#      Pi speed when asked and available.
#   2. bootstrap of 12 nodes that have Docker (swarm init, 11 joins, labels, networks).
#   3. `run -- true` on 200 sshd-only nodes beside `xargs -P 16 ssh`, with peak RSS.
# Figures: wall seconds (GNU time), the ratios to both shell scripts, and what rpiprov's
# command cost the hosts (its --json `remote`: connections, round trips, docker CLI calls,
# Engine API requests) and its peak RSS. Took 17 minutes with CPU=0.25 on a 2-core machine (Docker's apt
# install on the bare nodes dominates; a slow mirror makes it longer). Not part of CI.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
CPU=${1:-}
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the lab needs root: run with sudo" >&2
  exit 2
fi
# The benchmark's labs take every slot of the machine's lab semaphore (the one the tests'
# labs take: tests/support/fleet.rs), under its `multi` lock: it starts once the test labs
# running now are down, and test labs that would start meanwhile wait for it, so that
# the figures are not another lab's. Set RPIPROV_BENCH_SLOTS=held to run without.
if [ "${RPIPROV_BENCH_SLOTS:-}" != held ]; then
  slots=/tmp/rpiprov-lab-slots
  install -d -m 700 "$slots"
  cmd=("$PWD/scripts/bench.sh" "$@")
  for i in $(seq $((${RPIPROV_LAB_PARALLEL:-2} - 1)) -1 0); do cmd=(flock "$slots/slot-$i" "${cmd[@]}"); done
  echo "waiting for the machine's lab slots ($slots)" >&2
  RPIPROV_BENCH_SLOTS=held exec flock "$slots/multi" "${cmd[@]}"
fi
scripts/deps.sh
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
# Ansible's docker modules run on the nodes and need the Docker SDK for Python there (and
# jsondiff and PyYAML for docker_stack). The lab's Docker nodes run on this machine's
# /usr: Debian's packages installed here serve them; the bare node gets them from its own
# apt in the playbook's first task, as a fresh Pi would.
/usr/bin/python3 -c 'import docker, jsondiff, yaml' 2>/dev/null ||
  apt-get install -y -qq python3-docker python3-jsondiff python3-yaml >/dev/null
venv=target/bench-venv
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible # brings community.docker
fi
cargo build --release --quiet --bin rpiprov
bin=$PWD/target/release/rpiprov
export RPIPROV_LAB_CACHE="${RPIPROV_LAB_CACHE:-$PWD/target/lab-cache}"
work=$(mktemp -d)
labs=()
cleanup() {
  for l in "${labs[@]}"; do "$bin" lab down --dir "$l" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export ANSIBLE_STDOUT_CALLBACK=minimal ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_HOST_KEY_CHECKING=True

# Runs a command; prints "seconds peak_rss_MiB"; fails loudly if the command failed.
measure() {
  if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err"; then
    echo "error: failed: $*" >&2
    tail -15 "$work/out" "$work/err" >&2
    exit 1
  fi
  awk '{ printf "%.2f %.0f", $1, $2 / 1024 }' "$work/time"
  # Kept for cost(): measure runs in a command substitution, whose variables are lost.
  awk '{ printf "%.0f", $2 / 1024 }' "$work/time" >"$work/rss"
}
# rpiprov's cost from its --json (its stdout, in $work/out) on a lab: "connections per
# host of the lab, round trips, docker CLI calls, API requests, peak RSS" (the RSS of the
# last measured command, rpiprov's).
cost() { # LAB
  python3 -c 'import json,sys,tomllib
d=json.load(open(sys.argv[1])); r=d["remote"]
hosts=len(tomllib.load(open(sys.argv[2] + "/inventory.toml", "rb"))["host"])
print("%.1f, %d, %d, %d, %s MiB" % (r["connections"]/hosts, r["round_trips"], r["docker_cli"], r["api_requests"], open(sys.argv[3]).read()))' "$work/out" "$1" "$work/rss"
}
lab_up() { # DIR ARGS...
  local dir=$1
  shift
  labs+=("$dir")
  "$bin" lab up --dir "$dir" "$@" >/dev/null
}
lab_down() {
  "$bin" lab down --dir "$1" >/dev/null
}
# The Ansible inventory of a lab: hosts by address, manager and workers, pi2's password.
ansible_inventory() { # LAB
  python3 - "$1" <<'PY'
import sys, tomllib
lab = sys.argv[1]
inv = tomllib.load(open(f"{lab}/inventory.toml", "rb"))
pw = open(f"{lab}/sudo-password").read().strip()
lines = {"managers": [], "workers": []}
for h in inv["host"]:
    extra = f" node_name={h['name']} zone={h['labels']['zone']}"
    if "become_password" in h:
        extra += f" ansible_become_password={pw}"
    lines["managers" if h["role"] == "manager" else "workers"].append(h["address"] + extra)
print("[managers]\n" + "\n".join(lines["managers"]))
print("[workers]\n" + "\n".join(lines["workers"]))
print("[pis:children]\nmanagers\nworkers")
print(f"""[pis:vars]
ansible_user=pi
ansible_python_interpreter=/usr/bin/python3
ansible_ssh_private_key_file={lab}/id_ed25519
ansible_ssh_common_args='-o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={lab}/known_hosts'
lab={lab}""")
PY
}
rp() { # LAB ARGS...: rpiprov on a lab, with its sudo password
  local lab=$1
  shift
  RPIPROV_SUDO_PASSWORD=$(cat "$lab/sudo-password") measure "$bin" -i "$lab/inventory.toml" --json "$@"
}
ap() { # LAB PLAYBOOK
  measure "$venv/bin/ansible-playbook" -i "$work/$(basename "$1").ini" -f 16 "scripts/bench/ansible/$2.yml"
}
edit_echo() { # LAB: the same change of one stack for every tool
  sed -i 's/^    deploy:$/    environment:\n      BENCH: "1"\n    deploy:/' "$1/stacks/echo.yml"
}
# The seconds of a measured command (set -e stops the benchmark when it failed).
secs() {
  local v
  v=$("$@")
  echo "${v%% *}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
header() {
  echo
  echo "$1"
  echo
  echo "| job | rpiprov | careful shell | rpiprov / careful | hand-written shell | rpiprov / hand-written | Ansible | rpiprov / Ansible | rpiprov: connections per host, round trips, docker CLI calls, API requests, peak RSS |"
  echo "|---|---|---|---|---|---|---|---|---|"
}
result() { # JOB RPIPROV_SECS COST SHELL_SECS HAND_SECS ANSIBLE_SECS
  local a=${6:--}
  local ra=-
  [ "$a" != - ] && ra=$(ratio "$2" "$a")
  row "$1" "$2 s" "$4 s" "$(ratio "$2" "$4")" "$5 s" "$(ratio "$2" "$5")" "$a${6:+ s}" "$ra" "$3"
}

# Part 1: the whole job on 3 nodes.
jobs3() { # LABEL LAB_ARGS...
  local label=$1
  shift
  local r=$work/r3 s=$work/s3 h=$work/h3 a=$work/a3
  for l in "$r" "$s" "$h" "$a"; do lab_up "$l" "$@"; done
  ansible_inventory "$a" >"$work/a3.ini"
  header "$label"
  declare -A R S H A C
  R[bc]=$(secs rp "$r" bootstrap); C[bc]=$(cost "$r")
  S[bc]=$(secs measure scripts/bench/bootstrap.sh "$s")
  H[bc]=$(secs measure scripts/bench/hand.sh "$h" bootstrap)
  A[bc]=$(secs ap "$a" bootstrap)
  R[bn]=$(secs rp "$r" bootstrap); C[bn]=$(cost "$r")
  S[bn]=$(secs measure scripts/bench/bootstrap.sh "$s")
  H[bn]=$(secs measure scripts/bench/hand.sh "$h" bootstrap)
  A[bn]=$(secs ap "$a" bootstrap)
  R[dc]=$(secs rp "$r" deploy); C[dc]=$(cost "$r")
  S[dc]=$(secs measure scripts/bench/stacks.sh "$s" deploy)
  H[dc]=$(secs measure scripts/bench/hand.sh "$h" deploy)
  A[dc]=$(secs ap "$a" deploy)
  R[dn]=$(secs rp "$r" deploy); C[dn]=$(cost "$r")
  S[dn]=$(secs measure scripts/bench/stacks.sh "$s" deploy)
  H[dn]=$(secs measure scripts/bench/hand.sh "$h" deploy)
  A[dn]=$(secs ap "$a" deploy)
  for l in "$r" "$s" "$h" "$a"; do edit_echo "$l"; done
  R[d1]=$(secs rp "$r" deploy); C[d1]=$(cost "$r")
  S[d1]=$(secs measure scripts/bench/stacks.sh "$s" deploy)
  H[d1]=$(secs measure scripts/bench/hand.sh "$h" deploy)
  A[d1]=$(secs ap "$a" deploy)
  R[td]=$(secs rp "$r" teardown --yes); C[td]=$(cost "$r")
  S[td]=$(secs measure scripts/bench/stacks.sh "$s" teardown)
  H[td]=$(secs measure scripts/bench/hand.sh "$h" teardown)
  A[td]=$(secs ap "$a" teardown)
  result "bootstrap, cold (Docker installed on pi3)" "${R[bc]}" "${C[bc]}" "${S[bc]}" "${H[bc]}" "${A[bc]}"
  result "bootstrap, no-op" "${R[bn]}" "${C[bn]}" "${S[bn]}" "${H[bn]}" "${A[bn]}"
  result "deploy, cold (image shipped, 3 stacks)" "${R[dc]}" "${C[dc]}" "${S[dc]}" "${H[dc]}" "${A[dc]}"
  result "deploy, no-op" "${R[dn]}" "${C[dn]}" "${S[dn]}" "${H[dn]}" "${A[dn]}"
  result "deploy, one stack changed" "${R[d1]}" "${C[d1]}" "${S[d1]}" "${H[d1]}" "${A[d1]}"
  result "teardown" "${R[td]}" "${C[td]}" "${S[td]}" "${H[td]}" "${A[td]}"
  for l in "$r" "$s" "$h" "$a"; do lab_down "$l"; done
}

echo "rpiprov benchmark: $(nproc) cores, $(free -g | awk '/^Mem/ { print $2 }') GiB, $(uname -sr), $(date -u +%Y-%m-%d)"
parts=" ${RPIPROV_BENCH_PARTS:-1 2 3} "
part() { [[ $parts == *" $1 "* ]]; }
part 1 && jobs3 "3 nodes, full speed" --nodes 2 --bare 1
if part 1 && [ -n "$CPU" ]; then
  if "$bin" lab up --help | grep -q -- '--cpu'; then
    jobs3 "3 nodes, Pi speed (lab up --cpu $CPU)" --nodes 2 --bare 1 --cpu "$CPU"
  else
    echo
    echo "Pi speed: not measured (this lab has no --cpu)"
  fi
fi

# Part 2: bootstrap of 12 nodes with Docker.
if part 2; then
header "bootstrap of 12 nodes (all with Docker)"
for t in r s h a; do lab_up "$work/${t}12" --nodes 12 --bare 0; done
ansible_inventory "$work/a12" >"$work/a12.ini"
r12=$(secs rp "$work/r12" bootstrap)
c12=$(cost "$work/r12")
s12=$(secs measure scripts/bench/bootstrap.sh "$work/s12")
h12=$(secs measure scripts/bench/hand.sh "$work/h12" bootstrap)
a12=$(secs ap "$work/a12" bootstrap)
result "bootstrap, cold (swarm init, 11 joins, labels, networks)" "$r12" "$c12" "$s12" "$h12" "$a12"
for t in r s h a; do lab_down "$work/${t}12"; done
fi
part 3 || exit 0

# Part 3: fan-out on 200 sshd-only nodes.
lab=$work/fan
lab_up "$lab" --sshd-only 200
mapfile -t addrs < <(sed -n 's/^address = "\(.*\)"/\1/p' "$lab/inventory.toml")
ssh_opts="-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$lab/known_hosts -i $lab/id_ed25519"
v=$(measure "$bin" -i "$lab/inventory.toml" --parallel 16 run -- true)
read -r fr fm <<<"$v"
v=$(measure sh -c "printf '%s\n' ${addrs[*]} | xargs -P 16 -I{} ssh $ssh_opts pi@{} true")
read -r fs fsm <<<"$v"
echo
echo "fan-out on 200 sshd-only nodes, 16 at once"
echo
echo "| job | rpiprov | xargs -P 16 ssh | rpiprov / ssh | rpiprov peak RSS | ssh peak RSS (per process) |"
echo "|---|---|---|---|---|---|"
echo "| \`run -- true\` | $fr s | $fs s | $(ratio "$fr" "$fs") | $fm MiB | $fsm MiB |"
lab_down "$lab"
