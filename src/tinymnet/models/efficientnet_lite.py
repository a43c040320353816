"""EfficientNet-Lite0 (the TF EfficientNet-Lite release, ported to efficientnet_pytorch).

Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no squeeze-excite, and a stem
of 32 and head of 1280 channels that are not scaled. Convs use TF "SAME" padding
(asymmetric on stride 2), BN eps 1e-3. Param names are efficientnet_pytorch's: ``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``.
"""

from __future__ import annotations

from typing import Mapping, Optional

from tinymnet.graph import Graph, GraphBuilder
from tinymnet.models._common import BN_EPS, conv_bn_act, image_builder

# The B0 stage table (Tan & Le 2019, Table 1): repeats, kernel, stride of the first block,
# expansion ratio, output channels.
STAGES = [
    # n, k, s, t,   c
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def mbconv(
    b: GraphBuilder,
    x: str,
    prefix: str,
    kernel: int,
    stride: int,
    expand_ratio: int,
    out_channels: int,
    eps: float,
) -> str:
    """[1x1 expand] -> kxk depthwise -> 1x1 linear projection (+ x when shapes allow)."""
    cin = b.channels(x)
    y = x
    if expand_ratio != 1:
        y = conv_bn_act(
            b,
            y,
            prefix,
            cin * expand_ratio,
            1,
            activation="relu6",
            eps=eps,
            padding="same",
            names=("_expand_conv", "_bn0", "_relu0"),
        )
    c = b.channels(y)
    y = conv_bn_act(
        b,
        y,
        prefix,
        c,
        kernel,
        stride,
        groups=c,
        activation="relu6",
        eps=eps,
        padding="same",
        names=("_depthwise_conv", "_bn1", "_relu1"),
    )
    y = conv_bn_act(
        b,
        y,
        prefix,
        out_channels,
        1,
        activation=None,
        eps=eps,
        padding="same",
        names=("_project_conv", "_bn2", None),
    )
    if stride == 1 and cin == out_channels:
        y = b.add("add", [x, y], f"{prefix}.add")
    return y


def efficientnet_lite0(
    num_classes: int = 1000,
    resolution: int = 224,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 0.2,
) -> Graph:
    """EfficientNet-Lite0 with efficientnet_pytorch param names (4,652,008 params)."""
    eps = BN_EPS["efficientnet_lite0"] if bn_eps is None else bn_eps
    b = image_builder("efficientnet_lite0", resolution, num_classes, eps, "efficientnet_pytorch")
    x = conv_bn_act(
        b,
        b.input,
        "",
        STEM_CHANNELS,
        3,
        2,
        activation="relu6",
        eps=eps,
        padding="same",
        names=("_conv_stem", "_bn0", "_relu0"),
    )
    index = 0
    for n, k, s, t, c in STAGES:
        for i in range(n):
            x = mbconv(b, x, f"_blocks.{index}", k, s if i == 0 else 1, t, c, eps)
            index += 1
    x = conv_bn_act(
        b,
        x,
        "",
        HEAD_CHANNELS,
        1,
        activation="relu6",
        eps=eps,
        padding="same",
        names=("_conv_head", "_bn1", "_relu1"),
    )
    x = b.add("global_avg_pool", [x], "_avg_pooling")
    x = b.add("flatten", [x], "flatten")
    x = b.add("dropout", [x], "_dropout", p=dropout)
    x = b.linear(x, "_fc", num_classes)
    return b.build([x], params, seed)
