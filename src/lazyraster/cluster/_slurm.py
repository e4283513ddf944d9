"""SLURM worker jobs: options resolved and checked, sbatch's verdict, the job script.

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

dask-jobqueue is imported only when a SLURM cluster or job script is asked for,
never by ``import lazyraster``. Its import copies its ``jobqueue.yaml``, commented
out, into dask's config folder (``~/.config/dask``, or ``$DASK_CONFIG``) when no such
file is there: dask-jobqueue's own behaviour, left as it is (the copy changes no
setting; dask offers no switch for it, and swapping ``dask.config.ensure_file`` for
the import would change it for every thread of the process).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import dask.config
from dask.utils import parse_bytes

from lazyraster.cluster._resources import _config, _positive_int, _positive_memory
from lazyraster.errors import ClusterConfigError

__all__ = ["SECRET_NAME", "JobScript", "slurm_job_script"]

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
#: Names a POSIX shell can export (the credentials file is sourced by ``sh``).
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    in the environment of the job (see :func:`_job_class`).
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


def _credentials_file(path: str, secrets: Mapping[str, str]) -> None:
    """Write ``secrets`` as ``NAME='value'`` lines a POSIX shell can source, mode 0600."""
    for name in secrets:
        if not _SHELL_NAME.fullmatch(name):
            raise ClusterConfigError(
                f"the credential {name!r} cannot reach SLURM jobs: sbatch gets credentials "
                "as environment variables, whose names are letters, digits and '_'. "
                "Rename it, or unset it in this process and in dask config lazyraster.gdal."
            )
    text = "".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(secrets.items()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@contextlib.contextmanager
def _job_class(resolved: Mapping[str, Any]) -> Iterator[type]:
    """dask-jobqueue's ``SLURMJob``, submitting so that the credentials reach the job.

    dask-jobqueue runs a job's ``submit_command`` (its public, documented class
    attribute) with the job script's path appended. When there are credentials, they
    are written to a file only the user can read (mode 0600, in a folder of mode 0700
    on the submitting machine) and the command is a shell that sources that file with
    ``set -a`` and then execs ``sbatch --export=...``: ``sbatch`` has the credentials in
    its environment and hands them to the job as for any variable it exports. No
    command line (``ps``) and no job script holds a value, only the file's path. The
    folder is removed when the cluster closes; jobs submitted while it is open (more
    jobs, adaptive scaling) read the same file.
    """
    from dask_jobqueue.slurm import SLURMJob

    secrets = _job_secrets(os.environ)
    if not secrets:
        yield SLURMJob
        return
    export = _export_option(resolved, os.environ, sorted(secrets))
    with tempfile.TemporaryDirectory(prefix="lazyraster-sbatch-") as folder:
        path = os.path.join(folder, "credentials.sh")
        _credentials_file(path, secrets)
        program = f'set -a && . {shlex.quote(path)} && set +a && exec sbatch "$@"'

        class CredentialsSLURMJob(SLURMJob):
            submit_command = shlex.join(["sh", "-c", program, "sbatch", f"--export={export}"])

        yield CredentialsSLURMJob


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


@dataclass(frozen=True)
class JobScript:
    """What ``cluster("slurm", dry_run=True)`` yields: the worker job, not submitted.

    ``str()`` of it is the script, so code that wrote ``str(job_script)`` keeps working.

    Attributes
    ----------
    script : str
        The batch script one worker job would run, ``#SBATCH`` lines first; its
        scheduler address is a placeholder. Credentials appear only as a masked
        comment (see :data:`SECRET_NAME`).
    options : Mapping
        The SLURM options as resolved from the arguments, the environment and dask
        config ``jobqueue.slurm`` (read-only), e.g. ``options["queue"]``.

    Examples
    --------
    >>> job = JobScript.from_options(cores=2, memory="4GiB", account="proj1")
    >>> job.options["cores"], job.options["account"]
    (2, 'proj1')
    >>> "#SBATCH -A proj1" in str(job).splitlines()
    True
    """

    script: str
    options: Mapping[str, Any]

    @classmethod
    def from_options(cls, **options: Any) -> JobScript:
        """Resolve and check ``options`` as ``cluster("slurm", ...)`` does; write the job."""
        resolved = _resolve_slurm_options(options, os.environ)
        return cls(script=_job_script(resolved), options=MappingProxyType(resolved))

    def __str__(self) -> str:
        return self.script


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
    return JobScript.from_options(**options).script


def _job_script(resolved: dict[str, Any]) -> str:
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
            "lazyraster.cluster('slurm', dry_run=True, ...) yields the job script."
        )
