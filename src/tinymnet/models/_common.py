"""Pieces shared by the model builders: channel rounding, BatchNorm eps per source format and
the conv-BN-activation triple every MobileNet is made of."""

from __future__ import annotations

from typing import Optional

from tinymnet.graph import GraphBuilder

# BatchNorm epsilon of each weight source. It is not stored in a state_dict, and using the
# wrong one shifts every BN output a little (1e-3 vs 1e-5 matters where running_var is small),
# so builders take it from here and converters pass the one of the file they read.
BN_EPS = {
    "torchvision_mobilenet_v2": 1e-5,  # nn.BatchNorm2d default
    "torchvision_mobilenet_v3": 1e-3,  # partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    "timm_mobilenet": 1e-5,  # timm's MobileNetV2/V3 keep torch's default
    "keras": 1e-3,  # keras.layers.BatchNormalization default (Keras Applications MobileNet)
    "efficientnet_lite0": 1e-3,  # efficientnet_pytorch batch_norm_epsilon (the .pth fixture)
    "timm_ghostnet": 1e-5,  # timm's GhostNet (nn.BatchNorm2d default)
    "mobilenext": 1e-5,  # the official MobileNeXt code (nn.BatchNorm2d default)
}


def image_builder(arch: str, resolution: int, num_classes: int, eps: float, param_names: str,
                  **meta) -> GraphBuilder:
    """A GraphBuilder for an RGB classifier of `resolution` x `resolution`, its meta recording
    what every builder records (arch, num_classes, resolution, BN eps, whose param names)
    plus `meta` (e.g. width)."""
    return GraphBuilder(arch, (resolution, resolution, 3), meta={
        "arch": arch, **meta, "num_classes": num_classes, "resolution": resolution,
        "bn_eps": eps, "param_names": param_names})


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round channels to a multiple of divisor, never below 90% of v (TF-slim / torchvision)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_act(
    b: GraphBuilder,
    x: str,
    prefix: str,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    activation: Optional[str] = None,
    eps: float = 1e-5,
    padding=None,
    names=("0", "1", "2"),
) -> str:
    """conv (no bias) -> BatchNorm -> activation, named like torchvision's
    Conv2dNormActivation: ``{prefix}.0`` conv, ``{prefix}.1`` BN, ``{prefix}.2`` activation.

    ``padding`` defaults to torch's symmetric (k - 1) // 2; ``names`` renames the three parts
    for other layouts (Keras, efficientnet_pytorch).
    """
    conv_name, bn_name, act_name = (f"{prefix}.{n}" if prefix else n for n in names)
    if padding is None:
        padding = (kernel - 1) // 2
    x = b.conv2d(x, conv_name, out_channels, kernel, stride=stride, padding=padding, groups=groups)
    x = b.batchnorm(x, bn_name, eps)
    if activation is not None:
        x = b.add("activation", [x], act_name, activation=activation)
    return x
