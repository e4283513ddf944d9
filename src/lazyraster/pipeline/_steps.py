"""The pipeline's steps and the lazy Dataset a spec builds: items, load, steps.

:data:`STEPS` maps each step name of a spec to the analysis function it calls;
``_find_items`` and ``_build_skipping`` find a spec's items, load them and apply its
steps, lazily (only STAC metadata and netCDF headers are read).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pystac
import shapely.geometry
import xarray as xr

from lazyraster import focal, indices, masking, phenology
from lazyraster.catalog import search
from lazyraster.errors import EmptyResultError, LazyrasterError, ReadError, SpecError, redact
from lazyraster.load import READ_ERRORS, load, unreadable, with_item

if TYPE_CHECKING:
    from lazyraster.pipeline._spec import Spec, StepCall, Target

__all__ = ["STEPS", "Step"]

logger = logging.getLogger("lazyraster")


@dataclass(frozen=True)
class Step:
    """An analysis function as a pipeline step.

    Attributes
    ----------
    function : callable
        Takes the Dataset (``takes="dataset"``) or one of its variables
        (``takes="variable"``) first; its other arguments are the step's options.
    takes : {"dataset", "variable"}
        What the function receives.
    gives : {"dataset", "variable", "variables"}
        Whether it returns the whole Dataset (which replaces the current one), one
        variable (added under ``as``), or a Dataset of new variables (merged in).

    Examples
    --------
    >>> from lazyraster.pipeline import STEPS
    >>> STEPS["ndvi"].takes, STEPS["ndvi"].gives
    ('dataset', 'variable')
    >>> STEPS["focal_mean"].arguments()[0]  # required options: none, size has a default
    []
    """

    function: Callable[..., Any]
    takes: Literal["dataset", "variable"]
    gives: Literal["dataset", "variable", "variables"]

    def arguments(self) -> tuple[list[str], set[str], bool]:
        """Required positional option names, keyword option names, and ``**kwargs``."""
        params = list(inspect.signature(self.function).parameters.values())[1:]
        positional = [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        keywords = {
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in positional
        }
        return positional, keywords, any(p.kind == p.VAR_KEYWORD for p in params)


#: Step name -> analysis function. A new step is one entry here.
STEPS: dict[str, Step] = {
    "mask_clouds": Step(masking.mask_clouds, takes="dataset", gives="dataset"),
    "ndvi": Step(indices.ndvi, takes="dataset", gives="variable"),
    "index": Step(indices.index, takes="dataset", gives="variable"),
    "indices": Step(indices.compute_indices, takes="dataset", gives="variables"),
    "focal_mean": Step(focal.focal_mean, takes="variable", gives="variable"),
    "focal_sum": Step(focal.focal_sum, takes="variable", gives="variable"),
    "focal_std": Step(focal.focal_std, takes="variable", gives="variable"),
    "focal_min": Step(focal.focal_min, takes="variable", gives="variable"),
    "focal_max": Step(focal.focal_max, takes="variable", gives="variable"),
    "focal_median": Step(focal.focal_median, takes="variable", gives="variable"),
    "spring_index": Step(phenology.spring_index_dataset, takes="dataset", gives="variables"),
}


def _apply_step(ds: xr.Dataset, call: StepCall) -> xr.Dataset:
    """Apply one step to ``ds`` (lazily), return the Dataset with its new variables."""
    step = STEPS[call.name]
    options = dict(call.options)
    name = options.pop("as", None)
    positional, _, _ = step.arguments()
    args = [options.pop(k) for k in positional]
    if step.takes == "variable":
        variable = options.pop("variable")
        if variable not in ds.data_vars:
            raise SpecError(
                f"step {call.name!r}: no variable {variable!r} at this point of the "
                f"pipeline; there are: {', '.join(map(str, ds.data_vars))}"
            )
        data: Any = ds[variable]
        name = name or f"{variable}_{call.name}"
    else:
        data = ds
    try:
        result = step.function(data, *args, **options)
    except LazyrasterError:
        raise
    except (TypeError, ValueError) as err:
        raise SpecError(f"step {call.describe()}: {err}") from None
    if step.gives == "dataset":
        return result
    if step.gives == "variables":
        return ds.merge(result, compat="override")
    return ds.assign({name or result.name: result})


def _selected(ds: xr.Dataset, target: Target, kind: str) -> xr.Dataset:
    if target.variables is None:
        return ds
    missing = [v for v in target.variables if v not in ds.data_vars]
    if missing:
        raise SpecError(
            f"output.{kind}.variables: no variable(s) {', '.join(missing)} after the steps; "
            f"there are: {', '.join(map(str, ds.data_vars))}"
        )
    return ds[list(target.variables)]


def _find_items(spec: Spec) -> list[pystac.Item]:
    """The items of the spec's source that pass its search."""
    try:
        items = list(search(spec.source, **spec.search))
    except LazyrasterError:
        raise
    except (OSError, ValueError, pystac.STACError) as err:
        raise SpecError(
            f"source {spec.source!r} cannot be read ({err}); give the path of a catalog "
            f"(relative paths start from {os.getcwd()}) or a URL"
        ) from None
    logger.info("%s: %d item(s) found in %s", spec.origin, len(items), redact(spec.source))
    return items


def _load_bbox(spec: Spec) -> list[float] | None:
    """The area loaded: ``search.bbox``, else the bounds of ``search.intersects``."""
    if spec.search.get("bbox") is not None:
        return list(spec.search["bbox"])
    if spec.search.get("intersects") is not None:
        return list(shapely.geometry.shape(spec.search["intersects"]).bounds)
    return None


def _build(spec: Spec, items: Sequence[pystac.Item]) -> xr.Dataset:
    """Load ``items`` and apply the steps lazily.

    A file that cannot be opened while loading (netCDF headers are read here) is a
    :class:`ReadError` naming it.
    """
    load_options = {**spec.load}
    bbox = _load_bbox(spec)
    if bbox is not None:
        load_options["bbox"] = bbox
    try:
        ds = load(list(items), **load_options)
    except ReadError as err:
        raise with_item(err, items, spec.load.get("bands")) from None
    except LazyrasterError:
        raise
    except (TypeError, ValueError) as err:
        raise SpecError(f"load: {err}") from None
    except READ_ERRORS as err:
        failure = unreadable(err, items, spec.load.get("bands"))
        if failure is None:
            raise
        raise failure from None
    for call in spec.steps:
        ds = _apply_step(ds, call)
    for kind, target in spec.outputs.items():
        _selected(ds, target, kind)
    return ds


def _leave_out(
    spec: Spec, items: Sequence[pystac.Item], bad: Mapping[str, str], skipped: dict[str, str]
) -> list[pystac.Item]:
    """``on_error: skip``: drop the items ``bad`` names, logging each and noting it."""
    for item_id, reason in bad.items():
        logger.warning("%s: skipped item %s: cannot read %s", spec.origin, item_id, reason)
    skipped.update(bad)
    remaining = [item for item in items if item.id not in skipped]
    if not remaining:
        raise EmptyResultError(
            f"no scene is left: every item's files cannot be read ({'; '.join(skipped.values())})"
        )
    return remaining


def _build_skipping(
    spec: Spec, items: list[pystac.Item], skipped: dict[str, str]
) -> tuple[xr.Dataset, list[pystac.Item]]:
    """:func:`_build`; with ``on_error: skip`` leaving out an item whose file fails to open."""
    while True:
        try:
            return _build(spec, items), items
        except ReadError as failure:
            if spec.on_error == "fail" or failure.item is None:
                raise
            items = _leave_out(spec, items, {failure.item: _noted(failure)}, skipped)


def _noted(failure: ReadError) -> str:
    return f"{failure.href}: {failure.reason}"
