"""Dynamic int8 quantization: int8 weights, activations quantized at run time from their own range.

Needs no calibration data, which is why it is the fallback for Linear-heavy models (MLPs,
transformers) when none is given. Each linear reads its input through ``fake_quantize_dynamic``
(uint8 affine, scale and zero point measured on the tensor each run) and its weight through
``dequantize_per_channel`` of an int8 buffer. Convolutions are left in float by default: their
activations are large and a per-run min/max over them costs more than it saves.
"""

from __future__ import annotations

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, register_pass
from graphopt.passes.quant_plan import QuantizeOptions, apply, plan


@register_pass("insert_dynamic_qdq", reports=("quantized", "skipped"), tolerance=0.1)
def insert_dynamic_qdq(
    graph: Graph,
    *,
    per_channel: bool = True,
    kinds: tuple[str, ...] = ("linear", "matmul"),
    skip: tuple[str, ...] = (),
) -> PassResult:
    """Dynamic int8 quantization of linear layers: int8 weights, activations scaled at run time."""
    quant_plan = plan(graph, QuantizeOptions(mode="dynamic", per_channel=per_channel, skip=skip, kinds=kinds))
    quantized = apply(graph, quant_plan)
    return PassResult(graph, changed=bool(quantized), details={"quantized": quantized, "skipped": quant_plan.skipped})
