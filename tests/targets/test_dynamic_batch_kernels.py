"""A dynamic batch compiles to the kernels a static one gets (``dynamic_batch=True``).

Before, the MNIST MLP's ``--dynamic-batch`` artifact (what ``make demo`` builds) ran 264 us per batch-2
call against 11.7 us for the static one (Zen 5, 2 threads). Three causes, each tested here:

* the tiled schedule and the packed weights declined any symbolic extent, so every kernel fell back
  to a naive parallel loop; now a symbolic batch is an outer loop, and a matmul's symbolic rows are
  computed in whole tiles of ``SYMBOLIC_ROW_TILE`` rows (``packed_weights.packed_dense``);
* TVM's LLVM code generator, given a kernel whose symbol sorts before the VM's ``shape_func``, kept
  the kernel's accumulators in memory (a store after every multiply-add: 152 us instead of 52 for that
  matmul at batch 64); ``relax_pipeline.shape_functions_first`` renames the shape function;
* elementwise kernels with a symbolic batch were left scalar.

Measured: benchmarks/results/dynamic_batch.md (``python benchmarks/dynamic_batch.py``).

Numerics: relative 1e-5 against eager (TOLERANCE in conftest.py)."""

from __future__ import annotations

import torch
import tvm
from tvm import te

import graphopt
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module, schedule_cpu
from graphopt.targets.cpu.schedule_simple import Injective
from graphopt.targets.lowering.lower import lower_to_relax
from samples.mnist_mlp import mnist_mlp
from tests.targets.conftest import assert_matches_eager

TARGET = host_target()


def scheduled_dynamic(model: torch.nn.Module, x: torch.Tensor) -> tvm.IRModule:
    graph, _ = graphopt.optimize(graphopt.capture(model, x, dynamic_batch=True))
    mod, _ = lower_to_relax(graph, dynamic_batch=True)
    return schedule_cpu(prepare_cpu_module(mod, TARGET), TARGET)


def block_text(script: str, name: str) -> str:
    """The lines of TVMScript from ``with T.sblock("name")`` to the next block."""
    start = script.index(f'T.sblock("{name}")')
    end = script.find("T.sblock(", start + 1)
    return script[start : end if end >= 0 else len(script)]


def test_a_symbolic_batch_of_rows_is_tiled_in_whole_row_tiles() -> None:
    mod = scheduled_dynamic(mnist_mlp(), torch.randn(2, 784))
    script = mod["fused_matmul_add_relu"].script()
    update = block_text(script, "matmul_update")
    assert "T.where" not in update  # no ragged tile: the accumulators fit registers
    assert "T.unroll(T.int64(8))" in script  # 8 rows per register tile, as at a static batch of 64
    assert "T.parallel(" in script


def test_kernels_keep_their_noalias_compute_functions_beside_the_shape_function() -> None:
    compiled = graphopt.compile(mnist_mlp(), torch.randn(2, 784), dynamic_batch=True)
    llvm_ir = compiled.module.mod.imports[0].inspect_source("ll")
    assert "@_graphopt_shape_func" in llvm_ir
    assert "@fused_matmul_add_relu_compute_(ptr noalias" in llvm_ir


def test_rows_past_the_batch_in_the_last_tile_do_not_change_the_answer() -> None:
    model = mnist_mlp()
    compiled = graphopt.compile(model, torch.randn(2, 784), dynamic_batch=True)
    for batch in (1, 5, 8, 9, 17):
        x = torch.randn(batch, 784, generator=torch.Generator().manual_seed(batch))
        assert compiled(x.numpy()).shape == (batch, 10)
        assert_matches_eager(model, compiled, x)


def test_an_elementwise_kernel_over_a_symbolic_batch_is_vectorized() -> None:
    n = tvm.tirx.Var("n", "int64")
    x = te.placeholder((n, 64), name="x")
    y = te.compute((n, 64), lambda i, j: x[i, j] * 2.0, name="y")
    func = te.create_prim_func([x, y])
    scheduled = Injective().apply(func, TARGET, False)
    assert scheduled is not None
    script = scheduled.mod["main"].script()
    assert "T.vectorized(" in script and "T.parallel(" in script
