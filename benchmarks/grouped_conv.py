"""Grouped convolution kernels alone: graphopt's packed path vs TVM's grouped conv vs G plain convs.

Each shape is a ``Conv2d(groups=G) + ReLU``; the fused conv function of the CPU build (the same
steps as ``graphopt compile``: capture, O2, lowering, ``schedule_cpu``) is built alone and timed on
random inputs, three ways, interleaved:

- ``packed``: this checkout (weights packed per tile of one group, tiled per group);
- ``tvm grouped``: the same build with the packed legalization declined for ``groups > 1``, i.e.
  TVM's own grouped conv under graphopt's default schedule;
- ``G x plain``: one member's plain conv (``CI/G -> CO/G``) times G, what the groups cost as
  separate convolutions (the horizontally fused ensemble's alternative).

On a shared machine, ``--cpu-time`` (the default: one thread, process CPU time, best of 5 x 5
runs) is far steadier than wall time; ``--threads N`` times wall-clock with N threads instead.

    python benchmarks/grouped_conv.py                       # the ensemble's conv and RegNet-like shapes
    python benchmarks/grouped_conv.py --shapes 64,64,128,14,4,1 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# batch, in channels, out channels, height (= width), groups, stride
DEFAULT_SHAPES = [
    "64,64,128,14,4,1",  # the horizontally fused digits-CNN ensemble's conv2 at batch 64
    "1,48,48,56,6,1",  # RegNetY-400MF's group width 8, stage 1
    "1,104,104,28,13,1",
    "1,208,208,14,26,1",
    "1,440,440,7,55,1",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="batch,cin,cout,size,groups,stride")
    parser.add_argument("--threads", type=int, help="wall-clock with this many threads instead of CPU time")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved measurements per shape")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads or 1)

    import numpy as np
    import torch
    import tvm
    from torch import nn
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from graphopt.capture import capture
    from graphopt.pass_manager import optimize
    from graphopt.targets.cpu import int8_kernels
    from graphopt.targets.cpu.schedule import schedule_cpu
    from graphopt.targets.lowering.lower import lower_to_relax
    from graphopt.targets.pipeline.relax_pipeline import tvm_pass_lists
    from graphopt.targets.registry import get_target

    packed_conv = int8_kernels.legalize_float_conv2d

    def tvm_grouped(bb: Any, call: Any, fallback: Any) -> Any:
        return fallback(bb, call) if int(call.attrs.groups) > 1 else packed_conv(bb, call, fallback)

    backend = get_target("cpu")
    target = backend.make_target({"num_cores": args.threads or 1, "dynamic_batch": False, "tune": False})

    def conv_kernel(model: nn.Module, x: torch.Tensor, packed: bool) -> tuple[Any, list[Any]]:
        int8_kernels.legalize_float_conv2d = packed_conv if packed else tvm_grouped
        try:
            graph, _ = optimize(capture(model, (x,)), "O2")
            mod, _ = lower_to_relax(graph, dynamic_batch=False, target="cpu")
            with tvm.transform.PassContext(opt_level=3), target:
                mod = tvm.transform.Sequential(tvm_pass_lists(target).library_dispatch_passes(target))(mod)
                mod = schedule_cpu(mod, target)
        finally:
            int8_kernels.legalize_float_conv2d = packed_conv
        (func,) = [f for g, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in g.name_hint]
        library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
        inputs = [
            tvm.runtime.tensor(np.random.uniform(size=[int(d) for d in a.shape]).astype(a.dtype))
            for a in ArgInfo.from_prim_func(func)
        ]
        return library.mod, inputs

    def ms(kernel: tuple[Any, list[Any]]) -> float:
        library, inputs = kernel
        if args.threads:
            timer = library.time_evaluator("main", tvm.cpu(), number=5, repeat=7, min_repeat_ms=30)
            return min(timer(*inputs).results) * 1e3
        function = library["main"]
        function(*inputs)
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(5):
                function(*inputs)
            best = min(best, (time.process_time() - start) / 5)
        return best * 1e3

    mode = f"wall-clock, {args.threads} threads" if args.threads else "CPU time, 1 thread"
    print(f"| shape (N, CI->CO, HxW, groups, stride) | packed ms | tvm grouped ms | G x plain ms |  ({mode})")
    print("|---|---|---|---|")
    for spec in args.shapes:
        n, cin, cout, size, groups, stride = (int(v) for v in spec.split(","))
        torch.manual_seed(0)
        grouped = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups), nn.ReLU()).eval()
        plain = nn.Sequential(nn.Conv2d(cin // groups, cout // groups, 3, stride=stride, padding=1), nn.ReLU()).eval()
        x = torch.randn(n, cin, size, size)
        kernels = [
            conv_kernel(grouped, x, True),
            conv_kernel(grouped, x, False),
            conv_kernel(plain, x[:, : cin // groups], True),
        ]
        for _ in range(args.repeat):
            packed, tvm_ms, one = (ms(k) for k in kernels)
            print(
                f"| {n}, {cin}->{cout}, {size}x{size}, {groups}, {stride} | {packed:.3f} | {tvm_ms:.3f} | {groups * one:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
