#!/bin/sh
# The README's two commands on a truly fresh Debian 12 machine, whatever this machine has installed.
#
#   sudo sh scripts/fresh-check.sh [--keep] [--only test|demo] [ROOT]
#
# Builds a minimal Debian 12 (bookworm) root with debootstrap, adds only what the newcomer's image
# has before any make (gcc, make, git, and Debian's reference BLAS, whose cblas.h once hid a missing
# OpenBLAS), copies a clean clone of this repository's HEAD into it and runs `make demo` and then
# `make test` inside it (chroot, /proc /sys /dev mounted), each from the clone as a new user would.
# Prints each command's wall time, exit status and the last lines of its output; exits non-zero when
# either fails. Not part of `make test`: it downloads about 400 MB and takes 10-20 minutes.
#
# The debootstrapped base is cached as a tarball (/var/cache/qat-fresh/) and unpacked anew every
# run, so each run starts from the same untouched root. --keep leaves the root for inspection
# (default: removed). --only runs one of the two commands. Uncommitted changes are NOT included:
# commit first; the check is of what a clone gets.
set -eu

keep=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) keep=1 ;;
    --only) only=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fresh-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
    esac
    shift
done
case "$only" in "" | test | demo) ;; *) echo "fresh-check: --only takes test or demo, not '$only'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "fresh-check: needs root (debootstrap, chroot, mount)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/qat-fresh-root}
cache=/var/cache/qat-fresh
base_tar=$cache/bookworm-minbase.tar
mirror=${QAT_FRESH_MIRROR:-http://deb.debian.org/debian}
logs=$root.logs   # kept after the root is removed
image_pkgs="gcc make libc6-dev git ca-certificates libblas-dev"

if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    echo "fresh-check: note: uncommitted changes in $repo are not part of the check (HEAD is cloned)" >&2
fi

command -v debootstrap >/dev/null 2>&1 || {
    echo "fresh-check: installing debootstrap" >&2
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

mounted=""
cleanup() {
    for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
    if [ "$keep" = 0 ] && [ -d "$root" ]; then rm -rf "$root"; fi
}
trap cleanup EXIT INT TERM

t0=$(date +%s)
if [ ! -s "$base_tar" ]; then
    echo "== debootstrap bookworm (minbase) from $mirror; cached in $base_tar for next time"
    mkdir -p "$cache"
    rm -rf "$root.base"
    debootstrap --variant=minbase bookworm "$root.base" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -n 20 "$cache/debootstrap.log" >&2
        echo "fresh-check: debootstrap failed (log: $cache/debootstrap.log)" >&2
        exit 1
    }
    tar -C "$root.base" -cf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
    rm -rf "$root.base"
fi
rm -rf "$root" "$logs"
mkdir -p "$root" "$logs"
tar -C "$root" -xf "$base_tar"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
for m in proc sys dev; do
    case $m in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sys "$root/sys" ;;
    dev) mount --rbind /dev "$root/dev" ;;
    esac
    mounted="$root/$m $mounted"
done

in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/sh -c "$1"; }

echo "== the newcomer's image: minbase + $image_pkgs"
in_root "apt-get update -qq && apt-get install -y -qq --no-install-recommends $image_pkgs >/dev/null" \
    >"$logs/image.log" 2>&1 || { tail -n 20 "$logs/image.log" >&2; echo "fresh-check: image set-up failed" >&2; exit 1; }
# The machine image trusts the CAs in /usr/local/share/ca-certificates (here: the network's HTTPS
# egress proxy; npm's registry is reached through it). A debootstrapped root does not: give it the
# same trust anchors, or npm fails with SELF_SIGNED_CERT_IN_CHAIN for reasons no newcomer meets.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    in_root "update-ca-certificates" >>"$logs/image.log" 2>&1 || true
    echo "   trust anchors of this machine's image: $(ls /usr/local/share/ca-certificates | tr '\n' ' ')"
fi
git clone -q --no-local "$repo" "$root/root/qat"
echo "   clone of $(git -C "$repo" rev-parse --short HEAD) ($(git -C "$repo" log -1 --format=%s | cut -c1-70))"
echo "   set-up took $(($(date +%s) - t0)) s"

status=0
run() {   # run NAME: `make NAME` inside the root, from the clone
    echo "== make $1 (fresh root)"
    s=$(date +%s)
    if in_root "cd /root/qat && make $1" >"$logs/make-$1.log" 2>&1; then rc=0; else rc=$?; fi
    echo "   exit $rc, wall $(($(date +%s) - s)) s; last lines:"
    tail -n 12 "$logs/make-$1.log" | sed 's/^/   | /'
    [ "$rc" = 0 ] || status=1
}
[ "$only" = test ] || run demo
[ "$only" = demo ] || run test
[ "$keep" = 1 ] && echo "== root kept: $root"
echo "== logs: $logs/"
[ "$status" = 0 ] && echo "== fresh-check: both commands passed" || echo "== fresh-check: FAILED"
exit "$status"
