"""Convolution in the forms PyTorch accepts, compiled for cpu against eager (issue 14, item 4).

One model per rank, each with several branches so one build covers many forms: groups, dilation,
strides, non-square kernels and inputs, every ``padding_mode``, ``padding="same"``, transposed
convolution (also after an NHWC conv, which once left it unlowered: "CodeGenVM cannot emit").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.targets.conftest import assert_matches_eager


class Conv2dForms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 8, 3, padding=1)
        self.branches = nn.ModuleList(
            [
                nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4),
                nn.Conv2d(8, 6, (1, 3), stride=(2, 1), padding=(0, 1)),
                nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
                nn.Conv2d(8, 8, 3, padding=1, padding_mode="replicate", groups=8),
                nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"),
                nn.Conv2d(8, 4, 4, padding="same", bias=False),
                nn.ConvTranspose2d(8, 4, 2, stride=2),
                nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=4),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = torch.relu(self.stem(x))
        return [branch(h) for branch in self.branches]


class Conv1dAnd3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(3, 6, 5, stride=2, padding=2, dilation=1, groups=3)
        self.transposed1d = nn.ConvTranspose1d(6, 2, 4, stride=2, padding=1)
        self.conv3d = nn.Conv3d(2, 4, (3, 1, 3), padding=(1, 0, 1), dilation=(1, 1, 2))

    def forward(self, signal: torch.Tensor, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transposed1d(self.conv1d(signal)), self.conv3d(volume)


@pytest.mark.slow
def test_conv2d_forms_match_eager(compile_cpu) -> None:
    torch.manual_seed(0)
    model = Conv2dForms().eval()
    x = torch.randn(2, 4, 6, 10)  # batch 2, non-square
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_conv1d_and_conv3d_match_eager(compile_cpu) -> None:
    torch.manual_seed(0)
    model = Conv1dAnd3d().eval()
    signal, volume = torch.randn(2, 3, 16), torch.randn(2, 2, 3, 4, 9)
    assert_matches_eager(model, compile_cpu(model, signal, volume), signal, volume)
