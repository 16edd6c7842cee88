r"""The earlier lifted models of the paper's Fig. 1, in the same harness as Fenchel BCD and the backprop baselines.

Section 5.1 compares Fenchel lifted networks with three earlier lifted models on full-batch MSE, 784-300-10 MNIST.
Each is a :class:`~fenchel_cvx.trainer.Trainer` here -- the same data pipeline, history rows, checkpoints, resume
and plots -- and a ``--method`` of ``fenchel-cvx train``:

=================  ==========================================  ================================================
``--method``       model and algorithm                         module
=================  ==========================================  ================================================
``askari``         Askari et al. 2018: penalty ||v - u||^2 on   :mod:`~fenchel_cvx.peers.askari` (BCD on this
                   v >= 0, block coordinate descent             toolkit's own subproblem faces)
``taylor-admm``    Taylor et al. 2016: ||a - relu(z)||^2 and    :mod:`~fenchel_cvx.peers.taylor`
                   ||z - W a||^2 penalties, ADMM with a
                   multiplier on the output layer
``lau-bcd``        Lau et al. 2018: the same kind of quadratic  :mod:`~fenchel_cvx.peers.lau`
                   penalties, proximal block coordinate descent
=================  ==========================================  ================================================

``python benchmarks/bench_fig1.py`` runs all of them, Fenchel and an SGD network (Fig. 1).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AskariBCD", "AskariPenalty", "LauBCD", "TaylorADMM", "trainer_of"]

# public name -> the module that defines it (imported on first use, like the package's own names)
_LAZY = {"AskariBCD": "askari", "AskariPenalty": "askari", "LauBCD": "lau", "TaylorADMM": "taylor"}
#: The trainer class name of each peer ``--method``.
_TRAINERS = {"askari": "AskariBCD", "taylor-admm": "TaylorADMM", "lau-bcd": "LauBCD"}


def trainer_of(method: str) -> type:
    """The trainer class of a peer ``--method`` (``askari``, ``taylor-admm``, ``lau-bcd``)."""
    from .._checks import check_choice

    return __getattr__(_TRAINERS[check_choice(method, "method", _TRAINERS, "an earlier lifted model of Fig. 1")])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fenchel_cvx.peers' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
