"""The compressed weights file of an artifact: codebook + packed b-bit indices, zeros left out, entropy-coded.

Each tensor is stored in the smallest of these forms, all of them exact (the decoded bits equal the
encoded ones, ``-0.0`` and NaN payloads included, because values are compared as unsigned integers):

* sparse: where at least a quarter of the elements are ``+0.0``, a packed bit mask of the non-zero
  positions, then only the non-zero elements in one of the forms below;
* codebook: where at most 256 distinct values remain, the sorted distinct values (the codebook) and
  one ``b``-bit index per element, ``b = ceil(log2(distinct))``, packed most significant bit first;
* channel codebook: where more values remain but each output channel (first or last axis) has at
  most 256 (``share_weights(per_channel=True)``), one codebook per channel and packed indices;
* scaled codebook: one codebook for the tensor and one scale per output channel, each element
  ``float32(scale[c] * codebook[index])`` (``share_weights(channel_scale=True)``, coremltools'
  per-channel-scale palettization). The values alone do not reveal the factors, so the encoder is
  given them as a ``ScaledCodebook`` hint; it is used only if it rebuilds the tensor bit for bit.
  Scales and centroids are stored as float16 where that is exact;
* half: float32 elements that are all exactly float16 values (``share_weights(half_biases=True)``),
  stored in two bytes each;
* raw: the elements' bytes.

The concatenated tensors are then entropy-coded by ``lzma`` (the standard library) or ``zstandard``,
whichever is smaller for this file (``coder="auto"``), or left as they are where neither pays.

File layout: ``GOPW`` | version (u8) | coder (u8) | decoded length (u64) | crc32 of decoded (u32) |
coded bytes. Decoded: header length (u32) | JSON header (one entry per tensor) | the tensors' bytes.
``decode_weights`` checks every length, the CRC and the header, and raises ``ArtifactError`` with
one line saying what is wrong; this module needs numpy only, so the deploy-time loader can use it.

>>> blob, stats = encode_weights([("fc1.weight", weight), ("fc1.bias", bias)])
>>> [name for name, _ in decode_weights(blob)]
['fc1.weight', 'fc1.bias']
"""

from __future__ import annotations

import json
import lzma
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from graphopt.errors import ArtifactError, InputError

MAGIC = b"GOPW"
VERSION = 1
CODERS = ("none", "lzma", "zstd")
_PREAMBLE = struct.Struct("<4sBBQI")
_MAX_CODEBOOK = 256
_SPARSE_FRACTION = 0.25


@dataclass(frozen=True)
class TensorStats:
    """How one tensor was stored: its form, index bits, distinct values, bytes as float and as stored."""

    name: str
    form: str
    bits: int
    distinct: int
    nonzero: int
    elements: int
    dense_bytes: int
    stored_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScaledCodebook:
    """A tensor as ``float32(scales[c] * centroids[labels])``, ``c`` running along ``axis``.

    ``labels`` has the tensor's shape with ``axis`` moved first; ``values()`` is the tensor.
    """

    axis: int
    scales: np.ndarray
    centroids: np.ndarray
    labels: np.ndarray

    def values(self) -> np.ndarray:
        return rebuild_scaled(self.scales, self.centroids, self.labels, self.axis)


def rebuild_scaled(scales: np.ndarray, centroids: np.ndarray, labels: np.ndarray, axis: int) -> np.ndarray:
    """``float32(scales[c] * centroids[labels])`` with the channel axis moved from 0 back to ``axis``."""
    scales = np.asarray(scales, dtype=np.float32).reshape(-1, *([1] * (labels.ndim - 1)))
    moved = scales * np.asarray(centroids, dtype=np.float32)[labels.astype(np.int64)]
    return np.ascontiguousarray(np.moveaxis(moved.astype(np.float32), 0, axis))


def check_bits(bits: int) -> int:
    """``bits`` if it is an int from 1 to 8, else an ``InputError``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 8:
        raise InputError(f"bits must be an integer from 1 to 8, got {bits!r}")
    return int(bits)


def index_bits(distinct: int) -> int:
    """The fewest bits (at least 1) that index ``distinct`` values."""
    return max(1, int(np.ceil(np.log2(max(distinct, 1)))))


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Pack unsigned ``indices`` (each below ``2**bits``) into ``bits`` bits apiece, MSB first."""
    bits = check_bits(bits)
    flat = np.ascontiguousarray(indices, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise InputError(f"indices must lie in 0..{(1 << bits) - 1} to pack into {bits} bits")
    planes = np.unpackbits(flat.astype(np.uint8)[:, None], axis=1)[:, 8 - bits :]
    return np.packbits(planes.ravel()).tobytes()


def unpack_indices(data: bytes, bits: int, count: int) -> np.ndarray:
    """The ``count`` indices ``pack_indices`` packed into ``data`` (uint8)."""
    bits = check_bits(bits)
    needed = (count * bits + 7) // 8
    if len(data) != needed:
        raise ArtifactError(f"corrupt compressed weights: {len(data)} index bytes, expected {needed}")
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (planes * weights).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def _as_words(array: np.ndarray) -> np.ndarray:
    """The elements as unsigned integers of the same width (exact comparison of float bit patterns)."""
    flat = np.ascontiguousarray(array).ravel()
    return flat.view(np.dtype(f"u{flat.dtype.itemsize}"))


def _encode_values(words: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
    """Codebook + packed indices where there are few distinct values, else the raw words."""
    codebook, indices = np.unique(words, return_inverse=True)
    raw = words.tobytes()
    if len(codebook) <= _MAX_CODEBOOK:
        bits = index_bits(len(codebook))
        packed = [codebook.tobytes(), pack_indices(indices, bits)]
        if sum(map(len, packed)) < len(raw):
            return {"form": "codebook", "bits": bits, "distinct": len(codebook)}, packed
    if words.dtype == np.uint32 and words.size:
        with np.errstate(over="ignore", invalid="ignore"):
            half = words.view(np.float32).astype(np.float16)
        if np.array_equal(half.astype(np.float32).view(np.uint32), words):  # bit for bit: -0.0 kept, NaNs not
            return {"form": "half", "bits": 16, "distinct": len(codebook)}, [half.tobytes()]
    return {"form": "raw", "bits": 8 * words.dtype.itemsize, "distinct": len(codebook)}, [raw]


def _encode_channels(words: np.ndarray, shape: tuple[int, ...]) -> tuple[dict[str, Any], list[bytes]] | None:
    """One codebook per output channel (axis 0 or the last), the smaller of the two; None if neither fits."""
    best: tuple[dict[str, Any], list[bytes]] | None = None
    for axis in sorted({0, len(shape) - 1}) if len(shape) >= 2 else []:
        rows = np.moveaxis(words.reshape(shape), axis, 0).reshape(shape[axis], -1)
        books = [np.unique(row, return_inverse=True) for row in rows]
        distinct = max(len(book) for book, _ in books)
        if distinct > _MAX_CODEBOOK:
            continue
        bits = index_bits(distinct)
        counts = np.array([len(book) for book, _ in books], dtype=np.uint16)
        indices = np.concatenate([inverse.ravel() for _, inverse in books])
        packed = [counts.tobytes(), np.concatenate([book for book, _ in books]).tobytes(), pack_indices(indices, bits)]
        entry = {"form": "channel codebook", "bits": bits, "distinct": distinct, "axis": axis}
        if best is None or sum(map(len, packed)) < sum(map(len, best[1])):
            best = entry, packed
    return best


def _encode_scaled(array: np.ndarray, hints: Sequence[ScaledCodebook]) -> tuple[dict[str, Any], list[bytes]] | None:
    """The scaled-codebook form, from the first hint that rebuilds ``array`` bit for bit; else None."""
    for hint in hints:
        if array.dtype != np.float32 or hint.labels.size != array.size or len(hint.centroids) > _MAX_CODEBOOK:
            continue
        if len(array.shape) < 1 or hint.labels.shape != np.moveaxis(array, hint.axis, 0).shape:
            continue
        if hint.values().tobytes() != np.ascontiguousarray(array).tobytes():
            continue
        scales, scale_dtype = _narrowest(hint.scales)
        centroids, centroid_dtype = _narrowest(hint.centroids)
        bits = index_bits(len(hint.centroids))
        packed = [scales.tobytes(), centroids.tobytes(), pack_indices(hint.labels, bits)]
        axis = hint.axis % array.ndim
        entry = {"form": "scaled codebook", "bits": bits, "distinct": len(hint.centroids), "axis": axis,
                 "scale_dtype": scale_dtype, "centroid_dtype": centroid_dtype}  # fmt: skip
        return entry, packed
    return None


def _narrowest(values: np.ndarray) -> tuple[np.ndarray, str]:
    """``values`` as float16 where that is exact (bit for bit), else as float32; and the dtype's name."""
    full = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        half = full.astype(np.float16)
    if np.array_equal(half.astype(np.float32).view(np.uint32), full.view(np.uint32)):
        return half, "float16"
    return full, "float32"


def _encode_tensor(
    name: str, array: np.ndarray, hints: Sequence[ScaledCodebook] = ()
) -> tuple[dict[str, Any], list[bytes], TensorStats]:
    words = _as_words(array)
    entry: dict[str, Any] = {"name": name, "dtype": str(array.dtype), "shape": list(array.shape)}
    scaled = _encode_scaled(array, hints) if hints else None
    if scaled is not None:
        values, packed = scaled
        entry.update(values, count=int(words.size), lengths=[len(p) for p in packed])
        stats = TensorStats(
            name, "scaled codebook", values["bits"], values["distinct"], int(np.count_nonzero(words)),
            int(array.size), int(array.nbytes), sum(map(len, packed)),
        )  # fmt: skip
        return entry, packed, stats
    segments: list[bytes] = []
    nonzero = words != 0
    if words.size and 1 - nonzero.mean() >= _SPARSE_FRACTION:
        segments.append(np.packbits(nonzero).tobytes())
        words = words[nonzero]
        entry["sparse"] = True
    values, packed = _encode_values(words)
    if values["form"] in ("raw", "half") and not entry.get("sparse"):
        channels = _encode_channels(words, array.shape)
        if channels is not None and sum(map(len, channels[1])) < len(packed[0]):
            values, packed = channels
    entry.update(values, count=int(words.size), lengths=[len(s) for s in [*segments, *packed]])
    segments += packed
    form = ("sparse " if entry.get("sparse") else "") + values["form"]
    distinct = values["distinct"] + int(bool(entry.get("sparse")) and words.size < array.size)
    stats = TensorStats(
        name, form, values["bits"], distinct, int(np.count_nonzero(nonzero)), int(array.size),
        int(array.nbytes), sum(map(len, segments)),
    )  # fmt: skip
    return entry, segments, stats


def _compress(data: bytes, coder: str) -> bytes:
    if coder == "lzma":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    if coder == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=22).compress(data)
    return data


def _decompress(data: bytes, coder: str, length: int) -> bytes:
    try:
        if coder == "lzma":
            return lzma.decompress(data)
        if coder == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=length)
    except ImportError as error:
        raise ArtifactError("these weights are zstd-coded and the zstandard package is not installed") from error
    except Exception as error:  # lzma.LZMAError, zstandard.ZstdError
        raise ArtifactError(f"corrupt compressed weights: the {coder} stream does not decode ({error})") from error
    return data


def encode_weights(
    tensors: Sequence[tuple[str, np.ndarray]], *, coder: str = "auto", hints: Sequence[ScaledCodebook] = ()
) -> tuple[bytes, list[TensorStats], str]:
    """The weights file for ``tensors`` (name, array) pairs; returns ``(blob, per-tensor stats, coder)``.

    ``hints``: the factors of scaled-codebook tensors (matched by shape and exact rebuild, not by name).
    """
    if coder != "auto" and coder not in CODERS:
        raise InputError(f"unknown weight coder '{coder}' (known: auto, {', '.join(CODERS)})")
    entries, segments, stats = [], [], []
    for name, array in tensors:
        entry, parts, stat = _encode_tensor(name, np.asarray(array), hints)
        entries.append(entry)
        segments += parts
        stats.append(stat)
    header = json.dumps(entries, separators=(",", ":")).encode()
    decoded = struct.pack("<I", len(header)) + header + b"".join(segments)
    candidates = CODERS if coder == "auto" else (coder,)
    coded = {name: _compress(decoded, name) for name in candidates if name != "zstd" or _has_zstd()}
    best = min(coded, key=lambda name: len(coded[name]))
    preamble = _PREAMBLE.pack(MAGIC, VERSION, CODERS.index(best), len(decoded), zlib.crc32(decoded))
    return preamble + coded[best], stats, best


def _has_zstd() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def decode_weights(blob: bytes) -> list[tuple[str, np.ndarray]]:
    """The (name, array) pairs of a weights file; ``ArtifactError`` naming the fault if it is corrupt."""
    if len(blob) < _PREAMBLE.size:
        raise ArtifactError(f"corrupt compressed weights: {len(blob)} bytes, shorter than the header")
    magic, version, coder_id, length, crc = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ArtifactError("corrupt compressed weights: not a graphopt weights file (bad magic)")
    if version != VERSION or coder_id >= len(CODERS):
        raise ArtifactError(f"compressed weights of format version {version}, coder {coder_id}: rebuild the artifact")
    decoded = _decompress(blob[_PREAMBLE.size :], CODERS[coder_id], length)
    if len(decoded) != length or zlib.crc32(decoded) != crc:
        raise ArtifactError("corrupt compressed weights: the decoded bytes fail their length or CRC check")
    try:
        (header_length,) = struct.unpack_from("<I", decoded)
        entries = json.loads(decoded[4 : 4 + header_length])
        return _decode_tensors(entries, memoryview(decoded)[4 + header_length :])
    except ArtifactError:
        raise
    except Exception as error:  # a header that passed the CRC but does not describe its data
        raise ArtifactError(f"corrupt compressed weights: {type(error).__name__}: {error}") from error


def _decode_tensors(entries: list[dict[str, Any]], data: memoryview) -> list[tuple[str, np.ndarray]]:
    tensors, offset = [], 0
    for entry in entries:
        parts = []
        for length in entry["lengths"]:
            parts.append(bytes(data[offset : offset + length]))
            offset += length
        tensors.append((entry["name"], _decode_tensor(entry, parts)))
    if offset != len(data):
        raise ArtifactError(f"corrupt compressed weights: {len(data) - offset} bytes left after the last tensor")
    return tensors


def _decode_tensor(entry: dict[str, Any], parts: list[bytes]) -> np.ndarray:
    dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
    word = np.dtype(f"u{dtype.itemsize}")
    size, count = int(np.prod(shape, dtype=np.int64)), int(entry["count"])
    mask = None
    if entry.get("sparse"):
        mask = np.unpackbits(np.frombuffer(parts.pop(0), dtype=np.uint8))[:size].astype(bool)
        if mask.size != size or int(mask.sum()) != count:
            raise ArtifactError(f"corrupt compressed weights: the mask of '{entry['name']}' does not match its size")
    if entry["form"] == "channel codebook":
        return _decode_channels(entry, parts, word).view(dtype).copy()
    if entry["form"] == "scaled codebook":
        return _decode_scaled(entry, parts, shape)
    if entry["form"] == "codebook":
        codebook = np.frombuffer(parts[0], dtype=word)
        indices = unpack_indices(parts[1], int(entry["bits"]), count)
        if indices.size and int(indices.max()) >= len(codebook):
            raise ArtifactError(f"corrupt compressed weights: an index of '{entry['name']}' is past its codebook")
        values = codebook[indices]
    elif entry["form"] == "half":
        if dtype != np.float32:
            raise ArtifactError(f"corrupt compressed weights: '{entry['name']}' is stored as half but is {dtype}")
        values = np.frombuffer(parts[0], dtype=np.float16).astype(np.float32).view(word)
    else:
        values = np.frombuffer(parts[0], dtype=word)
    if values.size != count:
        raise ArtifactError(f"corrupt compressed weights: '{entry['name']}' has {values.size} values, expected {count}")
    if mask is None:
        words = values
    else:
        words = np.zeros(size, dtype=word)
        words[mask] = values
    return words.view(dtype).reshape(shape).copy()


def _decode_scaled(entry: dict[str, Any], parts: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    axis, count = int(entry["axis"]), int(entry["count"])
    scales = np.frombuffer(parts[0], dtype=np.dtype(entry["scale_dtype"])).astype(np.float32)
    centroids = np.frombuffer(parts[1], dtype=np.dtype(entry["centroid_dtype"])).astype(np.float32)
    if len(scales) != shape[axis] or count != int(np.prod(shape, dtype=np.int64)):
        raise ArtifactError(f"corrupt compressed weights: the scales of '{entry['name']}' do not match its shape")
    indices = unpack_indices(parts[2], int(entry["bits"]), count)
    if indices.size and int(indices.max()) >= len(centroids):
        raise ArtifactError(f"corrupt compressed weights: an index of '{entry['name']}' is past its codebook")
    moved = (shape[axis], *(d for i, d in enumerate(shape) if i != axis))
    return rebuild_scaled(scales, centroids, indices.reshape(moved), axis)


def _decode_channels(entry: dict[str, Any], parts: list[bytes], word: np.dtype) -> np.ndarray:
    shape, axis = tuple(entry["shape"]), int(entry["axis"])
    counts = np.frombuffer(parts[0], dtype=np.uint16).astype(np.int64)
    books = np.frombuffer(parts[1], dtype=word)
    if len(counts) != shape[axis] or int(counts.sum()) != len(books):
        raise ArtifactError(f"corrupt compressed weights: the codebooks of '{entry['name']}' do not match its shape")
    per_row = int(entry["count"]) // max(len(counts), 1)
    indices = unpack_indices(parts[2], int(entry["bits"]), int(entry["count"])).reshape(len(counts), per_row)
    if (indices >= counts[:, None]).any():
        raise ArtifactError(f"corrupt compressed weights: an index of '{entry['name']}' is past its codebook")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = books[starts[:, None] + indices]
    moved = (shape[axis], *(d for i, d in enumerate(shape) if i != axis))
    return np.moveaxis(rows.reshape(moved), 0, axis)
