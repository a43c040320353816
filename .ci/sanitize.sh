#!/usr/bin/env bash
# ASan + UBSan (+ LeakSanitizer) run of the C++ code: builds csrc/ once with
# -fsanitize=address,undefined into build/sanitize/ (never touching the normal build or an
# installed tinymnet), then runs
#   1. the kernel, runtime, model and .tmn tests (pytest) on a copy of src/tinymnet whose _C is
#      the sanitized one, with the sanitizer runtime preloaded into CPython;
#   2. bench/leak_check.py: every bundled model loaded, run and freed many times; memory
#      still allocated by tinymnet's code afterwards fails (LeakSanitizer);
#   3. tests/cpp/test_kernels_main.cc built natively with the same objects: the vector
#      kernels against the scalar ones with guard zones, the .tmn reader, the bundled models
#      through the C++ Plan against the logits step 1 wrote.
# Any sanitizer report fails the script: ASan and UBSan abort the process
# (-fno-sanitize-recover, halt_on_error), LeakSanitizer makes it exit non-zero. Leaks are
# checked with .ci/lsan.supp, which only names CPython / numpy allocations that
# live until the interpreter exits (see the file) — never tinymnet's own frames.
#
# Needs g++ with libasan/libubsan (apt-get installs them when missing; needs root or sudo)
# and pybind11 (pip-installed when missing).
# Env: TINYMNET_SANITIZE_DIR (default build/sanitize), TINYMNET_BUILD_JOBS (parallel
# compiles), TINYMNET_SANITIZE_REUSE=1 (skip the build if one exists),
# TINYMNET_TEST_EXAMPLES (hypothesis examples per kernel test, default 20 here).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${TINYMNET_SANITIZE_DIR:-$REPO/build/sanitize}"
PY="$("${PYTHON:-python}" -c "import sys; print(sys.executable)")"  # the binary, not a shim script
CXX="${CXX:-g++}"
start=$(date +%s)

die() { echo "sanitize: ERROR: $*" >&2; exit 1; }
source "$REPO/.ci/apt.sh"
elapsed() { echo "$(( $(date +%s) - start ))s"; }

# 0. Toolchain: g++ and the sanitizer runtimes, installed when missing; never skip.
runtime_lib() { local p; p="$("$CXX" -print-file-name="$1" 2>/dev/null)" && [ -f "$p" ] && echo "$p"; }
if ! command -v "$CXX" >/dev/null 2>&1 || ! runtime_lib libasan.so >/dev/null || ! runtime_lib libubsan.so >/dev/null; then
  apt_install sanitize g++  # with libasan and libubsan
fi
ASAN_LIB="$(runtime_lib libasan.so)" || die "$CXX has no libasan.so"
UBSAN_LIB="$(runtime_lib libubsan.so)" || die "$CXX has no libubsan.so"
# The real files, not the linker scripts / symlinks the compiler names.
ASAN_LIB="$(readlink -f "$ASAN_LIB")" UBSAN_LIB="$(readlink -f "$UBSAN_LIB")"
echo "sanitize: $("$CXX" --version | head -1); runtimes $ASAN_LIB $UBSAN_LIB"

# 1. Compile every csrc/ source the x86 extension uses (setup.py's list and per-ISA flags,
#    read from setup.py itself) once, -O1 with sanitizers; link the extension and the C++ test.
mapfile -t BUILD_INFO < <("$PY" - <<'EOF'
import ast, pathlib, sys, sysconfig
tree = ast.parse(pathlib.Path("setup.py").read_text())
flags = next(ast.literal_eval(n.value) for n in ast.walk(tree)
             if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ISA_FLAGS")
print(sysconfig.get_config_var("EXT_SUFFIX"))
for src in sorted(pathlib.Path("csrc").rglob("*.cc")):
    if src.name == "neon.cc":
        continue
    print(f"{src}\t{' '.join(flags.get(src.name, []))}")
EOF
) || die "could not read the source list from setup.py"
EXT_SUFFIX="${BUILD_INFO[0]}"
SOURCES=("${BUILD_INFO[@]:1}")
# pybind11 is only a build requirement of `pip install .` (isolated): install it when missing.
"$PY" -c "import pybind11" 2>/dev/null || "$PY" -m pip install "pybind11>=2.11" || die "pip install pybind11 failed"
PYBIND_INC="$("$PY" -m pybind11 --includes)" || die "pybind11 --includes failed"
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g)
FLAGS=(-std=c++17 -fPIC -pthread -Icsrc -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter
       "${SAN[@]}")
EXT="$OUT/pkg/tinymnet/_C$EXT_SUFFIX"
if [ "${TINYMNET_SANITIZE_REUSE:-0}" = 1 ] && [ -f "$EXT" ] && [ -f "$OUT/test_kernels" ]; then
  echo "sanitize: reusing the build in $OUT (TINYMNET_SANITIZE_REUSE=1)"
else
  JOBS="${TINYMNET_BUILD_JOBS:-0}"
  [ "$JOBS" -gt 0 ] 2>/dev/null || JOBS="$(nproc 2>/dev/null || echo 2)"
  rm -rf "$OUT" && mkdir -p "$OUT/obj" "$OUT/pkg" "$OUT/refs"
  lib_objs=()
  for line in "${SOURCES[@]}" "tests/cpp/test_kernels_main.cc	"; do
    src="${line%%	*}"
    obj="$OUT/obj/$(echo "$src" | tr '/.' '__').o"
    case "$src" in csrc/python/*|tests/*) ;; *) lib_objs+=("$obj") ;; esac
  done
  export CXX OUT PYBIND_INC
  LOCK=(); command -v flock >/dev/null 2>&1 && LOCK=(flock /tmp/tinymnet-build.lock)  # shared-machine builds take turns
  printf '%s\n' "${SOURCES[@]}" "tests/cpp/test_kernels_main.cc	" | "${LOCK[@]}" xargs -d '\n' -P "$JOBS" -I{} sh -c '
    src="${1%%	*}"; isa="${1#*	}"; shift
    extra=""; case "$src" in csrc/python/*) extra="$PYBIND_INC" ;; esac
    exec "$CXX" "$@" $isa $extra -c "$src" -o "$OUT/obj/$(echo "$src" | tr "/." "__").o"' \
    sh {} "${FLAGS[@]}" || die "compilation failed"
  mkdir -p "$OUT/pkg/tinymnet"
  "$CXX" -shared -pthread "${SAN[@]}" "${lib_objs[@]}" "$OUT/obj/csrc_python_bindings_cc.o" -o "$EXT" \
    || die "linking the extension failed"
  "$CXX" -pthread "${SAN[@]}" "${lib_objs[@]}" "$OUT/obj/tests_cpp_test_kernels_main_cc.o" \
    -o "$OUT/test_kernels" || die "linking the C++ test failed"
  echo "sanitize: built $EXT and $OUT/test_kernels in $(elapsed)"
fi

# 2. An importable package: the Python sources, the bundled weights, the sanitized _C.
(cd src && tar cf - --exclude=__pycache__ --exclude='*.so' tinymnet) | (cd "$OUT/pkg" && tar xf -)
mkdir -p "$OUT/pkg/tinymnet/weights"
cp weights/__init__.py weights/*.tmn weights/manifest.json "$OUT/pkg/tinymnet/weights/"

# Sanitizer settings. CPython is not built with ASan, so the runtime is preloaded (it must
# come first); PYTHONMALLOC=malloc sends Python objects through the checked malloc too.
# detect_odr_violation=0: CPython / numpy extension modules legitimately define the same
# globals; allocator_may_return_null=1: tests ask numpy for impossible sizes and expect
# MemoryError.
SAN_RUN=(env LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" PYTHONMALLOC=malloc)  # for Python only, not this shell
ASAN_BASE="detect_odr_violation=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$REPO/.ci/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$OUT/pkg${PYTHONPATH:+:$PYTHONPATH}"
export TINYMNET_TEST_EXAMPLES="${TINYMNET_TEST_EXAMPLES:-20}"
export TINYMNET_AARCH64_REFS="$OUT/refs"
export PYTHONDONTWRITEBYTECODE=1

export ASAN_OPTIONS="$ASAN_BASE:detect_leaks=1"
got="$("${SAN_RUN[@]}" "$PY" -c 'import tinymnet._C as c; print(c.__file__)')" || die "the sanitized tinymnet does not import"
[ "$got" = "$EXT" ] || die "python imports $got, not the sanitized $EXT"

# 3. Tests: any ASan / UBSan report aborts pytest (--capture=sys, so the report reaches
#    stderr). Leaks are left to step 4: at the exit of a whole pytest session LeakSanitizer
#    sees every allocation CPython, numpy and test tools never free, and telling them from
#    ours needs full (slow) stack unwinding. Left out: the thread-pool stress test, 3000
#    inferences under a 120 s watchdog that ASan's slowdown trips.
TESTS=(tests/test_kernels_conv.py tests/test_kernels_eltwise.py tests/test_kernels_pool.py
       tests/test_kernels_se_linear.py tests/test_runtime.py tests/test_models.py
       tests/test_models_ghost_next.py tests/test_formats_tmn.py tests/test_formats_tmn_panels.py
       tests/test_aarch64_reference.py
       tests/test_chain_bands.py)
echo "sanitize: pytest ${TESTS[*]} (TINYMNET_TEST_EXAMPLES=$TINYMNET_TEST_EXAMPLES)"
ASAN_OPTIONS="$ASAN_BASE:detect_leaks=0" "${SAN_RUN[@]}" "$PY" -m pytest -q -p no:cacheprovider --capture=sys "${TESTS[@]}" \
  --deselect tests/test_runtime.py::test_many_short_parallel_steps_under_contention_neither_hang_nor_drift \
  || die "pytest under ASan/UBSan failed (status $?)"
echo "sanitize: pytest clean at $(elapsed)"

# 4. Load / run / free every bundled model repeatedly; any tinymnet allocation left is a leak.
# Full unwinding (CPython has no frame pointers) so .ci/lsan.supp can match the frames it names.
ASAN_OPTIONS="$ASAN_BASE:detect_leaks=1:fast_unwind_on_malloc=0" \
  "${SAN_RUN[@]}" "$PY" bench/leak_check.py --lsan --iterations 5 || die "leak check failed"

# 5. The C++ test natively (best ISA against scalar, the reader, whole models vs step 3's logits).
ASAN_OPTIONS="$ASAN_BASE:detect_leaks=1" "$OUT/test_kernels" --refs "$OUT/refs" weights/mobilenet_v2_100_224_tf.tmn \
  weights/mobilenet_v3_small_100_224_tf.tmn || die "C++ test under ASan/UBSan failed"
echo "sanitize: all clean in $(elapsed)"
