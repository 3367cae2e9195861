"""remove_identities drops ops that return their input unchanged (bit-identical results)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.passes.models import assert_matches_eager, captured, kinds, run_pass


class Identities(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop, self.same = nn.Dropout(0.5), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.same(self.drop(x)).contiguous()
        y = F.dropout(y, 0.2, training=False).reshape(2, 6).float()
        return torch.relu(y.view(3, 4))  # a real reshape stays


def test_identities_are_removed_in_symbolic_trace_spelling() -> None:
    model = Identities().eval()
    graph, record = run_pass(captured(model, 2, 6), "remove_identities")
    assert graph.text() == "x = input\nview = reshape(x, 3, 4)\nrelu = relu(view)\nreturn relu"
    assert record.details["removed"] == 6
    assert_matches_eager(model, graph, 2, 6, tolerance=0.0)


def test_identities_are_removed_in_export_spelling() -> None:
    model = Identities().eval()
    graph, _ = run_pass(captured(model, 2, 6, method="export"), "remove_identities")
    assert kinds(graph) == ["reshape", "relu"]
    assert_matches_eager(model, graph, 2, 6, tolerance=0.0)


def test_training_dropout_and_real_casts_stay() -> None:
    class Keeps(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, 0.5, training=True).double()

    from graphopt.passes.remove_identities import remove_identities

    result = remove_identities(captured(Keeps(), 2, 3).copy())  # random: cannot verify by running
    assert not result.changed
    assert kinds(result.graph) == ["dropout", "double"]


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: the view after the transpose needs the copy contiguous makes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        shuffled = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return shuffled + x.contiguous()  # x is row-major already: this contiguous is a no-op


def test_contiguous_stays_where_the_tensor_is_strided_and_goes_where_it_is_not() -> None:
    model = ChannelShuffle().eval()
    for method, removed in (("symbolic_trace", 1), ("export", 0)):  # export drops the no-op one itself
        graph, record = run_pass(captured(model, 2, 4, 3, 3, method=method), "remove_identities")
        assert record.details["removed"] == removed, method
        assert kinds(graph).count("contiguous") == 1, method
        assert_matches_eager(model, graph, 2, 4, 3, 3, tolerance=0.0)


class StridedClone(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        copy = x.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        return copy.view(x.shape[0], -1) + x.clone().view(x.shape[0], -1)


def test_a_clone_that_makes_a_strided_tensor_contiguous_stays() -> None:
    model = StridedClone().eval()
    graph, record = run_pass(captured(model, 2, 3, 3), "remove_identities")
    assert record.details["removed"] == 1  # the plain clone of the row-major x
    assert_matches_eager(model, graph, 2, 3, 3, tolerance=0.0)


def test_a_transposed_batch_one_tensor_counts_as_strided() -> None:
    from graphopt.metadata import is_row_major

    transposed = torch.randn(4, 1, 3).transpose(0, 1)  # is_contiguous() says True: size-1 stride ignored
    assert transposed.is_contiguous() and not is_row_major(transposed)
    assert is_row_major(torch.randn(1, 4, 3)) and not is_row_major(torch.randn(3, 4).t())
