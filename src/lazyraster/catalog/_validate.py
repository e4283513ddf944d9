"""``validate_catalog``: offline JSON-schema validation as pystac judges it, and file checks.

Every document is checked against the published JSON schema of the STAC core version it
names and of each extension it lists, the way :func:`pystac.validation.validate_dict`
does, but from the copies bundled in ``lazyraster/catalog/schemas`` (each at the path of
its URL; ``PROVENANCE.md`` there says where each comes from). Nothing is fetched: a
schema that is not bundled is reported as not checked, never as a failure.

Bundled: STAC 1.0.0-rc.1 to 1.1.0 (catalog, collection, item and their parts), GeoJSON,
PROJJSON, and every published version of the extensions real catalogs list (projection,
eo, raster, file, sat, view, scientific, processing, mgrs, grid, storage, classification,
alternate-assets, timestamps, version, sar, sentinel-2, landsat, datacube, remote-data).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import fsspec
import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from pystac import STACObjectType
from pystac.serialization.identify import STACVersionID
from pystac.validation.schema_uri_map import OldExtensionSchemaUriMap

from lazyraster.catalog import _stac, _tree
from lazyraster.errors import CatalogError

__all__ = ["ValidationReport", "validate_catalog", "validate_document"]

_SCHEMAS = resources.files("lazyraster.catalog").joinpath("schemas")
_KINDS = {"Catalog": "catalog", "Collection": "collection", "Feature": "item"}
_OBJECT_TYPES = {
    "Catalog": STACObjectType.CATALOG,
    "Collection": STACObjectType.COLLECTION,
    "Feature": STACObjectType.ITEM,
}
# Before 1.0.0-rc.2, stac_extensions held short names; pystac maps them to schema URIs.
_SHORT_NAMES_UNTIL = STACVersionID("1.0.0-rc.2")
# Field prefixes whose extension a document must list when it uses them.
_PREFIXES = {"proj": "projection", "eo": "eo", "raster": "raster", "file": "file", "sat": "sat"}
_LINKS_THAT_RESOLVE = {"root", "parent", "child", "item", "collection", "self"}
# multihash function codes (https://github.com/multiformats/multicodec) hashlib can compute
_MULTIHASH = {
    0x11: "sha1",
    0x12: "sha256",
    0x13: "sha512",
    0x14: "sha3_512",
    0x15: "sha3_384",
    0x16: "sha3_256",
    0x17: "sha3_224",
    0xD5: "md5",
    0xB220: "blake2b",
}


@dataclass
class ValidationReport:
    """Result of :func:`validate_catalog`.

    Attributes
    ----------
    objects : int
        Catalogs, collections and items read.
    assets : int
        Asset hrefs checked.
    problems : list of str
        One line per problem: file, where in it, what is wrong. Any problem makes the
        catalog invalid.
    unchecked_extensions : list of str
        Extension schemas listed by the catalog but not bundled (not checked).
    warnings : list of str
        One line per thing that is not a failure: a document of a STAC version without
        bundled schemas ("unsupported STAC version"), a schema referring to one not
        bundled, a checksum of an unknown hash function, fields of an extension the
        document does not list (pystac and the STAC examples accept these).

    Examples
    --------
    >>> from lazyraster.catalog import validate_catalog
    >>> report = validate_catalog("catalogs/sample/catalog.json")
    >>> report.ok, report.problems
    (True, [])
    """

    objects: int = 0
    assets: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked_extensions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def _bundled(uri: str) -> Traversable | None:
    parts = urllib.parse.urlsplit(uri)
    steps = [parts.netloc, *parts.path.strip("/").split("/")]
    if parts.scheme not in ("http", "https") or any(s in ("", ".", "..") for s in steps):
        return None
    path = _SCHEMAS.joinpath(*steps)
    return path if path.name.endswith(".json") and path.is_file() else None


@functools.cache
def _schema(uri: str) -> dict[str, Any] | None:
    path = _bundled(uri)
    return None if path is None else json.loads(path.read_text("utf-8"))


def _bundled_uris(folder: Traversable, url: str) -> Iterator[str]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _bundled_uris(entry, f"{url}/{entry.name}")
        elif entry.name.endswith(".json"):
            yield f"{url}/{entry.name}"


def _no_such_schema(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)


@functools.cache
def _registry() -> referencing.Registry[Any]:
    """Every bundled schema, by its URL, crawled once so that validators share the work."""
    draft7 = referencing.jsonschema.DRAFT7
    resources = [
        (uri, referencing.Resource.from_contents(_schema(uri), default_specification=draft7))
        for uri in _bundled_uris(_SCHEMAS, "https:/")
    ]
    return referencing.Registry(retrieve=_no_such_schema).with_resources(resources).crawl()  # type: ignore[call-arg]


@functools.cache
def _validator(uri: str) -> jsonschema.protocols.Validator | None:
    schema = _schema(uri)
    if schema is None:
        return None
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=_registry())


def _label(uri: str) -> str:
    """Short name of a bundled schema: ``projection v2.0.0``, ``STAC 1.1.0 item``."""
    host, *parts = uri.split("://", 1)[1].split("/")
    if host == "stac-extensions.github.io":
        return f"{parts[0]} {parts[1]}"
    if host == "schemas.stacspec.org":
        kind = parts[2] if parts[1] == "extensions" else parts[-1].removesuffix(".json")
        return f"STAC {parts[0].removeprefix('v')} {kind}"
    return uri


def _schema_check(uri: str, doc: dict[str, Any], where: str, report: ValidationReport) -> bool:
    """Validate ``doc`` against the bundled schema ``uri``; False when it is not bundled."""
    validator = _validator(uri)
    if validator is None:
        return False
    try:
        errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    except referencing.exceptions.Unresolvable as exc:
        report.warnings.append(
            f"{where}: {_label(uri)} refers to {exc.ref}, which is not bundled"  # type: ignore[attr-defined]
        )
        return True
    described = [_alternatives(error) for error in errors]
    single = {fault for alts in described if len(alts) == 1 for fault in alts[0]}
    lines: dict[str, None] = {}
    for alts in described:
        if len(alts) == 1:
            lines.update(dict.fromkeys(alts[0]))
        elif not any(set(alt) <= single for alt in alts):  # else fixing those fixes this
            lines[" or ".join("; ".join(alt) for alt in alts)] = None
    report.problems.extend(f"{where}: {line} [{_label(uri)}]" for line in lines)
    return True


def _fault(error: jsonschema.ValidationError) -> str:
    at = "/".join(str(p) for p in error.absolute_path) or "(top)"
    message, shown = error.message, repr(error.instance)
    if len(shown) > 60 and message.startswith(shown):  # not the whole geometry or item
        message = ("{...}" if isinstance(error.instance, dict) else "[...]") + message[len(shown) :]
    return f"{at}: {message}"


def _alternatives(error: jsonschema.ValidationError) -> tuple[tuple[str, ...], ...]:
    """The ways to fix ``error``: each a tuple of faults to mend.

    An anyOf/oneOf error is replaced by the faults of each of its branches, leaving
    out the branches meant for another type of document (they fail on ``type``).
    """
    if not error.context:
        return ((_fault(error),),)
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    kept = [b for b in branches.values() if not _discriminated(b)] or list(branches.values())
    ways = []
    for branch in kept:
        faults: list[str] = []
        for sub in branch:
            alts = _alternatives(sub)
            faults.extend(alts[0] if len(alts) == 1 else [" or ".join("; ".join(a) for a in alts)])
        ways.append(tuple(dict.fromkeys(faults)))
    return tuple(dict.fromkeys(ways))


def _discriminated(branch: list[jsonschema.ValidationError]) -> bool:
    """True when a branch of anyOf/oneOf failed on its ``type`` (it is for another kind)."""
    return any(list(e.relative_path) == ["type"] for e in branch)


def _extension_uri(entry: Any, kind: str, version: STACVersionID) -> str | None:
    if not isinstance(entry, str):
        return None
    if "://" in entry or version >= _SHORT_NAMES_UNTIL:
        return entry
    return OldExtensionSchemaUriMap.get_extension_schema_uri(entry, _OBJECT_TYPES[kind], version)


def _field(doc: dict[str, Any], name: str, kind: type) -> Any:
    """``doc[name]`` when it is of ``kind``, else empty (the core schema reports it)."""
    value = doc.get(name)
    return value if isinstance(value, kind) else kind()


def _used_prefixes(doc: dict[str, Any]) -> set[str]:
    keys = set(_field(doc, "properties", dict))
    for asset in _field(doc, "assets", dict).values():
        if isinstance(asset, dict):
            keys |= set(asset)
    return {k.split(":", 1)[0] for k in keys if ":" in k}


def _lists(listed: list[Any], extension: str) -> bool:
    return any(isinstance(e, str) and (e == extension or f"/{extension}/" in e) for e in listed)


def _check_schemas(doc: dict[str, Any], where: str, report: ValidationReport) -> None:
    kind, version = doc.get("type"), doc.get("stac_version")
    if not isinstance(version, str):
        report.problems.append(f"{where}: stac_version {version!r} is not a STAC version")
        return
    name = _KINDS.get(kind, "item")  # which versions are bundled: any kind will tell
    core = f"https://schemas.stacspec.org/v{version}/{name}-spec/json-schema/{name}.json"
    if _schema(core) is None:
        report.warnings.append(
            f"{where}: unsupported STAC version {version} (lazyraster validates STAC "
            "1.0.0-rc.1 to 1.1.0; pystac reads older files and saves them as 1.1.0)"
        )
        return
    if kind not in _KINDS:
        report.problems.append(f"{where}: type {kind!r} is not Catalog, Collection or Feature")
        return
    _schema_check(core, doc, where, report)
    listed = doc.get("stac_extensions") or []
    if not isinstance(listed, list):
        return  # the core schema has said so
    for entry in listed:
        uri = _extension_uri(entry, kind, STACVersionID(version))
        if uri is None or not _schema_check(uri, doc, where, report):
            report.unchecked_extensions.append(str(entry))
    for prefix in sorted(_used_prefixes(doc)):
        if prefix in _PREFIXES and not _lists(listed, _PREFIXES[prefix]):
            report.warnings.append(
                f"{where}: uses {prefix}: fields but does not list the "
                f"{_PREFIXES[prefix]} extension in stac_extensions"
            )


def validate_document(doc: dict[str, Any], *, name: str = "document") -> ValidationReport:
    """Validate one STAC document (a dict) against the bundled schemas, offline.

    The schema checks of :func:`validate_catalog` without reading links or files: the
    offline counterpart of :func:`pystac.validation.validate_dict`.

    Parameters
    ----------
    doc : dict
        A Catalog, Collection or Item as parsed JSON.
    name : str
        What to call the document in the report's lines.

    Returns
    -------
    ValidationReport
        ``ok`` is True when the document is valid.

    Examples
    --------
    >>> item = {"type": "Feature", "stac_version": "1.0.0", "id": "a", "links": [],
    ...         "assets": {}, "geometry": None, "properties": {"datetime": None}}
    >>> print(*validate_document(item, name="a.json").problems)  # doctest: +NORMALIZE_WHITESPACE
    a.json: properties/datetime: None should not be valid under {'type': 'null'}
    or properties: 'start_datetime' is a required property;
    properties: 'end_datetime' is a required property [STAC 1.0.0 item]
    >>> validate_document({**item, "stac_version": "0.9.0"}).warnings[0][:41]
    'document: unsupported STAC version 0.9.0 '
    """
    report = ValidationReport(objects=1)
    _check_schemas(doc, name, report)
    report.unchecked_extensions = sorted(set(report.unchecked_extensions))
    return report


def _local_path(href: str) -> str | None:
    """The path a local href stands for (percent-decoded, as the builder encodes it)."""
    if href.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlsplit(href).path)
    return None if "://" in href else _stac.decode_href(href)


def _resolve(href: str, base: Path) -> str:
    local = _local_path(href)
    return href if local is None else os.path.normpath(base.parent / local)


def _exists(target: str) -> bool:
    if "://" not in target:
        return os.path.exists(target)
    try:
        fs, path = fsspec.core.url_to_fs(target)
        return bool(fs.exists(path))
    except Exception:  # unreachable host, unknown protocol: the href does not resolve
        return False


def _multihash(path: str, expected: str) -> str | None:
    """Hex multihash of ``path`` with the function ``expected`` names; None if unknown."""
    try:
        raw = bytes.fromhex(expected)
    except ValueError:
        return None
    code, shift, i = 0, 0, 0
    while i < len(raw):  # the function code is an unsigned varint
        code |= (raw[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not raw[i - 1] & 0x80:
            break
    if code not in _MULTIHASH or i >= len(raw):
        return None
    length = raw[i]
    options = {"digest_size": length} if _MULTIHASH[code] == "blake2b" else {}
    digest = hashlib.new(_MULTIHASH[code], **options)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return (raw[: i + 1] + digest.digest()).hex()


def _check_file(
    key: str, asset: dict[str, Any], path: str, where: str, checksum: bool, report: ValidationReport
) -> None:
    size = asset.get("file:size")
    actual = os.path.getsize(path)
    if isinstance(size, int) and size != actual:
        report.problems.append(
            f"{where}: asset {key!r} file:size is {size} but {path} has {actual} bytes "
            "(rebuild the catalog, or restore the file)"
        )
    expected = asset.get("file:checksum")
    if not checksum or not isinstance(expected, str):
        return
    computed = _multihash(path, expected)
    if computed is None:
        report.warnings.append(
            f"{where}: asset {key!r} file:checksum {expected[:8]}...: unknown hash function"
        )
    elif computed != expected.lower():
        report.problems.append(
            f"{where}: asset {key!r} file:checksum does not match {path} "
            "(rebuild the catalog with --checksum, or restore the file)"
        )


def _check_hrefs(
    path: Path, doc: dict[str, Any], where: str, checksum: bool, report: ValidationReport
) -> None:
    for link in _field(doc, "links", list):
        if isinstance(link, dict) and link.get("rel") in _LINKS_THAT_RESOLVE:
            href = link.get("href")
            if not isinstance(href, str) or not _exists(_resolve(href, path)):
                report.problems.append(f"{where}: {link.get('rel')} link {href!r} does not resolve")
    for key, asset in _field(doc, "assets", dict).items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str):
            continue  # the core schema reports it
        report.assets += 1
        target = _resolve(href, path)
        if not _exists(target):
            report.problems.append(f"{where}: asset {key!r} href {href!r} does not resolve")
        elif "://" not in target and os.path.isfile(target):
            _check_file(key, asset, target, where, checksum, report)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CatalogError(f"{path} is not a readable STAC JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"{path} is not a readable STAC JSON file (not a JSON object)")
    return doc


def _walk(root: Path, problems: list[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield every document ``root`` reaches through child and item links, once each.

    Depth first, without recursion; a child link back to a catalog on the path that led
    to it (the same file, also through a symlink) is reported as a cycle, not followed.
    """
    Chain = tuple[tuple[str, Path], ...]  # (real path, path as reached) from the root
    stack: list[tuple[Path, dict[str, Any], Chain]] = [(root, _read(root), ())]
    seen: set[str] = set()
    while stack:
        path, doc, chain = stack.pop()
        key = os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        yield path, doc
        chain = (*chain, (key, path))
        ancestors = [real for real, _ in chain]
        children = []
        for link in _field(doc, "links", list):
            rel = link.get("rel") if isinstance(link, dict) else None
            href = link.get("href") if rel in ("child", "item") else None
            if not isinstance(href, str) or _local_path(href) is None:
                continue  # remote documents are not walked; hrefs are checked elsewhere
            target = Path(_resolve(href, path))
            real = os.path.realpath(target)
            if rel == "child" and real in ancestors:
                loop = [str(p) for _, p in chain[ancestors.index(real) :]]
                problems.append(
                    f"{path}: child link {href!r} makes a cycle: {' -> '.join(loop)} -> {target}"
                )
            elif real not in seen:
                try:
                    children.append((target, _read(target), chain))
                except CatalogError as exc:
                    problems.append(f"{path}: {rel} link {href!r}: {exc}")
        stack.extend(reversed(children))


def _documents(start: Path, problems: list[str]) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """(file, name in messages, document) for a catalog tree, an Item or a FeatureCollection."""
    doc = _read(start)
    if doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            problems.append(f"{start}: features is not a list")
            return
        for i, feature in enumerate(features):
            name = feature.get("id") if isinstance(feature, dict) else None
            where = f"{start}: features/{i} ({name})"
            if not isinstance(feature, dict):
                problems.append(f"{where}: not a JSON object")
                continue
            yield start, where, feature
        return
    for path, document in _walk(start, problems):
        yield path, str(path), document


def validate_catalog(
    catalog: str | os.PathLike[str],
    *,
    check_hrefs: bool = True,
    checksum: bool = False,
) -> ValidationReport:
    """Validate a static catalog, an Item or an ItemCollection, offline.

    Each catalog, collection and item is checked against the bundled schema of the STAC
    version it names and of each extension it lists, as pystac judges them; an
    extension whose schema is not bundled, and a document of a version before
    1.0.0-rc.1, are listed as not checked, not as failures. Using ``proj:``, ``eo:``,
    ``raster:``, ``file:`` or ``sat:`` fields without listing that extension (any
    version) is a warning. Child links that lead back to a catalog on the path to them
    are reported as a cycle and not followed.

    Parameters
    ----------
    catalog : path
        Catalog folder or its ``catalog.json``; or a STAC Item file; or a
        FeatureCollection of items (what a STAC API search returns), each validated.
    check_hrefs : bool
        Check that links and asset hrefs resolve (local paths exist; URLs are asked
        through fsspec), and that each local asset file has the ``file:size`` the
        catalog states.
    checksum : bool
        Also check ``file:checksum`` of each local asset file (reads every byte).

    Returns
    -------
    ValidationReport
        ``ok`` is True when nothing is wrong; ``problems`` lists one line per fault.

    Raises
    ------
    CatalogError
        When ``catalog`` itself cannot be read.

    Examples
    --------
    >>> import datetime, tempfile, pystac
    >>> item = pystac.Item("a", None, None, datetime.datetime(2023, 4, 30), {})
    >>> catalog = pystac.Catalog("c", "one item")
    >>> _ = catalog.add_item(item)
    >>> folder = tempfile.mkdtemp()
    >>> catalog.normalize_and_save(folder, pystac.CatalogType.SELF_CONTAINED)
    >>> report = validate_catalog(folder)
    >>> report.ok, report.objects, report.assets
    (True, 2, 0)
    """
    start = _tree.root_file(catalog)
    report = ValidationReport()
    for path, where, doc in _documents(start, report.problems):
        report.objects += 1
        _check_schemas(doc, where, report)
        if check_hrefs:
            _check_hrefs(path, doc, where, checksum, report)
    report.unchecked_extensions = sorted(set(report.unchecked_extensions))
    return report
