r"""Data parallelism on :mod:`torch.distributed`: which samples a process holds, and where its sums meet.

Section 4.4 of the paper: the X-updates separate over data points, and every W-update (and ``J``) is a sum over
data points. So a data-parallel BCD needs no layer of its own -- each process keeps the X-variables of *its*
samples, and every sum over samples in a W-update, in ``J`` or in an evaluation is the process's local sum
followed by one ``all_reduce``. This module is the one place that says so:

* :func:`sharded` -- a context in which :func:`all_sum` reduces over a process group. Outside it (one process,
  no process group, or a user calling a solver directly) :func:`all_sum` is the identity, so the solvers are
  the same code with and without processes.
* :func:`all_sum` -- sum a tensor of local partial sums over the processes, in place.
* :func:`gather_columns` -- the whole of a per-sample matrix (Algorithm 1's X-variables, for a checkpoint).
* :func:`column_range`, :func:`local_part` -- the contiguous share of a batch's indices that a process holds (a
  distributed sampler: every process draws the same global permutation and keeps its part of each batch).

The torch face calls :func:`all_sum` on exactly the quantities that are sums over samples: Gram matrices
``X_a X_a^T``, gradients ``R X_a^T``, objective values, line-search slopes and a running curvature's second
moment. Solvers whose work does not split into per-sample pieces plus a sum (the row-wise Newton method, whose
``p_out`` Hessians of ``p_a x p_a`` would each need an ``all_reduce``; the sample-space form of the MM steps,
whose ``m x m`` kernel couples samples) refuse with :class:`~fenchel_cvx.errors.ShardingError` or, for the
kernel form, give way to the feature-space form.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .errors import ShardingError

__all__ = ["TRAFFIC", "all_sum", "all_sum_float", "barrier", "broadcast_object", "column_range", "gather_columns",
           "init_from_environment", "is_sharded", "leave", "local_part", "process_group", "reset_traffic", "sharded",
           "traffic_tag", "world"]

# the group the torch face reduces over: set by `sharded`, read by `all_sum` (a context variable, so threads and
# nested calls see their own)
_GROUP: contextvars.ContextVar[Any] = contextvars.ContextVar("fenchel_cvx_shard_group", default=None)
_NONE = object()  # "no process group" inside `sharded`: all_sum stays the identity
_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("fenchel_cvx_shard_tag", default="")
#: What crossed processes since the last :func:`reset_traffic`: ``{tag: [all_reduce calls, numbers summed]}``.
TRAFFIC: dict[str, list[int]] = {}


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def process_group() -> Any | None:
    """The default process group when :mod:`torch.distributed` is initialized with more than one process, else
    ``None``."""
    if not torch.distributed.is_available():
        return None
    dist = _dist()
    if not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return dist.group.WORLD


def world(group: Any | None = None) -> tuple[int, int]:
    """``(rank, size)`` of this process in ``group`` (default: the default group); ``(0, 1)`` without one."""
    group = process_group() if group is None else group
    if group is None:
        return 0, 1
    dist = _dist()
    return dist.get_rank(group), dist.get_world_size(group)


@contextmanager
def sharded(group: Any | None = None) -> Iterator[tuple[int, int]]:
    """Within the block, :func:`all_sum` sums over ``group``'s processes.

    Parameters
    ----------
    group : ProcessGroup, optional
        Default: the default process group, when one is initialized with two or more processes; without one the
        block runs unsharded (one process holds every sample).

    Yields
    ------
    (rank, size) : tuple of int
        This process's place in the group.
    """
    group = process_group() if group is None else group
    token = _GROUP.set(_NONE if group is None else group)
    try:
        yield world(group)
    finally:
        _GROUP.reset(token)


def is_sharded() -> bool:
    """Whether :func:`all_sum` currently reduces over two or more processes."""
    g = _GROUP.get()
    return g is not None and g is not _NONE


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes of the current :func:`sharded` block, in place; ``t`` itself otherwise.

    ``t`` holds this process's partial sums over its samples; afterwards every process holds the same total.
    """
    g = _GROUP.get()
    if g is None or g is _NONE:
        return t
    if not t.is_contiguous():
        raise ShardingError(f"t: expected a contiguous tensor (all_reduce sums in place), got one of shape "
                            f"{tuple(t.shape)} with strides {t.stride()}; pass t.contiguous()")
    _dist().all_reduce(t, op=_dist().ReduceOp.SUM, group=g)
    count = TRAFFIC.setdefault(_TAG.get(), [0, 0])
    count[0] += 1
    count[1] += t.numel()
    return t


@contextmanager
def traffic_tag(tag: str) -> Iterator[None]:
    """Count the :func:`all_sum` calls of the block under ``tag`` in :data:`TRAFFIC` (e.g. a subproblem's name)."""
    token = _TAG.set(tag)
    try:
        yield
    finally:
        _TAG.reset(token)


def reset_traffic() -> dict[str, list[int]]:
    """Empty :data:`TRAFFIC` and return what it held."""
    held = {k: list(v) for k, v in TRAFFIC.items()}
    TRAFFIC.clear()
    return held


def all_sum_float(x: float | torch.Tensor, like: torch.Tensor | None = None) -> float:
    """A Python number summed over the processes of the current :func:`sharded` block (float64)."""
    if not is_sharded():
        return float(x)
    dev = like.device if like is not None else "cpu"
    return float(all_sum(torch.tensor([float(x)], dtype=torch.float64, device=dev))[0])


def column_range(m: int, rank: int, size: int) -> range:
    """The positions ``0..m-1`` that process ``rank`` of ``size`` holds: ``size`` contiguous, nearly equal parts,
    the first ``m % size`` one longer (``torch.tensor_split``'s split).

    Raises
    ------
    ShardingError
        Not ``m >= 0`` and ``0 <= rank < size``.
    """
    if not (m >= 0 and size >= 1 and 0 <= rank < size):
        raise ShardingError(f"rank: expected 0 <= rank < size (size >= 1) and m >= 0, got rank {rank}, size {size}, "
                            f"m {m}")
    q, r = divmod(m, size)
    start = rank * q + min(rank, r)
    return range(start, start + q + (rank < r))


def local_part(idx: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """This process's contiguous part of the (global) sample indices ``idx`` (:func:`column_range`). Every process
    draws the same permutation, so the parts cover each batch once."""
    part = column_range(len(idx), rank, size)
    return idx[part.start:part.stop]


def gather_columns(x: torch.Tensor, m: int, group: Any | None = None) -> torch.Tensor:
    """The ``(p, m)`` matrix whose columns :func:`local_part` spread over the processes, from this process's
    ``(p, m_local)`` part; every process gets the whole (a collective call: every process must make it)."""
    group = process_group() if group is None else group
    rank, size = world(group)
    if size == 1:
        if x.shape[-1] != m:
            raise ShardingError(f"x: expected all {m} columns (one process), got {x.shape[-1]}")
        return x
    counts = [len(column_range(m, r, size)) for r in range(size)]
    if x.shape[-1] != counts[rank]:
        raise ShardingError(f"x: expected this process's {counts[rank]} of {m} columns (rank {rank} of {size}), "
                            f"got {x.shape[-1]}")
    pad = max(counts)
    buf = x.new_zeros(*x.shape[:-1], pad)
    buf[..., :x.shape[-1]] = x
    parts = [torch.empty_like(buf) for _ in range(size)]
    _dist().all_gather(parts, buf.contiguous(), group=group)
    return torch.cat([p[..., :c] for p, c in zip(parts, counts, strict=True)], dim=-1)


def barrier() -> None:
    """Wait for every process of the default group (nothing without one)."""
    if process_group() is not None:
        _dist().barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a picklable object, e.g. a run directory name)."""
    if process_group() is None:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def leave() -> None:
    """Leave the default process group, if this process is in one (before exit: gloo's threads must stop first)."""
    if torch.distributed.is_available() and _dist().is_initialized():
        _dist().destroy_process_group()


def init_from_environment(backend: str = "auto", device: str = "cpu") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``), unless one exists already or there is one process.

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}
        ``"auto"``: NCCL when ``device`` is a CUDA device, else gloo.
    device : str
        The run's device; with CUDA each process takes the GPU ``LOCAL_RANK`` (``torch.cuda.set_device``).

    Returns
    -------
    bool
        Whether this process now belongs to a group of two or more processes.
    """
    import os

    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size < 2 or not torch.distributed.is_available():
        return False
    dist = _dist()
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if backend == "auto":
            backend = "nccl" if cuda else "gloo"
        if backend == "nccl" and not cuda:
            raise ShardingError(f"dist_backend: nccl moves CUDA tensors only; got device={device!r}. Use "
                                "--dist-backend gloo on the CPU, or --device cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return process_group() is not None
