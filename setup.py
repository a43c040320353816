"""Builds tinymnet._C from csrc/.

Each ISA's kernels live in their own translation units (kernels/<op>/avx2.cc, avx512.cc,
neon.cc) and only those get that ISA's flags, so the rest of the library runs on any CPU of
the target architecture and the right kernels are picked at run time (runtime/isa.cc).
Sources are selected by target architecture: no x86 flag is ever passed on aarch64.
"""
import os
import platform
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
CSRC = "csrc"

ISA_FLAGS = {
    "avx2.cc": ["-mavx2", "-mfma", "-mf16c"],
    "avx512.cc": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma",
                  "-Wno-maybe-uninitialized"],  # GCC 12 false positive on _mm512_undefined_ps
    "neon.cc": [],
}


def _target_arch():
    # Honour cross builds (e.g. ARCHFLAGS / _PYTHON_HOST_PLATFORM) before the host machine.
    host = os.environ.get("_PYTHON_HOST_PLATFORM", "") or platform.machine()
    host = host.lower()
    if "aarch64" in host or "arm64" in host:
        return "aarch64"
    if "x86_64" in host or "amd64" in host:
        return "x86_64"
    return host


def _sources(arch):
    wanted = {"x86_64": {"avx2.cc", "avx512.cc"}, "aarch64": {"neon.cc"}}.get(arch, set())
    out = []
    for path in sorted((HERE / CSRC).rglob("*.cc")):
        if path.name in ISA_FLAGS and path.name not in wanted:
            continue
        out.append(str(path.relative_to(HERE)))
    return out


class BuildExt(build_ext):
    """build_ext that adds each ISA translation unit's own flags."""

    def build_extensions(self):
        original = self.compiler._compile

        def compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts):
            extra = list(extra_postargs) + ISA_FLAGS.get(Path(src).name, [])
            original(obj, src, ext, cc_args, extra, pp_opts)

        self.compiler._compile = compile_one
        try:
            super().build_extensions()
        finally:
            self.compiler._compile = original


ParallelCompile("TINYMNET_BUILD_JOBS", default=0).install()

ext = Pybind11Extension(
    "tinymnet._C",
    sources=_sources(_target_arch()),
    include_dirs=[CSRC],
    cxx_std=17,
    extra_compile_args=["-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)


class BuildPy(build_py):
    """weights/ is installed as the package tinymnet.weights: its .tmn models, manifest.json and
    NOTICE, without build.py (the script that regenerates them, a development tool)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "tinymnet.weights":
            modules = [m for m in modules if m[1] == "__init__"]
        return modules


setup(
    packages=find_packages("src") + ["tinymnet.weights"],
    package_dir={"": "src", "tinymnet.weights": "weights"},
    package_data={"tinymnet.weights": ["*.tmn", "manifest.json", "NOTICE"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
