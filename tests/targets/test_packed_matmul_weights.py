"""Float matmuls by weights reach the packed-weight kernel also when the weight arrives transposed
(targets/cpu/packed_weights.py, ``computed_from_constants``). In ViT-B/16 as the benchmark builds it
(a ``TransformerEncoder`` after a class token and positions), the encoder's projections and MLP reach
the matmul as ``permute_dims(W)``, not pre-transposed by the graph passes as they are for the same
encoder alone, and were left to TVM's matmul on the unpacked ``[K, N]`` weight: its encoder matmuls
ran at 333-394 GFLOP/s, now 474-481; the whole model 123 -> 96 ms (Zen 5, 2 threads). An activation
times an activation (attention's scores) is not a weight and stays as it was.

Numerics: relative 1e-5 against eager (TOLERANCE in conftest.py: K-term float32 dot products summed
in another order)."""

from __future__ import annotations

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

import graphopt
from graphopt.targets.cpu.packed_weights import tile_width
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module, schedule_cpu
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import TOLERANCE

TARGET = host_target()


class TinyViT(nn.Module):
    """ViT-B/16 as benchmarks/third_party_models.py builds it (patches, class token, positions, a pre-norm
    GELU encoder), at width 64: its encoder's weights reach the matmuls as ``permute_dims(W)``."""

    def __init__(self, dim: int = 64, size: int = 32, patch: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, 4, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.encoder(torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position)


def encoder_layer() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinyViT().eval(), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def prepared(model: nn.Module, x: torch.Tensor) -> tvm.IRModule:
    graph, _ = graphopt.optimize(graphopt.capture(model, (x,)), "O2")
    mod, _ = lower_to_relax(graph)
    return prepare_cpu_module(mod, TARGET)


def matmul_weight_shapes(mod: tvm.IRModule) -> list[tuple[int, ...]]:
    """The second operand's shape of every fused matmul kernel."""
    shapes = []
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and "matmul" in gvar.name_hint:
            shapes.append(tuple(int(d) for d in ArgInfo.from_prim_func(func)[1].shape))
    return shapes


def test_the_projections_and_the_mlp_read_packed_weights() -> None:
    model, x = encoder_layer()
    shapes = matmul_weight_shapes(prepared(model, x))
    tokens = 17  # 16 patches and the class token
    # q/k/v in one 64 -> 192 projection, the output projection 64 -> 64, the MLP 64 -> 128 -> 64:
    # each weight [K, N] packed to [N/B, K, B], B the register tile the schedule picks
    for k, n in ((64, 192), (64, 64), (64, 128), (128, 64)):
        width = tile_width(tokens, n, k, TARGET)
        assert width is not None and (n // width, k, width) in shapes, (k, n, shapes)
    # the scores (q @ k^T) and the weighted values (p @ v) multiply activations, per head as they come
    assert (4, 16, tokens) in shapes and (4, tokens, 16) in shapes, shapes


def assert_compiled_matches_eager(model: nn.Module, x: torch.Tensor) -> None:
    vm = relax.VirtualMachine(tvm.compile(schedule_cpu(prepared(model, x), TARGET), TARGET), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    got = (out[0] if not hasattr(out, "numpy") else out).numpy()
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() / np.abs(want).max() <= TOLERANCE


def test_the_packed_encoder_layer_matches_eager() -> None:
    assert_compiled_matches_eager(*encoder_layer())


def test_at_a_batch_of_several_images_the_input_projection_is_one_packed_matmul() -> None:
    """At batch > 1 torch.export writes MultiheadAttention's input projection (on its ``[L, B, E]``
    transpose) as the weight broadcast to ``[L, K, N]`` and ``L`` batched matmuls of ``B`` rows: TVM ran
    them on the unpacked weight, half of ViT-B/16's time at batch 8 (1463 ms, ONNX Runtime 712; now
    742). ``broadcast_weights.UnbatchBroadcastWeights`` makes it one ``[L*B, K]`` matmul by the weight."""
    model, _ = encoder_layer()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    shapes = matmul_weight_shapes(prepared(model, x))
    rows, k, n = 17 * 4, 64, 192
    width = tile_width(rows, n, k, TARGET)
    assert width is not None and (n // width, k, width) in shapes, shapes
    assert not any(len(s) == 3 and s[1:] == (k, n) for s in shapes), shapes  # no broadcast [L, K, N] weight
    assert_compiled_matches_eager(model, x)
