"""ONNX Resize (10+) and Upsample (7, 9) as separable per-axis interpolation matrices.

onnx2torch maps Resize onto ``torch.nn.functional.interpolate``, which has neither ONNX's
coordinate transformation modes (``half_pixel_symmetric``, ``tf_crop_and_resize``, ...) nor its
nearest rounding modes, ``cubic_coeff_a``, ``exclude_outside``, ``antialias``, ``axes`` or
``keep_aspect_ratio_policy``. Resize is separable, so each resized axis is one matrix product
with an (output x input) weight matrix built from the op's definition (the onnx reference
implementation's coefficients and neighbour choice, edge-clamped). Computed in float64, cast back
(integers rounded and saturated, as the definition says).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


def _nearest(mode: str) -> Callable[[float, float], list[float]]:
    def coefficients(ratio: float, scale: float) -> list[float]:
        if float(ratio).is_integer():
            return [0.0, 1.0]
        if mode == "round_prefer_floor":
            return [float(ratio <= 0.5), float(ratio > 0.5)]
        if mode == "round_prefer_ceil":
            return [float(ratio < 0.5), float(ratio >= 0.5)]
        if mode == "floor":
            return [1.0, 0.0]
        return [0.0, 1.0]  # ceil

    return coefficients


def _linear(antialias: bool) -> Callable[[float, float], list[float]]:
    def coefficients(ratio: float, scale: float) -> list[float]:
        if not antialias:
            return [1 - ratio, ratio]
        scale = min(scale, 1.0)
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, start + 2 - 2 * start) - ratio) * scale
        values = np.clip(1 - np.abs(args), 0, 1)
        return list(values / values.sum())

    return coefficients


def _cubic(a: float, antialias: bool) -> Callable[[float, float], list[float]]:
    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    def coefficients(ratio: float, scale: float) -> list[float]:
        if not antialias:
            return [kernel(ratio + 1), kernel(ratio), kernel(1 - ratio), kernel(2 - ratio)]
        scale = min(scale, 1.0)
        start = int(np.floor(-2 / scale) + 1)
        values = [kernel(scale * (i - ratio)) for i in range(start, 2 - start)]
        total = sum(values)
        return [v / total for v in values]

    return coefficients


def _source(mode: str, out: np.ndarray, scale: float, size: int, length: int, roi: tuple[float, float]) -> Any:
    """Input coordinates of the output positions ``out`` along one axis, and the extrapolated ones."""
    width = scale * size
    outside = None
    if mode == "align_corners":
        x = np.zeros(length) if width == 1 else out * (size - 1) / (width - 1)
    elif mode == "asymmetric":
        x = out / scale
    elif mode == "tf_crop_and_resize":
        start, end = roi
        x = (
            np.full(length, (end - start) * (size - 1) / 2)
            if width == 1
            else out * (end - start) * (size - 1) / (width - 1)
        )
        x = x + start * (size - 1)
        outside = (x < 0) | (x > size - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(length, -0.5) if width == 1 else (out + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (out + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = size / 2 * (1 - length / width)
        x = offset + (out + 0.5) / scale - 0.5
    else:
        raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")
    return x, outside


def weights(
    size: int,
    length: int,
    scale: float,
    coefficients: Callable[[float, float], list[float]],
    mode: str,
    roi: tuple[float, float],
    exclude_outside: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The (length x size) interpolation matrix of one axis and its extrapolated rows (or None)."""
    matrix = np.zeros((length, size))
    if length == 0:
        return matrix, None
    x, outside = _source(mode, np.arange(length, dtype=np.float64), scale, size, length, roi)
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)
    table = np.array([coefficients(float(r), scale) for r in ratios], dtype=np.float64)
    n = table.shape[1]
    pad = math.ceil(n / 2)
    padded = x + pad
    floor = np.floor(padded)
    fraction = padded - floor
    if n % 2 == 0:
        offset = np.where(fraction == 0, -(n // 2), -(n // 2) + 1)
    else:
        offset = np.where(fraction <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    neighbours = (floor + offset).astype(np.int64)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        table = np.where((neighbours < 0) | (neighbours >= size), 0.0, table)
        total = table.sum(axis=-1, keepdims=True)
        table = table / np.where(total == 0, 1.0, total)
    clamped = np.clip(neighbours, 0, size - 1)
    for k in range(n):
        np.add.at(matrix, (np.arange(length), clamped[:, k]), table[:, k])
    return matrix, outside


class Resize(nn.Module):
    """ONNX Resize: inputs X, roi, scales, sizes (each optional after X); attributes as the op's."""

    def __init__(
        self,
        mode: str,
        coordinate_mode: str,
        nearest_mode: str,
        cubic_a: float,
        exclude_outside: bool,
        extrapolation: float,
        antialias: bool,
        axes: list[int] | None,
        policy: str,
        constant_scales: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.mode, self.coordinate_mode, self.nearest_mode = mode, coordinate_mode, nearest_mode
        self.cubic_a, self.exclude_outside, self.extrapolation = cubic_a, exclude_outside, extrapolation
        self.antialias, self.axes, self.policy, self.constant_scales = antialias, axes, policy, constant_scales

    def forward(
        self,
        x: torch.Tensor,
        roi: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rank = x.dim()
        shape = [int(s) for s in x.shape]
        axes = [a % rank for a in self.axes] if self.axes else list(range(rank))
        given_scales = self.constant_scales
        if given_scales is None and scales is not None and scales.numel():
            given_scales = [float(s) for s in scales.reshape(-1).tolist()]
        box = [float(v) for v in roi.reshape(-1).tolist()] if roi is not None and roi.numel() else None
        rois = {a: (box[i], box[len(axes) + i]) if box else (0.0, 1.0) for i, a in enumerate(axes)}
        if sizes is not None and sizes.numel() and not given_scales:
            wanted = [int(s) for s in sizes.reshape(-1).tolist()]
            factor = {a: wanted[i] / shape[a] for i, a in enumerate(axes)}
            if self.policy in ("not_larger", "not_smaller"):
                pick = min if self.policy == "not_larger" else max
                common = pick(factor.values())
                factor = dict.fromkeys(axes, common)
                lengths = {a: int(common * shape[a] + 0.5) for a in axes}
            else:
                lengths = {a: wanted[i] for i, a in enumerate(axes)}
        else:
            assert given_scales is not None, "Resize needs scales or sizes"
            factor = {a: given_scales[i] for i, a in enumerate(axes)}
            lengths = {a: int(factor[a] * shape[a]) for a in axes}
        if self.mode == "nearest":
            coefficients = _nearest(self.nearest_mode)
        elif self.mode == "cubic":
            coefficients = _cubic(self.cubic_a, self.antialias)
        else:
            coefficients = _linear(self.antialias)
        result = x.to(torch.float64)
        for axis in axes:
            scale, length = factor[axis], lengths[axis]
            if math.isclose(scale, 1.0) and length == shape[axis] and rois[axis] == (0.0, 1.0):
                continue
            matrix, outside = weights(
                shape[axis], length, scale, coefficients, self.coordinate_mode, rois[axis], self.exclude_outside
            )
            result = torch.tensordot(result, torch.from_numpy(matrix), dims=([axis], [1])).movedim(-1, axis)
            if outside is not None and outside.any():
                mask = torch.from_numpy(outside).reshape([-1 if d == axis else 1 for d in range(rank)])
                result = torch.where(mask, torch.tensor(self.extrapolation, dtype=torch.float64), result)
        if x.is_floating_point():
            return result.to(x.dtype)
        info = torch.iinfo(x.dtype)
        return result.round().clamp(info.min, info.max).to(x.dtype)


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def register(add: Callable[..., None], replace: Callable[..., None]) -> None:
    """Resize (every version) and Upsample over onnx2torch's own converters."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

    def resize_at(version: int) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            attributes = node.attributes
            coordinate = _text(attributes.get("coordinate_transformation_mode"), "half_pixel")
            nearest = _text(attributes.get("nearest_mode"), "round_prefer_floor")
            if version < 11:  # Resize-10: asymmetric coordinates, nearest rounds down
                coordinate, nearest = "asymmetric", "floor"
            module = Resize(
                _text(attributes.get("mode"), "nearest"),
                coordinate,
                nearest,
                float(attributes.get("cubic_coeff_a", -0.75)),
                bool(attributes.get("exclude_outside", 0)),
                float(attributes.get("extrapolation_value", 0.0)),
                bool(attributes.get("antialias", 0)),
                list(attributes["axes"]) if attributes.get("axes") is not None else None,
                _text(attributes.get("keep_aspect_ratio_policy"), "stretch"),
            )
            if version < 11:  # inputs X, scales
                return OperationConverterResult(
                    torch_module=_ScalesOnly(module), onnx_mapping=onnx_mapping_from_node(node)
                )
            return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

        return convert

    replace("Resize", (10,), resize_at(10))
    replace("Resize", (11,), resize_at(11))  # after 10: every version from 11 on

    def upsample(node: Any, graph: Any) -> Any:
        mode = _text(node.attributes.get("mode"), "nearest")
        module = Resize(mode, "asymmetric", "floor", -0.75, False, 0.0, False, None, "stretch")
        scales = node.attributes.get("scales")
        if scales is not None:  # Upsample-7: an attribute
            module.constant_scales = [float(s) for s in scales]
            mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
            return OperationConverterResult(torch_module=module, onnx_mapping=mapping)
        return OperationConverterResult(torch_module=_ScalesOnly(module), onnx_mapping=onnx_mapping_from_node(node))

    replace("Upsample", (7,), upsample)


class _ScalesOnly(nn.Module):
    """Resize-10 and Upsample-9: inputs X and scales."""

    def __init__(self, inner: Resize) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        return self.inner(x, None, scales)
