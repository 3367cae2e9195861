"""An exported int8 graph in ONNX Runtime's QDQ conventions, so ONNX Runtime runs it with its integer kernels.

graphopt's int8 graph quantizes the inputs of each Conv/Gemm (QuantizeLinear -> DequantizeLinear of
the activation, DequantizeLinear of the int8 weight) and keeps the bias and what follows (ReLU,
max pooling) in float. ONNX Runtime fuses a Conv/Gemm into QLinearConv/QGemm only when its bias is an
int32 tensor dequantized with scale s_in * s_w and a QuantizeLinear follows it directly, as its
quantizer writes them. Two rewrites of the ONNX file give that shape:

- a 2-d MatMul followed by the Add of a constant bias (how a Linear exports after graphopt's passes)
  becomes the Gemm it is;
- a MatMul of more dimensions (a Linear on (batch, seq, hidden)) keeps its bias Add, with the bias
  written as a [1, n] row: the same sums, but ONNX Runtime's MatMulAddFusion, which would otherwise
  make the pair Reshape -> float Gemm -> Reshape out of reach of its QDQ fusion, takes only a vector
  bias there, so the MatMul reads its two DequantizeLinear nodes directly and runs as
  MatMulIntegerToFloat (int8 x int8 -> int32, times s_in * s_w: graphopt's own arithmetic);
- the int8 weight's DequantizeLinear gets its zero point (zeros) written out;
- int8 activations (QuantizeLinear -> DequantizeLinear, zero point z) become uint8 with z + 128, the
  same values in the type ONNX Runtime's x86 integer kernels take;
- the float bias b becomes DequantizeLinear(round(b / (s_in * s_w)) as int32, s_in * s_w): it moves by
  at most half of s_in * s_w, far below one step of the output (s_out);
- where the Conv/Gemm's output reaches a QuantizeLinear(s, z) through ReLU, Clip, MaxPool, Flatten
  or Reshape only (each with one consumer), a QuantizeLinear(s, z) -> DequantizeLinear(s, z) pair is put
  right after it. That changes nothing the graph computes: those ops commute with the
  (non-decreasing) rounding to the grid, and rounding twice to the same grid is rounding once, so the
  QuantizeLinear further on sees the same integers;
- the same for an Add of two dequantized tensors (a residual add, whose inputs graphopt's plan quantizes
  when a quantized conv feeds it: passes/quant_residual.py), so ONNX Runtime runs it as QLinearAdd, and
  for a GlobalAveragePool of a dequantized tensor (whose input graphopt's plan quantizes when such a
  conv or add computes it: passes/quant_pool.py), which it runs as QLinearGlobalAveragePool.

A residual add's inputs arrive quantized already, so the Conv computing one is followed directly by its
QuantizeLinear, and ONNX Runtime runs it as QLinearConv with no rewrite of its output; the Conv or Add
before a global pool gets the pool input's pair through its ReLU/Clip as above.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ops between a Conv/Gemm and the next QuantizeLinear that commute with rounding to the int8 grid: a
#: clamp to constants (ReLU, ReLU6's Clip), a max, or moving values (for f such as sigmoid, f(round(x)) is
#: not round(f(x)), so they end the search)
_MONOTONE = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape")


def to_onnxruntime_qdq(model: Any) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place); returns how many Conv/Gemm/MatMul/Add nodes it changed."""
    from onnx import numpy_helper

    graph = model.graph
    if not any(node.op_type == "DequantizeLinear" for node in graph.node):
        return 0  # a float graph: nothing to rewrite (and no weights to read, no shapes to infer)
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    _matmul_add_as_gemm(model, producer, consumers, values)
    changed = _row_biases(graph, producer, consumers, values)
    for node in list(graph.node):
        if node.op_type in ("Add", "GlobalAveragePool") and _reads_dequantized(node, producer, inputs=1):
            changed += _quantized_output(graph, node, consumers, values)
        if node.op_type not in ("Conv", "Gemm"):
            continue
        scales = _input_scales(node, producer, values)
        if scales is None:
            continue
        _explicit_zero_point(graph, node, producer, values)
        touched = _int32_bias(graph, node, scales, values)
        touched = _quantized_output(graph, node, consumers, values) or touched
        changed += touched
    _uint8_activations(graph, consumers, values)
    used = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]  # the float biases replaced
    for tensor in unused:
        graph.initializer.remove(tensor)
    # and the int8 zero points the uint8 ones replaced: ONNX Runtime warned once per dropped Constant
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)
    return changed


def _reads_dequantized(node: Any, producer: dict[str, Any], inputs: int = 2) -> bool:
    """Whether ``node`` has ``inputs`` or more inputs, each a DequantizeLinear's output (of an activation or
    a constant)."""
    return len(node.input) >= inputs and all(
        getattr(producer.get(name), "op_type", "") == "DequantizeLinear" for name in node.input
    )


def _uint8_activations(graph: Any, consumers: dict[str, list[Any]], values: dict[str, np.ndarray]) -> None:
    """Each int8 activation QuantizeLinear (zero point z) and the DequantizeLinear nodes reading it as uint8
    with zero point z + 128: the same values (q + 128 - (z + 128) = q - z), in the type ONNX Runtime's x86
    integer kernels take (it converts int8 pairs itself only where one QuantizeLinear feeds one layer)."""
    from onnx import numpy_helper

    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[0] in values:
            continue
        zero = values.get(node.input[2])
        readers = consumers.get(node.output[0], [])
        if zero is None or zero.dtype != np.int8 or not readers:
            continue
        if any(r.op_type != "DequantizeLinear" or len(r.input) < 3 for r in readers):
            continue
        if any(not np.array_equal(values.get(r.input[2], np.empty(0)), zero) for r in readers):
            continue  # a reader with another zero point is left as it is
        name = f"{node.output[0]}_zero_point_uint8"
        graph.initializer.append(numpy_helper.from_array((zero.astype(np.int16) + 128).astype(np.uint8), name))
        for reader in (node, *readers):
            reader.input[2] = name


def _matmul_add_as_gemm(
    model: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], values: dict[str, np.ndarray]
) -> None:
    """MatMul(a, w) + b of dequantized a and w, a 2-d and b a constant vector, as Gemm(a, w, b), which ONNX
    Runtime quantizes (a float MatMul stays as it is)."""
    import onnx

    graph = model.graph
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in onnx.shape_inference.infer_shapes(model).graph.value_info
        if v.type.tensor_type.HasField("shape")
    }
    ranks.update({v.name: len(v.type.tensor_type.shape.dim) for v in graph.input})
    for node in list(graph.node):
        following = (
            consumers.get(node.output[0], []) if node.op_type == "MatMul" and _reads_dequantized(node, producer) else []
        )
        if len(following) != 1 or following[0].op_type != "Add" or ranks.get(node.input[0]) != 2:
            continue
        add = following[0]
        bias = next((name for name in add.input if name != node.output[0]), None)
        if bias is None or values.get(bias) is None or values[bias].ndim != 1:
            continue
        gemm = onnx.helper.make_node("Gemm", [*node.input, bias], list(add.output), name=f"{node.name}_gemm")
        at = list(graph.node).index(add)
        graph.node.remove(add)
        graph.node.insert(at, gemm)
        graph.node.remove(node)
        for name in node.input:
            consumers[name] = [gemm if c is node else c for c in consumers.get(name, [])]
        consumers[bias] = [gemm if c is add else c for c in consumers.get(bias, [])]


def _row_biases(
    graph: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], values: dict[str, np.ndarray]
) -> int:
    """The constant vector bias b of each Add after a MatMul of two dequantized tensors (one left after
    the 2-d ones became Gemm) as the row b[None, :]; returns how many."""
    from onnx import numpy_helper

    changed = 0
    for node in list(graph.node):
        following = consumers.get(node.output[0], []) if node.op_type == "MatMul" else []
        if not _reads_dequantized(node, producer) or len(following) != 1 or following[0].op_type != "Add":
            continue
        add = following[0]
        index = next((i for i, name in enumerate(add.input) if name != node.output[0]), None)
        bias = values.get(add.input[index]) if index is not None else None
        if bias is None or bias.ndim != 1:
            continue
        name = f"{add.input[index]}_row"
        if name not in values:
            values[name] = bias.reshape(1, -1)
            graph.initializer.append(numpy_helper.from_array(values[name], name))
        add.input[index] = name
        changed += 1
    return changed


def _input_scales(node: Any, producer: dict[str, Any], values: dict[str, np.ndarray]) -> np.ndarray | None:
    """s_in * s_w of a Conv/Gemm whose activation and weight are both dequantized int8 (None otherwise)."""
    activation, weight = producer.get(node.input[0]), producer.get(node.input[1])
    if activation is None or weight is None or {activation.op_type, weight.op_type} != {"DequantizeLinear"}:
        return None
    s_in, s_w = values.get(activation.input[1]), values.get(weight.input[1])
    if s_in is None or s_w is None or s_in.size != 1:
        return None
    if len(weight.input) > 2 and weight.input[2] and np.any(values.get(weight.input[2], 1) != 0):
        return None  # an asymmetric weight: ONNX Runtime's integer kernels want zero points of 0
    return (s_in.astype(np.float32).reshape(()) * s_w.astype(np.float32)).reshape(-1)


def _explicit_zero_point(graph: Any, node: Any, producer: dict[str, Any], values: dict[str, np.ndarray]) -> None:
    """The weight's DequantizeLinear given its (zero) zero point: ONNX Runtime's Gemm fusion wants it."""
    from onnx import numpy_helper

    weight = producer[node.input[1]]
    if len(weight.input) > 2 and weight.input[2]:
        return
    name = f"{weight.input[0]}_zero_point"
    graph.initializer.append(numpy_helper.from_array(np.zeros(values[weight.input[1]].shape, np.int8), name))
    weight.input.append(name)


def _int32_bias(graph: Any, node: Any, scales: np.ndarray, values: dict[str, np.ndarray]) -> bool:
    from onnx import helper, numpy_helper

    if len(node.input) < 3 or not node.input[2]:
        return False
    bias = values.get(node.input[2])
    if bias is None or bias.dtype != np.float32 or bias.ndim != 1:
        return False
    scale = np.broadcast_to(scales, bias.shape).astype(np.float32)
    quantized = np.clip(np.round(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
    name = f"{node.input[2]}_int32"
    graph.initializer.extend(
        [numpy_helper.from_array(quantized, name), numpy_helper.from_array(scale, f"{name}_scale")]
    )
    dequantize = helper.make_node(
        "DequantizeLinear", [name, f"{name}_scale"], [f"{name}_dequantized"], name=f"{name}_DequantizeLinear", axis=0
    )
    graph.node.insert(list(graph.node).index(node), dequantize)
    node.input[2] = dequantize.output[0]
    return True


def _quantized_output(graph: Any, node: Any, consumers: dict[str, list[Any]], values: dict[str, np.ndarray]) -> bool:
    from onnx import helper, numpy_helper

    current = node
    while True:
        following = consumers.get(current.output[0], [])
        if len(following) != 1:
            return False
        (current,) = following
        if current.op_type == "QuantizeLinear":
            break
        if current.op_type not in _MONOTONE:
            return False
    if current is consumers[node.output[0]][0]:
        return False  # already followed by its QuantizeLinear
    scale, zero = current.input[1], current.input[2] if len(current.input) > 2 else ""
    if values.get(scale) is None or values[scale].size != 1 or not zero or values.get(zero) is None:
        return False
    out = node.output[0]
    # the parameters as initializers: the Constant nodes that hold them come later in the graph
    parameters = [f"{out}_scale", f"{out}_zero_point"]
    graph.initializer.extend(
        numpy_helper.from_array(values[n], p) for n, p in zip((scale, zero), parameters, strict=True)
    )
    quantize = helper.make_node("QuantizeLinear", [out, *parameters], [f"{out}_q"], name=f"{node.name}_q")
    dequantize = helper.make_node("DequantizeLinear", [f"{out}_q", *parameters], [f"{out}_dq"], name=f"{node.name}_dq")
    for consumer in consumers[out]:
        for index, name in enumerate(consumer.input):
            if name == out:
                consumer.input[index] = dequantize.output[0]
    at = list(graph.node).index(node) + 1
    graph.node.insert(at, dequantize)
    graph.node.insert(at, quantize)
    return True
