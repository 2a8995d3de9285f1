"""A throwaway single-node Slurm cluster: munged, slurmctld and slurmd of its own, stopped after.

    with SlurmCluster() as slurm:
        job = slurm.sbatch(["--array=0-3", "--export=ALL,CAMPAIGN=c.yaml", "deploy/slurm/worker.sbatch"], cwd)
        slurm.wait(job)                   # until squeue lists none of its tasks
        slurm.tasks(job)                  # {task: {"JobState": "COMPLETED", "ExitCode": "0:0", ...}}

Debian's slurm-wlm and munge, run as root (CI's user) with everything under a temp dir: its own
munge key and socket, slurm.conf (its own ports, state and spool dirs, proctrack/linuxproc,
task/none, no accounting), and two fake GPUs (gres files under the temp dir), so the sbatch files
submit as written with `--gres=gpu:1`. The node claims 4 CPUs (SlurmdParameters=config_overrides)
so a database job and two workers fit beside each other on a 2-core machine. No system service is
touched; the commands find this cluster through $SLURM_CONF, set in `env`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NODE = "sarsweepnode"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Job states after which a job runs no more (squeue's and scontrol's long names).
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY"}

# Seconds a requeued task stays pending before wait() releases it (see wait).
REQUEUE_PAUSE = 3.0


class SlurmError(RuntimeError):
    pass


class SlurmCluster:
    def __init__(self, cpus: int = 4) -> None:
        for binary in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol"):
            if shutil.which(binary) is None:
                raise SlurmError(f"{binary} not found: install slurm-wlm and munge (.ci/run does)")
        self.dir = Path(tempfile.mkdtemp(prefix="sarsweep-slurm-"))
        self.dir.chmod(0o755)  # munged wants its socket's folder searchable by all
        self.cpus = cpus
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _write_config(self) -> None:
        (self.dir / "state").mkdir()
        (self.dir / "spool").mkdir()
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for i in range(2):
            (self.dir / f"fakegpu{i}").touch()
        (self.dir / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={self.dir}/fakegpu[0-1]\n")
        host = socket.gethostname()
        self.conf.write_text(f"""ClusterName=sarsweeptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={self.dir}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.dir}/state
SlurmdSpoolDir={self.dir}/spool
SlurmctldPidFile={self.dir}/slurmctld.pid
SlurmdPidFile={self.dir}/slurmd.pid
SlurmctldLogFile={self.dir}/slurmctld.log
SlurmdLogFile={self.dir}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=30
GresTypes=gpu
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")

    def _daemon(self, *argv: str) -> None:
        log = open(self.dir / f"{Path(argv[0]).name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def __enter__(self) -> SlurmCluster:
        self._write_config()
        self._daemon("munged", "--force", "-F", f"--key-file={self.dir}/munge.key", f"--socket={self.dir}/munge.sock",
                     f"--pid-file={self.dir}/munged.pid", f"--log-file={self.dir}/munged.log",
                     f"--seed-file={self.dir}/munged.seed")
        self._wait_for(lambda: (self.dir / "munge.sock").exists(), "munged's socket")
        self._daemon("slurmctld", "-D", "-f", str(self.conf))
        self._wait_for(lambda: self.run("sinfo", "-h", check=False).returncode == 0, "slurmctld")
        self._daemon("slurmd", "-D", "-f", str(self.conf), "-N", NODE)
        self._wait_for(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False).stdout, "an idle node")
        return self

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.dir.glob("*.out")))
                self.__exit__()
                raise SlurmError(f"the test cluster did not get {what}{logs}")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.run("scancel", "--user", "root", check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- commands -------------------------------------------------------------------------

    def run(self, *argv: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, cwd=cwd, timeout=60)
        if check and done.returncode:
            raise SlurmError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def sbatch(self, args: list[str], cwd: Path) -> str:
        """Submit as a user would; the job id."""
        done = self.run("sbatch", "--parsable", *args, cwd=cwd)
        return done.stdout.strip().split(";")[0]

    def queued(self, job: str) -> list[str]:
        """Its tasks squeue still lists (pending, running, completing), as JOB_TASK and state."""
        out = self.run("squeue", "-h", "-j", job, "-o", "%i %T", check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    def ended(self, job: str) -> bool:
        """squeue lists none of the job's tasks and each one's record is in a final state. (A task
        requeueing itself is briefly in neither list: REQUEUED in its record, absent from squeue.)"""
        return not self.queued(job) and all(t.get("JobState") in FINAL for t in self.tasks(job).values())

    def wait(self, job: str, timeout: float = 300, release_requeued: bool = True) -> None:
        """Until the job has ended, seen so twice 1 s apart. A task Slurm requeued waits out Slurm's
        requeue delay (its BeginTime, 2 minutes on) so that its relaunch's credential is newer than
        the one slurmd revoked when it killed the first run; compared in whole seconds, so one
        relaunched within the revoke's second fails at once ("Job N already killed, do not launch
        batch job", exit 1:0). Released here after REQUEUE_PAUSE seconds of pending instead."""
        deadline = time.monotonic() + timeout
        seen_ended = 0
        pending_since: dict[str, float] = {}
        while seen_ended < 2:
            if self.ended(job):
                seen_ended += 1
                time.sleep(1.0)
                continue
            seen_ended = 0
            if release_requeued:
                for line in self.queued(job):
                    task, state = line.split()
                    if state == "PENDING" and "BeginTime" in self.run("squeue", "-h", "-j", task, "-o", "%r",
                                                                      check=False).stdout:
                        since = pending_since.setdefault(task, time.monotonic())
                        if time.monotonic() - since >= REQUEUE_PAUSE:
                            self.run("scontrol", "update", f"jobid={task}", "StartTime=now", check=False)
                            del pending_since[task]
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job} still queued after {timeout:.0f} s: {self.queued(job)}")
            time.sleep(0.5)

    def tasks(self, job: str) -> dict[int, dict[str, str]]:
        """Each array task's record (scontrol show job): JobState, ExitCode, Restarts, ..."""
        out = self.run("scontrol", "show", "job", "-o", job).stdout
        found = {}
        for line in out.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            found[int(fields.get("ArrayTaskId", "0"))] = fields
        return found
