"""ONNX's types torch cannot compile (int4, uint4, int2, uint2, float4e2m1, the float8s), for Cast.

torch has no 4- or 2-bit tensors, and its float8 dtypes (and float8e8m0) have no arithmetic and do
not lower to TVM, so graphopt carries a tensor of such an ONNX type in a wider torch dtype that holds
exactly the type's values (``CARRIERS``: int4 and int2 in int8, uint4 and uint2 in uint8, float4e2m1,
the four float8 types and float8e8m0 in float32): a model input of type float8e4m3fn is given as a
float32 tensor of float8e4m3fn values, and a Cast to it returns such a tensor. Casts follow the onnx
reference (``saturate_cast`` or ``astype`` to the ml_dtypes type): from floats to the integer types
truncate toward zero, a value out of range (or NaN/inf) gives 0; from integers wrap modulo 2**bits; to
the float types round to nearest even, and a value beyond the largest finite one saturates to it
(``saturate``, and always for float4e2m1) or becomes NaN (infinity for float8e5m2) without it.
Casts to float8e8m0 follow ``onnx.numpy_helper.to_float8e8m0`` (round_mode).

Rounding works on the bits of the float (the exponent gives the spacing of the type's values around
it), so it is exact in float32 and float64 and lowers to every target.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

#: ONNX type -> the torch dtype that carries its values
CARRIERS: dict[int, torch.dtype] = {
    17: torch.float32,
    18: torch.float32,
    19: torch.float32,
    20: torch.float32,
    21: torch.uint8,
    22: torch.int8,
    23: torch.float32,
    24: torch.float32,
    25: torch.uint8,
    26: torch.int8,
}
#: ml_dtypes (numpy) name of each carried type -> its carrier's numpy name, for inputs and initializers
NUMPY_CARRIERS = {
    "int4": "int8",
    "int2": "int8",
    "uint4": "uint8",
    "uint2": "uint8",
    "float4_e2m1fn": "float32",
    "float8_e4m3fn": "float32",
    "float8_e4m3fnuz": "float32",
    "float8_e5m2": "float32",
    "float8_e5m2fnuz": "float32",
    "float8_e8m0fnu": "float32",
}
#: ml_dtypes (numpy) name -> ONNX type
ONNX_TYPES = {
    "float8_e4m3fn": 17,
    "float8_e4m3fnuz": 18,
    "float8_e5m2": 19,
    "float8_e5m2fnuz": 20,
    "uint4": 21,
    "int4": 22,
    "float4_e2m1fn": 23,
    "float8_e8m0fnu": 24,
    "uint2": 25,
    "int2": 26,
}
#: integer narrow types: (lowest, highest, bits)
_INTEGERS = {21: (0, 15, 4), 22: (-8, 7, 4), 25: (0, 3, 2), 26: (-2, 1, 2)}
E8M0 = 24


class FloatFormat(NamedTuple):
    """A small float type: ``mantissa`` bits, exponents of its normal values from ``emin`` to ``emax``."""

    mantissa: int
    emin: int
    emax: int
    largest: float
    overflow: float | None  #: a non-saturated overflow gives this (None: the type always saturates)
    signed_zero: bool


_NAN, _INF = float("nan"), float("inf")
FORMATS: dict[int, FloatFormat] = {
    17: FloatFormat(3, -6, 8, 448.0, _NAN, True),  # float8e4m3fn
    18: FloatFormat(3, -7, 7, 240.0, _NAN, False),  # float8e4m3fnuz
    19: FloatFormat(2, -14, 15, 57344.0, _INF, True),  # float8e5m2
    20: FloatFormat(2, -15, 15, 57344.0, _NAN, False),  # float8e5m2fnuz
    23: FloatFormat(1, 0, 2, 6.0, None, True),  # float4e2m1
}
#: a float dtype -> (integer of its width, fraction bits, exponent bias)
_BITS = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


def cast_narrow(x: torch.Tensor, onnx_type: int, saturate: bool = True, round_mode: str = "up") -> torch.Tensor:
    """``x`` cast to the narrow ONNX type ``onnx_type``, as its carrier dtype."""
    if onnx_type == E8M0:
        return _to_e8m0(x, saturate, round_mode)
    if onnx_type in FORMATS:
        value = x if x.dtype == torch.float64 else x.to(torch.float32)
        return round_to_format(value, FORMATS[onnx_type], saturate).to(torch.float32)
    low, high, bits = _INTEGERS[onnx_type]
    if x.is_floating_point():
        value = x.to(torch.float64).trunc()
        inside = (value >= low) & (value <= high)  # false for NaN and infinities
        return torch.where(inside, value, torch.zeros_like(value)).to(CARRIERS[onnx_type])
    wrapped = x.to(torch.int64) & ((1 << bits) - 1)
    if low < 0:
        wrapped = torch.where(wrapped > high, wrapped - (1 << bits), wrapped)
    return wrapped.to(CARRIERS[onnx_type])


def round_to_format(value: torch.Tensor, form: FloatFormat, saturate: bool) -> torch.Tensor:
    """``value`` (float32 or float64) rounded to nearest even on ``form``'s values, in ``value``'s dtype.

    The spacing of the type's values at ``|value|`` is 2**(e - mantissa), e the exponent of ``|value|``
    clamped to [emin, emax] (below emin: the subnormals' fixed spacing), built from the bits so it is
    an exact power of two; the division by it is exact, and ``round`` rounds half to even."""
    integer, fraction, bias = _BITS[value.dtype]
    magnitude = value.abs()
    exponent = ((magnitude.view(integer) >> fraction) - bias).clamp(form.emin, form.emax)
    spacing = ((exponent + (bias - form.mantissa)) << fraction).view(value.dtype)
    rounded = torch.round(magnitude / spacing) * spacing
    overflow = rounded > form.largest  # false for NaN
    limit = form.largest if saturate or form.overflow is None else form.overflow
    result = torch.where(overflow, torch.full_like(rounded, limit), rounded)
    negative = value.view(integer) < 0  # the sign bit: -0.0 and negative values that round to 0 keep it
    if not form.signed_zero:
        negative = negative & (result != 0)
    signed = torch.where(negative, -result, result)
    if form.overflow is None:  # the type has no NaN: NaN gives a zero of the other sign, as in ml_dtypes
        zero = torch.where(negative, torch.zeros_like(value), torch.full_like(value, -0.0))
        signed = torch.where(torch.isnan(value), zero, signed)
    return signed


def _to_e8m0(x: torch.Tensor, saturate: bool, round_mode: str) -> torch.Tensor:
    """float8e8m0 (2**(e - 127), e in 0..254; 255 is NaN) of ``|x|``, carried in float32."""
    bits = x.to(torch.float32).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    exponent = (bits >> 23) & 0xFF
    special = exponent == 0xFF
    if round_mode == "nearest":
        guard, rest, sticky = (bits & 0x400000) > 0, (bits & 0x200000) > 0, (bits & 0x1FFFFF) > 0
        up = guard & (rest | sticky | (exponent > 0))
    elif round_mode == "up":
        up = (bits & 0x7FFFFF) > 0
    else:
        up = torch.zeros_like(special)
    up = up & ~special
    if saturate:
        up = up & ~(exponent == 0xFE)
    code = torch.where(special, torch.full_like(exponent, 0xFF), (exponent + up.to(torch.int64)) & 0xFF)
    # 2**(code - 127) from its float32 bits; code 0 is the subnormal 2**-127, half of 2**-126
    power = (code.clamp(1, 254).to(torch.int32) << 23).view(torch.float32)
    power = torch.where(code == 0, power * 0.5, power)
    return torch.where(code == 0xFF, torch.full_like(power, torch.nan), power)


class NarrowCast(nn.Module):
    """ONNX Cast / CastLike to a narrow type (its ``like`` input, if any, only gives the type)."""

    def __init__(self, onnx_type: int, saturate: bool, round_mode: str) -> None:
        super().__init__()
        self.onnx_type, self.saturate, self.round_mode = onnx_type, saturate, round_mode

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return cast_narrow(x, self.onnx_type, self.saturate, self.round_mode)
