"""Single ops on the C++ kernels, for people who embed one layer, for tests and benchmarks.

Arrays are NHWC float32; weights use PyTorch layouts (conv (Cout, Cin/groups, KH, KW),
linear (out, in)). Inputs may be any float dtype, any strides or nested lists (converted to
C-contiguous float32; int/bool/complex/object arrays raise ValueError naming the argument);
results are new arrays (or ``out=``, which must already be C-contiguous writable float32, and
whose written channels must not overlap the inputs).
NaN/Inf inputs never crash; they follow IEEE arithmetic, except that the ReLU-family clamps
(max/min instructions) may turn a NaN into 0 and +Inf into the largest float, differently on
each ISA. Each op packs its weights once, when it is created, for the ISA current at
that moment (``isa()``: ``TINYMNET_ISA`` if set, else the best the CPU has); ``use_isa`` switches
it for the ops created inside the block. Calls release the GIL.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import _C
from ._args import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    check_activation,
    check_padding,
    conv_out_hw,
    pair,
    resolve_padding,
)

__all__ = [
    "isa", "available_isas", "set_isa", "use_isa",
    "Conv2d", "Linear", "QuantizedLinear", "SqueezeExcite", "AvgPool2d", "MaxPool2d",
    "global_avg_pool", "mul", "add", "activation",
]


def isa() -> str:
    """The ISA that ops created now bind to."""
    return _C.isa()


def available_isas() -> list:
    """The ISAs this build and CPU support, slowest first (scalar, avx2, avx512 / neon)."""
    return list(_C.available_isas())


def set_isa(name: str) -> None:
    """Make ops created from now on use `name` (ValueError if the CPU lacks it)."""
    if name not in ("scalar", "avx2", "avx512", "neon"):
        raise ValueError(f"isa must be one of scalar, avx2, avx512, neon; got {name!r}")
    _C.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str):
    """Create ops under `name` inside the block, then restore the previous ISA."""
    previous = isa()
    set_isa(name)
    try:
        yield
    finally:
        _C.set_isa(previous)


# ----------------------------------------------------------------------------- helpers

def _weight(array, name, ndim):
    a = np.asarray(array)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array, got {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(a, dtype=np.float32)


def _bias(array, name, size):
    if array is None:
        return None
    b = _weight(array, name, 1) if np.ndim(array) == 1 else None
    if b is None or b.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},), got {np.shape(array)}")
    return b


def _input(x, name="x", ndim=4, channels=None):
    """An input array as the kernels need it (C-contiguous, aligned float32): array-likes and
    other float dtypes are converted, any strides are copied; int/bool/complex/object raise."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise ValueError(f"{name} must be a numpy array or convertible to one: {e}") from None
    if x.dtype.kind != "f":
        raise ValueError(f"{name} must be a floating-point array (float32 preferred), "
                         f"got {x.dtype}")
    if ndim is None:
        ndim = x.ndim
    if x.ndim != ndim:
        layout = "NHWC (N, H, W, C)" if ndim == 4 else f"{ndim}-D"
        raise ValueError(f"{name} must be {layout}, got shape {x.shape}")
    if min(x.shape, default=1) < 1:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{name} has {x.shape[-1]} channels, expected {channels}")
    return np.require(x, np.float32, ["C_CONTIGUOUS", "ALIGNED"])


def _nhwc_view(x, channels):
    """A conv input: x itself when it is a channel range of a wider C-contiguous NHWC array
    (``big[..., a:b]``: the kernels read it in place, with big's pixel stride), else a
    C-contiguous copy."""
    x = x if isinstance(x, np.ndarray) and x.ndim == 4 else _input(x, channels=channels)
    s, (_, h, w, c) = x.strides, x.shape
    if (x.dtype == np.float32 and x.flags.aligned and min(x.shape) >= 1 and c == channels
            and s[3] == 4
            and s[2] % 4 == 0 and s[2] >= 4 * c and s[1] == w * s[2] and s[0] == h * s[1]):
        return x
    return _input(x, channels=channels)


def _act_args(activation, alpha, beta, name="activation"):
    act = check_activation(activation, name)
    return (act or "none", DEFAULT_ALPHA if alpha is None else float(alpha),
            DEFAULT_BETA if beta is None else float(beta))


def _c_padding(padding):
    pads = check_padding(padding)
    return ([0, 0, 0, 0], True) if pads == "same" else (list(pads), False)


# ----------------------------------------------------------------------------- ops

class Conv2d:
    """2-D convolution with fused bias, activation and optional residual add.

    groups == 1 with a 1x1 kernel, stride 1 and no padding (or SAME, which pads nothing there)
    runs the packed GEMM ("pointwise"); groups == in_channels == out_channels runs the
    depthwise kernel; a 3x3 stride-2 conv of 3 input channels (the MobileNets' first layer,
    any padding) runs the direct stem kernel ("stem"); any other groups == 1 conv runs
    im2col + GEMM ("direct").
    ``x`` may be a channel slice ``big[..., a:b]`` of a wider C-contiguous NHWC array: it is
    read in place (the kernels take an input pixel stride), as a compiled plan reads one part
    of a concat.
    """

    def __init__(self, weight, bias=None, stride=1, padding=0, groups=1, activation=None,
                 alpha=None, beta=None):
        w = _weight(weight, "weight", 4)
        cout, cin_per_group, kh, kw = w.shape
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        groups = int(groups)
        self.in_channels = cin_per_group * groups
        if groups != 1 and not (groups == self.in_channels == cout):
            raise ValueError(
                f"groups must be 1 or equal to in_channels == out_channels (depthwise); got "
                f"groups={groups}, in_channels={self.in_channels}, out_channels={cout}")
        self.out_channels = cout
        self.kernel_size = (kh, kw)
        self.stride = pair(stride, "stride")
        self.padding = check_padding(padding)
        self.groups = groups
        act, a, b = _act_args(activation, alpha, beta)
        self.activation = None if act == "none" else act
        pads, same = _c_padding(padding)
        self._op = _C.Conv2d(w, _bias(bias, "bias", cout), self.stride, pads, same, groups,
                             act, a, b)
        self.kind = self._op.kind
        self.isa = self._op.isa

    def out_shape(self, x_shape):
        n, h, w, c = x_shape
        if c != self.in_channels:
            raise ValueError(f"x has {c} channels, expected {self.in_channels}")
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.stride)
        oh, ow = conv_out_hw((h, w), self.kernel_size, self.stride, pads, "x")
        return (n, oh, ow, self.out_channels)

    def __call__(self, x, residual=None, out=None, channel_offset=0):
        x = _nhwc_view(x, self.in_channels)
        shape = self.out_shape(x.shape)
        if residual is not None:
            residual = _input(residual, "residual")
            if residual.shape != shape:
                raise ValueError(f"residual must have the output shape {shape}, got {residual.shape}")
        if out is None:
            if channel_offset != 0:
                raise ValueError("channel_offset needs out=")
            out = np.empty(shape, np.float32)
        else:
            if not (isinstance(out, np.ndarray) and out.dtype == np.float32
                    and out.flags.c_contiguous and out.flags.aligned and out.flags.writeable):
                raise ValueError("out must be a writable, aligned, C-contiguous float32 array")
            if out.ndim != 4 or out.shape[:3] != shape[:3]:
                raise ValueError(f"out must be (N, OH, OW, C) = {shape[:3]} + (C,), got {out.shape}")
            if not 0 <= channel_offset <= out.shape[3] - self.out_channels:
                raise ValueError(
                    f"channel_offset {channel_offset} + {self.out_channels} output channels "
                    f"do not fit in out's {out.shape[3]} channels")
            # The kernels write out while they still read x and residual (a window's rows,
            # a GEMM row's every channel): where they overlap, results would be garbage.
            written = out[..., channel_offset:channel_offset + self.out_channels]
            for name, a in (("x", x), ("residual", residual)):
                if a is not None and np.shares_memory(written, a):
                    raise ValueError(f"out's channels [{channel_offset}, "
                                     f"{channel_offset + self.out_channels}) overlap {name}: "
                                     f"pass a copy of {name} or another out")
        self._op.run(x, out, int(channel_offset), residual)
        return out


class Linear:
    """Fully connected layer y = act(x W^T + b), x (N, in_features). Each row of x gets the
    same bits as in a call of its own, whatever N."""

    def __init__(self, weight, bias=None, activation=None, alpha=None, beta=None):
        w = _weight(weight, "weight", 2)
        self.out_features, self.in_features = w.shape
        act, a, b = _act_args(activation, alpha, beta)
        self._op = _C.Linear(w, _bias(bias, "bias", self.out_features), act, a, b)

    def __call__(self, x):
        x = _input(x, ndim=2, channels=self.in_features)
        out = np.empty((x.shape[0], self.out_features), np.float32)
        self._op.run(x, out)
        return out


class QuantizedLinear:
    """Fully connected layer on 8-bit weights, y = act(x W^T + b) with
    W = (q - zero_point) * scale per output feature (or one scale / zero point for all):
    q (out_features, in_features) uint8 or int8 stays 8-bit (the kernel converts as it
    streams; each group of weight rows is read once for all N rows of x, each of which gets the
    bits it gets alone). What a plan runs for the one-pixel layers of a model stored with
    8-bit weights."""

    def __init__(self, q, scale, zero_point, bias=None, activation=None, alpha=None, beta=None):
        q = np.asarray(q)
        if q.dtype not in (np.uint8, np.int8) or q.ndim != 2 or 0 in q.shape:
            raise ValueError(f"q must be a non-empty 2-D uint8 or int8 array, got "
                             f"{q.dtype} of shape {q.shape}")
        self.out_features, self.in_features = q.shape
        scale = np.ascontiguousarray(np.asarray(scale, np.float32).reshape(-1))
        zero_point = np.asarray(zero_point).reshape(-1)
        if zero_point.dtype.kind not in "iu":
            raise ValueError(f"zero_point must be integers, got {zero_point.dtype}")
        zero_point = np.ascontiguousarray(zero_point.astype(np.int32))
        if scale.size not in (1, self.out_features) or zero_point.size != scale.size:
            raise ValueError(f"scale and zero_point need 1 or out_features ({self.out_features}) "
                             f"values each, got {scale.size} and {zero_point.size}")
        act, a, b = _act_args(activation, alpha, beta)
        self._op = _C.LinearQ8(np.ascontiguousarray(q), scale, zero_point,
                               _bias(bias, "bias", self.out_features), act, a, b)

    def __call__(self, x):
        x = _input(x, ndim=2, channels=self.in_features)
        out = np.empty((x.shape[0], self.out_features), np.float32)
        self._op.run(x, out)
        return out


def _fc_weight(w, name):
    w = np.asarray(w)
    if w.ndim == 4 and w.shape[2:] == (1, 1):  # a 1x1 conv weight (torchvision SE)
        w = w[:, :, 0, 0]
    return _weight(w, name, 2)


class SqueezeExcite:
    """y = x * gate(W2 inner(W1 mean_hw(x) + b1) + b2); w1 (squeeze, C), w2 (C, squeeze)."""

    def __init__(self, w1, b1, w2, b2, inner="relu", gate="hardsigmoid", alpha=None, beta=None):
        w1 = _fc_weight(w1, "w1")
        w2 = _fc_weight(w2, "w2")
        squeeze, channels = w1.shape
        if w2.shape != (channels, squeeze):
            raise ValueError(f"w2 must have shape ({channels}, {squeeze}), got {w2.shape}")
        inner_act, a, b = _act_args(inner, alpha, beta, "inner")
        gate_act, _, _ = _act_args(gate, alpha, beta, "gate")
        self.channels, self.squeeze = channels, squeeze
        self._op = _C.SqueezeExcite(w1, _bias(b1, "b1", squeeze), w2, _bias(b2, "b2", channels),
                                    inner_act, gate_act, a, b)

    def __call__(self, x):
        x = _input(x, channels=self.channels)
        out = np.empty_like(x)
        self._op.run(x, out)
        return out


class _Pool2d:
    def __init__(self, kind, kernel, stride, padding, count_include_pad):
        self.kernel_size = pair(kernel, "kernel")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = check_padding(padding)
        pads, same = _c_padding(padding)
        self._op = _C.Pool2d(kind, self.kernel_size, self.stride, pads, same,
                             bool(count_include_pad))

    def __call__(self, x):
        x = _input(x)
        n, h, w, c = x.shape
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.stride)
        oh, ow = conv_out_hw((h, w), self.kernel_size, self.stride, pads, "x")
        out = np.empty((n, oh, ow, c), np.float32)
        self._op.run(x, out)
        return out


class AvgPool2d(_Pool2d):
    """Average pooling; count_include_pad=True divides by kh*kw (torch), False by the number
    of in-bounds taps (TF "SAME")."""

    def __init__(self, kernel, stride=None, padding=0, count_include_pad=True):
        super().__init__("average", kernel, stride, padding, count_include_pad)


class MaxPool2d(_Pool2d):
    def __init__(self, kernel, stride=None, padding=0):
        super().__init__("max", kernel, stride, padding, False)


def global_avg_pool(x):
    """(N, H, W, C) -> (N, 1, 1, C) mean over H and W."""
    x = _input(x)
    out = np.empty((x.shape[0], 1, 1, x.shape[3]), np.float32)
    _C.global_avg_pool(x, out)
    return out


def mul(x, s):
    """Broadcast channel scale: (N, H, W, C) * (N, 1, 1, C)."""
    x = _input(x)
    s = _input(s, "s")
    if s.shape != (x.shape[0], 1, 1, x.shape[3]):
        raise ValueError(f"s must have shape {(x.shape[0], 1, 1, x.shape[3])}, got {s.shape}")
    out = np.empty_like(x)
    _C.mul(x, s, out)
    return out


def add(a, b, activation=None, alpha=None, beta=None):
    """act(a + b) for two arrays of the same shape."""
    a = _input(a, "a", ndim=None)
    b = _input(b, "b", ndim=None)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    act, al, be = _act_args(activation, alpha, beta)
    out = np.empty_like(a)
    _C.add(a, b, out, act, al, be)
    return out


def activation(x, name, alpha=None, beta=None):
    """Apply an activation (relu, relu6, hardswish, hardsigmoid) elementwise."""
    x = _input(x, ndim=None)
    act, a, b = _act_args(name, alpha, beta, "name")
    out = np.empty_like(x)
    _C.activation(x, out, act, a, b)
    return out
