"""SIGTERM/SIGINT in the main thread (search/running/signals.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from search.running.signals import WorkerStopped, handled, raise_if_stopped, stop_on_signals


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one, on purpose
def test_a_signal_whose_exception_a_finalizer_swallowed_is_raised_again() -> None:
    """Python runs the handler at the main thread's next bytecode; inside a __del__ its exception
    is printed and lost, and a worker trained on through its SIGTERM (CI, launch under load)."""
    arrived = threading.Event()

    class Finalized:
        def __del__(self) -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the handler runs (and raises) in here
                time.sleep(0.01)

    with stop_on_signals():
        threading.Timer(0.2, lambda: (os.kill(os.getpid(), signal.SIGTERM), arrived.set())).start()
        obj = Finalized()
        del obj  # its finalizer runs now, and swallows the handler's WorkerStopped
        assert arrived.is_set()
        with pytest.raises(WorkerStopped) as stopped:
            raise_if_stopped()
        assert stopped.value.signal_name == "SIGTERM" and stopped.value.exit_code == 143
        handled()
        raise_if_stopped()  # handled: not raised again
        os.kill(os.getpid(), signal.SIGINT)  # a second signal while stopping does not interrupt the clean-up
        time.sleep(0.1)
    raise_if_stopped()
