"""The artifact's ``manifest.json`` as one typed record, written by the builder and read by the loader.

One class owns the file format: ``Manifest.to_json`` is what the builder writes, ``Manifest.read``
is what every reader (``load_artifact``, the RPC runner, the arm runner) gets back, checked once:
a missing, corrupt, foreign or newer manifest is an ``ArtifactError`` saying which. Entries a
target adds of its own (CUDA's prebuilt kernels, ...) are kept in ``extra``, written back as they
came. Runs with the TVM runtime alone: nothing here imports torch or tvm.

>>> manifest = Manifest.read("out/mlp")
>>> manifest.inputs[0].shape, manifest.target.name
((1, 784), 'cpu')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphopt.errors import ArtifactError

MANIFEST = "manifest.json"
FORMAT = "graphopt-artifact"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, shape (ints, or "batch" for the dynamic dimension), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def describe(self) -> str:
        return f"shape ({', '.join(str(d) for d in self.shape)}) {self.dtype}"


@dataclass(frozen=True)
class FileFacts:
    """What the manifest records of each file in the artifact, to detect a modified one."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class TargetInfo:
    """The target an artifact was built for: its name, runtime device, the TVM target, and what the
    backend's ``describe`` recorded (``facts``: CPU model and features, architecture, cores, ...)."""

    name: str
    device: str = "cpu"
    tvm_target: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str | None:
        return self.facts.get("arch")

    @property
    def mcpu(self) -> str | None:
        return self.facts.get("mcpu")

    @property
    def features(self) -> list[str]:
        return list(self.facts.get("features") or [])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetInfo:
        facts = {k: v for k, v in data.items() if k not in ("name", "device", "tvm_target")}
        return cls(str(data["name"]), str(data.get("device", "cpu")), dict(data.get("tvm_target") or {}), facts)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "tvm_target": dict(self.tvm_target), **self.facts}


@dataclass(frozen=True)
class Manifest:
    """Everything an artifact says about itself. ``to_json``/``from_json`` keep the file format of
    ``FORMAT_VERSION`` 1 (flat JSON, a target's own entries at the top level)."""

    model: str | None
    target: TargetInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    library: str | None = None  #: the shared library's file name (None until written)
    files: Mapping[str, FileFacts] = field(default_factory=dict)
    output_keys: tuple[str, ...] | None = None  #: a model's dict output keys, in order
    dynamic_batch: bool = False
    dynamic_seq_len: int | None = None  #: the bound of a dynamic sequence length ("seq" in shapes)
    params: str | None = None  #: where the parameters live (bound in the library, or beside it)
    passes: Mapping[str, Any] | None = None  #: the pass report
    kernel_flops: Mapping[str, int] = field(default_factory=dict)  #: FLOPs per call of each TIR kernel
    kernel_nodes: Mapping[str, list[list[str]]] = field(default_factory=dict)  #: per kernel, each call's graph nodes
    versions: Mapping[str, str] = field(default_factory=dict)
    build: Mapping[str, Any] = field(default_factory=dict)  #: tuned, trials, database, compile time
    eager_check: Mapping[str, Any] | None = None  #: graphopt.eager_check's result, when it ran
    weights: Mapping[str, Any] | None = None  #: a compressed artifact's weights file entry
    fallback: Mapping[str, Any] | None = None  #: ``fallback="torch"``: the segments, and the nodes run in PyTorch
    extra: Mapping[str, Any] = field(default_factory=dict)  #: a target's own entries (cuda_kernels, ...)

    def with_entries(self, entries: Mapping[str, Any] | None) -> Manifest:
        """This manifest with ``entries`` added: those naming a field set it, the others join ``extra``
        (what a target's ``package`` hook or the eager check return)."""
        if not entries:
            return self
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        typed = _typed_fields({k: v for k, v in entries.items() if k in known})
        rest = {k: v for k, v in entries.items() if k not in known}
        return dataclasses.replace(self, **typed, extra={**self.extra, **rest})

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for item in dataclasses.fields(self):
            if item.name != "extra":
                data[item.name] = _plain(getattr(self, item.name))
        return {**data, **{k: v for k, v in self.extra.items() if k not in data}}

    @classmethod
    def from_json(cls, data: Any, where: str = "the artifact") -> Manifest:
        """The manifest in ``data`` (parsed JSON); ``ArtifactError`` naming ``where`` if it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{where}: {MANIFEST} is not a graphopt artifact manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{where} has format version {data.get('format_version')}, "
                f"this graphopt reads version {FORMAT_VERSION}: rebuild it"
            )
        missing = [k for k in ("target", "library", "inputs", "outputs", "files") if k not in data]
        if missing:
            raise ArtifactError(f"corrupt artifact at {where}: manifest lacks {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        try:
            typed = _typed_fields({k: v for k, v in data.items() if k in known})
            rest = {k: v for k, v in data.items() if k not in known and k not in ("format", "format_version")}
            return cls(**{"model": None, **typed}, extra=rest)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ArtifactError(
                f"corrupt artifact at {where}: malformed manifest ({type(error).__name__}: {error})"
            ) from error

    @classmethod
    def read(cls, out_dir: str | Path) -> Manifest:
        """Parse and check ``out_dir/manifest.json``; ``ArtifactError`` if missing, corrupt or foreign."""
        path = Path(out_dir) / MANIFEST
        if not Path(out_dir).is_dir():
            raise ArtifactError(f"no graphopt artifact at {out_dir}: not a directory")
        if not path.is_file():
            raise ArtifactError(f"no graphopt artifact at {out_dir}: {MANIFEST} is missing")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ArtifactError(f"corrupt artifact at {out_dir}: {MANIFEST} is not valid JSON ({error})") from error
        return cls.from_json(data, where=f"artifact at {out_dir}")

    def write(self, directory: str | Path) -> None:
        (Path(directory) / MANIFEST).write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")


def _typed_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Manifest field values from their JSON form (values already typed pass through)."""
    typed = dict(values)
    if "target" in typed and not isinstance(typed["target"], TargetInfo):
        typed["target"] = TargetInfo.from_dict(typed["target"])
    for name in ("inputs", "outputs"):
        if name in typed:
            typed[name] = tuple(s if isinstance(s, TensorSpec) else TensorSpec.from_dict(s) for s in typed[name])
    if "files" in typed:
        typed["files"] = {
            str(name): facts if isinstance(facts, FileFacts) else FileFacts(str(facts["sha256"]), int(facts["bytes"]))
            for name, facts in typed["files"].items()
        }
    if typed.get("output_keys") is not None:
        typed["output_keys"] = tuple(str(k) for k in typed["output_keys"])
    return typed


def _plain(value: Any) -> Any:
    """A field value as JSON: specs, target and file facts as dicts, tuples as lists."""
    if isinstance(value, TensorSpec | TargetInfo):
        return value.to_dict()
    if isinstance(value, FileFacts):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
