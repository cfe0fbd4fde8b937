"""One transfer per logging point: a stage's values read through one compiled `FlatReader` are the
values the plain reads give, bit for bit."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer import host_reads
from kerastrainer.host_reads import FlatReader, StageReaders
from kerastrainer.stages import TRAIN, VAL
from tests.helpers import BoringClassifier, classification_data, quiet_trainer


class Logged(BoringClassifier):
    """Every kind of logged value: each reduction, on step and epoch, and a metric returning a dict."""

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")]

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("peak", loss, reduce_fx="max", on_step=True, on_epoch=True)
        self.log("low", loss, reduce_fx="min", on_epoch=True)
        self.log("summed", loss, reduce_fx="sum")
        self.log("twice", loss * 2.0, on_step=True, on_epoch=True, prog_bar=True)
        return loss


def _fit(**flags):
    kt.seed_everything(0)
    module, trainer = Logged(), quiet_trainer(max_epochs=2, **flags)
    x, y = classification_data(rows=90)
    trainer.fit(module, (x[:60], y[:60]), val_data=(x[60:], y[60:]), batch_size=8)
    return trainer


def test_a_flat_reader_gives_each_tensor_back_with_its_shape_and_dtype():
    values = [tf.Variable(1.5), {"b": tf.Variable([[1, 2], [3, 4]]), "a": tf.Variable([0.25, 7.0])}]
    got = FlatReader(lambda: [values[0].read_value(), {k: v.read_value() for k, v in values[1].items()}],
                     tf.function)()
    assert got[0] == np.float32(1.5) and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[1]["b"], [[1, 2], [3, 4]])
    assert got[1]["b"].dtype == np.int32 and got[1]["a"].dtype == np.float32
    values[0].assign(-3.0)  # read again at the next call, not at the trace
    assert FlatReader(lambda: values[0].read_value(), tf.function)() == np.float32(-3.0)


@pytest.mark.parametrize("stage", [TRAIN, VAL])
def test_compiled_reads_equal_plain_reads_bit_for_bit(stage):
    trainer = _fit()
    state = trainer.results.stages[stage.name]
    plain = state.read(lambda variable, how, sync: float(variable.numpy()))
    fast = state.values_from(*FlatReader(state.device_values, tf.function)())
    assert fast == plain and len(plain) >= (9 if stage is TRAIN else 3)


def test_a_fit_logs_the_same_rows_with_compiled_reads_as_with_plain_ones(tmp_path, monkeypatch):
    def rows(folder, plain_reads):
        monkeypatch.setattr(host_reads, "PLAIN_READS", plain_reads)
        trainer = _fit(logger=kt.loggers.CSVLogger(folder), log_every_n_steps=1)
        with open(trainer.logger.log_dir + "/metrics.csv") as file:
            return list(csv.DictReader(file)), trainer.results.readers.compiled

    compiled, readers = rows(tmp_path / "compiled", 0)
    plain, plain_readers = rows(tmp_path / "plain", 10**9)
    assert readers >= 2 and plain_readers == 0  # training and validation read compiled, or never
    assert len(compiled) == len(plain) > 16 and compiled == plain


def test_run_eagerly_never_compiles_a_reader():
    trainer = _fit(run_eagerly=True, log_every_n_steps=1, logger=False)
    trainer.results.recorder.changed(TRAIN)
    for _ in range(host_reads.PLAIN_READS + 2):
        trainer.results.recorder.changed(TRAIN)
        assert "loss" in trainer.results.read(TRAIN)
    assert trainer.results.readers.compiled == 0


class Ragged(BoringClassifier):
    def configure_metrics(self):
        return [RaggedResult()]


class RaggedResult(keras.metrics.SparseCategoricalAccuracy):
    """A result a compiled reader cannot pack (ragged when traced); read eagerly it is a number."""

    def result(self):
        value = super().result()
        if tf.executing_eagerly():
            return value
        return tf.RaggedTensor.from_row_lengths(tf.reshape(value, [1]), [1])


def test_a_result_that_cannot_be_packed_is_read_plainly():
    x, y = classification_data(rows=30)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Ragged(), (x, y), batch_size=8)
    state = trainer.results.stages[TRAIN.name]
    readers = StageReaders(tf.function)
    for _ in range(host_reads.PLAIN_READS + 2):
        assert readers.read(state) is None
    assert readers.compiled == 0 and "sparse_categorical_accuracy" in trainer.results.read(TRAIN)
