#!/bin/sh
# Installs what qat needs on a Debian machine when something is missing (root or sudo, apt-get).
# Called by the Makefile before building; quiet and a no-op when everything is present.
#
#   sh scripts/deps.sh            build + test dependencies
#   sh scripts/deps.sh --data     the same, plus the Fashion-MNIST dataset package
#
# Each dependency is probed for what the build really needs, not for a header that another package
# can also provide (Debian's reference BLAS ships a cblas.h too, and once hid a missing OpenBLAS):
#   1. the package manager is asked by package name (dpkg-query), and
#   2. a one-line program is compiled and linked against the library with the symbols qat uses.
# A dependency is installed when either probe fails; the line printed says which and why.
# QAT_DEPS_DRY_RUN=1 prints what would be installed and installs nothing (used by the tests).
set -eu

CC=${CC:-cc}
need=""
why=""
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qat-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

pkg_installed() {
    command -v dpkg-query >/dev/null 2>&1 || return 0   # not Debian: the link probe decides alone
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# links PROGRAM LIBS: compile and link a C program given on the command line against LIBS
links() {
    printf '%s\n' "$1" >"$tmp/probe.c"
    # shellcheck disable=SC2086
    "$CC" -std=gnu11 -Werror=implicit-function-declaration "$tmp/probe.c" -o "$tmp/probe" $2 \
        >/dev/null 2>&1
}

add() {   # add PACKAGE REASON
    case " $need " in *" $1 "*) return 0 ;; esac
    need="$need $1"
    why="$why
deps: $1: $2"
}

# probe PACKAGE LIBS PROGRAM: the package must be installed and PROGRAM must link with LIBS
probe() {
    if ! pkg_installed "$1"; then
        add "$1" "not installed (dpkg-query)"
    elif ! links "$3" "$2"; then
        add "$1" "installed, but a program using it does not compile and link with '$2' (reinstalling)"
        reinstall="$reinstall $1"
    fi
}

check_all() {   # fills need/why; $1 is the script argument (--data or nothing)
    need=""; why=""; reinstall=""
    # A compiler first: without it every link probe below would fail for the wrong reason.
    if ! command -v "$CC" >/dev/null 2>&1 || ! links 'int main(void) { return 0; }' ""; then
        add gcc "no working C compiler ('$CC')"
        add libc6-dev "no working C compiler ('$CC')"
    fi
    command -v make >/dev/null 2>&1 || add make "not found"

    probe libopenblas-dev "-lopenblas" '#include <cblas.h>
    int main(void) { float a = 1, b = 1, c = 0; openblas_set_num_threads(1);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.f, &a, 1, &b, 1, 0.f, &c, 1);
      return c != 1; }'
    probe libdnnl-dev "-ldnnl" '#include <dnnl.h>
    int main(void) { const dnnl_version_t *v = dnnl_version(); return v->major < 2; }'
    probe libpng-dev "-lpng -lz" '#include <png.h>
    int main(void) { return png_access_version_number() == 0; }'
    probe zlib1g-dev "-lz" '#include <zlib.h>
    int main(void) { return crc32(0L, 0, 0) != 0; }'
    probe libcunit1-dev "-lcunit" '#include <CUnit/Basic.h>
    int main(void) { if (CU_initialize_registry() != CUE_SUCCESS) return 1; CU_cleanup_registry(); return 0; }'

    # Open MPI for data-parallel runs (dist/, docs/distributed.md): mpicc's flags, a program
    # that initialises nothing but must link MPI_Allreduce; mpirun for make test's 2-rank case.
    # (A build without it still works: make MPI=0, or no mpicc, builds dist/dist_none.c.)
    mpi_flags=""
    command -v mpicc >/dev/null 2>&1 && mpi_flags="$(mpicc --showme:compile 2>/dev/null) $(mpicc --showme:link 2>/dev/null)"
    probe libopenmpi-dev "${mpi_flags:--lmpi}" '#include <mpi.h>
    int main(int argc, char **argv) { if (argc > 99) { double x = 1; MPI_Init(&argc, &argv);
      MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); MPI_Finalize(); }
      return 0; }'
    if ! pkg_installed openmpi-bin || ! command -v mpirun >/dev/null 2>&1; then
        add openmpi-bin "mpirun not found (make test runs a 2-rank case)"
    fi

    # ONNX export (export/onnx_*.c): C code generated from Debian's onnx.proto by protoc-c at
    # build time, linked with libprotobuf-c; the tests check every exported file with
    # python3-onnx's checker and run it in ONNX Runtime on Node.js (the npm package below).
    if ! pkg_installed protobuf-c-compiler || ! command -v protoc-c >/dev/null 2>&1; then
        add protobuf-c-compiler "protoc-c not found (generates the ONNX writer's C code)"
    fi
    probe libprotobuf-c-dev "-lprotobuf-c" '#include <protobuf-c/protobuf-c.h>
    int main(void) { return protobuf_c_version_number() == 0; }'
    if ! pkg_installed libonnx-dev || [ ! -r "${ONNX_PROTO:-/usr/include/onnx/onnx.proto}" ]; then
        add libonnx-dev "${ONNX_PROTO:-/usr/include/onnx/onnx.proto} not found (ONNX's schema)"
    fi
    if ! pkg_installed python3-onnx || ! /usr/bin/python3 -c 'import onnx.checker' >/dev/null 2>&1; then
        add python3-onnx "/usr/bin/python3 cannot import onnx (make test checks every exported model)"
    fi
    command -v node >/dev/null 2>&1 || add nodejs "node not found (make test runs exported models in ONNX Runtime)"
    command -v npm >/dev/null 2>&1 || add npm "npm not found (installs onnxruntime-node)"

    if [ "$1" = "--data" ] && [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
        add dataset-fashion-mnist "/usr/share/datasets/fashion-mnist/ is missing"
    fi
}

# ONNX Runtime for the tests and the ONNX benchmark: onnxruntime-node from npm, once, into a
# cache folder outside the clone (tests/onnx/ort_run.js looks there). Its postinstall script
# downloads CUDA files and fails on these machines; ONNXRUNTIME_NODE_INSTALL=skip skips that,
# the CPU library ships inside the package. Probe: the package loads.
ORT_DIR=${QAT_ORT_DIR:-$HOME/.cache/qat/onnxruntime-node}
ort_ok() {
    command -v node >/dev/null 2>&1 &&
        node -e "require('$ORT_DIR/node_modules/onnxruntime-node')" >/dev/null 2>&1
}
ort_install() {
    ort_ok && return 0
    echo "deps: onnxruntime-node: not found in $ORT_DIR (the tests run exported models in it)" >&2
    if [ "${QAT_DEPS_DRY_RUN:-0}" = 1 ]; then
        echo "deps: would npm install onnxruntime-node@1.30 into $ORT_DIR (QAT_DEPS_DRY_RUN=1)" >&2
        return 0
    fi
    mkdir -p "$ORT_DIR"
    # Node.js trusts only its bundled CAs, not the system's store; a machine whose HTTPS goes
    # through a proxy with its own CA (installed in the system store, as on these machines) would
    # see "self-signed certificate in certificate chain". Trust the system store too.
    if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt; export NODE_EXTRA_CA_CERTS
    fi
    (cd "$ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --silent \
        onnxruntime-node@1.30 >/dev/null) || true
    ort_ok || { echo "deps: onnxruntime-node still does not load from $ORT_DIR; install it by hand:" \
        "cd $ORT_DIR && ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30" >&2; exit 1; }
}

check_all "${1:-}"
[ -z "$need" ] && { ort_install; exit 0; }
printf '%s\n' "$why" | sed '/^$/d' >&2
if [ "${QAT_DEPS_DRY_RUN:-0}" = 1 ]; then
    echo "deps: would install$need (QAT_DEPS_DRY_RUN=1)" >&2
    ort_install
    exit 0
fi
echo "deps: installing$need" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# An apt cache that was never updated finds nothing; update once, then install.
$SUDO apt-get update -qq || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
[ -z "$reinstall" ] || $SUDO apt-get install -y -qq --reinstall --no-install-recommends $reinstall >/dev/null
# Prove it: the same probes must pass now, or the build would fail later with a cryptic link error.
check_all "${1:-}"
if [ -n "$need" ]; then
    printf '%s\n' "$why" | sed '/^$/d' >&2
    echo "deps: still missing after apt-get install:$need; install them by hand and rerun" >&2
    exit 1
fi
ort_install
