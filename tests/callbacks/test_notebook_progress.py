"""The live bar in a real Jupyter kernel (nbclient): drawn into an output widget, not as lines."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notebook.ipynb"

FIT = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import kerastrainer as kt
from tests.helpers import BoringModule, regression_data

trainer = kt.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False)
trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)
"""


WITHOUT_WIDGETS = """
import sys
sys.modules["ipywidgets"] = None  # as if it were not installed
trainer = kt.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False)
trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)
"""


def _texts(outputs):
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def _run_notebook(*cells):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return notebook


@pytest.mark.slow
def test_the_bar_is_a_live_widget_in_a_notebook_and_lines_without_ipywidgets():
    notebook = _run_notebook(FIT, WITHOUT_WIDGETS)
    outputs = notebook.cells[0].outputs
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, outputs  # rich's live display: an ipywidgets Output
    state = json.dumps(notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"])
    assert "Epoch 2/2" in state and "loss" in state  # what the widget finally shows
    assert "Epoch 1/2 -" not in _texts(outputs)  # not the plain one-line-per-epoch fallback
    plain = _texts(notebook.cells[1].outputs)
    assert "pip install kerastrainer[notebook]" in plain
    assert "Epoch 1/2 -" in plain and "Epoch 2/2 -" in plain


@pytest.mark.slow
def test_the_example_notebook_runs_with_a_live_bar():
    notebook = nbformat.read(EXAMPLE, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(EXAMPLE.parent)}})
    client.execute()
    state = json.dumps(notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"])
    assert "Epoch 3/3" in state and "val_loss" in state
    accuracy = float(_texts(notebook.cells[-1].outputs).split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.85
