"""``torch.cat`` with empty inputs, which PyTorch skips and relax's ``concat`` refuses.

PyTorch lets a 1-d tensor of shape ``(0,)`` sit among tensors of any rank in a ``cat`` and leaves it out
(its legacy rule for "no tensor yet"). A key/value cache that starts as ``torch.tensor([])`` and grows by
``torch.cat([cache, new], dim=-2)`` relies on it: transformers' ``DynamicLayer.update``, which every
``GPT2Model`` with the default ``use_cache=True`` runs. TVM 0.27's frontend hands every input to
``concat``, whose type inference failed ("Concat expects all input tensors to have same ndim"). Here
every input torch's shapes say is empty is left out, as torch does (one of the cat's rank with a zero
along the cat dimension adds nothing either); the rest are concatenated in the result's dtype (torch
promotes mixed inputs, relax's ``concat`` would not).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from graphopt.targets.lowering.accumulate_dtypes import torch_dtype
from graphopt.targets.lowering.converters import args_of


def _is_empty(value: Any) -> bool:
    """Whether torch recorded ``value`` (an fx node of the cat's inputs) as a tensor with no elements."""
    meta = value.meta.get("val") if isinstance(value, fx.Node) else None
    if not isinstance(meta, torch.Tensor):
        return False
    return any(isinstance(size, int) and size == 0 for size in meta.shape)


def _rank(value: fx.Node) -> int | None:
    """The rank torch recorded for ``value``, or None."""
    meta = value.meta.get("val")
    return meta.dim() if isinstance(meta, torch.Tensor) else None


def convert_cat(node: fx.Node, importer: Any) -> Any:
    """``torch.cat(tensors, dim)`` of the non-empty ``tensors``, cast to torch's result dtype."""
    from tvm import relax

    args = args_of(node)
    tensors = list(args[0])
    dim_arg: Any = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
    dim = int(dim_arg)
    rank = _rank(node)
    kept = (
        [tensor for tensor in tensors if not _is_empty(tensor)]
        or [tensor for tensor in tensors if _rank(tensor) == rank][:1]
        or tensors[:1]
    )
    values = [importer.env[tensor] for tensor in kept]
    dtype = torch_dtype(node)
    if dtype is not None:
        values = [value if str(value.ty.dtype) == dtype else relax.op.astype(value, dtype) for value in values]
    if rank is not None and dim < 0:
        dim += rank
    if len(values) == 1:
        return importer.block_builder.emit(values[0])
    return importer.block_builder.emit(relax.op.concat(values, axis=dim))
