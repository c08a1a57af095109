#!/usr/bin/env bash
# Set up a fresh machine for linecheck: Debian packages (when root), a virtualenv, the project.
#   scripts/setup.sh          what the local stack needs (mosquitto, iproute2; linecheck[collector])
#   scripts/setup.sh --test   plus what the test suite needs (iperf3, nginx, chromium, ...; linecheck[dev])
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(mosquitto iproute2)
# The base install is the gateway agent only (pyproject.toml); the local stack runs the collector too,
# and the tests every part (dev brings collector and testserver).
extras=(collector)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(iperf3 nginx chromium chromium-driver iputils-ping dnsmasq-base fonts-wqy-microhei)
  # the gateway package tests: clean Debian root filesystems, arm64 under emulation (tests/rootfs.py)
  packages+=(debootstrap qemu-user-static binfmt-support)
  packages+=(nats-server)  # tests/nats_cluster.py: a 3-node cluster on free ports (the cluster tests)
  extras=(dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "setup: warning: could not install ${missing[*]}; tests needing them will skip"
  else
    echo "setup: not root: not installing ${missing[*]} (the stack falls back to an embedded broker;"
    echo "       tests that need them skip with a reason)"
  fi
fi
# A Debian-installed mosquitto starts a system broker on :1883; the stack runs its own, so that is fine.

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
spec="."
((${#extras[@]})) && spec=".[${extras[*]}]"
stamp=".venv/.linecheck-installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras[*]:-base}"
if [[ ! -f "$stamp" ]]; then
  if ! command -v mosquitto >/dev/null; then
    spec="${spec%]}"; [[ "$spec" == "." ]] && spec=".[embedded-broker]" || spec="$spec,embedded-broker]"
  fi
  echo "setup: installing linecheck into .venv (log: .venv/install.log)"
  # pip and setuptools are chatty about things users cannot act on: keep it in a log, show it on failure.
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -e "$spec"; } \
      > .venv/install.log 2>&1; then
    tail -30 .venv/install.log; echo "setup: pip install failed (full log: .venv/install.log)"; exit 1
  fi
  touch "$stamp"
fi

if [[ "${1:-}" == "--test" && $EUID -eq 0 ]] && command -v debootstrap >/dev/null; then
  # The package tests install the .deb into clean Debian 12 root filesystems (amd64, arm64): built once
  # per machine (a few minutes, arm64 under qemu) under /var/cache/linecheck and reused by every run.
  .venv/bin/python -m tests.rootfs amd64 arm64 \
    || echo "setup: warning: a root filesystem could not be built; tests/test_package.py will say why"
fi
