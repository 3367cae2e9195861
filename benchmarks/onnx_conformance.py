"""The onnx package's backend node tests through graphopt's ONNX import, with ONNX Runtime beside it.

Every node test case of the installed onnx package (``onnx.backend.test.case.node.collect_testcases``,
the generator of ``onnx/backend/test/data/node``: a one-node model, inputs and the reference outputs)
is imported with ``graphopt.capture(model, inputs)`` (onnx2torch plus graphopt's checks) and the
captured graph is run in PyTorch. A case passes when every output matches the reference within the
case's own tolerance (``rtol``/``atol`` as the onnx backend test runner uses them, 1e-3 and 1e-7 unless
the case says otherwise). ONNX Runtime runs the same cases as the yardstick.

    nice python benchmarks/onnx_conformance.py --out benchmarks/results/onnx_conformance.md
    python benchmarks/onnx_conformance.py --ops Relu,Conv,Gemm   # a subset, no file written

The same cases run through the peers, each in processes of its own with a per-case time limit:
onnx2torch alone (no graphopt converters), TVM Relax's ``from_onnx`` (built for llvm, run in the Relax
VM) and ONNX Runtime; and a sample (``--cpu-per-op`` cases of every op) through graphopt's ONNX backend on
the CPU target (``graphopt.onnx.backend``: ``graphopt.compile``, the built artifact run; inputs that set
shapes are read at run time and compiled for; a build that fails is retried with ``fallback="torch"``,
reported as its own outcome). ``--cpu-only`` runs that sample alone. ``--peer-minutes`` bounds the TVM and CPU runs (cases left are reported
as not run).

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
import math
import os
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
from graphopt.onnx.narrow import NUMPY_CARRIERS  # noqa: E402

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

#: ml_dtypes types graphopt cannot compute in -> the numpy dtype it carries their values in
#: (``graphopt.onnx.narrow``): exact, every value of the narrow type is one of the carrier's.
_CARRIED = {name: np.dtype(carrier) for name, carrier in NUMPY_CARRIERS.items()}


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

    from graphopt.onnx.io import _without_torchvision

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


def _graph_inputs(case: Any) -> list[str]:
    initializers = {t.name for t in case.model.graph.initializer}
    return [value.name for value in case.model.graph.input if value.name not in initializers]


def run_tvm(case: Any) -> str:
    """TVM Relax's own ONNX importer: ``from_onnx`` with the case's input shapes and dtypes, legalized,
    built for llvm and run in the Relax VM."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    inputs, expected = case.data_sets[0]
    arrays = [as_array(i) for i in inputs]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return "error"
    names = _graph_inputs(case)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module = from_onnx(
                case.model,
                shape_dict={n: list(a.shape) for n, a in zip(names, arrays, strict=False)},
                dtype_dict={n: str(a.dtype) for n, a in zip(names, arrays, strict=False)},
                keep_params_in_input=False,
            )
            module = relax.transform.DecomposeOpsForInference()(module)
            module = relax.transform.LegalizeOps()(module)
            machine = relax.VirtualMachine(tvm.compile(module, target="llvm"), tvm.cpu())
            outputs = machine["main"](*[tvm.runtime.tensor(a) for a in arrays])
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        return "error"

    def unpack(value: Any) -> list[Any]:
        if hasattr(value, "numpy"):
            return [value.numpy()]
        if isinstance(value, (list, tuple)) or type(value).__name__ in ("Array", "Tuple"):
            return [item for element in value for item in unpack(element)]
        return [np.asarray(value)]

    try:
        got = unpack(outputs)
    except Exception:
        return "error"
    return "pass" if matches(got, list(expected), case.rtol, case.atol)[0] else "mismatch"


def run_cpu(case: Any) -> str:
    """graphopt's ONNX backend on the CPU target (``graphopt.onnx.backend.GraphoptRep``: ``graphopt.compile``
    with ``target="cpu"``, the built artifact run on the case's inputs). Inputs that set shapes (Slice starts,
    Squeeze axes, a window's size, ...) are read at ``run`` and the model is compiled for their values, as
    ONNX Runtime takes them at run time. Where that build fails, the build with ``fallback="torch"`` (what
    TVM cannot lower runs in PyTorch between compiled segments) is tried: its own outcome, never a pass.
    Returns ``"outcome|reason"`` (the first line of the plain build's error; empty for a pass)."""
    from graphopt.onnx.backend import GraphoptRep

    inputs, expected = case.data_sets[0]
    arrays = [as_array(i) for i in inputs]

    def build_and_run(**options: Any) -> tuple[str, str]:
        try:
            tensors = [to_torch(a) for a in arrays]
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                outputs = GraphoptRep(case.model, check=False, **options).run(tensors)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            return "error", f"{type(error).__name__}: {text}"
        ok, why = matches(_flat(outputs), list(expected), case.rtol, case.atol)
        return ("pass", "") if ok else ("mismatch", why)

    outcome, why = build_and_run()
    if outcome != "error":
        return f"{outcome}|{why}"
    fallback, fallback_why = build_and_run(fallback="torch")
    if fallback == "pass":
        return f"fallback|{why}"
    if fallback == "mismatch":
        return f"fallback mismatch|{fallback_why}"
    return f"error|{why}"


PEERS = {"onnx2torch": run_plain_onnx2torch, "tvm": run_tvm, "cpu": run_cpu}


class _Case:
    """A node test case as the peers' processes get it (pickled by the parent: collecting the cases is slow)."""

    def __init__(self, name: str, model: Any, data_sets: Any, rtol: float, atol: float, op: str) -> None:
        self.name, self.model, self.data_sets, self.rtol, self.atol, self.op = name, model, data_sets, rtol, atol, op


def run_peer_process(kind: str, names: Any, out: Path) -> None:
    """The peer's own process: each case's outcome appended to ``out`` as it finishes ("start" first,
    so the parent can time a case out and go on without it)."""
    import pickle

    import onnx

    cases = []
    for name, model, data_sets, rtol, atol, op in pickle.loads(Path(names).read_bytes()):  # type: ignore[arg-type]
        cases.append(_Case(name, onnx.load_from_string(model), data_sets, rtol, atol, op))
    if kind == "tvm":  # imports before the first case's clock starts
        import tvm.relax.frontend.onnx  # noqa: F401
    elif kind == "cpu":
        import graphopt.targets  # noqa: F401
    with out.open("a") as log:
        for case in cases:
            log.write(json.dumps({"start": case.name}) + "\n")
            log.flush()
            log.write(json.dumps({"name": case.name, "result": PEERS[kind](case)}) + "\n")
            log.flush()


def peer_results(kind: str, cases: list[Any], seconds: float, deadline: float = math.inf) -> dict[str, str]:
    """A peer's outcome per case, run in processes of its own (graphopt's converters, registered with
    onnx2torch once graphopt imports a model, would otherwise be part of plain onnx2torch; a TVM build
    can hang in C++): a case over ``seconds`` is killed, recorded as ``timeout``, and the rest go on
    in a fresh process. At ``deadline`` (a ``time.time()``) the peer stops; cases left are not run."""
    import pickle

    names = [case.name for case in cases]
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        attempt = 0
        while True:
            pending = [n for n in names if n not in results]
            if not pending or time.time() > deadline:
                return results
            attempt += 1
            out = Path(folder) / f"{kind}{attempt}.jsonl"
            listing = Path(folder) / f"{kind}{attempt}.pickle"
            chosen = set(pending)
            listing.write_bytes(
                pickle.dumps(
                    [
                        (c.name, c.model.SerializeToString(), c.data_sets, c.rtol, c.atol, c.op)
                        for c in cases
                        if c.name in chosen
                    ]
                )
            )
            command = [sys.executable, __file__, "--peer", kind, "--peer-cases", str(listing), "--peer-out", str(out)]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            current, since, read = None, time.time(), 0
            while True:
                finished = process.poll() is not None
                if out.exists():
                    lines = out.read_text().splitlines()
                    for line in lines[read:]:
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            break
                        read += 1
                        if "start" in entry:
                            current, since = entry["start"], time.time()
                        else:
                            results[entry["name"]], current = entry["result"], None
                if finished:
                    if current is not None:
                        results[current] = "error"  # the process died in this case
                    elif process.returncode and pending and pending[0] not in results:
                        results[pending[0]] = "error"
                    break
                if time.time() > deadline:
                    process.kill()
                    process.wait()
                    return results
                if current is not None and time.time() - since > seconds:
                    process.kill()
                    process.wait()
                    results[current] = "timeout"
                    break
                time.sleep(0.2)


def cpu_subset(cases: list[Any], per_op: int) -> list[Any]:
    """The CPU target's cases: the first ``per_op`` of every op by name, whether or not they import
    (a sample of the suite, not of graphopt's passes), ordered round by round (every op's first case,
    then every op's second, ...) so a run cut short by its time limit still covers every op."""
    rounds: dict[str, int] = collections.Counter()
    chosen: list[tuple[int, str, Any]] = []
    for case in cases:
        if rounds[case.op] < per_op:
            chosen.append((rounds[case.op], case.name, case))
            rounds[case.op] += 1
    return [case for _, _, case in sorted(chosen, key=lambda item: (item[0], item[1]))]


#: What the CPU-target results say about how the backend runs a case.
CPU_BACKEND = (
    "graphopt's ONNX backend (`graphopt.onnx.backend.GraphoptBackend`, an `onnx.backend.base.Backend`): "
    "`graphopt.compile(model, inputs, target='cpu')`, the built artifact run on the case's inputs. Graph inputs "
    "that set shapes (Slice starts, Squeeze axes, Tile repeats, a window's size, ...) are taken at run time, as "
    "ONNX Runtime takes them: at `run()` the backend reads their values, compiles the model for them (they "
    "become initializers of the compiled copy) and caches the artifact per distinct value and input shape, so "
    "another value compiles again; nothing is fixed before `run()`"
)


def cpu_paragraph(cpu: dict[str, str], per_op: str, sample_imports: int | None) -> str:
    """The CPU target's summary: pass rate on the sample, outcomes, what fallback would add."""
    count = collections.Counter(value.partition("|")[0] for value in cpu.values())
    ran = sum(value != "not run" for value in cpu.values())
    return (
        f"**CPU target** ({CPU_BACKEND}): a sample, the first {per_op} case(s) of every op by name whether or not "
        f"they import ({len(cpu)} cases, {ran} run before the time limit): **{count['pass']}/{ran} = "
        f"{count['pass'] / max(ran, 1):.1%} of those run pass**; {count['fallback']} more pass only with "
        "`fallback='torch'` (what TVM cannot lower runs in PyTorch between compiled segments), not counted as a pass"
        + (
            f". On the same {ran} cases the import (captured graph in PyTorch) passes {sample_imports}"
            if sample_imports is not None
            else ""
        )
        + ". CPU outcomes: "
        + ", ".join(f"{kind} {count[kind]}" for kind in sorted(count))
        + (
            "; 'not run': the time limit came first (the sample is run op by op, each op's first case first)"
            if count["not run"]
            else ""
        )
        + ". Every case that does not pass is listed, with its first error, under *CPU target failures*."
    )


def cpu_failures(cpu: dict[str, str]) -> list[str]:
    lines = ["## CPU target failures", "", "| case | outcome | first error (of the build without fallback) |"]
    lines.append("|---|---|---|")
    for name, value in sorted(cpu.items()):
        outcome, _, why = value.partition("|")
        if outcome != "pass":
            lines.append(f"| {name} | {outcome} | {why.replace('|', '/')[:160]} |")
    return lines


def render_cpu(cases: list[Any], header: dict[str, str], cpu: dict[str, str]) -> str:
    """``--cpu-only``: the CPU-target sample alone (no import loop, no peers), per op and per failing case."""
    lines = [
        "# ONNX backend node tests through graphopt's CPU target (sample)",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']} (2 cores shared with other jobs; times inflated by load); "
        f"onnx {header['onnx']}, torch {header['torch']}, tvm {header['tvm']}; wall time {header['seconds']} s; "
        f"load average (1 min, `uptime`) {header['load']}",
        "- case: as in `onnx_conformance.md`; pass = every output within the case's rtol/atol of the reference, "
        "same shapes and dtypes (the onnx runner's rule)",
        "",
        cpu_paragraph(cpu, header["cpu_per_op"], None),
        "",
        "| op | CPU target pass / run |",
        "|---|---|",
    ]
    by_op: dict[str, list[str]] = collections.defaultdict(list)
    for case in cases:
        if case.name in cpu:
            by_op[case.op].append(cpu[case.name].partition("|")[0])
    lines += [f"| {op} | {ran.count('pass')}/{len(ran)} |" for op, ran in sorted(by_op.items())]
    return "\n".join([*lines, "", *cpu_failures(cpu)]) + "\n"


def render(results: list[dict[str, Any]], header: dict[str, str], cpu: dict[str, str]) -> str:
    total = len(results)
    count = collections.Counter(r["graphopt"] for r in results)

    def passes(column: str, rows: list[dict[str, Any]] = results) -> int:
        return sum(r[column] == "pass" for r in rows)

    both = [r for r in results if r["onnxruntime"] == "pass"]
    tvm_left = sum(r["tvm"] == "not run" for r in results)
    imported = {r["name"]: r["graphopt"] for r in results}
    sample_imports = sum(imported.get(name) == "pass" for name, value in cpu.items() if value != "not run")
    per_op = header.get("cpu_per_op", "1")
    lines = [
        "# ONNX backend node tests: graphopt import vs onnx2torch, TVM Relax from_onnx and ONNX Runtime",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']} (2 cores shared with other jobs; times inflated by load); "
        f"onnx {header['onnx']}, onnx2torch {header['onnx2torch']}, onnxruntime {header['onnxruntime']}, "
        f"torch {header['torch']}, tvm {header['tvm']}; wall time {header['seconds']} s; load average (1 min, "
        f"`uptime`) {header['load']}",
        "- case: a node test of the installed onnx package (`collect_testcases`: the generator of "
        "`onnx/backend/test/data/node`, `_expanded` function variants included), data set 0; pass = every output "
        "within the case's rtol/atol of the reference, same shapes and dtypes (the onnx runner's rule)",
        "- **graphopt pass** means: `graphopt.capture(model, inputs)` imports the case (onnx2torch plus graphopt's "
        "own converters) and the *captured graph, run in PyTorch*, matches. It does not build the CPU artifact; "
        "the CPU target is measured separately below, on a sample. Types graphopt cannot compute in (int4, "
        "uint4, int2, uint2, float4e2m1, the float8 types, float8e8m0) are passed and returned in a wider carrier dtype holding exactly the type's values "
        "(`graphopt/onnx/narrow.py`); a carried output must hold only values of its type",
        "- onnx2torch alone: `onnx2torch.convert(model)` run in PyTorch, in a process without graphopt's "
        f"converters; TVM: `tvm.relax.frontend.onnx.from_onnx(model, shapes, dtypes)`, legalized, built for llvm, "
        f"run in the Relax VM; peers run in their own processes, a case over {header['case_seconds']} s is a "
        "timeout; ONNX Runtime: CPUExecutionProvider",
        "",
        f"**graphopt: {count['pass']}/{total} = {count['pass'] / total:.1%} pass**; "
        f"onnx2torch alone {passes('onnx2torch')}/{total} = {passes('onnx2torch') / total:.1%}; "
        f"TVM Relax from_onnx {passes('tvm')}/{total} = {passes('tvm') / total:.1%}"
        + (f" ({tvm_left} cases not run before the time limit, counted as failures)" if tvm_left else "")
        + "; "
        f"ONNX Runtime {passes('onnxruntime')}/{total} = {passes('onnxruntime') / total:.1%}. "
        f"On the {len(both)} cases ONNX Runtime passes, graphopt passes {passes('graphopt', both)} "
        f"({passes('graphopt', both) / max(len(both), 1):.1%}).",
        "",
        cpu_paragraph(cpu, per_op, sample_imports),
        "",
        "graphopt outcomes: "
        + ", ".join(f"{kind} {count[kind]}" for kind in ("pass", "mismatch", "unsupported", "error", "timeout")),
        "",
        "## Per op",
        "",
        "| op | cases | graphopt pass | CPU target pass / run | onnx2torch alone | TVM from_onnx | ONNX Runtime | "
        "graphopt failures (first reason) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_op: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for result in results:
        by_op[result["op"]].append(result)
    for op in sorted(by_op):
        rows = by_op[op]
        failures = [r for r in rows if r["graphopt"] != "pass"]
        reason = f"{failures[0]['graphopt']}: {failures[0]['why']}".replace("|", "/")[:140] if failures else ""
        ran = [cpu[r["name"]].partition("|")[0] for r in rows if r["name"] in cpu]
        lines.append(
            f"| {op} | {len(rows)} | {passes('graphopt', rows)} | {ran.count('pass')}/{len(ran)} | "
            f"{passes('onnx2torch', rows)} | "
            f"{passes('tvm', rows)} | {passes('onnxruntime', rows)} | {reason} |"
        )
    lines += ["", *cpu_failures(cpu)]
    return "\n".join(lines) + "\n"


def run_header(args: Any, argv: list[str] | None, started: float, load_before: float) -> dict[str, str]:
    """The command, date, CPU, versions, wall time and load a results file names."""
    import onnx
    import onnxruntime
    import torch
    import tvm

    from graphopt.onnx.io import onnx2torch_version

    return {
        "command": "nice python "
        + " ".join(["benchmarks/onnx_conformance.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "onnx": onnx.__version__,
        "onnx2torch": onnx2torch_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "tvm": tvm.__version__,
        "case_seconds": str(args.case_seconds),
        "cpu_per_op": str(args.cpu_per_op),
        "seconds": f"{time.time() - started:.0f}",
        "load": f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", help="comma-separated op types to run (default: all)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    parser.add_argument("--no-tvm", action="store_true", help="leave out the TVM from_onnx column")
    parser.add_argument("--no-cpu", action="store_true", help="leave out the CPU-target sample")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the CPU-target sample (no import loop, no peers, no ONNX Runtime)"
    )
    parser.add_argument("--cpu-per-op", type=int, default=2, help="CPU-target sample: this many cases per op")
    parser.add_argument("--case-seconds", type=int, default=CASE_SECONDS, help="per-case time limit")
    parser.add_argument(
        "--peer-minutes", type=float, default=math.inf, help="stop the TVM and CPU runs this long after the start"
    )
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # a peer's own process
    parser.add_argument("--peer-cases", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--peer-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        run_peer_process(args.peer, args.peer_cases, args.peer_out)
        return 0

    import threading

    started = time.time()
    load_before = os.getloadavg()[0]
    cases = node_cases(set(args.ops.split(",")) if args.ops else None)
    peers: dict[str, dict[str, str]] = {}

    deadline = started + 60 * args.peer_minutes

    def run_peer(kind: str, subset: list[Any]) -> None:
        seconds = 4 * args.case_seconds if kind == "cpu" else args.case_seconds  # a build, and one with fallback
        peers[kind] = peer_results(kind, subset, seconds, deadline if kind != "onnx2torch" else math.inf)

    if args.cpu_only:
        chosen = cpu_subset(cases, args.cpu_per_op)
        run_peer("cpu", chosen)
        cpu = {case.name: peers.get("cpu", {}).get(case.name, "not run") for case in chosen}
        text = render_cpu(cases, run_header(args, argv, started, load_before), cpu)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        return 0
    threads = [threading.Thread(target=run_peer, args=("onnx2torch", cases))]
    if not args.no_tvm:
        threads.append(threading.Thread(target=run_peer, args=("tvm", cases)))
    chosen = [] if args.no_cpu else cpu_subset(cases, args.cpu_per_op)
    for thread in threads:
        thread.start()
    results = []
    for index, case in enumerate(cases):
        mine, why = run_graphopt(case)
        theirs, _ = run_onnxruntime(case)
        results.append({"name": case.name, "op": case.op, "graphopt": mine, "why": why, "onnxruntime": theirs})
        if args.verbose:
            print(f"{case.name}: {mine} {why} | ort {theirs}", flush=True)
        elif index % 100 == 0:
            print(f"{index}/{len(cases)}", file=sys.stderr, flush=True)
    if chosen:  # after the import loop, beside TVM: three builds at once on two cores would starve TVM's
        run_peer("cpu", chosen)
    for thread in threads:
        thread.join()
    cpu = {case.name: peers.get("cpu", {}).get(case.name, "not run") for case in chosen}
    for result in results:
        result["onnx2torch"] = peers["onnx2torch"].get(result["name"], "error")
        result["tvm"] = peers.get("tvm", {}).get(result["name"], "not run")
    header = run_header(args, argv, started, load_before)
    text = render(results, header, cpu)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"cases": results, "cpu": cpu}, indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
