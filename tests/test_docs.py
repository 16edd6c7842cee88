"""What the documentation shows runs: the README's Python quick start, verbatim, and the docstring examples.

The README block trains on the shipped MNIST subset, so this file takes a few seconds.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import fenchel_cvx
from fenchel_cvx.errors import ShapeError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_is_a_users_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200, "the README stays a short user's page; measurements go to docs/"
    assert "../shared" not in text, "users do not have ../shared"
    assert len(_python_blocks(text)) == 1, "one Python quick start, executed by this file"


def test_readme_quick_start_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything it writes lands in a scratch folder
    (block,) = _python_blocks(README.read_text())
    exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("obj", ["fenchel_cvx.bcd.BCD", "fenchel_cvx.baselines.Backprop", "fenchel_cvx.cvx",
                                 "fenchel_cvx.verification"])
def test_docstring_examples_run(obj):
    try:
        target = importlib.import_module(obj)
    except ModuleNotFoundError:
        module, _, name = obj.rpartition(".")
        target = getattr(importlib.import_module(module), name)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(target)
    assert tests and any(t.examples for t in tests), f"{obj} has no example"
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{obj}: {runner.failures} docstring example(s) failed"


def test_a_dataset_feeds_the_trainers_and_raw_images_say_how():
    from fenchel_cvx.bcd import BCD, BCDSettings
    from fenchel_cvx.data import load_mnist_subset
    data = load_mnist_subset()
    bcd = BCD(fenchel_cvx.LiftedNetwork([784, 20, 10], "relu", "ce", seed=0), BCDSettings(epochs=1))
    with pytest.raises(ShapeError, match=r"Dataset.arrays\('train'\)"):
        bcd.run(data.train_x, data.train_y, progress=False)
    small = data.subsample(1000, 200, seed=0)
    state = bcd.run(small, progress=False)
    assert state.epoch == 1 and np.isfinite(state.history[-1]["test_acc"])
    X, y = small.arrays("test")
    assert bcd.evaluate(state, X, y)[1] == pytest.approx(state.history[-1]["test_acc"])
    assert isinstance(state.W[0], torch.Tensor)
