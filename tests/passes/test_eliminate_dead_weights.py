"""eliminate_dead_weights removes unused nodes, weights and all-zero channels, and reports bytes saved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphopt.capture import capture
from graphopt.numerics import relative_error
from tests.passes.models import FLOAT_TOLERANCE, assert_matches_eager, captured, kinds, randomized_bn, run_pass


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.gate = nn.Parameter(torch.randn(8, 100))  # read only by a dead branch
        self.spare = nn.Linear(100, 100)  # never called
        self.register_buffer("stale", torch.zeros(256))  # never read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unused = torch.tanh(x) @ self.gate  # noqa: F841 - computed, never used
        return self.fc(x)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_unused_weights_buffers_and_nodes_go(method: str) -> None:
    model = Unused().eval()
    graph, record = run_pass(captured(model, 2, 8, method=method), "eliminate_dead_weights")
    # symbolic_trace never copies the uncalled module and unread buffer into the graph; export does
    expected_bytes = (8 * 100 + (100 * 100 + 100 + 256 if method == "export" else 0)) * 4
    assert record.details["bytes_saved"] == expected_bytes
    assert record.before.param_bytes - record.after.param_bytes == expected_bytes
    names = {name for name, _ in graph.module.named_parameters()} | {n for n, _ in graph.module.named_buffers()}
    assert names == {"fc.weight", "fc.bias"}
    assert kinds(graph) == ["linear"]
    assert_matches_eager(model, graph, 3, 8, tolerance=0.0)


def pruned_conv_net() -> nn.Module:
    """conv1 (8 channels, 3 of them pruned to zero) -> BN -> ReLU -> conv2."""
    torch.manual_seed(0)
    bn = randomized_bn(8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn, nn.ReLU(), nn.Conv2d(8, 5, 3, padding=1))
    with torch.no_grad():
        for channel in (1, 4, 6):
            model[0].weight[channel] = 0
            model[0].bias[channel] = 0
            bn.running_mean[channel] = 0  # so the channel stays exactly zero through the BN
            bn.bias[channel] = 0
    return model.eval()


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_zero_channels_are_removed_and_consumers_shrunk(method: str) -> None:
    model = pruned_conv_net()
    graph, record = run_pass(
        captured(model, 2, 3, 8, 8, method=method), "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE
    )
    assert len(record.details["removed_channels"]) == 1 and "3 of 8 channels" in record.details["removed_channels"][0]
    shapes = sorted(tuple(p.shape) for p in graph.module.parameters())
    assert (5, 5, 3, 3) in shapes and (5, 3, 3, 3) in shapes  # conv2 reads 5 channels, conv1 makes 5
    assert (5,) in shapes and (8,) not in shapes  # BN affine shrunk; conv2 bias is 5 as before
    params = [name for name, _ in model.named_parameters()]
    assert len(params) == 6
    channels_bytes = 4 * (3 * 27 + 3 + 3 * 4 + 5 * 3 * 9)  # conv1 rows+bias, BN's 4 vectors, conv2 columns
    unread = 8 if method == "export" else 0  # export's graph never reads BN's num_batches_tracked
    assert record.details["bytes_saved"] == channels_bytes + unread
    assert_matches_eager(model, graph, 2, 3, 8, 8, tolerance=FLOAT_TOLERANCE)


def test_zero_rows_of_a_linear_shrink_the_next_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    with torch.no_grad():
        model[0].weight[[0, 7]] = 0
        model[0].bias[[0, 7]] = 0
    graph, record = run_pass(captured(model, 4, 6), "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE)
    assert record.details["removed_channels"] == ["_0: 2 of 10 channels"]
    assert graph.module.get_submodule("0").out_features == 8 and graph.module.get_submodule("2").in_features == 8
    assert record.details["bytes_saved"] == 4 * (2 * 6 + 2 + 3 * 2)
    assert_matches_eager(model, graph, 5, 6, tolerance=FLOAT_TOLERANCE)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_constant_channels_fold_into_the_next_linear_bias(method: str) -> None:
    """Pruned rows whose bias is not zero reach fc2 as constants: fc2's bias absorbs them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), randomized_bn(10, dims=1), nn.GELU(), nn.Linear(10, 3)).eval()
    with torch.no_grad():
        model[0].weight[[2, 5, 9]] = 0  # bias and BN of these rows stay: they output a nonzero constant
    graph, record = run_pass(captured(model, 4, 6, method=method), "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE)
    assert "3 of 10 channels" in record.details["removed_channels"][0]
    shapes = sorted(tuple(p.shape) for p in graph.module.parameters())
    assert (7, 6) in shapes and (3, 7) in shapes and (10,) not in shapes
    assert_matches_eager(model, graph, 5, 6, tolerance=FLOAT_TOLERANCE)


def test_constant_channels_stay_before_a_padded_conv() -> None:
    """With padding the border reads zeros, not the constant: only exactly-zero channels may go."""
    model = pruned_conv_net()
    with torch.no_grad():
        model[1].bias[4] = 0.5  # channel 4 leaves the BN as 0.5, conv2 has padding=1
    graph, record = run_pass(captured(model, 2, 3, 8, 8), "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE)
    assert "2 of 8 channels" in record.details["removed_channels"][0]
    assert_matches_eager(model, graph, 2, 3, 8, 8, tolerance=FLOAT_TOLERANCE)


def test_constant_channels_fold_into_an_unpadded_conv() -> None:
    model = pruned_conv_net()
    model[3].padding = (0, 0)
    with torch.no_grad():
        model[1].bias[4] = 0.5
    graph, record = run_pass(captured(model, 2, 3, 8, 8), "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE)
    assert "3 of 8 channels" in record.details["removed_channels"][0]
    assert_matches_eager(model, graph, 2, 3, 8, 8, tolerance=FLOAT_TOLERANCE)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_pruned_cnn_channels_go_through_pooling_and_flatten(method: str) -> None:
    """DigitsCNN: conv2 -> BN -> ReLU -> max-pool -> flatten -> fc; conv1 -> ... -> pool -> conv2 (padded)."""
    from samples.cnn import digits_cnn
    from samples.digits import load_digits_28

    model = digits_cnn()
    with torch.no_grad():
        model.conv2.weight[[3, 10, 20]] = 0  # BN turns them into constants; fc's bias absorbs them
        model.conv1.weight[[5]] = 0
        model.bn1.bias[5], model.bn1.running_mean[5] = -1.0, 0.0  # ReLU(-1) = 0: exactly zero into conv2
    x, _ = load_digits_28("test")
    graph = capture(model, x[:8], method=method)
    graph, record = run_pass(graph, "eliminate_dead_weights", tolerance=FLOAT_TOLERANCE)
    assert sorted(record.details["removed_channels"]) == sorted(
        [
            f"{'conv1' if method == 'symbolic_trace' else 'conv2d'}: 1 of 16 channels",
            f"{'conv2' if method == 'symbolic_trace' else 'conv2d_1'}: 3 of 32 channels",
        ]
    )
    fc_weight = next(p for name, p in graph.module.named_parameters() if p.dim() == 2)
    assert fc_weight.shape == (10, 29 * 7 * 7)
    with torch.no_grad():
        assert relative_error(model(x), graph(x)) <= FLOAT_TOLERANCE  # on the real test set
