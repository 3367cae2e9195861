"""Run a ``fallback="torch"`` artifact: compiled TVM segments and PyTorch segments, in program order.

Such an artifact holds one library per TVM segment (``submod_0.so``), one ``torch.export`` program
per PyTorch segment (``submod_1.pt2``: ATen ops and their weights, no user code, rebuilt with
``torch.export.load``), and ``program.json``, the dataflow between them: which segment reads which
values and where the outputs come from. Unlike a plain artifact it needs torch at load; only this
module imports it, and only for such an artifact.

>>> model = load_artifact("out/detector")  # manifest.fallback lists the nodes that run in PyTorch
>>> boxes, scores = model(image)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.errors import ArtifactError
from graphopt.targets.runtime import CompiledModel, check_inputs, load_library
from graphopt.targets.runtime.manifest import Manifest, TensorSpec

PROGRAM = "program.json"  #: the artifact's ``library``: the dataflow between its segments


class TvmSegment:
    """A compiled segment called with torch tensors, returning torch tensors (one, or a tuple)."""

    def __init__(self, compiled: CompiledModel) -> None:
        self.compiled = compiled

    def __call__(self, *tensors: Any) -> Any:
        import torch

        result = self.compiled(*[t.detach().contiguous().numpy() for t in tensors])
        if isinstance(result, tuple):
            return tuple(torch.from_numpy(np.array(r)) for r in result)
        return torch.from_numpy(np.array(result))


class FallbackModel:
    """A model whose segments run in TVM or PyTorch: called like ``CompiledModel`` (numpy arrays or
    tensors in, numpy arrays out; a dict for a model's dict of outputs)."""

    def __init__(
        self,
        manifest: Manifest,
        program: Mapping[str, Any],
        segments: Mapping[str, Callable[..., Any]],
        out_dir: Path | None = None,
        report: Any = None,
    ) -> None:
        self.manifest = manifest
        self.program = program
        self.segments = dict(segments)
        self.out_dir = out_dir
        self.report = report
        self.inputs = list(manifest.inputs)
        self.outputs = list(manifest.outputs)
        self.output_keys: list[str] | None = list(manifest.output_keys) if manifest.output_keys else None

    def __repr__(self) -> str:
        where = f" at {self.out_dir}" if self.out_dir else ""
        fell = len((self.manifest.fallback or {}).get("nodes", []))
        return f"<graphopt.FallbackModel {self.manifest.model!r}: {fell} node(s) in PyTorch{where}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        arrays = check_inputs(self.inputs, args, kwargs)
        values: dict[str, Any] = {
            name: torch.from_numpy(array) for name, array in zip(self.program["inputs"], arrays, strict=True)
        }
        with torch.no_grad():
            for step in self.program["steps"]:
                if "segment" in step:
                    values[step["out"]] = self.segments[step["segment"]](*[values[a] for a in step["args"]])
                else:
                    values[step["out"]] = values[step["getitem"]][step["index"]]
        result = tuple(values[name].detach().numpy() for name in self.program["outputs"])
        if self.output_keys is not None:
            return dict(zip(self.output_keys, result, strict=True))
        return result[0] if len(result) == 1 else result


def segment_manifest(manifest: Manifest, entry: Mapping[str, Any]) -> Manifest:
    """The manifest a TVM segment's ``CompiledModel`` checks its inputs against."""
    return Manifest(
        model=f"{manifest.model}.{entry['name']}",
        target=manifest.target,
        inputs=tuple(TensorSpec.from_dict(s) for s in entry["inputs"]),
        outputs=tuple(TensorSpec.from_dict(s) for s in entry["outputs"]),
        library=entry["file"],
    )


def load_fallback(directory: Path, manifest: Manifest) -> FallbackModel:
    """The artifact at ``directory`` (files verified already) with every segment loaded."""
    try:
        import torch
    except ImportError as error:
        raise ArtifactError(
            f"the artifact at {directory} runs part of the model in PyTorch (built with fallback='torch'): "
            "install torch to load it"
        ) from error

    entry = manifest.fallback or {}
    segments: dict[str, Callable[..., Any]] = {}
    for segment in entry.get("segments", []):
        path = directory / segment["file"]
        try:
            if segment["kind"] == "tvm":
                module = load_library(path)
                segments[segment["name"]] = TvmSegment(CompiledModel(module, segment_manifest(manifest, segment)))
            else:
                segments[segment["name"]] = torch.export.load(str(path)).module()
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(
                f"cannot load segment {segment['file']} of the artifact at {directory}: {first}"
            ) from error
    program = json.loads((directory / str(manifest.library)).read_text())
    return FallbackModel(manifest, program, segments, out_dir=directory)
