"""`tinymnet bench`: whole-model latency, throughput, memory and start-up of tinymnet, and
(with ``compare="onnxruntime"``) of onnxruntime on the same weights.

What is measured (see :func:`run_bench`):

* **Latency** of one call, wall clock (``time.perf_counter``), end to end through the public
  API: ``model(x)`` (NHWC input, output allocated per call) and ``session.run(None, feeds)``
  (NCHW input prepared once), for every (threads, batch) combination. onnxruntime runs the
  model exported in-process by :mod:`tinymnet.export_onnx` (same folded weights) with
  ``intra_op_num_threads`` = the same thread count, ``inter_op_num_threads = 1``,
  ``ORT_SEQUENTIAL`` and ``ORT_ENABLE_ALL``. One model / session per thread count, all loaded
  up front and warmed up by one call each.
* **Rounds**: each round times every combination and engine once (a sample = calls repeated
  for at least ``min_time`` seconds, at least one), in an order that rotates from round to
  round, so both engines see the same machine. Reported: the median and 90th percentile over
  every timed call of all rounds, throughput = batch / median, and the ratio
  tinymnet / onnxruntime as the median over rounds of the per-round ratio of the two
  samples' medians (drift of the machine's speed between rounds cancels). ``scaling`` is the
  same per-round ratio between the smallest and each larger thread count. ``cpu_ms`` is the
  process CPU time per call (every thread, spin-waiting included; median over rounds): next
  to the wall clock it shows how much of a call the machine actually gave the engine. A
  10 ms pause between samples lets the idle pool threads of the previous runner go to sleep.
* **Peak RSS**: separate child processes per engine (``python -c``) import numpy and the
  engine, load the model with the largest thread count, run every batch size three times
  and reports its peak resident set, so neither engine's memory includes the other's. On
  Linux that is ``VmHWM`` of ``/proc/self/status``: ``getrusage(RUSAGE_SELF).ru_maxrss`` is
  carried over ``execve`` from the process that started the child (this benchmark, with both
  engines loaded), so in a child it reports at least the parent's peak; it is still given
  as ``ru_maxrss_mib``, and used where there is no ``/proc``.
* **Start-up** (the same child program, with the smallest thread count): ``import tinymnet``
  in a fresh interpreter that already imported numpy; the import of the loading API
  (``from tinymnet import load``: the C++ extension, graph, passes); ``tinymnet.load`` + the
  first batch-1 inference vs the median steady-state batch-1 call of that process. The same
  for onnxruntime (import, session creation). ``children`` (default min(3, rounds)) children
  of each kind run; each field is the median over them.

The machine's load average is recorded at the start and the end of the timing, and
``other_cpu_load``: how many CPUs other processes kept busy meanwhile, on average (Linux: busy
time in ``/proc/stat`` minus this process's CPU time). On a shared machine that load shows up
in wall-clock latency, multi-threaded runs most of all.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from .errors import TinymnetError

__all__ = ["run_bench", "format_report", "parse_int_list", "ENGINES"]

ENGINES = ("tinymnet", "onnxruntime")
RTOL = 1e-4  # the two engines' outputs must agree this closely before anything is timed
MAX_THREADS = 256
MAX_BATCH = 4096
PAUSE = 0.01  # seconds between two samples: idle pool threads (both engines spin a little
#              after a call) go to sleep before the next runner is timed


def parse_int_list(text, what: str, upper: int) -> List[int]:
    """"1,2" -> [1, 2]; TinymnetError (one line) for anything else."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [s.strip() for s in str(text).split(",")]
    out = []
    for s in items:
        try:
            v = int(s)
            if isinstance(s, bool) or str(v) != str(s).strip().lstrip("+"):
                raise ValueError
        except (TypeError, ValueError):
            raise TinymnetError(f"{what} must be a comma-separated list of positive integers, "
                                f"got {text!r}") from None
        if not 1 <= v <= upper:
            raise TinymnetError(f"{what} must be between 1 and {upper}, got {v}")
        if v not in out:
            out.append(v)
    if not out:
        raise TinymnetError(f"{what} is empty")
    return out


# ---------------------------------------------------------------------------------------------
# child processes: peak RSS and start-up, one engine per process

_CHILD = r"""
import json, resource, sys, time
t_start = time.perf_counter()
import numpy as np
cfg = json.loads(sys.argv[1])

def ru_maxrss_mib():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024.0  # bytes on macOS, else KiB

def rss_mib():
    # Linux carries ru_maxrss over execve (the exec'ing process's peak: here the benchmark
    # parent's), so it cannot tell this process's own peak; VmHWM is the peak of this
    # process's address space only. Elsewhere ru_maxrss is all there is.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_mib()

def steady(fn, min_time, min_calls=5):
    times, t_end = [], time.perf_counter() + min_time
    while len(times) < min_calls or time.perf_counter() < t_end:
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]

out = {"rss_after_numpy_mib": rss_mib()}
h, w, c = cfg["input_shape"]
rng = np.random.default_rng(0)
if cfg["engine"] == "tinymnet":
    t0 = time.perf_counter()
    import tinymnet
    t1 = time.perf_counter()
    from tinymnet import load
    t2 = time.perf_counter()
    out["import_ms"] = (t1 - t0) * 1e3
    out["import_load_api_ms"] = (t2 - t1) * 1e3
    xs = {b: rng.uniform(-1, 1, (b, h, w, c)).astype(np.float32) for b in cfg["batch"]}
    out["rss_after_import_mib"] = rss_mib()
    t0 = time.perf_counter()
    model = load(cfg["model"], threads=cfg["threads"])
    t1 = time.perf_counter()
    model(xs[1])
    t2 = time.perf_counter()
    run = lambda x: model(x)
else:
    t0 = time.perf_counter()
    import onnxruntime as ort
    t1 = time.perf_counter()
    out["import_ms"] = (t1 - t0) * 1e3
    xs = {b: rng.uniform(-1, 1, (b, c, h, w)).astype(np.float32) for b in cfg["batch"]}
    out["rss_after_import_mib"] = rss_mib()
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(cfg["model"], so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    t1 = time.perf_counter()
    sess.run(None, {name: xs[1]})
    t2 = time.perf_counter()
    run = lambda x: sess.run(None, {name: x})
out["load_ms"] = (t1 - t0) * 1e3
out["first_inference_ms"] = (t2 - t1) * 1e3
out["load_first_ms"] = (t2 - t0) * 1e3
out["steady_ms"] = steady(lambda: run(xs[1]), cfg["min_time"]) * 1e3
for b in cfg["batch"]:
    for _ in range(3):
        run(xs[b])
out["peak_rss_mib"] = rss_mib()
out["ru_maxrss_mib"] = ru_maxrss_mib()
out["process_ms"] = (time.perf_counter() - t_start) * 1e3
print("BENCH_CHILD " + json.dumps(out))
"""


def _run_child(engine: str, model: str, input_shape, threads: int, batches, min_time: float):
    cfg = {"engine": engine, "model": model, "input_shape": list(input_shape),
           "threads": threads, "batch": sorted(set(batches) | {1}), "min_time": min_time}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise TinymnetError(f"the {engine} memory/start-up child process timed out") from None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_CHILD "):
            return json.loads(line[len("BENCH_CHILD "):])
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise TinymnetError(f"the {engine} memory/start-up child process failed "
                        f"(exit {proc.returncode}): {last}")


def _median_fields(runs: List[dict]) -> dict:
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = statistics.median(vals)
    if len(runs) > 1:
        out["runs"] = runs
    return out


# ---------------------------------------------------------------------------------------------
# in-process timing


def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _sample(fn, min_time: float):
    """Calls repeated for >= min_time (at least one) -> (per-call wall-clock seconds, process
    CPU seconds per call over the sample: all threads, spinning included)."""
    times = []
    c0 = time.process_time()
    t_end = time.perf_counter() + min_time
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= t_end:
            return times, (time.process_time() - c0) / len(times)


def _pct(values: Sequence[float], q: float) -> float:
    """q-th percentile, linear interpolation (numpy's default)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def _busy_cpu_seconds():
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...
        ticks = [int(v) for v in fields[1:]]
        busy = sum(ticks[:3]) + sum(ticks[5:8])
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _check_compare(compare):
    if compare is None:
        return None
    if compare in ("onnxruntime", "ort"):
        try:
            import onnxruntime  # noqa: F401  (only checks that it is installed)
        except ImportError:
            raise TinymnetError("--compare onnxruntime needs onnxruntime, which is not "
                                "installed: pip install onnxruntime") from None
        from .export_onnx import _onnx

        _onnx()  # the export needs onnx: fail before loading anything
        return "onnxruntime"
    raise TinymnetError(f"--compare takes onnxruntime, got {compare!r}")


def run_bench(model, threads: Sequence[int] = (1,), batch: Sequence[int] = (1,),
              compare: Optional[str] = None, rounds: int = 7, min_time: float = 0.5,
              children: Optional[int] = None, progress=None) -> dict:
    """Benchmark ``model`` (a bundled model name or a ``.tmn`` path); returns the JSON-able
    report (see the module docstring). ``progress(text)`` is called between steps."""
    import numpy as np

    from . import __version__
    from .bundled import resolve
    from .export_onnx import load_graph
    from .info import info_totals
    from .model import load

    threads = parse_int_list(threads, "--threads", MAX_THREADS)
    batch = parse_int_list(batch, "--batch", MAX_BATCH)
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
        raise TinymnetError(f"--rounds must be a positive integer, got {rounds!r}")
    if not min_time >= 0:
        raise TinymnetError(f"--min-time must be >= 0, got {min_time!r}")
    compare = _check_compare(compare)
    children = min(3, rounds) if children is None else int(children)
    say = progress or (lambda text: None)

    spec = model if isinstance(model, str) else os.fspath(model)
    path = resolve(spec)  # one-line error for an unknown name or a missing file
    graph = load_graph(path)
    _, h, w, c = graph.inputs[graph.input_name]
    engines = ["tinymnet"] + ([compare] if compare else [])
    report: Dict[str, object] = {
        "model": spec,
        "path": os.path.abspath(path),
        "graph": graph.name,
        "input_shape": [h, w, c],
        "macs": int(info_totals(graph)["macs"]),
        "settings": {"threads": threads, "batch": batch, "rounds": int(rounds),
                     "min_time_s": float(min_time), "compare": compare,
                     "clock": "time.perf_counter (wall clock), end-to-end API calls"},
    }

    with tempfile.TemporaryDirectory(prefix="tinymnet-bench-") as tmp:
        onnx_path = None
        if compare:
            from .export_onnx import export_onnx

            onnx_path = os.path.join(tmp, "model.onnx")
            say("exporting to ONNX")
            export_onnx(graph, onnx_path)

        rng = np.random.default_rng(0)
        x_nhwc = {b: rng.uniform(-1, 1, (b, h, w, c)).astype(np.float32) for b in batch}
        x_nchw = {b: np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for b, x in x_nhwc.items()}

        say("loading")
        runners = {}  # (engine, threads) -> callable(batch)
        for t in threads:
            m = load(path, threads=t)
            runners[("tinymnet", t)] = (lambda m: lambda b: m(x_nhwc[b]))(m)
            if compare:
                s = _ort_session(onnx_path, t)
                name = s.get_inputs()[0].name
                runners[(compare, t)] = (lambda s, name: lambda b: s.run(None, {name: x_nchw[b]})[0]
                                         )(s, name)
        isa = m.isa

        # correctness first (also the warm-up call of every runner)
        max_rel = None
        for t in threads:
            for b in batch:
                y = runners[("tinymnet", t)](b)
                if compare:
                    ref = runners[(compare, t)](b)
                    rel = float(np.abs(y - ref).max() / max(float(np.abs(ref).max()), 1e-30))
                    max_rel = rel if max_rel is None else max(max_rel, rel)
        if compare:
            report["max_rel_diff"] = max_rel
            if not max_rel <= RTOL:
                raise TinymnetError(f"tinymnet and {compare} outputs differ by {max_rel:.3g} "
                                    f"(relative to the largest output; limit {RTOL:g}): not "
                                    "timing different computations")

        combos = [(t, b) for t in threads for b in batch]
        jobs = [(e, t, b) for (t, b) in combos for e in engines]
        calls = {j: [] for j in jobs}      # every call's seconds
        per_round = {j: [] for j in jobs}  # each round's median
        cpu_per_round = {j: [] for j in jobs}  # each round's process CPU seconds per call
        report["loadavg_start"] = _loadavg()
        busy0, own0 = _busy_cpu_seconds(), time.process_time()
        t_start = time.perf_counter()
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}")
            k = r % len(jobs)
            order = jobs[k:] + jobs[:k]
            if r % 2:  # also flip which engine of a combination goes first
                order = order[::-1]
            for j in order:
                e, t, b = j
                time.sleep(PAUSE)  # let the previous runner's spinning workers park
                fn = runners[(e, t)]
                times, cpu = _sample(lambda: fn(b), min_time)
                cpu_per_round[j].append(cpu)
                calls[j].extend(times)
                per_round[j].append(statistics.median(times))
        wall = time.perf_counter() - t_start
        busy1, own1 = _busy_cpu_seconds(), time.process_time()
        report["timing_s"] = round(wall, 2)
        report["loadavg_end"] = _loadavg()
        # CPUs kept busy by other processes while this one was timing (0 = a quiet machine)
        report["other_cpu_load"] = (None if busy0 is None or busy1 is None else
                                    round(max(busy1 - busy0 - (own1 - own0), 0.0) / wall, 2))
        runners.clear()  # free the models and sessions before the child processes run
        m = s = fn = None

        results = []
        for t, b in combos:
            row: Dict[str, object] = {"threads": t, "batch": b}
            for e in engines:
                v = calls[(e, t, b)]
                med = statistics.median(v)
                row[e] = {"median_ms": med * 1e3, "p90_ms": _pct(v, 90) * 1e3,
                          "images_per_s": b / med, "calls": len(v),
                          "cpu_ms": statistics.median(cpu_per_round[(e, t, b)]) * 1e3}
            if compare:
                ratios = [a / o for a, o in zip(per_round[("tinymnet", t, b)],
                                                per_round[(compare, t, b)])]
                row["ratio"] = statistics.median(ratios)  # time tinymnet / time ORT
                # the spread over rounds: on a shared or virtual machine one round can land
                # on a slowed-down core, and the range says how far to trust the median
                row["ratio_range"] = [min(ratios), max(ratios)]
            results.append(row)
        report["results"] = results

        scaling = []
        t0 = min(threads)
        for t in threads:
            if t == t0:
                continue
            for b in batch:
                entry = {"batch": b, "from_threads": t0, "to_threads": t}
                for e in engines:
                    entry[e] = statistics.median(
                        [a / z for a, z in zip(per_round[(e, t0, b)], per_round[(e, t, b)])])
                scaling.append(entry)
        report["scaling"] = scaling  # speed-up: time at from_threads / time at to_threads

        say("memory and start-up (child processes)")
        memory, startup = {}, {}
        tmin, tmax = min(threads), max(threads)
        n_children = max(children, 1)
        for e in engines:
            target = path if e == "tinymnet" else onnx_path
            child_time = min(min_time, 0.5)
            # start-up on the fewest threads (steady state is least disturbed by other
            # processes there), peak RSS with the most threads and every batch size
            runs = [_run_child(e, target, (h, w, c), tmin, batch, child_time)
                    for _ in range(n_children)]
            mem_runs = runs if tmax == tmin else [
                _run_child(e, target, (h, w, c), tmax, batch, child_time)
                for _ in range(n_children)]
            med, mem_med = _median_fields(runs), _median_fields(mem_runs)
            memory[e] = {"peak_rss_mib": mem_med["peak_rss_mib"],
                         "ru_maxrss_mib": mem_med["ru_maxrss_mib"],
                         "rss_after_import_mib": mem_med["rss_after_import_mib"],
                         "rss_after_numpy_mib": mem_med["rss_after_numpy_mib"],
                         "threads": tmax, "batches": sorted(set(batch) | {1}),
                         "children": len(mem_runs)}
            st = {k: med[k] for k in ("import_ms", "import_load_api_ms", "load_ms",
                                      "first_inference_ms", "load_first_ms", "steady_ms")
                  if k in med}
            st["load_first_over_steady"] = med["load_first_ms"] / med["steady_ms"]
            st["threads"] = tmin
            st["children"] = len(runs)
            startup[e] = st
        if compare:
            memory["ratio"] = memory["tinymnet"]["peak_rss_mib"] / memory[compare]["peak_rss_mib"]
        report["memory"] = memory
        report["startup"] = startup

    versions = {"tinymnet": __version__, "numpy": np.__version__,
                "python": platform.python_version()}
    if compare:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    report["machine"] = {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "isa": isa,
                         "platform": platform.platform(), "versions": versions}
    return report


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# text report


def _table(rows: List[Sequence[str]], right=()) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def format_report(rep: dict) -> str:
    s = rep["settings"]
    cmp = s["compare"]
    engines = ["tinymnet"] + ([cmp] if cmp else [])
    m = rep["machine"]
    h, w, c = rep["input_shape"]
    lines = [f"{rep['model']} ({rep['graph']}, {h}x{w}x{c}, {rep['macs'] / 1e6:.0f}M MACs) on "
             f"{m['cpu']}, {m['logical_cpus']} logical CPUs, isa {m['isa']}",
             f"{s['rounds']} rounds, samples >= {s['min_time_s']:g} s, wall clock per call "
             "(cpu: process CPU time per call); "
             f"load average {rep['loadavg_start']} -> {rep['loadavg_end']}"
             + (f"; other processes kept {rep['other_cpu_load']:.2f} CPUs busy meanwhile"
                if rep.get("other_cpu_load") is not None else "")]
    if cmp:
        lines.append(f"outputs agree with {cmp} within {rep['max_rel_diff']:.2g} (relative)")
    lines.append("")
    head = ["threads", "batch"]
    for e in engines:
        short = "ort" if e == "onnxruntime" else e
        head += [f"{short} ms", "p90", "cpu", "img/s"]
    if cmp:
        head += ["tinymnet/ort", "(range)"]
    rows = [head]
    for r in rep["results"]:
        row = [str(r["threads"]), str(r["batch"])]
        for e in engines:
            d = r[e]
            row += [f"{d['median_ms']:.2f}", f"{d['p90_ms']:.2f}", f"{d['cpu_ms']:.2f}",
                    f"{d['images_per_s']:.1f}"]
        if cmp:
            lo, hi = r["ratio_range"]
            row += [f"{r['ratio']:.2f}", f"{lo:.2f}-{hi:.2f}"]
        rows.append(row)
    lines += _table(rows, right=set(range(len(head))))
    for sc in rep["scaling"]:
        parts = ", ".join(f"{e} {sc[e]:.2f}x" for e in engines)
        lines.append(f"{sc['to_threads']} threads vs {sc['from_threads']}, batch {sc['batch']}: "
                     f"{parts} faster")
    lines.append("")
    mem = rep["memory"]
    mem_parts = [f"{e} {mem[e]['peak_rss_mib']:.1f} MiB" for e in engines]
    tail = f" (ratio {mem['ratio']:.2f})" if cmp else ""
    first = mem["tinymnet"]
    lines.append(f"peak RSS of a child process (numpy + engine + model, {first['threads']} "
                 f"threads, batches {first['batches']}): " + ", ".join(mem_parts) + tail)
    st = rep["startup"]["tinymnet"]
    lines.append(f"import tinymnet {st['import_ms']:.1f} ms (after numpy; "
                 f"+{st['import_load_api_ms']:.1f} ms for the loader and C++ extension)")
    lines.append(f"tinymnet load {st['load_ms']:.1f} ms + first inference "
                 f"{st['first_inference_ms']:.1f} ms = {st['load_first_ms']:.1f} ms, "
                 f"{st['load_first_over_steady']:.1f}x the steady batch-1 call "
                 f"({st['steady_ms']:.2f} ms; {st['threads']} thread(s))")
    if cmp:
        so = rep["startup"][cmp]
        lines.append(f"{cmp}: import {so['import_ms']:.0f} ms, session {so['load_ms']:.1f} ms "
                     f"+ first inference {so['first_inference_ms']:.1f} ms = "
                     f"{so['load_first_ms']:.1f} ms, {so['load_first_over_steady']:.1f}x its "
                     f"steady call ({so['steady_ms']:.2f} ms)")
    return "\n".join(lines)
