"""Whole-model benchmark of bench/README.md: `tinymnet bench` on the bundled V2 and V3-Small
and on random-weight V3-Large, V1 1.0, EfficientNet-Lite0, GhostNet 1.0 and MobileNeXt 1.0
(bench/make_models.py), each against onnxruntime, rendered as the README's markdown tables
with the issue's targets.

    python bench/whole_models.py                      # run everything (~6 min), print markdown
    python bench/whole_models.py --save DIR           # ... and keep each model's JSON report
    python bench/whole_models.py --from DIR           # only render JSON reports saved before
    python bench/whole_models.py --rounds 3 --models v2,v3s

Each model is one `tinymnet bench MODEL --threads 1,2 --batch 1,8 --compare onnxruntime
--rounds R --json` process, run one after the other.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_models import make_models  # noqa: E402

# key -> (label, bundled name or arch to build, ratio target at 1 thread batch 1)
MODELS = {
    "v2": ("MobileNetV2 1.0 (bundled)", "mobilenet_v2_100_224_tf", 0.85),
    "v3s": ("MobileNetV3-Small 1.0 (bundled)", "mobilenet_v3_small_100_224_tf", 0.85),
    "v3l": ("MobileNetV3-Large 1.0 (random weights)", "mobilenet_v3_large", 0.85),
    "v1": ("MobileNetV1 1.0 (random weights)", "mobilenet_v1", 0.90),
    "effl0": ("EfficientNet-Lite0 (random weights)", "efficientnet_lite0", None),
    "ghost": ("GhostNet 1.0 (random weights)", "ghostnet", 0.85),
    "mnext": ("MobileNeXt 1.0 (random weights)", "mobilenext", 0.85),
}
TARGETS = {
    "scaling_v2": 1.8,       # 2 threads >= 1.8x faster than 1 thread on V2
    "batch8_2t": 1.1,        # batch 8, 2 threads: >= 1.1x ORT's throughput
    "rss": 0.7,              # peak RSS <= 0.7x ORT's
    "import_ms": 50.0,       # import tinymnet <= 50 ms
    "load_first": 3.0,       # load + first inference <= 3x the steady-state call
}


def run(keys, rounds, save_dir):
    reports = {}
    with tempfile.TemporaryDirectory(prefix="tinymnet-models-") as tmp:
        built = make_models(tmp, [MODELS[k][1] for k in keys
                                  if not MODELS[k][1].endswith("_tf")])
        for k in keys:
            target = built.get(MODELS[k][1], MODELS[k][1])
            cmd = ["tinymnet", "bench", target, "--threads", "1,2", "--batch", "1,8",
                   "--compare", "onnxruntime", "--rounds", str(rounds), "--json"]
            print(f"[whole_models] {' '.join(cmd)}", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
            reports[k] = json.loads(proc.stdout)
            if save_dir:
                Path(save_dir, f"{k}.json").write_text(proc.stdout)
    return reports


def _row(rep, threads, batch):
    return next(r for r in rep["results"] if r["threads"] == threads and r["batch"] == batch)


def _scaling(rep, batch):
    return next(s for s in rep["scaling"] if s["batch"] == batch and s["to_threads"] == 2)


def _range(row) -> str:
    lo_hi = row.get("ratio_range")  # absent in reports saved before it was recorded
    return "–" if lo_hi is None else f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}"


def _mark(ok):
    return "met" if ok else "**missed**"


def render(reports) -> str:
    out = []
    any_rep = next(iter(reports.values()))
    m = any_rep["machine"]
    out.append(f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, isa {m['isa']}; "
               + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    out.append("")
    out.append("| model | threads | batch | tinymnet ms (p90) | ORT ms (p90) | tinymnet img/s | "
               "ORT img/s | time tinymnet / ORT (range over rounds) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for k, rep in reports.items():
        for r in rep["results"]:
            t, o = r["tinymnet"], r["onnxruntime"]
            out.append(f"| {k} | {r['threads']} | {r['batch']} | {t['median_ms']:.2f} "
                       f"({t['p90_ms']:.2f}) | {o['median_ms']:.2f} ({o['p90_ms']:.2f}) | "
                       f"{t['images_per_s']:.0f} | {o['images_per_s']:.0f} | {r['ratio']:.2f} "
                       f"({_range(r)}) |")
    out.append("")
    out.append("| model | MACs | 2 threads vs 1, b1 / b8: tinymnet | ... ORT | peak RSS tinymnet "
               "/ ORT MiB (ratio) | import tinymnet ms (+ loader) | load + first ms / steady "
               "ms (ratio) | other CPUs busy | load avg |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for k, rep in reports.items():
        s1, s8 = _scaling(rep, 1), _scaling(rep, 8)
        mem, st = rep["memory"], rep["startup"]["tinymnet"]
        other = rep.get("other_cpu_load")
        out.append(
            f"| {k} | {rep['macs'] / 1e6:.0f}M | {s1['tinymnet']:.2f}x / {s8['tinymnet']:.2f}x | "
            f"{s1['onnxruntime']:.2f}x / {s8['onnxruntime']:.2f}x | "
            f"{mem['tinymnet']['peak_rss_mib']:.0f} / {mem['onnxruntime']['peak_rss_mib']:.0f} "
            f"({mem['ratio']:.2f}) | {st['import_ms']:.1f} (+{st['import_load_api_ms']:.0f}) | "
            f"{st['load_first_ms']:.0f} / {st['steady_ms']:.2f} "
            f"({st['load_first_over_steady']:.0f}x) | "
            f"{'–' if other is None else f'{other:.2f}'} | {rep['loadavg_start'][0]:.1f} |")
    out.append("")
    out.append("| target | value | |")
    out.append("|---|---|---|")
    for k, rep in reports.items():
        limit = MODELS[k][2]
        if limit is not None:
            v = _row(rep, 1, 1)["ratio"]
            out.append(f"| {k}: time / ORT, 1 thread, batch 1 <= {limit} | {v:.3f} | "
                       f"{_mark(v <= limit)} |")
    if "v2" in reports:
        for b in (1, 8):
            v = _scaling(reports["v2"], b)["tinymnet"]
            out.append(f"| v2: 2 threads >= {TARGETS['scaling_v2']}x faster than 1, batch {b} | "
                       f"{v:.2f}x | {_mark(v >= TARGETS['scaling_v2'])} |")
    for k, rep in reports.items():
        v = 1.0 / _row(rep, 2, 8)["ratio"]
        out.append(f"| {k}: batch 8, 2 threads, throughput >= {TARGETS['batch8_2t']}x ORT | "
                   f"{v:.2f}x | {_mark(v >= TARGETS['batch8_2t'])} |")
    for k, rep in reports.items():
        v = rep["memory"]["ratio"]
        out.append(f"| {k}: peak RSS <= {TARGETS['rss']}x ORT's | {v:.2f}x | "
                   f"{_mark(v <= TARGETS['rss'])} |")
    imp = max(rep["startup"]["tinymnet"]["import_ms"] for rep in reports.values())
    out.append(f"| import tinymnet <= {TARGETS['import_ms']:.0f} ms (worst model's run) | "
               f"{imp:.1f} ms | {_mark(imp <= TARGETS['import_ms'])} |")
    imp2 = max(rep["startup"]["tinymnet"]["import_ms"]
               + rep["startup"]["tinymnet"]["import_load_api_ms"] for rep in reports.values())
    out.append(f"| ... and `from tinymnet import load` (C++ extension, graph, passes) too | "
               f"{imp2:.1f} ms | {_mark(imp2 <= TARGETS['import_ms'])} |")
    for k, rep in reports.items():
        st = rep["startup"]["tinymnet"]
        v = st["load_first_over_steady"]
        first = st["first_inference_ms"] / st["steady_ms"]
        out.append(f"| {k}: load + first inference <= {TARGETS['load_first']:.0f}x steady | "
                   f"{v:.1f}x (first inference alone {first:.1f}x) | "
                   f"{_mark(v <= TARGETS['load_first'])} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"from {', '.join(MODELS)}")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--save", metavar="DIR", help="keep each model's JSON report here")
    ap.add_argument("--from", dest="src", metavar="DIR", help="render saved JSON reports")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad:
        ap.error(f"unknown models {bad}; known: {', '.join(MODELS)}")
    if args.src:
        reports = {k: json.loads(Path(args.src, f"{k}.json").read_text())
                   for k in keys if Path(args.src, f"{k}.json").exists()}
        if not reports:
            ap.error(f"no <model>.json reports in {args.src}")
    else:
        if args.save:
            os.makedirs(args.save, exist_ok=True)
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        print(f"Run {when}: `python bench/whole_models.py --rounds {args.rounds}`\n")
        reports = run(keys, args.rounds, args.save)
    print(render(reports))


if __name__ == "__main__":
    main()
