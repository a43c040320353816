"""torch / torchvision / timm as test oracles (test-only dependencies, never used by tinymnet).

``oracles()`` imports the three and returns them. When one is missing the calling test is
skipped on a developer machine, but fails when ``CI=true``: CI installs the ``test`` extra,
so a missing oracle there means the parity tests silently stopped running.
"""
from __future__ import annotations

import os
import sys
import types


def stub_torchvision_registrations() -> None:
    """torchvision 0.28's PyPI wheel registers fake/autograd kernels for ops the CPU-only torch
    2.13 wheel lacks; stubbing these two modules before the import keeps it from failing."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))


def _missing(reason: str):
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but a parity oracle is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def oracles():
    """-> (torch, torchvision.models, timm); skip (fail under CI=true) if one is absent."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - ImportError or a broken install
        _missing(f"torch is not importable: {e}")
    stub_torchvision_registrations()
    try:
        import torchvision.models as tvm
    except Exception as e:  # noqa: BLE001
        _missing(f"torchvision is not importable: {e}")
    try:
        import timm
    except Exception as e:  # noqa: BLE001
        _missing(f"timm is not importable: {e}")
    return torch, tvm, timm


def randomise_bn(torch, model, seed: int) -> None:
    """Non-trivial BatchNorm parameters and running statistics (a fresh model has gamma 1,
    beta 0, mean 0, var 1, which would hide eps and folding mistakes) and non-zero biases
    (torchvision and timm initialise them to 0, which would hide a swapped bias)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
