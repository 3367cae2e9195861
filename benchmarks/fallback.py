"""``--fallback torch`` on the tiny NMS detector (samples/detection.py): eager vs the artifact.

Compiles once with ``fallback="torch"``, loads the artifact, then times PyTorch eager and the
artifact interleaved (round-robin, median of rounds) on the same inputs, and checks each result
against eager (same number of kept boxes, relative error). Run: ``python -m benchmarks.fallback``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import graphopt
from graphopt.numerics import relative_error
from samples.detection import tiny_detector


def per_call_ms(fn, x, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn(x)
    return (time.perf_counter() - start) / number * 1e3


def main(rounds: int = 7, number: int = 50) -> None:
    model = tiny_detector()
    images = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        graphopt.compile(model, (images[0],), out_dir=Path(tmp) / "detector", fallback="torch")
        compile_s = time.perf_counter() - started
        loaded = graphopt.load(Path(tmp) / "detector")
        errors, counts = [], []
        with torch.no_grad():
            for x in images:
                expected = model(x)
                actual = loaded(x.numpy())
                counts.append((expected[0].shape[0], actual[0].shape[0]))
                errors.append(relative_error(expected, actual))

            def eager(x):
                return model(x)

            array = images[1].numpy()
            eager_ms, artifact_ms = [], []
            for _ in range(rounds):
                eager_ms.append(per_call_ms(eager, images[1], number))
                artifact_ms.append(per_call_ms(lambda _x: loaded(array), None, number))
    segments = [s["kind"] for s in loaded.manifest.fallback["segments"]]
    print(f"segments: {segments}; nodes in PyTorch: {len(loaded.manifest.fallback['nodes'])}")
    print(f"compile: {compile_s:.1f} s")
    print(f"kept boxes (eager, artifact) over 8 images: {counts}")
    print(f"max relative error: {max(errors):.2g}")
    eager_median, artifact_median = statistics.median(eager_ms), statistics.median(artifact_ms)
    print(
        f"eager: {eager_median:.3f} ms; artifact: {artifact_median:.3f} ms; ratio {eager_median / artifact_median:.2f}x"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
