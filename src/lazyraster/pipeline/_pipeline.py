"""Batch runs described by a small YAML file: ``lazyraster run SPEC.yaml``.

A spec says where the scenes come from, how to load them, which analysis steps to
apply, where to write the result and on which cluster to compute::

    source: catalogs/sample/catalog.json      # static catalog (path or URL) or STAC API URL
    search:                                   # optional: which items
      collections: [sentinel-2-l2a-composite]
      bbox: [-54.9, -28.9, -54.8, -28.8]      # west, south, east, north (degrees)
      datetime: "2021"
      query: {"eo:cloud_cover": {lt: 20}}
    load:                                     # optional: lazyraster.load options
      bands: [red, nir]
      chunks: 1024
      resolution: null
      crs: null
      groupby: null
    steps:                                    # applied in order
      - ndvi: {}
      - index: {name: EVI}
      - focal_mean: {variable: ndvi, size: 3}
    output:
      zarr: out/result.zarr
      geotiff: {path: out/ndvi.tif, variables: [ndvi]}
      overwrite: false
    cluster: {kind: threads}                  # or local, slurm {...}, tcp://host:port
    on_error: fail                            # or skip: leave out scenes that cannot be read

Top-level keys
--------------
``source`` (required, str)
    A STAC API URL, or a path or URL of a static catalog, collection or item.
``search`` (mapping)
    ``collections`` (str or list), ``bbox`` (four numbers, longitude/latitude),
    ``intersects`` (GeoJSON geometry), ``datetime`` (str or [start, end]), ``query``
    (mapping, the STAC query extension), ``filter`` (CQL2 text or JSON); as in
    :func:`lazyraster.search`. ``bbox`` also clips the loaded area; without it, the
    bounds of ``intersects`` do.
``load`` (mapping)
    ``bands``, ``chunks``, ``resolution``, ``crs``, ``groupby``, ``resampling``,
    ``dtype``, ``scale``, ``fill``, ``gdal``; as in :func:`lazyraster.load`.
``steps`` (list)
    Each entry is a step name, or a mapping of one step name to its options. Steps
    run in order on the loaded Dataset; each adds variables to it (``mask_clouds``
    replaces the bands with their masked values). The steps are the entries of
    :data:`STEPS`; their options are the keyword arguments of the function named
    there, plus:

    - ``variable``: the input variable of steps that work on one variable (the
      ``focal_*`` steps); required for them.
    - ``as``: the name of the variable a step adds. Default: the name the function
      gives (``ndvi``, ``EVI``, ...), ``<variable>_<step>`` for one-variable steps
      (``ndvi_focal_mean``).

    A function's positional arguments after the data are required options
    (``index: {name: EVI}``, ``indices: {names: [NDVI, EVI]}``).
``output`` (required mapping)
    ``zarr`` and/or ``geotiff`` (at least one): a path or URL, or a mapping with
    ``path`` and ``variables`` (which variables to write; default: every variable;
    ``zarr`` also takes ``group``). A GeoTIFF holds the variables as bands; with
    several time steps, one file per time step is written (``out/ndvi_2021-03-19.tif``).
    ``overwrite`` (bool, default false): replace outputs that exist; without it, an
    existing output stops the run before anything is computed or written.
    ``variables``: default variables of both outputs.
``cluster`` (str or mapping)
    ``kind`` and the keyword arguments of :func:`lazyraster.cluster`
    (``workers``, ``memory``, ``jobs``, ``adapt``, ``account``, ``partition``, ...).
    Default: dask config ``lazyraster.cluster.kind`` (threads, unless the
    environment says otherwise, as the ``sbatch`` templates do).
``on_error`` (``fail`` or ``skip``, default ``fail``)
    What a scene whose file cannot be read (truncated, damaged, gone) does: ``fail``
    stops the run with a :class:`~lazyraster.errors.ReadError` naming the file;
    ``skip`` leaves the scene out, logs it and lists it in
    :attr:`RunReport.skipped`. With ``skip`` every file is checked before the run
    (opened and its last block decoded, in parallel); a file damaged in its middle is
    found while computing, and the run then computes once more without it.

Relative paths are relative to the working directory of the run. A spec file is at
most :data:`MAX_SPEC_BYTES` long, holds at most :data:`MAX_SPEC_NODES` YAML nodes once
its aliases are expanded, nests at most :data:`MAX_SPEC_DEPTH` levels, and no key twice
in one mapping.

Everything is checked before any cluster starts or any pixel is read: unknown keys,
wrong types, unknown steps or step options, missing bands or variables, and existing
outputs. Inside ``with lazyraster.cluster(...)``, the variables that the outputs write
(no others) are persisted, with progress written to the ``lazyraster`` logger every
``progress_interval`` seconds, and then written with :func:`~lazyraster.write_zarr`
and :func:`~lazyraster.write_geotiff`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import inspect
import io
import logging
import os
import posixpath
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array
import fsspec
import pystac
import shapely.errors
import shapely.geometry
import xarray as xr
import yaml
from dask.callbacks import Callback

from lazyraster import focal, indices, masking, phenology
from lazyraster.catalog import search
from lazyraster.cluster import cluster as _cluster
from lazyraster.cluster import default_workers
from lazyraster.errors import (
    EmptyResultError,
    LazyrasterError,
    OutputExistsError,
    ReadError,
    SpecError,
    WorkerLostError,
    redact,
)
from lazyraster.io import write_geotiff, write_zarr, zarr_group
from lazyraster.load import READ_ERRORS, load, readable, unreadable, with_item

__all__ = [
    "MAX_SPEC_BYTES",
    "MAX_SPEC_NODES",
    "STEPS",
    "Plan",
    "RunReport",
    "Spec",
    "Step",
    "load_spec",
    "plan_pipeline",
    "run_pipeline",
]

logger = logging.getLogger("lazyraster")


# --------------------------------------------------------------------------- step table


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


# --------------------------------------------------------------------------- the spec

_TOP = ("source", "search", "load", "steps", "output", "cluster", "on_error")
_ON_ERROR = ("fail", "skip")
_SEARCH: dict[str, tuple[type, ...]] = {
    "collections": (str, list),
    "bbox": (list,),
    "intersects": (dict,),
    "datetime": (str, list, int, dt.date),
    "query": (dict,),
    "filter": (str, dict),
}
_LOAD: dict[str, tuple[type, ...]] = {
    "bands": (list,),
    "chunks": (int, dict),
    "resolution": (int, float),
    "crs": (int, str),
    "groupby": (str,),
    "resampling": (str,),
    "dtype": (str,),
    "scale": (bool,),
    "fill": (int, float),
    "gdal": (dict,),
}
_OUTPUT: dict[str, tuple[type, ...]] = {
    "zarr": (str, dict),
    "geotiff": (str, dict),
    "overwrite": (bool,),
    "variables": (list,),
}
_TARGET = {"zarr": ("path", "variables", "group"), "geotiff": ("path", "variables")}
_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    dict: "a mapping",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dt.date: "a date",
}


@dataclass(frozen=True)
class StepCall:
    """One validated entry of ``steps``: the step name and its options."""

    name: str
    options: dict[str, Any]

    def describe(self) -> str:
        """``name(option=value, ...)`` as written in the plan."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if k != "as")
        return f"{self.name}({args})"


@dataclass(frozen=True)
class Target:
    """One output: where, which variables, and (Zarr) which group."""

    path: str
    variables: tuple[str, ...] | None = None
    group: str | None = None


@dataclass(frozen=True)
class Spec:
    """A validated pipeline spec; build it with :func:`load_spec` or :meth:`from_mapping`."""

    source: str
    search: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    steps: tuple[StepCall, ...] = ()
    outputs: dict[str, Target] = field(default_factory=dict)
    overwrite: bool = False
    cluster: dict[str, Any] = field(default_factory=dict)
    on_error: Literal["fail", "skip"] = "fail"
    origin: str = "spec"

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], *, origin: str = "spec") -> Spec:
        """Validate a spec given as a mapping (e.g. the parsed YAML).

        Raises
        ------
        SpecError
            Naming the key at fault, what it must be, and the allowed keys.

        Examples
        --------
        >>> spec = Spec.from_mapping({"source": "catalog.json", "steps": ["ndvi"],
        ...                           "output": {"zarr": "out.zarr"}})
        >>> spec.steps[0].name, spec.outputs["zarr"].path
        ('ndvi', 'out.zarr')
        >>> bad = {"source": "a.json", "output": {"zar": "a.zarr"}}
        >>> Spec.from_mapping(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lazyraster.errors.SpecError: spec: unknown key 'output.zar'; allowed: geotiff, ..., zarr
        """
        where = origin
        if not isinstance(spec, Mapping):
            raise SpecError(f"{where}: a spec is a mapping of {', '.join(_TOP)}, not {spec!r}")
        _known(spec, _TOP, "", where)
        for key in ("source", "output"):
            if spec.get(key) is None:
                raise SpecError(
                    f"{where}: '{key}' is missing; a spec needs at least "
                    "source: <catalog path or STAC API URL> and output: {zarr: <path>}"
                )
        source = _typed(spec["source"], (str,), "source", where)
        search = _section(spec.get("search"), _SEARCH, "search", where)
        if search.get("bbox") is not None:
            bbox = search["bbox"]
            if len(bbox) != 4 or not all(_is_number(v) for v in bbox):
                raise SpecError(
                    f"{where}: search.bbox must be four numbers [west, south, east, north] "
                    f"in degrees, not {bbox!r}"
                )
        if search.get("intersects") is not None:
            _check_geometry(search["intersects"], where)
        if "datetime" in search:
            search["datetime"] = _datetime_text(search["datetime"])
        for key in ("collections", "datetime"):
            if isinstance(search.get(key), list) and not all(
                isinstance(v, str | None) for v in search[key]
            ):
                raise SpecError(f"{where}: search.{key} must be a string or a list of strings")
        load_options = _section(spec.get("load"), _LOAD, "load", where)
        if load_options.get("bands") is not None and not all(
            isinstance(b, str) for b in load_options["bands"]
        ):
            raise SpecError(f"{where}: load.bands must be a list of band names, e.g. [red, nir]")
        steps = tuple(_step(entry, i, where) for i, entry in enumerate(_steps(spec, where)))
        outputs, overwrite = _outputs(spec["output"], where)
        return cls(
            source=source,
            search={k: v for k, v in search.items() if v is not None},
            load={k: v for k, v in load_options.items() if v is not None},
            steps=steps,
            outputs=outputs,
            overwrite=overwrite,
            cluster=_cluster_options(spec.get("cluster"), where),
            on_error=_on_error(spec.get("on_error"), where),
            origin=origin,
        )


def _check_geometry(geometry: Mapping[str, Any], where: str) -> None:
    try:
        shape = shapely.geometry.shape(geometry)
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.ShapelyError) as err:
        raise SpecError(
            f"{where}: search.intersects must be a GeoJSON geometry in longitude/latitude, "
            "e.g. {type: Polygon, coordinates: [[[24.9, 60.1], [25.1, 60.1], [25.1, 60.3], "
            f"[24.9, 60.1]]]}}; {geometry!r:.200} is not one ({err})"
        ) from None
    if shape.is_empty:
        raise SpecError(f"{where}: search.intersects is an empty geometry")


def _on_error(value: Any, where: str) -> Literal["fail", "skip"]:
    if value is None:
        return "fail"
    if value not in _ON_ERROR:
        raise SpecError(
            f"{where}: on_error must be fail (stop at the first file that cannot be read) "
            f"or skip (leave its scene out), not {value!r}"
        )
    return value  # type: ignore[no-any-return]


def _datetime_text(value: Any) -> Any:
    """YAML reads ``2021`` as an int and ``2021-06-01`` as a date: back to text."""
    if isinstance(value, list):
        return [_datetime_text(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _known(mapping: Mapping[str, Any], allowed: Sequence[str], prefix: str, where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise SpecError(
                f"{where}: unknown key '{prefix}{key}'; allowed: {', '.join(sorted(allowed))}"
            )


def _typed(value: Any, types: tuple[type, ...], key: str, where: str) -> Any:
    ok = isinstance(value, types)
    if isinstance(value, bool) and bool not in types:
        ok = False
    if int in types and float not in types and isinstance(value, float):
        ok = False
    if not ok:
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise SpecError(f"{where}: {key} must be {names}, not {value!r}")
    return value


def _section(
    value: Any, schema: Mapping[str, tuple[type, ...]], name: str, where: str
) -> dict[str, Any]:
    if value is None:
        return {}
    _typed(value, (dict,), name, where)
    _known(value, list(schema), f"{name}.", where)
    return {
        k: (None if v is None else _typed(v, schema[k], f"{name}.{k}", where))
        for k, v in value.items()
    }


def _steps(spec: Mapping[str, Any], where: str) -> list[Any]:
    steps = spec.get("steps")
    if steps is None:
        return []
    return _typed(steps, (list,), "steps", where)


def _step(entry: Any, i: int, where: str) -> StepCall:
    label = f"steps[{i}]"
    if isinstance(entry, str):
        name, options = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        options = {} if options is None else _typed(options, (dict,), f"{label}.{name}", where)
    else:
        raise SpecError(
            f"{where}: {label} must be a step name or a mapping of one step name to its "
            f"options, e.g. '- focal_mean: {{variable: ndvi, size: 3}}'; got {entry!r}"
        )
    if name not in STEPS:
        raise SpecError(
            f"{where}: {label}: unknown step {name!r}; allowed: {', '.join(sorted(STEPS))}"
        )
    step = STEPS[name]
    positional, keywords, any_keyword = step.arguments()
    reserved = {"as"} | ({"variable"} if step.takes == "variable" else set())
    allowed = set(positional) | keywords | reserved
    for key in options:
        if not isinstance(key, str) or (key not in allowed and not any_keyword):
            raise SpecError(
                f"{where}: {label}: step {name!r} has no option {key!r}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
    missing = [k for k in [*positional, *(reserved - {"as"})] if k not in options]
    if missing:
        raise SpecError(
            f"{where}: {label}: step {name!r} needs option(s) {', '.join(missing)}, e.g. "
            f"'- {name}: {{{missing[0]}: ...}}'"
        )
    if "as" in options and not isinstance(options["as"], str):
        raise SpecError(f"{where}: {label}.as must be a variable name (a string)")
    if step.gives != "variable" and "as" in options:
        raise SpecError(f"{where}: {label}: step {name!r} adds several variables; drop 'as'")
    return StepCall(name=name, options=dict(options))


def _variables(value: Any, key: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    _typed(value, (list,), key, where)
    if not value or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: {key} must be a non-empty list of variable names")
    return tuple(value)


def _outputs(value: Any, where: str) -> tuple[dict[str, Target], bool]:
    output = _section(value, _OUTPUT, "output", where)
    default = _variables(output.get("variables"), "output.variables", where)
    targets: dict[str, Target] = {}
    for kind in ("zarr", "geotiff"):
        target = output.get(kind)
        if target is None:
            continue
        if isinstance(target, str):
            target = {"path": target}
        _known(target, _TARGET[kind], f"output.{kind}.", where)
        path = _typed(target.get("path"), (str,), f"output.{kind}.path", where)
        group = target.get("group")
        if group is not None:
            _typed(group, (str,), f"output.{kind}.group", where)
            try:
                zarr_group(group)
            except ValueError as err:
                raise SpecError(f"{where}: output.{kind}.group: {err}") from None
        variables = _variables(target.get("variables"), f"output.{kind}.variables", where)
        targets[kind] = Target(path=path, variables=variables or default, group=group)
    if not targets:
        raise SpecError(
            f"{where}: output names no file; give output.zarr and/or output.geotiff, e.g. "
            "output: {zarr: out/result.zarr}"
        )
    return targets, bool(output.get("overwrite") or False)


def _cluster_options(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"kind": value}
    options = dict(_typed(value, (str, dict), "cluster", where))
    if "kind" in options and not isinstance(options["kind"], str):
        raise SpecError(
            f"{where}: cluster.kind must be threads, processes, local, slurm or a scheduler "
            f"address such as tcp://10.0.0.5:8786, not {options['kind']!r}"
        )
    if isinstance(options.get("adapt"), list):
        options["adapt"] = tuple(options["adapt"])
    return options


#: Largest spec file read, in bytes; a spec is a few hundred.
MAX_SPEC_BYTES = 1 << 20
#: Most YAML nodes a spec may hold once its aliases are expanded (an anchor bomb
#: -- "billion laughs" -- holds 10**9 from a few lines).
MAX_SPEC_NODES = 100_000
#: Deepest nesting of lists and mappings in a spec (a spec nests four or five levels;
#: a file of 10**5 brackets would exhaust the parser's stack).
MAX_SPEC_DEPTH = 64


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that bounds the expanded size and refuses duplicate keys.

    Each node's size counts the nodes below it with aliases expanded, computed as the
    document is composed (a node reached through an alias is counted again, not
    walked again), so an anchor bomb is refused after a few hundred nodes of work,
    before anything is constructed. Nesting deeper than :data:`MAX_SPEC_DEPTH` is
    refused before the composer's recursion reaches Python's stack limit.
    """

    origin = "spec"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        alias = self.check_event(yaml.AliasEvent)
        if self._depth >= MAX_SPEC_DEPTH:
            raise SpecError(
                f"{self.origin}: line {self.peek_event().start_mark.line + 1}: lists and "
                f"mappings nest deeper than {MAX_SPEC_DEPTH} levels; a pipeline spec nests "
                "a few: is it the right file?"
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:
            if id(node) not in self._sizes:  # the alias is inside its own anchor
                raise SpecError(
                    f"{self.origin}: line {node.start_mark.line + 1}: an alias refers to "
                    "the node it is in (a recursive anchor); write the value out"
                )
            size = self._sizes[id(node)]  # counted again, not walked again
        else:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            size = 1 + sum(self._sizes[id(child)] for child in children)
            self._sizes[id(node)] = size
        if size > MAX_SPEC_NODES:
            raise SpecError(
                f"{self.origin}: line {node.start_mark.line + 1}: the spec expands to more "
                f"than {MAX_SPEC_NODES} YAML nodes through its aliases (&anchor/*alias); "
                "a pipeline spec is a few dozen: write it out without nested aliases"
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            with contextlib.suppress(TypeError):  # unhashable keys: yaml's own error
                if key in seen:
                    raise SpecError(
                        f"{self.origin}: key {key!r} appears twice in one mapping (lines "
                        f"{seen[key]} and {line}); keep one"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_reason(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: what it found, and where (1-based line and column).

    Examples
    --------
    >>> try:
    ...     yaml.safe_load("a: [1, 2")
    ... except yaml.YAMLError as err:
    ...     print(_yaml_reason(err))
    expected ',' or ']', but got '<stream end>' at line 1, column 9
    """
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _parse_spec(text: str, origin: str) -> Any:
    """Parse spec text with :class:`_SpecLoader` (bounded, no duplicate keys)."""
    loader = _SpecLoader(text)
    loader.origin = origin
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a YAML pipeline spec.

    Parameters
    ----------
    path : str or path-like
        The YAML file, at most :data:`MAX_SPEC_BYTES` long, parsed safely
        (``yaml.SafeLoader``) with at most :data:`MAX_SPEC_NODES` nodes after
        expanding aliases, at most :data:`MAX_SPEC_DEPTH` levels of nesting, and no
        key twice in one mapping.

    Returns
    -------
    Spec

    Raises
    ------
    SpecError
        If the file cannot be read or parsed, or the spec is not valid.

    Examples
    --------
    >>> spec = load_spec("catalogs/sample/ndvi.yaml")
    >>> [step.name for step in spec.steps]
    ['ndvi', 'focal_mean']
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"cannot read the spec {os.fspath(path)!r}: {err.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{os.fspath(path)} is larger than {MAX_SPEC_BYTES} bytes; a pipeline spec is a "
            "few hundred: is it the right file?"
        )
    try:
        parsed = _parse_spec(data.decode("utf-8"), os.fspath(path))
    except UnicodeDecodeError as err:
        raise SpecError(f"{os.fspath(path)} is not UTF-8 text: {err.reason}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{os.fspath(path)} is not valid YAML: {_yaml_reason(err)}") from None
    return Spec.from_mapping(parsed if parsed is not None else {}, origin=os.fspath(path))


def _as_spec(spec: Spec | Mapping[str, Any] | str | os.PathLike[str]) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return Spec.from_mapping(spec)
    if isinstance(spec, str | os.PathLike):
        return load_spec(spec)
    raise TypeError(f"spec must be a Spec, a mapping or a YAML path, not {type(spec).__name__}")


# --------------------------------------------------------------------------- building


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


def _written_variables(ds: xr.Dataset, spec: Spec) -> xr.Dataset:
    """Only the variables some output writes: nothing else is persisted."""
    chosen = [t.variables for t in spec.outputs.values()]
    if any(v is None for v in chosen):
        return ds
    wanted = {name for names in chosen for name in names}  # type: ignore[union-attr]
    return ds[[name for name in ds.data_vars if name in wanted]]


def _exists(path: str) -> bool:
    fs, root = fsspec.core.url_to_fs(path)
    return bool(fs.exists(root))


def _geotiff_paths(path: str, ds: xr.Dataset) -> list[str]:
    """The file(s) ``write_geotiff`` will write for ``ds`` (one per time step or one)."""
    _, per = _geotiff_frame(ds)
    if per is None:
        return [path]
    labels = [str(v)[:10] for v in ds[per].values]
    if "{}" in path:
        return [path.format(label) for label in labels]
    p = Path(path)
    return [str(p.with_name(f"{p.stem}_{label}{p.suffix}")) for label in labels]


def _check_writable(path: str) -> None:
    """Refuse a local output whose folder cannot be written, before anything is computed."""
    if "://" in path and not path.startswith("file://"):
        return  # object stores say so when writing
    folder = Path(path.removeprefix("file://")).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    if not os.access(folder, os.W_OK):
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise PermissionError(
            code, f"{os.strerror(code)}, so {path} cannot be written", str(folder)
        )


def _check_outputs(spec: Spec, overwrite: bool, ds: xr.Dataset) -> None:
    for target in spec.outputs.values():
        _check_writable(target.path)
    if overwrite:
        return
    paths = []
    if "zarr" in spec.outputs:
        zarr = spec.outputs["zarr"]
        group = f"/{zarr.group.strip('/')}" if zarr.group else ""
        paths.append(zarr.path.rstrip("/") + group)
    if "geotiff" in spec.outputs:
        paths.extend(_geotiff_paths(spec.outputs["geotiff"].path, ds))
    existing = [path for path in paths if _exists(path)]
    if existing:
        raise OutputExistsError(
            f"{', '.join(existing)} already exist(s); nothing was computed or written. Set "
            "output.overwrite: true (CLI: --overwrite) to replace, or choose other paths."
        )


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


def _with_cluster_override(spec: Spec, kind: str | None) -> dict[str, Any]:
    options = dict(spec.cluster)
    if kind is not None and options.get("kind") != kind:
        options = {"kind": kind}
    return options


# --------------------------------------------------------------------------- progress


class _LogProgress(Callback):
    """Log "x/y tasks done" for dask's local schedulers (threads, processes)."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def _start(self, dsk: Any) -> None:
        self._started = self._last = time.monotonic()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            done = len(state["finished"])
            total = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
            logger.info("persist: %d/%d tasks done (%.1f s)", done, total, now - self._started)

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if not errored:
            done = len(state["finished"])
            elapsed = time.monotonic() - self._started
            logger.info("persist: %d/%d tasks done (%.1f s)", done, done, elapsed)


def _persist_locally(ds: xr.Dataset, interval: float) -> xr.Dataset:
    """Persist on threads or processes; a worker process that dies costs one retry.

    dask's ``processes`` scheduler gives up on the whole computation when one of its
    worker processes dies (``BrokenProcessPool``), where a distributed cluster would
    compute the lost tasks again; the next computation gets a new pool (dask's own,
    or the ``cluster("processes")`` block's, which replaces a broken one), so once more
    is the same recovery.
    """
    for attempt in (1, 2):
        try:
            with _LogProgress(interval):
                return ds.persist()
        except BrokenProcessPool as err:
            if attempt == 2:
                raise WorkerLostError(
                    "a worker process of the 'processes' scheduler died, twice (killed by "
                    f"a signal or by the out-of-memory killer?): {err}. Run with --cluster "
                    "local (cluster: local), whose workers are restarted and whose lost "
                    "tasks are computed again, or give the run more memory."
                ) from None
            logger.warning("a worker process died (%s); computing once more", err)
    raise AssertionError("unreachable")  # pragma: no cover


def _persist(ds: xr.Dataset, client: Any, interval: float) -> xr.Dataset:
    """Persist ``ds`` on the active scheduler, logging progress every ``interval`` s."""
    if client is None:
        return _persist_locally(ds, interval)
    from distributed import KilledWorker, futures_of, wait

    persisted = ds.persist()
    futures = futures_of(persisted)
    start = time.monotonic()
    while True:
        done = sum(f.done() for f in futures)
        logger.info(
            "persist: %d/%d chunks done (%.1f s)", done, len(futures), time.monotonic() - start
        )
        if done == len(futures):
            break
        with contextlib.suppress(TimeoutError):
            wait(futures, timeout=max(interval, 0.05))
    for future in futures:
        if future.status == "error":
            try:
                future.result()  # raises the task's exception
            except KilledWorker as err:
                raise WorkerLostError(
                    f"the workers running a task died too often ({err}); they were killed "
                    "or ran out of memory: give each worker more memory (cluster: memory=) "
                    "or make the chunks smaller (load: chunks=)"
                ) from None
    return persisted


# --------------------------------------------------------------------------- running


@dataclass
class RunReport:
    """What a run wrote, how long each stage took, how many items it read or skipped."""

    outputs: dict[str, list[str]]
    timings: dict[str, float]
    items: int
    bytes_written: int
    variables: list[str]
    #: ``on_error: skip``: item id -> the file that could not be read and why.
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A short human-readable summary."""
        lines = [f"{self.items} item(s), variables: {', '.join(self.variables)}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s) whose files cannot be read:")
            lines.extend(f"  {item}: {why}" for item, why in self.skipped.items())
        lines.append("wrote:")
        for kind, paths in self.outputs.items():
            lines.extend(f"  {kind:<8} {path}" for path in paths)
        lines.append(f"  {self.bytes_written / 1024:.1f} KiB in all")
        lines.append("timings:")
        lines.extend(f"  {stage:<8} {seconds:7.3f} s" for stage, seconds in self.timings.items())
        return "\n".join(lines)


def _size(path: str) -> int:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(root):
        return sum(fs.du(root, total=False).values())
    return int(fs.size(root))


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    logger.info("%s: %.2f s", stage, timings[stage])


def _make_parent(path: str) -> None:
    fs, root = fsspec.core.url_to_fs(path)
    parent = posixpath.dirname(root.rstrip("/"))
    if parent:
        fs.makedirs(parent, exist_ok=True)


@contextlib.contextmanager
def _started(options: dict[str, Any]) -> Iterator[Any]:
    """Enter ``lazyraster.cluster(**options)``; a wrong option is a :class:`SpecError`."""
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(_cluster(**options))
        except LazyrasterError:
            raise
        except (TypeError, ValueError) as err:
            raise SpecError(f"cluster: {err}") from None
        yield client


#: Bytes of a run's variables (bands read and results) that make another worker process
#: worth its start: a Python start, the imports of the analysis and its numba kernels
#: cost about as long as computing this much does on one core.
BYTES_PER_WORKER = 256 * 2**20


def _sized_to_job(options: dict[str, Any], kind: str, ds: xr.Dataset) -> dict[str, Any]:
    """No more worker processes than the job can keep busy, when ``workers`` is not set.

    Each worker process of ``processes`` and ``local`` costs a Python start and the
    imports of the analysis before its first task; a worker without a chunk to compute,
    or with too little work to pay for its start, only adds that (and, on ``local``,
    moves chunks between workers where threads of one would share them). So: at most
    as many workers as the variable with the most chunks has chunks (the widest step),
    and one per :data:`BYTES_PER_WORKER` of the run's variables; a ``local`` worker
    gets the cores of the workers left out as threads.
    """
    if kind not in ("processes", "local") or options.get("workers") is not None:
        return options
    arrays = [v.data for v in ds.data_vars.values() if isinstance(v.data, dask.array.Array)]
    chunks = max((a.npartitions for a in arrays), default=1)
    by_size = -(-sum(a.nbytes for a in arrays) // BYTES_PER_WORKER)
    workers = max(1, min(chunks, by_size))
    if workers >= default_workers(kind):
        return options
    logger.info(
        "%d chunk(s), %.1f MiB: starting %d worker process(es)",
        chunks,
        sum(a.nbytes for a in arrays) / 2**20,
        workers,
    )
    return {**options, "workers": workers}


def _geotiff_frame(ds: xr.Dataset) -> tuple[xr.Dataset, str | None]:
    if "time" in ds.dims and ds.sizes["time"] == 1:
        return ds.isel(time=0, drop=True), None
    return ds, ("time" if "time" in ds.dims else None)


def run_pipeline(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    overwrite: bool | None = None,
    cluster: str | None = None,
    progress_interval: float = 10.0,
) -> RunReport:
    """Run a pipeline spec: search, load, analyse, persist and write.

    Parameters
    ----------
    spec : Spec, mapping or path
        A validated :class:`Spec`, a mapping in the spec's schema, or a YAML file.
    overwrite : bool, optional
        Overrides ``output.overwrite``.
    cluster : str, optional
        Overrides the cluster kind (the spec's other cluster options are kept only
        when it names the same kind).
    progress_interval : float
        Seconds between progress lines on the ``lazyraster`` logger.

    Returns
    -------
    RunReport

    Raises
    ------
    SpecError
        For a spec that is not valid (before any cluster starts or data is read).
    OutputExistsError
        If an output exists and overwriting was not asked for; nothing is computed.
    MissingBandError, EmptyResultError
        If the items lack a band a step needs, or no item passes the filters.

    Examples
    --------
    >>> report = run_pipeline("catalogs/sample/ndvi.yaml", overwrite=True)  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    """
    spec = _as_spec(spec)
    overwrite = spec.overwrite if overwrite is None else overwrite
    cluster_options = _with_cluster_override(spec, cluster)
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    with _timed(timings, "build"):
        items = _find_items(spec)
        if spec.on_error == "skip":
            bad = readable(items, spec.load.get("bands"))[1]
            items = _leave_out(spec, items, bad, skipped)
        ds, items = _build_skipping(spec, items, skipped)
    _check_outputs(spec, overwrite, ds)
    logger.info("%s: %s", spec.origin, _grid(ds))
    mode = "w" if overwrite else "w-"
    provenance = {
        "inputs": [redact(spec.source)],
        "parameters": {"steps": [s.describe() for s in spec.steps]},
    }
    outputs: dict[str, list[str]] = {}
    kind = cluster_options.get("kind") or dask.config.get("lazyraster.cluster.kind")
    cluster_options = _sized_to_job(cluster_options, kind, ds)
    logger.info("%s: computing on %s", spec.origin, kind)
    with _started(cluster_options) as client:
        with _timed(timings, "persist"):
            ds = _persist_scenes(spec, ds, items, skipped, client, progress_interval)
        if "zarr" in spec.outputs:
            target = spec.outputs["zarr"]
            _make_parent(target.path)
            with _timed(timings, "zarr"):
                written = write_zarr(
                    _selected(ds, target, "zarr"),
                    target.path,
                    group=target.group,
                    mode=mode,
                    **provenance,
                )
            outputs["zarr"] = [str(written)]
        if "geotiff" in spec.outputs:
            target = spec.outputs["geotiff"]
            frame, per = _geotiff_frame(_selected(ds, target, "geotiff"))
            _make_parent(target.path)
            with _timed(timings, "geotiff"):
                written = write_geotiff(frame, target.path, mode=mode, per=per, **provenance)
            outputs["geotiff"] = [written] if isinstance(written, str) else list(written)
    size = sum(_size(path) for paths in outputs.values() for path in paths)
    for kind_, paths in outputs.items():
        logger.info("wrote %s: %s", kind_, ", ".join(paths))
    return RunReport(
        outputs=outputs,
        timings=timings,
        items=len(items),
        bytes_written=size,
        variables=[str(v) for v in ds.data_vars],
        skipped=skipped,
    )


def _persist_scenes(
    spec: Spec,
    ds: xr.Dataset,
    items: list[pystac.Item],
    skipped: dict[str, str],
    client: Any,
    interval: float,
) -> xr.Dataset:
    """Persist the written variables; a file that fails to read is named, or skipped.

    With ``on_error: fail`` the error becomes a :class:`ReadError` naming the file.
    With ``skip`` its item is left out and the rest computed again: only a file that
    passed the check before the run (damaged in its middle) costs this second pass.
    """
    while True:
        try:
            return _persist(_written_variables(ds, spec), client, interval)
        except ReadError as err:
            failure = with_item(err, items, spec.load.get("bands"))
            if spec.on_error == "fail" or failure.item is None:
                raise failure from None
        except LazyrasterError:
            raise
        except READ_ERRORS as err:
            failure = unreadable(err, items, spec.load.get("bands"))
            if failure is None:
                raise
            if spec.on_error == "fail":
                raise failure from None
        items = _leave_out(spec, items, {str(failure.item): _noted(failure)}, skipped)
        ds, items = _build_skipping(spec, items, skipped)


# --------------------------------------------------------------------------- dry run


@dataclass
class Plan:
    """What a run would do: items, grid, steps, outputs, cluster (and SLURM job script)."""

    spec: Spec
    items: int
    grid: str
    variables: list[str]
    cluster: dict[str, Any]
    job_script: str | None = None

    def describe(self) -> str:
        """The plan as text, as ``lazyraster run --dry-run`` prints it."""
        lines = [
            f"source:  {redact(self.spec.source)} ({self.items} item(s))",
            f"grid:    {self.grid}",
            "steps:",
        ]
        lines.extend(f"  {i + 1}. {call.describe()}" for i, call in enumerate(self.spec.steps))
        if not self.spec.steps:
            lines.append("  (none: the loaded bands are written as they are)")
        lines.append(f"variables: {', '.join(self.variables)}")
        lines.append("outputs:" + ("  (overwrite)" if self.spec.overwrite else ""))
        if self.spec.on_error == "skip":
            lines[-1] += "  (on_error: skip: scenes whose files cannot be read are left out)"
        for kind, target in self.spec.outputs.items():
            chosen = ", ".join(target.variables) if target.variables else "all variables"
            lines.append(f"  {kind:<8} {target.path} ({chosen})")
        kind = self.cluster.get("kind") or dask.config.get("lazyraster.cluster.kind")
        options = {k: v for k, v in self.cluster.items() if k != "kind"}
        lines.append(f"cluster: {kind}" + (f" {options}" if options else ""))
        if self.job_script:
            lines.append("worker job script:")
            lines.extend(f"  {line}" for line in self.job_script.splitlines())
        return "\n".join(lines)


def _grid(ds: xr.Dataset) -> str:
    crs = ds.rio.crs
    xres, yres = ds.rio.resolution()
    left, bottom, right, top = ds.rio.bounds()
    times = f", {ds.sizes['time']} time step(s)" if "time" in ds.dims else ""
    return (
        f"{crs.to_string() if crs else 'no CRS'}, {ds.rio.height} x {ds.rio.width} pixels "
        f"of {abs(xres):g} x {abs(yres):g}{times}, bounds ({left:g}, {bottom:g}, "
        f"{right:g}, {top:g})"
    )


def plan_pipeline(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    overwrite: bool | None = None,
    cluster: str | None = None,
) -> Plan:
    """Validate a spec and describe the run without computing anything.

    Finds the items and builds the lazy result (reading STAC metadata only), so a
    missing band or variable shows here too. For ``slurm`` the worker job script is
    generated (``lazyraster.cluster(..., dry_run=True)``); nothing is submitted.

    Parameters
    ----------
    spec, overwrite, cluster
        As in :func:`run_pipeline`.

    Returns
    -------
    Plan

    Examples
    --------
    >>> plan = plan_pipeline("catalogs/sample/ndvi.yaml", overwrite=True)
    >>> plan.items, plan.variables
    (1, ['red', 'nir', 'ndvi', 'ndvi_focal_mean'])
    """
    spec = _as_spec(spec)
    if overwrite is not None:
        spec = dataclasses.replace(spec, overwrite=overwrite)
    options = _with_cluster_override(spec, cluster)
    skipped: dict[str, str] = {}
    ds, items = _build_skipping(spec, _find_items(spec), skipped)
    _check_outputs(spec, spec.overwrite, ds)
    script = None
    kind = options.get("kind") or dask.config.get("lazyraster.cluster.kind")
    if kind == "slurm":
        dry = {k: v for k, v in options.items() if k not in ("jobs", "adapt", "timeout", "kind")}
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                _cluster("slurm", dry_run=True, **dry) as job_script,
            ):
                script = str(job_script)
        except TypeError as err:
            raise SpecError(f"cluster: {err}") from None
    return Plan(
        spec=spec,
        items=len(items),
        grid=_grid(ds),
        variables=[str(v) for v in ds.data_vars],
        cluster=options,
        job_script=script,
    )
