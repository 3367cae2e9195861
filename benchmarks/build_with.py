"""Build a benchmark workload with the graphopt of another checkout (an older commit), for
before/after comparisons of the compiled artifacts (benchmarks/compare_artifacts.py).

    git worktree add /tmp/base COMMIT
    TVM_NUM_THREADS=2 python benchmarks/build_with.py /tmp/base out/old mobilenet_v2
    TVM_NUM_THREADS=2 python benchmarks/build_with.py . out/new mobilenet_v2

The workload is one of benchmarks/models.py or benchmarks/third_party_models.py; the artifact is
built for the CPU with ``num_cores`` = TVM_NUM_THREADS (default 2), untuned.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    checkout, out_dir, workload = Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3]
    from benchmarks.run_suite import use_checkout

    if checkout != ROOT:
        use_checkout(str(checkout))
    import graphopt
    from benchmarks import third_party_models
    from benchmarks.models import WORKLOADS

    model, x = {**WORKLOADS, **third_party_models.WORKLOADS}[workload].build()
    cores = int(os.environ.get("TVM_NUM_THREADS", "2"))
    graphopt.compile(model, x, target="cpu", out_dir=out_dir, num_cores=cores)
    print(f"{workload} built with {graphopt.__file__} into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
