"""``Int8DotProduct``: the schedule rule that runs ``int8_dense`` (targets/int8_kernels.py) on VNNI.

Each output tile is ``rows`` pixels (or matrix rows) x 16 channels; its ``k`` loop steps by 4 and
its 16x4 core is one ``vpdpbusd`` (uint8 x int8 -> int32, 16 lanes), so a tile keeps ``rows``
accumulators, one register each (the tiling is targets/dot_product.py's, shared with Arm ``sdot``).

The rule declines on CPUs without ``avx512vnni`` (the generic rules then schedule the same compute).
The tensor intrinsic is declared here rather than taken from ``tvm.s_tir.tensor_intrin``, whose
import parses several hundred TVMScript functions (about a minute here).
"""

from __future__ import annotations

import functools

import tvm
from graphopt.targets.dot_product import DotProductRule
from graphopt.targets.int8_kernels import LANES
from tvm import s_tir

VNNI_INTRIN = "graphopt_dot_16x4_u8i8i32_vnni"
ROW_TILES = (16, 14, 12, 8, 7, 6, 4, 2, 1)  # accumulators per tile: one 16-lane register each


@functools.cache
def register_intrinsic() -> str:
    """Register ``VNNI_INTRIN`` (once, on first use) and return its name."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((4,), "uint8", offset_factor=1),
        b: T.Buffer((16, 4), "int8", offset_factor=1),
        c: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def implementation(
        a: T.Buffer((4,), "uint8", offset_factor=1),
        b: T.Buffer((16, 4), "int8", offset_factor=1),
        c: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        # TVM's own dot_16x4_vnni passes int32x16 operands; LLVM 17+ declares vpdpbusd on <64 x i8>.
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_i32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64"),
                b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    s_tir.TensorIntrin.register(VNNI_INTRIN, description, implementation, override=True)
    return VNNI_INTRIN


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
