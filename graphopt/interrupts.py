"""Ctrl-C and SIGTERM stop a build promptly, at whatever stage, and leave nothing behind.

Python delivers a signal only between bytecodes of the main thread, so during a long TVM call it
arrives when the call returns, or inside it where TVM checks for signals; TVM then wraps the
``KeyboardInterrupt`` in its own error (which a build would report as a compiler failure) or drops
it. ``handling_interrupts`` therefore also records each signal, and the build calls ``check()``
between stages (after each pass, after the TVM build, before writing the artifact): a recorded
signal raises ``Interrupted`` there, and ``was_interrupted()`` tells a handler that an error is
really an interrupt. ``Interrupted`` is a ``KeyboardInterrupt``, so cleanup written for Ctrl-C
(the artifact's temporary folder) runs for SIGTERM too.

A signal can also arrive while the main thread waits on a lock (a MetaSchedule build or
measurement, seconds to minutes) and stay unhandled until the wait ends: TVM's Z3 prover
installs its own SIGINT handler around each proof and puts Python's back with ``signal()``,
which adds ``SA_RESTART``, so the kernel resumes the wait instead of returning to Python. A
helper thread, woken by Python's wakeup fd, therefore sends the main thread a second, private
signal whose handler does nothing and never restarts a wait: the wait returns, and Python runs
the SIGINT handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []
_lock = threading.Lock()
#: the private signal that wakes the main thread (Linux has real-time signals; elsewhere no wake-up)
_WAKE = getattr(signal, "SIGRTMIN", None)


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
        with _waking_the_main_thread():
            yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


@contextlib.contextmanager
def _waking_the_main_thread() -> Iterator[None]:
    """Within the block, each SIGINT or SIGTERM is followed by a ``_WAKE`` signal to the main thread
    (see the module's docstring): a wait that the kernel would resume returns to Python."""
    if _WAKE is None:
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_wake = signal.signal(_WAKE, lambda signum, frame: None)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    assert main is not None
    leaving = threading.Event()

    def wake() -> None:
        signalled = 0
        with os.fdopen(read_end, "rb", buffering=0) as wakeups:
            while signums := wakeups.read(64):
                signalled += signums.count(signal.SIGINT) + signums.count(signal.SIGTERM)
                # A wake-up that lands while the main thread still runs the C handler of a signal
                # it took itself is lost (the wait resumes after both): retry until Python's
                # handler has run, a few times (a thread in TVM's C++ runs it on its return).
                for pause in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
                    if len(_received) >= signalled or leaving.is_set():
                        break
                    with contextlib.suppress(OSError):
                        signal.pthread_kill(main, _WAKE)
                    leaving.wait(pause)

    helper = threading.Thread(target=wake, name="graphopt-interrupts", daemon=True)
    helper.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        leaving.set()
        os.close(write_end)  # the helper reads the end of the pipe and stops
        helper.join(1.0)
        if not helper.is_alive():  # else keep the no-op handler: a late wake-up must not kill us
            signal.signal(_WAKE, previous_wake)
