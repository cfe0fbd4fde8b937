"""Shuffle buffers measured from the pipeline, before any iterator state is serialized."""

import numpy as np
import pytest
import tensorflow as tf

from kerastrainer.checkpoint import read_checkpoint
from kerastrainer.data.buffers import shuffle_buffer_bytes
from tests.data.test_feeds import _fit


@pytest.mark.parametrize(("pipeline", "expected"), [
    (lambda: tf.data.Dataset.from_tensor_slices((np.zeros((600, 784), "float32"), np.zeros(600, "int64")))
     .shuffle(600).batch(32).prefetch(2), 600 * (784 * 4 + 8)),          # the whole data, rows of 3,144 B
    (lambda: tf.data.Dataset.range(10).shuffle(1000).batch(2), 10 * 8),  # at most its input's rows
    (lambda: tf.data.Dataset.range(10).batch(2).shuffle(3).map(lambda a: a * 2), 3 * 8),  # unknown dims: 1
    (lambda: tf.data.Dataset.zip((tf.data.Dataset.range(5).shuffle(5), tf.data.Dataset.range(4).shuffle(2)))
     .with_options(tf.data.Options()), 5 * 8 + 2 * 8),                    # each input of a zip
    (lambda: tf.data.Dataset.range(100).repeat().shuffle(50), 50 * 8),  # an infinite input
    (lambda: tf.data.Dataset.range(100).batch(10), 0),                  # no buffer
])
def test_shuffle_buffers_are_measured_from_the_pipeline(pipeline, expected):
    assert shuffle_buffer_bytes(pipeline()) == expected


def test_a_shuffle_of_the_whole_data_over_the_cap_is_left_out_without_serializing(tmp_path, monkeypatch):
    from kerastrainer.data import sources
    from tests.helpers import regression_data

    x, y = regression_data(rows=96)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=3).batch(8)  # 96 rows of 16 B
    monkeypatch.setattr(sources, "MAX_INPUT_STATE_BYTES", 1000)
    with pytest.warns(UserWarning, match=r"iterator state is 0 MiB .* replays the epoch"):
        _fit(tmp_path, epochs=2, data=data)
    assert "iterator" not in read_checkpoint(tmp_path / "17.ckpt")["data"]
