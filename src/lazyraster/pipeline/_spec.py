"""The pipeline spec: a small YAML file that ``lazyraster run SPEC.yaml`` runs.

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
    The keyword options of :func:`lazyraster.load` other than its search ones
    (``bands``, ``chunks``, ``resolution``, ``crs``, ``groupby``, ``resampling``,
    ``dtype``, ``scale``, ``fill``, ``nodata``, ``missing``, ``gdal``): the table is
    made from ``load``'s signature, so a new option of ``load`` is one here too.
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
wrong types, unknown steps or step options, missing bands or variables, and (by the
writers themselves, see :mod:`lazyraster.pipeline._run`) existing outputs.
"""

from __future__ import annotations

import collections.abc
import contextlib
import datetime as dt
import inspect
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import shapely.errors
import shapely.geometry
import yaml

from lazyraster.errors import SpecError
from lazyraster.io import zarr_group
from lazyraster.load import load
from lazyraster.pipeline._steps import STEPS

__all__ = ["MAX_SPEC_BYTES", "MAX_SPEC_DEPTH", "MAX_SPEC_NODES", "Spec", "load_spec"]

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
#: What a YAML value of a ``load`` option typed ``Any`` in ``load``'s signature may be.
_ANY_LOAD: dict[str, tuple[type, ...]] = {"crs": (int, str), "dtype": (str,)}
#: The YAML type of each annotation in ``load``'s signature.
_YAML_TYPE: dict[Any, tuple[type, ...]] = {
    float: (int, float),
    collections.abc.Sequence: (list,),
    collections.abc.Iterable: (list,),
    collections.abc.Mapping: (dict,),
}


def _load_options() -> dict[str, tuple[type, ...]]:
    """``load``'s keyword options (but the search's) and the YAML types each takes."""
    hints = typing.get_type_hints(load)
    options = {}
    for parameter in inspect.signature(load).parameters.values():
        if parameter.kind is not parameter.KEYWORD_ONLY or parameter.name in _SEARCH:
            continue
        hint = hints[parameter.name]
        if hint is Any:
            options[parameter.name] = _ANY_LOAD.get(parameter.name, (object,))
            continue
        types: list[type] = []
        for part in typing.get_args(hint) if typing.get_args(hint) else (hint,):
            part = typing.get_origin(part) or part
            if part is not type(None):
                types.extend(_YAML_TYPE.get(part, (part,)))
        options[parameter.name] = tuple(dict.fromkeys(types))
    return options


_LOAD = _load_options()
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
    """A validated pipeline spec; build it with :func:`load_spec` or :meth:`from_mapping`.

    Examples
    --------
    >>> Spec.from_mapping({"source": "c.json", "output": {"zarr": "o.zarr"}}).outputs["zarr"].path
    'o.zarr'
    """

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
