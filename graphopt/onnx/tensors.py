"""ONNX tensors of the types numpy lacks (bfloat16, float8) as torch tensors, for onnx2torch.

onnx2torch reads an initializer or a Constant's value with ``torch.from_numpy(numpy_helper.to_array(t))``,
which fails for bfloat16 and the float8 types: onnx gives them as ml_dtypes arrays, which torch cannot
take. torch has these types, so the array is viewed as the unsigned integer of the same width, handed
to torch, and viewed back as torch's type: bit for bit the ONNX values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: ml_dtypes name -> (torch dtype, integer of the same width)
VIEWED: dict[str, tuple[torch.dtype, Any]] = {
    "bfloat16": (torch.bfloat16, np.uint16),
    "float8_e4m3fn": (torch.float8_e4m3fn, np.uint8),
    "float8_e4m3fnuz": (torch.float8_e4m3fnuz, np.uint8),
    "float8_e5m2": (torch.float8_e5m2, np.uint8),
    "float8_e5m2fnuz": (torch.float8_e5m2fnuz, np.uint8),
}


def array_to_torch(array: np.ndarray) -> torch.Tensor:
    """``array`` as a torch tensor; an ml_dtypes bfloat16/float8 array as torch's same type."""
    array = np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes a 0-d array 1-d
    if array.dtype.name in VIEWED:
        dtype, storage = VIEWED[array.dtype.name]
        return torch.from_numpy(array.view(storage).copy()).view(dtype)
    return torch.from_numpy(array)


def patch_onnx_tensor() -> None:
    """Make onnx2torch's ``OnnxTensor.to_torch`` read bfloat16 and float8 tensors (once)."""
    from onnx2torch.onnx_tensor import OnnxTensor

    if getattr(OnnxTensor.to_torch, "graphopt_viewed", False):
        return

    def to_torch(self: Any) -> torch.Tensor:
        return array_to_torch(self.to_numpy())

    to_torch.graphopt_viewed = True  # type: ignore[attr-defined]
    OnnxTensor.to_torch = to_torch  # type: ignore[method-assign]
