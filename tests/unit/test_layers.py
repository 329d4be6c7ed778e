"""The import-layers contract: lower layers never import higher ones, and packages of one
layer never import each other (docs/architecture.md, "Import direction").

Every ``import`` in every module counts, also those inside functions and under
``TYPE_CHECKING``: a layer that needs a higher one's type should own a Protocol instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: Lowest first. A module belongs to the longest prefix listed.
LAYERS: list[set[str]] = [
    {"pkgedge", "pkgedge.errors", "pkgedge.sqlite"},
    {"pkgedge.config"},
    {"pkgedge.http", "pkgedge.stats"},
    {"pkgedge.cache", "pkgedge.security", "pkgedge.rules"},
    {"pkgedge.upstream", "pkgedge.analytics", "pkgedge.cluster"},
    {"pkgedge.edge"},
    {"pkgedge.server", "pkgedge.web", "pkgedge.index"},
    # composition roots and commands: they wire everything, and may call each other
    {
        "pkgedge.app",
        "pkgedge.cli",
        "pkgedge.cliparts",
        "pkgedge.configcmd",
        "pkgedge.indexcmd",
        "pkgedge.statscmd",
        "pkgedge.up",
        "pkgedge.index.run",
        "pkgedge.__main__",
    },
]
_TOP = len(LAYERS) - 1


def unit_of(module: str) -> tuple[int, str]:
    """(layer, the listed prefix) of a dotted module name."""
    best = ""
    for prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best = p
    for i, prefixes in enumerate(LAYERS):
        if best in prefixes:
            return i, best
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((SRC / "pkgedge").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def imports(name: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, t) for line, t in found if t == "pkgedge" or t.startswith("pkgedge.")]


def violations() -> list[str]:
    bad = []
    for name, path in modules():
        layer, unit = unit_of(name)
        for line, target in imports(name, path):
            tlayer, tunit = unit_of(target)
            if tunit == unit or tlayer < layer or (tlayer == layer == _TOP):
                continue
            where = f"{path.relative_to(SRC)}:{line}"
            bad.append(f"{where}: {name} (layer {layer}) imports {target} (layer {tlayer})")
    return bad


def test_every_module_is_in_a_layer() -> None:
    for name, _ in modules():
        unit_of(name)


def test_no_module_imports_upwards_or_sideways() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("importer", "target", "allowed"),
    [
        ("pkgedge.edge.pipeline", "pkgedge.cache.store", True),
        ("pkgedge.cache.store", "pkgedge.edge.pipeline", False),
        ("pkgedge.web.admin", "pkgedge.server.protocol", False),
        ("pkgedge.cli", "pkgedge.up", True),
    ],
)
def test_the_rule_itself(importer: str, target: str, allowed: bool) -> None:
    (layer, unit), (tlayer, tunit) = unit_of(importer), unit_of(target)
    ok = tunit == unit or tlayer < layer or tlayer == layer == _TOP
    assert ok is allowed
