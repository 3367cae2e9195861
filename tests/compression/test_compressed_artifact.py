"""A pruned, weight-shared MLP compiled to a compressed artifact: smaller on disk, the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.errors import ArtifactError
from samples.digits import load_digits_flat
from samples.mnist_mlp import mnist_mlp

pytestmark = pytest.mark.slow  # one TVM build of the MLP (~10 s), shared by the module


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> tuple[graphopt.Graph, Path]:
    x, _ = load_digits_flat("test")
    pruned, _ = graphopt.magnitude_prune(mnist_mlp(), (x[:1],), sparsity=0.9)
    shared, _ = graphopt.share_weights(pruned, bits=4, passes=None)  # already optimized
    out = tmp_path_factory.mktemp("artifact") / "mlp"
    graphopt.compile(shared, None, out_dir=out, dynamic_batch=True)  # compressed: the graph says so
    return shared, out


def test_loaded_artifact_predicts_exactly_what_the_compressed_model_predicts(compressed) -> None:
    shared, out = compressed
    x, _ = load_digits_flat("test")
    loaded = graphopt.load(out)
    logits = loaded(x.numpy())
    reference = shared(x).numpy()
    assert np.array_equal(logits.argmax(axis=1), reference.argmax(axis=1))
    # float32 sums in another order than PyTorch's: a few ulps of the largest logit
    assert np.abs(logits - reference).max() <= 1e-5 * np.abs(reference).max()


def test_the_weights_are_stored_compressed_and_decode_to_the_graphs_bits(compressed) -> None:
    shared, out = compressed
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["weights"]
    assert (out / entry["file"]).stat().st_size == entry["stored_bytes"]
    assert entry["dense_bytes"] == sum(t.numel() * 4 for t in shared.module.state_dict().values())
    assert entry["stored_bytes"] * 30 < entry["dense_bytes"]
    fc1 = next(t for t in entry["tensors"] if t["elements"] == 784 * 256)
    assert fc1["form"] == "sparse codebook" and fc1["bits"] == 4 and fc1["distinct"] <= 16


def _rewrite(path: Path, data: bytes, manifest_path: Path) -> None:
    """Replace ``path``'s bytes and record their hash, so only the weights file's own checks stand."""
    from graphopt.targets.runtime import sha256_file

    path.write_bytes(data)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path.name]["sha256"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("rehash", [False, True], ids=["hash-mismatch", "decode-check"])
def test_a_corrupted_weights_file_is_refused_with_one_line(compressed, tmp_path: Path, rehash: bool) -> None:
    import shutil

    _, out = compressed
    copy = tmp_path / "mlp"
    shutil.copytree(out, copy)
    weights = copy / "weights.gopw"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    if rehash:
        _rewrite(weights, bytes(data), copy / "manifest.json")
    else:
        weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as error:
        graphopt.load(copy)
    message = str(error.value)
    assert "\n" not in message
    assert ("compressed weights" in message) if rehash else ("weights.gopw does not match its manifest" in message)


def test_compress_true_stores_any_models_weights_outside_the_library(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    x = torch.randn(2, 8)
    compiled = graphopt.compile(model, x, out_dir=tmp_path / "small", compress=True)
    loaded = graphopt.load(tmp_path / "small")
    assert loaded.manifest.weights["coder"] in ("none", "lzma", "zstd")
    assert np.array_equal(loaded(x.numpy()), compiled(x.numpy()))
    np.testing.assert_allclose(loaded(x.numpy()), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_compressed_artifact_loads_without_torch(compressed) -> None:
    """The deploy-time loader decodes weights.gopw with numpy alone (lzma from the standard library)."""
    import subprocess
    import sys

    _, out = compressed
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['sklearn'] = None\n"
        "import numpy as np, graphopt\n"
        f"print(graphopt.load({str(out)!r})(np.zeros((3, 784), np.float32)).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(3, 10)"


def test_channel_scaled_weights_and_half_biases_are_stored_so_and_load_bit_for_bit(tmp_path: Path) -> None:
    """share_weights(channel_scale=True, half_biases=True): scales + one codebook + indices, biases in 2 bytes."""
    from graphopt.targets.runtime import read_weights
    from graphopt.targets.runtime.manifest import Manifest
    from tests.compression.tiny_models import INPUTS, tiny_mlp

    shared, _ = graphopt.share_weights(tiny_mlp(), INPUTS[:1], bits=3, channel_scale=True, half_biases=True)
    graphopt.compile(shared, None, out_dir=tmp_path / "scaled", dynamic_batch=True)
    entry = json.loads((tmp_path / "scaled" / "manifest.json").read_text())["weights"]
    forms = sorted(t["form"] for t in entry["tensors"])
    assert forms == ["half", "half", "scaled codebook", "scaled codebook"]
    assert all(t["distinct"] <= 8 for t in entry["tensors"] if t["form"] == "scaled codebook")
    decoded = read_weights(tmp_path / "scaled", Manifest.read(tmp_path / "scaled"))
    state = [t.numpy().tobytes() for t in shared.module.state_dict().values()]
    assert sorted(a.tobytes() for a in decoded) == sorted(state)  # the graph's bits, every tensor
    loaded = graphopt.load(tmp_path / "scaled")
    reference = shared(INPUTS).numpy()
    assert np.abs(loaded(INPUTS.numpy()) - reference).max() <= 1e-5 * np.abs(reference).max()
