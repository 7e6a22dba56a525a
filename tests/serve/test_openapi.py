"""The server against its own published OpenAPI schema: schemathesis (its command line, as a user runs it)
generates requests from /openapi.json, valid and invalid, and checks every answer's status, headers and body
against what the schema documents. Bounded: 50 examples per operation, a fixed seed, one worker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_train, write_jsonl
from serve.test_server import ThreadServer

pytest.importorskip("schemathesis")

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize("key,run", [(None, "classification"), ("s3cret", "classification"), (None, "embedding"),
                                     (None, "rerank")], ids=["open", "api-key", "embedding", "rerank"])
def test_every_answer_matches_the_published_schema(toy_run, tmp_path, tiny_model_dir, key, run):
    if run in ("embedding", "rerank"):  # /v1/embeddings, /v1/rerank (other runs answer them 404, unpublished)
        from tasks.test_embedding import toy_pairs

        rows = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(40, 1))
        served = cli_train(run, rows, rows, tmp_path / "run", tiny_model_dir, "--max-steps", "2")
    else:
        served = toy_run[0]
    server = ThreadServer(served, **({"api_key": key} if key else {}))
    try:
        cli = Path(sys.executable).with_name("schemathesis")
        args = [str(cli), "--config-file", str(CONFIG), "--no-color", "run",
                f"http://127.0.0.1:{server.port}/openapi.json", "--checks", "all", "--max-examples", "50",
                "--seed", "1", "--workers", "1", "--generation-database", "none", "--report-dir", str(tmp_path)]
        if key:
            args += ["--header", f"Authorization: Bearer {key}"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                              env={**os.environ, "NO_COLOR": "1"})
        summary = done.stdout[done.stdout.rfind("SUMMARY"):]
        print(summary)
        assert done.returncode == 0 and "No issues found" in done.stdout, done.stdout[-6000:] + done.stderr[-2000:]
        # /health, /v1/model and /v1/predict; /v1/embeddings or /v1/rerank where the model makes vectors or ranks
        assert f"Tested: {3 if run == 'classification' else 4}" in summary
    finally:
        server.stop()
