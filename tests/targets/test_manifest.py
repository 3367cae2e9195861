"""The manifest is one typed record: what the builder writes is what every reader gets back."""

from __future__ import annotations

import json

import pytest

from graphopt.errors import ArtifactError
from graphopt.targets.runtime.manifest import FORMAT, FORMAT_VERSION, FileFacts, Manifest, TargetInfo, TensorSpec


def _manifest() -> Manifest:
    return Manifest(
        model="MLP",
        target=TargetInfo("cpu", "cpu", {"kind": "llvm"}, {"mcpu": "znver4", "features": ["avx2"], "num_cores": 2}),
        inputs=(TensorSpec("x", ("batch", 784), "float32"),),
        outputs=(TensorSpec("logits", ("batch", 10), "float32"),),
        library="model.so",
        files={"model.so": FileFacts("ab" * 32, 1234)},
        output_keys=("logits",),
        dynamic_batch=True,
        build={"tuned": False},
    )


def test_json_round_trip_keeps_every_field_and_the_flat_v1_layout(tmp_path) -> None:
    manifest = _manifest().with_entries({"cuda_kernels": [{"file": "k.fatbin"}], "eager_check": {"ok": True}})
    manifest.write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION
    assert data["target"] == {"name": "cpu", "device": "cpu", "tvm_target": {"kind": "llvm"}, "mcpu": "znver4",
                              "features": ["avx2"], "num_cores": 2}  # fmt: skip
    assert data["inputs"] == [{"name": "x", "shape": ["batch", 784], "dtype": "float32"}]
    assert data["files"] == {"model.so": {"sha256": "ab" * 32, "bytes": 1234}}
    assert data["cuda_kernels"] == [{"file": "k.fatbin"}]  # a target's own entry, at the top level
    again = Manifest.read(tmp_path)
    assert again == manifest
    assert again.target.features == ["avx2"] and again.target.mcpu == "znver4"
    assert again.eager_check == {"ok": True} and again.extra == {"cuda_kernels": [{"file": "k.fatbin"}]}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="something-else"), "is not a graphopt artifact manifest"),
        (lambda d: d.update(format_version=99), "has format version 99, this graphopt reads version 1"),
        (lambda d: d.pop("outputs"), "manifest lacks outputs"),
        (lambda d: d["files"]["model.so"].pop("sha256"), "malformed manifest"),
        (lambda d: d.update(inputs=[{"name": "x"}]), "malformed manifest"),
        (lambda d: d.update(target="cpu"), "malformed manifest"),
    ],
    ids=["foreign", "newer", "incomplete", "file_without_hash", "input_without_shape", "target_not_a_record"],
)
def test_a_bad_manifest_is_one_artifact_error(tmp_path, edit, message) -> None:
    data = _manifest().to_json()
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message):
        Manifest.read(tmp_path)
