"""Real servers on loopback for the tests: nginx (files over HTTP) and a STAC API.

The fixtures here start the servers themselves through the scripts in
``scripts/services/`` and stop them at the end of the session, so ``make test`` needs
no extra step once the servers are *installed* (``scripts/services/nginx.sh install`` and
``scripts/services/stac-api.sh install``, which ``.ci/run`` does, never the tests). When
a server is not installed, or does not start, a test that needs it is skipped on a
laptop and fails in CI (``require_service`` in ``tests/conftest.py``).

Fixtures
--------
``nginx_server`` (session)
    nginx serving a temporary directory read-only, with range requests, on a free port
    (or ``LAZYRASTER_NGINX_PORT``, plus N on the xdist worker ``gwN``). Its state lives
    in ``.services/nginx-pytest/``, ``.services/nginx-pytest-gwN/`` on worker ``gwN``: each
    worker of ``pytest -n`` runs its own nginx.
``nginx`` (function)
    The same server seen from one test: a fresh directory under the served root, its
    base URL, and the access-log entries written during the test (``requests()``).
``stac_api`` (session)
    stac-fastapi-pgstac on PostgreSQL; reuses a server already running from
    ``.services/stac-api/`` (and leaves it running), otherwise starts one on free ports
    (or ``LAZYRASTER_STAC_API_PORT`` / ``LAZYRASTER_PGSTAC_PORT``) and stops it at the
    end. ``load(collection, items)`` loads test data under collection ids unique to the
    session (``unique_id``); they are deleted at the end of the session.

See ``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT, require_service

SCRIPTS = ROOT / "scripts" / "services"
NGINX_SH = SCRIPTS / "nginx.sh"
STAC_API_SH = SCRIPTS / "stac-api.sh"
#: The xdist worker running this session ("gw0", "gw1", ...), "" without xdist.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
NGINX_STATE = ROOT / ".services" / ("nginx-pytest" + (f"-{WORKER}" if WORKER else ""))
STAC_API_STATE = Path(os.environ.get("LAZYRASTER_STAC_API_STATE", ROOT / ".services" / "stac-api"))
MARK_PREFIX = "/.lazyraster-log-mark-"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(
    script: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one of the service scripts; return the CompletedProcess (never raises on rc)."""
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def nginx_installed() -> bool:
    """Whether an nginx binary is on PATH (or in /usr/sbin, which root's PATH may lack)."""
    return shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)


# --------------------------------------------------------------------------- nginx


@dataclass(frozen=True)
class AccessLogEntry:
    """One request from the nginx access log (one JSON object per line)."""

    method: str
    uri: str
    request: str
    status: int
    bytes: int
    range: str | None
    time: str

    @classmethod
    def parse(cls, line: str) -> AccessLogEntry:
        """Parse one line written with the ``lazyraster`` log format of nginx.sh."""
        record = json.loads(line)
        return cls(
            method=record["method"],
            uri=record["uri"],
            request=record["request"],
            status=int(record["status"]),
            bytes=int(record["bytes"]),
            range=record["range"] or None,
            time=record["time"],
        )


@dataclass
class NginxServer:
    """A running nginx serving ``root`` at ``url`` (no trailing slash)."""

    url: str
    root: Path
    access_log: Path
    _marks: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def url_for(self, path: str | os.PathLike[str]) -> str:
        """Return the URL of a file given by its path (absolute, or relative to the root)."""
        path = Path(path)
        relative = path.relative_to(self.root) if path.is_absolute() else path
        return f"{self.url}/{relative.as_posix()}"

    def log_position(self) -> int:
        """Return the current end of the access log; pass it to ``requests`` later."""
        self.sync()
        return self.access_log.stat().st_size

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until every request answered so far is in the access log.

        nginx writes a log line just after sending the response, so a client can see its
        answer a moment before the line exists. A marker request, made after everything
        else, is waited for; it is not reported by ``requests``.
        """
        marker = f"{MARK_PREFIX}{next(self._marks)}-{uuid.uuid4().hex}"
        with contextlib.suppress(urllib.error.HTTPError):  # a 404, as intended
            urllib.request.urlopen(self.url + marker, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.encode() in self.access_log.read_bytes():
                return
            time.sleep(0.01)
        raise TimeoutError(f"the marker request {marker} never reached {self.access_log}")

    def requests(self, since: int = 0) -> list[AccessLogEntry]:
        """Return the requests logged after byte offset ``since`` (see ``log_position``)."""
        self.sync()
        with self.access_log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode().splitlines()
        entries = [AccessLogEntry.parse(line) for line in lines if line.strip()]
        return [e for e in entries if not e.uri.startswith(MARK_PREFIX)]


@dataclass
class NginxForTest:
    """The session's nginx seen from one test: its own directory and its own requests."""

    server: NginxServer
    root: Path
    start: int

    @property
    def url(self) -> str:
        """Base URL of this test's directory (no trailing slash)."""
        return self.server.url_for(self.root)

    def url_for(self, path: str | os.PathLike[str]) -> str:
        """Return the URL of a file in this test's directory (absolute or relative path)."""
        path = Path(path)
        return self.server.url_for(path if path.is_absolute() else self.root / path)

    def requests(self) -> list[AccessLogEntry]:
        """Return the requests nginx answered since this test began."""
        return self.server.requests(self.start)

    def publish(self, source: str | os.PathLike[str], name: str | None = None) -> str:
        """Copy a file or a directory tree (a static catalog) here; return its URL."""
        source = Path(source)
        target = self.root / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return self.url_for(target)


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    """Start nginx on a temporary root for the session, and stop it at the end."""
    how = f"{NGINX_SH.relative_to(ROOT)} install"
    if not nginx_installed():
        require_service(False, "nginx (not installed)", how)
    root = tmp_path_factory.mktemp("http-root")
    fixed = os.environ.get("LAZYRASTER_NGINX_PORT")
    port = str(int(fixed) + int(WORKER[2:] or 0)) if fixed else str(free_port())
    env = {"LAZYRASTER_NGINX_STATE": str(NGINX_STATE)}
    # A fresh log per session; `start` restarts a leftover nginx (its root differs).
    (NGINX_STATE / "access.log").unlink(missing_ok=True)
    started = run_script(NGINX_SH, "start", str(root), port, env=env)
    if started.returncode != 0:
        require_service(False, f"nginx (start failed: {started.stderr.strip()})", how)
    server = NginxServer(
        url=started.stdout.strip().splitlines()[-1],
        root=root.resolve(),
        access_log=NGINX_STATE / "access.log",
    )
    try:
        yield server
    finally:
        run_script(NGINX_SH, "stop", env=env)


@pytest.fixture
def nginx(nginx_server: NginxServer, request: pytest.FixtureRequest) -> NginxForTest:
    """Give a test its own served directory and the requests made during the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    root = nginx_server.root / f"{name}-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    return NginxForTest(server=nginx_server, root=root, start=nginx_server.log_position())


# ------------------------------------------------------------------------ STAC API


def stac_api_installed() -> bool:
    """Whether the server's virtualenv and PostgreSQL 15 + PostGIS are installed."""
    venv = STAC_API_STATE / "venv" / "bin"
    pg_bin = Path(os.environ.get("LAZYRASTER_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
    return (
        (venv / "uvicorn").exists()
        and (venv / "pypgstac").exists()
        and (pg_bin / "postgres").exists()
        and Path("/usr/share/postgresql/15/extension/postgis.control").exists()
    )


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


@dataclass
class StacApi:
    """A running STAC API at ``url``, with helpers to load this session's test data."""

    url: str
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    loaded: list[str] = field(default_factory=list)

    def unique_id(self, name: str) -> str:
        """Return a collection id unique to this test session, e.g. ``s2-test-1a2b3c4d``."""
        return f"{name}-{self.tag}"

    def load(self, collection: Any, items: Iterable[Any] = ()) -> None:
        """Load (upsert) a collection and its items (dicts or pystac objects).

        The collection is deleted, items included, at the end of the session.
        """
        collection = _as_dict(collection)
        items = [_as_dict(item) for item in items]
        for item in items:
            if item.get("collection") != collection["id"]:
                raise ValueError(
                    f"item {item.get('id')!r} belongs to {item.get('collection')!r}, not to "
                    f"{collection['id']!r}: set item['collection'] before loading"
                )
        stem = self.workdir / f"{collection['id']}-{uuid.uuid4().hex[:6]}"
        collection_file = stem.with_suffix(".collection.json")
        items_file = stem.with_suffix(".items.ndjson")
        collection_file.write_text(json.dumps(collection))
        items_file.write_text("".join(json.dumps(item) + "\n" for item in items))
        if collection["id"] not in self.loaded:
            self.loaded.append(collection["id"])
        done = run_script(STAC_API_SH, "load", str(collection_file), str(items_file))
        if done.returncode != 0:
            raise RuntimeError(f"stac-api.sh load failed:\n{done.stdout}\n{done.stderr}")

    def delete(self, *collection_ids: str) -> None:
        """Delete collections and their items (missing ids are ignored)."""
        done = run_script(STAC_API_SH, "delete", *collection_ids)
        if done.returncode != 0:
            raise RuntimeError(f"stac-api.sh delete failed:\n{done.stderr}")
        self.loaded = [c for c in self.loaded if c not in collection_ids]


@pytest.fixture(scope="session")
def stac_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacApi]:
    """A STAC API for the session: reused if running, else started here and stopped after."""
    how = f"{STAC_API_SH.relative_to(ROOT)} install"
    if not stac_api_installed():
        require_service(False, "the STAC API (stac-fastapi-pgstac; not installed)", how)
    was_running = run_script(STAC_API_SH, "status").returncode == 0
    if not was_running:
        # Free ports unless asked otherwise: another checkout's server may hold the defaults.
        ports = {
            "LAZYRASTER_STAC_API_PORT": os.environ.get("LAZYRASTER_STAC_API_PORT")
            or str(free_port()),
            "LAZYRASTER_PGSTAC_PORT": os.environ.get("LAZYRASTER_PGSTAC_PORT") or str(free_port()),
        }
        started = run_script(STAC_API_SH, "start", env=ports, timeout=300)
        if started.returncode != 0:
            require_service(False, f"the STAC API (start failed: {started.stderr.strip()})", how)
    url = run_script(STAC_API_SH, "url").stdout.strip()
    api = StacApi(url=url, workdir=tmp_path_factory.mktemp("stac-api"))
    try:
        yield api
    finally:
        try:
            if api.loaded:
                api.delete(*api.loaded)
        finally:
            if not was_running:
                run_script(STAC_API_SH, "stop")
