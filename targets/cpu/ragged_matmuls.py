"""Matmuls whose rows or columns have no tile-sized divisor compute on a padded operand, then slice.

The tiled schedule (``schedule_tiled``) makes the output's last axis the SIMD axis, in whole vectors
that divide it, and unrolls rows in tiles of up to 8. A count such as 197 (ViT-B/16's tokens) has no
divisor of at least 4:

* columns (the 197 x 197 attention scores of ``q @ k^T``): the last vector of every row was a
  predicated one, which TVM does not vectorize; those matmuls ran at 10-12 GFLOP/s. The right
  operand's columns are padded with zeros to whole vectors (a constant one once, at compile time).
* rows, by a constant weight (every Linear of the encoder): the schedule's ragged last row tile
  puts a predicate on every tile (single thread: 86-91 GFLOP/s against 101-107 for 200 rows). The
  left operand's rows are padded to a multiple of 8; the pad is a copy of the activation, small
  beside the matmul it feeds (197 x 768 against 197 x 768 x 3072 multiply-adds).

Each output row (column) of a matmul depends only on its own row of the left (column of the right)
operand, so slicing the padding off the product gives exactly the unpadded values; the slices and
pads are injective and fuse into the kernels around them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions

from .packed_weights import static_shape
from .schedule_tiled import ROW_TILES, ragged_columns, ragged_rows

ROW_TILE = max(ROW_TILES)  # ragged rows are padded to whole tiles of the largest size


@relax.expr_functor.mutator
class _Padder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int) -> None:
        super().__init__(mod)
        self.lanes = lanes

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul"):
            return call
        a, b = call.args
        a_shape, b_shape, out = static_shape(a), static_shape(b), static_shape(call)
        if a_shape is None or b_shape is None or out is None or len(a_shape) < 2 or len(b_shape) < 2:
            return call
        rows, columns = a_shape[-2], b_shape[-1]
        pad_rows = -(-rows // ROW_TILE) * ROW_TILE - rows if self._is_weight(b) and ragged_rows(rows) else 0
        pad_columns = -(-columns // self.lanes) * self.lanes - columns if ragged_columns(columns, self.lanes) else 0
        if not pad_rows and not pad_columns:
            return call
        if pad_rows:
            a = self.builder_.emit(relax.op.nn.pad(a, [0, 0] * (len(a_shape) - 2) + [0, pad_rows, 0, 0]))
        if pad_columns:
            b = self._pad_columns(b, pad_columns, len(b_shape))
        product: relax.Expr = self.builder_.emit(relax.Call(call.op, [a, b], call.attrs))
        rank = len(out)
        axes = [axis for axis, pad in ((rank - 2, pad_rows), (rank - 1, pad_columns)) if pad]
        ends = [end for end, pad in ((rows, pad_rows), (columns, pad_columns)) if pad]
        return relax.op.strided_slice(product, axes=axes, begin=[0] * len(axes), end=ends)

    def _is_weight(self, b: Any) -> bool:
        """A constant, or a transposed one (a Linear's weight before graphopt's passes pre-transpose it)."""
        if isinstance(b, relax.Var):
            bound = self.lookup_binding(b)
            b = (
                bound.args[0]
                if isinstance(bound, relax.Call) and getattr(bound.op, "name", "") == "relax.permute_dims"
                else b
            )
        return isinstance(b, Constant)

    def _pad_columns(self, b: Any, extra: int, rank: int) -> relax.Expr:
        if isinstance(b, Constant):
            data = b.value.numpy()
            return relax.const(np.pad(data, [(0, 0)] * (rank - 1) + [(0, extra)]), str(data.dtype))
        return self.builder_.emit(relax.op.nn.pad(b, [0, 0] * (rank - 1) + [0, extra]))


@tvm.transform.module_pass(opt_level=0, name="PadRaggedMatmuls")
class PadRaggedMatmuls:
    """See the module docstring. ``lanes``: float32 lanes of one SIMD register of the target."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_Padder(mod, self.lanes), mod)
