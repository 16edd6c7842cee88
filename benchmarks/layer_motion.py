"""How far each layer moves under BCD: the weights over a whole run, and the X-variables in one sweep.

Two reports, either or both:

* ``RUN_DIR ...``: for each run directory written by ``fenchel-cvx train`` or ``bench_lenet.py``, the relative
  distance ``||W_l(end) - W_l(init)||_F / ||W_l(init)||_F`` of every layer's weights from the run's own seeded
  initialization (``model.npz`` against the network the run's config draws);
* ``--probe``: LeNet-5 on the first batches of 500 of the shipped MNIST subset, one BCD step each from a fresh
  network; per layer, the relative change of ``X_l`` from its feed-forward value and of ``W_l`` in that step,
  and the cosine of that step of ``W_l`` with the negative gradient of the batch's loss (backprop through the
  network as fed forward before the step), for the settings in ``--set`` (JSON, as ``RunConfig.with_values``
  takes them).

This is how docs/training.md ("Why the conv layers hardly learn") measured that BCD leaves LeNet-5's convolutions
near their initialization.

Usage::

    python benchmarks/layer_motion.py OUT3/full/fenchel OUT3/full/adam
    python benchmarks/layer_motion.py --probe --set '{"tol": 1e-12}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fenchel_cvx.data import load_dataset
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.runs import CONFIG, MODEL, make_trainer
from fenchel_cvx.settings import RunConfig
from fenchel_cvx.trainer import feed_forward


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_motion(run_dir: Path) -> list[float]:
    """``||W_l(end) - W_l(init)|| / ||W_l(init)||`` per layer for one run directory."""
    cfg = RunConfig.from_dict(json.loads((run_dir / CONFIG).read_text())["config"])
    end = LiftedNetwork.load(run_dir / MODEL)
    init = make_trainer(cfg, end.in_shape, end.sizes[-1]).network  # the run's seeded draw
    return [_relative(w, w0) for w, w0 in zip(end.W, init.W, strict=True)]


def probe(settings: dict, batches: int) -> list[tuple[list[float], list[float], list[float]]]:
    """Per batch: (relative change of X_1..X_L from the feed-forward, relative change of W_0..W_L, cosine of each
    W_l's step with the negative gradient of the batch's loss) in one step."""
    ds = load_dataset("mnist-small")
    X, y = ds.arrays("train")
    cfg = RunConfig().with_values({"dataset": "mnist-small", "arch": "lenet5", **settings})
    bcd = make_trainer(cfg, ds.image_shape, ds.n_classes)
    state = bcd.init_state()
    rows = []
    for i in range(batches):
        X0 = torch.as_tensor(X[500 * i:500 * (i + 1)].T.copy(), dtype=bcd.dtype)
        labels = y[500 * i:500 * (i + 1)]
        W_before = [w.clone() for w in state.W]
        ff = feed_forward(state.W, state.b, bcd.acts, X0, bcd.layers)[:-1]  # X_0..X_L, the output dropped
        grads = _loss_gradients(bcd, state, X0, labels)
        bcd.step(state, X0, labels)
        X_after = bcd.last_batch_X
        steps = [w - w0 for w, w0 in zip(state.W, W_before, strict=True)]
        rows.append(([_relative(a, b) for a, b in zip(X_after[1:], ff[1:], strict=True)],
                     [_relative(a, b) for a, b in zip(state.W, W_before, strict=True)],
                     [_cosine(d, -g) for d, g in zip(steps, grads, strict=True)]))
    return rows


def _loss_gradients(bcd, state, X0: torch.Tensor, labels) -> list[torch.Tensor]:
    """Backprop's gradient of the batch's loss (the network fed forward, as at test time) in every ``W_l``."""
    W = [w.detach().clone().requires_grad_(True) for w in state.W]
    with torch.enable_grad():
        Yhat = feed_forward(W, state.b, bcd.acts, X0, bcd.layers)[-1]
        T = bcd.loss.targets(torch.as_tensor(labels), Yhat.shape[0], like=Yhat)
        Yhat.backward(bcd.loss.grad(T, Yhat.detach()))
    return [w.grad for w in W]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float((a * b).sum()) / (na * nb) if na > 0 and nb > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories")
    p.add_argument("--probe", action="store_true", help="one-step probe on the shipped MNIST subset")
    p.add_argument("--set", default="{}", help="settings of the probe, JSON (default: the defaults)")
    p.add_argument("--batches", type=int, default=3, help="batches of the probe")
    args = p.parse_args(argv)
    try:
        settings = json.loads(args.set)
    except json.JSONDecodeError as exc:
        p.error(f"--set: expected a JSON dict of settings, got {args.set!r} ({exc})")
    if not isinstance(settings, dict):
        p.error(f"--set: expected a JSON dict of settings, e.g. '{{\"tol\": 1e-10}}', got {args.set!r}")
    for run in args.runs or []:
        if not (Path(run) / CONFIG).is_file() or not (Path(run) / MODEL).is_file():
            p.error(f"runs: {str(run)!r} is not a run directory written by `fenchel-cvx train` (no {CONFIG} and "
                    f"{MODEL})")
    torch.set_num_threads(1)
    if args.runs:
        print("| run | " + " | ".join(f"W_{l}" for l in range(5)) + " |\n|---|---|---|---|---|---|")
        for run in args.runs:
            print(f"| {run} | " + " | ".join(f"{v:.3g}" for v in run_motion(run)) + " |")
    if args.probe:
        rows = probe(settings, args.batches)
        print(f"\nprobe, settings {args.set}: relative change in one BCD step")
        print("| batch | X_1 | X_2 | X_3 | X_4 | W_0 | W_1 | W_2 | W_3 | W_4 |\n|---" + "|---" * 9 + "|")
        for i, (dX, dW, _) in enumerate(rows):
            print(f"| {i + 1} | " + " | ".join(f"{v:.2e}" for v in dX + dW) + " |")
        print("\ncosine of each step with the negative gradient of the batch's loss (backprop, before the step)")
        print("| batch | W_0 | W_1 | W_2 | W_3 | W_4 |\n|---" + "|---" * 5 + "|")
        for i, (_, _, cos) in enumerate(rows):
            print(f"| {i + 1} | " + " | ".join(f"{v:+.3f}" for v in cos) + " |")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
