"""ONNX's narrow types torch lacks (int4, uint4, int2, uint2, float4e2m1) and float8e8m0, for Cast.

torch has no 4- or 2-bit tensors, so graphopt carries a tensor of such an ONNX type in a wider torch
dtype that holds exactly the type's values (``CARRIERS``: int4 and int2 in int8, uint4 and uint2 in
uint8, float4e2m1 in float32): a model input of type int4 is given as an int8 tensor of values in
[-8, 7], and a Cast to int4 returns such a tensor. Casts follow the onnx reference (``astype`` to the
ml_dtypes type): from floats truncate toward zero, a value out of range (or NaN/inf) gives 0; from
integers wrap modulo 2**bits; to float4e2m1, round to nearest even, saturating at +-6. float8e8m0
is torch's ``float8_e8m0fnu``; casts to it follow ``onnx.numpy_helper.to_float8e8m0`` (round_mode).
"""

from __future__ import annotations

import torch
from torch import nn

#: ONNX type -> the torch dtype that carries its values
CARRIERS: dict[int, torch.dtype] = {21: torch.uint8, 22: torch.int8, 23: torch.float32, 25: torch.uint8, 26: torch.int8}
#: integer narrow types: (lowest, highest, bits)
_INTEGERS = {21: (0, 15, 4), 22: (-8, 7, 4), 25: (0, 3, 2), 26: (-2, 1, 2)}
#: the non-negative float4e2m1 values, by code (an even code has an even mantissa)
_FLOAT4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E8M0 = 24


def cast_narrow(x: torch.Tensor, onnx_type: int, saturate: bool = True, round_mode: str = "up") -> torch.Tensor:
    """``x`` cast to the narrow ONNX type ``onnx_type``, as its carrier dtype (or float8e8m0)."""
    if onnx_type == E8M0:
        return _to_e8m0(x, saturate, round_mode)
    if onnx_type == 23:
        return _to_float4(x)
    low, high, bits = _INTEGERS[onnx_type]
    if x.is_floating_point():
        value = x.to(torch.float64).trunc()
        inside = (value >= low) & (value <= high)  # false for NaN and infinities
        return torch.where(inside, value, torch.zeros_like(value)).to(CARRIERS[onnx_type])
    wrapped = x.to(torch.int64) & ((1 << bits) - 1)
    if low < 0:
        wrapped = torch.where(wrapped > high, wrapped - (1 << bits), wrapped)
    return wrapped.to(CARRIERS[onnx_type])


def _to_float4(x: torch.Tensor) -> torch.Tensor:
    value = x.to(torch.float64)
    grid = torch.tensor(_FLOAT4, dtype=torch.float64)
    magnitude = torch.nan_to_num(value.abs(), nan=0.0).clamp(max=6.0)
    odd = (torch.arange(len(_FLOAT4)) % 2).to(torch.float64) * 1e-9  # a tie goes to the even code
    nearest = grid[((magnitude.unsqueeze(-1) - grid).abs() + odd).argmin(-1)]
    signed = torch.copysign(nearest, value)
    return torch.where(torch.isnan(value), torch.full_like(value, -0.0), signed).to(torch.float32)


def _to_e8m0(x: torch.Tensor, saturate: bool, round_mode: str) -> torch.Tensor:
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
    result = torch.where(special, torch.full_like(exponent, 0xFF), (exponent + up.to(torch.int64)) & 0xFF)
    return result.to(torch.uint8).view(torch.float8_e8m0fnu)


class NarrowCast(nn.Module):
    """ONNX Cast / CastLike to a narrow type (its ``like`` input, if any, only gives the type)."""

    def __init__(self, onnx_type: int, saturate: bool, round_mode: str) -> None:
        super().__init__()
        self.onnx_type, self.saturate, self.round_mode = onnx_type, saturate, round_mode

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return cast_narrow(x, self.onnx_type, self.saturate, self.round_mode)
