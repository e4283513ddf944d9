"""Why SLURM worker jobs did not connect: their state, reason, exit code and log.

While the factory waits for its first workers it asks ``squeue`` (``sacct`` for jobs
the controller forgot) about each job, and stops waiting, with the job's state and the
end of its log, as soon as a job has ended or can never start.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lazyraster.cluster._resources import _config
from lazyraster.cluster._slurm import _run, _sbatch_refusal
from lazyraster.errors import ClusterStartError

#: Job states after which a worker job will never connect.
_ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)
#: Reasons for which a pending job will stay pending for ever.
_HOPELESS_REASONS = frozenset(
    {
        "AccountNotAllowed",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "PartitionConfig",
        "PartitionDown",
        "PartitionInactive",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "QOSNotAllowed",
    }
)


def _job_details(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict, else a few fields from ``sacct``, else {}."""
    if shutil.which("scontrol"):
        shown = _run(["scontrol", "show", "job", "-o", job_id], timeout=10)
        if shown.returncode == 0 and shown.stdout.strip():
            fields = re.findall(r"(\w+)=(\S*)", shown.stdout)
            return dict(fields)
    if shutil.which("sacct"):
        acct = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,Reason,ExitCode"])
        line = acct.stdout.strip().splitlines()[:1]
        if acct.returncode == 0 and line:
            state, reason, code = [*line[0].split("|"), "", "", ""][:3]
            return {"JobState": state.split()[0], "Reason": reason, "ExitCode": code}
    return {}


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as error:
        return f"(cannot read {path}: {error.strerror})\n"


def _expand_log_path(pattern: str, info: Mapping[str, str]) -> str:
    """Fill sbatch's filename patterns (``%j``, ``%x``, ...) that scontrol shows as given."""
    job_id = info.get("JobId", "")
    values = {
        "%": "%",
        "j": job_id,
        "J": job_id,
        "A": info.get("ArrayJobId", job_id),
        "a": info.get("ArrayTaskId", ""),
        "x": info.get("JobName", ""),
        "u": info.get("UserId", "").split("(")[0],
        "N": info.get("BatchHost", ""),
        "n": "0",
        "t": "0",
        "s": "batch",
    }

    def fill(match: re.Match[str]) -> str:
        width, key = match.group(1), match.group(2)
        value = values.get(key, match.group(0))
        return value.zfill(int(width)) if width and value.isdigit() else value

    return re.sub(r"%(\d*)([%jJAaxuNnts])", fill, pattern)


def _describe_jobs(job_ids: Sequence[str]) -> str:
    """Say, for each job, its state, reason and exit code and show its log's last lines."""
    lines = int(_config("log-tail-lines"))
    parts = []
    for job_id in job_ids:
        info = _job_details(job_id)
        if not info:
            parts.append(f"job {job_id}: no longer known to scontrol or sacct")
            continue
        parts.append(
            f"job {job_id}: {info.get('JobState', '?')} (Reason={info.get('Reason', '?')}, "
            f"ExitCode={info.get('ExitCode', '?')})"
        )
        logs = dict.fromkeys(
            _expand_log_path(p, info) for p in (info.get("StdOut"), info.get("StdErr")) if p
        )
        for log in logs:
            parts.append(f"--- last lines of {log}:\n{_tail(log, lines).rstrip()}")
    return "\n".join(parts)


def _submitted_job_ids(slurm_cluster: Any) -> list[str]:
    jobs = list(slurm_cluster.workers.values())
    return [str(job.job_id) for job in jobs if getattr(job, "job_id", None)]


def _job_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """State and reason of each job: one ``squeue`` call, ``sacct`` for jobs it forgot."""
    if not job_ids:
        return {}
    listed = _run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"])
    if listed.returncode != 0 and "Invalid job id" not in listed.stderr:
        return {}  # controller busy or unreachable for a moment: ask again next round
    states: dict[str, tuple[str, str]] = {}
    for line in listed.stdout.splitlines():
        job_id, state, reason = [*line.split("|"), "", ""][:3]
        states[job_id.strip()] = (state.strip(), reason.strip())
    for job_id in job_ids:
        if job_id not in states:  # purged from the controller: ended some time ago
            info = _job_details(job_id)
            states[job_id] = (info.get("JobState", "COMPLETED"), info.get("Reason", ""))
    return states


def _wait_for_slurm_workers(
    client: Any, slurm_cluster: Any, n_workers: int, timeout: float
) -> None:
    """Wait until ``n_workers`` workers connected; fail early when their jobs cannot."""
    from distributed.core import Status

    deadline = time.monotonic() + timeout
    while True:
        if len(client.nthreads()) >= n_workers:
            return
        refused = [job for job in slurm_cluster.workers.values() if not job.job_id]
        if refused:
            # sbatch failed (dask-jobqueue only logs it); these jobs exist nowhere.
            for job in refused:
                job.status = Status.failed
            reason = _sbatch_refusal(refused[0].job_script()) or "see the log above"
            raise ClusterStartError(f"sbatch did not accept {len(refused)} worker job(s): {reason}")
        job_ids = _submitted_job_ids(slurm_cluster)
        hopeless = [
            job_id
            for job_id, (state, reason) in _job_states(job_ids).items()
            if state in _ENDED_STATES or reason in _HOPELESS_REASONS
        ]
        if hopeless:
            raise ClusterStartError(
                f"{len(hopeless)} SLURM worker job(s) ended or cannot start before "
                f"{n_workers} worker(s) connected:\n{_describe_jobs(job_ids)}\n"
                "Fix the job options (partition, account, memory, walltime, "
                "job_script_prologue) or the worker environment shown in the log."
            )
        if time.monotonic() > deadline:
            raise ClusterStartError(
                f"{len(client.nthreads())} of {n_workers} worker(s) connected within "
                f"{timeout:g} s.\n{_describe_jobs(job_ids) or 'No job was submitted.'}\n"
                "Pending jobs wait for free nodes: raise timeout=, ask for fewer "
                "resources, or check that workers can reach the scheduler (interface=)."
            )
        time.sleep(1.0)
