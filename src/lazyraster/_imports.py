"""Run code when another package is imported, without importing it first.

``import lazyraster`` must stay cheap (the ``lazyraster`` command parses its arguments
before anything heavy is loaded), yet the ``geo`` accessor must exist as soon as xarray
does, and the packaged defaults must be in ``dask.config`` before anyone reads or
overrides it. :func:`after_import` runs such a step at once if the module is already
imported, or else right after its import, whoever imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

__all__ = ["after_import"]


def after_import(name: str, callback: Callable[[ModuleType], object]) -> None:
    """Call ``callback(module)`` once the module ``name`` is imported.

    At once if it already is; otherwise right after the module's code has run, before
    the ``import`` statement that loads it returns.

    Examples
    --------
    >>> seen = []
    >>> after_import("json", lambda module: seen.append(module.__name__))
    >>> seen
    ['json']
    """
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    else:
        sys.meta_path.insert(0, _Finder(name, callback))


class _Finder:
    """Finds ``name`` with the other finders and wraps its loader, once.

    A meta path finder by protocol (``importlib.abc`` would cost the CLI 40 ms).
    """

    def __init__(self, name: str, callback: Callable[[ModuleType], object]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        # a look-up without import (``importlib.util.find_spec``) comes here too: this
        # finder leaves the meta path only once the module's code has run
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, self)
        return spec


class _Loader:
    """The module's own loader, then the callback; the module keeps its own loader."""

    def __init__(self, loader: Any, finder: _Finder) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        # the import system binds ``parent.child`` only after this returns; the
        # callback may already use it
        parent, _, child = module.__name__.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
        self.finder.callback(module)
