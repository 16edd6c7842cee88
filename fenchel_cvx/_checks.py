"""Input validation shared by every module: one place that words the error messages.

Each helper raises a typed error from :mod:`fenchel_cvx.errors` whose message names the argument, what was
expected and what came. The helpers accept numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ChoiceError, DomainError, ShapeError, ValueRangeError

if TYPE_CHECKING:
    import torch


_TRUSTED = contextvars.ContextVar("fenchel_cvx_trusted_values", default=False)


@contextlib.contextmanager
def trusted_values() -> Iterator[None]:
    """Within this block the checks of argument *values* pass without a look: NaN/inf (:func:`check_finite`), an
    activation's domain and the probability columns of cross-entropy targets. Types, shapes and options are still
    checked.

    For a caller that hands the subproblems only tensors it made from data it checked once, and that checks their
    results itself: the BCD sweep, where the same values would otherwise be checked by every face call that takes
    them -- a pass over the data each time, about twenty per batch of the MNIST network.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def values_trusted() -> bool:
    """Whether :func:`trusted_values` is in force here."""
    return _TRUSTED.get()


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch: if it is not loaded, ``x`` is none)."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(x, torch_module.Tensor)


def as_array(x: Any, name: str) -> np.ndarray | torch.Tensor:
    """Return ``x`` as a float numpy array, or unchanged when it is already a torch tensor.

    ``None`` and complex values are refused (numpy would make them NaN, or drop the imaginary part)."""
    if is_torch(x):
        return x
    if x is None or isinstance(x, (str, bytes)):
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__}")
    if np.iscomplexobj(x):
        raise DomainError(f"{name}: expected real values, got complex ones")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__} ({exc})") from None
    return arr


def check_choice(value: Any, name: str, choices: Iterable[Any], hint: str = "") -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ChoiceError` listing them.

    ``hint`` (e.g. "use fenchel_cvx.cvx for other activations") is appended as the next step to try.
    """
    allowed = tuple(choices)
    try:
        ok = value in allowed
    except TypeError:  # an unhashable or incomparable value is simply not a choice
        ok = False
    if not ok:
        tail = f"; {hint}" if hint else ""
        raise ChoiceError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}{tail}")
    return value


def first_not_finite(named: Sequence[tuple[str, Any]]) -> str | None:
    """The name of the first ``(name, tensor)`` of ``named`` (floating torch tensors on one device) holding NaN or
    inf, or ``None``. One read of a value on the host when all are finite -- on a GPU one wait for the device, not
    one per tensor: the sum of their sums is finite only if every entry is (or it overflowed: then each is read)."""
    import torch

    if not named or bool(torch.isfinite(torch.stack([t.sum() for _, t in named]).sum())):
        return None
    return next((name for name, t in named if not bool(torch.isfinite(t).all())), None)


def check_finite(x: Any, name: str) -> None:
    """Raise :class:`DomainError` when ``x`` holds NaN or inf, saying how many and where the first is."""
    if _TRUSTED.get():
        return
    if is_torch(x):
        import torch

        # a finite sum proves every entry finite (NaN and inf propagate through it) in one pass, no mask
        if x.is_floating_point() and x.numel() and bool(torch.isfinite(x.sum())):
            return
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            idx = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise DomainError(f"{name}: expected finite values, got {int(bad.sum())} NaN/inf entries "
                              f"(first at index {idx}: {x[idx].item()})")
        return
    arr = np.asarray(x)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DomainError(f"{name}: expected finite values, got {int(bad.sum())} NaN/inf entries "
                          f"(first at index {idx}: {arr[idx]})")


def check_ndim(x: Any, name: str, ndim: int | Sequence[int], layout: str = "") -> None:
    """Raise :class:`ShapeError` unless ``x.ndim`` is ``ndim`` (or one of them)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        hint = f" {layout}" if layout else ""
        raise ShapeError(f"{name}: expected a {want} array{hint}, got shape {tuple(x.shape)}")


def check_shape(x: Any, name: str, shape: Sequence[int | None], layout: str = "") -> None:
    """Raise :class:`ShapeError` unless ``x.shape`` matches ``shape`` (``None`` matches any size)."""
    got = tuple(x.shape)
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        hint = f" {layout}" if layout else ""
        raise ShapeError(f"{name}: expected shape {want}{hint}, got {got}")


def file_in_the_way(path: Any) -> Any:
    """The first existing parent of ``path`` that is a file, not a folder (``None`` if there is none): what stops
    ``path`` from being created."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def check_scalar(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """Return ``value`` as a float after checking it is finite and (optionally) > 0 or >= 0.

    A string or a bool is refused, not converted: ``"0.1"`` or ``True`` as a multiplier is a mistake upstream."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise ValueRangeError(f"{name}: expected a real number, got {value!r} ({type(value).__name__})")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueRangeError(f"{name}: expected a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueRangeError(f"{name}: expected a finite number, got {v}")
    if positive and not v > 0:
        why = ("; a Lagrange multiplier must be positive (zero drops its penalty from the Lagrangian, a negative "
               "one rewards the violation)" if name.startswith("lam") else "")
        raise ValueRangeError(f"{name}: expected > 0, got {v}{why}")
    if nonneg and v < 0:
        raise ValueRangeError(f"{name}: expected >= 0, got {v}")
    return v


_INT_MAX = 2 ** 63 - 1


def check_int(value: Any, name: str, low: int, *, optional: bool = False, hint: str = "") -> int | None:
    """An integer ``>= low`` and ``< 2**63`` (``None`` passes when ``optional``); bools and non-integral numbers are
    refused. The upper end is what torch's and numpy's seeds and sizes can hold."""
    if value is None and optional:
        return None
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or value > _INT_MAX:
        tail = f"; {hint}" if hint else ""
        what = f"an integer >= {low} and <= {_INT_MAX}" + (" or None" if optional else "")
        raise ValueRangeError(f"{name}: expected {what}, got {value!r}{tail}")
    return int(value)


def check_device(device: Any, name: str = "device") -> Any:
    """``device`` as a ``torch.device`` this machine has (cpu, an available cuda or mps); named when not."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ChoiceError(f"{name}: expected a torch device string such as 'cpu' or 'cuda', got {device!r} "
                          f"({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ChoiceError(f"{name}: {device!r} requested but torch sees no CUDA device; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ChoiceError(f"{name}: {device!r} requested but this torch has no usable MPS (Apple GPU) device; use "
                          "'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ChoiceError(f"{name}: expected a device that holds data, such as 'cpu' or 'cuda', got {device!r}")
    return dev


def check_flag(value: Any, name: str) -> bool:
    """``value`` itself when it is ``True`` or ``False``; anything else is refused (``"no"`` would read as true)."""
    if not isinstance(value, bool):
        raise ValueRangeError(f"{name}: expected True or False, got {value!r}")
    return value


def per_layer(value: Any, n: int, name: str, *, positive: bool = False, nonneg: bool = False) -> list[float]:
    """Broadcast a scalar, or check a length-``n`` sequence, of per-layer hyperparameters."""
    if np.ndim(value) == 0 and not (is_torch(value) and value.ndim > 0):
        return [check_scalar(value, name, positive=positive, nonneg=nonneg)] * n
    seq = list(value.tolist() if hasattr(value, "tolist") else value)
    if len(seq) != n:
        raise ShapeError(f"{name}: expected a scalar or {n} per-layer values, got {len(seq)} values")
    return [check_scalar(v, f"{name}[{i}]", positive=positive, nonneg=nonneg) for i, v in enumerate(seq)]
