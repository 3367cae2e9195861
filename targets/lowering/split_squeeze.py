"""``split_with_sizes`` with an empty part and ``squeeze`` of named dims, which TVM 0.27's frontend gets wrong.

- ``split_with_sizes`` (ONNX Split with a ``split`` input, ``torch.split(x, [2, 0, 3])``): the frontend
  passes the cut positions to ``relax.op.split``, which requires them strictly increasing; a part of size
  0 repeats a position and the build failed ("split_ind"). A split with an empty part is one
  ``strided_slice`` per part here (an empty one included); any other goes to the frontend.
- ``squeeze.dims`` / ``squeeze.dim`` (``x.squeeze()`` decomposes to ``squeeze.dims`` naming every dim):
  torch removes only the named dims of size 1, the frontend asks relax to remove all the named ones, so
  squeezing a (2, 1, 3) tensor aborted TVM's build (ONNX Squeeze without axes, in AffineGrid's function
  body). Here only the named dims of static size 1 are removed (none: the input itself).
"""

from __future__ import annotations

from typing import Any

from torch import fx

from graphopt.targets.lowering.converters import args_of


def convert_split_with_sizes(node: fx.Node, importer: Any) -> Any:
    from tvm import relax

    args = args_of(node)
    sizes = [int(s) for s in args[1]]
    if 0 not in sizes:
        return importer._split(node)
    x = importer.env[args[0]]
    rank = len(args[0].meta["val"].shape)
    given: Any = args[2] if len(args) > 2 else node.kwargs.get("dim", 0)
    dim = int(given) % rank
    parts, start = [], 0
    for size in sizes:
        part = relax.op.strided_slice(x, [dim], [start], [start + size], assume_inbound=True)
        parts.append(importer.block_builder.emit(part))
        start += size
    return importer.block_builder.emit(relax.Tuple(parts))


def convert_squeeze(node: fx.Node, importer: Any) -> Any:
    from tvm import relax

    args = args_of(node)
    x = importer.env[args[0]]
    shape = args[0].meta["val"].shape
    named: Any = args[1] if len(args) > 1 else node.kwargs.get("dim", node.kwargs.get("dims", ()))
    dims = [named] if isinstance(named, int) else list(named)
    unit = sorted({d % len(shape) for d in dims if len(shape) and isinstance(shape[d], int) and shape[d] == 1})
    if not unit:
        return x
    return importer.block_builder.emit(relax.op.squeeze(x, unit))


CONVERTERS = {
    "split_with_sizes.default": convert_split_with_sizes,
    "squeeze.dims": convert_squeeze,
    "squeeze.dim": convert_squeeze,
}
