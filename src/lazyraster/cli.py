"""The ``lazyraster`` command line.

Each command parses its arguments and delegates to a library function that is tested
on its own. The library is imported inside the commands: ``--help`` and ``--version``
load click and this module only.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lazyraster.errors import LazyrasterError

#: What to do about an I/O error, by errno.
_FIXES = {
    errno.EACCES: "choose a path you may write to, or change its permissions",
    errno.EPERM: "choose a path you may write to, or change its permissions",
    errno.EROFS: "the file system is read-only: choose an output path elsewhere",
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.ENOENT: "check the path (relative paths start from the working directory)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder: give a file",
    errno.ECONNREFUSED: "nothing listens there: check the address, or start the server",
}


def _failure(exc: LazyrasterError | OSError) -> click.ClickException:
    """An expected failure (the package's own errors, I/O) as the one line the CLI prints.

    Other exceptions are bugs and keep their traceback. Credentials in URLs are masked.
    """
    from lazyraster.errors import LazyrasterError, redact

    if isinstance(exc, LazyrasterError):
        return click.ClickException(redact(str(exc)))
    text = exc.strerror or str(exc) or type(exc).__name__
    where = f"{exc.filename}: " if exc.filename else ""
    fix = _FIXES.get(exc.errno) if exc.errno is not None else None
    return click.ClickException(redact(f"{where}{text}" + (f"; {fix}" if fix else "")))


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from lazyraster import __version__

        click.echo(f"lazyraster, version {__version__}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
    help="Show the version and exit.",
)  # fmt: skip
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
    """Load a catalog, compute NDVI and its focal mean, write Zarr, a COG and a PNG."""
    from lazyraster.errors import LazyrasterError
    from lazyraster.pipeline import run_demo

    try:
        result = run_demo(catalog, out, overwrite=overwrite, collections=list(collections) or None)
    except (LazyrasterError, OSError) as err:
        raise _failure(err) from None
    click.echo(result.report())


# ---------------------------------------------------------------- lazyraster quicklook


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out", "png", type=click.Path(path_type=Path),
    help="PNG to write (default: <name>.png beside PATH).",
)  # fmt: skip
@click.option(
    "--variable", help="Variable of a Zarr group or netCDF file, or band description of a GeoTIFF."
)
@click.option("--time", "when", help="Time step (2023-05-01; 2023-05 for a month; a year).")
@click.option(
    "--max-panels", type=click.IntRange(1, 64), default=6, show_default=True,
    help="At most this many panels (one per time step).",
)  # fmt: skip
@click.option("--dpi", type=click.IntRange(20, 600), default=100, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the PNG if it exists.")
def quicklook(
    path: Path,
    png: Path | None,
    variable: str | None,
    when: str | None,
    max_panels: int,
    dpi: int,
    overwrite: bool,
) -> None:
    """Draw a COG/GeoTIFF, netCDF file or Zarr store (or group) as a PNG: a map per time step."""
    from lazyraster.errors import LazyrasterError
    from lazyraster.plot import quicklook as write_quicklook

    try:
        written = write_quicklook(
            path,
            png,
            variable=variable,
            time=when,
            overwrite=overwrite,
            max_panels=max_panels,
            dpi=dpi,
        )
    except (LazyrasterError, OSError) as err:
        raise _failure(err) from None
    except (ValueError, TypeError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(written)


# ---------------------------------------------------------------- lazyraster run


@main.command()
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--dry-run", is_flag=True, help="Check the spec and print the plan; compute nothing.")
@click.option("--cluster", "kind", help="Cluster kind instead of the spec's: threads, local, ...")
@click.option(
    "--progress-interval", type=click.FloatRange(0), default=10, show_default=True,
    help="Seconds between progress lines on stderr.",
)  # fmt: skip
def run(
    spec_path: Path, overwrite: bool, dry_run: bool, kind: str | None, progress_interval: float
) -> None:
    """Run the pipeline described in SPEC.yaml (see docs/pipeline.md): load, analyse, write."""
    import logging

    from lazyraster.errors import LazyrasterError
    from lazyraster.pipeline import plan_pipeline, run_pipeline

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("lazyraster")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        if dry_run:
            plan = plan_pipeline(spec_path, overwrite=overwrite or None, cluster=kind)
            click.echo(plan.describe())
        else:
            report = run_pipeline(
                spec_path,
                overwrite=overwrite or None,
                cluster=kind,
                progress_interval=progress_interval,
            )
            click.echo(report.summary())
    except (LazyrasterError, OSError) as exc:
        raise _failure(exc) from None
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# ---------------------------------------------------------------- lazyraster warmup


@main.command()
@click.option(
    "--dtype",
    "dtypes",
    multiple=True,
    help="Input dtype: float32, float64, uint16, int16 or uint8 (repeatable; default all).",
)
def warmup(dtypes: tuple[str, ...]) -> None:
    """Compile or load every numba kernel once, so later processes only load them.

    Run it once where the workers will find the cache (NUMBA_CACHE_DIR on a shared
    file system, on a node like the compute nodes), before submitting the jobs.
    """
    from lazyraster._kernels import DTYPES
    from lazyraster._kernels import warmup as run_warmup

    for dtype in dtypes:
        if dtype not in DTYPES:
            raise click.BadParameter(
                f"{dtype!r}: warmup prepares {', '.join(DTYPES)}", param_hint="'--dtype'"
            )
    click.echo(run_warmup(dtypes or DTYPES).summary())


# ---------------------------------------------------------------- lazyraster catalog

#: Exit status of ``catalog build`` when the catalog was written but sources were skipped.
EXIT_SKIPPED = 3


def _progress(label: str) -> Callable[[int, int], None] | None:
    """A click progress bar on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    state: dict[str, object] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()  # type: ignore[attr-defined]
        bar.update(1)  # type: ignore[attr-defined]
        if done == total:
            bar.__exit__(None, None, None)  # type: ignore[attr-defined]

    return update


def _keys(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    keys = [v.strip() for v in value.split(",") if v.strip()]
    if not keys:
        raise click.BadParameter("give comma-separated names, e.g. tmin,tmax")
    return keys


def _check(check: str, example: str) -> Callable[..., str | None]:
    """A click callback calling ``lazyraster.catalog.<check>`` on the option's value.

    The catalog is imported when an option is given, not for ``--help``.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None:
            from lazyraster import catalog as catalog_lib

            try:
                getattr(catalog_lib, check)(value)
            except ValueError as exc:
                hint = "" if example.strip("'") in str(exc) else f" (example: {example})"
                raise click.BadParameter(f"{exc}{hint}") from None
        return value

    return callback


@main.group()
def catalog() -> None:
    """Build, describe, validate and localize static STAC catalogs."""


@catalog.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Catalog folder.")
@click.option("--id", "catalog_id", help="Root catalog id (default: the folder name).")
@click.option("--title", help="Root catalog title.")
@click.option("--description", help="Root catalog (and collection) description.")
@click.option("--collection", help="Put the items in a Collection of this id.")
@click.option(
    "--layout",
    callback=_check("check_layout", "'${year}/${tile}'"),
    help="Sub-catalogs, e.g. '${year}/${tile}' or '${region}'.",
)
@click.option(
    "--pattern",
    callback=_check("compile_pattern", "'{date}_{band}.tif'"),
    help="File-name pattern grouping files into items, e.g. '{date}_{band}.tif'.",
)
@click.option(
    "--datetime",
    "when",
    callback=_check("parse_instant", "2023-04-30T10:46:21Z"),
    help="Datetime of items that get none from their files.",
)
@click.option("--bands", callback=_keys, help="Band names of the GeoTIFFs, e.g. red,nir.")
@click.option(
    "--crs",
    callback=_check("parse_crs", "EPSG:3035"),
    help="CRS of netCDF files without a CF grid mapping, e.g. EPSG:3035.",
)
@click.option("--checksum", is_flag=True, help="Write file:checksum (reads every byte).")
@click.option("--prune", is_flag=True, help="Remove items whose files have vanished.")
@click.option("--strict", is_flag=True, help="Fail on the first bad file instead of skipping.")
@click.option("--rebuild", is_flag=True, help="Read every file again, even unchanged ones.")
@click.option("--workers", type=click.IntRange(1, 256), help="Threads reading headers.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Fail at once if another build is writing the same folder (default: wait for it).",
)
def catalog_build(
    sources: tuple[Path, ...],
    out: Path,
    catalog_id: str | None,
    when: str | None,
    no_wait: bool,
    **options: object,
) -> None:
    """Scan SOURCES (SAFE folders, GeoTIFF/COG and netCDF files, folders) into a catalog.

    One build per output folder runs at a time: a second one waits for the first
    (saying so on stderr) and then updates its catalog, or with --no-wait fails.
    """
    from lazyraster import catalog as catalog_lib
    from lazyraster.errors import LazyrasterError

    try:
        report = catalog_lib.build_catalog(
            sources,
            out,
            id=catalog_id,
            datetime=when,
            progress=_progress("reading"),
            wait=not no_wait,
            **options,  # type: ignore[arg-type]
        )
    except (LazyrasterError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    for item_id in report.missing:
        click.echo(f"missing files: item {item_id} kept (remove it with --prune)", err=True)
    click.echo(
        f"{report.out}: {report.n_items} items ({len(report.added)} added, "
        f"{len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.pruned)} pruned), {len(report.problems)} skipped"
    )
    if report.problems:
        sys.exit(EXIT_SKIPPED)


@catalog.command("describe")
@click.argument("catalog_path", metavar="CATALOG", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def catalog_describe(catalog_path: Path, as_json: bool) -> None:
    """Show CATALOG's tree, item counts, time span, bbox and assets per collection."""
    from lazyraster import catalog as catalog_lib
    from lazyraster.errors import LazyrasterError

    try:
        summary = catalog_lib.describe_catalog(catalog_path)
    except LazyrasterError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        json.dumps(summary, indent=2) if as_json else catalog_lib.format_description(summary)
    )


@catalog.command("validate")
@click.argument("catalog_path", metavar="CATALOG", type=click.Path(exists=True, path_type=Path))
@click.option("--no-hrefs", is_flag=True, help="Skip the check that hrefs and files resolve.")
@click.option("--checksum", is_flag=True, help="Check file:checksum of local files (reads all).")
def catalog_validate(catalog_path: Path, no_hrefs: bool, checksum: bool) -> None:
    """Validate CATALOG (or an item, or an item collection) offline; check its files.

    Schemas are the bundled copies of the STAC core and extension schemas; a schema not
    bundled, or a STAC version before 1.0.0-rc.1, is listed as not checked.
    """
    from lazyraster import catalog as catalog_lib
    from lazyraster.errors import LazyrasterError

    try:
        report = catalog_lib.validate_catalog(
            catalog_path, check_hrefs=not no_hrefs, checksum=checksum
        )
    except LazyrasterError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in report.problems:
        click.echo(problem, err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for uri in report.unchecked_extensions:
        click.echo(f"not checked (no bundled schema): {uri}", err=True)
    if not report.ok:
        raise click.ClickException(f"{len(report.problems)} problem(s) in {catalog_path}")
    caveats = [f"{len(report.warnings)} warning(s)"] if report.warnings else []
    if report.unchecked_extensions:
        caveats.append(f"{len(report.unchecked_extensions)} extension schema(s) not checked")
    suffix = f" ({', '.join(caveats)}, see above)" if caveats else ""
    click.echo(f"valid: {report.objects} STAC objects, {report.assets} asset hrefs{suffix}")


@catalog.command("localize")
@click.argument("catalog_path", metavar="CATALOG", type=click.Path(exists=True, path_type=Path))
@click.option("--assets", required=True, callback=_keys, help="Asset keys, e.g. tmin,tmax.")
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to copy the files into.",
)
@click.option(
    "--allow-root",
    "allow_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder outside the catalog's that hrefs may point into (repeatable).",
)
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
def catalog_localize(
    catalog_path: Path, assets: list[str], to: Path, allow_roots: tuple[Path, ...], workers: int
) -> None:
    """Copy ASSETS of every item of CATALOG into a folder and point their hrefs there.

    Local hrefs must lie under the catalog's folder or an --allow-root folder.
    """
    from lazyraster import catalog as catalog_lib
    from lazyraster.errors import LazyrasterError

    try:
        report = catalog_lib.localize_catalog(
            catalog_path,
            assets=assets,
            to=to,
            allow_roots=allow_roots,
            workers=workers,
            progress=_progress("copying"),
        )
    except (LazyrasterError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for failure in report.failed:
        click.echo(failure, err=True)
    click.echo(
        f"{len(report.copied)} copied, {len(report.skipped)} already in place, "
        f"{len(report.failed)} failed"
    )
    if not report.ok:
        raise click.ClickException(f"{len(report.failed)} asset(s) not localized; run again")
