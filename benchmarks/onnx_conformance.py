"""The onnx package's backend node tests through graphopt's ONNX import, with ONNX Runtime beside it.

Every node test case of the installed onnx package (``onnx.backend.test.case.node.collect_testcases``,
the generator of ``onnx/backend/test/data/node``: a one-node model, inputs and the reference outputs)
is imported with ``graphopt.capture(model, inputs)`` (onnx2torch plus graphopt's checks) and the
captured graph is run in PyTorch. A case passes when every output matches the reference within the
case's own tolerance (``rtol``/``atol`` as the onnx backend test runner uses them, 1e-3 and 1e-7 unless
the case says otherwise). ONNX Runtime runs the same cases as the yardstick.

    python benchmarks/onnx_conformance.py --out benchmarks/results/onnx.md
    python benchmarks/onnx_conformance.py --ops Relu,Conv,Gemm   # a subset, no file written

Results per case: ``pass``, ``mismatch`` (imported and ran, wrong numbers), ``unsupported`` (graphopt's
one-line import error: no converter, control flow, non-tensor inputs), ``error`` (imported but failed
to run, or another failure), ``timeout``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run_suite import cpu_model  # noqa: E402

CASE_SECONDS = 20


def node_cases(ops: set[str] | None) -> list[Any]:
    """The node test cases, each with ``op``: the tested op (for an ``_expanded`` case, its function's op)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = [case for case in collect_testcases(None) if case.model is not None and case.data_sets]
    single = {case.name: case.model.graph.node[0].op_type for case in cases if len(case.model.graph.node) == 1}
    for case in cases:
        base = case.name.removesuffix("_expanded").removesuffix("_expanded_ver18")
        nodes = case.model.graph.node
        case.op = single.get(base) or single.get(case.name) or (nodes[0].op_type if nodes else "?")
    if ops:
        cases = [case for case in cases if case.op in ops]
    return sorted(cases, key=lambda case: case.name)


class CaseTimeoutError(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Any:
    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for element in value for item in _flat(element)]
    return [value]


def as_array(value: Any) -> Any:
    """A case's value as the onnx runner sees it: a TensorProto (float8, int4, bfloat16 cases) as its
    numpy array (ml_dtypes for the types numpy lacks), a numpy scalar as a 0-d array."""
    import onnx

    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


#: numpy (ml_dtypes) dtypes torch has under another name: viewed through an integer of the same width.
_VIEWED = {
    "bfloat16": ("bfloat16", np.uint16),
    "float8_e4m3fn": ("float8_e4m3fn", np.uint8),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", np.uint8),
    "float8_e5m2": ("float8_e5m2", np.uint8),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", np.uint8),
    "float8_e8m0fnu": ("float8_e8m0fnu", np.uint8),
}

#: ml_dtypes types torch has no tensor for -> the numpy dtype graphopt carries their values in
#: (``graphopt.onnx_narrow``): exact, every value of the narrow type is one of the carrier's.
_CARRIED = {"int4": np.int8, "int2": np.int8, "uint4": np.uint8, "uint2": np.uint8, "float4_e2m1fn": np.float32}


def to_torch(array: np.ndarray) -> Any:
    """A numpy array as a torch tensor; ml_dtypes' bfloat16 and float8 types as torch's same types."""
    import torch

    array = np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes a 0-d array 1-d
    if array.dtype.name in _CARRIED:
        array = array.astype(_CARRIED[array.dtype.name])
    if array.dtype.name in _VIEWED:
        name, storage = _VIEWED[array.dtype.name]
        return torch.from_numpy(array.view(storage).copy()).view(getattr(torch, name))
    return torch.from_numpy(array)


def to_numpy(value: Any) -> Any:
    """A torch output as numpy, torch's bfloat16 and float8 tensors as ml_dtypes arrays."""
    if not hasattr(value, "detach"):
        return np.asarray(value)
    import ml_dtypes
    import torch

    tensor = value.detach().cpu()
    name = str(tensor.dtype).removeprefix("torch.")
    if name in _VIEWED:
        storage = torch.uint16 if name == "bfloat16" else torch.uint8
        return tensor.view(storage).numpy().view(getattr(ml_dtypes, name))
    return tensor.numpy()


def matches(outputs: list[Any], expected: list[Any], rtol: float, atol: float) -> tuple[bool, str]:
    """The onnx runner's rule (``assert_similar_outputs``): same count, shapes and dtypes, values within
    rtol/atol (strings equal; bfloat16 compared in float32 with rtol at least two bfloat16 ulps)."""
    got = [to_numpy(o) for o in _flat(outputs)]
    want = [np.asarray(as_array(e)) for e in _flat(expected)]
    if len(got) != len(want):
        return False, f"{len(got)} outputs, expected {len(want)}"
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        if a.shape != b.shape:
            return False, f"output {index} shape {a.shape}, expected {b.shape}"
        if b.dtype.kind in "OSU":
            if not np.array_equal(a, b):
                return False, f"output {index} differs"
            continue
        if b.dtype.name in _CARRIED and a.dtype == _CARRIED[b.dtype.name]:
            narrow = a.astype(b.dtype)  # a carried narrow-type output: it must hold only that type's values
            if not np.array_equal(narrow.astype(a.dtype), a, equal_nan=a.dtype.kind == "f"):
                return False, f"output {index} holds values that are not {b.dtype}"
            a = narrow
        if a.dtype != b.dtype:
            return False, f"output {index} dtype {a.dtype}, expected {b.dtype}"
        tolerance = max(rtol, 2**-6) if b.dtype.name == "bfloat16" else rtol
        try:
            np.testing.assert_allclose(
                a.astype(np.float64), b.astype(np.float64), rtol=tolerance, atol=atol, equal_nan=True
            )
        except AssertionError:
            return False, f"output {index} differs (max abs {np.nanmax(np.abs(a.astype(float) - b.astype(float))):.3g})"
    return True, ""


def run_graphopt(case: Any) -> tuple[str, str]:

    import graphopt
    from graphopt.errors import GraphoptError

    inputs, expected = case.data_sets[0]
    inputs = [as_array(i) for i in inputs]
    if not all(isinstance(i, np.ndarray) for i in inputs):
        return "unsupported", "non-tensor input"
    try:
        tensors = tuple(to_torch(i) for i in inputs)
    except TypeError:
        return "unsupported", f"input dtype {', '.join(sorted({str(i.dtype) for i in inputs}))} has no torch tensor"
    try:
        with time_limit(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = graphopt.capture(case.model, tensors)
            outputs = graph(*tensors)
    except CaseTimeoutError:
        return "timeout", f"over {CASE_SECONDS} s"
    except GraphoptError as error:
        kind = "unsupported" if "cannot be imported" in str(error) else "error"
        return kind, str(error)[:200]
    except Exception as error:
        return (
            "error",
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160] if str(error).strip() else ''}",
        )
    ok, why = matches(_flat(outputs), list(expected), case.rtol, case.atol)
    return ("pass", "") if ok else ("mismatch", why)


def run_plain_onnx2torch(case: Any) -> str:
    """onnx2torch alone (no graphopt converters, aliases or checks): ``convert``, then run the module."""
    import importlib

    import torch

    from graphopt.onnx_io import _without_torchvision

    with _without_torchvision():
        onnx2torch = importlib.import_module("onnx2torch")
    inputs, expected = case.data_sets[0]
    try:
        tensors = tuple(to_torch(as_array(i)) for i in inputs)
        with time_limit(CASE_SECONDS), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(case.model)
            with torch.no_grad():
                outputs = module(*tensors)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        return "error"
    return "pass" if matches(_flat(outputs), list(expected), case.rtol, case.atol)[0] else "mismatch"


def run_onnxruntime(case: Any) -> tuple[str, str]:
    import onnxruntime as ort

    inputs, expected = case.data_sets[0]
    try:
        with time_limit(CASE_SECONDS):
            options = ort.SessionOptions()
            options.log_severity_level = 4
            session = ort.InferenceSession(case.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            feed = {value.name: as_array(data) for value, data in zip(session.get_inputs(), inputs, strict=False)}
            outputs = session.run(None, feed)
    except CaseTimeoutError:
        return "timeout", ""
    except Exception as error:
        return (
            "error",
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160] if str(error).strip() else ''}",
        )
    ok, why = matches(outputs, list(expected), case.rtol, case.atol)
    return ("pass", "") if ok else ("mismatch", why)


def render(results: list[dict[str, Any]], header: dict[str, str]) -> str:
    total = len(results)
    count = collections.Counter(r["graphopt"] for r in results)
    ort_pass = sum(r["onnxruntime"] == "pass" for r in results)
    plain_pass = sum(r["onnx2torch"] == "pass" for r in results)
    both = [r for r in results if r["onnxruntime"] == "pass"]
    lines = [
        "# ONNX backend node tests: graphopt import vs ONNX Runtime",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']}; onnx {header['onnx']}, onnx2torch {header['onnx2torch']}, "
        f"onnxruntime {header['onnxruntime']}, torch {header['torch']}; wall time {header['seconds']} s",
        "- case: a node test of the installed onnx package (`collect_testcases`: the generator of "
        "`onnx/backend/test/data/node`, `_expanded` function variants included), data set 0; graphopt: "
        "`graphopt.capture(model, inputs)` then the captured graph in PyTorch; pass = every output within the "
        "case's rtol/atol of the reference (the onnx runner's rule); onnx2torch alone: `onnx2torch.convert(model)` run "
        "in PyTorch, in a process without graphopt's converters",
        "",
        f"**graphopt: {count['pass']}/{total} = {count['pass'] / total:.1%} pass**; "
        f"onnx2torch alone {plain_pass}/{total} = {plain_pass / total:.1%}; "
        f"ONNX Runtime {ort_pass}/{total} = {ort_pass / total:.1%}; on the {len(both)} cases ONNX Runtime passes, "
        f"graphopt passes {sum(r['graphopt'] == 'pass' for r in both)} "
        f"({sum(r['graphopt'] == 'pass' for r in both) / max(len(both), 1):.1%}).",
        "",
        "graphopt outcomes: "
        + ", ".join(f"{kind} {count[kind]}" for kind in ("pass", "mismatch", "unsupported", "error", "timeout")),
        "",
        "## Per op",
        "",
        "| op | cases | graphopt pass | onnx2torch alone | ONNX Runtime pass | graphopt failures (first reason) |",
        "|---|---|---|---|---|---|",
    ]
    by_op: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for result in results:
        by_op[result["op"]].append(result)
    for op in sorted(by_op):
        rows = by_op[op]
        failures = [r for r in rows if r["graphopt"] != "pass"]
        reason = f"{failures[0]['graphopt']}: {failures[0]['why']}".replace("|", "/")[:140] if failures else ""
        lines.append(
            f"| {op} | {len(rows)} | {sum(r['graphopt'] == 'pass' for r in rows)} | "
            f"{sum(r['onnx2torch'] == 'pass' for r in rows)} | {sum(r['onnxruntime'] == 'pass' for r in rows)} | {reason} |"
        )
    return "\n".join(lines) + "\n"


def plain_results(ops: str | None) -> dict[str, str]:
    """Plain onnx2torch's outcome per case, run in a process of its own: graphopt's converters,
    registered with onnx2torch once graphopt imports a model, would otherwise be part of it."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "plain.json"
        command = [sys.executable, __file__, "--plain-onnx2torch-json", str(out), *(["--ops", ops] if ops else [])]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", help="comma-separated op types to run (default: all)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    parser.add_argument("--plain-onnx2torch-json", type=Path, help=argparse.SUPPRESS)  # the peer's own process
    args = parser.parse_args(argv)
    if args.plain_onnx2torch_json:
        cases = node_cases(set(args.ops.split(",")) if args.ops else None)
        args.plain_onnx2torch_json.write_text(json.dumps({case.name: run_plain_onnx2torch(case) for case in cases}))
        return 0

    import onnx
    import onnxruntime
    import torch

    from graphopt.onnx_io import onnx2torch_version

    started = time.time()
    cases = node_cases(set(args.ops.split(",")) if args.ops else None)
    plain = plain_results(args.ops)
    results = []
    for index, case in enumerate(cases):
        mine, why = run_graphopt(case)
        theirs, _ = run_onnxruntime(case)
        results.append(
            {
                "name": case.name,
                "op": case.op,
                "graphopt": mine,
                "why": why,
                "onnxruntime": theirs,
                "onnx2torch": plain.get(case.name, "error"),
            }
        )
        if args.verbose:
            print(f"{case.name}: {mine} {why} | ort {theirs}", flush=True)
        elif index % 100 == 0:
            print(f"{index}/{len(cases)}", file=sys.stderr, flush=True)
    header = {
        "command": "python "
        + " ".join(["benchmarks/onnx_conformance.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "onnx": onnx.__version__,
        "onnx2torch": onnx2torch_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "seconds": f"{time.time() - started:.0f}",
    }
    text = render(results, header)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
