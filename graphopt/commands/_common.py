"""Options and steps shared by the model-taking commands: load, capture, optimize, report.

Progress goes to stderr (a rich spinner on a terminal, nothing otherwise), results to stdout, so
``graphopt optimize ... --json | jq`` sees clean JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from graphopt.errors import InputError
from graphopt.options import OptionText

MODEL_HELP = (
    "the model: path/to/file.py:Name (a torch.nn.Module class, instantiated with no arguments, or a factory "
    "function, called with none; the model is put in eval mode), module.name:Name, or a torch.export program "
    "saved with torch.export.save (file.pt2), or an ONNX model (file.onnx; converted with onnx2torch)."
)

#: Tables keep their columns when piped: a non-terminal gets a wide console rather than rich's 80.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


def add_model_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """MODEL (may be left out with ``optional``, e.g. for ``compile --ensemble``), --input-shape (repeatable), --input-dtype."""
    parser.add_argument("model", metavar="MODEL", nargs="?" if optional else None, help=MODEL_HELP)
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="SHAPE",
        help="shape of one model input, e.g. 1x784; repeat once per input (optional for .pt2 programs and "
        ".onnx files without symbolic dimensions)",
    )
    parser.add_argument(
        "--input-dtype",
        action="append",
        metavar="DTYPE",
        help="dtype of the inputs (float32 default, float16, int64, int32, bool, ...): once for all or once per input",
    )


def add_pipeline_arguments(parser: argparse.ArgumentParser, *, default_passes: str = "O2") -> None:
    """--passes, --pass-option, --verify, --dump-ir."""
    parser.add_argument(
        "--passes",
        default=default_passes,
        help=f"a preset O0..O3 or a comma-separated list of pass names (default {default_passes}; see `graphopt passes`)",
    )
    parser.add_argument(
        "--pass-option",
        action="append",
        default=[],
        metavar="PASS.OPTION=VALUE",
        help="set a pass option, e.g. --pass-option fold_constants.max_bytes=1000000 (repeatable)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the graph in PyTorch before and after every pass and stop at the first that changes the outputs",
    )
    parser.add_argument("--dump-ir", metavar="DIR", help="write the graph after every pass to DIR (one file per pass)")


def add_check_arguments(parser: argparse.ArgumentParser, *, keep: bool = True) -> None:
    """--no-check, --keep-mismatch: the check of the artifact against PyTorch eager (graphopt.eager_check)."""
    parser.add_argument("--no-check", action="store_true", help="do not run the artifact against PyTorch eager")
    if not keep:
        return
    parser.add_argument(
        "--keep-mismatch",
        action="store_true",
        help="write the artifact even if it differs from PyTorch eager (marked: graphopt.load then refuses it "
        "without allow_mismatch=True)",
    )


def check_options(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    """The check keywords of ``graphopt.compile`` from the flags: against the user's model itself."""
    return {
        "check": not args.no_check,
        "keep_mismatch": getattr(args, "keep_mismatch", False),
        "reference": loaded.eager,
    }


def checker(args: argparse.Namespace, loaded: Loaded, graph: Any) -> Any:
    """An ``EagerChecker`` for ``targets.build`` from the flags (None with --no-check)."""
    if args.no_check:
        return None
    from graphopt.eager_check import EagerChecker

    return EagerChecker(
        loaded.eager,
        graph,
        loaded.inputs,
        keep_mismatch=getattr(args, "keep_mismatch", False),
        dynamic_seq_len=getattr(args, "dynamic_seq_len", None),
    )


def recorded_check(compiled: Any) -> Any:
    """The ``EagerCheck`` in a compiled model's manifest (None when the check was skipped)."""
    from graphopt.eager_check import recorded

    return recorded(compiled.manifest)


def print_check(check: Any) -> None:
    if check is None:
        return
    colour = "yellow" if check.ok is None else "green" if check.ok else "red"
    text = check.describe()
    head, colon, rest = text.partition(":")
    stdout.print(f"[{colour}]{head}[/]{colon}{rest}", highlight=False)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def pass_options(entries: list[str]) -> dict[str, dict[str, Any]]:
    """``["fold_constants.max_bytes=1000000"]`` -> ``{"fold_constants": {"max_bytes": OptionText("1000000")}}``:
    the pass manager reads each value for the type the pass declares (``graphopt.options``)."""
    options: dict[str, dict[str, Any]] = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        pass_name, dot, option = key.strip().partition(".")
        if not sep or not dot or not pass_name or not option:
            raise InputError(
                f"bad --pass-option '{entry}': write PASS.OPTION=VALUE, e.g. fold_constants.max_bytes=1000000"
            )
        options.setdefault(pass_name.strip(), {})[option.strip()] = OptionText(text.strip())
    return options


@contextlib.contextmanager
def status(message: str, *, quiet: bool = False) -> Iterator[Any]:
    """A spinner on stderr while a slow step runs (none when stderr is not a terminal or ``quiet``)."""
    if quiet or not stderr.is_terminal:
        yield None
        return
    from graphopt import progress

    with stderr.status(message) as spinner, progress.listening(spinner.update):
        yield spinner


class PassProgress:
    """A pass instrument that says which pass is running (``graphopt.progress``: the spinner listens)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0

    def before_pass(self, info: Any, graph: Any) -> None:
        from graphopt import progress

        self.index += 1
        progress.stage(f"pass {self.index}/{self.total}: {info.name}")


@dataclass
class Loaded:
    """What the model-taking commands start from: the user's model, its example inputs, the captured graph."""

    model: Any
    inputs: tuple[Any, ...]
    graph: Any

    def eager(self, *inputs: Any) -> Any:
        """The user's model run in PyTorch eager mode (the reference every result is checked against)."""
        import torch

        with torch.no_grad():
            return self.eager_module(*(inputs or self.inputs))

    @functools.cached_property
    def eager_module(self) -> Any:
        """The model as a callable module (a saved program unlifted once, not on every call)."""
        import torch

        return self.model.module() if isinstance(self.model, torch.export.ExportedProgram) else self.model


def model_name(spec: str, model: Any) -> str:
    """The name reports show: the file's stem for a .pt2 program or .onnx file, else the model's class."""
    from pathlib import Path

    return Path(spec).stem if spec.endswith((".pt2", ".onnx")) else type(model).__name__


def load_and_capture(args: argparse.Namespace) -> Loaded:
    """Load ``args.model``, build example inputs (``--input-shape``/``--input-dtype``), capture."""
    from graphopt.capture import capture, capture_converted
    from graphopt.model_loading import example_inputs, inputs_like_program, load_model
    from graphopt.onnx.io import check_inputs, default_opset, import_onnx, inputs_like_onnx

    # The shapes are checked before the model is loaded (a saved program may omit them).
    inputs = example_inputs(args.input_shape, args.input_dtype) if args.input_shape else None
    with status(f"loading {args.model}", quiet=getattr(args, "json", False)) as spinner:
        onnx_file = args.model.lower().endswith(".onnx")
        proto = None
        model: Any
        if onnx_file:
            model, proto = import_onnx(args.model)
        else:
            model = load_model(args.model)
        import torch

        if inputs is None and (isinstance(model, torch.export.ExportedProgram) or proto is not None):
            if args.input_dtype:
                raise InputError("--input-dtype needs --input-shape")
            inputs = inputs_like_onnx(proto) if proto is not None else inputs_like_program(model)
        elif inputs is None:
            inputs = example_inputs(args.input_shape, args.input_dtype)
        if proto is not None:
            check_inputs(proto, inputs)
        if spinner is not None:
            spinner.update(f"capturing {args.model}")
        if proto is not None:
            graph = capture_converted(model, inputs, method="auto", name=model_name(args.model, model))
        else:
            graph = capture(
                model,
                inputs,
                name=model_name(args.model, model),
                dynamic_batch=bool(getattr(args, "dynamic_batch", False)),
                dynamic_seq_len=getattr(args, "dynamic_seq_len", None),
            )
        if proto is not None:
            graph.notes.insert(0, f"imported from ONNX (opset {default_opset(proto)}) with onnx2torch")
        return Loaded(model, inputs, graph)


def check_build_request(target: str, out_dir: str | None, options: dict[str, Any] | None = None) -> Any:
    """The target exists, ``out_dir`` can take an artifact, the options are known and well typed:
    checked before loading the model. Returns the typed ``BuildOptions``."""
    from graphopt.targets import check_build_request as check

    return check(target, out_dir, options, label="--target-option")


def resolve_pipeline(passes: str, calibration_data: Any = None) -> list[Any]:
    """Check the pipeline (unknown names, missing context) before any slow work; its passes."""
    from graphopt.pass_manager import resolve_pipeline as resolve

    return resolve(passes, {"calibration_data": calibration_data, "labels": None})


def resolve_passes(passes: str, options: dict[str, dict[str, Any]], calibration_data: Any = None) -> int:
    """Check the pipeline and the pass options (names, types) before any slow work; its length."""
    from graphopt.pass_manager import check_pass_options

    pipeline = resolve_pipeline(passes, calibration_data)
    check_pass_options(pipeline, options)
    return len(pipeline)


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def add_pack_argument(parser: argparse.ArgumentParser) -> None:
    """--pack-library (``compile``, ``compress``)."""
    parser.add_argument(
        "--pack-library",
        action="store_true",
        help="store the library xz-packed (model.so.xz: its code ~5x smaller), unpacked into a private "
        "temporary directory at load",
    )
