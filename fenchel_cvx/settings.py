r"""Every setting of a training run, defined once: name, default, valid range, help and resume rule.

The settings are small frozen dataclasses, grouped by what they configure. Each field carries a :class:`Spec`
(its help text, its range or choices, whether a resumed run may change it, and its command-line flag), and every
instance checks itself when it is built, so a bad value fails where it is written, with a typed error that names
it. Everything else derives from these classes:

* the trainers take :class:`BCDSettings` (Fenchel BCD, Algorithms 1 and 2, and Askari et al.'s model on the
  same BCD), :class:`BackpropSettings` (Adam / SGD) or :class:`PeerSettings` (the other lifted models of Fig. 1),
  all made of the shared :class:`TrainerSettings` -- batches, epochs, seed, device, ``rho`` -- plus their own
  options (:class:`BCDOptions`, :class:`BackpropOptions`, :class:`PeerOptions`);
* a run directory stores a :class:`RunConfig`, which *composes* the groups (``data``, ``network``, ``train``,
  ``fenchel``, ``backprop``) instead of copying their fields;
* ``fenchel-cvx train`` generates one flag per field (:func:`fields_of`), with the same defaults and help;
* :func:`resumable` says which settings a resumed run may change (the checkpoint fingerprint leaves them out).

Defaults are the paper's main batched experiment (Fig. 2 setting): batches of 500, inexact BCD, ``lam = 0.1``, no
ridge. How the inexact blocks are solved is the *mode* (:data:`MODE_FLAGS`). Given no mode flag, a batched run of a
fully connected network with cross-entropy takes the fast default (:data:`FAST_MODE`, issue 15): one W-step per
block with a running curvature estimate, twice the preconditioned length, 15 float32 FISTA steps per X-update,
proximal weights ``gamma = (0.1, 100)`` -- as accurate as Adam on MNIST at about twice its time per epoch
(``docs/benchmarks.md``), uncertified, and some of its hidden W-steps raise their block objective. Any mode flag
selects Appendix C's certified mode instead (:data:`MM_MODE`: one majorization-minimization step per W-update,
X-updates to ``tol``, ``gamma = (1, 100)``); it is also the default of convolutional nets (LeNet-5 among them), of
the other losses and of Askari et al.'s model, and full batch stays exact.

``None`` for ``lam``, ``rho`` or ``gamma`` means "Appendix C's value for this network and mode" (``gamma`` of the
fast default aside) and is resolved per layer by :func:`layer_values` once the network is known: for 784-300-10
(and any network but LeNet-5) batched ``lam = 0.1``, ``rho = 0``, ``gamma = (1, 100)``; full batch (Algorithm 1)
``rho = (1e-2, 10)``, ``gamma = 0``; hidden layers take the first value, the output layer the second. For LeNet-5
(Figs. 3-4) the values Appendix C lists for it, layer by layer: ``lam = (5, 5, 1, 1)`` and ``(1e-4, 1e-2, 1, 1, 1)``
as proximal weights (batched) or ridge weights (full batch).

Appendix C, batched 784-300-10: "for batched models we do not use pi" yet it lists ``rho_1 = 1, lambda_1 = 0.1,
rho_2 = 100``. The official code (``beeperman/Fenchel_Lifted_Networks``, ``mnist_batch.py``) runs that model with
the ridge weight ``rho = 0`` and the *offset* weights (``rhod``, our ``gamma``) at 10 and 100, so we read the
listed rho's as the proximal weights: ``lam = 0.1, rho = 0, gamma = (1, 100)``.

This module imports nothing heavy (no torch, no CVXPY), so the command line can build its parser from it at once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._arch import LAYER_TOKEN
from ._checks import check_choice
from .errors import ChoiceError, FenchelError, ShapeError, ValueRangeError

__all__ = [
    "ACTIVATION_NAMES",
    "BCD_METHODS",
    "DATASET_NAMES",
    "DTYPES",
    "LOSS_NAMES",
    "METHODS",
    "PEER_METHODS",
    "FAST_GAMMA",
    "FAST_MODE",
    "MM_MODE",
    "MODE_FLAGS",
    "BCDOptions",
    "BCDSettings",
    "BackpropOptions",
    "BackpropSettings",
    "DataSettings",
    "NetworkSettings",
    "PeerOptions",
    "PeerSettings",
    "RunConfig",
    "Spec",
    "TrainerSettings",
    "fields_of",
    "layer_values",
    "resumable",
    "settings_group",
    "unread_settings",
]

#: Trainers of a run: Fenchel BCD, the backprop baselines, and the earlier lifted models of the paper's Fig. 1.
METHODS = ("fenchel", "adam", "sgd", "askari", "taylor-admm", "lau-bcd")
#: The lifted models that BCD trains on its own subproblem faces (Askari et al. 2018 only swaps the penalty).
BCD_METHODS = ("fenchel", "askari")
#: The earlier lifted models with their own update rules (:mod:`fenchel_cvx.peers`), full batch.
PEER_METHODS = ("taylor-admm", "lau-bcd")


def settings_group(method: str) -> str:
    """The :class:`RunConfig` group holding the options of ``method``'s trainer: ``fenchel``, ``backprop`` or
    ``peers``."""
    return "fenchel" if method in BCD_METHODS else "peers" if method in PEER_METHODS else "backprop"


#: The settings groups of a :class:`RunConfig` that every trainer reads (the others belong to one trainer each).
SHARED_GROUPS = ("data", "network", "train")


def unread_settings(paths: Iterable[str], methods: Iterable[str]) -> list[str]:
    """The settings among ``paths`` (dotted, ``"fenchel.lam"``) that no trainer of ``methods`` reads.

    Every run reads the ``data``, ``network`` and ``train`` groups; of the trainers' own groups only the ones of
    ``methods`` (:func:`settings_group`), so ``fenchel.lam`` is unread by a run of Adam alone.
    """
    read = {"method", *SHARED_GROUPS, *map(settings_group, methods)}
    return [p for p in paths if p.partition(".")[0] not in read]
#: Data sets ``fenchel_cvx.data.load_dataset`` knows (the shipped MNIST subset first).
DATASET_NAMES = ("mnist-small", "mnist", "cifar10", "synthetic")
#: Hidden activations with a torch solver (the registry in ``fenchel_cvx.activations`` holds the same names).
ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh")
#: Output losses (the registry in ``fenchel_cvx.losses``).
LOSS_NAMES = ("ce", "mse")
#: Working precisions of the torch trainers.
DTYPES = ("float64", "float32")


# -- one field's description ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What a settings field means and which values it takes.

    Attributes
    ----------
    help : str
        One line for ``--help`` and the docs (the default is appended automatically).
    kind : str
        ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"text"``, ``"layers"`` (a number or one per layer),
        ``"sizes"`` (layer widths ``n-p_1-...-p``) or ``"json"`` (a dict).
    choices : tuple, optional
        The allowed values of a ``"choice"``.
    low : float, optional
        Smallest allowed value (numbers; each entry for ``"layers"``).
    strict : bool
        ``low`` itself is excluded (``> low`` rather than ``>= low``).
    high : float, optional
        Largest allowed value (included).
    none : str, optional
        What ``None`` means; ``None`` is allowed only when this is given (e.g. "full batch").
    resumable : bool
        A resumed run may change it: it does not change the weights the run produces.
    flag : str, optional
        The command-line flag (default ``--`` + the name with dashes).
    flag_off : str, optional
        For booleans: the flag that sets ``False`` (default ``--no-<name>``).
    metavar : str, optional
        Placeholder in ``--help``.
    none_word : str, optional
        The word that means ``None`` on the command line (e.g. ``full`` for ``--batch-size``).
    group : str
        Heading in ``--help``.
    """

    help: str
    kind: str
    choices: tuple = ()
    low: float | None = None
    strict: bool = False
    high: float | None = None
    none: str | None = None
    resumable: bool = False
    flag: str | None = None
    flag_off: str | None = None
    metavar: str | None = None
    none_word: str | None = None
    group: str = "training"

    def check(self, name: str, value: Any) -> Any:
        """``value`` in canonical form (tuples for sequences), or a typed error naming ``name``."""
        if hasattr(value, "tolist") and self.kind in ("layers", "sizes", "int", "float"):
            value = value.tolist()  # numpy arrays and scalars, torch tensors
        if value is None:
            if self.none is None:
                raise ValueRangeError(f"{name}: expected {self.expects()}, got None")
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueRangeError(f"{name}: expected True or False, got {value!r}")
            return value
        if self.kind == "choice":
            return check_choice(value, name, self.choices)
        if self.kind == "text":
            if not isinstance(value, str) or not value:
                raise ValueRangeError(f"{name}: expected a non-empty string, got {value!r}")
            return value
        if self.kind == "json":
            if not isinstance(value, dict):
                raise ValueRangeError(f"{name}: expected a dict, got {type(value).__name__}")
            return dict(value)
        if self.kind == "sizes":
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < 2 or \
                    any(not _is_int(s) or s < 1 for s in value):
                raise ShapeError(f"{name}: expected layer sizes [n, p_1, ..., p] of positive integers, got {value!r}")
            return tuple(int(s) for s in value)
        if self.kind == "layers" and not _is_number(value):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
                raise ValueRangeError(f"{name}: expected {self.expects()}, got {value!r}")
            return tuple(self._number(f"{name}[{i}]", v) for i, v in enumerate(value))
        return self._number(name, value)

    def _number(self, name: str, value: Any) -> int | float:
        integral = self.kind == "int"
        if not (_is_int(value) if integral else _is_number(value)) or not math.isfinite(value):
            raise ValueRangeError(f"{name}: expected {self.expects()}, got {value!r}")
        value = int(value) if integral else float(value)
        if self.low is not None and (value <= self.low if self.strict else value < self.low):
            raise ValueRangeError(f"{name}: expected {self.expects()}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ValueRangeError(f"{name}: expected {self.expects()}, got {value!r}")
        return value

    def expects(self) -> str:
        """The allowed values in words, e.g. "an integer >= 1 or None (full batch)"."""
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind in ("text", "json", "sizes"):
            text = {"text": "a string", "json": "a dict", "sizes": "layer sizes [n, p_1, ..., p]"}[self.kind]
        else:
            what = "an integer" if self.kind == "int" else "a finite number"
            if self.low is not None:
                what += f" {'>' if self.strict else '>='} {_fmt(self.low)}"
            if self.high is not None:
                what += f"{' and' if self.low is not None else ''} <= {_fmt(self.high)}"
            text = what if self.kind != "layers" else f"{what}, or a sequence of them (one per layer)"
        return text + (f", or None ({self.none})" if self.none is not None else "")


def setting(default: Any, help: str, kind: str, **spec: Any) -> Any:
    """A dataclass field with its :class:`Spec` (defaults that are dicts get a factory)."""
    meta = {"spec": Spec(help=help, kind=kind, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


class _Checked:
    """Base of every settings group: checks every field on construction, then the cross-field rules."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is not None:
                object.__setattr__(self, f.name, spec.check(f.name, getattr(self, f.name)))
        for cls in type(self).__mro__:
            rule = cls.__dict__.get("_rules")
            if rule is not None:
                rule(self)

    def to_dict(self) -> dict:
        """JSON-able copy (tuples become lists; nested groups become dicts)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FenchelError` naming them."""
        if not isinstance(d, dict):
            raise FenchelError(f"{cls.__name__}: expected a dict of settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ChoiceError(f"{cls.__name__}: unknown keys {sorted(extra)}; expected a subset of "
                               f"{sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> Any:
        """A checked copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# -- the groups ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TrainerSettings(_Checked):
    """The training loop's settings, shared by Fenchel BCD and the backprop baselines.

    Same batches, same epochs, same seed, same objective weights: a Fenchel run and a baseline built from the same
    ``TrainerSettings`` see the same batches in the same order.
    """

    batch_size: int | None = setting(
        500, "samples per batch (Algorithm 2; Appendix C: 500)", "int", low=1,
        none="full batch: Algorithm 1, or full-batch gradient descent", metavar="M|full", none_word="full")
    epochs: int = setting(3, "passes over the training data (with --resume: the new total)", "int", low=0,
                          resumable=True, metavar="N")
    rho: float | tuple | None = setting(
        None, "ridge weights rho_l ||W_l||_F^2 >= 0, one or one per layer l = 0..L (also the baselines' weight "
        "penalty)", "layers", low=0.0, none="Appendix C: 0 batched, 0.01,10 full batch (LeNet-5 1e-4,1e-2,1,1,1)",
        metavar="R")
    seed: int = setting(0, "seed of the initial weights, the batch order and synthetic data", "int", low=0,
                        high=2 ** 63 - 1, metavar="S")  # torch.manual_seed takes a signed 64-bit integer
    shuffle: bool = setting(True, "draw a fresh order of the training set every epoch", "bool")
    lr_decay: float = setting(
        1.0, "per-epoch factor on the step size: epoch e (counted from 0) steps at rate * lr_decay**e -- adam/sgd's "
        "lr, and adam_lr of Fenchel's Adam W-steps (--curvature adam; no other Fenchel mode has a step size)",
        "float", low=0.0, strict=True, high=1.0, metavar="F")
    eval_every: int | None = setting(None, "also evaluate every N batches", "int", low=1, none="once per epoch",
                                     resumable=True, metavar="N")
    device: str = setting("cpu", "torch device, e.g. cpu or cuda", "text", resumable=True, metavar="DEV")
    dtype: str = setting("float64", "working precision", "choice", choices=DTYPES)
    threads: int | None = setting(None, "torch's CPU threads for the training's tensor work; with other jobs "
                                  "keeping cores busy, 1 is faster (idle threads spin waiting for a busy core). "
                                  "The count changes how sums are split, so weights agree bitwise only between "
                                  "runs with the same count (and device)",
                                  "int", low=1, high=1024, none="torch's choice, one per core", resumable=True,
                                  metavar="N")  # far more threads than cores only exhausts OpenMP's memory
    dist_backend: str = setting(
        "auto", "torch.distributed backend of a data-parallel run (started by torchrun, which sets WORLD_SIZE): "
        "gloo (CPU) or nccl (GPU); auto: nccl on a CUDA device, else gloo. Unused in a single process",
        "choice", choices=("auto", "gloo", "nccl"), resumable=True, group="processes")

    def step_factor(self, epoch: int) -> float:
        """``lr_decay ** epoch``: the factor on the step size during ``epoch`` (counted from 0) -- exactly 1 when
        ``lr_decay`` is 1, so an undecayed run's arithmetic is unchanged."""
        return 1.0 if self.lr_decay == 1.0 else self.lr_decay ** epoch


# -- the mode of inexact BCD: one default for the Fig. 2 kind of run, the MM mode for every other --------------------
#: The mode flags: how the blocks of an inexact run are solved. Given none of them, a batched inexact run of a fully
#: connected network with cross-entropy on the torch face takes :data:`FAST_MODE` (and, with ``gamma`` unset,
#: :data:`FAST_GAMMA`); otherwise each unset one takes its :data:`MM_MODE` value.
MODE_FLAGS = ("inexact_iters", "inexact_x_iters", "inexact_x_certify", "inexact_x_float32", "curvature",
              "curvature_relax", "curvature_line_search")
#: Certified and monotone: one majorization-minimization step per W-update, X-updates to ``tol`` (Appendix C's mode).
MM_MODE = {"inexact_iters": 1, "inexact_x_iters": None, "inexact_x_certify": False, "inexact_x_float32": False,
           "curvature": "batch", "curvature_relax": 1.0, "curvature_line_search": False}
#: The fast default (issue 15, chosen on a validation split of MNIST's training set): one running-curvature W-step
#: per block, twice the preconditioned length, and 15 uncertified float32 FISTA steps per X-update.
FAST_MODE = dict(MM_MODE, inexact_x_iters=15, inexact_x_float32=True, curvature="running", curvature_relax=2.0)
#: Proximal weights (hidden layers, output layer) of the fast default; Appendix C's are (1, 100).
FAST_GAMMA = (0.1, 100.0)
#: Step size of the Adam W-steps (``curvature="adam"``) when ``adam_lr`` is unset: the authors' code's.
ADAM_LR = 1e-3
_MODE_NONE = "unset: {}"


@dataclass(frozen=True, kw_only=True)
class BCDOptions(_Checked):
    """What only Fenchel BCD has: multipliers, proximal weights, sweeps, inexact steps, solver face."""

    lam: float | tuple | None = setting(
        None, "Lagrange multipliers lam_l > 0 of the penalties B_l, one or one per hidden layer", "layers", low=0.0,
        strict=True, none="Appendix C: 0.1; LeNet-5 5,5,1,1", metavar="L", group="Fenchel BCD")
    gamma: float | tuple | None = setting(
        None, "proximal weights gamma_l ||W_l - W_l^0||^2 to the previous batch's weights (eqs. 19-20), one or one "
        "per layer", "layers", low=0.0,
        none="0.1,100 in the fast default mode, else Appendix C's: 1,100 batched (LeNet-5 1e-4,1e-2,1,1,1), "
        "0 full batch",
        metavar="G",
        group="Fenchel BCD")
    K: int = setting(1, "BCD sweeps (alternations) per batch, Algorithm 2", "int", low=1, metavar="K",
                     flag="--K", group="Fenchel BCD")
    tol: float = setting(1e-6, "subproblem solvers' optimality tolerance", "float", low=0.0, strict=True,
                         metavar="TOL", group="Fenchel BCD")
    max_iter: int | None = setting(None, "iteration cap of every exact subproblem solve", "int", low=1,
                                   none="each solver's own", metavar="N", group="Fenchel BCD")
    backend: str = setting("torch", "subproblem face: the batched torch solvers or the CVXPY reference (small nets)",
                           "choice", choices=("torch", "cvx"), group="Fenchel BCD")
    prediction: str = setting("feedforward", "test-prediction rule (section 4.3; argmin is eq. 12)", "choice",
                              choices=("feedforward", "argmin"), group="Fenchel BCD")
    record_blocks: bool = setting(False, "record J after every block update (one more evaluation per block)",
                                  "bool", resumable=True, group="Fenchel BCD")
    solver_options: dict = setting({}, "extra keyword arguments for every subproblem call, as JSON (e.g. "
                                   "'{\"solver\": \"CLARABEL\"}' for the cvx face): keywords every subproblem of "
                                   "the face takes and the trainer does not set itself", "json", metavar="JSON",
                                   group="Fenchel BCD")
    inexact: bool | None = setting(
        None, "W-updates take a few warm-started steps (--curvature) instead of exact solves", "bool",
        none="inexact batched, exact full batch", flag_off="--exact",
        group="inexact BCD")
    inexact_iters: int | None = setting(None, "MM steps per inexact W-update (--curvature batch)", "int", low=1,
                                        none=_MODE_NONE.format(1), metavar="N", group="inexact BCD")
    inexact_x_iters: int | None = setting(
        None, "in inexact mode, also cap the X-updates at N warm-started steps (FISTA's; heavy ball's where "
        "certified with ReLU; a capped column never ends worse than its start)", "int", low=1,
        none="unset: 15 in the fast default mode, else solved to --tol", metavar="N", group="inexact BCD")
    inexact_x_certify: bool | None = setting(
        None, "with --curvature running or adam, keep the capped X-updates' certificates: a column within --tol "
        "stops early (pays off when hidden X-variables start near their optimum, as a conv net's images do; "
        "otherwise each check costs about half a step)", "bool", none=_MODE_NONE.format(False), group="inexact BCD")
    inexact_x_float32: bool | None = setting(
        None, "with --curvature running or adam and uncertified capped X-updates, take their FISTA steps in float32 "
        "on a float64 run (about half their time; each column still keeps the better of its start and last iterate, "
        "compared in float64)", "bool", none="unset: True in the fast default mode, else False",
        group="inexact BCD")
    curvature: str | None = setting(
        None, "curvature of the inexact W-steps: 'batch', the batch's own majorization bound (monotone, "
        "certified); 'running', one step per block with a running estimate of it (about a backprop step's cost, "
        "uncertified); 'adam', one Adam step per block and sweep (K per batch) on its objective (19)/(20) with "
        "moments carried between batches (--adam-lr; the paper's CIFAR-10 W-updates, uncertified, a step may raise "
        "its block objective; --curvature-every/-rank do not apply). "
        "Given no mode flag (this one, --inexact-iters, --inexact-x-*, --curvature-relax, "
        "--curvature-line-search), a batched cross-entropy run of a fully connected network takes the fast default "
        "mode: running, --curvature-relax 2, --inexact-x-iters 15, --inexact-x-float32, and --gamma 0.1,100 unless "
        "given",
        "choice", choices=("batch", "running", "adam"), none="unset: running in the fast default mode, else batch",
        group="inexact BCD")
    adam_lr: float | None = setting(
        None, "step size of the Adam W-steps (--curvature adam), times --curvature-relax", "float", low=0.0,
        strict=True, none=f"{ADAM_LR:g}, the authors' code's", metavar="LR", group="inexact BCD")
    curvature_every: int = setting(100, "batches between refreshes of the running curvature", "int", low=1,
                                   metavar="N", group="inexact BCD")
    curvature_rank: int | None = setting(64, "eigenpairs kept of each running curvature", "int", low=1,
                                         none="the exact inverse", metavar="K|full", none_word="full",
                                         group="inexact BCD")
    curvature_relax: float | tuple | None = setting(
        None, "step multiplier omega > 0 of the running W-steps, one or one per layer (1: the preconditioned step; up "
        "to 2 a step descends wherever the running curvature bounds the batch's, above 2 some steps raise their block "
        "objective)", "layers",
        low=0.0, strict=True, none="unset: 2 in the fast default mode, else 1", metavar="OMEGA",
        group="inexact BCD")
    curvature_line_search: bool | None = setting(
        None, "running W-steps take their length from a line search, so J never rises block to block (one more "
        "GEMM per hidden layer)", "bool", none=_MODE_NONE.format(False), group="inexact BCD")


@dataclass(frozen=True, kw_only=True)
class BackpropOptions(_Checked):
    """What only the backprop baselines have."""

    lr: float | None = setting(None, "learning rate of adam/sgd, on the mean loss of a batch", "float", low=0.0,
                               strict=True, none="Appendix C: adam 1e-3, sgd 1e-2", metavar="LR", group="backprop")
    reduction: str = setting("mean", "the optimizer sees the batch objective divided by the batch size ('mean', "
                             "TensorFlow's convention, under which Appendix C's rates were chosen) or the sum",
                             "choice", choices=("mean", "sum"), group="backprop")
    momentum: float = setting(0.0, "SGD momentum in [0, 1) (Appendix C: plain SGD)", "float", low=0.0,
                              metavar="BETA", group="backprop")

    def _rules(self) -> None:
        if not self.momentum < 1.0:
            raise ValueRangeError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")


@dataclass(frozen=True, kw_only=True)
class PeerOptions(_Checked):
    """What only the earlier lifted models of the paper's Fig. 1 have (:mod:`fenchel_cvx.peers`).

    Section 5.1: "we chose to keep the hyperparameters for Taylor et al. (2016) and Lau et al. (2018) as given in the
    code", so the defaults are those of the public code: ``PotatoThanh/ADMM-NeuralNetworks`` (``python/main.py``:
    beta = gamma = 5, 10 warm-start epochs) and ``deeplearning-math/bcd_dnn`` (``bcd_dnn_mlp_mnist_jinshan.m``:
    gamma = rho = 1, alpha = 1e-2, its initial weights). Askari et al. (2018) is trained by BCD on its own penalty
    and takes ``lam``, ``rho`` and the rest from the Fenchel BCD settings.
    """

    admm_beta: float = setting(5.0, "Taylor et al. 2016 (ADMM): weight beta of the penalties ||z_l - W_l a_{l-1}||^2",
                               "float", low=0.0, strict=True, metavar="BETA", group="peer lifted models")
    admm_gamma: float = setting(5.0, "Taylor et al. 2016: weight gamma of the penalties ||a_l - relu(z_l)||^2",
                                "float", low=0.0, strict=True, metavar="GAMMA", group="peer lifted models")
    admm_warm: int = setting(10, "Taylor et al. 2016: warm-start iterations, which leave the output multiplier at "
                             "zero", "int", low=0, metavar="N", group="peer lifted models")
    lau_gamma: float = setting(1.0, "Lau et al. 2018 (proximal BCD): weight gamma of ||V_l - relu(U_l)||^2 and of "
                               "the output's ||V_N - U_N||^2", "float", low=0.0, strict=True, metavar="GAMMA",
                               group="peer lifted models")
    lau_rho: float = setting(1.0, "Lau et al. 2018: weight rho of ||U_l - W_l V_{l-1} - b_l||^2", "float", low=0.0,
                             strict=True, metavar="RHO", group="peer lifted models")
    lau_alpha: float = setting(1e-2, "Lau et al. 2018: proximal weight alpha of every block update", "float",
                               low=0.0, metavar="ALPHA", group="peer lifted models")
    lau_init: str = setting("code", "Lau et al. 2018: initial weights, the public code's ('code': W = 0.01 randn, b = "
                            "0.1, drawn with --seed) or the network's own ('network', as every other method)",
                            "choice", choices=("code", "network"), group="peer lifted models")


@dataclass(frozen=True, kw_only=True)
class PeerSettings(PeerOptions, TrainerSettings):
    """Settings of the peer lifted models (:mod:`fenchel_cvx.peers`): :class:`TrainerSettings`,
    :class:`PeerOptions` and the model (a run's ``--method``). They train full batch, as in the paper's Fig. 1."""

    model: str = setting("taylor-admm", "the lifted model and its training algorithm", "choice",
                         choices=PEER_METHODS)

    def _rules(self) -> None:
        if self.batch_size is not None:
            raise ValueRangeError(f"batch_size: the {self.model} model trains full batch, as in the paper's Fig. 1; "
                                  f"expected None (--batch-size full), got {self.batch_size}")
        if self.lr_decay != 1.0:
            raise ValueRangeError(f"lr_decay: the {self.model} model has no step size to decay; expected 1, got "
                                  f"{self.lr_decay}")


@dataclass(frozen=True, kw_only=True)
class BCDSettings(BCDOptions, TrainerSettings):
    """Settings of :class:`~fenchel_cvx.bcd.BCD`: :class:`TrainerSettings` plus :class:`BCDOptions`.

    The defaults are the command line's (the paper's main batched experiment), so
    ``BCD(net, BCDSettings())`` trains exactly as ``fenchel-cvx train`` does. Every field is listed, with its range
    and help, by ``fenchel-cvx train --help``.
    """

    def _rules(self) -> None:
        m = self.mode()  # the flags given, the MM mode for the rest: the default mode itself is consistent
        if m["curvature"] != "batch" and not self.is_inexact:
            raise ValueRangeError(f"curvature: {m['curvature']!r} shapes the steps of inexact W-updates; set "
                                  "inexact=True (the default for batched runs), or curvature='batch'")
        if self.adam_lr is not None and m["curvature"] != "adam":
            raise ValueRangeError(f"adam_lr: the step size of curvature='adam' only; got adam_lr={self.adam_lr} "
                                  "without curvature='adam' (set both, or neither)")
        if self.lr_decay != 1.0 and m["curvature"] != "adam":
            raise ValueRangeError(f"lr_decay: decays the step size of curvature='adam' only (the other modes' W-steps "
                                  f"are block minimizers or curvature-scaled); got lr_decay={self.lr_decay} with "
                                  f"curvature={m['curvature']!r}")
        if m["curvature"] == "adam" and m["curvature_line_search"]:
            raise ValueRangeError("curvature_line_search: the line search would replace the Adam step's length "
                                  "(adam_lr) by the block minimizer's along it; got it with curvature='adam' (pass "
                                  "one or the other)")
        relax = m["curvature_relax"]
        if m["curvature_line_search"] and any(v != 1.0 for v in ((relax,) if _is_number(relax) else relax)):
            raise ValueRangeError(f"curvature_relax: the line search sets the step length; got curvature_relax="
                                  f"{m['curvature_relax']} with curvature_line_search=True (pass one or the other)")
        if self.is_inexact and self.backend == "cvx":
            raise ValueRangeError("inexact: the cvx backend always solves to completion; use backend='torch' for "
                                  "inexact W-updates, or inexact=False")
        if m["inexact_x_float32"] and not self.uncertified_x_steps(m):
            raise ValueRangeError(
                "inexact_x_float32: only uncertified capped X-updates step in float32; set curvature='running' (or "
                "'adam') and "
                f"inexact_x_iters (and not inexact_x_certify), got curvature={m['curvature']!r}, inexact_x_iters="
                f"{m['inexact_x_iters']}, inexact_x_certify={m['inexact_x_certify']}")

    @property
    def adam_rate(self) -> float:
        """``adam_lr``, or :data:`ADAM_LR` (the authors' code's) when unset: the Adam W-steps' rate."""
        return ADAM_LR if self.adam_lr is None else float(self.adam_lr)

    @property
    def is_inexact(self) -> bool:
        """``inexact``, with ``None`` resolved: inexact for batched runs, exact for full batch."""
        return (self.batch_size is not None) if self.inexact is None else bool(self.inexact)

    def takes_fast_default(self, *, dense: bool, loss: str) -> bool:
        """Whether a run of a network takes :data:`FAST_MODE` with these settings.

        It does when no mode flag (:data:`MODE_FLAGS`) is given, the run is batched and inexact on the torch face,
        and the network is what the mode was chosen and measured on: fully connected, with cross-entropy.

        Parameters
        ----------
        dense : bool
            Every layer of the network is a plain dense layer (no convolution or pooling: not LeNet-5).
        loss : str
            The network's loss name (``"ce"``, ``"mse"``, ...).

        Returns
        -------
        bool
        """
        return (all(getattr(self, k) is None for k in MODE_FLAGS) and self.batch_size is not None
                and self.is_inexact and self.backend == "torch" and dense and loss == "ce")

    def mode(self, fast: bool = False) -> dict:
        """The values of the mode flags a run uses.

        Parameters
        ----------
        fast : bool
            Whether the run takes the fast default (:meth:`takes_fast_default`, which needs the network; the
            trainer decides).

        Returns
        -------
        dict
            One entry per name of :data:`MODE_FLAGS`: the value given, else the one of :data:`FAST_MODE` (``fast``)
            or :data:`MM_MODE`.
        """
        given = {k: getattr(self, k) for k in MODE_FLAGS if getattr(self, k) is not None}
        return {**(FAST_MODE if fast else MM_MODE), **given}

    def uncertified_x_steps(self, mode: dict) -> bool:
        """Whether the X-updates take ``inexact_x_iters`` steps without certificates in ``mode`` (a :meth:`mode`
        dict): inexact, running (or Adam) W-steps, capped, not ``inexact_x_certify``."""
        return (self.is_inexact and mode["curvature"] != "batch" and mode["inexact_x_iters"] is not None
                and not mode["inexact_x_certify"])


@dataclass(frozen=True, kw_only=True)
class BackpropSettings(BackpropOptions, TrainerSettings):
    """Settings of :class:`~fenchel_cvx.baselines.Backprop`: :class:`TrainerSettings`, :class:`BackpropOptions`
    and the optimizer (a run's ``--method``)."""

    optimizer: str = setting("adam", "torch.optim.Adam or torch.optim.SGD", "choice", choices=("adam", "sgd"))

    @property
    def learning_rate(self) -> float:
        """``lr``, or Appendix C's rate for the optimizer (Adam ``1e-3``, SGD ``1e-2``)."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)


#: Appendix C: "for models trained using Adam, the learning rate was set to 1e-3 and for SGD to 1e-2".
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2}


@dataclass(frozen=True, kw_only=True)
class DataSettings(_Checked):
    """Which data a run trains on."""

    dataset: str = setting("mnist-small", "data set ('mnist-small' is shipped; mnist and cifar10 need --data-dir)",
                           "choice", choices=DATASET_NAMES, group="data")
    data_dir: str | None = setting(None, "folder holding the data files (mnist: the four IDX files; cifar10: "
                                   "cifar-10-batches-py or cifar10_*.npz); nothing is downloaded", "text",
                                   none="not needed for mnist-small and synthetic", resumable=True, metavar="DIR",
                                   group="data")
    n_train: int | None = setting(None, "training samples: synthetic size, or a random subsample of a real set",
                                  "int", low=1, none="all; synthetic 1000", metavar="M", group="data")
    n_test: int | None = setting(None, "test samples, as --n-train", "int", low=1, none="all; synthetic 200",
                                 metavar="M", group="data")

    def _rules(self) -> None:
        if self.dataset in ("mnist-small", "synthetic") and self.data_dir is not None:
            raise ValueRangeError(f"data_dir: the {self.dataset!r} data set reads no files, got data_dir="
                                  f"{self.data_dir!r}; drop it, or choose dataset='mnist' or 'cifar10'")


@dataclass(frozen=True, kw_only=True)
class NetworkSettings(_Checked):
    """The architecture of a run's network.

    ``arch`` is the architecture: layer sizes ``(n, p_1, ..., p)`` of a fully connected network (the default,
    ``None``, is ``n-300-p`` for the data), or a spec string that :func:`fenchel_cvx.layers.parse_arch` reads --
    ``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"`` (an input shape, then ``cCkK[sS][pQ]`` convolutions, ``fN`` dense
    layers, an ``aR`` prefix for average pooling first), the same without its input shape (the data give it), or
    ``"lenet5"`` (LeNet-5 for the data's image shape and class count). A string of layer sizes (``"784-300-10"``,
    also ``"784x300x10"``) and a dense spec on vectors (``"784-f300-f10"``) are stored as the tuple
    ``(784, 300, 10)``; other specs are stored as lower-case text with ``-`` between the tokens. The field checks
    the spec's words only (so that building the settings needs no torch); :meth:`layers_for` checks that it fits
    the data.
    """

    class _ArchSpec(Spec):
        """The :class:`Spec` of ``arch``: layer sizes or an architecture spec (kind ``"arch"``)."""

        def check(self, name: str, value: Any) -> Any:
            """``None``, a tuple of layer sizes, or a spec string in canonical form; :class:`ShapeError` else."""
            if hasattr(value, "tolist") and not isinstance(value, str):
                value = value.tolist()  # numpy arrays, torch tensors
            if value is None:
                return None
            if isinstance(value, str):
                return self._spec(name, value)
            if isinstance(value, bytes) or not isinstance(value, Sequence) or len(value) < 2 or \
                    any(not _is_int(s) or s < 1 for s in value):
                raise ShapeError(f"{name}: expected layer sizes [n, p_1, ..., p] of positive integers or a spec "
                                 f"string such as 1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10 or lenet5, got {value!r}")
            return tuple(int(s) for s in value)

        def _spec(self, name: str, text: str) -> tuple | str:
            import re

            spec = text.strip().lower()
            tokens = [t for t in re.split(r"[-\s]+", spec) if t]
            if len(tokens) == 1 and re.fullmatch(r"\d+(x\d+)+", tokens[0]):
                tokens = tokens[0].split("x")  # layer sizes written 784x300x10 (a shape alone has no layers)
            if len(tokens) >= 2 and all(re.fullmatch(r"f?\d+", t) for t in tokens) and tokens[0].isdigit():
                return self.check(name, [int(t.lstrip("f")) for t in tokens])  # a fully connected network
            lenet = re.fullmatch(r"lenet5(?::(\d+))?", spec)
            if lenet:
                if lenet[1] is not None and int(lenet[1]) < 1:
                    raise ShapeError(f"{name}: expected lenet5 or lenet5:N with N >= 1 classes, got {text!r}")
                return spec
            body = tokens[1:] if tokens and re.fullmatch(r"\d+(x\d+){0,2}", tokens[0]) else tokens
            bad = next((t for t in body if not LAYER_TOKEN.match(t)), None)
            if not body or bad is not None:
                what = f"{bad!r} is not a layer" if bad is not None else "no layer"
                raise ShapeError(f"{name}: expected layer sizes (784-300-10), lenet5, or an optional input shape and "
                                 "layer tokens -- cCkK[sS][pP] convolution, fN dense, prefixed aR for average "
                                 f"pooling, e.g. 1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10 -- got {text!r} ({what})")
            if LAYER_TOKEN.match(body[-1])["dense"] is None:
                raise ShapeError(f"{name}: the output layer must be dense (fN, one score per class), got {text!r} "
                                 f"ending in {body[-1]!r}")
            return "-".join(tokens)

        def expects(self) -> str:
            return ("layer sizes [n, p_1, ..., p] or an architecture spec (1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10, "
                    f"lenet5), or None ({self.none})")

    arch: tuple | str | None = field(default=None, metadata={"spec": _ArchSpec(
        help="architecture: layer sizes n-p_1-...-p (784-300-10), or a spec of conv (cCkK[sS][pP]), dense (fN) and "
             "average-pooled (aR prefix) layers after an optional input shape (1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10),"
             " or lenet5", kind="arch", none="<features>-300-<classes> of the data set", metavar="ARCH",
        group="network")})
    loss: str = setting("ce", "output loss, summed over samples", "choice", choices=LOSS_NAMES, group="network")
    activation: str = setting("relu", "hidden activation", "choice", choices=ACTIVATION_NAMES, group="network")

    @property
    def is_dense(self) -> bool:
        """``arch`` is layer sizes (or the default): a fully connected network on flattened inputs."""
        return not isinstance(self.arch, str)

    def sizes_for(self, n: int, p: int) -> list[int]:
        """The layer sizes for data with ``n`` features and ``p`` classes (``arch``, or ``n-300-p``).

        Raises
        ------
        ShapeError
            ``arch`` does not start with ``n`` and end with ``p``, or is a spec with convolutions or pooling (use
            :meth:`layers_for`).
        """
        if not self.is_dense:
            raise ShapeError(f"arch: {self.arch!r} is an architecture spec, not layer sizes; build its layers with "
                             "NetworkSettings.layers_for(in_shape, n_classes)")
        sizes = list(self.arch) if self.arch else [n, 300, p]
        if sizes[0] != n or sizes[-1] != p:
            raise ShapeError(f"arch: the data have {n} features and {p} classes, so the architecture must read "
                             f"{n}-...-{p}, got {'-'.join(map(str, sizes))}; try {n}-300-{p}")
        return sizes

    def layers_for(self, in_shape: Sequence[int], n_classes: int) -> list:
        """The layers (:class:`fenchel_cvx.layers.Layer`) of ``arch`` for data of one image shape and class count.

        Layer sizes (and the default) give a fully connected network on the flattened inputs -- the layers of
        ``LiftedNetwork(sizes_for(C * H * W, n_classes))``, whose initial weights are those of earlier versions --
        ``"lenet5"`` gives :func:`fenchel_cvx.layers.lenet5` ``(in_shape, n_classes)``, any other spec
        :func:`fenchel_cvx.layers.parse_arch` ``(arch, in_shape)``. Imports torch (through
        :mod:`fenchel_cvx.layers`) when called, never when the settings are built.

        Parameters
        ----------
        in_shape : (C, H, W) or (n,)
            One sample's shape (:attr:`fenchel_cvx.data.Dataset.image_shape`).
        n_classes : int
            Outputs of the network (:attr:`fenchel_cvx.data.Dataset.n_classes`).

        Returns
        -------
        list of Layer
            ``L + 1`` layers; pass them to :class:`fenchel_cvx.network.LiftedNetwork`.

        Raises
        ------
        ShapeError
            The spec does not fit the data ("arch: the data have 1x28x28 images and 10 classes, the spec reads
            ..."): another input shape, a kernel larger than its input, an output layer of another width.
        """
        from .layers import lenet5, parse_arch

        try:
            shape = tuple(int(s) for s in in_shape)
            p = int(n_classes)
        except (TypeError, ValueError):
            raise ShapeError(f"in_shape: expected (C, H, W) or (n,) and an integer class count, got {in_shape!r} "
                             f"and {n_classes!r}") from None
        if len(shape) not in (1, 3) or min(shape, default=0) < 1 or p < 1:
            raise ShapeError(f"in_shape: expected (C, H, W) or (n,) of positive sizes and n_classes >= 1, got {shape} "
                             f"and {p}")
        if self.is_dense:
            return parse_arch(self.sizes_for(math.prod(shape), p))
        data = (f"{'x'.join(map(str, shape))} images" if len(shape) == 3 else f"{shape[0]} features") + \
            f" and {p} classes"
        try:
            if self.arch.startswith("lenet5"):
                given = self.arch.partition(":")[2]
                if given and int(given) != p:
                    raise ShapeError(f"lenet5:{given} has {given} outputs; write lenet5 (it takes the data's class "
                                     "count)")
                layers = lenet5(shape, p)
            else:
                layers = parse_arch(self.arch, shape)
            if layers[-1].n_out != p:
                raise ShapeError(f"the output layer has {layers[-1].n_out} outputs; end the spec with f{p}")
        except ShapeError as exc:
            reason = str(exc).removeprefix("arch: ").removeprefix("in_shape: ")
            raise ShapeError(f"arch: the data have {data}, the spec reads {self.arch}: {reason}") from None
        return layers


@dataclass(frozen=True, kw_only=True)
class RunConfig(_Checked):
    """Everything that defines one training run: the groups above, composed.

    ``fenchel-cvx train`` builds one from its flags (one flag per field of every group). The trainer's settings
    are derived, never copied: :meth:`bcd_settings` is ``train`` + ``fenchel`` (``method`` fenchel or askari),
    :meth:`backprop_settings` is ``train`` + ``backprop`` + the optimizer named by ``method``, :meth:`peer_settings`
    is ``train`` + ``peers`` + the model named by ``method``.
    """

    method: str = setting("fenchel", "trainer: Fenchel BCD, a backprop baseline (adam, sgd), or an earlier lifted "
                          "model of the paper's Fig. 1 (askari, taylor-admm, lau-bcd; full batch)", "choice",
                          choices=METHODS, group="method")
    data: DataSettings = field(default_factory=DataSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    train: TrainerSettings = field(default_factory=TrainerSettings)
    fenchel: BCDOptions = field(default_factory=BCDOptions)
    backprop: BackpropOptions = field(default_factory=BackpropOptions)
    peers: PeerOptions = field(default_factory=PeerOptions)

    def _rules(self) -> None:
        for name, cls in _GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise FenchelError(f"{name}: expected a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        self.trainer_settings()  # cross-field rules of the combination

    def trainer_settings(self) -> BCDSettings | BackpropSettings | PeerSettings:
        """The settings of this run's trainer."""
        if self.method in BCD_METHODS:
            return self.bcd_settings()
        if self.method in PEER_METHODS:
            return self.peer_settings()
        return self.backprop_settings()

    def peer_settings(self, model: str | None = None) -> PeerSettings:
        """``train`` + ``peers`` as one :class:`PeerSettings` for ``model`` (default: ``method``)."""
        return PeerSettings(**_shallow(self.train), **_shallow(self.peers), model=model or self.method)

    def step_size(self) -> float | None:
        """The step size this run's trainer takes before ``lr_decay``: backprop's ``learning_rate``, the Adam
        W-steps' ``adam_rate`` (``curvature="adam"``), or ``None`` for a trainer without one (the other Fenchel
        modes, the peer models)."""
        if self.method in BCD_METHODS:
            s = self.bcd_settings()
            return s.adam_rate if s.mode()["curvature"] == "adam" else None
        if self.method in PEER_METHODS:
            return None
        return self.backprop_settings().learning_rate

    def bcd_settings(self) -> BCDSettings:
        """``train`` + ``fenchel`` as one :class:`BCDSettings`."""
        return BCDSettings(**_shallow(self.train), **_shallow(self.fenchel))

    def backprop_settings(self, optimizer: str | None = None) -> BackpropSettings:
        """``train`` + ``backprop`` as one :class:`BackpropSettings` for ``optimizer`` (default: ``method``)."""
        opt = optimizer or self.method
        return BackpropSettings(**_shallow(self.train), **_shallow(self.backprop), optimizer=opt)

    def with_values(self, values: dict[str, Any]) -> RunConfig:
        """A checked copy with settings replaced, by dotted path or plain name.

        ``{"train.epochs": 5, "method": "adam"}`` and ``{"epochs": 5, "method": "adam"}`` are the same: every
        setting's name is unique across the groups.
        """
        top: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for path, value in values.items():
            group, _, name = path.rpartition(".")
            if not group and name != "method" and name not in _GROUPS:
                group = _HOME.get(name, "")
                if not group:
                    raise ChoiceError(f"{name}: not a setting of a run; expected one of "
                                       f"{sorted(_HOME) + ['method']}")
            if group:
                groups.setdefault(group, {})[name] = value
            else:
                top[name] = value
        for group, changes in groups.items():
            if group not in _GROUPS:
                raise ChoiceError(f"{group}: not a settings group of a run; expected one of {sorted(_GROUPS)}")
            top[group] = getattr(self, group).replace(**changes)
        return self.replace(**top)

    def flat(self) -> dict[str, Any]:
        """Every setting by dotted path (``"train.epochs"``, ``"method"``, ...)."""
        out = {"method": self.method}
        for group in _GROUPS:
            out.update({f"{group}.{k}": v for k, v in _shallow(getattr(self, group)).items()})
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Inverse of :meth:`to_dict` (nested dicts per group); unknown keys raise :class:`FenchelError`."""
        if not isinstance(d, dict):
            raise FenchelError(f"RunConfig: expected a dict, got {type(d).__name__}")
        if set(d) - {"method", *_GROUPS}:
            d = _from_flat(d)
        extra = set(d) - {"method", *_GROUPS}
        if extra:
            raise ChoiceError(f"RunConfig: unknown keys {sorted(extra)}; expected method and the groups "
                               f"{sorted(_GROUPS)}")
        kw: dict[str, Any] = {k: _GROUPS[k].from_dict(v) for k, v in d.items() if k in _GROUPS}
        if "method" in d:
            kw["method"] = d["method"]
        return cls(**kw)


_GROUPS: dict[str, type] = {"data": DataSettings, "network": NetworkSettings, "train": TrainerSettings,
                            "fenchel": BCDOptions, "backprop": BackpropOptions, "peers": PeerOptions}
#: The group of every setting, by name (the names are unique across the groups).
_HOME: dict[str, str] = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}


def _from_flat(d: dict) -> dict:
    """A run config written before the groups existed (one flat dict; ``sizes`` for ``arch``), as groups."""
    home = {**_HOME, "sizes": "network"}
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key == "method" or key in _GROUPS:
            out[key] = value
        elif key in home:
            out.setdefault(home[key], {})["arch" if key == "sizes" else key] = value
        else:
            raise ChoiceError(f"RunConfig: unknown setting {key!r}; expected method and the groups "
                               f"{sorted(_GROUPS)}")
    return out


def _shallow(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# -- what derives from the specs -----------------------------------------------------------------------------------
def fields_of(cls: type = RunConfig, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Spec]]:
    """Every settings field under ``cls``, depth first: ``(dotted path, field, spec)``.

    Over :class:`RunConfig` this is the list the command line turns into flags, one per field.
    """
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("spec")
        if spec is not None:
            yield prefix + f.name, f, spec
        elif f.name in _GROUPS and cls is RunConfig:
            yield from fields_of(_GROUPS[f.name], prefix=f"{f.name}.")


def resumable() -> frozenset[str]:
    """Names of the settings a resumed run may change: how long, where and how it runs, not what it computes.

    ``epochs``, ``eval_every`` and the rest leave the weights bitwise as they are; ``threads`` and ``device``
    change only the rounding of sums split over threads or computed by another device (a run resumed with
    another count is not bitwise the run that never stopped); ``data_dir`` may move, and a resume checks that
    it holds the same data (:func:`fenchel_cvx.runs.train_run`).
    """
    names = set()
    for cls in (RunConfig, BCDSettings, BackpropSettings, PeerSettings):
        names.update(path.rpartition(".")[2] for path, _, spec in fields_of(cls) if spec.resumable)
    return frozenset(names)


def layer_values(value: Any, count: int, name: str, *, batched: bool, positive: bool = False,
                 family: str = "dense") -> list[float]:
    """Per-layer values of ``lam`` (``count = L``), ``rho`` or ``gamma`` (``count = L + 1``).

    A number broadcasts, a sequence of one value too; a sequence of ``count`` values is taken as it is; ``None``
    takes Appendix C's value for the mode and the network ``family`` (see the module docstring): ``"lenet5"``
    the values listed for LeNet-5, layer by layer; ``"dense"`` (any other network) the 784-300-10 pair, hidden
    layers the first entry, the output layer the second.

    Raises
    ------
    ShapeError
        A sequence whose length is neither 1 nor ``count``.
    ValueRangeError
        A negative entry (a non-positive one with ``positive``).
    """
    if value is None:
        listed = _APPENDIX_C[family, batched][name]
        if family == "lenet5":
            return [float(v) for v in listed]
        return [float(listed[0])] * (count - 1) + [float(listed[1])] if count else []
    values = [value] if _is_number(value) else list(value)
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ShapeError(f"{name}: expected one value or {count} per-layer values, got {len(values)} "
                         f"({', '.join(map(_fmt, values))})")
    spec = Spec(help="", kind="float", low=0.0, strict=positive)
    return [float(spec.check(f"{name}[{i}]" if count > 1 else name, v)) for i, v in enumerate(values)]


# Appendix C, by (network family, batched). 784-300-10 ("dense", and any network but LeNet-5): (hidden layers,
# output layer). LeNet-5: one value per layer as listed (rho_1..5 = 1e-4, 1e-2, 1, 1, 1; lambda_1..4 = 5, 5, 1, 1),
# its rho's read as proximal weights for batched training like the 784-300-10 ones (the module docstring).
_LENET_RHO = (1e-4, 1e-2, 1.0, 1.0, 1.0)
_APPENDIX_C = {
    ("dense", True): {"lam": (0.1, 0.1), "rho": (0.0, 0.0), "gamma": (1.0, 100.0)},
    ("dense", False): {"lam": (0.1, 0.1), "rho": (1e-2, 10.0), "gamma": (0.0, 0.0)},
    ("lenet5", True): {"lam": (5.0, 5.0, 1.0, 1.0), "rho": (0.0,) * 5, "gamma": _LENET_RHO},
    ("lenet5", False): {"lam": (5.0, 5.0, 1.0, 1.0), "rho": _LENET_RHO, "gamma": (0.0,) * 5},
}
