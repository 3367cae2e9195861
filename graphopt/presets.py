"""Named pipelines. Each level adds to the one below; names refer to registered passes.

- ``O0``: nothing (capture and lower as is).
- ``O1``: safe structural clean-up and dead-weight elimination: results are bit-identical to the
  captured graph, except where all-zero channels are removed (shorter sums may round differently).
- ``O2``: adds constant folding, BatchNorm folding, weight layout and fusion-group marking: same
  math, float32 rounding may differ (verify mode holds it to 1e-5 relative).
- ``O3``: adds what trades accuracy for speed and size (quantization), when calibration data is given.
  It leaves out ``pretranspose_weights``: quantization finds weights on Linear nodes, which that
  pass turns into matmuls with a transposed constant operand.
"""

from __future__ import annotations

#: Identity removal and algebra first, so CSE sees canonical expressions; DCE sweeps what they orphan.
CLEANUP: list[str] = [
    "remove_identities",
    "simplify_algebra",
    "eliminate_common_subexpressions",
    "eliminate_dead_code",
]

O1: list[str] = [*CLEANUP, "eliminate_dead_weights"]
_O2_CORE: list[str] = [*O1, "fold_constants", "fuse_conv_bn"]
#: Fusion groups are marked last, on the final structure; dead weights after them cost nothing.
O2: list[str] = [*_O2_CORE, "pretranspose_weights", *CLEANUP, "eliminate_dead_weights", "mark_fusion_groups"]
O3: list[str] = [*_O2_CORE, *CLEANUP, "eliminate_dead_weights", "mark_fusion_groups", "insert_qdq"]

PRESETS: dict[str, list[str]] = {"O0": [], "O1": O1, "O2": O2, "O3": O3}
