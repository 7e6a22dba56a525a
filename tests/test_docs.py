"""The documentation site builds with no warning (`mkdocs build --strict`: a broken link, a missing page or
a bad anchor fails), and its command-line reference, generated at build time from the program's parser,
lists every flag of every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    return out


def test_the_site_builds_strictly_with_every_page_of_the_nav(site):
    import yaml

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    for page in pages(nav):
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), page


def test_the_command_line_reference_lists_every_flag_of_every_command(site):
    import argparse

    from bertkit.cli import build_parser

    html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    def commands(parser, prefix=""):  # every command, those under `runs` and `data` too
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{prefix}{name}", sub
                    yield from commands(sub, f"{prefix}{name} ")

    listed = list(commands(build_parser(run_flags=True)))
    missing = [f"{name} {flag}" for name, parser in listed for action in parser._actions
               for flag in action.option_strings if flag not in ("-h", "--help") and f"<code>{flag}</code>" not in html]
    assert not missing, missing
    assert all(f"bertkit {name}" in html for name, _ in listed)


def test_the_http_reference_shows_the_servers_routes_statuses_and_error_codes(site):
    html = (site / "reference" / "http" / "index.html").read_text(encoding="utf-8")
    for text in ("POST /v1/predict", "GET /v1/model", "GET /health", "too_deep", "method_not_allowed",
                 "unauthorized", "--max-json-depth"):
        assert text in html, text
