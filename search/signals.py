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


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into WorkerStopped in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: types.FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
        raise WorkerStopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
