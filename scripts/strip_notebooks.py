"""Strip outputs from notebooks before committing them.

Clears every code cell's outputs and execution count and drops widget state, in place. The committed
``notebooks/*.ipynb`` are the notebooks' source of truth: edit one in Jupyter, run this, then commit it
(``tests/test_notebooks.py`` fails on a committed notebook that carries outputs).

Usage::

    python scripts/strip_notebooks.py                 # every notebooks/*.ipynb
    python scripts/strip_notebooks.py path/to/a.ipynb
    python scripts/strip_notebooks.py --check         # exit 1 (and list them) if any would change
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs, execution counts and widget state from ``nb`` in place; return whether anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    return changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if not a.startswith("--")] or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(str(path))
            if not check:
                nbformat.write(nb, path)
    if check and dirty:
        print("notebooks with outputs:", ", ".join(dirty))
        return 1
    for path in dirty:
        print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
