"""The artifact on disk: its manifest, atomic writes, and the loader's checks on what it is given."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.capture import capture
from graphopt.errors import ArtifactError, BuildError, InputError
from graphopt.targets import build, load_artifact, registry
from graphopt.targets.runtime import MANIFEST
from tests.targets.conftest import assert_matches_eager, randomize


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.classes = nn.Linear(6, 4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(image).mean(dim=(2, 3))
        return self.classes(features), features


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A two-output model compiled through the public API, and its directory."""
    model = randomize(TwoHeads())
    out_dir = tmp_path_factory.mktemp("artifact") / "two_heads"
    graphopt.compile(model, torch.randn(2, 3, 8, 8), target="cpu", out_dir=out_dir)
    return model, out_dir


def _copy(artifact_dir, tmp_path):
    import shutil

    return shutil.copytree(artifact_dir, tmp_path / "copy")


def test_manifest_describes_inputs_outputs_target_versions_and_hashes(artifact) -> None:
    _, out_dir = artifact
    manifest = json.loads((out_dir / MANIFEST).read_text())
    assert manifest["inputs"] == [{"name": "image", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert [o["shape"] for o in manifest["outputs"]] == [[2, 4], [2, 6]]
    assert manifest["target"]["name"] == "cpu"
    assert manifest["target"]["tvm_target"]["kind"] == "llvm"
    assert manifest["target"]["mcpu"] and manifest["target"]["num_cores"] >= 1
    assert set(manifest["versions"]) >= {"graphopt", "torch", "tvm", "tvm_ffi"}
    assert manifest["passes"]["model"] == "TwoHeads"
    library = out_dir / manifest["library"]
    assert manifest["files"][manifest["library"]]["sha256"] == hashlib.sha256(library.read_bytes()).hexdigest()
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([MANIFEST, *manifest["files"]])


def test_loaded_model_takes_numpy_or_torch_and_returns_a_tuple_for_two_outputs(artifact) -> None:
    model, out_dir = artifact
    loaded = graphopt.load(out_dir)
    image = torch.randn(2, 3, 8, 8)
    assert_matches_eager(model, loaded, image)
    from_torch = loaded(image)
    from_keyword = loaded(image=image.numpy())
    assert isinstance(from_torch, tuple) and len(from_torch) == 2
    np.testing.assert_array_equal(from_torch[0], from_keyword[0])


@pytest.mark.parametrize(
    ("bad_input", "message"),
    [
        (
            np.zeros((2, 3, 8, 9), np.float32),
            r"input 'image' has shape \(2, 3, 8, 9\), expected shape \(2, 3, 8, 8\) float32",
        ),
        (np.zeros((2, 3, 8, 8), np.float64), r"input 'image' has dtype float64, expected float32"),
        (np.zeros((3, 8, 8), np.float32), r"input 'image' has shape \(3, 8, 8\)"),
    ],
)
def test_wrong_inputs_are_named_with_what_was_expected(artifact, bad_input, message) -> None:
    loaded = graphopt.load(artifact[1])
    with pytest.raises(InputError, match=message):
        loaded(bad_input)


def test_wrong_number_of_inputs(artifact) -> None:
    loaded = graphopt.load(artifact[1])
    with pytest.raises(InputError, match=r"expected 1 input\(s\) \(image: shape \(2, 3, 8, 8\) float32\)"):
        loaded(np.zeros((2, 3, 8, 8), np.float32), np.zeros(1, np.float32))


def test_a_modified_library_is_refused(artifact, tmp_path) -> None:
    copy = _copy(artifact[1], tmp_path)
    library = copy / "model.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.so does not match its manifest"):
        load_artifact(copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MANIFEST).unlink(), "manifest.json is missing"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.so").unlink(), r"model\.so is missing"),
    ],
    ids=["no_manifest", "corrupt_manifest", "no_library"],
)
def test_an_incomplete_artifact_is_refused(artifact, tmp_path, damage, message) -> None:
    copy = _copy(artifact[1], tmp_path)
    damage(copy)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(copy)


def _edit_manifest(directory, **target_fields) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["target"].update(target_fields)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_an_artifact_for_another_machine_is_refused(artifact, tmp_path) -> None:
    copy = _copy(artifact[1], tmp_path)
    _edit_manifest(copy, name="arm", arch="aarch64")
    with pytest.raises(ArtifactError, match=r"built for aarch64 .* cannot run on this x86_64 machine"):
        load_artifact(copy)
    _edit_manifest(copy, name="cpu", arch="x86_64", features=["avx512f", "amx-tile-that-no-cpu-has"])
    with pytest.raises(ArtifactError, match="amx-tile-that-no-cpu-has"):
        load_artifact(copy)


def test_load_needs_neither_torch_nor_the_passes(artifact) -> None:
    model, out_dir = artifact
    image = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None          # any `import torch` now fails
        sys.modules["graphopt.passes"] = None
        import numpy as np
        import graphopt
        loaded = graphopt.load({str(out_dir)!r})
        logits, features = loaded(np.array({image.tolist()!r}, dtype=np.float32))
        assert "torch" not in [m for m, v in sys.modules.items() if v is not None]
        np.save(sys.stdout.buffer, logits)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    import io

    logits = np.load(io.BytesIO(result.stdout))
    expected = model(image)[0].detach().numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _failing_export(executable, path):
    raise RuntimeError("linker exploded\n  at some/deep/frame.cc:42")


def test_a_failed_build_leaves_nothing_behind_and_keeps_the_old_artifact(artifact, tmp_path, monkeypatch) -> None:
    model, _ = artifact
    graph = capture(model, (torch.randn(2, 3, 8, 8),))
    out_dir = tmp_path / "model"
    build(graph, None, out_dir=out_dir)
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    broken = dataclasses.replace(registry.get_target("cpu"), export_library=_failing_export)
    monkeypatch.setitem(registry._TARGETS, "cpu", broken)
    with pytest.raises(BuildError, match=r"cannot write the library for target 'cpu': linker exploded$"):
        build(graph, None, out_dir=out_dir)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    with pytest.raises(BuildError):
        build(graph, None, out_dir=tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_directory_that_is_not_an_artifact_is_never_overwritten(tmp_path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    graph = capture(nn.Linear(3, 2).eval(), (torch.randn(1, 3),))
    with pytest.raises(InputError, match="not an artifact"):
        build(graph, None, out_dir=precious)
    assert (precious / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("mattr", ["-avx512f,-avx512bw", ["-avx512f", "-avx512bw"]])
def test_cpu_mattr_is_a_comma_separated_string_or_a_list(mattr) -> None:
    from graphopt.targets.cpu import cpu_target

    assert list(cpu_target({"mattr": mattr}).attrs["mattr"]) == ["-avx512f", "-avx512bw"]


def test_a_model_outputting_its_input_unchanged_does_not_alias_the_callers_array() -> None:
    class Passthrough(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x * 2

    x = np.ones((2, 3), np.float32)
    compiled = build(capture(Passthrough(), (torch.from_numpy(x),)), target="cpu")
    same, doubled = compiled(x)
    x[0, 0] = 7.0
    assert same[0, 0] == 1.0 and doubled[0, 0] == 2.0


def test_an_output_that_views_the_input_survives_the_next_call() -> None:
    # Calls reuse one staging tensor per input; outputs the VM returns as views of it (the input
    # itself, a reshape) must not change when the next call copies new inputs in.
    class Views(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return x, x.reshape(-1), x * 2

    compiled = build(capture(Views(), (torch.zeros(2, 3),)), target="cpu")
    first = compiled(np.ones((2, 3), np.float32))
    second = compiled(np.full((2, 3), 5.0, np.float32))
    np.testing.assert_array_equal(first[0], np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(first[1], np.ones(6, np.float32))
    np.testing.assert_array_equal(second[1], np.full(6, 5.0, np.float32))


def test_repeated_calls_see_each_calls_own_inputs(artifact) -> None:
    # The staged-input fast path against the checked path: new values, a non-contiguous array,
    # a torch tensor, and a wrong shape (still refused after the fast path ran).
    model, out_dir = artifact
    compiled = load_artifact(out_dir)
    x = torch.randn(2, 3, 8, 8)
    for scale in (1.0, -2.0, 0.5):
        logits, _ = compiled((x * scale).numpy())
        np.testing.assert_allclose(logits, model(x * scale)[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    transposed = np.ascontiguousarray(x.numpy().transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not transposed.flags.c_contiguous
    np.testing.assert_allclose(compiled(transposed)[0], model(x)[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compiled(x * 3)[0], model(x * 3)[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="shape"):
        compiled(x.numpy()[:, :, :, :-1])


def test_loading_an_artifact_prints_nothing_to_stderr(tmp_path, capfd):
    # TVM 0.27's VM loader writes "executable.cc:340: Warning: Scope Loaded:" to file descriptor 2
    # for every function of the library; a deploy script loading a good artifact should log nothing.
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval()
    graphopt.compile(model, torch.randn(2, 8), out_dir=tmp_path / "a")
    capfd.readouterr()
    loaded = graphopt.load(tmp_path / "a")
    assert loaded(np.ones((2, 8), np.float32)).shape == (2, 4)
    assert capfd.readouterr().err == ""
