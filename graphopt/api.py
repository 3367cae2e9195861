"""The public entry points: capture, optimize, compile, load, visualize.

``graphopt`` itself imports no TVM; ``compile`` and ``load`` reach into ``graphopt.targets`` only
when called, and ``load`` needs neither torch nor the passes, only the TVM runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from graphopt.errors import GraphoptError, InputError


def compile(
    model: Any,
    example_inputs: Any,
    *,
    target: str = "cpu",
    passes: Any = "O2",
    out_dir: str | Path | None = None,
    verify: bool = False,
    calibration_data: Any = None,
    pass_options: dict[str, dict[str, Any]] | None = None,
    dump_dir: str | Path | None = None,
    instruments: Sequence[Any] = (),
    quantize: str | None = None,
    check: bool = True,
    keep_mismatch: bool = False,
    reference: Callable[..., Any] | None = None,
    compress: bool | None = None,
    **target_options: Any,
) -> Any:
    """Capture, optimize and build ``model`` for ``target``; write the artifact to ``out_dir``.

    Returns the compiled model (callable on numpy arrays or tensors) with its ``report``.
    ``target_options`` are ``graphopt.options.BuildOptions`` (``tune=True``, ``num_cores=4``, ...):
    an unknown one is refused before any work, naming the nearest valid name. ``fallback="torch"``
    runs what TVM cannot lower (ops without a converter, data-dependent shapes such as NMS) in
    PyTorch between compiled segments; the report and the manifest list those nodes, and ``load``
    then needs torch. Without it, such a model fails with every unsupported op listed at once.
    ``pass_options``, ``dump_dir`` and ``instruments`` go to ``optimize``; ``quantize="int8"`` runs
    ``graphopt.quantize`` on the optimized graph (static with ``calibration_data``, else dynamic).
    ``compress=True`` writes the weights beside the library as a compressed weights file (codebook,
    packed indices, zeros left out, entropy-coded), decoded once by ``graphopt.load``; the default
    (None) does so for a graph from ``graphopt.share_weights`` or ``graphopt.magnitude_prune``.

    The compiled model is checked against PyTorch eager on the example inputs before the artifact
    is written (``graphopt.eager_check``: float32 within 1e-4, int8 within its stated error; with
    ``dynamic_seq_len`` at sequence lengths 1, the example's and the bound): a
    mismatch raises ``MismatchError`` and writes nothing, unless ``keep_mismatch`` (the artifact is
    then written, marked in its manifest, and ``load`` refuses it without ``allow_mismatch``).
    ``check=False`` skips it. ``reference`` is what the outputs are compared with (default
    ``model``; the captured graph when ``model`` is a ``Graph``).

    >>> compiled = graphopt.compile(MnistMLP().eval(), torch.randn(1, 784), out_dir="out/mlp")
    >>> compiled(np.zeros((1, 784), np.float32))
    """
    from graphopt.capture import capture
    from graphopt.compression.layers import is_compressed
    from graphopt.pass_manager import optimize

    build_options = _check_build_request(target, out_dir, target_options)
    given_graph = hasattr(model, "module") and hasattr(model, "example_inputs")
    dynamic_batch, dynamic_seq_len = build_options.dynamic_batch, build_options.dynamic_seq_len
    graph = (
        model
        if given_graph
        else capture(model, example_inputs, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len)
    )
    optimized, report = optimize(
        graph,
        passes,
        verify=verify,
        calibration_data=calibration_data,
        options=pass_options,
        dump_dir=dump_dir,
        instruments=instruments,
    )
    if quantize is not None:
        optimized = _quantize(optimized, report, quantize, calibration_data)
    from graphopt.targets import build

    checker = None
    if check:
        from graphopt.eager_check import EagerChecker, eager_callable

        # A Graph, a model file or an onnx.ModelProto imported by capture: the captured graph is the reference.
        from graphopt.onnx.io import is_onnx_spec

        from_graph = given_graph or isinstance(model, (str, Path)) or is_onnx_spec(model)
        eager = reference or (graph if from_graph else eager_callable(model))
        checker = EagerChecker(
            eager, optimized, graph.example_inputs, keep_mismatch=keep_mismatch, dynamic_seq_len=dynamic_seq_len
        )
    if compress is None:
        compress = is_compressed(graph)
    build_kwargs = {**build_options.to_dict(), "compress": bool(compress)}
    return build(optimized, report, target=target, out_dir=out_dir, check=checker, **build_kwargs)


def _check_build_request(target: str, out_dir: str | Path | None, options: dict[str, Any]) -> Any:
    """Before any slow step: the target exists, ``out_dir`` can take an artifact, the options are
    known and well typed (a typo among them may be one of ``compile``'s own keywords)."""
    import inspect

    try:
        from graphopt.targets import check_build_request
    except ImportError as error:
        raise GraphoptError(f"the compiler targets are not available: {error}") from error
    own = [name for name in inspect.signature(compile).parameters if name != "target_options"]
    return check_build_request(target, out_dir, options, also_known=own)


def _quantize(graph: Any, report: Any, scheme: str, calibration_data: Any) -> Any:
    """Quantize the optimized graph; its summary goes into the optimize report's notes."""
    if scheme != "int8":
        raise InputError(f"unknown quantization '{scheme}' (supported: int8)")
    from graphopt.quantize import quantize

    quantized, summary = quantize(graph, calibration_data)
    measured_on = f"{summary.samples} calibration sample(s)" if calibration_data is not None else "the example inputs"
    report.notes.append(
        f"int8 quantization ({summary.mode}): {len(summary.quantized)} layer(s), weights "
        f"{summary.float_bytes} -> {summary.quantized_bytes} bytes, output error {summary.output_error:.3g} "
        f"relative on {measured_on}"
    )
    return quantized


def load(out_dir: str | Path, *, allow_mismatch: bool = False) -> Any:
    """Load an artifact written by ``compile``; runs with the TVM runtime alone (no torch needed),
    except an artifact built with ``fallback="torch"``, whose PyTorch segments need torch.

    An artifact kept although it failed its eager check (``keep_mismatch``) loads only with
    ``allow_mismatch=True``.
    """
    from graphopt.targets.runtime import load_artifact

    return load_artifact(out_dir, allow_mismatch=allow_mismatch)


def time_remote(out_dir: str | Path, inputs: Any, address: str, *, number: int = 10, repeat: int = 3) -> float:
    """Median seconds per run of the artifact at ``out_dir`` on the TVM RPC device at ``address``
    (``HOST:PORT`` of a server, ``KEY@HOST:PORT`` of a tracker): what ``graphopt bench --rpc`` reports."""
    from graphopt.targets.runtime.rpc import time_remote as time_on_device

    return time_on_device(out_dir, inputs, address, number=number, repeat=repeat)


def rpc_devices(address: str, *, timeout_s: float = 10) -> int:
    """How many devices answer at an RPC address: a tracker's servers under the key, or 1 for a
    server that accepts a connection; else a one-line ``RemoteError``, before anything is compiled."""
    import socket

    from graphopt.errors import first_line
    from graphopt.targets.runtime.rpc import RemoteError, parse_address, split_key, tracker_servers

    key, rest = split_key(address)
    host, port = parse_address(rest)
    if key:
        return tracker_servers(address, timeout_s=timeout_s)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        raise RemoteError(f"cannot reach the RPC server at {host}:{port}: {first_line(error)}") from error
    return 1
