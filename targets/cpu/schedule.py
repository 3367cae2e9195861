"""Default CPU schedules: fast code for LLVM targets without tuning.

TVM 0.27's CPU pipeline leaves every fused TIR function as naive scalar loops (40-70x slower than
torch eager). ``schedule_cpu`` is the seam the CPU build calls: it applies one rule per op class to
every fused PrimFunc, dlight-style, first matching rule wins:

0. the integer dot-product rules for ``int8_dense`` (targets/cpu/int8_kernels.py): ``Int8DotProduct``
   (targets/cpu/vnni.py, AVX-512 VNNI) and ``ArmDotProduct`` (targets/arm/dot.py, aarch64 ``+dotprod``),
   each declining on targets without its instruction;
1. ``TiledContraction`` (targets/cpu/schedule_tiled.py): dense/matmul/batch-matmul, conv2d (NHWC, so the
   output channel is the contiguous SIMD axis), depthwise conv and pooling, with fused epilogues;
2. ``LaneRowReduction`` (targets/cpu/row_reductions.py): softmax and LayerNorm over the last axis, their
   row reductions in vector lanes; then dlight's CPU ``Reduction`` for other row reductions;
3. ``Injective``: elementwise, reshape and transpose functions (vectorized, parallel);
4. ``ParallelFallback``: everything else at least runs on every core.

Given a module that still holds high-level Relax ops, ``schedule_cpu`` first converts conv/pool
layouts to NHWC/HWIO, legalizes (float32 convs and matmuls read weights blocked by output-channel tile,
targets/cpu/packed_weights.py; the transposes and the packing fold into the constants at compile time, so
they cost nothing per inference) and fuses; given an already legalized module it only schedules
(``lowering.legalized``: TVM's library dispatch makes PrimFuncs of cumsum/sort before this step, so a
PrimFunc alone does not say the module is legalized). The thread count is the runtime's (``graphopt.targets.threads.runtime_threads``).
"""

from __future__ import annotations

import tvm
from tvm import relax, topi
from tvm.ir.expr import Constant
from tvm.s_tir import dlight
from tvm.target import Target

from graphopt.targets.lowering.fold_calls import FoldConstantCalls
from graphopt.targets.lowering.legalized import is_legalized
from graphopt.targets.lowering.positive_axes import PositiveAxes, rewrite_relax_functions
from graphopt.targets.lowering.safe_indices import LEGALIZE_IN_BOUNDS
from graphopt.targets.threads import runtime_threads

from . import int8_kernels
from .broadcast_weights import UnbatchBroadcastWeights
from .flatten_weights import FlattenIntoWeights
from .ragged_matmuls import PadRaggedMatmuls
from .row_reductions import LaneRowReduction, RowReductions
from .schedule_simple import Injective, ParallelFallback, vector_lanes
from .schedule_tiled import TiledContraction

# Pooling, batch norm and elementwise ops follow their input's layout.
# conv2d_transpose stays NCHW: TVM 0.27 legalizes it only in that layout, and left to follow an NHWC
# producer it would stay a high-level op the VM cannot run ("CodeGenVM cannot emit this Relax operator").
NHWC_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


@relax.expr_functor.mutator
class _GeluRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.gelu":
            return self.builder_.call_te(_fast_gelu, call.args[0], primfunc_name_hint="gelu")
        return call


@relax.expr_functor.mutator
class _SigmoidRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        if name == "relax.sigmoid":
            return self.builder_.call_te(_fast_sigmoid, call.args[0], primfunc_name_hint="sigmoid")
        if name == "relax.nn.silu":
            x = call.args[0]
            return self.builder_.call_te(lambda t: topi.multiply(t, _fast_sigmoid(t)), x, primfunc_name_hint="silu")
        return call


def _fast_sigmoid(x: tvm.te.Tensor) -> tvm.te.Tensor:
    one = tvm.tirx.const(1.0, x.dtype)
    return topi.divide(one, topi.add(one, topi.fast_exp(topi.negative(x))))


def _fast_gelu(x: tvm.te.Tensor) -> tvm.te.Tensor:
    half = tvm.tirx.const(0.5, x.dtype)
    erf = topi.fast_erf(topi.multiply(x, tvm.tirx.const(0.7071067811865476, x.dtype)))
    return topi.multiply(topi.multiply(x, half), topi.add(erf, tvm.tirx.const(1.0, x.dtype)))


@relax.expr_functor.mutator
class _ClipRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.clip"):
            return call
        x, low, high = call.args
        dtype = x.ty.dtype
        lower = relax.op.maximum(x, relax.const(float(low.value), dtype))
        return relax.op.minimum(lower, relax.const(float(high.value), dtype))


#: Integer exponents written as products: ``x ** 3`` is two multiplies, where ``tir.pow`` is one scalar
#: libm ``powf`` call per element (the loop cannot vectorize).
SMALL_POWERS = (2, 3, 4)


@relax.expr_functor.mutator
class _PowerRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.power"):
            return call
        x, exponent = call.args
        if not isinstance(exponent, Constant) or exponent.value.numpy().size != 1:
            return call
        if not str(getattr(x.ty, "dtype", "")).startswith(("float", "bfloat")):
            return call
        if getattr(exponent.ty, "shape", None) is None or len(exponent.ty.shape) != 0:
            return call  # a broadcast exponent could widen the result's shape
        value = float(exponent.value.numpy().reshape(()))
        if value not in SMALL_POWERS or exponent.ty.dtype != x.ty.dtype:
            return call
        square = relax.op.multiply(x, x)
        return {2: square, 3: relax.op.multiply(square, x), 4: relax.op.multiply(square, square)}[int(value)]


@tvm.transform.module_pass(opt_level=0, name="PowerAsProducts")
class PowerAsProducts:
    """``x ** 2``, ``x ** 3``, ``x ** 4`` (a float constant exponent) as products: GPT-2's tanh GELU
    (``0.5 * x * (1 + tanh(c * (x + 0.044715 * x ** 3)))``) spent 1.46 ms per layer in scalar
    ``powf`` over its 128 x 3072 activations, 14% of the model."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_PowerRewriter(mod), mod)


@tvm.transform.module_pass(opt_level=0, name="ClipAsMinMax")
class ClipAsMinMax:
    """``clip`` (ReLU6, hardtanh) as ``minimum(maximum(x, lo), hi)``: TVM 0.27's ConvertLayout has no
    layout rule for ``clip``, so in an NHWC network every ReLU6 ran between two transposes, outside
    the conv kernel; the two binary ops follow the layout and fuse into the conv's epilogue."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_ClipRewriter(mod), mod)


@tvm.transform.module_pass(opt_level=0, name="FastGelu")
class FastGelu:
    """GELU through TOPI's vectorizable ``fast_erf`` (libm's erf is a scalar call per element)."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_GeluRewriter(mod), mod)


@tvm.transform.module_pass(opt_level=0, name="FastSigmoid")
class FastSigmoid:
    """Sigmoid (and SiLU, ``x * sigmoid(x)``) as ``1 / (1 + fast_exp(-x))``, TOPI's vectorizable
    polynomial exp: ``tir.sigmoid`` lowers to one scalar libm ``expf`` call per lane, which made
    every conv with a SiLU epilogue 10x slower than the same conv with ReLU (EfficientNet-B0's 1x1
    expansion 56x56x16 -> 96: 3.1 -> 0.3 ms). ``fast_exp`` clamps its input to +-88.38, where
    float32's exp over/underflows anyway; its relative error is ~1e-7."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_SigmoidRewriter(mod), mod)


def default_rules() -> list[dlight.ScheduleRule]:
    """The rule list, in priority order."""
    from graphopt.targets.arm.dot import ArmDotProduct  # int8 matmuls on aarch64 + dotprod (sdot); declines elsewhere

    from .lut_gather import LutGather  # decode="kernel": dense layers reading weights through a codebook
    from .vnni import Int8DotProduct  # int8 matmuls and convs on VNNI; declines on other CPUs

    return [
        LutGather(),
        Int8DotProduct(),
        ArmDotProduct(),
        TiledContraction(),
        LaneRowReduction(),
        dlight.cpu.Reduction(),
        Injective(),
        ParallelFallback(),
    ]


def host_target(num_cores: int | None = None) -> Target:
    """An LLVM target for this machine: its CPU model (so AVX-512/AVX2/NEON are used) and core count."""
    cores = num_cores or runtime_threads()
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    return Target({"kind": "llvm", "mcpu": cpu, "num-cores": cores})


def prepare_cpu_module(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Relax-level preparation: batch norm as a scale and shift (fused into the conv epilogue), NHWC
    layouts (after writing negative axes as positive ones, which ConvertLayout needs; a flatten into a
    constant-weight matmul then reads the NHWC tensor, ``flatten_weights``), legalization (matmuls and convs on packed weights: ``int8_kernels.legalize_map``),
    constant folding, fusion."""
    passes = [
        relax.transform.DecomposeOpsForInference(),
        ClipAsMinMax(),
        PowerAsProducts(),
        PositiveAxes(),  # ConvertLayout aborts (std::bad_alloc) on a negative axis: MultiheadAttention's squeeze
        relax.transform.ConvertLayout(NHWC_LAYOUTS),
        relax.transform.Normalize(),
        UnbatchBroadcastWeights(),  # MultiheadAttention's input projection: one matmul, not L batched ones
        FlattenIntoWeights(),  # a flatten before the classifier reads the NHWC activation in place
        PadRaggedMatmuls(vector_lanes(target)),  # ViT's 197 tokens: whole row tiles and vectors
        relax.transform.DeadCodeElimination(),
        FastGelu(),
        FastSigmoid(),
        RowReductions(vector_lanes(target)),  # softmax/LayerNorm rows reduced in vector lanes
        relax.transform.FastMathTransform(),
        relax.transform.LegalizeOps({**LEGALIZE_IN_BOUNDS, **int8_kernels.legalize_map()}),
        relax.transform.AnnotateTIROpPattern(),
        FoldConstantCalls(),  # the weight transforms in one LLVM build, not one build each
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def schedule_cpu(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Apply the default CPU schedules to every unscheduled PrimFunc of ``mod``.

    Example::

        mod, params = lower_to_relax(graph)
        mod = schedule_cpu(mod, host_target())
        exe = tvm.compile(mod, host_target())
    """
    if target.kind.name != "llvm":
        return mod
    if not is_legalized(mod):  # not "has a PrimFunc": library dispatch made cumsum one already
        mod = prepare_cpu_module(mod, target)
    with target:
        return dlight.ApplyDefaultSchedule(*default_rules())(mod)
