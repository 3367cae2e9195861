"""The public entry points: capture, optimize, compile, load, visualize.

``graphopt`` itself imports no TVM; ``compile`` and ``load`` reach into ``graphopt.targets`` only
when called, and ``load`` needs neither torch nor the passes, only the TVM runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def compile(
    model: Any,
    example_inputs: Any,
    *,
    target: str = "cpu",
    passes: Any = "O2",
    out_dir: str | Path | None = None,
    verify: bool = False,
    calibration_data: Any = None,
    **target_options: Any,
) -> Any:
    """Capture, optimize and build ``model`` for ``target``; write the artifact to ``out_dir``.

    Returns the compiled model (callable on numpy arrays or tensors) with its ``report``.

    >>> compiled = graphopt.compile(MnistMLP().eval(), torch.randn(1, 784), out_dir="out/mlp")
    >>> compiled(np.zeros((1, 784), np.float32))
    """
    from graphopt.capture import capture
    from graphopt.pass_manager import optimize

    graph = model if hasattr(model, "module") and hasattr(model, "example_inputs") else capture(model, example_inputs)
    optimized, report = optimize(graph, passes, verify=verify, calibration_data=calibration_data)
    from graphopt.targets import build

    return build(optimized, report, target=target, out_dir=out_dir, **target_options)


def load(out_dir: str | Path) -> Any:
    """Load an artifact written by ``compile``; runs with the TVM runtime alone (no torch needed)."""
    from graphopt.targets.runtime import load_artifact

    return load_artifact(out_dir)
