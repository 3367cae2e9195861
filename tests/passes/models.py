"""Small models and helpers shared by the pass tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from graphopt.capture import capture
from graphopt.ir import Graph
from graphopt.numerics import relative_error
from graphopt.pass_manager import optimize
from graphopt.report import PassRecord

#: Tolerance for passes that only reorder float32 arithmetic (BN folding, matmul layout); exact ones use 0.
FLOAT_TOLERANCE = 1e-5


def run_pass(graph: Graph, name: str, *, tolerance: float = 0.0, **options: object) -> tuple[Graph, PassRecord]:
    """Run one pass with verify mode on (outputs on the example inputs within ``tolerance``)."""
    result, report = optimize(
        graph, [name], verify=True, tolerance=tolerance, options={name: options} if options else None
    )
    return result, report.passes[0]


def assert_matches_eager(model: nn.Module, graph: Graph, *shape: int, tolerance: float, seed: int = 1) -> float:
    """Outputs of ``graph`` equal eager ``model`` on fresh random inputs, to ``tolerance`` relative."""
    torch.manual_seed(seed)
    x = torch.randn(*shape)
    with torch.no_grad():
        error = relative_error(model(x), graph(x))
    assert error <= tolerance, f"relative error {error:.3g} > {tolerance}"
    return error


def kinds(graph: Graph) -> list[str]:
    return [graph.info(n).kind for n in graph.compute_nodes()]


def randomized_bn(channels: int, dims: int = 2) -> nn.Module:
    """A BatchNorm in eval mode with non-trivial statistics, so folding it is not a no-op."""
    bn = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.2)
    return bn.eval()


class ConvBnRelu(nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=bias)
        self.bn = randomized_bn(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def captured(model: nn.Module, *shape: int, method: str = "symbolic_trace") -> Graph:
    torch.manual_seed(0)
    return capture(model.eval(), torch.randn(*shape), method=method)
