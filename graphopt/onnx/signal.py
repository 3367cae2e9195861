"""ONNX's signal ops (DFT, STFT, MelWeightMatrix) as real PyTorch arithmetic every target lowers.

No compiled target has complex dtypes, so a transform of length ``n`` is two real matmuls with
constant cosine and sine matrices (``e^{-+2 pi i jk/n}`` split into its parts); zero-padding or
truncating the signal to ``n`` is folded into the matrices (rows past ``n`` are zero, rows past the
signal absent). The lengths, the axis and STFT's frame step are shape operands
(``graphopt.onnx.constants.SHAPE_OPERANDS``): a compiled model is built for their values, as for a
window's size. MelWeightMatrix's inputs are all such numbers, so its output is a constant computed
at conversion, step by step as the onnx reference computes it (its integer bin edges included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from graphopt.onnx.ops import Function


def _number(value: Any) -> Any:
    """A shape operand (a host array or a tensor) as a numpy scalar of its own dtype."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.reshape(-1)[0]


def _angles(rows: int, columns: int, n: int) -> np.ndarray:
    """``2 pi (j k mod n) / n`` for row j, column k: reduced mod n first, so a multiple of pi is exact."""
    j, k = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    return 2 * math.pi * ((j * k) % n) / n


def _along_last(x: torch.Tensor, matrix: np.ndarray, axis: int) -> torch.Tensor:
    """``x`` with its ``axis`` multiplied by the constant ``matrix`` (axis length -> columns)."""
    weights = torch.from_numpy(matrix).to(x.dtype)
    moved = torch.movedim(x, axis, -1)
    if x.dtype == torch.float64:  # TVM's torch frontend builds every matmul with a float32 result
        return torch.movedim((moved.unsqueeze(-1) * weights).sum(-2), -1, axis)
    return torch.movedim(moved @ weights, -1, axis)


def spectrum(
    real: torch.Tensor, imag: torch.Tensor | None, axis: int, n: int, *, inverse: bool, onesided: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The DFT of ``real + i imag`` along ``axis`` at length ``n`` (numpy's fft/ifft/rfft/irfft):
    the (real, imaginary) parts; the imaginary part is None for an inverse one-sided (irfft) result."""
    length = real.shape[axis]
    if inverse and onesided:  # Hermitian input: bins 0..n//2, each but 0 (and n/2) counted twice
        used = min(length, n // 2 + 1)
        theta = _angles(length, n, n)
        weight = np.where((np.arange(length) == 0) | (2 * np.arange(length) == n), 1.0, 2.0)
        weight = np.where(np.arange(length) < used, weight, 0.0)[:, None] / n
        out = _along_last(real, weight * np.cos(theta), axis)
        if imag is not None:
            out = out - _along_last(imag, weight * np.sin(theta), axis)
        return out, None
    columns = n // 2 + 1 if onesided else n
    theta = _angles(length, columns, n)
    inside = (np.arange(length) < n)[:, None]
    cos, sin = np.where(inside, np.cos(theta), 0.0), np.where(inside, np.sin(theta), 0.0)
    sign = 1.0 if inverse else -1.0
    scale = 1.0 / n if inverse else 1.0
    re = _along_last(real, cos * scale, axis)
    im = _along_last(real, sign * sin * scale, axis)
    if imag is not None:
        re = re - _along_last(imag, sign * sin * scale, axis)
        im = im + _along_last(imag, cos * scale, axis)
    return re, im


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32, or float64 for a float64 input (float16 and bfloat16 sums of many terms lose too much)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def dft(
    x: torch.Tensor,
    dft_length: Any = None,
    axis_input: Any = None,
    *,
    axis: int,
    inverse: bool,
    onesided: bool,
) -> torch.Tensor:
    """ONNX DFT (17, 20): ``x`` is [..., 1] (real) or [..., 2] (real, imaginary); so is the result."""
    rank = x.dim()
    dim = (int(_number(axis_input)) if axis_input is not None else axis) % rank
    if dim == rank - 1:
        raise ValueError("DFT's axis is the last one, which holds the real and imaginary parts")
    value = x.to(_compute_dtype(x))
    real = value[..., 0]
    imag = value[..., 1] if x.shape[-1] == 2 else None
    length = real.shape[dim]
    default = 2 * (length - 1) if inverse and onesided else length  # irfft: an even length
    n = int(_number(dft_length)) if dft_length is not None else default
    re, im = spectrum(real, imag, dim, n, inverse=inverse, onesided=onesided)
    out = re.unsqueeze(-1) if im is None else torch.stack((re, im), dim=-1)
    return out.to(x.dtype)


def stft(
    signal: torch.Tensor,
    frame_step: Any,
    window: torch.Tensor | None = None,
    frame_length: Any = None,
    *,
    onesided: bool,
) -> torch.Tensor:
    """ONNX STFT: frames of ``signal`` [batch, length, 1 or 2] every ``frame_step`` samples, weighted
    by ``window``, each transformed -> [batch, frames, bins, 2]. The frames are one gather with a
    constant index (positions past the signal read zero, as the reference pads them)."""
    step = int(_number(frame_step))
    samples = signal.shape[1]
    default = window.shape[0] if window is not None else samples
    n = int(_number(frame_length)) if frame_length is not None else default
    size = window.shape[0] if window is not None else n
    frames = 1 + (samples - n) // step
    positions = np.arange(frames)[:, None] * step + np.arange(size)[None, :]
    index = torch.from_numpy(np.minimum(positions, samples - 1).reshape(-1))
    value = signal.to(_compute_dtype(signal))
    framed = value.index_select(1, index).reshape(signal.shape[0], frames, size, signal.shape[-1])
    if (positions >= samples).any():
        framed = framed * torch.from_numpy(positions < samples).to(value.dtype).reshape(1, frames, size, 1)
    if window is not None:
        framed = framed * window.to(value.dtype).reshape(1, 1, size, 1)
    real = framed[..., 0]
    imag = framed[..., 1] if signal.shape[-1] == 2 else None
    re, im = spectrum(real, imag, 2, n, inverse=False, onesided=onesided)
    assert im is not None
    return torch.stack((re, im), dim=-1).to(signal.dtype)


def mel_weight_matrix(
    num_mel_bins: Any,
    dft_length: Any,
    sample_rate: Any,
    lower_edge_hertz: Any,
    upper_edge_hertz: Any,
    *,
    dtype: torch.dtype,
) -> torch.Tensor:
    """ONNX MelWeightMatrix [dft_length // 2 + 1, num_mel_bins]: triangular filters between mel-spaced
    bin edges, in the onnx reference's arithmetic (the inputs' own numpy types, integer edges)."""
    bins, length, rate = _number(num_mel_bins), _number(dft_length), _number(sample_rate)
    low, high = _number(lower_edge_hertz), _number(upper_edge_hertz)
    edges = np.arange(0, bins + 2)
    low_mel = 2595 * np.log1p(low / 700) / np.log(10)
    high_mel = 2595 * np.log1p(high / 700) / np.log(10)
    step = (high_mel - low_mel) / edges.shape[0]
    hertz = 700 * np.expm1((edges * step + low_mel) / 2595 * np.log(10))
    edges = (((length + 1) * hertz) // rate).astype(int)
    output = np.zeros((int(length) // 2 + 1, int(bins)))
    for i in range(int(bins)):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            output[center, i] = 1
        else:
            output[left : center + 1, i] = (np.arange(left, center + 1) - left) / float(center - left)
        if right > center:
            output[center:right, i] = (right - np.arange(center, right)) / float(right - center)
    return torch.from_numpy(output).to(dtype)


def register(add: Callable[..., None]) -> None:
    """Register DFT, STFT and MelWeightMatrix through ``add(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    from graphopt.onnx.ops import ONNX_DTYPES

    def result(module: Any, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def dft_at(default_axis: int) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            a = node.attributes
            module = Function(
                dft,
                axis=int(a.get("axis", default_axis)),
                inverse=bool(a.get("inverse", 0)),
                onesided=bool(a.get("onesided", 0)),
            )
            return result(module, node)

        return convert

    add("DFT", (20,), dft_at(-2))  # first: ``add`` fills only the versions not yet registered
    add("DFT", (17,), dft_at(1))

    def stft_converter(node: Any, graph: Any) -> Any:
        return result(Function(stft, onesided=bool(node.attributes.get("onesided", 1))), node)

    add("STFT", (17,), stft_converter)

    def mel_converter(node: Any, graph: Any) -> Any:
        dtype = ONNX_DTYPES[int(node.attributes.get("output_datatype", 1))]
        return result(Function(mel_weight_matrix, dtype=dtype), node)

    add("MelWeightMatrix", (17,), mel_converter)
