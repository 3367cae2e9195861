"""``pow`` with a tensor exponent, exact for integers and for mixed operand types.

TVM 0.27's frontend maps ``pow.Tensor_Tensor`` (and ``pow.Scalar``, a number to a tensor's power) to
``relax.op.power``, which legalizes to TOPI's float-only power: an integer ``x ** y`` (ONNX Pow on int32
or int64) failed to build ("power only applies to float"), and a float base with an unsigned exponent
(ONNX Pow float32 ** uint32) failed on the mixed types. Here both operands are first cast to the
result type torch computes in (``node.meta["val"]``); a float result is ``relax.op.power``, an integer
one is exponentiation by squaring over every bit of the exponent, as torch's integer kernel computes it
(products wrap around the type, as torch's do). A negative exponent gives what torch gives: 1 for a
base of 1, -1 or 1 (odd or even exponent) for -1, and 0 for any other base (0 included).
"""

from __future__ import annotations

from typing import Any

from torch import fx

from graphopt.targets.lowering.operands import operand_as


def _integer_power(x: Any, y: Any) -> Any:
    """The 1-d te tensor ``x ** y`` (same integer dtype and length) by squaring, one serial loop over the
    exponent's bits per element: a hand-written kernel (as TOPI's scans). Unrolled into one expression of
    nested ``Let`` steps it built for int16 but crashed TVM's build (a segfault) for int32 and int64."""
    from tvm import te, tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    dtype = str(x.dtype)
    signed = dtype.startswith("int")
    bits = int(dtype.removeprefix("uint").removeprefix("int")) - (1 if signed else 0)
    size = x.shape[0]
    one, zero = tirx.const(1, dtype), tirx.const(0, dtype)

    def kernel(base_buffer: Any, exponent_buffer: Any, out_buffer: Any) -> Any:
        with IRBuilder() as ib:
            base_flat, exponent_flat, out = (T.buffer_proxy(b) for b in (base_buffer, exponent_buffer, out_buffer))
            with T.parallel(0, size) as i:
                square_buffer = T.alloc_buffer((1,), dtype, scope="local")
                square = T.buffer_proxy(square_buffer)
                square[0] = base_flat[i]
                out[i] = one
                with T.serial(0, bits) as bit:
                    is_set = tirx.bitwise_and(tirx.shift_right(exponent_flat[i], bit.astype(dtype)), one) != zero
                    out[i] = out[i] * tirx.Select(is_set, square[0], one)
                    square[0] = square[0] * square[0]
                if signed:
                    base, exponent = base_flat[i], exponent_flat[i]
                    odd = tirx.bitwise_and(exponent, one) != zero
                    minus_one = tirx.const(-1, dtype)
                    unit = tirx.Select(base == minus_one, tirx.Select(odd, minus_one, one), zero)
                    reciprocal = tirx.Select(base == one, one, unit)  # x ** -n truncated, as torch's
                    out[i] = tirx.Select(exponent < zero, reciprocal, out[i])
            return ib.get()

    return te.extern(
        [x.shape],
        [x, y],
        lambda ins, outs: kernel(ins[0], ins[1], outs[0]),
        dtype=dtype,
        name="integer_power",
        tag="integer_power",
    )


def convert_power(node: fx.Node, importer: Any) -> Any:
    """``pow.Tensor_Tensor`` / ``pow.Scalar``: both operands in the result's dtype, then ``power`` or
    (integers) ``_integer_power`` on the broadcast operands, flattened."""
    from tvm import relax

    bb = importer.block_builder
    value = node.meta["val"]
    dtype = str(value.dtype).removeprefix("torch.")

    base, exponent = operand_as(importer, node.args[0], dtype), operand_as(importer, node.args[1], dtype)
    if value.is_floating_point():
        return bb.emit(relax.op.power(base, exponent))
    shape = bb.normalize(relax.op.multiply(base, exponent)).ty.shape  # the broadcast shape
    base, exponent = (bb.emit(relax.op.broadcast_to(v, shape)) for v in (base, exponent))
    base, exponent = (bb.emit(relax.op.reshape(v, [-1])) for v in (base, exponent))
    flat = bb.emit_te(_integer_power, base, exponent, primfunc_name_hint="integer_power")
    return bb.emit(relax.op.reshape(flat, shape))


CONVERTERS = {"pow.Tensor_Tensor": convert_power, "pow.Scalar": convert_power}
