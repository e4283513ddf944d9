"""The ``lazyraster`` command line.

Each command parses its arguments and delegates to a library function that is tested
on its own.
"""

from __future__ import annotations

import click

from lazyraster import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lazyraster")
def main() -> None:
    """Lazy raster analysis: STAC catalogs to xarray, indices, focal statistics, spring index."""
