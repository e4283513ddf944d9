"""Run code when another package is imported, without importing it first.

``import lazyraster`` must stay cheap (the ``lazyraster`` command parses its arguments
before anything heavy is loaded), yet the ``geo`` accessor must exist as soon as xarray
does, and the packaged defaults must be in ``dask.config`` before anyone reads or
overrides it. :func:`after_import` runs such a step at once if the module is already
imported, or else right after its import, whoever imports it. :func:`lazy_exports` gives
a package the PEP 562 hooks that load each public name's module on first use, and
:class:`CallableModule` lets a package be called as its main function
(``lazyraster.load(...)``) while staying the package (``lazyraster.load.resolve_items``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

__all__ = ["CallableModule", "after_import", "lazy_exports"]


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


def lazy_exports(
    package: str, homes: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package with lazy public names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    homes : mapping
        Public name -> the submodule (relative to ``package``) that defines it.
    submodules : iterable of str
        Submodules reachable as attributes without importing them first.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``, to bind at the package's top level. A name, once
        looked up, is bound in the package and costs nothing more.

    Examples
    --------
    >>> import types, sys
    >>> pkg = types.ModuleType("pkg")
    >>> sys.modules["pkg"] = pkg
    >>> pkg.__getattr__, pkg.__dir__ = lazy_exports("pkg", {}, ["json"])
    >>> "json" in pkg.__dir__()
    True
    """
    known = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes, *known})

    return __getattr__, __dir__


class CallableModule(ModuleType):
    """A package that is also its main function.

    ``lazyraster.load`` is the package of the loaders and ``lazyraster.load(...)`` calls
    :func:`lazyraster.load.load`: neither hides the other. The function is the module's
    ``__wrapped__``, so :func:`inspect.signature` and IDEs show its parameters.

    Examples
    --------
    >>> import inspect, lazyraster.cluster
    >>> str(inspect.signature(lazyraster.cluster)).startswith("(kind")
    True
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self) -> tuple[Callable[[str], ModuleType], tuple[str]]:
        return importlib.import_module, (self.__name__,)

    @classmethod
    def install(cls, package: str, function: Callable[..., Any]) -> None:
        """Make the (already imported) ``package`` callable as ``function``."""
        module = sys.modules[package]
        module.__class__ = cls
        module.__wrapped__ = function
