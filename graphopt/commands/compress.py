"""``graphopt compress MODEL --input-shape 1x784 --prune 0.9 --share 4 [--quantize int8] -o DIR``

Compress a model in the seed's order, prune -> share -> quantize (each step optional), and print a
table with one row per stage: top-1 accuracy (with ``--eval module:fn``), the size on disk of the
stage's artifact, its weights in memory once loaded, and its latency on ``--target`` at the
``--input-shape`` batch. ``--data module:fn`` (a function returning ``(inputs, labels)`` tensors or
batches of them) fine-tunes after pruning and after sharing (``--fine-tune-epochs``, default 3):
pruned weights stay zero, shared ones keep their codebook. ``-o DIR`` writes the last stage's
compressed artifact. ``--eval`` names a function taking a model (callable on a batch tensor, giving
logits) and returning its accuracy in percent; it is run on each stage in PyTorch and on the final
artifact as loaded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="prune, share weights and quantize a model; size, accuracy and latency per stage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    parser.add_argument("--prune", type=float, metavar="SPARSITY", help="magnitude-prune each layer to this sparsity")
    parser.add_argument("--share", type=int, metavar="BITS", help="share weights: 2^BITS values per layer (1..8)")
    parser.add_argument("--per-channel", action="store_true", help="with --share: one codebook per output channel")
    parser.add_argument(
        "--channel-scale",
        action="store_true",
        help="with --share: one codebook per layer over the output channels each divided by its own scale "
        "(for BN-folded convs), scales and centroids float16",
    )
    parser.add_argument("--half-biases", action="store_true", help="with --share: round the biases to float16 values")
    parser.add_argument("--quantize", choices=["int8"], help="quantize last (dynamic int8)")
    parser.add_argument("--eval", metavar="MODULE:FN", help="FN(model) -> accuracy in percent, run on every stage")
    parser.add_argument("--data", metavar="MODULE:FN", help="FN() -> training data, to fine-tune after each step")
    parser.add_argument("--fine-tune-epochs", type=int, default=3, metavar="N", help="epochs per fine-tune (default 3)")
    parser.add_argument("--target", default="cpu", help="target of the artifacts (default cpu)")
    parser.add_argument("--no-latency", action="store_true", help="do not time the artifacts")
    parser.add_argument("-o", "--out", metavar="OUT_DIR", help="write the last stage's compressed artifact here")
    _common.add_pack_argument(parser)
    _common.add_json_argument(parser)


@dataclass
class Stage:
    """One row of the table: the stage's graph and what its artifact measured."""

    name: str
    graph: Any
    accuracy: float | None = None
    disk_bytes: int = 0
    payload_bytes: int = 0
    memory_bytes: int = 0
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "graph"}


def load_function(spec: str, option: str) -> Any:
    """``module:fn`` (or ``path/file.py:fn``) imported; ``InputError`` if it is not a function."""
    from graphopt.model_loading import _import_location

    location, sep, name = spec.rpartition(":")
    if not sep or not location or not name:
        raise InputError(f"{option} {spec}: expected module:function or path/file.py:function")
    function = getattr(_import_location(location), name, None)
    if not callable(function):
        raise InputError(f"{option} {spec}: {location} has no function '{name}'")
    return function


def _call(function: Any, option: str, *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(f"{option} raised {type(error).__name__}: {first}") from error


def _score(evaluate: Any, model: Any) -> float | None:
    if evaluate is None:
        return None
    value = _call(evaluate, "--eval", model)
    if not isinstance(value, (int, float)):
        raise InputError(f"--eval returned a {type(value).__name__}, expected a number (accuracy in percent)")
    return float(value)


class _ArtifactModel:
    """A loaded artifact as --eval sees the stages: called on a torch batch, returns torch logits."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def __call__(self, inputs: Any) -> Any:
        import torch

        return torch.from_numpy(self.compiled(inputs.numpy()))


def _weights_in_memory(graph: Any) -> int:
    return sum(t.numel() * t.element_size() for t in graph.module.state_dict().values())


def _measure(stage: Stage, args: argparse.Namespace, inputs: tuple[Any, ...], out_dir: Path, final: bool) -> Any:
    import graphopt

    compressed = stage.name != "float32"
    graphopt.compile(
        stage.graph,
        None,
        target=args.target,
        out_dir=out_dir,
        compress=compressed,
        dynamic_batch=True,
        pack_library=args.pack_library,
    )
    stage.disk_bytes = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    stage.memory_bytes = _weights_in_memory(stage.graph)
    weights = out_dir / "weights.gopw"
    stage.payload_bytes = weights.stat().st_size if compressed else stage.memory_bytes
    if not args.no_latency:
        static = graphopt.compile(stage.graph, None, target=args.target, compress=compressed)
        arrays = [t.numpy() for t in inputs]
        stage.latency_ms = statistics.median(static.time(*arrays, number=20, repeat=5)) * 1e3
    return graphopt.load(out_dir) if final else None


def run(args: argparse.Namespace) -> int:
    import graphopt
    from graphopt.compression.codec import check_bits
    from graphopt.compression.magnitude import check_sparsity

    if args.share is not None:
        check_bits(args.share)
    elif args.per_channel or args.channel_scale or args.half_biases:
        raise InputError("--per-channel, --channel-scale and --half-biases go with --share BITS")
    if args.per_channel and args.channel_scale:
        raise InputError("--per-channel and --channel-scale exclude each other: give one")
    if args.prune is not None:
        check_sparsity(args.prune)
    if args.prune is None and args.share is None and args.quantize is None:
        raise InputError("nothing to do: give --prune, --share and/or --quantize")
    evaluate = load_function(args.eval, "--eval") if args.eval else None
    data = _call(load_function(args.data, "--data"), "--data") if args.data else None
    loaded = _common.load_and_capture(args)
    stages = []
    with _common.status("compressing", quiet=args.json):
        graph, _ = graphopt.optimize(loaded.graph, "O2")
        stages.append(Stage("float32", graph))
        if args.prune is not None:
            graph, _ = graphopt.magnitude_prune(graph, sparsity=args.prune, passes=None)
            if data is not None:
                graph, _ = graphopt.fine_tune(graph, data, epochs=args.fine_tune_epochs, lr=1e-3)
            stages.append(Stage(f"pruned {args.prune:.0%}", graph))
        if args.share is not None:
            graph, _ = graphopt.share_weights(
                graph, bits=args.share, per_channel=args.per_channel, channel_scale=args.channel_scale,
                half_biases=args.half_biases, passes=None,
            )  # fmt: skip
            if data is not None:
                graph, _ = graphopt.fine_tune(graph, data, epochs=args.fine_tune_epochs)
            stages.append(Stage(f"shared {args.share} bits", graph))
        if args.quantize is not None:
            # after sharing, one scale per tensor keeps the codebook: 2^BITS int8 values per layer
            quantized, _ = graphopt.quantize(graph, per_channel=args.share is None)
            quantized.notes = list(graph.notes)
            stages.append(Stage("int8", quantized))
        artifact = None
        with tempfile.TemporaryDirectory(prefix="graphopt-compress-") as scratch:
            for number, stage in enumerate(stages):
                final = number == len(stages) - 1
                out_dir = Path(args.out) if final and args.out else Path(scratch) / str(number)
                artifact = _measure(stage, args, loaded.inputs, out_dir, final)
                stage.accuracy = _score(evaluate, stage.graph)
            artifact_accuracy = _score(evaluate, _ArtifactModel(artifact)) if artifact is not None else None
    return _print(stages, artifact_accuracy, args)


def _print(stages: list[Stage], artifact_accuracy: float | None, args: argparse.Namespace) -> int:
    from rich.table import Table

    from graphopt.report import human_bytes

    if args.json:
        _common.print_json({"stages": [s.to_dict() for s in stages], "artifact_accuracy": artifact_accuracy})
        return 0
    base = stages[0]
    table = Table(title=f"graphopt compress: {args.model} on {args.target}")
    for column in ("stage", "top-1", "artifact on disk", "weight payload", "weights in memory", "latency"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in stages:
        disk = f" ({base.disk_bytes / stage.disk_bytes:.1f}x smaller)" if stage is not base else ""
        payload = f" ({base.payload_bytes / stage.payload_bytes:.1f}x smaller)" if stage is not base else ""
        table.add_row(
            stage.name,
            "-" if stage.accuracy is None else f"{stage.accuracy:.2f}%",
            human_bytes(stage.disk_bytes) + disk,
            human_bytes(stage.payload_bytes) + payload,
            human_bytes(stage.memory_bytes),
            "-" if stage.latency_ms is None else f"{stage.latency_ms:.3f} ms",
        )
    _common.stdout.print(table)
    if artifact_accuracy is not None:
        _common.stdout.print(f"top-1 of the last stage's artifact as loaded: {artifact_accuracy:.2f}%")
    if args.out:
        _common.stdout.print(f"compressed artifact: {args.out}")
    return 0
