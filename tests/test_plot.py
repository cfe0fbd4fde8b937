import subprocess
import sys

import pytest

import kerastrainer as kt
from tests.helpers import BoringClassifier, classification_data


@pytest.fixture
def run_dir(tmp_path):
    x, y = classification_data(rows=48)
    trainer = kt.Trainer(max_epochs=3, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=kt.loggers.CSVLogger(tmp_path))
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=8)
    return trainer.log_dir


def test_plot_metrics_writes_a_real_png(run_dir):
    from kerastrainer.plot import read_epoch_rows

    path = kt.plot_metrics(run_dir)
    data = open(path, "rb").read()
    assert path.endswith("curves.png") and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # two panels with curves, not an empty canvas
    rows = read_epoch_rows(f"{run_dir}/metrics.csv")
    assert [row["epoch"] for row in rows] == [0, 1, 2]


def test_cli_plot(run_dir, tmp_path):
    out = tmp_path / "c.png"
    result = subprocess.run([sys.executable, "-m", "kerastrainer.cli", "plot", run_dir, "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out) and out.stat().st_size > 20_000


def test_plot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No metrics.csv"):
        kt.plot_metrics(tmp_path)
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="no epoch rows"):
        kt.plot_metrics(tmp_path)


def test_the_restored_epoch_is_marked_and_ticks_are_whole_epochs(tmp_path):
    from kerastrainer.plot import metrics_figure

    x, y = classification_data(rows=48)
    stopping = kt.callbacks.EarlyStopping(monitor="val_loss", patience=9, restore_best_weights=True)
    trainer = kt.Trainer(max_epochs=3, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=kt.loggers.CSVLogger(tmp_path),
                         callbacks=[stopping])
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=8)
    assert stopping.best_epoch is not None
    figure, _ = metrics_figure(trainer.log_dir)
    marks = [line for axis in figure.axes for line in axis.lines
             if line.get_label() == f"restored best (epoch={stopping.best_epoch} in files)"]
    assert len(marks) == len(figure.axes)  # on every panel
    assert all(float(tick).is_integer() for axis in figure.axes for tick in axis.get_xticks())


def test_without_a_restore_nothing_is_marked(run_dir):
    from kerastrainer.plot import metrics_figure

    figure, _ = metrics_figure(run_dir)
    assert not [line for axis in figure.axes for line in axis.lines
                if line.get_label().startswith("restored best")]


def test_each_validation_set_is_a_curve_on_its_metrics_panel(tmp_path):
    from kerastrainer.plot import metrics_figure

    x, y = classification_data(rows=48)
    trainer = kt.Trainer(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=kt.loggers.CSVLogger(tmp_path))
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=[(x[:16], y[:16]), (x[16:], y[16:])],
                batch_size=8)
    figure, _ = metrics_figure(trainer.log_dir)
    panels = {axis.get_title(): sorted(line.get_label() for line in axis.lines) for axis in figure.axes
              if axis.get_visible()}
    assert panels == {name: ["train", "validation set 0", "validation set 1"] for name in ("loss", "acc")}


def test_a_trainer_is_plotted_with_its_metrics_not_its_throughput(tmp_path):
    from kerastrainer.plot import metrics_figure

    x, y = classification_data(rows=48)
    trainer = kt.Trainer(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[kt.callbacks.ThroughputMonitor(batch_size=8),
                                    kt.callbacks.LearningRateMonitor()])
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=8)
    path = kt.plot_metrics(trainer)
    assert path == f"{trainer.log_dir}/curves.png"
    figure, _ = metrics_figure(trainer)
    assert sorted(axis.get_title() for axis in figure.axes if axis.get_visible()) == ["acc", "loss"]
    chosen, _ = metrics_figure(trainer, keys=["loss", "epoch_batches_per_sec"])
    assert [axis.get_title() for axis in chosen.axes if axis.get_visible()] == ["loss", "epoch_batches_per_sec"]


def test_plot_metrics_refuses_what_it_cannot_draw(run_dir):
    with pytest.raises(TypeError, match=r"^plot_metrics needs a Trainer, a run folder.*Received: int"):
        kt.plot_metrics(3)
    with pytest.raises(ValueError, match=r"^plot_metrics: `keys` names \['f1'\], which .* does not hold"):
        kt.plot_metrics(run_dir, keys=["f1"])
