"""Set-up shared by the processes sarsweep starts (the CLI, the load-test workers)."""

from __future__ import annotations

import faulthandler
import logging
import signal


def setup_process(prefix: str, level: int) -> None:
    """Log to stderr as "<prefix>: LEVEL: message", and make `kill -USR1 PID` print every
    thread's stack to stderr while the process goes on: what a worker or reaper that seems stuck
    is waiting on, without stopping its trial."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=level, format=f"{prefix}: %(levelname)s: %(message)s")
    # matplotlib says "generated new fontManager" at INFO the first time it builds its font cache.
    logging.getLogger("matplotlib").setLevel(max(level, logging.WARNING))
