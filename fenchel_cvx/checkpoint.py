"""Atomic, code-free checkpoints of a training run (BCD or a backprop baseline).

A checkpoint is one file written by :func:`torch.save` and read back with ``torch.load(weights_only=True)``, so
loading never executes code from the file: it may hold only tensors, numbers, strings, lists, dicts and ``None``
(what ``BCDState.state_dict()`` and the baselines' ``state_dict()`` produce). Layout::

    {"format": "fenchel_cvx.checkpoint", "version": 2, "meta": {...JSON-able...}, "state": trainer_state_dict,
     "checksum": SHA-256 of meta and state}

Writes are atomic: the bytes go to a temporary file in the same directory, are flushed and ``fsync``-ed, and
``os.replace`` swaps it in (then the directory is ``fsync``-ed), so a run killed during a save leaves the previous
checkpoint untouched; the next save removes the temporary file such a kill left behind. The checksum
(:func:`content_digest`) is recomputed on load, so a file damaged after it was written is refused rather than
resumed from. A run's identity is its *fingerprint*: the SHA-256 of the canonical JSON of its
configuration (:func:`run_config`: method, layer sizes, activations, loss and every setting that changes the
trajectory -- seed included; the settings :func:`fenchel_cvx.settings.resumable` names -- ``epochs``, ``device``,
reporting options -- are left out so a run can be extended or moved). :func:`load_checkpoint` refuses a
checkpoint from another run and names the keys that differ.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import pickle
import tempfile
import zipfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .settings import resumable

__all__ = [
    "FORMAT",
    "VERSION",
    "content_digest",
    "file_mode",
    "load_checkpoint",
    "run_config",
    "run_fingerprint",
    "remove_stale_temporaries",
    "save_checkpoint",
    "write_atomic",
]

FORMAT = "fenchel_cvx.checkpoint"
VERSION = 2


def _canonical(x: Any) -> Any:
    """JSON-able, order-independent form (tuples -> lists, floats kept exact via repr when non-finite)."""
    if isinstance(x, dict):
        return {str(k): _canonical(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else repr(x)
    if hasattr(x, "tolist"):
        return _canonical(x.tolist())
    return repr(x)


def run_config(network: Any, settings: Any, *, method: str = "fenchel") -> dict:
    """The configuration that identifies a run: method, architecture and trajectory-changing settings.

    Parameters
    ----------
    network : LiftedNetwork
        Gives ``arch``, ``sizes``, ``acts`` (their ``repr``, e.g. ``LeakyReLU(alpha=0.01)``) and ``loss``.
    settings : dataclass or dict
        ``BCDSettings``, ``BackpropSettings`` or a plain dict; the settings a resumed run may change
        (:func:`fenchel_cvx.settings.resumable`) are dropped.
    method : str
        ``"fenchel"``, ``"adam"``, ``"sgd"``.

    Returns
    -------
    dict
        JSON-able; feed it to :func:`run_fingerprint` or store it in a checkpoint's ``meta["config"]``.
    """
    if is_dataclass(settings):
        s = settings.to_dict() if hasattr(settings, "to_dict") else asdict(settings)
    elif isinstance(settings, dict):
        s = dict(settings)
    else:
        raise CheckpointError(f"settings: expected a settings dataclass or a dict, got {type(settings).__name__}")
    keep = resumable()
    s = {k: v for k, v in s.items() if k not in keep}
    return _canonical({"method": method, "arch": network.arch, "sizes": list(network.sizes),
                       "activations": [repr(a) for a in network.acts],
                       "loss": getattr(network.loss, "name", repr(network.loss)), "settings": s})


def run_fingerprint(config: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config``."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _path(path: Any, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"{name}: expected a file path (str or path-like), got {type(path).__name__}")
    return Path(path)


def save_checkpoint(path: str | os.PathLike, trainer_state_dict: dict, meta: dict | None = None) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination file (its directory must exist).
    trainer_state_dict : dict
        ``state.state_dict()`` of a trainer: tensors, numbers, strings, lists, dicts, ``None``.
    meta : dict, optional
        JSON-able run information. Put the run's :func:`run_config` under ``"config"`` so that
        :func:`load_checkpoint` can check the run; its fingerprint is added under ``"fingerprint"``.

    Returns
    -------
    Path
        The checkpoint's path.

    Raises
    ------
    CheckpointError
        ``meta`` is not JSON-able or the directory is missing; OS errors during the write are re-raised as
        :class:`CheckpointError` after the temporary file is removed (the previous checkpoint is untouched).
    """
    path = _path(path, "path")
    if not isinstance(trainer_state_dict, dict):
        raise CheckpointError(f"trainer_state_dict: expected a trainer's state_dict() (a dict), got "
                              f"{type(trainer_state_dict).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise CheckpointError(f"meta: expected a JSON-able dict, got {type(meta).__name__}")
    meta = dict(meta or {})
    try:
        json.dumps(meta)  # plain data only: anything else would be pickled and then refused on load
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"meta: expected a JSON-able dict for checkpoint {path}, got {exc}") from None
    if "config" in meta:
        meta["fingerprint"] = run_fingerprint(meta["config"])
    if not path.parent.is_dir():
        raise CheckpointError(f"path: the directory {path.parent} of checkpoint {path} does not exist; create it "
                              "first")
    payload = {"format": FORMAT, "version": VERSION, "meta": meta, "state": trainer_state_dict,
               "checksum": content_digest(meta, trainer_state_dict)}
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, CheckpointError):
            raise CheckpointError(f"could not write checkpoint {path}: {exc}; the previous checkpoint (if any) is "
                                  "unchanged") from exc
        raise
    _fsync_dir(path.parent)
    return path


_TMP = ".tmp"  # suffix of the temporary file of an atomic write


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an atomic write of ``path`` left behind when its process was killed.

    A write goes to ``.<name>.<random>.tmp`` beside ``path`` and is renamed over it when complete, so any such
    file still present belongs to a write that never finished (one run writes one directory at a time).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{_TMP}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


def content_digest(meta: Any, state: Any) -> str:
    """SHA-256 (hex) of a checkpoint's content: every tensor's dtype, shape and bytes, every other value's repr.

    Stored in the checkpoint and recomputed on load, so bytes damaged anywhere in the file -- tensor data or
    structure -- are caught instead of resuming from altered weights.
    """
    h = hashlib.sha256()
    _feed(h, {"meta": meta, "state": state})
    return h.hexdigest()


def _feed(h: Any, x: Any) -> None:
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(x, dict):
        h.update(f"D{len(x)}:".encode())
        for k in sorted(x, key=str):
            _feed(h, str(k))
            _feed(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(f"L{len(x)}:".encode())
        for v in x:
            _feed(h, v)
    elif x is None or isinstance(x, (bool, int, float, str)):
        h.update(f"{type(x).__name__}:{x!r};".encode())
    else:  # anything else would be pickled as an object, and load_checkpoint refuses to run such code
        raise CheckpointError(f"state: expected plain data (tensors, numbers, strings, lists, dicts, None), got a "
                              f"{type(x).__name__}; convert it with state_dict() or to a tensor")


def file_mode() -> int:
    """``rw-r--r--`` under the process umask: the mode of every file a run writes (``mkstemp`` makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o644 & ~umask


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (a temporary file in the same folder, then ``os.replace``).

    Raises
    ------
    CheckpointError
        The folder is missing (OS errors during the write propagate after the temporary file is removed).
    """
    path = _path(path, "path")
    if not path.parent.is_dir():
        raise CheckpointError(f"path: the directory {path.parent} of {path} does not exist; create it first")
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP, dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, *, config: dict | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without executing code from it.

    Parameters
    ----------
    path : path-like
    config : dict, optional
        The resuming run's :func:`run_config`; when given, the checkpoint must carry the same fingerprint.
    map_location : str or torch.device
        Where tensors land (default CPU).

    Returns
    -------
    dict
        ``{"meta": dict, "state": trainer_state_dict, "version": int}``.

    Raises
    ------
    CheckpointError
        Missing file, unreadable or corrupt file (truncated, random bytes, not a torch file, or holding objects
        other than plain data), a damaged one (content that does not match its checksum), wrong format, or a
        checkpoint of a different run (the differing keys are named).
    """
    path = _path(path, "path")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or start a fresh run "
                              "without --resume")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            UnicodeDecodeError, AttributeError, TypeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a fenchel_cvx checkpoint ({type(exc).__name__}: "
                              f"{first}); delete it and resume from an earlier one, or start afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: expected a dict with format {FORMAT!r}, got {got}")
    version = payload.get("version")
    if version != VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {version!r}, this fenchel_cvx reads {VERSION}")
    meta = payload.get("meta") or {}
    if payload.get("checksum") != content_digest(meta, payload["state"]):
        raise CheckpointError(f"checkpoint {path} is damaged: its content does not match the checksum written with "
                              "it (bytes changed on disk or in a copy); delete it and resume from an earlier copy, "
                              "or start afresh")
    if config is not None:
        want = run_fingerprint(config)
        have = meta.get("fingerprint")
        if have != want:
            diff = _diff(meta.get("config"), _canonical(config))
            raise CheckpointError(f"checkpoint {path} belongs to another run (fingerprint {str(have)[:12]}..., this "
                                  f"run {want[:12]}...): differing {diff}; resume with the original settings or "
                                  "start a fresh run directory")
    return {"meta": meta, "state": payload["state"], "version": version}


def _diff(a: Any, b: Any, prefix: str = "") -> str:
    """Readable list of the keys whose values differ between two configs."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"{prefix or 'config'}: saved {a!r} vs now {b!r}" if a != b else ""
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                out.append(_diff(a[k], b[k], f"{prefix}{k}."))
            else:
                out.append(f"{prefix}{k}: saved {a.get(k)!r} vs now {b.get(k)!r}")
    return "; ".join(o for o in out if o) or "(no config stored in the checkpoint)"
