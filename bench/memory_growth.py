"""Memory growth: does a long-running process that calls a model keep its resident size?

For each model (default: the bundled default model) and each batch size (1 and 8), runs
``--warmup`` calls, samples RSS, runs ``--calls`` more (10,000: each call a fresh input
array, so NumPy conversion and output allocation are exercised too), samples RSS again and
prints the growth. Then loads, runs and frees the model ``--loads`` times (after a few warm-up
loads) and prints that growth. Exits 1 when any growth is >= ``--limit-mb`` (1 MB).

  python bench/memory_growth.py [--model NAME_OR_TMN ...] [--calls 10000] [--batch 1,8]
                                [--threads 2] [--loads 200] [--json]

RSS is the current resident set from /proc/self/statm (Linux); elsewhere the peak RSS from
``resource`` (which can only show growth, never shrinking). Each sample is taken after
``gc.collect()`` and, with glibc, ``malloc_trim(0)``: glibc keeps freed heap pages resident
(the load/unload loop of MobileNetV2 showed +1.7 MB of such pages that a trim gives back), so
untrimmed RSS measures the allocator's caching rather than memory still in use. The untrimmed
growth is printed too ("raw"). Valgrind-level leak checking of
load/unload is bench/leak_check.py; this script measures what a user would see.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import numpy as np

import tinymnet

MB = 1 << 20


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS (kB on Linux/BSD, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda pad: 0


_TRIM = _malloc_trim()


def _settled_rss():
    """-> (RSS after gc, RSS after gc + malloc_trim)."""
    gc.collect()
    raw = rss_bytes()
    _TRIM(0)
    return raw, rss_bytes()


def _growth(before, after, **fields) -> dict:
    return dict(fields, rss_before_mb=before[1] / MB, rss_after_mb=after[1] / MB,
                growth_mb=(after[1] - before[1]) / MB, raw_growth_mb=(after[0] - before[0]) / MB)


def calls_growth(model, batch: int, calls: int, warmup: int, seed: int = 0) -> dict:
    """RSS growth over `calls` calls of `model` at `batch`, after `warmup` calls."""
    h, w, c = model.input_shape
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (batch, h, w, c)).astype(np.float32)

    def call(i):
        x = base + np.float32(i % 7)  # a new input array every call
        y = model(x)
        assert y.shape[0] == batch

    for i in range(warmup):
        call(i)
    before = _settled_rss()
    t0 = time.perf_counter()
    for i in range(calls):
        call(i)
    seconds = time.perf_counter() - t0
    return _growth(before, _settled_rss(), batch=batch, calls=calls, warmup=warmup,
                   seconds=seconds)


def load_growth(name, threads, loads: int, warmup: int = 10) -> dict:
    """RSS growth over `loads` load + one call + free cycles of model `name`."""
    def cycle():
        m = tinymnet.load(name, threads=threads)
        h, w, c = m.input_shape
        m(np.zeros((2, h, w, c), np.float32))
        del m

    for _ in range(warmup):
        cycle()
    before = _settled_rss()
    t0 = time.perf_counter()
    for _ in range(loads):
        cycle()
    seconds = time.perf_counter() - t0
    return _growth(before, _settled_rss(), loads=loads, warmup=warmup, seconds=seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=None,
                    help="bundled model name or .tmn path (repeatable; default: the default model)")
    ap.add_argument("--calls", type=int, default=10_000, help="measured calls per batch size")
    ap.add_argument("--warmup", type=int, default=200, help="calls before the first sample")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (1,8)")
    ap.add_argument("--threads", type=int, default=None, help="threads per model (physical cores)")
    ap.add_argument("--loads", type=int, default=200, help="load/unload cycles (0: skip)")
    ap.add_argument("--limit-mb", type=float, default=1.0, help="fail at this growth (1.0)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",") if b]
    names = args.model or [None]

    report, worst = [], 0.0
    for name in names:
        model = tinymnet.load(name, threads=args.threads)
        label = name or model.name
        entry = {"model": label, "isa": model.isa, "threads": model.threads, "calls": [],
                 "loads": None}
        for b in batches:
            r = calls_growth(model, b, args.calls, args.warmup)
            entry["calls"].append(r)
            worst = max(worst, r["growth_mb"])
            if not args.json:
                print(f"{label} batch {b}: {r['calls']} calls in {r['seconds']:.0f} s, RSS "
                      f"{r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f} MB: growth "
                      f"{r['growth_mb']:+.3f} MB (raw {r['raw_growth_mb']:+.3f})", flush=True)
        del model
        if args.loads:
            r = load_growth(name, args.threads, args.loads)
            entry["loads"] = r
            worst = max(worst, r["growth_mb"])
            if not args.json:
                print(f"{label} load+call+free x{r['loads']} in {r['seconds']:.0f} s, RSS "
                      f"{r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f} MB: growth "
                      f"{r['growth_mb']:+.3f} MB (raw {r['raw_growth_mb']:+.3f})", flush=True)
        report.append(entry)
    ok = worst < args.limit_mb
    if args.json:
        print(json.dumps({"models": report, "limit_mb": args.limit_mb, "ok": ok}, indent=1))
    else:
        print(f"largest growth {worst:+.3f} MB (limit {args.limit_mb} MB): "
              f"{'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
