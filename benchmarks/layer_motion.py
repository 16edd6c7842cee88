"""How far each layer moves under BCD: the weights over a whole run, and the X-variables in one sweep.

Two reports, either or both:

* ``RUN_DIR ...``: for each run directory written by ``fenchel-cvx train`` or ``bench_lenet.py``, the relative
  distance ``||W_l(end) - W_l(init)||_F / ||W_l(init)||_F`` of every layer's weights from the run's own seeded
  initialization (``model.npz`` against the network the run's config draws);
* ``--probe``: LeNet-5 on batches of 500 of the shipped MNIST subset (or ``--dataset``), one BCD step each from a
  fresh network (or after ``--warm`` batches of training); per layer, the relative change of ``X_l`` from its
  feed-forward value and of ``W_l`` in that step, the cosine of that step of ``W_l`` with the negative gradient
  of the batch's loss (backprop through the network as fed forward before the step), and the cosine of the
  W-block's own gradient -- of (19) or (20) at the weights before the step and the X-variables the step used --
  with backprop's gradient, for the settings in ``--set`` (JSON, as ``RunConfig.with_values`` takes them).

This is how docs/training.md measured that BCD leaves LeNet-5's convolutions near their initialization ("Why the
conv layers hardly learn") and how far the lifted gradients are from backprop's ("Larger multipliers").

Usage::

    python benchmarks/layer_motion.py OUT3/full/fenchel OUT3/full/adam
    python benchmarks/layer_motion.py --probe --set '{"tol": 1e-12}'
    python benchmarks/layer_motion.py --probe --dataset cifar10 --data-dir DIR --warm 10 \
        --set '{"curvature": "adam", "tol": 1e-10, "lam": [50, 50, 10, 10]}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fenchel_cvx.data import load_dataset
from fenchel_cvx.errors import ValueRangeError
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.runs import CONFIG, MODEL, make_trainer
from fenchel_cvx.settings import RunConfig
from fenchel_cvx.trainer import feed_forward, pre_activation


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_motion(run_dir: Path) -> list[float]:
    """``||W_l(end) - W_l(init)|| / ||W_l(init)||`` per layer for one run directory."""
    cfg = RunConfig.from_dict(json.loads((run_dir / CONFIG).read_text())["config"])
    end = LiftedNetwork.load(run_dir / MODEL)
    init = make_trainer(cfg, end.in_shape, end.sizes[-1]).network  # the run's seeded draw
    return [_relative(w, w0) for w, w0 in zip(end.W, init.W, strict=True)]


def probe(settings: dict, batches: int, dataset: str = "mnist-small", data_dir: str | None = None,
          warm: int = 0) -> list[tuple[list[float], ...]]:
    """Per probed batch: (relative change of X_1..X_L from the feed-forward, relative change of W_0..W_L, cosine
    of each W_l's step with the negative gradient of the batch's loss, cosine of each W-block's gradient with the
    loss's gradient) in one step, after ``warm`` batches of training."""
    ds = load_dataset(dataset, data_dir)
    X, y = ds.arrays("train")
    if 500 * (warm + batches) > len(y):
        raise ValueRangeError(f"warm, batches: expected at most {len(y) // 500} batches of 500 in all ({dataset} "
                              f"has {len(y)} training samples), got {warm} + {batches}")
    cfg = RunConfig().with_values({"dataset": dataset, "arch": "lenet5", **settings})
    bcd = make_trainer(cfg, ds.image_shape, ds.n_classes)
    state = bcd.init_state()
    rows = []
    for i in range(warm + batches):
        X0 = torch.as_tensor(X[500 * i:500 * (i + 1)].T.copy(), dtype=bcd.dtype)
        labels = y[500 * i:500 * (i + 1)]
        if i < warm:
            bcd.step(state, X0, labels)
            continue
        W_before = [w.clone() for w in state.W]
        b_before = [None if v is None else v.clone() for v in state.b]
        ff = feed_forward(state.W, state.b, bcd.acts, X0, bcd.layers)[:-1]  # X_0..X_L, the output dropped
        grads = _loss_gradients(bcd, state, X0, labels)
        bcd.step(state, X0, labels)
        X_after = bcd.last_batch_X
        steps = [w - w0 for w, w0 in zip(state.W, W_before, strict=True)]
        blocks = _block_gradients(bcd, W_before, b_before, X_after, labels)
        rows.append(([_relative(a, b) for a, b in zip(X_after[1:], ff[1:], strict=True)],
                     [_relative(a, b) for a, b in zip(state.W, W_before, strict=True)],
                     [_cosine(d, -g) for d, g in zip(steps, grads, strict=True)],
                     [_cosine(g_block, g) for g_block, g in zip(blocks, grads, strict=True)]))
    return rows


def _block_gradients(bcd, W: list, b: list, X: list, labels) -> list[torch.Tensor]:
    """The gradient in ``W_l`` of each W-block's data term at ``(W, b)`` and the X-variables ``X``: ``lam_l
    B_l(X_{l+1}, A_l(X_l; W_l) + b_l)``, whose gradient in the pre-activation is ``lam_l (phi(U) - X_{l+1})``, and
    the loss at ``A_L(X_L; W_L) + b_L`` (the proximal terms vanish at the weights before the step), sent back
    through the layer by :meth:`~fenchel_cvx.layers.Layer.weight_gradient`, as the running W-steps do."""
    out = []
    for l, layer in enumerate(bcd.layers):
        U = pre_activation(layer, W[l], b[l], X[l])
        if l < len(W) - 1:
            R = bcd.lam[l] * (bcd.acts[l].forward(U) - X[l + 1])
        else:
            R = bcd.loss.grad(bcd.loss.targets(torch.as_tensor(labels), U.shape[0], like=U), U)
        out.append(layer.weight_gradient(X[l], R).reshape(W[l].shape))
    return out


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
    p.add_argument("--probe", action="store_true", help="one-step probe (on the shipped MNIST subset, or --dataset)")
    p.add_argument("--set", default="{}", help="settings of the probe, JSON (default: the defaults)")
    p.add_argument("--batches", type=int, default=3, help="batches of the probe")
    p.add_argument("--warm", type=int, default=0, help="batches of training before the probed ones")
    p.add_argument("--dataset", default="mnist-small", choices=("mnist-small", "mnist", "cifar10"),
                   help="data of the probe (default: the shipped MNIST subset)")
    p.add_argument("--data-dir", help="folder with the data files (mnist, cifar10)")
    args = p.parse_args(argv)
    if args.batches < 1 or args.warm < 0:
        p.error(f"--batches, --warm: expected at least 1 and 0, got {args.batches} and {args.warm}")
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
        rows = probe(settings, args.batches, args.dataset, args.data_dir, args.warm)
        print(f"\nprobe ({args.dataset}, after {args.warm} batches), settings {args.set}: relative change in one "
              "BCD step")
        print("| batch | X_1 | X_2 | X_3 | X_4 | W_0 | W_1 | W_2 | W_3 | W_4 |\n|---" + "|---" * 9 + "|")
        for i, (dX, dW, _, _) in enumerate(rows):
            print(f"| {i + 1} | " + " | ".join(f"{v:.2e}" for v in dX + dW) + " |")
        print("\ncosine of each step with the negative gradient of the batch's loss (backprop, before the step)")
        print("| batch | W_0 | W_1 | W_2 | W_3 | W_4 |\n|---" + "|---" * 5 + "|")
        for i, (_, _, cos, _) in enumerate(rows):
            print(f"| {i + 1} | " + " | ".join(f"{v:+.3f}" for v in cos) + " |")
        print("\ncosine of each W-block's gradient (after the X-updates, before the step) with the batch loss's")
        print("| batch | W_0 | W_1 | W_2 | W_3 | W_4 |\n|---" + "|---" * 5 + "|")
        for i, (_, _, _, cos) in enumerate(rows):
            print(f"| {i + 1} | " + " | ".join(f"{v:+.3f}" for v in cos) + " |")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
