"""Fuzz every file parser with atheris, each target in its own process.

    python fuzz/run.py --runs 100000                 # the bench run (bench/README.md)
    python fuzz/run.py --runs 10000 --time-budget 120 --targets tflite onnx

Each target (fuzz/targets.py) starts from small valid files made by the repo's writers plus
the inputs kept in tests/fuzz_cases/<target>/. "tmn-cpp" fuzzes the C++ .tmn reader
(csrc/runtime/tmn_reader.cc, which Python cannot reach) as a libFuzzer binary built with
clang and ASan/UBSan (fuzz/tmn_reader_fuzz.cc); without clang++ it is skipped. A finding is any exception other than a
TinymnetError naming the file, a FormatError caused by a MemoryError, a crash, an input
taking longer than --timeout seconds, or RSS above --rss-limit-mb; libFuzzer saves the input
under --findings/<target>/ (replay it with tests/test_fuzz_regressions.py once it is copied
to tests/fuzz_cases/<target>/). Prints runs, exec/s and findings per target and exits 1 if
anything was found (2 if a target died without leaving an input, or ran fewer than --runs
executions within its time bound).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from targets import TARGETS  # noqa: E402

# Inputs up to about twice the largest seed: room to grow, short enough to stay fast.
MAX_LEN = {"tmn": 8192, "pth": 4096, "safetensors": 1024, "tflite": 16384, "h5": 12288,
           "onnx": 8192, "image": 2048, "tmn-cpp": 8192}
# C++ parsers Python cannot reach: libFuzzer binaries built with clang, seeded like a Python
# target. name -> (harness, sources from csrc/, Python target whose seeds it uses)
NATIVE = {"tmn-cpp": ("tmn_reader_fuzz.cc", ["runtime/tmn_reader.cc", "runtime/json.cc"], "tmn")}
# Slowest first (see time_bound).
ALL_TARGETS = ["h5", "tflite", "onnx", "pth", "tmn-cpp", "tmn", "image", "safetensors"]
assert sorted(ALL_TARGETS) == sorted(list(TARGETS) + list(NATIVE))


def _clang():
    for cxx in ["clang++"] + [f"clang++-{v}" for v in range(20, 13, -1)]:
        if shutil.which(cxx):
            return cxx
    return None


def build_native(name) -> Path:
    """The libFuzzer binary of a native target (rebuilt when a source is newer), or None
    without clang."""
    cxx = _clang()
    if cxx is None:
        return None
    harness, sources, _ = NATIVE[name]
    srcs = [HERE / harness] + [REPO / "csrc" / s for s in sources]
    out = HERE / "build" / name
    deps = srcs + list((REPO / "csrc" / "runtime").glob("*.h"))
    if out.exists() and all(d.stat().st_mtime < out.stat().st_mtime for d in deps):
        return out
    out.parent.mkdir(exist_ok=True)
    with open("/tmp/tinymnet-build.lock", "w") as lock:  # builds share the machine's cores
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([cxx, "-std=c++17", "-O1", "-g",
                               "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                               f"-I{REPO / 'csrc'}", *map(str, srcs), "-o", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {name} failed:\n{proc.stdout}")
    return out


def time_bound(args) -> int:
    """Seconds the target starting now may run: what is left of --time-budget, less a fair
    share kept for each target not started yet (targets start slowest first, so a slow one
    can use the time the fast ones will not need)."""
    if not args.time_budget:
        return 24 * 3600
    with args.lock:
        args.started += 1
        waiting = len(args.targets) - args.started
    share = args.time_budget / -(-len(args.targets) // args.jobs)
    left = args.deadline - time.monotonic()
    return max(int(left - waiting / args.jobs * share / 2), 10)


def run_target(name, args, findings: Path):
    per_target = time_bound(args)
    out = findings / name
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    with tempfile.TemporaryDirectory(prefix=f"tinymnet-fuzz-{name}-") as tmp:
        seeds, corpus = Path(tmp, "seeds"), Path(tmp, "corpus")
        seeds.mkdir()
        corpus.mkdir()
        if args.corpus:
            corpus = Path(args.corpus, name)
            corpus.mkdir(parents=True, exist_ok=True)
        dirs = [str(corpus), str(seeds)]
        kept = REPO / "tests" / "fuzz_cases" / NATIVE.get(name, (0, 0, name))[2]
        if kept.is_dir():
            dirs.append(str(kept))
        if name in NATIVE:
            try:
                binary = build_native(name)
            except RuntimeError as exc:
                return {"target": name, "runs": 0, "seconds": 0.0, "exec_s": 0,
                        "status": "DIED", "findings": [], "log": str(exc), "rc": 1}
            if binary is None:
                return {"target": name, "runs": 0, "seconds": 0.0, "exec_s": 0,
                        "status": "skipped (no clang++)", "findings": [], "log": "", "rc": 0}
            TARGETS[NATIVE[name][2]][1](seeds)
            cmd = [str(binary), *dirs]
        else:
            cmd = [sys.executable, str(HERE / "fuzz_one.py"), name, str(seeds), *dirs]
        cmd += [f"-runs={args.runs}", f"-max_len={MAX_LEN[name]}", f"-timeout={args.timeout}",
               f"-rss_limit_mb={args.rss_limit_mb}", f"-max_total_time={per_target}",
               f"-seed={args.seed}", "-print_final_stats=1", f"-artifact_prefix={out}/"]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        t0 = time.monotonic()
        # The time bound is libFuzzer's; this one only catches a process that hangs outside it.
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  timeout=per_target + 4 * args.timeout + 120)
            log, rc = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            log, rc = f"{exc.stdout or ''}\nrunner: process hung; killed", -9
        seconds = time.monotonic() - t0
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.M))
    runs = int(stats.get("number_of_executed_units", 0))
    new = sorted(set(out.iterdir()) - before)
    (findings / f"{name}.log").write_text(log)
    if new:
        status = "FINDING"
    elif rc != 0:
        status = "DIED"
    elif runs < args.runs:
        status = "SHORT"
    else:
        status = "ok"
    return {"target": name, "runs": runs, "seconds": seconds,
            "exec_s": int(runs / max(seconds, 1e-9)), "status": status,
            "findings": [str(p) for p in new],
            "log": log, "rc": rc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100_000, help="executions per target")
    ap.add_argument("--targets", nargs="+", choices=ALL_TARGETS, default=ALL_TARGETS)
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds for the whole run (split over the targets; default: none)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="targets fuzzed at the same time")
    ap.add_argument("--timeout", type=int, default=5, help="seconds one input may take")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    ap.add_argument("--findings", default=str(HERE / "findings"),
                    help="where inputs that fail are written (one folder per target)")
    ap.add_argument("--corpus", default=None,
                    help="keep the growing corpus here between runs (default: a temp dir)")
    args = ap.parse_args(argv)
    args.jobs = max(args.jobs, 1)
    args.targets = sorted(args.targets, key=ALL_TARGETS.index)  # slowest first
    args.lock, args.started = threading.Lock(), 0

    t0 = time.monotonic()
    args.deadline = t0 + (args.time_budget or 0)
    print(f"fuzzing {len(args.targets)} targets, {args.runs} runs each, {args.jobs} at a time"
          + (f", {args.time_budget:.0f} s in all" if args.time_budget else ""), flush=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futs = [pool.submit(run_target, t, args, Path(args.findings)) for t in args.targets]
        for fut in concurrent.futures.as_completed(futs):
            r = fut.result()
            results.append(r)
            print(f"  {r['target']:12s} {r['runs']:>8d} runs {r['seconds']:7.1f} s "
                  f"{r['exec_s']:>6d} exec/s  {len(r['findings'])} findings  {r['status']}",
                  flush=True)
            if r["status"] in ("FINDING", "DIED", "SHORT"):
                # The Python traceback if there is one, else the end of libFuzzer's report.
                lines = r["log"].splitlines()
                start = next((i for i, x in enumerate(lines) if "Uncaught Python exception" in x
                              or x.startswith("==") and "ERROR:" in x), max(len(lines) - 40, 0))
                tail = "\n".join(x for x in lines[start:start + 60] if not x.startswith("#"))
                print(f"---- {r['target']}: last lines of its log (exit code {r['rc']})\n{tail}"
                      f"\n----", flush=True)
                for f in r["findings"]:
                    print(f"  finding: {f}", flush=True)
    total = time.monotonic() - t0
    bad = [r for r in results if r["status"] not in ("ok", "skipped (no clang++)")]
    found = sum(len(r["findings"]) for r in results)
    print(f"fuzz: {len(results)} targets, {sum(r['runs'] for r in results)} executions in "
          f"{total:.0f} s, {found} findings, {len(bad)} targets not ok")
    if found:
        return 1
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
