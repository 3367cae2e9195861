"""ONNX DeformConv and RoiAlign: bilinear sampling written with gathers, no torchvision.

onnx2torch's RoiAlign calls torchvision, whose PyPI wheel does not load beside the pinned CPU torch,
and it has no DeformConv. Both sample an image at fractional positions; here the four neighbours of
every position are gathered from the flattened image (``torch.gather``) and blended by their
bilinear weights, which every target lowers (static shapes: the sample counts are attributes).
Each follows the onnx reference implementation (``onnx/reference/ops/op_deform_conv.py``: GridSample
with ``align_corners=1`` and zero padding; ``op_roi_align.py``: its clamping rules and its ``max``
mode, the largest weighted neighbour).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _gather(image: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``image`` (..., C, H*W) at flat positions ``index`` (..., K): (..., C, K)."""
    expanded = index.unsqueeze(-2).expand(*index.shape[:-1], image.shape[-2], index.shape[-1])
    return torch.gather(image, -1, expanded)


# -- DeformConv ----------------------------------------------------------------------------------


class DeformConv(nn.Module):
    """ONNX DeformConv (2-D): each kernel tap samples X at its offset position (bilinear, zero outside),
    scaled by the mask, then the grouped convolution of those samples with W."""

    def __init__(self, strides: list[int], pads: list[int], dilations: list[int], group: int, offset_group: int):
        super().__init__()
        self.strides, self.pads, self.dilations = strides, pads, dilations
        self.group, self.offset_group = group, offset_group

    def forward(
        self,
        x_in: torch.Tensor,
        weight: torch.Tensor,
        offset: torch.Tensor,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, c, height, width = x_in.shape
        out_channels, _, kh, kw = weight.shape
        oh, ow = offset.shape[-2:]
        g = self.offset_group
        offset = offset.reshape(n, g, kh, kw, 2, oh, ow)
        # every tap's position: the output pixel's window corner + the tap's dilated place + its offset
        base_y = (torch.arange(oh, dtype=x_in.dtype) * self.strides[0] - self.pads[0]).reshape(1, 1, 1, 1, oh, 1)
        base_x = (torch.arange(ow, dtype=x_in.dtype) * self.strides[1] - self.pads[1]).reshape(1, 1, 1, 1, 1, ow)
        tap_y = (torch.arange(kh, dtype=x_in.dtype) * self.dilations[0]).reshape(1, 1, kh, 1, 1, 1)
        tap_x = (torch.arange(kw, dtype=x_in.dtype) * self.dilations[1]).reshape(1, 1, 1, kw, 1, 1)
        y = base_y + tap_y + offset[:, :, :, :, 0]  # (n, g, kh, kw, oh, ow)
        x = base_x + tap_x + offset[:, :, :, :, 1]
        image = x_in.reshape(n, g, c // g, height * width)
        y0, x0 = torch.floor(y), torch.floor(x)
        samples = x_in.new_zeros((n, g, c // g, kh * kw * oh * ow))
        for dy in (0, 1):
            for dx in (0, 1):
                cy, cx = y0 + dy, x0 + dx
                blend = (1 - (y - cy).abs()) * (1 - (x - cx).abs())
                inside = (cy >= 0) & (cy <= height - 1) & (cx >= 0) & (cx <= width - 1)
                blend = torch.where(inside, blend, torch.zeros_like(blend))
                flat = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).to(torch.int64)
                values = _gather(image, flat.reshape(n, g, -1))
                samples = samples + values * blend.reshape(n, g, 1, -1)
        if mask is not None:
            samples = samples * mask.reshape(n, g, 1, -1)
        columns = samples.reshape(n, self.group, (c // self.group) * kh * kw, oh * ow)
        kernel = weight.reshape(self.group, out_channels // self.group, -1)
        result = torch.einsum("gok,ngkp->ngop", kernel, columns).reshape(n, out_channels, oh, ow)
        return result + bias.reshape(1, -1, 1, 1) if bias is not None else result


# -- RoiAlign ------------------------------------------------------------------------------------


class RoiAlign(nn.Module):
    """ONNX RoiAlign: every region's output bins, each the average (or ``max``) of a grid of bilinear
    samples. ``grids`` is the samples per bin side: one for every region (``sampling_ratio`` > 0), or one
    per region, computed from constant regions (``sampling_ratio`` 0)."""

    def __init__(
        self,
        output: tuple[int, int],
        scale: float,
        half_pixel: bool,
        maximum: bool,
        grids: list[tuple[int, int]],
    ) -> None:
        super().__init__()
        self.output, self.scale, self.half_pixel, self.maximum, self.grids = output, scale, half_pixel, maximum, grids

    def forward(self, x_in: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor) -> torch.Tensor:
        if len(self.grids) == 1:
            return self._align(x_in, rois, batch_indices, self.grids[0])
        parts = [
            self._align(x_in, rois[r : r + 1], batch_indices[r : r + 1], grid) for r, grid in enumerate(self.grids)
        ]
        return torch.cat(parts, dim=0)

    def _align(
        self, x_in: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        _, channels, height, width = x_in.shape
        ph, pw = self.output
        gh, gw = grid
        shift = 0.5 if self.half_pixel else 0.0
        box = rois.to(x_in.dtype) * self.scale - shift
        start_w, start_h, end_w, end_h = box.unbind(-1)
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not self.half_pixel:
            roi_w, roi_h = torch.clamp(roi_w, min=1.0), torch.clamp(roi_h, min=1.0)
        bin_h, bin_w = (roi_h / ph).reshape(-1, 1, 1), (roi_w / pw).reshape(-1, 1, 1)
        step_h = (torch.arange(ph, dtype=x_in.dtype).reshape(1, ph, 1), (torch.arange(gh, dtype=x_in.dtype) + 0.5) / gh)
        step_w = (torch.arange(pw, dtype=x_in.dtype).reshape(1, pw, 1), (torch.arange(gw, dtype=x_in.dtype) + 0.5) / gw)
        yy = start_h.reshape(-1, 1, 1) + step_h[0] * bin_h + step_h[1].reshape(1, 1, gh) * bin_h  # (R, ph, gh)
        xx = start_w.reshape(-1, 1, 1) + step_w[0] * bin_w + step_w[1].reshape(1, 1, gw) * bin_w  # (R, pw, gw)
        y = yy.reshape(-1, ph, gh, 1, 1).expand(-1, ph, gh, pw, gw)
        x = xx.reshape(-1, 1, 1, pw, gw).expand(-1, ph, gh, pw, gw)
        outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
        y, x = torch.clamp(y, min=0), torch.clamp(x, min=0)
        y_low, x_low = torch.floor(y), torch.floor(x)
        y_edge, x_edge = y_low >= height - 1, x_low >= width - 1
        y_low = torch.where(y_edge, torch.full_like(y_low, height - 1), y_low)
        x_low = torch.where(x_edge, torch.full_like(x_low, width - 1), x_low)
        y, x = torch.where(y_edge, y_low, y), torch.where(x_edge, x_low, x)
        y_high = torch.where(y_edge, y_low, y_low + 1)
        x_high = torch.where(x_edge, x_low, x_low + 1)
        ly, lx = y - y_low, x - x_low
        hy, hx = 1 - ly, 1 - lx
        image = x_in.reshape(x_in.shape[0], channels, height * width)[batch.to(torch.int64)]  # (R, C, H*W)
        corners = []
        for rows, cols, weight in (
            (y_low, x_low, hy * hx),
            (y_low, x_high, hy * lx),
            (y_high, x_low, ly * hx),
            (y_high, x_high, ly * lx),
        ):
            weight = torch.where(outside, torch.zeros_like(weight), weight)
            flat = (rows * width + cols).to(torch.int64).reshape(rows.shape[0], -1)
            values = _gather(image, flat).reshape(-1, channels, ph, gh, pw, gw)
            corners.append(values * weight.unsqueeze(1))
        if self.maximum:
            best = torch.maximum(torch.maximum(corners[0], corners[1]), torch.maximum(corners[2], corners[3]))
            return best.amax(dim=(3, 5))
        return (corners[0] + corners[1] + corners[2] + corners[3]).sum(dim=(3, 5)) / max(gh * gw, 1)


def register(add: Callable[..., None], replace: Callable[..., None]) -> None:
    """Register DeformConv (``add``) and RoiAlign (``replace``: over onnx2torch's torchvision one)."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    from graphopt.onnx.converters import _constant, _is_constant

    def deform_conv(node: Any, graph: Any) -> Any:
        a = node.attributes
        kernel = list(a.get("kernel_shape", []))
        if len(kernel) not in (0, 2):
            raise NotImplementedError(f"DeformConv over {len(kernel)} spatial dimensions (only 2-D)")
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        module = DeformConv(
            [int(s) for s in a.get("strides", [1, 1])],
            pads[:2],
            [int(d) for d in a.get("dilations", [1, 1])],
            int(a.get("group", 1)),
            int(a.get("offset_group", 1)),
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def roi_align(node: Any, graph: Any, default_mode: str) -> Any:
        a = node.attributes
        transformation = str(a.get("coordinate_transformation_mode", default_mode))
        if transformation not in ("half_pixel", "output_half_pixel"):
            raise NotImplementedError(f"RoiAlign coordinate_transformation_mode '{transformation}'")
        mode = str(a.get("mode", "avg"))
        if mode not in ("avg", "max"):
            raise NotImplementedError(f"RoiAlign mode '{mode}'")
        output = (int(a.get("output_height", 1)), int(a.get("output_width", 1)))
        scale, ratio = float(a.get("spatial_scale", 1.0)), int(a.get("sampling_ratio", 0))
        half_pixel = transformation == "half_pixel"
        if ratio > 0:
            grids = [(ratio, ratio)]
        elif _is_constant(node.input_values[1], graph):
            grids = []
            for box in _constant(node.input_values[1], graph).reshape(-1, 4).tolist():
                w, h = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
                w, h = (w, h) if half_pixel else (max(w, 1.0), max(h, 1.0))
                grids.append((math.ceil(h / output[0]), math.ceil(w / output[1])))
        else:
            raise NotImplementedError(
                "RoiAlign with sampling_ratio 0 on regions known only at run time (the sample count would be dynamic)"
            )
        module = RoiAlign(output, scale, half_pixel, mode == "max", grids)
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    add("DeformConv", (19,), deform_conv)
    # RoiAlign-10 has no coordinate_transformation_mode: it is output_half_pixel; from 16 the default is half_pixel
    replace("RoiAlign", (10,), lambda node, graph: roi_align(node, graph, "output_half_pixel"))
    replace("RoiAlign", (16,), lambda node, graph: roi_align(node, graph, "half_pixel"))
