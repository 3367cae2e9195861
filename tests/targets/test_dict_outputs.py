"""A model returning a dict: the artifact names its outputs by the keys and returns a dict, in order.

Issue 14: ``{"sum": a, "prod": b}`` failed the eager check (relative error 2.83) although each output
was exact: the comparison sorted the keys ("prod" first) while torch.export keeps insertion order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.numerics import flatten_outputs, relative_error


class SumAndProduct(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sum": x + y, "prod": x * y}  # not in sorted order


def test_dicts_flatten_in_insertion_order() -> None:
    first, second = np.zeros(2), np.ones(3)
    assert [a.shape for a in flatten_outputs({"b": first, "a": second})] == [(2,), (3,)]


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_dict_in_dict_out_with_the_keys_as_output_names(tmp_path, method: str) -> None:
    model = SumAndProduct().eval()
    x, y = torch.randn(2, 3), torch.randn(2, 3) + 2
    graph = graphopt.capture(model, (x, y), method=method)
    graphopt.compile(graph, None, out_dir=tmp_path / "artifact", verify=True)
    manifest = json.loads((tmp_path / "artifact" / "manifest.json").read_text())
    assert [output["name"] for output in manifest["outputs"]] == ["sum", "prod"]
    result = graphopt.load(tmp_path / "artifact")(x.numpy(), y.numpy())
    assert isinstance(result, dict) and list(result) == ["sum", "prod"]
    np.testing.assert_array_equal(result["sum"], (x + y).numpy())
    np.testing.assert_array_equal(result["prod"], (x * y).numpy())
    assert relative_error(model(x, y), result) == 0.0
