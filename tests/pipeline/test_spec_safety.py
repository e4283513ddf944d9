"""Specs that would break the runner or leak secrets: deep nesting, credentials, group names."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lazyraster import pipeline
from lazyraster.cli import main
from lazyraster.errors import SpecError
from lazyraster.pipeline import _spec

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.mark.parametrize(
    "value", ["[" * 50_000 + "]" * 50_000, "{a: " * 30_000 + "1" + "}" * 30_000]
)
def test_deeply_nested_spec_is_one_line_error_not_recursion(tmp_path, value):
    """Under 1 MiB, 50 000 brackets used to raise RecursionError with a traceback."""
    spec = tmp_path / "deep.yaml"
    spec.write_text(f"source: {value}\n")
    limit = rf"line 1: lists and mappings nest deeper than {pipeline.MAX_SPEC_DEPTH} levels"
    with pytest.raises(SpecError, match=limit):
        pipeline.load_spec(spec)
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "nest deeper" in result.output
    depth = pipeline.MAX_SPEC_DEPTH - 1  # the top-level mapping is one level
    assert _spec._parse_spec("[" * depth + "]" * depth, "spec") is not None


def test_credentials_in_a_source_url_are_masked_in_errors_and_plans(tmp_path):
    """The CLI printed ``http://ana:s3cret@...`` in its error line and dry-run plan."""
    import socket

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = tmp_path / "cred.yaml"
    source = f"http://ana:s3cret@127.0.0.1:{port}/catalog.json"
    spec.write_text(f"source: {source}\nload: {{bands: [red]}}\noutput: {{zarr: out.zarr}}\n")
    result = CliRunner().invoke(main, ["run", str(spec), "--dry-run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert f"http://***@127.0.0.1:{port}/catalog.json" in result.output
    plan = pipeline.Plan(pipeline.load_spec(spec), 1, "grid", ["red"], {})
    assert "s3cret" not in plan.describe() and "***@127.0.0.1" in plan.describe()


@pytest.mark.parametrize("group", ["2020/..", "../other.zarr", "a//b", "./2020"])
def test_a_spec_zarr_group_must_be_names_inside_the_store(tmp_path, group):
    """The spec refuses the group names write_zarr refuses, naming the field."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"source: cat.json\noutput: {{zarr: {{path: out.zarr, group: '{group}'}}}}\n")
    with pytest.raises(SpecError, match=r"output\.zarr\.group: Zarr group"):
        pipeline.load_spec(spec)
