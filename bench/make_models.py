"""Random-weight .tmn models of the architectures without a bundled pretrained model, for
`tinymnet bench` (which takes a bundled name or a .tmn file).

    python bench/make_models.py [--out DIR] [--arch mobilenet_v3_large,mobilenet_v1,...]
    tinymnet bench DIR/mobilenet_v3_large.tmn --threads 1,2 --batch 1,8 --compare onnxruntime

Each model is `tinymnet.models.build(arch)` at 224x224 (width 1.0, the builder's default
classes and BN eps) with its deterministic random init (seed 0; BN statistics deliberately
non-trivial), written with `formats.tmn.save_tmn`. Speed does not depend on the weight values
(the same folded weights go to both engines); these files are not for classification.
Without --out they go to a new temporary folder, whose path is printed.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from tinymnet.formats.tmn import save_tmn
from tinymnet.info import info_totals
from tinymnet.models import ARCHS, build

DEFAULT_ARCHS = ("mobilenet_v3_large", "mobilenet_v1", "efficientnet_lite0")


def make_models(out_dir, archs=DEFAULT_ARCHS, resolution=224):
    """-> {arch: path of the written .tmn}"""
    paths = {}
    for arch in archs:
        g = build(arch, resolution=resolution)
        path = os.path.join(out_dir, f"{arch}.tmn")
        save_tmn(path, g, provenance={"source": "random weights (bench/make_models.py)",
                                      "arch": arch, "seed": 0})
        paths[arch] = path
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder to write into (default: a new temporary folder)")
    ap.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                    help=f"comma-separated, from {', '.join(ARCHS)}")
    ap.add_argument("--resolution", type=int, default=224)
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        ap.error(f"unknown arch {unknown}; known: {', '.join(ARCHS)}")
    out = args.out or tempfile.mkdtemp(prefix="tinymnet-models-")
    os.makedirs(out, exist_ok=True)
    for arch, path in make_models(out, archs, args.resolution).items():
        from tinymnet.formats.tmn import load_tmn

        t = info_totals(load_tmn(path).graph)
        print(f"{path}  ({arch}, {args.resolution}x{args.resolution}, "
              f"{t['macs'] / 1e6:.0f}M MACs, {t['params'] / 1e6:.2f}M params)")


if __name__ == "__main__":
    main()
