"""ONNX MaxPool with its ``Indices`` output (2-d), as torch's ``max_pool2d(return_indices=True)``.

ONNX's pads may be asymmetric and its ``ceil_mode`` ignores windows that start in the right
padding, which torch's pooling cannot express; so the input is padded explicitly (with -inf, and on
the right as far as the last window needs) and pooled without padding, as ``ops.Pool`` does. torch's
index of the maximum in the padded plane is then mapped to ONNX's: the flat position in the whole
unpadded input, ``(n * C + c) * H * W + h * W + w`` (``storage_order=0``) or ``... + h + w * H``
(``storage_order=1``, column-major). A window whose in-bounds values are all -inf could report a
padding position, which the reference never does; nothing else differs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MaxPoolWithIndices(nn.Module):
    """(values, ONNX indices) of a 2-d ONNX MaxPool."""

    def __init__(
        self,
        kernel: list[int],
        strides: list[int],
        dilations: list[int],
        pads: list[int],
        auto_pad: str,
        ceil_mode: bool,
        storage_order: int,
    ) -> None:
        super().__init__()
        self.kernel, self.strides, self.dilations, self.pads = kernel, strides, dilations, pads
        self.auto_pad, self.ceil_mode, self.storage_order = auto_pad, ceil_mode, storage_order

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from graphopt.onnx.ops import _window_pads, window_extra_end

        size = [int(s) for s in x.shape[2:]]
        strides = self.strides or [1, 1]
        dilations = self.dilations or [1, 1]
        pads = _window_pads(size, self.kernel, strides, dilations, self.pads, self.auto_pad)
        ends = [
            pads[2 + i]
            + window_extra_end(size[i], self.kernel[i], strides[i], dilations[i], pads[i], pads[2 + i], self.ceil_mode)
            for i in range(2)
        ]
        padded_x = nn.functional.pad(x, [pads[1], ends[1], pads[0], ends[0]], value=-math.inf)
        values, position = nn.functional.max_pool2d(
            padded_x, self.kernel, strides, padding=0, dilation=dilations, return_indices=True
        )
        height, width = size
        row = position // padded_x.shape[3] - pads[0]
        column = position % padded_x.shape[3] - pads[1]
        inside = row * width + column if self.storage_order == 0 else row + column * height
        planes = torch.arange(x.shape[0] * x.shape[1], dtype=torch.int64).reshape(x.shape[0], x.shape[1], 1, 1)
        return values, planes * (height * width) + inside
