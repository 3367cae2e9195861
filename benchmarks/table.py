"""The benchmark's markdown: one latency table (ratio to torch eager, GFLOP/s, fraction of the measured
matmul peak), one compile-time table, and the suite's targets checked against the numbers."""

from __future__ import annotations

import math
from typing import Any

EAGER = "torch eager"


def _cell(result: dict[str, Any], eager_ms: float | None, flops: int, peak: float) -> str:
    if result.get("error"):
        return f"failed: {result['error']}"
    ms = result["latency_ms"]
    ratio = f" ({ms / eager_ms:.2f}x)" if eager_ms else ""
    gflops = flops / (ms / 1e3) / 1e9
    mark = " **MISMATCH**" if result["mismatch"] else ""
    return f"{ms:.3f} ms{ratio}, {gflops:.0f} GF/s = {gflops / peak:.0%}{mark}"


def _ratios(all_results: dict, runner: str) -> dict[str, float]:
    ratios = {}
    for workload, (_, results) in all_results.items():
        eager, mine = results.get(EAGER, {}), results.get(runner, {})
        if "latency_ms" in eager and "latency_ms" in mine:
            ratios[workload] = mine["latency_ms"] / eager["latency_ms"]
    return ratios


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def render(header: dict[str, Any], runners: list[str], all_results: dict, peak: float) -> str:
    lines = [
        "# graphopt CPU benchmark",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']}; threads: {header['threads']} "
        f"(torch, ONNX Runtime intra-op and TVM_NUM_THREADS); 1-min load average at the end: {header['load']:.1f}",
        f"- peak: {peak:.0f} GFLOP/s, a 2048x2048 fp32 torch matmul on the same threads",
        "- cell: median latency (ratio to torch eager), achieved GFLOP/s = fraction of that peak; runners timed "
        "interleaved, each in its own process; outputs compared with eager (float: 1e-4 relative, int8: 5e-2)",
        "",
        "| model | " + " | ".join(runners) + " |",
        "|---|" + "---|" * len(runners),
    ]
    for workload, (flops, results) in all_results.items():
        eager_ms = results.get(EAGER, {}).get("latency_ms")
        cells = [_cell(results[r], eager_ms, flops, peak) if r in results else "-" for r in runners]
        lines.append(f"| {workload} ({flops / 1e9:.2f} GFLOP) | " + " | ".join(cells) + " |")
    lines += compile_time_table(runners, all_results)
    lines += ["", "## Targets", "", *_targets(runners, all_results)]
    return "\n".join(lines) + "\n"


def compile_time_table(runners: list[str], all_results: dict) -> list[str]:
    lines = ["", "## Compile time (s)", "", "| model | " + " | ".join(runners) + " |", "|---|" + "---|" * len(runners)]
    for workload, (_, results) in all_results.items():
        cells = [f"{results[r]['compile_s']:.1f}" if "compile_s" in results.get(r, {}) else "-" for r in runners]
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return lines


def _targets(runners: list[str], all_results: dict) -> list[str]:
    out = []
    untuned = _ratios(all_results, "graphopt")
    if untuned:
        worst = max(untuned, key=untuned.get)
        out.append(
            f"- graphopt untuned <= 1.0x eager on every model: {'met' if max(untuned.values()) <= 1.0 else 'MISSED'} "
            f"(worst {worst} {untuned[worst]:.2f}x); geomean <= 0.7x: {geomean(list(untuned.values())):.2f}x "
            f"({'met' if geomean(list(untuned.values())) <= 0.7 else 'MISSED'})"
        )
    peers = [r for r in ("torch.compile", "ONNX Runtime") if r in runners]
    for mine in ("graphopt", "graphopt tuned"):
        mine_ratios = _ratios(all_results, mine)
        if not mine_ratios:
            continue
        for peer in peers:
            peer_ratios = _ratios(all_results, peer)
            common = [w for w in mine_ratios if w in peer_ratios]
            if common:
                a = geomean([mine_ratios[w] for w in common])
                b = geomean([peer_ratios[w] for w in common])
                out.append(f"- geomean ratio to eager, {mine} {a:.2f}x vs {peer} {b:.2f}x over {len(common)} models")
    mismatches = [
        f"{w}/{r}" for w, (_, res) in all_results.items() for r, v in res.items() if v.get("mismatch") is True
    ]
    out.append(f"- outputs agree with eager: {'all' if not mismatches else 'MISMATCH in ' + ', '.join(mismatches)}")
    return out
