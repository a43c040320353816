"""The graph IR: node validation, shape inference of every op, the reference executor and
JSON serialisation."""

import json

import numpy as np
import pytest

from tinymnet.graph import (
    OPS,
    Graph,
    GraphBuilder,
    GraphError,
    Node,
    check_params,
    graph_from_dict,
    graph_to_dict,
    infer_shapes,
    random_param,
    run_reference,
    toposort,
)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def every_op_graph():
    """A small graph that uses every op of the vocabulary once or more."""
    b = GraphBuilder("every_op", (11, 9, 4))
    x = b.input
    x = b.add("pad", [x], "pad", pads=(1, 0, 2, 1))  # 12 x 12
    stem = b.conv2d(x, "stem", 8, 3, stride=2, padding="same", bias=True)  # 6 x 6
    y = b.batchnorm(stem, "bn", eps=1e-3)
    y = b.add("activation", [y], "act", activation="hardswish")
    dw = b.conv2d(y, "dw", 8, 3, padding=1, groups=8, activation="relu6")
    y = b.add("add", [y, dw], "add", activation="relu")
    y = b.squeeze_excite(y, "se", 4)
    gate = b.add("global_avg_pool", [y], "gap")
    y = b.add("mul", [y, gate], "mul")
    a = b.add("slice_channels", [y], "slice", start=2, stop=6)  # 4 channels
    c = b.conv2d(y, "res", 4, 1, residual=a, activation="relu")
    y = b.add("concat", [y, c, a], "concat")  # 16 channels
    y = b.add("max_pool2d", [y], "maxpool", kernel=3, stride=2, padding=1)  # 3 x 3
    y = b.add(
        "avg_pool2d", [y], "avgpool", kernel=2, stride=1, padding="same", count_include_pad=False
    )  # 3 x 3
    y = b.add("reshape", [y], "reshape", shape=(9, -1))
    y = b.add("flatten", [y], "flatten")
    y = b.add("dropout", [y], "drop", p=0.5)
    y = b.linear(y, "fc", 10, activation="relu6")
    y = b.add("softmax", [y], "softmax")
    return b.build([y], seed=3)


def test_every_op_is_covered_and_shapes_are_inferred():
    g = every_op_graph()
    assert {n.op for n in g.nodes} == set(OPS)
    s = g.shapes
    assert s["input"] == (None, 11, 9, 4)
    assert s["pad"] == (None, 12, 12, 4)
    assert s["stem"] == (None, 6, 6, 8)
    assert s["gap"] == (None, 1, 1, 8)
    assert s["slice"] == (None, 6, 6, 4)
    assert s["concat"] == (None, 6, 6, 16)
    assert s["maxpool"] == (None, 3, 3, 16)
    assert s["avgpool"] == (None, 3, 3, 16)
    assert s["reshape"] == (None, 9, 16)
    assert s["flatten"] == (None, 144)
    assert s["softmax"] == (None, 10)


def test_run_reference_matches_numpy_composition():
    from tinymnet import reference as ref

    g = every_op_graph()
    x = rand((2, 11, 9, 4))
    out = run_reference(g, x, return_all=True)
    p = g.params
    assert out["softmax"].shape == (2, 10)
    np.testing.assert_allclose(out["softmax"].sum(-1), 1.0, rtol=1e-6)

    # The ops the executor writes inline, checked against plain NumPy.
    np.testing.assert_array_equal(out["pad"], np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))
    bn = (out["stem"] - p["bn.running_mean"]) / np.sqrt(p["bn.running_var"] + 1e-3)
    np.testing.assert_allclose(out["bn"], bn * p["bn.weight"] + p["bn.bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["slice"], out["mul"][..., 2:6])
    np.testing.assert_array_equal(
        out["concat"], np.concatenate([out["mul"], out["res"], out["slice"]], -1)
    )
    np.testing.assert_array_equal(out["reshape"], out["avgpool"].reshape(2, 9, 16))
    np.testing.assert_array_equal(out["drop"], out["flatten"])
    logits = out["fc"].astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(out["softmax"], e / e.sum(-1, keepdims=True), rtol=1e-6)

    # Ops delegated to tinymnet.reference get their attributes through.
    np.testing.assert_array_equal(
        out["stem"], ref.conv2d(out["pad"], p["stem.weight"], p["stem.bias"], 2, "same")
    )
    np.testing.assert_array_equal(
        out["res"],
        ref.conv2d(out["mul"], p["res.weight"], None, activation="relu", residual=out["slice"]),
    )
    np.testing.assert_array_equal(
        out["avgpool"], ref.avg_pool2d(out["maxpool"], 2, 1, "same", count_include_pad=False)
    )
    # The final output alone, and intermediates are freed without return_all.
    np.testing.assert_array_equal(run_reference(g, x), out["softmax"])


def test_run_reference_checks_the_input():
    g = every_op_graph()
    with pytest.raises(ValueError, match="must have shape"):
        run_reference(g, rand((1, 9, 11, 4)))
    with pytest.raises(ValueError, match="graph inputs"):
        run_reference(g, {"x": rand((1, 11, 9, 4))})
    assert run_reference(g, {"input": rand((3, 11, 9, 4))}).shape == (3, 10)


def test_node_validation():
    with pytest.raises(GraphError, match="unknown op"):
        Node("n", "conv3d", ["x"], "n")
    with pytest.raises(GraphError, match="takes 2 inputs"):
        Node("n", "add", ["x"], "n")
    with pytest.raises(GraphError, match="needs the attribute 'kernel'"):
        Node("n", "max_pool2d", ["x"], "n")
    with pytest.raises(GraphError, match="no attribute"):
        Node("n", "add", ["x", "y"], "n", {"groups": 2})
    with pytest.raises(GraphError, match="missing"):
        Node("n", "conv2d", ["x"], "n", {}, {"bias": "b"})
    with pytest.raises(GraphError, match="needs an activation"):
        Node("n", "activation", ["x"], "n", {"activation": None})
    with pytest.raises(ValueError, match="activation"):
        Node("n", "activation", ["x"], "n", {"activation": "swish"})
    with pytest.raises(ValueError, match="padding"):
        Node("n", "conv2d", ["x"], "n", {"padding": "valid"}, {"weight": "w"})


def test_attributes_are_normalised():
    n = Node(
        "c",
        "conv2d",
        ["x"],
        "c",
        {"stride": 2, "padding": 1, "activation": "none"},
        {"weight": "w"},
    )
    assert n.attrs == {
        "stride": (2, 2),
        "padding": (1, 1, 1, 1),
        "groups": 1,
        "activation": None,
        "alpha": 1 / 6,
        "beta": 0.5,
    }
    assert Node("c", "conv2d", ["x"], "c", {"padding": (1, 2)}, {"weight": "w"}).attrs[
        "padding"
    ] == (1, 1, 2, 2)
    assert (
        Node("c", "conv2d", ["x"], "c", {"padding": "SAME"}, {"weight": "w"}).attrs["padding"]
        == "same"
    )
    assert Node("p", "max_pool2d", ["x"], "p", {"kernel": 3}).attrs["stride"] == (3, 3)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda b: b.conv2d(b.input, "c", 8, 3, groups=3), "groups=3"),
        (lambda b: b.add("add", [b.input, b.conv2d(b.input, "c", 8, 3, stride=2)], "a"), "differ"),
        (
            lambda b: b.conv2d(
                b.input, "c", 4, 3, padding=1, residual=b.conv2d(b.input, "d", 4, 1, stride=2)
            ),
            "residual",
        ),
        (
            lambda b: b.add("concat", [b.input, b.conv2d(b.input, "c", 8, 3)], "cat"),
            "outside the channel",
        ),
        (lambda b: b.add("slice_channels", [b.input], "s", start=2, stop=9), "start < stop"),
        (lambda b: b.add("mul", [b.input, b.input], "m"), "scale"),
        (lambda b: b.linear(b.input, "fc", 3), "rank-2"),
        (lambda b: b.add("reshape", [b.input], "r", shape=(7, -1)), "cannot reshape"),
        (lambda b: b.conv2d(b.input, "c", 4, 9), "smaller than the kernel"),
    ],
)
def test_shape_errors(build, match):
    b = GraphBuilder("bad", (6, 6, 4))
    with pytest.raises(ValueError, match=match):
        build(b)


def test_graph_checks_wiring():
    w = {"w": np.zeros((4, 4, 1, 1), np.float32)}
    conv = Node("c", "conv2d", ["x"], "c", {}, {"weight": "w"})
    with pytest.raises(GraphError, match="before they are produced"):
        Graph(
            [Node("a", "activation", ["c"], "a", {"activation": "relu"}), conv],
            {"x": (None, 2, 2, 4)},
            ["a"],
            w,
        )
    with pytest.raises(GraphError, match="written twice"):
        Graph(
            [conv, Node("d", "activation", ["x"], "c", {"activation": "relu"})],
            {"x": (None, 2, 2, 4)},
            ["c"],
            w,
        )
    with pytest.raises(GraphError, match="never produced"):
        Graph([conv], {"x": (None, 2, 2, 4)}, ["y"], w)
    with pytest.raises(GraphError, match="not in graph.params"):
        Graph([conv], {"x": (None, 2, 2, 4)}, ["c"], {})
    with pytest.raises(GraphError, match="duplicate node name"):
        Graph(
            [conv, Node("c", "activation", ["c"], "e", {"activation": "relu"})],
            {"x": (None, 2, 2, 4)},
            ["e"],
            w,
        )


def test_toposort_is_stable_and_respects_inputs():
    a = Node("a", "activation", ["b"], "a", {"activation": "relu"})
    b = Node("b", "activation", ["x"], "b", {"activation": "relu"})
    c = Node("c", "activation", ["x"], "c", {"activation": "relu"})
    assert [n.name for n in toposort([a, b, c], ["x"])] == ["b", "a", "c"]
    with pytest.raises(GraphError, match="cycle"):
        toposort([a], ["x"])


def test_resolved_padding_uses_the_input_size():
    b = GraphBuilder("pad", (7, 8, 3))
    b.conv2d(b.input, "c", 4, 3, stride=2, padding="same")
    b.add("max_pool2d", ["c"], "p", kernel=3, stride=2, padding=1)
    g = b.build(["p"])
    assert g.resolved_padding(g.node("c")) == (1, 1, 0, 1)  # TF SAME: extra pixel after
    assert g.resolved_padding(g.node("p")) == (1, 1, 1, 1)


def test_check_params_lists_every_problem():
    expected = {"a.weight": (2, 3), "b.weight": (4,), "c": (1,)}
    given = {
        "a.weight": np.zeros((3, 2)),
        "b.weight": np.zeros(4),
        "zzz": np.zeros(1),
        "bn.num_batches_tracked": np.zeros(()),
    }
    with pytest.raises(ValueError) as e:
        check_params(expected, given)
    msg = str(e.value)
    assert "missing keys ['c']" in msg
    assert "unexpected keys ['zzz']" in msg
    assert "a.weight: expected (2, 3), got (3, 2)" in msg
    ok = check_params({"b": (2,)}, {"b": [1, 2], "x.num_batches_tracked": 3})
    assert ok["b"].dtype == np.float32 and list(ok) == ["b"]


def test_random_param_is_deterministic_and_order_free():
    a = random_param("features.0.0.weight", (8, 3, 3, 3), "weight", seed=1)
    np.testing.assert_array_equal(
        a, random_param("features.0.0.weight", (8, 3, 3, 3), "weight", seed=1)
    )
    assert not np.array_equal(
        a, random_param("features.0.0.weight", (8, 3, 3, 3), "weight", seed=2)
    )
    assert not np.array_equal(
        a, random_param("features.1.0.weight", (8, 3, 3, 3), "weight", seed=1)
    )
    var = random_param("bn.running_var", (64,), "var")
    assert var.dtype == np.float32 and var.min() > 0 and var.std() > 0.1  # non-trivial BN stats


def test_json_round_trip():
    g = every_op_graph()
    d = graph_to_dict(g)
    d2 = json.loads(json.dumps(d))  # JSON-able: no tuples, arrays or None-unsafe values
    assert d2["inputs"] == [{"name": "input", "shape": [None, 11, 9, 4]}]
    stem = next(n for n in d2["nodes"] if n["name"] == "stem")
    assert stem["attrs"]["padding"] == "same" and stem["attrs"]["stride"] == [2, 2]
    assert stem["params"] == {"weight": "stem.weight", "bias": "stem.bias"}
    assert {p["name"] for p in d2["params"]} == set(g.params)

    g2 = graph_from_dict(d2, g.params)
    assert graph_to_dict(g2) == d
    assert [n.attrs for n in g2.nodes] == [n.attrs for n in g.nodes]
    assert g2.shapes == g.shapes and g2.meta == g.meta
    x = rand((1, 11, 9, 4))
    np.testing.assert_array_equal(run_reference(g2, x), run_reference(g, x))

    with pytest.raises(ValueError, match="missing keys"):
        graph_from_dict(d2, {k: v for k, v in g.params.items() if k != "fc.bias"})
    with pytest.raises(GraphError, match="newer"):
        graph_from_dict({**d2, "version": 99}, g.params)
    with pytest.raises(GraphError, match="not a"):
        graph_from_dict({**d2, "format": "onnx"}, g.params)


def test_copy_does_not_share_nodes():
    g = every_op_graph()
    h = g.copy()
    h.nodes[1].attrs["activation"] = "relu"
    h.nodes.pop()
    assert g.nodes[1].attrs["activation"] is None and len(g.nodes) == len(h.nodes) + 1
    assert h.params["stem.weight"] is g.params["stem.weight"]
    assert infer_shapes(g) == g.shapes
