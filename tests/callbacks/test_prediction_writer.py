import os

import numpy as np
import pytest

from kerastrainer.callbacks import BasePredictionWriter, PredictionWriter
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _predict(callbacks, *, module=None, return_predictions=True, rows=20):
    x, _ = regression_data(rows)
    trainer = quiet_trainer(callbacks=callbacks)
    return trainer.predict(module or BoringModule(), x, batch_size=8, return_predictions=return_predictions)


def test_batch_files_hold_what_predict_returns(tmp_path):
    module = BoringModule()
    expected = _predict([], module=module)
    writer = PredictionWriter(tmp_path / "preds")
    assert _predict([writer], module=module, return_predictions=False) is None  # nothing kept
    names = sorted(os.listdir(tmp_path / "preds"))
    assert names == ["batch_000000.npy", "batch_000001.npy", "batch_000002.npy"]  # 8 + 8 + 4 rows
    joined = np.concatenate([np.load(tmp_path / "preds" / name) for name in names])
    np.testing.assert_array_equal(joined, expected)


def test_an_epoch_file_holds_every_batch(tmp_path):
    returned = _predict([PredictionWriter(tmp_path, write_interval="epoch")])
    np.testing.assert_array_equal(np.load(tmp_path / "predictions.npy"), returned)
    assert os.listdir(tmp_path) == ["predictions.npy"]


class TwoHeads(BoringModule):
    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, tuple) else batch
        y = self(x)
        return {"mean": y, "doubled": 2 * y}


def test_a_dict_prediction_is_an_npz_of_its_entries(tmp_path):
    returned = _predict([PredictionWriter(tmp_path, write_interval="batch_and_epoch")], module=TwoHeads())
    with np.load(tmp_path / "predictions.npz") as saved:
        assert sorted(saved.files) == ["doubled", "mean"]
        np.testing.assert_array_equal(saved["doubled"], returned["doubled"])
    assert len([name for name in os.listdir(tmp_path) if name.startswith("batch_")]) == 3


class Recorder(BasePredictionWriter):
    def __init__(self, interval):
        super().__init__(interval)
        self.calls = []

    def write_on_batch_end(self, trainer, module, prediction, batch_idx):
        self.calls.append(("batch", batch_idx, type(prediction).__name__, len(prediction)))

    def write_on_epoch_end(self, trainer, module, predictions):
        self.calls.append(("epoch", [len(p) for p in predictions]))


@pytest.mark.parametrize(("interval", "calls"), [
    ("batch", [("batch", 0, "ndarray", 8), ("batch", 1, "ndarray", 8), ("batch", 2, "ndarray", 4)]),
    ("epoch", [("epoch", [8, 8, 4])]),
    ("batch_and_epoch", [("batch", 0, "ndarray", 8), ("batch", 1, "ndarray", 8), ("batch", 2, "ndarray", 4),
                         ("epoch", [8, 8, 4])]),
])
def test_each_interval_calls_its_writers(interval, calls):
    recorder = Recorder(interval)
    _predict([recorder], return_predictions=False)
    assert recorder.calls == calls


def test_a_writer_that_overrides_nothing_says_so():
    with pytest.raises(NotImplementedError, match="does not override write_on_batch_end"):
        _predict([BasePredictionWriter()])


def test_write_interval_is_checked():
    with pytest.raises(ValueError, match=r"`write_interval` must be one of .* Received: write_interval='step'"):
        PredictionWriter("preds", write_interval="step")
