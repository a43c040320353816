"""Import the op graph of one or more ``.tflite`` files (see :mod:`tinymnet.importers`).

Every operator of the main subgraph becomes our ops in float semantics:

=========================  =====================================================================
TFLite                     tinymnet
=========================  =====================================================================
CONV_2D                    conv2d; OHWI -> (O, I, KH, KW); SAME -> "same", VALID -> 0; groups =
                           Cin / I; dilation -> the equivalent dense kernel (zeros between taps)
DEPTHWISE_CONV_2D          conv2d, 1HWC -> (C, 1, KH, KW), groups = C (depth_multiplier 1 only)
FULLY_CONNECTED            (flatten +) linear
ADD / SUB / MUL / DIV      add, mul (x * (N,1,1,C) gate), an affine for a constant operand,
                           a hard-swish for x * relu6(x + 3) / 6
AVERAGE_POOL_2D / MEAN     global_avg_pool when it covers the whole map, else avg_pool2d
                           (count_include_pad False: TF SAME)
MAX_POOL_2D                max_pool2d
RESHAPE / SQUEEZE          flatten / reshape (TFLite is NHWC too, element order is ours)
PAD / PADV2, CONCATENATION pad (spatial), concat (channels)
RELU, RELU6, HARD_SWISH,   activations; MAXIMUM/MINIMUM with a constant and RELU_N1_TO_1 are
RELU_N1_TO_1, ...          clips
QUANTIZE / DEQUANTIZE      identity (everything runs in float)
SOFTMAX / LOGISTIC         dropped when they end the model (the graph returns logits)
RESIZE_BILINEAR /          identity for the same size; a broadcast for a 1x1 input; dropped (and
RESIZE_NEAREST_NEIGHBOR    recorded in meta["postprocess"]) when it ends the model
=========================  =====================================================================

Fused activations are kept. In a quantized model the output range of an op also clamps: a
uint8 output with zero point 0 cannot hold a negative value, which is how QAT graphs express
many ReLUs (e.g. MobileNetV3's ``.../Relu`` depthwise outputs, which have no fused
activation). Wherever an output range starts at exactly 0 but the op could produce negative
values, a ReLU (ReLU6 when the range ends at 6) is inserted. Other saturation is ignored.

Several files are chained in order: the single output of one feeds the single input of the
next (the two-part MobileNetV1 1.0 fixture). Unsupported ops raise a FormatError naming the
file, the operator index and the op.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import FormatError
from ..formats.tflite import TFLiteModel, TFLiteTensor, load_tflite
from ..formats.tmn import QuantizedTensor
from . import Imported, make_recipe
from ._common import Net, check_quantized, expand_dilation, lower
from ..formats._common import sha256_file

__all__ = ["import_tflite"]

_TAIL_OPS = {"SOFTMAX", "LOGISTIC", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RESHAPE",
             "SQUEEZE", "QUANTIZE", "DEQUANTIZE"}
_FUSED = {"NONE": (-math.inf, math.inf), "RELU": (0.0, math.inf), "RELU6": (0.0, 6.0),
          "RELU_N1_TO_1": (-1.0, 1.0), "RELU_0_TO_1": (0.0, 1.0)}
_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767)}

INF = math.inf


class _OpError(Exception):
    pass


def _qrange(t: TFLiteTensor) -> Optional[Tuple[float, float]]:
    """Real range a per-tensor quantized activation can hold, or None."""
    if not t.quantized or t.dtype not in _QRANGE or t.scale.size != 1:
        return None
    qmin, qmax = _QRANGE[t.dtype]
    s, z = float(t.scale[0]), int(t.zero_point.reshape(-1)[0])
    return (qmin - z) * s, (qmax - z) * s



class _FileImporter:
    """Maps the operators of one TFLite file into the shared Net."""

    def __init__(self, net: Net, model: TFLiteModel, is_last: bool, state: dict):
        self.net = net
        self.m = model
        self.t = model.tensors
        self.is_last = is_last
        self.state = state
        self.env: Dict[int, str] = {}  # tensor index -> our tensor name
        self.const: Dict[int, np.ndarray] = {}  # tensor index -> value (computed consts)
        self.rng: Dict[int, Tuple[float, float]] = {}  # float range of each activation
        self.tail = self._tail() if is_last else set()
        self.op = None

    # -- helpers ----------------------------------------------------------------------------
    def fail(self, msg):
        if self.op is not None:
            msg = f"operator {self.op.index} ({self._opname(self.op)}): {msg}"
        return FormatError(msg, self.m.path)

    @staticmethod
    def _opname(op):
        return op.name if op.custom_code is None else f"CUSTOM:{op.custom_code}"

    def _tail(self):
        readers: Dict[int, List[int]] = {}
        for op in self.m.operators:
            for i in op.inputs:
                if i >= 0:
                    readers.setdefault(i, []).append(op.index)
        outs = set(self.m.outputs)
        tail = set()
        for op in reversed(self.m.operators):
            if op.name not in _TAIL_OPS:
                continue
            ok = all((o in outs or readers.get(o)) and all(r in tail for r in readers.get(o, []))
                     for o in op.outputs)
            if ok:
                tail.add(op.index)
        return tail

    def is_const(self, i) -> bool:
        return i in self.const or (i >= 0 and i not in self.env and self.t[i].raw is not None)

    def cval(self, i) -> np.ndarray:
        if i in self.const:
            return self.const[i]
        t = self.t[i]
        if t.raw is None:
            raise self.fail(f"input {i} ('{t.name}') is not a constant")
        if t.data is None:
            raise self.fail(f"constant '{t.name}' has an unsupported storage ({t.dtype}"
                            f"{', sparse' if t.sparse else ''})")
        return t.data

    def act(self, i) -> str:
        if i in self.env:
            return self.env[i]
        if self.is_const(i):
            raise self.fail(f"input '{self.t[i].name}' is a constant where a feature map is "
                            "expected")
        raise self.fail(f"input tensor {i} ('{self.t[i].name}') is not produced by any earlier "
                        "operator")

    def shape(self, name):
        return self.net.shapes[name]

    def oname(self, k=0) -> str:
        t = self.t[self.op.outputs[k]]
        return t.name or f"{self.state['prefix']}t{t.index}"

    def src(self) -> str:
        return f"{os.path.basename(self.m.path)} operator {self.op.index} ({self.op.name})"

    def rng_of(self, i) -> Tuple[float, float]:
        return self.rng.get(i, (-INF, INF))

    # -- weights ----------------------------------------------------------------------------
    def weight(self, i, perm, key, dilation=(1, 1)) -> str:
        t = self.t[i]
        if i in self.const:  # computed constant, e.g. DEQUANTIZE of float16 weights
            arr = np.asarray(self.const[i], dtype=np.float32)
            arr = arr.transpose(perm) if perm else arr
            self.state["weight_dtypes"].add("float (computed)")
            return self.net.param(key, expand_dilation(arr, *dilation) if arr.ndim == 4 else arr)
        if t.raw is None:
            raise self.fail(f"weight '{t.name}' is not a constant")
        if t.data is None:
            raise self.fail(f"weight '{t.name}' has an unsupported storage ({t.dtype}"
                            f"{', sparse' if t.sparse else ''})")
        dh, dw = dilation
        if t.quantized and t.dtype in ("uint8", "int8"):
            q = t.raw.transpose(perm) if perm else t.raw
            scale = t.scale.astype(np.float32).reshape(-1)
            zp = t.zero_point.astype(np.int32).reshape(-1)
            axis = 0
            if scale.size > 1:
                axis = perm.index(t.quantized_dimension) if perm else t.quantized_dimension
            if zp.size != scale.size:
                zp = np.broadcast_to(zp, scale.shape).copy()
            ok = True
            if dh > 1 or dw > 1:
                if scale.size > 1 and axis != 0:
                    ok = False
                else:
                    q = expand_dilation(q, dh, dw, fill=zp if zp.size > 1 else zp[0])
            if ok:
                qt = QuantizedTensor(np.ascontiguousarray(q), scale, zp, axis)
                self.state["weight_dtypes"].add(
                    f"{t.dtype} {'per-channel' if scale.size > 1 else 'per-tensor'}")
                return self.net.param(key, qt.dequantize(), qt)
        arr = np.asarray(t.data, dtype=np.float32)
        arr = arr.transpose(perm) if perm else arr
        if dh > 1 or dw > 1:
            arr = expand_dilation(arr, dh, dw)
        self.state["weight_dtypes"].add(str(t.dtype) if not t.quantized else f"{t.dtype} (float)")
        return self.net.param(key, arr)

    def bias(self, i, key, n) -> Optional[str]:
        if i < 0:
            return None
        b = np.asarray(self.cval(i), np.float32).reshape(-1)
        if b.size != n:
            raise self.fail(f"bias has {b.size} values for {n} output channels")
        return self.net.param(key, b)

    # -- output bookkeeping -----------------------------------------------------------------
    def finish(self, out: str, rng=(-INF, INF), fused="NONE", k=0) -> None:
        """Apply the fused activation and the clamp implied by the output's quantized range,
        then bind the op's output tensor."""
        lo, hi = rng
        if fused not in _FUSED:
            raise self.fail(f"fused activation {fused} is not supported")
        flo, fhi = _FUSED[fused]
        if flo > lo or fhi < hi:
            out = self.net.clip(out, f"{out}/act", flo, fhi, src=self.src())
            lo, hi = max(lo, flo), min(hi, fhi)
        o = self.op.outputs[k]
        q = _qrange(self.t[o])
        if q is not None and q[0] == 0.0:
            step = float(self.t[o].scale[0])
            six = abs(q[1] - 6.0) <= 1.01 * step
            need_lo = lo < 0
            need_hi = six and hi > 6.0 + 1e-6
            if need_lo or need_hi:
                top = 6.0 if six else INF
                out = self.net.clip(out, f"{out}/qclamp", 0.0, top, src=self.src())
                lo, hi = max(lo, 0.0), min(hi, top)
                self.state["implied_clamps"] += 1
        self.env[o] = out
        self.rng[o] = (lo, hi)

    def alias(self, i_in, k=0):
        o = self.op.outputs[k]
        if self.is_const(i_in):
            self.const[o] = self.cval(i_in)
        else:
            self.env[o] = self.act(i_in)
            self.rng[o] = self.rng_of(i_in)

    # -- the ops ----------------------------------------------------------------------------
    def run(self):
        for op in self.m.operators:
            self.op = op
            handler = getattr(self, f"op_{op.name}", None)
            if op.custom_code is not None or handler is None:
                raise self.fail("this op is not supported by the TFLite importer")
            if len(op.outputs) != 1:
                raise self.fail(f"{len(op.outputs)} outputs are not supported")
            try:
                handler(op, op.options)
            except FormatError:
                raise
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError,
                    OverflowError) as e:  # options of the wrong type or size, and the like
                raise self.fail(f"malformed operator: {type(e).__name__}: {e}") from None
        self.op = None

    def _padding(self, opts):
        pad = opts.get("padding", "SAME")
        if pad == "SAME":
            return "same"
        if pad == "VALID":
            return 0
        raise self.fail(f"padding {pad!r} is not supported")

    def op_CONV_2D(self, op, o):
        x = self.act(op.inputs[0])
        w = self.t[op.inputs[1]]
        if len(w.shape) != 4:
            raise self.fail(f"weight shape {w.shape} is not OHWI")
        cout, _, _, cin_g = w.shape
        c = self.shape(x)[-1]
        if cin_g <= 0 or c % cin_g:
            raise self.fail(f"weight takes {cin_g} input channels, the input has {c}")
        name = self.net.unique(self.oname())
        dil = (o.get("dilation_h_factor", 1) or 1, o.get("dilation_w_factor", 1) or 1)
        wk = self.weight(op.inputs[1], (0, 3, 1, 2), f"{name}.weight", dil)
        bk = self.bias(op.inputs[2] if len(op.inputs) > 2 else -1, f"{name}.bias", cout)
        out = self.net.add("conv2d", [x], name, {"weight": wk, "bias": bk}, src=self.src(),
                           stride=(o.get("stride_h", 1), o.get("stride_w", 1)),
                           padding=self._padding(o), groups=c // cin_g)
        self.finish(out, fused=o.get("fused_activation_function", "NONE"))

    def op_DEPTHWISE_CONV_2D(self, op, o):
        x = self.act(op.inputs[0])
        w = self.t[op.inputs[1]]
        if len(w.shape) != 4 or w.shape[0] != 1:
            raise self.fail(f"depthwise weight shape {w.shape} is not 1HWC")
        c = self.shape(x)[-1]
        cout = w.shape[3]
        mult = o.get("depth_multiplier", 1) or 1
        if cout != c or (mult not in (0, 1)):
            raise self.fail(f"depth_multiplier {max(mult, cout // max(c, 1))} is not supported "
                            "(only 1: one filter per input channel)")
        name = self.net.unique(self.oname())
        dil = (o.get("dilation_h_factor", 1) or 1, o.get("dilation_w_factor", 1) or 1)
        wk = self.weight(op.inputs[1], (3, 0, 1, 2), f"{name}.weight", dil)
        bk = self.bias(op.inputs[2] if len(op.inputs) > 2 else -1, f"{name}.bias", cout)
        out = self.net.add("conv2d", [x], name, {"weight": wk, "bias": bk}, src=self.src(),
                           stride=(o.get("stride_h", 1), o.get("stride_w", 1)),
                           padding=self._padding(o), groups=c)
        self.finish(out, fused=o.get("fused_activation_function", "NONE"))

    def op_FULLY_CONNECTED(self, op, o):
        x = self.act(op.inputs[0])
        w = self.t[op.inputs[1]]
        if o.get("weights_format", "DEFAULT") not in ("DEFAULT", 0):
            raise self.fail(f"weights_format {o.get('weights_format')} is not supported")
        if len(w.shape) != 2:
            raise self.fail(f"weight shape {w.shape} is not (out, in)")
        name = self.net.unique(self.oname())
        shp = self.shape(x)
        if len(shp) != 2:
            x = self.net.add("flatten", [x], self.net.unique(f"{name}/flatten"), src=self.src())
        if self.shape(x)[1] != w.shape[1]:
            raise self.fail(f"weight takes {w.shape[1]} inputs, the input has {self.shape(x)[1]}")
        wk = self.weight(op.inputs[1], None, f"{name}.weight")
        bk = self.bias(op.inputs[2] if len(op.inputs) > 2 else -1, f"{name}.bias", w.shape[0])
        out = self.net.add("linear", [x], name, {"weight": wk, "bias": bk}, src=self.src())
        if o.get("keep_num_dims") and len(shp) == 4:
            out = self.net.add("reshape", [out], self.net.unique(f"{name}/keepdims"),
                               src=self.src(), shape=(shp[1], shp[2], w.shape[0]))
        self.finish(out, fused=o.get("fused_activation_function", "NONE"))

    # elementwise
    def _binary(self, op, o, kind):
        a, b = op.inputs[:2]
        fused = o.get("fused_activation_function", "NONE")
        ca, cb = self.is_const(a), self.is_const(b)
        if ca and cb:
            va, vb = self.cval(a), self.cval(b)
            f = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "DIV": np.divide}[kind]
            self.const[op.outputs[0]] = f(va, vb)
            return
        name = self.net.unique(self.oname())
        src = self.src()
        if ca or cb:
            xi, ci = (b, a) if ca else (a, b)
            x, cv = self.act(xi), np.asarray(self.cval(ci), np.float64)
            lo, hi = self.rng_of(xi)
            clo, chi = float(cv.min()), float(cv.max())
            if kind == "ADD" or (kind == "SUB" and cb):
                sign = 1.0 if kind == "ADD" else -1.0
                out = self.net.affine(x, name, 1.0, sign * cv, src=src)
                rng = (lo + min(sign * clo, sign * chi), hi + max(sign * clo, sign * chi))
            elif kind == "SUB":  # c - x
                out = self.net.affine(x, name, -1.0, cv, src=src)
                rng = (clo - hi, chi - lo)
            elif kind == "MUL" or (kind == "DIV" and cb):
                if kind == "DIV":
                    if np.any(cv == 0):
                        raise self.fail("division by a constant 0")
                    cv = 1.0 / cv
                out = self.net.affine(x, name, cv, 0.0, src=src)
                rng = _mul_range((lo, hi), (float(cv.min()), float(cv.max())))
            else:
                raise self.fail("dividing a constant by a feature map is not supported")
            self.finish(out, rng, fused)
            return
        xa, xb = self.act(a), self.act(b)
        sa, sb = self.shape(xa), self.shape(xb)
        ra, rb = self.rng_of(a), self.rng_of(b)
        if kind in ("ADD", "SUB") and tuple(sa[1:]) == tuple(sb[1:]):
            if kind == "SUB":
                xb = self.net.affine(xb, self.net.unique(f"{name}/neg"), -1.0, 0.0, src=src)
                rb = (-rb[1], -rb[0])
            out = self.net.add("add", [xa, xb], name, src=src)
            self.finish(out, (ra[0] + rb[0], ra[1] + rb[1]), fused)
            return
        if kind == "MUL":
            rng = _mul_range(ra, rb)
            if tuple(sa[1:]) == tuple(sb[1:]):
                out = self.net.add("mul_full", [xa, xb], name, src=src)
                self.finish(out, rng, fused)
                return
            for x, s in ((xa, xb), (xb, xa)):
                sx, ss = self.shape(x), self.shape(s)
                if len(sx) == 4 and len(ss) == 4 and tuple(ss[1:]) == (1, 1, sx[3]):
                    out = self.net.add("mul", [x, s], name, src=src)
                    self.finish(out, rng, fused)
                    return
        raise self.fail(f"{kind} of feature maps shaped {sa} and {sb} is not supported "
                        "(equal shapes, or (N,H,W,C) * (N,1,1,C) for MUL)")

    def op_ADD(self, op, o):
        self._binary(op, o, "ADD")

    def op_SUB(self, op, o):
        self._binary(op, o, "SUB")

    def op_MUL(self, op, o):
        self._binary(op, o, "MUL")

    def op_DIV(self, op, o):
        self._binary(op, o, "DIV")

    def _minmax(self, op, kind):
        a, b = op.inputs[:2]
        if self.is_const(a) == self.is_const(b):
            raise self.fail(f"{kind} is only supported between a feature map and a constant")
        xi, ci = (b, a) if self.is_const(a) else (a, b)
        cv = np.asarray(self.cval(ci), np.float64)
        if cv.size != 1 and not np.all(cv == cv.reshape(-1)[0]):
            raise self.fail(f"{kind} with a non-scalar constant is not supported")
        c = float(cv.reshape(-1)[0])
        x = self.act(xi)
        lo, hi = self.rng_of(xi)
        name = self.net.unique(self.oname())
        if kind == "MAXIMUM":
            out = self.net.clip(x, name, c, INF, src=self.src())
            self.finish(out, (max(lo, c), max(hi, c)))
        else:
            out = self.net.clip(x, name, -INF, c, src=self.src())
            self.finish(out, (min(lo, c), min(hi, c)))

    def op_MAXIMUM(self, op, o):
        self._minmax(op, "MAXIMUM")

    def op_MINIMUM(self, op, o):
        self._minmax(op, "MINIMUM")

    def _act_clip(self, op, lo, hi):
        x = self.act(op.inputs[0])
        r = self.rng_of(op.inputs[0])
        out = self.net.clip(x, self.net.unique(self.oname()), lo, hi, src=self.src())
        self.finish(out, (max(r[0], lo), min(max(r[1], lo), hi)))

    def op_RELU(self, op, o):
        self._act_clip(op, 0.0, INF)

    def op_RELU6(self, op, o):
        self._act_clip(op, 0.0, 6.0)

    def op_RELU_N1_TO_1(self, op, o):
        self._act_clip(op, -1.0, 1.0)

    def op_RELU_0_TO_1(self, op, o):
        self._act_clip(op, 0.0, 1.0)

    def op_HARD_SWISH(self, op, o):
        x = self.act(op.inputs[0])
        out = self.net.add("activation", [x], self.net.unique(self.oname()), src=self.src(),
                           activation="hardswish", alpha=1.0 / 6.0, beta=0.5)
        hi = self.rng_of(op.inputs[0])[1]
        self.finish(out, (-0.375, max(hi, 0.0)))

    def op_LOGISTIC(self, op, o):
        if op.index in self.tail:
            self.state["dropped"].append("LOGISTIC")
            self.state["output_activation"] = "sigmoid"
            return self.alias(op.inputs[0])
        raise self.fail("a sigmoid inside the network is not supported (only hard-sigmoid; a "
                        "final LOGISTIC is dropped)")

    def op_SOFTMAX(self, op, o):
        if op.index in self.tail:
            self.state["dropped"].append("SOFTMAX")
            self.state["output_activation"] = "softmax"
            return self.alias(op.inputs[0])
        if float(o.get("beta", 1.0)) != 1.0:
            raise self.fail(f"softmax beta {o.get('beta')} is not supported")
        x = self.act(op.inputs[0])
        out = self.net.add("softmax", [x], self.net.unique(self.oname()), src=self.src())
        self.finish(out, (0.0, 1.0))

    def op_QUANTIZE(self, op, o):
        self.alias(op.inputs[0])

    def op_DEQUANTIZE(self, op, o):
        self.alias(op.inputs[0])

    # pooling
    def _pool(self, op, o, kind):
        i = op.inputs[0]
        x = self.act(i)
        n, h, w, c = self.shape(x)
        kh, kw = o.get("filter_height", 1), o.get("filter_width", 1)
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        pad = self._padding(o)
        name = self.net.unique(self.oname())
        if pad == "same":
            oh, ow = -(-h // sh), -(-w // sw)
        else:
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        single = (oh, ow) == (1, 1) and kh >= h and kw >= w  # one window over everything
        if single and (h, w) == (1, 1):
            out = x  # identity (padding never counts: TF SAME, count_include_pad False)
        elif single and kind == "avg":
            out = self.net.add("global_avg_pool", [x], name, src=self.src())
        elif kind == "avg":
            out = self.net.add("avg_pool2d", [x], name, src=self.src(), kernel=(kh, kw),
                               stride=(sh, sw), padding=pad, count_include_pad=False)
        else:
            out = self.net.add("max_pool2d", [x], name, src=self.src(), kernel=(kh, kw),
                               stride=(sh, sw), padding=pad)
        self.finish(out, self.rng_of(i), o.get("fused_activation_function", "NONE"))

    def op_AVERAGE_POOL_2D(self, op, o):
        self._pool(op, o, "avg")

    def op_MAX_POOL_2D(self, op, o):
        self._pool(op, o, "max")

    def op_MEAN(self, op, o):
        i = op.inputs[0]
        x = self.act(i)
        axes = sorted({int(a) % 4 for a in np.asarray(self.cval(op.inputs[1])).reshape(-1)})
        if len(self.shape(x)) != 4 or axes != [1, 2]:
            raise self.fail(f"MEAN over axes {axes} of a {self.shape(x)} tensor is not supported "
                            "(only the spatial mean)")
        name = self.net.unique(self.oname())
        out = self.net.add("global_avg_pool", [x], name, src=self.src())
        if not o.get("keep_dims", False):
            out = self.net.add("flatten", [out], self.net.unique(f"{name}/squeeze"),
                               src=self.src())
        self.finish(out, self.rng_of(i))

    # shapes
    def _reshape_to(self, op, i, target: Sequence[int]):
        """Reshape feature map input i to `target` (with batch) in NHWC element order."""
        x = self.act(i)
        shp = self.shape(x)
        per = int(np.prod(shp[1:]))
        target = [int(v) for v in target]
        if not target:
            raise self.fail("reshape to a scalar is not supported")
        rest = target[1:]
        if target[0] not in (1, -1) and rest:
            raise self.fail(f"reshape {shp} -> {target} changes the batch dimension")
        if not rest:  # (N*...) -> flat over the batch: only with batch 1
            raise self.fail(f"reshape {shp} -> {target} merges the batch dimension")
        if rest.count(-1) > 1 or any(v == 0 or v < -1 for v in rest):
            raise self.fail(f"bad reshape target {target}")
        if -1 in rest:
            known = int(np.prod([v for v in rest if v != -1]))
            if known == 0 or per % known:
                raise self.fail(f"cannot reshape {shp} to {target}")
            rest[rest.index(-1)] = per // known
        if int(np.prod(rest)) != per:
            raise self.fail(f"cannot reshape {shp} to {target}")
        name = self.oname()
        if tuple(rest) == tuple(shp[1:]):
            out = x
        elif len(rest) == 1:
            out = self.net.add("flatten", [x], self.net.unique(name), src=self.src())
        elif len(rest) == 3:
            out = self.net.add("reshape", [x], self.net.unique(name), src=self.src(),
                               shape=tuple(rest))
        else:
            raise self.fail(f"reshape {shp} -> {target}: only rank 2 and rank 4 are supported")
        self.finish(out, self.rng_of(i))

    def op_RESHAPE(self, op, o):
        i = op.inputs[0]
        if len(op.inputs) > 1 and op.inputs[1] >= 0 and self.is_const(op.inputs[1]):
            target = np.asarray(self.cval(op.inputs[1])).reshape(-1)
        elif o.get("new_shape"):
            target = o["new_shape"]
        else:
            target = self.t[op.outputs[0]].shape
        if self.is_const(i):
            self.const[op.outputs[0]] = np.reshape(self.cval(i), [int(v) for v in target])
            return
        self._reshape_to(op, i, target)

    def op_SQUEEZE(self, op, o):
        i = op.inputs[0]
        shp = list(self.shape(self.act(i)))
        dims = [d % len(shp) for d in (o.get("squeeze_dims") or [])] or \
            [d for d, s in enumerate(shp) if s == 1]
        if 0 in dims:
            raise self.fail("squeezing the batch dimension is not supported")
        for d in dims:
            if shp[d] != 1:
                raise self.fail(f"cannot squeeze dimension {d} of {tuple(shp)}")
        target = [1] + [s for d, s in enumerate(shp) if d not in dims and d > 0]
        self._reshape_to(op, i, target)

    def op_CONCATENATION(self, op, o):
        xs = [self.act(i) for i in op.inputs]
        rank = len(self.shape(xs[0]))
        axis = int(o.get("axis", -1))
        if axis % rank != rank - 1:
            raise self.fail(f"concatenation along axis {axis} is not supported (channels only)")
        out = self.net.add("concat", xs, self.net.unique(self.oname()), src=self.src())
        rs = [self.rng_of(i) for i in op.inputs]
        self.finish(out, (min(r[0] for r in rs), max(r[1] for r in rs)),
                    o.get("fused_activation_function", "NONE"))

    def _pad(self, op, value):
        i = op.inputs[0]
        x = self.act(i)
        pads = np.asarray(self.cval(op.inputs[1])).astype(np.int64).reshape(-1, 2)
        if pads.shape[0] != 4 or pads[0].any() or pads[3].any() or (pads < 0).any():
            raise self.fail(f"padding {pads.tolist()} is not supported (spatial only)")
        out = self.net.add("pad", [x], self.net.unique(self.oname()), src=self.src(),
                           pads=(int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]),
                                 int(pads[2, 1])), value=value)
        lo, hi = self.rng_of(i)
        self.finish(out, (min(lo, value), max(hi, value)))

    def op_PAD(self, op, o):
        self._pad(op, 0.0)

    def op_PADV2(self, op, o):
        v = 0.0
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            v = float(np.asarray(self.cval(op.inputs[2])).reshape(-1)[0])
        self._pad(op, v)

    def _resize(self, op, o, kind):
        i = op.inputs[0]
        x = self.act(i)
        n, h, w, c = self.shape(x)
        size = [int(v) for v in np.asarray(self.cval(op.inputs[1])).reshape(-1)]
        if len(size) != 2:
            raise self.fail(f"resize size {size} is not (H, W)")
        oh, ow = size
        if (oh, ow) == (h, w):
            return self.alias(i)
        if op.index in self.tail:
            self.state["dropped"].append(op.name)
            self.state["postprocess"].append({
                "op": kind, "size": [oh, ow],
                "align_corners": bool(o.get("align_corners", False)),
                "half_pixel_centers": bool(o.get("half_pixel_centers", False))})
            return self.alias(i)
        if (h, w) == (1, 1):
            # Broadcast a 1x1 map: max pooling whose window always holds the one pixel
            # (padding never wins), one axis at a time.
            name = self.net.unique(self.oname())
            t = x
            if oh > 1:
                t = self.net.add("max_pool2d", [t], self.net.unique(f"{name}/rows"),
                                 src=self.src(), kernel=(oh, 1), stride=(1, 1),
                                 padding=(oh - 1, oh - 1, 0, 0))
            if ow > 1:
                t = self.net.add("max_pool2d", [t], name, src=self.src(), kernel=(1, ow),
                                 stride=(1, 1), padding=(0, 0, ow - 1, ow - 1))
            return self.finish(t, self.rng_of(i))
        raise self.fail(f"resizing {h}x{w} -> {oh}x{ow} inside the network is not supported "
                        "(only identity, 1x1 broadcast, or a final upsampling, which is dropped "
                        "and recorded in meta['postprocess'])")

    def op_RESIZE_BILINEAR(self, op, o):
        self._resize(op, o, "resize_bilinear")

    def op_RESIZE_NEAREST_NEIGHBOR(self, op, o):
        self._resize(op, o, "resize_nearest")


def _mul_range(a, b):
    with np.errstate(invalid="ignore"):
        vals = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return (-INF, INF)
    return (min(vals), max(vals))


def import_tflite(paths, name: Optional[str] = None) -> Imported:
    """Import one .tflite file, or several chained in order (see the module docstring)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("import_tflite needs at least one file")
    models = [load_tflite(p) for p in paths]
    first = models[0]
    base = name or os.path.splitext(os.path.basename(paths[-1] if len(paths) == 1 else
                                                     paths[0]))[0]
    net = Net(paths[0], base)
    state = {"dropped": [], "postprocess": [], "weight_dtypes": set(), "implied_clamps": 0,
             "output_activation": None, "prefix": ""}
    chain_notes = []

    if len(first.inputs) != 1:
        raise FormatError(f"the model has {len(first.inputs)} inputs; only single-input image "
                          "models are supported", first.path)
    tin = first.tensors[first.inputs[0]]
    if len(tin.shape) != 4:
        raise FormatError(f"input '{tin.name}' has shape {tin.shape}; an NHWC image input is "
                          "needed", first.path)
    prev_out = None
    prev_rng = None
    for k, model in enumerate(models):
        net.path = model.path
        state["prefix"] = f"f{k}/" if len(models) > 1 else ""
        imp = _FileImporter(net, model, k == len(models) - 1, state)
        if len(model.inputs) != 1:
            raise FormatError(f"the model has {len(model.inputs)} inputs; chained files need "
                              "exactly one", model.path)
        i0 = model.inputs[0]
        t0 = model.tensors[i0]
        if k == 0:
            x = net.add_input(t0.name or "input", t0.shape)
            imp.env[i0] = x
            q = _qrange(t0)
            imp.rng[i0] = q if q is not None else (-INF, INF)
        else:
            have = tuple(net.shapes[prev_out][1:])
            want = tuple(t0.shape[1:]) if t0.shape else have
            if have != want:
                raise FormatError(f"cannot chain: the previous file's output is {have}, this "
                                  f"file's input '{t0.name}' is {want}", model.path)
            prev_t = models[k - 1].tensors[models[k - 1].outputs[0]]
            same_q = (prev_t.scale is None) == (t0.scale is None) and (
                t0.scale is None or (np.allclose(prev_t.scale, t0.scale, rtol=1e-6)
                                     and np.array_equal(prev_t.zero_point, t0.zero_point)))
            chain_notes.append({"file": os.path.basename(model.path),
                                "input": t0.name, "qparams_match_previous_output": bool(same_q)})
            imp.env[i0] = prev_out
            imp.rng[i0] = prev_rng
        imp.run()
        outs = list(model.outputs)
        if not outs:
            raise FormatError("the model has no output", model.path)
        if k < len(models) - 1:
            if len(outs) != 1:
                raise FormatError(f"cannot chain a model with {len(outs)} outputs", model.path)
        missing = [o for o in outs if o not in imp.env]
        if missing:
            raise FormatError(f"output '{model.tensors[missing[0]].name}' is a constant or is "
                              "never produced", model.path)
        if k < len(models) - 1:
            prev_out, prev_rng = imp.env[outs[0]], imp.rng_of(outs[0])
        else:
            net.outputs = [imp.env[o] for o in outs]

    out_shape = net.shapes[net.outputs[0]]
    num_classes = int(out_shape[-1]) if len(out_shape) == 2 else None
    label_offset = 1 if num_classes == 1001 else 0

    # preprocessing recipe from the input tensor
    h, w = int(tin.shape[1]), int(tin.shape[2])
    crop = 0.875 if num_classes is not None else 1.0
    if tin.dtype == "float32":
        recipe = make_recipe((h, w), 127.5, 127.5, input_dtype="float32", crop=crop,
                             source="assumed: TF/Keras MobileNet convention (x - 127.5) / 127.5 "
                                    "(a float .tflite does not record its normalisation)")
    elif tin.dtype in ("uint8", "int8") and tin.quantized and tin.scale.size == 1:
        s, z = float(tin.scale[0]), int(tin.zero_point.reshape(-1)[0])
        mean = z if tin.dtype == "uint8" else z + 128
        recipe = make_recipe((h, w), mean, 1.0 / s, input_dtype=tin.dtype, crop=crop,
                             quantization=(s, z),
                             source=f"from the {tin.dtype} input tensor's quantization "
                                    f"(scale {s:.8g}, zero point {z})"
                                    + ("; int8 input taken as pixel - 128"
                                       if tin.dtype == "int8" else ""))
    else:
        raise FormatError(f"input '{tin.name}' is {tin.dtype}; float32, uint8 or int8 "
                          "(per-tensor) inputs are supported", first.path)

    meta = {
        "source_format": "tflite",
        "num_classes": num_classes,
        "label_offset": label_offset,
        "output": "logits",
        "dropped_tail": list(state["dropped"]),
        "output_activation": state["output_activation"],
        "resolution": [h, w],
    }
    if state["postprocess"]:
        meta["postprocess"] = list(state["postprocess"])
    graph = lower(net, meta)
    quantized = check_quantized(graph, net.quantized)

    provenance = {
        "source_format": "tflite",
        "importer": "tinymnet.importers.tflite",
        "files": [{"name": os.path.basename(p), "bytes": os.path.getsize(p),
                   "sha256": sha256_file(p)} for p in paths],
        "description": [m.description for m in models],
        "input_dtype": tin.dtype,
        "weight_dtypes": sorted(state["weight_dtypes"]),
        "quantized_weights": len(quantized),
        "implied_activation_clamps": state["implied_clamps"],
        "dropped_tail": list(state["dropped"]),
    }
    if chain_notes:
        provenance["chain"] = chain_notes
    return Imported(graph, quantized, recipe, num_classes, label_offset, provenance)
