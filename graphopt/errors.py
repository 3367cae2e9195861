"""The exception family every graphopt failure is reported through.

Each error carries enough to write one line a user can act on: what failed, on which node and op,
and the line of the user's source that produced it. The CLI prints ``str(error)`` and exits with
status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class GraphoptError(Exception):
    """Base class: ``str()`` is the one-line message shown to the user."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        op: str | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.node = node
        self.op = op
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.node:
            where.append(f"node '{self.node}'")
        if self.op:
            where.append(f"op {self.op}")
        if self.source:
            where.append(f"at {self.source}")
        return self.message + (f" ({', '.join(where)})" if where else "")


class CaptureError(GraphoptError):
    """The model could not be traced into the IR by any capture method."""


class InputError(GraphoptError):
    """Bad user input: missing file, unknown model, wrong shape or dtype, bad option."""


class UnknownPassError(InputError):
    """A pipeline names a pass that is not registered."""


class PassError(GraphoptError):
    """A pass raised; the graph it was given is left untouched."""

    def __init__(self, pass_name: str, message: str, **where: str | None) -> None:
        self.pass_name = pass_name
        super().__init__(f"pass '{pass_name}' failed: {message}", **where)


class VerificationError(GraphoptError):
    """Verify mode found a pass whose outputs drift from the graph it was given."""

    def __init__(self, pass_name: str, message: str) -> None:
        self.pass_name = pass_name
        super().__init__(f"verification failed after pass '{pass_name}': {message}")


class UnsupportedOpError(GraphoptError):
    """A target cannot handle one or more ops; all of them are listed at once."""

    def __init__(self, target: str, problems: list[tuple[str, str, str | None]], hint: str | None = None) -> None:
        self.target = target
        self.problems = problems
        listed = "; ".join(
            f"{op} at node '{node}'" + (f" ({source})" if source else "") for node, op, source in problems
        )
        super().__init__(
            f"{len(problems)} op(s) not supported by target '{target}': {listed}" + (f"; {hint}" if hint else "")
        )


class ArtifactError(GraphoptError):
    """A compiled artifact is missing, corrupt, or does not match this runtime."""


class BuildError(GraphoptError):
    """A target's compiler (TVM, nvcc, a cross compiler) failed on a graph it accepted."""


class MismatchError(GraphoptError):
    """A compiled model's outputs differ from PyTorch eager by more than the bound its build states."""


def first_line(error: BaseException) -> str:
    """The line of ``error`` worth showing a user: its first non-blank line that is not part of a
    nested traceback (TVM's messages embed one), at most 300 characters; the type name if blank."""
    for line in str(error).splitlines():
        text = line.strip()
        if text and not line.startswith((" ", "\t")) and not text.startswith("Traceback"):
            return text[:300]
    return type(error).__name__


class UnsupportedOnnxError(UnsupportedOpError):
    """An ONNX model has nodes graphopt cannot import; all of them are listed at once."""

    def __init__(self, problems: list[tuple[str, str, str | None]], hint: str) -> None:
        self.target = "onnx"
        self.problems = problems
        listed = "; ".join(f"{op} at node '{node}'" + (f" ({why})" if why else "") for node, op, why in problems)
        GraphoptError.__init__(self, f"{len(problems)} ONNX node(s) cannot be imported: {listed}; {hint}")
