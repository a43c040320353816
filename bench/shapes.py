"""Reader for bench/shapes/<net>.txt: the conv / FC / SE layers of each MobileNet at 224, batch 1.

One layer per line, whitespace-separated, '#' starts a comment:

    name op h w cin cout k stride pad act

name    the layer's name in the source model (torchvision state_dict prefix, Keras layer name)
op      conv  dense KxK conv (the 3x3 stride-2 stem; tinymnet's "stem" kernel)
        dw    depthwise KxK conv (groups = cin = cout)
        pw    pointwise 1x1 conv, stride 1 (the packed GEMM)
        fc    fully connected, cin -> cout (h = w = 1)
        se    squeeze-excite on an h x w x cin input: mean -> FC cin->cout (the squeeze width)
              -> act -> FC cout->cin -> hardsigmoid gate -> scale the input
h w     input spatial size
k       square kernel size; stride; pad = symmetric padding in pixels, or "same" (TF SAME)
act     activation fused after the conv (none, relu, relu6, hardswish); for se, the inner one

`python bench/make_shapes.py` regenerates the files from the architecture tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

DIR = Path(__file__).parent / "shapes"
NETS = {"v1": "mobilenet_v1", "v2": "mobilenet_v2", "v3l": "mobilenet_v3_large",
        "v3s": "mobilenet_v3_small"}
OPS = ("conv", "dw", "pw", "fc", "se")


@dataclass(frozen=True)
class Layer:
    net: str
    name: str
    op: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int
    pad: Union[int, str]
    act: str

    @property
    def key(self):
        """Identical layers (same op and geometry) are measured once."""
        return (self.op, self.h, self.w, self.cin, self.cout, self.k, self.stride, self.pad)

    @property
    def out_hw(self):
        if self.pad == "same":
            return -(-self.h // self.stride), -(-self.w // self.stride)
        return tuple((n + 2 * self.pad - self.k) // self.stride + 1 for n in (self.h, self.w))

    @property
    def macs(self) -> int:
        """Multiply-accumulates; for se the two FCs plus one per element for pool and scale."""
        if self.op == "se":
            return 2 * self.cin * self.cout + 2 * self.h * self.w * self.cin
        oh, ow = self.out_hw
        per_out = self.k * self.k * (1 if self.op == "dw" else self.cin)
        return oh * ow * self.cout * per_out

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def describe(self) -> str:
        if self.op in ("fc",):
            return f"{self.cin}->{self.cout}"
        if self.op == "se":
            return f"{self.h}x{self.w}x{self.cin} sq{self.cout}"
        s = f"{self.h}x{self.w}x{self.cin}->{self.cout}"
        return s if self.op == "pw" else f"{s} k{self.k}s{self.stride}"


def load(net: str) -> List[Layer]:
    """Layers of `net` ("v2" or "mobilenet_v2"), in file order."""
    net = NETS.get(net, net)
    layers = []
    for line in (DIR / f"{net}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, op, h, w, cin, cout, k, stride, pad, act = line.split()
        if op not in OPS:
            raise ValueError(f"{net}: {name}: unknown op {op!r}")
        layers.append(Layer(net, name, op, int(h), int(w), int(cin), int(cout), int(k),
                            int(stride), pad if pad == "same" else int(pad), act))
    return layers


if __name__ == "__main__":
    for short, net in NETS.items():
        layers = load(net)
        by_op = {op: sum(l.macs for l in layers if l.op == op) / 1e6 for op in OPS}
        print(f"{net:20s} {len(layers):3d} layers, {sum(by_op.values()):6.1f} M MACs  "
              + "  ".join(f"{op} {m:.1f}" for op, m in by_op.items()))
