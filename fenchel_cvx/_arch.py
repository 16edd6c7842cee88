"""The grammar of architecture specs, without torch: one layer token of :func:`fenchel_cvx.layers.parse_arch`.

``[aR](cCkK[sS][pP] | [f]N)``: an optional average-pooling prefix, then a convolution (``C`` channels, kernel
``K``, stride ``S``, padding ``P``) or a dense layer with ``N`` outputs. Both :mod:`fenchel_cvx.layers` (which
builds the layers) and :mod:`fenchel_cvx.settings` (which checks a spec's words where torch is not imported yet,
for the command line's ``--help``) read it from here.
"""

from __future__ import annotations

import re

LAYER_TOKEN = re.compile(r"^(?:a(?P<pool>\d+))?(?:(?P<conv>c(?P<ch>\d+)k(?P<k>\d+)(?:s(?P<s>\d+))?(?:p(?P<p>\d+))?)|"
                         r"f?(?P<dense>\d+))$")
