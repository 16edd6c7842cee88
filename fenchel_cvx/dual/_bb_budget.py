r"""Memory and time the branch-and-bound needs, predicted before anything is built (no math of the bound).

:func:`certify_lower_bound` refuses a size whose relaxation would not fit in its ``memory_limit`` before it
builds anything, and skips set-up steps that cannot finish before its deadline. Both need the size of the
conic problem ``A x + b in K`` of one node, which is linear in the number of samples ``m``:

* perspective formulation (one output): ``m h (68 + 22 n + k (3.4 + 1.71 n))`` nonzeros of ``A``,
* direct formulation (several outputs): ``m h (20 + 19 n + p (21.4 + 5.9 k))``,

where ``k`` is the number of nearest neighbours per sample of the pairwise cuts (all ``m - 1`` for
``m <= 40``, else ``max_pairs_per_point``, default 10). Fitted on 26 sizes (``m`` 250-2000, ``h`` 1-4,
``n`` 1-14, ``p`` 1-14, ``k`` 1-10): within 1% for the perspective formulation, 0-35% above for the direct one.

Peak memory of the relaxation, its solver and the factorization, measured as the growth of the peak resident
set size of a fresh process (``resource.getrusage(...).ru_maxrss``) from building the relaxation through
one interior-point iteration of a root node: 410-670 bytes per nonzero on the same 26 sizes (the most where the
nearest-neighbour graph makes the factorization fill in: ``h = 2, n = 5, m = 2000``). The estimate takes
700 bytes per nonzero times a safety factor 1.5, plus 64 MiB; it was 1.6 to 4 times the measured growth.
At the documented limits (``m <= 2000``, ``h (n + 1 + p) <= 16``, default ``k``) it is at most 2.5 GB
(``h = 1, n = 1, p = 14``; measured 0.95 GB), below the default budget of 4 GiB.

Time to build (CVXPY's canonicalization, once per run): 0.6-2.5 microseconds per nonzero on an idle core,
growing with ``h``; predicted as ``1.35e-6 (1 + h/2)`` seconds per nonzero (safety 1.5 included).
"""

from __future__ import annotations

__all__ = ["pairs_per_point", "relaxation_nnz", "relaxation_bytes", "build_seconds", "max_samples_within",
           "GIB", "DEFAULT_MEMORY_GIB"]

GIB = 1024 ** 3
DEFAULT_MEMORY_GIB = 4.0
_BYTES_PER_NNZ = 700.0
_SAFETY = 1.5
_FIXED_BYTES = 64 * 1024 ** 2
_BUILD_SECONDS_PER_NNZ = 1.35e-6
_ALL_PAIRS_UP_TO = 40        # same rule as the relaxations: all pairs for m <= 40
_DEFAULT_PAIRS = 10


def pairs_per_point(m: int, max_pairs_per_point: int | None) -> int:
    """Neighbours per sample in the pairwise cuts (the relaxations' rule)."""
    default = m - 1 if m <= _ALL_PAIRS_UP_TO else _DEFAULT_PAIRS
    k = default if max_pairs_per_point is None else max_pairs_per_point
    return max(0, min(k, m - 1))


def relaxation_nnz(m: int, hidden: int, n: int, p: int, *, perspective: bool,
                   max_pairs_per_point: int | None = None) -> float:
    """Predicted nonzeros of one node's conic matrix ``A`` (see the module docstring)."""
    k = pairs_per_point(m, max_pairs_per_point)
    if perspective:
        return float(m) * hidden * (68.0 + 22.0 * n + k * (3.4 + 1.71 * n))
    return float(m) * hidden * (20.0 + 19.0 * n + p * (21.4 + 5.9 * k))


def relaxation_bytes(m: int, hidden: int, n: int, p: int, *, perspective: bool,
                     max_pairs_per_point: int | None = None) -> float:
    """Predicted peak memory (bytes) of the relaxation, its solver and one factorization."""
    nnz = relaxation_nnz(m, hidden, n, p, perspective=perspective, max_pairs_per_point=max_pairs_per_point)
    return _FIXED_BYTES + _SAFETY * _BYTES_PER_NNZ * nnz


def build_seconds(m: int, hidden: int, n: int, p: int, *, perspective: bool,
                  max_pairs_per_point: int | None = None) -> float:
    """Predicted seconds to build (canonicalize) the relaxation."""
    nnz = relaxation_nnz(m, hidden, n, p, perspective=perspective, max_pairs_per_point=max_pairs_per_point)
    return _BUILD_SECONDS_PER_NNZ * (1.0 + hidden / 2.0) * nnz


def max_samples_within(budget: float, hidden: int, n: int, p: int, *, perspective: bool,
                       max_pairs_per_point: int | None, upper: int) -> int:
    """The largest ``m <= upper`` whose predicted memory fits in ``budget`` bytes (0 when none does)."""
    best = 0
    for m in range(2, upper + 1):  # a formula per m: cheap, and exact where the pair rule makes it non-monotone
        if relaxation_bytes(m, hidden, n, p, perspective=perspective,
                            max_pairs_per_point=max_pairs_per_point) <= budget:
            best = m
    return best
