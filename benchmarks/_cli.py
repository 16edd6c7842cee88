"""What every benchmark script does at its command line: a library error (:class:`fenchel_cvx.errors.FenchelError`,
whose message names the argument) is printed as one line and exits with status 2, as argparse does for its own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from fenchel_cvx.errors import FenchelError


def run_main(main: Callable[[], int | None]) -> int | None:
    """``main()``'s exit status; a :class:`FenchelError` becomes ``<script>: error: <message>`` and status 2."""
    try:
        return main()
    except FenchelError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        return 2
