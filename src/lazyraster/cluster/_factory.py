"""One factory for every place the same analysis runs: threads to a SLURM cluster.

``cluster(kind, ...)`` is a context manager. Inside the ``with`` block dask computes
on the chosen scheduler; on leaving it (also on an error) workers, jobs and
connections are closed again::

    with lazyraster.cluster("slurm", jobs=4, cores=8, memory="32GiB") as client:
        ndvi.to_zarr("ndvi.zarr")

Kinds
-----
``"threads"``, ``"processes"``
    dask's local schedulers, with as many workers as this process may use cores
    (``len(os.sched_getaffinity(0))``, which respects a batch job's allocation).
    ``processes`` keeps one pool of worker processes for the whole block, started on
    entering it, instead of one per computation.
``"local"``
    a ``distributed.LocalCluster`` sized from those cores and from the memory this
    process may really use (cgroup or SLURM job limit, and the machine's RAM).
``"slurm"``
    a ``dask_jobqueue.SLURMCluster`` submitting worker jobs, or, with
    ``allocation=True`` inside ``srun``, dask-jobqueue's ``SLURMRunner`` running the
    scheduler and workers on the ranks of the current allocation.
``"tcp://host:port"``
    a scheduler that is already running.

SLURM options
-------------
Each option is taken from the argument, else from the environment, else from the
dask config section ``jobqueue.slurm`` (so an existing dask-jobqueue ``jobqueue.yaml``
keeps working):

=====================  ==========================================================
option                 environment variables, first set wins
=====================  ==========================================================
account                ``LAZYRASTER_SLURM_ACCOUNT``, ``SBATCH_ACCOUNT``
queue (or partition)   ``LAZYRASTER_SLURM_PARTITION``, ``SBATCH_PARTITION``
cores                  ``LAZYRASTER_SLURM_CORES``
processes              ``LAZYRASTER_SLURM_PROCESSES``
memory                 ``LAZYRASTER_SLURM_MEMORY``
walltime               ``LAZYRASTER_SLURM_WALLTIME``, ``SBATCH_TIMELIMIT``
interface              ``LAZYRASTER_SLURM_INTERFACE``
local_directory        ``LAZYRASTER_SLURM_LOCAL_DIRECTORY``
log_directory          ``LAZYRASTER_SLURM_LOG_DIRECTORY``
python                 ``LAZYRASTER_SLURM_PYTHON``
job_extra_directives   ``LAZYRASTER_SLURM_JOB_EXTRA_DIRECTIVES`` (``;``-separated)
job_script_prologue    ``LAZYRASTER_SLURM_JOB_SCRIPT_PROLOGUE`` (``;``-separated)
=====================  ==========================================================

``sbatch`` itself lets ``SBATCH_*`` variables override the ``#SBATCH`` lines of a
job script, which is why they are read here too: the options checked before
submitting are the ones SLURM will use.

Defaults of the factory itself (kind, dashboard addresses, timeouts) live in the
``lazyraster.cluster`` section of dask's config, shipped in ``lazyraster.yaml``.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import functools
import importlib
import importlib.util
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.config
from dask.utils import format_bytes, parse_bytes

from lazyraster.errors import ClusterConfigError, ClusterStartError

__all__ = [
    "SECRET_NAME",
    "available_cores",
    "available_memory",
    "cluster",
    "default_workers",
    "slurm_job_script",
]


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

# option name -> environment variables, first set wins
_SLURM_ENV: dict[str, tuple[str, ...]] = {
    "account": ("LAZYRASTER_SLURM_ACCOUNT", "SBATCH_ACCOUNT"),
    "queue": ("LAZYRASTER_SLURM_PARTITION", "SBATCH_PARTITION"),
    "cores": ("LAZYRASTER_SLURM_CORES",),
    "processes": ("LAZYRASTER_SLURM_PROCESSES",),
    "memory": ("LAZYRASTER_SLURM_MEMORY",),
    "walltime": ("LAZYRASTER_SLURM_WALLTIME", "SBATCH_TIMELIMIT"),
    "interface": ("LAZYRASTER_SLURM_INTERFACE",),
    "local_directory": ("LAZYRASTER_SLURM_LOCAL_DIRECTORY",),
    "log_directory": ("LAZYRASTER_SLURM_LOG_DIRECTORY",),
    "python": ("LAZYRASTER_SLURM_PYTHON",),
    "job_extra_directives": ("LAZYRASTER_SLURM_JOB_EXTRA_DIRECTIVES",),
    "job_script_prologue": ("LAZYRASTER_SLURM_JOB_SCRIPT_PROLOGUE",),
}
_INT_OPTIONS = frozenset({"cores", "processes"})
_LIST_OPTIONS = frozenset({"job_extra_directives", "job_script_prologue"})
#: Options that are shell code the user wrote, one command per entry; every other
#: text option goes into an ``#SBATCH`` line or the worker command and must be one line.
_SHELL_OPTIONS = frozenset({"job_script_prologue"})
#: Time limits sbatch accepts: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_WALLTIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|INFINITE|UNLIMITED", re.IGNORECASE)
#: Names of GDAL and cloud-storage options that hold credentials. Their values reach
#: worker jobs through the job's environment and are never written into a job script.
SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|USERPWD|SECRET|TOKEN|CREDENTIAL|AUTHORIZATION|BEARER|COOKIE|"
    r"_HEADERS$|ACCESS_KEY|_KEY$|_SAS|CONNECTION_STRING",
    re.IGNORECASE,
)
_MASK = "***"


# --------------------------------------------------------------------------- resources


def available_cores() -> int:
    """Return how many cores this process may run on.

    ``len(os.sched_getaffinity(0))``: inside a batch job or under ``taskset`` this is
    the allocation, where ``os.cpu_count()`` would be the whole node. SLURM binds a
    job to its CPUs when the site runs ``TaskPlugin=task/affinity`` or ``task/cgroup``
    (the usual set-up); under ``task/none`` a job sees the whole node.

    Examples
    --------
    >>> 1 <= available_cores() <= os.cpu_count()
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max" (cgroup v2 without limit)
        return None
    value = int(text)
    return value if value < 2**60 else None  # cgroup v1 writes "no limit" as ~2**63


def _cgroup_memory_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Smallest memory limit of this process's cgroup (v2, else v1), or None."""
    candidates = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates.append(root / rel / "memory.max")
        elif "memory" in controllers.split(","):
            candidates.append(root / "memory" / rel / "memory.limit_in_bytes")
    limits = [v for v in map(_read_int, candidates) if v is not None]
    return min(limits) if limits else None


def _slurm_memory_limit(environ: Mapping[str, str]) -> int | None:
    """Memory of the current SLURM job on this node from its environment, or None."""
    if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
        return int(environ["SLURM_MEM_PER_NODE"]) * 2**20
    if environ.get("SLURM_MEM_PER_CPU", "").isdigit():
        cpus = environ.get("SLURM_CPUS_ON_NODE", "")
        ncpu = int(cpus) if cpus.isdigit() else available_cores()
        return int(environ["SLURM_MEM_PER_CPU"]) * 2**20 * ncpu
    return None


def available_memory() -> int:
    """Return how many bytes of memory this process may use.

    The smallest of the machine's RAM, the memory limit of the process's cgroup
    (``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1) and the memory of
    the SLURM job it runs in (``SLURM_MEM_PER_NODE``, or ``SLURM_MEM_PER_CPU`` times
    the job's CPUs on this node).

    Examples
    --------
    >>> available_memory() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    True
    """
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for limit in (_cgroup_memory_limit(), _slurm_memory_limit(os.environ)):
        if limit is not None:
            limits.append(limit)
    return min(limits)


# --------------------------------------------------------------------------- options


def _config(key: str) -> Any:
    return dask.config.get(f"lazyraster.cluster.{key}")


def _resolve_slurm_options(options: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Fill SLURM options: arguments, then environment, then ``jobqueue.slurm`` config."""
    resolved = dict(options)
    if "partition" in resolved:
        if resolved.get("queue") is not None:
            raise TypeError("pass either partition= or queue= (the same option), not both")
        resolved["queue"] = resolved.pop("partition")
    for name, variables in _SLURM_ENV.items():
        if resolved.get(name) is not None:
            continue
        value: Any = next((environ[v] for v in variables if environ.get(v)), None)
        if value is None:
            value = dask.config.get(f"jobqueue.slurm.{name.replace('_', '-')}", None)
        elif name in _INT_OPTIONS:
            try:
                value = int(value)
            except ValueError:
                raise ClusterConfigError(
                    f"{variables[0]}={value!r} is not a whole number; set {name} to an "
                    "integer number of cores or processes."
                ) from None
        elif name in _LIST_OPTIONS:
            value = [part.strip() for part in value.split(";") if part.strip()]
        if value is not None:
            resolved[name] = value
    if resolved.get("cores") is None or resolved.get("memory") is None:
        raise ClusterConfigError(
            "Say how many cores and how much memory each SLURM job has, for example "
            "lazyraster.cluster('slurm', cores=8, memory='32GiB'), or set "
            "LAZYRASTER_SLURM_CORES and LAZYRASTER_SLURM_MEMORY, or jobqueue.slurm.cores "
            "and jobqueue.slurm.memory in a dask config file."
        )
    _check_slurm_options(resolved)
    return resolved


def _positive_int(name: str, value: Any, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClusterConfigError(
            f"{name}={value!r} must be a whole number of at least 1, e.g. {example}"
        )


def _positive_memory(name: str, value: Any) -> int:
    try:
        size = parse_bytes(value)
    except (ValueError, TypeError):
        size = 0
    if isinstance(value, bool) or size <= 0:
        raise ClusterConfigError(
            f"{name}={value!r} is not a positive amount of memory; write e.g. {name}='8GiB'"
        )
    return size


def _one_line(name: str, value: Any) -> None:
    """Refuse control characters (a newline would start a new ``#SBATCH`` line).

    Every character that is not printable is refused, the line and paragraph separators
    (U+2028, U+2029, U+0085) among them: Python's ``splitlines`` and many viewers break
    lines there, so the dry-run plan would show ``#SBATCH`` lines the job does not have.
    """
    texts = value if isinstance(value, list | tuple) else [value]
    for text in texts:
        if isinstance(text, str) and not text.isprintable():
            raise ClusterConfigError(
                f"{name}={text!r} holds a newline, a line separator or another control "
                "character, which would change the job script; give it on one line"
            )


def _check_slurm_options(resolved: Mapping[str, Any]) -> None:
    """Check the SLURM options' values before they go into a job script."""
    _positive_int("cores", resolved["cores"], "cores=8")
    if resolved.get("processes") is not None:
        _positive_int("processes", resolved["processes"], "processes=2")
    _positive_memory("memory", resolved["memory"])
    walltime = resolved.get("walltime")
    if walltime is not None and not _WALLTIME.fullmatch(str(walltime)):
        raise ClusterConfigError(
            f"walltime={walltime!r} is not a time limit SLURM accepts; write minutes, "
            "MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, e.g. walltime='02:00:00'"
        )
    for name, value in resolved.items():
        if name not in _SHELL_OPTIONS:
            _one_line(name, value)


def _run(args: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def _job_memory_mib(resolved: Mapping[str, Any]) -> int:
    """The ``--mem`` dask-jobqueue will ask for, in MiB, rounded up the same way."""
    from dask_jobqueue.slurm import slurm_format_bytes_ceil

    text = resolved.get("job_mem") or slurm_format_bytes_ceil(parse_bytes(resolved["memory"]))
    match = re.fullmatch(r"(\d+)([KMGT]?)B?", str(text).strip().upper())
    if not match:
        return math.ceil(parse_bytes(str(text)) / 2**20)
    number, unit = int(match.group(1)), match.group(2) or "M"
    return math.ceil(number * {"K": 2**-10, "M": 1, "G": 2**10, "T": 2**20}[unit])


def _validate_slurm(resolved: Mapping[str, Any]) -> None:
    """Check partition, memory and cores against ``sinfo`` before submitting anything."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise ClusterConfigError(
            "kind='slurm' needs the SLURM commands (sinfo, sbatch) on PATH: run on a "
            "login node of the cluster, or use kind='local' on this machine."
        )
    queue = resolved.get("queue")
    args = ["sinfo", "-h", "-N", "-o", "%P|%c|%m"]
    listing = _run(args)
    if listing.returncode != 0:
        raise ClusterConfigError(
            f"`{' '.join(args)}` failed: {listing.stderr.strip()}. Is SLURM reachable "
            "from here (SLURM_CONF, munge)?"
        )
    nodes = [line.split("|") for line in listing.stdout.splitlines() if line.count("|") == 2]
    partitions = {p.rstrip("*") for p, _, _ in nodes}
    if queue is None:
        defaults = {p.rstrip("*") for p, _, _ in nodes if p.endswith("*")}
        if not defaults:
            raise ClusterConfigError(
                "SLURM has no default partition here; pass partition=<name> (one of: "
                f"{', '.join(sorted(partitions))}) or set LAZYRASTER_SLURM_PARTITION."
            )
        queue = defaults.pop()
    elif queue not in partitions:
        raise ClusterConfigError(
            f"partition={queue!r}: SLURM has no such partition (sinfo lists: "
            f"{', '.join(sorted(partitions)) or 'none'}). Pass partition=<one of them> or "
            "set LAZYRASTER_SLURM_PARTITION."
        )
    mine = [(int(c.rstrip("+")), int(m.rstrip("+"))) for p, c, m in nodes if p.rstrip("*") == queue]
    max_cpus = max(c for c, _ in mine)
    max_mem = max(m for _, m in mine)
    want_mem = _job_memory_mib(resolved)
    if want_mem > max_mem:
        raise ClusterConfigError(
            f"memory={resolved['memory']!r} (--mem={want_mem}M per job) is more than the "
            f"largest node of partition {queue!r} has ({max_mem} MiB); ask for at most "
            f"memory='{max_mem // 1024}GiB' (dask-jobqueue rounds --mem up to whole GiB) "
            f"or job_mem='{max_mem}M', or more jobs with less memory each."
        )
    want_cpus = int(resolved.get("job_cpu") or resolved["cores"])
    if want_cpus > max_cpus:
        raise ClusterConfigError(
            f"cores={want_cpus} is more than the largest node of partition {queue!r} has "
            f"({max_cpus} CPUs); ask for at most cores={max_cpus}."
        )


def _forwarded(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that worker jobs get: ``forward-env-prefixes``."""
    prefixes = tuple(_config("forward-env-prefixes") or ())
    return {k: v for k, v in environ.items() if prefixes and k.startswith(prefixes)}


def _job_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """Credentials the workers need, by name: never to be written into a job script.

    The forwarded variables of ``environ`` and the GDAL options of dask config
    ``lazyraster.gdal`` whose names match :data:`SECRET_NAME` (``GDAL_HTTP_USERPWD``,
    ``GDAL_HTTP_HEADERS``, ``AWS_SECRET_ACCESS_KEY``, ``AZURE_STORAGE_ACCESS_KEY``, ...);
    the environment wins over the config.

    Examples
    --------
    >>> sorted(_job_secrets({"GDAL_HTTP_USERPWD": "ana:pw", "GDAL_CACHEMAX": "64"}))
    ['GDAL_HTTP_USERPWD']
    """
    configured = dask.config.get("lazyraster.gdal", default={}) or {}
    found = {k: str(v) for k, v in configured.items() if v is not None and SECRET_NAME.search(k)}
    found.update({k: v for k, v in _forwarded(environ).items() if SECRET_NAME.search(k)})
    return found


def _forwarded_settings(environ: Mapping[str, str]) -> list[str]:
    """Prologue lines giving each worker the package's dask config and GDAL environment.

    Credentials are not written: a comment names each, masked, and the values travel
    in the environment of the job (see :func:`_job_environment`).
    """
    secrets = _job_secrets(environ)
    lines = [
        f"export {name}={shlex.quote(value)}"
        for name, value in sorted(_forwarded(environ).items())
        if name not in secrets
    ]
    lines.extend(
        f"# {name}={_MASK} comes with the job's environment (sbatch --export)"
        for name in sorted(secrets)
    )
    settings = {"lazyraster": dask.config.get("lazyraster")}
    gdal = {k: v for k, v in (settings["lazyraster"].get("gdal") or {}).items() if k not in secrets}
    settings["lazyraster"] = {**settings["lazyraster"], "gdal": gdal}
    lines.append(
        "export DASK_INTERNAL_INHERIT_CONFIG=" + shlex.quote(dask.config.serialize(settings))
    )
    return lines


def _export_option(
    resolved: Mapping[str, Any], environ: Mapping[str, str], names: list[str]
) -> str:
    """The ``sbatch --export`` value that lets ``names`` reach the job.

    The user's own choice (an ``--export`` directive, else ``SBATCH_EXPORT``, else
    sbatch's default ``ALL``) is kept; a list of names, or ``NONE``, gets ``names`` added.
    """
    given = environ.get("SBATCH_EXPORT") or "ALL"
    for directive in resolved.get("job_extra_directives") or []:
        if str(directive).startswith("--export="):
            given = str(directive).split("=", 1)[1]
    parts = [p for p in given.split(",") if p]
    if parts and parts[0].upper() == "ALL":
        return given
    kept = [p for p in parts if p.upper() not in ("NONE", "NIL")]
    listed = kept + [n for n in names if n not in kept]
    return ",".join(listed) if listed else given


def _job_environment(resolved: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """Environment and ``--export`` value of ``sbatch``: the credentials ride there."""
    secrets = _job_secrets(os.environ)
    environment = {**os.environ, **secrets}
    return environment, _export_option(resolved, os.environ, sorted(secrets))


def _job_class(resolved: Mapping[str, Any]) -> type:
    """dask-jobqueue's SLURMJob, submitting with the credentials in sbatch's environment."""
    with _quiet_jobqueue_import():
        from dask_jobqueue.slurm import SLURMJob

    environment, export = _job_environment(resolved)

    class SecretEnvSLURMJob(SLURMJob):
        async def _submit_job(self, script_filename: str) -> str:
            command = [*shlex.split(self.submit_command), f"--export={export}", script_filename]
            return await self._call(command, env=environment)

    return SecretEnvSLURMJob


def _slurm_cluster_kwargs(resolved: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(resolved)
    kwargs["job_script_prologue"] = [
        *(kwargs.get("job_script_prologue") or []),
        *_forwarded_settings(os.environ),
    ]
    scheduler_options = dict(kwargs.pop("scheduler_options", None) or {})
    scheduler_options.setdefault("dashboard_address", _config("dashboard-address"))
    kwargs["scheduler_options"] = scheduler_options
    extra = list(kwargs.pop("worker_extra_args", None) or [])
    if not any(a.startswith(("--dashboard-address", "--no-dashboard")) for a in extra):
        extra += ["--dashboard-address", str(_config("worker-dashboard-address"))]
    kwargs["worker_extra_args"] = extra
    kwargs.setdefault("python", sys.executable)
    return kwargs


@contextlib.contextmanager
def _quiet_jobqueue_import() -> Iterator[Any]:
    """Import dask_jobqueue without its import-time copy of jobqueue.yaml into ``~``."""
    if "dask_jobqueue" in sys.modules:
        yield sys.modules["dask_jobqueue"]
        return
    ensure_file = dask.config.ensure_file
    dask.config.ensure_file = lambda *args, **kwargs: None
    try:
        yield importlib.import_module("dask_jobqueue")
    finally:
        dask.config.ensure_file = ensure_file


def slurm_job_script(**options: Any) -> str:
    """Return the batch script one SLURM worker job would run, without submitting it.

    Options are resolved as for ``cluster("slurm", ...)`` (arguments, environment,
    ``jobqueue.slurm`` config). The scheduler address in the script is a placeholder,
    since no scheduler is started.

    Parameters
    ----------
    **options
        SLURMCluster options: ``cores``, ``memory``, ``partition``, ``account``,
        ``walltime``, ``job_extra_directives``, ``job_script_prologue``, ...

    Returns
    -------
    str
        The script, ``#SBATCH`` lines first.

    Examples
    --------
    >>> script = slurm_job_script(cores=2, memory="4GiB", walltime="01:00:00")
    >>> [line for line in script.splitlines() if line.startswith("#SBATCH")][-3:]
    ['#SBATCH --cpus-per-task=2', '#SBATCH --mem=4G', '#SBATCH -t 01:00:00']
    """
    return _job_script(_resolve_slurm_options(options, os.environ))


def _job_script(resolved: dict[str, Any]) -> str:
    with _quiet_jobqueue_import():
        from dask_jobqueue.slurm import SLURMJob

    kwargs = _slurm_cluster_kwargs(resolved)
    kwargs.pop("scheduler_options", None)
    job = SLURMJob(scheduler="tcp://SCHEDULER-ADDRESS:8786", name="dask-worker", **kwargs)
    return str(job.job_script())


def _sbatch_refusal(script: str) -> str | None:
    """What ``sbatch --test-only`` says against ``script``, or None if it would run."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="lazyraster-") as f:
        f.write(script)
        f.flush()
        checked = _run(["sbatch", "--test-only", f.name])
    if checked.returncode == 0:
        return None
    return (checked.stderr.strip() or checked.stdout.strip()) or f"exit code {checked.returncode}"


def _check_with_sbatch(resolved: dict[str, Any]) -> None:
    """Let SLURM itself judge the job (features, account, QOS, time limit) before submitting."""
    refusal = _sbatch_refusal(_job_script(resolved))
    if refusal is not None:
        raise ClusterConfigError(
            f"SLURM refuses the worker job (sbatch --test-only): {refusal}\n"
            "Check account, partition, walltime and job_extra_directives; "
            "lazyraster.cluster('slurm', dry_run=True, ...) prints the job script."
        )


# --------------------------------------------------------------------------- job state


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


# --------------------------------------------------------------------------- factory


def _announce(client: Any) -> None:
    link = None
    with contextlib.suppress(Exception):
        if "dashboard" in client.scheduler_info(n_workers=0).get("services", {}):
            link = client.dashboard_link
    where = link or "none (install bokeh>=3.1 for the dashboard)"
    print(f"lazyraster: scheduler {client.scheduler.address}, dashboard {where}", file=sys.stderr)


def default_workers(kind: str) -> int:
    """How many worker processes ``cluster(kind)`` starts when ``workers=`` is not given.

    ``processes``: one per core this process may use; ``local``: distributed's split of
    those cores into processes and threads (all processes up to 4 cores, then about
    the square root of the cores, each with several threads); other kinds: 1.

    Examples
    --------
    >>> default_workers("processes") == available_cores()
    True
    """
    cores = available_cores()
    if kind == "processes":
        return cores
    if kind == "local":
        from distributed.deploy.utils import nprocesses_nthreads

        return int(nprocesses_nthreads(cores)[0])
    return 1


def _start_worker() -> None:
    """Nothing: submitted once per worker to start the pool's processes together."""


class _PoolScheduler:
    """dask's ``processes`` scheduler bound to one block's pool (``__wrapped__`` says which).

    It is the block's ``scheduler`` in dask's config, which distributed's nanny pickles
    to start a worker process: there it arrives as dask's own ``"processes"``.
    """

    def __init__(self, pool: _ProcessPool) -> None:
        import dask.multiprocessing

        self.pool = pool
        self.__wrapped__ = dask.multiprocessing.get

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        if self.pool.closed:  # left in dask's config by blocks that overlapped in threads
            return self.__wrapped__(dsk, keys, **kwargs)
        # the pool's processes ran the initializer: dask need not warn that it cannot
        with dask.config.set({"multiprocessing.initializer": None}):
            return self.__wrapped__(dsk, keys, pool=self.pool, **kwargs)

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, ("processes",))


class _ProcessPool(concurrent.futures.Executor):
    """One process pool for a ``cluster("processes")`` block, shared by its computations.

    dask's ``processes`` scheduler starts a pool for every ``compute``/``persist`` and
    shuts it down after, so each one pays the start of its worker processes again
    (each a fresh interpreter: ``spawn``). One pool for the block pays it once. The
    processes are started at once, together, when the block is entered.

    A pool whose worker died is broken for good (``BrokenProcessPool``); the next
    computation then gets a new one, as it would from dask.

    The block's scheduler is :attr:`get`, dask's ``processes`` scheduler bound to this
    pool, rather than dask config ``pool=``, which dask's threaded scheduler would use
    too: a ``compute(scheduler="threads")`` inside the block still runs on threads.
    """

    def __init__(self, workers: int) -> None:
        self._max_workers = workers  # read by dask.multiprocessing.get
        self.closed = False
        if os.environ.get("PYTHONHASHSEED") in (None, "0"):
            # as dask does for its own pools: the workers must hash alike (dask.bag)
            os.environ["PYTHONHASHSEED"] = "6640"
        self._pool = self._new()
        #: dask's ``processes`` scheduler on this pool
        self.get = _PoolScheduler(self)
        for _ in range(workers):
            self._pool.submit(_start_worker)

    def _new(self) -> concurrent.futures.ProcessPoolExecutor:
        from dask.multiprocessing import get_context, initialize_worker_process

        initializer = functools.partial(
            initialize_worker_process,
            user_initializer=dask.config.get("multiprocessing.initializer", None),
        )
        return concurrent.futures.ProcessPoolExecutor(
            self._max_workers, mp_context=get_context(), initializer=initializer
        )

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.closed = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def _local_scheduler(kind: str, workers: int | None, options: dict[str, Any]) -> Iterator[None]:
    if options:
        raise TypeError(f"kind={kind!r} takes only workers=; got {', '.join(sorted(options))}")
    if workers is not None:
        _positive_int("workers", workers, "workers=4")
    n = available_cores() if workers is None else workers
    if kind == "threads":
        with dask.config.set(scheduler=kind, num_workers=n):
            yield None
        return
    pool = _ProcessPool(n)
    try:
        with dask.config.set(scheduler=pool.get, num_workers=n):
            yield None
    finally:
        pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def _local_cluster(
    workers: int | None,
    threads_per_worker: int | None,
    memory: str | int | None,
    options: dict[str, Any],
) -> Iterator[Any]:
    from distributed import Client, LocalCluster
    from distributed.deploy.utils import nprocesses_nthreads

    for name in ("n_workers", "memory_limit"):
        if name in options:
            raise TypeError(
                f"kind='local' sizes the cluster with workers= and memory= (all workers "
                f"together), not {name}="
            )
    if workers is not None:
        _positive_int("workers", workers, "workers=4")
    if threads_per_worker is not None:
        _positive_int("threads_per_worker", threads_per_worker, "threads_per_worker=2")
    cores = available_cores()
    if workers is None and threads_per_worker is None:
        workers, threads_per_worker = nprocesses_nthreads(cores)
    elif workers is None:
        workers = max(1, cores // threads_per_worker)  # type: ignore[operator]
    elif threads_per_worker is None:
        threads_per_worker = max(1, cores // workers)
    limit = available_memory()
    total = limit if memory is None else _positive_memory("memory", memory)
    if total > limit:
        raise ClusterConfigError(
            f"memory={memory!r} is more than this process may use ({format_bytes(limit)}, "
            "from the cgroup or SLURM job limit and the RAM); ask for less."
        )
    options.setdefault("dashboard_address", _config("dashboard-address"))
    options.setdefault("host", "127.0.0.1")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            memory_limit=total // workers,
            **options,
        ) as local,
        Client(local, set_as_default=True) as client,
    ):
        _announce(client)
        yield client


@contextlib.contextmanager
def _slurm_cluster(
    jobs: int | None,
    adapt: tuple[int, int] | None,
    timeout: float | None,
    options: dict[str, Any],
) -> Iterator[Any]:
    from distributed import Client

    if jobs is not None and adapt is not None:
        raise TypeError("pass either jobs=N or adapt=(minimum, maximum), not both")
    if jobs is None and adapt is None:
        jobs = 1
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    if adapt is not None:
        low, high = adapt
        if not 0 <= low <= high or high < 1:
            raise ValueError(f"adapt={adapt!r} must be (minimum, maximum) with 0 <= min <= max")
    resolved = _resolve_slurm_options(options, os.environ)
    _validate_slurm(resolved)
    _check_with_sbatch(resolved)
    with _quiet_jobqueue_import():
        from dask_jobqueue import SLURMCluster

    kwargs = _slurm_cluster_kwargs(resolved)
    wait = float(_config("timeout") if timeout is None else timeout)
    with (
        SLURMCluster(job_cls=_job_class(resolved), **kwargs) as slurm,
        Client(slurm, set_as_default=True) as client,
    ):
        try:
            # dask-jobqueue picks the worker processes per job when processes= is unset
            job = getattr(slurm, "_dummy_job", None)
            processes = int(getattr(job, "worker_processes", 0) or kwargs.get("processes") or 1)
            if adapt is not None:
                slurm.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
                first = adapt[0] * processes  # from zero: jobs come with the first tasks
            else:
                slurm.scale(jobs=jobs)
                first = jobs * processes  # type: ignore[operator]
            _announce(client)
            if first:
                _wait_for_slurm_workers(client, slurm, first, wait)
            yield client
        finally:
            # Jobs go before the scheduler, so that none is left running or pending.
            with contextlib.suppress(Exception):
                slurm.scale(0)


@contextlib.contextmanager
def _slurm_runner(options: dict[str, Any]) -> Iterator[Any]:
    if not os.environ.get("SLURM_JOB_ID") or not os.environ.get("SLURM_PROCID"):
        raise ClusterConfigError(
            "allocation=True runs the scheduler and workers on the ranks of the current "
            "allocation: start the script with `srun -n <3 or more> python script.py` "
            "inside `sbatch`/`salloc`."
        )
    from distributed import Client

    with _quiet_jobqueue_import():
        from dask_jobqueue.slurm import SLURMRunner

    scheduler_file = str(
        options.pop("scheduler_file", None) or Path.cwd() / "dask-scheduler-{job_id}.json"
    )
    interface = (
        options.pop("interface", None)
        or os.environ.get("LAZYRASTER_SLURM_INTERFACE")
        or dask.config.get("jobqueue.slurm.interface", None)
    )
    scheduler_options = dict(options.pop("scheduler_options", None) or {})
    worker_options = dict(options.pop("worker_options", None) or {})
    scheduler_options.setdefault("dashboard_address", _config("dashboard-address"))
    worker_options.setdefault("dashboard_address", _config("worker-dashboard-address"))
    worker_options.setdefault("nthreads", available_cores())  # this rank's CPUs, not the node's
    if interface is not None:
        scheduler_options.setdefault("interface", interface)
        worker_options.setdefault("interface", interface)
    # Ranks 0 (scheduler) and >= 2 (workers) serve inside __enter__ and end their
    # process when the client rank leaves; only rank 1 runs the body of the block.
    runner = SLURMRunner(
        scheduler_file=scheduler_file,
        scheduler_options=scheduler_options,
        worker_options=worker_options,
        **options,
    )
    try:
        with runner, Client(runner, set_as_default=True) as client:
            client.wait_for_workers(runner.n_workers, timeout=_config("timeout"))
            _announce(client)
            yield client
    finally:
        with contextlib.suppress(OSError):
            if os.environ.get("SLURM_PROCID") == "1":
                Path(runner.scheduler_file).unlink()


def cluster(
    kind: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory: str | int | None = None,
    jobs: int | None = None,
    adapt: tuple[int, int] | None = None,
    timeout: float | None = None,
    allocation: bool | None = None,
    dry_run: bool = False,
    **options: Any,
) -> contextlib.AbstractContextManager[Any]:
    """Run the dask computations of a ``with`` block on threads, processes or a cluster.

    Parameters
    ----------
    kind : {"threads", "processes", "local", "slurm"} or "tcp://host:port", optional
        Where to compute; default from dask config ``lazyraster.cluster.kind``
        (``"threads"``).
    workers : int, optional
        ``threads``/``processes``: number of workers; ``local``: number of worker
        processes. Default from the cores this process may use (affinity).
    threads_per_worker : int, optional
        ``local`` only.
    memory : str or int, optional
        ``local``: memory of the whole cluster, split over the workers (default: what
        this process may use, see :func:`available_memory`). ``slurm``: memory of each
        job, e.g. ``"32GiB"``.
    jobs : int, optional
        ``slurm``: number of worker jobs (default 1).
    adapt : (int, int), optional
        ``slurm``: adapt between ``minimum`` and ``maximum`` jobs instead of ``jobs``.
    timeout : float, optional
        ``slurm``: seconds to wait for the first workers (default from config
        ``lazyraster.cluster.timeout``); ``tcp://``: seconds to connect.
    allocation : bool, optional
        ``slurm``: instead of submitting jobs, run the scheduler and the workers on the
        ranks of the current allocation (dask-jobqueue's ``SLURMRunner``). Start the
        script with ``srun -n N python script.py``: rank 0 is the scheduler, rank 1
        runs the block, the others are workers. Default from dask config
        ``lazyraster.cluster.allocation`` (false).
    dry_run : bool
        ``slurm``: print the worker job script and yield it (a ``str``); nothing is
        submitted and the default scheduler is left as it is.
    **options
        Passed on to ``LocalCluster`` or ``SLURMCluster`` (``account``,
        ``partition``/``queue``, ``cores``, ``processes``, ``walltime``,
        ``interface``, ``local_directory``, ``log_directory``,
        ``job_extra_directives``, ``job_script_prologue``, ``python``, ...). SLURM
        options fall back to the environment, then to dask config ``jobqueue.slurm``
        (see the module documentation for the variable names).

    Yields
    ------
    distributed.Client or None or str
        A client set as the default for the block (``local``, ``slurm``, ``tcp://``),
        ``None`` for ``threads``/``processes``, the job script with ``dry_run``.

    Raises
    ------
    lazyraster.errors.ClusterConfigError
        An option is wrong (no such partition, more memory or cores than a node has,
        cores/memory missing); raised before anything is submitted.
    lazyraster.errors.ClusterStartError
        SLURM worker jobs ended or could not start, or did not connect in time; the
        message shows each job's state and the end of its log.

    Examples
    --------
    >>> import dask.array as da
    >>> with cluster("threads", workers=2) as client:
    ...     total = da.ones((100, 100), chunks=30).sum().compute()
    >>> client is None, float(total)
    (True, 10000.0)
    """
    kind = str(_config("kind") if kind is None else kind)
    if allocation is None:
        allocation = bool(_config("allocation")) and kind == "slurm"
    if (dry_run or allocation) and kind != "slurm":
        raise TypeError(f"dry_run= and allocation= go with kind='slurm', not kind={kind!r}")
    if kind in ("threads", "processes"):
        if jobs is not None or adapt is not None or memory is not None:
            raise TypeError(f"kind={kind!r} takes workers= only, not jobs/adapt/memory")
        return _local_scheduler(kind, workers, options)
    if kind == "local":
        return _local_cluster(workers, threads_per_worker, memory, options)
    if kind == "slurm":
        if memory is not None:
            options["memory"] = memory
        if dry_run:
            return _dry_run(options)
        if allocation:
            return _slurm_runner(options)
        return _slurm_cluster(jobs, adapt, timeout, options)
    if "://" in kind:
        return _existing_scheduler(kind, timeout, options)
    raise ValueError(
        f"kind={kind!r} is not one of 'threads', 'processes', 'local', 'slurm' or a "
        "scheduler address such as 'tcp://10.0.0.5:8786'."
    )


@contextlib.contextmanager
def _dry_run(options: dict[str, Any]) -> Iterator[str]:
    script = slurm_job_script(**options)
    print(script)
    yield script


@contextlib.contextmanager
def _existing_scheduler(
    address: str, timeout: float | None, options: dict[str, Any]
) -> Iterator[Any]:
    from distributed import Client

    wait = float(_config("connect-timeout") if timeout is None else timeout)
    try:
        client = Client(address, timeout=wait, set_as_default=True, **options)
    except OSError as err:  # refused, unreachable, timed out: distributed says OSError
        raise ClusterStartError(
            f"cannot reach the dask scheduler at {address} within {wait:g} s ({err}); "
            "check the address and that the scheduler runs (dask scheduler), or compute "
            "here with kind='local' (CLI: --cluster local)"
        ) from None
    with client:
        _announce(client)
        yield client
