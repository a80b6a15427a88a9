# Sourced by scripts/bench/bootstrap.sh and stacks.sh, in a lab's folder: the nodes'
# addresses, one OpenSSH ControlMaster connection per host (all opened at once), and
# `on HOST CMD`, a root command there with the command's stdin passed on and sudo's
# password first where the host's sudo asks for it (only there: elsewhere it would reach
# the command's stdin).
mapfile -t addrs < <(sed -n 's/^address = "\(.*\)"/\1/p' inventory.toml)
manager=${addrs[0]}
password=$(cat sudo-password)
sockets=$(mktemp -d)
ssh_opts=(-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes
  -o UserKnownHostsFile="$PWD/known_hosts" -i "$PWD/id_ed25519"
  -o ControlMaster=auto -o ControlPath="$sockets/%h" -o ControlPersist=120)
for a in "${addrs[@]}"; do
  { ssh "${ssh_opts[@]}" "pi@$a" 'sudo -n true' 2>/dev/null && echo no || echo yes; } >"$sockets/$a.asks" &
done
wait
declare -A asks
for a in "${addrs[@]}"; do asks[$a]=$(cat "$sockets/$a.asks"); done
on() {
  local host=$1
  shift
  if [ "${asks[$host]}" = yes ]; then
    { printf '%s\n' "$password"; cat; } | ssh "${ssh_opts[@]}" "pi@$host" "sudo -S -p '' sh -c $(printf '%q' "$*")"
  else
    ssh "${ssh_opts[@]}" "pi@$host" "sudo sh -c $(printf '%q' "$*")"
  fi
}
# Closes the master connections.
bench_done() {
  for a in "${addrs[@]}"; do ssh "${ssh_opts[@]}" -O exit "pi@$a" 2>/dev/null || true; done
  rm -rf "$sockets"
}
