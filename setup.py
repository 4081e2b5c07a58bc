"""Build the compiled session-graph builder (csrc/_graph.pyx -> srgnn_rt._graph).

Compiled with -O3 and OpenMP where the compiler supports it; without OpenMP the
kernel is built serial and a warning says so. No CPU-specific tuning and no
unsafe float-math flags: a wheel must give the same results on every x86-64 /
arm64 CPU.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _compiler_has_openmp(compiler_cmd: list[str]) -> bool:
    """True when the C compiler builds and links a tiny OpenMP program."""
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            result = subprocess.run(
                [*compiler_cmd, "-fopenmp", path, "-o", os.path.join(tmp, "probe")],
                capture_output=True,
            )
        except OSError:
            return False
        return result.returncode == 0


class BuildExtWithOpenMP(build_ext):
    """build_ext that adds OpenMP flags when available and warns otherwise."""

    def build_extensions(self):
        compiler_cmd = list(getattr(self.compiler, "compiler_so", None) or ["cc"])[:1]
        disabled = os.environ.get("SRGNN_RT_NO_OPENMP", "") not in ("", "0")
        use_openmp = not disabled and shutil.which(compiler_cmd[0]) is not None and _compiler_has_openmp(compiler_cmd)
        if not use_openmp:
            warnings.warn(
                "srgnn_rt: OpenMP is not available (or SRGNN_RT_NO_OPENMP is set); "
                "the graph builder is built serial and uses one core per call.",
                stacklevel=1,
            )
        for ext in self.extensions:
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
            ext.define_macros.append(("SRGNN_RT_OPENMP", "1" if use_openmp else "0"))
        super().build_extensions()


extensions = [
    Extension(
        "srgnn_rt._graph",
        ["csrc/_graph.pyx"],
        extra_compile_args=["-O3"] if sys.platform != "win32" else ["/O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
