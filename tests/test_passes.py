"""Graph passes keep the reference output (<= 1e-5 relative to the output scale) and do the
rewrites they promise, and only those."""

from collections import Counter

import numpy as np
import pytest

from tinymnet.graph import GraphBuilder, graph_to_dict, run_reference
from tinymnet.models import ARCHS, build
from tinymnet.passes import (
    fold_batchnorm,
    fuse_activations,
    fuse_residual_adds,
    optimize,
    remove_dead_nodes,
    remove_dropout,
)

PASSES = [
    remove_dropout,
    fold_batchnorm,
    fuse_residual_adds,
    fuse_activations,
    remove_dead_nodes,
    optimize,
]


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def assert_same_output(g0, g1, x, tol=1e-5, want=None):
    y0 = run_reference(g0, x) if want is None else want
    y1 = run_reference(g1, x)
    for a, b in zip(*(([y0], [y1]) if isinstance(y0, np.ndarray) else (y0, y1))):
        assert a.shape == b.shape
        assert np.abs(b - a).max() <= tol * np.abs(a).max()


def snapshot(g):
    return graph_to_dict(g), {k: v.copy() for k, v in g.params.items()}


def assert_unchanged(g, snap):
    d, params = snap
    assert graph_to_dict(g) == d
    assert set(g.params) == set(params)
    assert all(np.array_equal(g.params[k], v) for k, v in params.items())


@pytest.fixture(scope="module", params=sorted(ARCHS))
def model(request):
    # An odd size for EfficientNet-Lite exercises asymmetric TF SAME padding.
    res = 97 if request.param == "efficientnet_lite0" else 96
    g = build(request.param, resolution=res, num_classes=17, seed=5)
    x = rand((2, res, res, 3), seed=7)
    return g, x, run_reference(g, x)


def test_random_init_has_nontrivial_bn_statistics(model):
    g, _, _ = model
    bn = next(n for n in g.nodes if n.op == "batchnorm")
    mean, var = g.params[bn.params["mean"]], g.params[bn.params["var"]]
    assert np.abs(mean).max() > 0.05 and np.abs(var - 1).max() > 0.2


@pytest.mark.parametrize("apply", PASSES, ids=lambda p: p.__name__)
def test_pass_preserves_output_and_input_graph(model, apply):
    g, x, y = model
    snap = snapshot(g)
    h = apply(g)
    assert_unchanged(g, snap)
    assert h.outputs == g.outputs and h.inputs == g.inputs
    assert_same_output(g, h, x, want=y)


def test_optimize_leaves_only_fused_ops(model):
    g, x, _ = model
    h = optimize(g)
    ops = Counter(n.op for n in h.nodes)
    assert ops["batchnorm"] == ops["activation"] == ops["dropout"] == 0
    # An add survives only where no conv could take it as its residual: GhostNet's identity
    # shortcut adds a concat to the block input (a tensor other nodes read as well).
    producers, consumers = h.producers(), h.consumers()
    for n in h.nodes:
        if n.op == "add":
            for t in n.inputs:
                assert t not in producers or producers[t].op != "conv2d" or len(consumers[t]) > 1
    before = Counter(n.op for n in g.nodes)
    assert ops["conv2d"] == before["conv2d"]
    assert sum(len(n.inputs) == 2 for n in h.nodes if n.op == "conv2d") == before["add"] - ops[
        "add"
    ]
    if g.meta["arch"] != "ghostnet":
        assert ops["add"] == 0
    assert all("bias" in n.params for n in h.nodes if n.op == "conv2d")
    # BN params are gone, folded conv biases are named like torch would name them.
    assert not any(k.endswith(("running_mean", "running_var")) for k in h.params)
    referenced = {k for n in h.nodes for k in n.params.values()}
    assert referenced == set(h.params)
    # Idempotent.
    assert graph_to_dict(optimize(h)) == graph_to_dict(h)


def test_fold_batchnorm_math():
    b = GraphBuilder("fold", (5, 5, 3))
    y = b.conv2d(b.input, "conv", 4, 3, padding=1, bias=True)
    y = b.batchnorm(y, "bn", eps=1e-3)
    g = b.build([y], seed=1)
    h = fold_batchnorm(g)
    assert [n.op for n in h.nodes] == ["conv2d"]
    conv = h.nodes[0]
    assert conv.output == "bn" and conv.params == {"weight": "conv.weight", "bias": "conv.bias"}
    p = g.params
    scale = p["bn.weight"].astype(np.float64) / np.sqrt(p["bn.running_var"] + 1e-3)
    np.testing.assert_allclose(
        h.params["conv.weight"], p["conv.weight"] * scale[:, None, None, None], rtol=1e-6
    )
    np.testing.assert_allclose(
        h.params["conv.bias"],
        (p["conv.bias"] - p["bn.running_mean"]) * scale + p["bn.bias"],
        rtol=1e-6,
        atol=1e-7,
    )
    assert_same_output(g, h, rand((1, 5, 5, 3)))


def test_fold_skips_what_it_must_not_fold():
    b = GraphBuilder("nofold", (6, 6, 4))
    c1 = b.conv2d(b.input, "c1", 4, 1)
    bn1 = b.batchnorm(c1, "bn1", 1e-5)
    s = b.add("add", [c1, bn1], "sum")  # c1 has a second reader
    c2 = b.conv2d(s, "c2", 4, 1, activation="relu")
    bn2 = b.batchnorm(c2, "bn2", 1e-5)  # BN after an activation
    bn3 = b.batchnorm(bn2, "bn3", 1e-5)  # BN after BN
    c4 = b.conv2d(bn3, "c4", 4, 1)
    bn4 = b.batchnorm(c4, "bn4", 1e-5)
    g = b.build([bn4, c4], seed=2)  # c4 is also a graph output
    h = fold_batchnorm(g)
    assert Counter(n.op for n in h.nodes)["batchnorm"] == 4
    assert_same_output(g, h, rand((1, 6, 6, 4)))


def test_fold_shared_weight_gets_fresh_key():
    b = GraphBuilder("shared", (4, 4, 2))
    y1 = b.batchnorm(b.conv2d(b.input, "c1", 2, 1), "bn1", 1e-5)
    y2 = b.batchnorm(b.conv2d(b.input, "c2", 2, 1), "bn2", 1e-5)
    y = b.add("add", [y1, y2], "out")
    g = b.build([y], seed=3)
    g.node("c2").params["weight"] = "c1.weight"  # two convs read one weight
    g = remove_dead_nodes(g)  # drops the now unused c2.weight
    h = fold_batchnorm(g)
    keys = {n.params["weight"] for n in h.nodes if n.op == "conv2d"}
    assert len(keys) == 2
    assert_same_output(g, h, rand((1, 4, 4, 2)))


def test_fuse_activation_rules():
    b = GraphBuilder("acts", (6, 6, 4))
    c1 = b.conv2d(b.input, "c1", 4, 1)
    a1 = b.add("activation", [c1], "a1", activation="hardswish", alpha=0.2, beta=0.5)
    c2 = b.conv2d(a1, "c2", 4, 1, activation="relu")
    a2 = b.add("activation", [c2], "a2", activation="relu6")  # producer already has one
    c3 = b.conv2d(a2, "c3", 4, 1)
    a3 = b.add("activation", [c3], "a3", activation="relu")
    s = b.add("add", [c3, a3], "s")  # c3's raw output has two readers
    fl = b.add("flatten", [b.add("global_avg_pool", [s], "gap")], "flat")
    fc = b.linear(fl, "fc", 5)
    out = b.add("activation", [fc], "out", activation="hardsigmoid")
    g = b.build([out], seed=4)
    h = fuse_activations(g)
    assert [n.name for n in h.nodes if n.op == "activation"] == ["a2", "a3"]
    c1 = h.node("c1")
    assert (c1.output, c1.attrs["activation"], c1.attrs["alpha"]) == ("a1", "hardswish", 0.2)
    assert h.node("fc").output == "out" and h.node("fc").attrs["activation"] == "hardsigmoid"
    assert_same_output(g, h, rand((2, 6, 6, 4)))


def test_fuse_residual_then_activation():
    b = GraphBuilder("res", (6, 6, 4))
    x = b.conv2d(b.input, "stem", 4, 3, padding=1, activation="relu")
    y = b.conv2d(x, "proj", 4, 1)
    s = b.add("add", [x, y], "sum")
    r = b.add("activation", [s], "relu", activation="relu")
    z = b.conv2d(r, "acted", 4, 1, activation="relu6")
    t = b.add("add", [z, r], "sum2")  # conv with its own activation: not fusable
    g = b.build([t], seed=5)
    h = optimize(g)
    proj = h.node("proj")
    assert proj.inputs == ["stem", "stem"] and proj.output == "relu"  # residual = the block input
    assert proj.attrs["activation"] == "relu"
    assert [n.op for n in h.nodes] == ["conv2d", "conv2d", "conv2d", "add"]
    assert_same_output(g, h, rand((1, 6, 6, 4)))


def test_fuse_residual_picks_the_later_conv_and_reorders():
    b = GraphBuilder("two", (5, 5, 3))
    a = b.conv2d(b.input, "a", 4, 1)  # runs first
    pre = b.conv2d(b.input, "pre", 4, 1, activation="relu")
    c = b.conv2d(pre, "c", 4, 1)  # runs last: it takes the add over
    s = b.add("add", [c, a], "s", activation="relu6")
    g = b.build([s], seed=6)
    h = fuse_residual_adds(g)
    fused = h.node("c")
    assert (
        fused.inputs == ["pre", "a"]
        and fused.output == "s"
        and fused.attrs["activation"] == "relu6"
    )
    assert_same_output(g, h, rand((1, 5, 5, 3)))

    # If only the earlier conv can take it, the nodes are re-sorted so its residual exists.
    b = GraphBuilder("reorder", (5, 5, 3))
    a = b.conv2d(b.input, "a", 4, 1)
    pre = b.conv2d(b.input, "pre", 4, 1, activation="relu")
    c = b.conv2d(pre, "c", 4, 1, activation="relu")
    s = b.add("add", [a, c], "s")
    g = b.build([s], seed=7)
    h = fuse_residual_adds(g)
    assert [n.name for n in h.nodes] == ["pre", "c", "a"]
    assert h.node("a").inputs == ["input", "c"]
    assert_same_output(g, h, rand((1, 5, 5, 3)))


def test_remove_dead_nodes_and_unused_params():
    b = GraphBuilder("dead", (4, 4, 3))
    y = b.conv2d(b.input, "live", 4, 1)
    d = b.conv2d(y, "dead1", 8, 1, bias=True)
    b.add("activation", [d], "dead2", activation="relu")
    g = b.build([y], seed=8)
    h = remove_dead_nodes(g)
    assert [n.name for n in h.nodes] == ["live"]
    assert set(h.params) == {"live.weight"}
    assert_same_output(g, h, rand((1, 4, 4, 3)))


def test_remove_dropout_keeps_output_names():
    b = GraphBuilder("drop", (4, 4, 3))
    y = b.add("dropout", [b.input], "d0", p=0.1)
    y = b.conv2d(y, "c", 4, 1)
    y = b.add("flatten", [b.add("global_avg_pool", [y], "gap")], "flat")
    y = b.add("dropout", [y], "d1", p=0.2)
    g = b.build([y], seed=9)
    h = remove_dropout(g)
    assert [n.op for n in h.nodes] == ["conv2d", "global_avg_pool", "flatten"]
    assert h.outputs == ["d1"] and h.node("flat").output == "d1"
    assert h.node("c").inputs == ["input"]
    assert_same_output(g, h, rand((1, 4, 4, 3)))

    # A dropout from the graph input straight to the output has nothing to rename: kept.
    b = GraphBuilder("only", (2, 2, 1))
    g = b.build([b.add("dropout", [b.input], "d")])
    assert [n.op for n in remove_dropout(g).nodes] == ["dropout"]
