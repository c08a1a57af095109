#!/usr/bin/env bash
# Build the gateway package: a Debian package of the agent alone, for amd64 or arm64.
#   scripts/package.sh [--arch amd64|arm64] [--out DIR] [--wheel linecheck-*.whl] [--compress xz|gzip]
# (xz, the default, is 11 MB and takes a minute or so; gzip, for test runs, is 16 MB in seconds.)
# Prints the path of the .deb. Needs dpkg-deb and pip (this clone's .venv, or $PYTHON), and the
# package index for the dependencies' wheels of the target architecture.
#
# What it holds (docs/install.md):
#   /opt/linecheck-agent/lib          the agent (the linecheck wheel without the carrier-side packages) and
#                                     its dependencies as wheels built for the target (Debian 12: CPython
#                                     3.11, glibc 2.36), byte-compiled: the service cannot write there
#   /usr/bin/linecheck-agent          runs it with the system's python3 (-I: no user site, no PYTHON*)
#   /lib/systemd/system/linecheck-agent.{service,path}
#                                     its own user, CAP_NET_RAW only, state in /var/lib/linecheck; started
#                                     once `linecheck-agent enroll` has written /etc/linecheck/agent.yaml
#   /usr/share/doc/linecheck-agent/   the example config and the install guide
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
out=dist
wheel=
compress=xz
while (($#)); do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --wheel) wheel=$2; shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    *) echo "package.sh: unknown argument $1 (expected --arch, --out, --wheel, --compress)" >&2; exit 2 ;;
  esac
done
case "$arch" in
  amd64) platform=x86_64 ;;
  arm64) platform=aarch64 ;;
  *) echo "package.sh: --arch $arch: expected amd64 or arm64" >&2; exit 2 ;;
esac
case "$compress" in
  xz|gzip) ;;
  *) echo "package.sh: --compress $compress: expected xz or gzip" >&2; exit 2 ;;
esac
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is not installed (apt-get install dpkg)" >&2; exit 2; }
python=${PYTHON:-.venv/bin/python}
[[ -x "$python" ]] || python=python3

# Debian 12's interpreter: the compiled dependencies (psutil, pydantic-core, cryptography, PyYAML) must be
# built for it, so the package depends on exactly that Python minor version.
pyver=3.11
glibc=2_36
version=$("$python" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("linecheck/__init__.py").read())[1])')
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/linecheck-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ -z "$wheel" ]]; then
  # From a copy: an in-tree build would write build/ into the clone others may be building in too.
  mkdir "$work/src"
  cp -r pyproject.toml README.md agent linecheck collector testserver "$work/src/"
  find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
  "$python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$work/wheel" "$work/src" \
    > "$work/wheel.log" 2>&1 || { cat "$work/wheel.log" >&2; exit 1; }
  wheel=$(ls "$work"/wheel/linecheck-*.whl)
fi

# Every manylinux tag the target's glibc accepts (pip does not widen one --platform to the older ones).
platforms=(--platform "manylinux2014_${platform}")
for ((minor = 17; minor <= ${glibc#2_}; minor++)); do platforms+=(--platform "manylinux_2_${minor}_${platform}"); done

root="$work/root"
lib="$root/opt/linecheck-agent/lib"
# Only wheels for the target: the same command for the native and the foreign architecture, no compiler.
"$python" -m pip install -q --disable-pip-version-check --no-compile --target "$lib" \
  --only-binary=:all: --implementation cp --python-version "$pyver" --abi "cp${pyver/./}" \
  "${platforms[@]}" "$wheel" > "$work/pip.log" 2>&1 \
  || { cat "$work/pip.log" >&2; exit 1; }
# The carrier side travels in the same wheel (one distribution, extras for its dependencies): a gateway
# has no use for it, and none of its dependencies are here to import it.
rm -rf "$lib/collector" "$lib/testserver" "$lib/bin"
# unchecked-hash: valid whatever mtimes dpkg gives the files; the service's /opt is read-only (ProtectSystem)
"$python" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$lib" >/dev/null

install -D -m 0755 packaging/deb/linecheck-agent "$root/opt/linecheck-agent/bin/linecheck-agent"
mkdir -p "$root/usr/bin"
ln -s /opt/linecheck-agent/bin/linecheck-agent "$root/usr/bin/linecheck-agent"
install -D -m 0644 config/systemd/linecheck-agent.service "$root/lib/systemd/system/linecheck-agent.service"
install -D -m 0644 packaging/deb/linecheck-agent.path "$root/lib/systemd/system/linecheck-agent.path"
doc="$root/usr/share/doc/linecheck-agent"
install -D -m 0644 config/agent.example.yaml "$doc/agent.example.yaml"
[[ -f docs/install.md ]] && install -m 0644 docs/install.md "$doc/install.md"
printf 'linecheck agent %s\nLicense: Apache-2.0\nBundled Python libraries keep their own licenses (see %s/*.dist-info).\n' \
  "$version" /opt/linecheck-agent/lib > "$doc/copyright"

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: linecheck-agent
Version: $version
Architecture: $arch
Maintainer: linecheck <linecheck@localhost>
Installed-Size: $size
Depends: python3 (>= $pyver), python3 (<< 3.$(( ${pyver#3.} + 1 ))), passwd
Section: net
Priority: optional
Homepage: https://github.com/linecheck/linecheck
Description: broadband line checks on an office gateway
 The linecheck agent checks the office's broadband line (link, loss, latency, DNS,
 path MTU, HTTP, throughput, WiFi), keeps every result on disk until the carrier's
 collector has stored it, and delivers it over MQTT with TLS. It runs as its own
 user with CAP_NET_RAW only. Enrol with 'linecheck-agent enroll', then check with
 'linecheck-agent check'.
EOF
deb="$out/linecheck-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
