"""How long the HTML explorer takes to open and become interactive in headless Chromium.

Each page is loaded fresh from file:// and timed until ``window.__graphoptReady`` (set after the
first frame is drawn and every handler is attached), in milliseconds since navigation start: that
includes parsing the HTML and its embedded JSON, building the module tree, the layered layout and
the first frame. The 5,000-node graph is a 179-layer Transformer encoder (samples/transformer.py,
tiny dimensions: the layout cost depends on nodes, not tensor sizes), opened both as it opens by
default (layers collapsed into boxes) and with every node expanded (``#expand=all``). Small models
in the same run give the browser's fixed cost, for ratios across machines.

    python benchmarks/viz_open_time.py [--repeat 5] [--layers 179]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphopt  # noqa: E402
from samples.cnn import digits_cnn  # noqa: E402
from samples.resnet import resnet18  # noqa: E402
from samples.transformer import transformer_encoder  # noqa: E402
from tests.viz import chromium  # noqa: E402

TARGET_MS = 2000


def pages(directory: Path, layers: int) -> list[tuple[str, Path, str, int]]:
    """(case, html path, url fragment, node count) for each graph measured."""
    graphs = [
        ("digits CNN", graphopt.capture(digits_cnn(), torch.randn(1, 1, 28, 28))),
        ("ResNet-18", graphopt.capture(resnet18().eval(), torch.randn(1, 3, 224, 224))),
        (
            f"Transformer x{layers}",
            graphopt.capture(transformer_encoder(d_model=16, nhead=2, num_layers=layers), torch.randn(1, 4, 16)),
        ),
    ]
    cases = []
    for name, graph in graphs:
        path = graphopt.visualize(graph, directory / f"{name.split()[0].lower()}.html")
        count = sum(1 for _ in graph.nodes)
        cases.append((f"{name}, default view", path, "", count))
        if count > 1000:
            cases.append((f"{name}, all expanded", path, "expand=all", count))
    return cases


def measure(driver, path: Path, fragment: str, repeat: int) -> dict[str, float]:
    ready, wall, boxes, frame, whole = [], [], 0, [], []
    for _ in range(repeat):
        driver.get("about:blank")
        start = time.perf_counter()
        ready.append(chromium.open_page(driver, path, fragment))
        wall.append((time.perf_counter() - start) * 1000)
        boxes = driver.execute_script("return window.__graphopt.visibleBoxes()")
        frame.append(driver.execute_script("return window.__graphopt.timeDraw(false)"))
        whole.append(driver.execute_script("return window.__graphopt.timeDraw(true)"))
    return {
        "ready": statistics.median(ready),
        "worst": max(ready),
        "wall": statistics.median(wall),
        "frame": statistics.median(frame),
        "whole": statistics.median(whole),
        "boxes": boxes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="page loads per case (median reported)")
    parser.add_argument("--layers", type=int, default=179, help="encoder layers of the big graph (179 = 5,014 nodes)")
    args = parser.parse_args(argv)
    if chromium.missing():
        print(f"missing {', '.join(chromium.missing())}: run scripts/setup_browser.sh as root", file=sys.stderr)
        return 1
    version = subprocess.run([chromium.CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        cases = pages(Path(tmp), args.layers)
        driver = chromium.start()
        try:
            rows = []
            for name, path, fragment, count in cases:
                result = measure(driver, path, fragment, args.repeat)
                rows.append((name, count, path.stat().st_size, result))
        finally:
            chromium.stop(driver)
    baseline = rows[0][3]["ready"]
    print(f"{version}, {platform.processor() or platform.machine()}, {args.repeat} loads per case (median)\n")
    columns = ["graph", "nodes", "HTML", "boxes", "ready (ms)", "worst (ms)", "load+ready seen by driver (ms)"]
    columns += ["frame (ms)", "frame, all in view (ms)", "ready vs digits CNN"]
    print("| " + " | ".join(columns) + " |")
    print("|---" + "|---:" * (len(columns) - 1) + "|")
    for name, count, size, r in rows:
        print(
            f"| {name} | {count:,} | {size / 1e6:.2f} MB | {r['boxes']:,} | {r['ready']:.0f} | {r['worst']:.0f} "
            f"| {r['wall']:.0f} | {r['frame']:.1f} | {r['whole']:.1f} | {r['ready'] / baseline:.1f}x |"
        )
    worst = max(r["worst"] for *_, r in rows)
    print(f"\nslowest page ready after {worst:.0f} ms (target: under {TARGET_MS} ms)")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
