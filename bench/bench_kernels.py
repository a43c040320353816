"""Kernel benchmarks: every tinymnet kernel on every MobileNet layer shape, under each ISA, vs
onnxruntime (1 thread) and numpy matmul (1 thread, pointwise only), in the same run.

    python bench/bench_kernels.py [--nets v2,v3s] [--isa scalar,avx2,avx512] [--rounds 7]
                                  [--ops pw,dw] [--markdown out.md] [--quick]

Method (see README.md): times are CPU time of the calling thread. A round walks every distinct
layer shape; per layer it times every contender and the FMA peak probe (fma_peak.cc) in
rotating order, each over a batch of calls lasting >= --min-time. Reported: medians over
rounds. Ratios (and % of peak) are medians of per-round ratios of times measured back to back,
so machine-speed drift largely cancels. Before any timing every output is checked against
onnxruntime (max |diff| <= 1e-4 * max |ref|); a mismatch aborts the run.

Contenders of a layer (all with bias, no activation, preallocated outputs):
  tinymnet/<isa>  the op's C++ run (kernels.Conv2d / Linear / SqueezeExcite, weights packed at
                  creation under kernels.use_isa), NHWC
  ort             onnxruntime, the faster per round of two one-node models of the same layer:
                  "nchw" (ORT_ENABLE_EXTENDED: MLAS im2col / SGEMM on NCHW) and "nchwc"
                  (ORT_ENABLE_ALL: MLAS's blocked-layout conv, with the ReorderInput /
                  ReorderOutput that a one-node model gets moved outside the timed region, as in
                  a whole network where consecutive convs stay blocked). SE is the 6-node
                  ONNX subgraph; FC is a Gemm.
  numpy           (pointwise only) x(HW, Cin) @ W^T(Cin, Cout), OpenBLAS on 1 thread
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: numpy matmul on one thread

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tinymnet import kernels as K  # noqa: E402
from tinymnet._args import resolve_padding  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fma_peak import fma_peak  # noqa: E402
from shapes import NETS, OPS, Layer, load  # noqa: E402

RTOL = 1e-4
MIN_TIME = 0.02  # seconds per timed batch
ROUNDS = 7
KIND = {"conv": "stem", "dw": "depthwise", "pw": "pointwise"}
PEAK_ISAS = ("avx2", "avx512")  # scalar has no meaningful FMA peak
try:  # numpy's BLAS on one thread even if it was imported before us (pytest)
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
except ImportError:
    pass


# ----------------------------------------------------------------------------- timing

def timeit(fn, reps: int) -> float:
    """CPU seconds of this thread per call of fn, over one batch of `reps` calls. Every
    contender runs single-threaded in the calling thread, so this is its whole cost, minus the
    time slices the (oversubscribed, shared) machine gives to other processes meanwhile."""
    t0 = time.thread_time()
    for _ in range(reps):
        fn()
    return (time.thread_time() - t0) / reps


def calibrate(fn, min_time: float) -> int:
    """Calls per batch so that one batch lasts >= min_time (after a warm-up call)."""
    fn()
    reps = 1
    while (t := timeit(fn, reps) * reps) < min_time:
        reps = max(reps * 2, int(reps * 1.2 * min_time / max(t, 1e-9)))
    return reps


# ----------------------------------------------------------------------------- contenders

def make_params(layer: Layer, seed: int = 0):
    """Random input and weights for a layer (weights scaled by 1/sqrt(fan-in))."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    L = layer
    if L.op == "fc":
        return {"x": r(1, L.cin), "w": r(L.cout, L.cin, scale=L.cin ** -0.5), "b": r(L.cout)}
    p = {"x": rng.uniform(-1, 1, (1, L.h, L.w, L.cin)).astype(np.float32)}
    if L.op == "se":
        p.update(w1=r(L.cout, L.cin, scale=L.cin ** -0.5), b1=r(L.cout),
                 w2=r(L.cin, L.cout, scale=L.cout ** -0.5), b2=r(L.cin))
    else:
        cin_g = 1 if L.op == "dw" else L.cin
        p.update(w=r(L.cout, cin_g, L.k, L.k, scale=(cin_g * L.k * L.k) ** -0.5), b=r(L.cout))
    return p


def tinymnet_op(layer: Layer, p, isa: str):
    """-> (call, output array) for the tinymnet op of `layer` created under `isa`."""
    L = layer
    with K.use_isa(isa):
        if L.op == "fc":
            op = K.Linear(p["w"], p["b"])
            out = np.empty((1, L.cout), np.float32)
            return (lambda: op._op.run(p["x"], out)), out
        if L.op == "se":
            op = K.SqueezeExcite(p["w1"], p["b1"], p["w2"], p["b2"])
            out = np.empty_like(p["x"])
            return (lambda: op._op.run(p["x"], out)), out
        op = K.Conv2d(p["w"], p["b"], stride=L.stride, padding=L.pad,
                      groups=L.cin if L.op == "dw" else 1)
    if op.kind != KIND[L.op] or op.isa != isa:
        raise RuntimeError(f"{L.name}: got a {op.kind}/{op.isa} op, expected {KIND[L.op]}/{isa}")
    out = np.empty(op.out_shape(p["x"].shape), np.float32)
    # the C++ run with a preallocated output; __call__ only adds Python argument checks
    return (lambda: op._op.run(p["x"], out, 0, None)), out


def onnx_model(layer: Layer, p) -> bytes:
    """The layer as an ONNX model with input "x" (NCHW; (1, Cin) for fc) and output "y"."""
    L, T = layer, numpy_helper.from_array
    if L.op == "fc":
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
        inits, x_shape = [T(p["w"], "w"), T(p["b"], "b")], [1, L.cin]
    elif L.op == "se":
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["m"]),
                 helper.make_node("Conv", ["m", "w1", "b1"], ["s"]),
                 helper.make_node("Relu", ["s"], ["r"]),
                 helper.make_node("Conv", ["r", "w2", "b2"], ["e"]),
                 helper.make_node("HardSigmoid", ["e"], ["g"], alpha=1 / 6, beta=0.5),
                 helper.make_node("Mul", ["x", "g"], ["y"])]
        inits = [T(p["w1"][:, :, None, None], "w1"), T(p["b1"], "b1"),
                 T(p["w2"][:, :, None, None], "w2"), T(p["b2"], "b2")]
        x_shape = [1, L.cin, L.h, L.w]
    else:
        t, b, l, r = resolve_padding(L.pad, (L.h, L.w), (L.k, L.k), (L.stride, L.stride))
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[L.k, L.k],
                                  strides=[L.stride] * 2, pads=[t, l, b, r],
                                  group=L.cin if L.op == "dw" else 1)]
        inits, x_shape = [T(p["w"], "w"), T(p["b"], "b")], [1, L.cin, L.h, L.w]
    graph = helper.make_graph(nodes, L.name, [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, x_shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def ort_session(model, level, save_to=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = level
    so.log_severity_level = 3
    if save_to:
        so.optimized_model_filepath = save_to
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def ort_call(sess, feeds):
    """-> (call, outputs): run with inputs and preallocated outputs bound once (IOBinding)."""
    outs = [np.empty_like(o) for o in sess.run(None, feeds)]
    io = sess.io_binding()
    for name, arr in feeds.items():
        io.bind_cpu_input(name, arr)
    for meta, arr in zip(sess.get_outputs(), outs):
        io.bind_output(meta.name, "cpu", 0, np.float32, arr.shape, arr.ctypes.data)

    def call():
        sess.run_with_iobinding(io)
    call.buffers = (feeds, outs)  # ORT holds raw pointers: keep the arrays alive with the call
    return call, outs


def ort_nchwc(model: bytes, feeds):
    """ORT_ENABLE_ALL's blocked-layout graph with the graph-boundary ReorderInput nodes run once
    up front and the final ReorderOutput nodes dropped -> (call, full-model output), or None
    when ORT did not block the layer."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        full = ort_session(model, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, path)
        opt = onnx.load(path)
    g = opt.graph
    ins, outs = {i.name for i in g.input}, {o.name for o in g.output}
    pre = [n for n in g.node if n.op_type == "ReorderInput" and n.input[0] in ins]
    post = [n for n in g.node if n.op_type == "ReorderOutput" and n.output[0] in outs]
    if not pre and not post:
        return None
    body = [n for n in g.node if n not in pre and n not in post]
    body_uses = {x for n in body for x in n.input}

    def vi(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)

    def session(nodes, inputs, outputs, inits=()):
        m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=opt.opset_import)
        return ort_session(m.SerializeToString(), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)

    blocked_in = [vi(n.output[0]) for n in pre]
    blocked = {}
    if pre:
        blocked = dict(zip([v.name for v in blocked_in],
                           session(pre, list(g.input), blocked_in).run(None, feeds)))
    sess = session(body, blocked_in + [i for i in g.input if i.name in body_uses],
                   [vi(n.input[0]) for n in post] + [o for o in g.output if o.name not in
                                                     {n.output[0] for n in post}],
                   g.initializer)
    call, _ = ort_call(sess, {i.name: {**feeds, **blocked}[i.name] for i in sess.get_inputs()})
    return call, full.run(None, feeds)[0]


@dataclass
class Case:
    """One distinct layer shape: its contenders and their per-round times."""
    layer: Layer
    fns: dict  # contender -> call
    reps: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)  # isa -> FMA peak GFLOP/s measured per round
    nchwc_wins: bool = False  # ORT's blocked kernel was the faster in most rounds


def rel_err(got, ref) -> float:
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def make_case(layer: Layer, isas) -> Case:
    """Build every contender of `layer`, check each output against ORT; raises on mismatch."""
    p = make_params(layer)
    x_ort = p["x"] if layer.op == "fc" else np.ascontiguousarray(p["x"].transpose(0, 3, 1, 2))
    model = onnx_model(layer, p)
    nchw, (ref,) = ort_call(ort_session(model, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                            {"x": x_ort})
    nchw()  # ref is the bound output
    ref = ref if layer.op == "fc" else ref.transpose(0, 2, 3, 1)
    fns, outs = {}, {}
    for isa in isas:
        fns[f"tinymnet/{isa}"], outs[f"tinymnet/{isa}"] = tinymnet_op(layer, p, isa)
    fns["ort-nchw"] = nchw
    blocked = ort_nchwc(model, {"x": x_ort})
    if blocked:
        fns["ort-nchwc"], full = blocked
        outs["ort-nchwc (whole model)"] = full if layer.op == "fc" else full.transpose(0, 2, 3, 1)
    if layer.op == "pw":
        x2 = p["x"].reshape(-1, layer.cin)
        wt = np.ascontiguousarray(p["w"][:, :, 0, 0].T)
        y2 = np.empty((x2.shape[0], layer.cout), np.float32)
        fns["numpy"] = lambda: np.matmul(x2, wt, out=y2)
    for fn in fns.values():
        fn()
    if layer.op == "pw":
        outs["numpy"] = y2.reshape(ref.shape) + p["b"]
    bad = {n: e for n, o in outs.items() if (e := rel_err(o, ref)) > RTOL}
    if bad:
        raise AssertionError(f"{layer.net} {layer.name} ({layer.describe()}): outputs differ from "
                             "onnxruntime: " + ", ".join(f"{n} {e:.1e}" for n, e in bad.items()))
    return Case(layer, fns)


# ----------------------------------------------------------------------------- measurement

def measure(cases, rounds: int, min_time: float, peak_isas, log=print):
    """Alternating rounds over every case. The FMA peak probes (one min_time trial each) take
    part in each case's rotation like contenders, so the peak is measured next to the layer."""
    for case in cases:
        case.reps = {n: calibrate(fn, min_time) for n, fn in case.fns.items()}
        case.times = {n: [] for n in case.fns}
        case.peaks = {isa: [] for isa in peak_isas}
    for r in range(rounds):
        t0 = time.perf_counter()
        for case in cases:
            names = list(case.fns) + [f"peak/{isa}" for isa in peak_isas]
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if name.startswith("peak/"):
                    isa = name[5:]
                    case.peaks[isa].append(fma_peak(isa, seconds=min_time, trials=1))
                else:
                    case.times[name].append(timeit(case.fns[name], case.reps[name]))
        log(f"round {r + 1}/{rounds}: {time.perf_counter() - t0:.1f} s")
    for case in cases:  # "ort" = the faster ORT variant in each round
        variants = [case.times[n] for n in ("ort-nchw", "ort-nchwc") if n in case.times]
        case.times["ort"] = [min(v) for v in zip(*variants)]
        case.nchwc_wins = sum(a < b for a, b in zip(case.times.get("ort-nchwc", []),
                                                    case.times["ort-nchw"])) * 2 > rounds


def aggregate(layers, cases, contender, peak_isa=None, peer=None):
    """Over `layers` (a repeated layer counts once per occurrence) -> (median total seconds,
    GFLOP/s at that time, % of FMA peak, time ratio to `peer`). % of peak and the ratio are
    medians over rounds of per-round values: sum over layers of flops / peak measured next to
    the layer, over the summed time; summed time over the peer's summed time."""
    rounds = range(len(cases[layers[0].key].times[contender]))

    def total(name):
        return [sum(cases[L.key].times[name][r] for L in layers) for r in rounds]

    flops, t = sum(L.flops for L in layers), total(contender)
    pct = ratio = None
    if peak_isa in cases[layers[0].key].peaks:
        ideal = [sum(L.flops / (cases[L.key].peaks[peak_isa][r] * 1e9) for L in layers)
                 for r in rounds]
        pct = statistics.median(i / a * 100 for i, a in zip(ideal, t))
    if peer in cases[layers[0].key].times:
        ratio = statistics.median(a / b for a, b in zip(t, total(peer)))
    return statistics.median(t), flops / statistics.median(t) * 1e-9, pct, ratio


# ----------------------------------------------------------------------------- report

def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def fmt(v, spec, suffix=""):
    return "–" if v is None else f"{v:{spec}}{suffix}"


def machine() -> str:
    info = dict(ln.split(":", 1) for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in ln)
    cpu = " ".join(f"{k} {info[k].strip()}" for k in ("CPU family", "Model") if k in info)
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                         text=True, cwd=Path(__file__).parent).stdout.strip()
    return (f"{info.get('Model name', platform.processor()).strip()} ({cpu}), {os.cpu_count()} "
            f"CPUs, {platform.system()} {platform.release()}; tinymnet {rev or '?'}, "
            f"onnxruntime {ort.__version__}, numpy {np.__version__}")


def report(layers, cases, isas, args) -> str:
    peaks = {}
    for case in cases.values():
        for isa, v in case.peaks.items():
            peaks.setdefault(isa, []).extend(v)
    med = {isa: statistics.median(v) for isa, v in peaks.items()}
    peak_text = ", ".join(f"{isa} {med[isa]:.0f} GFLOP/s ({min(v):.0f}-{max(v):.0f})"
                          for isa, v in peaks.items())
    out = [f"Run {datetime.datetime.now():%Y-%m-%d %H:%M}: `{' '.join(sys.argv)}`  ",
           f"Machine: {machine()}  ",
           f"FMA peak (1 core; median and range of the per-layer probes): {peak_text}; "
           f"{args.rounds} rounds, batches >= {args.min_time * 1e3:.0f} ms (thread CPU time)", ""]

    # targets
    sel = lambda op, nets=None: [L for L in layers if L.op == op  # noqa: E731
                                 and (nets is None or L.net in nets)]
    v2pw = sel("pw", {"mobilenet_v2"})
    dw = sel("dw", {"mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"})
    targets = [("pointwise GEMM, % FMA peak, V2 1x1 layers", v2pw, "pct", ">= 75%"),
               ("pointwise time / ORT, all nets' 1x1 layers", sel("pw"), "ratio", "<= 1.0"),
               ("depthwise time / ORT, V2+V3 dw layers", dw, "ratio", "<= 1.0")]
    rows = []
    for label, ls, what, goal in targets:
        if not ls:
            continue
        row = [label, goal]
        for isa in isas:
            _, _, pct, ratio = aggregate(ls, cases, f"tinymnet/{isa}", isa, "ort")
            v = pct if what == "pct" else ratio
            ok = v is not None and (v >= 75 if what == "pct" else v <= 1.0)
            row.append("–" if v is None else
                       (f"{v:.1f}%" if what == "pct" else f"{v:.2f}") + (" ✓" if ok else " ✗"))
        rows.append(row)
    out += ["### Targets", "", md_table(["metric", "target"] + isas, rows), ""]

    # per net and kernel family, each ISA
    rows = []
    nets = list(dict.fromkeys(L.net for L in layers))
    for net in nets + (["all"] if len(nets) > 1 else []):
        for op in OPS:
            ls = [L for L in layers if L.op == op and net in ("all", L.net)]
            if not ls:
                continue
            ort_t = aggregate(ls, cases, "ort")[0]
            for isa in isas:
                t, gf, pct, r_ort = aggregate(ls, cases, f"tinymnet/{isa}", isa, "ort")
                r_np = aggregate(ls, cases, f"tinymnet/{isa}", None, "numpy")[3]
                rows.append([net.replace("mobilenet_", ""), op, len(ls),
                             f"{sum(L.flops for L in ls) / 1e6:.1f}", isa, f"{t * 1e3:.3f}",
                             f"{gf:.1f}", fmt(pct, ".0f", "%"), f"{ort_t * 1e3:.3f}",
                             fmt(r_ort, ".2f"), fmt(r_np, ".2f")])
    out += ["### Kernel families (sum over the layers of each net)", "",
            md_table(["net", "op", "layers", "MFLOP", "isa", "ms", "GFLOP/s", "% peak",
                      "ORT ms", "× ORT", "× numpy"], rows), ""]

    # per layer, best ISA
    best = isas[-1]
    rows = []
    for L in layers:
        c = cases[L.key]
        t, gf, pct, r_ort = aggregate([L], cases, f"tinymnet/{best}", best, "ort")
        r_np = aggregate([L], cases, f"tinymnet/{best}", None, "numpy")[3]
        np_t = statistics.median(c.times["numpy"]) * 1e6 if "numpy" in c.times else None
        rows.append([L.net.replace("mobilenet_", ""), L.name, L.op, L.describe(),
                     f"{L.flops / 1e6:.2f}", f"{t * 1e6:.1f}", f"{gf:.1f}", fmt(pct, ".0f", "%"),
                     f"{statistics.median(c.times['ort']) * 1e6:.1f}"
                     + (" c" if c.nchwc_wins else ""),
                     fmt(r_ort, ".2f"), fmt(np_t, ".1f"), fmt(r_np, ".2f")])
    out += [f"### Per layer, {best} (ORT µs marked c: its NCHWc kernel was the faster)", "",
            md_table(["net", "layer", "op", "shape", "MFLOP", "µs", "GFLOP/s", "% peak",
                      "ORT µs", "× ORT", "numpy µs", "× numpy"], rows), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="v1,v2,v3l,v3s", help="comma list of " + ",".join(NETS))
    ap.add_argument("--isa", default=",".join(K.available_isas()),
                    help="comma list (default: every ISA of this build and CPU)")
    ap.add_argument("--ops", default=",".join(OPS), help="comma list of " + ",".join(OPS))
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--min-time", type=float, default=MIN_TIME, help="seconds per timed batch")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 rounds of 5 ms batches (not for reported numbers)")
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.min_time = 3, 0.005
    isas = [i for i in K.available_isas() if i in args.isa.split(",")]
    ops = args.ops.split(",")
    layers = [L for n in args.nets.split(",") for L in load(n) if L.op in ops]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    t0 = time.perf_counter()
    cases = {}
    for L in layers:
        if L.key not in cases:
            cases[L.key] = make_case(L, isas)
    log(f"{len(layers)} layers, {len(cases)} distinct shapes, isas {isas}: outputs match "
        f"onnxruntime ({time.perf_counter() - t0:.0f} s)")
    peak_isas = [i for i in PEAK_ISAS if i in isas]
    measure(list(cases.values()), args.rounds, args.min_time, peak_isas, log)
    text = report(layers, cases, isas, args)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    log(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
