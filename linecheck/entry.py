"""Console scripts of the carrier side: each checks that its extra is installed before importing it.

The base distribution is the gateway agent (pyproject.toml); the collector's dependencies come with
`linecheck[collector]`. pip still installs every console script, so on an agent-only install
`linecheck-collector` would die in an ImportError traceback: say instead which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

# The extra a command needs, and modules that only that extra brings (checked without importing them).
_NEEDS = {
    "collector": ("collector.cli", "collector", ("sqlalchemy", "alembic", "fastapi", "uvicorn")),
    "stack": ("linecheck.stack", "collector", ("sqlalchemy", "alembic", "fastapi", "uvicorn")),
    "testserver": ("testserver.cli", "testserver", ()),
}


def missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _launch(command: str) -> Callable[[], int | None]:
    module, extra, modules = _NEEDS[command]
    absent = missing(modules)
    if absent:
        print(f"linecheck-{command}: this install has no '{extra}' extra (missing: {', '.join(absent)}); "
              f"install it with: pip install 'linecheck[{extra}]'", file=sys.stderr)
        sys.exit(2)
    main: Callable[[], int | None] = importlib.import_module(module).main
    return main


def collector() -> int | None:
    return _launch("collector")()


def stack() -> int | None:
    return _launch("stack")()


def testserver() -> int | None:
    return _launch("testserver")()
