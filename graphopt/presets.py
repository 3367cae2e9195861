"""Named pipelines. Each level adds to the one below; names refer to registered passes.

- ``O0``: nothing (capture and lower as is).
- ``O1``: safe structural clean-up: results are bit-identical to the captured graph.
- ``O2``: adds constant folding, fusion and weight layout: same math, float rounding may differ.
- ``O3``: adds what trades accuracy for speed and size (quantization), when calibration data is given.
"""

from __future__ import annotations

O1: list[str] = []
O2: list[str] = [*O1]
O3: list[str] = [*O2, "insert_qdq"]

PRESETS: dict[str, list[str]] = {"O0": [], "O1": O1, "O2": O2, "O3": O3}
