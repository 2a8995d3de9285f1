"""`sarsweep launch --gpus 0,1,2,3 [--per-gpu N] -- <worker args>`: one worker process per GPU slot.

Each child is `sarsweep worker ...` with CUDA_VISIBLE_DEVICES set to its GPU, so each sees one
device as cuda:0; its lines come out behind `[w<index> gpu <GPU>]` (or `[w<index> cpu]`).
Ctrl-C (or SIGTERM) is passed on to every child, which queues its running trial for retry, and
launch waits for them all. With no GPU, `--gpus all` starts `--per-gpu` CPU workers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import types
from typing import IO, TextIO

from errors import SarsweepError
from training.threads import node_cores

log = logging.getLogger("sarsweep.launch")


def parse_gpus(spec: str, count: int | None = None, visible: str | None = None) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each GPU slot; [] means CPU workers.

    'all' is every GPU this process sees; '0,1,3' are indices among them. `count` is how many
    it sees (torch's count when None) and `visible` its own CUDA_VISIBLE_DEVICES (the
    environment's when None): inside an allocation that set it (Slurm's '4,5', a container's
    GPU UUIDs) a child gets the allocation's entry, not the bare index, which would name a GPU
    outside it. An index it does not see, or one listed twice, is an error: each would leave a
    worker training on the CPU, or two on one GPU, without a word."""
    if count is None:
        import torch

        count = torch.cuda.device_count()
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec == "all":
        indices = list(range(count))
    else:
        parts = [g.strip() for g in spec.split(",") if g.strip()]
        if not parts or not all(g.isdigit() for g in parts):
            raise SarsweepError(f"--gpus: expected 'all' or a comma-separated list of GPU indices, got {spec!r}")
        indices = [int(g) for g in parts]
        twice = sorted({i for i in indices if indices.count(i) > 1})
        if twice:
            raise SarsweepError(f"--gpus {spec}: GPU {twice[0]} is listed twice; "
                                "--per-gpu N runs N workers on each GPU")
        missing = [i for i in indices if i >= count]
        if missing:
            sees = f"{count} GPU(s), 0-{count - 1}" if count else "no GPU"
            raise SarsweepError(f"--gpus {spec}: GPU {missing[0]} is not visible here (this process sees {sees}"
                                f"{'' if visible is None else f', CUDA_VISIBLE_DEVICES={visible!r}'})")
    entries = [e.strip() for e in visible.split(",")] if visible else []
    return [entries[i] if i < len(entries) else str(i) for i in indices]


def worker_commands(gpus: list[str], per_gpu: int, worker_args: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    base = [sys.executable, "-m", "search.cli", "worker", *worker_args]
    slots = [(g, i) for g in gpus for i in range(per_gpu)] if gpus else [(None, i) for i in range(per_gpu)]
    # N CPU workers each starting one intra-op thread per core would fight over the cores
    # (oversubscription slows every step); give each an equal share unless the user chose.
    cpu_threads = str(max(1, node_cores() // max(1, len(slots))))
    commands = []
    for index, (gpu, _) in enumerate(slots):
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
        if gpu is None:
            env.setdefault("OMP_NUM_THREADS", cpu_threads)
        commands.append(([*base, "--worker-index", str(index)], env))
    return commands


def prefix_of(index: int, env: dict[str, str]) -> str:
    """'[w0 gpu 2] ', '[w1 cpu] ': which worker (and which of its GPUs) a line comes from."""
    gpu = env.get("CUDA_VISIBLE_DEVICES", "")
    return f"[w{index} {'gpu ' + gpu if gpu else 'cpu'}] "


def relay(stream: IO[str], prefix: str, out: TextIO) -> None:
    """Copy a child's lines to `out`, each behind its worker's prefix, as they come."""
    for line in stream:
        out.write(prefix + line)
        out.flush()
    stream.close()


def launch(gpus: list[str], per_gpu: int, worker_args: list[str]) -> int:
    commands = worker_commands(gpus, per_gpu, worker_args)
    where = f"GPUs {','.join(gpus)}" if gpus else "the CPU (no GPU found)"
    print(f"launching {len(commands)} worker(s) on {where}", flush=True)
    children = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
                for cmd, env in commands]
    relays = [threading.Thread(target=relay, args=(stream, prefix_of(i, env), out), daemon=True)
              for i, (child, (_, env)) in enumerate(zip(children, commands, strict=True))
              for stream, out in ((child.stdout, sys.stdout), (child.stderr, sys.stderr))]
    for thread in relays:
        thread.start()
    received: list[int] = []

    def forward(signum: int, _frame: types.FrameType | None) -> None:
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    for thread in relays:
        thread.join(10)
    stopped = [c for c in codes if c in (130, 143)] if received else []
    failed = [c for c in codes if c != 0 and c not in stopped]
    print(f"all workers exited ({len(codes) - len(failed) - len(stopped)} ok, {len(stopped)} stopped by "
          f"{signal.Signals(received[0]).name if received else 'no signal'}, {len(failed)} with errors)", flush=True)
    if failed:
        return max(failed)
    return 128 + received[0] if received else 0
