"""Remove nodes that cannot change the graph outputs, and identity ops."""

from __future__ import annotations

from tinymnet.graph import Graph, infer_shapes


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes whose output never reaches a graph output, and params nothing uses."""
    g = graph.copy()
    producers = g.producers()
    needed, stack = set(), list(g.outputs)
    while stack:
        t = stack.pop()
        node = producers.get(t)
        if node is None or node.name in needed:
            continue
        needed.add(node.name)
        stack.extend(node.inputs)
    g.nodes = [n for n in g.nodes if n.name in needed]
    live = {key for n in g.nodes for key in n.params.values()}
    g.params = {k: v for k, v in g.params.items() if k in live}
    infer_shapes(g)
    return g


def remove_dropout(graph: Graph) -> Graph:
    """Bypass dropout (identity at inference): readers of its output read its input instead.

    When the dropout's output is a graph output, the producer of its input is renamed to that
    output instead, so graph output names never change. A dropout straight on a graph input
    that is also a graph output is left alone.
    """
    g = graph.copy()
    for d in [n for n in g.nodes if n.op == "dropout"]:
        src, dst = d.inputs[0], d.output
        if dst in g.outputs:
            producer = g.producers().get(src)
            if producer is None or src in g.outputs:
                continue
            old, new = src, dst  # rename the producer's tensor to the output name
            producer.output = new
        else:
            old, new = dst, src  # point the readers at the dropout's input
        g.nodes.remove(d)
        for n in g.nodes:
            n.inputs = [new if t == old else t for t in n.inputs]
    infer_shapes(g)
    return g
