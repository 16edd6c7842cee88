"""Host reads per batch: how often each training mode makes Python wait for the device (issue 15, item 4).

On a GPU, Python reading a tensor's value -- ``bool(t)``, ``float(t)``, ``t.item()``, ``t.tolist()``, a copy to
the host, ``nonzero`` or a boolean-mask index (their output size depends on the data), a factorization that checks
its own success -- waits until the device has finished every kernel queued before it: the queue drains, and the
launch latency of the kernels after it is paid in full instead of hidden behind the work. The count of such reads
is a property of the code, not of the machine, so it is measured here on any device, the CPU included: every call
that would synchronize is intercepted (``torch.overrides.TorchFunctionMode``) while a trainer takes its batches, and
the table gives the reads per batch for each mode with the code lines that make most of them. Evaluation after an
epoch is not counted.

    python benchmarks/host_syncs.py
    python benchmarks/host_syncs.py --arch lenet5 --runs fenchel-adam,adam
    python benchmarks/host_syncs.py --device cuda     # the same count, on a GPU

The dense runs are ``bench_training.py``'s (784-300-10, batch 500), the LeNet-5 runs ``bench_lenet.py``'s; the data
are the MNIST subset shipped with the package (``--n-train`` images of it).
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import fenchel_cvx
from fenchel_cvx.runs import load_data, make_trainer
from fenchel_cvx.settings import RunConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import run_main  # noqa: E402
from bench_lenet import RUNS as LENET_RUNS  # noqa: E402
from bench_lenet import run_settings  # noqa: E402
from bench_training import _PART_A as DENSE_RUNS  # noqa: E402

# Tensor methods that hand a value to Python, and functions whose output size or error check needs the device's
# result before they return (on CUDA each of these waits for the queue)
_VALUE_READS = frozenset({"item", "__bool__", "__float__", "__int__", "__index__", "tolist"})
_SIZED = frozenset({"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "linalg_cholesky",
                    "linalg_solve", "linalg_inv", "linalg_eigh", "linalg_eigvalsh", "cholesky"})
# factories: without a device argument their tensor is made on the host, whatever device the run uses
_FACTORIES = frozenset({"tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "arange", "linspace",
                        "eye", "rand", "randn", "randint", "randperm"})
_PACKAGE = Path(fenchel_cvx.__file__).resolve().parent.as_posix() + "/"


def _tensors(x: Any) -> list:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return _tensors(list(x.values()))
    return []


def _bool_index(index: Any) -> bool:
    return any(t.dtype == torch.bool for t in _tensors(index))


def _host_target(name: str, args: tuple, kwargs: dict) -> bool | None:
    """For a copy: True when it goes to the host by name (``.cpu()``, ``.to("cpu")``), False when it goes to a device
    given as an object (``.to(run_device)``, ``.to(other_tensor)``), None when it is no copy."""
    if name == "cpu":
        return True
    if name != "to":
        return None
    targets = [*args[1:], kwargs.get("device")]
    if any(isinstance(t, str) and t.startswith("cpu") for t in targets):
        return True
    if any(isinstance(t, (torch.device, torch.Tensor)) for t in targets):
        return False
    return None  # a dtype change only: stays where it is


class HostReads(TorchFunctionMode):
    """Count the package's calls that would make the host wait for the device, by kind and by the line making them.

    ``total`` is the count; ``sites`` a :class:`collections.Counter` of ``"module.py:line kind"``. The count is what
    a run on a GPU would make, measured on any device: tensors the package keeps on the host on purpose are tracked
    -- those made by a factory without a device, copied out by ``.cpu()`` or ``.to("cpu")``, and whatever is
    computed from host tensors alone -- and reading them is free; a copy out counts once, as the read it is. A copy
    to ``run_device`` (a device object, as the trainers pass it) makes a device tensor again. Only calls made by the
    package's own code count: torch's own (e.g. ``torch.optim.Adam`` reading the step counters it keeps on the host)
    know their devices.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.sites: collections.Counter = collections.Counter()
        self._host: dict[int, weakref.ref] = {}  # id -> ref: tensors compare elementwise, so no WeakSet

    def _is_host(self, t: torch.Tensor) -> bool:
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inputs = _tensors((args, kwargs))
        on_host = bool(inputs) and all(self._is_host(t) for t in inputs)
        target = _host_target(name, args, kwargs) if inputs else None
        kind = None
        if not on_host:
            if name in _VALUE_READS or name in _SIZED:
                kind = name
            elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _bool_index(args[1]):
                kind = f"{name}[bool mask]"
            elif target:
                kind = "copy to host"
        if kind is not None:
            caller = traceback.extract_stack(limit=2)[0]
            path = caller.filename.replace("\\", "/")
            if _PACKAGE in path:
                self.total += 1
                self.sites[f"{path.split(_PACKAGE)[-1]}:{caller.lineno} {kind}"] += 1
        out = func(*args, **kwargs)
        made_on_host = name in _FACTORIES and kwargs.get("device") is None
        if target or made_on_host or (on_host and target is None):
            for t in _tensors(out):
                self._host[id(t)] = weakref.ref(t)
        return out


class Ops(TorchDispatchMode):
    """Count the ATen operators dispatched (``total``): about one kernel launch each on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.total += 1
        return func(*args, **(kwargs or {}))


def count(cfg: RunConfig, data: Any) -> tuple[int, HostReads, Ops]:
    """Train ``cfg`` on ``data`` (a loaded data set, as :func:`fenchel_cvx.runs.load_data` returns) and count the
    host reads and the operators of its batch steps; returns (batches, reads, ops)."""
    ds, arrays = data
    trainer = make_trainer(cfg, ds.image_shape, ds.n_classes)
    reads, ops, batches = HostReads(), Ops(), 0
    step = trainer._checked_step

    def counted(*a: Any, **k: Any) -> Any:
        nonlocal batches
        batches += 1
        with reads, ops:
            return step(*a, **k)

    trainer._checked_step = counted  # the loop's one call per batch; evaluation stays outside the count
    trainer.run(arrays["X"], arrays["y"], X_test=arrays["X_test"][:200], y_test=arrays["y_test"][:200],
                progress=False)
    return batches, reads, ops


def _config(name: str, arch: str | None, args: argparse.Namespace) -> RunConfig:
    base = RunConfig().with_values({"dataset": "mnist-small", "loss": "ce", "batch_size": 500, "epochs": 1,
                                    "device": args.device, "seed": 0, "n_train": args.n_train, "n_test": 200})
    if arch is None:
        if name not in DENSE_RUNS:
            raise SystemExit(f"--runs: unknown dense run {name!r}; choose from {sorted(DENSE_RUNS)}")
        return base.with_values(DENSE_RUNS[name])
    if name not in LENET_RUNS:
        raise SystemExit(f"--runs: unknown LeNet-5 run {name!r}; choose from {sorted(LENET_RUNS)}")
    return base.with_values({"arch": arch, **run_settings(name, "mnist-small")})


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=None, help="lenet5 for the LeNet-5 runs (default: the dense 784-300-10 net)")
    p.add_argument("--runs", default=None, help="comma-separated run names (default: the modes users run)")
    p.add_argument("--n-train", type=int, default=2000, help="training images of the shipped MNIST subset "
                   "(batches of 500; default 2000)")
    p.add_argument("--device", default="cpu", help="torch device of the runs, e.g. cuda (the count is the same)")
    p.add_argument("--top", type=int, default=3, help="code lines listed per run")
    args = p.parse_args(argv)
    if args.n_train < 500:
        p.error(f"--n-train: expected at least one batch of 500 images, got {args.n_train}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    default = ("fenchel-adam,adam" if args.arch else
               "fenchel-default,fenchel-fast,fenchel-inexact,fenchel,adam,sgd")
    names = [r for r in (args.runs or default).split(",") if r]
    configs = {name: _config(name, args.arch, args) for name in names}
    data = load_data(next(iter(configs.values())))
    print(f"host reads per batch, {args.arch or '784-300-10'} on {args.n_train} MNIST images, batch 500, "
          f"device {args.device}, torch {torch.__version__}")
    head = f"{'run':<22} {'batches':>7} {'ops/batch':>9} {'reads/batch':>11}  most reads at (per batch)"
    print(head)
    print("-" * len(head))
    for name, cfg in configs.items():
        batches, reads, ops = count(cfg, data)
        top = ", ".join(f"{site} {n / batches:.1f}" for site, n in reads.sites.most_common(args.top))
        print(f"{name:<22} {batches:>7} {ops.total / batches:>9.0f} {reads.total / batches:>11.1f}  {top}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
