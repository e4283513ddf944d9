"""Run a named benchmark and print a markdown table.

Usage::

    python benchmarks/run.py ndvi                 # default size
    python benchmarks/run.py ndvi --size 2048 --repeat 3
    python benchmarks/run.py --list

Each benchmark lives in ``benchmarks/bench_<name>.py`` (see ``harness.py``). One that
measures whole processes instead of in-process cases (``bench_startup``) defines
``report(repeat) -> str`` in place of ``setup``; its table is printed as it is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="benchmark name: " + ", ".join(available()))
    parser.add_argument("--size", type=int, default=None, help="side of the square input")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available()))
        return 0
    if args.name not in available():
        parser.error(f"no benchmark {args.name!r}; choose one of: {', '.join(available())}")
    module = importlib.import_module(f"bench_{args.name}")
    cores = len(os.sched_getaffinity(0))
    if hasattr(module, "report"):
        print(f"## {args.name}: {module.__doc__.strip().splitlines()[0]}")
        python = platform.python_version()
        print(f"{args.repeat} fresh processes per figure, {cores} cores, Python {python}")
        print()
        print(module.report(args.repeat))
        return 0
    size = args.size or module.DEFAULT_SIZE
    cases = module.setup(size)
    harness.run(cases, repeat=args.repeat)
    print(f"## {args.name}: {module.__doc__.strip().splitlines()[0]}")
    print(f"size {size}, {args.repeat} rounds, {cores} cores, Python {platform.python_version()}")
    print()
    print(getattr(module, "table", harness.table)(cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
