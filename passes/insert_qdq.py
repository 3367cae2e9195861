"""Static post-training int8 quantization: observe, calibrate, insert quantize/dequantize pairs.

Each linear, conv2d and matmul reads its activation inputs through ``quantize -> dequantize``
(int8 symmetric or uint8 affine, one scale per tensor, picked by the calibration method) and its
weight through ``dequantize_per_channel`` of an int8 buffer (symmetric, one scale per output
channel). The graph computes exactly what an integer kernel computes, up to float rounding of the
accumulation: ``y = (s_x * s_w[c]) * sum((q_x - z_x) * q_w) + b``, which is why the targets can
rewrite each QDQ pattern into int8 x int8 -> int32 compute with one dequantize epilogue.

Outputs of quantized ops stay float (the epilogue dequantizes), so concatenations join float
tensors and need no shared scale; the quantizer of whichever op consumes their result observes the
joined tensor and gives it one scale. A residual add that a quantized conv feeds is the exception
(``residual_adds``, on by default): both its inputs get their own calibrated pair, so that conv's
output is int8 as integer runtimes need (passes/quant_residual.py says why). An activation that
feeds several quantized ops (q, k and v projections, a conv and the add of the same block input)
is quantized once, with one scale, and shared.
"""

from __future__ import annotations

from typing import Any

from graphopt.calibration import prepare
from graphopt.ir import Graph
from graphopt.pass_api import PassResult, register_pass
from graphopt.passes.quant_plan import QuantizeOptions, apply, plan


@register_pass(
    "insert_qdq",
    requires=("calibration_data",),
    reports=("quantized", "skipped", "method", "activation", "residual_adds", "global_pools"),
    # 8-bit rounding of every weight and activation: each layer adds up to half a step (about
    # 0.4% of its range) of error, a few layers deep that stays well under 10% of the largest logit.
    tolerance=0.1,
)
def insert_qdq(
    graph: Graph,
    *,
    calibration_data: Any = None,
    method: str = "minmax",
    per_channel: bool = True,
    activation: str = "int8",
    percentile: float = 99.99,
    skip: tuple[str, ...] = (),
    residual_adds: bool = True,
    global_pools: bool = True,
) -> PassResult:
    """Static int8 quantization of linear/conv2d/matmul, calibrated on the given data."""
    options = QuantizeOptions(
        mode="static",
        method=method,
        per_channel=per_channel,
        activation=activation,
        percentile=percentile,
        skip=skip,
        residual_adds=residual_adds,
        global_pools=global_pools,
    )
    calibration = prepare(calibration_data, graph.example_inputs)
    quant_plan = plan(graph, options, calibration.batches)
    quantized = apply(graph, quant_plan)
    details = {
        "quantized": quantized,
        "skipped": quant_plan.skipped,
        "method": method,
        "activation": activation,
        "residual_adds": [add.node.name for add in quant_plan.adds if add.needed(quantized)],
        "global_pools": [pool.node.name for pool in quant_plan.pools if pool.needed(quantized)],
        "calibration_samples": calibration.samples,
    }
    return PassResult(graph, changed=bool(quantized), details=details)
