"""Fold inference BatchNorm into the convolution that feeds it.

conv -> BN computes gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, which is a conv with
weights scaled per output channel and a new bias:
    s = gamma / sqrt(var + eps);  W' = W * s[:, None, None, None];  b' = (b - mean) * s + beta
The arithmetic is done in float64 so folding adds no error beyond the final float32 rounding.
"""

from __future__ import annotations

import numpy as np

from tinymnet.graph import Graph, infer_shapes


def _foldable(graph: Graph, conv, consumers) -> bool:
    # The conv's raw output must go nowhere but the BN: no activation or residual applied
    # before it, no other reader, not a graph output.
    return (
        conv.op == "conv2d"
        and conv.attrs["activation"] is None
        and len(conv.inputs) == 1
        and len(consumers.get(conv.output, [])) == 1
        and conv.output not in graph.outputs
    )


def _fresh_key(params, key):
    i = 1
    while f"{key}.{i}" in params:
        i += 1
    return f"{key}.{i}"


def fold_batchnorm(graph: Graph) -> Graph:
    """New graph where every conv2d -> batchnorm pair is one conv2d (with a bias).

    The folded conv keeps its name and weight key (the arrays are new; the input graph is not
    touched) and takes over the BN's output tensor. A batchnorm without such a producer stays.
    """
    g = graph.copy()
    producers = g.producers()
    consumers = g.consumers()
    params = dict(g.params)
    # How many nodes share each param: a shared weight gets a fresh key instead of being
    # overwritten under the other user.
    uses = {}
    for n in g.nodes:
        for key in n.params.values():
            uses[key] = uses.get(key, 0) + 1

    removed = set()
    for bn in g.nodes:
        if bn.op != "batchnorm":
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or not _foldable(g, conv, consumers):
            continue
        p = {role: params[key].astype(np.float64) for role, key in bn.params.items()}
        scale = p["gamma"] / np.sqrt(p["var"] + bn.attrs["eps"])
        w = params[conv.params["weight"]].astype(np.float64)
        bias = params[conv.params["bias"]].astype(np.float64) if "bias" in conv.params else 0.0
        new_w = (w * scale[:, None, None, None]).astype(np.float32)
        new_b = ((bias - p["mean"]) * scale + p["beta"]).astype(np.float32)

        wkey = conv.params["weight"]
        if uses[wkey] > 1:
            wkey = _fresh_key(params, wkey)
        bkey = conv.params.get("bias")
        if bkey is None or uses[bkey] > 1:
            # Name the new bias like torch would (``features.0.0.bias``) when that is free.
            base = (
                wkey[: -len(".weight")] + ".bias"
                if wkey.endswith(".weight")
                else f"{conv.name}.bias"
            )
            bkey = base if base not in params else _fresh_key(params, base)
        params[wkey], params[bkey] = new_w, new_b
        conv.params = {"weight": wkey, "bias": bkey}
        conv.output = bn.output
        removed.add(bn.name)

    g.nodes = [n for n in g.nodes if n.name not in removed]
    # Drop BN params (and any overwritten originals) nothing refers to any more.
    live = {key for n in g.nodes for key in n.params.values()}
    g.params = {k: v for k, v in params.items() if k in live}
    infer_shapes(g)
    return g
