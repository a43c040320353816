"""MobileNeXt (Zhou et al., ECCV 2020, "Rethinking Bottleneck Structure for Efficient Mobile
Network Design"), written as the authors' official PyTorch code builds it
(zhoudaquan/rethinking_bottleneck_design, ``mobilenext.py``: ``SGBlock`` / ``MobileNeXt``).
That file could not be consulted while writing this builder: the configuration below is
reconstructed from the paper's Table and the known structure of the official code, and checked
against the official README's counts (see "Why" below), not against an official checkpoint.

Configuration
=============

The paper's Table (t = channel *reduction* ratio of the sandglass block, c = output channels,
n = blocks, s = stride of the first block), as in the official ``cfgs``::

    conv 3x3, 32, s2 (+BN+ReLU6)
    t  c     n  s
    2  96    1  2
    6  144   1  1
    6  192   3  2
    6  288   3  2
    6  384   4  1
    6  576   4  2
    6  960   3  1
    6  1280  1  1
    global average pool, dropout, linear(1280, classes)

Channels are make_divisible(c * width, 8); the 1280 of the last block is kept at widths
below 1. The reduced (hidden) width of a block is ``in // t``, raised to
make_divisible(ceil(out / 6), 16) when smaller than out / 6 (official ``SGBlock``).

The sandglass block (paper Fig. 3): depthwise 3x3 (+BN+ReLU6) -> linear 1x1 reduction (+BN)
-> 1x1 expansion (+BN+ReLU6) -> depthwise 3x3 with the stride (+BN), identity shortcut
between the wide tensors when stride 1 and in == out. The official code builds four variants
of it, and so does this builder:

* t == 2 (the first block) and the first block of a single-block stride-1 stage
  (``keep_3x3``: the 144 and 1280 stages): the full block, no shortcut;
* in != out, stride 1: only the two 1x1 convs (reduction, expansion + ReLU6), no depthwise
  (the first blocks of the 384 and 960 stages);
* in != out, stride 2: reduction, expansion + ReLU6, depthwise 3x3 stride 2 (the first blocks
  of the 192, 288 and 576 stages);
* in == out, stride 1: the full block with the identity shortcut (identity_div 1: the whole
  tensor is added).

Why this configuration: of the candidates considered it is the one that reproduces the
official README's figures, 3.5M params and 300M MAdds at width 1.0: this builder counts
3,535,416 params and 311M MACs (+3.8%). The plain sandglass block in every position (hidden
= in // t, 3 blocks of 960) gives 3.31M / 275M (-8%), and the plain block with the out / 6
floor and 2 blocks of 960 (a third-party reading of the Table) 3.24M / 303M. The paper's
Table reports 3.4M.

State-dict layout (the official module names, BN eps 1e-5)
==========================================================

``features.0.0`` stem conv, ``features.0.1`` BN; block ``i`` (1-based, in table order) is
``features.{i}.conv.{n}``, numbered as the official ``nn.Sequential`` (ReLU6 modules take
indices too):

* full block: ``0`` dw conv, ``1`` BN, ``3`` 1x1 reduce, ``4`` BN, ``5`` 1x1 expand, ``6`` BN,
  ``8`` dw conv, ``9`` BN;
* in != out, stride 1: ``0`` reduce, ``1`` BN, ``2`` expand, ``3`` BN;
* in != out, stride 2: ``0`` reduce, ``1`` BN, ``2`` expand, ``3`` BN, ``5`` dw conv, ``6`` BN;

BN keys are ``weight``/``bias``/``running_mean``/``running_var``; the classifier is
``classifier.1`` (``nn.Sequential(Dropout, Linear)``).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from tinymnet.graph import Graph, GraphBuilder
from tinymnet.models._common import BN_EPS, conv_bn_act, make_divisible, image_builder

# t (reduction ratio), c (output channels), n (blocks), s (stride of the first block)
SETTING = [
    (2, 96, 1, 2),
    (6, 144, 1, 1),
    (6, 192, 3, 2),
    (6, 288, 3, 2),
    (6, 384, 4, 1),
    (6, 576, 4, 2),
    (6, 960, 3, 1),
    (6, 1280, 1, 1),
]
STEM_CHANNELS = 32


def sandglass_block(
    b: GraphBuilder,
    x: str,
    prefix: str,
    out_channels: int,
    stride: int,
    reduction: int,
    keep_3x3: bool,
    eps: float,
) -> str:
    """One official ``SGBlock`` (see the module doc for its four variants)."""
    cin = b.channels(x)
    hidden = cin // reduction
    if hidden < out_channels / 6.0:
        hidden = make_divisible(math.ceil(out_channels / 6.0), 16)
    p = f"{prefix}.conv"

    def pw(y, i, c, act):
        y = b.conv2d(y, f"{p}.{i}", c, 1)
        y = b.batchnorm(y, f"{p}.{i + 1}", eps)
        if act:
            y = b.add("activation", [y], f"{p}.{i + 2}", activation="relu6")
        return y

    def dw(y, i, s, act):
        c = b.channels(y)
        y = b.conv2d(y, f"{p}.{i}", c, 3, s, 1, groups=c)
        y = b.batchnorm(y, f"{p}.{i + 1}", eps)
        if act:
            y = b.add("activation", [y], f"{p}.{i + 2}", activation="relu6")
        return y

    identity = False
    if reduction == 2 or keep_3x3 or cin == out_channels:
        identity = reduction != 2 and not keep_3x3 and stride == 1
        y = dw(x, 0, 1, True)
        y = pw(y, 3, hidden, False)
        y = pw(y, 5, out_channels, True)
        y = dw(y, 8, stride, False)
    else:
        y = pw(x, 0, hidden, False)
        y = pw(y, 2, out_channels, True)
        if stride == 2:
            y = dw(y, 5, stride, False)
    if identity:
        y = b.add("add", [x, y], f"{prefix}.add")
    return y


def mobilenext(
    width: float = 1.0,
    num_classes: int = 1000,
    resolution: int = 224,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 0.2,
) -> Graph:
    """The official MobileNeXt at ``width`` (0.35 ... 1.4): 3,535,416 params and ~311M MACs at
    1.0 / 224. BN eps 1e-5 (``BN_EPS["mobilenext"]``, torch's default)."""
    eps = BN_EPS["mobilenext"] if bn_eps is None else bn_eps
    arch = "mobilenext"
    b = image_builder(arch, resolution, num_classes, eps, "mobilenext_official", width=width)
    x = conv_bn_act(
        b, b.input, "features.0", make_divisible(STEM_CHANNELS * width), 3, 2,
        activation="relu6", eps=eps,
    )
    index = 1
    for t, c, n, s in SETTING:
        out = make_divisible(c * width)
        if c == 1280 and width < 1:
            out = 1280
        for i in range(n):
            keep_3x3 = i == 0 and n == 1 and s == 1
            x = sandglass_block(
                b, x, f"features.{index}", out, s if i == 0 else 1, t, keep_3x3, eps
            )
            index += 1
    x = b.add("global_avg_pool", [x], "avgpool")
    x = b.add("flatten", [x], "flatten")
    x = b.add("dropout", [x], "classifier.0", p=dropout)
    x = b.linear(x, "classifier.1", num_classes)
    return b.build([x], params, seed)
