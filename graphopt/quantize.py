"""``graphopt.quantize``: int8 post-training quantization with a report of what it cost.

Static quantization (calibration data given) observes every linear/conv2d/matmul input once,
then quantizes; dynamic quantization (no data) quantizes linear weights and scales activations at
run time. The report compares the int8 graph with the float one on the calibration data: output
error, top-1 accuracy when labels are known, and weight bytes. A sensitivity analysis quantizes
one layer at a time and ranks the layers by the damage each does alone; with an accuracy budget,
the worst layers are kept in float, one by one, until the int8 model meets it.

>>> graph = graphopt.capture(mnist_mlp(), torch.randn(1, 784))
>>> int8_graph, report = graphopt.quantize(graph, x_train[:256], method="percentile", labels=y_train[:256])
>>> print(report.table())
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from graphopt.calibration import CalibrationSet, prepare
from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.metadata import info
from graphopt.numerics import relative_error
from graphopt.passes.quant_plan import QuantizeOptions, apply, plan


@dataclass
class LayerSensitivity:
    """The damage one layer does when it alone is quantized."""

    name: str
    kind: str
    output_error: float
    accuracy_drop: float | None = None
    module: str = ""  #: the user's module path ("fc3"), where the node came from one

    @property
    def label(self) -> str:
        """How a user knows the layer: its module path, and the node where that differs."""
        if self.module and self.module != self.name:
            return f"{self.module} (node {self.name})"
        return self.name


@dataclass
class QuantizationReport:
    """What quantization did and cost. Accuracies are in percent; errors relative (see numerics)."""

    mode: str
    method: str | None
    quantized: list[str]
    skipped: list[str]
    kept_float: list[str]
    float_bytes: int
    quantized_bytes: int
    output_error: float
    samples: int
    float_accuracy: float | None = None
    quantized_accuracy: float | None = None
    sensitivity: list[LayerSensitivity] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.float_bytes / max(self.quantized_bytes, 1)

    @property
    def accuracy_drop(self) -> float | None:
        if self.float_accuracy is None or self.quantized_accuracy is None:
            return None
        return self.float_accuracy - self.quantized_accuracy

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.update(size_ratio=self.size_ratio, accuracy_drop=self.accuracy_drop)
        return result

    def table(self) -> Any:
        """A rich Table: float vs int8 side by side, then the sensitivity ranking if computed."""
        from rich.table import Table

        from graphopt.report import human_bytes

        title = f"int8 quantization ({self.mode}{', ' + self.method if self.method else ''}, {self.samples} samples)"
        table = Table(title=title)
        for column in ("", "float32", "int8"):
            table.add_column(column, justify="right" if column else "left")
        table.add_row(
            "weight bytes",
            human_bytes(self.float_bytes),
            f"{human_bytes(self.quantized_bytes)} ({self.size_ratio:.2f}x smaller)",
        )
        if self.float_accuracy is not None and self.quantized_accuracy is not None:
            table.add_row(
                "top-1 accuracy",
                f"{self.float_accuracy:.2f}%",
                f"{self.quantized_accuracy:.2f}% ({self.quantized_accuracy - self.float_accuracy:+.2f} pts)",
            )
        table.add_row("output error (relative)", "0", f"{self.output_error:.3g}")
        table.add_row("layers int8 / float", "", f"{len(self.quantized)} / {len(self.skipped) + len(self.kept_float)}")
        for layer in self.sensitivity:
            drop = f", accuracy {0.0 - layer.accuracy_drop:+.2f} pts" if layer.accuracy_drop is not None else ""
            kept = " [kept float]" if layer.name in self.kept_float else ""
            table.add_row(f"  alone: {layer.label}, {layer.kind}{kept}", "", f"error {layer.output_error:.3g}{drop}")
        return table


def _outputs(graph: Graph, calibration: CalibrationSet) -> torch.Tensor:
    with torch.no_grad():
        results = [graph.module(*batch) for batch in calibration.batches]
    first = results[0]
    if isinstance(first, (tuple, list)):
        return torch.cat([r[0] for r in results])
    return torch.cat(results)


def _accuracy(outputs: torch.Tensor, labels: torch.Tensor | None) -> float | None:
    if labels is None:
        return None
    return float((outputs.argmax(dim=-1) == labels.reshape(-1)).float().mean()) * 100


class _Quantizer:
    """Quantizes copies of one graph from one plan (observation done once), so trying subsets is cheap."""

    def __init__(self, graph: Graph, calibration: CalibrationSet, options: QuantizeOptions) -> None:
        self.graph, self.calibration = graph, calibration
        self.plan = plan(graph, options, calibration.batches if options.mode == "static" else None)
        self.reference = _outputs(graph, calibration)

    def build(self, keep_float: set[str]) -> Graph:
        quantized = self.graph.copy()
        apply(quantized, self.plan, keep_float=keep_float)
        quantized.refresh()
        return quantized

    def measure(self, graph: Graph) -> tuple[float, float | None]:
        outputs = _outputs(graph, self.calibration)
        return relative_error(self.reference, outputs), _accuracy(outputs, self.calibration.labels)

    def sensitivity(self) -> list[LayerSensitivity]:
        """Each layer quantized alone, worst first (by accuracy drop when labels exist, then error)."""
        names = set(self.plan.layers)
        float_accuracy = _accuracy(self.reference, self.calibration.labels)
        ranking = []
        for site in self.plan.sites:
            error, accuracy = self.measure(self.build(names - {site.node.name}))
            drop = None if accuracy is None or float_accuracy is None else float_accuracy - accuracy
            module = info(site.node).module_path
            ranking.append(LayerSensitivity(site.node.name, site.kind, error, drop, module=module))
        return sorted(ranking, key=lambda s: (-(s.accuracy_drop or 0.0), -s.output_error))


def quantize(
    ir: Graph,
    calibration_data: Any = None,
    options: QuantizeOptions | None = None,
    *,
    labels: Any = None,
    sensitivity: bool = False,
    max_accuracy_drop: float | None = None,
    **option_values: Any,
) -> tuple[Graph, QuantizationReport]:
    """Quantize ``ir`` to int8; returns the new graph (``ir`` is untouched) and a report.

    How to quantize is a ``QuantizeOptions`` (or its fields as keywords: ``method="mse"``,
    ``skip=("fc3",)``, ...). ``max_accuracy_drop`` (percentage points, needs labels) keeps the
    most sensitive layers in float until int8 accuracy is within that much of float accuracy.

    >>> int8_graph, report = graphopt.quantize(graph, calibration_batches, method="mse")
    >>> report.size_ratio, report.output_error
    """
    if not isinstance(ir, Graph):
        raise InputError(f"quantize takes a graphopt.Graph (use graphopt.capture first), got {type(ir).__name__}")
    options = quantize_options(options, **option_values).resolve(has_data=calibration_data is not None)
    given_bytes = ir.stats().param_bytes
    ir = _with_batch_norms_folded(ir)
    if calibration_data is not None:
        calibration = prepare(calibration_data, ir.example_inputs, labels)
    else:  # dynamic without data: measure on the example inputs
        calibration = prepare(
            ir.example_inputs[0] if len(ir.example_inputs) == 1 else [ir.example_inputs], ir.example_inputs, labels
        )
    if max_accuracy_drop is not None and calibration.labels is None:
        raise InputError("max_accuracy_drop needs labels for the calibration data (labels=..., --labels)")
    quantizer = _Quantizer(ir, calibration, options)
    ranking = quantizer.sensitivity() if sensitivity or max_accuracy_drop is not None else []
    keep_float: list[str] = []
    quantized = quantizer.build(set())
    error, accuracy = quantizer.measure(quantized)
    float_accuracy = _accuracy(quantizer.reference, calibration.labels)
    if max_accuracy_drop is not None:
        for layer in ranking:
            if float_accuracy - accuracy <= max_accuracy_drop:  # type: ignore[operator]
                break
            keep_float.append(layer.name)
            quantized = quantizer.build(set(keep_float))
            error, accuracy = quantizer.measure(quantized)
    report = QuantizationReport(
        mode=options.mode,
        method=options.method if options.mode == "static" else None,
        quantized=[name for name in quantizer.plan.layers if name not in keep_float],
        skipped=quantizer.plan.skipped,
        kept_float=keep_float,
        float_bytes=given_bytes,
        quantized_bytes=quantized.stats().param_bytes,
        output_error=error,
        samples=calibration.samples,
        float_accuracy=float_accuracy,
        quantized_accuracy=accuracy,
        sensitivity=ranking,
    )
    quantized.notes.append(f"int8 {options.mode} quantization: {len(report.quantized)} layer(s) int8")
    return quantized, report


def _with_batch_norms_folded(ir: Graph) -> Graph:
    """``ir`` with each BatchNorm folded into the conv or linear before it (``fuse_conv_bn``), as
    PyTorch's and ONNX Runtime's quantizers fold them first: the int8 weights are then the folded
    ones, and no float BatchNorm is left between an int8 conv and its consumer (exported to ONNX
    Runtime, such a conv stayed a float Conv). A graph without BatchNorm is returned as it is."""
    if not any(info(node).kind == "batch_norm" for node in ir.module.graph.nodes):
        return ir
    from graphopt.pass_manager import optimize  # the pass manager imports this module's options

    folded, _ = optimize(ir, ["fuse_conv_bn"])
    return folded


def quantize_options(options: QuantizeOptions | None = None, **values: Any) -> QuantizeOptions:
    """``options`` with ``values`` replacing its fields; an unknown name is refused with the nearest one."""
    known = [f.name for f in fields(QuantizeOptions)]
    for name in values:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (options: {', '.join(known)})"
            raise InputError(f"unknown quantization option '{name}'{hint}")
    return replace(options or QuantizeOptions(), **values)
