"""``ArmDotProduct``: the schedule rule that runs ``int8_dense`` (targets/cpu/int8_kernels.py) on Arm ``sdot``.

On an aarch64 target with the dot-product extension (``mattr`` ``+dotprod``, or an ``mcpu`` that has
it: Cortex-A55/A76 and later), ``int8_kernels`` makes the activations int8 (uint8 ones shifted by
-128, corrected by ``+128 * colsum(W)``), because ``sdot`` multiplies signed by signed: one
instruction adds, to each of 4 int32 lanes, the dot product of 4 int8 activations (the same 4 for
every lane) with 4 int8 weights of that lane's output channel. In the packed weight
``Wp[N/16, K/4, 16, 4]`` those 4 channels x 4 k are 16 contiguous bytes, one NEON register.

Each output tile is ``rows`` matrix rows (or conv pixels) x 16 channels; the 16 channels are 4
vectors of 4, and each 4x4 core is one ``sdot`` (the tiling is targets/cpu/dot_product.py's, shared
with VNNI). A tile keeps ``rows * 4`` accumulators in NEON registers (at most 6 rows: 24
accumulators, 4 weight registers and the broadcast activations within NEON's 32).

The rule declines on targets without aarch64 + dotprod (the generic rules then schedule the same
compute). The tensor intrinsic comes from ``dot_product.register_dot_intrinsic`` (after TVM's
``get_dotprod_intrin`` in ``tvm/s_tir/tensor_intrin/arm_cpu.py``), not from ``tvm.s_tir.tensor_intrin``.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import s_tir

from graphopt.targets.cpu.dot_product import DotProductRule, register_dot_intrinsic

SDOT_INTRIN = "graphopt_dot_4x4_i8i8i32_sdot"
VECTOR = 4  # int32 lanes of one NEON register: output channels per sdot
ROW_TILES = (6, 5, 4, 3, 2, 1)  # rows x 4 accumulators each, within 32 NEON registers


def register_intrinsic() -> str:
    """``sdot``: 4 int32 lanes += 4 int8 activations x 4 int8 weights each (after TVM's
    ``get_dotprod_intrin`` in tvm/s_tir/tensor_intrin/arm_cpu.py)."""
    return register_dot_intrinsic(SDOT_INTRIN, VECTOR, "int8", "llvm.aarch64.neon.sdot.v4i32.v16i8")


def has_arm_dotprod(target: tvm.target.Target) -> bool:
    """Whether ``target`` is aarch64 with the dot-product extension (``+dotprod`` or an mcpu with it)."""
    if target.kind.name != "llvm" or not str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm64")):
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["dotprod"], target))
    except Exception:  # an LLVM without this query: trust mattr
        return "+dotprod" in [str(feature) for feature in target.attrs.get("mattr", [])]


class ArmDotProduct(DotProductRule):
    """``int8_dense`` on aarch64 ``sdot``: 4 vectors of 4 channels x 4 k (int8 x int8)."""

    vector = VECTOR
    row_tiles = ROW_TILES

    def available(self, target: tvm.target.Target) -> bool:
        return has_arm_dotprod(target)

    def intrinsic(self) -> str:
        return register_intrinsic()

    def accepts(self, sch: s_tir.Schedule, block: Any) -> bool:
        # uint8 activations (no shift applied) go to the generic rules; int8_kernels shifts them for sdot
        return all(region.source.dtype == "int8" for region in sch.get(block).reads)
