"""Fast paths (in-memory arrays, automatic chunks, XLA) and the choices of the StepTuner."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer import autotune
from kerastrainer.data import sources
from tests.helpers import BoringClassifier, BoringModule, classification_data, quiet_trainer


def _train(flags, *, in_memory=True, monkeypatch=None, epochs=3, data=None):
    keras.backend.clear_session()
    kt.seed_everything(3)
    if monkeypatch is not None and not in_memory:
        monkeypatch.setattr(sources, "IN_MEMORY_MAX_BYTES", 0)
    x, y = data if data is not None else classification_data(rows=70)
    trainer = quiet_trainer(max_epochs=epochs, **flags)
    module = BoringClassifier()
    trainer.fit(module, train_data=(x, y), batch_size=16)  # 4 full batches and one of 6 rows
    if monkeypatch is not None:
        monkeypatch.undo()
    return [w.copy() for w in module.get_weights()], trainer


PLAIN = {"steps_per_execution": 1, "jit_compile": False}


@pytest.mark.parametrize(("flags", "in_memory", "tolerance"), [
    (PLAIN, True, 0.0),                                            # in memory == tf.data, bitwise
    ({"steps_per_execution": "auto", "jit_compile": False}, True, 0.0),
    ({"steps_per_execution": 3, "jit_compile": True}, True, 1e-6),  # one XLA program per chunk
    ({"steps_per_execution": 3, "jit_compile": True}, False, 1e-6),  # XLA step over tf.data
])
def test_fast_paths_give_the_weights_of_the_plain_path(monkeypatch, flags, in_memory, tolerance):
    reference, _ = _train(PLAIN, in_memory=False, monkeypatch=monkeypatch)
    weights, _ = _train(flags, in_memory=in_memory, monkeypatch=monkeypatch)
    for a, b in zip(reference, weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_arrays_are_fed_from_memory_and_other_data_through_tf_data():
    x, y = classification_data(rows=40)
    assert sources.to_source((x, y), batch_size=8, shuffle=True, name="d").in_memory
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert not sources.to_source(dataset, batch_size=None, shuffle=False, name="d").in_memory


def test_epoch_orders_are_permutations_that_differ_between_epochs():
    source = sources.to_source(classification_data(rows=50), batch_size=8, shuffle=True, name="d")
    first, second = source.order(0).numpy(), source.order(1).numpy()
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, source.order(0).numpy())  # stateless: same seed, same order


class PerBatch(kt.Callback):
    def __init__(self):
        self.ends = []

    def on_train_batch_end(self, trainer, module, outputs, batch_idx):
        self.ends.append(batch_idx)


def test_auto_chunks_give_batch_hooks_every_batch_when_a_callback_needs_them():
    seen = PerBatch()
    _train({"callbacks": [seen]}, epochs=1)
    assert seen.ends == [0, 1, 2, 3, 4]


def test_auto_chunks_end_where_the_loggers_look(tmp_path):
    class Ends(PerBatch):
        chunk_aware = True

    ends = Ends()
    x, y = classification_data(rows=200)
    trainer = kt.Trainer(max_epochs=1, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, log_every_n_steps=7, callbacks=[ends],
                         default_root_dir=tmp_path)
    trainer.fit(BoringClassifier(), train_data=(x, y), batch_size=4)  # 50 batches
    steps = [batch_idx + 1 for batch_idx in ends.ends]
    assert all(step in steps for step in range(7, 50, 7))
    assert steps[-1] == 50
    rows = (tmp_path / "kt_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    logged = sorted({int(r.split(",")[1]) for r in rows[1:] if r.split(",")[1]})
    assert set(range(7, 50, 7)) <= set(logged)


class Unsupported(BoringModule):
    """A step with an op XLA cannot compile (a string conversion)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = keras.ops.mean(self.loss(y, self(x, training=True)))
        self.log("text_length", tf.cast(tf.strings.length(tf.strings.as_string(loss)), tf.float32))
        return loss


def test_auto_xla_falls_back_cleanly_when_the_step_does_not_compile(monkeypatch):
    monkeypatch.setattr(autotune, "MIN_STEPS_TO_PROBE", 1)
    x, y = np.ones((16, 3), "float32"), np.ones((16, 1), "float32")
    results = {}
    for jit in ("auto", False):
        keras.backend.clear_session()
        kt.seed_everything(0)
        trainer = quiet_trainer(max_epochs=3, jit_compile=jit)
        module = Unsupported()
        trainer.fit(module, train_data=(x, y), batch_size=4)
        results[jit] = (module.get_weights(), trainer)
    tuner = results["auto"][1].step_tuner
    assert tuner.jit is False and "XLA cannot compile" in tuner.reason
    assert results["auto"][1].global_step == 12  # no batch lost to the failed compile
    for a, b in zip(results["auto"][0], results[False][0]):
        np.testing.assert_array_equal(a, b)


def test_tuner_keeps_xla_only_when_it_measured_faster():
    def run(plain_s, xla_s):
        tuner = autotune.StepTuner(steps_per_execution="auto", jit_compile="auto",
                                   planned_batches=None)
        while tuner.probing:
            jit, timed = tuner.next_call()
            tuner.record(jit=jit, timed=timed, steps=8, seconds=8 * (xla_s if jit else plain_s),
                         first_call=False)
        return tuner

    assert run(plain_s=1e-3, xla_s=2e-4).jit is True
    slower = run(plain_s=1e-3, xla_s=2e-3)
    assert slower.jit is False and "us/step with XLA" in slower.reason
    assert run(plain_s=1e-3, xla_s=0.95e-3).jit is False  # within the margin: not worth it


@pytest.mark.parametrize(("kwargs", "jit"), [
    ({"jit_compile": True}, True), ({"jit_compile": False}, False),
    ({"jit_compile": "auto", "planned_batches": 10}, False),
    ({"jit_compile": "auto", "fixed_rule": True}, False),
    ({"jit_compile": "auto"}, None),
    ({"jit_compile": "auto", "varying_shapes": True}, False),
    ({"jit_compile": "auto", "unknown_length": True}, False),
    ({"jit_compile": "auto", "unknown_length": True, "planned_batches": 5000}, None),  # max_steps sizes it
])
def test_tuner_choices_without_measuring(kwargs, jit):
    assert autotune.StepTuner(steps_per_execution="auto", **kwargs).jit is jit


def test_tuner_state_round_trips():
    tuner = autotune.StepTuner(steps_per_execution="auto", jit_compile="auto")
    tuner.load_state_dict({"jit": 1, "reason": "checkpoint"})
    assert tuner.jit is True and not tuner.probing
    assert autotune.StepTuner(steps_per_execution=4, jit_compile=False).state_dict()["jit"] == 0


def test_automatic_chunks_grow_to_the_target_call_time():
    tuner = autotune.StepTuner(steps_per_execution="auto", jit_compile=False)
    tuner.record(jit=False, timed=False, steps=1, seconds=1.0, first_call=True)  # a trace
    assert tuner.chunk == 1
    tuner.record(jit=False, timed=False, steps=1, seconds=autotune.TARGET_CALL_SECONDS / 40,
                 first_call=False)
    assert tuner.chunk == 40


@pytest.mark.parametrize(("flags", "error", "match"), [
    ({"steps_per_execution": "fast"}, TypeError, r"or 'auto'.*Received: steps_per_execution='fast'"),
    ({"jit_compile": "xla"}, TypeError, r"True, False or 'auto'. Received: jit_compile='xla'"),
])
def test_auto_flags_reject_other_strings(flags, error, match):
    with pytest.raises(error, match=match):
        kt.Trainer(**flags)


class Sequences(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.rnn = keras.layers.GRU(4)
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(self.rnn(x))

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.01)


def _padded(lengths):
    rows = [np.ones((n, 2), "float32") * n / 10 for n in lengths]
    ds = tf.data.Dataset.from_generator(lambda: ((r, np.float32(len(r) / 10)) for r in rows),
                                        output_signature=(tf.TensorSpec((None, 2)), tf.TensorSpec(())))
    return ds.padded_batch(2)


@pytest.mark.parametrize(("data", "reason"), [
    (lambda: _padded([3, 5, 4, 8, 6, 7, 2, 9]).repeat(4).apply(tf.data.experimental.assert_cardinality(16)),
     "varying shapes"),
    (lambda: tf.data.Dataset.from_tensor_slices((np.ones((32, 5, 2), "float32"), np.ones(32, "float32")))
     .batch(2).filter(lambda x, y: True), "unknown length"),
])
def test_auto_keeps_the_plain_step_where_xla_would_not_pay(monkeypatch, data, reason):
    monkeypatch.setattr(autotune, "MIN_STEPS_TO_PROBE", 1)  # every run long enough to measure
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(Sequences(), train_data=data())
    assert trainer.step_tuner.jit is False and reason in trainer.step_tuner.reason
    assert trainer.trace_counts["train"] == 1  # no XLA variant was ever built
