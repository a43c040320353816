"""Converter parity with the frameworks the weights come from.

torchvision's mobilenet_v2 / mobilenet_v3_large / mobilenet_v3_small and timm's
mobilenetv3_large_100 / mobilenetv2_100 get random weights and non-trivial BatchNorm
statistics (eval mode); their state dicts are saved by this test with ``torch.save`` (.pth)
and as .safetensors. A separate Python process (where torch is never imported) converts each
file with ``tinymnet convert``'s code path, loads the .tmn with ``tinymnet.load`` and runs it
on the C++ kernels (at 128x128: the networks take any input size); its logits must be within
1e-4 (relative to the largest logit) of torch's, and the network and width must have been
inferred from the weights alone.

torch, torchvision and timm are test-only dependencies: without them these tests skip, except
under ``CI=true`` where that is a failure (see ``_torch_oracles``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

try:
    from _torch_oracles import oracles, randomise_bn
except ImportError:  # tests/ made a package
    from ._torch_oracles import oracles, randomise_bn

# (library, constructor, kwargs, arch tinymnet must infer, width it must infer)
CASES = [
    ("torchvision", "mobilenet_v2", {}, "mobilenet_v2", 1.0),
    ("torchvision", "mobilenet_v3_large", {}, "mobilenet_v3_large", 1.0),
    ("torchvision", "mobilenet_v3_small", {}, "mobilenet_v3_small", 1.0),
    ("torchvision", "mobilenet_v2", {"width_mult": 0.5}, "mobilenet_v2", 0.5),
    ("timm", "mobilenetv3_large_100", {}, "mobilenet_v3_large", 1.0),
    ("timm", "mobilenetv2_100", {}, "mobilenet_v2", 1.0),
]
FORMATS = ("pth", "safetensors")
RES = 128  # the networks are resolution-agnostic; a small input keeps the torch runs quick


def _case_id(case):
    lib, name, kwargs, _, _ = case
    return "-".join([lib, name] + [f"{k}{v}" for k, v in kwargs.items()])


IDS = [_case_id(c) for c in CASES]

_WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tinymnet
    from tinymnet.convert import convert_file

    job = json.load(open(sys.argv[1]))
    x = np.load(job["x"])
    report = {"files": {}}
    for f in job["files"]:
        cm = convert_file(f["src"], f["tmn"], resolution=job["resolution"])
        model = tinymnet.load(f["tmn"])
        np.save(f["logits"], model(x))
        report["files"][f["src"]] = {k: cm.provenance.get(k) for k in
                                     ("arch", "width", "format", "weights_layout", "bn_eps",
                                      "num_classes", "resolution")}
    report["heavy_modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm"))
    json.dump(report, open(job["report"], "w"))
    """
)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    """Save every case in both formats, compute torch's logits, then convert + run them all in
    one torch-free subprocess. -> {case id: (torch logits, {fmt: tinymnet logits}, {fmt:
    provenance facts})}, plus the subprocess's list of imported torch modules."""
    torch, tvm, timm = oracles()
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("parity")
    x = np.random.default_rng(2).standard_normal((2, RES, RES, 3)).astype(np.float32)
    np.save(root / "x.npy", x)
    files, want = [], {}
    for seed, (case, cid) in enumerate(zip(CASES, IDS)):
        lib, name, kwargs, _, _ = case
        torch.manual_seed(seed)
        if lib == "torchvision":
            model = getattr(tvm, name)(**kwargs)
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
        model.eval()
        randomise_bn(torch, model, seed + 100)
        with torch.no_grad():
            want[cid] = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
        state = model.state_dict()
        torch.save(state, root / f"{cid}.pth")
        save_file({k: v.contiguous() for k, v in state.items()}, str(root / f"{cid}.safetensors"))
        for fmt in FORMATS:
            files.append({"src": str(root / f"{cid}.{fmt}"), "tmn": str(root / f"{cid}.{fmt}.tmn"),
                          "logits": str(root / f"{cid}.{fmt}.npy"), "case": cid, "fmt": fmt})
    job = {"x": str(root / "x.npy"), "files": files, "report": str(root / "report.json"),
           "resolution": RES}
    (root / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-c", _WORKER, str(root / "job.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"converter subprocess failed:\n{proc.stderr[-4000:]}"
    report = json.loads((root / "report.json").read_text())
    results = {}
    for f in files:
        got, facts = results.setdefault(f["case"], ({}, {}))
        got[f["fmt"]] = np.load(f["logits"])
        facts[f["fmt"]] = report["files"][f["src"]]
    return {cid: (want[cid],) + results[cid] for cid in IDS}, report["heavy_modules"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_logits_match_torch(parity_run, case, fmt):
    runs, _ = parity_run
    lib, _, _, arch, width = case
    want, got, facts = runs[_case_id(case)]
    got, facts = got[fmt], facts[fmt]
    assert facts["arch"] == arch and facts["width"] == pytest.approx(width)
    assert facts["weights_layout"] == lib
    assert facts["format"] == ("pth-zip" if fmt == "pth" else "safetensors")
    assert facts["num_classes"] == 1000 and facts["resolution"] == RES
    assert facts["bn_eps"] == (1e-5 if lib == "timm" or arch == "mobilenet_v2" else 1e-3)
    assert got.shape == want.shape == (2, 1000)
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert err <= 1e-4, f"relative error {err:.2e}"
    assert (got.argmax(1) == want.argmax(1)).all()


def test_converting_and_running_never_imports_torch(parity_run):
    _, heavy = parity_run
    assert heavy == [], f"tinymnet imported {heavy}"


def test_timm_v3_at_other_widths_is_refused_clearly(tmp_path):
    torch, _, timm = oracles()
    from tinymnet.convert import convert
    from tinymnet.errors import FormatError

    path = tmp_path / "timm_075.pth"
    torch.save(timm.create_model("mobilenetv3_large_075", pretrained=False).state_dict(), path)
    with pytest.raises(FormatError, match="width other than 1.0.*only mobilenetv3_large_100"):
        convert(path)
