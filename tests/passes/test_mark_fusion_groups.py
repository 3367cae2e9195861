"""mark_fusion_groups records Conv/Linear/MatMul epilogues and elementwise chains in node.meta."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graphopt import ir
from tests.passes.models import captured, run_pass


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.conv1(x))
        y = F.silu(self.conv2(y) + x)  # residual add, then activation
        y = y.mean((2, 3))
        return torch.sigmoid(F.gelu(self.fc(y)) * 2)


def test_groups_are_pinned_in_the_text_form() -> None:
    graph, record = run_pass(captured(Block(), 1, 4, 6, 6), "mark_fusion_groups")
    assert graph.text() == (
        "x = input\n"
        "conv1 = conv2d(x)  # group_0\n"
        "relu6 = relu6(conv1, inplace=False)  # group_0\n"
        "conv2 = conv2d(relu6)  # group_1\n"
        "add = add(conv2, x)  # group_1\n"
        "silu = silu(add, inplace=False)  # group_1\n"
        "mean = mean(silu, [2, 3])\n"
        "fc = linear(mean)  # group_2\n"
        "gelu = gelu(fc)  # group_2\n"
        "mul = mul(gelu, 2)  # group_2\n"
        "sigmoid = sigmoid(mul)  # group_2\n"
        "return sigmoid"
    )
    assert record.details["patterns"] == {
        "conv2d+bias+relu6": 1,
        "conv2d+add+silu": 1,
        "linear+bias+gelu+mul+sigmoid": 1,
    }
    assert graph.node("add").meta[ir.FUSION_PATTERN] == "conv2d+add+silu"
    assert set(graph.fusion_groups()) == {"group_0", "group_1", "group_2"}


def test_export_spelling_gets_the_same_patterns() -> None:
    _, record = run_pass(captured(Block(), 1, 4, 6, 6, method="export"), "mark_fusion_groups")
    assert record.details["patterns"] == {
        "conv2d+bias+relu6": 1,
        "conv2d+add+silu": 1,
        "linear+bias+gelu+mul+sigmoid": 1,
    }


def test_an_intermediate_needed_elsewhere_ends_the_group() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            return torch.relu(y) + y  # y has two users: the linear cannot keep it in registers

    graph, record = run_pass(captured(Shared(), 2, 4), "mark_fusion_groups")
    assert "fc" not in {n.name for members in graph.fusion_groups().values() for n in members}
    assert record.details["patterns"] == {"relu+add": 1}  # the elementwise chain after it still fuses


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_groups_leave_the_graph_executable_and_unchanged(method: str) -> None:
    model = Block().eval()
    graph = captured(model, 1, 4, 6, 6, method=method)
    marked, _ = run_pass(graph, "mark_fusion_groups")  # verify mode: outputs bit-identical
    assert marked.module.code == graph.module.code
