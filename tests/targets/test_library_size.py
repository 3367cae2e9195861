"""The artifact's library as small as it runs: no symbol table or debug info, optionally xz-packed."""

from __future__ import annotations

import json
import lzma
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import ArtifactError, InputError
from graphopt.targets import arm
from graphopt.targets.runtime import MANIFEST, sha256_file
from tests.targets.conftest import randomize


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image).mean(dim=(2, 3)))


IMAGE = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def section_names(library: Path) -> list[str]:
    """The section names of a 64-bit little-endian ELF file (x86-64 and AArch64 libraries)."""
    data = library.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    return [data[names_offset + h[0] : data.index(b"\0", names_offset + h[0])].decode() for h in headers]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    """The same model built plain and with ``pack_library=True``."""
    model = randomize(SmallCNN())
    root = tmp_path_factory.mktemp("size")
    graphopt.compile(model, IMAGE, out_dir=root / "plain")
    graphopt.compile(model, IMAGE, out_dir=root / "packed", pack_library=True)
    return model, root / "plain", root / "packed"


def test_the_library_has_no_symbol_table_and_no_debug_info_and_still_runs(artifacts) -> None:
    model, plain, _ = artifacts
    sections = section_names(plain / "model.so")
    assert ".dynsym" in sections and ".text" in sections  # what dlopen and the TVM runtime use
    assert ".symtab" not in sections and not [s for s in sections if s.startswith(".debug")]
    expected = model(IMAGE).detach().numpy()
    np.testing.assert_allclose(graphopt.load(plain)(IMAGE.numpy()), expected, rtol=1e-5, atol=1e-5)


def test_a_packed_library_is_smaller_and_computes_exactly_what_the_plain_one_does(artifacts, tmp_path) -> None:
    _, plain, packed = artifacts
    assert sorted(p.name for p in packed.iterdir()) == [MANIFEST, "model.so.xz"]
    manifest = json.loads((packed / MANIFEST).read_text())
    assert manifest["library"] == "model.so.xz"
    unpacked = lzma.decompress((packed / "model.so.xz").read_bytes())
    assert manifest["packed_library"]["bytes"] == len(unpacked) == (plain / "model.so").stat().st_size
    assert (packed / "model.so.xz").stat().st_size * 3 < (plain / "model.so").stat().st_size
    image = IMAGE.numpy()
    assert np.array_equal(graphopt.load(packed)(image), graphopt.load(plain)(image))


def test_the_unpacked_library_is_deleted_once_loaded(artifacts, tmp_path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    loaded = graphopt.load(artifacts[2])
    assert list(tmp_path.iterdir()) == []  # the mapping outlives the file
    assert loaded(IMAGE.numpy()).shape == (2, 5)


@pytest.mark.slow  # a fresh interpreter importing graphopt and TVM
def test_a_packed_artifact_loads_without_torch(artifacts) -> None:
    model, _, packed = artifacts
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np, graphopt
        np.save(sys.stdout.buffer, graphopt.load({str(packed)!r})(np.array({IMAGE.tolist()!r}, dtype=np.float32)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    import io

    expected = model(IMAGE).detach().numpy()
    np.testing.assert_allclose(np.load(io.BytesIO(result.stdout)), expected, rtol=1e-5, atol=1e-5)


def _rehash(directory: Path, name: str) -> None:
    """Record ``name``'s new hash, so that only the packed library's own checks stand."""
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][name]["sha256"] = sha256_file(directory / name)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_a_corrupt_packed_library_is_refused(artifacts, tmp_path) -> None:
    copy = Path(shutil.copytree(artifacts[2], tmp_path / "copy"))
    packed = copy / "model.so.xz"
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.so\.xz does not match its manifest"):
        graphopt.load(copy)
    _rehash(copy, "model.so.xz")
    with pytest.raises(ArtifactError, match=r"corrupt artifact at .*: model\.so\.xz does not unpack"):
        graphopt.load(copy)


def test_a_packed_library_that_is_not_the_one_built_is_refused(artifacts, tmp_path) -> None:
    copy = Path(shutil.copytree(artifacts[2], tmp_path / "copy"))
    other = lzma.decompress((copy / "model.so.xz").read_bytes()) + b"\0"
    (copy / "model.so.xz").write_bytes(lzma.compress(other))
    _rehash(copy, "model.so.xz")
    with pytest.raises(ArtifactError, match=r"model\.so\.xz unpacks to a library other than the one built"):
        graphopt.load(copy)


def test_pack_library_does_not_combine_with_the_torch_fallback() -> None:
    with pytest.raises(InputError, match=r"fallback='torch' .* does not combine with pack_library"):
        graphopt.compile(SmallCNN(), IMAGE, fallback="torch", pack_library=True)


@pytest.mark.slow
def test_a_packed_arm_artifact_runs_under_qemu(tmp_path) -> None:
    from tests.targets.test_arm import require_arm_tools

    require_arm_tools()
    model = randomize(SmallCNN())
    out = tmp_path / "arm"
    graphopt.compile(model, IMAGE, target="arm", out_dir=out, pack_library=True)  # eager-checked under qemu
    unpacked = tmp_path / "model.so"
    unpacked.write_bytes(lzma.decompress((out / "model.so.xz").read_bytes()))
    assert arm.elf_machine(unpacked) == arm.ELF_MACHINE_AARCH64
    assert ".symtab" not in section_names(unpacked)
    (outputs,) = arm.run_on_qemu(out, [IMAGE.numpy()])
    np.testing.assert_allclose(outputs, model(IMAGE).detach().numpy(), rtol=1e-5, atol=1e-5)
