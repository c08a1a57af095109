"""Run by an installed environment's Python (tests/test_install_split.py): what does the agent import, and
what is installed? Prints one JSON object.

- `imports`: top-level modules named by any import statement in the installed agent/ and linecheck/
  (including the lazy ones inside functions: scapy, dnspython, jinja2 load only when their check runs);
- `loaded_errors`: agent/linecheck modules that fail to import in this environment;
- `needed`: the distributions providing those imports, with their own requirements, transitively;
- `installed`: every distribution in the environment.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import json
import pkgutil
import re
import sys
from pathlib import Path

FIRST_PARTY = {"agent", "linecheck", "collector", "testserver"}
# linecheck/entry.py launches the carrier-side commands (their extras); it never runs on a gateway.
NOT_AGENT = {"linecheck.entry", "linecheck.stack"}


def _name(dist: md.Distribution) -> str:
    return re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()


def static_imports(packages: list[str]) -> set[str]:
    found: set[str] = set()
    for pkg in packages:
        root = Path(importlib.import_module(pkg).__file__).parent  # type: ignore[arg-type]
        for path in root.rglob("*.py"):
            module = ".".join((pkg, *path.relative_to(root).with_suffix("").parts))
            if module.removesuffix(".__init__") in NOT_AGENT:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}


def import_all(packages: list[str]) -> list[str]:
    errors = []
    for pkg in packages:
        for mod in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
            if mod.name in NOT_AGENT or mod.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(mod.name)
            except Exception as exc:  # noqa: BLE001 - reported, the test names it
                errors.append(f"{mod.name}: {type(exc).__name__}: {exc}")
    return errors


def closure(roots: set[str], depth: int = 1000) -> set[str]:
    """The distributions `roots` need (no extras), following requirements `depth` levels deep."""
    from pip._vendor.packaging.requirements import Requirement  # the environment's own pip: no extra install

    seen: set[str] = set()
    todo = [(name, 0) for name in roots]
    while todo:
        name, level = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if level == depth:
            continue
        for spec in md.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((re.sub(r"[-_.]+", "-", req.name).lower(), level + 1))
    return seen


def extra_distributions() -> set[str]:
    """Distributions that only linecheck's extras require."""
    from pip._vendor.packaging.requirements import Requirement

    names = set()
    for spec in md.distribution("linecheck").requires or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}) and req.name != "linecheck":
            names.add(re.sub(r"[-_.]+", "-", req.name).lower())
    return names


def main() -> None:
    packages = ["agent", "linecheck"]
    imports = static_imports(packages)
    providers = md.packages_distributions()
    # Imported only for an option that an extra brings (scapy: traceroute's method: scapy), so not installed
    # here: such a module must be named like its extra's distribution, and the check says what to install.
    optional = extra_distributions()
    unresolved = sorted(m for m in imports if m not in providers and m not in optional)
    direct = {re.sub(r"[-_.]+", "-", d).lower() for m in imports for d in providers.get(m, [])}
    declared = sorted(closure({"linecheck"}, depth=1) - {"linecheck"})
    print(json.dumps({
        "imports": sorted(imports),
        "unresolved": unresolved,
        "optional": sorted(m for m in imports if m not in providers and m in optional),
        "direct": sorted(direct),
        "declared": declared,
        "needed": sorted(closure(direct)),
        "installed": sorted({_name(d) for d in md.distributions()}),
        "loaded_errors": import_all(packages),
    }))


if __name__ == "__main__":
    main()
