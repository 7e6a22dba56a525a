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

# data -> tasks -> models -> training -> evaluation -> export / serve, with api, cli, ui, pipeline and tune on
# top; config, errors, run_dir, runtime and report_html underneath every layer.
RANK = {"errors": 0, "config": 0, "run_dir": 0, "runtime": 0, "report_html": 0, "data": 1, "tasks": 2, "models": 3,
        "training": 4, "evaluation": 5, "export": 6, "serve": 6, "api": 7, "cli": 7, "pipeline": 7, "tune": 7,
        "ui": 7, "__main__": 7}


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
    "from bertkit.evaluation.predictor import Predictor",
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
