"""The shape of the code, for before/after comparisons of a refactor: the size of the `Task` interface, the
longest functions in `src/`, import time of `bertkit`, and the wall time of `bertkit --help` and
`bertkit train --help`.

    python benchmarks/code_shape.py [--top 12] [--repeats 5]

Prints one JSON object. Timings are medians of `--repeats` fresh processes; compare them only within one run
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bertkit"


def task_interface() -> dict[str, int]:
    """Methods, abstract methods and class attributes the `Task` base class declares."""
    tree = ast.parse((SRC / "tasks" / "base.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Task")
    methods = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    abstract = [m for m in methods if any(getattr(d, "id", getattr(d, "attr", "")) == "abstractmethod"
                                          for d in m.decorator_list)]
    attrs = [n for n in cls.body if isinstance(n, ast.AnnAssign) and n.target.id != "cfg"]
    return {"methods": len(methods) - 1, "abstract": len(abstract), "class_attributes": len(attrs)}  # - __init__


def longest_functions(top: int) -> list[str]:
    """The `top` longest functions in src/ (lines from `def` to the last line), as 'path:name lines'."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                found.append((lines, f"{path.relative_to(SRC.parent)}:{node.name}"))
    found.sort(reverse=True)
    return [f"{name} {lines}" for lines, name in found[:top]]


def _median_seconds(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def import_time(repeats: int) -> dict[str, float]:
    """`python -X importtime -c "import bertkit"`: the cumulative microseconds of the `bertkit` line, as ms."""
    values = []
    for _ in range(repeats):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bertkit"], check=True,
                             capture_output=True, text=True).stderr
        line = next(ln for ln in err.splitlines() if re.search(r"\|\s+bertkit$", ln))
        values.append(int(line.split("|")[1]) / 1000)
    return {"import_bertkit_ms": round(statistics.median(values), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("bertkit"))
    functions = longest_functions(10**6)
    print(json.dumps({
        "task_interface": task_interface(),
        "functions_over_60_lines": sum(int(f.rsplit(" ", 1)[1]) > 60 for f in functions),
        "longest_functions": functions[:args.top],
        **import_time(args.repeats),
        "bertkit_help_s": _median_seconds([exe, "--help"], args.repeats),
        "bertkit_train_help_s": _median_seconds([exe, "train", "--help"], args.repeats),
    }, indent=1))


if __name__ == "__main__":
    main()
