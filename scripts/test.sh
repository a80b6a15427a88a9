#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test, including the
# ones against real sshd processes and the end-to-end tests on a virtual Pi fleet.
# Run as root (the lab makes network namespaces). Every lab a test brings up is torn down
# by the test itself, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the tests need root (network namespaces, sshd, dockerd): run with sudo" >&2
  exit 2
fi
scripts/deps.sh
# The debootstrap base of bare nodes is made once and reused by every lab the tests start.
export RPIPROV_LAB_CACHE="${RPIPROV_LAB_CACHE:-$PWD/target/lab-cache}"
cargo test --all-targets "$@"
