"""Checking a compiled model against PyTorch eager before its artifact is written.

Every route that builds an artifact (``graphopt.compile``, ``graphopt compile``, ``bench``,
``quantize``) hands an ``EagerChecker`` to the target's build: the compiled model runs once on the
example inputs (an artifact built with ``dynamic_seq_len`` once per checked length: 1, the example's
and the bound, since one library serves them all and a symbolic shape can be wrong at one of them), its outputs are compared with the user's model in PyTorch eager, and a mismatch
raises ``MismatchError`` before anything reaches ``out_dir``. With ``keep_mismatch`` the artifact
is written with the failed check in its manifest, and ``graphopt.load`` refuses it unless told
``allow_mismatch=True``. The result is recorded in the manifest as ``eager_check``.

Bounds, as relative errors (``graphopt.numerics.relative_error``: max |diff| / max |eager|):

- float32: ``FLOAT_TOLERANCE``. TVM reorders float32 sums (a 784-long dot product, conv
  reductions), which moves results by a few ulps of the largest accumulated value; 1e-4 leaves
  room for that and still catches a wrong kernel.
- float16 / bfloat16 outputs: at least ``HALF_ULPS`` ulps of the narrowest such output's type
  (``eps``: 2e-3 for float16, 1.6e-2 for bfloat16). TVM's float32 sums in another order can flip the
  rounding of a half value, the output's own or an intermediate one carried into it: one ulp each,
  while 1e-4 is below one float16 ulp (the build of an fp16 model failed on a single flipped rounding).
- a quantized graph (one with graphopt's QDQ ops): the error its own PyTorch reference (the
  fake-quantized graph, what the int8 kernels implement) has against eager on the same inputs,
  times ``QUANTIZED_FACTOR``, and at least ``FLOAT_TOLERANCE``. The integer kernels may differ from
  that reference by a flipped rounding of an intermediate activation, at most one quantization
  step, which is of the order of the quantization error itself; a factor of 2 covers it, while a
  wrong int8 kernel is off by the size of the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from graphopt import interrupts
from graphopt.errors import MismatchError
from graphopt.numerics import flatten_outputs, relative_error

FLOAT_TOLERANCE = 1e-4
QUANTIZED_FACTOR = 2.0
HALF_ULPS = 2
#: The manifest key the result is recorded under.
MANIFEST_KEY = "eager_check"


@dataclass(frozen=True)
class EagerCheck:
    """The outcome: ``checked`` False (with ``reason``) when the artifact cannot run on this machine."""

    checked: bool
    max_relative_error: float | None = None
    tolerance: float | None = None
    output: str | None = None
    quantized: bool = False
    reason: str | None = None
    lengths: tuple[int, ...] | None = None  #: the sequence lengths checked (a ``dynamic_seq_len`` artifact)

    @property
    def ok(self) -> bool | None:
        if not self.checked or self.max_relative_error is None or self.tolerance is None:
            return None
        return self.max_relative_error <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        """One line: what was compared, the worst error, the bound."""
        if not self.checked:
            return f"not checked against PyTorch eager: {self.reason}"
        kind = "int8 bound" if self.quantized else "tolerance"
        verdict = "matches" if self.ok else "differs from"
        over = "the example inputs"
        if self.lengths:
            over += f" at sequence lengths {', '.join(str(n) for n in self.lengths)}"
        return (
            f"{verdict} PyTorch eager: max relative error {self.max_relative_error:.3g} on output "
            f"'{self.output}' over {over} ({kind} {self.tolerance:.1e})"
        )


def eager_callable(model: Any) -> Callable[..., Any]:
    """The model as PyTorch eager runs it (a ``torch.export`` program through its ``module()``)."""
    import torch

    return model.module() if isinstance(model, torch.export.ExportedProgram) else model


def check_lengths(inputs: Sequence[Any], bound: int | None) -> tuple[int, ...]:
    """The sequence lengths a ``dynamic_seq_len=bound`` artifact is checked at: 1, the example's, the bound."""
    if bound is None:
        return ()
    example = max((t.shape[1] for t in inputs if getattr(t, "dim", lambda: 0)() > 1), default=None)
    return tuple(sorted({1, bound} | ({int(example)} if example is not None else set())))


def at_length(inputs: Sequence[Any], length: int) -> tuple[Any, ...]:
    """The inputs with dimension 1 of every 2+-d tensor cut or cyclically repeated to ``length``:
    token ids and masks stay valid values, which fresh random data would not guarantee."""
    import torch

    def resize(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            return t
        index = torch.arange(length) % t.shape[1]
        return t.index_select(1, index)

    return tuple(resize(t) for t in inputs)


def is_quantized(graph: Any) -> bool:
    """Whether ``graph`` holds graphopt's quantize/dequantize ops (``torch.ops.graphopt.*``)."""
    return any(getattr(node.target, "namespace", None) == "graphopt" for node in graph.module.graph.nodes)


def half_tolerance(expected: Any) -> float:
    """``HALF_ULPS`` ulps (``eps``) of the narrowest float16/bfloat16 output, 0 without one."""
    widths = [_HALF_EPS[a.dtype.name] for a in flatten_outputs(expected) if a.dtype.name in _HALF_EPS]
    return HALF_ULPS * max(widths, default=0.0)


#: The spacing of the half types at 1.0 (``torch.finfo(dtype).eps``).
_HALF_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


def _as_input(value: Any) -> Any:
    """An example input as the compiled model takes it: numpy, or the tensor for bfloat16 (numpy's
    stand-in for it, ``ml_dtypes.bfloat16``, does not pass into TVM)."""
    if not hasattr(value, "detach") or str(value.dtype) == "torch.bfloat16":
        return value
    return value.detach().cpu().numpy()


def compare(expected: Any, actual: Any, names: Sequence[str], tolerance: float, *, quantized: bool) -> EagerCheck:
    """Each output's relative error; the worst one and its output's name."""
    expected_list, actual_list = flatten_outputs(expected), flatten_outputs(actual)
    if len(expected_list) != len(actual_list):
        return EagerCheck(True, float("inf"), tolerance, f"{len(actual_list)} outputs, not {len(expected_list)}")
    labels = list(names) if len(names) == len(expected_list) else [f"output_{i}" for i in range(len(expected_list))]
    errors = [relative_error(e, a) for e, a in zip(expected_list, actual_list, strict=True)]
    worst = max(range(len(errors)), key=errors.__getitem__) if errors else 0
    return EagerCheck(True, errors[worst] if errors else 0.0, tolerance, labels[worst] if labels else "", quantized)


class EagerChecker:
    """What a target's build calls with the compiled model before it writes the artifact.

    ``reference`` is the user's model (called on the example ``inputs``, torch tensors); ``graph``
    the graph that was compiled (its QDQ ops set the bound). With ``dynamic_seq_len`` (the
    artifact's bound) the check runs at every length of ``check_lengths``. Returns the manifest entry.

    >>> checker = EagerChecker(model, graph, graph.example_inputs)
    >>> graphopt.targets.build(graph, check=checker)  # raises MismatchError on a wrong artifact
    """

    def __init__(
        self,
        reference: Callable[..., Any],
        graph: Any,
        inputs: Sequence[Any],
        *,
        keep_mismatch: bool = False,
        dynamic_seq_len: int | None = None,
    ):
        import torch

        self.inputs = tuple(inputs)
        self.keep_mismatch = keep_mismatch
        self.lengths = check_lengths(self.inputs, dynamic_seq_len)
        self.cases = [at_length(self.inputs, n) for n in self.lengths] if self.lengths else [self.inputs]
        with torch.no_grad():
            self.expected = reference(*self.inputs)
            self.expected_cases = [reference(*case) for case in self.cases]
        self.quantized = is_quantized(graph)
        self.tolerance = max(FLOAT_TOLERANCE, half_tolerance(self.expected))
        if self.quantized:
            stated = relative_error(self.expected, graph(*self.inputs))
            self.tolerance = max(FLOAT_TOLERANCE, QUANTIZED_FACTOR * stated)

    def check(self, compiled: Any) -> EagerCheck:
        names = [spec.name for spec in getattr(compiled, "outputs", [])]
        worst: EagerCheck | None = None
        for case, expected in zip(self.cases, self.expected_cases, strict=True):
            arrays = [_as_input(t) for t in case]
            try:
                outputs = compiled(*arrays)
            except Exception as error:  # e.g. an ARM artifact on an x86 host without qemu
                interrupts.check()
                return EagerCheck(False, reason=f"{type(error).__name__}: {error}".splitlines()[0])
            result = compare(expected, outputs, names, self.tolerance, quantized=self.quantized)
            if worst is None or (result.max_relative_error or 0.0) > (worst.max_relative_error or 0.0):
                worst = result
        assert worst is not None
        return replace(worst, lengths=self.lengths or None)

    def __call__(self, compiled: Any) -> dict[str, Any]:
        result = self.check(compiled)
        if result.ok is False and not self.keep_mismatch:
            raise MismatchError(
                f"the compiled model {result.describe()}; the artifact was not kept "
                "(keep_mismatch=True or --keep-mismatch keeps it, marked; check=False or --no-check skips the check)"
            )
        return {MANIFEST_KEY: result.to_dict()}


def recorded(manifest: Any) -> EagerCheck | None:
    """The check recorded in an artifact's manifest (``graphopt.targets.runtime.Manifest``), if one ran."""
    data = manifest.eager_check
    if not isinstance(data, dict):
        return None
    fields: dict[str, Any] = {k: data[k] for k in EagerCheck.__dataclass_fields__ if k in data}
    if fields.get("lengths") is not None:
        fields["lengths"] = tuple(fields["lengths"])
    return EagerCheck(**{"checked": False, **fields})
