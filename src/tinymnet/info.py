"""Per-layer cost table of a graph: params, multiply-accumulates and activation memory.

Counting conventions (those of the papers and of torchvision's model docs):

* params: every weight and bias of conv / linear / squeeze-excite layers plus BatchNorm's
  gamma and beta; BN running statistics are buffers, not parameters, and are not counted.
  A param shared by several nodes counts once. On a graph whose BN was folded the count
  changes (BN gone, conv biases added); count the builder's graph to compare with papers.
* MACs: convolutions and fully connected layers only (squeeze-excite FCs included);
  element-wise ops, pooling and BN are free. Batch 1.
* activation bytes: the float32 output tensor of each node at batch 1. The totals give their
  sum (what an executor without buffer reuse allocates) and the peak of live tensors when the
  nodes run in order (a lower bound for any memory plan that keeps whole tensors).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from tinymnet.graph import Graph

_NOT_PARAMS = {("batchnorm", "mean"), ("batchnorm", "var")}
_FLOAT_BYTES = 4


def _batch1(shape):
    return tuple(1 if s is None else int(s) for s in shape)


def _node_macs(graph: Graph, node) -> int:
    out = _batch1(graph.shapes[node.output])
    if node.op == "conv2d":
        cout, cin_g, kh, kw = graph.param_shape(node.params["weight"])
        return int(np.prod(out[:3])) * cout * cin_g * kh * kw
    if node.op == "linear":
        cout, cin = graph.param_shape(node.params["weight"])
        return out[0] * cout * cin
    if node.op == "squeeze_excite":
        w1 = graph.param_shape(node.params["w1"])
        return out[0] * 2 * w1[0] * w1[1]  # fc1 (C -> S) and fc2 (S -> C)
    return 0


def _stride_str(stride) -> str:
    return str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"


def _kernel_stride(graph: Graph, node):
    """("3x3 dw", "2")-style strings; "dw" marks a depthwise conv, "gN" a grouped one."""
    a = node.attrs
    if node.op == "conv2d":
        kh, kw = graph.param_shape(node.params["weight"])[2:]
        cin, groups = graph.shapes[node.inputs[0]][-1], a["groups"]
        kernel = f"{kh}x{kw}"
        if groups > 1:
            kernel += " dw" if groups == cin else f" g{groups}"
        return kernel, _stride_str(a["stride"])
    if node.op in ("avg_pool2d", "max_pool2d"):
        kh, kw = a["kernel"]
        return f"{kh}x{kw}", _stride_str(a["stride"])
    if node.op == "global_avg_pool":
        return "global", ""
    return "", ""


def info_table(graph: Graph) -> List[dict]:
    """One dict per node: name, op, kernel, stride, activation (fused or applied),
    output_shape (batch 1), params, macs, activation_bytes."""
    seen = set()
    rows = []
    for node in graph.nodes:
        n_params = 0
        for role, key in node.params.items():
            if (node.op, role) in _NOT_PARAMS or key in seen:
                continue
            seen.add(key)
            n_params += int(np.prod(graph.param_shape(key)))
        out = _batch1(graph.shapes[node.output])
        kernel, stride = _kernel_stride(graph, node)
        act = node.attrs.get("activation") or ""
        if node.op == "conv2d" and len(node.inputs) == 2:
            act = ("+res " + act).strip()
        rows.append(
            {
                "name": node.name,
                "op": node.op,
                "kernel": kernel,
                "stride": stride,
                "activation": act,
                "output_shape": out,
                "params": n_params,
                "macs": _node_macs(graph, node),
                "activation_bytes": int(np.prod(out)) * _FLOAT_BYTES,
            }
        )
    return rows


def _peak_live_bytes(graph: Graph) -> int:
    """Max over nodes of the bytes of tensors alive while that node runs (inputs still needed
    later or by this node, plus its output); graph inputs count."""
    size = {t: int(np.prod(_batch1(s))) * _FLOAT_BYTES for t, s in graph.shapes.items()}
    last_use = {t: -1 for t in graph.inputs}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            last_use[t] = i
    for t in graph.outputs:
        last_use[t] = len(graph.nodes)
    live = set(graph.inputs)
    peak = sum(size[t] for t in live)
    for i, node in enumerate(graph.nodes):
        live.add(node.output)
        peak = max(peak, sum(size[t] for t in live))
        live = {t for t in live if last_use.get(t, -1) > i}
    return peak


def info_totals(graph: Graph) -> Dict[str, int]:
    """dict(params, macs, activation_bytes, peak_activation_bytes) over the whole graph."""
    rows = info_table(graph)
    return {
        "params": sum(r["params"] for r in rows),
        "macs": sum(r["macs"] for r in rows),
        "activation_bytes": sum(r["activation_bytes"] for r in rows),
        "peak_activation_bytes": _peak_live_bytes(graph),
    }


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def format_info(graph: Graph) -> str:
    """The table as aligned text, one line per node, then the totals."""
    rows = info_table(graph)
    header = ("name", "op", "kernel", "stride", "act", "output", "params", "MACs", "act bytes")
    lines = [
        (
            r["name"],
            r["op"],
            r["kernel"],
            r["stride"],
            r["activation"],
            "x".join(map(str, r["output_shape"])),
            f"{r['params']:,}",
            f"{r['macs']:,}",
            f"{r['activation_bytes']:,}",
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)
    ]
    right = {6, 7, 8}  # numbers align right

    def fmt(cols):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths))
        ).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(l) for l in lines]
    t = info_totals(graph)
    out.append("")
    out.append(
        f"{graph.name}: {t['params']:,} params ({_human(t['params'])}), {t['macs']:,} MACs "
        f"({_human(t['macs'])}), activations {_human(t['activation_bytes'], 'B')} total, "
        f"peak live {_human(t['peak_activation_bytes'], 'B')} (float32, batch 1)"
    )
    return "\n".join(out)
