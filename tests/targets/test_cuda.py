"""The cuda target: dlight-scheduled kernels, compiled by nvcc at build time, GPU or not.

Building needs only nvcc (CUDA toolkit); running needs a GPU, so the run test is marked ``gpu``
and skipped cleanly where ``tvm.cuda().exist`` is false.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import tvm

import graphopt
from graphopt.capture import capture
from graphopt.errors import ArtifactError
from graphopt.targets import build
from graphopt.targets.cuda import cuda_modules
from samples.cnn import digits_cnn
from tests.targets.conftest import assert_matches_eager

# Without nvcc these skip locally but fail in CI (CI=true), so a CI machine that lost the CUDA
# toolkit does not silently drop the check that the cuda artifact builds.
NO_NVCC = shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc")
pytestmark = pytest.mark.skipif(
    NO_NVCC and os.environ.get("CI", "").lower() != "true", reason="nvcc (CUDA toolkit) is not installed"
)
HAS_GPU = tvm.cuda(0).exist


@pytest.fixture(scope="module")
def cuda_artifact(tmp_path_factory):
    model = digits_cnn()
    out_dir = tmp_path_factory.mktemp("cuda") / "cnn"
    compiled = build(capture(model, (torch.randn(2, 1, 28, 28),)), None, target="cuda", out_dir=out_dir)
    return model, compiled, out_dir


def test_kernels_are_generated_and_compiled_by_nvcc(cuda_artifact) -> None:
    _, compiled, out_dir = cuda_artifact
    (device_module,) = cuda_modules(compiled.module.mod)
    source = device_module.inspect_source("cuda")
    assert 'extern "C" __global__' in source and "blockIdx.x" in source and "threadIdx.x" in source

    (kernels,) = compiled.manifest.extra["cuda_kernels"]
    assert kernels["arch"] == "sm_90" and len(kernels["kernels"]) >= 3
    assert len(set(kernels["kernels"])) == len(kernels["kernels"])  # each kernel named once
    assert all(f"void {name}(" in source or f") {name}(" in source for name in kernels["kernels"])
    fatbin = (out_dir / kernels["file"]).read_bytes()
    assert fatbin[:4] == bytes.fromhex("50ed55ba")  # the CUDA fatbin magic nvcc writes
    assert compiled.manifest.files[kernels["file"]].bytes == len(fatbin)


def test_manifest_names_the_gpu_target_and_its_host(cuda_artifact) -> None:
    target = cuda_artifact[1].manifest.target.to_dict()
    assert target["name"] == "cuda" and target["device"] == "cuda"
    assert target["tvm_target"]["kind"] == "cuda" and target["tvm_target"]["arch"] == "sm_90"
    assert target["host"]["mcpu"]


@pytest.mark.skipif(HAS_GPU, reason="checks the refusal on a machine without a GPU")
def test_loading_or_running_without_a_gpu_is_a_clear_error(cuda_artifact) -> None:
    _, compiled, out_dir = cuda_artifact
    with pytest.raises(ArtifactError, match=r"built for a CUDA GPU .* no CUDA GPU is present here"):
        graphopt.load(out_dir)
    with pytest.raises(ArtifactError, match=r"built for a CUDA GPU .* no CUDA GPU is present here"):
        compiled(np.zeros((2, 1, 28, 28), np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU on this machine")
def test_runs_on_the_gpu_and_matches_eager(cuda_artifact) -> None:
    model, _, out_dir = cuda_artifact
    loaded = graphopt.load(out_dir)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert_matches_eager(model, loaded, x)
    assert np.isfinite(loaded(x.numpy())).all()


def test_tuning_for_cuda_is_refused_rather_than_ignored(tmp_path) -> None:
    graph = capture(digits_cnn(pretrained=False), (torch.randn(1, 1, 28, 28),))
    with pytest.raises(graphopt.InputError, match="tuning for target 'cuda'"):
        build(graph, target="cuda", tune=True, out_dir=tmp_path / "tuned")
    assert list(tmp_path.iterdir()) == []
