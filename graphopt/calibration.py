"""Calibration for static quantization: the user's data, observers, and the range each method picks.

Calibration data may be a tensor or array (the whole set, batched here), an iterable of batches
(tensors, or tuples whose first entries are the model's inputs: a ``DataLoader`` yielding
``(x, y)`` works and its ``y`` becomes the labels), or an ``.npz`` file (``load_npz``). Every batch
is checked before anything runs: empty data, a shape that does not match the example inputs, or a
NaN/Inf each give one clear ``InputError``.

An ``Observer`` sits on an activation while the calibration data runs: it keeps the exact min and
max plus a fixed-size uniform sample of the values, from which the percentile and MSE methods pick
a clipping range. ``choose_qparams`` turns a range into (scale, zero_point, qmin, qmax).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graphopt.errors import InputError

METHODS = ("minmax", "percentile", "mse")
DEFAULT_BATCH = 64
SAMPLE_SIZE = 1 << 16


@dataclass
class CalibrationSet:
    """Validated calibration batches (tuples of tensors, one per model input) and any labels."""

    batches: list[tuple[torch.Tensor, ...]]
    labels: torch.Tensor | None = None

    @property
    def samples(self) -> int:
        return sum(batch[0].shape[0] for batch in self.batches)


def load_npz(path: str | Path, key: str | None = None) -> np.ndarray:
    """The calibration inputs stored in an ``.npz`` (or ``.npy``): ``key``, else the only/first array."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"calibration file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise InputError(f"cannot read calibration file {path}: {error}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    names = list(loaded.files)
    if not names:
        raise InputError(f"calibration file {path} holds no arrays")
    if key is None:
        key = next((n for n in ("x", "inputs", "data") if n in names), names[0])
    if key not in names:
        raise InputError(f"calibration file {path} has no array '{key}' (it has: {', '.join(names)})")
    return loaded[key]


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return None


def _split(tensor: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    return iter(tensor.split(batch)) if tensor.dim() > 0 else iter([tensor])


def _raw_batches(data: Any, n_inputs: int) -> Iterator[Any]:
    single = _as_tensor(data)
    if single is not None:
        return _split(single, DEFAULT_BATCH)
    if isinstance(data, (str, Path)):
        return _split(torch.from_numpy(load_npz(data)), DEFAULT_BATCH)
    if isinstance(data, (tuple, list)) and n_inputs > 1 and len(data) == n_inputs:
        tensors = [_as_tensor(item) for item in data]
        if all(t is not None for t in tensors):  # one tensor per input: the whole set
            return iter(zip(*(_split(t, DEFAULT_BATCH) for t in tensors), strict=False))  # type: ignore[arg-type]
    if isinstance(data, Iterable):
        return iter(data)
    raise InputError(
        f"calibration data must be a tensor, an array, an .npz path or an iterable of batches, got {type(data).__name__}"
    )


def prepare(data: Any, example_inputs: tuple[torch.Tensor, ...], labels: Any = None) -> CalibrationSet:
    """Validate calibration data against the model's example inputs; collect labels a loader yields."""
    if data is None:
        raise InputError("static quantization needs calibration data (or use dynamic quantization)")
    n_inputs = len(example_inputs)
    batches: list[tuple[torch.Tensor, ...]] = []
    loader_labels: list[torch.Tensor] = []
    for index, raw in enumerate(_raw_batches(data, n_inputs)):
        items = list(raw) if isinstance(raw, (tuple, list)) else [raw]
        tensors = [_as_tensor(item) for item in items]
        if len(tensors) < n_inputs or any(t is None for t in tensors[:n_inputs]):
            raise InputError(
                f"calibration batch {index} holds {len(items)} item(s); the model takes {n_inputs} tensor input(s)"
            )
        batch = tuple(t.to(example.dtype) for t, example in zip(tensors[:n_inputs], example_inputs, strict=True))  # type: ignore[union-attr]
        _check_batch(index, batch, example_inputs)
        batches.append(batch)
        if len(tensors) > n_inputs and tensors[n_inputs] is not None:
            loader_labels.append(tensors[n_inputs])  # type: ignore[arg-type]
    if not batches or all(b[0].shape[0] == 0 for b in batches):
        raise InputError("calibration data is empty: give at least one sample")
    label_tensor = _as_tensor(labels) if labels is not None else None
    if label_tensor is None and loader_labels and len(loader_labels) == len(batches):
        label_tensor = torch.cat([t.reshape(-1) for t in loader_labels])
    calibration = CalibrationSet(batches, label_tensor)
    if label_tensor is not None and label_tensor.shape[0] != calibration.samples:
        raise InputError(f"{label_tensor.shape[0]} labels given for {calibration.samples} calibration samples")
    return calibration


def _check_batch(index: int, batch: tuple[torch.Tensor, ...], example_inputs: tuple[torch.Tensor, ...]) -> None:
    for position, (tensor, example) in enumerate(zip(batch, example_inputs, strict=True)):
        where = f"calibration batch {index}, input {position}"
        if tensor.dim() != example.dim() or tuple(tensor.shape[1:]) != tuple(example.shape[1:]):
            expected = "Nx" + "x".join(str(s) for s in example.shape[1:])
            got = "x".join(str(s) for s in tensor.shape)
            raise InputError(f"{where} has shape {got}, the model expects {expected}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = "NaN" if torch.isnan(tensor).any() else "Inf"
            raise InputError(f"{where} contains {bad} values; calibration needs finite data")


class Observer(nn.Module):
    """Pass-through module recording an activation's range and a uniform sample of its values."""

    graphopt_kind = "observer"

    def __init__(self, sample_size: int = SAMPLE_SIZE, seed: int = 0) -> None:
        super().__init__()
        self.low = float("inf")
        self.high = float("-inf")
        self.seen = 0
        self.sample_size = sample_size
        self.generator = torch.Generator().manual_seed(seed)
        self.samples: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x.detach().reshape(-1).float()
        if values.numel():
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))
            keep = min(values.numel(), self.sample_size)
            index = torch.randint(values.numel(), (keep,), generator=self.generator)
            self.samples.append(values[index])
            self.seen += values.numel()
        return x

    def sample(self) -> torch.Tensor:
        joined = torch.cat(self.samples) if self.samples else torch.zeros(1)
        if joined.numel() > self.sample_size:
            joined = joined[torch.randperm(joined.numel(), generator=self.generator)[: self.sample_size]]
        return joined

    def value_range(self, method: str, percentile: float = 99.99) -> tuple[float, float]:
        """The (low, high) range ``method`` picks for this activation."""
        if self.seen == 0:
            raise InputError("an observer saw no values during calibration")
        if method == "minmax":
            return self.low, self.high
        values = self.sample()
        if method == "percentile":
            low = float(torch.quantile(values, 1 - percentile / 100)) if self.low < 0 else self.low
            return min(low, 0.0), max(float(torch.quantile(values, percentile / 100)), 0.0)
        if method == "mse":
            return mse_range(values, self.low, self.high)
        raise InputError(f"unknown calibration method '{method}' (choose from {', '.join(METHODS)})")


def mse_range(values: torch.Tensor, low: float, high: float, steps: int = 64) -> tuple[float, float]:
    """Shrink [low, high] by the factor whose 8-bit fake-quantization of ``values`` has least MSE."""
    best, best_error = (low, high), float("inf")
    for factor in torch.linspace(0.2, 1.0, steps).tolist():
        candidate = (min(low * factor, 0.0), max(high * factor, 0.0))
        scale, zero_point, qmin, qmax = choose_qparams(*candidate, symmetric=low < 0)
        restored = (torch.clamp(torch.round(values / scale) + zero_point, qmin, qmax) - zero_point) * scale
        error = float(((restored - values) ** 2).mean())
        if error < best_error:
            best, best_error = candidate, error
    return best


def choose_qparams(low: float, high: float, *, symmetric: bool) -> tuple[float, int, int, int]:
    """(scale, zero_point, qmin, qmax) covering [low, high]: int8 symmetric or uint8 affine.

    The range always includes 0 so that zero (padding, ReLU's output) is exact.
    """
    low, high = min(low, 0.0), max(high, 0.0)
    if symmetric:
        bound = max(-low, high)
        return max(bound / 127.0, 1e-8), 0, -128, 127
    scale = max((high - low) / 255.0, 1e-8)
    zero_point = int(np.clip(round(-low / scale), 0, 255))
    return scale, zero_point, 0, 255


def weight_scales(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 scales, one per output channel (dim 0) or one repeated for the whole tensor."""
    flat = weight.detach().reshape(weight.shape[0], -1).abs()
    bound = flat.amax(dim=1) if per_channel else flat.max().expand(weight.shape[0])
    return torch.clamp(bound / 127.0, min=1e-12).float().contiguous()


def quantize_weight(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 weights (range -127..127) for the given per-output-channel scales."""
    view = scales.reshape(-1, *([1] * (weight.dim() - 1)))
    return torch.clamp(torch.round(weight.detach() / view), -127, 127).to(torch.int8)
