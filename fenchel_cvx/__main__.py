"""``python -m fenchel_cvx``: the ``fenchel-cvx`` command line."""

import sys

from .cli import main

sys.exit(main())
