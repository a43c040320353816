"""Plain NumPy reference implementations of every tinymnet op.

These are the test oracle for the C++ kernels and the building blocks of the graph reference
executor, so they favour being obviously right over being fast: every op computes in float64
and returns float32. Tensors are NHWC (N, H, W, C); weights use PyTorch layouts.

Windowed ops pad the input explicitly and use ``sliding_window_view``, so there are no
per-pixel Python loops.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinymnet._args import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    check_activation,
    conv_out_hw,
    pair,
    resolve_padding,
)

__all__ = [
    "activation",
    "conv2d",
    "linear",
    "avg_pool2d",
    "max_pool2d",
    "global_avg_pool",
    "squeeze_excite",
    "mul",
    "add",
]


# ------------------------------------------------------------------------------------------
# helpers


def _array(x, name, ndim=None):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a floating point array, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return x.astype(np.float64)


def _nhwc(x, name="x"):
    return _array(x, name, ndim=4)


def _f32(y):
    return np.ascontiguousarray(y, dtype=np.float32)


def _act64(x, name, alpha, beta):
    """Activation on a float64 array (no cast)."""
    name = check_activation(name)
    if name is None:
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "relu6":
        return np.clip(x, 0.0, 6.0)
    alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
    beta = DEFAULT_BETA if beta is None else float(beta)
    gate = np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "hardsigmoid":
        return gate
    with np.errstate(invalid="ignore"):  # -inf * 0 = nan, as in torch
        return x * gate


def _windows(x, kernel, stride, pads, pad_value):
    """Pad x (N,H,W,C) and return strided windows of shape (N, OH, OW, C, KH, KW)."""
    t, b, l, r = pads
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=pad_value)
    win = sliding_window_view(xp, kernel, axis=(1, 2))
    return win[:, :: stride[0], :: stride[1]]


def _window_geometry(x, kernel, stride, padding, kernel_name="kernel"):
    kernel = pair(kernel, kernel_name)
    stride = kernel if stride is None else pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[1:3], kernel, stride)
    oh, ow = conv_out_hw(x.shape[1:3], kernel, stride, pads, what="x")
    return kernel, stride, pads, (oh, ow)


# ------------------------------------------------------------------------------------------
# ops


def activation(x, name, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA):
    """y = act(x) for act in None/"none"/relu/relu6/hardswish/hardsigmoid.

    gate(x) = clip(alpha*x + beta, 0, 1); hardsigmoid = gate, hardswish = x * gate.
    """
    return _f32(_act64(_array(x, "x"), name, alpha, beta))


def conv2d(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    groups=1,
    activation=None,
    alpha=DEFAULT_ALPHA,
    beta=DEFAULT_BETA,
    residual=None,
):
    """y = act(conv(x, weight) + bias + residual), NHWC in and out.

    weight is (Cout, Cin/groups, KH, KW); padding is an int, (ph, pw),
    (top, bottom, left, right) or "same" (TF SAME).
    """
    x = _nhwc(x)
    w = _array(weight, "weight", ndim=4)
    check_activation(activation)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n, _, _, cin = x.shape
    cout, cin_g, kh, kw = w.shape
    if cin % groups or cout % groups:
        raise ValueError(f"groups={groups} must divide x channels {cin} and weight Cout {cout}")
    if cin_g * groups != cin:
        raise ValueError(
            f"weight shape {w.shape} expects {cin_g * groups} input channels "
            f"(groups={groups}), x has {cin}"
        )
    stride = pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[1:3], (kh, kw), stride)
    oh, ow = conv_out_hw(x.shape[1:3], (kh, kw), stride, pads, what="x")

    win = _windows(x, (kh, kw), stride, pads, 0.0)  # (N, OH, OW, Cin, KH, KW)
    win = win.reshape(n, oh, ow, groups, cin_g, kh, kw)
    wg = w.reshape(groups, cout // groups, cin_g, kh, kw)
    y = np.einsum("nhwgcij,gocij->nhwgo", win, wg, optimize=True).reshape(n, oh, ow, cout)

    if bias is not None:
        bias = _array(bias, "bias", ndim=1)
        if bias.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},), got {bias.shape}")
        y = y + bias
    if residual is not None:
        residual = _array(residual, "residual")
        if residual.shape != y.shape:
            raise ValueError(f"residual must have shape {y.shape}, got {residual.shape}")
        y = y + residual
    return _f32(_act64(y, activation, alpha, beta))


def linear(x, weight, bias=None, activation=None, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA):
    """y = act(x @ weight.T + bias); x (N, in), weight (out, in)."""
    x = _array(x, "x", ndim=2)
    w = _array(weight, "weight", ndim=2)
    check_activation(activation)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"weight shape {w.shape} does not match x features {x.shape[1]}")
    y = x @ w.T
    if bias is not None:
        bias = _array(bias, "bias", ndim=1)
        if bias.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), got {bias.shape}")
        y = y + bias
    return _f32(_act64(y, activation, alpha, beta))


def avg_pool2d(x, kernel, stride=None, padding=0, count_include_pad=True):
    """Average pooling. With count_include_pad=False the divisor is the number of in-bounds
    taps (TF SAME semantics); a window entirely in the padding gives 0."""
    x = _nhwc(x)
    kernel, stride, pads, _ = _window_geometry(x, kernel, stride, padding)
    total = _windows(x, kernel, stride, pads, 0.0).sum(axis=(-2, -1))
    if count_include_pad:
        return _f32(total / (kernel[0] * kernel[1]))
    ones = np.ones((1,) + x.shape[1:3] + (1,))
    count = _windows(ones, kernel, stride, pads, 0.0).sum(axis=(-2, -1))
    return _f32(total / np.maximum(count, 1.0))


def max_pool2d(x, kernel, stride=None, padding=0):
    """Max pooling; padding never wins (a window entirely in the padding gives -inf)."""
    x = _nhwc(x)
    kernel, stride, pads, _ = _window_geometry(x, kernel, stride, padding)
    return _f32(_windows(x, kernel, stride, pads, -np.inf).max(axis=(-2, -1)))


def global_avg_pool(x):
    """Mean over H and W -> (N, 1, 1, C)."""
    return _f32(_nhwc(x).mean(axis=(1, 2), keepdims=True))


def squeeze_excite(
    x, w1, b1, w2, b2, inner="relu", gate="hardsigmoid", alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA
):
    """Squeeze-and-excitation: y = x * gate(fc2(inner(fc1(mean_hw(x))))).

    w1 is (S, C) or (S, C, 1, 1), w2 is (C, S) or (C, S, 1, 1); alpha/beta apply to both
    activations (they only matter for hardsigmoid/hardswish).
    """
    x = _nhwc(x)
    c = x.shape[3]
    check_activation(inner, "inner")
    if check_activation(gate, "gate") is None:
        raise ValueError(f"gate must be one of the activations, got {gate!r}")
    w1 = _fc_weight(w1, "w1")
    w2 = _fc_weight(w2, "w2")
    s = w1.shape[0]
    if w1.shape != (s, c):
        raise ValueError(f"w1 must have shape (S, {c}), got {w1.shape}")
    if w2.shape != (c, s):
        raise ValueError(f"w2 must have shape ({c}, {s}), got {w2.shape}")
    b1 = np.zeros(s) if b1 is None else _array(b1, "b1", ndim=1)
    b2 = np.zeros(c) if b2 is None else _array(b2, "b2", ndim=1)
    if b1.shape != (s,):
        raise ValueError(f"b1 must have shape ({s},), got {b1.shape}")
    if b2.shape != (c,):
        raise ValueError(f"b2 must have shape ({c},), got {b2.shape}")
    squeezed = x.mean(axis=(1, 2))
    h = _act64(squeezed @ w1.T + b1, inner, alpha, beta)
    g = _act64(h @ w2.T + b2, gate, alpha, beta)
    return _f32(x * g[:, None, None, :])


def _fc_weight(w, name):
    w = _array(w, name)
    if w.ndim == 4 and w.shape[2:] == (1, 1):
        w = w[:, :, 0, 0]
    if w.ndim != 2:
        raise ValueError(f"{name} must have shape (out, in) or (out, in, 1, 1), got {w.shape}")
    return w


def mul(x, s):
    """Per-channel scale: (N, H, W, C) * (N, 1, 1, C)."""
    x = _nhwc(x)
    s = _nhwc(s, "s")
    n, _, _, c = x.shape
    if s.shape != (n, 1, 1, c):
        raise ValueError(f"s must have shape {(n, 1, 1, c)}, got {s.shape}")
    return _f32(x * s)


def add(a, b, activation=None, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA):
    """y = act(a + b), same shapes."""
    a = _array(a, "a")
    b = _array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b must have the same shape as a {a.shape}, got {b.shape}")
    return _f32(_act64(a + b, activation, alpha, beta))
