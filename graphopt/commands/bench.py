"""``graphopt bench MODEL --input-shape 1x784 [--target cpu] [--runs N]``: PyTorch eager vs the compiled model.

Both run on the same inputs; each figure is the median of ``--repeat`` measurements that each
average ``--runs`` calls, after warm-up (the compiled model through TVM's time_evaluator). Eager is
timed first, before TVM runs anything in the process (TVM's thread pool slows torch afterwards).
With ``--rpc HOST:PORT`` (or ``KEY@TRACKER_HOST:PORT``) the artifact is uploaded to a TVM RPC
server and timed there; eager still runs here. Shared machines are noisy: compare the ratio.

``--profile`` also times every kernel of the compiled model (``CompiledModel.profile``): the
slowest ``--top`` kernels with their calls, milliseconds, share of the run, GFLOP/s and the graph
nodes each computes (``graphopt viz --profile`` draws the same on the graph).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.commands.compile import add_target_arguments, target_options
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time PyTorch eager against the compiled model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument("--passes", default="O2", help="pass pipeline before building (default O2)")
    parser.add_argument("--runs", type=int, default=20, metavar="N", help="calls averaged per measurement (default 20)")
    parser.add_argument(
        "--repeat", type=int, default=5, metavar="N", help="measurements; the median is shown (default 5)"
    )
    parser.add_argument(
        "--rpc",
        metavar="HOST:PORT",
        help="time the artifact on a TVM RPC server (HOST:PORT, or KEY@HOST:PORT for a tracker)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also time every kernel of the compiled model (ms, share, GFLOP/s)"
    )
    parser.add_argument("--top", type=int, default=15, metavar="N", help="with --profile: kernels shown (default 15)")
    _common.add_check_arguments(parser, keep=False)
    _common.add_json_argument(parser)


def time_calls(function: Any, *, runs: int, repeat: int, warmup: int = 3) -> list[float]:
    """``repeat`` measurements, each the mean seconds per call of ``function()`` over ``runs`` calls."""
    for _ in range(warmup):
        function()
    measurements = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(runs):
            function()
        measurements.append((time.perf_counter() - start) / runs)
    return measurements


def run(args: argparse.Namespace) -> int:
    from graphopt.api import compile as compile_model

    if args.runs < 1 or args.repeat < 1 or args.top < 1:
        raise InputError("--runs, --repeat and --top must be at least 1")
    if args.profile and args.rpc:
        raise InputError("--profile times kernels on this machine; it does not combine with --rpc")
    options = target_options(args)
    options = _common.check_build_request(args.target, None, options).to_dict()
    loaded = _common.load_and_capture(args)
    arrays = [t.numpy() for t in loaded.inputs]
    with _common.status("timing PyTorch eager", quiet=args.json):
        # Eager is timed before TVM runs anything in this process: right after TVM's thread pool
        # has worked, torch's own threads ran 5-40x slower here, which would flatter the artifact.
        eager = statistics.median(time_calls(loaded.eager, runs=args.runs, repeat=args.repeat))
    with tempfile.TemporaryDirectory(prefix="graphopt-bench-") as scratch:
        # For --rpc the artifact is written out, so the device gets the library built for it
        # (cross-compiled for arm) rather than one exported again on this host.
        out_dir = Path(scratch) / "artifact" if args.rpc else None
        with _common.status(f"compiling for {args.target}", quiet=args.json):
            compiled = compile_model(
                loaded.graph,
                loaded.inputs,
                target=args.target,
                passes=args.passes,
                out_dir=out_dir,
                **_common.check_options(args, loaded),
                **options,
            )
        with _common.status("timing the compiled model", quiet=args.json):
            if args.rpc:
                from graphopt.targets.runtime.rpc import time_remote

                assert out_dir is not None  # written out for --rpc (above)
                compiled_time = time_remote(out_dir, arrays, args.rpc, number=args.runs, repeat=args.repeat)
            else:
                compiled(*arrays)  # warm-up: the first call allocates
                compiled_time = statistics.median(compiled.time(*arrays, number=args.runs, repeat=args.repeat))
        profile = None
        if args.profile:
            if not hasattr(compiled, "profile"):
                raise InputError("--profile is not available for a model with PyTorch fallback segments")
            with _common.status("timing every kernel", quiet=args.json):
                profile = compiled.profile(*arrays, runs=args.runs)
    result = {
        "model": args.model,
        "target": args.target,
        "where": args.rpc or "local",
        "inputs": [list(t.shape) for t in loaded.inputs],
        "runs": args.runs,
        "repeat": args.repeat,
        "eager_ms": eager * 1000,
        "compiled_ms": compiled_time * 1000,
        "speedup": eager / compiled_time if compiled_time > 0 else None,
        "latency_ratio": compiled_time / eager if eager > 0 else None,  # the README tables' convention
    }
    if profile is not None:
        result["profile"] = profile.to_dict()
    if args.json:
        _common.print_json(result)
        return 0
    from rich.table import Table

    table = Table(title=f"graphopt bench: {args.model} on {args.target} ({result['where']})")
    for column in ("runtime", "ms per call", "latency vs eager (lower is faster)", "speed-up"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    table.add_row("PyTorch eager", f"{result['eager_ms']:.4f}", "1.00", "1.00x")
    table.add_row(
        f"graphopt ({args.passes}, {args.target})",
        f"{result['compiled_ms']:.4f}",
        f"{result['latency_ratio']:.2f}",
        f"{result['speedup']:.2f}x {'faster' if result['speedup'] >= 1 else 'slower'}",
    )
    _common.stdout.print(table)
    if profile is not None:
        _common.stdout.print(profile_table(profile, args.top))
    return 0


def profile_table(profile: Any, top: int) -> Any:
    """The slowest ``top`` kernels of a ``KernelProfile`` as a rich Table, the rest summed."""
    from rich.table import Table

    total = profile.kernel_ms
    table = Table(
        title=f"kernels, slowest first (mean of {profile.runs} instrumented runs: {total:.3f} ms; "
        f"uninstrumented {profile.whole_ms:.3f} ms)",
        caption="; ".join(profile.notes) or None,
    )
    for column in ("kernel", "calls", "ms per run", "share", "GFLOP/s", "graph nodes"):
        table.add_column(column, justify="left" if column in ("kernel", "graph nodes") else "right")
    for kernel in profile.kernels[:top]:
        rate = f"{kernel.gflops:.1f}" if kernel.gflops is not None else "-"
        nodes = ", ".join(kernel.nodes[:3]) + (f" +{len(kernel.nodes) - 3}" if len(kernel.nodes) > 3 else "")
        table.add_row(kernel.name, str(kernel.calls), f"{kernel.ms:.4f}", f"{kernel.ms / total:.1%}", rate, nodes)
    rest = profile.kernels[top:]
    if rest:
        ms = sum(k.ms for k in rest)
        table.add_row(f"({len(rest)} more)", str(sum(k.calls for k in rest)), f"{ms:.4f}", f"{ms / total:.1%}", "", "")
    return table
