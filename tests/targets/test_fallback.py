"""``fallback="torch"`` / ``--fallback torch``: what TVM cannot lower runs in PyTorch between segments.

Tolerance: the conftest's float32 bound (1e-5 relative) on every output, and the same number of
kept boxes. The TVM segment computes the scores and the IoU matrix with float32 sums in another
order than PyTorch, a few ulps off; a kept box could only differ if a score or an IoU lay within
that distance of its threshold (1e-7 here), so the test asserts a margin of 1e-5 around both thresholds on its
inputs: a count that differs would then be a real bug, not rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import graphopt
from graphopt.capture import capture
from graphopt.cli import main
from graphopt.errors import ArtifactError, InputError, UnsupportedOpError
from graphopt.targets.lowering.lower import export_graph
from graphopt.targets.pipeline.partition import TORCH, TVM, fallback_nodes, split
from samples.detection import box_iou, tiny_detector
from tests.targets.conftest import assert_matches_eager

ROOT = Path(__file__).resolve().parents[2]


class ErfinvBetweenLinears(nn.Module):
    """``erfinv`` has no TVM converter: the graph splits into TVM, PyTorch, TVM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.last = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.special.erfinv(torch.tanh(self.first(x)) * 0.9))


class MaskedSumThenLinear(nn.Module):
    """A boolean mask (data-dependent), a sum that makes the shape static again (TVM), then the masked
    rows scaled by that result: PyTorch, TVM, PyTorch, with the masked rows crossing the TVM segment."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = x[x[:, 0] > 0]
        scale = self.linear(kept.sum(0, keepdim=True)).relu()
        return scale, kept * scale


def rows(seed: int) -> torch.Tensor:
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))


def image(seed: int) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def threshold_margin(model: nn.Module, x: torch.Tensor) -> float:
    """How close any score or IoU comes to the threshold it is compared with."""
    with torch.no_grad():
        boxes, scores = model.candidates(x)
    iou = box_iou(boxes).triu(diagonal=1).max(dim=0).values
    return min((iou - model.iou_threshold).abs().min().item(), (scores - model.score_threshold).abs().min().item())


def test_the_partition_puts_unsupported_ops_in_torch_between_tvm_segments() -> None:
    graph = capture(ErfinvBetweenLinears().eval(), (torch.randn(2, 8),))
    module = export_graph(graph).module()
    found = fallback_nodes(graph, module)
    assert [(n.node, n.op, n.reason) for n in found.values() if n] == [
        ("special_erfinv", "aten.erfinv.default", "no TVM converter")
    ]
    _, kinds = split(module, set(found))
    assert list(kinds.values()) == [TVM, TORCH, TVM]


def test_segments_alternate_and_a_weight_is_folded_where_it_is_used() -> None:
    graph = capture(MaskedSumThenLinear().eval(), (rows(0),))
    module = export_graph(graph).module()
    outer, kinds = split(module, set(fallback_nodes(graph, module)))
    assert list(kinds.values()) == [TVM, TORCH, TVM, TORCH]
    calls = {str(n.target): len(n.args) for n in outer.graph.nodes if n.op == "call_module"}
    assert calls["submod_2"] == 1  # the summed rows only: the linear's transposed weight is inside


def test_data_dependent_rows_cross_a_tvm_segment_and_match(tmp_path) -> None:
    model = MaskedSumThenLinear().eval()
    graphopt.compile(model, (rows(0),), out_dir=tmp_path / "masked", fallback="torch")
    loaded = graphopt.load(tmp_path / "masked")
    assert loaded.manifest.outputs[1].shape == ("?", 4)
    kept = set()
    for seed in range(1, 5):
        kept.add(loaded(rows(seed).numpy())[1].shape[0])
        assert_matches_eager(model, loaded, rows(seed))
    assert len(kept) > 1


def test_a_count_of_one_in_the_example_does_not_fix_the_count() -> None:
    """torch.export would specialize a size of 1 in the example; a data-dependent one stays free."""
    model, example = MaskedSumThenLinear().eval(), rows(0)
    example[:, 0] = -1.0
    example[3, 0] = 1.0  # the mask keeps exactly one row
    compiled = graphopt.compile(model, (example,), fallback="torch")
    for seed in range(1, 4):
        assert compiled(rows(seed).numpy())[1].shape[0] != 1
        assert_matches_eager(model, compiled, rows(seed))


def test_an_op_without_a_tvm_converter_falls_back_and_matches(tmp_path) -> None:
    model, x = ErfinvBetweenLinears().eval(), torch.randn(2, 8)
    with pytest.raises(UnsupportedOpError, match=r"aten\.erfinv\.default at node 'special_erfinv' \(.*test_fallback"):
        graphopt.compile(model, (x,), out_dir=tmp_path / "plain")  # today's behaviour without the option
    compiled = graphopt.compile(model, (x,), out_dir=tmp_path / "erfinv", fallback="torch")
    fallback = compiled.manifest.fallback
    assert fallback["requires"].startswith("torch ")
    assert [s["kind"] for s in fallback["segments"]] == ["tvm", "torch", "tvm"]
    assert [n["node"] for n in fallback["nodes"]] == ["special_erfinv"]
    assert "test_fallback.py" in fallback["nodes"][0]["source"]
    assert any("1 node(s) run in PyTorch" in note for note in compiled.report.notes)
    loaded = graphopt.load(tmp_path / "erfinv")
    for seed in range(3):
        assert_matches_eager(model, loaded, torch.randn(2, 8, generator=torch.Generator().manual_seed(seed)))
    program = tmp_path / "erfinv" / "submod_1.pt2"  # the PyTorch segment is hashed like the libraries
    program.write_bytes(program.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"submod_1\.pt2 does not match its manifest"):
        graphopt.load(tmp_path / "erfinv")


def test_a_node_whose_tvm_converter_fails_falls_back_too(monkeypatch) -> None:
    """The frontend may know an op and still fail on one use of it (raise inside its converter):
    that node joins the PyTorch segments and the split is made again."""
    from graphopt.targets.lowering import lower

    def failing_converter(node, importer):
        raise ValueError("this use of erfinv is not handled")

    monkeypatch.setitem(lower.CUSTOM_CONVERTERS, "erfinv.default", failing_converter)
    model, x = ErfinvBetweenLinears().eval(), torch.randn(2, 8)
    compiled = graphopt.compile(model, (x,), fallback="torch")
    fallback = compiled.manifest.fallback
    assert [(n["node"], n["reason"]) for n in fallback["nodes"]] == [("special_erfinv", "TVM converter failed")]
    assert [s["kind"] for s in fallback["segments"]] == ["tvm", "torch", "tvm"]
    assert_matches_eager(model, compiled, torch.randn(2, 8, generator=torch.Generator().manual_seed(3)))

    class MaskedThenErfinv(nn.Module):  # split already (the mask): the failure is in a TVM segment
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[x[:, 0] > 0], torch.special.erfinv(torch.tanh(x) * 0.9) * 2

    masked = MaskedThenErfinv().eval()
    compiled = graphopt.compile(masked, (rows(0),), fallback="torch")
    reasons = {n["op"]: n["reason"] for n in compiled.manifest.fallback["nodes"]}
    assert reasons["aten.erfinv.default"] == "TVM converter failed"
    assert_matches_eager(masked, compiled, rows(1))


def test_bad_fallback_requests_are_one_line_errors() -> None:
    x = torch.randn(2, 8)
    with pytest.raises(InputError, match="expected 'torch'"):
        graphopt.compile(ErfinvBetweenLinears().eval(), (x,), fallback="tvm")
    with pytest.raises(InputError, match="does not combine with dynamic_batch"):
        graphopt.compile(ErfinvBetweenLinears().eval(), (x,), fallback="torch", dynamic_batch=True)


def test_cli_fallback_compiles_a_detector_with_nms_end_to_end(capsys, tmp_path) -> None:
    out_dir = tmp_path / "detector"
    argv = ["compile", f"{ROOT}/samples/detection.py:tiny_detector", "--input-shape", "1x3x32x32"]
    status = main([*argv, "--fallback", "torch", "-o", str(out_dir), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)
    assert result["eager_check"]["ok"]
    note = next(n for n in result["notes"] if n.startswith("fallback torch"))
    assert "needs torch" in note and "aten.nonzero.default" in note and "detection.py:" in note
    loaded = graphopt.load(out_dir)
    fallback = loaded.manifest.fallback
    reasons = {n["op"]: n["reason"] for n in fallback["nodes"]}
    assert reasons["aten.nonzero.default"] == "no TVM converter"
    assert reasons["aten.index_select.default"] == "data-dependent shape"
    assert loaded.manifest.outputs[0].shape == ("?", 4)
    # The backbone, head, sort and IoU matrix are compiled; only the selection runs in PyTorch.
    assert [s["kind"] for s in fallback["segments"]] == ["tvm", "torch"]
    model, counts = tiny_detector(), set()
    for seed in range(4):
        x = image(seed)
        assert threshold_margin(model, x) > 1e-5
        boxes, scores = loaded(x.numpy())
        with torch.no_grad():
            expected_boxes, _ = model(x)
        assert boxes.shape == tuple(expected_boxes.shape) and scores.shape == (boxes.shape[0],)
        counts.add(boxes.shape[0])
        assert_matches_eager(model, loaded, x)
    assert len(counts) > 1 and min(counts) > 0 and max(counts) < 64  # the count depends on the data


def test_without_fallback_the_detector_is_refused_naming_its_line(capsys, tmp_path) -> None:
    argv = ["compile", f"{ROOT}/samples/detection.py:tiny_detector", "--input-shape", "1x3x32x32"]
    status = main([*argv, "-o", str(tmp_path / "never")])
    _, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1
    assert "aten.nonzero.default at node 'nonzero'" in err and "detection.py:" in err
    assert "--fallback torch (fallback='torch') runs them in PyTorch" in err
    assert not (tmp_path / "never").exists()


def test_a_dict_output_model_with_fallback_keeps_its_keys(tmp_path) -> None:
    class Named(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"inverse": torch.special.erfinv(torch.tanh(x) * 0.5), "double": x * 2}

    x = torch.randn(3, 4)
    compiled = graphopt.compile(Named().eval(), (x,), fallback="torch")
    result = compiled(x.numpy())
    assert list(result) == ["inverse", "double"]
    assert_matches_eager(Named().eval(), compiled, x)
