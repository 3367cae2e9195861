"""Where a long build is: each stage names itself to whoever listens (the CLI's spinner).

The pass manager's instruments say which pass runs; after the passes, the build announces its own
stages (lowering, the TVM build or tuning, the check against eager, writing the artifact), so the
status line never shows the last pass while TVM works for minutes.

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


@contextlib.contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``listener(message)`` is called for every stage."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
