"""ONNX's ai.onnx.preview.training optimizers (Adagrad, Adam, Momentum): one update step of n tensors.

Each node takes the learning rate R and the step count T, then n tensors X, n gradients G and the n
optimizer states of each kind, and returns the n new tensors followed by the new states, as the onnx
reference computes them (in float64, cast back to each tensor's dtype). The reference's branches on T
(no bias correction, or full momentum, at the first step) are a ``where`` on T, so T stays an input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from graphopt.onnx.ml import dotless_module_names
from graphopt.onnx.ops import Function

TRAINING_DOMAIN = "ai.onnx.preview.training"


def _groups(data: tuple[torch.Tensor, ...], kinds: int) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    """(R, T, [[X_i, G_i, state_i...] for each of the n tensors]) as float64."""
    rate, step, rest = data[0].to(torch.float64), data[1].to(torch.float64), data[2:]
    n = len(rest) // kinds
    return rate, step, [[rest[k * n + i].to(torch.float64) for k in range(kinds)] for i in range(n)]


def _ordered(results: Sequence[tuple[torch.Tensor, ...]], like: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The n results' first outputs, then their second, ...; each in the dtype of its input."""
    n = len(results)
    return tuple(
        results[i][k].to(like[2 + (0 if k == 0 else k + 1) * n + i].dtype)
        for k in range(len(results[0]))
        for i in range(n)
    )


def adagrad(*data: torch.Tensor, decay_factor: float, epsilon: float, norm_coefficient: float) -> Any:
    rate, step, groups = _groups(data, 3)
    adjusted = rate / (1 + step * decay_factor)
    results = []
    for x, g, h in groups:
        regularized = norm_coefficient * x + g
        h_new = h + regularized * regularized
        results.append((x - adjusted * regularized / (torch.sqrt(h_new) + epsilon), h_new))
    return _ordered(results, data)


def adam(
    *data: torch.Tensor,
    alpha: float,
    beta: float,
    epsilon: float,
    norm_coefficient: float,
    norm_coefficient_post: float,
) -> Any:
    rate, step, groups = _groups(data, 4)
    # bias correction from the first step on: sqrt(1 - beta^T) / (1 - alpha^T); T = 0 leaves R as it is
    power_alpha = torch.exp(step * torch.log(torch.tensor(alpha, dtype=torch.float64)))
    power_beta = torch.exp(step * torch.log(torch.tensor(beta, dtype=torch.float64)))
    adjusted = torch.where(step > 0, rate * torch.sqrt(1 - power_beta) / (1 - power_alpha), rate)
    results = []
    for x, g, v, h in groups:
        regularized = norm_coefficient * x + g
        v_new = alpha * v + (1 - alpha) * regularized
        h_new = beta * h + (1 - beta) * (regularized * regularized)
        x_new = x - adjusted * (v_new / (torch.sqrt(h_new) + epsilon))
        results.append(((1 - norm_coefficient_post) * x_new, v_new, h_new))
    return _ordered(results, data)


def momentum(*data: torch.Tensor, alpha: float, beta: float, norm_coefficient: float, nesterov: bool) -> Any:
    rate, step, groups = _groups(data, 3)
    gradient_weight = torch.where(
        step > 0, torch.tensor(beta, dtype=torch.float64), torch.ones((), dtype=torch.float64)
    )
    results = []
    for x, g, v in groups:
        regularized = norm_coefficient * x + g
        v_new = alpha * v + gradient_weight * regularized
        direction = regularized + alpha * v_new if nesterov else v_new
        results.append((x - rate * direction, v_new))
    return _ordered(results, data)


def register() -> None:
    """Register the training-domain converters in onnx2torch's registry."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    dotless_module_names()

    def result(module: Any, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def floats_converter(function: Any, op: str) -> Any:
        """A converter of ``function`` whose keyword options are the node's float attributes, the
        schema's defaults for those it leaves out."""
        import onnx

        schema = onnx.defs.get_schema(op, 1, TRAINING_DOMAIN)
        defaults = {name: float(attribute.default_value.f) for name, attribute in schema.attributes.items()}

        def convert(node: Any, graph: Any) -> Any:
            options = {name: float(node.attributes.get(name, value)) for name, value in defaults.items()}
            return result(Function(function, **options), node)

        return convert

    adagrad_converter, adam_converter = floats_converter(adagrad, "Adagrad"), floats_converter(adam, "Adam")

    def momentum_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        mode = str(a["mode"])
        if mode not in ("standard", "nesterov"):
            raise NotImplementedError(f"Momentum mode {mode!r} (ONNX defines standard and nesterov)")
        module = Function(
            momentum,
            alpha=float(a["alpha"]),
            beta=float(a["beta"]),
            norm_coefficient=float(a["norm_coefficient"]),
            nesterov=mode == "nesterov",
        )
        return result(module, node)

    for op, converter in (("Adagrad", adagrad_converter), ("Adam", adam_converter), ("Momentum", momentum_converter)):
        _CONVERTER_REGISTRY.setdefault(OperationDescription(TRAINING_DOMAIN, op, 1), converter)
