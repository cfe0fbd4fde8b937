"""PyDataset input: read by index with `workers` reads in flight, epoch hooks between epochs,
the batch order shuffled as Keras's fit shuffles it, and resumed runs that read no skipped batch."""

import threading
import time

import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


class Recorded(keras.utils.PyDataset):
    """Eight batches of four rows; records what Keras's hooks and reads saw, in order."""

    def __init__(self, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = regression_data(rows=32)
        self.delay, self.events, self.lock = delay, [], threading.Lock()
        self.reading = self.most_at_once = 0

    def __len__(self):
        return 8

    def __getitem__(self, index):
        with self.lock:
            self.reading += 1
            self.most_at_once = max(self.most_at_once, self.reading)
        time.sleep(self.delay)  # a file read: other workers go on meanwhile
        with self.lock:
            self.reading -= 1
            self.events.append(index)
        return self.x[index * 4:(index + 1) * 4], self.y[index * 4:(index + 1) * 4]

    def on_epoch_begin(self):
        self.events.append("begin")

    def on_epoch_end(self):
        self.events.append("end")

    def epochs(self):
        """The indices read in each epoch (between a begin and its end)."""
        runs, current = [], None
        for event in self.events:
            if event == "begin":
                current = []
            elif event == "end":
                runs.append(current)
                current = None
            elif current is not None:
                current.append(event)
        return runs


def _fit(data, *, epochs=2, **fit_args):
    kt.seed_everything(0)
    module = BoringModule()
    quiet_trainer(max_epochs=epochs).fit(module, train_data=data, **fit_args)
    return module


def test_four_workers_train_exactly_as_one(tmp_path):
    one = _fit(Recorded(workers=1))
    four = _fit(Recorded(delay=0.01, workers=4, max_queue_size=4))
    for a, b in zip(one.weights, four.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_epoch_hooks_bracket_each_epochs_reads_and_the_order_is_shuffled_per_epoch():
    data = Recorded(delay=0.005, workers=3)
    _fit(data, epochs=3)
    epochs = data.epochs()
    assert len(epochs) == 3 and all(sorted(indices) == list(range(8)) for indices in epochs)
    assert epochs[0] != epochs[1] != epochs[2]  # Keras's fit(shuffle=True) reshuffles every epoch
    assert data.events.count("end") == 3  # (the next epoch may have begun: its batches are read ahead)


def test_shuffle_false_keeps_the_order():
    data = Recorded(workers=1)  # one read at a time: the order of the reads is the order used
    _fit(data, shuffle=False)
    assert data.epochs()[:2] == [list(range(8))] * 2  # (a third may be read ahead)


def test_validation_reads_in_order():
    data = Recorded(workers=1)
    kt.seed_everything(0)
    quiet_trainer(max_epochs=1, num_sanity_val_steps=0).fit(BoringModule(), train_data=regression_data(8),
                                                             val_data=data)
    assert data.epochs()[0] == list(range(8))


def test_a_resumed_run_reads_no_batch_it_skips(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=13, save_top_k=-1,
                                              filename="mid")
    kt.seed_everything(0)
    uninterrupted, first = BoringModule(), Recorded(workers=1)
    kt.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
               callbacks=[checkpoint]).fit(uninterrupted, train_data=first)
    data, resumed = Recorded(workers=1), BoringModule()
    quiet_trainer(max_epochs=2).fit(resumed, train_data=data, ckpt_path=str(tmp_path / "mid.ckpt"))
    # step 13 = epoch 1, batch 5: the resumed run's first reads (after the spec's read of batch 0)
    # are that epoch's positions 5, 6 and 7; positions 0-4 are skipped by index, never read.
    assert data.events[:2] == [0, "begin"]
    assert data.events[2:6] == first.epochs()[1][5:] + ["end"]  # its epoch ends after those three
    for a, b in zip(uninterrupted.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class Endless(keras.utils.PyDataset):
    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        x, y = regression_data(rows=4, seed=index)
        return x, y


def test_an_endless_pydataset_trains_for_max_steps():
    trainer = quiet_trainer(max_steps=5, limit_train_batches=10)  # as Keras wants steps_per_epoch
    trainer.fit(BoringModule(), train_data=Endless())
    assert trainer.global_step == 5


@pytest.mark.parametrize(("workers", "at_once"), [(1, 1), (4, 4)])
def test_workers_read_that_many_batches_at_once(workers, at_once):
    data = Recorded(delay=0.05, workers=workers)
    quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=data, shuffle=False)
    assert sorted(data.epochs()[0]) == list(range(8))
    assert data.most_at_once == at_once


def test_use_multiprocessing_says_threads_read_it():
    with pytest.warns(UserWarning, match=r"use_multiprocessing=True: kerastrainer reads it with 2 threads"):
        _fit(Recorded(workers=2, use_multiprocessing=True), epochs=1)


def test_a_deterministic_run_reads_one_batch_at_a_time():
    data = Recorded(delay=0.02, workers=4)
    quiet_trainer(max_epochs=1, deterministic=True).fit(BoringModule(), train_data=data)
    assert data.most_at_once == 1  # TensorFlow's op determinism: stateful reads run in order
