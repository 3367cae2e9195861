"""What `--tune` buys on the third-party models: where the trials went, what MetaSchedule found for
those kernels (timed alone, as its runner times them), and what the whole model does with it.

Per model: an untuned build, then a tuned build with a fresh database and ``--trials`` trials
(`graphopt.compile(..., tune=True)`), then both artifacts timed interleaved. The tuned build keeps the
tuned schedules only if the whole model ran faster with them (targets/cpu/tuned_or_default.py): the
table shows that verdict and its two times too.

    python benchmarks/tuning.py --models efficientnet_b0-b1,resnet50-b1 --trials 320 [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def kernel_records(db: Path) -> list[tuple[int, float, float]]:
    """Per workload of the database: (records, its first record's seconds: the seeded default
    schedule, its best record's seconds)."""
    by_workload: dict[int, list[float]] = collections.defaultdict(list)
    for line in (db / "database_tuning_record.json").read_text().splitlines():
        workload, record = json.loads(line)
        seconds = record[1]
        by_workload[workload].append(statistics.mean(seconds) if seconds else float("inf"))
    return [(len(times), times[0], min(times)) for times in by_workload.values()]


def interleaved_ms(models: list, array, rounds: int = 15) -> list[float]:
    runs: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for model, times in zip(models, runs, strict=True):
            times.append(statistics.median(model.time(array, number=10, repeat=1)) * 1e3)
    return [statistics.median(times) for times in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_b0-b1,resnet50-b1")
    parser.add_argument("--trials", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import graphopt
    from benchmarks import third_party_models
    from benchmarks.run_suite import cpu_model

    print(f"CPU: {cpu_model()}, {args.threads} threads, {args.trials} trials per model\n")
    print(
        "| model | kernels | tuned | faster alone | default -> best, tuned kernels alone (ms) "
        "| whole model, verdict's run: default / tuned (ms) | kept | untuned / tuned artifact (ms) | tuning (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model, x = third_party_models.WORKLOADS[name].build()
        untuned = graphopt.compile(model, x, target="cpu")
        with tempfile.TemporaryDirectory(prefix="graphopt-tuning-bench-") as db:
            start = time.perf_counter()
            tuned = graphopt.compile(model, x, target="cpu", tune=True, tune_trials=args.trials, tune_db=db)
            seconds = time.perf_counter() - start
            kernels = kernel_records(Path(db))
        trialled = [k for k in kernels if k[0] > 1]
        faster = [k for k in trialled if k[2] < k[1]]
        verdict = tuned.manifest.build.get("tuning", {})
        untuned_ms, tuned_ms = interleaved_ms([untuned, tuned], x.numpy())
        print(
            f"| {name} | {len(kernels)} | {len(trialled)} | {len(faster)} "
            f"| {sum(k[1] for k in trialled) * 1e3:.3f} -> {sum(k[2] for k in trialled) * 1e3:.3f} "
            f"| {verdict.get('default_ms', '-')} / {verdict.get('tuned_ms', '-')} | {verdict.get('kept', '-')} "
            f"| {untuned_ms:.3f} / {tuned_ms:.3f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
