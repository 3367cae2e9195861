"""ONNX ops (and op versions) onnx2torch lacks or gets wrong, as plain PyTorch modules, with their converters.

``register(add)`` registers each converter through ``graphopt.onnx.converters``' ``add`` (onnx2torch's
own ``add_converter``). Each module follows the op's ONNX definition (``onnx.defs``) and is checked
against ONNX Runtime on the onnx package's node test cases (``benchmarks/onnx_conformance.py``) and in
``tests/test_onnx_ops.py``:

- Cast / CastLike to every type torch has (bfloat16, ...), and to the types it cannot compute in
  (int4, uint4, int2, uint2, float4e2m1, the float8 types with ``saturate``, float8e8m0:
  ``graphopt.onnx.narrow``, carried in a wider dtype);
- elementwise math on uint16/uint32/uint64, which torch's CPU kernels lack: computed in int64 and cast
  back (exact for every value below 2**63);
- Acosh, Asinh, Atanh, Cosh, Sinh, Det, the Bitwise ops and BitShift; GlobalMaxPool, LpNormalization,
  Hardmax, OneHot, CumProd, Split-18 (``num_outputs``), Pad-18+ (``axes``, edge/reflect/wrap),
  ScatterElements and ScatterND with every ``reduction``;
- AveragePool, MaxPool (one output) and LpPool at every version, by unfolded windows: ONNX's
  ``dilations``, ``ceil_mode`` (a window starting in the right padding is dropped), ``count_include_pad``
  and asymmetric ``pads``, which torch's pooling functions only partly have;
- ConvTranspose on any weight (``output_shape``, ``output_padding``, ``auto_pad``, asymmetric pads).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: ONNX TensorProto data types -> torch dtypes.
ONNX_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    4: torch.uint16,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    12: torch.uint32,
    13: torch.uint64,
    16: torch.bfloat16,
    17: torch.float8_e4m3fn,
    18: torch.float8_e4m3fnuz,
    19: torch.float8_e5m2,
    20: torch.float8_e5m2fnuz,
    24: torch.float8_e8m0fnu,
}

_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


class Cast(nn.Module):
    """ONNX Cast (and CastLike, whose ``like`` input only gives the type) to a type torch has; the
    types torch cannot compute in (float8, int4, ...) are cast by ``graphopt.onnx.narrow``."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return x.to(self.dtype)


class CastLike(nn.Module):
    """ONNX CastLike whose target type is known only at run time."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)


class Widened(nn.Module):
    """An elementwise op on uint16/uint32/uint64 inputs (types known from the model) run in int64,
    the result cast back to ``dtype`` unless it is a comparison's bool."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype, cast_back: bool) -> None:
        super().__init__()
        self.inner, self.dtype, self.cast_back = inner, dtype, cast_back

    def forward(self, *args: Any) -> Any:
        result = self.inner(*(a.to(torch.int64) if a is not None else None for a in args))
        return result.to(self.dtype) if self.cast_back else result


class Function(nn.Module):
    """An op that is one torch function of its inputs (and constant keyword arguments)."""

    def __init__(self, function: Callable[..., Any], **options: Any) -> None:
        super().__init__()
        self.function, self.options = function, options

    def forward(self, *args: Any) -> Any:
        return self.function(*args, **self.options)


def _wide(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``function`` on int64 copies of unsigned (uint16/32/64) arguments, the result cast back."""

    def run(*args: torch.Tensor, **options: Any) -> torch.Tensor:
        dtype = args[0].dtype
        if dtype in _UNSIGNED or dtype == torch.uint8:
            return function(*(a.to(torch.int64) for a in args), **options).to(dtype)
        return function(*args, **options)

    return run


def bit_shift(x: torch.Tensor, y: torch.Tensor, direction: str) -> torch.Tensor:
    return torch.bitwise_left_shift(x, y) if direction == "LEFT" else torch.bitwise_right_shift(x, y)


def hardmax(x: torch.Tensor, axis: int, coerce_2d: bool) -> torch.Tensor:
    """One at the first maximum along ``axis`` (opset < 13: over the dimensions from ``axis`` on)."""
    shape = x.shape
    if coerce_2d:
        x = x.reshape(int(math.prod(shape[: axis % x.dim()])), -1)
        axis = 1
    index = torch.argmax(x, dim=axis, keepdim=True)
    return torch.zeros_like(x).scatter(axis, index, 1).reshape(shape)


def one_hot(indices: torch.Tensor, depth: torch.Tensor, values: torch.Tensor, axis: int) -> torch.Tensor:
    size = int(depth.reshape(-1)[0])
    index = indices.to(torch.int64)
    index = torch.where(index < 0, index + size, index)
    valid = (index >= 0) & (index < size)
    hot = torch.nn.functional.one_hot(torch.where(valid, index, 0), size) * valid.unsqueeze(-1)
    hot = hot.movedim(-1, axis % (indices.dim() + 1))
    return torch.where(hot.bool(), values[1], values[0])


def cumulative(x: torch.Tensor, axis: torch.Tensor, exclusive: int, reverse: int, product: bool) -> torch.Tensor:
    dim = int(axis.reshape(-1)[0]) % x.dim()
    if reverse:
        x = x.flip(dim)
    result = torch.cumprod(x, dim) if product else torch.cumsum(x, dim)
    if exclusive:
        first = torch.ones_like(x.narrow(dim, 0, 1)) if product else torch.zeros_like(x.narrow(dim, 0, 1))
        result = torch.cat([first, result.narrow(dim, 0, x.shape[dim] - 1)], dim)
    result = result.to(x.dtype)
    return result.flip(dim) if reverse else result


def lp_normalize(x: torch.Tensor, axis: int, p: int) -> torch.Tensor:
    norm = torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
    return x / torch.where(norm == 0, torch.ones_like(norm), norm)  # a zero vector stays zero


def split(
    x: torch.Tensor, sizes: torch.Tensor | None = None, *, axis: int, outputs: int, num_outputs: int | None
) -> Any:
    """ONNX Split: by the ``split`` sizes, else into ``num_outputs`` (or one per output) parts of
    ceil(n / parts) elements, the last one smaller."""
    if sizes is not None and sizes.numel():
        chunks = [int(s) for s in sizes.reshape(-1).tolist()]
    else:
        parts = num_outputs or outputs
        length = x.shape[axis]
        step = -(-length // parts)
        chunks = [min(step, length - i * step) for i in range(parts)]
    return tuple(torch.split(x, chunks, dim=axis))


def pad(
    x: torch.Tensor,
    pads: torch.Tensor,
    value: torch.Tensor | None = None,
    axes: torch.Tensor | None = None,
    *,
    mode: str,
) -> torch.Tensor:
    """ONNX Pad (opset 11+): ``pads`` as [begins..., ends...] over ``axes`` (all by default);
    negative pads crop; modes constant, edge, reflect and wrap."""
    rank = x.dim()
    dims = [int(a) % rank for a in axes.reshape(-1).tolist()] if axes is not None else list(range(rank))
    amounts = [int(p) for p in pads.reshape(-1).tolist()]
    # a run-time fill value (a graph input, a tensor) stays a tensor, so a traced graph reads it at run time
    runtime_fill = value.reshape(-1)[0] if isinstance(value, torch.Tensor) and value.numel() else None
    fill = float(value.reshape(-1)[0]) if value is not None and runtime_fill is None and value.numel() else 0.0
    for position, dim in enumerate(dims):
        begin, end = amounts[position], amounts[position + len(dims)]
        if begin < 0:
            x = x.narrow(dim, -begin, x.shape[dim] + begin)
            begin = 0
        if end < 0:
            x = x.narrow(dim, 0, x.shape[dim] + end)
            end = 0
        if not begin and not end:
            continue
        size = x.shape[dim]
        if mode == "constant":
            widths = [0, 0] * (rank - 1 - dim) + [begin, end]
            padded = torch.nn.functional.pad(x, widths, value=fill)
            if runtime_fill is not None:
                inside = torch.nn.functional.pad(torch.ones_like(x, dtype=torch.bool), widths, value=False)
                padded = torch.where(inside, padded, runtime_fill.to(x.dtype))
            x = padded
            continue
        index = torch.arange(-begin, size + end)
        if mode == "edge":
            index = index.clamp(0, size - 1)
        elif mode == "wrap":
            index = index % size
        else:  # reflect, without repeating the edge
            period = 2 * (size - 1) if size > 1 else 1
            index = index.abs() % period
            index = torch.where(index >= size, period - index, index)
        x = x.index_select(dim, index)
    return x


def scatter_elements(
    data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, axis: int, reduction: str
) -> torch.Tensor:
    axis %= data.dim()
    index = indices.to(torch.int64)
    index = torch.where(index < 0, index + data.shape[axis], index)
    if reduction == "none":
        return data.scatter(axis, index, updates)
    name = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[reduction]
    return data.scatter_reduce(axis, index, updates, reduce=name, include_self=True)


def scatter_nd(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, reduction: str) -> torch.Tensor:
    """ONNX ScatterND: each index tuple (the last dimension of ``indices``) selects a slice of ``data``."""
    depth = indices.shape[-1]
    leading = data.shape[:depth]
    index = indices.to(torch.int64).reshape(-1, depth)
    index = torch.where(index < 0, index + torch.tensor(leading, dtype=torch.int64), index)
    strides = [int(math.prod(leading[i + 1 :])) for i in range(depth)]
    linear = (index * torch.tensor(strides, dtype=torch.int64)).sum(-1)
    flat = data.reshape(int(math.prod(leading)), -1).clone()
    rows = updates.reshape(linear.shape[0], -1)
    if reduction == "none":  # a scatter rather than ``flat[linear] = rows``: TVM's frontend lowers scatter
        flat = flat.scatter(0, linear.unsqueeze(1).expand_as(rows), rows)
    else:
        name = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[reduction]
        flat = flat.scatter_reduce(0, linear.unsqueeze(1).expand_as(rows), rows, reduce=name, include_self=True)
    return flat.reshape(data.shape)


def _window_pads(
    size: list[int], kernel: list[int], strides: list[int], dilations: list[int], pads: list[int], auto_pad: str
) -> list[int]:
    """Explicit [begins..., ends...] pads of a pooling or convolution window, ``auto_pad`` resolved."""
    spatial = len(size)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        result = [0] * (2 * spatial)
        for i in range(spatial):
            extent = (kernel[i] - 1) * dilations[i] + 1
            total = max((-(-size[i] // strides[i]) - 1) * strides[i] + extent - size[i], 0)
            small, large = total // 2, total - total // 2
            result[i], result[spatial + i] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        return result
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    return pads or [0] * (2 * spatial)


def window_extra_end(size: int, kernel: int, stride: int, dilation: int, begin: int, end: int, ceil_mode: bool) -> int:
    """Padding to add after ``end`` so that floor-mode windows over the padded axis are ONNX's: with
    ``ceil_mode`` a last partial window is kept, unless it would start in the right padding."""
    extent = (kernel - 1) * dilation + 1
    padded = size + begin + end
    steps = (padded - extent) / stride
    count = (math.ceil(steps) if ceil_mode else math.floor(steps)) + 1
    if ceil_mode and (count - 1) * stride >= size + begin:
        count -= 1  # a window may not start in the right padding
    return max((count - 1) * stride + extent - padded, 0)


class Pool(nn.Module):
    """ONNX AveragePool, MaxPool (its first output) and LpPool over unfolded windows."""

    def __init__(
        self,
        kind: str,
        kernel: list[int],
        strides: list[int],
        dilations: list[int],
        pads: list[int],
        auto_pad: str,
        ceil_mode: bool,
        count_include_pad: bool,
        p: int,
    ) -> None:
        super().__init__()
        self.kind, self.kernel, self.strides, self.dilations = kind, kernel, strides, dilations
        self.pads, self.auto_pad, self.ceil_mode, self.count_include_pad, self.p = (
            pads,
            auto_pad,
            ceil_mode,
            count_include_pad,
            p,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = len(self.kernel)
        size = [int(s) for s in x.shape[2:]]
        strides = self.strides or [1] * spatial
        dilations = self.dilations or [1] * spatial
        pads = _window_pads(size, self.kernel, strides, dilations, self.pads, self.auto_pad)
        fill: float = 0.0
        if self.kind == "max":
            fill = -math.inf if x.is_floating_point() else float(torch.iinfo(x.dtype).min)
        value = x.to(torch.float64) if self.kind == "lp" else x
        # the explicit pads count for count_include_pad; the extra end padding ceil_mode needs does not
        counted = torch.ones_like(x[:1, :1])
        widths: list[int] = []
        extra: list[int] = []
        for i in reversed(range(spatial)):
            widths += [pads[i], pads[spatial + i]]
            extra += [
                0,
                window_extra_end(
                    size[i], self.kernel[i], strides[i], dilations[i], pads[i], pads[spatial + i], self.ceil_mode
                ),
            ]
        value = torch.nn.functional.pad(value, widths, value=fill)
        counted = torch.nn.functional.pad(counted, widths, value=1.0 if self.count_include_pad else 0.0)
        value = torch.nn.functional.pad(value, extra, value=fill)
        counted = torch.nn.functional.pad(counted, extra, value=0.0)
        for i in range(spatial):
            extent = (self.kernel[i] - 1) * dilations[i] + 1
            value = value.unfold(2 + i, extent, strides[i])[..., :: dilations[i]]
            counted = counted.unfold(2 + i, extent, strides[i])[..., :: dilations[i]]
        window = tuple(range(-spatial, 0))
        if self.kind == "max":
            return value.amax(dim=window)
        if self.kind == "lp":
            return value.abs().pow(self.p).sum(dim=window).pow(1.0 / self.p).to(x.dtype)
        return (value.sum(dim=window) / counted.sum(dim=window)).to(x.dtype)


class ConvTranspose(nn.Module):
    """ONNX ConvTranspose: the full transposed convolution, then the ONNX pads cropped (or zeros added)."""

    def __init__(
        self,
        strides: list[int],
        dilations: list[int],
        group: int,
        pads: list[int],
        auto_pad: str,
        output_padding: list[int],
        output_shape: list[int],
    ) -> None:
        super().__init__()
        self.strides, self.dilations, self.group, self.pads = strides, dilations, group, pads
        self.auto_pad, self.output_padding, self.output_shape = auto_pad, output_padding, output_shape

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        spatial = weight.dim() - 2
        strides = self.strides or [1] * spatial
        dilations = self.dilations or [1] * spatial
        extra = self.output_padding or [0] * spatial
        convolve = (
            torch.nn.functional.conv_transpose1d,
            torch.nn.functional.conv_transpose2d,
            torch.nn.functional.conv_transpose3d,
        )[spatial - 1]
        full = convolve(x, weight, None, strides, 0, 0, self.group, dilations)
        begins, ends = [], []
        for i in range(spatial):
            size = int(x.shape[2 + i])
            natural = strides[i] * (size - 1) + extra[i] + (int(weight.shape[2 + i]) - 1) * dilations[i] + 1
            if self.output_shape or self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                target = self.output_shape[-spatial + i] if self.output_shape else size * strides[i]
                total = natural - target
                if self.auto_pad == "SAME_UPPER":
                    begin, end = total // 2, total - total // 2
                else:
                    begin, end = total - total // 2, total // 2
            elif self.pads and self.auto_pad != "VALID":
                begin, end = self.pads[i], self.pads[spatial + i]
            else:
                begin, end = 0, 0
            begins.append(begin)
            ends.append(end - extra[i])
        widths = [w for i in reversed(range(spatial)) for w in (-begins[i], -ends[i])]
        result = torch.nn.functional.pad(full, widths)
        if bias is not None:
            result = result + bias.reshape(1, -1, *([1] * spatial))
        return result


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def register(
    add: Callable[[str, tuple[int, ...], Any], None], replace: Callable[[str, tuple[int, ...], Any], None]
) -> None:
    """Register the converters: ``add`` where onnx2torch has none, ``replace`` over onnx2torch's own."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

    def result(module: nn.Module, node: Any, inputs: tuple[str, ...] | None = None) -> Any:
        mapping = onnx_mapping_from_node(node) if inputs is None else OnnxMapping(inputs, node.output_values)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    def function(fn: Callable[..., Any], **fixed: Any) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            return result(Function(fn, **fixed), node)

        return convert

    from graphopt.onnx.narrow import CARRIERS, NarrowCast

    def narrow(node: Any, to: int) -> Any:
        saturate = bool(node.attributes.get("saturate", 1))
        return result(NarrowCast(to, saturate, _text(node.attributes.get("round_mode"), "up")), node)

    def cast_converter(node: Any, graph: Any) -> Any:
        to = int(node.attributes["to"])
        if to in CARRIERS:
            return narrow(node, to)
        if to not in ONNX_DTYPES:
            raise NotImplementedError(f"Cast to ONNX type {to} (torch has no such dtype)")
        return result(Cast(ONNX_DTYPES[to]), node)

    replace("Cast", (6, 9, 13, 19, 21, 23, 24, 25), cast_converter)

    def cast_like(node: Any, graph: Any) -> Any:
        declared = _elem_type(graph, node.input_values[1])
        if declared is not None and declared in CARRIERS:
            return narrow(node, declared)
        if declared in ONNX_DTYPES:
            return result(Cast(ONNX_DTYPES[declared]), node)
        return result(CastLike(), node)

    replace("CastLike", (15, 19, 21, 23, 24, 25), cast_like)

    def widened(op: str, versions: tuple[int, ...]) -> None:
        for version in versions:
            description = OperationDescription("", op, version)
            general = _CONVERTER_REGISTRY.get(description)
            if general is None:
                continue

            def convert(node: Any, graph: Any, general: Any = general, op: str = op) -> Any:
                converted = general(node, graph)
                unsigned = [_elem_type(graph, name) for name in node.input_values if name]
                if unsigned and unsigned[0] in (4, 12, 13):
                    module = Widened(converted.torch_module, ONNX_DTYPES[unsigned[0]], op not in comparisons)
                    return OperationConverterResult(torch_module=module, onnx_mapping=converted.onnx_mapping)
                return converted

            _CONVERTER_REGISTRY[description] = convert

    comparisons = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual")
    for op in ("Add", "Sub", "Mul", "Div", "Mod", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Max", "Min"):
        widened(op, tuple(range(1, 29)))

    for op, torch_function in (
        ("Acosh", torch.acosh),
        ("Asinh", torch.asinh),
        ("Atanh", torch.atanh),
        ("Cosh", torch.cosh),
        ("Sinh", torch.sinh),
    ):
        add(op, (9, 22), function(torch_function))
    add("Det", (11, 22), function(torch.linalg.det))
    add("BitwiseNot", (18,), function(_wide(torch.bitwise_not)))
    add("BitwiseAnd", (18,), function(_wide(torch.bitwise_and)))
    add("BitwiseOr", (18,), function(_wide(torch.bitwise_or)))
    add("BitwiseXor", (18,), function(_wide(torch.bitwise_xor)))

    def bit_shift_converter(node: Any, graph: Any) -> Any:
        return result(Function(_wide(bit_shift), direction=_text(node.attributes.get("direction"), "LEFT")), node)

    add("BitShift", (11,), bit_shift_converter)

    def global_max_pool(node: Any, graph: Any) -> Any:
        return result(Function(lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)), node)

    add("GlobalMaxPool", (1, 22), global_max_pool)

    def lp_normalization(node: Any, graph: Any) -> Any:
        return result(
            Function(lp_normalize, axis=int(node.attributes.get("axis", -1)), p=int(node.attributes.get("p", 2))), node
        )

    add("LpNormalization", (1, 22), lp_normalization)

    def hardmax_at(version: int) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            axis = int(node.attributes.get("axis", -1 if version >= 13 else 1))
            return result(Function(hardmax, axis=axis, coerce_2d=version < 13), node)

        return convert

    for version in (13, 11, 1):  # newest first: ``add`` fills only the versions not registered yet
        add("Hardmax", (version,), hardmax_at(version))

    def one_hot_converter(node: Any, graph: Any) -> Any:
        return result(Function(one_hot, axis=int(node.attributes.get("axis", -1))), node)

    add("OneHot", (9, 11), one_hot_converter)

    def cumulative_converter(product: bool) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            module = Function(
                cumulative,
                exclusive=int(node.attributes.get("exclusive", 0)),
                reverse=int(node.attributes.get("reverse", 0)),
                product=product,
            )
            return result(module, node)

        return convert

    replace("CumSum", (11, 14), cumulative_converter(False))
    add("CumProd", (26,), cumulative_converter(True))

    def split_converter(node: Any, graph: Any) -> Any:
        sizes = node.attributes.get("split")
        module = Function(
            split,
            axis=int(node.attributes.get("axis", 0)),
            outputs=len(node.output_values),
            num_outputs=node.attributes.get("num_outputs"),
        )
        if sizes is not None:  # opset < 13: an attribute
            constant = torch.tensor(list(sizes), dtype=torch.int64)
            return result(
                Function(lambda x, **options: split(x, constant, **options), **module.options),
                node,
                (node.input_values[0],),
            )
        return result(module, node)

    add("Split", (18,), split_converter)

    def pad_converter(node: Any, graph: Any) -> Any:
        mode = _text(node.attributes.get("mode"), "constant")
        return result(Function(pad, mode=mode), node)

    add("Pad", (18, 19, 21, 23, 24, 25), pad_converter)

    def scatter_elements_converter(node: Any, graph: Any) -> Any:
        module = Function(
            scatter_elements,
            axis=int(node.attributes.get("axis", 0)),
            reduction=_text(node.attributes.get("reduction"), "none"),
        )
        return result(module, node)

    add("ScatterElements", (11, 13, 16, 18), scatter_elements_converter)
    add("Scatter", (9, 11), scatter_elements_converter)

    def scatter_nd_converter(node: Any, graph: Any) -> Any:
        return result(Function(scatter_nd, reduction=_text(node.attributes.get("reduction"), "none")), node)

    replace("ScatterND", (11, 13, 16, 18), scatter_nd_converter)

    def max_pool_with_indices(node: Any) -> Any:
        from graphopt.onnx.pool_indices import MaxPoolWithIndices

        kernel = list(node.attributes["kernel_shape"])
        if len(kernel) != 2:
            raise NotImplementedError(f"MaxPool with an Indices output over {len(kernel)} spatial dims (2 only)")
        module = MaxPoolWithIndices(
            kernel,
            list(node.attributes.get("strides", [])),
            list(node.attributes.get("dilations", [])),
            list(node.attributes.get("pads", [])),
            _text(node.attributes.get("auto_pad"), "NOTSET"),
            bool(node.attributes.get("ceil_mode", 0)),
            int(node.attributes.get("storage_order", 0)),
        )
        return result(module, node)

    def pool_converter(kind: str) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            if kind == "max" and len([o for o in node.output_values if o]) > 1:
                return max_pool_with_indices(node)
            module = Pool(
                kind,
                list(node.attributes["kernel_shape"]),
                list(node.attributes.get("strides", [])),
                list(node.attributes.get("dilations", [])),
                list(node.attributes.get("pads", [])),
                _text(node.attributes.get("auto_pad"), "NOTSET"),
                bool(node.attributes.get("ceil_mode", 0)),
                bool(node.attributes.get("count_include_pad", 0)),
                int(node.attributes.get("p", 2)),
            )
            return result(module, node)

        return convert

    def torch_pools_it(node: Any) -> bool:
        """Whether torch's pooling (onnx2torch's converter) computes this window as ONNX does."""
        kernel = list(node.attributes.get("kernel_shape", []))
        pads = list(node.attributes.get("pads", [])) or [0] * (2 * len(kernel))
        spatial = len(kernel)
        symmetric = pads[:spatial] == pads[spatial:] and all(p <= k // 2 for p, k in zip(pads, kernel * 2, strict=True))
        return (
            symmetric
            and not node.attributes.get("ceil_mode", 0)
            and not any(d != 1 for d in node.attributes.get("dilations", []))
            and _text(node.attributes.get("auto_pad"), "NOTSET") in ("NOTSET", "VALID")
        )

    def prefer_general(op: str, versions: tuple[int, ...], mine: Any, general_fits: Callable[[Any], bool]) -> None:
        for version in versions:
            description = OperationDescription("", op, version)
            general = _CONVERTER_REGISTRY.get(description)

            def convert(node: Any, graph: Any, general: Any = general) -> Any:
                if general is not None and general_fits(node):
                    return general(node, graph)
                return mine(node, graph)

            _CONVERTER_REGISTRY[description] = convert

    prefer_general("AveragePool", (7, 10, 11, 19, 22), pool_converter("average"), torch_pools_it)
    replace("LpPool", (2, 11, 18, 22), pool_converter("lp"))
    prefer_general(
        "MaxPool",
        (8, 10, 11, 12, 22),
        pool_converter("max"),
        lambda node: len([o for o in node.output_values if o]) == 1 and torch_pools_it(node),
    )

    def conv_transpose(node: Any, graph: Any) -> Any:
        module = ConvTranspose(
            list(node.attributes.get("strides", [])),
            list(node.attributes.get("dilations", [])),
            int(node.attributes.get("group", 1)),
            list(node.attributes.get("pads", [])),
            _text(node.attributes.get("auto_pad"), "NOTSET"),
            list(node.attributes.get("output_padding", [])),
            list(node.attributes.get("output_shape", [])),
        )
        return result(module, node)

    for version in (1, 11, 22):
        description = OperationDescription("", "ConvTranspose", version)
        general = _CONVERTER_REGISTRY.get(description)

        def convert_transpose(node: Any, graph: Any, general: Any = general) -> Any:
            simple = not node.attributes.get("output_shape") and _text(node.attributes.get("auto_pad"), "NOTSET") in (
                "NOTSET",
                "VALID",
            )
            if general is not None and simple and node.input_values[1] in graph.initializers:
                return general(node, graph)
            return conv_transpose(node, graph)

        _CONVERTER_REGISTRY[description] = convert_transpose


def _elem_type(graph: Any, name: str) -> int | None:
    """The ONNX element type of a value whose type the graph declares (inputs, outputs, value_info)."""
    info = graph._value_info.get(name)
    if info is None or not info.type.HasField("tensor_type"):
        return None
    return int(info.type.tensor_type.elem_type)
