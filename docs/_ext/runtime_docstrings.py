"""A griffe extension: docstrings completed at import time are read from the live object.

``lazyraster.focal`` fills its shared parameter and return sections into each
function's ``__doc__`` when the module is imported (``%(window_parameters)s``); griffe
reads the source, so without this the API page would show the placeholders.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


class RuntimeDocstrings(griffe.Extension):
    """Replace a docstring that holds a ``%(name)s`` placeholder by the imported one."""

    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        """Swap in the runtime ``__doc__`` of ``func`` where the source has placeholders."""
        if func.docstring is None or "%(" not in func.docstring.value:
            return
        live = getattr(importlib.import_module(func.module.path), func.name)
        func.docstring = griffe.Docstring(
            inspect.getdoc(live) or "", lineno=func.docstring.lineno, parent=func
        )
