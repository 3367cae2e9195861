"""More ONNX ops onnx2torch lacks, as plain PyTorch modules with their converters (see ``graphopt.onnx.ops``).

Each follows the op's ONNX definition (the onnx reference implementation) and is checked on the
onnx package's node test cases (``benchmarks/onnx_conformance.py``, ``tests/test_onnx_ops.py``):
GridSample (torch's ``grid_sample``, which ONNX's definition follows), AffineGrid,
RotaryEmbedding, LinearAttention (the recurrent state update, every ``update_rule``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graphopt.onnx.ops import Function


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def grid_sample(x: torch.Tensor, grid: torch.Tensor, *, mode: str, padding: str, align_corners: bool) -> torch.Tensor:
    """ONNX GridSample on 4-D and 5-D inputs through torch's ``grid_sample``."""
    name = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
    return torch.nn.functional.grid_sample(x, grid, mode=name, padding_mode=padding, align_corners=align_corners)


def affine_grid(theta: torch.Tensor, size: torch.Tensor, *, align_corners: bool) -> torch.Tensor:
    shape = [int(s) for s in size.reshape(-1).tolist()]
    return torch.nn.functional.affine_grid(theta, shape, align_corners=align_corners)


def rotary_embedding(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    *,
    interleaved: bool,
    dim: int,
    num_heads: int,
) -> torch.Tensor:
    """ONNX RotaryEmbedding (opset 23): input (B, H, S, D) or (B, S, H*D)."""
    shape = x.shape
    value = x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], num_heads, -1)
    rotary = dim or value.shape[-1]
    rotate, keep = value[..., :rotary], value[..., rotary:]
    if position_ids is not None:
        cos, sin = cos[position_ids.to(torch.int64)], sin[position_ids.to(torch.int64)]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    if interleaved:
        first, second = rotate[..., 0::2], rotate[..., 1::2]
    else:
        first, second = rotate.chunk(2, dim=-1)
    real = cos * first - sin * second
    imaginary = sin * first + cos * second
    if interleaved:
        rotated = torch.stack((real, imaginary), dim=-1).reshape(rotate.shape)
    else:
        rotated = torch.cat((real, imaginary), dim=-1)
    # no empty pass-through part when every channel rotates: TVM cannot build a loop of extent 0
    result = torch.cat((rotated, keep), dim=-1) if rotary < value.shape[-1] else rotated
    return result.reshape(shape) if x.dim() == 3 else result.transpose(1, 2)


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    past_state: torch.Tensor | None = None,
    decay: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    *,
    q_heads: int,
    kv_heads: int,
    scale: float,
    rule: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX LinearAttention: the per-step state recurrence (decay gate, delta correction), in float32."""
    batch, steps, _ = query.shape
    d_k = query.shape[-1] // q_heads
    d_v = value.shape[-1] // kv_heads
    group = q_heads // kv_heads

    def heads(t: torch.Tensor, count: int) -> torch.Tensor:
        return t.reshape(batch, steps, count, -1).transpose(1, 2).to(torch.float32)

    q, k, v = heads(query, q_heads), heads(key, kv_heads), heads(value, kv_heads)
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gating:
        assert decay is not None, "LinearAttention's gated rules need decay"
        g = heads(decay, kv_heads)
    if delta:
        assert beta is not None, "LinearAttention's delta rules need beta"
        b = beta.reshape(batch, steps, beta.shape[-1], 1).transpose(1, 2).to(torch.float32)
    if past_state is not None:
        state, state_dtype = past_state.to(torch.float32), past_state.dtype
    else:
        state, state_dtype = query.new_zeros((batch, kv_heads, d_k, d_v), dtype=torch.float32), query.dtype
    factor = scale if scale else 1.0 / math.sqrt(d_k)
    outputs = []
    for i in range(steps):
        q_t, k_t, v_t = q[:, :, i], k[:, :, i], v[:, :, i]
        if gating:
            state = state * torch.exp(g[:, :, i]).unsqueeze(-1)
        if delta:
            v_t = b[:, :, i] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(group, dim=1) if group > 1 else state
        outputs.append(factor * torch.einsum("bhd,bhdm->bhm", q_t, read))
    output = torch.stack(outputs, dim=2).transpose(1, 2).reshape(batch, steps, q_heads * d_v)
    return output.to(query.dtype), state.to(state_dtype)


class LinearAttention(nn.Module):
    """Named inputs: onnx2torch passes the ones after a skipped optional input by name."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        past_state: torch.Tensor | None = None,
        decay: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
    ) -> Any:
        return linear_attention(query, key, value, past_state, decay, beta, **self.options)


def register(add: Callable[..., None], replace: Callable[..., None]) -> None:
    """Register this module's converters (``add``: where onnx2torch has none; ``replace``: over its own)."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def result(module: nn.Module, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def grid_sample_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Function(
            grid_sample,
            mode=_text(attributes.get("mode"), "linear"),
            padding=_text(attributes.get("padding_mode"), "zeros"),
            align_corners=bool(attributes.get("align_corners", 0)),
        )
        return result(module, node)

    replace("GridSample", (16,), grid_sample_converter)

    def affine_grid_converter(node: Any, graph: Any) -> Any:
        return result(Function(affine_grid, align_corners=bool(node.attributes.get("align_corners", 0))), node)

    add("AffineGrid", (20,), affine_grid_converter)

    def rotary_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Function(
            rotary_embedding,
            interleaved=bool(attributes.get("interleaved", 0)),
            dim=int(attributes.get("rotary_embedding_dim", 0)),
            num_heads=int(attributes.get("num_heads", 0)),
        )
        return result(module, node)

    add("RotaryEmbedding", (23,), rotary_converter)

    def linear_attention_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = LinearAttention(
            q_heads=int(attributes["q_num_heads"]),
            kv_heads=int(attributes["kv_num_heads"]),
            scale=float(attributes.get("scale", 0.0)),
            rule=_text(attributes.get("update_rule"), "gated_delta"),
        )
        return result(module, node)

    add("LinearAttention", (27,), linear_attention_converter)
    register_more(add, replace)


# -- shape and indexing ops ------------------------------------------------------------------------


def flatten(x: torch.Tensor, *, axis: int) -> torch.Tensor:
    """ONNX Flatten: (prod(shape[:axis]), prod(shape[axis:])), ``axis`` in [-rank, rank]."""
    split = axis + x.dim() if axis < 0 else axis
    if split == 0:
        return x.reshape(1, -1)
    if split == x.dim():
        return x.flatten().unsqueeze(1)
    if split == 1:  # one node, as torch.flatten(x, 1) exports: a round trip keeps the graph's statistics
        return torch.flatten(x, 1)
    return torch.flatten(torch.flatten(x, 0, split - 1), 1)  # traceable: no arithmetic on sizes


def global_average_pool(x: torch.Tensor) -> torch.Tensor:
    """ONNX GlobalAveragePool: ``adaptive_avg_pool{1,2,3}d(x, 1)``, the op ``nn.AdaptiveAvgPool2d(1)``
    exports to, so an exported model imports as the graph it came from (onnx2torch wrote a ``mean``)."""
    pools = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}
    if x.dim() in pools:
        return pools[x.dim()](x, 1)
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def top_k(x: torch.Tensor, k: torch.Tensor, *, axis: int, largest: bool, ordered: bool) -> Any:
    """ONNX TopK: ties keep the lower index first (a stable sort); unsigned types sorted as int64."""
    count = int(k.reshape(-1)[0])
    value = x.to(torch.int64) if x.dtype in (torch.uint16, torch.uint32, torch.uint64) else x
    values, indices = torch.sort(value, dim=axis, descending=largest, stable=True)
    values, indices = values.narrow(axis, 0, count), indices.narrow(axis, 0, count)
    return values.to(x.dtype), indices


def compress(x: torch.Tensor, condition: torch.Tensor, *, axis: int | None) -> torch.Tensor:
    if axis is None:
        x, axis = x.reshape(-1), 0
    keep = condition.reshape(-1).to(torch.bool)[: x.shape[axis]]
    return x.index_select(axis, torch.nonzero(keep).reshape(-1))


def center_crop_pad(x: torch.Tensor, shape: torch.Tensor, *, axes: list[int] | None) -> torch.Tensor:
    """ONNX CenterCropPad: each axis cropped or zero-padded to its size, centred (the extra element
    of an odd difference at the end)."""
    rank = x.dim()
    dims = [a % rank for a in axes] if axes else list(range(rank))
    for axis, size in zip(dims, [int(s) for s in shape.reshape(-1).tolist()], strict=False):
        length = x.shape[axis]
        if size < length:
            x = x.narrow(axis, (length - size) // 2, size)
        elif size > length:
            before = (size - length) // 2
            widths = [0, 0] * (rank - 1 - axis) + [before, size - length - before]
            x = torch.nn.functional.pad(x, widths)
    return x


def col2im(
    x: torch.Tensor,
    image_shape: torch.Tensor,
    block_shape: torch.Tensor,
    *,
    dilations: list[int],
    pads: list[int],
    strides: list[int],
) -> torch.Tensor:
    """ONNX Col2Im in any number of spatial dimensions: every column element added into its image position
    by one ``scatter_reduce`` (sum) over the flattened padded image, its index computed from the static
    sizes; a compiled target builds it as one scatter (a slice-add per block offset was one op each)."""
    image = [int(s) for s in image_shape.reshape(-1).tolist()]
    block = [int(s) for s in block_shape.reshape(-1).tolist()]
    spatial = len(image)
    dilations = dilations or [1] * spatial
    strides = strides or [1] * spatial
    pads = pads or [0] * (2 * spatial)
    padded = [image[i] + pads[i] + pads[spatial + i] for i in range(spatial)]
    steps = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(spatial)]
    batch, channels = x.shape[0], x.shape[1] // math.prod(block)
    grids = np.meshgrid(*[np.arange(b) for b in block], *[np.arange(s) for s in steps], indexing="ij")
    positions = [grids[i] * dilations[i] + grids[spatial + i] * strides[i] for i in range(spatial)]
    flat = np.ravel_multi_index(positions, padded).reshape(-1)  # (block..., steps...) -> padded image offset
    index = torch.from_numpy(flat).to(x.device).expand(batch, channels, flat.size)
    columns = x.reshape(batch, channels, flat.size)
    out = x.new_zeros((batch, channels, math.prod(padded))).scatter_reduce(2, index, columns, "sum")
    out = out.reshape(batch, channels, *padded)
    crop = [slice(None), slice(None)] + [slice(pads[i], pads[i] + image[i]) for i in range(spatial)]
    return out[tuple(crop)]


def gather_nd(data: torch.Tensor, indices: torch.Tensor, *, batch_dims: int) -> torch.Tensor:
    """ONNX GatherND with ``batch_dims`` leading batch dimensions; negative indices count from the end."""
    batch_shape = data.shape[:batch_dims]
    batch = math.prod(batch_shape)
    depth = indices.shape[-1]
    flat_data = data.reshape(batch, *data.shape[batch_dims:])
    flat_index = indices.to(torch.int64).reshape(batch, -1, depth)
    sizes = torch.tensor(flat_data.shape[1 : 1 + depth], dtype=torch.int64)
    flat_index = torch.where(flat_index < 0, flat_index + sizes, flat_index)
    rows = torch.arange(batch).reshape(batch, 1).expand(batch, flat_index.shape[1])
    picked = flat_data[(rows, *flat_index.unbind(-1))]
    return picked.reshape(*indices.shape[:-1], *data.shape[batch_dims + depth :])


def gather_elements(data: torch.Tensor, indices: torch.Tensor, *, axis: int) -> torch.Tensor:
    index = indices.to(torch.int64)
    index = torch.where(index < 0, index + data.shape[axis], index)
    return torch.gather(data, axis, index)


def reverse_sequence(x: torch.Tensor, lengths: torch.Tensor, *, batch_axis: int, time_axis: int) -> torch.Tensor:
    """One gather along ``time_axis`` whose index, per batch row, counts down through the row's first
    ``length`` steps and leaves the rest: computed from ``lengths`` as a tensor, so a traced (and
    compiled) graph takes the lengths at run time instead of fixing them as numbers."""
    steps = torch.arange(x.shape[time_axis], device=x.device)
    length = lengths.reshape(-1, 1).to(torch.int64)
    index = torch.where(steps < length, length - 1 - steps, steps)  # (batch, time)
    if batch_axis > time_axis:
        index = index.T
    shape = [1] * x.dim()
    shape[batch_axis], shape[time_axis] = x.shape[batch_axis], x.shape[time_axis]
    return torch.gather(x, time_axis, index.reshape(shape).expand(x.shape))


def nonzero(x: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(x).T.contiguous() if x.dim() else torch.nonzero(x.reshape(1)).T[:0].contiguous()


def shape_of(x: torch.Tensor, *, start: int, end: int | None) -> torch.Tensor:
    return torch.tensor(list(x.shape)[slice(start, end)], dtype=torch.int64)


def value_range(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ONNX Range: max(ceil((limit - start) / delta), 0) elements start + i * delta, in the inputs' type."""
    first, last, step = (float(v.reshape(-1)[0]) for v in (start, limit, delta))
    count = max(math.ceil((last - first) / step), 0)
    if start.is_floating_point():
        return (start.reshape(()) + torch.arange(count, dtype=start.dtype) * delta.reshape(())).to(start.dtype)
    return torch.arange(int(first), int(first) + count * int(step), int(step), dtype=start.dtype)[:count]


def bit_cast(x: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    if x.element_size() != torch.empty((), dtype=dtype).element_size():
        raise NotImplementedError("BitCast between types of different sizes")
    return x.view(dtype)


# -- elementwise ------------------------------------------------------------------------------------


def shrink(x: torch.Tensor, *, lambd: float, bias: float) -> torch.Tensor:
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)


def is_inf(x: torch.Tensor, *, negative: bool, positive: bool) -> torch.Tensor:
    return (torch.isneginf(x) & negative) | (torch.isposinf(x) & positive)


def power(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ONNX Pow: the result has the base's type (an integer base with a float exponent truncates)."""
    if not x.is_floating_point() and y.is_floating_point():
        return torch.pow(x.to(torch.float64), y.to(torch.float64)).to(x.dtype)
    return torch.pow(x, y).to(x.dtype)


def window(size: torch.Tensor, *, kind: str, periodic: bool, dtype: torch.dtype) -> torch.Tensor:
    """Hann, Hamming and Blackman windows as ONNX defines them (``periodic``: denominator N, else N - 1)."""
    length = int(size.reshape(-1)[0])
    n = torch.arange(length, dtype=torch.float64)
    denominator = length if periodic else length - 1
    if kind == "hann":
        values = torch.sin(n * math.pi / denominator) ** 2
    elif kind == "hamming":
        alpha = 25.0 / 46.0
        values = alpha - torch.cos(n * math.pi * 2 / denominator) * (1 - alpha)
    else:
        values = 0.42 - 0.5 * torch.cos(n * math.pi * 2 / denominator) + 0.08 * torch.cos(n * math.pi * 4 / denominator)
    return values.to(dtype)


def batch_norm_training(
    x: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    *,
    epsilon: float,
    momentum: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX BatchNormalization with ``training_mode``: batch statistics, and the updated running ones."""
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    batch_mean = x.mean(dim=dims)
    batch_var = x.var(dim=dims, unbiased=False)
    y = (x - batch_mean.reshape(shape)) / torch.sqrt(batch_var.reshape(shape) + epsilon)
    y = y * scale.reshape(shape) + bias.reshape(shape)
    return y, mean * momentum + batch_mean * (1 - momentum), var * momentum + batch_var * (1 - momentum)


class Dropout(nn.Module):
    """ONNX Dropout (12+): the identity (mask all true) unless ``training_mode`` is true, then a random
    mask kept with probability 1 - ratio and the kept values scaled by 1 / (1 - ratio)."""

    def __init__(self, outputs: int, default_ratio: float) -> None:
        super().__init__()
        self.outputs, self.default_ratio = outputs, default_ratio

    def forward(
        self, data: torch.Tensor, ratio: torch.Tensor | None = None, training_mode: torch.Tensor | None = None
    ) -> Any:
        train = training_mode is not None and bool(training_mode.reshape(-1)[0])
        # ratio is read only when training: in inference a run-time ratio does not matter (and tracing
        # cannot read its value)
        p = (float(ratio.reshape(-1)[0]) if ratio is not None else self.default_ratio) if train else 0.0
        if not train or p == 0:
            output, mask = data, torch.ones_like(data, dtype=torch.bool)
        else:
            mask = torch.rand_like(data, dtype=torch.float32) >= p
            output = torch.where(mask, data / (1 - p), torch.zeros_like(data)).to(data.dtype)
        return (output, mask) if self.outputs > 1 else output


def prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """ONNX PRelu with ``slope`` broadcast to ``x``: a ``where`` (onnx2torch's masked assignment
    ``output[mask] = x[mask]`` has a data-dependent size, which no compiled target lowers)."""
    return torch.where(x >= 0, x, x * slope)


def unique(x: torch.Tensor, *, axis: int | None, sorted_: bool) -> tuple[torch.Tensor, ...]:
    """ONNX Unique: values, first-occurrence indices, inverse indices and counts (``sorted`` = 0 keeps
    the order of first occurrence)."""
    value = x.reshape(-1) if axis is None else x
    dim = 0 if axis is None else axis % x.dim()
    values, inverse, counts = torch.unique(value, sorted=True, return_inverse=True, return_counts=True, dim=dim)
    inverse = inverse.reshape(-1)
    positions = torch.arange(inverse.numel())
    first = torch.full((counts.numel(),), inverse.numel(), dtype=torch.int64).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    if not sorted_:
        order = torch.argsort(first)
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
        values, first, counts, inverse = values.index_select(dim, order), first[order], counts[order], rank[inverse]
    return values, first, inverse, counts


def register_more(add: Callable[..., None], replace: Callable[..., None]) -> None:
    """The shape, indexing and elementwise converters above."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

    from graphopt.onnx import flex_attention, ml, scatter, signal, training
    from graphopt.onnx.ops import ONNX_DTYPES

    signal.register(add)
    scatter.register(add)
    ml.register()
    training.register()
    flex_attention.register()

    def result(module: nn.Module, node: Any, inputs: tuple[str, ...] | None = None) -> Any:
        mapping = onnx_mapping_from_node(node) if inputs is None else OnnxMapping(inputs, node.output_values)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    def simple(fn: Callable[..., Any], **fixed: Callable[[Any], Any]) -> Any:
        """A converter of ``fn`` whose keyword options are computed from the node's attributes."""

        def convert(node: Any, graph: Any) -> Any:
            return result(Function(fn, **{name: get(node.attributes) for name, get in fixed.items()}), node)

        return convert

    def ints(name: str) -> Callable[[Any], list[int]]:
        return lambda a: [int(v) for v in a.get(name, [])]

    replace("Flatten", (1,), simple(flatten, axis=lambda a: int(a.get("axis", 1))))
    replace("GlobalAveragePool", (1,), simple(global_average_pool))

    def top_k_at(version: int) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            a = node.attributes
            options = {"axis": int(a.get("axis", -1)), "largest": bool(a.get("largest", 1)), "ordered": True}
            if version < 10:  # k is an attribute
                k = torch.tensor([int(a["k"])])
                module = Function(lambda x, **o: top_k(x, k, **o), **options)
                return result(module, node, (node.input_values[0],))
            return result(Function(top_k, **options), node)

        return convert

    replace("TopK", (1,), top_k_at(1))
    replace("TopK", (10,), top_k_at(10))

    replace("Compress", (9,), simple(compress, axis=lambda a: int(a["axis"]) if "axis" in a else None))
    replace("CenterCropPad", (18,), simple(center_crop_pad, axes=lambda a: ints("axes")(a) or None))
    replace(
        "Col2Im",
        (18,),
        simple(col2im, dilations=ints("dilations"), pads=ints("pads"), strides=ints("strides")),
    )
    replace("GatherND", (11,), simple(gather_nd, batch_dims=lambda a: int(a.get("batch_dims", 0))))
    replace("GatherElements", (11,), simple(gather_elements, axis=lambda a: int(a.get("axis", 0))))
    replace(
        "ReverseSequence",
        (10,),
        simple(
            reverse_sequence,
            batch_axis=lambda a: int(a.get("batch_axis", 1)),
            time_axis=lambda a: int(a.get("time_axis", 0)),
        ),
    )
    replace("NonZero", (9,), simple(nonzero))
    replace(
        "Shape",
        (15,),
        simple(shape_of, start=lambda a: int(a.get("start", 0)), end=lambda a: int(a["end"]) if "end" in a else None),
    )
    replace("Range", (11,), simple(value_range))
    replace("BitCast", (26,), simple(bit_cast, dtype=lambda a: ONNX_DTYPES[int(a["to"])]))
    replace(
        "Shrink",
        (9,),
        simple(shrink, lambd=lambda a: float(a.get("lambd", 0.5)), bias=lambda a: float(a.get("bias", 0))),
    )
    replace(
        "IsInf",
        (10,),
        simple(
            is_inf,
            negative=lambda a: bool(a.get("detect_negative", 1)),
            positive=lambda a: bool(a.get("detect_positive", 1)),
        ),
    )
    replace("Pow", (7,), simple(power))
    replace("PRelu", (7,), simple(prelu))
    for op, kind in (("HannWindow", "hann"), ("HammingWindow", "hamming"), ("BlackmanWindow", "blackman")):
        replace(
            op,
            (17,),
            simple(
                window,
                kind=functools.partial(lambda a, kind: kind, kind=kind),
                periodic=lambda a: bool(a.get("periodic", 1)),
                dtype=lambda a: ONNX_DTYPES[int(a.get("output_datatype", 1))],
            ),
        )

    def unique_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        module = Function(unique, axis=int(a["axis"]) if "axis" in a else None, sorted_=bool(a.get("sorted", 1)))
        return result(module, node)

    replace("Unique", (11,), unique_converter)

    def dropout_converter(node: Any, graph: Any) -> Any:
        outputs = len([name for name in node.output_values if name])
        return result(Dropout(outputs, float(node.attributes.get("ratio", 0.5))), node)

    replace("Dropout", (12,), dropout_converter)

    for version in (14, 15):
        from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

        description = OperationDescription("", "BatchNormalization", version)
        general = _CONVERTER_REGISTRY.get(description)

        def batch_norm(node: Any, graph: Any, general: Any = general) -> Any:
            if not int(node.attributes.get("training_mode", 0)) and general is not None:
                return general(node, graph)
            module = Function(
                batch_norm_training,
                epsilon=float(node.attributes.get("epsilon", 1e-5)),
                momentum=float(node.attributes.get("momentum", 0.9)),
            )
            return result(module, node)

        _CONVERTER_REGISTRY[description] = batch_norm

    from graphopt.onnx import recurrent

    recurrent.register(add)

    from graphopt.onnx import control_flow

    control_flow.register(add)

    from graphopt.onnx import sampling

    sampling.register(add, replace)

    from graphopt.onnx import shape_ops

    shape_ops.register(replace)
