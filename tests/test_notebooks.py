"""The teaching notebooks are tests: each one is executed here and ends with its own assertions.

The committed ``notebooks/*.ipynb`` are the source of truth (GitHub renders them, ruff lints them:
``extend-include = ["*.ipynb"]``). Edit one in Jupyter, then strip it with ``python scripts/strip_notebooks.py``.

Checks:

* the four notebooks exist, and every committed notebook is stripped (no outputs, ``execution_count`` None, no
  widget state), so git diffs show prose and code only;
* every notebook runs top to bottom with nbclient under ``FENCHEL_FAST=1`` (smaller sizes, same checks); a cell
  error or a failed assertion fails the test with the cell's traceback. These carry the ``notebook`` marker:
  ``pytest -m "not slow and not notebook"`` skips them locally.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = [
    "01_biconvex_activations.ipynb",
    "02_subproblems_in_cvxpy.ipynb",
    "03_training.ipynb",
    "04_dual_bound.ipynb",
]
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600


def test_all_expected_notebooks_exist():
    missing = [n for n in EXPECTED if not (NOTEBOOK_DIR / n).exists()]
    assert not missing, f"notebooks missing from {NOTEBOOK_DIR}: {missing}; restore them from git"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stripped(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{name}: cells {dirty} carry outputs or execution counts; commit notebooks stripped "
                       "(run `python scripts/strip_notebooks.py`)")
    assert "widgets" not in nb.metadata, f"{name}: widget state in the metadata; run scripts/strip_notebooks.py"


def _kernel_name() -> str:
    """The python3 kernel; jupyter_client runs a spec whose argv starts with 'python' on sys.executable."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # pragma: no cover - ipykernel is a dev dependency, which provides the native spec
        pytest.fail("no 'python3' Jupyter kernel: `pip install -e .[dev]` installs ipykernel, which provides it "
                    f"(or run `{sys.executable} -m ipykernel install --user`)")
    return "python3"


@pytest.mark.notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, monkeypatch):
    # The kernel inherits this process's environment: fast sizes, a headless backend, and no GPU surprises.
    monkeypatch.setenv("FENCHEL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=_kernel_name(),
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{name} failed while executing (FENCHEL_FAST=1):\n{err}", pytrace=False)
