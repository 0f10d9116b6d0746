#!/bin/sh
# Installs what qat needs on a Debian machine when something is missing (root, apt-get).
# Called by the Makefile before building; a no-op when everything is present.
set -e
need=""
have_hdr() { [ -e "/usr/include/$1" ] || [ -e "/usr/include/x86_64-linux-gnu/$1" ]; }
have_hdr cblas.h        || need="$need libopenblas-dev"
have_hdr dnnl.h         || need="$need libdnnl-dev"
have_hdr png.h          || need="$need libpng-dev"
have_hdr zlib.h         || need="$need zlib1g-dev"
have_hdr CUnit/Basic.h  || need="$need libcunit1-dev"
if [ "${1:-}" = "--data" ] && [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    need="$need dataset-fashion-mnist"
fi
[ -z "$need" ] && exit 0
echo "deps: installing$need" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# An apt cache that was never updated finds nothing; update once, then install.
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
