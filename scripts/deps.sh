#!/usr/bin/env bash
# Installs the Debian packages that the lab and the tests need (idempotent). Needs root.
# The Rust toolchain itself is not installed here: Debian's is too old for this crate.
set -euo pipefail
pkgs=(openssh-server openssh-client docker.io iptables iproute2 debootstrap busybox-static sudo procps util-linux ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install Rust 1.89 or newer (https://rustup.rs) first" >&2
  exit 2
fi
