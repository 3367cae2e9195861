"""Small kernels run on one thread: a parallel launch costs about 0.85 us on two threads, more than the
digits CNN's first conv (113K multiply-adds, 1.02 us serially) or a 2x2 max pool saves by it
(schedule_tiled.SERIAL_BELOW_MACS, schedule_simple.MIN_PARALLEL_WORK). Larger ones keep their
parallel loop; either way the values are eager's."""

from __future__ import annotations

import pytest
import torch
import tvm
from torch import nn
from tvm import tirx

import graphopt
from graphopt.targets.cpu.schedule import host_target, schedule_cpu
from graphopt.targets.cpu.schedule_simple import float_operations
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import TOLERANCE, randomize
from tests.targets.test_schedule_cpu import output, rand, relative_error, run, to_relax

TARGET = host_target(num_cores=2)


class Flatten(nn.Module):
    """A transpose-and-flatten (the NCHW view of an NHWC activation): a copy, no arithmetic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) + 0.0


def scheduled(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    mod = schedule_cpu(to_relax(randomize(model), x), TARGET)
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def kernel(functions: dict[str, str], op: str) -> str:
    (script,) = [s for name, s in functions.items() if op in name]
    return script


CASES = {
    # name: model, input, the kernel's name contains, parallel?
    "first conv of the digits CNN (113K MACs)": (nn.Conv2d(1, 16, 3, padding=1), rand(1, 1, 28, 28), "conv2d", False),
    "wide conv (3.6M MACs)": (nn.Conv2d(16, 32, 3, padding=1), rand(1, 16, 28, 28), "conv2d", True),
    "2x2 max pool of 16x28x28": (nn.MaxPool2d(2), rand(1, 16, 28, 28), "max_pool2d", False),
    "3x3 max pool of 64x112x112 (1.8M window reads)": (
        nn.MaxPool2d(3, 2, 1),
        rand(1, 64, 112, 112),
        "max_pool2d",
        True,
    ),
    "classifier 1568 -> 10 (16K MACs)": (nn.Linear(1568, 10), rand(1, 1568), "matmul", False),
    "GEMV over 1 MB of weights (230K MACs)": (nn.Linear(960, 240), rand(1, 960), "matmul", True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_contraction_runs_in_parallel_only_when_it_pays(name: str) -> None:
    model, x, op, parallel = CASES[name]
    functions = scheduled(model, x)
    assert ("T.parallel" in kernel(functions, op)) == parallel
    with torch.no_grad():
        expected = model(x)
    vm, args = run(schedule_cpu(to_relax(model, x), TARGET), x)
    assert relative_error(expected, output(vm, args)) <= TOLERANCE


def test_a_small_copy_is_serial_and_a_large_one_parallel() -> None:
    small = kernel(scheduled(Flatten(), rand(1, 128, 7, 7)), "transpose")  # 6272 floats: 0.36 us serially
    large = kernel(scheduled(Flatten(), rand(1, 128, 28, 28)), "transpose")  # 100352 floats
    assert "T.parallel" not in small and "T.vectorized" in small
    assert "T.parallel" in large


def test_arithmetic_per_element_counts_as_work() -> None:
    x = tirx.Var("x", "float32")
    i = tirx.Var("i", "int64")
    assert float_operations(x) == 0
    assert float_operations(tirx.Add(i, i)) == 0  # index arithmetic is free
    assert float_operations(tirx.Max(tirx.Add(x, x), tirx.FloatImm("float32", 0.0))) == 2
    assert float_operations(tvm.tirx.exp(x)) == 1


def parallel_loop(model: nn.Module, x: torch.Tensor, op: str, dynamic_batch: bool = False) -> str:
    graph, _ = graphopt.optimize(graphopt.capture(model.eval(), (x,), dynamic_batch=dynamic_batch), "O2")
    mod = schedule_cpu(lower_to_relax(graph, dynamic_batch=dynamic_batch)[0], TARGET)
    (script,) = [
        f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and op in gv.name_hint
    ]
    (line,) = [line.strip() for line in script.splitlines() if "T.parallel" in line]
    return line


def test_weight_heavy_layers_run_channel_tiles_outermost() -> None:
    """A 1024 x 1024 layer on 16 rows (4 MB of weights, 64 KB of activations) loops over channel tiles
    (``ax1``, the output columns) outside the row tiles (``ax0``): each weight tile is read once. With
    the sizes the other way round (4096 rows of 64 channels) the rows stay outermost."""
    assert parallel_loop(nn.Linear(1024, 1024), rand(16, 1024), "matmul").startswith("for ax1")
    assert parallel_loop(nn.Linear(64, 64), rand(4096, 64), "matmul").startswith("for ax0")


def test_with_a_dynamic_batch_the_loop_order_is_chosen_at_batch_1() -> None:
    """A symbolic batch counts as 1 row when weights and activations are weighed: BERT-base's MLP
    matmuls, rows outermost, ran 19.4 ms per batch-1 call against 16.9 for the static build."""
    assert parallel_loop(nn.Linear(1024, 1024), rand(2, 1024), "matmul", dynamic_batch=True).startswith("for ax1")
    assert parallel_loop(nn.Linear(64, 64), rand(2, 64), "matmul", dynamic_batch=True).startswith("for ax0")
