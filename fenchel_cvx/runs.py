"""Run directories: train a Fenchel lifted network (or a backprop baseline) from a config, checkpoint it, resume it.

A run directory holds::

    config.json      the RunConfig as given, the values it resolved to (layer sizes, per-layer lam/rho/gamma),
                     the checkpoint identity and the versions
    metrics.csv      the history rows (columns fenchel_cvx.trainer.HISTORY_KEYS), rewritten at every checkpoint
    checkpoint.pt    the trainer state after the last completed epoch (fenchel_cvx.checkpoint: atomic, no code)
    model.npz        the final network (LiftedNetwork.save)
    summary.json     final accuracies, training time per epoch, time to 97 % test accuracy
    compare-adam/    (optional) a run directory of the comparison baseline, same data, seed and budget

This module is what ``fenchel-cvx train`` and the benchmarks call; :mod:`fenchel_cvx.cli` only parses arguments
into a :class:`~fenchel_cvx.settings.RunConfig`. Data are samples-first ``(m, n)`` here, as everywhere at the user
boundary.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from ._checks import check_choice, check_int, file_in_the_way
from .baselines import Backprop
from .bcd import BCD
from .checkpoint import file_mode, load_checkpoint, remove_stale_temporaries, run_config, save_checkpoint, write_atomic
from .data import Dataset, load_dataset
from .errors import CheckpointError, FenchelError
from .network import LiftedNetwork, _check_in_shape
from .settings import (
    METHODS,
    MODE_FLAGS,
    SHARED_GROUPS,
    RunConfig,
    resumable,
    unread_settings,
)
from .shards import barrier, world
from .trainer import HISTORY_KEYS, Trainer, TrainState

__all__ = [
    "TARGET_ACC",
    "collect_runs",
    "default_run_name",
    "load_data",
    "make_trainer",
    "trainer_class",
    "read_metrics",
    "read_summary",
    "train_run",
]

TARGET_ACC = 0.97  # the "time to 97 % test accuracy" of the benchmark and the summary
CONFIG, METRICS, CHECKPOINT, MODEL, SUMMARY = "config.json", "metrics.csv", "checkpoint.pt", "model.npz", "summary.json"


def default_run_name(cfg: RunConfig) -> str:
    """``runs/<method>-<dataset>-<settings that differ from the defaults>-s<seed>-<timestamp>``.

    Runs that differ in any setting get different names (``runs/fenchel-mnist-small-curvature-running-relax-1.5-
    s0-20261206-101500``); settings that name a place or a budget (``data_dir``, ``epochs``, ``device``, ...) are
    left out.
    """
    base = RunConfig().flat()
    skip = resumable() | {"dataset", "seed"}
    parts = [cfg.method, cfg.data.dataset]
    for path, value in cfg.flat().items():
        name = path.rpartition(".")[2]
        if name in skip or value == base[path] or path == "method":
            continue
        if unread_settings([path], [cfg.method]):
            continue  # another trainer's settings
        parts.append(f"{name.replace('_', '-').replace('curvature-', '')}-{_short(value)}")
    parts.append(f"s{cfg.train.seed}")
    name = re.sub(r"[^A-Za-z0-9.,_+-]+", "_", "-".join(parts))
    return str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def load_data(cfg: RunConfig) -> tuple[Dataset, dict]:
    """Load ``cfg.data`` and return it with float arrays ``{"X", "y", "X_test", "y_test"}`` (samples-first).

    Raises
    ------
    DataFileError
        Missing ``data_dir`` or file; the message names it.
    """
    if not isinstance(cfg, RunConfig):
        raise FenchelError(f"cfg: expected a RunConfig, got {type(cfg).__name__}")
    d = cfg.data
    kw: dict[str, Any] = {"seed": cfg.train.seed}
    if d.dataset == "synthetic":
        kw.update(n_train=d.n_train or 1000, n_test=d.n_test or 200)
    ds = load_dataset(d.dataset, d.data_dir, **kw)
    if d.dataset != "synthetic" and (d.n_train is not None or d.n_test is not None):
        ds = ds.subsample(d.n_train, d.n_test, seed=cfg.train.seed)
    X, y = ds.arrays("train")
    Xt, yt = ds.arrays("test")
    return ds, {"X": X, "y": y, "X_test": Xt, "y_test": yt}


def write_metrics(path: Path, rows: Sequence[dict]) -> None:
    """Write history rows as CSV (columns :data:`~fenchel_cvx.trainer.HISTORY_KEYS`), atomically."""
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(HISTORY_KEYS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    write_atomic(path, buf.getvalue())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """History rows of a run directory's ``metrics.csv`` (numbers as floats, ``method`` as text).

    Raises
    ------
    FenchelError
        No ``metrics.csv`` in ``run_dir``, or one that is not a text CSV.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FenchelError(f"run_dir: expected a run directory holding {METRICS}, got {str(run_dir)!r} (no "
                           f"{path}); pass a folder written by `fenchel-cvx train`")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FenchelError(f"run_dir: {path} is not a readable metrics table ({type(exc).__name__}: {exc}); it "
                           "should be the CSV `fenchel-cvx train` writes -- train the run again") from None
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


def make_trainer(cfg: RunConfig, in_shape: int | tuple, n_classes: int) -> Trainer:
    """The trainer of ``cfg`` (its network initialized with ``cfg.train.seed``) for data of the given shape.

    Parameters
    ----------
    cfg : RunConfig
    in_shape : int or tuple of int
        The data set's sample shape (``Dataset.image_shape``: ``(1, 28, 28)``, ``(n,)``, or a feature count).
    n_classes : int
        They fix the architecture when ``cfg.network.arch`` is ``None`` (``<features>-300-<classes>``) and must
        fit it otherwise.

    Raises
    ------
    ShapeError
        ``cfg.network.arch`` does not fit the data, or ``in_shape`` is not ``n``, ``(n,)`` or ``(C, H, W)`` of
        positive integers.
    ValueRangeError
        ``n_classes`` not a positive integer.
    """
    if not isinstance(cfg, RunConfig):
        raise FenchelError(f"cfg: expected a RunConfig, got {type(cfg).__name__}")

    # a feature count n reads as (n,); LiftedNetwork's own check then holds the shape to (n,) or (C, H, W)
    shape = _check_in_shape([in_shape] if isinstance(in_shape, (int, np.integer)) or in_shape is None else in_shape)
    n_classes = check_int(n_classes, "n_classes", 1)
    layers = cfg.network.layers_for(shape, n_classes)
    net = LiftedNetwork(layers, cfg.network.activation, cfg.network.loss, seed=cfg.train.seed)
    return trainer_class(cfg.method)(net, cfg.trainer_settings())


def trainer_class(method: str) -> type:
    """The :class:`~fenchel_cvx.trainer.Trainer` of a run's ``method`` (:data:`~fenchel_cvx.settings.METHODS`)."""
    method = check_choice(method, "method", METHODS)
    if method == "fenchel":
        return BCD
    if method in ("adam", "sgd"):
        return Backprop
    from .peers import trainer_of

    return trainer_of(method)


def collect_runs(paths: Sequence[str | os.PathLike], *, nested: bool = True) -> dict[str, list[dict]]:
    """Label -> history rows for every run directory in ``paths``.

    A path that is a run directory contributes itself and (``nested``) its ``compare-*`` run directories; a
    path without ``metrics.csv`` contributes every run directory directly inside it (e.g. a benchmark's output).
    Labels are the method (``fenchel``, ``adam``, ``sgd``); runs that would share a label get the settings in
    which they differ (``fenchel, gamma 1,10, inexact_iters 3``), or ``parent/folder`` when their settings are the
    same; every run's label names the settings every trainer reads (data, network, loop) in which any two runs
    differ (``adam, lr_decay 0.9``). A run directory reached twice (named twice, or through a folder and by
    itself) counts once.

    Raises
    ------
    FenchelError
        A path that does not exist, or no run directory found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # one directory
    if paths is None or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise FenchelError(f"runs: expected run directories (paths), got {paths!r}")
    if not paths:
        raise FenchelError("runs: expected at least one run directory, got none")
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FenchelError(f"runs: {str(p)!r} is not a directory; pass run directories written by "
                               "`fenchel-cvx train`")
        found = [p] if (p / METRICS).is_file() else sorted(q for q in p.iterdir() if q.is_dir() and
                                                           (q / METRICS).is_file())
        if not found:
            raise FenchelError(f"runs: {str(p)!r} holds no {METRICS} and no run directories; pass run "
                               "directories written by `fenchel-cvx train`")
        for q in found:
            dirs.append(q)
            if nested:
                dirs.extend(sorted(c for c in q.glob("compare-*") if (c / METRICS).is_file()))
    unique: dict[Path, Path] = {}  # a run named twice (or reached through its parent too) is drawn once
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    runs: dict[str, list[dict]] = {}
    entries = []
    for d in unique.values():
        rows = read_metrics(d)
        method = next((r["method"] for r in rows if r.get("method")), d.name)
        try:
            settings = _with_step_size(_saved_config(d))
        except CheckpointError:
            settings = {}
        entries.append((method, d, rows, settings))
    groups: dict[str, list[dict]] = {}
    for method, _, _, settings in entries:
        groups.setdefault(method, []).append(settings)
    place = resumable() | {"n_train", "n_test"}

    def differing(among: list[dict], shared_only: bool) -> set[str]:
        keys = set().union(*among)
        return {k for k in keys if k.rpartition(".")[2] not in place and k != "method"
                and (not shared_only or k.partition(".")[0] in (*SHARED_GROUPS, "step"))
                and any(g.get(k) != among[0].get(k) for g in among)}
    # settings every trainer reads (data, network, loop: e.g. lr_decay) label every run when any two runs differ
    # in them; a trainer's own settings label the runs of that trainer when they differ among those runs
    shared = differing([e[3] for e in entries], shared_only=True)
    for i, (method, d, rows, settings) in enumerate(entries):
        own = differing(groups[method], shared_only=False) if len(groups[method]) > 1 else set()
        pieces = [f"{k.rpartition('.')[2]} {_short(settings.get(k))}" for k in sorted(shared | own) if k in settings]
        label = f"{method}, " + ", ".join(pieces) if pieces else method
        if not pieces and len(groups[method]) > 1:
            label = f"{method}: {d.parent.name}/{d.name}"
        runs[label if label not in runs else f"{label} #{i}"] = rows
    return runs


def _with_step_size(cfg: RunConfig) -> dict:
    """``cfg``'s settings by dotted path, with the step size its trainer takes (:meth:`RunConfig.step_size`) as
    ``step.lr`` in place of backprop's ``lr`` and the Adam W-steps' ``adam_lr``, so runs of both label by one rate."""
    out = cfg.flat()
    del out["backprop.lr"], out["fenchel.adam_lr"]
    step = cfg.step_size()
    if step is not None:
        out["step.lr"] = step
    return out


def _short(v: Any) -> str:
    """``[1.0, 10.0]`` -> ``1,10``; ``0.1`` -> ``0.1``; ``None`` -> ``default``."""
    if v is None:
        return "default"
    if isinstance(v, (list, tuple)):
        return ",".join(_short(x) for x in v)
    if isinstance(v, dict):
        return ",".join(f"{k}={_short(x)}" for k, x in v.items()) or "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


# -- training ------------------------------------------------------------------------------------------------
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
        The run; ``None``: the defaults (or, with ``resume``, the saved ``config.json``).
    out : path-like
        The run directory (created). Without ``resume`` it must not already hold a run.
    resume : bool
        Continue from ``out/checkpoint.pt`` (the last completed epoch) with the saved ``config.json``; a
        directory with a config but no checkpoint yet starts from scratch. ``cfg`` is ignored.
    overrides : dict, optional
        Settings by dotted path (``{"train.epochs": 5}``) applied on top of ``cfg`` (or of the saved config). When
        resuming, only the settings :func:`fenchel_cvx.settings.resumable` names may differ from the saved run;
        any other that differs raises :class:`CheckpointError` naming it -- unless the run it makes is the saved
        one (a value equal to what the saved default resolves to, or a setting of a trainer the run does not
        train), which is then left as saved.
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
        ``time_to_97``, ``best_test_acc``, and ``already_done`` (a resumed run that had nothing left to train).

    Raises
    ------
    FenchelError
        Bad configuration, or ``out`` already holds a run and ``resume`` is False.
    CheckpointError
        ``resume`` on a directory without ``config.json``, or a checkpoint of another run.
    DataFileError
        Missing data files.
    """
    if cfg is not None and not isinstance(cfg, RunConfig):
        raise FenchelError(f"cfg: expected a RunConfig or None, got {type(cfg).__name__}")
    if not isinstance(out, (str, os.PathLike)):
        raise FenchelError(f"out: expected a run directory path, got {type(out).__name__}")
    if data is not None and not (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Dataset)
                                 and isinstance(data[1], dict)):
        raise FenchelError("data: expected the (Dataset, arrays) pair load_data returns, got "
                           f"{type(data).__name__}")
    out = Path(out)
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise FenchelError(f"out: cannot make the run directory {str(out)!r}: {str(blocking)!r} is a file, not a "
                           "folder")
    if out.exists() and not out.is_dir():
        raise FenchelError(f"out: {str(out)!r} is a file; expected a run directory (a new folder, or one written "
                           "by `fenchel-cvx train` to resume)")
    overrides = dict(overrides or {})
    saved = None
    if resume:
        saved = _saved_config(out)
        cfg = saved.with_values(overrides)
        changed = [f"{k}: saved {_short(saved.flat()[k])} vs now {_short(v)}" for k, v in cfg.flat().items()
                   if k.rpartition(".")[2] not in resumable() and saved.flat()[k] != v]
        if changed:
            # an explicit value may be what the run's default resolved to (--arch 784-300-10 on a default run), or
            # a setting of a trainer the run does not train: what matters is the run those settings make
            data = data if data is not None else load_data(cfg)
            if _made_run(saved, data[0]) != _made_run(cfg, data[0]):
                raise CheckpointError(f"resume: {str(out)!r} was trained with other settings ({'; '.join(changed)});"
                                      " only " + ", ".join(sorted(resumable())) + " may change on --resume. Drop "
                                      "those options, or start a fresh run directory")
            cfg = saved.with_values({k: v for k, v in overrides.items() if k.rpartition(".")[2] in resumable()})
    else:
        if (out / CONFIG).exists() or (out / CHECKPOINT).exists():
            raise FenchelError(f"out: {str(out)!r} already holds a run; continue it with --resume, or choose "
                               "another --out directory")
        cfg = (cfg if cfg is not None else RunConfig()).with_values(overrides)
    ds, arrays = data if data is not None else load_data(cfg)
    trainer = make_trainer(cfg, ds.image_shape, ds.n_classes)
    net, sizes = trainer.network, trainer.sizes
    created = not out.exists()
    barrier()  # data-parallel: every process has checked the directory before rank 0 writes into it
    if world()[0] == 0:
        out.mkdir(parents=True, exist_ok=True)
    try:
        return _train_into(out, cfg, trainer, net, sizes, arrays, resume, progress, echo)
    except Exception:
        # a run that failed before its first checkpoint leaves nothing to resume: do not leave its folder behind
        if created and world()[0] == 0 and not (out / CHECKPOINT).exists():
            for f in (CONFIG, METRICS, MODEL, SUMMARY):
                with contextlib.suppress(FileNotFoundError):
                    (out / f).unlink()
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


_DIGEST_ROWS = 1000  # samples of each split whose values enter the data digest (all labels do)


def _data_digest(arrays: dict) -> str:
    """A SHA-256 digest of the data a run trains and tests on: every label, the shapes, and about
    ``_DIGEST_ROWS`` evenly spaced samples of each split (a resume that reads another folder's data is refused;
    hashing every image would cost seconds per start on CIFAR-10).

    Parameters
    ----------
    arrays : dict
        :func:`load_data`'s arrays ``{"X", "y", "X_test", "y_test"}`` (numpy, samples first).

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    for key in ("X", "y", "X_test", "y_test"):
        a = np.asarray(arrays[key])
        h.update(f"{key}{a.shape}{a.dtype.str}".encode())
        if key.startswith("y"):
            h.update(np.ascontiguousarray(a).tobytes())
        elif len(a):
            h.update(np.ascontiguousarray(a[:: max(1, len(a) // _DIGEST_ROWS)]).tobytes())
    return h.hexdigest()


def _identity(cfg: RunConfig, trainer: Trainer) -> dict:
    """The :func:`~fenchel_cvx.checkpoint.run_config` of the run ``cfg`` makes with ``trainer`` (its
    :func:`make_trainer`): what its checkpoint's fingerprint is taken of (the method, the network as built, the
    settings the trainer resolves, the data's name and sizes)."""
    # The mode's resolved values stay out of the identity: they follow from the settings (whose mode flags are in
    # it) and the network, and run directories written before the fast default (issue 15) stay resumable.
    resolved = {k: v for k, v in trainer.resolved().items() if k not in MODE_FLAGS}
    return run_config(trainer.network, {**trainer.settings.to_dict(), "resolved": resolved,
                                        "data": {"dataset": cfg.data.dataset, "n_train": cfg.data.n_train,
                                                 "n_test": cfg.data.n_test}}, method=cfg.method)


def _made_run(cfg: RunConfig, ds: Dataset) -> dict:
    """:func:`_identity` with each setting the trainer resolves (``rho`` unset -> Appendix C's values, ...) at its
    resolved value: equal for two configs that make the same run, however each spelled its settings."""
    ident = _identity(cfg, make_trainer(cfg, ds.image_shape, ds.n_classes))
    return {**ident, "settings": {**ident["settings"], **ident["settings"]["resolved"]}}


def _train_into(out: Path, cfg: RunConfig, trainer: Trainer, net: LiftedNetwork, sizes: list, arrays: dict,
                resume: bool, progress: bool, echo: Callable[[str], None] | None) -> dict:
    """:func:`train_run` once the run directory exists and the trainer is built; in a data-parallel run every
    process trains and rank 0 alone writes files and prints."""
    lead = world()[0] == 0
    identity = _identity(cfg, trainer)
    state: TrainState | None = None
    if resume:
        for f in (CHECKPOINT, CONFIG, METRICS, SUMMARY):
            remove_stale_temporaries(out / f)
    digest = _data_digest(arrays)
    if resume and (out / CHECKPOINT).exists():
        ck = load_checkpoint(out / CHECKPOINT, config=identity)
        saved_digest = ck["meta"].get("data_digest")  # absent in checkpoints written before it was kept
        if saved_digest is not None and saved_digest != digest:
            raise CheckpointError(f"resume: the data differ from the data {str(out)!r} was trained on (same "
                                  f"dataset name and sizes, other images or labels: another --data-dir?); resume "
                                  "with the original data, or start a fresh run directory")
        state = trainer.state_class.from_state_dict(ck["state"], device=cfg.train.device, dtype=cfg.train.dtype)
    else:
        state = trainer.init_state()
    already_done = resume and state.epoch >= cfg.train.epochs
    if state.epoch > cfg.train.epochs:  # --epochs below what is trained: the run keeps its length
        cfg = cfg.with_values({"train.epochs": state.epoch})
    if not lead:  # the other processes of a data-parallel run neither print nor write
        progress, echo = False, _silent
    if lead:
        write_atomic(out / CONFIG, json.dumps({"config": cfg.to_dict(),
                                               "resolved": {"sizes": sizes, **trainer.resolved()},
                                               "identity": identity, "fenchel_cvx": __version__,
                                               "torch": torch.__version__, "python": platform.python_version(),
                                               "machine": platform.platform()}, indent=2) + "\n")
    if echo is None:
        if progress:
            from tqdm.auto import tqdm
            echo = tqdm.write
        else:
            echo = _silent

    def on_row(st: Any, row: dict) -> None:
        if lead:
            write_metrics(out / METRICS, st.history)
        if st.batch == 0:  # an epoch just ended: the state is between batches, safe to resume from
            sd = trainer.checkpoint(st)  # every process: it may gather per-process X-variables
            if lead:
                save_checkpoint(out / CHECKPOINT, sd, {"config": identity, "epoch": st.epoch, "method": cfg.method,
                                                       "data_digest": digest})
            J = "" if not np.isfinite(row["J"]) else f"  J {row['J']:.5g}"
            echo(f"[{cfg.method}] epoch {st.epoch}/{cfg.train.epochs}{J}  train acc {row['train_acc']:.4f}  "
                 f"test acc {row['test_acc']:.4f}  time {row['time']:.1f}s")

    state = trainer.run(arrays["X"], arrays["y"], X_test=arrays["X_test"], y_test=arrays["y_test"], state=state,
                        callback=on_row, progress=progress)
    rows = state.history
    if lead:
        write_metrics(out / METRICS, state.history)
        trainer.network_from_state(state).save(out / MODEL)
        os.chmod(out / MODEL, file_mode())
    final = rows[-1] if rows else {}
    summary = {"method": cfg.method, "run_dir": str(out), "dataset": cfg.data.dataset, "sizes": sizes,
               "n_train": len(arrays["y"]), "n_test": len(arrays["y_test"]),
               "epochs": int(state.epoch), "final": final, "time": float(state.elapsed),
               "time_per_epoch": float(state.elapsed / state.epoch) if state.epoch else math.nan,
               "time_to_97": _time_to(rows, TARGET_ACC),
               "best_test_acc": max((r["test_acc"] for r in rows if np.isfinite(r["test_acc"])), default=None),
               "already_done": bool(already_done)}
    if lead:
        write_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=float) + "\n")
    barrier()  # the files are written before any process reads them
    return summary


def _silent(_msg: str) -> None:
    """An ``echo`` that prints nothing."""


def _saved_config(out: Path) -> RunConfig:
    """The config saved in the run directory ``out``."""
    path = out / CONFIG
    if not path.is_file():
        raise CheckpointError(f"out: nothing to resume in {str(out)!r} (no {CONFIG}); start a fresh run without "
                              "--resume, or point --out at an existing run directory")
    try:
        return RunConfig.from_dict(json.loads(path.read_text())["config"])
    except (ValueError, KeyError, TypeError, FenchelError) as exc:
        raise CheckpointError(f"{path}: not a fenchel-cvx run config ({exc}); start a fresh run") from None
