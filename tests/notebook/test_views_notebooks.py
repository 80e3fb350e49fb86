"""The four topic notebooks run top to bottom under papermill against a small workspace.

One workspace (three days of synthetic traffic, a running experiment, budgets, the docs
indexed with the hashing embedder) and one run of each notebook, in parallel processes
(kernel starts and imports dominate). Each must finish without an error and show its
charts: a chart replaced by a "missing" note would mean a view lost its data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from devora_lab.notebook.display import VEGALITE_MIMETYPE

from .test_views import build_workspace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: Notebook -> the charts it shows against a workspace that has every piece.
CHARTS = {"02_costs": 9, "03_experiments": 4, "04_rag": 3, "05_cache": 7}


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    root = tmp_path_factory.mktemp("notebooks")
    workspace = build_workspace(root / "ws")
    runs = {}
    for name in CHARTS:
        out = root / f"{name}.ipynb"
        command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"),
                   str(out), "-p", "workspace", str(workspace.root), "-k", "python3",
                   "--cwd", str(NOTEBOOKS), "--no-progress-bar", "--log-level", "ERROR"]
        runs[name] = (out, subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))
    results = {}
    for name, (out, process) in runs.items():
        log, _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"{name} failed:\n{log[-4000:]}"
        results[name] = nbformat.read(out, as_version=4)
    return results


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])]


@pytest.mark.parametrize("name", list(CHARTS))
def test_notebook_runs_and_shows_its_charts(executed: dict[str, nbformat.NotebookNode],
                                            name: str) -> None:
    outputs = _outputs(executed[name])
    assert not [o for o in outputs if o.output_type == "error"]
    charts = [o for o in outputs if VEGALITE_MIMETYPE in o.get("data", {})]
    assert len(charts) == CHARTS[name]
    assert all(o.data["image/svg+xml"].lstrip().startswith("<svg") for o in charts)
    notes = [o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert not [n for n in notes if "No RAG index" in n or "No experiment" in n]


def test_each_notebook_has_one_parameters_cell_first() -> None:
    for name in CHARTS:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
        assert tagged == [code[0]]
        assert "workspace = None" in code[0].source
        unchecked = [c for c in code if not c.source.startswith("# NBVAL_CHECK_OUTPUT")]
        assert all(not c.outputs and c.execution_count is None for c in unchecked)
        assert notebook.metadata.kernelspec.name == "python3"
