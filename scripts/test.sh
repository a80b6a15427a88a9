#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test, including the
# ones against real sshd processes and the end-to-end tests on a virtual Pi fleet.
# Run as root (the lab makes network namespaces). Every lab a test brings up is torn down
# by the test itself, pass or fail.
#
# `scripts/test.sh --fast`: the fast tier only, without root, lab or sshd: the unit tests
# and the offline integration tests (configuration checks, the library's config API, what
# every command does when its output pipe closes, the process's state while it holds a
# secret).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
  shift
  exec cargo test --lib --test check --test config_api --test terminal --test secrets "$@"
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the tests need root (network namespaces, sshd, dockerd): run with sudo, or scripts/test.sh --fast for the tests that do not" >&2
  exit 2
fi
scripts/deps.sh
# The debootstrap base of bare nodes is made once and reused by every lab the tests start.
export RPIPROV_LAB_CACHE="${RPIPROV_LAB_CACHE:-$PWD/target/lab-cache}"
status=0
# cargo-nextest runs the test binaries side by side (.config/nextest.toml); cargo test runs
# them one after another.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets "$@" || status=$?
else
  cargo test --all-targets "$@" || status=$?
fi

# The transport tests' users and sudo rules exist only inside their sshd's mount namespace
# (tests/support/sshd.rs): whatever the outcome above, this machine must hold none of them.
leftovers=$(
  getent passwd rpiprov-test rpiprov-test-np || true
  grep -rls 'rpiprov-test' /etc/sudoers.d 2>/dev/null || true
  ls -d /home/rpiprov-test* 2>/dev/null || true
)
if [ -n "$leftovers" ]; then
  echo "error: the tests left test users or sudo rules on this machine (remove them: userdel -r USER, rm FILE):" >&2
  echo "$leftovers" >&2
  status=1
fi
exit "$status"
