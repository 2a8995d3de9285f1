"""CPU threads for training: a share of this node's cores among the sarsweep processes training on it.

torch starts one intra-op thread per core in every process, so two plain `sarsweep worker`s on
a 2-core node ran 4 threads on 2 cores: an epoch took 265 s against 5.4 s with one thread each.
Each training process registers itself here (a file it holds an exclusive lock on, in a folder
local to the node), and a run takes cores // processes threads at its start. The count a run
used is recorded with it (the trial's config, an exported YAML), because a result depends on it:
retraining under another thread count gave 17.39 dB against the trial's 17.30.

The folder is /dev/shm/sarsweep-<uid> (memory, never shared between nodes, seen by every process
of the user on the node; a container has its own), else the temp folder. A process killed with
kill -9 leaves its file, whose lock the kernel released: the next count removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("sarsweep.threads")

_registered: list[int] = []  # this process's own lock file descriptor, once registered


def node_folder() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else \
        Path(tempfile.gettempdir())
    return base / f"sarsweep-{os.getuid()}"


def node_cores() -> int:
    """The cores this process may run on (its CPU affinity: a Slurm allocation's, a cgroup's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def register() -> None:
    """Count this process among the node's sarsweep trainers until it exits (idempotent)."""
    if _registered:
        return
    folder = node_folder()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{socket.gethostname()}-{os.getpid()}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:  # a read-only /tmp, say: count this process as alone
        log.debug("cannot register at %s (%s); counting this process alone", folder, exc)
        return
    _registered.append(fd)


def running() -> int:
    """Live sarsweep trainers on this node, this process included (at least 1)."""
    folder = node_folder()
    live = 0
    with contextlib.suppress(OSError):
        for path in folder.glob("*.lock"):
            if _held(path):
                live += 1
            else:
                path.unlink(missing_ok=True)  # its process is gone (kill -9 leaves the file)
    return max(1, live + (0 if _registered else 1))


def _held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # someone holds it: a live process (maybe this one: locks are per open file)
    finally:
        os.close(fd)
    return False


def threads_for(configured: int | None) -> tuple[int, str]:
    """(threads, why) for a CPU run: `configured` (a config's or --threads) when set, else
    $OMP_NUM_THREADS when set (launch sets it for its CPU workers), else the node share."""
    if configured:
        return configured, "as configured"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "from OMP_NUM_THREADS"
    register()
    n = running()
    return max(1, node_cores() // n), f"a share of {node_cores()} cores among {n} sarsweep process(es) on this node"


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """register() for the block's duration (tests, benchmarks); a process normally stays registered."""
    register()
    try:
        yield
    finally:
        while _registered:
            os.close(_registered.pop())
