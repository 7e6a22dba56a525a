"""The demo's promise, checked end to end (minutes on 2 CPU cores): run with `bash scripts/test.sh -m slow`."""

import pytest

from bertkit.api import train
from bertkit.config import load_config
from conftest import REPO


@pytest.mark.slow
def test_demo_config_reaches_085_on_sst2_dev(tmp_path):
    cfg = load_config(REPO / "examples" / "sst2_demo.yaml").with_overrides({"out": str(tmp_path / "run")})
    result = train(cfg, progress=False)
    assert result.metrics["accuracy"] >= 0.85
