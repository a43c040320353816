"""GhostNet (Han et al. 2020, "GhostNet: More Features from Cheap Operations"), the timm layout:
param names are timm's ``ghostnet_050`` / ``ghostnet_100`` / ``ghostnet_130`` state_dict keys
(``conv_stem``, ``bn1``, ``blocks.i.j.ghost1.primary_conv.0`` ..., ``blocks.9.0.conv``,
``conv_head``, ``classifier``), which are also those of the authors' release
(huawei-noah ghostnet_pytorch).

Ghost module (``{p}.primary_conv`` / ``{p}.cheap_operation``): a 1x1 conv + BN [+ ReLU] makes
``init = ceil(out / 2)`` channels, a 3x3 depthwise conv + BN [+ ReLU] on them makes ``init``
more; both are concatenated and sliced to ``out`` when ``out`` is odd.

Ghost bottleneck: ghost1 (ReLU) -> [kxk depthwise with the stride + BN when stride > 1]
-> [SE: squeeze to make_divisible(mid / 4, 4), ReLU, hard-sigmoid relu6(x + 3) / 6 gate]
-> ghost2 (no activation) -> + shortcut (identity when stride 1 and in == out, else kxk
depthwise with the stride + BN, 1x1 conv + BN).

Head: 1x1 conv 960 + BN + ReLU (``blocks.9.0``), global average pool, ``conv_head`` (1x1 conv
with bias to 1280 on the pooled features, not width-scaled) + ReLU, dropout, ``classifier``.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from tinymnet.graph import Graph, GraphBuilder
from tinymnet.models._common import BN_EPS, make_divisible, image_builder

# The paper's Table 1 grouped in timm's stages (blocks.i): kernel, expanded (mid) channels,
# output channels, SE ratio, stride.
STAGES = [
    [(3, 16, 16, 0, 1)],
    [(3, 48, 24, 0, 2)],
    [(3, 72, 24, 0, 1)],
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0, 2)],
    [
        (3, 200, 80, 0, 1),
        (3, 184, 80, 0, 1),
        (3, 184, 80, 0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
    ],
    [(5, 672, 160, 0.25, 2)],
    [
        (5, 960, 160, 0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0, 1),
        (5, 960, 160, 0.25, 1),
    ],
]
LAST_CHANNELS = 960  # the 1x1 conv after the blocks (width-scaled)
HEAD_CHANNELS = 1280  # conv_head (never scaled)


def ghost_module(
    b: GraphBuilder, x: str, prefix: str, out_channels: int, relu: bool, eps: float
) -> str:
    """primary 1x1 conv (+BN [+ReLU]) -> cheap 3x3 depthwise (+BN [+ReLU]) -> concat -> slice."""
    init = math.ceil(out_channels / 2)
    act = "relu" if relu else None
    p = f"{prefix}.primary_conv"
    x1 = b.conv2d(x, f"{p}.0", init, 1)
    x1 = b.batchnorm(x1, f"{p}.1", eps)
    if act:
        x1 = b.add("activation", [x1], f"{p}.2", activation=act)
    c = f"{prefix}.cheap_operation"
    x2 = b.conv2d(x1, f"{c}.0", init, 3, padding=1, groups=init)
    x2 = b.batchnorm(x2, f"{c}.1", eps)
    if act:
        x2 = b.add("activation", [x2], f"{c}.2", activation=act)
    y = b.add("concat", [x1, x2], f"{prefix}.concat")
    if 2 * init != out_channels:
        y = b.add("slice_channels", [y], f"{prefix}.slice", start=0, stop=out_channels)
    return y


def ghost_bottleneck(
    b: GraphBuilder,
    x: str,
    prefix: str,
    kernel: int,
    mid: int,
    out_channels: int,
    se_ratio: float,
    stride: int,
    eps: float,
) -> str:
    cin = b.channels(x)
    pad = (kernel - 1) // 2
    y = ghost_module(b, x, f"{prefix}.ghost1", mid, True, eps)
    if stride > 1:
        y = b.conv2d(y, f"{prefix}.conv_dw", mid, kernel, stride, pad, groups=mid)
        y = b.batchnorm(y, f"{prefix}.bn_dw", eps)
    if se_ratio:
        # timm's SqueezeExcite for GhostNet: rd_round_fn = make_divisible(., 4), ReLU,
        # gate hard_sigmoid = relu6(x + 3) / 6 (our hardsigmoid with the default alpha/beta).
        y = b.squeeze_excite(
            y,
            f"{prefix}.se",
            make_divisible(mid * se_ratio, 4),
            inner="relu",
            gate="hardsigmoid",
            fc1="conv_reduce",
            fc2="conv_expand",
        )
    y = ghost_module(b, y, f"{prefix}.ghost2", out_channels, False, eps)
    if stride == 1 and cin == out_channels:
        shortcut = x
    else:
        s = f"{prefix}.shortcut"
        shortcut = b.conv2d(x, f"{s}.0", cin, kernel, stride, pad, groups=cin)
        shortcut = b.batchnorm(shortcut, f"{s}.1", eps)
        shortcut = b.conv2d(shortcut, f"{s}.2", out_channels, 1)
        shortcut = b.batchnorm(shortcut, f"{s}.3", eps)
    return b.add("add", [y, shortcut], f"{prefix}.add")


def ghostnet(
    width: float = 1.0,
    num_classes: int = 1000,
    resolution: int = 224,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 0.2,
) -> Graph:
    """timm ``ghostnet_{050,100,130}`` (``width`` 0.5 / 1.0 / 1.3; channels rounded with
    make_divisible(c * width, 4)). BN eps 1e-5 (``BN_EPS["timm_ghostnet"]``). 5,182,508
    params and ~141M MACs at 1.0 / 224."""
    eps = BN_EPS["timm_ghostnet"] if bn_eps is None else bn_eps

    def ch(c):
        return make_divisible(c * width, 4)

    arch = "ghostnet"
    b = image_builder(arch, resolution, num_classes, eps, "timm", width=width)
    x = b.conv2d(b.input, "conv_stem", ch(16), 3, 2, 1)
    x = b.batchnorm(x, "bn1", eps)
    x = b.add("activation", [x], "act1", activation="relu")
    for i, stage in enumerate(STAGES):
        for j, (k, exp, out, se, s) in enumerate(stage):
            x = ghost_bottleneck(b, x, f"blocks.{i}.{j}", k, ch(exp), ch(out), se, s, eps)
    last = f"blocks.{len(STAGES)}.0"
    x = b.conv2d(x, f"{last}.conv", ch(LAST_CHANNELS), 1)
    x = b.batchnorm(x, f"{last}.bn1", eps)
    x = b.add("activation", [x], f"{last}.act1", activation="relu")
    x = b.add("global_avg_pool", [x], "global_pool")
    x = b.conv2d(x, "conv_head", HEAD_CHANNELS, 1, bias=True, activation="relu")
    x = b.add("flatten", [x], "flatten")
    x = b.add("dropout", [x], "dropout", p=dropout)
    x = b.linear(x, "classifier", num_classes)
    return b.build([x], params, seed)
