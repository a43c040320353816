"""Import an ``.onnx`` image classifier into our NHWC graph (see :mod:`tinymnet.importers`).

ONNX tensors are NCHW; ours are NHWC. Every feature map is tracked by its logical ONNX shape
(N, C, H, W) or (N, C) while the graph holds the NHWC tensor, so channel-wise ops map one to
one. What depends on the NCHW *element order* (a Flatten/Reshape of a map with both C > 1
and H*W > 1, a Transpose of a feature map) is refused with a clear error.

=====================================  ==========================================================
ONNX                                   tinymnet
=====================================  ==========================================================
Conv                                   conv2d (pads, auto_pad SAME_UPPER/SAME_LOWER/VALID,
                                       group, dilations -> dense kernel with zeros)
BatchNormalization                     batchnorm (folded into the conv at compile time)
Relu, Clip, HardSigmoid, HardSwish     relu / relu6 / clips, hardsigmoid, hardswish;
x * Clip(x + 3, 0, 6) / 6 and friends  hardswish
Add / Sub / Mul / Div                  add, mul (x * (N,C,1,1) gate), an affine for a
                                       per-channel or scalar constant (an Add after a
                                       Conv/MatMul becomes its bias)
GlobalAveragePool, AveragePool,        global_avg_pool, avg_pool2d, max_pool2d (ceil_mode as
MaxPool, GlobalMaxPool                 extra end padding)
Flatten, Reshape, Squeeze, Unsqueeze   flatten / reshape where the element order agrees
Gemm, MatMul                           linear
Concat (channels), Pad (spatial)       concat, pad
Softmax / LogSoftmax / Sigmoid         dropped when they end the model (logits out)
Identity, Dropout, Cast                identity
Shape, Gather, Slice, Concat, ...      evaluated on constants (shape computations); the batch
                                       dimension is symbolic
=====================================  ==========================================================

The input size comes from the model when it is fixed; otherwise pass ``input_size=(H, W)``.
The PaddleOCR text-direction classifier (PaddlePaddle producer, 3-channel input, 2 classes)
defaults to 48 x 192 with (x / 255 - 0.5) / 0.5.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import FormatError
from ..formats._common import sha256_file
from ..formats.onnx_reader import OnnxModel, OnnxNode, load_onnx
from . import Imported, make_recipe
from ._common import Net, expand_dilation, lower

__all__ = ["import_onnx"]

BATCH = -987654321  # the symbolic batch size inside shape computations (fits int32)
INF = math.inf
_DROPPABLE = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
_PASS = {"Identity", "Dropout", "Cast"}

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


class _Importer:
    def __init__(self, model: OnnxModel, net: Net, tail: set):
        self.m = model
        self.net = net
        self.tail = tail
        self.consts: Dict[str, np.ndarray] = dict(model.tensors)
        self.acts: Dict[str, str] = {}  # onnx name -> our tensor
        self.node: Optional[OnnxNode] = None
        self.index = -1
        self.dropped: List[str] = []

    # -- helpers --------------------------------------------------------------------------
    def fail(self, msg):
        if self.node is not None:
            n = self.node
            msg = f"node {self.index} ({n.op_type} '{n.name or n.outputs[0]}'): {msg}"
        return FormatError(msg, self.m.path)

    def src(self):
        n = self.node
        return f"{os.path.basename(self.m.path)} node {self.index} ({n.op_type} '{n.name}')"

    def is_const(self, name) -> bool:
        return name in self.consts

    def c(self, name) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(f"input '{name}' must be a constant")
        return self.consts[name]

    def a(self, name) -> str:
        if name in self.acts:
            return self.acts[name]
        if name in self.consts:
            raise self.fail(f"input '{name}' is a constant where a feature map is expected")
        raise self.fail(f"input '{name}' is not produced by any supported node")

    def lshape(self, name) -> tuple:
        """Logical ONNX shape of feature map `name`: (N, C, H, W) or (N, C)."""
        s = self.net.shapes[self.a(name)]
        return (s[0], s[3], s[1], s[2]) if len(s) == 4 else tuple(s)

    def oname(self, k=0) -> str:
        return self.node.outputs[k] or f"{self.node.op_type}_{self.index}"

    def bind(self, out: str, k=0):
        self.acts[self.node.outputs[k]] = out

    def attr(self, key, default=None):
        return self.node.attributes.get(key, default)

    def opt_input(self, k) -> Optional[str]:
        ins = self.node.inputs
        return ins[k] if len(ins) > k and ins[k] else None

    def channel_vector(self, value, name) -> Optional[np.ndarray]:
        """A constant operand of an elementwise op with feature map `name` as a (1,) or (C,)
        vector, or None when it does not broadcast per channel."""
        a = np.asarray(value, dtype=np.float64)
        if a.size == 1:
            return a.reshape(1)
        shp = self.lshape(name)
        rank = len(shp)
        if a.ndim > rank:
            return None
        full = (1,) * (rank - a.ndim) + a.shape
        if full[0] != 1 or full[1] != shp[1] or any(d != 1 for d in full[2:]):
            return None
        return a.reshape(-1)

    # -- driver -----------------------------------------------------------------------------
    def run(self):
        for i, node in enumerate(self.m.nodes):
            self.node, self.index = node, i
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(f"op domain '{node.domain}' is not supported")
            if all(self.is_const(t) for t in node.inputs if t) and node.op_type not in (
                    "Shape",) and node.inputs:
                self.fold_constant(node)
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self.fail("this op is not supported by the ONNX importer")
            try:
                handler(node)
            except FormatError:
                raise
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError,
                    OverflowError) as e:  # attributes of the wrong type or size, and the like
                raise self.fail(f"malformed node: {type(e).__name__}: {e}") from None
        self.node = None

    # -- constant folding (shape arithmetic and weight preprocessing) -------------------------
    def fold_constant(self, n: OnnxNode):
        op = n.op_type
        ins = [self.consts[t] if t else None for t in n.inputs]
        A = self.attr
        try:
            if op in ("Identity", "Dropout"):
                out = ins[0]
            elif op == "Cast":
                out = ins[0].astype(_onnx_dtype(A("to")))
            elif op == "Reshape":
                shape = [int(v) for v in ins[1]]
                shape = [ins[0].shape[i] if v == 0 and not A("allowzero", 0) else v
                         for i, v in enumerate(shape)]
                out = ins[0].reshape(shape)
            elif op in ("Add", "Sub", "Mul", "Div"):
                f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
                if f is None:
                    a0, a1 = ins[0], ins[1]
                    f = np.floor_divide if a0.dtype.kind in "iu" and a1.dtype.kind in "iu" \
                        else np.divide
                out = f(ins[0], ins[1])
            elif op == "Concat":
                out = np.concatenate([np.atleast_1d(v) for v in ins if v is not None],
                                     axis=A("axis", 0))
            elif op == "Gather":
                out = np.take(ins[0], ins[1], axis=A("axis", 0))
            elif op == "Unsqueeze":
                axes = A("axes") if A("axes") is not None else [int(v) for v in ins[1]]
                out = ins[0]
                for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
                    out = np.expand_dims(out, ax)
            elif op == "Squeeze":
                axes = A("axes") if A("axes") is not None else (
                    [int(v) for v in ins[1]] if len(ins) > 1 and ins[1] is not None else None)
                out = np.squeeze(ins[0], axis=tuple(axes) if axes is not None else None)
            elif op == "Slice":
                if len(ins) > 1:
                    starts, ends = ins[1], ins[2]
                    axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
                    steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
                else:
                    starts, ends = A("starts"), A("ends")
                    axes = A("axes", list(range(len(starts))))
                    steps = [1] * len(starts)
                sl = [slice(None)] * ins[0].ndim
                for s, e, ax, st in zip(starts, ends, axes, steps):
                    sl[int(ax)] = slice(int(s), int(e), int(st))
                out = ins[0][tuple(sl)]
            elif op == "Transpose":
                out = np.transpose(ins[0], A("perm"))
            elif op == "ConstantOfShape":
                v = A("value")
                v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
                out = np.full([int(d) for d in ins[0]], v[0], dtype=v.dtype)
            elif op == "Sqrt":
                out = np.sqrt(ins[0])
            elif op == "Neg":
                out = -ins[0]
            elif op == "Reciprocal":
                out = 1.0 / ins[0]
            elif op == "Flatten":
                ax = A("axis", 1)
                out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
            else:
                raise self.fail("this op on constants is not supported")
        except FormatError:
            raise
        except Exception as e:  # noqa: BLE001 - numpy shape errors and the like
            raise self.fail(f"cannot evaluate on constants: {type(e).__name__}: {e}") from None
        self.consts[n.outputs[0]] = np.asarray(out)

    # -- shape ops --------------------------------------------------------------------------
    def op_Shape(self, n):
        if self.is_const(n.inputs[0]):
            self.consts[n.outputs[0]] = np.array(self.c(n.inputs[0]).shape, np.int64)
            return
        shp = self.lshape(n.inputs[0])
        s = np.array([BATCH] + [int(v) for v in shp[1:]], np.int64)
        start, end = self.attr("start", 0), self.attr("end")
        self.consts[n.outputs[0]] = s[start:end]

    def op_Identity(self, n):
        self.bind(self.a(n.inputs[0]))

    op_Dropout = op_Identity

    def op_Cast(self, n):
        if _onnx_dtype(self.attr("to")) not in (np.float32, np.float64, np.float16):
            raise self.fail("casting a feature map to a non-float type is not supported")
        self.bind(self.a(n.inputs[0]))

    def _to_shape(self, n, target: Sequence[int]):
        """Reshape feature map input 0 to logical `target` (with batch first)."""
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        per = int(np.prod(shp[1:]))
        t = [int(v) for v in target]
        if not t or t[0] not in (BATCH, -1, 1):
            raise self.fail(f"reshape {shp} -> {t} does not keep the batch dimension first")
        rest = t[1:]
        if any(v < -1 or v == 0 for v in rest):
            raise self.fail(f"reshape target {t} is not supported (shape arithmetic on the "
                            "batch dimension?)")
        if -1 in rest:
            known = int(np.prod([v for v in rest if v != -1]))
            if known == 0 or per % known or rest.count(-1) > 1:
                raise self.fail(f"cannot reshape {shp} to {t}")
            rest[rest.index(-1)] = per // known
        if int(np.prod(rest)) != per:
            raise self.fail(f"cannot reshape {shp} to {t}")
        rest = tuple(rest)
        if rest == tuple(shp[1:]):
            return self.bind(x)
        spatial = int(np.prod(shp[2:])) if len(shp) == 4 else 1
        if len(rest) == 1 and (len(shp) == 2 or spatial == 1 or shp[1] == 1):
            return self.bind(self.net.add("flatten", [x], self.oname(), src=self.src()))
        if len(rest) == 3 and rest[1:] == (1, 1) and (len(shp) == 2 or spatial == 1):
            return self.bind(self.net.add("reshape", [x], self.oname(), src=self.src(),
                                          shape=(1, 1, rest[0])))
        raise self.fail(f"reshape {shp} -> (N, {', '.join(map(str, rest))}) depends on the "
                        "NCHW element order, which the NHWC graph cannot represent")

    def op_Reshape(self, n):
        target = [int(v) for v in np.asarray(self.c(n.inputs[1])).reshape(-1)]
        shp = self.lshape(n.inputs[0])
        if not self.attr("allowzero", 0):
            target = [(BATCH if i == 0 else shp[i]) if v == 0 else v
                      for i, v in enumerate(target)]
        self._to_shape(n, target)

    def op_Flatten(self, n):
        axis = self.attr("axis", 1)
        if axis != 1:
            raise self.fail(f"Flatten axis {axis} is not supported (only 1)")
        self._to_shape(n, [BATCH, -1])

    def op_Squeeze(self, n):
        axes = self.attr("axes")
        if axes is None and self.opt_input(1):
            axes = [int(v) for v in self.c(n.inputs[1]).reshape(-1)]
        shp = self.lshape(n.inputs[0])
        axes = [a % len(shp) for a in axes] if axes is not None else \
            [i for i, s in enumerate(shp) if s == 1 and i > 0]
        if 0 in axes or any(shp[a] != 1 for a in axes):
            raise self.fail(f"cannot squeeze axes {axes} of {shp}")
        self._to_shape(n, [BATCH] + [s for i, s in enumerate(shp) if i not in axes and i > 0])

    def op_Unsqueeze(self, n):
        axes = self.attr("axes")
        if axes is None:
            axes = [int(v) for v in self.c(n.inputs[1]).reshape(-1)]
        shp = list(self.lshape(n.inputs[0]))
        rank = len(shp) + len(axes)
        for a in sorted(a % rank for a in axes):
            shp.insert(a, 1)
        if shp[0] != 1 and 0 in [a % rank for a in axes]:
            raise self.fail("unsqueezing in front of the batch dimension is not supported")
        self._to_shape(n, [BATCH] + shp[1:])

    def op_Transpose(self, n):
        perm = list(self.attr("perm") or [])
        shp = self.lshape(n.inputs[0])
        if perm == list(range(len(shp))):
            return self.bind(self.a(n.inputs[0]))
        raise self.fail(f"Transpose {perm} of a feature map {shp} is not supported (it depends "
                        "on the NCHW layout)")

    # -- conv / norm / linear -----------------------------------------------------------------
    def _pads(self, n, shp, kernel, strides, dil=(1, 1)):
        auto = self.attr("auto_pad", "NOTSET")
        if isinstance(auto, bytes):
            auto = auto.decode()
        if auto == "SAME_UPPER":
            return "same"
        if auto == "VALID":
            return 0
        if auto == "SAME_LOWER":
            out = []
            for size, k, s in zip(shp[2:], kernel, strides):
                o = -(-size // s)
                total = max((o - 1) * s + k - size, 0)
                out.append((total - total // 2, total // 2))
            return (out[0][0], out[0][1], out[1][0], out[1][1])
        pads = self.attr("pads") or [0, 0, 0, 0]
        if len(pads) != 4:
            raise self.fail(f"pads {pads} are not 2-D")
        top, left, bottom, right = pads
        return (top, bottom, left, right)

    def op_Conv(self, n):
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        if len(shp) != 4:
            raise self.fail(f"Conv on a {shp} tensor is not supported (2-D convs only)")
        w = np.asarray(self.c(n.inputs[1]), np.float32)
        if w.ndim != 4:
            raise self.fail(f"weight shape {w.shape} is not (Cout, Cin/g, KH, KW)")
        groups = int(self.attr("group", 1))
        strides = tuple(self.attr("strides") or (1, 1))
        dil = tuple(self.attr("dilations") or (1, 1))
        w = expand_dilation(w, dil[0], dil[1])
        pads = self._pads(n, shp, w.shape[2:], strides)
        name = self.oname()
        wk = self.net.param(n.inputs[1], w)
        bk = None
        if self.opt_input(2):
            b = np.asarray(self.c(n.inputs[2]), np.float32).reshape(-1)
            if b.size != w.shape[0]:
                raise self.fail(f"bias has {b.size} values for {w.shape[0]} channels")
            bk = self.net.param(n.inputs[2], b)
        self.bind(self.net.add("conv2d", [x], name, {"weight": wk, "bias": bk}, src=self.src(),
                               stride=strides, padding=pads, groups=groups))

    def op_BatchNormalization(self, n):
        x = self.a(n.inputs[0])
        keys = {role: self.net.param(n.inputs[k], np.asarray(self.c(n.inputs[k])).reshape(-1))
                for k, role in ((1, "gamma"), (2, "beta"), (3, "mean"), (4, "var"))}
        self.bind(self.net.add("batchnorm", [x], self.oname(), keys, src=self.src(),
                               eps=float(self.attr("epsilon", 1e-5))))

    def _linear(self, x_name, weight, bias=None):
        x = self.a(x_name)
        shp = self.lshape(x_name)
        if len(shp) != 2:
            raise self.fail(f"a matrix product needs an (N, K) input, got {shp}")
        name = self.oname()
        wk = self.net.param(f"{name}.weight", weight)
        bk = None if bias is None else self.net.param(f"{name}.bias", bias)
        self.bind(self.net.add("linear", [x], name, {"weight": wk, "bias": bk}, src=self.src()))

    def op_Gemm(self, n):
        if self.attr("transA", 0):
            raise self.fail("Gemm with transA is not supported")
        b = np.asarray(self.c(n.inputs[1]), np.float64)
        w = b if self.attr("transB", 0) else b.T
        w = w * float(self.attr("alpha", 1.0))
        bias = None
        if self.opt_input(2):
            cv = np.asarray(self.c(n.inputs[2]), np.float64) * float(self.attr("beta", 1.0))
            if cv.size not in (1, w.shape[0]):
                raise self.fail(f"Gemm bias of shape {cv.shape} is not per output")
            bias = np.broadcast_to(cv.reshape(-1), (w.shape[0],))
        self._linear(n.inputs[0], w, bias)

    def op_MatMul(self, n):
        if self.is_const(n.inputs[0]):
            raise self.fail("a constant times a feature map is not supported")
        b = np.asarray(self.c(n.inputs[1]), np.float64)
        if b.ndim != 2:
            raise self.fail(f"MatMul with a {b.shape} constant is not supported")
        self._linear(n.inputs[0], b.T)

    # -- elementwise ----------------------------------------------------------------------------
    def _binary(self, n, kind):
        a, b = n.inputs[:2]
        name, src = self.oname(), self.src()
        if self.is_const(a) or self.is_const(b):
            xi, ci = (b, a) if self.is_const(a) else (a, b)
            x = self.a(xi)
            v = self.channel_vector(self.c(ci), xi)
            if v is None:
                raise self.fail(f"constant of shape {np.shape(self.c(ci))} does not broadcast "
                                f"per channel over {self.lshape(xi)}")
            if kind == "Add":
                return self.bind(self.net.affine(x, name, 1.0, v, src=src))
            if kind == "Sub":
                if ci == b:
                    return self.bind(self.net.affine(x, name, 1.0, -v, src=src))
                return self.bind(self.net.affine(x, name, -1.0, v, src=src))
            if kind == "Mul":
                return self.bind(self.net.affine(x, name, v, 0.0, src=src))
            if ci == b:  # Div by constant
                if np.any(v == 0):
                    raise self.fail("division by a constant 0")
                return self.bind(self.net.affine(x, name, 1.0 / v, 0.0, src=src))
            raise self.fail("dividing a constant by a feature map is not supported")
        xa, xb = self.a(a), self.a(b)
        sa, sb = self.lshape(a), self.lshape(b)
        if tuple(sa[1:]) == tuple(sb[1:]):
            if kind == "Add":
                return self.bind(self.net.add("add", [xa, xb], name, src=src))
            if kind == "Sub":
                neg = self.net.affine(xb, f"{name}/neg", -1.0, 0.0, src=src)
                return self.bind(self.net.add("add", [xa, neg], name, src=src))
            if kind == "Mul":
                return self.bind(self.net.add("mul_full", [xa, xb], name, src=src))
        if kind == "Mul" and len(sa) == 4 and len(sb) == 4:
            for x, s, shx, shs in ((xa, xb, sa, sb), (xb, xa, sb, sa)):
                if shs[1] == shx[1] and tuple(shs[2:]) == (1, 1):
                    return self.bind(self.net.add("mul", [x, s], name, src=src))
        raise self.fail(f"{kind} of feature maps shaped {sa} and {sb} is not supported (equal "
                        "shapes, or (N,C,H,W) * (N,C,1,1) for Mul)")

    def op_Add(self, n):
        self._binary(n, "Add")

    def op_Sub(self, n):
        self._binary(n, "Sub")

    def op_Mul(self, n):
        self._binary(n, "Mul")

    def op_Div(self, n):
        self._binary(n, "Div")

    def op_Relu(self, n):
        self.bind(self.net.clip(self.a(n.inputs[0]), self.oname(), 0.0, INF, src=self.src()))

    def op_Clip(self, n):
        lo, hi = self.attr("min", -INF), self.attr("max", INF)
        if self.opt_input(1):
            lo = float(np.asarray(self.c(n.inputs[1])).reshape(-1)[0])
        if self.opt_input(2):
            hi = float(np.asarray(self.c(n.inputs[2])).reshape(-1)[0])
        if lo > hi:
            raise self.fail(f"Clip min {lo} > max {hi}")
        self.bind(self.net.clip(self.a(n.inputs[0]), self.oname(), lo, hi, src=self.src()))

    def op_HardSigmoid(self, n):
        self.bind(self.net.add("activation", [self.a(n.inputs[0])], self.oname(), src=self.src(),
                               activation="hardsigmoid", alpha=float(self.attr("alpha", 0.2)),
                               beta=float(self.attr("beta", 0.5))))

    def op_HardSwish(self, n):
        self.bind(self.net.add("activation", [self.a(n.inputs[0])], self.oname(), src=self.src(),
                               activation="hardswish", alpha=1.0 / 6.0, beta=0.5))

    def _drop_tail(self, n, what):
        if self.index in self.tail:
            self.dropped.append(n.op_type)
            return self.bind(self.a(n.inputs[0]))
        raise self.fail(f"{what} inside the network is not supported (only at the end, where "
                        "it is dropped)")

    def op_Softmax(self, n):
        if self.index in self.tail:
            return self._drop_tail(n, "softmax")
        shp = self.lshape(n.inputs[0])
        axis = self.attr("axis", 1 if self.m.opset.get("ai.onnx", 13) < 13 else -1)
        if len(shp) != 2 or axis % 2 != 1:
            raise self.fail(f"softmax over axis {axis} of {shp} is not supported")
        self.bind(self.net.add("softmax", [self.a(n.inputs[0])], self.oname(), src=self.src()))

    def op_LogSoftmax(self, n):
        self._drop_tail(n, "log-softmax")

    def op_Sigmoid(self, n):
        self._drop_tail(n, "a sigmoid (only hard-sigmoid is supported)")

    # -- pooling --------------------------------------------------------------------------
    def op_GlobalAveragePool(self, n):
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        if len(shp) != 4:
            raise self.fail(f"pooling a {shp} tensor is not supported")
        if shp[2:] == (1, 1):
            return self.bind(x)
        self.bind(self.net.add("global_avg_pool", [x], self.oname(), src=self.src()))

    def op_GlobalMaxPool(self, n):
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        if shp[2:] == (1, 1):
            return self.bind(x)
        self.bind(self.net.add("max_pool2d", [x], self.oname(), src=self.src(),
                               kernel=shp[2:], stride=(1, 1)))

    def _pool_geometry(self, n, shp):
        kernel = tuple(self.attr("kernel_shape"))
        strides = tuple(self.attr("strides") or (1, 1))
        if len(kernel) != 2:
            raise self.fail(f"{len(kernel)}-D pooling is not supported")
        if any(d != 1 for d in (self.attr("dilations") or (1, 1))):
            raise self.fail("dilated pooling is not supported")
        pads = self._pads(n, shp, kernel, strides)
        if self.attr("ceil_mode", 0):
            if pads == "same":
                raise self.fail("ceil_mode with auto_pad SAME is not supported")
            pads = list(pads if pads != 0 else (0, 0, 0, 0))
            for d, (size, k, s) in enumerate(zip(shp[2:], kernel, strides)):
                before, after = pads[2 * d], pads[2 * d + 1]
                span = size + before + after - k
                out = -(-span // s) + 1
                if (out - 1) * s >= size + before:  # last window would start in the padding
                    out -= 1
                pads[2 * d + 1] += max((out - 1) * s + k - (size + before + after), 0)
            pads = tuple(pads)
        return kernel, strides, pads

    def op_AveragePool(self, n):
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        kernel, strides, pads = self._pool_geometry(n, shp)
        include = bool(self.attr("count_include_pad", 0))
        if include and self.attr("ceil_mode", 0):
            raise self.fail("AveragePool with count_include_pad and ceil_mode is not supported")
        if kernel == tuple(shp[2:]) and pads in (0, (0, 0, 0, 0)):
            return self.bind(self.net.add("global_avg_pool", [x], self.oname(), src=self.src()))
        self.bind(self.net.add("avg_pool2d", [x], self.oname(), src=self.src(), kernel=kernel,
                               stride=strides, padding=pads, count_include_pad=include))

    def op_MaxPool(self, n):
        if len([o for o in n.outputs if o]) > 1:
            raise self.fail("MaxPool indices output is not supported")
        x = self.a(n.inputs[0])
        shp = self.lshape(n.inputs[0])
        kernel, strides, pads = self._pool_geometry(n, shp)
        self.bind(self.net.add("max_pool2d", [x], self.oname(), src=self.src(), kernel=kernel,
                               stride=strides, padding=pads))

    # -- the rest -------------------------------------------------------------------------
    def op_Concat(self, n):
        names = [t for t in n.inputs if t]
        if any(self.is_const(t) for t in names):
            raise self.fail("concatenating constants with feature maps is not supported")
        shp = self.lshape(names[0])
        axis = self.attr("axis", 1) % len(shp)
        if axis != 1:
            raise self.fail(f"Concat along axis {axis} is not supported (channels only)")
        self.bind(self.net.add("concat", [self.a(t) for t in names], self.oname(),
                               src=self.src()))

    def op_Pad(self, n):
        mode = self.attr("mode", "constant")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode != "constant":
            raise self.fail(f"Pad mode '{mode}' is not supported")
        pads = self.attr("pads")
        if pads is None:
            pads = [int(v) for v in self.c(n.inputs[1]).reshape(-1)]
        value = float(self.attr("value", 0.0))
        if self.opt_input(2):
            value = float(np.asarray(self.c(n.inputs[2])).reshape(-1)[0])
        shp = self.lshape(n.inputs[0])
        if len(shp) != 4 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or \
                min(pads) < 0:
            raise self.fail(f"pads {pads} are not supported (non-negative spatial padding only)")
        self.bind(self.net.add("pad", [self.a(n.inputs[0])], self.oname(), src=self.src(),
                               pads=(pads[2], pads[6], pads[3], pads[7]), value=value))


def _onnx_dtype(code):
    return {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
            9: np.bool_, 10: np.float16, 11: np.float64}.get(int(code or 1), np.float32)


def _tail(model: OnnxModel) -> set:
    readers: Dict[str, List[int]] = {}
    for i, n in enumerate(model.nodes):
        for t in n.inputs:
            if t:
                readers.setdefault(t, []).append(i)
    outs = {o.name for o in model.outputs}
    tail = set()
    for i in range(len(model.nodes) - 1, -1, -1):
        n = model.nodes[i]
        if n.op_type not in _DROPPABLE and n.op_type not in _PASS:
            continue
        if all((o in outs or readers.get(o)) and all(r in tail for r in readers.get(o, []))
               for o in n.outputs if o):
            tail.add(i)
    return tail


def _is_ppocr_cls(model: OnnxModel) -> bool:
    if not model.inputs or not model.outputs:
        return False
    shp_in, shp_out = model.inputs[0].shape, model.outputs[0].shape
    return (model.producer_name.lower().startswith("paddle") and shp_in is not None
            and len(shp_in) == 4 and shp_in[1] == 3 and shp_out is not None
            and len(shp_out) == 2 and shp_out[1] == 2)


def import_onnx(path, input_size=None, mean=None, std=None, name: Optional[str] = None,
                crop: Optional[float] = None) -> Imported:
    """Import an ONNX image model (see the module docstring). ``input_size`` (H, W) is needed
    when the model's spatial size is dynamic; ``mean``/``std`` (0..255 units) override the
    recorded normalisation."""
    path = os.fspath(path)
    model = load_onnx(path)
    if len(model.inputs) != 1:
        raise FormatError(f"the model has {len(model.inputs)} inputs; only single-input image "
                          "models are supported", path)
    vin = model.inputs[0]
    if vin.shape is None or len(vin.shape) != 4:
        raise FormatError(f"input '{vin.name}' has shape {vin.shape}; an NCHW image input is "
                          "needed", path)
    if vin.dtype not in (None, "float32"):
        raise FormatError(f"input '{vin.name}' is {vin.dtype}; a float32 input is needed", path)
    _, c, h, w = vin.shape
    ppocr = _is_ppocr_cls(model)
    if input_size is None:
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            input_size = (h, w)
        elif ppocr:
            input_size = (48, 192)
        else:
            raise FormatError(f"input '{vin.name}' has a dynamic size {vin.shape}; pass "
                              "input_size=(H, W)", path)
    if not isinstance(c, int) or c <= 0:
        raise FormatError(f"input '{vin.name}' has no fixed channel count: {vin.shape}", path)
    hh, ww = int(input_size[0]), int(input_size[1])

    net = Net(path, name or os.path.splitext(os.path.basename(path))[0])
    imp = _Importer(model, net, _tail(model))
    x = net.add_input(vin.name or "input", (None, hh, ww, c))
    imp.acts[vin.name] = x
    imp.run()
    if not model.outputs:
        raise FormatError("the graph has no output", path)
    outs = []
    for o in model.outputs:
        if o.name not in imp.acts:
            raise FormatError(f"output '{o.name}' is a constant or is never produced", path)
        outs.append(imp.acts[o.name])
    net.outputs = outs
    out_shape = net.shapes[outs[0]]
    num_classes = int(out_shape[-1]) if len(out_shape) == 2 else None
    label_offset = 1 if num_classes == 1001 else 0

    if ppocr:
        rmean, rstd = 127.5, 127.5
        source = "PaddleOCR text-direction classifier: (x / 255 - 0.5) / 0.5"
        rcrop = 1.0
        labels = ["0", "180"]
    else:
        rmean, rstd = IMAGENET_MEAN, IMAGENET_STD
        source = "assumed: ImageNet mean/std (an ONNX file does not record its normalisation)"
        rcrop = 0.875
        labels = None
    if mean is not None or std is not None:
        rmean = rmean if mean is None else mean
        rstd = rstd if std is None else std
        source = "given by the caller"
    recipe = make_recipe((hh, ww), rmean, rstd, input_dtype="float32", source_layout="NCHW",
                         crop=rcrop if crop is None else crop, source=source)
    meta = {
        "source_format": "onnx",
        "num_classes": num_classes,
        "label_offset": label_offset,
        "output": "logits",
        "dropped_tail": list(imp.dropped),
        "resolution": [hh, ww],
    }
    if labels:
        meta["labels"] = labels
    graph = lower(net, meta)

    provenance = {
        "source_format": "onnx",
        "importer": "tinymnet.importers.onnx",
        "files": [{"name": os.path.basename(path), "bytes": os.path.getsize(path),
                   "sha256": sha256_file(path)}],
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": dict(model.opset),
        "dropped_tail": list(imp.dropped),
        "input_size": [hh, ww] if not (isinstance(h, int) and h > 0) else None,
    }
    return Imported(graph, {}, recipe, num_classes, label_offset, provenance, labels)
