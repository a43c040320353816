"""GhostNet and MobileNeXt builders: layouts, param names, widths and published counts (no torch
needed; the parity with timm / a PyTorch MobileNeXt is in test_parity_ghost_next.py)."""

import json

import numpy as np
import pytest

from tinymnet.graph import run_reference
from tinymnet.info import info_totals
from tinymnet.models import ARCHS, BN_EPS, build


def test_registered_with_eps():
    assert "ghostnet" in ARCHS and "mobilenext" in ARCHS
    assert BN_EPS["timm_ghostnet"] == 1e-5 and BN_EPS["mobilenext"] == 1e-5
    for arch in ("ghostnet", "mobilenext"):
        g = build(arch, resolution=64)
        assert {n.attrs["eps"] for n in g.nodes if n.op == "batchnorm"} == {1e-5}
        assert g.meta["arch"] == arch


# ---------------------------------------------------------------------------------------------
# GhostNet


def test_ghostnet_timm_names_and_shapes():
    p = build("ghostnet").params
    assert p["conv_stem.weight"].shape == (16, 3, 3, 3)
    assert p["bn1.running_var"].shape == (16,)
    # blocks.0.0: in 16, mid 16, out 16, stride 1 -> ghost modules of 8 + 8, identity shortcut
    assert p["blocks.0.0.ghost1.primary_conv.0.weight"].shape == (8, 16, 1, 1)
    assert p["blocks.0.0.ghost1.cheap_operation.0.weight"].shape == (8, 1, 3, 3)
    assert "blocks.0.0.shortcut.0.weight" not in p and "blocks.0.0.conv_dw.weight" not in p
    # blocks.3.0: 5x5 stride 2 with SE (72 -> make_divisible(18, 4) = 20) and a conv shortcut
    assert p["blocks.3.0.conv_dw.weight"].shape == (72, 1, 5, 5)
    assert p["blocks.3.0.bn_dw.weight"].shape == (72,)
    assert p["blocks.3.0.se.conv_reduce.weight"].shape == (20, 72, 1, 1)
    assert p["blocks.3.0.se.conv_expand.bias"].shape == (72,)
    assert p["blocks.3.0.ghost2.primary_conv.0.weight"].shape == (20, 72, 1, 1)
    assert p["blocks.3.0.shortcut.0.weight"].shape == (24, 1, 5, 5)
    assert p["blocks.3.0.shortcut.2.weight"].shape == (40, 24, 1, 1)
    assert p["blocks.3.0.shortcut.3.running_mean"].shape == (40,)
    assert p["blocks.9.0.conv.weight"].shape == (960, 160, 1, 1)
    assert p["blocks.9.0.bn1.weight"].shape == (960,)
    assert p["conv_head.weight"].shape == (1280, 960, 1, 1) and p["conv_head.bias"].shape == (1280,)
    assert p["classifier.weight"].shape == (1000, 1280)


def test_ghostnet_graph_structure():
    g = build("ghostnet")
    se = [n for n in g.nodes if n.op == "squeeze_excite"]
    assert len(se) == 7
    assert all(n.attrs["inner"] == "relu" and n.attrs["gate"] == "hardsigmoid" for n in se)
    # timm's hard_sigmoid relu6(x + 3) / 6 is our hardsigmoid with its default alpha, beta
    assert all(n.attrs["alpha"] == pytest.approx(1 / 6) and n.attrs["beta"] == 0.5 for n in se)
    assert sum(n.op == "concat" for n in g.nodes) == 2 * 16  # two ghost modules per block
    assert sum(n.op == "add" for n in g.nodes) == 16  # every bottleneck has a shortcut
    assert g.shapes["blocks.9.0.act1"] == (None, 7, 7, 960)
    assert g.shapes["conv_head"] == (None, 1, 1, 1280)
    # ghost2 has no activation, ghost1 has ReLU on both halves
    names = {n.name for n in g.nodes}
    assert "blocks.6.0.ghost1.primary_conv.2" in names
    assert "blocks.6.0.ghost1.cheap_operation.2" in names
    assert "blocks.6.0.ghost2.primary_conv.2" not in names


def test_ghost_module_concat_and_slice():
    from tinymnet.graph import GraphBuilder
    from tinymnet.models.ghostnet import ghost_module

    # timm's widths are multiples of 4, so its ghost modules never slice; an odd width does:
    # init = ceil(7 / 2) = 4 primary + 4 cheap channels, sliced to 7.
    b = GraphBuilder("g", (6, 6, 5))
    y = ghost_module(b, b.input, "m", 7, True, 1e-5)
    g = b.build([y], seed=3)
    assert g.params["m.primary_conv.0.weight"].shape == (4, 5, 1, 1)
    assert g.params["m.cheap_operation.0.weight"].shape == (4, 1, 3, 3)
    assert [n.op for n in g.nodes][-2:] == ["concat", "slice_channels"]
    assert g.shapes[y] == (None, 6, 6, 7)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 5)).astype(np.float32)
    env = run_reference(g, x, return_all=True)
    want = np.concatenate([env["m.primary_conv.2"], env["m.cheap_operation.2"]], -1)[..., :7]
    np.testing.assert_array_equal(env[y], want)
    assert not any(n.op == "slice_channels" for n in build("ghostnet", resolution=64).nodes)


@pytest.mark.parametrize(
    "width, params, macs",
    [
        (1.0, 5_182_508, 141e6),  # timm ghostnet_100 sum(p.numel()), paper's 141M FLOPs
        (0.5, 2_587_292, 42e6),  # timm ghostnet_050
        (1.3, 7_358_820, 226e6),  # timm ghostnet_130
    ],
)
def test_ghostnet_counts(width, params, macs):
    t = info_totals(build("ghostnet", width=width))
    assert t["params"] == params
    assert t["macs"] == pytest.approx(macs, rel=0.01)


# ---------------------------------------------------------------------------------------------
# MobileNeXt


def test_mobilenext_official_names_and_block_variants():
    g = build("mobilenext")
    p = g.params
    assert p["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert p["features.0.1.running_var"].shape == (32,)
    # block 1 (t = 2, 32 -> 96, s2): the full sandglass block, hidden max(32 // 2, 16) = 16
    assert p["features.1.conv.0.weight"].shape == (32, 1, 3, 3)
    assert p["features.1.conv.3.weight"].shape == (16, 32, 1, 1)
    assert p["features.1.conv.5.weight"].shape == (96, 16, 1, 1)
    assert p["features.1.conv.8.weight"].shape == (96, 1, 3, 3)
    assert g.node("features.1.conv.8").attrs["stride"] == (2, 2)
    # block 2 (96 -> 144, single-block stride-1 stage: keep_3x3): full, no shortcut
    assert p["features.2.conv.0.weight"].shape == (96, 1, 3, 3)
    assert p["features.2.conv.3.weight"].shape == (32, 96, 1, 1)  # 96 // 6 < 144 / 6 -> 32
    # block 3 (144 -> 192, s2): reduce, expand, depthwise s2 (no first depthwise)
    assert p["features.3.conv.0.weight"].shape == (32, 144, 1, 1)
    assert p["features.3.conv.2.weight"].shape == (192, 32, 1, 1)
    assert p["features.3.conv.5.weight"].shape == (192, 1, 3, 3)
    # block 4 (192 -> 192, s1): full with identity
    assert p["features.4.conv.3.weight"].shape == (32, 192, 1, 1)
    # block 9 (288 -> 384, s1): the two 1x1 convs only
    assert p["features.9.conv.0.weight"].shape == (64, 288, 1, 1)  # 48 < 64 -> 64
    assert p["features.9.conv.2.weight"].shape == (384, 64, 1, 1)
    assert "features.9.conv.5.weight" not in p
    # last block (960 -> 1280, keep_3x3): full, classifier on 1280
    assert p["features.20.conv.3.weight"].shape == (208, 960, 1, 1)  # make_divisible(214, 16)
    assert p["features.20.conv.8.weight"].shape == (1280, 1, 3, 3)
    assert p["classifier.1.weight"].shape == (1000, 1280)
    adds = [n for n in g.nodes if n.op == "add"]
    assert len(adds) == 2 + 2 + 3 + 3 + 2  # in == out stride-1 blocks of the table
    assert {n.attrs["activation"] for n in g.nodes if n.op == "activation"} == {"relu6"}
    assert g.shapes["features.20.conv.9"] == (None, 7, 7, 1280)


def test_mobilenext_counts():
    # official README: 3.5M params, 300M MAdds at 1.0 (the paper's Table: 3.4M)
    t = info_totals(build("mobilenext"))
    assert t["params"] == 3_535_416
    assert t["params"] == pytest.approx(3.5e6, rel=0.02)
    assert t["macs"] == pytest.approx(300e6, rel=0.06)


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.4])
def test_mobilenext_widths(width):
    g = build("mobilenext", width=width, resolution=96, num_classes=10)
    p = g.params
    # the last block keeps 1280 below width 1
    last = 1280 if width < 1 else int(1280 * width)
    assert p["classifier.1.weight"].shape == (10, last)
    x = np.random.default_rng(0).standard_normal((1, 96, 96, 3)).astype(np.float32)
    assert np.isfinite(run_reference(g, x)).all()


def test_info_cli_json(capsys):
    from tinymnet.cli import main

    for arch, params in (("ghostnet", 5_182_508), ("mobilenext", 3_535_416)):
        assert main(["info", arch, "--json"]) in (0, None)
        out = json.loads(capsys.readouterr().out)
        assert out["params"] == params


# ---------------------------------------------------------------------------------------------
# Through the compiled plan: concats are written in place by their convs (no copy step), with
# the same results as the plan that copies (fuse_blocks=False) and the NumPy reference.


def _close(y, ref, tol):
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


def _copying_and_in_place(g, x, threads=1):
    from tinymnet.runtime import compile_graph

    copying = compile_graph(g, threads=threads, fuse_blocks=False)
    in_place = compile_graph(g, threads=threads)
    want = copying(x)
    _close(in_place(x), want, 1e-5)
    _close(want, run_reference(g, x), 1e-4)
    assert in_place.arena_bytes <= copying.arena_bytes
    return copying, in_place


def _kinds(model, suffix):
    return sum(name.endswith(suffix) for name in model.step_names)


@pytest.mark.parametrize("width", [0.5, 1.0, 1.3])
def test_ghostnet_plan_has_no_concat_copies(width):
    # (at 96x96 the random-weight GhostNet 1.0 is ill-conditioned: the plan and the
    # reference differ by 1e-3 with or without in-place concats; 128x128 is not)
    g = build("ghostnet", width=width, resolution=128, num_classes=17)
    x = np.random.default_rng(1).standard_normal((2, 128, 128, 3)).astype(np.float32)
    copying, in_place = _copying_and_in_place(g, x, threads=2)
    assert _kinds(copying, ".concat") == 32 and _kinds(in_place, ".concat") == 0
    assert len(in_place.step_names) <= len(copying.step_names) - 32


def test_mobilenext_plan_matches_the_reference():
    g = build("mobilenext", width=0.75, resolution=96, num_classes=17)
    x = np.random.default_rng(2).standard_normal((2, 96, 96, 3)).astype(np.float32)
    _copying_and_in_place(g, x, threads=2)


def _odd_ghost_graph(size=(13, 11, 5)):
    """Ghost bottlenecks of odd widths (their modules slice: init = ceil(out / 2)), with SE,
    stride 2, identity and conv shortcuts, and a concat read by a slice and a conv."""
    from tinymnet.graph import GraphBuilder
    from tinymnet.models.ghostnet import ghost_bottleneck, ghost_module

    b = GraphBuilder("odd", size)
    x = ghost_bottleneck(b, b.input, "a", 3, 13, 7, 0.25, 2, 1e-5)  # conv shortcut
    x = ghost_bottleneck(b, x, "b", 5, 9, 7, 0, 1, 1e-5)  # identity shortcut: add reads it
    x = ghost_bottleneck(b, x, "c", 3, 17, 11, 0.25, 1, 1e-5)
    y = ghost_module(b, x, "d", 9, True, 1e-5)
    # the concat of "d" has a second reader, so its slice stays a copy (the concat does not)
    z = b.conv2d("d.concat", "e", 6, 1)
    # a cheap conv with a residual (its own input, read in place) is not cut short: the
    # slice after its concat stays a copy
    p = b.conv2d(x, "g.p", 5, 1)
    q = b.conv2d(p, "g.q", 5, 3, padding=1, groups=5, residual=p)
    w = b.add("slice_channels", [b.add("concat", [p, q], "g.concat")], "g.slice", start=0, stop=9)
    y = b.add("concat", [y, z, w], "f")  # a concat of slices: copied
    y = b.add("global_avg_pool", [y], "pool")
    return b.build([b.linear(b.add("flatten", [y], "flat"), "fc", 3)], seed=5)


def test_odd_ghost_modules_fold_their_slices(isa):
    g = _odd_ghost_graph()
    x = np.random.default_rng(3).standard_normal((2, 13, 11, 5)).astype(np.float32)
    for threads in (1, 2, 3):
        copying, in_place = _copying_and_in_place(g, x, threads)
    assert _kinds(copying, ".concat") == 8 and _kinds(copying, ".slice") == 8
    # every ghost module's concat and slice run no step; only "d.slice" (its concat has a
    # second reader), "g.slice" (a residual) and the concat "f" (of slices) copy
    assert _kinds(in_place, ".concat") == 0 and _kinds(in_place, ".slice") == 2
    assert {"d.slice", "g.slice", "f"} <= set(in_place.step_names)


def test_a_concat_part_can_end_a_fused_chain(isa):
    """expand 1x1 (wide) -> primary 1x1 run as one banded chain whose output is a concat part."""
    from tinymnet.graph import GraphBuilder
    from tinymnet.models.ghostnet import ghost_module

    b = GraphBuilder("chain", (64, 48, 4))
    x = b.conv2d(b.input, "expand", 96, 1, activation="relu")
    y = ghost_module(b, x, "m", 11, False, 1e-5)
    g = b.build([y], seed=7)
    x = np.random.default_rng(4).standard_normal((1, 64, 48, 4)).astype(np.float32)
    for threads in (1, 2):
        copying, in_place = _copying_and_in_place(g, x, threads)
        assert in_place.step_names == ["expand", "m.cheap_operation.0"]
        # the 96-channel tensor never exists whole; the concat buffer holds 11 channels
        assert in_place.arena_bytes < 64 * 48 * 96 * 4


def test_profile_names_every_step():
    from tinymnet.runtime import compile_graph

    model = compile_graph(build("ghostnet", width=0.5, resolution=64), threads=1)
    x = np.zeros((1, 64, 64, 3), np.float32)
    prof = model.profile(x, repeats=2)
    assert [name for name, _ in prof] == model.step_names
    assert all(ms >= 0 for _, ms in prof) and sum(ms for _, ms in prof) > 0
    with pytest.raises(ValueError, match="repeats"):
        model.profile(x, repeats=0)


def test_odd_ghost_modules_export_to_onnx():
    """The sliced ghost modules as ONNX Concat + Slice give the in-place plan's logits."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tinymnet.export_onnx import graph_to_onnx
    from tinymnet.runtime import compile_graph

    g = _odd_ghost_graph()
    proto = graph_to_onnx(g)
    assert {"Concat", "Slice"} <= {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(6).standard_normal((2, 13, 11, 5)).astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2).copy()})[0]
    _close(got, compile_graph(g, threads=1)(x), 1e-4)


def test_plan_names_a_concat_whose_in_place_inputs_differ_in_size():
    """A graph that skipped the Python checks (as a C++ program loading a .tmn would) gets a
    clear error naming the concat, not a write past its buffer."""
    import json

    from tinymnet import _C
    from tinymnet.graph import GraphBuilder, graph_to_dict
    from tinymnet.models.ghostnet import ghost_module
    from tinymnet.passes import optimize

    b = GraphBuilder("bad", (8, 8, 4))
    g = optimize(b.build([ghost_module(b, b.input, "m", 6, True, 1e-5)], seed=1))
    doc = graph_to_dict(g)
    cheap = next(n for n in doc["nodes"] if n["name"] == "m.cheap_operation.0")
    cheap["attrs"]["stride"] = [2, 2]  # its output is 4x4, the primary's 8x8
    params = {k: np.ascontiguousarray(v, np.float32) for k, v in g.params.items()}
    with pytest.raises(ValueError, match="concat 'm.concat': inputs differ in H or W"):
        _C.Plan(json.dumps(doc), params, 1, True)
    with pytest.raises(ValueError, match="concat inputs differ in H or W"):
        _C.Plan(json.dumps(doc), params, 1, False)  # the copying plan checks too
