"""``validate_catalog``: offline JSON-schema validation and a check that hrefs resolve.

The schemas shipped in ``lazyraster/catalog/schemas`` cover the STAC 1.1.0 core
(catalog, collection, item) and the extensions lazyraster writes (projection v2.0.0,
eo v1.1.0, raster v1.1.0, file v2.1.0, sat v1.0.0). They were written for lazyraster
from the specifications and check the fields it reads and writes; nothing is fetched
from the network. Extensions without a shipped schema are reported as not checked.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import fsspec
import jsonschema

from lazyraster.catalog import _tree

__all__ = ["ValidationReport", "validate_catalog"]

_CORE = {"Catalog": "catalog.json", "Collection": "collection.json", "Feature": "item.json"}
_EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "projection-v2.0.0.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json": "eo-v1.1.0.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster-v1.1.0.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json": "file-v2.1.0.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json": "sat-v1.0.0.json",
}
_PREFIXES = {
    "proj": "projection-v2.0.0.json",
    "eo": "eo-v1.1.0.json",
    "raster": "raster-v1.1.0.json",
    "file": "file-v2.1.0.json",
    "sat": "sat-v1.0.0.json",
}


@dataclass
class ValidationReport:
    """Result of :func:`validate_catalog`.

    Attributes
    ----------
    objects : int
        Catalogs, collections and items checked.
    assets : int
        Asset hrefs checked.
    problems : list of str
        One line per problem: file, where in it, what is wrong.
    unchecked_extensions : list of str
        Extension schemas used by the catalog but not shipped (not checked).
    """

    objects: int = 0
    assets: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked_extensions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    text = resources.files("lazyraster.catalog").joinpath("schemas", name).read_text("utf-8")
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _schema_errors(name: str, doc: dict[str, Any]) -> Iterator[str]:
    for error in sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        yield f"{where}: {error.message} [{name}]"


def _used_prefixes(doc: dict[str, Any]) -> set[str]:
    keys = set(doc.get("properties", {}))
    for asset in doc.get("assets", {}).values():
        keys |= set(asset)
    return {k.split(":", 1)[0] for k in keys if ":" in k}


def _exists(href: str) -> bool:
    if not _tree.is_url(href):
        return os.path.exists(href)
    try:
        fs, path = fsspec.core.url_to_fs(href)
        return bool(fs.exists(path))
    except Exception:  # unreachable host, unknown protocol: the href does not resolve
        return False


def validate_catalog(
    catalog: str | os.PathLike[str], *, check_hrefs: bool = True
) -> ValidationReport:
    """Validate every catalog, collection and item of a static catalog, offline.

    Each document is checked against the shipped core schema of its type and the
    shipped schema of each extension it lists; fields of a shipped extension that is
    not listed in ``stac_extensions`` are reported too. With ``check_hrefs``, every
    link to a child, item, parent, root or collection and every asset href must
    resolve (local paths exist; URLs are asked through fsspec).

    Parameters
    ----------
    catalog : path
        Catalog folder or its ``catalog.json``.
    check_hrefs : bool
        Check that links and asset hrefs resolve.

    Returns
    -------
    ValidationReport
        ``ok`` is True when nothing is wrong; ``problems`` lists one line per fault.

    Raises
    ------
    CatalogError
        When the root catalog itself cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lazyraster.catalog import build_catalog
    >>> from lazyraster.catalog.samples import write_cog
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_cog(tmp / "data" / "20230430_red.tif", shape=(4, 4))
    >>> _ = build_catalog(tmp / "data", tmp / "stac", pattern="{date}_{band}.tif")
    >>> report = validate_catalog(tmp / "stac")
    >>> report.ok, report.objects, report.assets
    (True, 2, 1)
    """
    report = ValidationReport()
    tree = _tree.read_tree(catalog, report.problems)
    documents: list[tuple[Path, dict[str, Any]]] = []
    for _, node in tree.walk():
        documents.append((node.path, node.data))
        documents.extend(node.items)
    unchecked: set[str] = set()
    for path, doc in documents:
        report.objects += 1
        kind = doc.get("type")
        if kind not in _CORE:
            report.problems.append(f"{path}: type {kind!r} is not Catalog, Collection or Feature")
            continue
        report.problems.extend(f"{path}: {e}" for e in _schema_errors(_CORE[kind], doc))
        listed = doc.get("stac_extensions", [])
        shipped = set()
        for uri in listed if isinstance(listed, list) else []:
            if uri in _EXTENSIONS:
                shipped.add(_EXTENSIONS[uri])
                report.problems.extend(
                    f"{path}: {e}" for e in _schema_errors(_EXTENSIONS[uri], doc)
                )
            else:
                unchecked.add(uri)
        for prefix in sorted(_used_prefixes(doc)):
            if prefix in _PREFIXES and _PREFIXES[prefix] not in shipped:
                report.problems.append(
                    f"{path}: uses {prefix}: fields but does not list the {prefix} extension "
                    "in stac_extensions"
                )
        if not check_hrefs:
            continue
        for link in doc.get("links", []):
            if link.get("rel") in {"root", "parent", "child", "item", "collection", "self"}:
                target = _tree.resolve_href(str(link.get("href", "")), path)
                if not _exists(target):
                    report.problems.append(
                        f"{path}: {link.get('rel')} link {link.get('href')!r} does not resolve"
                    )
        for key, asset in doc.get("assets", {}).items():
            report.assets += 1
            href = asset.get("href")
            if isinstance(href, str) and not _exists(_tree.resolve_href(href, path)):
                report.problems.append(f"{path}: asset {key!r} href {href!r} does not resolve")
    report.unchecked_extensions = sorted(unchecked)
    return report
