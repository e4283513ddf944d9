"""The ``lazyraster`` command line.

Each command parses its arguments and delegates to a library function that is tested
on its own.
"""

from __future__ import annotations

import click

from lazyraster import __version__
from lazyraster.errors import LazyrasterError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lazyraster")
def main() -> None:
    """Lazy raster analysis: STAC catalogs to xarray, indices, focal statistics, spring index."""


@main.command()
@click.option(
    "--catalog",
    default="catalogs/sample/catalog.json",
    show_default=True,
    help="Static STAC catalog (path or URL) with red and nir bands.",
)
@click.option(
    "--out",
    default="out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option(
    "--collection", "collections", multiple=True, help="Only this collection (repeatable)."
)
def demo(catalog: str, out: str, overwrite: bool, collections: tuple[str, ...]) -> None:
    """Load a catalog, compute NDVI, write Zarr, a COG and a PNG quicklook."""
    from lazyraster.demo import run_demo

    try:
        result = run_demo(catalog, out, overwrite=overwrite, collections=list(collections) or None)
    except (LazyrasterError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(result.report())
