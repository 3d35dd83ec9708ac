#!/usr/bin/env bash
# Run `make test` or `make demo` on the barest Debian 12 there is, as root, to prove that the two
# commands install everything they need: a `debootstrap --variant=minbase bookworm` chroot with only
# git, make and ca-certificates added (no procps, sudo, systemd, iproute2 or python3), the host's
# settings for reaching the package mirror and PyPI, a fresh clone of the repository in
# /root/xdpstack (/root stays 0700), and a clean environment.
#
#   scripts/bare-machine.sh [options] [test|demo|setup|lint] [-- PATHSPEC...]   (as root; default: test)
#     --source SRC   repository to clone (path or URL; default: this checkout, at HEAD)
#     --worktree     copy this checkout's tracked and untracked-but-not-ignored files over the
#                    clone (a trial run of uncommitted work); files deleted here are deleted there.
#                    PATHSPECs after -- limit the copy (e.g. -- scripts xdpstack/bench)
#     --dir PATH     where the clone goes inside the machine (default /root/xdpstack)
#     --keep         leave the machine (mounted) for inspection; prints how to enter and remove it
#     --rebuild      debootstrap again instead of using the cached image
#     --mirror URL   Debian mirror for debootstrap (default: the host's bookworm source)
#
# The image is cached as a tarball under /var/cache/xdpstack-bare/; every run extracts a fresh copy
# under /var/tmp and removes it on every exit path. The chroot shares the host's network namespace
# (tests make their own namespaces) but gets its own /run, /tmp, /dev/pts, /dev/shm and bpffs.
# Prints the target's elapsed time and exits with its status.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
target=test source=$here worktree=0 keep=0 rebuild=0 mirror="" dest=/root/xdpstack
pathspecs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --source) source=$2; shift 2 ;;
    --worktree) worktree=1; shift ;;
    --dir) dest=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --rebuild) rebuild=1; shift ;;
    --mirror) mirror=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    test|demo|setup|lint) target=$1; shift ;;
    --) shift; pathspecs=("$@"); break ;;
    *) echo "bare-machine: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bare-machine: run as root (debootstrap, chroot and mounts need it)" >&2; exit 1; }
[ "$worktree" = 0 ] || [ "$source" = "$here" ] || { echo "bare-machine: --worktree copies this checkout; it cannot go with --source" >&2; exit 2; }
case "$dest" in /*) ;; *) echo "bare-machine: --dir must be an absolute path" >&2; exit 2 ;; esac

say() { echo "bare-machine: $*" >&2; }

# ---- the cached image ---------------------------------------------------------------------------
SUITE=bookworm
INCLUDE=git,make,ca-certificates
cache_dir=/var/cache/xdpstack-bare
image=$cache_dir/$SUITE-minbase-${INCLUDE//,/-}.tar.gz

host_mirror() {
  # The first URI of the host's sources that serves the bookworm suite (deb822 or one-line form).
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         { uri = ""; ok = 0
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
             if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) ok = 1 }
           if (ok && uri != "") { print uri; exit } }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |   # either may be absent
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) == "bookworm") print $i; break } }'
}

if [ "$rebuild" = 1 ] || [ ! -s "$image" ]; then
  command -v debootstrap >/dev/null || {
    say "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  [ -n "$mirror" ] || mirror=$(host_mirror 2>/dev/null | head -n 1 || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  mkdir -p "$cache_dir"
  build=$(mktemp -d /var/tmp/xdpstack-debootstrap.XXXXXX)
  trap 'rm -rf --one-file-system "$build"' EXIT
  say "debootstrap --variant=minbase --include=$INCLUDE $SUITE from $mirror (once; cached in $image)"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$build" "$mirror" >"$build.log" 2>&1 || {
    tail -n 20 "$build.log" >&2; say "debootstrap failed (log: $build.log)"; exit 1; }
  rm -f "$build.log"
  rm -f "$build"/var/cache/apt/archives/*.deb
  find "$build/var/lib/apt/lists" -maxdepth 1 -type f -delete    # keep lists/partial (owned by _apt)
  tar --numeric-owner --xattrs -C "$build" -czf "$image.new" .
  mv "$image.new" "$image"
  rm -rf --one-file-system "$build"
  trap - EXIT
fi

# ---- a fresh machine, and its removal on every exit path ----------------------------------------
root=$(mktemp -d /var/tmp/xdpstack-bare.XXXXXX)
chmod 0755 "$root"                # mktemp makes it 0700: the machine's / must be open to _apt, nobody

mounts_under() {  # mount points at or below $root, deepest first (mountinfo escapes spaces as \040)
  awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

in_machine() {   # pids of the processes whose root directory is the machine's
  local p
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then echo "${p#/proc/}"; fi
  done
  return 0
}

cleanup() {
  local rc=$? m pid left
  trap - EXIT INT TERM HUP
  set +e                          # clean up as much as possible, whatever fails
  if [ "$keep" = 1 ]; then
    say "kept: chroot $root /bin/bash -l   (remove: umount -R $root; rm -rf --one-file-system $root)"
    exit "$rc"
  fi
  # Processes still running inside the machine (a server a package started, a test's leftovers):
  # found by their root directory, ended by pid.
  for pid in $(in_machine); do kill -TERM "$pid" 2>/dev/null; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    left=$(in_machine)
    [ -z "$left" ] && break
    sleep 0.5
  done
  for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
  [ -z "$left" ] || sleep 0.5
  for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  if [ -n "$(mounts_under)" ]; then
    # Never rm -rf across a mount (a /dev or /sys of the host).
    say "could not unmount everything under $root; left in place:"; mounts_under >&2
  else
    rm -rf --one-file-system "$root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

tar --numeric-owner --xattrs -C "$root" -xzf "$image"
chmod 0755 "$root"

# Reaching the mirror and PyPI as the host does: its apt sources, keys and local apt settings (the
# apt.conf.d files no package owns), its CA certificates, pip configuration and resolver.
shopt -s nullglob
if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null || compgen -G '/etc/apt/sources.list.d/*.list' >/dev/null \
   || [ -s /etc/apt/sources.list ]; then
  rm -f "$root/etc/apt/sources.list"
  [ -s /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/"
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do cp "$f" "$root/etc/apt/sources.list.d/"; done
fi
for d in trusted.gpg.d keyrings auth.conf.d preferences.d; do
  for f in /etc/apt/$d/*; do mkdir -p "$root/etc/apt/$d"; cp -a "$f" "$root/etc/apt/$d/"; done
done
for f in /etc/apt/apt.conf.d/*; do
  dpkg -S "$f" >/dev/null 2>&1 || cp "$f" "$root/etc/apt/apt.conf.d/"
done
for f in /usr/local/share/ca-certificates/*; do cp -a "$f" "$root/usr/local/share/ca-certificates/"; done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -e /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -d /etc/xdg/pip ] && { mkdir -p "$root/etc/xdg"; cp -a /etc/xdg/pip "$root/etc/xdg/"; }
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
[ -s "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
shopt -u nullglob

# The machine's / is a mount point, as on any machine: `ip netns exec` makes / a slave mount
# (mount --make-rslave /), which fails with EINVAL in a chroot whose root is a plain directory.
mount --bind "$root" "$root"
mount --make-private "$root"
# Kernel file systems, each a fresh mount (no bind of the host's /dev or /sys, so nothing done in
# the machine propagates back and nothing of the host is removed with it).
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t bpf bpf "$root/sys/fs/bpf"
mount -t devtmpfs -o mode=0755,nosuid devtmpfs "$root/dev"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$root/run"    # /run/netns for `ip netns`, /run/xdpstack
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"

# The clone, by the host's git (the machine's git is for the person using it).
parent=$(dirname "$root$dest")
mkdir -p "$parent"
git clone -q --no-hardlinks "$source" "$root$dest"
if [ "$worktree" = 1 ]; then
  (cd "$here" && git ls-files -z -co --exclude-standard -- "${pathspecs[@]}" |
     while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done |
     tar --null -T - -cf -) | tar -C "$root$dest" -xf -
  (cd "$here" && git ls-files -z -d -- "${pathspecs[@]}") | (cd "$root$dest" && xargs -0 -r rm -f --)
  say "copied the working tree of $here${pathspecs[*]:+ (${pathspecs[*]})} over the clone of HEAD"
fi
chmod 0700 "$root/root"
[ "$(stat -c %a "$root/root")" = 700 ]

say "image $image, machine $root, clone $dest ($(git -C "$root$dest" log -1 --format='%h %s' | cut -c1-60))"
say "running: make $target (as root, env -i, in $dest)"
start=$(date +%s)
# In the background and waited for, so that a signal to this script runs the clean-up at once
# (bash runs traps only between commands); the clean-up ends whatever still runs in the machine.
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM="${TERM:-dumb}" /bin/sh -c 'cd "$1" && exec make "$2"' sh "$dest" "$target" </dev/null &
status=0
wait $! || status=$?
elapsed=$(( $(date +%s) - start ))
say "make $target: exit status $status after $((elapsed / 60)) min $((elapsed % 60)) s"
exit "$status"
