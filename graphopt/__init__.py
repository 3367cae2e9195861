"""graphopt: a compiler-style graph optimizer for PyTorch models.

>>> import graphopt, torch
>>> graph = graphopt.capture(model.eval(), torch.randn(1, 784))
>>> optimized, report = graphopt.optimize(graph, "O2", verify=True)
>>> compiled = graphopt.compile(model.eval(), torch.randn(1, 784), target="cpu", out_dir="out/mlp")

Names are imported lazily, so ``graphopt.load`` works on a machine with only the TVM runtime.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "capture": "graphopt.capture",
    "optimize": "graphopt.pass_manager",
    "compile": "graphopt.api",
    "load": "graphopt.api",
    "visualize": "graphopt.visualize",
    "quantize": "graphopt.quantize",
    "QuantizeOptions": "graphopt.passes.quant_plan",
    "prune": "graphopt.pruning",
    "sensitivity": "graphopt.pruning",
    "export_onnx": "graphopt.onnx.io",
    "share_weights": "graphopt.compression.sharing",
    "magnitude_prune": "graphopt.compression.magnitude",
    "fine_tune": "graphopt.compression.finetune",
    "distill": "graphopt.compression.distill",
    "choose_bits": "graphopt.compression.bits",
    "fuse_models": "graphopt.fusion",
    "FusionReport": "graphopt.fusion",
    "Graph": "graphopt.ir",
    "GraphStats": "graphopt.ir",
    "PassResult": "graphopt.pass_api",
    "PassInfo": "graphopt.pass_api",
    "register_pass": "graphopt.pass_api",
    "get_pass": "graphopt.pass_api",
    "list_passes": "graphopt.pass_api",
    "on_node": "graphopt.pass_api",
    "OptimizeReport": "graphopt.report",
    "GraphoptError": "graphopt.errors",
    "CaptureError": "graphopt.errors",
    "InputError": "graphopt.errors",
    "PassError": "graphopt.errors",
    "VerificationError": "graphopt.errors",
    "UnsupportedOpError": "graphopt.errors",
    "ArtifactError": "graphopt.errors",
}

#: Sub-packages reachable as attributes without an explicit import (``graphopt.pruning.groups``).
_SUBPACKAGES = frozenset({"pruning"})

__all__ = sorted(_LAZY)


class _Package(types.ModuleType):
    """Keeps ``graphopt.capture`` (and ``quantize``, ``visualize``) the function, not its module.

    Importing the submodule ``graphopt.capture`` makes the import system set the package attribute
    ``capture`` to that module, which would shadow the lazily imported function of the same name;
    here such a module is replaced by its function as it is set. ``sys.modules`` and
    ``from graphopt.capture import ...`` still reach the module itself.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__ and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
