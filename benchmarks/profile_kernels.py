"""Per-kernel profile of a suite model: where graphopt's CPU time goes, kernel by kernel.

The CPU build's own steps (capture, O2, lowering, ``schedule_cpu``) run as in ``graphopt compile``;
then every scheduled TIR function is built alone and timed on random inputs of its own shapes
(fastest of several repeats: the machines are shared), and multiplied by the number of times the
model calls it. The table, slowest first, names the function and its argument shapes. The last line times the whole model the same way: the gap to the sum is
what the kernels do not see alone (weights streamed from DRAM instead of cache, the VM).

    python benchmarks/profile_kernels.py resnet18 --threads 2 [--top 15] [--show fused_conv2d1]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _time_ms(function, args, repeat: int = 5) -> float:
    import tvm

    timer = function.time_evaluator("main", tvm.cpu(), number=10, repeat=repeat, min_repeat_ms=50)
    return min(timer(*args).results) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a workload of benchmarks/models.py, e.g. resnet18")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=20, help="rows to print")
    parser.add_argument("--show", help="print the scheduled TIR of the functions whose name contains this")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import tvm
    from tvm import relax
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from benchmarks.models import WORKLOADS
    from graphopt.capture import capture
    from graphopt.pass_manager import optimize
    from graphopt.targets.cpu.schedule import schedule_cpu
    from graphopt.targets.lowering.lower import lower_to_relax
    from graphopt.targets.pipeline.relax_pipeline import compile_module, tvm_pass_lists
    from graphopt.targets.registry import get_target

    model, x = WORKLOADS[args.model].build()
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
        rows.append((ms * calls[gvar.name_hint], ms, calls[gvar.name_hint], gvar.name_hint, shapes))
        if args.show and args.show in gvar.name_hint:
            print(func.script())
    rows.sort(reverse=True)
    print("| total ms | ms per call | calls | function | argument shapes |\n|---|---|---|---|---|")
    for total, ms, n, name, shapes in rows[: args.top]:
        print(f"| {total:.3f} | {ms:.3f} | {n} | {name} | {shapes} |")
    executable = compile_module(mod, backend, target, options)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    timer = vm.time_evaluator("main", tvm.cpu(), number=10, repeat=5)
    whole = min(timer(tvm.runtime.tensor(x.numpy())).results) * 1e3
    print(f"\nsum of kernels {sum(r[0] for r in rows):.3f} ms; whole model {whole:.3f} ms")


if __name__ == "__main__":
    main()
