"""Turn what a user types on the command line into a model and example inputs.

A model spec is ``path/to/file.py:Name`` or ``package.module:Name`` (a class, instantiated with no
arguments; a factory, called with none; or a module instance), a saved ``torch.export``
program ``model.pt2``, or an ONNX model ``model.onnx``. Every failure is an ``InputError`` that says what to fix, so the CLI can
print one line instead of an import traceback.

>>> model = load_model("samples/mnist_mlp.py:mnist_mlp")
>>> inputs = example_inputs(["1x784"], ["float32"])
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphopt.errors import InputError

#: ``--input-dtype`` names and the torch dtypes they mean.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32"}
#: Example integer inputs are drawn from ``[0, INT_HIGH)``: valid indices for any embedding or class count.
INT_HIGH = 10


def load_model(spec: str) -> nn.Module | torch.export.ExportedProgram:
    """The model named by ``spec``, in eval mode (an ExportedProgram is returned as loaded; an ONNX
    file comes back as the torch module onnx2torch converts it to)."""
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        return load_exported_program(path)
    if suffix == ".onnx":
        from graphopt.onnx.io import import_onnx

        return import_onnx(path)[0]
    if suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise InputError(
            f"{spec}: a {suffix} file holds weights, not a model; give the model as file.py:Class or file.py:factory "
            "(load the weights inside the factory) or a torch.export program (.pt2)"
        )
    location, sep, name = spec.rpartition(":")
    if not sep or not location or not name:
        raise InputError(
            f"model '{spec}' should read path/to/file.py:ClassOrFactory (or module.name:Class, or file.pt2)"
        )
    module = _import_location(location)
    if not hasattr(module, name):
        candidates = ", ".join(_candidates(module)) or "none found"
        raise InputError(f"{location} has no '{name}' (models and factories there: {candidates})")
    return _instantiate(getattr(module, name), f"{location}:{name}")


def load_exported_program(path: Path) -> torch.export.ExportedProgram:
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    from graphopt.capture import quiet_torch

    try:
        with quiet_torch():
            return torch.export.load(str(path))
    except Exception as error:
        raise InputError(f"cannot read {path} as a torch.export program (.pt2): {_one_line(error)}") from error


def _make_importable(path: Path) -> None:
    """Let a model file import its neighbours, as ``python file.py`` would, and the package it is
    part of (``samples/cnn.py`` imports ``samples``): the file's folder and the folder above its
    outermost package (``__init__.py`` folders) go on ``sys.path``, wherever graphopt runs from."""
    root = path.parent
    while (root / "__init__.py").is_file():
        root = root.parent
    for folder in dict.fromkeys([str(path.parent), str(root)]):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _import_location(location: str) -> Any:
    """Import ``file.py`` (by path) or ``package.module`` (by name), with the working directory importable."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as ``python -m`` does, so ``samples/...`` can import ``samples``
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        if not path.is_file():
            raise InputError(f"model file not found: {location}")
        _make_importable(path.resolve())
        module_name = "_graphopt_user_" + re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
        file_spec = importlib.util.spec_from_file_location(module_name, path)
        if file_spec is None or file_spec.loader is None:
            raise InputError(f"cannot import {location}: not a Python file")
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[module_name] = module
        try:
            file_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise InputError(f"cannot import {location}: {_one_line(error)}{_where(error, path)}") from error
        return module
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as error:
        raise InputError(f"no module named '{error.name}' (model spec '{location}')") from error
    except Exception as error:
        raise InputError(f"cannot import {location}: {_one_line(error)}") from error


def _instantiate(obj: Any, spec: str) -> nn.Module | torch.export.ExportedProgram:
    if isinstance(obj, (nn.Module, torch.export.ExportedProgram)):
        model = obj
    elif callable(obj):
        what = "class" if inspect.isclass(obj) else "factory"
        try:
            model = obj()
        except TypeError as error:
            if _failed_at_call(error):
                raise InputError(f"cannot call {what} {spec} with no arguments: {_one_line(error)}") from error
            raise InputError(f"{spec} failed: {_one_line(error)}{_where(error)}") from error
        except Exception as error:
            raise InputError(f"{spec} failed: {_one_line(error)}{_where(error)}") from error
    else:
        raise InputError(f"{spec} is a {type(obj).__name__}, not a torch.nn.Module class or factory")
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec} returned a {type(model).__name__}, expected a torch.nn.Module")
    return model.eval()


def _failed_at_call(error: TypeError) -> bool:
    """True when the TypeError came from the call itself (missing arguments), not from inside it."""
    frames = traceback.extract_tb(error.__traceback__)
    return len(frames) <= 1


def _candidates(module: Any) -> list[str]:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if (inspect.isclass(value) and issubclass(value, nn.Module)) or inspect.isfunction(value):
            names.append(name)
    return names


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x3x224x224"`` (or ``"1,3,224,224"``) -> ``(1, 3, 224, 224)``."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"bad input shape '{text}': write dimensions as integers joined by x, e.g. 1x784") from None
    if not shape or any(d < 1 for d in shape):
        raise InputError(f"bad input shape '{text}': every dimension must be a positive integer")
    return shape


def parse_dtype(text: str) -> torch.dtype:
    name = _ALIASES.get(text.strip().lower(), text.strip().lower().removeprefix("torch."))
    if name not in DTYPES:
        raise InputError(f"unknown input dtype '{text}' (choose from {', '.join(DTYPES)})")
    return DTYPES[name]


def example_inputs(
    shapes: list[str] | None, dtypes: list[str] | None = None, *, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Seeded random example inputs: normal floats, integers in ``[0, INT_HIGH)``, random booleans.

    One dtype applies to every input; otherwise give one per ``--input-shape``.
    """
    if not shapes:
        raise InputError("give the input shape, e.g. --input-shape 1x784 (once per model input)")
    parsed = [parse_shape(s) for s in shapes]
    kinds = [parse_dtype(d) for d in (dtypes or ["float32"])]
    if len(kinds) == 1:
        kinds = kinds * len(parsed)
    if len(kinds) != len(parsed):
        raise InputError(f"{len(kinds)} --input-dtype values for {len(parsed)} inputs: give one, or one per input")
    generator = torch.Generator().manual_seed(seed)
    return tuple(random_tensor(shape, dtype, generator) for shape, dtype in zip(parsed, kinds, strict=True))


def random_tensor(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, INT_HIGH, shape, generator=generator).to(dtype)


def inputs_like_program(program: torch.export.ExportedProgram, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Example inputs of the shapes and dtypes a saved ExportedProgram was exported with."""
    specs = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            if value is None or not hasattr(value, "shape"):
                raise InputError(f"the program's input '{node.name}' has no recorded shape; give --input-shape")
            specs.append((tuple(int(d) for d in value.shape), value.dtype))
    generator = torch.Generator().manual_seed(seed)
    return tuple(random_tensor(shape, dtype, generator) for shape, dtype in specs)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _where(error: BaseException, path: Path | None = None) -> str:
    """`` (at file:line)`` for the deepest frame in user code (or in ``path``), if any."""
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return f" (at {error.filename}:{error.lineno})"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "importlib" not in f.filename]
    frames = [f for f in frames if not f.filename.startswith(str(Path(__file__).parent))]
    if path is not None:
        frames = [f for f in frames if Path(f.filename).resolve() == path.resolve()] or frames
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def load_callable(spec: str, what: str = "function") -> Any:
    """The callable named by ``file.py:name`` or ``module.name:name`` (an evaluation or data function)."""
    location, sep, name = spec.rpartition(":")
    if not sep or not location or not name:
        raise InputError(f"{what} '{spec}' should read path/to/file.py:name or module.name:name")
    module = _import_location(location)
    found = getattr(module, name, None)
    if not callable(found):
        raise InputError(f"{location} has no {what} '{name}'")
    return found
