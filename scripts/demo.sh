#!/usr/bin/env bash
# The README's first command: on a fresh Debian or Ubuntu machine, as root, installs what
# the lab needs, builds rpiprov, brings up a virtual 3-Pi fleet (one without Docker),
# bootstraps the swarm, deploys the lab playbook and shows the fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the lab needs root (network namespaces): run it as root, or sudo scripts/demo.sh" >&2
  exit 2
fi
# Under sudo, PATH is sudo's secure_path: the invoking user's rustup toolchain is not on it.
if ! command -v cargo >/dev/null 2>&1 && [ -n "${SUDO_USER:-}" ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -x "$user_home/.cargo/bin/cargo" ]; then
    export PATH="$user_home/.cargo/bin:$PATH"
    export RUSTUP_HOME="${RUSTUP_HOME:-$user_home/.rustup}"
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install Rust >= 1.89 (rustup.rs, or apt-get install cargo)" >&2
  exit 2
fi
scripts/deps.sh
cargo build --release --quiet
bin=target/release/rpiprov
lab=${LAB_DIR:-.lab}
$bin lab up --dir "$lab"
# pi2's sudo asks for a password, as on a Pi that was set up by hand.
RPIPROV_SUDO_PASSWORD="$(cat "$lab/sudo-password")"
export RPIPROV_SUDO_PASSWORD
$bin -i "$lab/inventory.toml" bootstrap
$bin -i "$lab/inventory.toml" deploy
# The fleet as rpiprov sees it: nodes, quorum, stacks and their services.
$bin status -i "$lab/inventory.toml" || true
cat <<EOT

The fleet is up. Go on with:
  export RPIPROV_SUDO_PASSWORD="\$(cat $lab/sudo-password)"
  $bin -i $lab/inventory.toml plan deploy    # what a deploy would change, with diffs
  $bin -i $lab/inventory.toml logs echo      # the echo service's logs
  $bin -i $lab/inventory.toml bootstrap      # again: changes nothing
  $bin -i $lab/inventory.toml teardown --yes # removes the stacks and networks
  $bin lab down --dir $lab                   # removes the whole lab
EOT
