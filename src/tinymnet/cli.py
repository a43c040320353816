"""The `tinymnet` command line.

  tinymnet isa                                  kernel instruction set in use / available
  tinymnet convert SRC [SRC...] -o OUT.tmn      weights (.pth, .safetensors, Keras .h5) -> .tmn
  tinymnet info NAME_OR_FILE [--json]           per-layer params, MACs and activation memory
  tinymnet classify PATH... [--model NAME]      classify photos (files or folders)
  tinymnet models                               the bundled pretrained models (and fetchable)
  tinymnet fetch NAME                           download + convert published weights once
  tinymnet export-onnx MODEL -o OUT.onnx        the compiled graph as ONNX (same weights)
  tinymnet bench MODEL [--compare onnxruntime]  whole-model latency, throughput, memory
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import TinymnetError


def _cmd_isa(args) -> int:
    from . import kernels

    print(f"in use:    {kernels.isa()}")
    print(f"available: {', '.join(kernels.available_isas())}")
    return 0


# ---------------------------------------------------------------------------------------------
# convert


def _human(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


# --gemm-panels choices -> save_tmn's gemm_panels
_GEMM_PANELS_ARG = {"native": "native", "none": None, "8": 8, "16": 16, "32": 32}


def _cmd_convert(args) -> int:
    from .convert import convert_file
    from .info import info_totals

    out = args.output
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise TinymnetError(f"{out}: is a directory; give the .tmn file to write")
    if not os.path.isdir(parent):
        raise TinymnetError(f"{out}: the folder {parent} does not exist")
    cm = convert_file(args.sources, out, arch=args.arch, width=args.width,
                      num_classes=args.num_classes, resolution=args.resolution,
                      labels=args.labels,
                      gemm_panels=_GEMM_PANELS_ARG[args.gemm_panels])
    p, g = cm.provenance, cm.graph
    t = info_totals(g)
    _, h, w, _ = g.inputs[g.input_name]
    width = f" width {p['width']:g}" if p.get("width") is not None else ""
    classes = g.shapes[g.outputs[0]][-1]
    print(f"wrote {out}: {g.name}{width}, {classes} outputs, {h}x{w} input, "
          f"{_human(t['params'])} params, {_human(t['macs'])} MACs")
    sources = p.get("sources") or []
    if not sources and p.get("converted_from_tmn"):  # a .tmn converted again
        sources = [p["converted_from_tmn"]]
    srcs = ", ".join(f"{s['file']} ({s['format']}, sha256 {s['sha256'][:12]})" for s in sources)
    extra = [f"{p['weights_layout']} weights"] if p.get("weights_layout") else []
    if p.get("bn_eps") is not None:
        extra.append(f"BN eps {p['bn_eps']:g}")
    if cm.quantized:
        extra.append(f"{len(cm.quantized)} weights kept as 8 bits")
    print(f"  from {srcs}" + (f" [{', '.join(extra)}]" if extra else ""))
    pre = cm.preprocess
    if pre.get("description"):
        print(f"  input: {pre['description']}")
    elif "mean" in pre:
        print(f"  input: RGB {pre.get('input_size')}, (x - {pre['mean']}) / {pre.get('std')}")
    print(f"  labels: {p.get('labels', 'embedded' if cm.labels else 'none')}")
    return 0


# ---------------------------------------------------------------------------------------------
# info


def _with_resolution(graph, resolution: int):
    """The same graph for a square input of another size (shapes re-inferred)."""
    from .graph import Graph

    name = graph.input_name
    c = graph.inputs[name][-1]
    return Graph([n.copy() for n in graph.nodes], {name: (None, resolution, resolution, c)},
                 graph.outputs, graph.params, graph.name, dict(graph.meta))


def _info_graph(args):
    """-> (graph, where it came from, whether it is a .tmn file)."""
    from .models import ARCHS, build

    target = args.target
    if os.path.exists(target):
        from .formats.detect import detect_format

        kind = detect_format(target)
        if kind == "tmn":
            from .formats.tmn import load_source_graph

            if args.width is not None:
                raise TinymnetError("--width applies to an arch name or weights to convert, "
                                    "not to a .tmn model")
            graph = load_source_graph(target)  # as converted, before BN folding and fusion
            if args.resolution is not None:
                graph = _with_resolution(graph, args.resolution)
            return graph, f"{target} (tmn)", True
        from .convert import convert

        cm = convert(target, width=args.width, resolution=args.resolution)
        return cm.graph, f"{target} ({kind})", False
    if target in ARCHS:
        kwargs = {}
        if args.width is not None:
            if target == "efficientnet_lite0":
                raise TinymnetError("efficientnet_lite0 has no width multiplier")
            kwargs["width"] = args.width
        if args.resolution is not None:
            kwargs["resolution"] = args.resolution
        return build(target, **kwargs), target, False
    from .bundled import bundled_names, resolve
    from .fetch import MANIFEST as FETCHABLE

    if target in bundled_names() or target in FETCHABLE:  # a model name: its .tmn file
        args.target = resolve(target)  # says how to fetch one not downloaded yet
        return _info_graph(args)
    raise TinymnetError(f"{target}: no such file, and not an arch name (known: "
                        f"{', '.join(sorted(ARCHS))}) or a model name (bundled: "
                        f"{', '.join(bundled_names())})")


def _plot(graph, rows, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TinymnetError("--plot needs matplotlib, which is not installed: "
                            "pip install 'tinymnet[plot]'") from None
    layers = [r for r in rows if r["macs"] > 0]
    names = [r["name"] for r in layers]
    x = range(len(layers))
    fig_w = min(max(8.0, 0.14 * len(layers) + 2), 40.0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(fig_w, 7), sharex=True)
    colors = ["tab:orange" if "dw" in r["kernel"] else "tab:blue" for r in layers]
    ax1.bar(x, [r["macs"] / 1e6 for r in layers], color=colors)
    ax1.set_ylabel("MACs (M)")
    totals = sum(r["macs"] for r in rows)
    ax1.set_title(f"{graph.name}: {totals / 1e6:.1f}M MACs over {len(layers)} layers "
                  "(orange: depthwise)")
    ax2.bar(x, [r["activation_bytes"] / 1024 for r in layers], color="tab:green")
    ax2.set_ylabel("output activation (KiB, fp32)")
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(names, rotation=90, fontsize=5 if len(layers) > 60 else 7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def _compiled_plan(args, graph, tmn: bool) -> dict:
    """What the compiled plan of this model holds: the activation arena and the packed
    weights (a .tmn as `tinymnet.load` reads it, so 8-bit weights count as stored)."""
    from .model import load
    from .runtime import compile_graph

    if tmn and args.resolution is None:
        plan = load(args.target, threads=1)._compiled
    else:
        if tmn:  # its source graph holds no weights: compile the graph read from the file
            from .formats.tmn import load_tmn

            graph = _with_resolution(load_tmn(args.target).graph, args.resolution)
        plan = compile_graph(graph, 1)
    return {"arena_bytes": plan.arena_bytes, "weight_bytes": plan.weight_bytes,
            "mapped_weight_bytes": plan.mapped_weight_bytes, "isa": plan.isa,
            "batched_steps": plan.batched_steps}


def _cmd_info(args) -> int:
    from .info import format_info, info_table, info_totals

    graph, source, tmn = _info_graph(args)
    rows = info_table(graph)
    plan = _compiled_plan(args, graph, tmn)
    if args.plot:
        _plot(graph, rows, args.plot)
    if args.json:
        totals = info_totals(graph)
        meta = graph.meta
        doc = {
            "name": graph.name,
            "source": source,
            "arch": meta.get("arch"),
            "width": meta.get("width"),
            "resolution": graph.inputs[graph.input_name][1],
            "num_classes": graph.shapes[graph.outputs[0]][-1],
            **{k: int(v) for k, v in totals.items()},
            "plan": plan,
            "layers": [dict(r, output_shape=list(r["output_shape"])) for r in rows],
        }
        print(json.dumps(doc, indent=1))
    else:
        print(format_info(graph))
        print(f"compiled plan ({plan['isa']}, batch 1): activation arena "
              f"{plan['arena_bytes'] / 2**20:.2f} MiB, packed weights "
              f"{plan['weight_bytes'] / 2**20:.2f} MiB" + (
                  f" (+ {plan['mapped_weight_bytes'] / 2**20:.2f} MiB used in place from the "
                  "file)" if plan["mapped_weight_bytes"] else ""))
        if plan["batched_steps"]:
            print("a batch runs its last steps on all its images at once: "
                  + ", ".join(plan["batched_steps"]))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------
# classify / models / fetch (bodies in tinymnet.app)


def _cmd_classify(args) -> int:
    from .app import cmd_classify

    return cmd_classify(args)


def _cmd_models(args) -> int:
    from .app import cmd_models

    return cmd_models(args)


def _cmd_fetch(args) -> int:
    from .app import cmd_fetch

    return cmd_fetch(args)


# ---------------------------------------------------------------------------------------------
# export-onnx / bench


def _cmd_export_onnx(args) -> int:
    from .export_onnx import OPSET, export_onnx

    out = args.output
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise TinymnetError(f"{out}: is a directory; give the .onnx file to write")
    if not os.path.isdir(parent):
        raise TinymnetError(f"{out}: the folder {parent} does not exist")
    proto = export_onnx(args.model, out)
    g = proto.graph
    dims = [d.dim_param or str(d.dim_value) for d in g.input[0].type.tensor_type.shape.dim]
    odims = [d.dim_param or str(d.dim_value) for d in g.output[0].type.tensor_type.shape.dim]
    print(f"wrote {out}: {g.name}, {len(g.node)} nodes, {len(g.initializer)} initializers, "
          f"opset {OPSET}; input {g.input[0].name} ({', '.join(dims)}) NCHW float32, "
          f"output {g.output[0].name} ({', '.join(odims)})")
    return 0


def _cmd_bench(args) -> int:
    from .benchmark import MAX_BATCH, MAX_THREADS, format_report, parse_int_list, run_bench

    threads = parse_int_list(args.threads, "--threads", MAX_THREADS)
    batch = parse_int_list(args.batch, "--batch", MAX_BATCH)
    show = (lambda text: print(f"[bench] {text}", file=sys.stderr, flush=True)) \
        if sys.stderr.isatty() and not args.json else None
    rep = run_bench(args.model, threads=threads, batch=batch, compare=args.compare,
                    rounds=args.rounds, min_time=args.min_time, progress=show)
    print(json.dumps(rep, indent=1) if args.json else format_report(rep))
    return 0


# ---------------------------------------------------------------------------------------------


def _non_negative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinymnet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("isa", help="show the kernel instruction set in use and the available ones")
    p.set_defaults(func=_cmd_isa)

    p = sub.add_parser(
        "convert", help="convert pretrained weights to a .tmn model",
        description="Convert weights to a .tmn model file. The format is read from the file's "
                    "content; the network, width and classes from its tensor names and shapes. "
                    "Understood: torchvision / timm MobileNetV2 and V3 and efficientnet_pytorch "
                    "EfficientNet-Lite0 state dicts (.pth, .safetensors) and Keras MobileNet V1 "
                    ".h5 files.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="weight file(s); shards are merged")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tmn", help="model file to write")
    p.add_argument("--arch", help="network name (e.g. mobilenet_v3_large or timm's "
                                  "mobilenetv2_100) when it cannot be told from the weights")
    p.add_argument("--width", type=_positive_float, help="width multiplier (e.g. 0.75)")
    p.add_argument("--num-classes", type=_positive_int, help="number of classes (checked)")
    p.add_argument("--resolution", type=_positive_int, help="input size (default 224)")
    p.add_argument("--labels", metavar="FILE", help="class names, one a line, to embed")
    p.add_argument("--gemm-panels", choices=tuple(_GEMM_PANELS_ARG),
                   default="native",
                   help="store float32 1x1-conv / linear weights packed for this GEMM panel "
                        "width (native: this CPU's; 16 = AVX2 and NEON, 32 = AVX-512, 8 = "
                        "scalar), so loading uses them in place; the file loads on any CPU. "
                        "none: canonical layouts, the same bytes on every machine")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "info", help="per-layer params, MACs and activation memory of a model",
        description="Per-layer table of an arch name (mobilenet_v2, ...), a model name "
                    "(bundled or fetched), a .tmn model or any file `tinymnet convert` reads.")
    p.add_argument("target", metavar="NAME_OR_FILE")
    p.add_argument("--width", type=_positive_float, help="width multiplier of an arch name")
    p.add_argument("--resolution", type=_positive_int, help="input size")
    p.add_argument("--json", action="store_true", help="print JSON (totals and layers)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw per-layer MACs and activation memory (needs matplotlib)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "classify", help="classify images with a pretrained model",
        description="Classify image files (jpg, png, bmp, webp, gif) or every image under a "
                    "folder. Prints the top-k ImageNet classes of each; a file that cannot be "
                    "read is reported and the rest still classified (exit status 1 if any "
                    "failed).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursed)")
    p.add_argument("--model", metavar="NAME|FILE.tmn",
                   help="a bundled model (`tinymnet models`; default mobilenet_v2_100_224_tf), "
                        "a fetched one or a .tmn file")
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes per image (5)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads per inference (default: the physical cores)")
    p.add_argument("--batch-size", type=_positive_int, default=16,
                   help="images per engine call (16)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output: table (default), one JSON array, or CSV")
    p.add_argument("--preprocess", choices=("crop", "resize"), default="crop",
                   help="crop: resize + centre crop as the model was evaluated (default); "
                        "resize: the whole image resized to the input, no crop")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("models", help="list the bundled pretrained models",
                       description="The pretrained models shipped with tinymnet (offline) with "
                                   "their size, MACs, input size and top-1 agreement on the "
                                   "fixture photos, and those `tinymnet fetch` downloads.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("fetch", help="download and convert published pretrained weights",
                       description="Download torchvision's pretrained weights for NAME once "
                                   "(checked against the published hash), convert them to a "
                                   ".tmn in the cache ($TINYMNET_CACHE, else "
                                   "$XDG_CACHE_HOME/tinymnet or ~/.cache/tinymnet); then "
                                   "--model NAME uses it offline.")
    p.add_argument("name", metavar="NAME", help="e.g. mobilenet_v3_large_100_224_tv "
                                                "(`tinymnet models` lists them)")
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "export-onnx", help="write a model as ONNX with the same weights",
        description="Write MODEL (a bundled model name or a .tmn file) as an ONNX model "
                    "(opset 17): the graph tinymnet compiles (BatchNorm folded, activations "
                    "fused into convs, written back out as separate ONNX nodes), NCHW float32 "
                    "input with a dynamic batch dimension. Needs the onnx package "
                    "(pip install 'tinymnet[onnx]').")
    p.add_argument("model", metavar="MODEL", help="bundled model name or .tmn file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="file to write")
    p.set_defaults(func=_cmd_export_onnx)

    p = sub.add_parser(
        "bench", help="whole-model latency, throughput, memory and start-up",
        description="Time MODEL (a bundled model name or a .tmn file) end to end for every "
                    "(threads, batch) combination, and with --compare onnxruntime the same "
                    "weights on onnxruntime (exported in-process), alternating in one run: "
                    "median and p90 latency (wall clock), images/s, the ratio tinymnet / "
                    "onnxruntime (median of per-round ratios), peak RSS of a child process "
                    "per engine, import and load + first-inference times.")
    p.add_argument("model", metavar="MODEL", help="bundled model name or .tmn file")
    p.add_argument("--threads", default="1", metavar="N[,N...]",
                   help="thread counts, comma-separated (default 1)")
    p.add_argument("--batch", default="1", metavar="B[,B...]",
                   help="batch sizes, comma-separated (default 1)")
    p.add_argument("--compare", metavar="onnxruntime",
                   help="also run onnxruntime on the same weights")
    p.add_argument("--rounds", type=_positive_int, default=7, help="alternating rounds (7)")
    p.add_argument("--min-time", type=_non_negative_float, default=0.5, metavar="SECONDS",
                   help="each round times every configuration for at least this long (0.5; "
                        "0: a single call)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad input: a clear message, no traceback
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"tinymnet: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an output path that cannot be written
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"tinymnet: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinymnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
