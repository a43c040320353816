"""Model builders: each writes a network as its paper's block table and returns a Graph whose
param names are the source framework's state_dict keys.

=====================  =====================================  ===========================
arch                   param names                            default BN eps / classes
=====================  =====================================  ===========================
mobilenet_v1           Keras layer names (conv1, conv_dw_N,   1e-3 / 1001 (slim/TFLite)
                       conv_pw_N, conv_preds) + torch suffixes
mobilenet_v2           torchvision                            1e-5 / 1000
mobilenet_v3_large     torchvision                            1e-3 / 1000
mobilenet_v3_small     torchvision                            1e-3 / 1000
efficientnet_lite0     efficientnet_pytorch                   1e-3 / 1000
ghostnet               timm ``ghostnet_100`` (conv_stem,      1e-5 / 1000
                       blocks.i.j.ghost1..., conv_head)
mobilenext             the official code (features.N.conv.M,  1e-5 / 1000
                       classifier.1)
=====================  =====================================  ===========================

Every builder takes ``params=`` (name -> array; ValueError lists missing, unexpected and
wrong-shape keys; torch's ``num_batches_tracked`` is ignored), ``seed=`` for the random init
used when params is None, and ``bn_eps=`` to override the eps of :data:`BN_EPS`.
"""

from __future__ import annotations

from typing import Callable, Dict

from tinymnet.graph import Graph
from tinymnet.models._common import BN_EPS, make_divisible
from tinymnet.models.efficientnet_lite import efficientnet_lite0
from tinymnet.models.ghostnet import ghostnet
from tinymnet.models.mobilenet_v1 import mobilenet_v1
from tinymnet.models.mobilenet_v2 import mobilenet_v2
from tinymnet.models.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from tinymnet.models.mobilenext import mobilenext

ARCHS: Dict[str, Callable[..., Graph]] = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
    "efficientnet_lite0": efficientnet_lite0,
    "ghostnet": ghostnet,
    "mobilenext": mobilenext,
}


def build(arch: str, **kwargs) -> Graph:
    """``build("mobilenet_v2", width=1.4)`` -> Graph; kwargs go to the builder."""
    try:
        builder = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}") from None
    return builder(**kwargs)


__all__ = ["ARCHS", "BN_EPS", "build", "make_divisible"] + sorted(ARCHS)
