#!/usr/bin/env python3
"""Rebuild the bundled models from the shared fixtures and check them against manifest.json.

    python weights/build.py             # rebuild; fail if a file's sha256 differs from the manifest
    python weights/build.py --update    # rebuild and rewrite manifest.json (sha256, sizes, top-1)
    python weights/build.py --out DIR   # build into DIR and check (the repository is untouched)

Reads the real pretrained TFLite models, their labels and the labelled photos from
``$TINYMNET_FIXTURES`` or ``<repo>/../shared/fixtures`` (see SOURCES.md there), converts each
with the project's own importer (:func:`tinymnet.importers.import_tflite`: the graph, the 8-bit
weights kept as 8 bits, the preprocessing recipe from the input tensor), embeds the 1000
ImageNet class names (the TF 1001-class list without "background"; the model records
``label_offset`` 1: output 0 is background and class = TF index - 1) and writes
``weights/<name>.tmn``. It then classifies the 13 fixture photos the way
reference_predictions.json was made (whole image, bilinear resize) and records how many top-1
agree with the reference runtime (TFLite).

This script is a development tool: it needs the ``tflite`` package and the fixtures; nothing
at run time imports it. See weights/NOTICE for the sources and their licence.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from tinymnet.formats._common import sha256_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MANIFEST = HERE / "manifest.json"
DEFAULT = "mobilenet_v2_100_224_tf"

# name -> (fixture file under models/tflite, arch, width, what it is, origin, licence)
MODELS = {
    "mobilenet_v2_100_224_tf": dict(
        source="mobilenet_v2_1.0_224_quant.tflite", arch="mobilenet_v2", width=1.0,
        description="MobileNetV2 1.0, 224, TF-slim QAT, uint8 weights kept as 8 bits",
        origin="google-coral/test_data @104342d2 : mobilenet_v2_1.0_224_quant.tflite",
        licence="Apache-2.0"),
    "mobilenet_v3_small_100_224_tf": dict(
        source="mobilenet_v3_small_1.0_224_uint8.tflite", arch="mobilenet_v3_small", width=1.0,
        description="MobileNetV3-Small 1.0, 224, TF Model Garden QAT, uint8 weights kept as "
                    "8 bits",
        origin="ken-unger/tflite @4f1b3949 : tflite_model/image_classification/mobilenet_v3/"
               "mobilenet_v3_small_1.0_224.uint8.tflite (TF Model Garden "
               "v3-small_224_1.0_uint8.tflite)",
        licence="Apache-2.0 (TF Model Garden checkpoints)"),
    "mobilenet_v1_025_224_tf": dict(
        source="mobilenet_v1_0.25_224_float.tflite", arch="mobilenet_v1", width=0.25,
        description="MobileNetV1 0.25, 224, TF-slim, float32",
        origin="tensorflow/tflite-support @dd3362ea : tensorflow_lite_support/cc/test/testdata/"
               "task/vision/mobilenet_v1_0.25_224_1_default_1.tflite",
        licence="Apache-2.0"),
}


def fixtures_dir(arg=None) -> Path:
    for cand in (arg, os.environ.get("TINYMNET_FIXTURES"), REPO.parent / "shared" / "fixtures"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("build.py: fixtures not found: pass --fixtures DIR or set TINYMNET_FIXTURES "
             f"(expected {REPO.parent / 'shared' / 'fixtures'})")



def imagenet_labels(fixtures: Path):
    lines = (fixtures / "labels" / "imagenet_labels_1001.txt").read_text("utf-8").splitlines()
    lines = [ln.strip() for ln in lines if ln.strip()]
    if len(lines) != 1001 or lines[0] != "background":
        sys.exit("build.py: imagenet_labels_1001.txt should hold background + 1000 classes")
    return lines[1:]


def build_one(name: str, spec: dict, fixtures: Path, labels, out: Path) -> dict:
    import tinymnet
    from tinymnet.formats.tmn import save_tmn
    from tinymnet.importers import import_tflite
    from tinymnet.info import info_totals

    src = fixtures / "models" / "tflite" / spec["source"]
    imp = import_tflite([src])
    if imp.num_classes != 1001 or imp.label_offset != 1:
        sys.exit(f"build.py: {src.name}: expected a TF 1001-class model (background first)")
    graph = imp.graph
    graph.name = name
    graph.meta.update(arch=spec["arch"], width=spec["width"], label_offset=1,
                      classes="output 0 is TF-slim's background; output i is ImageNet-1k "
                              "class i - 1 (labels hold the 1000 classes)")
    provenance = dict(imp.provenance)
    provenance.update(
        converter=f"tinymnet {tinymnet.__version__}: weights/build.py with "
                  "tinymnet.importers.tflite",
        bundled_name=name, source=spec["source"], origin=spec["origin"],
        licence=spec["licence"], sha256=sha256_file(src),
        labels="ImageNet-1k, 1000 classes from google-coral/test_data imagenet_labels.txt "
               "(background dropped)")
    # Stored optimised (BN folded, activations fused): load builds the plan straight from it.
    # No source_graph: a TFLite graph has no BatchNorm to fold, so the stored graph has the
    # same params and MACs (the manifest's counts), and the files stay as they were.
    save_tmn(out, graph, labels=list(labels), preprocess=imp.preprocess, provenance=provenance,
             quantized=imp.quantized or None, optimize=True, keep_source=False)
    t = info_totals(graph)
    h, w = imp.preprocess["input_size"]
    return {
        "file": f"{name}.tmn",
        "description": spec["description"],
        "arch": spec["arch"],
        "width": spec["width"],
        "input_size": [h, w],
        "weights": "float32" if not imp.quantized else
                   f"8-bit ({len(imp.quantized)} tensors), {', '.join(imp.provenance['weight_dtypes'])}",
        "params": int(t["params"]),
        "macs": int(t["macs"]),
        "source": {"file": f"models/tflite/{spec['source']}", "sha256": provenance["sha256"],
                   "origin": spec["origin"], "licence": spec["licence"]},
    }


def fixture_top1(path: Path, key: str, fixtures: Path, reference: dict) -> dict:
    """Top-1 agreement with the reference runtime on the labelled photos, preprocessed as
    reference_predictions.json was (whole image resized, bilinear)."""
    from tinymnet import Classifier

    entry = reference["models"][key]
    clf = Classifier(str(path), preprocess="resize")
    names = sorted(entry["images"])
    results = clf.classify([fixtures / "images" / n for n in names], top_k=1)
    agree = sum(r["predictions"][0]["class"] == entry["images"][n][0][0] - 1
                for n, r in zip(names, results))
    out = {"agree": int(agree), "of": len(names), "reference": key,
           "preprocess": "whole image, bilinear resize (as reference_predictions.json)"}
    if "imagenet_sample_100" in entry:
        out["reference_imagenet_sample_100_top1"] = entry["imagenet_sample_100"]["top1"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", help="fixtures folder (default $TINYMNET_FIXTURES or "
                                       "../shared/fixtures)")
    ap.add_argument("--update", action="store_true",
                    help="rewrite manifest.json with the new sha256 / sizes / top-1 counts")
    ap.add_argument("--out", type=Path, default=HERE,
                    help="where to write the .tmn files (and the manifest with --update); "
                         "default: this folder")
    args = ap.parse_args(argv)
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    fixtures = fixtures_dir(args.fixtures)
    labels = imagenet_labels(fixtures)
    reference = json.loads((fixtures / "reference_predictions.json").read_text("utf-8"))
    old = json.loads(MANIFEST.read_text("utf-8")) if MANIFEST.is_file() else {"models": {}}

    new = {"default": DEFAULT,
           "note": "written by weights/build.py --update; sources and licences in NOTICE",
           "models": {}}
    problems = []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for name, spec in MODELS.items():
            tmp_path = Path(tmp) / f"{name}.tmn"
            entry = build_one(name, spec, fixtures, labels, tmp_path)
            entry["sha256"] = sha256_file(tmp_path)
            entry["bytes"] = tmp_path.stat().st_size
            entry["fixture_top1"] = fixture_top1(tmp_path, f"tflite/{spec['source']}", fixtures,
                                                 reference)
            new["models"][name] = entry
            want = old.get("models", {}).get(name, {}).get("sha256")
            same = want == entry["sha256"]
            top1 = entry["fixture_top1"]
            print(f"{name}: {entry['bytes'] / 1e6:.2f} MB, {entry['macs'] / 1e6:.1f}M MACs, "
                  f"fixture top-1 {top1['agree']}/{top1['of']}, sha256 {entry['sha256'][:16]} "
                  + ("(matches the manifest)" if same else
                     f"(manifest: {want[:16] if want else 'none'})"))
            if not same:
                problems.append(name)
            if same or args.update:
                os.replace(tmp_path, out_dir / entry["file"])
    total = sum(e["bytes"] for e in new["models"].values())
    print(f"total {total / 1e6:.2f} MB")
    if args.update:
        manifest = out_dir / MANIFEST.name
        manifest.write_text(json.dumps(new, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {manifest}")
        return 0
    if problems:
        print(f"build.py: {', '.join(problems)} differ from manifest.json (the committed files "
              "were left as they are); run with --update if the change is intended",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
