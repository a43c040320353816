"""Run one atheris fuzz target: ``python fuzz/fuzz_one.py TARGET SEED_DIR [libFuzzer flags]``.

The tinymnet modules are imported under ``atheris.instrument_imports`` so the fuzzer is
coverage-guided by the parsers' own branches. Each input is written to a file (every loader
takes a path) on a RAM disk when there is one. The address space is capped 2 GiB above
what the imports use, so a loader that trusts a huge size field gets a MemoryError, which
the target reports as a finding (see targets.py). Normally started by fuzz/run.py.
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets  # noqa: E402

EXTRA_ADDRESS_SPACE = 2 << 30  # as much as -rss_limit_mb


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    name, seed_dir = sys.argv[1], Path(sys.argv[2])
    check, make_seeds = targets.TARGETS[name]
    with atheris.instrument_imports(include=["tinymnet"]):
        import importlib

        for module in targets.MODULES:
            importlib.import_module(module)
    if not any(seed_dir.iterdir()):
        make_seeds(seed_dir)
    for seed in sorted(seed_dir.iterdir()):  # warm up lazy imports before capping memory
        check(seed)
    vm = _vm_size()
    if vm:
        limit = vm + EXTRA_ADDRESS_SPACE
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    tmp = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    work = tempfile.mkdtemp(prefix=f"tinymnet-fuzz-{name}-", dir=tmp)
    path = os.path.join(work, f"input.{name}")

    def one_input(data: bytes):
        with open(path, "wb") as f:
            f.write(data)
        check(path)

    atheris.Setup([sys.argv[0]] + sys.argv[3:], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
