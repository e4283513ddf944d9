"""SLURM options cannot smuggle a line into the job script, whatever the line separator."""

from __future__ import annotations

import pytest

import lazyraster

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_unicode_line_separator_in_a_slurm_option_is_refused(separator):
    """The dry-run plan (``splitlines``) showed ``#SBATCH --uid=0`` as a line of its own."""
    from lazyraster.errors import ClusterConfigError

    account = f"acct{separator}#SBATCH --uid=0"
    refused = pytest.raises(ClusterConfigError, match=r"account=.* line separator")
    with (
        refused,
        lazyraster.cluster("slurm", dry_run=True, cores=1, memory="1GiB", account=account),
    ):
        pass
