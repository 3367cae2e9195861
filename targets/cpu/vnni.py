"""``Int8DotProduct``: the schedule rule that runs ``int8_dense`` (targets/cpu/int8_kernels.py) on VNNI.

Each output tile is ``rows`` pixels (or matrix rows) x 16 channels; its ``k`` loop steps by 4 and
its 16x4 core is one ``vpdpbusd`` (uint8 x int8 -> int32, 16 lanes), so a tile keeps ``rows``
accumulators, one register each (the tiling is targets/cpu/dot_product.py's, shared with Arm ``sdot``).

The rule declines on CPUs without ``avx512vnni`` (the generic rules then schedule the same compute).
The tensor intrinsic comes from ``dot_product.register_dot_intrinsic``, not from
``tvm.s_tir.tensor_intrin`` (whose import parses several hundred TVMScript functions).
"""

from __future__ import annotations

import tvm

from graphopt.targets.cpu.dot_product import DotProductRule, register_dot_intrinsic
from graphopt.targets.cpu.int8_kernels import LANES

VNNI_INTRIN = "graphopt_dot_16x4_u8i8i32_vnni"
ROW_TILES = (16, 14, 12, 8, 7, 6, 4, 2, 1)  # accumulators per tile: one 16-lane register each


def register_intrinsic() -> str:
    """``vpdpbusd``: 16 int32 lanes += 4 uint8 activations x 4 int8 weights each. TVM's own
    dot_16x4_vnni passes int32x16 operands; LLVM 17+ declares vpdpbusd on <64 x i8>."""
    return register_dot_intrinsic(VNNI_INTRIN, LANES, "uint8", "llvm.x86.avx512.vpdpbusd.512")


def has_vnni(target: tvm.target.Target) -> bool:
    if target.kind.name != "llvm":
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["avx512vnni"], target))
    except Exception:  # an LLVM without this query: assume no
        return False


class Int8DotProduct(DotProductRule):
    """``int8_dense`` on AVX-512 VNNI: one ``vpdpbusd`` per 16 channels x 4 k (uint8 x int8)."""

    vector = LANES
    row_tiles = ROW_TILES

    def available(self, target: tvm.target.Target) -> bool:
        return has_vnni(target)

    def intrinsic(self) -> str:
        return register_intrinsic()
