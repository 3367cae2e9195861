"""``graphopt quantize MODEL --input-shape 64x784 --calibrate data.npz [--labels y] [--method mse] ...``

Quantize a model to int8 (static with ``--calibrate``, dynamic without) and print what it cost:
float32 vs int8 top-1 accuracy on the calibration data (with ``--labels``: a .npy file, or the name
of an array in the calibration .npz) or output error, weight bytes, and the latency of both
compiled artifacts on ``--target`` at the ``--input-shape`` batch. ``--sensitivity`` ranks the
layers by the damage each does alone; ``--max-accuracy-drop 0.5`` keeps the worst in float until
int8 accuracy is within 0.5 points. ``--no-residual-adds`` / ``--no-global-pools`` keep the adds and
global pools a quantized conv feeds in float (static only; QuantizeOptions says why they are int8 by
default). ``-o OUT_DIR`` writes the int8 artifact.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.commands import _common
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model to int8 and report accuracy, size and latency against float32",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    parser.add_argument("--calibrate", metavar="DATA.npz", help="calibration inputs (.npz or .npy); none: dynamic")
    parser.add_argument("--calibrate-key", metavar="KEY", help="the array in the .npz holding the inputs")
    parser.add_argument("--labels", metavar="LABELS", help="labels: a .npy/.npz file, or an array name in DATA.npz")
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "mse"], help="calibration")
    parser.add_argument(
        "--activation", default="int8", choices=["int8", "uint8"], help="int8 symmetric or uint8 affine"
    )
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument(
        "--skip", action="append", default=[], metavar="NAME", help="keep a node, module type or glob in float"
    )
    parser.add_argument(
        "--no-residual-adds",
        action="store_true",
        help="static: keep residual adds float (by default both inputs of an add a quantized conv feeds are int8)",
    )
    parser.add_argument(
        "--no-global-pools",
        action="store_true",
        help="static: keep a global average pool's input float (by default int8 where a quantized layer computes it)",
    )
    parser.add_argument("--sensitivity", action="store_true", help="quantize one layer at a time and rank them")
    parser.add_argument("--max-accuracy-drop", type=float, metavar="POINTS", help="keep worst layers float to meet it")
    parser.add_argument("--passes", default="O2", help="float32 passes before quantizing (default O2)")
    parser.add_argument("--target", default="cpu", help="target for the latency comparison and -o (default cpu)")
    parser.add_argument("--no-latency", action="store_true", help="skip building and timing the two artifacts")
    parser.add_argument("-o", "--out", metavar="OUT_DIR", help="write the int8 artifact here")
    _common.add_check_arguments(parser)
    _common.add_json_argument(parser)


def load_labels(spec: str, calibration_path: str | None) -> np.ndarray:
    """``spec`` as a .npy/.npz file, else as an array name inside the calibration .npz."""
    from graphopt.calibration import load_npz

    if Path(spec).exists():
        return load_npz(spec, "y" if spec.endswith(".npz") else None)
    if calibration_path and calibration_path.endswith(".npz"):
        return load_npz(calibration_path, spec)
    raise InputError(f"--labels {spec}: no such file, and no calibration .npz to find an array of that name in")


def _latency_ms(compiled: Any, inputs: tuple[Any, ...]) -> float:
    arrays = [t.numpy() for t in inputs]
    return statistics.median(compiled.time(*arrays, number=20, repeat=5)) * 1e3


def _runs_here(target: str) -> bool:
    """Whether ``target``'s artifacts run (and so can be timed) on this machine: not the cross targets
    (arm runs here only under qemu, whose timings say nothing about an ARM CPU)."""
    from graphopt.targets.registry import get_target

    return get_target(target).runs_on_host


def run(args: argparse.Namespace) -> int:
    from graphopt.calibration import load_npz
    from graphopt.pass_manager import optimize
    from graphopt.quantize import quantize

    if args.calibrate_key and not args.calibrate:
        raise InputError("--calibrate-key needs --calibrate")
    for flag in ("no_residual_adds", "no_global_pools"):
        if getattr(args, flag) and not args.calibrate:
            name = "--" + flag.replace("_", "-")
            raise InputError(f"{name} needs --calibrate (dynamic quantization leaves adds and pools float anyway)")
    calibration = load_npz(args.calibrate, args.calibrate_key) if args.calibrate else None
    labels = load_labels(args.labels, args.calibrate) if args.labels else None
    _common.resolve_passes(args.passes, {})
    _common.check_build_request(args.target, args.out)
    loaded = _common.load_and_capture(args)
    with _common.status("quantizing", quiet=args.json) as spinner:
        optimized, opt_report = optimize(loaded.graph, args.passes)
        quantized, report = quantize(
            optimized,
            calibration,
            method=args.method,
            per_channel=not args.per_tensor,
            activation=args.activation,
            skip=args.skip,
            residual_adds=not args.no_residual_adds,
            global_pools=not args.no_global_pools,
            labels=labels,
            sensitivity=args.sensitivity,
            max_accuracy_drop=args.max_accuracy_drop,
        )
        latency: dict[str, float] = {}
        notes = []
        eager_check = None
        timed = not args.no_latency and _runs_here(args.target)
        if not args.no_latency and not timed:
            notes.append(f"latency not measured: '{args.target}' artifacts do not run on this machine's CPU")
        if args.out or timed:
            from graphopt.targets import build

            if spinner is not None:
                spinner.update(f"building the int8 artifact for {args.target}")
            check = _common.checker(args, loaded, quantized)
            int8 = build(quantized, opt_report, target=args.target, out_dir=args.out, check=check)
            eager_check = _common.recorded_check(int8)
            if timed:
                check = _common.checker(args, loaded, optimized)
                float32 = build(optimized, opt_report, target=args.target, check=check)
                latency = {
                    "float32_ms": _latency_ms(float32, loaded.inputs),
                    "int8_ms": _latency_ms(int8, loaded.inputs),
                }
    data = report.to_dict() | {"latency": latency, "out_dir": args.out, "target": args.target, "notes": notes}
    data["eager_check"] = eager_check and eager_check.to_dict()
    status = 1 if eager_check is not None and eager_check.ok is False else 0
    if args.json:
        _common.print_json(data)
        return status
    table = report.table()
    if latency:
        speedup = latency["float32_ms"] / latency["int8_ms"]
        table.add_row(
            f"latency on {args.target}, batch {loaded.inputs[0].shape[0]}",
            f"{latency['float32_ms']:.3f} ms",
            f"{latency['int8_ms']:.3f} ms ({speedup:.2f}x {'faster' if speedup >= 1 else 'slower'})",
        )
    _common.stdout.print(table)
    for note in notes:
        _common.stdout.print(note)
    if args.out:
        _common.stdout.print(f"int8 artifact: {args.out}")
    _common.print_check(eager_check)
    return status
