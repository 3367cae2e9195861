"""The compressed weights format: exact round trips, packed sizes, and corrupt files refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from graphopt.compression.codec import (
    ScaledCodebook,
    decode_weights,
    encode_weights,
    pack_indices,
    unpack_indices,
)
from graphopt.errors import ArtifactError, InputError


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.data())
def test_pack_unpack_round_trips_bit_exactly(bits: int, data: st.DataObject) -> None:
    indices = data.draw(hnp.arrays(np.uint8, st.integers(0, 300), elements=st.integers(0, (1 << bits) - 1)))
    packed = pack_indices(indices, bits)
    assert len(packed) == (indices.size * bits + 7) // 8
    assert np.array_equal(unpack_indices(packed, bits, indices.size), indices)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12)),
    st.integers(1, 300),
    st.floats(0, 1),
)
def test_weights_round_trip_bit_exactly(values: np.ndarray, distinct: int, zero_fraction: float) -> None:
    """Any float32 bits (NaN payloads, -0.0, infinities), few or many distinct values, dense or sparse."""
    rng = np.random.default_rng(values.size)
    palette = values.ravel()[: max(1, distinct)]
    shared = palette[rng.integers(0, len(palette), values.shape)] if values.size else values
    shared = np.where(rng.random(values.shape) < zero_fraction, np.float32(0), shared).astype(np.float32)
    tensors = [("any", values), ("shared", shared), ("int", np.arange(7, dtype=np.int32).reshape(7, 1))]
    blob, stats, _ = encode_weights(tensors)
    decoded = decode_weights(blob)
    assert [name for name, _ in decoded] == ["any", "shared", "int"]
    for (_, before), (_, after) in zip(tensors, decoded, strict=True):
        assert after.dtype == before.dtype and after.shape == before.shape
        assert after.tobytes() == before.tobytes()
    assert stats[1].distinct == len(np.unique(shared.view(np.uint32)))


def test_a_sparse_four_bit_layer_is_stored_in_about_its_entropy() -> None:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(16).astype(np.float32)[rng.integers(0, 16, (256, 128))]
    weights[rng.random(weights.shape) < 0.9] = 0
    blob, stats, _ = encode_weights([("w", weights)])
    assert stats[0].form == "sparse codebook" and stats[0].bits == 4
    # mask: H(0.1) = 0.47 bit per weight; indices: 4 bits per non-zero weight; the coder gets close to that
    entropy_bytes = weights.size * (0.469 + 0.1 * 4) / 8
    assert len(blob) < 1.3 * entropy_bytes
    assert len(blob) < weights.nbytes / 30


@pytest.mark.parametrize("coder", ["none", "lzma", "zstd"])
def test_every_coder_decodes(coder: str) -> None:
    weights = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    blob, _, used = encode_weights([("w", weights)], coder=coder)
    assert used == coder
    assert np.array_equal(decode_weights(blob)[0][1], weights)


def _corrupt(blob: bytes, where: int) -> bytes:
    return blob[:where] + bytes([blob[where] ^ 0x40]) + blob[where + 1 :]


@pytest.mark.parametrize("where", [0, 5, 10, 20, -1])
def test_a_corrupt_file_is_refused_with_one_line(where: int) -> None:
    weights = np.arange(1000, dtype=np.float32).reshape(10, 100) % 7
    blob, _, _ = encode_weights([("w", weights)], coder="lzma")
    with pytest.raises(ArtifactError, match="compressed weights") as error:
        decode_weights(_corrupt(blob, where % len(blob)))
    assert "\n" not in str(error.value)
    with pytest.raises(ArtifactError, match="shorter than the header"):
        decode_weights(blob[:7])


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bits_outside_one_to_eight_are_refused(bits: object) -> None:
    with pytest.raises(InputError, match="bits must be an integer from 1 to 8"):
        pack_indices(np.zeros(4, np.uint8), bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("axis", [0, -1])
def test_one_codebook_per_channel_round_trips(axis: int) -> None:
    """Per-channel sharing: 16 values per output channel, 64 channels with different values."""
    rng = np.random.default_rng(1)
    books = rng.standard_normal((64, 16)).astype(np.float32)
    weights = np.take_along_axis(books, rng.integers(0, 16, (64, 100)), axis=1).reshape(64, 10, 10)
    weights = np.ascontiguousarray(np.moveaxis(weights, 0, axis))
    blob, stats, _ = encode_weights([("w", weights)], coder="none")
    assert stats[0].form == "channel codebook" and stats[0].bits == 4 and stats[0].distinct == 16
    # 64 counts (u16), at most 64 codebooks of 16 floats, 4-bit indices: under a third of float32
    assert stats[0].stored_bytes <= 64 * 2 + 64 * 16 * 4 + 6400 // 2 < weights.nbytes / 3
    assert decode_weights(blob)[0][1].tobytes() == weights.tobytes()


def _scaled(axis: int, half_centroids: bool = False) -> tuple[np.ndarray, ScaledCodebook]:
    rng = np.random.default_rng(2)
    scales = rng.uniform(0.01, 5, 48).astype(np.float16).astype(np.float32)
    centroids = rng.standard_normal(16).astype(np.float16 if half_centroids else np.float32).astype(np.float32)
    factors = ScaledCodebook(axis % 3, scales, centroids, rng.integers(0, 16, (48, 8, 9)))
    return factors.values(), factors


@pytest.mark.parametrize(("axis", "half_centroids"), [(0, False), (-1, False), (0, True)])
def test_a_scaled_codebook_round_trips_from_its_hint(axis: int, half_centroids: bool) -> None:
    """One codebook times a scale per channel: 48 * 16 distinct values, stored as 16 + 48 + 4-bit indices."""
    weights, factors = _scaled(axis, half_centroids)
    assert len(np.unique(weights)) > 256  # no plain codebook fits
    blob, stats, _ = encode_weights([("w", weights)], coder="none", hints=[factors])
    assert stats[0].form == "scaled codebook" and stats[0].bits == 4 and stats[0].distinct == 16
    centroid_bytes = 2 if half_centroids else 4  # float16 where that is exact (the scales are here)
    assert stats[0].stored_bytes == 48 * 2 + 16 * centroid_bytes + weights.size // 2
    assert decode_weights(blob)[0][1].tobytes() == weights.tobytes()


def test_a_hint_that_does_not_rebuild_the_tensor_is_not_used() -> None:
    weights, factors = _scaled(0)
    changed = weights.copy()
    changed.flat[7] = np.nextafter(changed.flat[7], np.float32(np.inf))  # one ulp off
    blob, stats, _ = encode_weights([("w", changed)], coder="none", hints=[factors])
    assert stats[0].form != "scaled codebook"
    assert decode_weights(blob)[0][1].tobytes() == changed.tobytes()


def test_float16_values_are_stored_in_two_bytes_and_others_are_not() -> None:
    rng = np.random.default_rng(3)
    half = rng.standard_normal(500).astype(np.float16).astype(np.float32)
    half[3] = -0.0
    full = rng.standard_normal(500).astype(np.float32)
    blob, stats, _ = encode_weights([("half", half), ("full", full)], coder="none")
    assert [s.form for s in stats] == ["half", "raw"] and stats[0].stored_bytes == 1000
    decoded = decode_weights(blob)
    assert decoded[0][1].tobytes() == half.tobytes() and decoded[1][1].tobytes() == full.tobytes()
