"""FitLoop: where compiled calls end, how steps are counted and when a fit ends (arithmetic only,
no TensorFlow run)."""

import pytest

from kerastrainer.fit_loop import Chunk, FitLoop, total_batches
from kerastrainer.loop_position import LoopPosition, crossed_multiple


def _plan(batch=0, global_step=0, **overrides):
    flags = dict(num_batches=20, num_val_batches=[4], val_check_interval=1.0,
                 check_val_every_n_epoch=1, max_epochs=3, max_steps=-1, log_every_n_steps=50)
    flags.update(overrides)
    return FitLoop(position=LoopPosition(batch=batch, global_step=global_step), **flags)


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
    plan = _plan(batch=batch, global_step=global_step, **overrides)
    plan.begin_epoch(0)  # continues at `batch` (a position mid-way through epoch 0)
    plan.batches_per_step = per_step
    assert plan.chunk_size(1000) == expected


def test_validation_points_and_epochs_that_skip_validation():
    plan = _plan(val_check_interval=0.5, check_val_every_n_epoch=2)
    plan.begin_epoch(0)
    plan.position.batch = 10
    assert not plan.validates_now()
    plan.begin_epoch(1)
    due = []
    for batch in range(1, 21):
        plan.position.batch = batch
        if plan.validates_now():
            due.append(batch)
    assert due == [10, 20]
    assert _plan(num_val_batches=[0]).val_every is None


def test_the_loggers_interval_counts_optimizer_steps():
    every = _plan(log_every_n_steps=5).log_every_n_steps
    assert crossed_multiple(5, 1, every) and crossed_multiple(11, 7, every)
    assert not crossed_multiple(9, 3, every)


def test_a_fit_ends_at_max_steps_and_should_stop_counts_from_min_epochs():
    plan = _plan(global_step=8, max_steps=8, min_epochs=2)
    assert plan.ends(0, False) == (True, False, None)
    plan.position.global_step = 3
    assert plan.ends(0, True) == (False, True, None)   # min_epochs wins
    assert plan.ends(1, True) == (True, True, None)


@pytest.mark.parametrize(("counts", "expected"), [([], 0), ([0, 0], 0), ([3, 2], 5), ([3, None], None)])
def test_several_validation_datasets_add_up_unless_one_length_is_unknown(counts, expected):
    assert total_batches(counts) == expected


def test_each_chunk_counts_the_optimizer_steps_it_completed():
    """Under accumulation of 2 batches, chunks of one batch complete a step every second chunk,
    and an odd epoch's leftover batch is one more step."""
    loop = _plan(num_batches=5, num_val_batches=[], step_intervals=[1])
    loop.begin_epoch(0)
    loop.batches_per_step = 2
    steps = [loop.advance(chunk, ran=None).steps for chunk in loop.chunks(lambda: 1)]
    assert steps == [0, 1, 0, 1, 0]
    assert loop.leftover_step()
    assert loop.position.global_step == 3


def test_a_chunk_of_data_of_unknown_length_reads_what_ran():
    loop = _plan(num_batches=None, num_val_batches=[])
    loop.begin_epoch(0)
    advance = loop.advance(Chunk(start=0, size=8), ran=3)
    assert (advance.batches, advance.steps, advance.short) == (3, 3, True)


def test_a_fresh_epoch_starts_at_batch_zero_and_a_saved_one_continues():
    loop = _plan(num_batches=None, num_val_batches=[])
    assert loop.begin_epoch(0) is False
    loop.batches_per_step = 2
    assert loop.advance(Chunk(start=0, size=5), ran=5).steps == 2 and loop.position.global_step == 2
    saved = loop.position.state_dict()
    resumed = _plan(num_batches=None, num_val_batches=[])
    resumed.position.load_state_dict(saved)
    assert (resumed.position.first_epoch, resumed.position.resume_batch) == (0, 5)
    assert resumed.begin_epoch(0) is True and resumed.position.batch == 5
    resumed.end_epoch()
    assert (resumed.position.first_epoch, resumed.position.resume_batch) == (1, 0)
    assert resumed.begin_epoch(1) is False and resumed.position.batch == 0
