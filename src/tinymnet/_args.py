"""Argument normalisation shared by the C++ kernel wrappers and the NumPy reference ops.

Everything here raises ValueError naming the offending argument, so a wrong call fails the
same way whichever executor it went to.
"""
from __future__ import annotations

ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid")
# gate(x) = clamp(alpha*x + beta, 0, 1): torch's hardsigmoid is relu6(x + 3) / 6.
DEFAULT_ALPHA = 1.0 / 6.0
DEFAULT_BETA = 0.5


def check_activation(activation, name="activation"):
    if activation is None or activation == "none":
        return None
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name} must be None or one of {ACTIVATIONS}, got {activation!r}")
    return activation


def pair(value, name):
    """An int or a 2-sequence of positive ints -> (a, b)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        out = (value, value)
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(out) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return out


def check_padding(padding):
    """Validate a padding spec: int, (ph, pw), (top, bottom, left, right) or "same"."""
    if isinstance(padding, str):
        if padding.lower() != "same":
            raise ValueError(f'padding must be an int, a 2- or 4-tuple or "same", got {padding!r}')
        return "same"
    if isinstance(padding, bool):
        raise ValueError(f"padding must be an int or a tuple of ints, got {padding!r}")
    if isinstance(padding, int):
        pads = (padding,) * 4
    else:
        try:
            pads = tuple(int(p) for p in padding)
        except TypeError:
            raise ValueError(f"padding must be an int or a tuple of ints, got {padding!r}") from None
        if len(pads) == 2:
            pads = (pads[0], pads[0], pads[1], pads[1])
        elif len(pads) != 4:
            raise ValueError(f"padding must have 2 or 4 values, got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def same_padding(size, kernel, stride):
    """TF "SAME": output ceil(size/stride), the extra pixel of an odd total goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_hw, kernel, stride):
    """-> (top, bottom, left, right) for an input of spatial size in_hw."""
    padding = check_padding(padding)
    if padding == "same":
        return same_padding(in_hw[0], kernel[0], stride[0]) + same_padding(
            in_hw[1], kernel[1], stride[1]
        )
    return padding


def conv_out_hw(in_hw, kernel, stride, pads, what="input"):
    """Output (H, W) of a window op, or ValueError if the window does not fit."""
    t, b, l, r = pads
    oh = (in_hw[0] + t + b - kernel[0]) // stride[0] + 1
    ow = (in_hw[1] + l + r - kernel[1]) // stride[1] + 1
    if in_hw[0] + t + b < kernel[0] or in_hw[1] + l + r < kernel[1] or oh < 1 or ow < 1:
        raise ValueError(
            f"{what} spatial size {tuple(in_hw)} with padding {pads} is smaller than the "
            f"kernel {tuple(kernel)}"
        )
    return oh, ow
