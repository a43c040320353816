"""Parity of the GhostNet and MobileNeXt builders with PyTorch definitions.

GhostNet: timm's ``ghostnet_100`` with random weights and non-trivial BatchNorm statistics
(eval mode) is saved as a .pth by this test, converted by ``tinymnet.convert`` (network and
width inferred from the weights), and its logits must be within 1e-4 (relative to the largest
logit) of timm's. MobileNeXt: a second, independent PyTorch definition written below from the
paper (and the official code's module layout), random weights, loaded into the builder by
name. Both graphs also run on the C++ plan (``runtime.compile_graph``), which must match the
NumPy reference executor. Inputs are 128x128 to keep the torch runs quick.

torch and timm are test-only dependencies: without them these tests skip, except under
``CI=true`` where that is a failure (see ``_torch_oracles``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tinymnet.graph import run_reference
from tinymnet.models import build
from tinymnet.runtime import compile_graph

try:
    from _torch_oracles import oracles, randomise_bn
except ImportError:  # tests/ made a package
    from ._torch_oracles import oracles, randomise_bn

RES = 128


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def _input(seed=2):
    return np.random.default_rng(seed).standard_normal((2, RES, RES, 3)).astype(np.float32)


def _torch_logits(torch, model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()


# ---------------------------------------------------------------------------------------------
# GhostNet vs timm


@pytest.fixture(scope="module")
def ghostnet_run(tmp_path_factory):
    torch, _, timm = oracles()
    from tinymnet.convert import convert

    torch.manual_seed(0)
    model = timm.create_model("ghostnet_100", pretrained=False).eval()
    randomise_bn(torch, model, 100)
    x = _input()
    want = _torch_logits(torch, model, x)
    path = tmp_path_factory.mktemp("ghostnet") / "ghostnet_1x.pth"
    torch.save(model.state_dict(), path)
    return x, want, path, convert(path, resolution=RES)


def test_ghostnet_converted_matches_timm(ghostnet_run):
    x, want, _, cm = ghostnet_run
    facts = cm.provenance
    assert facts["arch"] == "ghostnet" and facts["width"] == 1.0
    assert facts["weights_layout"] == "timm" and facts["bn_eps"] == 1e-5
    assert facts["num_classes"] == 1000 and facts["format"] == "pth-zip"
    got = run_reference(cm.graph, x)
    assert got.shape == want.shape == (2, 1000)
    assert rel_err(got, want) <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


def test_ghostnet_compiled_plan_matches(ghostnet_run):
    x, want, _, cm = ghostnet_run
    ref = run_reference(cm.graph, x)
    got = compile_graph(cm.graph)(x)
    assert rel_err(got, ref) <= 1e-4
    assert rel_err(got, want) <= 1e-4


def test_ghostnet_explicit_arch_names(ghostnet_run):
    from tinymnet.convert import convert
    from tinymnet.errors import FormatError

    _, _, path, _ = ghostnet_run
    for arch in ("ghostnet", "ghostnet_100"):
        cm = convert(path, arch=arch, resolution=64)
        assert cm.provenance["arch"] == "ghostnet" and cm.provenance["width"] == 1.0
    with pytest.raises(FormatError, match="ghostnet width 1.3"):
        convert(path, arch="ghostnet_130", resolution=64)


@pytest.mark.parametrize("name, width", [("ghostnet_050", 0.5), ("ghostnet_130", 1.3)])
def test_ghostnet_other_widths_load_with_timm_counts(tmp_path, name, width):
    torch, _, timm = oracles()
    from tinymnet.convert import convert
    from tinymnet.info import info_totals

    model = timm.create_model(name, pretrained=False)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    cm = convert(path, resolution=64)
    assert cm.provenance["width"] == width
    assert info_totals(build("ghostnet", width=width))["params"] == sum(
        p.numel() for p in model.parameters()
    )


# ---------------------------------------------------------------------------------------------
# MobileNeXt vs an independent PyTorch definition


def _make_div(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _torch_mobilenext(torch, width=1.0, num_classes=1000):
    """MobileNeXt as the paper's Table and Fig. 3 describe it, with the official code's module
    layout (the four SGBlock variants and their nn.Sequential numbering)."""
    nn = torch.nn

    def bn(c):
        return nn.BatchNorm2d(c)

    def dw(c, s):
        return nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False)

    def pw(i, o):
        return nn.Conv2d(i, o, 1, 1, 0, bias=False)

    class SGBlock(nn.Module):
        def __init__(self, inp, oup, stride, t, keep_3x3=False):
            super().__init__()
            hid = inp // t
            if hid < oup / 6.0:
                hid = _make_div(math.ceil(oup / 6.0), 16)
            self.identity = False
            if t == 2:
                layers = [dw(inp, 1), bn(inp), nn.ReLU6(), pw(inp, hid), bn(hid), pw(hid, oup),
                          bn(oup), nn.ReLU6(), dw(oup, stride), bn(oup)]
            elif inp != oup and stride == 1 and not keep_3x3:
                layers = [pw(inp, hid), bn(hid), pw(hid, oup), bn(oup), nn.ReLU6()]
            elif inp != oup and stride == 2 and not keep_3x3:
                layers = [pw(inp, hid), bn(hid), pw(hid, oup), bn(oup), nn.ReLU6(),
                          dw(oup, 2), bn(oup)]
            else:
                self.identity = not keep_3x3
                layers = [dw(inp, 1), bn(inp), nn.ReLU6(), pw(inp, hid), bn(hid), pw(hid, oup),
                          bn(oup), nn.ReLU6(), dw(oup, 1), bn(oup)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            out = self.conv(x)
            return out + x if self.identity else out

    class MobileNeXt(nn.Module):
        def __init__(self):
            super().__init__()
            cfgs = [(2, 96, 1, 2), (6, 144, 1, 1), (6, 192, 3, 2), (6, 288, 3, 2),
                    (6, 384, 4, 1), (6, 576, 4, 2), (6, 960, 3, 1), (6, 1280, 1, 1)]
            cin = _make_div(32 * width)
            layers = [nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), bn(cin),
                                    nn.ReLU6())]
            for t, c, n, s in cfgs:
                cout = 1280 if (c == 1280 and width < 1) else _make_div(c * width)
                layers.append(SGBlock(cin, cout, s, t, n == 1 and s == 1))
                cin = cout
                for _ in range(n - 1):
                    layers.append(SGBlock(cin, cout, 1, t))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(cin, num_classes))

        def forward(self, x):
            x = self.features(x).mean((2, 3))
            return self.classifier(x)

    return MobileNeXt()


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_mobilenext_matches_pytorch_definition(width):
    torch, _, _ = oracles()
    torch.manual_seed(1)
    model = _torch_mobilenext(torch, width).eval()
    randomise_bn(torch, model, 7)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    g = build("mobilenext", width=width, resolution=RES, params=state)
    from tinymnet.info import info_totals

    assert info_totals(g)["params"] == sum(p.numel() for p in model.parameters())
    x = _input(3)
    want = _torch_logits(torch, model, x)
    got = run_reference(g, x)
    assert got.shape == want.shape == (2, 1000)
    assert rel_err(got, want) <= 1e-4
    compiled = compile_graph(g)(x)
    assert rel_err(compiled, got) <= 1e-4
    assert rel_err(compiled, want) <= 1e-4


def test_mobilenext_official_state_dict_converts(tmp_path):
    torch, _, _ = oracles()
    from tinymnet.convert import convert

    torch.manual_seed(2)
    model = _torch_mobilenext(torch, 0.75).eval()
    randomise_bn(torch, model, 9)
    path = tmp_path / "mobilenext.pth"
    torch.save(model.state_dict(), path)
    cm = convert(path, resolution=RES)
    facts = cm.provenance
    assert facts["arch"] == "mobilenext" and facts["width"] == 0.75
    assert facts["bn_eps"] == 1e-5 and facts["weights_layout"] == "torchvision"
    x = _input(4)
    assert rel_err(run_reference(cm.graph, x), _torch_logits(torch, model, x)) <= 1e-4
