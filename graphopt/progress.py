"""Where a long build is: each stage names itself to whoever listens (the CLI's spinner).

The pass manager's instruments say which pass runs; after the passes, the build announces its own
stages (lowering, the TVM build or tuning, the check against eager, writing the artifact), so the
status line never shows the last pass while TVM works for minutes; tuning reports its measured
candidates as a bar (``count``).

>>> with graphopt.progress.listening(print):
...     graphopt.compile(model, x, out_dir="out/mlp")
lowering 'MnistMLP' to TVM Relax
...
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

_listeners: list[Callable[[str], None]] = []


def stage(message: str) -> None:
    """Tell the listeners that ``message`` (a present-tense phrase) is what runs now."""
    for listener in list(_listeners):
        listener(message)


def count(message: str, done: int, total: int, width: int = 20) -> None:
    """A counted stage (tuning's measured candidates): ``message`` with a bar and ``done/total``.

    >>> count("tuning 3 workloads", 8, 32)   # listeners get "tuning 3 workloads [#####...............] 8/32"
    """
    done = max(0, min(done, total))
    filled = round(width * done / total) if total > 0 else width
    stage(f"{message} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")


def is_listened() -> bool:
    """Whether anyone listens (else a step may show progress its own way, or not at all)."""
    return bool(_listeners)


@contextlib.contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``listener(message)`` is called for every stage."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
