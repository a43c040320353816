"""Leak check on load / unload: every bundled model (``tinymnet models``) and a small model
whose GEMM weights are used in place from its mapped file is loaded, run on a batch of 2 with
2 threads, deleted and garbage-collected, ``--iterations`` times (the files must be unmapped
afterwards), then every
op of ``tinymnet.kernels`` is created, run and freed under each ISA; memory that tinymnet's
code allocated and nothing frees any more is a leak.

  python bench/leak_check.py [--iterations N]            # under valgrind memcheck
  python bench/leak_check.py --lsan [--iterations N]     # inside the ASan build (.ci/sanitize.sh)

valgrind mode re-runs this script under ``valgrind --leak-check=full`` (PYTHONMALLOC=malloc so
memcheck sees every Python object) and reads its XML report: a loss record is *tinymnet's*
when its allocation stack passes through the extension (``tinymnet/_C*.so``). CPython's and
numpy's own allocations kept until exit are counted apart, not suppressed by name, so a leak
reached through them is still caught. Prints definitely / indirectly / possibly lost bytes
for both; exits 1 when tinymnet has any definitely or indirectly lost byte or memcheck found
an invalid access.

--lsan mode runs the loop in this process and then asks LeakSanitizer for a leak check
(``__lsan_do_recoverable_leak_check``, with .ci/lsan.supp for the interpreter's own
allocations); exits 1 on any leak it reports.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEAK_KINDS = ("Leak_DefinitelyLost", "Leak_IndirectlyLost", "Leak_PossiblyLost")


def load_run_free(iterations: int) -> None:
    import numpy as np

    import tinymnet
    from tinymnet.bundled import bundled_names

    from tinymnet.formats.tmn import save_tmn
    from tinymnet.models import build

    names = bundled_names()
    if not names:
        sys.exit("leak_check: no bundled models found")
    # and a model whose GEMM weights the plan uses in place from its mapped file
    panels = os.path.join(tempfile.mkdtemp(prefix="leak-check-"), "panels.tmn")
    save_tmn(panels, build("mobilenet_v3_small", width=0.5, resolution=64, num_classes=10),
             optimize=True, gemm_panels="native")
    names = names + [panels]
    for it in range(iterations):
        for name in names:
            model = tinymnet.load(name, threads=2)
            x = np.random.default_rng(it).standard_normal((2, *model.input_shape), np.float32)
            y = model(x)
            if not np.isfinite(y).all():
                sys.exit(f"leak_check: {name} gave non-finite logits")
            del model, x, y
            gc.collect()
    from tinymnet.bundled import resolve

    # freed models unmap their files (the bundled ones too: their 8-bit one-pixel layers read
    # their weights in place)
    files = [os.path.basename(resolve(n)) for n in names]
    with open("/proc/self/maps") as maps:
        still = sorted({f for line in maps for f in files if f in line})
    if still:
        sys.exit(f"leak_check: {', '.join(still)} still mapped after their models were freed")
    os.remove(panels)
    print(f"leak_check: {iterations} x load/run/free of {', '.join(names)}", flush=True)


def kernel_ops(iterations: int) -> None:
    """Every op of tinymnet.kernels created, run (also on bad input) and freed, per ISA."""
    import numpy as np

    from tinymnet import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 7, 17), np.float32)
    for _ in range(iterations):
        for isa in kernels.available_isas():
            with kernels.use_isa(isa):
                ops = [kernels.Conv2d(rng.standard_normal((33, 17, 1, 1), np.float32), activation="relu6"),
                       kernels.Conv2d(rng.standard_normal((17, 1, 3, 3), np.float32), stride=2,
                                      padding="same", groups=17, activation="hardswish"),
                       kernels.Conv2d(rng.standard_normal((8, 17, 3, 3), np.float32), stride=2, padding=1),
                       kernels.SqueezeExcite(rng.standard_normal((5, 17), np.float32), np.zeros(5, np.float32),
                                             rng.standard_normal((17, 5), np.float32), np.zeros(17, np.float32)),
                       kernels.AvgPool2d(3, 2, 1), kernels.MaxPool2d(2)]
                for op in ops:
                    op(x)
                    try:
                        op(x[..., :3])  # wrong channel count: a ValueError, nothing kept
                    except ValueError:
                        pass
                pooled = kernels.global_avg_pool(x)
                kernels.Linear(rng.standard_normal((10, 17), np.float32))(pooled.reshape(2, 17))
                kernels.mul(x, pooled)
                kernels.add(x, x, activation="relu")
                kernels.activation(x, "hardsigmoid")
                del ops, pooled
                gc.collect()
    print(f"leak_check: {iterations} x every kernel op on {', '.join(kernels.available_isas())}", flush=True)


def lsan_check(iterations: int) -> int:
    load_run_free(iterations)
    kernel_ops(iterations)
    gc.collect()
    try:
        check = ctypes.CDLL(None).__lsan_do_recoverable_leak_check
    except AttributeError:
        sys.exit("leak_check: --lsan needs the sanitizer runtime preloaded (see .ci/sanitize.sh)")
    leaked = check()
    print("leak_check: LeakSanitizer:", "LEAKS (report above)" if leaked else "no leaks", flush=True)
    return 1 if leaked else 0


def _is_tinymnet(frame: ET.Element) -> bool:
    obj = frame.findtext("obj") or ""
    return "tinymnet" in obj and os.path.basename(obj).startswith("_C")


def valgrind_check(iterations: int, keep: str | None) -> int:
    fd, xml_path = tempfile.mkstemp(prefix="tinymnet-memcheck-", suffix=".xml")
    os.close(fd)
    if keep:
        xml_path = keep
    cmd = ["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=all",
           "--num-callers=40", "--xml=yes", f"--xml-file={xml_path}",
           sys.executable, __file__, "--child", "--iterations", str(iterations)]
    env = dict(os.environ, PYTHONMALLOC="malloc")
    t0 = time.time()
    proc = subprocess.run(cmd, env=env)
    print(f"leak_check: valgrind run took {time.time() - t0:.0f}s, exit status {proc.returncode}")
    if proc.returncode != 0:
        return 1
    root = ET.parse(xml_path).getroot()
    if not keep:
        os.unlink(xml_path)
    ours = {k: [0, 0] for k in LEAK_KINDS}  # bytes, records
    other = {k: [0, 0] for k in LEAK_KINDS}
    errors = {True: {}, False: {}}  # memcheck errors (invalid access, uninitialised use) by kind
    for err in root.iter("error"):
        kind = err.findtext("kind") or ""
        frames = list(err.iter("frame"))
        mine = any(_is_tinymnet(f) for f in frames)
        if kind in LEAK_KINDS:
            nbytes = int(err.findtext("xwhat/leakedbytes") or 0)
            table = ours if mine else other
            table[kind][0] += nbytes
            table[kind][1] += 1
            if mine and kind != "Leak_PossiblyLost":
                print(f"leak_check: tinymnet {kind}: {nbytes} bytes\n" + "\n".join(
                    f"    {f.findtext('fn')} ({f.findtext('obj')})" for f in frames[:15]))
        elif not kind.startswith("Leak_"):
            errors[mine][kind] = errors[mine].get(kind, 0) + 1
            if mine:
                print(f"leak_check: memcheck {kind} in tinymnet: {err.findtext('what')}\n" + "\n".join(
                    f"    {f.findtext('fn')} ({f.findtext('obj')})" for f in frames[:15]))
    for label, table in (("tinymnet", ours), ("CPython/numpy/other", other)):
        print(f"leak_check: {label}: " + ", ".join(
            f"{k[5:-4].lower()} lost {b} bytes in {n} records" for k, (b, n) in table.items()))
    for mine, label in ((True, "tinymnet"), (False, "CPython/numpy/ld.so, not failing")):
        print(f"leak_check: memcheck errors in {label}: {errors[mine] or 'none'}")
    bad = ours["Leak_DefinitelyLost"][0] + ours["Leak_IndirectlyLost"][0]
    return 1 if bad or errors[True] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=None,
                    help="load/run/free rounds over all bundled models (default 20 with "
                         "--lsan, 3 under valgrind)")
    ap.add_argument("--lsan", action="store_true", help="check with LeakSanitizer in this process")
    ap.add_argument("--xml", help="valgrind mode: keep memcheck's XML report at this path")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        load_run_free(args.iterations)
        kernel_ops(args.iterations)
        return 0
    if args.lsan:
        return lsan_check(args.iterations or 20)
    return valgrind_check(args.iterations or 3, args.xml)


if __name__ == "__main__":
    sys.exit(main())
