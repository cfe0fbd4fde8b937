"""The live bar in a real Jupyter kernel (nbclient): drawn into an output widget, not as lines."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notebook.ipynb"

FIT = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {str(ROOT)!r})  # for tests.helpers; the kernel runs in examples/
import kerastrainer as kt
from tests.helpers import BoringModule, regression_data

trainer = kt.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False)
trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)
from kerastrainer.callbacks.progress_bar import format_metrics
FINAL = format_metrics(trainer.progress_bar_metrics)  # what the last frame must show
"""


EVALUATE = """
evaluator = kt.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False)
module = BoringModule()
evaluator.validate(module, data=regression_data(20), batch_size=4)
evaluator.test(module, data=regression_data(20), batch_size=4)
print("final:", FINAL)
"""


PLOT = """
import tempfile
trainer = kt.Trainer(max_epochs=2, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False, default_root_dir=tempfile.mkdtemp())
trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)
path = kt.plot_metrics(trainer)
"""


WITHOUT_WIDGETS = """
import sys
sys.modules["ipywidgets"] = None  # as if it were not installed
trainer = kt.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False)
trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)
"""


def _texts(outputs):
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def _widget_states(notebook, outputs):
    """What each live widget among ``outputs`` finally shows (its saved state), as JSON text."""
    states = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for o in outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    return [json.dumps(states[view]) for view in views]


@pytest.fixture(scope="module")
def notebook():
    """One kernel (each one imports TensorFlow: some 7 s of CPU): the example notebook's cells, then
    a fit with ipywidgets, a validation and a test run, a plot of a run, then a fit as if
    ipywidgets were not installed."""
    notebook = nbformat.read(EXAMPLE, as_version=4)
    notebook.cells += [nbformat.v4.new_code_cell(code) for code in (FIT, EVALUATE, PLOT, WITHOUT_WIDGETS)]
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(EXAMPLE.parent)}})
    client.execute()
    return notebook


@pytest.mark.slow
def test_the_bar_is_a_live_widget_in_a_notebook_and_lines_without_ipywidgets(notebook):
    outputs = notebook.cells[-4].outputs
    (state,) = _widget_states(notebook, outputs)  # rich's live display: an ipywidgets Output
    assert "Epoch 2/2" in state and "loss" in state  # what the widget finally shows
    assert "Epoch 1/2 -" not in _texts(outputs)  # not the plain one-line-per-epoch fallback
    plain = _texts(notebook.cells[-1].outputs)
    assert "pip install kerastrainer[notebook]" in plain
    assert "Epoch 1/2 -" in plain and "Epoch 2/2 -" in plain
    assert not _widget_states(notebook, notebook.cells[-1].outputs)


@pytest.mark.slow
def test_the_example_notebook_runs_with_a_live_bar(notebook):
    example = notebook.cells[:-4]
    states = [state for cell in example if cell.cell_type == "code"
              for state in _widget_states(notebook, cell.outputs)]
    assert any("Epoch 3/3" in state and "val_loss" in state for state in states), states
    accuracy = float(_texts(example[-1].outputs).split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.85


@pytest.mark.slow
def test_plot_metrics_shows_the_curves_under_the_cell(notebook):
    outputs = notebook.cells[-2].outputs
    assert any("image/png" in output.get("data", {}) for output in outputs), outputs


@pytest.mark.slow
def test_each_widget_ends_on_its_stages_final_frame(notebook):
    (fit,) = _widget_states(notebook, notebook.cells[-4].outputs)
    evaluate = notebook.cells[-3]
    final = _texts(evaluate.outputs).split("final: ")[1].splitlines()[0]
    assert "Epoch 2/2" in fit and final in fit  # the last epoch with its end-of-epoch metrics
    validation, test = _widget_states(notebook, evaluate.outputs)
    assert "Validation" in validation and "5/5" in validation
    assert "Testing" in test and "5/5" in test
