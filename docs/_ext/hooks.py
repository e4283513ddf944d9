"""mkdocs hooks: pages that list what the code defines are generated from it.

``<!-- geo-accessor-methods -->`` in a page becomes the table of the ``geo``
accessor's methods and the function each one calls, read from
:mod:`lazyraster.accessor`, so a method added there appears without editing the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKER = "<!-- geo-accessor-methods -->"


def _home(method: Any) -> str:
    """The shortest package (below the root) that exports the function ``method`` calls."""
    import importlib

    parts = [p for p in method.__module__.split(".") if not p.startswith("_")]
    for end in range(2, len(parts) + 1):
        package = ".".join(parts[:end])
        if getattr(importlib.import_module(package), method.__name__, None) is method.__wrapped__:
            return package.removeprefix("lazyraster.")
    raise LookupError(f"no lazyraster package exports {method.__name__}")


def _methods() -> dict[str, tuple[str, str, list[str]]]:
    """``{method: (package, function, [classes])}`` of the ``geo`` accessors.

    A method read from the class is the function it calls (its ``__module__`` is the
    private module of the package that defines it); old names are not functions.
    """
    import inspect

    from lazyraster.accessor import GeoDataArrayAccessor, GeoDatasetAccessor

    found: dict[str, tuple[str, str, list[str]]] = {}
    for cls, kind in ((GeoDatasetAccessor, "Dataset"), (GeoDataArrayAccessor, "DataArray")):
        for name in dir(cls):
            value = getattr(cls, name)
            if name.startswith("_") or not inspect.isfunction(value):
                continue
            found.setdefault(name, (_home(value), value.__name__, []))
            found[name][2].append(kind)
    return dict(sorted(found.items()))


def _table(docs: Path) -> str:
    rows = ["| method | on | calls |", "| --- | --- | --- |"]
    for name, (module, function, kinds) in _methods().items():
        target = f"lazyraster.{module}.{function}"
        documented = (docs / "api" / f"{module}.md").exists()
        calls = f"[`{target}`][{target}]" if documented else f"`{target}`"
        rows.append(f"| `.geo.{name}(...)` | {', '.join(kinds)} | {calls} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker by the generated table."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _table(Path(config["docs_dir"])))
