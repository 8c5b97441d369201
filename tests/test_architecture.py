"""The shape the design promises, checked on the source: the import graph and where dialects live.

- no import circle among Thrifty's modules (imports inside functions count too: they are the
  usual way to hide one);
- the contract (`thrifty.contract`) imports nothing else of Thrifty;
- no module outside `thrifty.wire` compares a value against a dialect's name: what differs per
  dialect is asked of its wire object.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import thrifty.wire

SRC = Path(__file__).resolve().parents[1] / "src" / "thrifty"
DIALECTS = frozenset(thrifty.wire.names())


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The Thrifty module an import of `name` loads (a name imported from a package may be a
    submodule or an attribute: the longest known prefix wins)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("thrifty") else None
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _parents(module: str) -> set[str]:
    """Importing a module runs its packages' __init__ first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & set(MODULES)


def test_the_graph_sees_the_imports_it_should():
    # A guard on the checker itself: a known edge and a known absence.
    assert "thrifty.wire.base" in GRAPH["thrifty.wire.openai_chat"]
    assert not any(m.startswith("thrifty.api") for m in GRAPH["thrifty.contract.call"])


def test_no_import_circle():
    edges = {m: {t for t in GRAPH[m] if t not in _parents(m)} for m in GRAPH}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_contract_imports_nothing_else_of_thrifty():
    for m, targets in GRAPH.items():
        if m.startswith("thrifty.contract"):
            outside = {t for t in targets if not t.startswith("thrifty.contract") and t != "thrifty"}
            assert not outside, f"{m} imports {sorted(outside)}"


def _dialect_comparisons(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        for side in sides:
            values = [side] if isinstance(side, ast.Constant) else (
                list(side.elts) if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [])
            if any(isinstance(v, ast.Constant) and v.value in DIALECTS for v in values):
                lines.append(node.lineno)
    return lines


def test_the_comparison_check_catches_one():
    assert _dialect_comparisons(ast.parse('if wire == "anthropic": pass')) == [1]
    assert _dialect_comparisons(ast.parse('x = wire.name in ("openai", "x")')) == [1]
    assert _dialect_comparisons(ast.parse('x = wire.prompt_caching == "breakpoints"')) == []


def test_no_dialect_name_is_compared_outside_the_wire_package():
    offenders = []
    for m, path in MODULES.items():
        if m == "thrifty.wire" or m.startswith("thrifty.wire."):
            continue
        for line in _dialect_comparisons(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(SRC.parent)}:{line}")
    assert not offenders, "compare against a dialect's name only inside thrifty.wire: " + ", ".join(offenders)


def test_every_exception_class_lives_in_the_one_exception_tree():
    """`thrifty.errors` is the one home of Thrifty's exceptions (foreign errors are translated
    where they enter)."""
    strays = []
    for m, path in MODULES.items():
        if m == "thrifty.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if any(b.endswith(("Error", "Exception")) or b in ("ThriftyError", "GatewayError") for b in bases):
                    strays.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}")
    assert not strays, "exception classes outside thrifty/errors.py: " + ", ".join(strays)


TOP = ("thrifty.core", "thrifty.api", "thrifty.cli")


def test_the_levers_do_not_import_the_composition_root():
    """core/ (gateway state, the flow, the recorder), api/ and cli/ sit on top: nothing below them
    imports them, so a stage gets what it needs passed in."""
    upward = []
    for m, targets in GRAPH.items():
        if m.startswith(TOP) or m == "thrifty.__main__":  # `python -m thrifty` is the CLI
            continue
        upward += [f"{m} -> {t}" for t in sorted(targets) if t.startswith(TOP)]
    assert not upward, "imports of the composition root from below: " + ", ".join(upward)
