"""A packed library: ``model.so.xz`` in the artifact, unpacked at load into a private temporary directory.

Built with ``pack_library=True`` (``graphopt compile --pack-library``). The code of a small model
outweighs its weights (mobilenet_small, weight-shared: a 223 KB stripped library beside 19 KB of
weights), and code packs well (5.4x with xz; float32 weights inside a library hardly at all), so
packing is what makes such an artifact small on disk or in flash. The price: the library has to be
written out before ``dlopen`` can map it. It goes into a fresh ``tempfile.mkdtemp`` directory (mode
0700, so no other user can swap it), is checked against the sha256 the manifest recorded for the
unpacked bytes, loaded, and deleted at once (the mapping outlives the file). Where the temporary
directory is mounted ``noexec``, set ``TMPDIR`` to one that is not. The C++ runtime alone reads no
``.xz``: ``xz -dk model.so.xz`` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphopt.errors import ArtifactError

SUFFIX = ".xz"
ENTRY = "packed_library"  #: the manifest's entry: coder, name, sha256 and bytes of the unpacked library


def pack(path: str | Path) -> dict[str, Any]:
    """Replace the library at ``path`` (``model.so``) with ``path + ".xz"``; returns the manifest's entry."""
    path = Path(path)
    data = path.read_bytes()
    path.with_name(path.name + SUFFIX).write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    path.unlink()
    return {ENTRY: {"coder": "xz", "name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}


def is_packed(library: str) -> bool:
    return library.endswith(SUFFIX)


def unpack_into(packed: Path, entry: Any, directory: Path) -> Path:
    """Write the library ``packed`` holds into ``directory``, checked against ``entry`` (the manifest's
    ``packed_library``); return its path."""
    if not isinstance(entry, dict):
        raise ArtifactError(
            f"corrupt artifact at {packed.parent}: {packed.name} is packed but the manifest has no {ENTRY}"
        )
    try:
        data = lzma.decompress(packed.read_bytes(), format=lzma.FORMAT_XZ)
    except lzma.LZMAError as error:
        raise ArtifactError(f"corrupt artifact at {packed.parent}: {packed.name} does not unpack ({error})") from error
    if hashlib.sha256(data).hexdigest() != entry.get("sha256") or len(data) != entry.get("bytes"):
        raise ArtifactError(
            f"corrupt artifact at {packed.parent}: {packed.name} unpacks to a library other than the one built"
        )
    path = directory / str(entry.get("name") or packed.name.removesuffix(SUFFIX))
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def library_file(directory: Path, library: str, extra: Any) -> Iterator[Path]:
    """The artifact's library as a file ``dlopen`` (or a runner, an RPC upload) can take: the file
    itself, or a packed one unpacked into a private temporary directory deleted on leaving."""
    if not is_packed(library):
        yield directory / library
        return
    scratch = Path(tempfile.mkdtemp(prefix="graphopt-library-"))
    try:
        yield unpack_into(directory / library, (extra or {}).get(ENTRY), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
