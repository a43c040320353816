"""MobileNetV2 (Sandler et al. 2018), the torchvision layout: param names are torchvision's
``mobilenet_v2`` state_dict keys, so its weights load by name."""

from __future__ import annotations

from typing import Mapping, Optional

from tinymnet.graph import Graph, GraphBuilder
from tinymnet.models._common import BN_EPS, conv_bn_act, make_divisible, image_builder

# The paper's Table 2: expansion t, output channels c, repeats n, stride s of the first block.
INVERTED_RESIDUAL_SETTING = [
    # t,   c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def inverted_residual(
    b: GraphBuilder,
    x: str,
    prefix: str,
    out_channels: int,
    stride: int,
    expand_ratio: int,
    eps: float,
) -> str:
    """1x1 expand (skipped when t = 1) -> 3x3 depthwise -> 1x1 linear projection (+ x when the
    shapes allow). torchvision numbers the parts ``{prefix}.conv.0..3``."""
    cin = b.channels(x)
    hidden = int(round(cin * expand_ratio))
    y, i = x, 0
    if expand_ratio != 1:
        y = conv_bn_act(b, y, f"{prefix}.conv.{i}", hidden, 1, activation="relu6", eps=eps)
        i += 1
    y = conv_bn_act(
        b, y, f"{prefix}.conv.{i}", hidden, 3, stride, groups=hidden, activation="relu6", eps=eps
    )
    # The projection is a bare Conv2d + BatchNorm2d in torchvision, numbered i+1 and i+2.
    y = b.conv2d(y, f"{prefix}.conv.{i + 1}", out_channels, 1)
    y = b.batchnorm(y, f"{prefix}.conv.{i + 2}", eps)
    if stride == 1 and cin == out_channels:
        y = b.add("add", [x, y], f"{prefix}.add")
    return y


def mobilenet_v2(
    width: float = 1.0,
    num_classes: int = 1000,
    resolution: int = 224,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 0.2,
) -> Graph:
    """torchvision ``mobilenet_v2(width_mult=width)``: channels rounded to multiples of 8, the
    last conv has 1280 * max(1, width) channels, BN eps 1e-5 (override for other sources).

    ``params`` (name -> array, torchvision state_dict keys) replaces the seeded random init.
    """
    eps = BN_EPS["torchvision_mobilenet_v2"] if bn_eps is None else bn_eps
    b = image_builder("mobilenet_v2", resolution, num_classes, eps, "torchvision", width=width)
    x = conv_bn_act(
        b,
        b.input,
        "features.0",
        make_divisible(STEM_CHANNELS * width),
        3,
        2,
        activation="relu6",
        eps=eps,
    )
    index = 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out_channels = make_divisible(c * width)
        for i in range(n):
            x = inverted_residual(
                b, x, f"features.{index}", out_channels, s if i == 0 else 1, t, eps
            )
            index += 1
    last = make_divisible(LAST_CHANNELS * max(1.0, width))
    x = conv_bn_act(b, x, f"features.{index}", last, 1, activation="relu6", eps=eps)
    x = b.add("global_avg_pool", [x], "avgpool")
    x = b.add("flatten", [x], "flatten")
    x = b.add("dropout", [x], "classifier.0", p=dropout)
    x = b.linear(x, "classifier.1", num_classes)
    return b.build([x], params, seed)
