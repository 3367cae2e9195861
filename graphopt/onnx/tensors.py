"""ONNX tensors of the types numpy lacks (bfloat16, float8, int4, ...) as torch tensors, for onnx2torch.

onnx2torch reads an initializer or a Constant's value with ``torch.from_numpy(numpy_helper.to_array(t))``,
which fails for these types: onnx gives them as ml_dtypes arrays, which torch cannot take. A bfloat16
array is viewed as uint16, handed to torch and viewed back as torch's bfloat16: bit for bit the ONNX
values. The types graphopt carries in a wider dtype (``graphopt.onnx.narrow.NUMPY_CARRIERS``: float8,
float4, int4, ...) are converted to their carrier, which holds every value exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: ml_dtypes name -> (torch dtype, integer of the same width)
VIEWED: dict[str, tuple[torch.dtype, Any]] = {"bfloat16": (torch.bfloat16, np.uint16)}


def array_to_torch(array: np.ndarray) -> torch.Tensor:
    """``array`` as a torch tensor: bfloat16 as torch's bfloat16, a carried type in its carrier."""
    from graphopt.onnx.narrow import NUMPY_CARRIERS

    array = np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes a 0-d array 1-d
    if array.dtype.name in NUMPY_CARRIERS:
        array = array.astype(NUMPY_CARRIERS[array.dtype.name])
    if array.dtype.name in VIEWED:
        dtype, storage = VIEWED[array.dtype.name]
        return torch.from_numpy(array.view(storage).copy()).view(dtype)
    return torch.from_numpy(array)


def patch_onnx_tensor() -> None:
    """Make onnx2torch's ``OnnxTensor.to_torch`` read bfloat16, float8 and the other carried types (once)."""
    from onnx2torch.onnx_tensor import OnnxTensor

    if getattr(OnnxTensor.to_torch, "graphopt_viewed", False):
        return

    def to_torch(self: Any) -> torch.Tensor:
        return array_to_torch(self.to_numpy())

    to_torch.graphopt_viewed = True  # type: ignore[attr-defined]
    OnnxTensor.to_torch = to_torch  # type: ignore[method-assign]
