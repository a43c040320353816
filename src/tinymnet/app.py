"""The bodies of the ``tinymnet classify``, ``models`` and ``fetch`` commands (their arguments
are declared in :mod:`tinymnet.cli`). Each returns the exit status: 0 all good, 1 when an
image or a download failed; usage errors raise ValueError, which the CLI turns into status 2.
"""
from __future__ import annotations

import csv
import json
import sys
import time



def _human(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def _progress_bar(total: int, unit: str, **kw):
    """A tqdm bar on stderr when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; still run without it
        return None
    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


# ---------------------------------------------------------------------------------------------
# classify


def cmd_classify(args) -> int:
    from .classify import (CSV_HEADER, Classifier, classify_paths, collect_images, csv_rows,
                           format_table_rows)

    files, saw_dir = collect_images(args.paths)
    clf = Classifier(args.model, preprocess=args.preprocess, threads=args.threads)
    out = sys.stdout
    bar = _progress_bar(len(files), "img") if saw_dir and files else None

    def write(line: str) -> None:
        if bar is not None:
            bar.write(line, file=out)
        else:
            print(line, file=out)

    def warn(msg: str) -> None:
        msg = f"tinymnet: warning: {msg}"
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    if not files:
        where = ", ".join(args.paths)
        print(f"tinymnet: error: no images found in {where} (looked for "
              f"{', '.join(e.lstrip('.') for e in _extensions())})", file=sys.stderr)
        if args.format == "json":
            print("[]", file=out)
        return 1

    results, n_ok, n_fail = [], 0, 0
    csv_writer = None
    if args.format == "csv":
        import io

        def csv_line(row) -> str:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(row)
            return buf.getvalue()

        write(csv_line(CSV_HEADER))
        csv_writer = csv_line
    start = time.perf_counter()
    try:
        for r in classify_paths(clf, files, top_k=args.top_k, batch_size=args.batch_size):
            if "error" in r:
                n_fail += 1
                warn(r["error"])
            else:
                n_ok += 1
            if args.format == "json":
                results.append(r)
            elif args.format == "csv":
                for row in csv_rows(r):
                    write(csv_writer(row))
            else:
                for line in format_table_rows(r):
                    write(line)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    if args.format == "json":
        json.dump(results, out, indent=1, ensure_ascii=False)
        out.write("\n")
    out.flush()
    if saw_dir or len(files) > 1:
        rate = n_ok / elapsed if elapsed > 0 else float("inf")
        print(f"tinymnet: {n_ok} image{'s' if n_ok != 1 else ''} classified in {elapsed:.2f} s "
              f"({rate:.1f} images/s, batch {args.batch_size}, {clf.name}), {n_fail} failed",
              file=sys.stderr)
    return 0 if n_fail == 0 else 1


def _extensions():
    from .preprocess import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


# ---------------------------------------------------------------------------------------------
# models


def model_rows():
    """One dict per bundled model (manifest entry + live size / MACs / input) and per
    fetchable model."""
    import os

    from .bundled import bundled_path, describe_bundled
    from .fetch import MANIFEST as FETCHABLE, cached_model_path
    from .formats.tmn import load_tmn
    from .info import info_totals

    rows = []
    for e in describe_bundled():
        path = bundled_path(e["name"])
        g = load_tmn(path).graph
        _, h, w, _ = g.inputs[g.input_name]
        t = info_totals(g)
        top1 = e.get("fixture_top1") or {}
        rows.append({"name": e["name"], "default": e["default"], "bundled": True,
                     "description": e.get("description", ""), "arch": e.get("arch"),
                     "bytes": os.path.getsize(path), "macs": int(t["macs"]),
                     "params": int(t["params"]), "input_size": [h, w],
                     "fixture_top1": [top1.get("agree"), top1.get("of")] if top1 else None,
                     "path": path})
    for name, e in FETCHABLE.items():
        cached = cached_model_path(name)
        rows.append({"name": name, "default": False, "bundled": False,
                     "description": e["description"], "arch": e["arch"], "url": e["url"],
                     "fetched": cached.is_file(), "path": str(cached) if cached.is_file() else None})
    return rows


def cmd_models(args) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    bundled = [r for r in rows if r["bundled"]]
    table = [("name", "size", "MACs", "input", "fixture top-1", "model")]
    for r in bundled:
        t1 = r["fixture_top1"]
        table.append((r["name"] + (" (default)" if r["default"] else ""),
                      f"{r['bytes'] / 1e6:.1f} MB", _human(r["macs"]),
                      "x".join(map(str, r["input_size"])),
                      f"{t1[0]}/{t1[1]}" if t1 else "-", r["description"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print("bundled models (offline):")
    for row in table:
        print("  " + "  ".join(c.rjust(w) if i in (1, 2) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print("  fixture top-1: photos whose top-1 matches the reference runtime's (TFLite), out of "
          "13")
    fetch = [r for r in rows if not r["bundled"]]
    if fetch:
        print("\ndownloadable (`tinymnet fetch NAME`, needs network once):")
        w = max(len(r["name"]) for r in fetch)
        for r in fetch:
            state = "fetched" if r["fetched"] else "not fetched"
            print(f"  {r['name']:<{w}}  {state:<11}  {r['description']}")
    return 0


# ---------------------------------------------------------------------------------------------
# fetch


def cmd_fetch(args) -> int:
    from .fetch import FetchError, fetch

    def progress(total):
        return _progress_bar(total, "B", unit_scale=True, unit_divisor=1024,
                             desc=args.name)

    def log(msg):
        print(f"tinymnet: {msg}", file=sys.stderr)

    try:
        path = fetch(args.name, force=args.force, progress=progress, log=log)
    except FetchError as e:
        print(f"tinymnet: error: {e}", file=sys.stderr)
        return 1
    print(path)
    print(f"tinymnet: use it with: tinymnet classify --model {args.name} PHOTO", file=sys.stderr)
    return 0

