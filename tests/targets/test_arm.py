"""The ``arm`` target: an AArch64 shared object that, run under qemu-aarch64 with the aarch64 TVM
runtime, gives PyTorch eager's outputs.

Tolerance: 1e-5 relative error (max|arm - eager| / max|eager|), float32 throughout. The arm code
sums in a different order than eager (NEON lanes, tiled reductions) and fuses multiply-adds, so
exact equality is not expected; a wrong kernel, layout or weight is off by far more than 1e-5.

Needs ``scripts/setup_arm.sh`` (cross compiler, qemu-user, aarch64 runtime). Without it the qemu
tests skip locally and fail in CI (CI=true), where the Makefile has run every setup script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tvm import relax

import graphopt
from graphopt.capture import capture
from graphopt.errors import ArtifactError, InputError
from graphopt.numerics import relative_error
from graphopt.targets import arm, build
from graphopt.targets.pipeline.relax_pipeline import compile_module
from graphopt.targets.registry import get_target
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp

TOLERANCE = 1e-5


def require_arm_tools() -> None:
    missing = arm.missing_tools()
    if not missing:
        return
    message = f"arm toolchain missing ({', '.join(missing)}); run `sudo bash scripts/setup_arm.sh`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MNIST MLP (trained weights) compiled for arm with the default passes, batch 16."""
    require_arm_tools()
    x, _ = load_digits_flat("test")
    out_dir = tmp_path_factory.mktemp("arm") / "mlp"
    graphopt.compile(mnist_mlp(), x[:16], target="arm", out_dir=out_dir)
    return out_dir


def test_target_is_aarch64_with_neon_by_default_and_mattr_is_configurable() -> None:
    assert arm.target_from_options({}) == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    dotprod = arm.target_from_options({"arm_mattr": "+neon,+dotprod", "arm_mcpu": "cortex-a76"})
    assert dotprod["mattr"] == ["+neon", "+dotprod"]
    assert dotprod["mcpu"] == "cortex-a76"


def test_tuning_for_arm_is_refused_with_a_reason() -> None:
    with pytest.raises(InputError, match="aarch64 machine"):
        graphopt.targets.check_build_request("arm", None, {"tune": True})


def test_missing_cross_compiler_is_one_clear_line_and_leaves_no_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out_dir = tmp_path / "mlp"
    graph = capture(mnist_mlp(), torch.zeros(1, 784))
    with pytest.raises(arm.ToolchainError) as raised:
        build(graph, target="arm", out_dir=out_dir)
    message = str(raised.value)
    assert "\n" not in message
    assert "aarch64-linux-gnu-g++" in message and "scripts/setup_arm.sh" in message
    assert not out_dir.exists()


def test_qemu_runner_refuses_a_library_for_another_machine() -> None:
    x86_library = Path(sys.executable).resolve()  # any x86-64 ELF will do
    assert arm.elf_machine(x86_library) != arm.ELF_MACHINE_AARCH64
    with pytest.raises(ArtifactError, match="not an AArch64 library"):
        arm.run_on_qemu(x86_library, [np.zeros((1, 784), np.float32)])


def instruction_count(library: Path, pattern: str) -> int:
    """How many instructions matching ``pattern`` (a regex from the mnemonic on) the library's code holds."""
    disassembly = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", str(library)], capture_output=True, text=True, check=True
    ).stdout
    return len(re.findall(r"\t" + pattern, disassembly))


def neon_fma_count(library: Path) -> int:
    """How many 4-lane fp32 NEON fused multiply-adds (``fmla vN.4s``) the library's code holds."""
    return instruction_count(library, r"fmla\s+v\d+\.4s")


def sdot_count(library: Path) -> int:
    """How many Arm dot-product instructions (``sdot vN.4s, vM.16b, vK.16b``) the library's code holds."""
    return instruction_count(library, r"sdot\s+v\d+\.4s")


@pytest.mark.slow
def test_mnist_mlp_artifact_is_an_aarch64_shared_object_with_neon_code(mlp_artifact: Path) -> None:
    libraries = list(mlp_artifact.glob("*.so"))
    assert len(libraries) == 1
    assert arm.elf_machine(libraries[0]) == arm.ELF_MACHINE_AARCH64
    assert neon_fma_count(libraries[0]) > 0
    manifest = json.loads((mlp_artifact / "manifest.json").read_text())
    assert "+neon" in json.dumps(manifest)


@pytest.mark.slow
def test_mnist_mlp_on_qemu_matches_eager(mlp_artifact: Path) -> None:
    x, _ = load_digits_flat("test")
    x = x[:16]
    expected = mnist_mlp()(x).detach().numpy()
    run = arm.qemu_run(mlp_artifact, [x.numpy()])
    assert len(run.outputs) == 1 and run.outputs[0].shape == expected.shape
    assert relative_error(expected, run.outputs[0]) <= TOLERANCE


@pytest.mark.slow
def test_qemu_run_of_a_wrong_input_shape_fails_with_one_line(mlp_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="under qemu-aarch64 failed") as raised:
        arm.run_on_qemu(mlp_artifact, [np.zeros((16, 783), np.float32)])
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_conv_bn_relu_cnn_compiled_with_dotprod_runs_like_eager_when_called() -> None:
    require_arm_tools()
    x, _ = load_digits_28("test")
    x = x[:4]
    model = digits_cnn()
    compiled = graphopt.compile(model, x, target="arm", arm_mattr=["+neon", "+dotprod"])  # no out_dir
    assert isinstance(compiled, arm.QemuCompiledModel)  # calls run the aarch64 code under qemu
    assert compiled.manifest.target.facts["mattr"] == ["+neon", "+dotprod"]
    assert relative_error(model(x), compiled(x)) <= TOLERANCE
    with pytest.raises(InputError, match="shape"):
        compiled(x[:, :, :27])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "loader", "batch", "calibration_size"),
    [(mnist_mlp, load_digits_flat, 16, 256), (digits_cnn, load_digits_28, 4, 64)],
)
def test_int8_model_on_qemu_uses_sdot_and_matches_the_x86_int8_build(factory, loader, batch, calibration_size) -> None:
    """Integer matmuls and convs are exact on both ISAs; only the float (de)quantization steps may
    round differently (FMA contraction), a few ulp: 1e-6 relative. Accuracy vs eager is the quantizer's test."""
    require_arm_tools()
    x, _ = loader("test")
    calibration, _ = loader("train")
    int8 = {"quantize": "int8", "calibration_data": calibration[:calibration_size]}
    on_arm = graphopt.compile(factory(), x[:batch], target="arm", arm_mattr=["+neon", "+dotprod"], **int8)
    on_x86 = graphopt.compile(factory(), x[:batch], target="cpu", **int8)
    assert isinstance(on_arm, arm.QemuCompiledModel)
    assert sdot_count(on_arm.library()) > 0  # the int8 kernels run on the dot-product extension
    assert relative_error(on_x86(x[:batch]), on_arm(x[:batch])) <= 1e-6


@pytest.mark.slow
def test_int8_mnist_mlp_without_dotprod_has_no_sdot_and_matches_the_x86_int8_build() -> None:
    require_arm_tools()
    x, _ = load_digits_flat("test")
    calibration, _ = load_digits_flat("train")
    int8 = {"quantize": "int8", "calibration_data": calibration[:256]}
    on_arm = graphopt.compile(mnist_mlp(), x[:16], target="arm", **int8)  # plain +neon
    on_x86 = graphopt.compile(mnist_mlp(), x[:16], target="cpu", **int8)
    assert isinstance(on_arm, arm.QemuCompiledModel)
    assert sdot_count(on_arm.library()) == 0
    assert relative_error(on_x86(x[:16]), on_arm(x[:16])) <= 1e-6


def _integers(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(dtype)


def _build_for_arm(tmp_path: Path, inputs: list[Any], make_output: Any, mattr: list[str]) -> Path:
    """A one-op Relax function compiled for arm with ``mattr``, linked into ``tmp_path/model.so``."""
    bb = relax.BlockBuilder()
    with bb.function("main", inputs):
        with bb.dataflow():
            out = bb.emit_output(make_output(*inputs))
        bb.emit_func_output(out)
    backend = get_target("arm")
    executable = compile_module(bb.get(), backend, backend.make_target({"arm_mattr": mattr}), {})
    return arm.export_library(executable, tmp_path / "model.so")


@pytest.mark.parametrize("activation", ["int8", "uint8"])
@pytest.mark.parametrize("mattr", [["+neon", "+dotprod"], ["+neon"]], ids=["dotprod", "neon"])
def test_int8_matmul_on_qemu_is_exact_and_uses_sdot_with_dotprod(
    tmp_path: Path, activation: str, mattr: list[str]
) -> None:
    """int8 x int8 (sdot as is) and uint8 x int8 (shifted by -128 to int8, corrected by +128 colsum(W))
    -> int32, exact: K = 70 is padded to 72, N = 40 to 48 (the last 16-channel tile is partly padding),
    M = 10 rows tile by 5."""
    require_arm_tools()
    a, w = _integers((10, 70), activation, 0), _integers((70, 40), "int8", 1)
    x = relax.Var("x", relax.TensorType(a.shape, activation))
    weight = relax.const(w)
    library = _build_for_arm(tmp_path, [x], lambda x: relax.op.matmul(x, weight, out_dtype="int32"), mattr)
    assert (sdot_count(library) > 0) == ("+dotprod" in mattr)
    (out,) = arm.run_on_qemu(library, [a])
    assert out.dtype == np.int32
    assert np.array_equal(out, a.astype(np.int64) @ w.astype(np.int64))


@pytest.mark.parametrize(
    ("activation", "channels", "out_channels", "stride"),
    [("uint8", 16, 32, 1), ("int8", 3, 10, 2)],
    ids=["uint8-16to32", "int8-3to10-stride2"],
)
@pytest.mark.parametrize("mattr", [["+neon", "+dotprod"], ["+neon"]], ids=["dotprod", "neon"])
def test_int8_nhwc_conv2d_on_qemu_is_exact_and_uses_sdot_with_dotprod(
    tmp_path: Path, activation: str, channels: int, out_channels: int, stride: int, mattr: list[str]
) -> None:
    """A 3x3 pad-1 NHWC conv, int32 exact: with +dotprod the packed direct convolution on sdot (input
    channels padded to 4, the padding border holding the shifted zero), without it TVM's own."""
    require_arm_tools()
    data = _integers((2, 9, 11, channels), activation, 2)
    kernel = _integers((3, 3, channels, out_channels), "int8", 3)
    x = relax.Var("x", relax.TensorType(data.shape, activation))
    weight = relax.const(kernel)

    def conv(x: Any) -> Any:
        return relax.op.nn.conv2d(
            x, weight, strides=stride, padding=1, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"
        )

    library = _build_for_arm(tmp_path, [x], conv, mattr)
    assert (sdot_count(library) > 0) == ("+dotprod" in mattr)
    (out,) = arm.run_on_qemu(library, [data])
    reference = torch.nn.functional.conv2d(  # float64 holds these sums exactly
        torch.from_numpy(data.astype(np.float64)).permute(0, 3, 1, 2),
        torch.from_numpy(kernel.astype(np.float64)).permute(3, 2, 0, 1),
        stride=stride,
        padding=1,
    ).permute(0, 2, 3, 1)
    assert out.dtype == np.int32 and out.shape == tuple(reference.shape)
    assert np.array_equal(out, reference.numpy().astype(np.int64))
