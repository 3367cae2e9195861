"""Decode in the kernel: a shared dense layer keeps its b-bit indices in memory, not float32 weights.

``graphopt.compile(shared, None, decode="kernel")`` for a compressed build: every ``matmul(x,
permute_dims(W))`` (``nn.Linear``) whose weight ``W`` has at most 256 distinct values is replaced by
a kernel that reads ``W[o, k]`` as ``codebook[index[o, k]]`` while it multiplies (a look-up-table
gather, coremltools' palettized linear). ``main`` then takes, instead of ``W``, its codebook
(``2**bits`` float32 values) and its indices packed ``8 // bits`` to a byte (``bits`` rounded up to
1, 2, 4 or 8), so the loaded model holds ``bits / 32`` of the layer's float32 bytes. The products
are the same float32 products of the same values as with the decoded weights; only the order of the
additions can differ from the dense kernel's (equal to float32 rounding, and equal predictions).

Where memory matters more than speed (batch-1 MLPs on small devices): each weight costs a decode
that a dense, vectorized matmul does not pay; the pruned 4-bit MNIST MLP holds 7.9x less weight
memory and takes 4.1x as long per batch-1 call (``benchmarks/results/compression.md``, run 7).
CPU targets only (cpu, arm): a GPU build with ``decode="kernel"`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax, te

#: Up to this many index bits the codebook is read through selects (blends), above it by a load.
SELECT_BITS = 4


@dataclass(frozen=True)
class LutLayer:
    """One weight kept as indices: its name, shape, index bits and bytes as float32 and as kept."""

    name: str
    shape: tuple[int, int]
    bits: int
    float_bytes: int
    kept_bytes: int


def storage_bits(distinct: int) -> int | None:
    """Index bits for ``distinct`` values, rounded up to a width that packs whole into a byte; None past 256."""
    for bits in (1, 2, 4, 8):
        if distinct <= 1 << bits:
            return bits
    return None


def pack(indices: np.ndarray, bits: int) -> np.ndarray:
    """``K x O`` indices as ``ceil(K * bits / 8) x O`` bytes: index ``(k, o)`` in byte ``(k // (8 // bits), o)``
    at bit ``(k % (8 // bits)) * bits``. Outputs stay contiguous, so a kernel vectorized over outputs
    reads one byte per lane."""
    per_byte = 8 // bits
    rows, columns = indices.shape
    padded = np.zeros((-(-rows // per_byte) * per_byte, columns), dtype=np.uint8)
    padded[:rows] = indices
    grouped = padded.reshape(-1, per_byte, columns).astype(np.uint16)
    shifts = (np.arange(per_byte, dtype=np.uint16) * bits)[None, :, None]
    return (grouped << shifts).sum(axis=1).astype(np.uint8)


def lut_dense(x: te.Tensor, packed: te.Tensor, codebook: te.Tensor, columns: int, bits: int) -> te.Tensor:
    """``x @ W`` with ``W[k, o] = codebook[index(k, o)]`` unpacked from ``packed`` as it is read."""
    per_byte, mask = 8 // bits, (1 << bits) - 1
    k = te.reduce_axis((0, columns), name="k")

    def weight(o: Any, kk: Any) -> Any:
        byte = packed[kk // per_byte, o]
        # uint8 arithmetic with constant shifts chosen by k's place in its byte (the same for every
        # output): TVM widens int32 values of an int64-indexed function to int64 lanes, 8x the bytes
        index = byte & mask
        for place in range(1, per_byte):
            index = tvm.tirx.Select(kk % per_byte == place, (byte >> place * bits) & mask, index)
        if bits > SELECT_BITS:
            return codebook[index]
        # a tree of selects on the index bits over the 2**bits centroids (loop-invariant scalars): it
        # vectorizes into blends, where a load at a computed index is one scalar load per lane
        values = [codebook[i] for i in range(1 << bits)]
        for level in range(bits):
            bit = (index & tvm.tirx.const(1 << level, "uint8")) != tvm.tirx.const(0, "uint8")
            values = [tvm.tirx.Select(bit, values[j + 1], values[j]) for j in range(0, len(values), 2)]
        return values[0]

    return te.compute(
        (x.shape[0], packed.shape[1]), lambda i, o: te.sum(x[i, k] * weight(o, k), axis=k), name="lut_dense"
    )


def keep_indices(mod: tvm.IRModule, weights: list[tuple[str, np.ndarray]]) -> tuple[tvm.IRModule, list, list[LutLayer]]:
    """``mod`` (lowered with its weights as inputs of ``main``) with each eligible dense weight replaced
    by a codebook and packed indices; the matching weight arrays; the layers replaced."""
    main = mod["main"]
    first_weight = int(main.attrs["num_input"])
    params = list(main.params)
    arrays = dict(zip(params[first_weight:], weights, strict=True))
    uses = _dense_weight_uses(main, set(arrays))
    new_params, new_weights, replaced, layers = list(params[:first_weight]), [], {}, []
    for param in params[first_weight:]:
        name, array = arrays[param]
        found = _codebook(array) if param in uses else None
        if found is None:
            new_params.append(param)
            new_weights.append((name, array))
            continue
        full, rows, bits = found
        packed = pack(rows.T if uses[param][1] else rows, bits)  # K x O: one column per output
        book_var = relax.Var(f"{param.name}_codebook", relax.TensorType(full.shape, "float32"))
        index_var = relax.Var(f"{param.name}_indices", relax.TensorType(packed.shape, "uint8"))
        new_params += [book_var, index_var]
        new_weights += [(f"{name}.codebook", full), (f"{name}.indices", packed)]
        columns = int(array.shape[1] if uses[param][1] else array.shape[0])
        replaced[param] = (index_var, book_var, columns, bits)
        layers.append(LutLayer(name, tuple(array.shape), bits, array.nbytes, full.nbytes + packed.nbytes))
    if not replaced:
        return mod, weights, []
    rewriter = _LutRewriter(mod, replaced, uses)
    body = rewriter.visit_expr(main.body)
    function = relax.Function(new_params, body, main.ret_ty, main.is_pure, main.attrs)
    function = function.with_attr("params", [tvm.runtime.tensor(array) for _, array in new_weights])
    new_mod = rewriter.builder_.get()
    new_mod["main"] = function
    new_mod = relax.transform.DeadCodeElimination()(new_mod)
    return new_mod, new_weights, layers


def _codebook(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(codebook of 2**bits float32 values, uint8 indices of array's shape, bits)``, or None past 256 values."""
    if array.dtype != np.float32 or array.ndim != 2:
        return None
    values, indices = np.unique(array, return_inverse=True)
    bits = storage_bits(len(values))
    if bits is None:
        return None
    codebook = np.zeros(1 << bits, dtype=np.float32)
    codebook[: len(values)] = values
    return codebook, indices.reshape(array.shape).astype(np.uint8), bits


def _dense_weight_uses(main: relax.Function, weights: set[relax.Var]) -> dict[relax.Var, tuple[relax.Var, bool]]:
    """Weights used once, as the right-hand side of a 2-D ``matmul``, directly (``K x O``, the O2
    graph's pre-transposed ``weight_t``) or through ``permute_dims(W, [1, 0])`` (``O x K``): W ->
    (the var the matmul reads, whether W is ``O x K``)."""
    transposed: dict[relax.Var, relax.Var] = {}
    counts: dict[relax.Var, int] = {}
    matmul_inputs: set[relax.Var] = set()

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    for block in main.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if _is_op(value, "relax.permute_dims") and value.args[0] in weights and _is_transpose(value):
                transposed[value.args[0]] = binding.var
            if _is_op(value, "relax.matmul") and len(value.args[0].ty.shape) == 2:
                matmul_inputs.add(value.args[1])
            relax.analysis.post_order_visit(value, visit)
    uses = {weight: (weight, False) for weight in weights if counts.get(weight) == 1 and weight in matmul_inputs}
    for weight, var in transposed.items():
        if counts.get(weight) == 1 and counts.get(var) == 1 and var in matmul_inputs:
            uses[weight] = (var, True)
    return uses


def _is_op(expr: Any, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def _is_transpose(call: relax.Call) -> bool:
    axes = call.attrs.axes
    return axes is not None and [int(a) for a in axes] == [1, 0]


@relax.expr_functor.mutator
class _LutRewriter(relax.PyExprMutator):
    """Drops each replaced weight's transpose and turns its matmul into a ``lut_dense`` call."""

    def __init__(self, mod: tvm.IRModule, replaced: dict, uses: dict) -> None:
        super().__init__(mod)
        self.by_transposed = {uses[weight][0]: replaced[weight] for weight in replaced}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        if binding.var in self.by_transposed:
            return  # the transpose of a weight that is no longer there (a later matmul reads the indices)
        if _is_op(value, "relax.matmul") and value.args[1] in self.by_transposed:
            index_var, book_var, columns, bits = self.by_transposed[value.args[1]]
            x = self.visit_expr(value.args[0])
            call = self.builder_.call_te(
                lut_dense, x, index_var, book_var, columns, bits, primfunc_name_hint="lut_dense"
            )  # fmt: skip
            new_var = self.builder_.emit(call, name_hint=binding.var.name)
            self.set_var_remap(binding.var, new_var)
            return
        super().visit_var_binding_(binding)
