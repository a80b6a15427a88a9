#!/usr/bin/env bash
# Benchmarks rpiprov's SSH layer beside its peers, on the same virtual Pis (lab nodes that
# run only sshd), and prints the figures side by side. As root:
#   scripts/bench.sh [NODES] [COMMANDS] [PARALLEL]     (defaults: 100 20 16)
# Workloads:
#   fan-out:    one command (`true`) on every node;
#   sequential: COMMANDS commands one after another on every node (as a bootstrap or a
#               deploy does its steps; the Ansible forum measurement was 20 mkdir calls).
# Peers: OpenSSH (one `ssh` per command), OpenSSH with ControlMaster (one master per host,
# as Ansible sets it up), Ansible (ansible-core from PyPI, in target/bench-venv).
# Figures: wall seconds, and the peak resident memory of the largest process (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
K=${2:-20}
P=${3:-16}
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the lab needs root: run with sudo" >&2
  exit 2
fi
scripts/deps.sh
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
venv=target/bench-venv
if [ ! -x "$venv/bin/ansible" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core
fi
cargo build --release --quiet --bin rpiprov --example exec_bench
bin=target/release/rpiprov
lab=target/bench-lab
work=$(mktemp -d)
cleanup() { "$bin" lab down --dir "$lab" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin" lab up --dir "$lab" --sshd-only "$N" >/dev/null
inv="$lab/inventory.toml"
mapfile -t addrs < <(sed -n 's/^address = "\(.*\)"/\1/p' "$inv")
[ "${#addrs[@]}" -eq "$N" ] || { echo "error: expected $N nodes in $inv" >&2; exit 1; }

ssh_opts="-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$lab/known_hosts -i $lab/id_ed25519"
cm_opts="$ssh_opts -o ControlMaster=auto -o ControlPath=$work/cm-%h -o ControlPersist=60"
{
  echo "[pis]"
  printf '%s\n' "${addrs[@]}"
  echo "[pis:vars]"
  echo "ansible_user=pi"
  echo "ansible_ssh_private_key_file=$lab/id_ed25519"
  echo "ansible_ssh_common_args='-o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$lab/known_hosts'"
} > "$work/hosts.ini"
cat > "$work/seq.yml" <<EOT
- hosts: pis
  gather_facts: false
  tasks:
    - raw: mkdir -p /tmp/ansible-bench/{{ item }}
      loop: "{{ range($K) | list }}"
EOT
export ANSIBLE_FORKS=$P ANSIBLE_STDOUT_CALLBACK=minimal ANSIBLE_LOCALHOST_WARNING=False

# Runs a command, prints "seconds peak_rss_MiB", fails loudly if the command failed.
measure() {
  if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1; then
    echo "error: failed: $*" >&2
    tail -5 "$work/out" >&2
    exit 1
  fi
  awk '{ printf "%.2f %.0f", $1, $2 / 1024 }' "$work/time"
}
row() { printf '%-44s %10s %10s\n' "$1" "$2" "$3"; }

echo "rpiprov SSH benchmark: $N lab nodes (sshd only), $K sequential commands, $P at once"
row "tool / workload" "seconds" "peak MiB"
row "fan-out: rpiprov run -- true" $(measure "$bin" -i "$inv" --parallel "$P" run -- true)
row "fan-out: OpenSSH, ssh per host" $(measure sh -c "printf '%s\n' ${addrs[*]} | xargs -P $P -I{} ssh $ssh_opts pi@{} true")
row "fan-out: Ansible raw" $(measure "$venv/bin/ansible" pis -i "$work/hosts.ini" -m raw -a true)
row "sequential: rpiprov (one connection/host)" $(measure target/release/examples/exec_bench "$inv" "$K" "$P")
row "sequential: OpenSSH, ssh per command" $(measure sh -c "printf '%s\n' ${addrs[*]} | xargs -P $P -I{} sh -c 'for i in \$(seq $K); do ssh $ssh_opts pi@{} mkdir -p /tmp/ssh-bench/\$i || exit 1; done'")
row "sequential: OpenSSH ControlMaster" $(measure sh -c "printf '%s\n' ${addrs[*]} | xargs -P $P -I{} sh -c 'for i in \$(seq $K); do ssh $cm_opts pi@{} mkdir -p /tmp/cm-bench/\$i || exit 1; done; ssh $cm_opts -O exit pi@{} 2>/dev/null; true'")
row "sequential: Ansible playbook" $(measure "$venv/bin/ansible-playbook" -i "$work/hosts.ini" "$work/seq.yml")
