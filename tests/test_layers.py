"""The layers hold in the code and when it runs: imports only go downward, and serving or exporting a model
never loads the training code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bertkit"

# data -> tasks -> models -> inference -> training -> evaluation -> export / serve, with api, cli, ui, pipeline
# and tune on top; config, config_flags, errors, io, run_dir and runtime underneath every layer.
RANK = {"errors": 0, "config": 0, "config_flags": 0, "io": 0, "run_dir": 0, "runtime": 0,
        "data": 1, "tasks": 2, "models": 3, "inference": 4, "training": 5, "evaluation": 6, "export": 7,
        "serve": 7, "api": 8, "cli": 8, "pipeline": 8, "tune": 8, "ui": 8, "__main__": 8}


def _rank(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "bertkit":
        return None
    return 0 if len(parts) == 1 else RANK[parts[1]]  # `from bertkit import __version__` is the base


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # imports inside functions too
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_every_module_has_a_layer():
    top = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or
           (p.is_dir() and (p / "__init__.py").exists())}
    assert top - {"__init__"} <= set(RANK)


def test_imports_only_go_downward():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's lazy names reach every layer on purpose (PEP 562)
        own = RANK[parts[0]]
        for line, module in _imports(path):
            rank = _rank(module)
            if rank is not None and rank > own:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def _unit(module: str) -> str | None:
    """The layer unit a module belongs to: the top-level module or package under bertkit."""
    parts = module.split(".")
    return parts[1] if parts[0] == "bertkit" and len(parts) > 1 else None


def test_no_cycles_between_modules_of_one_layer():
    """Units of the same rank may import each other in one direction only: a cycle (cli imports ui, ui imports
    cli) would tie them into one layer that the ranks above do not show."""
    edges: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts == ("__init__",):
            continue
        for _, module in _imports(path):
            other = _unit(module)
            if other is not None and other != parts[0] and RANK[other] == RANK[parts[0]]:
                edges.setdefault(parts[0], set()).add(other)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and reaches(b, a, {b}))
    assert not cycles, "same-layer import cycles: " + ", ".join(cycles)


def test_no_module_imports_another_modules_private_names():
    """A name with a leading underscore belongs to its module: another module that needs it wants it public."""
    private = []
    for path in sorted(SRC.rglob("*.py")):
        own = "bertkit." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                    node.module.startswith("bertkit") and node.module != own.removesuffix(".__init__"):
                private += [f"{path.relative_to(SRC)}:{node.lineno} imports {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, "\n".join(private)


def _loaded_after(statement: str) -> list[str]:
    listing = "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bertkit'))))"
    code = f"import sys, json\n{statement}\n{listing}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", [
    "import bertkit.serve.app",
    "from bertkit.serve.app import ServeSettings, create_app; create_app(ServeSettings(path='x'))",
    "import bertkit.export",
    "from bertkit.inference.predictor import Predictor",
    "import bertkit; bertkit.Predictor",
])
def test_serving_exporting_and_predicting_load_no_training_module(statement):
    pytest.importorskip("fastapi")
    loaded = _loaded_after(statement)
    assert not [m for m in loaded if m.startswith("bertkit.training")], loaded


def test_import_bertkit_loads_nothing_until_a_name_is_used():
    assert _loaded_after("import bertkit") == ["bertkit"]
    assert "bertkit.errors" in _loaded_after("import bertkit; bertkit.ConfigError")


def test_tasks_open_no_files():
    """Reading files is the data layer's job (bertkit.data.task_files): a task names the kind of file it reads
    and receives its rows."""
    readers = {"read_table", "iter_table", "read_conll", "read_squad", "read_documents", "iter_documents",
               "read_text", "read_bytes", "open", "text_lines"}
    found = []
    for path in sorted((SRC / "tasks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in readers:
                    found.append(f"{path.name}:{node.lineno} calls {name}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bertkit.data"):
                found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name in readers]
    assert not found, found
