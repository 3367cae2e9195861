"""Ctrl-C and SIGTERM stop a build promptly, at whatever stage, and leave nothing behind.

Python delivers a signal only between bytecodes of the main thread, so during a long TVM call it
arrives when the call returns, or inside it where TVM checks for signals; TVM then wraps the
``KeyboardInterrupt`` in its own error (which a build would report as a compiler failure) or drops
it. ``handling_interrupts`` therefore also records each signal, and the build calls ``check()``
between stages (after each pass, after the TVM build, before writing the artifact): a recorded
signal raises ``Interrupted`` there, and ``was_interrupted()`` tells a handler that an error is
really an interrupt. ``Interrupted`` is a ``KeyboardInterrupt``, so cleanup written for Ctrl-C
(the artifact's temporary folder) runs for SIGTERM too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM; ``exit_status`` is the shell's (130, 143)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _handle(signum: int, frame: FrameType | None) -> None:
    with _lock:
        _received.append(signum)
    raise Interrupted(signum)


def was_interrupted() -> bool:
    """Whether a signal arrived since ``handling_interrupts`` began."""
    return bool(_received)


def check() -> None:
    """Raise ``Interrupted`` if a signal arrived (it may have been swallowed inside a TVM call)."""
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def handling_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted`` and are recorded (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _received.clear()
    for signum in previous:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()
