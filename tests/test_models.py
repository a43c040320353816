"""Model builders: layouts, param names, params= loading, published counts and (when torch and
torchvision are installed) logit parity with torchvision / the EfficientNet-Lite0 fixture."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tinymnet.graph import run_reference
from tinymnet.info import info_totals
from tinymnet.models import ARCHS, BN_EPS, build, make_divisible

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ---------------------------------------------------------------------------------------------
# Layout and names


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_builds_and_classifies(arch):
    g = build(arch, num_classes=10, resolution=96)
    assert g.inputs == {"input": (None, 96, 96, 3)}
    assert g.shapes[g.outputs[0]] == (None, 10)
    assert g.meta["arch"] == arch and g.meta["num_classes"] == 10
    y = run_reference(
        g, np.random.default_rng(0).standard_normal((2, 96, 96, 3)).astype(np.float32)
    )
    assert y.shape == (2, 10) and np.isfinite(y).all() and y.std() > 0


def test_mobilenet_v2_names_and_channels():
    g = build("mobilenet_v2")
    p = g.params
    assert p["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert p["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # t = 1: no expand conv
    assert p["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert p["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert p["features.2.conv.3.running_var"].shape == (24,)
    assert p["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert p["classifier.1.weight"].shape == (1000, 1280)
    assert sum(n.op == "add" for n in g.nodes) == 10  # residual blocks of the paper's table
    assert all(n.attrs["eps"] == 1e-5 for n in g.nodes if n.op == "batchnorm")
    # width 1.4: rounded to multiples of 8, last conv 1280 * 1.4
    g = build("mobilenet_v2", width=1.4)
    assert g.params["features.0.0.weight"].shape[0] == 48
    assert g.params["classifier.1.weight"].shape == (1000, 1792)
    # width 0.5 keeps the 1280 head
    assert build("mobilenet_v2", width=0.5).params["classifier.1.weight"].shape == (1000, 1280)


def test_mobilenet_v3_names_and_blocks():
    g = build("mobilenet_v3_large")
    p = g.params
    assert p["features.0.0.weight"].shape == (16, 3, 3, 3)
    assert p["features.1.block.0.0.weight"].shape == (16, 1, 3, 3)  # no expand when exp == in
    assert p["features.4.block.1.0.weight"].shape == (72, 1, 5, 5)
    assert p["features.4.block.2.fc1.weight"].shape == (24, 72, 1, 1)  # make_divisible(72 // 4)
    assert p["features.4.block.2.fc2.bias"].shape == (72,)
    assert p["features.16.0.weight"].shape == (960, 160, 1, 1)
    assert p["classifier.0.weight"].shape == (1280, 960)
    assert p["classifier.3.weight"].shape == (1000, 1280)
    se = [n for n in g.nodes if n.op == "squeeze_excite"]
    assert len(se) == 8 and all(
        n.attrs["inner"] == "relu" and n.attrs["gate"] == "hardsigmoid" for n in se
    )
    assert all(n.attrs["eps"] == 1e-3 for n in g.nodes if n.op == "batchnorm")
    acts = {n.attrs["activation"] for n in g.nodes if n.op == "activation"}
    assert acts == {"relu", "hardswish"}

    g = build("mobilenet_v3_small")
    assert g.params["features.1.block.1.fc1.weight"].shape == (8, 16, 1, 1)
    assert g.params["features.12.0.weight"].shape == (576, 96, 1, 1)
    assert g.params["classifier.0.weight"].shape == (1024, 576)
    assert sum(n.op == "squeeze_excite" for n in g.nodes) == 9


def test_mobilenet_v1_keras_names_and_padding():
    g = build("mobilenet_v1", width=0.25)
    p = g.params
    assert p["conv1.weight"].shape == (8, 3, 3, 3)
    assert p["conv1_bn.running_mean"].shape == (8,)
    assert p["conv_dw_1.weight"].shape == (8, 1, 3, 3)
    assert p["conv_pw_13.weight"].shape == (256, 256, 1, 1)
    assert p["conv_preds.weight"].shape == (1001, 256, 1, 1) and p["conv_preds.bias"].shape == (
        1001,
    )
    assert g.node("conv_dw_2").attrs["padding"] == (0, 1, 0, 1)  # Keras ZeroPadding2D + valid
    assert g.node("conv_dw_1").attrs["padding"] == (1, 1, 1, 1)
    assert g.shapes["conv_pw_13_relu"] == (None, 7, 7, 256)
    assert build("mobilenet_v1", num_classes=1000).shapes[g.outputs[0]] == (None, 1000)
    soft = build("mobilenet_v1", width=0.25, resolution=128, softmax=True)
    y = run_reference(
        soft, np.random.default_rng(0).standard_normal((1, 128, 128, 3)).astype(np.float32)
    )
    np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-5)


def test_efficientnet_lite0_layout():
    g = build("efficientnet_lite0")
    p = g.params
    assert p["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in p
    assert p["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert p["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert p["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert p["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert p["_fc.weight"].shape == (1000, 1280)
    assert sum(n.op == "conv2d" and n.attrs["groups"] > 1 for n in g.nodes) == 16
    assert all(n.attrs["padding"] == "same" for n in g.nodes if n.op == "conv2d")
    assert {n.attrs["activation"] for n in g.nodes if n.op == "activation"} == {"relu6"}
    assert not any(n.op == "squeeze_excite" for n in g.nodes)
    # TF SAME: an odd total padding puts the extra pixel after (bottom/right).
    assert g.resolved_padding(g.node("_conv_stem")) == (0, 1, 0, 1)
    assert g.resolved_padding(g.node("_blocks.3._depthwise_conv")) == (1, 2, 1, 2)  # 5x5 s2 on 56
    assert g.resolved_padding(g.node("_blocks.4._depthwise_conv")) == (2, 2, 2, 2)
    g = build("efficientnet_lite0", resolution=225)
    assert g.shapes["_conv_stem"] == (None, 113, 113, 32)
    assert g.resolved_padding(g.node("_conv_stem")) == (1, 1, 1, 1)


def test_make_divisible_and_eps_table():
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(72 // 4) == 24
    assert make_divisible(1280 * 1.4) == 1792
    assert make_divisible(3) == 8
    assert make_divisible(91) == 88 and make_divisible(90, 16) == 96  # never < 90% of v
    assert BN_EPS["torchvision_mobilenet_v2"] == 1e-5
    assert BN_EPS["torchvision_mobilenet_v3"] == 1e-3
    assert BN_EPS["keras"] == 1e-3 and BN_EPS["timm_mobilenet"] == 1e-5
    assert BN_EPS["efficientnet_lite0"] == 1e-3
    g = build("mobilenet_v3_small", bn_eps=1e-5)  # e.g. timm weights in this layout
    assert {n.attrs["eps"] for n in g.nodes if n.op == "batchnorm"} == {1e-5}


def test_build_registry():
    with pytest.raises(ValueError, match="unknown arch"):
        build("resnet50")
    with pytest.raises(TypeError):
        build("mobilenet_v2", depth=2)


# ---------------------------------------------------------------------------------------------
# params= and seeding


def test_params_round_trip_and_seed():
    g = build("mobilenet_v3_small", resolution=64)
    x = np.random.default_rng(1).standard_normal((1, 64, 64, 3)).astype(np.float32)
    g2 = build("mobilenet_v3_small", resolution=64, params={k: v * 1 for k, v in g.params.items()})
    np.testing.assert_array_equal(run_reference(g2, x), run_reference(g, x))
    g3 = build("mobilenet_v3_small", resolution=64)
    assert all(np.array_equal(g.params[k], g3.params[k]) for k in g.params)
    g4 = build("mobilenet_v3_small", resolution=64, seed=1)
    assert not np.array_equal(g.params["features.0.0.weight"], g4.params["features.0.0.weight"])


def test_params_errors_list_keys():
    good = build("mobilenet_v2", width=0.35, resolution=64).params
    bad = dict(good)
    del bad["features.3.conv.1.0.weight"]
    bad["features.99.weight"] = np.zeros(3)
    bad["classifier.1.weight"] = np.zeros((10, 1280))
    bad["features.0.1.num_batches_tracked"] = np.zeros(())  # torch's counter is ignored
    with pytest.raises(ValueError) as e:
        build("mobilenet_v2", width=0.35, resolution=64, params=bad)
    msg = str(e.value)
    assert "missing keys ['features.3.conv.1.0.weight']" in msg
    assert "unexpected keys ['features.99.weight']" in msg
    assert "classifier.1.weight: expected (1000, 1280), got (10, 1280)" in msg


# ---------------------------------------------------------------------------------------------
# Published params / MACs (torchvision's counting: BN weight+bias, not running stats)

COUNTS = [
    # arch, kwargs, MACs, params (targets are within 1%)
    ("mobilenet_v1", {}, 569e6, 4.23e6),
    ("mobilenet_v1", {"width": 0.5, "resolution": 160}, 77e6, 1.34e6),
    ("mobilenet_v2", {}, 300.8e6, 3_504_872),
    ("mobilenet_v2", {"width": 1.4}, 582e6, 6.06e6),
    ("mobilenet_v3_large", {}, 216.6e6, 5_483_032),
    ("mobilenet_v3_small", {}, 56.5e6, 2_542_856),
]


@pytest.mark.parametrize("arch, kwargs, macs, params", COUNTS, ids=lambda v: str(v))
def test_published_counts(arch, kwargs, macs, params):
    t = info_totals(build(arch, **kwargs))
    assert t["macs"] == pytest.approx(macs, rel=0.01)
    assert t["params"] == pytest.approx(params, rel=0.01)


def test_exact_torchvision_param_counts():
    # torchvision's own sum(p.numel() for p in model.parameters()), and the lite0 fixture's
    # weights + BN gamma/beta.
    assert info_totals(build("mobilenet_v2"))["params"] == 3_504_872
    assert info_totals(build("mobilenet_v2", width=1.4))["params"] == 6_108_776
    assert info_totals(build("mobilenet_v3_large"))["params"] == 5_483_032
    assert info_totals(build("mobilenet_v3_small"))["params"] == 2_542_856
    assert info_totals(build("efficientnet_lite0"))["params"] == 4_652_008


# ---------------------------------------------------------------------------------------------
# Parity with torchvision (optional dependency)


def _torchvision():
    torch = pytest.importorskip("torch")
    # torchvision 0.28's PyPI wheel registers ops a CPU-only torch may lack; these two stub
    # modules keep its import from failing.
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    sys.modules.setdefault(
        "torchvision._autograd_registrations",
        types.ModuleType("torchvision._autograd_registrations"),
    )
    try:
        import torchvision.models as tvm
    except Exception as e:  # absent or incompatible build
        pytest.skip(f"torchvision not importable: {e}")
    return torch, tvm


def _randomise_bn(torch, model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)


@pytest.mark.parametrize(
    "arch, width",
    [
        ("mobilenet_v2", 1.0),
        ("mobilenet_v3_large", 1.0),
        ("mobilenet_v3_small", 1.0),
        ("mobilenet_v3_small", 0.75),
    ],
)
def test_torchvision_parity(arch, width):
    torch, tvm = _torchvision()
    torch.manual_seed(0)
    model = getattr(tvm, arch)(width_mult=width).eval()
    _randomise_bn(torch, model, 1)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    g = build(arch, width=width, params=state)
    x = np.random.default_rng(2).standard_normal((2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    got = run_reference(g, x)
    assert got.shape == want.shape
    assert rel_err(got, want) <= 1e-4


@pytest.mark.parametrize(
    "arch, width",
    [
        ("mobilenet_v2", 0.35),
        ("mobilenet_v2", 1.4),
        ("mobilenet_v3_large", 0.75),
        ("mobilenet_v3_small", 0.5),
    ],
)
def test_torchvision_width_layouts_load(arch, width):
    torch, tvm = _torchvision()
    model = getattr(tvm, arch)(width_mult=width)
    g = build(arch, width=width, params={k: v.numpy() for k, v in model.state_dict().items()})
    assert info_totals(g)["params"] == sum(p.numel() for p in model.parameters())


def _lite0_state():
    torch = pytest.importorskip("torch")
    path = FIXTURES / "models" / "pytorch" / "efficientnet-lite0-57934424.pth"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    state = torch.load(path, map_location="cpu", weights_only=False)  # legacy format
    return {k: v.numpy() for k, v in state.items()}


def test_efficientnet_lite0_fixture_predicts_like_the_reference_run():
    state = _lite0_state()
    Image = pytest.importorskip("PIL.Image")
    g = build("efficientnet_lite0", params=state)
    expected = json.loads((FIXTURES / "reference_predictions.json").read_text())
    expected = expected["models"]["pytorch/efficientnet-lite0-57934424.pth"]["images"]
    names = ["cat.bmp", "coffee.png", "burger.jpg"]
    batch = []
    for name in names:
        img = (
            Image.open(FIXTURES / "images" / name).convert("RGB").resize((224, 224), Image.BILINEAR)
        )
        batch.append((np.asarray(img, dtype=np.float32) - 127.0) / 128.0)
    logits = run_reference(g, np.stack(batch))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for name, p in zip(names, probs):
        top_index, top_prob, _ = expected[name][0]
        assert int(p.argmax()) == top_index
        assert p[top_index] == pytest.approx(top_prob, abs=0.01)
