"""How each tool compiles and runs a model. Every runner returns ``(run, output)``: ``run()`` does one
inference the way a user of that tool would call it, ``output`` is its result on the suite's input.

Each runner lives in its own worker process (see run_suite.py), so one tool's thread pool never
spins while another is being timed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Runner = Callable[[torch.nn.Module, torch.Tensor, dict[str, Any]], tuple[Callable[[], Any], np.ndarray]]


def eager(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]) -> tuple[Callable[[], Any], np.ndarray]:
    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run, run().numpy()


def torch_compile(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]):
    compiled = torch.compile(model, backend="inductor")

    def run() -> Any:
        with torch.inference_mode():
            return compiled(x)

    return run, run().numpy()


def onnxruntime(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]):
    import onnxruntime as ort

    path = os.path.join(tempfile.mkdtemp(prefix="graphopt-bench-"), "model.onnx")
    try:
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False)
    except Exception:  # the TorchScript exporter lacks some ops (GPT-2's mask code: aten::diff)
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=True)
    settings = ort.SessionOptions()
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.intra_op_num_threads = options["threads"]
    settings.inter_op_num_threads = 1
    session = ort.InferenceSession(path, settings, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}

    def run() -> Any:
        return session.run(None, feed)

    return run, run()[0]


def tvm_plain(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]):
    """What a TVM user gets without graphopt: from_exported_program + tvm.compile on llvm."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from graphopt.targets.cpu.schedule import host_target

    program = torch.export.export(model, (x,)).run_decompositions()
    mod = from_exported_program(program, keep_params_as_input=False)
    vm = relax.VirtualMachine(tvm.compile(mod, host_target(options["threads"])), tvm.cpu())
    args = [tvm.runtime.tensor(x.numpy())]

    def run() -> Any:
        return vm["main"](*args)

    return run, run()[0].numpy()


def graphopt_cpu(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]):
    """graphopt's user-facing call: ``compiled(x)`` on a numpy array (input checks included)."""
    import graphopt

    target_options: dict[str, Any] = {"num_cores": options["threads"]}
    if options.get("tune"):
        target_options.update(tune=True, tune_trials=options["tune_trials"], tune_db=options["tune_db"])
    if options.get("quantize"):  # static int8, calibrated on a few random batches like the input
        target_options.update(quantize="int8", calibration_data=[torch.randn_like(x) for _ in range(4)])
    compiled = graphopt.compile(model, (x,), target="cpu", **target_options)
    array = x.numpy()

    def run() -> Any:
        return compiled(array)

    return run, np.asarray(run())


RUNNERS: dict[str, tuple[Runner, dict[str, Any]]] = {
    "torch eager": (eager, {}),
    "torch.compile": (torch_compile, {}),
    "ONNX Runtime": (onnxruntime, {}),
    "TVM untuned": (tvm_plain, {}),
    "graphopt": (graphopt_cpu, {}),
    "graphopt tuned": (graphopt_cpu, {"tune": True}),
    "graphopt int8": (graphopt_cpu, {"quantize": True}),
}
