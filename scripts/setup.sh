#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine, run as root by `make test` / `make demo`:
# Debian packages, kernel headers for bcc, bpffs, and a venv built from Debian's python3.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { [ "$(id -u)" = 0 ] || { echo "xdpstack set-up: run as root (XDP, namespaces and apt need it)" >&2; exit 1; }; }
need_root

# Debian packages: libraries, headers and every command xdpstack, userstack, tools/ and tests/ run.
# python3-bpfcc is the only bcc we use (see README: "What we wrote by hand").
#   ip, ss, tc: iproute2        ethtool: ethtool         ping: iputils-ping       nc: netcat-openbsd
#   curl, wrk, iperf3, tcpdump  nginx: nginx-light       bpftool: bpftool         gcc, clang, make
#   sysctl, pgrep (tests): procps
#   setpriv, taskset, mountpoint: util-linux; mount: mount (both in every Debian, listed to say so)
#   python3 (and its venv/ensurepip, headers for the cffi extension): python3, python3-venv, python3-dev
#   libpcap (capture filters: compiled by xdpstack capture, run by each stack): libpcap-dev
#   tshark, capinfos (capture tests read the pcapng files): tshark
PKGS=(python3-bpfcc bpftool libxdp-dev libbpf-dev libelf-dev zlib1g-dev pkg-config gcc clang libclang-rt-14-dev make
      iproute2 ethtool procps util-linux mount python3 python3-venv python3-dev linux-headers-amd64
      curl netcat-openbsd iputils-ping wrk iperf3 nginx-light tcpdump libpcap-dev tshark)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "xdpstack set-up: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  # No service may start while we install (nginx-light's postinst would start a server on port 80
  # of this network namespace, and fail the install where it cannot): policy-rc.d says "forbidden"
  # to invoke-rc.d and deb-systemd-invoke. An administrator's own policy-rc.d is left alone.
  policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    ours=$policy
    printf '#!/bin/sh\n# xdpstack set-up: no service starts during its install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi
  trap 'rm -f $ours "$log"' EXIT
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "xdpstack set-up: installing Debian packages failed (above)" >&2
    exit 1
  fi
  rm -f $ours "$log"
  trap - EXIT
  # nginx is a tool of the HTTP benchmark, not a service of this machine: never started at boot.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      systemctl disable --now nginx >/dev/null 2>&1 || true
    else
      update-rc.d nginx disable >/dev/null 2>&1 || true
    fi
  fi
fi
# An nginx that an earlier set-up (without policy-rc.d) let start on port 80: we only want the binary.
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
