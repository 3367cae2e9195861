"""``graphopt compile MODEL --input-shape 1x784 [--target cpu|cuda|arm] [-o OUT_DIR] ...``

``graphopt compile --ensemble A B C --combine mean --input-shape 1x1x28x28 ...`` fuses the models
into one graph first (``graphopt.fuse_models``; all members take the same inputs) and builds one
artifact that returns the ensemble's answer.

``graphopt compile MODEL --fallback torch ...`` builds what TVM can lower and runs the rest (ops
without a TVM converter, data-dependent parts such as NMS) in PyTorch between the compiled segments;
the report lists those nodes with their source lines, and the artifact needs torch to load.

Capture, optimize and build a deployable artifact with TVM (``graphopt.api.compile``), then run
it once on the example inputs against PyTorch eager and print the error. The output directory
appears only when the build succeeded: a failed compile leaves nothing behind.
"""

from __future__ import annotations

import argparse
from typing import Any

from graphopt.commands import _common
from graphopt.errors import InputError
from graphopt.options import OptionText


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compile",
        help="optimize a model and build a deployable TVM artifact",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser, optional=True)
    add_ensemble_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument("-o", "--out", metavar="OUT_DIR", help="write the artifact here (created only on success)")
    _common.add_pack_argument(parser)
    parser.add_argument(
        "--fallback",
        choices=["torch"],
        help="run the ops TVM cannot lower and the parts with data-dependent shapes (NMS, boolean masks) in "
        "PyTorch between compiled segments; the artifact then needs torch to load",
    )
    parser.add_argument(
        "--quantize", choices=["int8"], help="quantize to int8 after the passes (static with --calibrate, else dynamic)"
    )
    parser.add_argument("--calibrate", metavar="DATA.npz", help="calibration inputs for --quantize (an .npz or .npy)")
    _common.add_pipeline_arguments(parser)
    _common.add_check_arguments(parser)
    _common.add_json_argument(parser)


#: ``graphopt.fusion.COMBINES``, written out so that ``--help`` needs no torch import.
COMBINE_CHOICES = ("mean", "weighted", "vote", "stack", "none")


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    """--ensemble, --combine, --weights: several models fused into one artifact."""
    parser.add_argument(
        "--ensemble",
        nargs="+",
        metavar="MODEL",
        help="fuse these models (each as MODEL above, all on the same --input-shape) into one artifact instead of MODEL",
    )
    parser.add_argument(
        "--combine",
        choices=COMBINE_CHOICES,
        help="with --ensemble: mean (default), weighted (with --weights), vote (the majority class index), "
        "stack (member x output) or none (every member's output)",
    )
    parser.add_argument(
        "--weights", metavar="W1,W2,...", help="with --combine weighted: one non-negative weight per member"
    )
    parser.add_argument(
        "--member-inputs",
        action="store_true",
        help="with --ensemble: each --input-shape is the input of one member, in member order "
        "(members of one input each; default: all members share every --input-shape)",
    )
    parser.add_argument(
        "--horizontal",
        choices=("auto", "on", "off"),
        default=None,
        help="with --ensemble: run same-architecture members as one wide model: auto (default) where "
        "the wide layers' activations stay in cache (small batches, where it pays), on, or off",
    )
    parser.add_argument("--no-horizontal", action="store_true", help="with --ensemble: the same as --horizontal off")


def load_ensemble(args: argparse.Namespace) -> tuple[_common.Loaded, Any]:
    """The --ensemble members loaded and fused; the reference is their eager combination."""
    import torch

    from graphopt.fusion import EagerEnsemble, fuse_models
    from graphopt.model_loading import example_inputs, load_model

    if args.model:
        raise InputError(f"give MODEL or --ensemble, not both (MODEL is '{args.model}')")
    if not args.input_shape:
        raise InputError("--ensemble needs --input-shape (the members share their inputs)")
    combine = args.combine or "mean"
    weights = None
    if args.weights is not None:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise InputError(f"bad --weights '{args.weights}': write numbers separated by commas, e.g. 1,2,1") from None
    inputs = example_inputs(args.input_shape, args.input_dtype)
    models = []
    for spec in args.ensemble:
        model = load_model(spec)
        models.append(model.module() if isinstance(model, torch.export.ExportedProgram) else model)
    given: Any = inputs
    per_member = None
    if args.member_inputs:
        if len(inputs) != len(models):
            raise InputError(
                f"--member-inputs: {len(inputs)} --input-shape given for {len(models)} member(s), give one per member"
            )
        given, per_member = [(t,) for t in inputs], [1] * len(models)
    choices: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    horizontal = choices[args.horizontal or "auto"]
    if args.no_horizontal:
        horizontal = False
    graph, report = fuse_models(models, given, combine=combine, weights=weights, horizontal=horizontal)
    reference = EagerEnsemble(models, combine, weights, per_member=per_member)
    return _common.Loaded(reference, graph.example_inputs, graph), report


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--target and the flags passed through to ``graphopt.targets.build`` (shared with ``bench``)."""
    parser.add_argument("--target", default="cpu", help="cpu (default), cuda or arm")
    parser.add_argument("--dynamic-batch", action="store_true", help="accept any batch size at run time")
    parser.add_argument(
        "--dynamic-seq-len",
        type=int,
        metavar="MAX",
        help="accept any sequence length (dimension 1 of every input of 2+ dims) from 1 to MAX at run time",
    )
    parser.add_argument("--tune", action="store_true", help="tune kernels with MetaSchedule (minutes)")
    parser.add_argument("--tune-trials", type=int, metavar="N", help="MetaSchedule trials when tuning")
    parser.add_argument(
        "--tune-seconds", type=float, metavar="S", help="stop tuning after about S seconds (with --tune-trials)"
    )
    parser.add_argument("--tune-db", metavar="PATH", help="tuning database to reuse and extend")
    parser.add_argument(
        "--tune-rpc",
        metavar="KEY@HOST:PORT",
        help="with --tune (cpu): measure candidates on the devices registered under KEY at a TVM RPC tracker",
    )
    parser.add_argument(
        "--target-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option of graphopt.targets.build, e.g. --target-option num_cores=2 (repeatable)",
    )


def target_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"dynamic_batch": args.dynamic_batch, "tune": args.tune}
    if getattr(args, "pack_library", False):
        options["pack_library"] = True
    if args.dynamic_seq_len is not None:
        options["dynamic_seq_len"] = args.dynamic_seq_len
    if getattr(args, "fallback", None) is not None:
        options["fallback"] = args.fallback
    if args.tune_trials is not None:
        options["tune_trials"] = args.tune_trials
    if args.tune_db is not None:
        options["tune_db"] = args.tune_db
    if args.tune_seconds is not None:
        options["tune_seconds"] = args.tune_seconds
    if args.tune_rpc is not None:
        options["tune_rpc"] = args.tune_rpc
    for entry in args.target_option:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad --target-option '{entry}': write KEY=VALUE")
        options[key.strip().replace("-", "_")] = OptionText(value.strip())
    return options


def run(args: argparse.Namespace) -> int:
    from graphopt.api import compile as compile_model
    from graphopt.pass_manager import check_pass_options

    options = target_options(args)
    pass_options = _common.pass_options(args.pass_option)
    calibration = load_calibration(args.calibrate) if args.calibrate else None
    pipeline = _common.resolve_pipeline(args.passes, calibration)
    check_pass_options(pipeline, pass_options)
    calibrated = any("calibration_data" in info.requires for info in pipeline)
    if args.calibrate and not args.quantize and not calibrated:
        raise InputError("--calibrate is used by --quantize int8 (or a pipeline with quantization passes, e.g. O3)")
    total = len(pipeline)
    options = _common.check_build_request(args.target, args.out, options).to_dict()
    fusion = None
    if args.ensemble:
        loaded, fusion = load_ensemble(args)
    elif args.model is None:
        raise InputError("give a MODEL to compile (or --ensemble MODEL MODEL ...)")
    elif args.combine or args.weights or args.no_horizontal or args.horizontal or args.member_inputs:
        raise InputError("--combine, --weights, --member-inputs and --horizontal go with --ensemble")
    else:
        loaded = _common.load_and_capture(args)
    with _common.status(f"compiling for {args.target}", quiet=args.json):
        compiled = compile_model(
            loaded.graph,
            loaded.inputs,
            target=args.target,
            passes=args.passes,
            out_dir=args.out,
            verify=args.verify,
            calibration_data=calibration,
            pass_options=pass_options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total)],
            quantize=args.quantize,
            **_common.check_options(args, loaded),
            **options,
        )
    check = _common.recorded_check(compiled)
    report = compiled.report
    if args.json:
        data = report.to_dict() if report is not None else {}
        data.update({"target": args.target, "out_dir": args.out, "eager_check": check and check.to_dict()})
        if fusion is not None:
            data["ensemble"] = fusion.to_dict()
        _common.print_json(data)
    else:
        if fusion is not None:
            _common.stdout.print(fusion.table())
        if report is not None:
            _common.stdout.print(report.table())
            for note in report.notes:
                _common.stdout.print(f"note: {note}")
        _common.stdout.print(f"artifact: {args.out}" if args.out else "no --out given: the artifact was not saved")
        _common.print_check(check)
    return 1 if check is not None and check.ok is False else 0


def load_calibration(path: str) -> Any:
    from graphopt.calibration import load_npz

    return load_npz(path)
