"""Run tiny dense linear algebra with one OpenBLAS thread (restored afterwards).

The branch-and-bound calls L-BFGS-B and small BLAS kernels on ~100-dimensional problems thousands of times.
On such small kernels a thread pool costs more in synchronization than it gains, badly so on a loaded machine
(measured in ``docs/benchmarks.md``). This is the part of ``threadpoolctl`` we need, without the dependency: find the
OpenBLAS builds already loaded into the process and set their thread count, restoring it on exit. On systems
where nothing is found it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

__all__ = ["single_thread_blas"]

_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
        "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
        "openblas_get_num_threads")


def _openblas_handles() -> list[tuple]:
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                if "openblas" in line.lower():
                    paths.add(line.split()[-1])
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SET if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GET if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            getter.restype = ctypes.c_int
            out.append((setter, getter))
    return out


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Context manager: every loaded OpenBLAS runs single-threaded inside, as before outside."""
    handles = _openblas_handles()
    saved = []
    for setter, getter in handles:
        try:
            saved.append((setter, int(getter())))
            setter(ctypes.c_int(1))
        except Exception:  # pragma: no cover - an unusual build: leave it alone
            continue
    try:
        yield
    finally:
        for setter, n in saved:
            setter(ctypes.c_int(n))
