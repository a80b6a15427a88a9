#!/usr/bin/env bash
# Installs the Debian packages that the lab and the tests need (idempotent). Needs root.
# The Rust toolchain itself is not installed here: Debian's is too old for this crate.
#
# openssh-server is needed for its sshd binary only: the tests and the lab start their own
# sshd processes, each with its own configuration, on loopback or in the lab's network
# namespaces. The system's SSH service must not come with it: Debian's postinst would start
# it (listening on port 22 of every interface) and enable it at boot. So when this script
# installs the package, it first creates /etc/ssh/sshd_not_to_be_run (Debian's switch, which
# its init script, ssh.service and ssh.socket honour), forbids service starts during the
# install with a policy-rc.d (unless one exists already), disables the units the postinst
# enabled, and fails if anything listens on port 22 afterwards that did not before.
# An openssh-server that was already installed is the administrator's and is left alone.
set -euo pipefail
# faketime/libfaketime: `rpiprov lab clock` skews a node's clock with it.
pkgs=(openssh-client docker.io iptables iproute2 debootstrap busybox-static sudo procps util-linux ca-certificates faketime libfaketime curl openssl)
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
export DEBIAN_FRONTEND=noninteractive
updated=no
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  updated=yes
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# VM nodes (`lab up --vm`), only with `scripts/deps.sh --vm` (no test of the suite runs a VM
# yet, so CI does not install them): Debian's qemu 7.2, qemu-user-static for the
# arm64 image build, cpio and mkfs.ext4 for the images. A machine whose qemu-utils came
# from bookworm-backports cannot install qemu-system 7.2 beside it: qemu-utils is asked at
# the version of bookworm's qemu-system-common (a downgrade where needed).
vm_pkgs=(qemu-system-x86 qemu-system-arm qemu-user-static qemu-utils cpio e2fsprogs)
vm_missing=no
for p in "${vm_pkgs[@]}"; do
  installed "$p" || vm_missing=yes
done
if [ "${1:-}" = "--vm" ] && [ "$vm_missing" = yes ]; then
  echo "installing: ${vm_pkgs[*]} (VM nodes)" >&2
  [ "$updated" = yes ] || apt-get update -qq
  updated=yes
  qemu_version=$(apt-cache policy qemu-system-common | awk '/Candidate:/ {print $2}')
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    qemu-system-x86 qemu-system-arm qemu-user-static "qemu-utils=$qemu_version" cpio e2fsprogs >/dev/null
fi

# Forbids service starts during the installs that follow (a policy-rc.d, unless one exists
# already, removed when this script ends).
no_service_starts() {
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by rpiprov scripts/deps.sh for one install: no service starts.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
}

# Listening sockets on TCP port 22, one per line ("" when none).
port22() {
  ss -Hltn 'sport = :22' | awk '{print $4}' | sort
}

if ! installed openssh-server; then
  echo "installing: openssh-server (for its sshd binary; the system's SSH service stays off)" >&2
  before=$(port22)
  mkdir -p /etc/ssh
  touch /etc/ssh/sshd_not_to_be_run
  no_service_starts
  [ "$updated" = yes ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then
    systemctl disable --quiet ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d ssh disable >/dev/null 2>&1 || true
  fi
  after=$(port22)
  if [ "$after" != "$before" ]; then
    echo "error: something now listens on port 22 ($after) after installing openssh-server: stop it (systemctl stop ssh.service ssh.socket, or /etc/init.d/ssh stop)" >&2
    exit 1
  fi
  echo "openssh-server installed; its service is disabled (/etc/ssh/sshd_not_to_be_run): remove that file and enable ssh.service to run an SSH server on this machine" >&2
fi

# docker-registry: `rpiprov lab up --registry` runs its binary on the lab bridge's address,
# with a configuration of its own. The packaged service (every interface, port 5000) must
# not run: installed with service starts forbidden, then disabled, as openssh-server above.
if ! installed docker-registry; then
  echo "installing: docker-registry (for its binary; the system's registry service stays off)" >&2
  no_service_starts
  [ "$updated" = yes ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then
    systemctl disable --quiet --now docker-registry.service >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d docker-registry disable >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install Rust 1.89 or newer (https://rustup.rs) first" >&2
  exit 2
fi
