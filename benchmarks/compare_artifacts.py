"""Two artifacts of one model timed interleaved, kernels only: is a change faster, slower or the same?

    python benchmarks/build_with.py CHECKOUT OUT WORKLOAD     # (or graphopt compile ... -o OUT)
    TVM_NUM_THREADS=2 nice python benchmarks/compare_artifacts.py out/new out/old --rounds 40

Each round times both libraries once (TVM's time_evaluator, ``--number`` runs each) one after the
other, so load from other users of a shared machine hits both alike; the result is the median of
each side and the median of the per-round ratios. It loads the libraries with the TVM runtime
alone, so artifacts built by another checkout of graphopt (an older commit) compare with today's.
Random inputs of the manifest's shapes and dtypes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path, help="an artifact directory")
    parser.add_argument("old", type=Path, help="the artifact directory to compare it with")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--number", type=int, default=5, help="runs per measurement")
    args = parser.parse_args(argv)

    import tvm
    from tvm.runtime.vm import VirtualMachine

    rng = np.random.default_rng(0)
    timers = []
    for directory in (args.new, args.old):
        manifest = json.loads((directory / "manifest.json").read_text())
        vm = VirtualMachine(tvm.runtime.load_module(str(directory / manifest["library"])), tvm.cpu())
        inputs = [
            tvm.runtime.tensor(rng.random([int(d) for d in spec["shape"]]).astype(spec["dtype"]))
            for spec in manifest["inputs"]
        ]
        vm["main"](*inputs)  # the first call allocates
        timers.append((vm.time_evaluator("main", tvm.cpu(), number=args.number, repeat=1), inputs))
    times: list[list[float]] = [[], []]
    for _ in range(args.rounds):
        for side, (timer, inputs) in zip(times, timers, strict=True):
            side.append(timer(*inputs).mean * 1e3)
    new, old = (statistics.median(side) for side in times)
    ratio = statistics.median(a / b for a, b in zip(*times, strict=True))
    print(
        f"{args.new}: {new:.3f} ms; {args.old}: {old:.3f} ms; new/old {new / old:.3f} (median per-round ratio {ratio:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
