"""A target plugs in by name: a TargetBackend registered from outside graphopt.targets is built,
exported and run like a built-in one, and its schedule step is the one used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import InputError
from graphopt.targets import registry
from graphopt.targets.cpu import CPU


@pytest.fixture
def plugin() -> Iterator[list[str]]:
    """A 'lab_cpu' target: the CPU backend with a schedule step that records it ran, then defers."""
    calls: list[str] = []

    def schedule(mod: Any, target: Any, options: dict[str, Any]) -> Any:
        calls.append(str(target.kind.name))
        return CPU.schedule(mod, target, options)

    registry.register_target(replace(CPU, name="lab_cpu", schedule=schedule))
    yield calls
    registry._TARGETS.pop("lab_cpu", None)


def test_a_registered_target_builds_runs_and_is_named_in_the_manifest(plugin: list[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    x = torch.randn(3, 6)
    graphopt.compile(model, x, target="lab_cpu", out_dir=tmp_path / "art")
    assert plugin == ["llvm"]
    loaded = graphopt.load(tmp_path / "art")
    assert loaded.manifest.target.name == "lab_cpu"
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x.numpy()), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert "lab_cpu" in registry.list_targets()


def test_an_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown target 'tpu' \(known: arm, cpu, cuda"):
        registry.get_target("tpu")
