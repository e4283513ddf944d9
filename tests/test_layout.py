"""The shape of the package: module sizes, public seams only, imports that flow one way.

These read the source with :mod:`ast` (only the rule on private methods of peers imports
the modules, to read their classes' MROs), so a rule broken anywhere in
``src/lazyraster`` fails here naming the module and the import that breaks it (no line
numbers, so the entries of :data:`PENDING` survive unrelated edits).

The rules are those of issue 16. What still breaks them is listed in :data:`PENDING`
(the splits and seams issue 16 has left to do): a new break fails, and so does an entry
that no longer breaks anything, so the list only shrinks.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src" / "lazyraster"
MAX_LINES = 600

#: Top-level private modules that are shared infrastructure: any package may use them.
SHARED = {"_imports", "_limits", "_paths", "_kernels"}

#: Layer of each stage: a module may import stages of its own layer or lower ones only
#: (``pipeline`` composes the stages, ``cli`` and the root sit on top of everything).
LAYER = {
    "errors": 0,
    "config": 0,
    "_imports": 0,
    "_limits": 0,
    "_paths": 0,
    "io": 1,
    "cluster": 1,
    "focal": 1,
    "indices": 1,
    "phenology": 1,
    "masking": 1,
    "plot": 1,  # beside io: reads COGs and Zarr stores, writes PNGs with io's atomic commit
    "catalog": 2,
    "load": 3,
    "accessor": 3,
    "testing": 4,
    "pipeline": 5,
    "_kernels": 5,  # warmup runs the whole stack on sample data, as a pipeline does
    "cli": 6,
}

#: Test modules a test module may import (shared helpers); any other is a test module.
TEST_HELPERS = {"conftest", "references", "services", "strategies", "_support", "_tasks"}

#: Peer modules whose insides we must not reach into (their public seams only).
PEER_PRIVATE = ("stackstac.rio_reader",)


#: Known breaks per rule, left to do under issue 16; remove an entry when its fix lands.
PENDING: dict[str, frozenset[str]] = {}


def _no_new(broken: list[str], rule: str) -> None:
    found, known = set(broken), PENDING.get(rule, frozenset())
    new = sorted(found - known)
    assert not new, f"{rule}:\n" + "\n".join(new)
    fixed = sorted(known - found)
    assert not fixed, f"fixed, remove from PENDING[{rule!r}]:\n" + "\n".join(fixed)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str:
    """``lazyraster.load._reader`` -> ``load``; ``lazyraster`` -> ``""`` (the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_submodule(name: str) -> bool:
    return (SRC / f"{name}.py").exists() or (SRC / name / "__init__.py").exists()


def _imports(path: Path) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` of every import; ``name`` is None for ``import x``."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name


def _targets(target: str, name: str | None) -> str:
    """The module reached: ``from lazyraster import focal`` reaches ``lazyraster.focal``."""
    if target == "lazyraster" and name is not None and _is_submodule(name):
        return f"lazyraster.{name}"
    return target


def _private(name: str | None) -> bool:
    return name is not None and name.startswith("_") and not name.startswith("__")


def _private_part(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[2:])


def test_every_module_is_under_600_lines() -> None:
    broken = []
    for path in _modules():
        if len(path.read_text().splitlines()) >= MAX_LINES:
            broken.append(f"{path.relative_to(ROOT)} has {MAX_LINES} lines or more")
    _no_new(broken, "modules to split")


def test_no_module_reaches_into_another_packages_private_parts() -> None:
    broken = []
    for path in _modules():
        me = _stage(_name(path))
        for target, name in _imports(path):
            if not target.startswith("lazyraster"):
                continue
            reached = _targets(target, name)
            stage = _stage(reached)
            if stage == me or (stage in SHARED and (reached != target or not _private(name))):
                continue
            private_name = _private(name) and reached == target
            if _private_part(reached) or private_name or stage.startswith("_"):
                broken.append(f"{path.relative_to(ROOT)} imports {target} {name or ''}".strip())
    _no_new(broken, "private names of other packages")


def test_no_module_uses_the_private_parts_of_stackstac_dask_or_dask_jobqueue() -> None:
    broken = []
    peers = ("stackstac", "dask", "distributed", "dask_jobqueue")
    for path in _modules():
        for target, name in _imports(path):
            if target.split(".")[0] not in peers:
                continue
            private = any(part.startswith("_") for part in target.split("."))
            if private or (name or "").startswith("_") or target.startswith(PEER_PRIVATE):
                broken.append(f"{path.relative_to(ROOT)} imports {target} {name or ''}".strip())
    _no_new(broken, "private parts of peers")


def test_imports_flow_one_way() -> None:
    """Stages import their own layer or lower ones; nothing below the top imports the root."""
    broken = []
    for path in _modules():
        me = _stage(_name(path))
        if me == "":
            continue
        for target, name in _imports(path):
            if target != "lazyraster" and not target.startswith("lazyraster."):
                continue
            reached = _targets(target, name)
            stage = _stage(reached)
            where = f"{path.relative_to(ROOT)} imports {reached}"
            if stage == "" and me != "cli":
                broken.append(f"{where} (the package root) {name or ''}".strip())
            elif stage and stage != me and LAYER[stage] > LAYER[me]:
                broken.append(f"{where} (layer {LAYER[stage]} > {LAYER[me]})")
    _no_new(broken, "upward imports")


def test_every_stage_has_a_layer() -> None:
    stages = {_stage(_name(p)) for p in _modules()} - {""}
    assert stages <= set(LAYER), f"give {sorted(stages - set(LAYER))} a layer in LAYER"


def test_package_inits_only_re_export() -> None:
    """An ``__init__`` holds a docstring, imports, ``__all__`` and the lazy hooks: no logic."""
    broken = []
    for path in SRC.rglob("__init__.py"):
        if path.parent == SRC:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                broken.append(f"{path.relative_to(ROOT)} defines {node.name}")
    _no_new(broken, "logic in a package __init__")


def _strings(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _all_of(init: Path) -> set[str]:
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_the_cli_names_no_private_module_or_function() -> None:
    """The CLI reaches the library through its public names, not by dotted strings.

    Its option checks (``_check("check_layout", ...)``) name functions of
    ``lazyraster.catalog.__all__``; no string in ``cli.py`` is a dotted path through a
    private part (``"_build._layout_names"``), which the import checks above cannot see.
    """
    tree = ast.parse((SRC / "cli.py").read_text())
    dotted = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+")
    broken = sorted(
        text
        for text in _strings(tree)
        if dotted.fullmatch(text) and any(_private(part) for part in text.split("."))
    )
    assert not broken, f"cli.py names private parts by string: {broken}"
    public = _all_of(SRC / "catalog" / "__init__.py")
    checks = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_check"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert checks, "the CLI's option checks moved: update this test"
    assert set(checks) <= public, f"not in lazyraster.catalog.__all__: {set(checks) - public}"


def _test_module(target: str) -> str | None:
    """``tests.load._support`` -> ``tests/load/_support.py`` if that file exists."""
    path = ROOT.joinpath(*target.split("."))
    if path.with_suffix(".py").is_file():
        return target
    return None


def test_no_test_module_imports_another_test_module() -> None:
    """Tests share helpers through conftest fixtures and helper modules only.

    A test module that imports another one runs that module's tests' set-up, ties two
    topics together and breaks when either moves: shared code goes to ``conftest.py``,
    ``references.py``, ``services.py``, ``strategies.py`` or a package's ``_support.py``.
    """
    broken = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                base = node.module or ""
                targets = [_test_module(f"{base}.{a.name}") or base for a in node.names]
            else:
                continue
            for target in targets:
                if not target.startswith("tests.") or _test_module(target) is None:
                    continue
                if target.rpartition(".")[2] not in TEST_HELPERS:
                    broken.append(f"{path.relative_to(ROOT)} imports {target}")
    _no_new(sorted(set(broken)), "test modules importing test modules")


def _private_method(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin of every import in ``tree``, those inside functions too."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}:{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                names[local] = alias.name if alias.asname else local
    return names


def _resolve(expression: ast.expr, namespace: dict, imported: dict[str, str]) -> type | None:
    """The class a base-class expression names, from the module's globals or its imports."""
    dotted = []
    while isinstance(expression, ast.Attribute):
        dotted.insert(0, expression.attr)
        expression = expression.value
    if not isinstance(expression, ast.Name):
        return None
    if expression.id in namespace:
        found = namespace[expression.id]
    elif expression.id in imported:
        module, _, attr = imported[expression.id].partition(":")
        found = importlib.import_module(module)
        found = getattr(found, attr) if attr else found
    else:
        return None
    for attr in dotted:
        found = getattr(found, attr)
    return found if isinstance(found, type) else None


def _private_overrides(tree: ast.Module, namespace: dict, where: str) -> list[str]:
    """Classes of ``tree`` (nested ones too) overriding a private method of a foreign base.

    A base is foreign when it is defined outside ``lazyraster`` (another distribution or
    the standard library); its private methods (``_x``, dunders excepted) are not a seam.
    Module-level classes are checked on the imported class's MRO; a class defined inside
    a function, through the bases its source names, resolved by the module's imports.
    """
    imported = _imported_names(tree)
    top = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    broken = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            and _private_method(item.name)
        ]
        if not methods:
            continue
        if node.name in top and isinstance(namespace.get(node.name), type):
            bases = list(namespace[node.name].__mro__[1:])
        else:
            bases = []
            for expression in node.bases:
                base = _resolve(expression, namespace, imported)
                if base is None:
                    broken.append(f"{where}: {node.name}'s base {ast.unparse(expression)} unknown")
                    continue
                bases.extend(base.__mro__)
        for base in bases:
            if base is object or base.__module__.split(".")[0] == "lazyraster":
                continue
            for name in methods:
                if name in vars(base):
                    broken.append(f"{where}: {node.name}.{name} overrides {base.__qualname__}'s")
    return sorted(set(broken))


#: The override that ``cluster/_slurm.py`` had before it used ``submit_command``: the rule
#: must find it (a rule that finds nothing proves nothing).
_OLD_SLURM_JOB = """
def _job_class(resolved):
    from dask_jobqueue.slurm import SLURMJob

    class SecretEnvSLURMJob(SLURMJob):
        async def _submit_job(self, script_filename):
            return await self._call([script_filename], env={})

    return SecretEnvSLURMJob
"""


def test_the_private_override_rule_finds_an_override_inside_a_function() -> None:
    broken = _private_overrides(ast.parse(_OLD_SLURM_JOB), {}, "old _slurm.py")
    assert broken == ["old _slurm.py: SecretEnvSLURMJob._submit_job overrides Job's"]


def test_no_class_overrides_a_private_method_of_another_distribution() -> None:
    """Subclasses of peers' classes override their public methods and attributes only.

    A private method (``Job._submit_job``, ``AutoParallelRioReader._open``) is no seam: a
    peer renames or drops it in a minor release, and the override silently stops being
    called. Unlike the rules above, this one imports every module to read the MROs.
    """
    broken = []
    for path in _modules():
        module = importlib.import_module(_name(path))
        tree = ast.parse(path.read_text(), str(path))
        broken += _private_overrides(tree, vars(module), str(path.relative_to(ROOT)))
    _no_new(broken, "private methods of peers overridden")
