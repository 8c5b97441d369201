"""The emulator stands apart from the gateway: no import of `thrifty` in it, none of it in the gateway but the CLI.

Were the emulator to borrow the gateway's usage mapping, a mapping bug would be the same on both
sides of every end-to-end test and pass them all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, nested ones and importlib calls included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and ast.unparse(node.func) in (
                    "__import__", "importlib.import_module", "import_module"):
            out.append((node.lineno, node.args[0].value))
    return out


def is_gateway(module: str) -> bool:
    return module == "thrifty" or module.startswith("thrifty.")


def test_emulator_imports_nothing_of_the_gateway():
    modules = sorted((SRC / "thrifty_emulator").rglob("*.py"))
    assert len(modules) > 10, "the emulator package has moved"
    offenders = [f"{p.relative_to(SRC)}:{line}: {name}" for p in modules for line, name in imported_modules(p)
                 if is_gateway(name)]
    assert not offenders, "thrifty_emulator must not import the gateway:\n" + "\n".join(offenders)


def test_the_check_sees_every_import_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import thrifty\nfrom thrifty.contract import usage\nfrom . import sibling\n"
                      "def f():\n    import thrifty.tokens as t\n    return __import__('thrifty.errors')\n"
                      "import thrifty_emulator.app\n")
    assert [name for _, name in imported_modules(sample) if is_gateway(name)] == \
        ["thrifty", "thrifty.contract", "thrifty.tokens", "thrifty.errors"]


def test_gateway_imports_the_emulator_only_from_the_cli():
    offenders = [f"{p.relative_to(SRC)}:{line}" for p in sorted((SRC / "thrifty").rglob("*.py"))
                 if "cli" not in p.relative_to(SRC / "thrifty").parts[:1]
                 for line, name in imported_modules(p) if name.split(".")[0] == "thrifty_emulator"]
    assert not offenders, offenders


def test_serving_loads_no_gateway_module():
    """At run time too: building the app (tokenizer, config, both wires) pulls in no `thrifty` module."""
    code = ("import sys, thrifty_emulator\nthrifty_emulator.build_app()\n"
            "print(sorted(m for m in sys.modules if m == 'thrifty' or m.startswith('thrifty.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
