"""MobileNetV3 Large and Small (Howard et al. 2019), the torchvision layout: param names are
torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small`` state_dict keys."""

from __future__ import annotations

from typing import Mapping, Optional

from tinymnet.graph import Graph, GraphBuilder
from tinymnet.models._common import BN_EPS, conv_bn_act, make_divisible, image_builder

# The paper's Tables 1 and 2 as torchvision writes them:
# input channels, kernel, expanded channels, output channels, squeeze-excite, activation
# ("RE" = ReLU, "HS" = hardswish), stride.
LARGE = [
    # in, k, exp, out,   SE,  act, s
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
LARGE_LAST_CHANNELS = 1280

SMALL = [
    # in, k, exp, out,   SE,  act, s
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]
SMALL_LAST_CHANNELS = 1024

_ACT = {"RE": "relu", "HS": "hardswish"}


def inverted_residual(
    b: GraphBuilder,
    x: str,
    prefix: str,
    kernel: int,
    expanded: int,
    out_channels: int,
    use_se: bool,
    act: str,
    stride: int,
    eps: float,
) -> str:
    """[1x1 expand] -> kxk depthwise -> [SE] -> 1x1 linear projection (+ x when shapes allow).
    torchvision numbers the parts ``{prefix}.block.0..``; the expand is absent when
    expanded == input channels."""
    cin = b.channels(x)
    y, i = x, 0
    if expanded != cin:
        y = conv_bn_act(b, y, f"{prefix}.block.{i}", expanded, 1, activation=act, eps=eps)
        i += 1
    y = conv_bn_act(
        b,
        y,
        f"{prefix}.block.{i}",
        expanded,
        kernel,
        stride,
        groups=expanded,
        activation=act,
        eps=eps,
    )
    i += 1
    if use_se:
        # torchvision: squeeze to make_divisible(expanded // 4, 8), ReLU, hardsigmoid gate.
        y = b.squeeze_excite(
            y,
            f"{prefix}.block.{i}",
            make_divisible(expanded // 4, 8),
            inner="relu",
            gate="hardsigmoid",
        )
        i += 1
    y = conv_bn_act(b, y, f"{prefix}.block.{i}", out_channels, 1, activation=None, eps=eps)
    if stride == 1 and cin == out_channels:
        y = b.add("add", [x, y], f"{prefix}.add")
    return y


def _mobilenet_v3(
    arch: str,
    setting,
    last_channels: int,
    width: float = 1.0,
    num_classes: int = 1000,
    resolution: int = 224,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 0.2,
    head_channels: Optional[int] = None,
) -> Graph:
    eps = BN_EPS["torchvision_mobilenet_v3"] if bn_eps is None else bn_eps

    def adjust(c):  # torchvision's InvertedResidualConfig.adjust_channels
        return make_divisible(c * width, 8)

    b = image_builder(arch, resolution, num_classes, eps, "torchvision", width=width)
    x = conv_bn_act(
        b, b.input, "features.0", adjust(setting[0][0]), 3, 2, activation="hardswish", eps=eps
    )
    for index, (_, k, exp, out, se, act, s) in enumerate(setting, start=1):
        x = inverted_residual(
            b, x, f"features.{index}", k, adjust(exp), adjust(out), se, _ACT[act], s, eps
        )
    last_conv = 6 * b.channels(x)
    x = conv_bn_act(
        b, x, f"features.{len(setting) + 1}", last_conv, 1, activation="hardswish", eps=eps
    )
    x = b.add("global_avg_pool", [x], "avgpool")
    x = b.add("flatten", [x], "flatten")
    hidden = adjust(last_channels) if head_channels is None else int(head_channels)
    x = b.linear(x, "classifier.0", hidden)
    x = b.add("activation", [x], "classifier.1", activation="hardswish")
    x = b.add("dropout", [x], "classifier.2", p=dropout)
    x = b.linear(x, "classifier.3", num_classes)
    return b.build([x], params, seed)


def mobilenet_v3_large(width: float = 1.0, **kwargs) -> Graph:
    """torchvision ``mobilenet_v3_large(width_mult=width)``: BN eps 1e-3, classifier
    Linear(960, 1280) - hardswish - Dropout - Linear(1280, num_classes) at width 1.
    Keyword arguments: num_classes=1000, resolution=224, params=None, seed=0, bn_eps=None,
    dropout=0.2, head_channels=None (the classifier's hidden width; timm keeps 1280 unscaled)."""
    return _mobilenet_v3("mobilenet_v3_large", LARGE, LARGE_LAST_CHANNELS, width, **kwargs)


def mobilenet_v3_small(width: float = 1.0, **kwargs) -> Graph:
    """torchvision ``mobilenet_v3_small(width_mult=width)``: BN eps 1e-3, classifier
    Linear(576, 1024) - hardswish - Dropout - Linear(1024, num_classes) at width 1.
    Keyword arguments as :func:`mobilenet_v3_large` (timm keeps the 1024 unscaled)."""
    return _mobilenet_v3("mobilenet_v3_small", SMALL, SMALL_LAST_CHANNELS, width, **kwargs)
