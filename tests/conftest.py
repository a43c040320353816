"""Shared fixtures. ``isa`` runs a test once per ISA this CPU supports (scalar, avx2, avx512 or
neon): ops constructed inside the test bind to that ISA."""
import pytest


def _available_isas():
    try:
        from tinymnet import kernels
    except Exception:  # extension not built yet: the kernel tests skip, the rest still run
        return []
    return kernels.available_isas()


_ISAS = _available_isas() or [
    pytest.param(None, marks=pytest.mark.skip(reason="tinymnet.kernels is not importable"))
]


@pytest.fixture(params=_ISAS)
def isa(request):
    from tinymnet import kernels

    with kernels.use_isa(request.param):
        assert kernels.isa() == request.param
        yield request.param
