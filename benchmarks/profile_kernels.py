"""Per-kernel profile of a suite model: where graphopt's CPU time goes, kernel by kernel.

The CPU build's own steps (capture, O2, lowering, ``schedule_cpu``) run as in ``graphopt compile``;
then every scheduled TIR function is built alone and timed on random inputs of its own shapes
(the fastest of 40 single calls spread over 0.2 s: the machines are shared), and multiplied by the number of times the
model calls it. The table, slowest first, names the function, its argument shapes and its GFLOP/s
(TVM's FLOP estimate of the scheduled function over its time). The last line times the whole model
the same way: the gap to the sum is what the kernels do not see alone (weights streamed from DRAM
instead of cache, the VM).

    python benchmarks/profile_kernels.py resnet18 --threads 2 [--top 15] [--show fused_conv2d1]
    python benchmarks/profile_kernels.py efficientnet_b0-b1 --out benchmarks/results/profile_efficientnet_b0.md

The model is a workload of benchmarks/models.py or benchmarks/third_party_models.py.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _time_ms(function, args, repeat: int = 40) -> float:
    """The fastest of ``repeat`` single calls (after one warm-up call), 5 ms apart: on a shared
    machine an average over many calls includes the time the threads were preempted, which made
    every conv of a loaded run look equally slow (~32 GFLOP/s), while the fastest single call is
    what the kernel does when it has the cores. The pause spreads the calls over several
    scheduler time slices: back to back, the 40 calls of a short kernel fit in one slice, and a
    slice in which one of the two threads was preempted showed the kernel at half its rate."""
    import tvm

    timer = function.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat, cooldown_interval_ms=5)
    return min(timer(*args).results) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a workload of benchmarks/models.py or third_party_models.py, e.g. resnet18")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=20, help="rows to print")
    parser.add_argument("--show", help="print the scheduled TIR of the functions whose name contains this")
    parser.add_argument("--out", type=Path, help="write the table (markdown, with the command and CPU) here too")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import tvm
    from tvm import relax
    from tvm.s_tir.analysis import estimate_tir_flops
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from benchmarks import third_party_models
    from benchmarks.models import WORKLOADS
    from benchmarks.run_suite import run_header
    from graphopt.capture import capture
    from graphopt.pass_manager import optimize
    from graphopt.targets.cpu.schedule import schedule_cpu
    from graphopt.targets.lowering.lower import lower_to_relax
    from graphopt.targets.pipeline.relax_pipeline import compile_module, tvm_pass_lists
    from graphopt.targets.registry import get_target

    model, x = {**WORKLOADS, **third_party_models.WORKLOADS}[args.model].build()
    graph, _ = optimize(capture(model, (x,)), "O2")
    backend = get_target("cpu")
    options = {"num_cores": args.threads, "dynamic_batch": False, "tune": False}
    target = backend.make_target(options)
    mod, _ = lower_to_relax(graph, dynamic_batch=False, target="cpu")
    with tvm.transform.PassContext(opt_level=3), target:
        scheduled = tvm.transform.Sequential(tvm_pass_lists(target).library_dispatch_passes(target))(mod)
        scheduled = schedule_cpu(scheduled, target)

    calls: collections.Counter[str] = collections.Counter()

    def count(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir":
            calls[expr.args[0].name_hint] += 1

    relax.analysis.post_order_visit(scheduled["main"].body, count)
    rows = []
    for gvar, func in scheduled.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or not calls[gvar.name_hint]:
            continue
        library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
        infos = ArgInfo.from_prim_func(func)
        inputs = [tvm.runtime.tensor(np.random.uniform(size=[int(d) for d in a.shape]).astype(a.dtype)) for a in infos]
        ms = _time_ms(library.mod, inputs)
        shapes = " ".join("x".join(str(int(d)) for d in a.shape) for a in infos)
        gflops = estimate_tir_flops(tvm.IRModule({"main": func})) / (ms / 1e3) / 1e9
        rows.append((ms * calls[gvar.name_hint], ms, calls[gvar.name_hint], gvar.name_hint, shapes, gflops))
        if args.show and args.show in gvar.name_hint:
            print(func.script())
    rows.sort(reverse=True)
    total_ms = sum(r[0] for r in rows)
    lines = [
        "| total ms | share | ms per call | calls | GFLOP/s | function | argument shapes |",
        "|---|---|---|---|---|---|---|",
    ]
    for total, ms, n, name, shapes, gflops in rows[: args.top]:
        lines.append(f"| {total:.3f} | {total / total_ms:.0%} | {ms:.3f} | {n} | {gflops:.0f} | {name} | {shapes} |")
    executable = compile_module(mod, backend, target, options)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    timer = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=40)
    whole = min(timer(tvm.runtime.tensor(x.numpy())).results) * 1e3
    lines.append(f"\nsum of kernels {total_ms:.3f} ms ({len(rows)} functions); whole model {whole:.3f} ms")
    table = "\n".join(lines)
    print(table)
    if args.out:
        header = run_header("benchmarks/profile_kernels.py", sys.argv[1:], args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            f"# Kernel profile: {args.model}\n\n- command: `{header['command']}`\n- date: {header['date']}; CPU: "
            f"{header['cpu']}; threads: {args.threads}; 1-min load average at the end: {header['load']:.1f}"
            f"\n- slowest {min(args.top, len(rows))} of {len(rows)} functions; each kernel timed alone, the fastest "
            f"of 40 single calls 5 ms apart\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
