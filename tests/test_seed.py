import random

import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt


def test_seed_everything_seeds_python_numpy_and_tensorflow():
    kt.seed_everything(123)
    first = (random.random(), np.random.rand(), float(tf.random.uniform([])))
    kt.seed_everything(123)
    assert (random.random(), np.random.rand(), float(tf.random.uniform([]))) == first


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (2**32, ValueError), ("1", TypeError),
                                             (1.5, TypeError)])
def test_bad_seed(seed, error):
    with pytest.raises(error, match=rf"Received: seed={seed!r}"):
        kt.seed_everything(seed)
