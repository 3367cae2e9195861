"""``graphopt export MODEL -o model.onnx [--input-shape 1x784] [--passes O2] [--quantize int8 --calibrate d.npz]``

Capture and optimize a model (any MODEL the other commands take, an ONNX file included), then write
the optimized graph as ONNX (``graphopt.export_onnx``): checked with ``onnx.checker`` (full check)
and, when ONNX Runtime is installed, run by it on the example inputs against the optimized graph in
PyTorch (exit status 1 if they differ by more than 1e-4 relative; not judged for int8).
"""

from __future__ import annotations

import argparse
from typing import Any

from graphopt.commands import _common
from graphopt.errors import InputError

TOLERANCE = 1e-4


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="optimize a model and write it as ONNX (checked by onnx.checker and ONNX Runtime)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    _common.add_pipeline_arguments(parser)
    parser.add_argument("-o", "--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    parser.add_argument("--opset", type=int, help="ONNX opset to export at (default: torch.onnx's)")
    parser.add_argument(
        "--quantize", choices=["int8"], help="quantize to int8 after the passes (static with --calibrate, else dynamic)"
    )
    parser.add_argument("--calibrate", metavar="DATA.npz", help="calibration inputs for --quantize (an .npz or .npy)")
    _common.add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from graphopt.api import _quantize
    from graphopt.onnx.io import export_onnx
    from graphopt.pass_manager import optimize

    if not args.out.lower().endswith(".onnx"):
        raise InputError(f"-o {args.out}: name the ONNX file *.onnx")
    calibration = None
    if args.calibrate:
        from graphopt.calibration import load_npz

        if not args.quantize:
            raise InputError("--calibrate is used by --quantize int8")
        calibration = load_npz(args.calibrate)
    options = _common.pass_options(args.pass_option)
    total = _common.resolve_passes(args.passes, options, calibration)
    loaded = _common.load_and_capture(args)
    with _common.status("optimizing", quiet=args.json) as spinner:
        optimized, report = optimize(
            loaded.graph,
            args.passes,
            verify=args.verify,
            calibration_data=calibration,
            options=options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total)],
        )
        if args.quantize:
            optimized = _quantize(optimized, report, args.quantize, calibration)
        if spinner is not None:
            spinner.update(f"exporting to {args.out}")
        path = export_onnx(optimized, args.out, opset=args.opset)
        check = check_with_onnxruntime(path, optimized, strict=not args.quantize)
    if args.json:
        data = report.to_dict()
        data.update({"out": str(path), "onnxruntime_check": check})
        _common.print_json(data)
    else:
        _common.stdout.print(report.table())
        for note in report.notes:
            _common.stdout.print(f"note: {note}")
        _common.stdout.print(f"wrote {path}")
        if not check["checked"]:
            _common.stdout.print(f"not run in ONNX Runtime: {check['reason']}")
        else:
            verdict = "" if check["ok"] is None else (" (ok)" if check["ok"] else " (MISMATCH)")
            _common.stdout.print(
                f"ONNX Runtime vs the optimized graph: max relative error {check['max_relative_error']:.3g}{verdict}"
            )
    return 1 if check.get("ok") is False else 0


def check_with_onnxruntime(path: Any, graph: Any, *, strict: bool) -> dict[str, Any]:
    """Run the written file in ONNX Runtime on the graph's example inputs; compare with the graph."""
    from graphopt.numerics import relative_error
    from graphopt.onnx.io import run_onnxruntime

    try:
        outputs = run_onnxruntime(path, graph.example_inputs)
    except ImportError:
        return {"checked": False, "reason": "onnxruntime is not installed"}
    drift = relative_error(graph(*graph.example_inputs), outputs if len(outputs) > 1 else outputs[0])
    return {
        "checked": True,
        "max_relative_error": drift,
        "tolerance": TOLERANCE if strict else None,
        "ok": drift <= TOLERANCE if strict else None,
    }
