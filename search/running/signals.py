"""SIGTERM and SIGINT for sarsweep's long-running commands (worker, reaper, dashboard).

A signal becomes `WorkerStopped` in the main thread, which the worker loop catches to queue its
running trial for retry before it exits. (The claim holds both signals back while it commits:
storage.trials.signals_deferred.)
"""

from __future__ import annotations

import signal
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager


class WorkerStopped(BaseException):
    """SIGTERM/SIGINT arrived. A BaseException so no library's `except Exception` swallows it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.signal_name = name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, what a shell reports for a process the signal ended."""
        return 128 + int(signal.Signals[self.signal_name])


class _Stop:
    """The signal received, and whether its WorkerStopped reached the code that handles it."""

    name: str | None = None
    handled: bool = False


_stop = _Stop()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into WorkerStopped in the main thread (a no-op elsewhere).

    Python runs a signal handler at the next bytecode of the main thread, which may be inside a
    finalizer (a __del__, a weakref callback): an exception raised there is printed as "Exception
    ignored" and lost, and the worker trained on. So the signal is also remembered, and
    `raise_if_stopped()` (before each claim, after each epoch) raises it again until `handled()`.
    A second signal does not interrupt the clean-up (Ctrl-C reaches `launch`'s workers both as
    the terminal's SIGINT and as the SIGTERM launch passes on)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: types.FrameType | None) -> None:
        if _stop.name is not None:
            return
        _stop.name = signal.Signals(signum).name
        raise WorkerStopped(_stop.name)

    _stop.name, _stop.handled = None, False
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def raise_if_stopped() -> None:
    """WorkerStopped again when a signal came and its first one was lost (see stop_on_signals)."""
    if _stop.name is not None and not _stop.handled:
        raise WorkerStopped(_stop.name)


def handled() -> None:
    """The WorkerStopped of the signal received has reached its handler: not to be raised again."""
    _stop.handled = True
