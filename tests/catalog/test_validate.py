"""``validate_catalog``: the published schemas offline, judged as pystac judges, on real files.

The references are made outside lazyraster: ``example-info.csv`` (which STAC examples are
valid), pystac's own ``JsonSchemaSTACValidator`` run offline over the same bundled
schemas, digests computed here with hashlib, and real items served by public STAC APIs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_specifications
import pystac
import pytest
import referencing
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from pystac.serialization.identify import STACVersionID
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

from lazyraster.catalog import build_catalog, validate_catalog
from lazyraster.catalog._validate import (
    _bundled_uris,
    _registry,
    _schema,
    _validator,
    validate_document,
)
from lazyraster.cli import main
from lazyraster.errors import CatalogError
from lazyraster.testing import write_safe, write_sample_cog

DATA = Path(__file__).parents[1] / "data"
EXAMPLES = DATA / "stac-examples"
API_ITEMS = DATA / "stac-api-items"


class BundledSchemas(JsonSchemaSTACValidator):
    """pystac's own validator, reading lazyraster's bundled schemas instead of the web."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            schema = _schema(schema_uri)
            if schema is None:
                raise GetSchemaError(schema_uri, FileNotFoundError(schema_uri))
            self.schema_cache[schema_uri] = schema
        return self.schema_cache[schema_uri]

    @property
    def registry(self) -> Any:
        """The same bundled files, crawled once (pystac re-crawls them for every call)."""
        return _registry()


PEER = BundledSchemas()


def pystac_verdict(doc: dict[str, Any]) -> bool | None:
    """True/False as pystac validates ``doc`` offline; None when a schema is not bundled."""
    try:
        pystac.validation.validate_dict(doc, validator=PEER)
    except GetSchemaError:
        return None
    except pystac.STACValidationError:
        return False
    return True


@pytest.fixture(autouse=True)
def _quiet_pystac(caplog):
    """pystac logs a traceback for each schema it cannot get; those are expected here."""
    caplog.set_level("CRITICAL", logger="pystac.validation.stac_validator")


def example_rows() -> list[tuple[str, str, bool]]:
    with (EXAMPLES / "example-info.csv").open() as f:
        return [(r[0], r[2], not (len(r) > 4 and r[4] == "INVALID")) for r in csv.reader(f)]


def unsupported(report) -> bool:
    return any("unsupported STAC version" in w for w in report.warnings)


# --------------------------------------------------------------- STAC examples vs CSV
def test_examples_agree_with_example_info_file_by_file():
    rows = example_rows()
    assert len(rows) == 125
    ours = peer = checked = 0
    disagreements = []
    for path, version, valid in rows:
        if not (EXAMPLES / path).exists():  # not copied: only pre-1.0 files were left out
            assert STACVersionID(version) < "1.0.0-rc.1", path
            continue
        doc = json.loads((EXAMPLES / path).read_text())
        report = validate_document(doc, name=path)
        if STACVersionID(version) < "1.0.0-rc.1":
            assert report.ok and unsupported(report), path
            continue
        assert report.unchecked_extensions == [], path  # every schema they list is bundled
        checked += 1
        ours += report.ok == valid
        peer += pystac_verdict(doc) == valid
        if report.ok != valid:
            disagreements.append((path, report.problems))
    assert disagreements == []
    assert (checked, ours, peer) == (11, 11, 11)


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("1.*/**/*.json"))
)
def test_every_supported_example_as_pystac_judges_it(path):
    """All 1.0.0-rc.1 to 1.1.0 examples, in the CSV or not: our verdict is pystac's."""
    doc = json.loads((EXAMPLES / path).read_text())
    report = validate_document(doc, name=path)
    assert report.unchecked_extensions == []
    assert pystac_verdict(doc) is True
    assert report.ok, report.problems


BREAKAGES = [
    ("no id", lambda d: d.pop("id")),
    ("links not a list", lambda d: d.update(links={})),
    ("stac_extensions not a list", lambda d: d.update(stac_extensions="eo")),
    ("bad link", lambda d: d.update(links=[{"rel": "self"}])),
]
ITEM_BREAKAGES = [
    ("bbox of strings", lambda d: d.update(bbox=["a", "b", "c", "d"])),
    ("datetime not UTC", lambda d: d["properties"].update(datetime="2020-12-11T22:38:32")),
    ("asset without href", lambda d: next(iter(d["assets"].values())).pop("href")),
    ("eo:cloud_cover 101", lambda d: d["properties"].update({"eo:cloud_cover": 101})),
    ("view:sun_elevation text", lambda d: d["properties"].update({"view:sun_elevation": "x"})),
    ("proj:shape of 3", lambda d: d["properties"].update({"proj:shape": [1, 2, 3]})),
]


BROKEN = [
    "1.0.0/extended-item.json",
    "1.1.0/extended-item.json",
    "1.0.0-RC1/extended-item.json",
    "1.0.0/collection.json",
    "1.1.0/catalog.json",
]


@pytest.mark.parametrize(
    ("path", "breakage"),
    [(p, b) for p in BROKEN for b in BREAKAGES + (ITEM_BREAKAGES if "item" in p else [])],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_broken_examples_judged_as_pystac_judges_them(path, breakage):
    doc = json.loads((EXAMPLES / path).read_text())
    breakage[1](doc)
    report = validate_document(doc, name=path)
    assert pystac_verdict(doc) is report.ok
    still_valid = {("1.0.0-RC1/extended-item.json", "datetime not UTC")}  # no UTC rule in rc.1
    assert report.ok is ((path, breakage[0]) in still_valid)
    assert all(line.startswith(f"{path}: ") and line.endswith("]") for line in report.problems)


def test_pre_1_0_files_are_unsupported_not_invalid():
    report = validate_catalog(EXAMPLES / "hand-0.9.0" / "collection.json", check_hrefs=False)
    assert report.ok and report.objects == 2
    assert [w.split(": ", 1)[1][:33] for w in report.warnings] == [
        "unsupported STAC version 0.9.0 (l"
    ] * 2


def test_rc1_short_extension_ids_are_checked_with_the_rc1_schemas():
    doc = json.loads((EXAMPLES / "1.0.0-RC1/extended-item.json").read_text())
    assert doc["stac_extensions"] == ["eo", "projection", "scientific", "view"]
    doc["properties"]["view:off_nadir"] = 120  # the rc.1 view schema allows 0 to 90
    report = validate_document(doc)
    assert report.problems == [
        "document: properties/view:off_nadir: 120 is greater than the maximum of 90 "
        "[STAC 1.0.0-rc.1 view]"
    ]
    assert pystac_verdict(doc) is False


# ----------------------------------------------------------- items served by real APIs
# Verified by reading the files and the schemas: Earth Search adds s2:sequence, which the
# sentinel-2 v1.0.0 schema does not define (it forbids unknown s2: fields); the landsat-8
# and ASTER items use common names lwir2 and swir, outside the eo v1.x list; two
# Planetary Computer landsat-8 items lack bbox (required with a geometry), one also
# lacks asset hrefs (a search with the fields extension).
API_FAILURES = {
    "earth-search__sentinel-2-l1c.json": ("'s2:sequence' does not match", 4),
    "earth-search__sentinel-2-l2a.json": ("'s2:sequence' does not match", 4),
    "github-raw__landsat-8-l1.json": ("'lwir2' is not one of", 3),
    "planetarycomputer__aster-l1t.json": ("'swir' is not one of", 14),
    "planetarycomputer__landsat-8-c2-l2.json": ("'bbox' is a required property or geometry", 11),
}


@pytest.mark.parametrize("name", sorted(p.name for p in API_ITEMS.glob("*.json")))
def test_api_items_as_pystac_judges_them(name):
    collection = json.loads((API_ITEMS / name).read_text())
    report = validate_catalog(API_ITEMS / name, check_hrefs=False)
    assert report.objects == len(collection["features"]) > 0
    failing = {line.split(": ")[1] for line in report.problems}
    for i, feature in enumerate(collection["features"]):
        ours = f"features/{i} ({feature['id']})" not in failing
        if STACVersionID(feature["stac_version"]) < "1.0.0-rc.1":
            assert ours and unsupported(report)
        else:
            assert pystac_verdict(feature) in (ours, None), feature["id"]
    # every extension these APIs list is bundled, but for the USGS landsat schema
    assert all("landsat.usgs.gov" in uri for uri in report.unchecked_extensions)
    if name in API_FAILURES:
        reason, count = API_FAILURES[name]
        assert len(report.problems) == count and reason in report.problems[0]
    else:
        assert report.ok, report.problems


def test_real_extension_versions_are_each_checked():
    """projection v1.0-v2.0, eo v1.0-v2.0, raster, sat, view, ... as real catalogs list them."""
    listed = set()
    for path in [*API_ITEMS.glob("*.json"), *EXAMPLES.glob("1.*/**/*.json")]:
        doc = json.loads(path.read_text())
        for feature in doc.get("features", [doc]):
            listed |= {u for u in feature.get("stac_extensions", []) if "://" in u}
    missing = sorted(u for u in listed if _schema(u) is None)
    assert missing == [
        "https://landsat.usgs.gov/stac/landsat-extension/v1.1.0/schema.json",
        "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
    ]
    for name in [
        "projection/v1.0.0",
        "projection/v1.1.0",
        "projection/v2.0.0",
        "eo/v1.0.0",
        "eo/v2.0.0",
        "raster/v1.1.0",
        "sat/v1.0.0",
        "view/v1.0.0",
        "file/v2.1.0",
    ]:
        assert f"https://stac-extensions.github.io/{name}/schema.json" in listed


def test_an_unbundled_schema_is_not_checked_never_a_failure():
    doc = json.loads((EXAMPLES / "1.0.0/core-item.json").read_text())
    doc["stac_extensions"] = ["https://example.org/unknown/v1.0.0/schema.json", "relative.json"]
    report = validate_document(doc)
    assert report.ok
    assert report.unchecked_extensions == [
        "https://example.org/unknown/v1.0.0/schema.json",
        "relative.json",
    ]


# ------------------------------------------------------- catalogs lazyraster writes
@pytest.fixture
def built_catalog(tmp_path) -> Path:
    """A catalog as ``build_catalog`` writes it, over two COGs and a SAFE folder."""
    write_sample_cog(tmp_path / "cogs" / "20230430_B04.tif")
    write_sample_cog(tmp_path / "cogs" / "20230430_B08.tif", seed=1)
    write_safe(tmp_path / "s2", size_10m=6, bands={"10m": ["B04", "B08"], "20m": ["SCL"]})
    out = tmp_path / "stac"
    sources = [tmp_path / "cogs", tmp_path / "s2"]
    assert build_catalog(sources, out, pattern="{date}_{band}.tif", checksum=True).ok
    return out


def test_validate_accepts_what_build_writes(built_catalog):
    """Our verdict and pystac's agree: the builder writes valid projection v2.0.0 items."""
    report = validate_catalog(built_catalog, checksum=True)
    docs = [json.loads(p.read_text()) for p in built_catalog.glob("*.json")]
    assert report.ok, report.problems
    assert report.objects == len(docs) == 3
    assert report.assets == sum(len(d.get("assets", {})) for d in docs)
    for doc in docs:
        assert pystac_verdict(doc) is True


def pystac_catalog(folder: Path) -> tuple[Path, Path]:
    """A catalog written by pystac, with one item whose asset has file:size: (item, file)."""
    data = write_sample_cog(folder / "data" / "a.tif")
    props = {"start_datetime": "2020-01-01T00:00:00Z", "end_datetime": "2020-12-31T00:00:00Z"}
    point = {"type": "Point", "coordinates": [4.4, 51.4]}
    item = pystac.Item("a", point, [4.4, 51.4, 4.4, 51.4], None, {**props, "eo:cloud_cover": 3.0})
    asset = pystac.Asset(str(data), media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset("red", asset)
    ProjectionExtension.ext(asset, add_if_missing=True).apply(
        code="EPSG:32631", shape=[32, 32], transform=[10, 0, 600000, 0, -10, 5700000]
    )
    EOExtension.ext(asset, add_if_missing=True).apply(bands=[Band.create("B04", common_name="red")])
    RasterExtension.ext(asset, add_if_missing=True).apply(
        bands=[RasterBand.create(nodata=0, data_type=DataType.UINT16, scale=1e-4, offset=-0.1)]
    )
    FileExtension.ext(asset, add_if_missing=True).apply(size=data.stat().st_size)
    catalog = pystac.Catalog("c", "made by pystac")
    catalog.add_item(item)
    catalog.normalize_and_save(str(folder / "stac"), pystac.CatalogType.SELF_CONTAINED)
    return folder / "stac" / "a" / "a.json", data


def test_validate_accepts_a_pystac_written_catalog(tmp_path):
    item_path, _ = pystac_catalog(tmp_path)
    report = validate_catalog(tmp_path / "stac", checksum=True)
    assert report.ok, report.problems
    assert (report.objects, report.assets, report.warnings) == (2, 1, [])
    assert pystac_verdict(json.loads(item_path.read_text())) is True


def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["properties"].update(datetime="30/04/2023"), "properties/datetime: '30/04"),
        (lambda d: d["properties"].pop("start_datetime"), "'start_datetime' is a required"),
        (lambda d: d["assets"]["red"].update({"proj:shape": [6]}), "[projection v2.0.0]"),
        (lambda d: d["assets"]["red"].update({"file:checksum": "XYZ"}), "[file v2.1.0]"),
        (lambda d: d["assets"]["red"].update(href="../nowhere.tif"), "does not resolve"),
        (lambda d: d.pop("bbox"), "'bbox' is a required property"),
        (lambda d: d.update(stac_version=1.1), "stac_version 1.1 is not a STAC version"),
        (lambda d: d.update(type="Item"), "type 'Item' is not Catalog, Collection or Feature"),
    ],
)
def test_validate_reports_each_fault_on_one_line(tmp_path, change, message):
    item_path, _ = pystac_catalog(tmp_path)
    edit(item_path, change)
    report = validate_catalog(tmp_path / "stac")
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith(str(item_path)) and message in report.problems[0]


def test_fields_of_an_unlisted_extension_are_a_warning(tmp_path):
    """As in the valid 1.0.0/example-sentinel2.json, which uses raster: without listing it."""
    item_path, _ = pystac_catalog(tmp_path)
    edit(item_path, lambda d: d["stac_extensions"].remove(
        "https://stac-extensions.github.io/eo/v1.1.0/schema.json"))  # fmt: skip
    report = validate_catalog(tmp_path / "stac")
    assert report.ok
    assert report.warnings == [
        f"{item_path}: uses eo: fields but does not list the eo extension in stac_extensions"
    ]


def test_missing_child_and_broken_json_are_reported(tmp_path):
    pystac_catalog(tmp_path)
    root = tmp_path / "stac" / "catalog.json"
    edit(root, lambda d: d["links"].append({"rel": "child", "href": "./gone/catalog.json"}))
    (tmp_path / "stac" / "a" / "a.json").write_text("{broken")
    report = validate_catalog(tmp_path / "stac")
    assert any("child link './gone/catalog.json': " in p for p in report.problems)
    assert any("item link './a/a.json': " in p and "not a readable STAC JSON" in p
               for p in report.problems)  # fmt: skip
    with pytest.raises(CatalogError, match="lazyraster catalog build"):
        validate_catalog(tmp_path / "nothing")


# ------------------------------------------------------------ issue 14: cycles, files
def test_a_catalog_linking_to_itself_is_a_cycle(tmp_path):
    pystac_catalog(tmp_path)
    root = tmp_path / "stac" / "catalog.json"
    edit(root, lambda d: d["links"].append({"rel": "child", "href": "./catalog.json"}))
    report = validate_catalog(tmp_path / "stac")
    assert report.objects == 2
    assert report.problems == [
        f"{root}: child link './catalog.json' makes a cycle: {root} -> {root}"
    ]


def test_a_cycle_through_a_chain_of_catalogs(tmp_path):
    """a -> b -> c -> b, and a -> c -> b -> c: each loop reported, the walk ends."""
    folder = tmp_path / "stac"
    for name, children in {"a": ["b", "c"], "b": ["c"], "c": ["b"]}.items():
        (folder / name).mkdir(parents=True)
        links = [{"rel": "child", "href": f"../{c}/catalog.json"} for c in children]
        doc = pystac.Catalog(name, name).to_dict(include_self_link=False)
        doc["links"] = links
        (folder / name / "catalog.json").write_text(json.dumps(doc))
    report = validate_catalog(folder / "a")
    assert report.objects == 3
    b, c = (folder / n / "catalog.json" for n in "bc")
    assert report.problems == [
        f"{c}: child link '../b/catalog.json' makes a cycle: {b} -> {c} -> {b}"
    ]


def test_a_symlinked_folder_that_loops_is_a_cycle(tmp_path):
    pystac_catalog(tmp_path)
    root = tmp_path / "stac" / "catalog.json"
    (tmp_path / "stac" / "again").symlink_to(tmp_path / "stac")
    edit(root, lambda d: d["links"].append({"rel": "child", "href": "./again/catalog.json"}))
    report = validate_catalog(tmp_path / "stac")
    assert len(report.problems) == 1 and "makes a cycle" in report.problems[0]


def test_file_size_is_checked_against_the_file(tmp_path):
    item_path, data = pystac_catalog(tmp_path)
    size = data.stat().st_size
    with data.open("r+b") as f:
        f.truncate(size - 100)
    report = validate_catalog(tmp_path / "stac")
    assert report.problems == [
        f"{item_path}: asset 'red' file:size is {size} but {data} has {size - 100} bytes "
        "(rebuild the catalog, or restore the file)"
    ]
    assert validate_catalog(tmp_path / "stac", check_hrefs=False).ok


@pytest.mark.parametrize(
    ("algorithm", "prefix"),
    [("sha256", "1220"), ("sha512", "1340"), ("md5", "d50110"), ("sha1", "1114")],
)
def test_file_checksum_is_checked_when_asked(tmp_path, algorithm, prefix):
    item_path, data = pystac_catalog(tmp_path)
    digest = hashlib.new(algorithm, data.read_bytes()).hexdigest()
    edit(item_path, lambda d: d["assets"]["red"].update({"file:checksum": prefix + digest}))
    assert validate_catalog(tmp_path / "stac", checksum=True).ok
    payload = bytearray(data.read_bytes())
    payload[-1] ^= 0xFF  # same size, other bytes
    data.write_bytes(payload)
    assert validate_catalog(tmp_path / "stac").ok  # size only
    report = validate_catalog(tmp_path / "stac", checksum=True)
    assert report.problems == [
        f"{item_path}: asset 'red' file:checksum does not match {data} "
        "(rebuild the catalog with --checksum, or restore the file)"
    ]


def test_an_unknown_hash_function_is_not_checked(tmp_path):
    item_path, _ = pystac_catalog(tmp_path)
    edit(item_path, lambda d: d["assets"]["red"].update({"file:checksum": "1e20" + "0" * 64}))
    report = validate_catalog(tmp_path / "stac", checksum=True)
    assert report.ok
    assert report.warnings == [
        f"{item_path}: asset 'red' file:checksum 1e200000...: unknown hash function"
    ]


def test_a_file_url_asset_is_checked_like_a_path(tmp_path):
    item_path, data = pystac_catalog(tmp_path)
    edit(item_path, lambda d: d["assets"]["red"].update(href=data.as_uri()))
    assert validate_catalog(tmp_path / "stac").ok
    data.write_bytes(b"short")
    assert "file:size is" in validate_catalog(tmp_path / "stac").problems[0]


# ---------------------------------------------------------------------------- CLI
def test_cli_on_real_examples_and_api_items(runner):
    result = runner.invoke(main, ["catalog", "validate", str(EXAMPLES / "1.1.0"), "--no-hrefs"])
    assert result.exit_code == 0, result.output
    assert result.output == "valid: 6 STAC objects, 0 asset hrefs\n"

    failing = API_ITEMS / "earth-search__sentinel-2-l2a.json"
    result = runner.invoke(main, ["catalog", "validate", str(failing), "--no-hrefs"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 4 + 1 and lines[-1] == f"Error: 4 problem(s) in {failing}"
    assert all("s2:sequence" in line and "[sentinel-2 v1.0.0]" in line for line in lines[:4])

    old = EXAMPLES / "hand-0.9.0"
    result = runner.invoke(
        main, ["catalog", "validate", str(old / "collection.json"), "--no-hrefs"]
    )
    assert result.exit_code == 0
    assert result.output.count("warning: ") == 2 and "unsupported STAC version 0.9.0" in (
        result.output
    )
    assert result.output.endswith(
        "valid: 2 STAC objects, 0 asset hrefs (2 warning(s), see above)\n"
    )

    landsat = API_ITEMS / "planetarycomputer__landsat-c2-l2.json"
    result = runner.invoke(main, ["catalog", "validate", str(landsat), "--no-hrefs"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "not checked (no bundled schema): "
        "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
        "valid: 7 STAC objects, 0 asset hrefs (1 extension schema(s) not checked, see above)",
    ]


def test_cli_reports_a_cycle_and_a_bad_file_then_exits_non_zero(runner, tmp_path):
    item_path, data = pystac_catalog(tmp_path)
    root = tmp_path / "stac" / "catalog.json"
    edit(root, lambda d: d["links"].append({"rel": "child", "href": "./catalog.json"}))
    shutil.copyfile(data, data.with_suffix(".bak"))
    data.write_bytes(data.read_bytes()[:-1] + b"\0")  # same size, one byte changed
    result = runner.invoke(main, ["catalog", "validate", "stac"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "stac/catalog.json: child link './catalog.json' makes a cycle: "
        "stac/catalog.json -> stac/catalog.json",
        "Error: 1 problem(s) in stac",
    ]
    result = runner.invoke(main, ["catalog", "validate", "stac", "--checksum"])
    assert result.exit_code == 1 and "Error: 1 problem(s) in stac" in result.output
    original = hashlib.sha256(data.with_suffix(".bak").read_bytes()).hexdigest()
    edit(item_path, lambda d: d["assets"]["red"].update({"file:checksum": "1220" + original}))
    result = runner.invoke(main, ["catalog", "validate", "stac", "--checksum"])
    assert "file:checksum does not match" in result.output and "Error: 2 problem(s)" in (
        result.output
    )


def test_cli_no_hrefs_skips_links_and_files(runner, tmp_path):
    _, data = pystac_catalog(tmp_path)
    data.unlink()
    result = runner.invoke(main, ["catalog", "validate", "stac"])
    assert (
        result.exit_code == 1 and "href" in result.output and "does not resolve" in (result.output)
    )
    result = runner.invoke(main, ["catalog", "validate", "stac", "--no-hrefs"])
    assert result.exit_code == 0 and result.output == "valid: 2 STAC objects, 0 asset hrefs\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(links=5), "links: 5 is not of type 'array'"),
        (lambda d: d.update(assets=["a"]), "assets: ['a'] is not of type 'object'"),
        (lambda d: d.update(properties="x"), "properties: 'x' is not of type 'object'"),
        (lambda d: d["links"].append("up"), "links/2: 'up' is not of type 'object'"),
        (lambda d: d["assets"].update(red=3), "assets/red: 3 is not of type 'object'"),
        (lambda d: d.update(stac_extensions=[{}]), "stac_extensions/0: {} is not of type"),
    ],
)
def test_hostile_shapes_are_reported_not_raised(tmp_path, change, message):
    item_path, _ = pystac_catalog(tmp_path)
    edit(item_path, change)
    report = validate_catalog(tmp_path / "stac", checksum=True)
    assert any(message in p for p in report.problems), report.problems


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    (tmp_path / "catalog.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CatalogError, match="is not a readable STAC JSON file"):
        validate_catalog(tmp_path)


def test_every_bundled_schema_is_valid_and_resolves_offline():
    """Each file is a valid draft-07 schema at its URL, and every $ref it makes resolves."""
    folder = resources.files("lazyraster.catalog").joinpath("schemas")
    uris = list(_bundled_uris(folder, "https:/"))
    assert len(uris) == 118
    resolver = _registry().combine(jsonschema_specifications.REGISTRY).resolver()
    for uri in uris:
        schema = _schema(uri)
        jsonschema.Draft7Validator.check_schema(schema)
        base = resolver.in_subresource(referencing.Resource.from_contents(schema))
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    base.lookup(node["$ref"])  # raises Unresolvable if it is not bundled
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)


def test_a_schema_refering_to_an_unbundled_one_is_not_checked(monkeypatch):
    from lazyraster.catalog import _validate as module

    uri = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
    broken = jsonschema.Draft7Validator(
        {"$ref": "https://example.org/x.json"}, registry=_registry()
    )
    monkeypatch.setattr(module, "_validator", lambda u: broken if u == uri else _validator(u))
    doc = json.loads((EXAMPLES / "1.1.0/core-item.json").read_text())
    doc["stac_extensions"] = [uri]
    report = validate_document(doc)
    assert report.ok and report.unchecked_extensions == []
    assert report.warnings == [
        "document: projection v2.0.0 refers to https://example.org/x.json, which is not bundled"
    ]
