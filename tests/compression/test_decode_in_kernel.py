"""``decode="kernel"``: a shared MLP keeps its 4-bit indices in memory and gathers from the codebook
while it multiplies; it predicts what the decoded-at-load artifact predicts, in an eighth of the memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.errors import InputError
from graphopt.targets.pipeline.lut_weights import pack
from samples.digits import load_digits_flat
from samples.mnist_mlp import mnist_mlp

pytestmark = pytest.mark.slow  # two TVM builds of the MLP (~10 s)


def test_packed_indices_hold_each_index_at_its_place() -> None:
    indices = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)  # K = 3 rows, O = 2 outputs
    packed = pack(indices, bits=4)  # two rows of k per byte, the first in the low nibble
    assert packed.tolist() == [[0x31, 0x42], [0x05, 0x06]]
    assert pack(np.array([[1], [0], [1], [1], [0], [0], [0], [0], [1]], dtype=np.uint8), bits=1).tolist() == [[13], [1]]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    x, _ = load_digits_flat("test")
    shared, _ = graphopt.share_weights(mnist_mlp(), x[:1], bits=4, layers=["fc1*", "fc2*"], passes=None)
    root = tmp_path_factory.mktemp("lut")
    graphopt.compile(shared, None, out_dir=root / "kernel", decode="kernel", dynamic_batch=True)
    graphopt.compile(shared, None, out_dir=root / "load", dynamic_batch=True)
    return root / "kernel", root / "load"


def test_decoding_in_the_kernel_gives_the_outputs_of_decoding_at_load(artifacts) -> None:
    kernel, load = (graphopt.load(path) for path in artifacts)
    x, _ = load_digits_flat("test")
    gathered, decoded = kernel(x.numpy()), load(x.numpy())
    assert np.array_equal(gathered.argmax(axis=1), decoded.argmax(axis=1))
    # the same products of the same float32 values; only the order of the sums may differ
    assert np.abs(gathered - decoded).max() <= 1e-5 * np.abs(decoded).max()


def test_the_shared_layers_stay_indices_in_memory_and_the_others_stay_float(artifacts) -> None:
    kernel_dir, load_dir = artifacts
    kernel, load = graphopt.load(kernel_dir), graphopt.load(load_dir)
    kept = json.loads((kernel_dir / "manifest.json").read_text())["build"]["indices_kept"]
    assert [(layer["name"], layer["bits"]) for layer in kept] == [("p_fc1_weight_t", 4), ("p_fc2_weight_t", 4)]
    held = kernel.weight_bytes()
    dense = load.weight_bytes()
    fc3 = (128 * 10 + 10) * 4  # fc3 not shared: float32, as in the decoded artifact
    assert dense == (784 * 256 + 256 + 256 * 128 + 128) * 4 + fc3
    assert held == (392 * 256 + 16 * 4) + (128 * 128 + 16 * 4) + (256 + 128) * 4 + fc3  # 4-bit indices + codebooks


def test_decode_in_the_kernel_needs_a_compressed_build_and_a_known_name() -> None:
    model = mnist_mlp()
    with pytest.raises(InputError, match="decode='kernel' keeps a compressed artifact's indices: it needs compress"):
        graphopt.compile(model, torch.randn(1, 784), decode="kernel")
    with pytest.raises(InputError, match="option decode='gather': expected 'load' or 'kernel'"):
        graphopt.compile(model, torch.randn(1, 784), decode="gather")


@pytest.mark.parametrize("bits", [1, 2, 8])  # packed 8, 4 and 1 to a byte; 8 bits: a load, not blends
def test_every_index_width_decodes_in_the_kernel_as_at_load(tmp_path: Path, bits: int) -> None:
    from tests.compression.tiny_models import INPUTS, tiny_mlp

    shared, _ = graphopt.share_weights(tiny_mlp(), INPUTS[:1], bits=bits, passes=None)
    kernel = graphopt.compile(shared, None, out_dir=tmp_path / "kernel", decode="kernel", dynamic_batch=True)
    load = graphopt.compile(shared, None, out_dir=tmp_path / "load", dynamic_batch=True)
    kept = kernel.manifest.build["indices_kept"]
    assert [layer["bits"] for layer in kept] == [bits, bits]
    gathered, decoded = kernel(INPUTS.numpy()), load(INPUTS.numpy())
    assert np.abs(gathered - decoded).max() <= 1e-5 * np.abs(decoded).max()
