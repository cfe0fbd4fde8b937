"""BatchPlan: where compiled calls end and when a fit ends (arithmetic only, no TensorFlow run)."""

import pytest

from kerastrainer.plan import BatchPlan, total_batches
from kerastrainer.progress import crossed_multiple


def _plan(**overrides):
    flags = dict(num_batches=20, num_val_batches=4, val_check_interval=1.0,
                 check_val_every_n_epoch=1, max_epochs=3, max_steps=-1, log_every_n_steps=50)
    flags.update(overrides)
    return BatchPlan(**flags)


@pytest.mark.parametrize(("overrides", "batch", "global_step", "per_step", "expected"), [
    ({}, 0, 0, 1, 20),                                    # the epoch's end
    ({"val_check_interval": 0.25}, 0, 0, 1, 5),           # a validation point
    ({"val_check_interval": 0.25}, 7, 7, 1, 3),
    ({"step_intervals": [7]}, 0, 0, 1, 7),                # a logger or callback interval
    ({"step_intervals": [7]}, 8, 4, 2, 6),                # ... in optimizer steps of 2 batches
    ({"max_steps": 3}, 0, 0, 1, 3),                       # max_steps
    ({"max_steps": 3}, 1, 0, 2, 5),
    ({"num_batches": None}, 4, 4, 1, 1000),               # unknown length: only the size
])
def test_chunks_end_where_something_looks(overrides, batch, global_step, per_step, expected):
    plan = _plan(**overrides)
    plan.begin_epoch(0)
    assert plan.chunk(batch, global_step, 1000, per_step) == expected


def test_validation_points_and_epochs_that_skip_validation():
    plan = _plan(val_check_interval=0.5, check_val_every_n_epoch=2)
    plan.begin_epoch(0)
    assert not plan.validates_after(10)
    plan.begin_epoch(1)
    assert [b for b in range(1, 21) if plan.validates_after(b)] == [10, 20]
    assert _plan(num_val_batches=0).val_every is None


def test_the_loggers_interval_counts_optimizer_steps():
    every = _plan(log_every_n_steps=5).log_every_n_steps
    assert crossed_multiple(5, 1, every) and crossed_multiple(11, 7, every)
    assert not crossed_multiple(9, 3, every)


def test_a_fit_ends_at_max_steps_and_should_stop_counts_from_min_epochs():
    plan = _plan(max_steps=8, min_epochs=2)
    assert plan.ends(8, 0, False) == (True, False, None)
    assert plan.ends(3, 0, True) == (False, True, None)   # min_epochs wins
    assert plan.ends(3, 1, True) == (True, True, None)


@pytest.mark.parametrize(("counts", "expected"), [([], 0), ([0, 0], 0), ([3, 2], 5), ([3, None], None)])
def test_several_validation_datasets_add_up_unless_one_length_is_unknown(counts, expected):
    assert total_batches(counts) == expected
