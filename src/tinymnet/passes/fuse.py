"""Fuse activations and residual adds into the op that produces their input.

The kernels compute act(conv(x) + bias + residual) in one pass (and act(x @ W.T + b) for
linear, act(a + b) for add), so a separate activation or add node only costs an extra trip
through memory. A producer is fused only when nothing else reads its raw output.
"""

from __future__ import annotations

from tinymnet.graph import Graph, infer_shapes, toposort

_ACT_ATTRS = ("activation", "alpha", "beta")


def _sole_reader(graph: Graph, node, consumers) -> bool:
    return len(consumers.get(node.output, [])) == 1 and node.output not in graph.outputs


def fuse_activations(graph: Graph) -> Graph:
    """conv2d / linear / add followed by an activation node -> one node with that activation.

    Also fuses an activation after a conv that already carries a residual: act(conv + r) is
    exactly what the fused conv computes.
    """
    g = graph.copy()
    changed = True
    while changed:  # chains (add -> act after conv -> add) need more than one sweep
        changed = False
        producers, consumers = g.producers(), g.consumers()
        for act in g.nodes:
            if act.op != "activation":
                continue
            prod = producers.get(act.inputs[0])
            if (
                prod is None
                or prod.op not in ("conv2d", "linear", "add")
                or prod.attrs["activation"] is not None
                or not _sole_reader(g, prod, consumers)
            ):
                continue
            for key in _ACT_ATTRS:
                prod.attrs[key] = act.attrs[key]
            prod.output = act.output
            g.nodes.remove(act)
            changed = True
            break
    infer_shapes(g)
    return g


def fuse_residual_adds(graph: Graph) -> Graph:
    """conv2d -> add(conv_out, r) -> conv2d with residual input r and the add's activation.

    The conv must have no activation of its own (act(conv) + r is not act(conv + r)) and no
    residual yet. When both add inputs qualify, the conv that runs later is chosen, so the
    other operand already exists when it runs; nodes are re-sorted afterwards in any case.
    """
    g = graph.copy()
    changed = True
    while changed:
        changed = False
        producers, consumers = g.producers(), g.consumers()
        order = {n.name: i for i, n in enumerate(g.nodes)}
        for add in g.nodes:
            if add.op != "add" or add.inputs[0] == add.inputs[1]:
                continue
            candidates = []
            for i, t in enumerate(add.inputs):
                conv = producers.get(t)
                if (
                    conv is not None
                    and conv.op == "conv2d"
                    and len(conv.inputs) == 1
                    and conv.attrs["activation"] is None
                    and _sole_reader(g, conv, consumers)
                ):
                    candidates.append((order[conv.name], conv, add.inputs[1 - i]))
            if not candidates:
                continue
            _, conv, other = max(candidates, key=lambda c: c[0])
            conv.inputs = [conv.inputs[0], other]
            for key in _ACT_ATTRS:
                conv.attrs[key] = add.attrs[key]
            conv.output = add.output
            g.nodes.remove(add)
            g.nodes = toposort(g.nodes, list(g.inputs))
            changed = True
            break
    infer_shapes(g)
    return g
