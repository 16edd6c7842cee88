"""Run directories: train a Fenchel lifted network (or a backprop baseline) from a config, checkpoint it, resume it.

A run directory holds::

    config.json      the RunConfig (resolved: architecture, lam/rho/gamma per layer) and versions
    metrics.csv      the history rows (columns fenchel_cvx.bcd.HISTORY_KEYS), rewritten at every checkpoint
    checkpoint.pt    the trainer state after the last completed epoch (fenchel_cvx.checkpoint: atomic, no code)
    model.npz        the final network (LiftedNetwork.save)
    summary.json     final accuracies, training time per epoch, time to 97 % test accuracy
    compare-adam/    (optional) a run directory of the comparison baseline, same data, seed and budget

This module is what ``fenchel-cvx train`` and ``benchmarks/bench_training.py`` call; :mod:`fenchel_cvx.cli`
only parses arguments. Data are samples-first ``(m, n)`` here, as everywhere at the user boundary.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .baselines import Backprop, BackpropSettings, BackpropState
from .bcd import BCD, HISTORY_KEYS, BCDSettings, BCDState
from .checkpoint import load_checkpoint, run_config, save_checkpoint
from .data import DATASETS, Dataset, load_dataset
from .errors import CheckpointError, FenchelError, ShapeError, ValueRangeError
from .network import LiftedNetwork

__all__ = [
    "METHODS",
    "TARGET_ACC",
    "RunConfig",
    "collect_runs",
    "default_run_name",
    "load_data",
    "read_metrics",
    "read_summary",
    "train_run",
]

METHODS = ("fenchel", "adam", "sgd")
TARGET_ACC = 0.97  # the "time to 97 % test accuracy" of the benchmark and the summary
CONFIG, METRICS, CHECKPOINT, MODEL, SUMMARY = "config.json", "metrics.csv", "checkpoint.pt", "model.npz", "summary.json"

# Appendix C, 784-300-10. Batched: lam 0.1 and the listed (1, 100) read as the proximal weights gamma, no
# ridge (bcd.py's docstring: "for batched models we do not use pi"; the official code's offsets are these).
# Non-batched: rho = (1e-2, 10), lam = 0.1. For other depths, hidden layers take the first value, the output
# layer the last.
_BATCHED_DEFAULTS = {"lam": 0.1, "rho": (0.0, 0.0), "gamma": (1.0, 100.0)}
_FULL_DEFAULTS = {"lam": 0.1, "rho": (1e-2, 10.0), "gamma": (0.0, 0.0)}


@dataclass
class RunConfig:
    """Everything that defines one training run (what ``fenchel-cvx train`` options set).

    Attributes
    ----------
    method : {"fenchel", "adam", "sgd"}
    dataset : {"mnist-small", "mnist", "cifar10", "synthetic"}
    data_dir : str or None
        Folder with the files (``mnist``, ``cifar10``).
    sizes : list of int or None
        ``[n, p_1, ..., p_L, p]``; ``None``: ``[n, 300, p]`` from the data set.
    loss : {"ce", "mse"}
    activation : str
        Hidden activation (``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``).
    batch_size : int or None
        ``None``: full batch (Algorithm 1 / full-batch gradient descent).
    epochs : int
    lam, rho, gamma : float, list of float, or None
        ``None`` takes Appendix C's 784-300-10 values for the batch mode (see :meth:`resolved`). Per layer:
        ``lam`` has L entries, ``rho`` and ``gamma`` L+1. ``rho`` is also the baselines' weight penalty.
    K : int
        Alternations per batch (Algorithm 2).
    inexact : bool or None
        Inexact W-updates (``inexact_iters`` warm-started solver iterations instead of exact solves). ``None``:
        inexact for batched runs (Algorithm 2, the main job, where exact solves of every batch cost 100x a
        backprop step), exact for full batch (Algorithm 1, whose monotone decrease of J needs exact blocks).
    inexact_iters : int
        Solver iterations per inexact W-update (default 1, the paper's "one step" of Sec. 5.3).
    inexact_x_iters : int or None
        In inexact mode, also cap the FISTA X-updates at this many warm-started iterations (``None``: solved
        to ``tol``); see :class:`~fenchel_cvx.bcd.BCDSettings`.
    curvature : {"batch", "running"}
        Curvature of the inexact W-steps: the batch's own MM bound (certified, monotone) or a running estimate
        (one preconditioned step per block, about a backprop step's cost); see
        :class:`~fenchel_cvx.bcd.BCDSettings`.
    curvature_every : int
        Batches between refreshes of the running curvature.
    curvature_rank : int or None
        Eigenpairs kept of each running curvature (``None``: exact inverse).
    curvature_relax : float
        Step multiplier of the running W-steps (1: the preconditioned step).
    curvature_line_search : bool
        Running W-steps choose their length by a line search (monotone J, one more GEMM per hidden layer).
    tol : float
        Subproblem solver tolerance.
    lr : float or None
        Baselines' learning rate (``None``: Appendix C, Adam 1e-3, SGD 1e-2).
    device, dtype : str
    seed : int
        Seeds the weight initialization, the batch permutations and the synthetic data.
    eval_every : int or None
        Extra history rows every this many batches.
    n_train, n_test : int or None
        Synthetic data sizes, or a random subsample of a real data set (``None``: everything; synthetic
        defaults to 1000 / 200).
    """

    method: str = "fenchel"
    dataset: str = "mnist-small"
    data_dir: str | None = None
    sizes: list | None = None
    loss: str = "ce"
    activation: str = "relu"
    batch_size: int | None = 500
    epochs: int = 3
    lam: Any = None
    rho: Any = None
    gamma: Any = None
    K: int = 1
    inexact: bool | None = None
    inexact_iters: int = 1
    inexact_x_iters: int | None = None
    curvature: str = "batch"
    curvature_every: int = 100
    curvature_rank: int | None = 64
    curvature_relax: float = 1.0
    curvature_line_search: bool = False
    tol: float = 1e-6
    lr: float | None = None
    device: str = "cpu"
    dtype: str = "float64"
    seed: int = 0
    eval_every: int | None = None
    n_train: int | None = None
    n_test: int | None = None

    #: Options a resumed run may change (they do not change the weights it produces).
    RESUMABLE = ("epochs", "device", "eval_every", "data_dir")

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FenchelError`."""
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise FenchelError(f"config: unknown keys {sorted(extra)}; expected a subset of {sorted(names)}")
        return cls(**d)

    def check(self) -> None:
        """Raise a typed error for an unknown method, data set, loss, batch size or epoch count."""
        if self.method not in METHODS:
            raise FenchelError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.dataset not in DATASETS:
            raise FenchelError(f"dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if self.loss not in ("ce", "mse"):
            raise FenchelError(f"loss: expected 'ce' or 'mse', got {self.loss!r}")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueRangeError(f"batch_size: expected a positive integer or None (full batch), got "
                                  f"{self.batch_size!r}")
        if not (isinstance(self.epochs, int) and self.epochs >= 0):
            raise ValueRangeError(f"epochs: expected an integer >= 0, got {self.epochs!r}")

    def resolved(self, n: int, p: int) -> RunConfig:
        """A copy with ``sizes`` checked against the data (``n`` features, ``p`` classes) and ``lam``, ``rho``,
        ``gamma`` as per-layer lists (scalars broadcast; Appendix C's values where they were ``None``) and
        ``inexact`` decided."""
        sizes = list(self.sizes) if self.sizes else [n, 300, p]
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ShapeError(f"arch: expected positive layer sizes n-p_1-...-p, got {sizes}")
        if sizes[0] != n or sizes[-1] != p:
            raise ShapeError(f"arch: the data set {self.dataset!r} has {n} features and {p} classes, so the "
                             f"architecture must read {n}-...-{p}, got {'-'.join(map(str, sizes))}; try --arch "
                             f"{n}-300-{p}")
        L = len(sizes) - 2
        base = _FULL_DEFAULTS if self.batch_size is None else _BATCHED_DEFAULTS

        def layerwise(value: Any, key: str, count: int) -> list:
            if value is None:
                d = base[key]
                return [float(d)] * count if not isinstance(d, tuple) else [float(d[0])] * (count - 1) + [float(d[1])]
            if isinstance(value, (list, tuple)):
                if len(value) == 1:
                    return [float(value[0])] * count
                if len(value) != count:
                    raise ShapeError(f"{key}: expected one value or {count} per-layer values for the architecture "
                                     f"{'-'.join(map(str, sizes))}, got {len(value)}")
                return [float(v) for v in value]
            return [float(value)] * count
        inexact = (self.batch_size is not None) if self.inexact is None else bool(self.inexact)
        return replace(self, sizes=sizes, lam=layerwise(self.lam, "lam", L), rho=layerwise(self.rho, "rho", L + 1),
                       gamma=layerwise(self.gamma, "gamma", L + 1), inexact=inexact)

    def trainer_settings(self) -> BCDSettings | BackpropSettings:
        """The trainer settings of a resolved config (BCD for ``fenchel``, backprop otherwise)."""
        if self.method == "fenchel":
            return BCDSettings(lam=self.lam, rho=self.rho, gamma=self.gamma, batch_size=self.batch_size, K=self.K,
                               epochs=self.epochs, tol=self.tol, inexact=self.inexact,
                               inexact_iters=self.inexact_iters, inexact_x_iters=self.inexact_x_iters,
                               curvature=self.curvature, curvature_every=self.curvature_every,
                               curvature_rank=self.curvature_rank, curvature_relax=self.curvature_relax,
                               curvature_line_search=self.curvature_line_search,
                               device=self.device, dtype=self.dtype,
                               seed=self.seed, eval_every=self.eval_every)
        return BackpropSettings(optimizer=self.method, lr=self.lr, rho=self.rho, batch_size=self.batch_size,
                                epochs=self.epochs, device=self.device, dtype=self.dtype, seed=self.seed,
                                eval_every=self.eval_every)


def default_run_name(cfg: RunConfig) -> str:
    """``runs/<method>-<dataset>[-<arch>]-<loss>-s<seed>-<timestamp>`` (the architecture when it was given)."""
    arch = "-" + "-".join(map(str, cfg.sizes)) if cfg.sizes else ""
    return str(Path("runs") / f"{cfg.method}-{cfg.dataset}{arch}-{cfg.loss}-s{cfg.seed}-"
                              f"{time.strftime('%Y%m%d-%H%M%S')}")


def load_data(cfg: RunConfig) -> tuple[Dataset, dict]:
    """Load ``cfg.dataset`` and return it with float arrays ``{"X", "y", "X_test", "y_test"}`` (samples-first).

    Raises
    ------
    DataFileError
        Missing ``data_dir`` or file; the message names it.
    """
    kw: dict[str, Any] = {"seed": cfg.seed}
    if cfg.dataset == "synthetic":
        kw.update(n_train=cfg.n_train or 1000, n_test=cfg.n_test or 200)
    ds = load_dataset(cfg.dataset, cfg.data_dir, **kw)
    if cfg.dataset != "synthetic" and (cfg.n_train is not None or cfg.n_test is not None):
        ds = ds.subsample(cfg.n_train, cfg.n_test, seed=cfg.seed)
    X, y = ds.arrays("train")
    Xt, yt = ds.arrays("test")
    return ds, {"X": X, "y": y, "X_test": Xt, "y_test": yt}


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_metrics(path: Path, rows: Sequence[dict]) -> None:
    """Write history rows as CSV (columns :data:`~fenchel_cvx.bcd.HISTORY_KEYS`), atomically."""
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(HISTORY_KEYS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    _write_atomic(path, buf.getvalue())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """History rows of a run directory's ``metrics.csv`` (numbers as floats, ``method`` as text).

    Raises
    ------
    FenchelError
        No ``metrics.csv`` in ``run_dir``.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FenchelError(f"run_dir: expected a run directory holding {METRICS}, got {str(run_dir)!r} (no "
                           f"{path}); pass a folder written by `fenchel-cvx train`")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        row = {}
        for k, v in r.items():
            if k == "method":
                row[k] = v
            else:
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = math.nan
        out.append(row)
    return out


def read_summary(run_dir: str | os.PathLike) -> dict:
    """The ``summary.json`` of a finished run (empty dict when absent)."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def collect_runs(paths: Sequence[str | os.PathLike], *, nested: bool = True) -> dict[str, list[dict]]:
    """Label -> history rows for every run directory in ``paths``.

    A path that is a run directory contributes itself and (``nested``) its ``compare-*`` run directories; a
    path without ``metrics.csv`` contributes every run directory directly inside it (e.g. a benchmark's output).
    Labels are the method (``fenchel``, ``fenchel (inexact)``, ``adam``, ``sgd (lr 0.1)`` when not the default
    rate); runs that would share a label get the settings in which they differ (``fenchel (inexact), gamma 1,10,
    inexact_iters 3``), or ``parent/folder`` when their settings are the same.

    Raises
    ------
    FenchelError
        A path that does not exist, or no run directory found.
    """
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FenchelError(f"runs: {str(p)!r} is not a directory; pass run directories written by "
                               "`fenchel-cvx train`")
        if (p / METRICS).is_file():
            dirs.append(p)
            if nested:
                dirs.extend(sorted(q for q in p.glob("compare-*") if (q / METRICS).is_file()))
        else:
            found = sorted(q for q in p.iterdir() if q.is_dir() and (q / METRICS).is_file())
            if not found:
                raise FenchelError(f"runs: {str(p)!r} holds no {METRICS} and no run directories; pass run "
                                   "directories written by `fenchel-cvx train`")
            for q in found:
                dirs.append(q)
                if nested:
                    dirs.extend(sorted(c for c in q.glob("compare-*") if (c / METRICS).is_file()))
    if not dirs:
        raise FenchelError("runs: expected at least one run directory, got none")
    runs: dict[str, list[dict]] = {}
    labels = []
    for d in dirs:
        rows = read_metrics(d)
        method = next((r["method"] for r in rows if r.get("method")), d.name)
        try:
            # options a run's config predates (written by an older version) took their default value
            saved = {**RunConfig().to_dict(), **json.loads((d / CONFIG).read_text())["config"]}
        except (OSError, ValueError, KeyError, TypeError):
            saved = {}
        if method == "fenchel" and saved.get("inexact"):
            method = "fenchel (inexact)"
        elif method in ("adam", "sgd") and saved.get("lr") is not None:
            method = f"{method} (lr {saved['lr']:g})"
        labels.append((method, d, rows, saved))
    groups: dict[str, list[dict]] = {}
    for method, _, _, saved in labels:
        groups.setdefault(method, []).append(saved)
    for i, (method, d, rows, saved) in enumerate(labels):
        label = method
        if len(groups[method]) > 1:
            keys = [k for k in sorted(set().union(*groups[method]) - _NOT_SETTINGS)
                    if any(g.get(k) != saved.get(k) for g in groups[method])]
            label = (f"{method}, " + ", ".join(f"{k} {_short(saved.get(k))}" for k in keys) if keys
                     else f"{method}: {d.parent.name}/{d.name}")
        runs[label if label not in runs else f"{label} #{i}"] = rows
    return runs


#: Saved config entries that name a run's place or budget rather than its algorithm (never used in labels).
_NOT_SETTINGS = frozenset({"data_dir", "epochs", "device", "eval_every", "n_train", "n_test", "method"})


def _short(v: Any) -> str:
    """``[1.0, 10.0]`` -> ``1,10``; ``0.1`` -> ``0.1``; ``None`` -> ``default``."""
    if v is None:
        return "default"
    if isinstance(v, (list, tuple)):
        return ",".join(_short(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


# -- training ------------------------------------------------------------------------------------------------
def _make_trainer(cfg: RunConfig, net: LiftedNetwork) -> BCD | Backprop:
    settings = cfg.trainer_settings()
    return BCD(net, settings) if cfg.method == "fenchel" else Backprop(net, settings)


def _identity(cfg: RunConfig, net: LiftedNetwork, trainer: BCD | Backprop) -> dict:
    """The checkpoint fingerprint's config: network, trajectory settings and the data that were used."""
    data = {"dataset": cfg.dataset, "n_train": cfg.n_train, "n_test": cfg.n_test, "init_seed": cfg.seed}
    return run_config(net, {**trainer.settings.to_dict(), "data": data}, method=cfg.method)


def _time_to(rows: Sequence[dict], target: float) -> float | None:
    for r in rows:
        if r.get("test_acc") is not None and np.isfinite(r["test_acc"]) and r["test_acc"] >= target:
            return float(r["time"])
    return None


def train_run(cfg: RunConfig | None, out: str | os.PathLike, *, resume: bool = False,
              overrides: dict | None = None, progress: bool = True, data: tuple[Dataset, dict] | None = None,
              echo: Callable[[str], None] | None = None) -> dict:
    """Train one run into the run directory ``out`` (checkpoint every epoch), or continue it with ``resume``.

    Parameters
    ----------
    cfg : RunConfig or None
        Unresolved or resolved; ``sizes``/``lam``/``rho``/``gamma`` are filled from the data and Appendix C.
        ``None``: the defaults (or, with ``resume``, the saved ``config.json``).
    out : path-like
        The run directory (created). Without ``resume`` it must not already hold a run.
    resume : bool
        Continue from ``out/checkpoint.pt`` (the last completed epoch) with the saved ``config.json``; a
        directory with a config but no checkpoint yet starts from scratch. ``cfg`` is ignored.
    overrides : dict, optional
        Options set explicitly (by the command line) on top of ``cfg``. When resuming, only
        :attr:`RunConfig.RESUMABLE` ones (``epochs`` to extend a run, ``device``, ...) may differ from the saved
        run; any other that differs raises :class:`CheckpointError` naming it.
    progress : bool
        tqdm progress bar and one line per epoch.
    data : (Dataset, arrays), optional
        Preloaded :func:`load_data` result (saves reloading for a comparison run).
    echo : callable(str), optional
        Where epoch lines go (default: ``tqdm.write`` when ``progress``, else nowhere).

    Returns
    -------
    dict
        The summary also written to ``summary.json``: ``method``, ``run_dir``, ``epochs``, ``final`` (the
        last history row), ``time`` and ``time_per_epoch`` (training seconds, evaluation excluded),
        ``time_to_97``, ``best_test_acc``.

    Raises
    ------
    FenchelError
        Bad configuration, or ``out`` already holds a run and ``resume`` is False.
    CheckpointError
        ``resume`` on a directory without ``config.json``, or a checkpoint of another run.
    DataFileError
        Missing data files.
    """
    out = Path(out)
    overrides = dict(overrides or {})
    saved = None
    if resume:
        saved = _saved_config(out)
        cfg = replace(saved, **overrides)
    else:
        if (out / CONFIG).exists() or (out / CHECKPOINT).exists():
            raise FenchelError(f"out: {str(out)!r} already holds a run; continue it with --resume, or choose "
                               "another --out directory")
        cfg = replace(cfg if cfg is not None else RunConfig(), **overrides)
    cfg.check()
    ds, arrays = data if data is not None else load_data(cfg)
    cfg = cfg.resolved(ds.n_features, ds.n_classes)
    if saved is not None:
        changed = [f"{k}: saved {getattr(saved, k)!r} vs now {getattr(cfg, k)!r}" for k in saved.to_dict()
                   if k not in RunConfig.RESUMABLE and getattr(saved, k) != getattr(cfg, k)]
        if changed:
            raise CheckpointError(f"resume: {str(out)!r} was trained with other settings ({'; '.join(changed)}); "
                                  "only " + ", ".join(RunConfig.RESUMABLE) + " may change on --resume. Drop "
                                  "those options, or start a fresh run directory")
    out.mkdir(parents=True, exist_ok=True)
    net = LiftedNetwork(cfg.sizes, cfg.activation, cfg.loss, seed=cfg.seed)
    trainer = _make_trainer(cfg, net)
    identity = _identity(cfg, net, trainer)
    state: BCDState | BackpropState | None = None
    if resume and (out / CHECKPOINT).exists():
        ck = load_checkpoint(out / CHECKPOINT, config=identity)
        cls = BCDState if cfg.method == "fenchel" else BackpropState
        state = cls.from_state_dict(ck["state"], device=cfg.device, dtype=cfg.dtype)
    else:
        state = trainer.init_state()
    _write_atomic(out / CONFIG, json.dumps({"config": cfg.to_dict(), "identity": identity,
                                            "fenchel_cvx": __version__, "torch": torch.__version__,
                                            "python": platform.python_version(),
                                            "machine": platform.platform()}, indent=2) + "\n")
    if echo is None:
        if progress:
            from tqdm.auto import tqdm
            echo = tqdm.write
        else:
            def echo(_msg: str) -> None:
                pass

    def on_row(st: Any, row: dict) -> None:
        write_metrics(out / METRICS, st.history)
        if st.batch == 0:  # an epoch just ended: the state is between batches, safe to resume from
            save_checkpoint(out / CHECKPOINT, st.state_dict(),
                            {"config": identity, "epoch": st.epoch, "method": cfg.method})
            J = "" if not np.isfinite(row["J"]) else f"  J {row['J']:.5g}"
            echo(f"[{cfg.method}] epoch {st.epoch}/{cfg.epochs}{J}  train acc {row['train_acc']:.4f}  "
                 f"test acc {row['test_acc']:.4f}  time {row['time']:.1f}s")

    state = trainer.run(arrays["X"], arrays["y"], X_test=arrays["X_test"], y_test=arrays["y_test"], state=state,
                        callback=on_row, progress=progress)
    write_metrics(out / METRICS, state.history)
    trainer.network_from_state(state).save(out / MODEL)
    rows = state.history
    final = rows[-1] if rows else {}
    summary = {"method": cfg.method, "run_dir": str(out), "dataset": cfg.dataset, "sizes": cfg.sizes,
               "n_train": len(arrays["y"]), "n_test": len(arrays["y_test"]),
               "epochs": int(state.epoch), "final": final, "time": float(state.elapsed),
               "time_per_epoch": float(state.elapsed / state.epoch) if state.epoch else math.nan,
               "time_to_97": _time_to(rows, TARGET_ACC),
               "best_test_acc": max((r["test_acc"] for r in rows if np.isfinite(r["test_acc"])), default=None)}
    _write_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _saved_config(out: Path) -> RunConfig:
    """The resolved config saved in the run directory ``out``."""
    path = out / CONFIG
    if not path.is_file():
        raise CheckpointError(f"out: nothing to resume in {str(out)!r} (no {CONFIG}); start a fresh run without "
                              "--resume, or point --out at an existing run directory")
    try:
        return RunConfig.from_dict(json.loads(path.read_text())["config"])
    except (ValueError, KeyError, TypeError, FenchelError) as exc:
        raise CheckpointError(f"{path}: not a fenchel-cvx run config ({exc}); start a fresh run") from None
