"""A weight-shared model's compressed artifact for the other targets: arm (run under qemu-aarch64)
and cuda (built with nvcc; run only where a GPU is present).

The arm tests need ``scripts/setup_arm.sh`` and skip without it (fail in CI, as tests/targets/test_arm.py);
the cuda ones need nvcc, and the run test a GPU.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm

import graphopt
from graphopt.errors import ArtifactError
from graphopt.targets import arm, build
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from tests.targets.test_arm import require_arm_tools

pytestmark = pytest.mark.slow  # cross builds and qemu runs (~10-20 s each)


def shared_mlp() -> graphopt.Graph:
    x, _ = load_digits_flat("test")
    pruned, _ = graphopt.magnitude_prune(mnist_mlp(), x[:1], sparsity=0.9)
    shared, _ = graphopt.share_weights(pruned, bits=4, passes=None)
    return shared


@pytest.mark.parametrize("decode", ["load", "kernel"])
def test_a_compressed_arm_artifact_predicts_what_the_compressed_model_predicts(tmp_path: Path, decode: str) -> None:
    require_arm_tools()
    shared = shared_mlp()
    x, _ = load_digits_flat("test")
    out = tmp_path / "mlp-arm"
    graphopt.compile(
        shared, None, target="arm", out_dir=out, decode=decode, dynamic_batch=True
    )  # eager-checked under qemu
    assert (out / "weights.gopw").exists() and arm.elf_machine(out / "model.so") == arm.ELF_MACHINE_AARCH64
    (outputs,) = arm.run_on_qemu(out, [x[:16].numpy()])  # the runner decodes nothing: weights come decoded
    reference = shared(x[:16]).numpy()
    assert np.array_equal(outputs.argmax(axis=1), reference.argmax(axis=1))
    assert np.abs(outputs - reference).max() <= 1e-5 * np.abs(reference).max()


NO_NVCC = shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc")
needs_nvcc = pytest.mark.skipif(
    NO_NVCC and os.environ.get("CI", "").lower() != "true", reason="nvcc (CUDA toolkit) is not installed"
)


@pytest.fixture(scope="module")
def cuda_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[graphopt.Graph, Path]:
    x, _ = load_digits_28("test")
    shared, _ = graphopt.share_weights(digits_cnn(), x[:2], bits=4, channel_scale=True, half_biases=True)
    out = tmp_path_factory.mktemp("cuda") / "cnn"
    build(shared, None, target="cuda", out_dir=out, compress=True)  # no eager check: it would need the GPU
    return shared, out


@needs_nvcc
def test_a_compressed_cuda_artifact_builds_without_a_gpu(cuda_artifact) -> None:
    _, out = cuda_artifact
    manifest = graphopt.targets.runtime.Manifest.read(out)
    assert manifest.target.name == "cuda" and manifest.weights["file"] == "weights.gopw"
    assert (out / "weights.gopw").stat().st_size * 4 < manifest.weights["dense_bytes"]


@needs_nvcc
@pytest.mark.skipif(tvm.cuda(0).exist, reason="checks the refusal on a machine without a GPU")
def test_loading_the_compressed_cuda_artifact_without_a_gpu_is_a_clear_error(cuda_artifact) -> None:
    with pytest.raises(ArtifactError, match=r"built for a CUDA GPU .* no CUDA GPU is present here"):
        graphopt.load(cuda_artifact[1])


@needs_nvcc
@pytest.mark.gpu
@pytest.mark.skipif(not tvm.cuda(0).exist, reason="no CUDA GPU on this machine")
def test_the_compressed_cuda_artifact_predicts_what_the_compressed_model_predicts(cuda_artifact) -> None:
    shared, out = cuda_artifact
    x, _ = load_digits_28("test")
    loaded = graphopt.load(out)
    outputs, reference = loaded(x[:2].numpy()), shared(x[:2]).detach().numpy()
    assert np.abs(outputs - reference).max() <= 1e-5 * np.abs(reference).max()
    assert torch.equal(torch.as_tensor(outputs).argmax(1), torch.as_tensor(reference).argmax(1))


def test_a_runner_built_from_another_checkouts_source_counts_as_missing(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / arm.RUNNER_NAME).write_text("")
    monkeypatch.setenv("GRAPHOPT_ARM_RUNTIME", str(tmp_path))
    (tmp_path / ".setup-stamp").write_text("tvm=0.27.0.post1 ffi=0.1.14.post1 runner=0123456789abcdef")
    assert any("built from this checkout's runner.cc" in item for item in arm.missing_tools())
    digest = hashlib.sha256(arm.RUNNER_SOURCE.read_bytes()).hexdigest()[:16]
    (tmp_path / ".setup-stamp").write_text(f"tvm=0.27.0.post1 ffi=0.1.14.post1 runner={digest}")
    assert not any("runner.cc" in item for item in arm.missing_tools())


@needs_nvcc
def test_decoding_in_the_kernel_is_refused_for_cuda(tmp_path: Path) -> None:
    with pytest.raises(graphopt.InputError, match="decode='kernel' has kernels for the CPU targets"):
        build(shared_mlp(), None, target="cuda", out_dir=tmp_path / "mlp", compress=True, decode="kernel")
    assert not (tmp_path / "mlp").exists()
