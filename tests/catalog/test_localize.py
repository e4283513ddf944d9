"""``localize_catalog`` and ``lazyraster catalog localize``: copies, names, roots, modes.

A catalog is untrusted input here: hrefs that leave the allowed roots (``..``, absolute
paths, ``file://``, links), file names shared by two assets, files already at the
destination, and source permissions are each checked against the files on disk and the
item JSON read back with pystac.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pystac
import pytest
from click.testing import CliRunner
from tests.catalog._support import DAYMET, item_files

import lazyraster
from lazyraster.catalog import build_catalog, localize_catalog, validate_catalog
from lazyraster.cli import main
from lazyraster.errors import CatalogError
from lazyraster.testing import write_sample_cog


def href_target(item_path: Path, key: str) -> Path:
    """The file an asset of the item JSON at ``item_path`` points at, read with pystac."""
    item = pystac.Item.from_file(str(item_path))
    return Path(item.assets[key].get_absolute_href())


def edit_item(path: Path, **assets: dict) -> None:
    """Update asset fields of the item JSON at ``path`` (``None`` removes a field)."""
    doc = json.loads(path.read_text())
    for key, fields in assets.items():
        asset = doc["assets"].setdefault(key, {"roles": ["data"]})
        for name, value in fields.items():
            if value is None:
                asset.pop(name, None)
            else:
                asset[name] = value
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------ copy, verify, resume


def test_localize_copies_verifies_rewrites_and_resumes(daymet_catalog, inputs, tmp_path):
    to = tmp_path / "local"
    report = localize_catalog(daymet_catalog, assets=["tmin", "tmax"], to=to, workers=3,
                              allow_roots=[inputs])  # fmt: skip
    assert report.ok and len(report.copied) == 8 and report.skipped == []
    for item_id, path in item_files(daymet_catalog).items():
        doc = json.loads(path.read_text())
        for key in ("tmin", "tmax"):
            target = href_target(path, key)
            assert target.parent == to / item_id
            assert not doc["assets"][key]["href"].startswith("/")  # relative
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            assert doc["assets"][key]["file:checksum"] == "1220" + digest
            assert target.read_bytes() == (inputs / "daymet" / target.name).read_bytes()
        assert href_target(path, "dayl").parent == inputs / "daymet"
    assert validate_catalog(daymet_catalog).ok
    again = localize_catalog(daymet_catalog, assets=["tmin", "tmax"], to=to)
    assert again.copied == [] and len(again.skipped) == 8


def test_localize_resumes_after_a_partial_copy_and_rejects_bad_copies(
    daymet_catalog, inputs, tmp_path
):
    to = tmp_path / "local"
    item_id = "daymet_v4_daily_na_2020"
    partial = to / item_id / "daymet_v4_daily_na_tmin_2020.nc"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a file")
    path = item_files(daymet_catalog)[item_id]
    edit_item(path, tmax={"file:checksum": "1220" + "0" * 64})  # the source no longer matches
    report = localize_catalog(daymet_catalog, assets=["tmin", "tmax"], to=to,
                              allow_roots=[inputs])  # fmt: skip
    assert len(report.failed) == 1 and "does not verify" in report.failed[0]
    assert str(partial) in report.copied  # the partial copy was replaced
    assert partial.read_bytes() == (inputs / "daymet" / partial.name).read_bytes()
    assert href_target(path, "tmax").parent == inputs / "daymet", "a failed asset keeps its href"
    assert href_target(path, "tmin") == partial
    assert sorted(p.name for p in (to / item_id).iterdir()) == [partial.name]  # no temporary


def test_localize_refuses_destinations_outside_dir(daymet_catalog, inputs, tmp_path):
    path = item_files(daymet_catalog)["daymet_v4_daily_na_2020"]
    doc = json.loads(path.read_text())
    doc["id"] = "../../escape"
    path.write_text(json.dumps(doc))
    with pytest.raises(CatalogError, match="outside"):
        localize_catalog(daymet_catalog, assets=["tmin"], to=tmp_path / "local",
                         allow_roots=[inputs])  # fmt: skip
    assert not (tmp_path / "local").exists() and not (tmp_path / "escape").exists()
    with pytest.raises(CatalogError, match=r"choose among \['dayl', 'tmax', 'tmin'\]"):
        localize_catalog(daymet_catalog, assets=["prcp"], to=tmp_path / "local")


@pytest.fixture
def http_root(inputs):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(inputs))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_localize_from_http(daymet_catalog, inputs, http_root, tmp_path):
    pytest.importorskip("aiohttp")
    for path in item_files(daymet_catalog).values():
        doc = json.loads(path.read_text())
        for asset in doc["assets"].values():
            asset["href"] = f"{http_root}/daymet/{Path(asset['href']).name}"
        path.write_text(json.dumps(doc))
    report = localize_catalog(daymet_catalog, assets=["dayl"], to=tmp_path / "local")
    assert report.ok and len(report.copied) == 4
    copied = tmp_path / "local" / "daymet_v4_daily_pr_2021" / "daymet_v4_daily_pr_dayl_2021.nc"
    assert copied.read_bytes() == (inputs / "daymet" / copied.name).read_bytes()
    assert oct(copied.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


# ------------------------------------------------------------------ a small hostile catalog


@pytest.fixture
def scene(tmp_path) -> Path:
    """A catalog in ``tmp/stac`` whose red and nir are ``d1/band.tif`` and ``d2/band.tif``."""
    write_sample_cog(tmp_path / "src" / "20230430_red.tif", shape=(8, 8))
    write_sample_cog(tmp_path / "src" / "20230430_nir.tif", shape=(8, 8), seed=1)
    report = build_catalog(tmp_path / "src", tmp_path / "stac", pattern="{date}_{band}.tif")
    assert report.ok
    # two assets whose files share a name, as in ``../d1/band.tif`` and ``../d2/band.tif``
    for key, folder in (("red", "d1"), ("nir", "d2")):
        (tmp_path / "stac" / folder).mkdir()
        os.rename(tmp_path / f"src/20230430_{key}.tif", tmp_path / "stac" / folder / "band.tif")
    item = tmp_path / "stac" / "20230430.json"
    edit_item(item, red={"href": "./d1/band.tif"}, nir={"href": "./d2/band.tif"})
    return item


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_assets_sharing_a_file_name_get_their_own_copies(scene, tmp_path):
    red, nir = tmp_path / "stac/d1/band.tif", tmp_path / "stac/d2/band.tif"
    assert red.read_bytes() != nir.read_bytes()
    assert "file:size" in json.loads(scene.read_text())["assets"]["red"]  # one .part on old code
    report = localize_catalog(tmp_path / "stac", assets=["red", "nir"], to=tmp_path / "local")
    assert report.ok and len(report.copied) == 2
    copies = {key: href_target(scene, key) for key in ("red", "nir")}
    assert copies == {key: tmp_path / "local" / "20230430" / key / "band.tif" for key in copies}
    assert copies["red"].read_bytes() == red.read_bytes()
    assert copies["nir"].read_bytes() == nir.read_bytes()
    again = localize_catalog(tmp_path / "stac", assets=["red", "nir"], to=tmp_path / "local")
    assert again.copied == [] and sorted(again.skipped) == sorted(map(str, copies.values()))


@pytest.mark.parametrize("fields", [{}, {"file:size": None}], ids=["size-only", "no-fields"])
def test_an_existing_file_is_kept_only_if_size_and_checksum_match(scene, tmp_path, fields):
    edit_item(scene, red={"href": "./d1/band.tif", "file:checksum": None, **fields})
    source = tmp_path / "stac/d1/band.tif"
    impostor = tmp_path / "local" / "20230430" / "band.tif"
    impostor.parent.mkdir(parents=True)
    impostor.write_bytes(bytes(source.stat().st_size))  # right size, wrong bytes
    report = localize_catalog(tmp_path / "stac", assets=["red"], to=tmp_path / "local")
    assert report.copied == [str(impostor)] and report.skipped == []
    assert impostor.read_bytes() == source.read_bytes()
    again = localize_catalog(tmp_path / "stac", assets=["red"], to=tmp_path / "local")
    assert again.skipped == [str(impostor)]


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_text("root:$6$secret")
    path.chmod(0o640)
    return path


@pytest.mark.parametrize(
    "href",
    [
        "../outside/shadow",
        "./d1/../../outside/shadow",
        "{secret}",
        "file://{secret}",
        "/etc/passwd",
        "../../../../../../../../etc/passwd",
        "./d1/link-out.tif",
        "simplecache::file://{secret}",
    ],
)
def test_hrefs_out_of_the_allowed_roots_are_refused(scene, tmp_path, secret, href):
    (tmp_path / "stac" / "d1" / "link-out.tif").symlink_to(secret)
    edit_item(scene, red={"href": href.format(secret=secret), "file:size": None})
    before = scene.read_text()
    with pytest.raises(CatalogError, match=r"outside|chained URL") as err:
        localize_catalog(tmp_path / "stac", assets=["red"], to=tmp_path / "local")
    assert "allow_roots" in str(err.value) or "chained" in str(err.value)
    assert not (tmp_path / "local").exists() and scene.read_text() == before


def test_allow_roots_lets_a_trusted_folder_in_and_modes_are_not_widened(scene, tmp_path, secret):
    edit_item(scene, red={"href": str(secret), "file:size": None, "file:checksum": None})
    report = localize_catalog(tmp_path / "stac", assets=["red", "nir"], to=tmp_path / "local",
                              allow_roots=[secret.parent])  # fmt: skip
    assert report.ok
    copy = href_target(scene, "red")
    assert copy.read_text() == "root:$6$secret"
    assert oct(copy.stat().st_mode & 0o777) == oct(0o640 & ~current_umask())
    nir = tmp_path / "stac/d2/band.tif"
    assert href_target(scene, "nir").stat().st_mode & 0o777 == nir.stat().st_mode & 0o666


def test_a_catalog_that_links_to_itself_is_walked_once(scene, tmp_path):
    root = tmp_path / "stac" / "catalog.json"
    doc = json.loads(root.read_text())
    doc["links"].append({"rel": "child", "href": "./catalog.json", "type": "application/json"})
    root.write_text(json.dumps(doc))
    report = localize_catalog(tmp_path / "stac", assets=["nir"], to=tmp_path / "local")
    assert report.ok and len(report.copied) == 1


LOCALIZE = (
    "import sys; from lazyraster.catalog import localize_catalog; "
    "r = localize_catalog(sys.argv[1], assets=['red', 'nir'], to=sys.argv[2], workers=2); "
    "sys.exit(0 if r.ok else 1)"
)


def test_concurrent_runs_into_one_folder_leave_whole_copies(scene, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(lazyraster.__file__).resolve().parents[1])}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", LOCALIZE, str(tmp_path / "stac"), str(tmp_path / "local")],
            env=env,
        )
        for _ in range(3)
    ]
    assert [run.wait() for run in runs] == [0, 0, 0]
    for key, folder in (("red", "d1"), ("nir", "d2")):
        copy = href_target(scene, key)
        assert copy.read_bytes() == (tmp_path / "stac" / folder / "band.tif").read_bytes()
        assert sorted(os.listdir(copy.parent)) == ["band.tif"]  # no temporary or lock left


# ------------------------------------------------------------------ command line


def test_cli_localize_needs_allow_root_for_data_outside_the_catalog(inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    build = ["catalog", "build", str(inputs / "daymet"), "--out", "stac", "--pattern", DAYMET,
             "--layout", "${region}", "--checksum"]  # fmt: skip
    assert runner.invoke(main, build).exit_code == 0
    localize = ["catalog", "localize", "stac", "--assets", "tmin,tmax", "--to", "local"]
    result = runner.invoke(main, localize)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--allow-root DIR" in result.output and "Nothing was copied" in result.output
    assert not Path("local").exists()
    result = runner.invoke(main, [*localize, "--allow-root", str(inputs)])
    assert result.exit_code == 0, result.output
    assert "8 copied, 0 already in place, 0 failed" in result.output
    (item,) = Path("stac").rglob("daymet_v4_daily_pr_2021.json")
    doc = json.loads(item.read_text())
    local = os.path.relpath("local", item.parent)
    assert doc["assets"]["tmin"]["href"] == (
        f"{local}/daymet_v4_daily_pr_2021/daymet_v4_daily_pr_tmin_2021.nc"
    )
    assert (
        href_target(item, "tmin").read_bytes()
        == (inputs / "daymet" / "daymet_v4_daily_pr_tmin_2021.nc").read_bytes()
    )
    result = runner.invoke(main, localize)  # the copies are in place: no root needed
    assert result.exit_code == 0 and "0 copied, 8 already in place" in result.output
    assert runner.invoke(main, ["catalog", "validate", "stac"]).exit_code == 0
    result = runner.invoke(main, [*localize, "--allow-root", "missing"])
    assert result.exit_code == 2 and "does not exist" in result.output
