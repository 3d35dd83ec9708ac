#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine, run as root by `make test` / `make demo`:
# Debian packages, kernel headers for bcc, bpffs, and a venv built from Debian's python3.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { [ "$(id -u)" = 0 ] || { echo "xdpstack set-up: run as root (XDP, namespaces and apt need it)" >&2; exit 1; }; }
need_root

# Debian packages. python3-bpfcc is the only bcc we use (see README: "What we wrote by hand").
PKGS=(python3-bpfcc bpftool libxdp-dev libbpf-dev libelf-dev zlib1g-dev pkg-config gcc clang libclang-rt-14-dev make
      iproute2 ethtool python3-venv python3-dev linux-headers-amd64
      curl netcat-openbsd iputils-ping wrk iperf3 nginx-light tcpdump)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "xdpstack set-up: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx-light's package starts a server on port 80 of the host; we only want the binary.
if systemctl is-active --quiet nginx 2>/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi

# bcc needs headers under /lib/modules/$(uname -r)/build. When the running kernel has none, link
# Debian's linux-headers-amd64 (its UAPI structs are stable; see ../XDP notes in the README).
K=$(uname -r)
if [ ! -e "/lib/modules/$K/build/.config" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
  [ -n "$hdr" ] && [ -n "$common" ] || { echo "xdpstack set-up: no linux-headers-*-amd64 under /usr/src" >&2; exit 1; }
  mkdir -p "/lib/modules/$K"
  ln -sfn "$hdr" "/lib/modules/$K/build"
  ln -sfn "$common" "/lib/modules/$K/source"
  echo "xdpstack set-up: linked $hdr as headers for kernel $K"
fi

# bpffs, as bpftool would mount it.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

# venv from Debian's python3 so that Debian's bcc (python3-bpfcc) is importable.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
# The package (with the cffi extension of the C fast path), again whenever its sources change.
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ -n "$(find pyproject.toml setup.py userstack/_build.py userstack/csrc \
       -newer "$stamp" \( -name '*.[ch]' -o -name '*.py' -o -name '*.toml' \) -print -quit)" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
# The C applications, standalone executables on the C API, into the venv's bin (make is incremental).
make -s -C userstack/csrc install PREFIX="$PWD/.venv"
make -s -C tools install PREFIX="$PWD/.venv"
