"""Smoke test of the Figs. 3-4 benchmark: a tuned run takes its data set's gamma and rate; the table and ratio."""

import json

import pytest
import torch
from conftest import load_benchmark

from fenchel_cvx.errors import ValueRangeError


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_lenet")


def test_tuned_runs_use_the_datasets_tuned_gamma_and_rate(bench, tmp_path):
    out = tmp_path / "out"
    rc = bench.main(["--dataset", "mnist-small", "--n-train", "500", "--n-test", "200", "--epochs", "1",
                     "--runs", "fenchel-fast-tuned,adam,adam-tuned", "--parts", "full", "--threads", "1",
                     "--out", str(out), "--no-progress", "--lr-decay", "0.5"])
    assert rc == 0
    config = json.loads((out / "full" / "fenchel-fast-tuned" / "config.json").read_text())["config"]
    assert config["fenchel"]["gamma"] == list(bench.TUNED_GAMMA["mnist"])
    assert config["fenchel"]["curvature"] == "running"
    assert config["train"]["lr_decay"] == 1.0  # no step size to decay: --lr-decay leaves it alone
    config = json.loads((out / "full" / "adam-tuned" / "config.json").read_text())["config"]
    assert config["backprop"]["lr"] == bench.TUNED_LR["mnist"] != bench.TUNED_LR["cifar10"]
    assert config["train"]["lr_decay"] == 0.5
    table = (out / "results.md").read_text()
    cells = next(line for line in table.splitlines() if line.startswith("| fenchel-fast-tuned |")).split("|")
    assert 0.0 < float(cells[2]) <= 1.0 and float(cells[5]) > 0  # test accuracy, ratio to Adam of the same run
    assert "| ratio to adam |" in table  # the paper-rate Adam is the reference when both Adams ran
    assert len(bench.TUNED_GAMMA["mnist"]) == len(bench.TUNED_GAMMA["cifar10"]) == 5


def test_the_adam_run_takes_adam_w_steps_and_moves_the_convolutions(bench, tmp_path):
    out = tmp_path / "out"
    rc = bench.main(["--dataset", "mnist-small", "--n-train", "500", "--n-test", "200", "--epochs", "1",
                     "--runs", "fenchel-adam", "--parts", "full", "--threads", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    run = out / "full" / "fenchel-adam"
    config = json.loads((run / "config.json").read_text())["config"]["fenchel"]
    assert (config["curvature"], config["tol"]) == ("adam", 1e-10)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["state"]
    assert [c["kind"] for c in state["curvature"]] == ["adam"] * 5 and state["curvature"][0]["steps"] == 1


@pytest.fixture(scope="module")
def motion():
    return load_benchmark("layer_motion")


def test_layer_motion_probe_sees_the_signal_reach_the_first_conv_layer_when_solved_tightly(motion):
    (dX, dW, cos, cos_block), = motion.probe({"tol": 1e-12, "max_iter": 20000}, batches=1)
    assert len(dX) == 4 and len(dW) == 5
    assert all(v > 0 for v in dX + dW)
    assert dX[0] < dX[1] < dX[2] < dX[3]  # the change shrinks on its way down: the conv layers learn slowly
    assert len(cos) == 5 and all(0 < c <= 1 for c in cos)  # every block step descends the batch's loss
    assert len(cos_block) == 5 and all(0 < c <= 1 for c in cos_block)


def test_layer_motion_probe_names_the_batches_it_lacks(motion):
    with pytest.raises(ValueRangeError, match="warm, batches: expected at most 20 batches"):
        motion.probe({}, batches=1, warm=20)


def test_layer_motion_larger_multipliers_bring_the_block_gradients_to_backprops(motion):
    """docs/training.md, "Larger multipliers": the X-variables move less, and each W-block's gradient turns
    towards the loss's (Appendix C's lam against ten times it, the paper's CIFAR-10 W-steps)."""
    base = {"curvature": "adam", "tol": 1e-10}
    (dX, _, _, cos), = motion.probe(base, batches=1)
    (dX10, _, _, cos10), = motion.probe({**base, "lam": [50, 50, 10, 10]}, batches=1)
    assert all(a < b for a, b in zip(dX10, dX, strict=True))
    assert all(a > b for a, b in zip(cos10, cos, strict=True))
    assert min(cos10) > 0.8 > max(cos[1:])


def _lenet_batch(m: int = 20):
    """A fresh LeNet-5 BCD trainer on the shipped MNIST subset, its initial state and its first ``m`` samples."""
    from fenchel_cvx.data import load_dataset
    from fenchel_cvx.runs import make_trainer
    from fenchel_cvx.settings import RunConfig

    ds = load_dataset("mnist-small")
    X, y = ds.arrays("train")
    bcd = make_trainer(RunConfig().with_values({"dataset": "mnist-small", "arch": "lenet5"}), ds.image_shape,
                       ds.n_classes)
    return bcd, bcd.init_state(), torch.as_tensor(X[:m].T.copy(), dtype=bcd.dtype), y[:m]


def _check_directional_derivatives(grads, W, value, g):
    """``<grads[l], D>`` against central differences of ``value(l, W_l)`` along a random ``D`` per layer."""
    for layer, grad in enumerate(grads):
        D = torch.randn(grad.shape, generator=g, dtype=grad.dtype)
        eps = 1e-6 / float(D.norm())
        fd = (value(layer, W[layer] + eps * D) - value(layer, W[layer] - eps * D)) / (2 * eps)
        assert fd == pytest.approx(float((grad * D).sum()), rel=1e-5, abs=1e-8), layer


def test_layer_motion_block_gradients_match_finite_differences(motion):
    """The W-blocks' gradients the probe compares with backprop's, against their objectives (19)-(20)."""
    from fenchel_cvx.optimality import w_hidden_objective, w_last_objective

    bcd, state, X0, labels = _lenet_batch()
    g = torch.Generator().manual_seed(1)
    Xs = motion.feed_forward(state.W, state.b, bcd.acts, X0, bcd.layers)[:-1]
    Xs = [Xs[0]] + [x + 0.1 * torch.rand(x.shape, generator=g, dtype=x.dtype) for x in Xs[1:]]  # not feed-forward
    L = len(state.W) - 1

    def block(layer, W):
        kw = {"layer": bcd.layers[layer], "rho": 0.0}
        if layer < L:
            return w_hidden_objective(W, state.b[layer], Xs[layer], Xs[layer + 1], act=bcd.acts[layer],
                                      lam=bcd.lam[layer], **kw)
        return w_last_objective(W, state.b[layer], Xs[layer], torch.as_tensor(labels), loss=bcd.loss, **kw)

    _check_directional_derivatives(motion._block_gradients(bcd, state.W, state.b, Xs, labels), state.W, block, g)


def test_layer_motion_gradients_match_finite_differences(motion):
    """The backprop gradients the probe compares the steps with, checked on a random direction per layer."""
    bcd, state, X0, labels = _lenet_batch()

    def loss(layer, W_layer):
        W = [W_layer if i == layer else w for i, w in enumerate(state.W)]
        Yhat = motion.feed_forward(W, state.b, bcd.acts, X0, bcd.layers)[-1]
        return float(bcd.loss.value(bcd.loss.targets(torch.as_tensor(labels), Yhat.shape[0], like=Yhat), Yhat).sum())

    _check_directional_derivatives(motion._loss_gradients(bcd, state, X0, labels), state.W, loss,
                                   torch.Generator().manual_seed(0))


def test_layer_motion_of_a_run_measures_from_its_own_initialization(motion, tmp_path):
    from fenchel_cvx.runs import train_run
    from fenchel_cvx.settings import RunConfig

    cfg = RunConfig().with_values({"dataset": "mnist-small", "arch": "lenet5", "n_train": 100, "n_test": 50,
                                   "epochs": 1, "batch_size": 100, "method": "adam"})
    train_run(cfg, tmp_path / "run", progress=False)
    moved = motion.run_motion(tmp_path / "run")
    assert len(moved) == 5 and all(0 < v < 1 for v in moved)  # one Adam step of size 1e-3 per weight
