"""Every fusion group ``mark_fusion_groups`` draws becomes one kernel on the cpu target.

The groups are graphopt's statement of what should run as one kernel (an anchor conv/linear/matmul
with its bias and elementwise epilogue); TVM's FuseOps forms the kernels. This pins that the two
agree on the samples: for each anchor group there is a fused TIR function computing exactly its
ops, in order (so no epilogue op was left outside, e.g. behind a layout transpose).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

import graphopt
from graphopt import ir
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module
from graphopt.targets.lowering.lower import lower_to_relax
from samples.cnn import digits_cnn
from samples.mnist_mlp import mnist_mlp
from samples.mobilenet import mobilenet_small
from samples.resnet import resnet_small

#: How a group pattern's ops are spelled in Relax after legalization (ReLU6 is clip = max then min).
RELAX_OPS = {"bias": ["add"], "relu6": ["maximum", "minimum"], "linear": ["matmul"]}
ANCHORS = ("conv2d", "matmul", "linear")


def anchor_groups(graph: graphopt.Graph) -> Counter:
    patterns = {
        n.meta[ir.FUSION_GROUP]: n.meta[ir.FUSION_PATTERN]
        for n in graph.module.graph.nodes
        if n.meta.get(ir.FUSION_GROUP)
    }
    expected = Counter()
    for pattern in patterns.values():
        ops = pattern.split("+")
        if ops[0] in ANCHORS:
            expected[tuple(op for name in ops for op in RELAX_OPS.get(name, [name]))] += 1
    return expected


def kernels(graph: graphopt.Graph) -> Counter:
    """The op sequence of each kernel call in ``main`` (identical kernels are shared, so count calls)."""
    mod = prepare_cpu_module(lower_to_relax(graph)[0], host_target(2))
    found = Counter()
    for name in re.findall(r"R\.call_tir\((\w+),", mod["main"].script(show_meta=False)):
        parts = name.removeprefix("fused_").split("_")
        found[tuple(re.sub(r"\d+$", "", part) for part in parts if part != "tir")] += 1
    return found


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (mnist_mlp, (1, 784)),
        (digits_cnn, (1, 1, 28, 28)),
        (resnet_small, (1, 3, 32, 32)),
        (mobilenet_small, (1, 3, 32, 32)),
    ],
)
def test_each_anchor_group_is_one_cpu_kernel(factory, shape) -> None:
    optimized, _ = graphopt.optimize(graphopt.capture(factory(), torch.randn(*shape)), "O2")
    expected = anchor_groups(optimized)
    assert expected, "the sample has fusion groups"
    missing = expected - kernels(optimized)
    assert not missing, f"groups not lowered as one kernel: {dict(missing)}"
