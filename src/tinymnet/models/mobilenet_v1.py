"""MobileNetV1 (Howard et al. 2017) in the Keras Applications layout.

Param names are the Keras layer names with torch-style suffixes (one convention for every
builder): ``conv1.weight``, ``conv1_bn.{weight,bias,running_mean,running_var}``,
``conv_dw_N.weight``, ``conv_dw_N_bn.*``, ``conv_pw_N.weight``, ``conv_pw_N_bn.*`` for
N = 1..13, and ``conv_preds.{weight,bias}`` (a 1x1 conv on the pooled features). A converter
from Keras maps kernel -> weight (HWIO -> OIHW, depthwise HWC1 -> C1HW), gamma -> weight,
beta -> bias, moving_mean -> running_mean, moving_variance -> running_var.

The default head has the TF-slim / TFLite 1001 classes (0 = background), which is what the
published counts (569M MACs, 4.23M params at 1.0-224) use; the Keras h5 files have 1000.
"""

from __future__ import annotations

from typing import Mapping, Optional

from tinymnet.graph import Graph
from tinymnet.models._common import BN_EPS, conv_bn_act, image_builder

# The paper's Table 1 after the stem: (stride of the depthwise conv, pointwise filters).
STEM_CHANNELS = 32
DEPTHWISE_SEPARABLE = [
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
]


def mobilenet_v1(
    width: float = 1.0,
    resolution: int = 224,
    num_classes: int = 1001,
    params: Optional[Mapping[str, object]] = None,
    seed: int = 0,
    bn_eps: Optional[float] = None,
    dropout: float = 1e-3,
    softmax: bool = False,
) -> Graph:
    """Keras ``MobileNet(alpha=width)``: conv-BN-ReLU6 everywhere, channels int(c * width).

    Strided depthwise convs pad (0, 1, 0, 1) (Keras' ZeroPadding2D + valid, the same as TF
    SAME on even sizes); the stem uses "same". ``softmax`` appends the Keras "predictions"
    softmax; by default the graph returns logits.
    """
    eps = BN_EPS["keras"] if bn_eps is None else bn_eps
    b = image_builder("mobilenet_v1", resolution, num_classes, eps, "keras", width=width)
    x = conv_bn_act(
        b,
        b.input,
        "",
        int(STEM_CHANNELS * width),
        3,
        2,
        activation="relu6",
        eps=eps,
        padding="same",
        names=("conv1", "conv1_bn", "conv1_relu"),
    )
    for i, (stride, filters) in enumerate(DEPTHWISE_SEPARABLE, start=1):
        c = b.channels(x)
        x = conv_bn_act(
            b,
            x,
            "",
            c,
            3,
            stride,
            groups=c,
            activation="relu6",
            eps=eps,
            padding=1 if stride == 1 else (0, 1, 0, 1),
            names=(f"conv_dw_{i}", f"conv_dw_{i}_bn", f"conv_dw_{i}_relu"),
        )
        x = conv_bn_act(
            b,
            x,
            "",
            int(filters * width),
            1,
            activation="relu6",
            eps=eps,
            names=(f"conv_pw_{i}", f"conv_pw_{i}_bn", f"conv_pw_{i}_relu"),
        )
    x = b.add("global_avg_pool", [x], "global_average_pooling2d")
    x = b.add("dropout", [x], "dropout", p=dropout)
    x = b.conv2d(x, "conv_preds", num_classes, 1, bias=True)
    x = b.add("flatten", [x], "reshape_2")
    if softmax:
        x = b.add("softmax", [x], "predictions")
    return b.build([x], params, seed)
