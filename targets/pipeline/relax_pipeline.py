"""The Relax compilation pipeline every target shares, with the schedule step as a clear seam.

    library dispatch
      -> backend.schedule(mod, target, options)     <- the seam: Relax-level preparation (layouts,
                                                       BN decomposition), legalization, fusion and
                                                       schedules: CPU rules/tuning, dlight for GPUs
      -> fuse_passes() where the step left high-level Relax ops (a step that only schedules)
      -> dataflow lowering -> memory planning and VM lowering (TVM's own pass lists per target)

It is TVM's default pipeline (``tvm.relax.pipeline``) with the schedule step pulled out. The step
gets the module before legalization, so it can still change layouts (NCHW -> NHWC) and fold the
weight transposes into constants; ``fuse_passes`` is TVM's own LegalizeOps..FuseTIR sequence.
"""

from __future__ import annotations

import importlib
from typing import Any

import tvm
from tvm import relax

from graphopt.targets.lowering.legalized import is_legalized
from graphopt.targets.lowering.safe_indices import LEGALIZE_IN_BOUNDS
from graphopt.targets.pipeline.kernel_nodes import KernelTracker
from graphopt.targets.registry import TargetBackend


def fuse_passes() -> list[tvm.transform.Pass]:
    """Ops to TIR, constants folded (weights already bound), then fused into one TIR function per group.

    TVM's legalizations, except those of ``LEGALIZE_IN_BOUNDS`` whose TOPI kernels read out of bounds
    (``slice_scatter``, a circular-padded conv: the cuda build read past a tensor)."""
    return [
        relax.transform.LegalizeOps(LEGALIZE_IN_BOUNDS),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def is_fused(mod: tvm.IRModule) -> bool:
    """Whether ``mod`` has been legalized to TIR functions (the fuse passes have run): no op with a
    legalization is left (a PrimFunc alone is not enough: library dispatch makes cumsum one)."""
    return is_legalized(mod)


def tvm_pass_lists(target: Any) -> Any:
    """TVM's per-backend pipeline module (``tvm.relax.backend.<kind>.pipeline``) for ``target``."""
    kind = "cuda" if target.kind.name == "cuda" else "cpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{kind}.pipeline")


SHAPE_FUNCTION_PREFIX = "_graphopt_"


def shape_functions_first(mod: tvm.IRModule) -> tvm.IRModule:
    """Rename the VM's shape functions (``VMShapeLower``'s ``shape_func``, made for symbolic shapes: a
    dynamic batch) so their symbols sort before every kernel's.

    TVM 0.27's LLVM code generator, given a kernel whose symbol sorts before ``shape_func``'s,
    drops the kernel's ``<name>_compute_`` function, whose ``noalias`` parameters are what let LLVM
    keep a register tile's accumulators in registers: they were stored to memory after every
    multiply-add instead. The MNIST MLP's first matmul, at batch 64, ran 152 us in a module with
    ``shape_func`` and 52 us alone or with the function renamed (tests/targets/test_dynamic_batch_kernels.py)."""
    shape_functions = [
        (gvar, func)
        for gvar, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc)
        and func.attrs is not None
        and func.attrs.get("tirx.is_host_func")
        and not gvar.name_hint.startswith(SHAPE_FUNCTION_PREFIX)
    ]
    if not shape_functions:
        return mod
    builder = relax.BlockBuilder()  # gives each renamed function a GlobalVar with its type
    renames, functions = {}, {}
    for gvar, func in shape_functions:
        name = SHAPE_FUNCTION_PREFIX + gvar.name_hint
        renamed = func.with_attr("global_symbol", name)
        renames[gvar] = builder.add_func(renamed, name)
        functions[renames[gvar]] = renamed
    renamer = _GlobalRenamer(renames)
    for gvar, func in mod.functions_items():
        if gvar not in renames:
            functions[gvar] = renamer.visit_expr(func) if isinstance(func, relax.Function) else func
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)


@relax.expr_functor.mutator
class _GlobalRenamer(relax.PyExprMutator):
    def __init__(self, renames: dict[tvm.ir.GlobalVar, tvm.ir.GlobalVar]) -> None:
        super().__init__()
        self.renames = renames

    def visit_global_var_(self, op: tvm.ir.GlobalVar) -> relax.Expr:
        return self.renames.get(op, op)


def relax_pipeline(
    backend: TargetBackend, target: Any, options: dict[str, Any], kernel_flops: dict[str, int] | None = None
) -> tvm.transform.Pass:
    """The whole pipeline for ``backend`` as one module pass, suitable for ``tvm.compile``;
    ``kernel_flops`` (when given) receives ``estimate_kernel_flops`` of the scheduled module."""

    @tvm.transform.module_pass(opt_level=0, name="graphopt_relax_pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            passes = tvm_pass_lists(target)
            mod = tvm.transform.Sequential(passes.library_dispatch_passes(target))(mod)
            mod = backend.schedule(mod, target, options)
            if not is_fused(mod):
                mod = tvm.transform.Sequential(fuse_passes())(mod)
            if kernel_flops is not None:
                kernel_flops.update(estimate_kernel_flops(mod))
            mod = tvm.transform.Sequential(passes.dataflow_lower_passes(target) + passes.finalize_passes(target))(mod)
        return shape_functions_first(mod)

    return _pipeline


def compile_module(
    mod: tvm.IRModule,
    backend: TargetBackend,
    target: Any,
    options: dict[str, Any],
    kernel_flops: dict[str, int] | None = None,
    kernel_nodes: dict[str, list[list[str]]] | None = None,
) -> Any:
    """Compile a lowered Relax module into a ``tvm.runtime.Executable`` for ``target``; fills
    ``kernel_flops`` (when given) with each scheduled TIR kernel's FLOPs per call and
    ``kernel_nodes`` with the graph nodes each call of each kernel computes (``kernel_nodes.KernelTracker``)."""
    tracker = KernelTracker()
    instruments = [tracker.instrument()] if kernel_nodes is not None else []
    with tvm.transform.PassContext(opt_level=3, instruments=instruments):
        executable = tvm.compile(mod, target, relax_pipeline=relax_pipeline(backend, target, options, kernel_flops))
    if kernel_nodes is not None:
        kernel_nodes.update(tracker.kernel_nodes)
    return executable


def estimate_kernel_flops(mod: tvm.IRModule) -> dict[str, int]:
    """FLOPs per call of every TIR function with static shapes (TVM's estimate of the scheduled
    loops), by the name the VM calls it: what a kernel profile divides its time by."""
    from tvm.s_tir.analysis import estimate_tir_flops

    flops = {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            try:
                flops[gvar.name_hint] = int(estimate_tir_flops(tvm.IRModule({"main": func})))
            except (RuntimeError, ValueError, TypeError):  # TVM raises RuntimeError subclasses
                continue  # symbolic extents (a dynamic batch): no static count
    return flops
