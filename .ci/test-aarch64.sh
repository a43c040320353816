#!/usr/bin/env bash
# Cross-builds the C++ library (scalar + NEON kernels, runtime, ops, .tmn reader; no Python
# bindings, no x86 files) and tests/cpp/test_kernels_main.cc for aarch64, and runs the test
# under qemu-aarch64: every NEON kernel against the scalar reference, and MobileNetV2 /
# V3-Small from weights/*.tmn and a small model with GEMM weights stored packed through the
# C++ Plan against logits computed on x86.
#
# Run after pytest: tests/test_aarch64_reference.py writes the reference logits to
# $TINYMNET_AARCH64_REFS (default build/aarch64-refs). Installs g++-aarch64-linux-gnu and
# qemu-user with apt-get when they are missing (needs root or sudo); any failure is fatal.
# Exit status: the test program's (non-zero if any test failed or none ran).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
REFS="${TINYMNET_AARCH64_REFS:-$REPO/build/aarch64-refs}"
OUT="$REPO/build/aarch64"
CXX="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
QEMU="${QEMU_AARCH64:-qemu-aarch64}"
MODELS=(weights/mobilenet_v2_100_224_tf.tmn weights/mobilenet_v3_small_100_224_tf.tmn)
PANELS_MODEL=panels16.tmn  # written by pytest into the refs folder: GEMM weights stored packed
start=$(date +%s)

die() { echo "test-aarch64: ERROR: $*" >&2; exit 1; }
source "$REPO/.ci/apt.sh"

# 1. The reference logits must exist (written by pytest on x86), before spending time on a build.
for m in "${MODELS[@]}"; do
  [ -f "$m" ] || die "bundled model $m is missing"
  ref="$REFS/$(basename "$m" .tmn).logits"
  [ -f "$ref" ] || die "reference logits $ref not found: run 'pytest tests/test_aarch64_reference.py' first (or set TINYMNET_AARCH64_REFS)"
done
[ -f "$REFS/$PANELS_MODEL" ] || die "$REFS/$PANELS_MODEL not found: run 'pytest tests/test_aarch64_reference.py' first"

# 2. Toolchain: install when missing; never skip.
if ! command -v "$CXX" >/dev/null 2>&1 || ! command -v "$QEMU" >/dev/null 2>&1; then
  apt_install test-aarch64 g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
command -v "$CXX" >/dev/null 2>&1 || die "$CXX still not found after installing"
command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU still not found after installing"
echo "test-aarch64: $("$CXX" --version | head -1); $("$QEMU" --version | head -1)"

# 3. Cross-compile (one object per source, in parallel) and link statically.
SOURCES=(csrc/kernels/*/ref.cc csrc/kernels/*/neon.cc
         csrc/runtime/isa.cc csrc/runtime/tables.cc csrc/runtime/plan.cc csrc/runtime/json.cc
         csrc/runtime/threadpool.cc csrc/runtime/tmn_reader.cc csrc/ops/ops.cc
         tests/cpp/test_kernels_main.cc)
FLAGS=(-std=c++17 -O2 -pthread -Icsrc -Wall -Wextra -Wno-unused-parameter)
JOBS="${TINYMNET_BUILD_JOBS:-0}"
[ "$JOBS" -gt 0 ] 2>/dev/null || JOBS="$(nproc 2>/dev/null || echo 2)"
rm -rf "$OUT" && mkdir -p "$OUT/obj"
objs=()
for src in "${SOURCES[@]}"; do objs+=("$OUT/obj/$(echo "$src" | tr '/.' '__').o"); done
export CXX OUT
printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} sh -c \
  'src="$1"; shift; exec "$CXX" "$@" -c "$src" -o "$OUT/obj/$(echo "$src" | tr "/." "__").o"' \
  sh {} "${FLAGS[@]}" \
  || die "cross-compilation failed"
"$CXX" -static -pthread "${objs[@]}" -o "$OUT/test_kernels" || die "link failed"
file_info="$(file -b "$OUT/test_kernels" 2>/dev/null || true)"
echo "test-aarch64: built $OUT/test_kernels ${file_info:+($file_info)} in $(( $(date +%s) - start ))s"

# 4. Run under qemu.
set +e
"$QEMU" "$OUT/test_kernels" --refs "$REFS" "${MODELS[@]}" "$REFS/$PANELS_MODEL"
status=$?
set -e
echo "test-aarch64: exit status $status, $(( $(date +%s) - start ))s in total"
exit "$status"
