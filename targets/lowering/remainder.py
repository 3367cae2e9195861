"""``torch.remainder`` (Python's ``%``, ONNX Mod with ``fmod=0``) of floats, as torch computes it.

TVM 0.27's frontend maps ``remainder`` to ``floor_mod``, which TVM computes as ``a - floor(a / b) * b``:
a finite ``a`` modulo an infinite ``b`` is ``a - 0 * inf``, NaN, where torch gives ``a`` (same signs)
or ``b`` (opposite signs), and a zero result lost the dividend's sign. Here a float remainder is
torch's own formula: ``r = fmod(a, b)`` (relax's ``mod``, exact), then ``r + b`` where ``r`` is not
zero and its sign differs from ``b``'s. Integer remainders stay the frontend's (exact already).
"""

from __future__ import annotations

import operator
from typing import Any

from torch import fx

from graphopt.targets.lowering.operands import operand_as


def convert_remainder(node: fx.Node, importer: Any) -> Any:
    from tvm import relax

    value = node.meta["val"]
    if not value.is_floating_point():
        return importer._binary_op(relax.op.floor_mod, operator.mod)(node)
    bb = importer.block_builder
    dtype = str(value.dtype).removeprefix("torch.")

    a, b = operand_as(importer, node.args[0], dtype), operand_as(importer, node.args[1], dtype)
    zero = relax.const(0, dtype)
    rest = bb.emit(relax.op.mod(a, b))
    differs = relax.op.logical_xor(relax.op.less(b, zero), relax.op.less(rest, zero))
    shift = bb.emit(relax.op.logical_and(relax.op.not_equal(rest, zero), differs))
    return bb.emit(relax.op.where(shift, relax.op.add(rest, b), rest))


CONVERTERS = {"remainder.Tensor": convert_remainder, "remainder.Scalar": convert_remainder}
