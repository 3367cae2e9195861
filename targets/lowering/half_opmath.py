"""Ops on float16/bfloat16 computed in float32 and rounded once, as torch's CPU kernels compute them.

torch computes a half tensor's softmax, log_softmax, sum, mean, var, std, cumsum (that one in
``accumulate_dtypes``), gelu, layer and group norms and convolution in float32 (its "opmath" type)
and rounds the result once; so is a product or quotient with a Python scalar, the scalar kept in float32. TVM's kernels work in the
input's dtype instead: an fp16 softmax row's exponentials were summed in fp16, rounded at every step
(ONNX Attention in fp16 came out 2 ulps off its reference, over the case's rtol 1e-3); ``x * 0.35``
multiplied by 0.35 rounded to fp16 (half the elements of an fp16 ``q @ k.T * scale`` one ulp off
torch's); ``x / 2.0`` met a float32 constant and failed to build; the frontend's convolution fixes
``out_dtype="float32"``, so an fp16 conv came out float32 and its fp16 bias could not be added (ONNX
CausalConvWithState in fp16 returned float32); and relax's group_norm refuses bfloat16.

Each op here runs TVM's own converter on float32 copies of its half inputs, then casts the result to
the node's dtype (``node.meta["val"]``, what torch gives: ``_softmax``'s ``half_to_float`` and
``sum(dtype=)`` included). A node with no half input goes to TVM's converter untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

_HALF = ("float16", "bfloat16")

#: The ops torch's CPU kernels compute in float32 for half inputs, by their frontend names.
OPMATH_OPS = (
    "_softmax.default",
    "softmax.int",
    "_log_softmax.default",
    "log_softmax.int",
    "sum.default",
    "sum.dim_IntList",
    "mean.default",
    "mean.dim",
    "var.correction",
    "std.correction",
    "gelu.default",
    "native_layer_norm.default",
    "layer_norm.default",
    "native_group_norm.default",
    "group_norm.default",
    "convolution.default",
)

#: Products and quotients with a Python scalar, which torch keeps in float32 (``x * 0.35`` is
#: ``round(float(x) * 0.35f)``); its add, sub and pow round the scalar to the tensor's dtype first, as
#: TVM's converters do. A tensor-tensor op on halves is exactly rounded either way.
SCALAR_OPS = ("mul.Tensor", "mul.Scalar", "div.Tensor", "div.Scalar")


def frontend_converter(importer: Any, name: str) -> Callable[[fx.Node], Any]:
    """TVM's own converter for ``name``, also where graphopt registered one of its own over it."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    defaults = getattr(importer, "_graphopt_default_converters", None)
    if defaults is None:
        defaults = ExportedProgramImporter.create_convert_map(importer)
        importer._graphopt_default_converters = defaults
    return defaults[name]


def _is_half(value: Any) -> bool:
    dtype = getattr(getattr(value, "ty", None), "dtype", None)
    return dtype is not None and str(dtype) in _HALF


def in_float32(node: fx.Node, importer: Any, convert: Callable[[fx.Node], Any]) -> Any:
    """``convert(node)`` with the node's half inputs as float32, its result cast to the node's dtype."""
    from tvm import relax

    halves = [arg for arg in node.all_input_nodes if _is_half(importer.env.get(arg))]
    if not halves or not _dtypes(node.meta.get("val")):
        return convert(node)
    saved = {arg: importer.env[arg] for arg in halves}
    for arg in halves:
        importer.env[arg] = importer.block_builder.emit(relax.op.astype(saved[arg], "float32"))
    try:
        result = convert(node)
    finally:
        importer.env.update(saved)
    return _cast(importer, result, _dtypes(node.meta["val"]))


def _dtypes(value: Any) -> list[str]:
    """The dtype names of a node's value: one tensor's, or each tensor's of a tuple (native_group_norm)."""
    values = value if isinstance(value, (tuple, list)) else [value]
    return [str(v.dtype).removeprefix("torch.") for v in values if isinstance(v, torch.Tensor)]


def _cast(importer: Any, result: Any, dtypes: list[str]) -> Any:
    """``result`` cast to ``dtypes``: a tensor to the first (the frontend gives a norm's output alone,
    where torch also gives its statistics), a tuple field by field."""
    from tvm import relax

    def cast(value: Any, dtype: str) -> Any:
        return value if str(value.ty.dtype) == dtype else relax.op.astype(value, dtype)

    if isinstance(result.ty, relax.TupleType):
        fields = [importer.block_builder.emit(relax.TupleGetItem(result, i)) for i in range(len(result.ty.fields))]
        return importer.block_builder.emit(relax.Tuple([cast(f, d) for f, d in zip(fields, dtypes, strict=False)]))
    cast_result = cast(result, dtypes[0])
    return result if cast_result is result else importer.block_builder.emit(cast_result)


def _opmath(name: str, *, with_scalar: bool = False) -> Callable[[fx.Node, Any], Any]:
    def convert(node: fx.Node, importer: Any) -> Any:
        default = frontend_converter(importer, name)
        if with_scalar and not any(isinstance(arg, (int, float)) and not isinstance(arg, bool) for arg in node.args):
            return default(node)
        return in_float32(node, importer, default)

    return convert


def convert_pow_scalar(node: fx.Node, importer: Any) -> Any:
    """``x ** s`` of a half ``x``: torch rounds ``s`` to x's dtype and computes the power in float32;
    TVM's power of bfloat16 failed to build ("power only applies to float")."""
    from tvm import relax

    x, exponent = node.args[:2]
    value = importer.env[x]
    if not _is_half(value) or not isinstance(exponent, (int, float)):
        return frontend_converter(importer, "pow.Tensor_Scalar")(node)
    dtype = str(value.ty.dtype)
    rounded = float(torch.tensor(exponent, dtype=getattr(torch, dtype)).item())
    wide = relax.op.power(relax.op.astype(value, "float32"), relax.const(rounded, "float32"))
    return importer.block_builder.emit(relax.op.astype(wide, dtype))


#: Registered over the frontend's converters (``lower.CUSTOM_CONVERTERS``); ``convolution.default`` is
#: registered by ``quantized.py``, whose float path goes through ``in_float32``.
HALF_OPMATH_CONVERTERS: dict[str, Callable[[fx.Node, Any], Any]] = {
    **{name: _opmath(name) for name in OPMATH_OPS if name != "convolution.default"},
    **{name: _opmath(name, with_scalar=True) for name in SCALAR_OPS},
    "pow.Tensor_Scalar": convert_pow_scalar,
}
