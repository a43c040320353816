"""tinymnet vs TFLite + XNNPACK (the `ai-edge-litert` package) on the float TFLite fixtures,
converted by tinymnet's own importer: MobileNetV1 0.25 (224) and DeepLabV3 with a MobileNetV2
0.5 backbone (257).

    python bench/tflite_compare.py                    # 7 rounds, 1 and 2 threads, markdown
    python bench/tflite_compare.py --json             # the same as JSON
    python bench/tflite_compare.py --quick            # conversion + output check only, no timing

Per model: `tinymnet.convert.convert_file` writes a .tmn from the fixture; a real photo
(fixtures/images, resized to the input size, normalised as the model's recipe says) goes
through both engines and the outputs must agree within 1e-4 relative to the largest before
anything is timed: tinymnet's output tensor against the tensor of the same name in the TFLite
interpreter (run with experimental_preserve_all_tensors, i.e. without delegates), and every
timed interpreter's (XNNPACK) final output against that interpreter's final output.

Timing, batch 1, wall clock (time.perf_counter) around one public call: `model(x)` (output
allocated per call) and `set_tensor` + `invoke` + `get_tensor` (a copy). One tinymnet model and
one `Interpreter(num_threads=N)` (XNNPACK is its default delegate for float models) per thread
count, loaded and warmed up (10 calls) first. A round times every (engine, threads) sample once
(calls repeated for >= --min-time s), in an order rotating from round to round, with a 10 ms
pause between samples; reported: median per call over all rounds, and time tinymnet / TFLite as
the median of per-round ratios of the two samples' medians. `other_cpu_load` is how many CPUs
other processes kept busy meanwhile (as `tinymnet bench`).

What each engine computes: the same graph, except the tail that tinymnet's importer leaves to
post-processing (recorded in the model's meta["postprocess"]): DeepLab's final RESIZE_BILINEAR
33x33 -> 257x257 of the 21 class logits is timed in TFLite only (tinymnet stops at the 33x33
logits), and MobileNetV1's SOFTMAX over 1001 classes likewise.

Skips with a message (exit 0) when ai-edge-litert or a fixture is missing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# $TINYMNET_FIXTURES, else ../shared/fixtures beside the clone (as CI lays it out), as in tests/
FIXTURES = Path(os.environ.get("TINYMNET_FIXTURES") or REPO.parent / "shared" / "fixtures")
MODELS = {  # key -> (file under fixtures/models/tflite, photo)
    "v1_025": ("mobilenet_v1_0.25_224_float.tflite", "cat.bmp"),
    "deeplab": ("deeplabv3_mnv2_dm05_257_float.tflite", "grace_hopper.bmp"),
}
TOLERANCE = 1e-4


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _photo(model, name: str) -> np.ndarray:
    from PIL import Image

    from tinymnet.importers import apply_recipe

    h, w = model.preprocess["input_size"]
    with Image.open(FIXTURES / "images" / name) as im:
        pixels = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR))
    x = np.ascontiguousarray(apply_recipe(model.preprocess, pixels), np.float32)
    return x.reshape((1,) + x.shape[-3:])


class _Lite:
    """One interpreter: run(x) -> the final output (a copy)."""

    def __init__(self, Interpreter, path: Path, threads: int):
        self.it = Interpreter(str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def __call__(self, x):
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return self.it.get_tensor(self.out)


def check(Interpreter, path: Path, model, x) -> dict:
    """Output agreement (raises AssertionError past TOLERANCE) -> the relative differences."""
    ref = Interpreter(str(path), experimental_preserve_all_tensors=True)
    ref.allocate_tensors()
    ref.set_tensor(ref.get_input_details()[0]["index"], x)
    ref.invoke()
    name = model.graph.outputs[0]
    idx = [d["index"] for d in ref.get_tensor_details() if d["name"] == name]
    assert idx, f"{path.name}: no tensor named {name!r} in the TFLite graph"
    diff = _rel(model(x), ref.get_tensor(idx[0]))
    assert diff <= TOLERANCE, f"{path.name}: tinymnet differs from TFLite by {diff:.2e}"
    final = ref.get_tensor(ref.get_output_details()[0]["index"])
    return {"tinymnet_vs_tflite": diff, "final": final}


def _sample(fn, x, min_time: float):
    times = []
    t_end = time.perf_counter() + min_time
    while True:
        t0 = time.perf_counter()
        fn(x)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= t_end:
            return times


def run(keys, threads, rounds: int, min_time: float, quick: bool) -> dict:
    import tinymnet
    from tinymnet import benchmark, kernels
    from tinymnet.convert import convert_file

    Interpreter = _interpreter_class()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "settings": {"threads": threads, "rounds": rounds, "min_time_s": min_time,
                           "batch": 1, "quick": quick, "clock": "time.perf_counter (wall)"},
              "machine": {"cpu": benchmark._cpu_name(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "tinymnet": tinymnet.__version__,
                          "isa": kernels.isa()},
              "models": {}, "skipped": {}}
    if Interpreter is None:
        report["skipped"]["all"] = "ai-edge-litert is not installed (pip install ai-edge-litert)"
        return report
    import ai_edge_litert
    report["machine"]["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "?")
    with tempfile.TemporaryDirectory(prefix="tinymnet-tflite-") as tmp:
        for key in keys:
            fname, photo = MODELS[key]
            path = FIXTURES / "models" / "tflite" / fname
            if not path.is_file() or not (FIXTURES / "images" / photo).is_file():
                report["skipped"][key] = f"fixture missing: {path} or images/{photo}"
                continue
            tmn = Path(tmp, f"{key}.tmn")
            convert_file(str(path), tmn)
            models = {t: tinymnet.load(str(tmn), threads=t) for t in threads}
            lites = {t: _Lite(Interpreter, path, t) for t in threads}
            x = _photo(models[threads[0]], photo)
            chk = check(Interpreter, path, models[threads[0]], x)
            xnn = max(_rel(lites[t](x), chk["final"]) for t in threads)
            assert xnn <= TOLERANCE, f"{fname}: XNNPACK differs from TFLite's kernels by {xnn:.2e}"
            entry = {"file": fname, "photo": photo, "input_shape": list(x.shape[1:]),
                     "output": {"tinymnet": list(models[threads[0]](x).shape[1:]),
                                "tflite": list(chk["final"].shape[1:])},
                     "max_rel_diff": chk["tinymnet_vs_tflite"], "xnnpack_vs_tflite": xnn,
                     "results": []}
            report["models"][key] = entry
            if quick:
                continue
            runners = {("tinymnet", t): models[t] for t in threads}
            runners.update({("tflite", t): lites[t] for t in threads})
            for fn in runners.values():
                for _ in range(10):
                    fn(x)
            order = list(runners)
            times = {k: [] for k in order}
            per_round = {k: [] for k in order}
            busy0, cpu0, wall0 = benchmark._busy_cpu_seconds(), time.process_time(), time.perf_counter()
            for r in range(rounds):
                for k in order[r % len(order):] + order[:r % len(order)]:
                    time.sleep(0.01)
                    s = _sample(runners[k], x, min_time)
                    times[k] += s
                    per_round[k].append(statistics.median(s))
            busy1, cpu1, wall1 = benchmark._busy_cpu_seconds(), time.process_time(), time.perf_counter()
            if busy0 is not None and busy1 is not None:
                entry["other_cpu_load"] = round(max(0.0, (busy1 - busy0) - (cpu1 - cpu0))
                                                / (wall1 - wall0), 2)
            entry["loadavg"] = [round(v, 2) for v in os.getloadavg()]
            for t in threads:
                tm, tl = per_round[("tinymnet", t)], per_round[("tflite", t)]
                entry["results"].append({
                    "threads": t,
                    "tinymnet_ms": statistics.median(times[("tinymnet", t)]) * 1e3,
                    "tflite_ms": statistics.median(times[("tflite", t)]) * 1e3,
                    "ratio": statistics.median(a / b for a, b in zip(tm, tl)),
                    "ratio_range": [min(a / b for a, b in zip(tm, tl)),
                                    max(a / b for a, b in zip(tm, tl))]})
    return report


def markdown(rep: dict) -> str:
    m = rep["machine"]
    lines = [f"Run {rep['date']}: {m['cpu']}, {m['cpus']} CPUs, isa {m['isa']}; tinymnet "
             f"{m['tinymnet']}, ai-edge-litert {m.get('ai_edge_litert', '-')}, python "
             f"{m['python']}; batch 1, {rep['settings']['rounds']} rounds, wall clock", "",
             "| model | input | threads | tinymnet ms | TFLite+XNNPACK ms | time tinymnet / TFLite "
             "(range over rounds) | max rel diff | other CPUs busy |",
             "|---|---|---|---|---|---|---|---|"]
    for key, e in rep["models"].items():
        shape = "x".join(str(v) for v in e["input_shape"])
        if not e["results"]:
            lines.append(f"| {key} | {shape} | – | – | – | – (not timed) | "
                         f"{e['max_rel_diff']:.1e} | – |")
        for r in e["results"]:
            lo, hi = r["ratio_range"]
            lines.append(f"| {key} | {shape} | {r['threads']} | {r['tinymnet_ms']:.2f} | "
                         f"{r['tflite_ms']:.2f} | {r['ratio']:.2f} ({lo:.2f}–{hi:.2f}) | "
                         f"{e['max_rel_diff']:.1e} | {e.get('other_cpu_load', '–')} |")
    for key, why in rep["skipped"].items():
        lines.append(f"\nskipped {key}: {why}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"from {', '.join(MODELS)}")
    ap.add_argument("--threads", default="1,2", help="thread counts (1,2)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per sample (0.5)")
    ap.add_argument("--quick", action="store_true", help="convert and check outputs only")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        ap.error(f"unknown model {unknown}; known: {', '.join(MODELS)}")
    threads = [int(t) for t in args.threads.split(",")]
    if args.rounds < 1 or not threads or min(threads) < 1:
        ap.error("--rounds and --threads must be >= 1")
    rep = run(keys, threads, args.rounds, args.min_time, args.quick)
    for key, why in rep["skipped"].items():
        print(f"tflite_compare: skipped {key}: {why}", file=sys.stderr)
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        print()
    else:
        print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
